//! `ApiError`: every failure of the HTTP API as a status and a stable JSON body,
//! `{"error": {"code": "...", "message": "..."}}`. The caller's mistakes are 4xx with a message
//! that says what to do; a 5xx never carries internal text (the detail is logged once).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::DomainError;
use crate::store::{StoreError, Unavailable};

/// The error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// A machine-readable code and a human message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable code, e.g. `not_found`, `invalid_request`, `payload_too_long`.
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("missing or invalid API key: send `Authorization: Bearer blk_...`")]
    Unauthorized,
    /// A webhook whose signature does not verify (nothing was stored).
    #[error("{0}")]
    InvalidSignature(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests for this API key: retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("the request body is too large: {0}")]
    TooLarge(String),
    #[error("the request body did not arrive in time: send it whole, at once")]
    Timeout,
    #[error("internal error")]
    Internal(String),
    /// A platform or service botlink called refused or failed (the message says which, and
    /// what it answered).
    #[error("{0}")]
    Upstream(String),
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// The database did not serve the request in time (see [`crate::store::Unavailable`]):
    /// nothing was changed, and the same request may succeed after `Retry-After`.
    #[error(
        "the database is busy (another writer holds its lock, or every connection is in use): \
         nothing was changed; retry after {DATABASE_RETRY_AFTER} s"
    )]
    DatabaseBusy,
    #[error(
        "the database cannot be reached just now: nothing was changed; retry after \
         {DATABASE_RETRY_AFTER} s"
    )]
    DatabaseUnreachable,
}

/// Seconds a client is told to wait (`Retry-After`) before it sends again a request that met
/// a busy or unreachable database. About as long as the request already waited for the lock
/// (SQLite's busy timeout): a lock held that long is seldom gone at once.
pub const DATABASE_RETRY_AFTER: u64 = 5;

/// Marks an answer that failed because the database could not serve it just now (a
/// [`ApiError::DatabaseBusy`] or [`ApiError::DatabaseUnreachable`]), for `/healthz`'s account
/// of API writes (see [`crate::app::health::DatabaseWrites`]).
#[derive(Debug, Clone, Copy)]
pub struct DatabaseFailed(pub Unavailable);

impl ApiError {
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub(crate) fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ApiError::Invalid { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::InvalidSignature(_) => (StatusCode::UNAUTHORIZED, "invalid_signature"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::Timeout => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            ApiError::Upstream(_) => (StatusCode::BAD_GATEWAY, "upstream_failed"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::DatabaseBusy => (StatusCode::SERVICE_UNAVAILABLE, "database_busy"),
            ApiError::DatabaseUnreachable => {
                (StatusCode::SERVICE_UNAVAILABLE, "database_unreachable")
            }
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Invalid { code, message } => ApiError::Invalid { code, message },
            DomainError::Store(e) => e.into(),
            DomainError::Internal(detail) => ApiError::Internal(detail),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::NotFound("the resource".into()),
            StoreError::Conflict { what } => ApiError::Conflict(what),
            StoreError::InvalidCursor => ApiError::invalid(
                "invalid_cursor",
                "cursor is not one this API returned: start without it",
            ),
            other => match other.unavailable() {
                // A failure that passes: told to the caller as such, its detail logged once.
                Some(why) => {
                    tracing::warn!(error = %other, "the database could not serve a request");
                    match why {
                        Unavailable::Busy => ApiError::DatabaseBusy,
                        Unavailable::Unreachable => ApiError::DatabaseUnreachable,
                    }
                }
                None => ApiError::Internal(other.to_string()),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                INTERNAL_MESSAGE.to_owned()
            }
            other => other.to_string(),
        };
        let mut resp = error_response(status, code, message);
        let retry_after = match self {
            ApiError::RateLimited { retry_after } => Some(retry_after.max(1)),
            ApiError::DatabaseBusy => {
                resp.extensions_mut()
                    .insert(DatabaseFailed(Unavailable::Busy));
                Some(DATABASE_RETRY_AFTER)
            }
            ApiError::DatabaseUnreachable => {
                resp.extensions_mut()
                    .insert(DatabaseFailed(Unavailable::Unreachable));
                Some(DATABASE_RETRY_AFTER)
            }
            _ => None,
        };
        if let Some(seconds) = retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        resp
    }
}

/// The error body with its status.
fn error_response(status: StatusCode, code: &str, message: String) -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message,
        },
    };
    (status, axum::Json(body)).into_response()
}

/// The answer to a request whose handler panicked (see `app::layered`):
/// an opaque 500 in the error body, as any internal error. What the panic said goes to the
/// log once: it may name internals, never the answer. Where [`log_panics`]'s hook logged it
/// already, as it unwound, it is not logged again.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The hook runs on the panicking thread, and the panic is caught on that same thread.
    if !PANIC_LOGGED.replace(false) {
        tracing::error!(
            panic = panic_text(panic.as_ref()),
            "a request's handler panicked"
        );
    }
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        INTERNAL_MESSAGE.to_owned(),
    )
}

/// What a panic said, from its payload.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(a panic without a message)")
}

thread_local! {
    /// Whether the panic unwinding on this thread was logged by [`log_panics`]'s hook.
    static PANIC_LOGGED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Reports every panic of the process in the log, once: its message and where it happened,
/// as an error event, in place of Rust's default report on stderr. Without it, a handler's
/// panic is told twice, by that report and by [`panic_response`]. Where no subscriber records
/// errors (logging not set up), the default report is kept, so that no panic goes untold.
/// For `botlink serve`, once its logging is set up.
pub fn log_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let logged = tracing::enabled!(tracing::Level::ERROR);
        // A panic while the thread's locals are torn down finds none: nothing to mark then.
        let _ = PANIC_LOGGED.try_with(|marked| marked.set(logged));
        if logged {
            let location = info
                .location()
                .map_or_else(|| "an unknown place".to_owned(), ToString::to_string);
            tracing::error!(panic = panic_text(info.payload()), %location, "panicked");
        } else {
            default(info);
        }
    }));
}

/// What a 500 says: nothing of what failed inside.
const INTERNAL_MESSAGE: &str = "internal error: the server logged the details; try again later";

/// A JSON body extractor whose rejections are `ApiError`s in the standard body, naming what
/// was wrong with the JSON (a missing field, a wrong type, at which line and column).
pub struct Json<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for Json<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::rejection::JsonRejection;
        if !json_content_type(req.headers()) {
            return Err(ApiError::BadRequest(
                "send the body as JSON with `Content-Type: application/json`".into(),
            ));
        }
        let bytes = match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => bytes,
            Err(e) if timed_out(&e) => return Err(ApiError::Timeout),
            Err(e) => return Err(ApiError::TooLarge(e.body_text())),
        };
        // Every body of this API is a JSON object. serde would also read a struct from an
        // array, field by field in order (`["Shop"]` as a bot named Shop): refuse that.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(
                match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
                    Ok(_) => ApiError::invalid(
                        "invalid_body",
                        "the body must be a JSON object ({\"field\": value, ...}); see /api-docs for its fields",
                    ),
                    Err(e) => ApiError::BadRequest(format!("the body is not valid JSON: {e}")),
                },
            );
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid(
                "invalid_body",
                format!(
                    "the JSON does not match the expected shape: {}",
                    e.body_text()
                ),
            )),
            Err(JsonRejection::JsonSyntaxError(e)) => Err(ApiError::BadRequest(format!(
                "the body is not valid JSON: {}",
                e.body_text()
            ))),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// Whether the request says its body is JSON: `application/json` or `application/*+json`,
/// with or without parameters (the rule axum's own JSON extractor applies).
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|sub| sub.ends_with("+json"))
}

/// Whether a body failed to read because its deadline passed (see `Config::body_deadline`),
/// rather than because it was too large.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// A query-string extractor whose rejections are `ApiError`s in the standard body.
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::invalid("invalid_query", e.body_text()))
    }
}

/// A request body as bytes (a messenger's webhook, verified on these bytes before anything
/// reads them), refused like [`Json`]'s when too large or too slow.
pub struct RawBody(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(e) if timed_out(&e) => Err(ApiError::Timeout),
            Err(e) => Err(ApiError::TooLarge(e.body_text())),
        }
    }
}
