//! Prometheus metrics: requests, latencies, and the click pipeline (queued, dropped, flushed).

use foldhash::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const CLICKS_QUEUED: &str = "botlink_clicks_queued_total";
pub const CLICKS_DROPPED: &str = "botlink_clicks_dropped_total";
pub const CLICKS_FLUSHED: &str = "botlink_clicks_flushed_total";
pub const CLICK_FLUSH_ERRORS: &str = "botlink_click_flush_errors_total";
/// SQLite: attempts to add written clicks to their counts that failed (they are retried; until
/// then statistics lag behind the clicks).
pub const CLICK_FOLD_ERRORS: &str = "botlink_click_fold_errors_total";
pub const CLICK_QUEUE_DEPTH: &str = "botlink_click_queue_depth";
/// PostgreSQL: 1 while this instance hears of the links other instances change (see
/// `link_cache`), 0 while it cannot listen (its cached links then live 2 s).
pub const LINK_CHANGES_LISTENING: &str = "botlink_link_changes_listening";
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
            describe();
            handle
        })
        .clone()
}

/// While the returned handle lives, a thread of its own (at a lower priority, see
/// `util::lower_this_thread`) folds the latency samples into their histograms every second.
///
/// The exporter keeps every sample until it is folded, which a scrape of /metrics does too:
/// folding them every second keeps an unscraped server from growing (8 bytes a request: at
/// 80,000 redirects a second, 0.6 MB held at most). It takes about half a millisecond a
/// second at 55,000 redirects a second: done by the async runtime's thread, that was a pause
/// for every request in flight once a second, a tenth of the redirect benchmark's latency
/// tail.
pub fn start_upkeep() -> std::io::Result<Upkeep> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let handle = handle();
    std::thread::Builder::new()
        .name("botlink-metrics".into())
        .spawn(move || {
            crate::util::lower_this_thread();
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(std::time::Duration::from_secs(1))
            {
                handle.run_upkeep();
            }
        })?;
    Ok(Upkeep { _stop: stop })
}

/// Stops the metrics' upkeep (see [`start_upkeep`]) when dropped: its thread's channel closes.
pub struct Upkeep {
    _stop: std::sync::mpsc::Sender<()>,
}

/// Gives every metric its help text, and the click pipeline's counters a first value of 0, so
/// that they are exported (and can be alerted on) before anything happens to them.
fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "HTTP requests answered, by route template, method and status"
    );
    describe_histogram!(
        LATENCY,
        metrics::Unit::Seconds,
        "Time to answer an HTTP request, by route template and method"
    );
    describe_counter!(CLICKS_QUEUED, "Clicks and previews queued to be written");
    describe_counter!(
        CLICKS_DROPPED,
        "Clicks lost because the click queue stayed full (the database is too slow or failing)"
    );
    describe_counter!(
        CLICKS_FLUSHED,
        "Clicks and previews written to the database"
    );
    describe_counter!(
        CLICK_FLUSH_ERRORS,
        "Failed attempts to write a batch of clicks (retried with backoff; clicks are lost only when the queue fills, or at shutdown after 5 failed attempts)"
    );
    describe_counter!(
        CLICK_FOLD_ERRORS,
        "Failed attempts to add written clicks to their counts (SQLite; retried at the next statistics read and by the click writer's timer; statistics lag until one succeeds)"
    );
    describe_gauge!(
        CLICK_QUEUE_DEPTH,
        "Clicks waiting in the queue to be written"
    );
    describe_gauge!(
        LINK_CHANGES_LISTENING,
        "PostgreSQL: 1 while this instance hears of links changed by others, 0 while it cannot listen (cached links then live 2 s)"
    );
    for name in [
        CLICKS_QUEUED,
        CLICKS_DROPPED,
        CLICKS_FLUSHED,
        CLICK_FLUSH_ERRORS,
        CLICK_FOLD_ERRORS,
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!(CLICK_QUEUE_DEPTH).increment(0.0);
}

/// The counter and histogram of one (route, method, status), registered once: building
/// metric keys (label strings) on every request costs more than the redirect itself.
type Handles = (metrics::Counter, metrics::Histogram);
/// By route first, so that a lookup borrows the route instead of allocating a key.
type HandleMap = HashMap<String, HashMap<(Method, u16), Handles>>;

fn handles(route: &str, method: &Method, status: u16) -> Handles {
    static MAP: LazyLock<RwLock<HandleMap>> = LazyLock::new(Default::default);
    let key = (method.clone(), status);
    if let Some(h) = MAP
        .read()
        .expect("metrics lock")
        .get(route)
        .and_then(|by| by.get(&key))
    {
        return h.clone();
    }
    let (m, r) = (method.as_str().to_owned(), route.to_owned());
    let h = (
        metrics::counter!(REQUESTS, "method" => m.clone(), "route" => r.clone(), "status" => status.to_string()),
        metrics::histogram!(LATENCY, "method" => m, "route" => r),
    );
    MAP.write()
        .expect("metrics lock")
        .entry(route.to_owned())
        .or_default()
        .entry(key)
        .or_insert(h)
        .clone()
}

/// Middleware: counts requests and records their latency by route template, not by path
/// (short codes would otherwise explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req.extensions().get::<MatchedPath>().cloned();
    // Methods outside HTTP's own are one label value, so that made-up methods cannot grow
    // the set of series without bound.
    let method = match *req.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::PATCH
        | Method::DELETE
        | Method::OPTIONS => req.method().clone(),
        _ => Method::from_bytes(b"OTHER").expect("a valid method token"),
    };
    let resp = next.run(req).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    observe(route, &method, resp.status().as_u16(), start);
    resp
}

/// Counts a request to `route` and records its latency since `started` (what [`track`] does,
/// for requests served without the router).
pub fn observe(route: &str, method: &Method, status: u16, started: Instant) {
    Series(handles(route, method, status)).observe(started);
}

/// The series of one route, method and status, looked up once: for the answer a hot path
/// gives nearly every time (a redirect's 302), which then costs no lookup of its series.
pub struct Series(Handles);

impl Series {
    /// The series, registered with the recorder of [`handle`] (installed here if need be).
    pub fn new(route: &str, method: &Method, status: u16) -> Self {
        handle();
        Series(handles(route, method, status))
    }

    /// Counts a request and records its latency since `started`.
    pub fn observe(&self, started: Instant) {
        self.0.0.increment(1);
        self.0.1.record(started.elapsed().as_secs_f64());
    }
}
