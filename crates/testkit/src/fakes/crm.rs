//! A customer's CRM as botlink's deliveries meet it: an HTTP endpoint on `127.0.0.1:0` that
//! takes any method and path, checks the Standard Webhooks signature as a CRM's own code would
//! ([`super::sign::verify_standard_webhooks`], written apart from the server's signing), records
//! every request, and answers as a test sets it: 200 by default; 503 while down; 410 once gone
//! (Standard Webhooks: the endpoint is gone, stop sending); given statuses for the next requests;
//! no connection at all while refusing.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::sign::{WEBHOOK_ID_HEADER, verify_standard_webhooks};

/// One request the CRM received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    /// The raw body, as signed.
    pub body: Vec<u8>,
    /// The body, if it is JSON.
    pub json: Option<Value>,
    pub webhook_id: Option<String>,
    /// Whether the Standard Webhooks signature is good for the CRM's secret: a `v1,` signature
    /// of this body, a timestamp within 5 minutes of now.
    pub signature_ok: bool,
    /// Why not, when it is not.
    pub signature_error: Option<String>,
    /// The HTTP status the CRM answered.
    pub answered: u16,
    pub at: Instant,
}

impl Received {
    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// See the module documentation. Dropped, it stops serving.
pub struct FakeCrm {
    addr: SocketAddr,
    crm: Arc<Crm>,
    running: Mutex<Option<Running>>,
}

struct Running {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

struct Crm {
    /// The endpoint's `whsec_...` secret.
    secret: String,
    state: Mutex<CrmState>,
    received_count: watch::Sender<usize>,
}

#[derive(Default)]
struct CrmState {
    mode: Mode,
    /// Statuses to answer to the next requests, before the mode's.
    failures: VecDeque<u16>,
    /// The JSON body of a 2xx answer.
    answer: Option<Value>,
    /// `Retry-After` (seconds) on every answer that is not 2xx.
    retry_after: Option<u64>,
    /// How long to wait before answering.
    delay: Option<Duration>,
    received: Vec<Received>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Mode {
    #[default]
    Up,
    /// 503 Service Unavailable.
    Down,
    /// 410 Gone.
    Gone,
}

impl FakeCrm {
    /// Starts a CRM endpoint on `127.0.0.1:0` whose signing secret is `secret` (`whsec_...`).
    pub async fn start(secret: &str) -> FakeCrm {
        let listener = super::bind_any().await;
        let addr = listener.local_addr().expect("local address");
        let (received_count, _) = watch::channel(0);
        let crm = Arc::new(Crm {
            secret: secret.to_owned(),
            state: Mutex::new(CrmState::default()),
            received_count,
        });
        let running = Running::start(listener, crm.clone());
        FakeCrm {
            addr,
            crm,
            running: Mutex::new(Some(running)),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL of `path` (which starts with `/`) on this CRM.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Every request received so far, in order.
    pub fn deliveries(&self) -> Vec<Received> {
        self.crm.state().received.clone()
    }

    /// Waits until at least `n` requests have been received, or `timeout` has passed; returns
    /// them all (fewer than `n` if the time ran out).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut count = self.crm.received_count.subscribe();
        let _ = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        self.deliveries()
    }

    /// Forgets the requests received so far.
    pub fn clear(&self) {
        self.crm.state().received.clear();
        self.crm.received_count.send_replace(0);
    }

    /// Answers 503 Service Unavailable until [`FakeCrm::up`].
    pub fn down(&self) {
        self.crm.state().mode = Mode::Down;
    }

    /// Answers 410 Gone until [`FakeCrm::up`]: under Standard Webhooks, a sender should disable
    /// the endpoint and stop retrying.
    pub fn gone(&self) {
        self.crm.state().mode = Mode::Gone;
    }

    /// Answers 2xx again (after [`FakeCrm::down`] or [`FakeCrm::gone`]).
    pub fn up(&self) {
        self.crm.state().mode = Mode::Up;
    }

    /// Answers the next `n` requests with `status`, whatever the mode.
    pub fn fail_next(&self, n: usize, status: u16) {
        StatusCode::from_u16(status).expect("an HTTP status");
        self.crm
            .state()
            .failures
            .extend(std::iter::repeat_n(status, n));
    }

    /// Answers 200 with `value` as a JSON body (what a `send_request` step may `save`).
    pub fn answer_json(&self, value: Value) {
        self.crm.state().answer = Some(value);
    }

    /// Adds `Retry-After: <secs>` to every answer that is not 2xx.
    pub fn retry_after(&self, secs: u64) {
        self.crm.state().retry_after = Some(secs);
    }

    /// Waits `delay` before each answer (a slow CRM, for timeouts).
    pub fn delay(&self, delay: Duration) {
        self.crm.state().delay = Some(delay);
    }

    /// Closes the listener and every connection: connecting is refused until
    /// [`FakeCrm::resume`]. Waits for the requests in flight to be answered.
    pub async fn refuse(&self) {
        let running = self.running.lock().expect("the CRM's server").take();
        if let Some(running) = running {
            running.stop.cancel();
            // The task only serves; it ends when its connections have.
            let _ = running.task.await;
        }
    }

    /// Listens again on the same port, after [`FakeCrm::refuse`].
    pub async fn resume(&self) {
        if self.running.lock().expect("the CRM's server").is_some() {
            return;
        }
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("bind the CRM's port again");
        let running = Running::start(listener, self.crm.clone());
        *self.running.lock().expect("the CRM's server") = Some(running);
    }
}

impl Drop for FakeCrm {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(running) = running.take()
        {
            running.stop.cancel();
        }
    }
}

impl Running {
    fn start(listener: TcpListener, crm: Arc<Crm>) -> Running {
        let stop = CancellationToken::new();
        let router = Router::new().fallback(receive).with_state(crm);
        let task = super::serve(listener, router, stop.clone());
        Running { stop, task }
    }
}

impl Crm {
    fn state(&self) -> MutexGuard<'_, CrmState> {
        self.state.lock().expect("the CRM's state")
    }
}

async fn receive(
    State(crm): State<Arc<Crm>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = verify_standard_webhooks(&crm.secret, &headers, &body, super::unix_now());
    let (status, answer, retry_after, delay) = {
        let mut state = crm.state();
        let status = match (state.failures.pop_front(), state.mode) {
            (Some(status), _) => status,
            (None, Mode::Down) => 503,
            (None, Mode::Gone) => 410,
            (None, Mode::Up) => 200,
        };
        state.received.push(Received {
            method,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            webhook_id: headers
                .get(WEBHOOK_ID_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            headers,
            json: serde_json::from_slice(&body).ok(),
            body: body.to_vec(),
            signature_ok: verified.is_ok(),
            signature_error: verified.err().map(|e| e.to_string()),
            answered: status,
            at: Instant::now(),
        });
        crm.received_count.send_replace(state.received.len());
        (status, state.answer.clone(), state.retry_after, state.delay)
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status).expect("a checked HTTP status");
    let mut response = match answer {
        Some(value) if status.is_success() => (status, axum::Json(value)).into_response(),
        _ => status.into_response(),
    };
    if let (Some(secs), false) = (retry_after, status.is_success()) {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&secs.to_string()).expect("digits"),
        );
    }
    response
}
