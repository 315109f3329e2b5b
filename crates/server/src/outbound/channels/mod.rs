//! One sender per messenger: the request that delivers a message (and the one that registers
//! botlink's webhook, where the platform has an API for it), built by pure functions, sent
//! through the guarded client, and the platform's answer classified into one
//! [`SendOutcome`] for every platform.
//!
//! Each platform module has `send_message_request` (pure: settings, secrets and a message in, an
//! [`OutboundRequest`] out), `classify_<platform>` (pure: an [`Answer`] in, a [`SendOutcome`]
//! out), and a registration builder or a [`Registration::Manual`] answer. [`ChannelSender`]
//! ties them to one bot channel, so a worker calls [`ChannelSender::send`] and acts on the
//! outcome.
//!
//! `api_base_url` replaces only the platform's origin (`scheme://host:port`): the paths stay
//! the platform's own. It is meant for a local stand-in of the platform in tests and for an
//! operator's relay; a base with a path is refused rather than silently dropped.
//!
//! Node buttons (which start the scenario at a node when pressed) carry `n:<node>` as their
//! callback payload on every platform ([`node_payload`]).

pub mod custom;
pub mod line;
pub mod max;
pub mod meta;
pub mod telegram;
pub mod viber;
pub mod whatsapp;

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderValue;
use serde_json::Value;
use url::Url;

use super::client::{Outbound, OutboundError, OutboundRequest, OutboundResponse};

pub use custom::CustomCreds;
pub use line::LineCreds;
pub use max::MaxCreds;
pub use meta::MetaCreds;
pub use telegram::TelegramCreds;
pub use viber::ViberCreds;
pub use whatsapp::WhatsappCreds;

/// A message to one person on one channel.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    /// The id of this send, the same on every retry: a custom channel receives it as
    /// `webhook-id` (its receiver de-duplicates on it), LINE as `X-Line-Retry-Key` when it is a
    /// UUID (LINE then answers a repeat with 409 instead of sending twice).
    pub id: String,
    /// Where to write: the `chat_id` stored for the contact (Telegram chat id, Viber user id,
    /// PSID, IGSID, WhatsApp id, LINE user id, MAX chat id).
    pub chat_id: String,
    pub text: String,
    pub buttons: Vec<Button>,
    /// A Messenger/Instagram message tag (`HUMAN_AGENT`, `ACCOUNT_UPDATE`, ...), to send outside
    /// the 24-hour window; ignored elsewhere.
    pub tag: Option<String>,
    /// A WhatsApp template, the only message WhatsApp delivers outside the 24-hour window; when
    /// set, WhatsApp sends it instead of `text` and `buttons`. Ignored elsewhere.
    pub template: Option<WhatsappTemplate>,
}

/// A button under a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    pub text: String,
    pub target: ButtonTarget,
}

/// What pressing a button does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ButtonTarget {
    /// Run the scenario from this node (a callback carrying [`node_payload`]).
    Node(String),
    /// Open this URL.
    Url(String),
}

/// A WhatsApp message template, as approved in WhatsApp Manager.
#[derive(Debug, Clone, PartialEq)]
pub struct WhatsappTemplate {
    pub name: String,
    /// The template's language code, e.g. `en_US`.
    pub language: String,
    /// The Cloud API's `components` array (header, body and button parameters), passed as is;
    /// `null` for a template without parameters.
    pub components: Value,
}

/// The callback payload of a node button: `n:<node>`.
pub fn node_payload(node: &str) -> String {
    format!("n:{node}")
}

/// What became of a send, the same for every platform. The `reason` codes are stable
/// snake_case names (listed in `docs/outbound.md`); `detail` is the platform's own wording,
/// cut to 300 characters, for the operator (platforms do not echo tokens in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    /// The platform accepted the message.
    Sent { message_id: Option<String> },
    /// Rate limited: send again after this long (the platform's figure when it gives one).
    RetryAfter(Duration),
    /// The person cannot be reached (blocked the bot, left, never started it): stop writing
    /// to this contact until they come back.
    Blocked {
        reason: &'static str,
        detail: String,
    },
    /// Outside the platform's 24-hour window: a Messenger/Instagram message tag or a
    /// WhatsApp template is needed, or the person must write first.
    OutsideWindow { detail: String },
    /// A passing failure (5xx, timeout, connection): retry later with backoff.
    Transient {
        reason: &'static str,
        detail: String,
    },
    /// Retrying the same request will not help (bad token, bad request, refused address).
    Failed {
        reason: &'static str,
        detail: String,
    },
}

/// How long to wait on a rate limit when neither the body nor `Retry-After` says.
pub const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

impl SendOutcome {
    /// The outcome of a request that got no answer.
    pub fn from_error(e: &OutboundError) -> SendOutcome {
        let detail = e.to_string();
        match e {
            OutboundError::Refused { .. } => SendOutcome::Failed {
                reason: "refused_address",
                detail,
            },
            OutboundError::InvalidUrl { .. } => SendOutcome::Failed {
                reason: "invalid_url",
                detail,
            },
            // The platform may have acted on the request; retrying could send twice.
            OutboundError::TooLarge { .. } => SendOutcome::Failed {
                reason: "answer_too_large",
                detail,
            },
            OutboundError::Timeout { .. } => SendOutcome::Transient {
                reason: "timeout",
                detail,
            },
            OutboundError::Connect { .. } => SendOutcome::Transient {
                reason: "connect_failed",
                detail,
            },
            OutboundError::Transport { .. } => SendOutcome::Transient {
                reason: "transport_error",
                detail,
            },
        }
    }
}

/// A platform's answer as the classifiers read it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: StatusCode,
    pub body: &'a [u8],
    /// The `Retry-After` header, read as a delay.
    pub retry_after: Option<Duration>,
}

impl<'a> Answer<'a> {
    /// An answer without `Retry-After`.
    pub fn new(status: u16, body: &'a [u8]) -> Answer<'a> {
        Answer {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            body,
            retry_after: None,
        }
    }

    /// The answer of a sent request; `now_ms` (epoch milliseconds) reads a dated `Retry-After`.
    pub fn from_response(response: &'a OutboundResponse, now_ms: i64) -> Answer<'a> {
        Answer {
            status: response.status,
            body: &response.body,
            retry_after: response.retry_after(now_ms),
        }
    }

    fn json(&self) -> Option<Value> {
        serde_json::from_slice(self.body).ok()
    }

    /// The body as text, for `detail`.
    fn text(&self) -> String {
        detail(&String::from_utf8_lossy(self.body))
    }
}

/// The platform's wording, cut to 300 characters.
fn detail(text: &str) -> String {
    const MAX: usize = 300;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The outcome by HTTP status alone, for answers a platform classifier does not recognise:
/// 2xx sent, 429 rate limited, 408 and 5xx transient, 401 and 403 failed on credentials,
/// other 4xx failed.
pub fn classify_http(answer: &Answer, detail: String) -> SendOutcome {
    let status = answer.status;
    if status.is_success() {
        return SendOutcome::Sent { message_id: None };
    }
    match status.as_u16() {
        429 => SendOutcome::RetryAfter(answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
        408 => SendOutcome::Transient {
            reason: "timeout",
            detail,
        },
        500..=599 => SendOutcome::Transient {
            reason: "server_error",
            detail,
        },
        401 => SendOutcome::Failed {
            reason: "unauthorized",
            detail,
        },
        403 => SendOutcome::Failed {
            reason: "forbidden",
            detail,
        },
        404 => SendOutcome::Failed {
            reason: "not_found",
            detail,
        },
        300..=399 => SendOutcome::Failed {
            reason: "redirected",
            detail,
        },
        _ => SendOutcome::Failed {
            reason: "bad_request",
            detail,
        },
    }
}

/// A message (or registration) that cannot be built for a platform: which platform, and the
/// rule it breaks with the length and the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{channel}: {problem}")]
pub struct MessageError {
    pub channel: &'static str,
    pub problem: String,
}

impl MessageError {
    fn new(channel: &'static str, problem: impl Into<String>) -> MessageError {
        MessageError {
            channel,
            problem: problem.into(),
        }
    }
}

/// Checks a text against a platform limit counted in characters.
fn limit_chars(
    channel: &'static str,
    what: &str,
    text: &str,
    limit: usize,
) -> Result<(), MessageError> {
    let len = text.chars().count();
    if len > limit {
        return Err(MessageError::new(
            channel,
            format!("{what} is {len} characters, over the limit of {limit}"),
        ));
    }
    Ok(())
}

fn limit_buttons(channel: &'static str, count: usize, limit: usize) -> Result<(), MessageError> {
    if count > limit {
        return Err(MessageError::new(
            channel,
            format!("{count} buttons, over the limit of {limit}"),
        ));
    }
    Ok(())
}

fn require(channel: &'static str, what: &str, value: &str) -> Result<(), MessageError> {
    if value.trim().is_empty() {
        return Err(MessageError::new(channel, format!("{what} is empty")));
    }
    Ok(())
}

/// The platform's endpoint: `api_base_url` (or the platform's origin) with these path
/// segments, each percent-encoded as a segment.
fn endpoint(
    channel: &'static str,
    api_base_url: Option<&str>,
    default_origin: &str,
    segments: &[&str],
) -> Result<Url, MessageError> {
    let base = api_base_url.unwrap_or(default_origin);
    let mut url = Url::parse(base)
        .map_err(|e| MessageError::new(channel, format!("api_base_url is not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(MessageError::new(
            channel,
            "api_base_url must be an http or https origin, e.g. https://api.example.com",
        ));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(MessageError::new(
            channel,
            "api_base_url replaces only the platform's origin: give scheme://host[:port] without a path or query",
        ));
    }
    url.path_segments_mut()
        .map_err(|()| MessageError::new(channel, "api_base_url cannot take a path"))?
        .clear()
        .extend(segments);
    Ok(url)
}

/// A header carrying a secret: marked sensitive so that `Debug` of a header map hides it.
fn secret_header(channel: &'static str, value: String) -> Result<HeaderValue, MessageError> {
    let mut value = HeaderValue::from_str(&value).map_err(|_| {
        MessageError::new(
            channel,
            "the token has characters an HTTP header cannot carry",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The secrets of one bot channel, decrypted, with the platform they are for.
#[derive(Clone)]
pub enum ChannelCreds {
    Telegram(TelegramCreds),
    Viber(ViberCreds),
    Messenger(MetaCreds),
    Instagram(MetaCreds),
    Whatsapp(WhatsappCreds),
    Line(LineCreds),
    Max(MaxCreds),
    Custom(CustomCreds),
}

/// Never prints a secret: the platform only.
impl std::fmt::Debug for ChannelCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChannelCreds::{}", self.kind())
    }
}

impl ChannelCreds {
    /// The platform's name: `telegram`, `viber`, `messenger`, `instagram`, `whatsapp`, `line`,
    /// `max`, `custom`.
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelCreds::Telegram(_) => "telegram",
            ChannelCreds::Viber(_) => "viber",
            ChannelCreds::Messenger(_) => "messenger",
            ChannelCreds::Instagram(_) => "instagram",
            ChannelCreds::Whatsapp(_) => "whatsapp",
            ChannelCreds::Line(_) => "line",
            ChannelCreds::Max(_) => "max",
            ChannelCreds::Custom(_) => "custom",
        }
    }
}

/// How botlink's webhook gets registered with a platform.
#[derive(Debug)]
pub enum Registration {
    /// Send this request through the guarded client; [`classify_registration`] reads the
    /// answer.
    Request(OutboundRequest),
    /// The platform has no API for it: the operator pastes `webhook_url` in the platform's
    /// console.
    Manual {
        /// Where in the platform's console, and what else to fill in.
        console: &'static str,
        webhook_url: String,
    },
}

/// What became of a webhook registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrationOutcome {
    /// The platform confirmed the webhook.
    Registered,
    /// Done by hand in the platform's console; see [`Registration::Manual`].
    Manual {
        console: &'static str,
        webhook_url: String,
    },
    /// The platform refused or could not be reached; the send outcome says which.
    NotRegistered(SendOutcome),
}

/// One bot channel's sender: its secrets and where its platform is.
#[derive(Debug, Clone)]
pub struct ChannelSender {
    pub creds: ChannelCreds,
    /// Replaces the platform's origin (`None`: the platform's own).
    pub api_base_url: Option<String>,
}

impl ChannelSender {
    pub fn new(creds: ChannelCreds, api_base_url: Option<String>) -> ChannelSender {
        ChannelSender {
            creds,
            api_base_url,
        }
    }

    /// The request that delivers `msg`; `now_ms` (epoch milliseconds) dates a custom
    /// channel's signature.
    pub fn message_request(
        &self,
        msg: &OutMessage,
        now_ms: i64,
    ) -> Result<OutboundRequest, MessageError> {
        let base = self.api_base_url.as_deref();
        match &self.creds {
            ChannelCreds::Telegram(c) => telegram::send_message_request(c, base, msg),
            ChannelCreds::Viber(c) => viber::send_message_request(c, base, msg),
            ChannelCreds::Messenger(c) => meta::send_message_request("messenger", c, base, msg),
            ChannelCreds::Instagram(c) => meta::send_message_request("instagram", c, base, msg),
            ChannelCreds::Whatsapp(c) => whatsapp::send_message_request(c, base, msg),
            ChannelCreds::Line(c) => line::send_message_request(c, base, msg),
            ChannelCreds::Max(c) => max::send_message_request(c, base, msg),
            ChannelCreds::Custom(c) => {
                custom::send_message_request(c, msg, now_ms / 1000, &|id, ts, body| {
                    custom::standard_webhooks_sign(&c.webhook_secret, id, ts, body)
                })
            }
        }
    }

    /// The platform's answer to a message, classified.
    pub fn classify(&self, answer: &Answer) -> SendOutcome {
        match &self.creds {
            ChannelCreds::Telegram(_) => telegram::classify_telegram(answer),
            ChannelCreds::Viber(_) => viber::classify_viber(answer),
            ChannelCreds::Messenger(_) | ChannelCreds::Instagram(_) => meta::classify_meta(answer),
            ChannelCreds::Whatsapp(_) => whatsapp::classify_whatsapp(answer),
            ChannelCreds::Line(_) => line::classify_line(answer),
            ChannelCreds::Max(_) => max::classify_max(answer),
            ChannelCreds::Custom(_) => custom::classify_custom(answer),
        }
    }

    /// Builds, sends and classifies one message. A message that cannot be built for the
    /// platform is `Failed { reason: "invalid_message" }` and nothing is sent.
    pub async fn send(&self, outbound: &Outbound, msg: &OutMessage, now_ms: i64) -> SendOutcome {
        let request = match self.message_request(msg, now_ms) {
            Ok(request) => request,
            Err(e) => {
                return SendOutcome::Failed {
                    reason: "invalid_message",
                    detail: e.to_string(),
                };
            }
        };
        match outbound.send(request).await {
            Ok(response) => self.classify(&Answer::from_response(&response, now_ms)),
            Err(e) => SendOutcome::from_error(&e),
        }
    }

    /// How to register `webhook_url` (botlink's inbound URL for this channel) with the
    /// platform; `secret` is what the platform will echo back (Telegram's `secret_token`,
    /// MAX's `secret`).
    pub fn webhook_registration(
        &self,
        webhook_url: &str,
        secret: &str,
    ) -> Result<Registration, MessageError> {
        let base = self.api_base_url.as_deref();
        let manual = |console| {
            Ok(Registration::Manual {
                console,
                webhook_url: webhook_url.to_string(),
            })
        };
        match &self.creds {
            ChannelCreds::Telegram(c) => {
                telegram::set_webhook_request(c, base, webhook_url, secret)
                    .map(Registration::Request)
            }
            ChannelCreds::Viber(c) => {
                viber::set_webhook_request(c, base, webhook_url).map(Registration::Request)
            }
            ChannelCreds::Max(c) => {
                max::subscribe_request(c, base, webhook_url, secret).map(Registration::Request)
            }
            ChannelCreds::Messenger(_) | ChannelCreds::Instagram(_) => manual(meta::CONSOLE),
            ChannelCreds::Whatsapp(_) => manual(whatsapp::CONSOLE),
            ChannelCreds::Line(_) => manual(line::CONSOLE),
            ChannelCreds::Custom(_) => manual(custom::CONSOLE),
        }
    }

    /// Registers botlink's webhook where the platform has an API for it, or says where to do
    /// it by hand.
    pub async fn register_webhook(
        &self,
        outbound: &Outbound,
        webhook_url: &str,
        secret: &str,
        now_ms: i64,
    ) -> RegistrationOutcome {
        let request = match self.webhook_registration(webhook_url, secret) {
            Ok(Registration::Request(request)) => request,
            Ok(Registration::Manual {
                console,
                webhook_url,
            }) => {
                return RegistrationOutcome::Manual {
                    console,
                    webhook_url,
                };
            }
            Err(e) => {
                return RegistrationOutcome::NotRegistered(SendOutcome::Failed {
                    reason: "invalid_registration",
                    detail: e.to_string(),
                });
            }
        };
        match outbound.send(request).await {
            Ok(response) => {
                classify_registration(self.creds.kind(), &Answer::from_response(&response, now_ms))
            }
            Err(e) => RegistrationOutcome::NotRegistered(SendOutcome::from_error(&e)),
        }
    }
}

/// Reads a platform's answer to a webhook registration: Telegram's `{"ok":true}`, Viber's
/// `{"status":0}`, MAX's `{"success":true}`.
pub fn classify_registration(kind: &str, answer: &Answer) -> RegistrationOutcome {
    let body = answer.json();
    let confirmed = match kind {
        "telegram" => body.as_ref().and_then(|b| b.get("ok")?.as_bool()) == Some(true),
        "viber" => body.as_ref().and_then(|b| b.get("status")?.as_i64()) == Some(0),
        "max" => body.as_ref().and_then(|b| b.get("success")?.as_bool()) == Some(true),
        _ => false,
    };
    if answer.status.is_success() && confirmed {
        return RegistrationOutcome::Registered;
    }
    let outcome = match kind {
        "telegram" => telegram::classify_telegram(answer),
        "viber" => viber::classify_viber(answer),
        "max" => max::classify_max(answer),
        _ => classify_http(answer, answer.text()),
    };
    RegistrationOutcome::NotRegistered(match outcome {
        // A 2xx that does not confirm is a refusal in the platform's words.
        SendOutcome::Sent { .. } => SendOutcome::Failed {
            reason: "not_confirmed",
            detail: answer.text(),
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_base_replaces_only_the_origin() {
        let url = endpoint(
            "telegram",
            Some("http://127.0.0.1:4567"),
            "https://x",
            &["a", "b/c"],
        )
        .unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:4567/a/b%2Fc");
        let url = endpoint("line", None, "https://api.line.me", &["v2", "bot"]).unwrap();
        assert_eq!(url.as_str(), "https://api.line.me/v2/bot");
        for bad in [
            "http://relay.local/telegram",
            "ftp://x",
            "not a url",
            "http://x/?a=1",
        ] {
            let e = endpoint("telegram", Some(bad), "https://x", &["a"]).unwrap_err();
            assert_eq!(e.channel, "telegram", "{bad}");
        }
    }

    #[test]
    fn the_detail_is_cut_at_300_characters() {
        assert_eq!(detail("short"), "short");
        let long = "é".repeat(400);
        let cut = detail(&long);
        assert_eq!(cut.chars().count(), 301);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn transport_errors_map_to_outcomes() {
        let timeout = OutboundError::Timeout {
            target: "https://api.line.me:443".into(),
            stage: crate::outbound::TimeoutStage::Total,
            limit: Duration::from_secs(15),
        };
        assert!(matches!(
            SendOutcome::from_error(&timeout),
            SendOutcome::Transient {
                reason: "timeout",
                ..
            }
        ));
        let invalid = OutboundError::InvalidUrl {
            reason: "no host".into(),
        };
        assert!(matches!(
            SendOutcome::from_error(&invalid),
            SendOutcome::Failed {
                reason: "invalid_url",
                ..
            }
        ));
    }

    #[test]
    fn registration_answers_are_read_per_platform() {
        let ok = Answer::new(
            200,
            br#"{"ok":true,"result":true,"description":"Webhook was set"}"#,
        );
        assert_eq!(
            classify_registration("telegram", &ok),
            RegistrationOutcome::Registered
        );
        let viber = Answer::new(
            200,
            br#"{"status":0,"status_message":"ok","event_types":[]}"#,
        );
        assert_eq!(
            classify_registration("viber", &viber),
            RegistrationOutcome::Registered
        );
        let viber_bad = Answer::new(200, br#"{"status":1,"status_message":"invalidUrl"}"#);
        assert!(matches!(
            classify_registration("viber", &viber_bad),
            RegistrationOutcome::NotRegistered(SendOutcome::Failed {
                reason: "webhook_url_invalid",
                ..
            })
        ));
        let max = Answer::new(200, br#"{"success":true}"#);
        assert_eq!(
            classify_registration("max", &max),
            RegistrationOutcome::Registered
        );
        let max_no = Answer::new(
            200,
            br#"{"success":false,"message":"url is not reachable"}"#,
        );
        assert!(matches!(
            classify_registration("max", &max_no),
            RegistrationOutcome::NotRegistered(SendOutcome::Failed {
                reason: "not_confirmed",
                ..
            })
        ));
        let unauthorized = Answer::new(
            401,
            br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
        );
        assert!(matches!(
            classify_registration("telegram", &unauthorized),
            RegistrationOutcome::NotRegistered(SendOutcome::Failed {
                reason: "unauthorized",
                ..
            })
        ));
    }
}
