//! SQLite's click writer: one thread with a connection of its own that writes each batch of
//! clicks with prepared statements.
//!
//! Through sqlx, every statement is a message to the connection's thread and an answer back,
//! with the batch's values built into argument lists on the threads that answer requests
//! first: at thousands of clicks a second that was most of a click's cost. Here the request
//! side only hands the batch over; the work happens beside SQLite, on a thread of lower
//! priority that offers the CPU every 100 µs (see [`pace`]), so redirects get the CPU first.
//!
//! A batch goes to the click log (see [`click_log`]): a row per millisecond of its click ids,
//! with each click marked unique or not. Its counts are not added to `click_counts` then: the
//! writer folds the log's new rows into `click_counts` before statistics are read
//! ([`ClickWriter::fold`]) and, unread, within `ConnectOptions::click_fold_every` (10 s by
//! default) of a batch. Clicks spread over many links touch a counts row each; folded
//! together, each row is added to once per fold, whatever the number of batches. A crash
//! loses nothing: the clicks are committed, and folded by the next writer.
//!
//! The writer opens the same database as the pool (a file; or, for an in-memory store, the
//! same `memdb` database, which SQLite shares between the connections of a process).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

#[cfg(test)]
use foldhash::{HashMap, HashMapExt};
use foldhash::{HashSet, HashSetExt};
use rusqlite::{Connection, OpenFlags, TransactionBehavior, params};
use tokio::sync::{Notify, oneshot, watch};

use super::click_log::{self, Undecodable, take};
#[cfg(test)]
use crate::store::clicks::CountKey;
use crate::store::clicks::{Counts, channel_of};
use crate::store::seen::{self, SeenVisitors};
use crate::store::{ClickKind, NewClick, StoreError, StoreResult, day_of};

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
    /// Adds every click not yet counted to `click_counts`; the outcome goes to [`Folds`].
    Fold,
    /// Stops the writer: it closes its connection, answers, and ends.
    Close(oneshot::Sender<()>),
}

/// The handle of the writer thread, which ends on [`ClickWriter::close`] or when the last
/// handle is dropped.
#[derive(Debug)]
pub(crate) struct ClickWriter {
    jobs: mpsc::Sender<Job>,
    /// The outcome of the writer's last fold, asked for or its own.
    folds: watch::Receiver<Folds>,
    /// Whether a [`Job::Fold`] is queued or under way: statistics asked for meanwhile take its
    /// outcome rather than queue folds of their own behind it.
    fold_asked: Arc<AtomicBool>,
    /// API writes under way in this process, and whether the writer is in a job that takes
    /// the write lock (see [`WriteTurn`]).
    turns: Arc<Turns>,
}

/// How the click writer and this process's API writes take turns at SQLite's write lock.
#[derive(Debug, Default)]
struct Turns {
    /// API writes under way.
    waiting: AtomicUsize,
    /// The writer is in a job that takes the write lock.
    busy: AtomicBool,
    /// Told when the writer ends such a job.
    done: Notify,
}

/// The longest the writer holds back its next transaction for API writes under way: so that
/// a stream of API writes slows clicks' writing down (they wait in the queue) but cannot stop
/// it.
const GIVE_WAY: Duration = Duration::from_millis(50);

/// An API write under way, from the request's start to its answer: while there is one, the
/// click writer holds back its next transaction (up to [`GIVE_WAY`]), and the write waits for
/// the writer's job in progress, if any, to end before it asks SQLite for the lock. Without
/// turns, a write that found the lock held went to SQLite's busy handler, which sleeps
/// between its tries (1, 2, 5, 10 ms, up to 100 ms), and a writer that took the lock again
/// between them kept the write waiting batch after batch, up to a second.
pub struct WriteTurn(Arc<Turns>);

impl WriteTurn {
    /// Waits, up to [`GIVE_WAY`], for the writer's job in progress to end: the writer then
    /// holds back its next one while this turn lasts, so the lock is free.
    pub async fn ready(&self) {
        let turns = &self.0;
        let wait = async {
            loop {
                let done = turns.done.notified();
                if !turns.busy.load(Ordering::Acquire) {
                    return;
                }
                done.await;
            }
        };
        let _ = tokio::time::timeout(GIVE_WAY, wait).await;
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Release);
    }
}

/// Waits, up to [`GIVE_WAY`], until no API write is under way; then marks the writer busy.
fn take_turn(turns: &Turns) {
    let until = Instant::now() + GIVE_WAY;
    while turns.waiting.load(Ordering::Acquire) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_micros(100));
    }
    turns.busy.store(true, Ordering::Release);
}

/// The writer's job is over: an API write waiting for it may ask for the lock.
fn end_turn(turns: &Turns) {
    turns.busy.store(false, Ordering::Release);
    turns.done.notify_waiters();
}

/// What the writer's folds have come to, told after each.
#[derive(Debug, Clone, Default)]
struct Folds {
    /// When (ms since the Unix epoch) the last fold that succeeded started: every click this
    /// writer wrote before then is counted. 0 before the first.
    ok_at: i64,
    /// Why the last fold failed; `None` when it succeeded.
    failed: Option<Lag>,
}

/// Why a fold did not count the clicks it was asked for, in the words statistics answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lag {
    /// The database was locked by another writer (or busy) longer than the writer waits.
    Busy,
    /// The fold failed otherwise (the log says why).
    Failed,
    /// The fold did not end within the time statistics wait for it.
    Slow,
    /// The click writer has stopped (the store is closing).
    Stopped,
}

impl Lag {
    /// Why, in a few words, to follow "clicks written were not all counted in time: ".
    pub fn why(self) -> &'static str {
        match self {
            Lag::Busy => "the database is busy (another process holds its write lock)",
            Lag::Failed => "counting them failed (the server's log says why)",
            Lag::Slow => {
                "the database did not take them in time (locked by another process, or slow)"
            }
            Lag::Stopped => "the click writer has stopped",
        }
    }
}

/// Whether counts hold every click written so far, as a fold tells (see [`ClickWriter::fold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CountsLag {
    /// Clicks written since then (ms since the Unix epoch) may be missing; `None` when no
    /// fold has succeeded since this process started.
    pub since_ms: Option<i64>,
    pub why: Lag,
}

impl ClickWriter {
    /// Starts the thread. It connects at its first batch, so the database may be migrated
    /// after this; an in-memory database it opens at once, and keeps open while it runs, so
    /// that the database lives as long as the store even when the pool replaces its
    /// connections.
    pub(crate) fn start(target: Target, fold_every: Duration) -> StoreResult<Self> {
        let anchor = match &target {
            Target::Memory(_) => Some(open(&target)?),
            Target::File(_) => None,
        };
        let (jobs, queue) = mpsc::channel();
        let (told, folds) = watch::channel(Folds::default());
        let fold_asked = Arc::new(AtomicBool::new(false));
        let asked = fold_asked.clone();
        let turns = Arc::new(Turns::default());
        let writer_turns = turns.clone();
        std::thread::Builder::new()
            .name("botlink-clicks".into())
            .spawn(move || {
                run(&target, fold_every, &queue, &told, &asked, &writer_turns);
                drop(anchor);
            })
            .map_err(|e| StoreError::Writer(format!("cannot start the click writer: {e}")))?;
        Ok(ClickWriter {
            jobs,
            folds,
            fold_asked,
            turns,
        })
    }

    /// Marks an API write under way until the turn is dropped (see [`WriteTurn`]).
    pub(crate) fn write_turn(&self) -> WriteTurn {
        self.turns.waiting.fetch_add(1, Ordering::AcqRel);
        WriteTurn(self.turns.clone())
    }

    /// Writes a batch (see [`crate::store::ClickStore::insert_clicks`]).
    pub(crate) async fn write(&self, clicks: Arc<[NewClick]>) -> StoreResult<u64> {
        if clicks.is_empty() {
            return Ok(0);
        }
        self.ask(|reply| Job::Write(clicks, reply)).await
    }

    /// Hands the writer a job and waits for its answer.
    async fn ask<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<StoreResult<T>>) -> Job,
    ) -> StoreResult<T> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(job(reply)).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Adds the counts of every batch written so far (by any process) to `click_counts`,
    /// waiting at most `wait`: what statistics call before they read it. `None` when it did;
    /// else what the counts may lack, and why.
    ///
    /// Callers share folds: one asked for, or under way, when a caller comes answers it too.
    /// It counts every batch this writer wrote before the caller came, since the writer
    /// writes nothing while it folds. So a database locked for a while costs the writer one
    /// fold at a time, however many statistics are asked for meanwhile.
    pub(crate) async fn fold(&self, wait: Duration) -> Option<CountsLag> {
        let mut folds = self.folds.clone();
        folds.borrow_and_update();
        if !self.fold_asked.swap(true, Ordering::AcqRel) && self.jobs.send(Job::Fold).is_err() {
            self.fold_asked.store(false, Ordering::Release);
        }
        let lag = |folds: &Folds, why| {
            Some(CountsLag {
                since_ms: (folds.ok_at != 0).then_some(folds.ok_at),
                why,
            })
        };
        match tokio::time::timeout(wait, folds.changed()).await {
            Ok(Ok(())) => {
                let told = folds.borrow_and_update();
                told.failed.and_then(|why| lag(&told, why))
            }
            // The writer has ended: nothing more will be counted by it.
            Ok(Err(_)) => lag(&folds.borrow(), Lag::Stopped),
            Err(_) => lag(&folds.borrow(), Lag::Slow),
        }
    }

    /// Stops the writer after the batches handed to it before (their counts folded); later
    /// batches fail.
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

fn run(
    target: &Target,
    fold_every: Duration,
    queue: &mpsc::Receiver<Job>,
    told: &watch::Sender<Folds>,
    fold_asked: &AtomicBool,
    turns: &Turns,
) {
    crate::util::lower_this_thread();
    let mut w = Writer {
        target,
        conn: None,
        kept: Kept::default(),
        unfolded_since: None,
        told,
    };
    loop {
        // Wait for a job; or, with clicks of this writer not yet counted, until they are due.
        let job = match w.unfolded_since {
            Some(since) => match queue.recv_timeout(fold_every.saturating_sub(since.elapsed())) {
                Ok(job) => Some(job),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
            None => match queue.recv() {
                Ok(job) => Some(job),
                Err(_) => break,
            },
        };
        // Every job below takes SQLite's write lock: an API write under way goes first.
        take_turn(turns);
        match job {
            None => log_fold_error(w.fold()),
            Some(Job::Write(clicks, reply)) => {
                let _ = reply.send(w.write(&clicks));
                if w.unfolded_since.is_some_and(|t| t.elapsed() >= fold_every)
                    || w.kept.unfolded.sums.len() > MAX_UNFOLDED
                {
                    end_turn(turns);
                    take_turn(turns);
                    log_fold_error(w.fold());
                }
            }
            Some(Job::Fold) => {
                // Cleared before the outcome is told: a caller that found it set is told
                // this outcome; one that comes after asks for a fold of its own.
                log_fold_error(w.fold_then(|| fold_asked.store(false, Ordering::Release)));
            }
            Some(Job::Close(reply)) => {
                log_fold_error(w.fold());
                drop(w.conn.take());
                end_turn(turns);
                let _ = reply.send(());
                return;
            }
        }
        end_turn(turns);
    }
    // Every handle is gone without a close: fold what this writer left, as close would.
    if w.unfolded_since.is_some() {
        log_fold_error(w.fold());
    }
}

/// A fold that fails is tried again later (what it did not add waits); it is worth a warning,
/// not an error for the batch that happened to trigger it.
fn log_fold_error(result: StoreResult<()>) {
    if let Err(e) = result {
        tracing::warn!(error = %e, "adding clicks to their counts failed; will retry");
    }
}

/// The writer thread's state.
struct Writer<'a> {
    target: &'a Target,
    conn: Option<Connection>,
    kept: Kept,
    /// Since when clicks that this writer wrote wait to be counted.
    unfolded_since: Option<Instant>,
    /// Where each fold's outcome is told (see [`ClickWriter::fold`]).
    told: &'a watch::Sender<Folds>,
}

/// What the writer keeps in memory about what it wrote, all of it also in the database: a
/// writer that loses it (after a panic) only has more to ask of the database.
#[derive(Default)]
struct Kept {
    /// The visitors this writer has committed (see `SeenVisitors`): the writer's alone.
    seen: SeenVisitors,
    unfolded: Unfolded,
}

/// The counts of the clicks this writer logged and has not yet added to `click_counts`, and
/// the rows of the log they are in: when the rows past `click_log_folded` are exactly these
/// (no other process wrote clicks since the last fold, as a rule), a fold adds these sums
/// instead of reading the rows back.
#[derive(Default)]
struct Unfolded {
    sums: FoldSums,
    /// The rows (`seq` ranges, in the order they were written).
    rows: Vec<(i64, i64)>,
}

impl Unfolded {
    /// Whether these are the rows from `after` (exclusive) to `last`, every one of them.
    fn are_the_rows(&self, after: i64, last: i64) -> bool {
        let mut next = after + 1;
        for &(first, end) in &self.rows {
            if first != next {
                return false;
            }
            next = end + 1;
        }
        next == last + 1 && !self.rows.is_empty()
    }
}

/// Most counts rows (link, day and channel) a writer keeps unfolded before it folds: some
/// megabytes of memory (100 bytes or so each), and a fold of a fraction of a second.
const MAX_UNFOLDED: usize = 100_000;

impl Writer<'_> {
    fn write(&mut self, clicks: &[NewClick]) -> StoreResult<u64> {
        let logged = self.guarded(|c, kept| write_batch(c, clicks, kept))?;
        if logged > 0 && self.unfolded_since.is_none() {
            self.unfolded_since = Some(Instant::now());
        }
        Ok(logged)
    }

    /// Counts every click not yet counted. When that fails (counted in `CLICK_FOLD_ERRORS`),
    /// this writer's own clicks are due again a full fold interval later, not at once (a database
    /// that cannot be written is not retried in a loop).
    fn fold(&mut self) -> StoreResult<()> {
        self.fold_then(|| {})
    }

    /// [`Self::fold`], then `before_telling`, then tells the outcome to the callers waiting
    /// in [`ClickWriter::fold`].
    fn fold_then(&mut self, before_telling: impl FnOnce()) -> StoreResult<()> {
        let started = crate::util::now_ms();
        let result = self.guarded(|c, kept| fold(c, &mut kept.unfolded));
        self.unfolded_since = match result {
            Ok(()) => None,
            Err(_) => {
                metrics::counter!(crate::app::metrics::CLICK_FOLD_ERRORS).increment(1);
                self.unfolded_since.map(|_| Instant::now())
            }
        };
        before_telling();
        let failed = result.as_ref().err().map(|e| match e.unavailable() {
            Some(_) => Lag::Busy,
            None => Lag::Failed,
        });
        self.told.send_modify(|f| {
            if failed.is_none() {
                f.ok_at = started;
            }
            f.failed = failed;
        });
        result
    }

    /// Runs `f` on the connection (opened if need be). A panic fails this job, not the writer:
    /// clicks stay queued for the retry, logged clicks stay logged, and the next job starts
    /// from a fresh connection and nothing kept.
    fn guarded<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &mut Kept) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let (target, conn, kept) = (self.target, &mut self.conn, &mut self.kept);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let c = match conn {
                Some(c) => c,
                None => conn.insert(open(target)?),
            };
            f(c, kept)
        }))
        .unwrap_or_else(|_| {
            *kept = Kept::default();
            Err(StoreError::Writer(
                "the click writer failed on a batch; it will be written again".into(),
            ))
        });
        if result.is_err() {
            // Open afresh for the retry rather than keep a connection in an unknown state.
            *conn = None;
        }
        result
    }
}

fn open(target: &Target) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = match target {
        Target::File(path) => Connection::open_with_flags(path, flags)?,
        // SQLite keeps a memdb database's journal in memory by itself.
        Target::Memory(name) => Connection::open_with_flags_and_vfs(name, flags, "memdb")?,
    };
    conn.busy_timeout(crate::store::db::SQLITE_BUSY_TIMEOUT)?;
    // No foreign-key checks: the writer adds counts only for links that exist, checked in
    // the same statement under the write lock (see `fold`); the check would look the link up
    // a second time and make each of those statements keep a journal of its own.
    // Deleting a link (the pool's connections, with the checks on) still deletes its counts.
    conn.pragma_update(None, "foreign_keys", false)?;
    // As the pool's connections (see `db::connect_with`).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(
        None,
        "wal_autocheckpoint",
        crate::store::db::SQLITE_WAL_AUTOCHECKPOINT,
    )?;
    // Within a statement too: SQLite calls this every YIELD_CHECK_OPS steps (never interrupting).
    conn.progress_handler(
        YIELD_CHECK_OPS,
        Some(|| {
            pace();
            false
        }),
    )?;
    Ok(conn)
}

/// How long the writer works at most before it offers the CPU to whatever else waits for it
/// (see [`pace`]).
const YIELD_EVERY: Duration = Duration::from_micros(100);

/// SQLite's virtual-machine steps between two calls of [`pace`] in a statement (a few µs of
/// work).
const YIELD_CHECK_OPS: std::ffi::c_int = 1000;

thread_local! {
    /// When this thread last offered the CPU (see [`pace`]).
    static OFFERED_AT: std::cell::Cell<Instant> = std::cell::Cell::new(Instant::now());
}

/// Offers the CPU (`sched_yield`) once [`YIELD_EVERY`] has passed since this thread last did:
/// what the writer's loops call between clicks, and SQLite between steps of a statement.
///
/// The writer runs at a lower priority than the threads that answer requests, but Linux lets
/// a thread it has just picked run out a slice (0.75 ms or more, up to the next tick) before a
/// thread that wakes can preempt it. A batch of 500 clicks is about that much work, so each
/// batch held back the redirects that arrived while it ran, on a server with one CPU to spare;
/// a yield gives them the CPU within 100 µs, and costs a look at the clock (and, every 100 µs,
/// a system call) when nothing waits. Measured in BENCHMARKS.md (2026-12-07, eighth session).
fn pace() {
    OFFERED_AT.with(|at| {
        if at.get().elapsed() >= YIELD_EVERY {
            std::thread::yield_now();
            at.set(Instant::now());
        }
    });
}

/// Writes a batch in one transaction: the clicks to the log (see [`click_log`]: a click whose
/// id is already stored is skipped), each marked unique when it is its visitor's first on its
/// link that day, and the visitors new on their link that day. Returns how many clicks were
/// logged. Their counts are added later (see [`fold`]); until then `kept` has them.
fn write_batch(conn: &mut Connection, clicks: &[NewClick], kept: &mut Kept) -> StoreResult<u64> {
    let seen = &kept.seen;
    let Some(keep_from) = seen::kept_from(clicks) else {
        return Ok(0);
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // The visitors of this batch that were not known to be in `click_visitors`.
    let mut visitors = HashSet::new();
    let logged = {
        let mut visit = tx.prepare_cached(
            "INSERT INTO click_visitors (day, link_id, visitor) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING",
        )?;
        click_log::log_batch(&tx, clicks, |c| {
            pace();
            // A visitor's first click on a link on a day is unique. The visitors this writer
            // committed are known without asking (most clicks stop there); an insert finds
            // the others, once per batch.
            let (ClickKind::Click, Some(v)) = (c.kind, c.visitor) else {
                return Ok(false);
            };
            let (day, link) = (day_of(c.at), c.link_id.as_str());
            Ok(!seen.contains(day, link, &v)
                && visitors.insert((day, link, v))
                && visit.execute(params![day, link, &v[..]])? == 1)
        })?
    };
    tx.prepare_cached("DELETE FROM click_visitors WHERE day < ?1")?
        .execute([keep_from])?;
    tx.commit()?;
    kept.seen.extend(visitors.into_iter(), keep_from);
    if let Some(rows) = logged.rows {
        kept.unfolded.rows.push(rows);
        for &(c, unique) in &logged.clicks {
            pace();
            let n = Counts::of(c.kind, unique);
            kept.unfolded
                .sums
                .add((c.link_id.as_str(), day_of(c.at), channel_of(c)), n);
        }
    }
    Ok(logged.clicks.len() as u64)
}

/// Adds every click not yet counted to `click_counts`: the rows of the click log past
/// `click_log_folded`, and rows of `click_count_deltas` left from before the log (migration
/// 0004). Under SQLite's write lock, so each click is added once, whichever process folds it.
/// Statistics call this before every read: when there is nothing to fold, it only reads, and
/// takes no lock.
fn fold(conn: &mut Connection, unfolded: &mut Unfolded) -> StoreResult<()> {
    fold_deltas(conn)?;
    // Taken whatever happens next: should adding them fail, the rows are in the log.
    let mine = std::mem::take(unfolded);
    if !mine.rows.is_empty() {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (folded, last): (i64, i64) = tx
            .prepare_cached(
                "SELECT seq, (SELECT COALESCE(MAX(seq), 0) FROM click_log) FROM click_log_folded",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if mine.are_the_rows(folded, last) {
            add_to_counts(&tx, &mine.sums)?;
            tx.prepare_cached("UPDATE click_log_folded SET seq = ?1")?
                .execute([last])?;
            tx.commit()?;
            return Ok(());
        }
        // Another process logged clicks too, or folded some of these: the log says what to add.
    }
    fold_log(conn)
}

/// Adds the clicks of the click log's rows past `click_log_folded` to `click_counts` and moves
/// it past them, up to [`FOLD_LOG_ROWS`] rows a transaction. A row written by a later version
/// of botlink (during an upgrade, say) stops the fold, with an error, before it: it is that
/// version's to count, and the rows after it wait for it too.
fn fold_log(conn: &mut Connection) -> StoreResult<()> {
    let pending: bool = conn
        .prepare_cached(
            "SELECT (SELECT seq FROM click_log_folded) \
             < (SELECT COALESCE(MAX(seq), 0) FROM click_log)",
        )?
        .query_row([], |r| r.get(0))?;
    if !pending {
        return Ok(());
    }
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let folded: i64 = tx.query_row("SELECT seq FROM click_log_folded", [], |r| r.get(0))?;
        let mut sums = FoldSums::default();
        let (mut read, mut last, mut newer) = (0, folded, None);
        {
            let mut select = tx.prepare_cached(
                "SELECT seq, ms, clicks FROM click_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut rows = select.query(params![folded, FOLD_LOG_ROWS])?;
            while let Some(row) = rows.next()? {
                let (seq, ms): (i64, i64) = (row.get(0)?, row.get(1)?);
                let decoded = row
                    .get_ref(2)?
                    .as_blob()
                    .map_or(Err(Undecodable::Damaged), |b| click_log::decode_row(ms, b));
                match decoded {
                    Ok(clicks) => {
                        for c in clicks {
                            pace();
                            let n = Counts::of(c.kind, c.unique);
                            sums.add((c.link_id, day_of(c.at), c.channel), n);
                        }
                    }
                    Err(Undecodable::Version(v)) => {
                        newer = Some(v);
                        break;
                    }
                    // Damaged: it would stop every later fold, so its clicks go uncounted, with
                    // a trace (they stay in the log).
                    Err(Undecodable::Damaged) => {
                        tracing::error!(seq, "not counting an unreadable row of the click log");
                    }
                }
                read += 1;
                last = seq;
            }
        }
        if last > folded {
            add_to_counts(&tx, &sums)?;
            tx.prepare_cached("UPDATE click_log_folded SET seq = ?1")?
                .execute([last])?;
            tx.commit()?;
        }
        if let Some(v) = newer {
            return Err(StoreError::Writer(format!(
                "clicks written by a later version of botlink (click log format {v}) wait \
                 for it to count them"
            )));
        }
        if read < FOLD_LOG_ROWS {
            return Ok(());
        }
    }
}

/// Most rows of the click log added to the counts in one transaction: 20 s of a busy
/// server's (a row a millisecond), so that each counts row is added to once per fold; a
/// backlog, after folds failed for a while, is folded in several transactions, so that none
/// holds the write lock for long.
const FOLD_LOG_ROWS: u32 = 20_000;

/// Adds the rows of `click_count_deltas` (the counts of batches written before migration
/// 0004) to `click_counts` and deletes them, up to [`FOLD_ROWS`] rows to a transaction.
fn fold_deltas(conn: &mut Connection) -> StoreResult<()> {
    let pending: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM click_count_deltas)")?
        .query_row([], |r| r.get(0))?;
    if !pending {
        return Ok(());
    }
    // Past the rows already handled: one left in place (below) is not read again.
    let mut after = i64::MIN;
    loop {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // The rows are read one at a time and summed as they come: each is tens of kilobytes
        // when a batch spreads over many links, and a fold reads hundreds.
        let mut sums = FoldSums::default();
        let mut done = Vec::new();
        let (mut read, mut last) = (0, after);
        {
            let mut select = tx.prepare_cached(
                "SELECT seq, counts FROM click_count_deltas WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let mut rows = select.query(params![after, FOLD_ROWS])?;
            while let Some(row) = rows.next()? {
                let seq: i64 = row.get(0)?;
                read += 1;
                last = seq;
                let decoded = row
                    .get_ref(1)?
                    .as_blob()
                    .map_or(Err(Undecodable::Damaged), decode_counts);
                match decoded {
                    Ok(rows) => {
                        for (key, n) in rows {
                            sums.add(key, n);
                        }
                        done.push(seq);
                    }
                    // Written by a later version of botlink (during an upgrade, say): left for
                    // it.
                    Err(Undecodable::Version(v)) => {
                        tracing::warn!(seq, version = v, "leaving click counts of a newer format");
                    }
                    // Damaged: it would stop every later fold, so it goes, with a trace.
                    Err(Undecodable::Damaged) => {
                        tracing::error!(seq, "dropping unreadable click counts");
                        done.push(seq);
                    }
                }
            }
        }
        if read == 0 {
            return Ok(());
        }
        add_to_counts(&tx, &sums)?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM click_count_deltas WHERE seq = ?1")?;
            for seq in &done {
                delete.execute([seq])?;
            }
        }
        tx.commit()?;
        if read < FOLD_ROWS {
            return Ok(());
        }
        after = last;
    }
}

/// Adds a fold's sums to `click_counts`. Most counts rows exist after a link's first click of
/// the day: they are added to in place. Only where none exists yet is one inserted, and only
/// for a link that still exists (a link deleted since the redirect keeps its logged clicks,
/// unreachable as a deleted link's are, but gets no counts).
fn add_to_counts(tx: &rusqlite::Transaction<'_>, sums: &FoldSums) -> StoreResult<()> {
    let mut add = tx.prepare_cached(
        "UPDATE click_counts SET clicks = clicks + ?4, \
         unique_clicks = unique_clicks + ?5, previews = previews + ?6 \
         WHERE link_id = ?1 AND day = ?2 AND channel = ?3",
    )?;
    let mut first = tx.prepare_cached(
        "INSERT INTO click_counts (link_id, day, channel, clicks, unique_clicks, previews) \
         SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM links WHERE id = ?1)",
    )?;
    // In the order of the counts' key: each page of the table is then read and changed once,
    // not once per row on it.
    let mut rows: Vec<_> = sums.rows().collect();
    rows.sort_unstable_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    for (link, day, channel, n) in rows {
        let row = params![link, day, channel, n.clicks, n.unique_clicks, n.previews];
        if add.execute(row)? == 0 {
            first.execute(row)?;
        }
    }
    Ok(())
}

/// A fold's sums: by link, then (a link has a row or two) by day and channel. The keys are
/// owned, made once per link: a row of the log (or of deltas) is gone once the next is read.
#[derive(Default)]
struct FoldSums {
    links: hashbrown::HashMap<Box<str>, Vec<DaySum>>,
    /// How many sums: (link, day, channel) keys.
    len: usize,
}

/// One link's sums of a day and a channel.
struct DaySum {
    day: i64,
    channel: Box<str>,
    sums: Counts,
}

impl FoldSums {
    fn add(&mut self, (link, day, channel): DeltaKey<'_>, n: Counts) {
        let of_link = self.links.entry_ref(link).or_default();
        match of_link
            .iter_mut()
            .find(|s| s.day == day && *s.channel == *channel)
        {
            // Each under 2^32 (see `decode_counts`), FOLD_ROWS of them: no overflow.
            Some(DaySum { sums, .. }) => {
                sums.clicks += n.clicks;
                sums.unique_clicks += n.unique_clicks;
                sums.previews += n.previews;
            }
            None => {
                of_link.push(DaySum {
                    day,
                    channel: channel.into(),
                    sums: n,
                });
                self.len += 1;
            }
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn rows(&self) -> impl Iterator<Item = (&str, i64, &str, &Counts)> {
        self.links.iter().flat_map(|(link, of_link)| {
            of_link
                .iter()
                .map(move |s| (&**link, s.day, &*s.channel, &s.sums))
        })
    }
}

/// Most rows of deltas folded in one transaction (a row was a batch's counts): more than a
/// fold interval's batches at a high rate (10 s at 67,000 clicks a second in batches of 500 is
/// 1,340 rows), so that a backlog is folded in several transactions, none of which holds the
/// write lock for long.
const FOLD_ROWS: u16 = 2_000;

/// The version byte that starts an encoding of [`encode_counts`].
const DELTAS_V1: u8 = 1;

/// A batch's counts as one value, as botlink wrote them before the click log (tests write them
/// here, as rows left by an upgrade): [`DELTAS_V1`], then per counts row the link id and the
/// channel (each a 2-byte length and UTF-8), the day (8 bytes) and the three additions (8 bytes
/// each), every number little-endian.
#[cfg(test)]
fn encode_counts(counts: &HashMap<CountKey<'_>, Counts>) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + counts.len() * 64);
    out.push(DELTAS_V1);
    let text = |out: &mut Vec<u8>, s: &str| {
        // Ids and channel names are short; a longer one cannot be a key of ours.
        let len = u16::try_from(s.len()).expect("an id shorter than 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    for (&(link, day, channel), n) in counts {
        text(&mut out, link);
        text(&mut out, channel);
        out.extend_from_slice(&day.to_le_bytes());
        for v in [n.clicks, n.unique_clicks, n.previews] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// A [`CountKey`] read back from a row of deltas (its channel borrowed from the row).
type DeltaKey<'a> = (&'a str, i64, &'a str);

/// Reads an encoding of [`encode_counts`], all of it or nothing.
fn decode_counts(mut b: &[u8]) -> Result<Vec<(DeltaKey<'_>, Counts)>, Undecodable> {
    fn text<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
        let len = u16::from_le_bytes(take(b, 2)?.try_into().ok()?);
        std::str::from_utf8(take(b, usize::from(len))?).ok()
    }
    /// A count: never negative, and far below what could overflow a sum.
    fn count(b: &mut &[u8]) -> Option<i64> {
        let v = i64::from_le_bytes(take(b, 8)?.try_into().ok()?);
        (0..=i64::from(u32::MAX)).contains(&v).then_some(v)
    }
    let (&version, rest) = b.split_first().ok_or(Undecodable::Damaged)?;
    b = rest;
    if version != DELTAS_V1 {
        return Err(Undecodable::Version(version));
    }
    let mut rows = Vec::new();
    while !b.is_empty() {
        let row = (|| {
            let (link, channel) = (text(&mut b)?, text(&mut b)?);
            let day = i64::from_le_bytes(take(&mut b, 8)?.try_into().ok()?);
            let n = Counts {
                clicks: count(&mut b)?,
                unique_clicks: count(&mut b)?,
                previews: count(&mut b)?,
            };
            Some(((link, day, channel), n))
        })();
        rows.push(row.ok_or(Undecodable::Damaged)?);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    /// The writer and an API write take turns at the lock: a write under way holds the
    /// writer back; a write that comes while the writer is in a job waits for its end.
    #[tokio::test]
    async fn an_api_write_and_the_writer_take_turns() {
        let turns = Arc::new(Turns::default());
        // No write under way: the writer goes at once.
        let started = Instant::now();
        take_turn(&turns);
        assert!(started.elapsed() < GIVE_WAY, "nobody waits");
        assert!(turns.busy.load(Ordering::Acquire));

        // A write arrives while the writer is in its job: it is ready once the job ends.
        turns.waiting.fetch_add(1, Ordering::AcqRel);
        let turn = WriteTurn(turns.clone());
        let writer = {
            let turns = turns.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                end_turn(&turns);
                // The write is still under way: the writer's next job waits for it.
                let waited = Instant::now();
                take_turn(&turns);
                waited.elapsed()
            })
        };
        let asked = Instant::now();
        turn.ready().await;
        assert!(
            asked.elapsed() >= Duration::from_millis(5),
            "ready only once the writer's job has ended: {:?}",
            asked.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(turn);
        let waited = tokio::task::spawn_blocking(move || writer.join().expect("the writer"))
            .await
            .expect("joined");
        assert!(
            waited >= Duration::from_millis(15) && waited <= GIVE_WAY * 3,
            "the writer held back while the write was under way: {waited:?}"
        );
        assert_eq!(turns.waiting.load(Ordering::Acquire), 0);

        // A write that never ends holds the writer back no longer than GIVE_WAY.
        end_turn(&turns);
        turns.waiting.fetch_add(1, Ordering::AcqRel);
        let waited = Instant::now();
        take_turn(&turns);
        assert!(waited.elapsed() >= GIVE_WAY);
    }

    use std::collections::BTreeMap;

    use super::*;

    /// Counts rows as the fold leaves them: (link, day, channel) to (clicks, unique, previews).
    type Table = BTreeMap<(String, i64, String), (i64, i64, i64)>;

    /// A database with botlink's schema (its SQLite migrations, in order) and one link,
    /// `lnk_a`.
    fn migrated() -> Connection {
        let c = Connection::open_in_memory().unwrap();
        for sql in [
            include_str!("../../../migrations/sqlite/0001_init.sql"),
            include_str!("../../../migrations/sqlite/0002_click_counts.sql"),
            include_str!("../../../migrations/sqlite/0003_click_count_deltas.sql"),
            include_str!("../../../migrations/sqlite/0004_click_log.sql"),
        ] {
            c.execute_batch(sql).unwrap();
        }
        // As the writer's connection (see `open`); the link's bot need not exist.
        c.pragma_update(None, "foreign_keys", false).unwrap();
        c.execute(
            "INSERT INTO links (id, workspace_id, bot_id, code, channels, scheme, signed, \
             payload, deep_links, created_at, updated_at) \
             VALUES ('lnk_a', 'ws', 'bot', 'a', '[]', 'stored', 0, '{}', '{}', 0, 0)",
            [],
        )
        .unwrap();
        c
    }

    fn store_deltas(c: &Connection, blob: &[u8]) {
        c.execute(
            "INSERT INTO click_count_deltas (counts) VALUES (?1)",
            [blob],
        )
        .unwrap();
    }

    fn counts_table(c: &Connection) -> Table {
        c.prepare("SELECT link_id, day, channel, clicks, unique_clicks, previews FROM click_counts")
            .unwrap()
            .query_map([], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?),
                    (r.get(3)?, r.get(4)?, r.get(5)?),
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn deltas_left(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM click_count_deltas", [], |r| r.get(0))
            .unwrap()
    }

    /// More rows than one transaction folds, each with the link on two days and changing
    /// channels, and a link deleted since its clicks: each row is added once, to the counts
    /// the link already had, and the deleted link gets none.
    #[test]
    fn a_fold_adds_every_row_once() {
        let mut c = migrated();
        c.execute(
            "INSERT INTO click_counts VALUES ('lnk_a', 1, 'telegram', 100, 10, 1)",
            [],
        )
        .unwrap();
        let mut want = Table::from_iter([(("lnk_a".into(), 1, "telegram".into()), (100, 10, 1))]);
        let channels = ["telegram", "", "viber"];
        let rows = i64::from(FOLD_ROWS) + 237;
        for i in 0..rows {
            let mut batch: HashMap<CountKey<'_>, Counts> = HashMap::new();
            for (link, day) in [("lnk_a", 1), ("lnk_a", 2), ("lnk_gone", 1)] {
                let channel = channels[(i + day) as usize % channels.len()];
                let n = Counts {
                    clicks: i % 7 + 1,
                    unique_clicks: i % 3,
                    previews: i % 5,
                };
                if link == "lnk_a" {
                    let w = want.entry((link.into(), day, channel.into())).or_default();
                    *w = (w.0 + n.clicks, w.1 + n.unique_clicks, w.2 + n.previews);
                }
                batch.insert((link, day, channel), n);
            }
            store_deltas(&c, &encode_counts(&batch));
        }
        fold(&mut c, &mut Unfolded::default()).unwrap();
        assert_eq!(counts_table(&c), want);
        assert_eq!(deltas_left(&c), 0);
        fold(&mut c, &mut Unfolded::default()).unwrap();
        assert_eq!(counts_table(&c), want, "nothing is added twice");
    }

    /// Rows of a newer format are left for the version that wrote them, even whole
    /// transactions' worth of them; damaged rows are dropped; the rest are added.
    #[test]
    fn a_fold_leaves_newer_rows_and_drops_damaged_ones() {
        let mut c = migrated();
        let good = encode_counts(
            &one_row()
                .into_iter()
                .map(|((_, d, ch), n)| (("lnk_a", d, ch), n))
                .collect(),
        );
        let mut newer = good.clone();
        newer[0] = DELTAS_V1 + 1;
        for _ in 0..usize::from(FOLD_ROWS) * 2 {
            store_deltas(&c, &newer);
        }
        store_deltas(&c, &[DELTAS_V1, 0xff]);
        store_deltas(&c, &good);
        store_deltas(&c, &newer);
        store_deltas(&c, &[]);
        store_deltas(&c, &good);
        fold(&mut c, &mut Unfolded::default()).unwrap();
        let key = ("lnk_a".to_string(), 19_845, "telegram".to_string());
        assert_eq!(counts_table(&c)[&key], (6, 4, 0));
        let newer_rows = i64::from(FOLD_ROWS) * 2 + 1;
        assert_eq!(deltas_left(&c), newer_rows);
        fold(&mut c, &mut Unfolded::default()).unwrap();
        assert_eq!(counts_table(&c)[&key], (6, 4, 0));
        assert_eq!(deltas_left(&c), newer_rows);
    }

    /// A click at `at` with a botlink click id, by the visitor numbered `visitor`.
    fn timed(link: &str, at: i64, kind: ClickKind, visitor: u8) -> NewClick {
        click_log::timed_click(link, kind, at, Some([visitor; 16]))
    }

    fn log_rows(c: &Connection) -> Vec<(i64, i64)> {
        c.prepare("SELECT ms, COUNT(*) FROM click_log GROUP BY ms ORDER BY ms")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// A batch is a row per millisecond of its ids; a batch that shares a millisecond with
    /// the one before adds a row of its own; a click already logged (a batch written again),
    /// or twice in a batch, is logged once; the first click of a visitor on a link that day
    /// is the unique one, in the order of the clicks' times.
    #[test]
    fn batches_are_logged_a_row_a_millisecond_and_each_click_once() {
        let mut c = migrated();
        let mut kept = Kept::default();
        let t = 1_765_000_000_000;
        let first = [
            timed("lnk_a", t + 1, ClickKind::Click, 1),
            timed("lnk_a", t, ClickKind::Click, 1),
            timed("lnk_a", t, ClickKind::Preview, 2),
            timed("lnk_a", t + 1, ClickKind::Click, 2),
        ];
        assert_eq!(write_batch(&mut c, &first, &mut kept).unwrap(), 4);
        assert_eq!(log_rows(&c), [(t, 1), (t + 1, 1)]);
        let again = first[3].clone();
        let second = [
            timed("lnk_a", t + 1, ClickKind::Click, 3),
            again.clone(),
            timed("lnk_a", t + 2, ClickKind::Click, 3),
            first[0].clone(),
        ];
        let mut twice = second.to_vec();
        twice.push(second[2].clone());
        assert_eq!(write_batch(&mut c, &twice, &mut kept).unwrap(), 2);
        assert_eq!(log_rows(&c), [(t, 1), (t + 1, 2), (t + 2, 1)]);
        // Written again whole: nothing new.
        assert_eq!(write_batch(&mut c, &twice, &mut kept).unwrap(), 0);
        assert_eq!(log_rows(&c), [(t, 1), (t + 1, 2), (t + 2, 1)]);

        let rows: Vec<(i64, Vec<u8>)> = c
            .prepare("SELECT ms, clicks FROM click_log ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let logged: Vec<(String, bool)> = rows
            .iter()
            .flat_map(|(ms, row)| {
                let prefix = crate::util::click_id(*ms).as_str()[..7].to_owned();
                click_log::decode_row(*ms, row)
                    .unwrap()
                    .into_iter()
                    .map(move |l| (format!("{prefix}{}", l.rest), l.unique))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Visitor 1 clicked at t first (unique), then at t + 1; visitor 2's preview is not a
        // click, their click at t + 1 is unique; visitor 3's first is at t + 1.
        let id = |c: &NewClick| c.id.as_str().to_owned();
        assert_eq!(
            logged,
            [
                (id(&first[1]), true),
                (id(&first[2]), false),
                (id(&first[0]), false),
                (id(&first[3]), true),
                (id(&second[0]), true),
                (id(&second[2]), false),
            ]
        );
        // Folded from what the writer kept (it wrote every row since the last fold).
        fold(&mut c, &mut kept.unfolded).unwrap();
        assert!(kept.unfolded.rows.is_empty());
        let day = day_of(t);
        let want = Table::from_iter([
            (("lnk_a".into(), day, "".into()), (0, 0, 1)),
            (("lnk_a".into(), day, "telegram".into()), (5, 3, 0)),
        ]);
        assert_eq!(counts_table(&c), want);
        // Read back from the log, the same counts.
        c.execute_batch("DELETE FROM click_counts; UPDATE click_log_folded SET seq = 0")
            .unwrap();
        fold(&mut c, &mut Unfolded::default()).unwrap();
        assert_eq!(counts_table(&c), want);
    }

    /// Two writers on one database (two processes): neither's kept sums are the whole of the
    /// rows not yet counted, so each fold reads the log, and nothing is counted twice.
    #[test]
    fn writers_that_interleave_fold_from_the_log() {
        let mut c = migrated();
        let (mut a, mut b) = (Kept::default(), Kept::default());
        let t = 1_765_000_000_000;
        for ms in 0..6 {
            let kept = if ms % 2 == 0 { &mut a } else { &mut b };
            let batch = [timed("lnk_a", t + ms, ClickKind::Click, ms as u8)];
            write_batch(&mut c, &batch, kept).unwrap();
        }
        assert!(!a.unfolded.are_the_rows(0, 6) && !b.unfolded.are_the_rows(0, 6));
        fold(&mut c, &mut a.unfolded).unwrap();
        let key = ("lnk_a".to_string(), day_of(t), "telegram".to_string());
        assert_eq!(counts_table(&c)[&key], (6, 6, 0));
        fold(&mut c, &mut b.unfolded).unwrap();
        assert_eq!(
            counts_table(&c)[&key],
            (6, 6, 0),
            "b's were counted from the log"
        );
        // Then a alone: its kept sums again.
        write_batch(
            &mut c,
            &[timed("lnk_a", t + 9, ClickKind::Click, 1)],
            &mut a,
        )
        .unwrap();
        assert!(a.unfolded.are_the_rows(6, 7));
        fold(&mut c, &mut a.unfolded).unwrap();
        assert_eq!(counts_table(&c)[&key], (7, 6, 0));
    }

    /// The log is added to the counts once, past what an earlier fold added, in transactions
    /// of at most FOLD_LOG_ROWS rows; rows of deltas left from before the log are added too;
    /// a deleted link's clicks are not counted; a damaged row is skipped.
    #[test]
    fn a_fold_adds_the_log_once() {
        let mut c = migrated();
        let mut kept = Kept::default();
        let t = 1_765_000_000_000;
        let day = day_of(t);
        store_deltas(&c, &encode_counts(&one_row()));
        let rows = i64::from(FOLD_LOG_ROWS) + 237;
        for ms in 0..rows {
            let batch = [
                timed("lnk_a", t + ms, ClickKind::Click, 1),
                timed("lnk_gone", t + ms, ClickKind::Click, 1),
            ];
            assert_eq!(write_batch(&mut c, &batch, &mut kept).unwrap(), 2);
            if ms == 10 {
                // From what the writer kept.
                fold(&mut c, &mut kept.unfolded).unwrap();
                let key = ("lnk_a".to_string(), day, "telegram".to_string());
                assert_eq!(counts_table(&c)[&key], (11, 1, 0));
            }
        }
        c.execute(
            "UPDATE click_log SET clicks = x'01ff' WHERE seq = (SELECT MAX(seq) FROM click_log)",
            [],
        )
        .unwrap();
        // Read back from the log (as another process would): the damaged row is skipped.
        fold(&mut c, &mut Unfolded::default()).unwrap();
        let want = Table::from_iter([
            (("lnk_a".into(), day, "telegram".into()), (rows - 1, 1, 0)),
            (("lnk_a".into(), 19_845, "telegram".into()), (3, 2, 0)),
        ]);
        assert_eq!(counts_table(&c), want);
        assert_eq!(deltas_left(&c), 0);
        fold(&mut c, &mut kept.unfolded).unwrap();
        assert_eq!(counts_table(&c), want, "nothing is added twice");
    }

    /// A row of a later version's format stops the fold before it, with an error: the rows
    /// before it are added, the rest wait (for that version).
    #[test]
    fn a_newer_row_of_the_log_stops_the_fold_before_it() {
        let mut c = migrated();
        let mut kept = Kept::default();
        let t = 1_765_000_000_000;
        for ms in 0..3 {
            let batch = [timed("lnk_a", t + ms, ClickKind::Click, 1)];
            write_batch(&mut c, &batch, &mut kept).unwrap();
        }
        c.execute(
            "UPDATE click_log SET clicks = x'02' WHERE seq = (SELECT MIN(seq) + 1 FROM click_log)",
            [],
        )
        .unwrap();
        let err = fold(&mut c, &mut Unfolded::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("later version"), "{err}");
        let key = ("lnk_a".to_string(), day_of(t), "telegram".to_string());
        assert_eq!(counts_table(&c)[&key], (1, 1, 0));
        assert!(
            fold(&mut c, &mut Unfolded::default()).is_err(),
            "still waiting"
        );
        assert_eq!(counts_table(&c)[&key], (1, 1, 0));
    }

    /// A batch's counts with one row: 3 clicks, 2 unique, on Telegram.
    fn one_row() -> HashMap<CountKey<'static>, Counts> {
        let n = Counts {
            clicks: 3,
            unique_clicks: 2,
            previews: 0,
        };
        HashMap::from_iter([(("lnk_a", 19_845, "telegram"), n)])
    }

    #[test]
    fn counts_survive_their_encoding() {
        let mut counts = one_row();
        counts.insert(
            ("lnk_b", 19_846, ""),
            Counts {
                clicks: 0,
                unique_clicks: 0,
                previews: 7,
            },
        );
        let blob = encode_counts(&counts);
        let back: HashMap<_, _> = decode_counts(&blob)
            .unwrap()
            .into_iter()
            .map(|(k, n)| (k, (n.clicks, n.unique_clicks, n.previews)))
            .collect();
        assert_eq!(back.len(), 2);
        assert_eq!(back[&("lnk_a", 19_845, "telegram")], (3, 2, 0));
        assert_eq!(back[&("lnk_b", 19_846, "")], (0, 0, 7));
    }

    #[test]
    fn a_damaged_encoding_is_refused_whole() {
        let blob = encode_counts(&one_row());
        for cut in 0..blob.len() {
            let want = match cut {
                1 => Ok(0), // the version alone: no rows
                _ => Err(Undecodable::Damaged),
            };
            assert_eq!(
                decode_counts(&blob[..cut]).map(|r| r.len()),
                want,
                "cut at {cut}"
            );
        }
        let mut two = encode_counts(&one_row());
        two.extend_from_slice(&blob[1..blob.len() - 1]);
        assert_eq!(
            decode_counts(&two).map(|r| r.len()),
            Err(Undecodable::Damaged),
            "a whole row, then a cut one"
        );
        let mut negative = blob.clone();
        let at = negative.len() - 24; // the clicks
        negative[at..at + 8].copy_from_slice(&(-1i64).to_le_bytes());
        assert_eq!(
            decode_counts(&negative).map(|r| r.len()),
            Err(Undecodable::Damaged)
        );
        let mut newer = blob.clone();
        newer[0] = 2;
        assert_eq!(
            decode_counts(&newer).map(|r| r.len()),
            Err(Undecodable::Version(2))
        );
    }
}
