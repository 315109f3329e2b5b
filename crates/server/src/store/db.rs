//! The [`Store`]: a SQLite or PostgreSQL pool, chosen from the database URL, with the
//! migrations of that backend and the small helpers every query module shares.

use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr};

use super::seen::SeenVisitors;
use super::sqlite::click_writer::{ClickWriter, Target, WriteTurn};
use super::sqlite::link_reader::LinkReader;
use super::{StoreError, StoreResult};

/// The active pool.
#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Storage on SQLite or PostgreSQL; implements every store trait. Cheap to clone (the pool is
/// shared).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    /// PostgreSQL's click writer: the visitors this process wrote to `click_visitors` (see
    /// [`SeenVisitors`]; SQLite's writer keeps its own).
    pub(crate) seen_visitors: Arc<Mutex<SeenVisitors>>,
    /// SQLite only: the thread that writes clicks.
    pub(crate) click_writer: Option<Arc<ClickWriter>>,
    /// SQLite files only: links looked up on the caller's thread.
    pub(crate) link_reader: Option<Arc<LinkReader>>,
    /// SQLite only: the Start flow's writes (the webhooks' inserts, the workers' claims and
    /// commits) go one at a time, each woken when the one before ends. Without it they met at
    /// SQLite's write lock, whose busy handler sleeps 1, 2, 5, 10 ms... between tries rather
    /// than being told the lock is free: about one sleep per Start, and webhook answers of 6
    /// to 11 ms at 150 Starts/s where one insert takes 0.2 ms.
    pub(crate) flow_writes: Arc<tokio::sync::Mutex<()>>,
}

/// Most connections in a SQLite pool (the click writer has one more of its own). Each is a
/// thread of its own with its own page cache (and, under glibc, its own malloc arena: several
/// megabytes each), while SQLite lets one writer in at a time and short links are resolved
/// from memory: more would cost memory, not speed.
const SQLITE_MAX_CONNECTIONS: u32 = 2;

/// How long a SQLite connection waits for a lock another holds (the pool's and the click
/// writer's alike): then the API answers 503 `database_busy` with `Retry-After`, having
/// changed nothing, and the click writer tries the batch again later.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// WAL pages between automatic checkpoints (the pool's and the click writer's alike). Clicks
/// arrive in batches all day: checkpointing every 4,000 pages (16 MB) rather than SQLite's
/// 1,000 writes a page that many batches changed (index pages) once, and syncs the database
/// file a quarter as often.
pub(crate) const SQLITE_WAL_AUTOCHECKPOINT: u32 = 4000;

/// How to connect, beyond the URL.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Pool size. SQLite serialises writers anyway; extra connections serve readers, at most
    /// [`SQLITE_MAX_CONNECTIONS`] of them.
    pub max_connections: u32,
    /// PostgreSQL only: the schema to use (set as `search_path` on every connection), for
    /// several installations, or test runs, in one database. The schema must exist.
    pub postgres_schema: Option<String>,
    /// SQLite only: the longest that the counts of written clicks wait before the click writer
    /// adds them to `click_counts` (see `click_writer`). Statistics add them first whenever
    /// they are read, so this is not how fresh statistics are: it bounds how many wait.
    pub click_fold_every: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 10,
            postgres_schema: None,
            click_fold_every: Duration::from_secs(10),
        }
    }
}

/// Connects to the database named by `database_url`: `postgres://...` / `postgresql://...`
/// for PostgreSQL; `sqlite:<path>`, `sqlite://<path>`, `sqlite::memory:` or a plain file path
/// for SQLite (the file is created if missing). Run [`Store::migrate`] before use.
pub async fn connect(database_url: &str) -> StoreResult<Store> {
    connect_with(database_url, &ConnectOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(database_url: &str, options: &ConnectOptions) -> StoreResult<Store> {
    let url = database_url.trim();
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let mut pg = PgConnectOptions::from_str(url)?;
        if let Some(schema) = &options.postgres_schema {
            pg = pg.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(pg)
            .await?;
        return Ok(Store {
            pool: Pool::Postgres(pool),
            seen_visitors: Arc::default(),
            click_writer: None,
            link_reader: None,
            flow_writes: Arc::default(),
        });
    }

    let (sqlite, in_memory) = if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)?;
        (
            opts,
            url.contains(":memory:") || url.contains("mode=memory"),
        )
    } else if !url.is_empty() && !url.contains("://") {
        (SqliteConnectOptions::new().filename(Path::new(url)), false)
    } else {
        return Err(StoreError::UnsupportedUrl(database_url.to_owned()));
    };
    let (sqlite, target) = if in_memory {
        // An in-memory database in SQLite's `memdb`, which the connections of one process
        // (the pool's and the click writer's) share by name. Its locks are coarser than a
        // file's (no reading while a batch of clicks is being written: readers wait, up to
        // the busy timeout), which suits tests and trials, not load. It lives as long as one
        // of its connections: the click writer keeps one open.
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "/botlink-memory-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        (
            SqliteConnectOptions::new()
                .filename(&name)
                .vfs("memdb")
                .journal_mode(SqliteJournalMode::Memory),
            Target::Memory(name),
        )
    } else {
        let path = sqlite.get_filename().to_owned();
        create_private(&path);
        (
            sqlite.journal_mode(SqliteJournalMode::Wal),
            Target::File(path),
        )
    };
    let sqlite = sqlite
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .synchronous(SqliteSynchronous::Normal)
        .pragma("wal_autocheckpoint", SQLITE_WAL_AUTOCHECKPOINT.to_string());
    let mut pool = SqlitePoolOptions::new();
    if in_memory {
        pool = pool
            .min_connections(1)
            .max_lifetime(None)
            .idle_timeout(None);
    }
    let pool = pool
        .max_connections(options.max_connections.clamp(1, SQLITE_MAX_CONNECTIONS))
        // No longer than a connection waits for the write lock: while another process holds
        // it, the pool's connections are taken by writes that wait for it, and a request that
        // waits for one of them is answered "busy" (503) after that long too, rather than
        // after twice that and then the lock's wait on top.
        .acquire_timeout(SQLITE_BUSY_TIMEOUT)
        .after_connect(|_, _| {
            Box::pin(async {
                lower_sqlite_threads();
                Ok(())
            })
        })
        .connect_with(sqlite)
        .await?;
    let link_reader = match &target {
        Target::File(path) => Some(Arc::new(LinkReader::new(path.clone()))),
        // A memdb database's readers wait for its writer (see above): through the pool.
        Target::Memory(_) => None,
    };
    Ok(Store {
        link_reader,
        click_writer: Some(Arc::new(ClickWriter::start(
            target,
            options.click_fold_every,
        )?)),
        pool: Pool::Sqlite(pool),
        seen_visitors: Arc::default(),
        flow_writes: Arc::default(),
    })
}

/// The migrations, append-only: add `000N_<what>.sql` to a backend's folder and a line to its
/// list (the numbers of the two lists need not match: SQLite's 3 has no PostgreSQL twin; nor
/// need they be consecutive).
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "click counts",
        include_str!("../../migrations/sqlite/0002_click_counts.sql"),
    ),
    (
        3,
        "click count deltas",
        include_str!("../../migrations/sqlite/0003_click_count_deltas.sql"),
    ),
    (
        4,
        "click log",
        include_str!("../../migrations/sqlite/0004_click_log.sql"),
    ),
    (
        5,
        "settings",
        include_str!("../../migrations/sqlite/0005_settings.sql"),
    ),
    (
        6,
        "flow",
        include_str!("../../migrations/sqlite/0006_flow.sql"),
    ),
    (
        7,
        "start stats",
        include_str!("../../migrations/sqlite/0007_start_stats.sql"),
    ),
    (
        8,
        "claim order",
        include_str!("../../migrations/sqlite/0008_claim_order.sql"),
    ),
    (
        9,
        "run targets",
        include_str!("../../migrations/sqlite/0009_run_targets.sql"),
    ),
    (
        10,
        "send rates",
        include_str!("../../migrations/sqlite/0010_send_rates.sql"),
    ),
];
const POSTGRES_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "click counts",
        include_str!("../../migrations/postgres/0002_click_counts.sql"),
    ),
    (
        3,
        "link changes",
        include_str!("../../migrations/postgres/0003_link_changes.sql"),
    ),
    // 5, not 4: the number the SQLite twin has (versions need only be unique and ascending:
    // the migrator applies every one it has not applied yet, gaps or not).
    (
        5,
        "settings",
        include_str!("../../migrations/postgres/0005_settings.sql"),
    ),
    (
        6,
        "flow",
        include_str!("../../migrations/postgres/0006_flow.sql"),
    ),
    (
        7,
        "start stats",
        include_str!("../../migrations/postgres/0007_start_stats.sql"),
    ),
    (
        8,
        "claim order",
        include_str!("../../migrations/postgres/0008_claim_order.sql"),
    ),
    (
        9,
        "run targets",
        include_str!("../../migrations/postgres/0009_run_targets.sql"),
    ),
    (
        10,
        "send rates",
        include_str!("../../migrations/postgres/0010_send_rates.sql"),
    ),
];

fn migrator(list: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

impl Store {
    /// Applies the migrations not yet applied. Safe to call at every start, and from several
    /// instances at once (PostgreSQL: under an advisory lock).
    pub async fn migrate(&self) -> StoreResult<()> {
        self.migrate_through(i64::MAX).await
    }

    /// Applies the migrations up to and including `version` (for tests of an upgrade).
    pub async fn migrate_through(&self, version: i64) -> StoreResult<()> {
        let upto = |list: &[(i64, &'static str, &'static str)]| {
            let n = list.iter().take_while(|m| m.0 <= version).count();
            migrator(&list[..n])
        };
        match &self.pool {
            Pool::Sqlite(pool) => upto(SQLITE_MIGRATIONS).run(pool).await?,
            Pool::Postgres(pool) => upto(POSTGRES_MIGRATIONS).run(pool).await?,
        }
        Ok(())
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        match &self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// Marks an API write under way until the turn is dropped: on SQLite, the click writer
    /// holds back its next transaction meanwhile (see [`WriteTurn`]); on PostgreSQL, whose
    /// writers do not take turns, nothing.
    pub fn write_turn(&self) -> Option<WriteTurn> {
        self.click_writer.as_ref().map(|w| w.write_turn())
    }

    /// The statement that opens a transaction that writes. On SQLite, `BEGIN IMMEDIATE` takes
    /// the write lock at once, waiting for it up to the busy timeout: a deferred transaction
    /// that reads and then writes fails at once with `SQLITE_BUSY` ("database is locked")
    /// when another connection wrote in between, since waiting could not help it.
    pub(crate) fn begin_write(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "BEGIN IMMEDIATE",
            Backend::Postgres => "BEGIN",
        }
    }

    /// The statement that opens a read-only transaction whose queries all see one snapshot
    /// (on SQLite, every transaction does).
    pub(crate) fn begin_snapshot(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "BEGIN",
            Backend::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }

    /// The link with this code or slug, when it can be read on this thread without waiting
    /// (SQLite files: see [`LinkReader`]); `None`: ask [`super::LinkStore::link_by_code_or_slug`].
    pub fn link_by_code_or_slug_now(&self, s: &str) -> Option<StoreResult<Option<super::Link>>> {
        self.link_reader.as_ref()?.link_by_code_or_slug(s)
    }

    /// Checks that the database answers (for a readiness probe).
    pub async fn ping(&self) -> StoreResult<()> {
        with_pool!(self, pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Closes every connection, waiting for those in use to be returned.
    pub async fn close(&self) {
        if let Some(writer) = &self.click_writer {
            writer.close().await;
        }
        with_pool!(self, pool => pool.close().await)
    }
}

/// Reading columns by name from a row of either backend, so that each row mapper is written
/// once (sqlx decodes SQLite's INTEGER 0/1 and PostgreSQL's BOOLEAN both into `bool`).
pub(crate) trait Cols {
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;
    fn boolean(&self, col: &str) -> Result<bool, sqlx::Error>;
    fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

macro_rules! impl_cols {
    ($row:ty) => {
        impl Cols for $row {
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
                self.try_get(col)
            }
            fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(col)
            }
            fn boolean(&self, col: &str) -> Result<bool, sqlx::Error> {
                self.try_get(col)
            }
            fn opt_bytes(&self, col: &str) -> Result<Option<Vec<u8>>, sqlx::Error> {
                self.try_get(col)
            }
        }
    };
}

impl_cols!(SqliteRow);
impl_cols!(PgRow);

/// JSON stored as TEXT, read back.
pub(crate) fn from_json<T: DeserializeOwned>(table: &'static str, text: &str) -> StoreResult<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        table,
        detail: format!("bad JSON: {e}"),
    })
}

/// A value stored as its name (a channel, a scheme): one this version does not know is
/// [`StoreError::Corrupt`], never a default.
pub(crate) fn from_name<T>(table: &'static str, text: &str) -> StoreResult<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| StoreError::Corrupt {
        table,
        detail: e.to_string(),
    })
}

/// A value stored as JSON TEXT.
pub(crate) fn to_json<T: Serialize>(value: &T) -> String {
    // Serializing maps with string keys, vectors and `serde_json::Value` cannot fail.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

/// True when `e` is a unique-constraint violation (SQLite 2067/1555, PostgreSQL 23505).
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The constraint a unique violation broke, as text to search for a column name in
/// (PostgreSQL names the constraint, e.g. `links_slug_key`; SQLite only says
/// `UNIQUE constraint failed: links.slug` in its message).
pub(crate) fn violated(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => format!("{} {}", db.constraint().unwrap_or(""), db.message()),
        _ => String::new(),
    }
}

/// Maps a unique violation to `Conflict { what }`, anything else to `Database`.
pub(crate) fn conflict_or(e: sqlx::Error, what: impl FnOnce() -> String) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict { what: what() }
    } else {
        StoreError::Database(e)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Creates a missing database file readable by its owner alone (0600), as the key file is: it
/// holds the API keys' hashes, the sealed bot secrets and the click log. SQLite would create it
/// with the umask's mode (0644, as a rule); it gives the `-wal` and `-shm` files it makes
/// beside it the database file's own mode, so they follow. Best effort: if this fails, SQLite
/// tries to create the file itself and says why it cannot.
fn create_private(path: &Path) {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let _ = opts.open(path);
}

/// Lowers the priority of the process's SQLite threads (sqlx names them
/// `sqlx-sqlite-worker-N`; "comm" keeps the first 15 bytes). Best effort, Linux only.
fn lower_sqlite_threads() {
    #[cfg(target_os = "linux")]
    {
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return;
        };
        for task in tasks.flatten() {
            let is_sqlite = std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.starts_with("sqlx-sqlite-wor"));
            let tid = task
                .file_name()
                .to_str()
                .and_then(|t| t.parse::<i32>().ok());
            if is_sqlite && let Some(tid) = tid {
                crate::util::lower_thread(rustix::process::Pid::from_raw(tid));
            }
        }
    }
}

#[async_trait::async_trait]
impl super::Database for Store {
    fn backend(&self) -> Backend {
        Store::backend(self)
    }
    fn write_turn(&self) -> Option<WriteTurn> {
        Store::write_turn(self)
    }
    async fn ping(&self) -> StoreResult<()> {
        Store::ping(self).await
    }
}
