//! Click recording off the request path: handlers push clicks into a bounded queue; one
//! worker writes them in batches. When the queue is full, a redirect waits briefly for room
//! (so that a server at its limit slows down instead of losing clicks), then drops the click
//! and counts the drop (exported as `botlink_clicks_dropped_total`). Clicks are append-only
//! rows, so counting never contends on one hot row. On shutdown the worker drains the queue.
//! `/healthz` asks [`ClickRecorder::health`] whether clicks are being written, and dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::metrics::{
    CLICK_FLUSH_ERRORS, CLICK_QUEUE_DEPTH, CLICKS_DROPPED, CLICKS_FLUSHED, CLICKS_QUEUED,
};
use crate::store::{ClickStore, NewClick};

/// Counters of this recorder (also exported as metrics).
#[derive(Debug, Default)]
pub struct ClickCounters {
    pub queued: AtomicU64,
    pub dropped: AtomicU64,
    /// Since when (ms since the Unix epoch) the batch being written has been trying: set when
    /// a batch's first attempt starts, cleared when it is written; 0 while nothing is being
    /// written.
    writing_since: AtomicI64,
    /// When (ms since the Unix epoch) a click was last dropped for want of room in the
    /// queue; 0 if none has been.
    last_drop: AtomicI64,
    /// When the oldest click of the batch being written was made; 0 while nothing is being
    /// written.
    unwritten_from: AtomicI64,
}

/// Whether clicks are being written, for `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClickHealth {
    /// No batch has been waiting for the database longer than the grace given.
    Ok,
    /// A batch has been failing, or waiting, for this long: clicks wait in memory (`waiting`
    /// of them in the queue) and are dropped once the queue is full.
    Stuck { for_ms: i64, waiting: usize },
    /// The worker has stopped (it failed; or the server is stopping and has written the
    /// queue): clicks are no longer recorded.
    Stopped,
    /// Clicks were dropped within [`DROP_WINDOW`], the last `ago_ms` ago: the queue was full
    /// (`dropped`: how many since the start).
    Dropping { ago_ms: i64, dropped: u64 },
}

/// How long `/healthz` tells of a dropped click: long enough that a readiness probe asking
/// every 10 s (Kubernetes' default period) sees a burst of drops between two of its asks.
pub const DROP_WINDOW: Duration = Duration::from_secs(15);

/// The handlers' side of the queue.
#[derive(Clone)]
pub struct ClickRecorder {
    tx: mpsc::Sender<NewClick>,
    pub counters: Arc<ClickCounters>,
    /// The exported counters, registered once rather than looked up on every click.
    queued_total: metrics::Counter,
    dropped_total: metrics::Counter,
    /// How long a redirect waits for room in a full queue (see [`ClickSettings::full_wait`]).
    full_wait: Duration,
}

impl ClickRecorder {
    fn new(tx: mpsc::Sender<NewClick>, full_wait: Duration) -> Self {
        ClickRecorder {
            tx,
            full_wait,
            counters: Arc::default(),
            queued_total: metrics::counter!(CLICKS_QUEUED),
            dropped_total: metrics::counter!(CLICKS_DROPPED),
        }
    }

    /// Queues a click if there is room now; gives it back when the queue is full (then
    /// [`ClickRecorder::record`] waits for room). A click that comes after the queue has
    /// closed (the server is stopping) is dropped and counted.
    pub fn try_record(&self, click: NewClick) -> Result<(), NewClick> {
        match self.tx.try_send(click) {
            Ok(()) => self.count(true),
            Err(mpsc::error::TrySendError::Full(click)) => return Err(click),
            Err(mpsc::error::TrySendError::Closed(_)) => self.count(false),
        }
        Ok(())
    }

    /// Queues a click. When the queue is full (the writer is behind), waits up to
    /// [`ClickSettings::full_wait`] for room, so that redirects slow down a little rather than lose clicks;
    /// then drops the click and counts the drop. Returns whether the click was queued.
    pub async fn record(&self, click: NewClick) -> bool {
        let queued = match self.tx.try_send(click) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(click)) => {
                let queued = self.tx.send_timeout(click, self.full_wait).await.is_ok();
                if !queued && !self.tx.is_closed() {
                    let now = crate::util::now_ms().max(1);
                    self.counters.last_drop.store(now, Ordering::Relaxed);
                }
                queued
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        };
        self.count(queued);
        queued
    }

    /// Whether clicks are being recorded: [`ClickHealth::Dropping`] while one was dropped
    /// within [`DROP_WINDOW`], [`ClickHealth::Stuck`] once one batch has been trying to reach
    /// the database for longer than `grace` (failing and retried, or waiting for a lock).
    pub fn health(&self, grace: Duration) -> ClickHealth {
        if self.tx.is_closed() {
            return ClickHealth::Stopped;
        }
        let now = crate::util::now_ms();
        let last_drop = self.counters.last_drop.load(Ordering::Relaxed);
        let ago_ms = now.saturating_sub(last_drop);
        if last_drop != 0 && ago_ms < DROP_WINDOW.as_millis() as i64 {
            return ClickHealth::Dropping {
                ago_ms,
                dropped: self.counters.dropped.load(Ordering::Relaxed),
            };
        }
        let since = self.counters.writing_since.load(Ordering::Relaxed);
        let for_ms = now.saturating_sub(since);
        if since == 0 || for_ms < grace.as_millis() as i64 {
            return ClickHealth::Ok;
        }
        ClickHealth::Stuck {
            for_ms,
            waiting: self.tx.max_capacity() - self.tx.capacity(),
        }
    }

    /// When a batch has been trying to reach the database for longer than `patience`: when
    /// the oldest click not yet written was made (ms since the Unix epoch). Statistics lack
    /// the clicks made since, and say so.
    pub fn unwritten_from(&self, patience: Duration) -> Option<i64> {
        let since = self.counters.writing_since.load(Ordering::Relaxed);
        let for_ms = crate::util::now_ms().saturating_sub(since);
        if since == 0 || for_ms < patience.as_millis() as i64 {
            return None;
        }
        match self.counters.unwritten_from.load(Ordering::Relaxed) {
            0 => Some(since),
            from => Some(from.min(since)),
        }
    }

    fn count(&self, queued: bool) {
        if queued {
            self.counters.queued.fetch_add(1, Ordering::Relaxed);
            self.queued_total.increment(1);
        } else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            self.dropped_total.increment(1);
        }
    }
}

/// The longest a redirect waits for room in a full click queue before its click is dropped,
/// unless configured otherwise: long enough for a writer that fell behind by a batch to catch
/// up, short enough that a person does not notice.
pub const FULL_WAIT: Duration = Duration::from_millis(200);

/// Settings of the click worker.
#[derive(Debug, Clone, Copy)]
pub struct ClickSettings {
    pub capacity: usize,
    pub batch: usize,
    pub flush_after: Duration,
    /// How long a redirect waits for room in a full queue before its click is dropped
    /// ([`FULL_WAIT`] by default).
    pub full_wait: Duration,
}

/// Starts the worker; it stops, after writing every queued click, once `stop` is cancelled.
pub fn start(
    store: Arc<dyn ClickStore>,
    settings: ClickSettings,
    stop: CancellationToken,
) -> (ClickRecorder, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(settings.capacity.max(1));
    let recorder = ClickRecorder::new(tx, settings.full_wait);
    let worker = tokio::spawn(run(store, rx, settings, stop, recorder.counters.clone()));
    (recorder, worker)
}

async fn run(
    store: Arc<dyn ClickStore>,
    mut rx: mpsc::Receiver<NewClick>,
    settings: ClickSettings,
    stop: CancellationToken,
    counters: Arc<ClickCounters>,
) {
    let writes = Writes {
        store: &*store,
        counters: &counters,
    };
    let mut batch: Vec<NewClick> = Vec::with_capacity(settings.batch);
    loop {
        // Wait for the first click of a batch, or for the stop signal.
        let first = tokio::select! {
            biased;
            c = rx.recv() => c,
            _ = stop.cancelled() => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        // Let a burst gather for up to `flush_after` (one timer per batch, not per click), so
        // it becomes one write; unless a full batch is already waiting.
        if rx.len() + 1 < settings.batch {
            tokio::select! {
                biased;
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(settings.flush_after) => {}
            }
        }
        while batch.len() < settings.batch {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
            // This runs on the threads that answer requests: let them in now and then.
            if batch.len().is_multiple_of(256) {
                tokio::task::yield_now().await;
            }
        }
        writes.write(&mut batch, false).await;
        metrics::gauge!(CLICK_QUEUE_DEPTH).set(rx.len() as f64);
    }
    // Shutting down: no new clicks arrive (the server has stopped); write what is queued.
    rx.close();
    while let Some(c) = rx.recv().await {
        batch.push(c);
        if batch.len() >= settings.batch {
            writes.write(&mut batch, true).await;
        }
    }
    writes.write(&mut batch, true).await;
    metrics::gauge!(CLICK_QUEUE_DEPTH).set(0.0);
}

/// The worker's writes: to the store, telling the counters while a batch is being written.
struct Writes<'a> {
    store: &'a dyn ClickStore,
    counters: &'a ClickCounters,
}

impl Writes<'_> {
    /// Writes a batch (see [`write`]), marking the time it started until it is done.
    async fn write(&self, batch: &mut Vec<NewClick>, final_flush: bool) {
        if batch.is_empty() {
            return;
        }
        let (since, from) = (&self.counters.writing_since, &self.counters.unwritten_from);
        let oldest = batch.iter().map(|c| c.at).min().unwrap_or(0);
        from.store(oldest.max(1), Ordering::Relaxed);
        since.store(crate::util::now_ms().max(1), Ordering::Relaxed);
        write(self.store, batch, final_flush).await;
        since.store(0, Ordering::Relaxed);
        from.store(0, Ordering::Relaxed);
    }
}

/// Writes a batch, retrying with backoff while the database is unavailable. While running it
/// retries without end (clicks wait, the queue absorbs); at shutdown it gives up after a few
/// tries and logs how many clicks were lost.
async fn write(store: &dyn ClickStore, batch: &mut Vec<NewClick>, final_flush: bool) {
    // Shared with the store, which may hand it to a thread of its own, and kept for a retry.
    let rows: Arc<[NewClick]> = batch.drain(..).collect();
    let mut delay = Duration::from_millis(50);
    let mut tries = 0;
    loop {
        match store.insert_clicks(rows.clone()).await {
            Ok(_) => {
                metrics::counter!(CLICKS_FLUSHED).increment(rows.len() as u64);
                return;
            }
            Err(e) => {
                tries += 1;
                metrics::counter!(CLICK_FLUSH_ERRORS).increment(1);
                if final_flush && tries >= 5 {
                    tracing::error!(error = %e, lost = rows.len(), "could not write clicks at shutdown");
                    return;
                }
                tracing::warn!(error = %e, clicks = rows.len(), "writing clicks failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ClickKind;

    fn click() -> NewClick {
        NewClick {
            id: crate::util::click_id(0).as_str().into(),
            link_id: "lnk_1".into(),
            channel: Some(botlink_core::Channel::Telegram),
            kind: ClickKind::Click,
            at: 0,
            visitor: Some([0; 16]),
        }
    }

    #[test]
    fn a_click_that_finds_no_room_now_is_handed_back() {
        let (tx, mut rx) = mpsc::channel(1);
        let recorder = ClickRecorder::new(tx, FULL_WAIT);
        assert!(recorder.try_record(click()).is_ok());
        assert!(
            recorder.try_record(click()).is_err(),
            "full: for the caller to wait"
        );
        assert_eq!(recorder.counters.queued.load(Ordering::Relaxed), 1);
        assert_eq!(recorder.counters.dropped.load(Ordering::Relaxed), 0);
        // Closed (the server stops): nobody will write it; dropped and counted.
        rx.close();
        assert!(recorder.try_record(click()).is_ok());
        assert_eq!(recorder.counters.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn health_tells_a_batch_stuck_past_the_grace_and_a_stopped_worker() {
        let (tx, mut rx) = mpsc::channel(4);
        let recorder = ClickRecorder::new(tx, FULL_WAIT);
        let grace = Duration::from_secs(10);
        assert_eq!(
            recorder.health(grace),
            ClickHealth::Ok,
            "nothing written yet"
        );
        recorder.try_record(click()).unwrap();
        let since = &recorder.counters.writing_since;
        since.store(crate::util::now_ms() - 2_000, Ordering::Relaxed);
        assert_eq!(
            recorder.health(grace),
            ClickHealth::Ok,
            "2 s: within the grace"
        );
        since.store(crate::util::now_ms() - 12_000, Ordering::Relaxed);
        match recorder.health(grace) {
            ClickHealth::Stuck { for_ms, waiting } => {
                assert!((12_000..13_000).contains(&for_ms), "{for_ms}");
                assert_eq!(waiting, 1);
            }
            other => panic!("{other:?}"),
        }
        since.store(0, Ordering::Relaxed);
        assert_eq!(recorder.health(grace), ClickHealth::Ok, "written");
        rx.close();
        assert_eq!(recorder.health(grace), ClickHealth::Stopped);
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_room_then_drops_and_counts() {
        let (tx, mut rx) = mpsc::channel(1);
        let recorder = ClickRecorder::new(tx, FULL_WAIT);
        assert!(recorder.record(click()).await, "room: queued at once");

        // Full, and nobody takes from the queue: dropped after waiting FULL_WAIT.
        let started = tokio::time::Instant::now();
        assert!(!recorder.record(click()).await);
        assert!(started.elapsed() >= FULL_WAIT);
        assert_eq!(recorder.counters.dropped.load(Ordering::Relaxed), 1);
        match recorder.health(Duration::from_secs(10)) {
            ClickHealth::Dropping { ago_ms, dropped } => {
                assert!((0..1_000).contains(&ago_ms), "{ago_ms}");
                assert_eq!(dropped, 1);
            }
            other => panic!("a drop just now: {other:?}"),
        }
        let last_drop = &recorder.counters.last_drop;
        last_drop.store(
            crate::util::now_ms() - DROP_WINDOW.as_millis() as i64,
            Ordering::Relaxed,
        );
        assert_eq!(
            recorder.health(Duration::from_secs(10)),
            ClickHealth::Ok,
            "the drop is past the window"
        );

        // Full, but the writer takes one while the redirect waits: queued, nothing lost.
        let waiting = {
            let recorder = recorder.clone();
            tokio::spawn(async move { recorder.record(click()).await })
        };
        tokio::time::sleep(FULL_WAIT / 4).await;
        assert!(rx.recv().await.is_some());
        assert!(waiting.await.expect("the task ends"));
        assert_eq!(recorder.counters.queued.load(Ordering::Relaxed), 2);
        assert_eq!(recorder.counters.dropped.load(Ordering::Relaxed), 1);
    }
}
