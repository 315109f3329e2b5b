//! SQLite's click writer: one thread with a connection of its own that writes each batch of
//! clicks with prepared statements, a row at a time.
//!
//! Through sqlx, every statement is a message to the connection's thread and an answer back,
//! with the batch's values built into argument lists on the threads that answer requests
//! first: at thousands of clicks a second that was most of a click's cost. Here the request
//! side only hands the batch over; binding and stepping happen beside SQLite, on a thread of
//! lower priority, so redirects get the CPU first.
//!
//! The writer opens the same database as the pool (a file; or, for an in-memory store, the
//! same `memdb` database, which SQLite shares between the connections of a process).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, mpsc};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::oneshot;

use super::clicks::{Counts, channel_of};
use super::seen::{self, SeenVisitors};
use super::{ClickKind, NewClick, StoreError, StoreResult, day_of};

/// Where the writer connects: the pool's database.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// A database file.
    File(PathBuf),
    /// An in-memory database of this process, by its `memdb` name.
    Memory(String),
}

enum Job {
    Write(Arc<[NewClick]>, oneshot::Sender<StoreResult<u64>>),
    /// Stops the writer: it closes its connection, answers, and ends.
    Close(oneshot::Sender<()>),
}

/// The handle of the writer thread, which ends on [`ClickWriter::close`] or when the last
/// handle is dropped.
#[derive(Debug)]
pub(crate) struct ClickWriter {
    jobs: mpsc::Sender<Job>,
}

impl ClickWriter {
    /// Starts the thread. It connects at its first batch, so the database may be migrated
    /// after this; an in-memory database it opens at once, and keeps open while it runs, so
    /// that the database lives as long as the store even when the pool replaces its
    /// connections.
    pub(crate) fn start(target: Target) -> StoreResult<Self> {
        let anchor = match &target {
            Target::Memory(_) => Some(open(&target)?),
            Target::File(_) => None,
        };
        let (jobs, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("botlink-clicks".into())
            .spawn(move || {
                run(&target, &queue);
                drop(anchor);
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the click writer: {e}")))?;
        Ok(ClickWriter { jobs })
    }

    /// Writes a batch (see [`super::ClickStore::insert_clicks`]).
    pub(crate) async fn write(&self, clicks: Arc<[NewClick]>) -> StoreResult<u64> {
        if clicks.is_empty() {
            return Ok(0);
        }
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Write(clicks, reply))
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Stops the writer after the batches handed to it before; later batches fail.
    pub(crate) async fn close(&self) {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job::Close(reply)).is_ok() {
            let _ = answer.await;
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Writer("the click writer has stopped".into())
}

fn run(target: &Target, queue: &mpsc::Receiver<Job>) {
    super::db::lower_this_thread();
    // The visitors this writer has committed (see `SeenVisitors`): the writer's alone.
    let mut seen = SeenVisitors::default();
    let mut conn: Option<Connection> = None;
    while let Ok(job) = queue.recv() {
        let (clicks, reply) = match job {
            Job::Write(clicks, reply) => (clicks, reply),
            Job::Close(reply) => {
                drop(conn.take());
                let _ = reply.send(());
                return;
            }
        };
        // A panic in one batch fails that batch, not the writer: the clicks stay queued for
        // the retry, and the next batch starts from a fresh connection and an empty set.
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let c = match &mut conn {
                Some(c) => c,
                None => conn.insert(open(target)?),
            };
            write_batch(c, &clicks, &mut seen)
        }))
        .unwrap_or_else(|_| {
            seen = SeenVisitors::default();
            Err(StoreError::Writer(
                "the click writer failed on a batch; it will be written again".into(),
            ))
        });
        if result.is_err() {
            // Open afresh for the retry rather than keep a connection in an unknown state.
            conn = None;
        }
        let _ = reply.send(result);
    }
}

fn open(target: &Target) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match target {
        Target::File(path) => Connection::open_with_flags(path, flags)?,
        // SQLite keeps a memdb database's journal in memory by itself.
        Target::Memory(name) => Connection::open_with_flags_and_vfs(name, flags, "memdb")?,
    };
    conn.busy_timeout(super::db::SQLITE_BUSY_TIMEOUT)?;
    // No foreign-key checks: the writer adds counts only for links that exist, checked in
    // the same statement under the write lock (see `write_batch`); the check would look the
    // link up a second time and make each of those statements keep a journal of its own.
    // Deleting a link (the pool's connections, with the checks on) still deletes its counts.
    conn.pragma_update(None, "foreign_keys", false)?;
    // As the pool's connections (see `db::connect_with`).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        super::db::SQLITE_WAL_AUTOCHECKPOINT,
    )?;
    Ok(conn)
}

/// Writes a batch in one transaction: each click's row (a click whose id is already stored is
/// skipped), the visitors new on their link that day, then the counts, once per link, day
/// and channel. Returns how many clicks were logged.
///
/// A statement per row, prepared once: SQLite's work per row is mostly finding its place in
/// the tree, which a statement of many rows does not save, and an update of an existing
/// counts row is cheaper than an insert that turns into one.
fn write_batch(
    conn: &mut Connection,
    clicks: &[NewClick],
    seen: &mut SeenVisitors,
) -> StoreResult<u64> {
    let Some(keep_from) = seen::kept_from(clicks) else {
        return Ok(0);
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut logged = 0;
    let mut counts: HashMap<(&str, i64, &'static str), Counts> = HashMap::new();
    let mut visitors = HashSet::with_capacity(clicks.len());
    {
        let mut log = tx.prepare_cached(
            "INSERT INTO clicks (id, link_id, channel, kind, at, visitor) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (id) DO NOTHING",
        )?;
        let mut visit = tx.prepare_cached(
            "INSERT INTO click_visitors (day, link_id, visitor) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?;
        for c in clicks {
            let link = c.link_id.as_str();
            let channel = c.channel.map(|ch| ch.as_str());
            let visitor = c.visitor.as_ref().map(|v| &v[..]);
            // The first of several clicks with one id wins; so does a click already stored,
            // which keeps a retry harmless (after a commit whose outcome was not clear, or a
            // caller that gave up waiting).
            let row = params![c.id.as_str(), link, channel, c.kind.as_str(), c.at, visitor];
            if log.execute(row)? == 0 {
                continue;
            }
            logged += 1;
            let day = day_of(c.at);
            let n = counts.entry((link, day, channel_of(c))).or_default();
            match c.kind {
                ClickKind::Preview => n.previews += 1,
                ClickKind::Click => {
                    n.clicks += 1;
                    // A visitor's first click on a link on a day is unique. The visitors this
                    // process wrote are known without asking; an insert finds the others.
                    if let Some(v) = c.visitor
                        && visitors.insert((day, link, v))
                        && !seen.contains(day, link, &v)
                        && visit.execute(params![day, link, &v[..]])? == 1
                    {
                        n.unique_clicks += 1;
                    }
                }
            }
        }
    }
    {
        // Most counts rows exist after a link's first click of the day: add to them in
        // place. Only where none exists yet is one inserted, and only for a link that still
        // exists (a link deleted since the redirect keeps its logged clicks, unreachable as a
        // deleted link's are, but gets no counts).
        let mut add = tx.prepare_cached(
            "UPDATE click_counts SET clicks = clicks + ?4, \
             unique_clicks = unique_clicks + ?5, previews = previews + ?6 \
             WHERE link_id = ?1 AND day = ?2 AND channel = ?3",
        )?;
        let mut first = tx.prepare_cached(
            "INSERT INTO click_counts (link_id, day, channel, clicks, unique_clicks, previews) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM links WHERE id = ?1)",
        )?;
        for ((link, day, channel), n) in &counts {
            let row = params![link, day, channel, n.clicks, n.unique_clicks, n.previews];
            if add.execute(row)? == 0 {
                first.execute(row)?;
            }
        }
        tx.prepare_cached("DELETE FROM click_visitors WHERE day < ?1")?
            .execute([keep_from])?;
    }
    tx.commit()?;
    seen.extend(visitors.into_iter(), keep_from);
    Ok(logged)
}
