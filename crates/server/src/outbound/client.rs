//! The guarded HTTP client: every request botlink sends to an address a tenant controls (a CRM,
//! a messenger platform, a custom channel) goes through [`Outbound::send`].
//!
//! What it guarantees:
//! - the address connected to is checked ([`OutboundAllow::check`]): names are resolved by a
//!   resolver that drops refused addresses before the connector sees them, so there is no
//!   second resolution to race; hosts written as IP addresses (which reqwest connects to
//!   without asking the resolver) are checked before anything is sent;
//! - only `http` and `https`, no proxy, no redirects (a 3xx is returned as the answer);
//! - a connect timeout and a total timeout (the body included), and a cap on the answer's body;
//! - errors name the target as `scheme://host:port` only: a URL's path and query may carry a
//!   token (Telegram's is in the path, `/bot<token>/...`), so no error, log line or `Debug`
//!   output of this module prints a whole URL.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use url::{Host, Url};

use super::guard::{OutboundAllow, Refusal};

/// The `User-Agent` of every outbound request.
pub const USER_AGENT: &str = concat!("botlink/", env!("CARGO_PKG_VERSION"));

/// How the guarded client behaves. [`OutboundConfig::default`] is the service's default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundConfig {
    /// Ranges opened despite being private, loopback and the like (`--outbound-allow`).
    pub allow: OutboundAllow,
    /// How long a TCP (and TLS) connection may take: 5 s by default.
    pub connect_timeout: Duration,
    /// How long the whole exchange may take, the answer's body included: 15 s by default.
    pub timeout: Duration,
    /// The largest answer body read: 1 MiB by default. A larger one is
    /// [`OutboundError::TooLarge`], so a hostile server cannot exhaust memory.
    pub max_response_bytes: usize,
}

impl Default for OutboundConfig {
    fn default() -> Self {
        OutboundConfig {
            allow: OutboundAllow::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            max_response_bytes: 1024 * 1024,
        }
    }
}

/// One request to send.
#[derive(Clone)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
}

impl OutboundRequest {
    /// A `POST` of `body` as JSON, with `Content-Type: application/json`.
    pub fn post_json(url: Url, body: &serde_json::Value) -> OutboundRequest {
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        OutboundRequest {
            method: Method::POST,
            url,
            headers,
            body: Some(body.to_string().into_bytes()),
        }
    }

    /// `scheme://host:port` of the target: what errors and logs may show of the URL.
    pub fn target(&self) -> String {
        target_of(&self.url)
    }
}

/// `Debug` shows the method and [`OutboundRequest::target`] only, never the path, query or
/// headers, which may carry tokens.
impl fmt::Debug for OutboundRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundRequest")
            .field("method", &self.method)
            .field("target", &self.target())
            .field("body_bytes", &self.body.as_ref().map_or(0, Vec::len))
            .finish_non_exhaustive()
    }
}

/// `scheme://host:port` of a URL, the port always written (the scheme's default if none).
pub fn target_of(url: &Url) -> String {
    let host = match url.host() {
        Some(Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(host) => host.to_string(),
        None => String::new(),
    };
    match url.port_or_known_default() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// The answer to a request, whatever its status (a 3xx or a 5xx is an answer, not an error).
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// From the start of the request to the last byte of the body.
    pub elapsed: Duration,
}

impl OutboundResponse {
    /// The answer's `Retry-After`, as a delay from `now_ms` (epoch milliseconds), when it has
    /// one that can be read.
    pub fn retry_after(&self, now_ms: i64) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?;
        parse_retry_after(value, now_ms)
    }
}

/// Reads a `Retry-After` value (RFC 9110 §10.2.3): delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete date forms), as a delay from
/// `now_ms` (epoch milliseconds). A date in the past is a zero delay; anything else is `None`.
pub fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // A huge number of seconds saturates rather than failing: it still means "not soon".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let now = UNIX_EPOCH + Duration::from_millis(u64::try_from(now_ms).unwrap_or(0));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Why a request got no answer. `Display` is written for an operator and names the target as
/// `scheme://host:port` only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The target's address is not to be reached; nothing was sent.
    #[error("{refusal} for {target}: {}", refusal.hint())]
    Refused { target: String, refusal: Refusal },
    /// The URL cannot be sent to (not http or https, no host, not a URL).
    #[error("invalid URL: {reason}")]
    InvalidUrl { reason: String },
    /// No connection, or no complete answer, in time.
    #[error("no answer from {target} within {}s ({stage})", limit.as_secs_f64())]
    Timeout {
        target: String,
        stage: TimeoutStage,
        limit: Duration,
    },
    /// The connection could not be made (refused, reset, DNS failure, TLS handshake).
    #[error("could not connect to {target}: {reason}")]
    Connect { target: String, reason: String },
    /// The answer's body is larger than the cap; the request may have had its effect.
    #[error("the answer from {target} is larger than {limit} bytes")]
    TooLarge { target: String, limit: usize },
    /// Any other failure while sending or reading.
    #[error("request to {target} failed: {reason}")]
    Transport { target: String, reason: String },
}

/// Which of the two timeouts ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutStage {
    Connect,
    Total,
}

impl fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimeoutStage::Connect => "connect timeout",
            TimeoutStage::Total => "total timeout",
        })
    }
}

/// The client could not be built (its TLS setup failed).
#[derive(Debug, thiserror::Error)]
#[error("could not build the outbound HTTP client: {0}")]
pub struct OutboundBuildError(String);

/// The guarded client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    allow: Arc<OutboundAllow>,
    config: Arc<OutboundConfig>,
}

impl fmt::Debug for Outbound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outbound")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Outbound {
    /// Builds the client (HTTPS through rustls, certificates checked against the system's
    /// roots).
    pub fn new(config: OutboundConfig) -> Result<Outbound, OutboundBuildError> {
        let allow = Arc::new(config.allow.clone());
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .dns_resolver(GuardedResolver {
                allow: allow.clone(),
            })
            .build()
            .map_err(|e| OutboundBuildError(error_chain(&e.without_url())))?;
        Ok(Outbound {
            client,
            allow,
            config: Arc::new(config),
        })
    }

    /// The settings this client was built with.
    pub fn config(&self) -> &OutboundConfig {
        &self.config
    }

    /// Sends one request and reads its answer, whatever its status. A refused address is an
    /// error and no connection is opened; a 3xx is returned, not followed.
    pub async fn send(&self, request: OutboundRequest) -> Result<OutboundResponse, OutboundError> {
        let target = self.check_target(&request.url)?;
        let started = Instant::now();
        let mut builder = self
            .client
            .request(request.method, request.url)
            .headers(request.headers);
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| self.transport_error(&target, e))?;
        let status = response.status();
        let headers = std::mem::take(response.headers_mut());
        let limit = self.config.max_response_bytes;
        if response
            .content_length()
            .is_some_and(|len| len > limit as u64)
        {
            return Err(OutboundError::TooLarge { target, limit });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(&target, e))?
        {
            if body.len() + chunk.len() > limit {
                return Err(OutboundError::TooLarge { target, limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(OutboundResponse {
            status,
            headers,
            body,
            elapsed: started.elapsed(),
        })
    }

    /// Checks the scheme and, for a host written as an IP address, the address itself: reqwest
    /// connects to such hosts without consulting the resolver.
    fn check_target(&self, url: &Url) -> Result<String, OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::InvalidUrl {
                reason: format!(
                    "scheme {:?} is not allowed: http or https only",
                    url.scheme()
                ),
            });
        }
        let target = target_of(url);
        let ip = match url.host() {
            None => {
                return Err(OutboundError::InvalidUrl {
                    reason: "the URL has no host".into(),
                });
            }
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            // The URL parser turns every numeric form (`2130706433`, `0x7f.1`) into an
            // address; a name that still reads as one is checked all the same.
            Some(Host::Domain(name)) => name.parse::<IpAddr>().ok(),
        };
        if let Some(ip) = ip {
            self.allow
                .check(ip)
                .map_err(|refusal| OutboundError::Refused {
                    target: target.clone(),
                    refusal,
                })?;
        }
        Ok(target)
    }

    fn transport_error(&self, target: &str, e: reqwest::Error) -> OutboundError {
        let target = target.to_string();
        if let Some(refusal) = find_source::<Refusal>(&e) {
            return OutboundError::Refused {
                target,
                refusal: refusal.clone(),
            };
        }
        if e.is_timeout() {
            let (stage, limit) = if e.is_connect() {
                (TimeoutStage::Connect, self.config.connect_timeout)
            } else {
                (TimeoutStage::Total, self.config.timeout)
            };
            return OutboundError::Timeout {
                target,
                stage,
                limit,
            };
        }
        let connect = e.is_connect();
        let reason = error_chain(&e.without_url());
        if connect {
            OutboundError::Connect { target, reason }
        } else {
            OutboundError::Transport { target, reason }
        }
    }
}

/// The first error of type `T` in `e`'s source chain.
fn find_source<'e, T: std::error::Error + 'static>(
    e: &'e (dyn std::error::Error + 'static),
) -> Option<&'e T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// An error and its sources joined with ": " (reqwest's own message says little alone).
/// Called on errors whose URL was removed: none of the sources carries one.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut next = e.source();
    while let Some(err) = next {
        let part = err.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = err.source();
    }
    text
}

/// Resolves names with the system resolver and drops every address the allow-list does not
/// open, so that the connector only ever sees allowed addresses. When none is left the
/// lookup fails with the first [`Refusal`], which [`Outbound::send`] finds in the error chain.
struct GuardedResolver {
    allow: Arc<OutboundAllow>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match allow.check(addr.ip()) {
                    Ok(()) => true,
                    Err(refusal) => {
                        refused.get_or_insert(refusal);
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                return Err(match refused {
                    Some(refusal) => Box::new(refusal) as Box<dyn std::error::Error + Send + Sync>,
                    None => format!("{host} has no address").into(),
                });
            }
            let addrs: Addrs = Box::new(kept.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_445_412_480_000; // Wed, 21 Oct 2015 07:28:00 GMT

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after("120", NOW_MS),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", NOW_MS), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", NOW_MS),
            Some(Duration::from_secs(120))
        );
        // RFC 850 and asctime forms are still HTTP-dates a recipient must accept.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:29:00 GMT", NOW_MS),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:30 2015", NOW_MS),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", NOW_MS),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(parse_retry_after("-5", NOW_MS), None);
        assert_eq!(parse_retry_after("soon", NOW_MS), None);
        assert_eq!(parse_retry_after("", NOW_MS), None);
        assert_eq!(parse_retry_after("1.5", NOW_MS), None);
    }

    #[test]
    fn the_target_never_shows_path_or_query() {
        let url = Url::parse("https://api.telegram.org/bot123:SECRET/sendMessage?x=TOKEN").unwrap();
        assert_eq!(target_of(&url), "https://api.telegram.org:443");
        let url = Url::parse("http://user:pw@[::1]:8080/a?access_token=SECRET").unwrap();
        assert_eq!(target_of(&url), "http://[::1]:8080");
        let request = OutboundRequest::post_json(url, &serde_json::json!({"a": 1}));
        let debug = format!("{request:?}");
        assert!(
            !debug.contains("SECRET") && !debug.contains("pw"),
            "{debug}"
        );
    }
}
