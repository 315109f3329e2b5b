//! The Start flow's workers: what happens after a messenger's update is stored.
//!
//! Three loops, each claiming work from the database with a lease (so that work an instance
//! dies with is taken up again by another, or by itself after a restart):
//! - the inbox (`start.rs`): an update becomes a contact, a Start attributed to its link,
//!   and the scenario's run up to its first request: the messages and the delivery it causes
//!   are written in the same transaction that marks the update done;
//! - the outbox (`send.rs`): messages sent through each channel's API, a contact's in order,
//!   retried while the platform says so;
//! - deliveries (`deliver.rs`): `send_me` / `send_request` made to the CRM, signed, retried on
//!   the retry schedule; the first attempt's outcome takes the scenario on along `ok` or
//!   `not_ok`.
//!
//! `run.rs` drives a scenario run and turns its effects into rows; `creds.rs` opens a bot
//! channel's secrets into what its sender needs; `call.rs` is call_node.

pub mod call;
pub mod creds;
pub mod deliver;
pub mod run;
pub mod send;
pub mod start;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::crypto::SecretKey;
use crate::outbound::Outbound;
use crate::store::{BotStore, FlowStore, LinkStore, StoreError};

/// How often a worker looks for work that has come due (a retry's time) when nothing woke it.
const POLL: Duration = Duration::from_millis(250);
/// How long a claimed update, message or delivery stays leased to the worker that claimed
/// it: past this, another claim takes it (the worker died, or hangs). Above the outbound
/// client's total timeout (15 s), with room to commit.
pub const LEASE_MS: i64 = 60_000;

/// Wakes the workers when there is new work, rather than waiting for their next look.
#[derive(Debug, Default)]
pub struct Wake {
    pub inbox: Notify,
    pub outbox: Notify,
    pub deliveries: Notify,
}

/// What the workers work with.
pub struct Flow {
    pub flow: Arc<dyn FlowStore>,
    pub bots: Arc<dyn BotStore>,
    pub links: Arc<dyn LinkStore>,
    pub secret: SecretKey,
    pub outbound: Outbound,
    /// The wait after each failed delivery attempt in turn.
    pub retry_schedule: Vec<Duration>,
    pub wake: Arc<Wake>,
}

/// A failure processing one piece of work; it is retried.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Domain(#[from] crate::domain::DomainError),
    #[error("{0}")]
    Other(String),
}

/// Starts the three workers; they stop (finishing the work in hand) when `stop` fires.
pub fn spawn(flow: Arc<Flow>, stop: CancellationToken) -> TaskTracker {
    let tasks = TaskTracker::new();
    {
        let f = flow.clone();
        let s = stop.clone();
        tasks.spawn(worker("inbox", s, move || {
            let f = f.clone();
            async move { start::process_due(&f).await }
        }, flow.clone(), |w| &w.inbox));
    }
    {
        let f = flow.clone();
        let s = stop.clone();
        tasks.spawn(worker("outbox", s, move || {
            let f = f.clone();
            async move { send::send_due(&f).await }
        }, flow.clone(), |w| &w.outbox));
    }
    {
        let f = flow.clone();
        tasks.spawn(worker("deliveries", stop, move || {
            let f = f.clone();
            async move { deliver::deliver_due(&f).await }
        }, flow, |w| &w.deliveries));
    }
    tasks.close();
    tasks
}

/// Runs `step` (which claims and does a batch, returning how many it did) until `stop`:
/// again at once after a full batch, else after a wake-up or [`POLL`].
async fn worker<F, Fut>(
    name: &'static str,
    stop: CancellationToken,
    mut step: F,
    flow: Arc<Flow>,
    notify: fn(&Wake) -> &Notify,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<usize, StoreError>>,
{
    let mut failing = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let woken = notify(&flow.wake).notified();
        match step().await {
            Ok(n) => {
                if failing {
                    tracing::info!(worker = name, "the worker reaches the database again");
                    failing = false;
                }
                if n > 0 {
                    continue;
                }
            }
            Err(e) => {
                // Once an outage, not once a poll.
                if !failing {
                    tracing::error!(worker = name, error = %e, "the worker cannot claim work");
                    failing = true;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = woken => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Epoch milliseconds now.
pub(crate) fn now_ms() -> i64 {
    crate::util::now_ms()
}
