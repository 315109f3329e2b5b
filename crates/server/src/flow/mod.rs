//! The Start flow's workers: what happens after a messenger's update is stored.
//!
//! Four loops, each claiming work from the database with a lease (so that work an instance
//! dies with is taken up again by another, or by itself after a restart):
//! - the inbox (`start.rs`): an update becomes a contact, a Start attributed to its link,
//!   and the scenario's run up to its first request: the messages and the delivery it causes
//!   are written in the same transaction that marks the update done;
//! - the outbox (`send.rs`): messages sent through each channel's API, a contact's in order,
//!   retried while the platform says so;
//! - deliveries (`deliver.rs`): `send_me` / `send_request` made to the CRM, signed, retried on
//!   the retry schedule; the first attempt's outcome takes the scenario on along `ok` or
//!   `not_ok`;
//! - runs (`call.rs`): the recipients of call_node runs for many, from the run's `send_at` on:
//!   each resolved to its contact and its messages queued, or failed with a reason.
//!
//! `run.rs` drives a scenario run and turns its effects into rows; `creds.rs` opens a bot
//! channel's secrets into what its sender needs; `call.rs` is call_node.

pub mod call;
pub mod creds;
pub mod deliver;
pub mod pace;
pub mod run;
pub mod send;
pub mod start;

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
/// it, by default: past this, another claim takes it (the worker died, or hangs). Above the
/// outbound client's total timeout (15 s), with room to commit. So work an instance was doing
/// when it died waits this long before it is taken up again, after a restart too.
pub const LEASE_MS: i64 = 60_000;

/// Wakes the workers when there is new work, rather than waiting for their next look.
#[derive(Debug, Default)]
pub struct Wake {
    pub inbox: Notify,
    pub outbox: Notify,
    pub deliveries: Notify,
    pub runs: Notify,
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
    /// How long a claim leases its work ([`LEASE_MS`] unless `--worker-lease-ms` says
    /// otherwise).
    pub lease_ms: i64,
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

/// one of the four workers.
#[derive(Debug, Clone, Copy)]
enum Worker {
    Inbox,
    Outbox,
    Deliveries,
    Runs,
}

impl Worker {
    fn name(self) -> &'static str {
        match self {
            Worker::Inbox => "inbox",
            Worker::Outbox => "outbox",
            Worker::Deliveries => "deliveries",
            Worker::Runs => "runs",
        }
    }

    fn wake(self, wake: &Wake) -> &Notify {
        match self {
            Worker::Inbox => &wake.inbox,
            Worker::Outbox => &wake.outbox,
            Worker::Deliveries => &wake.deliveries,
            Worker::Runs => &wake.runs,
        }
    }

    /// Claims and does a batch; returns how many it claimed.
    async fn step(self, flow: &Arc<Flow>) -> Result<usize, StoreError> {
        match self {
            Worker::Inbox => start::process_due(flow).await,
            Worker::Outbox => send::send_due(flow).await,
            Worker::Deliveries => deliver::deliver_due(flow).await,
            Worker::Runs => call::expand_due(flow).await,
        }
    }
}

/// Starts the four workers; they stop (finishing the work in hand) when `stop` fires.
pub fn spawn(flow: Arc<Flow>, stop: CancellationToken) -> TaskTracker {
    let tasks = TaskTracker::new();
    for w in [
        Worker::Inbox,
        Worker::Outbox,
        Worker::Deliveries,
        Worker::Runs,
    ] {
        tasks.spawn(run_worker(w, flow.clone(), stop.clone()));
    }
    tasks.close();
    tasks
}

/// Runs `w` until `stop`: again at once after a batch, else after a wake-up or [`POLL`].
async fn run_worker(w: Worker, flow: Arc<Flow>, stop: CancellationToken) {
    let mut failing = false;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let woken = w.wake(&flow.wake).notified();
        match w.step(&flow).await {
            Ok(n) => {
                if failing {
                    tracing::info!(worker = w.name(), "the worker reaches the database again");
                    failing = false;
                }
                if n > 0 {
                    continue;
                }
            }
            Err(e) => {
                // Once an outage, not once a poll.
                if !failing {
                    tracing::error!(worker = w.name(), error = %e, "the worker cannot claim work");
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
