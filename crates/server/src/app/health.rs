//! `/healthz`: whether this instance does its work, and if not, what fails and what to do.
//!
//! It answers from what the service already knows before it asks the database anything: the
//! click recorder's state (see [`crate::redirect::clicks::ClickRecorder::health`]) and how the API's
//! writes have fared lately ([`DatabaseWrites`]). With SQLite, another process that holds the
//! write lock leaves reads, and so a ping, answering: only the writes tell.

use std::sync::atomic::{AtomicI64, AtomicU8, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::error::DatabaseFailed;
use crate::app::AppState;
use crate::redirect::clicks::{ClickHealth, DROP_WINDOW};
use crate::store::Unavailable;

/// How long `/healthz` tells of an API write that failed for the database, unless a write has
/// succeeded since: as long as clients retry after `Retry-After`, failures keep it told; once
/// they stop writing, nothing more is known.
pub const WRITE_FAILURE_WINDOW: Duration = Duration::from_secs(30);

/// The longest `/healthz` waits for the database to answer a ping: a probe gives up soon
/// (Kubernetes' after 1 s by default), and a database that slow fails the API anyway.
pub const PING_WAIT: Duration = Duration::from_secs(2);

/// How the API's writes have fared: when the last succeeded, when the last failed because
/// the database could not serve it (busy or unreachable), and since when they fail.
#[derive(Debug, Default)]
pub struct DatabaseWrites {
    last_ok: AtomicI64,
    last_failed: AtomicI64,
    /// The first failure after the last success; 0 while writes succeed.
    failing_since: AtomicI64,
    /// Why the last failed: 1 busy, 2 unreachable.
    why: AtomicU8,
}

/// API writes failing for the database, as [`DatabaseWrites::failing`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WritesFailing {
    pub why: Unavailable,
    /// Since when (ms since the Unix epoch) every write has failed.
    pub since_ms: i64,
    /// When the last failed.
    pub last_ms: i64,
}

impl DatabaseWrites {
    pub fn succeeded(&self, now_ms: i64) {
        self.last_ok.fetch_max(now_ms, Ordering::Relaxed);
        self.failing_since.store(0, Ordering::Relaxed);
    }

    pub fn failed(&self, now_ms: i64, why: Unavailable) {
        let why = match why {
            Unavailable::Busy => 1,
            Unavailable::Unreachable => 2,
        };
        self.why.store(why, Ordering::Relaxed);
        self.last_failed.fetch_max(now_ms, Ordering::Relaxed);
        let _ =
            self.failing_since
                .compare_exchange(0, now_ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether writes fail: the last one failed, within [`WRITE_FAILURE_WINDOW`] of `now_ms`,
    /// and none has succeeded since.
    pub fn failing(&self, now_ms: i64) -> Option<WritesFailing> {
        let last_ms = self.last_failed.load(Ordering::Relaxed);
        let recent = now_ms.saturating_sub(last_ms) < WRITE_FAILURE_WINDOW.as_millis() as i64;
        if last_ms == 0 || last_ms < self.last_ok.load(Ordering::Relaxed) || !recent {
            return None;
        }
        let since_ms = match self.failing_since.load(Ordering::Relaxed) {
            0 => last_ms,
            since => since.min(last_ms),
        };
        let why = match self.why.load(Ordering::Relaxed) {
            2 => Unavailable::Unreachable,
            _ => Unavailable::Busy,
        };
        Some(WritesFailing {
            why,
            since_ms,
            last_ms,
        })
    }
}

/// Keeps [`DatabaseWrites`] told: an API write that succeeded, or one that failed because the
/// database could not serve it (its answer carries [`DatabaseFailed`]). Reads tell nothing
/// about the write lock, and other failures (the caller's) nothing about the database. While a
/// write is under way it holds a [`crate::store::WriteTurn`], so that on SQLite it does not
/// wait behind batch after batch of clicks for the write lock.
pub async fn track_writes(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    // Held until the answer: SQLite's click writer lets the write go first.
    let turn = if write { state.write_turn() } else { None };
    if let Some(turn) = &turn {
        turn.ready().await;
    }
    let resp = next.run(req).await;
    drop(turn);
    if write {
        let now = crate::util::now_ms();
        if let Some(DatabaseFailed(why)) = resp.extensions().get::<DatabaseFailed>() {
            state.database_writes().failed(now, *why);
        } else if resp.status().is_success() {
            state.database_writes().succeeded(now);
        }
    }
    resp
}

/// 200 `{"status": "ok"}` when clicks are recorded and written, API writes succeed and the
/// database answers; else 503 with a status word and a message that says what fails and what
/// to do, for the first of these that fails.
pub async fn healthz(State(state): State<AppState>) -> Response {
    match problem(&state).await {
        None => (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response(),
        Some(body) => {
            tracing::warn!(status = %body["status"], message = %body["message"], "health check failed");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
        }
    }
}

/// What `/healthz` tells of the first thing that fails, if one does.
async fn problem(state: &AppState) -> Option<Value> {
    let config = state.config();
    let now = crate::util::now_ms();
    let clicks = state.recorder().health(config.click_write_grace);
    match clicks {
        ClickHealth::Stopped => {
            return Some(json!({
                "status": "clicks not recorded",
                "message": "the click worker has stopped (see the log for why): restart botlink",
            }));
        }
        ClickHealth::Dropping { ago_ms, dropped } => {
            return Some(json!({
                "status": "clicks dropped",
                "message": format!(
                    "a click was dropped {} s ago ({dropped} since the start): the click queue \
                     (room for {}) stayed full, as the database takes clicks slower than they \
                     arrive or not at all; see the log for why writes are slow or fail, and \
                     raise --click-queue if bursts outgrow it. This clears {} s after the last \
                     drop",
                    ago_ms / 1000,
                    config.click_queue,
                    DROP_WINDOW.as_secs(),
                ),
                "clicks_dropped": dropped,
            }));
        }
        ClickHealth::Ok | ClickHealth::Stuck { .. } => {}
    }
    if let Some(failing) = state.database_writes().failing(now) {
        let (status, why) = match failing.why {
            Unavailable::Busy => (
                "database busy",
                "the database stayed locked longer than a request waits for it: another \
                 process holds SQLite's write lock (a backup, a long transaction, a second \
                 botlink on the same file?), or every connection is in use; find it and end it",
            ),
            Unavailable::Unreachable => (
                "database unavailable",
                "the database cannot be reached: check that it runs and that this instance can \
                 reach it",
            ),
        };
        return Some(json!({
            "status": status,
            "message": format!(
                "API writes have failed for {} s, the last {} s ago, answered 503 with \
                 Retry-After: {why} (see the log). This clears at the next write that succeeds",
                (now - failing.since_ms) / 1000,
                (now - failing.last_ms) / 1000,
            ),
        }));
    }
    if let ClickHealth::Stuck { for_ms, waiting } = clicks {
        return Some(json!({
            "status": "clicks not written",
            "message": format!(
                "a batch of clicks has waited {} s for the database (see the log for why); \
                 {waiting} more clicks wait in the queue, which holds {}: clicks are \
                 dropped once it is full",
                for_ms / 1000,
                config.click_queue,
            ),
            "clicks_waiting": waiting,
        }));
    }
    let ping = tokio::time::timeout(PING_WAIT, state.ping()).await;
    let why = match ping {
        Ok(Ok(())) => return None,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: the database does not answer");
            "it answered with an error (see the log)".to_owned()
        }
        Err(_) => format!("it did not answer within {} s", PING_WAIT.as_secs()),
    };
    Some(json!({
        "status": "database unavailable",
        "message": format!(
            "the database was pinged and {why}: check that it runs, that this instance can \
             reach it, and that its connections are not all held by slow requests"
        ),
    }))
}
