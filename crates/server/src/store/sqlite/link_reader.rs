//! SQLite files: short links looked up on the calling thread, for a redirect whose link is not
//! in the link cache (the first click of each per-customer link, as a rule).
//!
//! Through the pool, a lookup is a message to the connection's thread and the answer back:
//! two wake-ups and the row taken apart into owned values in between, most of such a
//! redirect's cost (165 µs where a cached one costs 45). Here it is one indexed read on a
//! connection of the caller's, in the WAL file's snapshot: readers never wait for the writer.
//! Should one have to wait anyway (SQLite's `SQLITE_BUSY`, as while the WAL is reset), it
//! gives up at once and the caller asks the pool, which may wait.

use std::path::PathBuf;
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::store::db::Cols;
use crate::store::links::{LINK_BY_CODE, LINK_BY_SLUG, LINK_COLUMNS, link_from};
use crate::store::{Link, StoreResult};

/// Connections kept for the next lookups: one per thread that looks links up at once.
const KEEP: usize = 4;

/// See the module.
#[derive(Debug)]
pub(crate) struct LinkReader {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl LinkReader {
    pub(crate) fn new(path: PathBuf) -> Self {
        LinkReader {
            path,
            idle: Mutex::default(),
        }
    }

    /// The link with this code or slug; `None` when it cannot be read without waiting (ask
    /// the pool then).
    pub(crate) fn link_by_code_or_slug(&self, s: &str) -> Option<StoreResult<Option<Link>>> {
        let idle = self.idle.lock().expect("reader lock").pop();
        let conn = match idle {
            Some(c) => c,
            None => match self.open() {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open a link reader");
                    return None;
                }
            },
        };
        let by = |sql| {
            conn.prepare_cached(sql)
                .and_then(|mut q| q.query_row([s], |row| Ok(link_from(&Row(row)))).optional())
        };
        // A code before a slug, should one link's slug be another's code (as the pool's query).
        let found = match by(LINK_BY_CODE) {
            Ok(None) => by(LINK_BY_SLUG),
            found => found,
        };
        let answer = match found {
            Ok(link) => Some(link.transpose()),
            Err(e) if is_busy(&e) => None,
            Err(e) => Some(Err(e.into())),
        };
        let mut idle = self.idle.lock().expect("reader lock");
        if idle.len() < KEEP {
            idle.push(conn);
        }
        answer
    }

    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        // Give up at once rather than hold the caller's thread (see the module).
        conn.busy_timeout(std::time::Duration::ZERO)?;
        // Links are small and the OS caches the file: a small page cache of its own.
        conn.pragma_update(None, "cache_size", -512)?;
        Ok(conn)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A row of [`LINK_BY_CODE`] or [`LINK_BY_SLUG`] as [`link_from`] reads it: by the column's
/// place in the query (rusqlite finds a column by name through every column's name in turn).
struct Row<'a, 'b>(&'a rusqlite::Row<'b>);

/// The queries' columns, in order.
static COLUMNS: std::sync::LazyLock<Vec<&'static str>> =
    std::sync::LazyLock::new(|| LINK_COLUMNS.split(", ").map(str::trim).collect());

impl Row<'_, '_> {
    fn get<T: rusqlite::types::FromSql>(&self, col: &str) -> Result<T, sqlx::Error> {
        let got = match COLUMNS.iter().position(|c| *c == col) {
            Some(i) => self.0.get(i),
            None => self.0.get(col),
        };
        got.map_err(|e| sqlx::Error::Decode(Box::new(e)))
    }
}

impl Cols for Row<'_, '_> {
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.get(col)
    }
    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.get(col)
    }
    fn boolean(&self, col: &str) -> Result<bool, sqlx::Error> {
        self.get(col)
    }
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.get(col)
    }
}
