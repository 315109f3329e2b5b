//! MAX bot API (dev.max.ru/docs-api): `POST /messages` and `POST /subscriptions`.
//!
//! - The origin is `platform-api2.max.ru` (MAX asks bots to use it instead of
//!   `platform-api.max.ru`); the token goes in the `Authorization` header, since MAX no longer
//!   accepts it as the `access_token` query parameter.
//! - `POST /messages?chat_id=<id>`: `POST /messages` takes `user_id` (a person's global id) or
//!   `chat_id` (a dialog, group or channel). botlink stores the dialog's `chat_id` from the
//!   `bot_started` update, so it writes to that. The body is `text` (at most 4,000
//!   characters) and buttons as an `inline_keyboard` attachment: `link` buttons for URLs,
//!   `callback` buttons with a `payload` (at most 1,024 characters) for nodes.
//! - `POST /subscriptions`: `url`, `update_types` and `secret` (5-256 characters of
//!   `A-Za-z0-9_-`, echoed in `X-Max-Bot-Api-Secret`); answered `{"success":true}`.
//! - Errors are `{"code": "...", "message": "..."}` with the HTTP status (the API's `Error`
//!   schema, e.g. `{"code":"verify.token","message":"Invalid access_token"}`).

use serde_json::{Value, json};

use super::{
    Answer, ButtonTarget, MessageError, OutMessage, SendOutcome, classify_http, endpoint,
    limit_chars, node_payload, require, secret_header,
};
use crate::outbound::client::OutboundRequest;

const CHANNEL: &str = "max";
/// MAX's origin.
pub const API_BASE: &str = "https://platform-api2.max.ru";
const TEXT_LIMIT: usize = 4000;
const PAYLOAD_LIMIT: usize = 1024;
/// Updates botlink's webhook handles: the start, messages, button presses, and the person
/// stopping the bot.
pub const UPDATE_TYPES: [&str; 4] = [
    "bot_started",
    "message_created",
    "message_callback",
    "bot_stopped",
];

/// A MAX bot's secret.
#[derive(Clone)]
pub struct MaxCreds {
    pub token: String,
}

fn request(
    creds: &MaxCreds,
    mut url: url::Url,
    query: Option<(&str, &str)>,
    body: &Value,
) -> Result<OutboundRequest, MessageError> {
    if let Some((name, value)) = query {
        url.query_pairs_mut().append_pair(name, value);
    }
    let mut request = OutboundRequest::post_json(url, body);
    request.headers.insert(
        reqwest::header::AUTHORIZATION,
        secret_header(CHANNEL, creds.token.clone())?,
    );
    Ok(request)
}

/// `POST /messages?chat_id=<msg.chat_id>`.
pub fn send_message_request(
    creds: &MaxCreds,
    api_base_url: Option<&str>,
    msg: &OutMessage,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the bot token", &creds.token)?;
    require(CHANNEL, "the text", &msg.text)?;
    limit_chars(CHANNEL, "the text", &msg.text, TEXT_LIMIT)?;
    // The API's chat_id is an int64.
    let chat_id: i64 = msg.chat_id.trim().parse().map_err(|_| {
        MessageError::new(
            CHANNEL,
            format!("the chat id {:?} is not a number", msg.chat_id),
        )
    })?;
    let mut body = json!({ "text": msg.text });
    if !msg.buttons.is_empty() {
        let mut rows = Vec::with_capacity(msg.buttons.len());
        for button in &msg.buttons {
            let key = match &button.target {
                ButtonTarget::Url(url) => {
                    json!({ "type": "link", "text": button.text, "url": url })
                }
                ButtonTarget::Node(node) => {
                    let payload = node_payload(node);
                    limit_chars(CHANNEL, "a button's payload", &payload, PAYLOAD_LIMIT)?;
                    json!({ "type": "callback", "text": button.text, "payload": payload })
                }
            };
            rows.push(json!([key]));
        }
        body["attachments"] =
            json!([{ "type": "inline_keyboard", "payload": { "buttons": rows } }]);
    }
    let url = endpoint(CHANNEL, api_base_url, API_BASE, &["messages"])?;
    request(creds, url, Some(("chat_id", &chat_id.to_string())), &body)
}

/// `POST /subscriptions` for `webhook_url`, with [`UPDATE_TYPES`] and `secret`.
pub fn subscribe_request(
    creds: &MaxCreds,
    api_base_url: Option<&str>,
    webhook_url: &str,
    secret: &str,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the bot token", &creds.token)?;
    // SubscriptionRequestBody.secret: "5-256 characters. Only characters A-Z, a-z, 0-9, _ and
    // - are allowed."
    let valid = (5..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(MessageError::new(
            CHANNEL,
            format!(
                "the webhook secret must be 5-256 characters of A-Z, a-z, 0-9, _ and - (it is {} characters)",
                secret.chars().count()
            ),
        ));
    }
    let body = json!({ "url": webhook_url, "update_types": UPDATE_TYPES, "secret": secret });
    let url = endpoint(CHANNEL, api_base_url, API_BASE, &["subscriptions"])?;
    request(creds, url, None, &body)
}

/// Classifies a MAX answer.
///
/// | answer | outcome |
/// |---|---|
/// | 200 `{"message":{"body":{"mid"}}}` | `Sent` with the `mid` |
/// | 429 | `RetryAfter` (`Retry-After`, else 30 s) |
/// | 403 (the person blocked or stopped the bot, or left the chat) | `Blocked { forbidden }` |
/// | 404 (no such chat) | `Blocked { chat_not_found }` |
/// | 401 (`verify.token`) | `Failed { unauthorized }` |
/// | other 4xx | `Failed { bad_request }`; 5xx `Transient { server_error }` |
pub fn classify_max(answer: &Answer) -> SendOutcome {
    let body = answer.json();
    if answer.status.is_success() {
        let message_id = body.as_ref().and_then(|b| {
            b.get("message")?
                .get("body")?
                .get("mid")?
                .as_str()
                .map(str::to_string)
        });
        return SendOutcome::Sent { message_id };
    }
    let detail = body
        .as_ref()
        .and_then(|b| {
            let code = b.get("code")?.as_str()?;
            let message = b.get("message").and_then(Value::as_str).unwrap_or_default();
            Some(super::detail(&format!("{code}: {message}")))
        })
        .unwrap_or_else(|| answer.text());
    match answer.status.as_u16() {
        403 => SendOutcome::Blocked {
            reason: "forbidden",
            detail,
        },
        404 => SendOutcome::Blocked {
            reason: "chat_not_found",
            detail,
        },
        _ => classify_http(answer, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::channels::{Button, DEFAULT_RETRY_AFTER};

    fn creds() -> MaxCreds {
        MaxCreds {
            token: "max-token".into(),
        }
    }

    #[test]
    fn a_message_goes_to_the_chat_with_the_token_in_the_header() {
        let msg = OutMessage {
            id: "d1".into(),
            chat_id: "555".into(),
            text: "Hi".into(),
            buttons: vec![
                Button {
                    text: "Site".into(),
                    target: ButtonTarget::Url("https://example.com".into()),
                },
                Button {
                    text: "Next".into(),
                    target: ButtonTarget::Node("n2".into()),
                },
            ],
            tag: None,
            template: None,
        };
        let request = send_message_request(&creds(), None, &msg).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://platform-api2.max.ru/messages?chat_id=555"
        );
        assert_eq!(request.headers["authorization"], "max-token");
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "text": "Hi",
                "attachments": [{"type": "inline_keyboard", "payload": {"buttons": [
                    [{"type": "link", "text": "Site", "url": "https://example.com"}],
                    [{"type": "callback", "text": "Next", "payload": "n:n2"}],
                ]}}],
            })
        );
        let bad = OutMessage {
            chat_id: "abc".into(),
            ..msg
        };
        assert!(send_message_request(&creds(), None, &bad).is_err());
    }

    #[test]
    fn subscribe_names_the_url_updates_and_secret() {
        let request = subscribe_request(
            &creds(),
            None,
            "https://b.example/webhooks/max/1",
            "sec_ret-1",
        )
        .unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://platform-api2.max.ru/subscriptions"
        );
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "url": "https://b.example/webhooks/max/1",
                "update_types": ["bot_started", "message_created", "message_callback", "bot_stopped"],
                "secret": "sec_ret-1",
            })
        );
        assert!(subscribe_request(&creds(), None, "https://x", "abcd").is_err());
    }

    #[test]
    fn answers_are_classified_by_status() {
        assert_eq!(
            classify_max(&Answer::new(200, br#"{"message":{"recipient":{"chat_id":555,"chat_type":"dialog"},"timestamp":1763700000000,"body":{"mid":"mid.0000000000000001","seq":1,"text":"Hi"}}}"#)),
            SendOutcome::Sent { message_id: Some("mid.0000000000000001".into()) }
        );
        assert_eq!(
            classify_max(&Answer::new(
                429,
                br#"{"code":"too.many.requests","message":"Too many requests"}"#
            )),
            SendOutcome::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            classify_max(&Answer::new(
                403,
                br#"{"code":"chat.denied","message":"chat.denied"}"#
            )),
            SendOutcome::Blocked {
                reason: "forbidden",
                detail: "chat.denied: chat.denied".into()
            }
        );
        assert!(matches!(
            classify_max(&Answer::new(
                404,
                br#"{"code":"not.found","message":"Chat 555 not found"}"#
            )),
            SendOutcome::Blocked {
                reason: "chat_not_found",
                ..
            }
        ));
        assert_eq!(
            classify_max(&Answer::new(
                401,
                br#"{"code":"verify.token","message":"Invalid access_token"}"#
            )),
            SendOutcome::Failed {
                reason: "unauthorized",
                detail: "verify.token: Invalid access_token".into()
            }
        );
        assert!(matches!(
            classify_max(&Answer::new(
                503,
                br#"{"code":"service.unavailable","message":"Service unavailable"}"#
            )),
            SendOutcome::Transient {
                reason: "server_error",
                ..
            }
        ));
    }
}
