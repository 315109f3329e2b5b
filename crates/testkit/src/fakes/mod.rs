//! Fakes of what tests cannot reach: the messenger platforms' send APIs ([`FakeMessenger`]) and a
//! customer's CRM that receives signed deliveries ([`FakeCrm`]), plus the signatures each
//! platform puts on the webhooks it sends ([`sign`]).
//!
//! A fake is only worth its tests if it answers as the real service does: the same paths, the
//! same authentication, the same success and error bodies, the same rate limits. Each answer
//! cites the platform rule it follows; where a fake knowingly differs from the platform, its doc
//! comment says so.
//!
//! Every fake binds `127.0.0.1:0` before its task starts, so it can be called at once, and stops
//! when dropped.

pub mod crm;
pub mod messenger;
pub mod sign;

pub use crm::{FakeCrm, Received};
pub use messenger::{Failure, FakeMessenger, Limits, Platform, Rate, SentMessage, WebhookSetting};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Serves `router` on `listener` until `stop` is cancelled. Then the listener is closed at once
/// (new connections are refused), idle connections are closed, and the task ends when the
/// requests in flight have been answered.
fn serve(listener: TcpListener, router: Router, stop: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        // The only error is the listener's, which axum already retries; nothing to report.
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    })
}

/// Binds `127.0.0.1:0`.
async fn bind_any() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0")
}

/// Seconds since the Unix epoch, as the platforms write dates.
fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs() as i64
}
