//! Prometheus metrics: requests, latencies, and the click pipeline (queued, dropped, flushed).

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CLICKS_QUEUED: &str = "botlink_clicks_queued_total";
pub const CLICKS_DROPPED: &str = "botlink_clicks_dropped_total";
pub const CLICKS_FLUSHED: &str = "botlink_clicks_flushed_total";
pub const CLICK_FLUSH_ERRORS: &str = "botlink_click_flush_errors_total";
pub const CLICK_QUEUE_DEPTH: &str = "botlink_click_queue_depth";
const REQUESTS: &str = "botlink_http_requests_total";
const LATENCY: &str = "botlink_http_request_duration_seconds";

/// The process's metrics recorder, installed once (several servers in one test process share it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(LATENCY.to_string()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    ],
                )
                .expect("bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding program);
            // then this handle still renders our own view.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Middleware: counts requests and records their latency by route template, not by path
/// (short codes would otherwise explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!(REQUESTS, "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!(LATENCY, "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    resp
}
