//! The service: state shared by handlers, the router, and `run`, which serves until a
//! cancellation token fires, then finishes in-flight requests and flushes queued clicks.

pub mod config;
pub mod health;
pub mod metrics;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::IntoResponse;
use axum::response::Response;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::api::auth::{KeyLimiter, keys_equal};
use crate::app::config::{Checked, Config, ConfigError};
use crate::app::health::DatabaseWrites;
use crate::crypto::{KeyError, KeySource, SecretKey};
use crate::redirect::Resolved;
use crate::redirect::cache::LinkCache;
use crate::redirect::clicks::{self, ClickRecorder, ClickSettings};
use crate::store::{
    self, BotStore, ClickStore, FlowStore, Link, LinkStore, Store, StoreError, Stores, WorkspaceId,
    WorkspaceStore,
};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Key(#[from] KeyError),
    #[error("serving HTTP: {0}")]
    Io(#[from] std::io::Error),
}

/// The name of the workspace that `BOTLINK_ADMIN_KEY` administers.
pub const DEFAULT_WORKSPACE: &str = "default";

/// State shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    config: Config,
    /// The storage, seen through a trait per aggregate.
    stores: Stores,
    secret: SecretKey,
    default_workspace: WorkspaceId,
    recorder: ClickRecorder,
    limiter: KeyLimiter,
    link_cache: Arc<LinkCache>,
    /// Today's visitor-hash salt, derived once a day rather than on every click.
    visitor_salt: Mutex<(i64, [u8; 32])>,
    redirect_series: crate::redirect::RedirectSeries,
    /// Whether the database failed the redirects' last lookup: such failures are logged once
    /// per outage, not once per request.
    redirect_db_down: AtomicBool,
    database_writes: DatabaseWrites,
    /// What the Start flow's workers work with (shared with the API: call_node).
    flow: Arc<crate::flow::Flow>,
}

impl AppState {
    pub fn config(&self) -> &Config {
        &self.0.config
    }
    pub fn workspaces(&self) -> &dyn WorkspaceStore {
        &*self.0.stores.workspaces
    }
    pub fn bots(&self) -> &dyn BotStore {
        &*self.0.stores.bots
    }
    pub fn links(&self) -> &dyn LinkStore {
        &*self.0.stores.links
    }
    pub fn clicks(&self) -> &dyn ClickStore {
        &*self.0.stores.clicks
    }
    pub fn flow(&self) -> &dyn FlowStore {
        &*self.0.stores.flow
    }
    /// The Start flow's workers' context (stores, key, outbound client, wake-ups).
    pub fn flow_context(&self) -> &crate::flow::Flow {
        &self.0.flow
    }
    pub fn wake(&self) -> &crate::flow::Wake {
        &self.0.flow.wake
    }
    pub fn secret(&self) -> &SecretKey {
        &self.0.secret
    }
    pub fn default_workspace(&self) -> &WorkspaceId {
        &self.0.default_workspace
    }
    pub fn recorder(&self) -> &ClickRecorder {
        &self.0.recorder
    }
    pub fn limiter(&self) -> &KeyLimiter {
        &self.0.limiter
    }
    pub fn public_url(&self) -> &str {
        &self.0.config.public_url
    }
    /// How the API's writes have fared lately (for `/healthz`).
    /// Marks an API write under way until the turn is dropped (see [`crate::store::WriteTurn`]).
    pub fn write_turn(&self) -> Option<crate::store::WriteTurn> {
        self.0.stores.database.write_turn()
    }

    pub fn database_writes(&self) -> &DatabaseWrites {
        &self.0.database_writes
    }
    /// Checks that the database answers (for `/healthz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.0.stores.database.ping().await
    }

    /// The metrics series of a redirect route's 302s.
    pub fn redirect_series(
        &self,
        route: crate::redirect::FastRoute,
    ) -> &crate::app::metrics::Series {
        self.0.redirect_series.of(route)
    }

    /// The short URL of a link: its slug when it has one, else its code.
    pub fn short_url(&self, code_or_slug: &str) -> String {
        format!("{}/l/{code_or_slug}", self.public_url())
    }

    pub fn admin_key_matches(&self, token: &str) -> bool {
        self.0
            .config
            .admin_key
            .as_deref()
            .is_some_and(|k| keys_equal(k, token))
    }

    /// A visitor fingerprint for unique-click counting (see [`SecretKey::visitor_hash`]).
    pub fn visitor_hash(&self, day: i64, ip: std::net::IpAddr, user_agent: &str) -> [u8; 16] {
        let salt = {
            let mut cached = self.0.visitor_salt.lock().expect("salt lock");
            if cached.0 != day {
                *cached = (day, self.0.secret.visitor_salt(day));
            }
            cached.1
        };
        crate::crypto::visitor_hash_with(&salt, ip, user_agent)
    }

    /// A short link without waiting: from the link cache, or (SQLite) read on this thread.
    /// `None` when it cannot be had without waiting (then [`Self::resolve_link`]);
    /// `Some(None)` when there is no such link.
    pub fn link_now(&self, code: &str) -> Option<Option<Arc<Resolved>>> {
        let cache = &self.0.link_cache;
        if let Some(link) = cache.get(code) {
            return Some(Some(link));
        }
        let generation = cache.generation();
        match self.links().link_by_code_or_slug_now(code)? {
            Ok(link) => Some(link.map(|l| self.keep_link(code, l, generation))),
            // The pool will be asked, and say what failed.
            Err(_) => None,
        }
    }

    /// Resolves a short-link code or slug, from memory when it was looked up recently. When
    /// the database cannot be asked (it is away or too busy), a copy in memory that has
    /// expired but is young enough stands in (see [`LinkCache::get_stale`]), so that redirects
    /// go on through an outage; the failure is then logged as any other (once an outage).
    pub async fn resolve_link(&self, code: &str) -> Result<Option<Arc<Resolved>>, StoreError> {
        let cache = &self.0.link_cache;
        if let Some(link) = cache.get(code) {
            return Ok(Some(link));
        }
        let generation = cache.generation();
        let link = match self.links().link_by_code_or_slug(code).await {
            Ok(link) => link,
            // Only a failure that passes: a row that cannot be read is an error to show.
            Err(e) if e.unavailable().is_some() => match cache.get_stale(code) {
                Some(stale) => {
                    self.redirect_db_failed("resolving a short link", &e);
                    return Ok(Some(stale));
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        };
        self.redirect_db_answered();
        Ok(link.map(|l| self.keep_link(code, l, generation)))
    }

    /// Logs a database failure that a redirect met (`doing` says what it was doing): the first
    /// of an outage only, so that an outage under load does not flood the log.
    pub fn redirect_db_failed(&self, doing: &str, e: &StoreError) {
        if !self.0.redirect_db_down.swap(true, Ordering::Relaxed) {
            tracing::error!(
                error = %e,
                "{doing}: the database failed; redirects that need it answer 503 until it \
                 answers again, but for links in memory, served as they are (further failures \
                 are not logged)"
            );
        }
    }

    /// A redirect's database lookup succeeded: ends an outage that [`Self::redirect_db_failed`]
    /// logged.
    fn redirect_db_answered(&self) {
        let down = &self.0.redirect_db_down;
        if down.load(Ordering::Relaxed) && down.swap(false, Ordering::Relaxed) {
            tracing::info!("the database answers redirects again");
        }
    }

    /// A link looked up by `code`, made ready to follow and cached (see [`LinkCache::put`]
    /// for `generation`).
    fn keep_link(&self, code: &str, link: Link, generation: u64) -> Arc<Resolved> {
        let link = Arc::new(Resolved::new(link, &self.0.secret, self.public_url()));
        self.0.link_cache.put(code, link.clone(), generation);
        link
    }

    /// Forgets every cached link, after a change that may reach many (a bot's).
    pub fn forget_all_links(&self) {
        self.0.link_cache.forget_all();
    }

    /// Forgets a link's cached copy after it changed (on PostgreSQL, other instances hear of
    /// the change from the database: see [`crate::redirect::cache`]).
    pub fn forget_link(&self, link: &Link) {
        let slug = link.slug.as_deref();
        self.0
            .link_cache
            .forget(std::iter::once(link.code.as_str()).chain(slug));
    }
}

/// The secret key to run with, checked against the fingerprint of the key the database was
/// set up with, which the first start records (see [`KeySource::open`]). `botlink migrate`
/// and `api-key create` need no key and neither read nor record one, so that a key file they
/// would have made cannot become the database's key by mistake.
async fn unlock(store: &Store, key: KeySource) -> Result<SecretKey, ServeError> {
    let recorded = store.key_fingerprint().await?;
    let (secret, origin) = key.open(recorded.as_deref())?;
    let recorded = match recorded {
        Some(recorded) => recorded,
        // Of instances starting at once with different keys, the first to write stands.
        None => {
            store
                .record_key_fingerprint(&secret.fingerprint(), crate::util::now_ms())
                .await?
        }
    };
    origin.check(&secret, &recorded)?;
    Ok(secret)
}

/// Connects to the database and runs the migrations.
pub async fn open_store(config: &Config) -> Result<Arc<Store>, StoreError> {
    let store = store::connect(&config.database_url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

/// Runs the service on `listener` until `shutdown` is cancelled; then stops accepting,
/// finishes in-flight requests and writes every queued click before returning.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    run_checked(config.validate()?, listener, shutdown).await
}

/// [`run`] with a configuration already validated (`botlink serve` validates it before it
/// binds its address).
pub async fn run_checked(
    checked: Checked,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let (config, key) = checked.into_parts();
    // Before anything that must be stopped: it fails only when no thread can be started.
    let upkeep = crate::app::metrics::start_upkeep()?;
    let store = open_store(&config).await?;
    let secret = match unlock(&store, key).await {
        Ok(secret) => secret,
        Err(e) => {
            store.close().await;
            return Err(e);
        }
    };
    let now = crate::util::now_ms();
    let default_workspace = store.ensure_workspace(DEFAULT_WORKSPACE, now).await?.id;

    let clicks_stop = CancellationToken::new();
    let (recorder, click_worker) = clicks::start(
        store.clone(),
        ClickSettings {
            capacity: config.click_queue,
            batch: config.click_batch,
            flush_after: Duration::from_millis(config.click_flush_ms),
            full_wait: config.click_full_wait,
        },
        clicks_stop.clone(),
    );
    // SQLite: one instance makes every change itself. PostgreSQL: links live briefly until
    // the follower listens to the other instances' changes (at once, as a rule).
    let postgres = store.backend() == store::Backend::Postgres;
    let link_cache = Arc::new(LinkCache::new(config.link_cache_ms, !postgres));
    let changes_stop = CancellationToken::new();
    let following = postgres.then(|| {
        tokio::spawn(crate::redirect::cache::follow_changes(
            store.clone(),
            link_cache.clone(),
            changes_stop.clone(),
        ))
    });
    let db = store.clone();
    let stores = store.stores();
    let outbound = crate::outbound::Outbound::new(crate::outbound::OutboundConfig {
        allow: config.outbound_allow.clone(),
        ..crate::outbound::OutboundConfig::default()
    })
    .map_err(|e| ServeError::Io(std::io::Error::other(e.to_string())))?;
    let flow = Arc::new(crate::flow::Flow {
        flow: stores.flow.clone(),
        bots: stores.bots.clone(),
        links: stores.links.clone(),
        secret: secret.clone(),
        outbound,
        retry_schedule: config.retry_schedule.clone(),
        lease_ms: config.worker_lease_ms,
        wake: Arc::default(),
    });
    let flow_stop = CancellationToken::new();
    let workers = crate::flow::spawn(flow.clone(), flow_stop.clone());
    let state = AppState(Arc::new(Inner {
        limiter: KeyLimiter::new(config.rate_limit_per_second),
        config,
        stores,
        secret,
        default_workspace,
        recorder,
        link_cache,
        visitor_salt: Mutex::new((i64::MIN, [0; 32])),
        redirect_series: crate::redirect::RedirectSeries::default(),
        redirect_db_down: AtomicBool::new(false),
        database_writes: DatabaseWrites::default(),
        flow,
    }));
    let app = router(state.clone());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "botlink is listening");
    serve(listener, state, app, shutdown).await;
    // The server has stopped taking requests and finished the ones in flight: no more
    // clicks can arrive, so flush what is queued.
    drop(upkeep);
    // The workers finish the work in hand (what they have not claimed stays stored).
    flow_stop.cancel();
    workers.wait().await;
    changes_stop.cancel();
    if let Some(following) = following {
        let _ = following.await;
    }
    clicks_stop.cancel();
    if let Err(e) = click_worker.await {
        tracing::error!(error = %e, "the click worker failed");
    }
    // Every click is written: close the database cleanly (SQLite folds its log into the file).
    db.close().await;
    tracing::info!("botlink stopped");
    Ok(())
}

/// Accepts connections and serves HTTP/1.1 on each (keep-alive), until `shutdown` fires;
/// then stops accepting, lets each connection finish the request it is answering (idle ones
/// close at once), and returns when every connection has closed.
///
/// hyper's own HTTP/1 connection rather than `axum::serve`: that one serves through hyper-util's
/// protocol-detecting connection (it reads each connection's first bytes to tell HTTP/2 from
/// HTTP/1, even with HTTP/2 not compiled in) and a tower adapter per request, which the
/// redirect path, the one every click takes, paid for on every request.
async fn serve(
    listener: TcpListener,
    state: AppState,
    router: Router,
    shutdown: CancellationToken,
) {
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // The peer gave up before we took the connection: nothing to do.
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::ConnectionReset
                ) {
                    continue;
                }
                // Out of file descriptors and the like: keep serving the open connections, and
                // try again shortly rather than spin.
                tracing::error!(error = %e, "accepting a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let front = Front {
            state: state.clone(),
            router: router.clone(),
            peer,
        };
        let stop = shutdown.clone();
        let idle_timeout = state.config().idle_timeout;
        connections.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), front);
            let mut conn = std::pin::pin!(conn);
            // A connection that breaks (a client that goes away, a malformed request, which
            // hyper answers itself) is the client's affair, not the server's.
            tokio::select! {
                biased;
                _ = conn.as_mut() => return,
                _ = stop.cancelled() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

/// What serves each connection: short-link redirects go straight to their handlers (the path
/// of every click: no routing table, no middleware layers, the same metrics), everything else
/// through the router with the peer's address as [`ConnectInfo`].
#[derive(Clone)]
struct Front {
    state: AppState,
    router: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<hyper::body::Incoming>) -> Answer {
        if let Some(route) = crate::redirect::fast_route(&req) {
            // Past the router and its panic layer: a panic here is answered alike (and one
            // in `serve_fast`, by `Answer::poll`).
            let now = std::panic::catch_unwind(AssertUnwindSafe(|| {
                crate::redirect::serve_fast_now(&self.state, &req, self.peer, route)
            }));
            match now {
                Ok(Some(resp)) => return Answer::Ready(Some(resp)),
                Ok(None) => {}
                Err(panic) => return Answer::Ready(Some(crate::api::error::panic_response(panic))),
            }
            let (state, peer) = (self.state.clone(), self.peer);
            return Answer::Pending(Box::pin(async move {
                Ok(crate::redirect::serve_fast(state, req, peer, route).await)
            }));
        }
        // A body that has not arrived whole within the deadline fails to read (a 408 from the
        // JSON extractor): a client trickling one cannot hold a connection, or shutdown, for
        // longer.
        let mut req = req.map(|body| {
            axum::body::Body::new(tower_http::timeout::DeadlineBody::new(
                self.state.config().body_deadline,
                body,
            ))
        });
        req.extensions_mut().insert(ConnectInfo(self.peer));
        Answer::Pending(Box::pin(tower::ServiceExt::oneshot(
            self.router.clone(),
            req,
        )))
    }
}

/// The answer to a request: ready at once (a redirect that had nothing to wait for), or a
/// future that makes it.
enum Answer {
    Ready(Option<Response>),
    Pending(Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>),
}

impl Future for Answer {
    type Output = Result<Response, Infallible>;

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            Answer::Ready(resp) => std::task::Poll::Ready(Ok(resp.take().expect("polled once"))),
            // A panic while making the answer is answered as in a routed handler (see
            // `layered`); the future is not polled again.
            Answer::Pending(f) => {
                match std::panic::catch_unwind(AssertUnwindSafe(|| f.as_mut().poll(cx))) {
                    Ok(poll) => poll,
                    Err(panic) => {
                        std::task::Poll::Ready(Ok(crate::api::error::panic_response(panic)))
                    }
                }
            }
        }
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, openapi) = crate::api::router().split_for_parts();
    let routes = Router::new()
        .merge(api)
        .merge(crate::redirect::router())
        .merge(crate::redirect::webchat::router())
        .merge(crate::webhooks::router())
        .merge(crate::api::compat::router())
        .route("/healthz", get(crate::app::health::healthz))
        .route("/metrics", get(metrics))
        .fallback(fallback)
        .merge(SwaggerUi::new("/api-docs").url("/api-docs/openapi.json", openapi));
    layered(routes, state)
}

/// The layers every routed request passes, around `routes`. Innermost, a handler that panics
/// answers an opaque 500 in the error body (the panic logged once, by
/// [`crate::api::error::panic_response`] or, under `botlink serve`, by the hook of
/// [`crate::api::error::log_panics`]) rather than dropping the connection; so the layers
/// outside it, the API writes' account for `/healthz` among them, see that 500 as any other.
fn layered(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .layer(catch_panic())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::app::health::track_writes,
        ))
        .layer(axum::middleware::from_fn(crate::app::metrics::track))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .layer(TraceLayer::new_for_http())
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
            HeaderName::from_static("x-botlink-secret"),
        ]))
        .with_state(state)
}

/// What a handler's panic becomes (see [`layered`]).
type PanicAnswer = fn(Box<dyn std::any::Any + Send + 'static>) -> Response;

/// The layer that answers a handler's panic with [`crate::api::error::panic_response`].
fn catch_panic() -> CatchPanicLayer<PanicAnswer> {
    CatchPanicLayer::custom(crate::api::error::panic_response as PanicAnswer)
}

/// Unknown paths: a JSON error under `/api`, a human page elsewhere.
async fn fallback(uri: axum::http::Uri) -> axum::response::Response {
    if uri.path().starts_with("/api/") {
        crate::api::error::ApiError::NotFound(format!(
            "no endpoint {}: see /api-docs for the API",
            uri.path()
        ))
        .into_response()
    } else {
        (
            StatusCode::NOT_FOUND,
            axum::response::Html(crate::redirect::pages::message(
                "Not found",
                "There is nothing at this address.",
            )),
        )
            .into_response()
    }
}

async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::app::metrics::handle().render(),
    )
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;

    /// A log written to memory.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn boom() -> &'static str {
        let secret = "table link_secrets at /var/lib/botlink";
        panic!("index out of range near {secret}");
    }

    /// A handler that panics answers an opaque 500 in the error body; what the panic said
    /// is in the log, once, and nowhere in the answer. The router serves on afterwards.
    #[tokio::test]
    async fn a_panic_in_a_handler_is_an_opaque_500_logged_once() {
        let log = Log::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        let router: Router = Router::new()
            .route("/boom", get(boom))
            .route("/fine", get(|| async { "fine" }))
            .layer(catch_panic());
        let call = |path: &str| {
            let req = Request::get(path).body(Body::empty()).unwrap();
            router.clone().oneshot(req)
        };

        let resp = call("/boom").await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            resp.headers()[header::CONTENT_TYPE],
            "application/json",
            "the error body, as every API error"
        );
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("try again later"), "{message}");
        assert!(
            !body.to_string().contains("link_secrets") && !message.contains("index"),
            "{body}"
        );

        let written = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            written
                .matches("index out of range near table link_secrets")
                .count(),
            1,
            "{written}"
        );
        assert_eq!(written.lines().count(), 1, "logged once: {written}");

        let resp = call("/fine").await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "serving on");

        // A redirect's answer, made past the router, answers a panic alike. (In this test, as
        // tracing's per-thread subscribers see only the events of their own thread.)
        let answer = Answer::Pending(Box::pin(async {
            tokio::task::yield_now().await;
            Ok(boom().await.into_response())
        }));
        let resp = answer.await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        assert!(!body.to_string().contains("link_secrets"), "{body}");
        let written = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        assert_eq!(written.lines().count(), 2, "once a panic: {written}");
    }
}
