//! Viber REST Bot API (developers.viber.com/docs/api/rest-bot-api/): `send_message` and
//! `set_webhook`.
//!
//! - `POST /pa/send_message` with header `X-Viber-Auth-Token`: `receiver`, `sender.name` (at
//!   most 28 characters), `type: "text"`, `text` (at most 7,000 characters), and buttons as a
//!   `keyboard` of `reply` buttons (whose `ActionBody` comes back as the person's message) and
//!   `open-url` buttons.
//! - `POST /pa/set_webhook` with `url` and `event_types`. `message`, `subscribed` and
//!   `unsubscribed` callbacks are mandatory ("can't be filtered out") and are not valid values
//!   of `event_types`, whose values are `delivered`, `seen`, `failed`, `subscribed`,
//!   `unsubscribed` and `conversation_started`; botlink asks for the ones it handles.
//! - Every answer is HTTP 200 with `{"status":N,"status_message":"..."}`; status 0 is success
//!   and the rest are the "Error codes" table of the REST Bot API.

use std::time::Duration;

use reqwest::header::HeaderName;
use serde_json::{Value, json};

use super::{
    Answer, ButtonTarget, MessageError, OutMessage, SendOutcome, classify_http, endpoint,
    limit_chars, node_payload, require, secret_header,
};
use crate::outbound::client::OutboundRequest;

const CHANNEL: &str = "viber";
/// Viber's origin.
pub const API_BASE: &str = "https://chatapi.viber.com";
const TEXT_LIMIT: usize = 7000;
const SENDER_NAME_LIMIT: usize = 28;
/// Callbacks asked for in `set_webhook` (`message`, `subscribed`, `unsubscribed` always come).
pub const EVENT_TYPES: [&str; 3] = ["conversation_started", "subscribed", "unsubscribed"];
/// Status 12: "You can send up to 100 messages to a user within an hour without receiving a
/// reply": waiting the hour out is the only sure way past it.
const TOO_MANY_REQUESTS_WAIT: Duration = Duration::from_secs(3600);

/// A Viber bot's settings and secret.
#[derive(Clone)]
pub struct ViberCreds {
    /// The bot's authentication token ("Your app key").
    pub token: String,
    /// `sender.name`, shown as the message's author.
    pub sender_name: String,
}

fn request(
    creds: &ViberCreds,
    api_base_url: Option<&str>,
    method: &str,
    body: &Value,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the auth token", &creds.token)?;
    let url = endpoint(CHANNEL, api_base_url, API_BASE, &["pa", method])?;
    let mut request = OutboundRequest::post_json(url, body);
    request.headers.insert(
        HeaderName::from_static("x-viber-auth-token"),
        secret_header(CHANNEL, creds.token.clone())?,
    );
    Ok(request)
}

/// `send_message` of a text to `msg.chat_id` (the Viber user id), buttons as a keyboard.
pub fn send_message_request(
    creds: &ViberCreds,
    api_base_url: Option<&str>,
    msg: &OutMessage,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the receiver", &msg.chat_id)?;
    require(CHANNEL, "the text", &msg.text)?;
    require(CHANNEL, "the sender name", &creds.sender_name)?;
    limit_chars(CHANNEL, "the text", &msg.text, TEXT_LIMIT)?;
    limit_chars(
        CHANNEL,
        "the sender name",
        &creds.sender_name,
        SENDER_NAME_LIMIT,
    )?;
    let mut body = json!({
        "receiver": msg.chat_id,
        "sender": { "name": creds.sender_name },
        "type": "text",
        "text": msg.text,
    });
    if !msg.buttons.is_empty() {
        let buttons: Vec<Value> = msg
            .buttons
            .iter()
            .map(|button| match &button.target {
                ButtonTarget::Node(node) => json!({
                    "ActionType": "reply",
                    "ActionBody": node_payload(node),
                    "Text": button.text,
                }),
                ButtonTarget::Url(url) => json!({
                    "ActionType": "open-url",
                    "ActionBody": url,
                    "Text": button.text,
                }),
            })
            .collect();
        body["keyboard"] = json!({ "Type": "keyboard", "Buttons": buttons });
    }
    request(creds, api_base_url, "send_message", &body)
}

/// `set_webhook` for `webhook_url`, with [`EVENT_TYPES`] and the person's name sent along.
pub fn set_webhook_request(
    creds: &ViberCreds,
    api_base_url: Option<&str>,
    webhook_url: &str,
) -> Result<OutboundRequest, MessageError> {
    let body = json!({
        "url": webhook_url,
        "event_types": EVENT_TYPES,
        "send_name": true,
        "send_photo": false,
    });
    request(creds, api_base_url, "set_webhook", &body)
}

/// Classifies a REST Bot API answer by its `status`.
///
/// | status | name | outcome |
/// |---|---|---|
/// | 0 | ok | `Sent` with `message_token` |
/// | 1 | invalidUrl | `Failed { webhook_url_invalid }` |
/// | 2 | invalidAuthToken | `Failed { unauthorized }` |
/// | 3, 4 | badData, missingData | `Failed { bad_request }` |
/// | 5 | receiverNotRegistered | `Blocked { not_registered }` |
/// | 6 | notSubscribed | `Blocked { not_subscribed }` |
/// | 7, 8, 9 | publicAccountBlocked / NotFound / Suspended | `Failed { bot_unavailable }` |
/// | 10 | webhookNotSet | `Failed { webhook_not_set }` |
/// | 11 | receiverNoSuitableDevice | `Blocked { no_suitable_device }` |
/// | 12 | tooManyRequests | `RetryAfter(1 hour)` |
/// | 13, 14 | apiVersionNotSupported, incompatibleWithVersion | `Failed { api_version }` |
/// | other | | `Failed { platform_error }` |
pub fn classify_viber(answer: &Answer) -> SendOutcome {
    let Some(body) = answer.json().filter(|_| answer.status.is_success()) else {
        return classify_http(answer, answer.text());
    };
    let Some(status) = body.get("status").and_then(Value::as_i64) else {
        return SendOutcome::Failed {
            reason: "unexpected_answer",
            detail: answer.text(),
        };
    };
    let detail = super::detail(
        body.get("status_message")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let failed = |reason| SendOutcome::Failed {
        reason,
        detail: detail.clone(),
    };
    let blocked = |reason| SendOutcome::Blocked {
        reason,
        detail: detail.clone(),
    };
    match status {
        0 => SendOutcome::Sent {
            message_id: body.get("message_token").map(|t| match t {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        },
        1 => failed("webhook_url_invalid"),
        2 => failed("unauthorized"),
        3 | 4 => failed("bad_request"),
        5 => blocked("not_registered"),
        6 => blocked("not_subscribed"),
        7..=9 => failed("bot_unavailable"),
        10 => failed("webhook_not_set"),
        11 => blocked("no_suitable_device"),
        12 => SendOutcome::RetryAfter(TOO_MANY_REQUESTS_WAIT),
        13 | 14 => failed("api_version"),
        _ => failed("platform_error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::channels::Button;

    fn creds() -> ViberCreds {
        ViberCreds {
            token: "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9".into(),
            sender_name: "Shop".into(),
        }
    }

    #[test]
    fn send_message_carries_the_token_header_and_a_keyboard() {
        let msg = OutMessage {
            id: "d1".into(),
            chat_id: "01234567890A=".into(),
            text: "Hi".into(),
            buttons: vec![
                Button {
                    text: "Next".into(),
                    target: ButtonTarget::Node("n2".into()),
                },
                Button {
                    text: "Site".into(),
                    target: ButtonTarget::Url("https://example.com".into()),
                },
            ],
            tag: None,
            template: None,
        };
        let request = send_message_request(&creds(), None, &msg).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://chatapi.viber.com/pa/send_message"
        );
        assert_eq!(
            request.headers["x-viber-auth-token"],
            creds().token.as_str()
        );
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "receiver": "01234567890A=",
                "sender": {"name": "Shop"},
                "type": "text",
                "text": "Hi",
                "keyboard": {"Type": "keyboard", "Buttons": [
                    {"ActionType": "reply", "ActionBody": "n:n2", "Text": "Next"},
                    {"ActionType": "open-url", "ActionBody": "https://example.com", "Text": "Site"},
                ]},
            })
        );
        let long_name = ViberCreds {
            sender_name: "x".repeat(29),
            ..creds()
        };
        let e = send_message_request(&long_name, None, &msg).unwrap_err();
        assert!(
            e.to_string()
                .contains("29 characters, over the limit of 28"),
            "{e}"
        );
    }

    #[test]
    fn set_webhook_asks_for_the_start_and_subscription_callbacks() {
        let request =
            set_webhook_request(&creds(), None, "https://b.example/webhooks/viber/1").unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://chatapi.viber.com/pa/set_webhook"
        );
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body["event_types"],
            json!(["conversation_started", "subscribed", "unsubscribed"])
        );
        assert_eq!(body["url"], "https://b.example/webhooks/viber/1");
    }

    fn outcome(body: &str) -> SendOutcome {
        classify_viber(&Answer::new(200, body.as_bytes()))
    }

    #[test]
    fn statuses_are_classified_as_the_error_table_says() {
        assert_eq!(
            outcome(
                r#"{"status":0,"status_message":"ok","message_token":5741311803571721087,"chat_hostname":"SN-CHAT-05_"}"#
            ),
            SendOutcome::Sent {
                message_id: Some("5741311803571721087".into())
            }
        );
        assert_eq!(
            outcome(
                r#"{"status":6,"status_message":"notSubscribed","message_token":5741311803571721087}"#
            ),
            SendOutcome::Blocked {
                reason: "not_subscribed",
                detail: "notSubscribed".into()
            }
        );
        assert!(matches!(
            outcome(r#"{"status":5,"status_message":"receiverNotRegistered"}"#),
            SendOutcome::Blocked {
                reason: "not_registered",
                ..
            }
        ));
        assert!(matches!(
            outcome(r#"{"status":11,"status_message":"receiverNoSuitableDevice"}"#),
            SendOutcome::Blocked {
                reason: "no_suitable_device",
                ..
            }
        ));
        assert_eq!(
            outcome(
                r#"{"status":12,"status_message":"Too many requests","message_token":1234567890,"chat_hostname":"SN-CHAT-0x_"}"#
            ),
            SendOutcome::RetryAfter(Duration::from_secs(3600))
        );
        assert!(matches!(
            outcome(r#"{"status":2,"status_message":"invalidAuthToken"}"#),
            SendOutcome::Failed {
                reason: "unauthorized",
                ..
            }
        ));
        assert!(matches!(
            outcome(r#"{"status":3,"status_message":"badData"}"#),
            SendOutcome::Failed {
                reason: "bad_request",
                ..
            }
        ));
        assert!(matches!(
            outcome(r#"{"status":9,"status_message":"publicAccountSuspended"}"#),
            SendOutcome::Failed {
                reason: "bot_unavailable",
                ..
            }
        ));
        assert!(matches!(
            outcome(r#"{"status":99,"status_message":"general error"}"#),
            SendOutcome::Failed {
                reason: "platform_error",
                ..
            }
        ));
        assert!(matches!(
            classify_viber(&Answer::new(503, b"")),
            SendOutcome::Transient {
                reason: "server_error",
                ..
            }
        ));
    }
}
