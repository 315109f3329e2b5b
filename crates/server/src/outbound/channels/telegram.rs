//! Telegram Bot API (core.telegram.org/bots/api): `sendMessage` and `setWebhook`.
//!
//! - `POST /bot<token>/sendMessage` with `chat_id`, `text` and `reply_markup.inline_keyboard`:
//!   URL buttons carry `url`, node buttons `callback_data`, which Telegram limits to 1-64 bytes.
//! - `POST /bot<token>/setWebhook` with `url`, `secret_token` (1-256 characters of
//!   `A-Za-z0-9_-`, echoed in `X-Telegram-Bot-Api-Secret-Token`) and `allowed_updates`.
//! - Answers are `{"ok":true,"result":{...}}` or `{"ok":false,"error_code":N,"description":"..."
//!   [,"parameters":{"retry_after":S}]}` ("Making requests" and `ResponseParameters`).

use serde_json::{Value, json};

use super::{
    Answer, ButtonTarget, DEFAULT_RETRY_AFTER, MessageError, OutMessage, SendOutcome,
    classify_http, endpoint, limit_chars, node_payload, require,
};
use crate::outbound::client::OutboundRequest;

const CHANNEL: &str = "telegram";
/// Telegram's origin.
pub const API_BASE: &str = "https://api.telegram.org";
/// `sendMessage`: "Text of the message to be sent, 1-4096 characters after entities parsing".
const TEXT_LIMIT: usize = 4096;
/// `InlineKeyboardButton.callback_data`: "1-64 bytes".
const CALLBACK_DATA_LIMIT: usize = 64;
/// What botlink's webhook handles: messages (`/start`), button presses, and
/// `my_chat_member`, which reports a person blocking or unblocking the bot.
pub const ALLOWED_UPDATES: [&str; 3] = ["message", "callback_query", "my_chat_member"];

/// A Telegram bot's secret.
#[derive(Clone)]
pub struct TelegramCreds {
    /// The token from @BotFather, `123456:ABC-DEF...`.
    pub token: String,
}

fn method_url(
    creds: &TelegramCreds,
    api_base_url: Option<&str>,
    method: &str,
) -> Result<url::Url, MessageError> {
    require(CHANNEL, "the bot token", &creds.token)?;
    endpoint(
        CHANNEL,
        api_base_url,
        API_BASE,
        &[&format!("bot{}", creds.token), method],
    )
}

/// `sendMessage` to `msg.chat_id`, one button a row.
pub fn send_message_request(
    creds: &TelegramCreds,
    api_base_url: Option<&str>,
    msg: &OutMessage,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the chat id", &msg.chat_id)?;
    require(CHANNEL, "the text", &msg.text)?;
    limit_chars(CHANNEL, "the text", &msg.text, TEXT_LIMIT)?;
    let mut body = json!({ "chat_id": msg.chat_id, "text": msg.text });
    if !msg.buttons.is_empty() {
        let mut rows = Vec::with_capacity(msg.buttons.len());
        for button in &msg.buttons {
            let key = match &button.target {
                ButtonTarget::Url(url) => json!({ "text": button.text, "url": url }),
                ButtonTarget::Node(node) => {
                    let data = node_payload(node);
                    if data.len() > CALLBACK_DATA_LIMIT {
                        return Err(MessageError::new(
                            CHANNEL,
                            format!(
                                "the callback data of button {:?} ({data:?}) is {} bytes, over the limit of {CALLBACK_DATA_LIMIT}: use a shorter node name",
                                button.text,
                                data.len()
                            ),
                        ));
                    }
                    json!({ "text": button.text, "callback_data": data })
                }
            };
            rows.push(json!([key]));
        }
        body["reply_markup"] = json!({ "inline_keyboard": rows });
    }
    Ok(OutboundRequest::post_json(
        method_url(creds, api_base_url, "sendMessage")?,
        &body,
    ))
}

/// `setWebhook` for `webhook_url`, with `secret_token` and [`ALLOWED_UPDATES`].
pub fn set_webhook_request(
    creds: &TelegramCreds,
    api_base_url: Option<&str>,
    webhook_url: &str,
    secret: &str,
) -> Result<OutboundRequest, MessageError> {
    // setWebhook: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and - are allowed."
    let valid = (1..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return Err(MessageError::new(
            CHANNEL,
            format!(
                "the webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and - (it is {} characters)",
                secret.chars().count()
            ),
        ));
    }
    let body = json!({
        "url": webhook_url,
        "secret_token": secret,
        "allowed_updates": ALLOWED_UPDATES,
    });
    Ok(OutboundRequest::post_json(
        method_url(creds, api_base_url, "setWebhook")?,
        &body,
    ))
}

/// Classifies a Bot API answer.
///
/// | answer | outcome |
/// |---|---|
/// | `ok: true` | `Sent` with `result.message_id` |
/// | 429, `parameters.retry_after` | `RetryAfter` (the body's seconds, else `Retry-After`) |
/// | 403 "bot was blocked by the user" | `Blocked { blocked_by_user }` |
/// | 403 "user is deactivated" | `Blocked { user_deactivated }` |
/// | 403 "bot can't initiate conversation with a user" | `Blocked { not_started }` |
/// | 403 "bot was kicked from the ... chat", "bot is not a member" | `Blocked { kicked }` |
/// | 400 "chat not found" | `Blocked { chat_not_found }` |
/// | 400 "group chat was upgraded to a supergroup chat" (`migrate_to_chat_id`) | `Failed { chat_migrated }` |
/// | 401, 404 (a wrong token) | `Failed { unauthorized }` |
/// | other 4xx | `Failed { bad_request }`; 5xx `Transient { server_error }` |
pub fn classify_telegram(answer: &Answer) -> SendOutcome {
    let body = answer.json();
    let field = |name: &str| body.as_ref().and_then(|b| b.get(name));
    if answer.status.is_success() && field("ok").and_then(Value::as_bool) != Some(false) {
        let message_id = field("result")
            .and_then(|r| r.get("message_id"))
            .map(|id| match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        return SendOutcome::Sent { message_id };
    }
    let description = field("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let detail = if description.is_empty() {
        answer.text()
    } else {
        super::detail(&description)
    };
    let parameters = field("parameters");
    if let Some(seconds) = parameters
        .and_then(|p| p.get("retry_after"))
        .and_then(Value::as_u64)
    {
        return SendOutcome::RetryAfter(std::time::Duration::from_secs(seconds));
    }
    if parameters
        .and_then(|p| p.get("migrate_to_chat_id"))
        .is_some()
    {
        return SendOutcome::Failed {
            reason: "chat_migrated",
            detail,
        };
    }
    let said = description.to_ascii_lowercase();
    let blocked = |reason| SendOutcome::Blocked {
        reason,
        detail: detail.clone(),
    };
    match answer.status.as_u16() {
        429 => SendOutcome::RetryAfter(answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
        403 if said.contains("blocked by the user") => blocked("blocked_by_user"),
        403 if said.contains("user is deactivated") => blocked("user_deactivated"),
        403 if said.contains("can't initiate conversation") => blocked("not_started"),
        403 if said.contains("kicked") || said.contains("not a member") => blocked("kicked"),
        403 => blocked("forbidden"),
        400 if said.contains("chat not found") => blocked("chat_not_found"),
        400 if said.contains("upgraded to a supergroup") => SendOutcome::Failed {
            reason: "chat_migrated",
            detail,
        },
        // The Bot API answers 404 "Not Found" to a token it does not know.
        401 | 404 => SendOutcome::Failed {
            reason: "unauthorized",
            detail,
        },
        _ => classify_http(answer, detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::channels::Button;
    use std::time::Duration;

    fn message(buttons: Vec<Button>) -> OutMessage {
        OutMessage {
            id: "d1".into(),
            chat_id: "398866372".into(),
            text: "Hello".into(),
            buttons,
            tag: None,
            template: None,
        }
    }

    fn creds() -> TelegramCreds {
        TelegramCreds {
            token: "123456:ABC-def_ghi".into(),
        }
    }

    #[test]
    fn send_message_has_the_token_in_the_path_and_buttons_as_an_inline_keyboard() {
        let msg = message(vec![
            Button {
                text: "Site".into(),
                target: ButtonTarget::Url("https://example.com".into()),
            },
            Button {
                text: "Next".into(),
                target: ButtonTarget::Node("step_2".into()),
            },
        ]);
        let request = send_message_request(&creds(), None, &msg).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://api.telegram.org/bot123456:ABC-def_ghi/sendMessage"
        );
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "chat_id": "398866372",
                "text": "Hello",
                "reply_markup": {"inline_keyboard": [
                    [{"text": "Site", "url": "https://example.com"}],
                    [{"text": "Next", "callback_data": "n:step_2"}],
                ]},
            })
        );
    }

    #[test]
    fn a_node_name_past_64_bytes_of_callback_data_is_refused() {
        let fits = "a".repeat(62);
        let msg = message(vec![Button {
            text: "Go".into(),
            target: ButtonTarget::Node(fits),
        }]);
        assert!(send_message_request(&creds(), None, &msg).is_ok());
        let msg = message(vec![Button {
            text: "Go".into(),
            target: ButtonTarget::Node("ж".repeat(32)),
        }]);
        let e = send_message_request(&creds(), None, &msg).unwrap_err();
        assert!(
            e.to_string().contains("66 bytes, over the limit of 64"),
            "{e}"
        );
    }

    #[test]
    fn set_webhook_names_the_url_secret_and_updates() {
        let request = set_webhook_request(
            &creds(),
            None,
            "https://botlink.example/webhooks/telegram/b1",
            "s3cr3t_-",
        )
        .unwrap();
        assert!(request.url.as_str().ends_with("/setWebhook"));
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["secret_token"], "s3cr3t_-");
        assert_eq!(
            body["allowed_updates"],
            json!(["message", "callback_query", "my_chat_member"])
        );
        assert!(set_webhook_request(&creds(), None, "https://x", "bad secret").is_err());
        assert!(set_webhook_request(&creds(), None, "https://x", "").is_err());
    }

    fn outcome(status: u16, body: &str) -> SendOutcome {
        classify_telegram(&Answer::new(status, body.as_bytes()))
    }

    #[test]
    fn answers_are_classified_as_the_bot_api_documents_them() {
        assert_eq!(
            outcome(
                200,
                r#"{"ok":true,"result":{"message_id":77,"chat":{"id":398866372},"date":1,"text":"Hello"}}"#
            ),
            SendOutcome::Sent {
                message_id: Some("77".into())
            }
        );
        assert_eq!(
            outcome(
                429,
                r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 17","parameters":{"retry_after":17}}"#
            ),
            SendOutcome::RetryAfter(Duration::from_secs(17))
        );
        let cases = [
            (
                403,
                "Forbidden: bot was blocked by the user",
                "blocked_by_user",
            ),
            (403, "Forbidden: user is deactivated", "user_deactivated"),
            (
                403,
                "Forbidden: bot can't initiate conversation with a user",
                "not_started",
            ),
            (
                403,
                "Forbidden: bot was kicked from the group chat",
                "kicked",
            ),
            (
                403,
                "Forbidden: bot is not a member of the supergroup chat",
                "kicked",
            ),
            (400, "Bad Request: chat not found", "chat_not_found"),
        ];
        for (status, description, reason) in cases {
            let body =
                json!({"ok": false, "error_code": status, "description": description}).to_string();
            assert_eq!(
                outcome(status, &body),
                SendOutcome::Blocked {
                    reason,
                    detail: description.into()
                },
                "{description}"
            );
        }
        assert!(matches!(
            outcome(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: group chat was upgraded to a supergroup chat","parameters":{"migrate_to_chat_id":-1001234567890}}"#
            ),
            SendOutcome::Failed {
                reason: "chat_migrated",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                401,
                r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#
            ),
            SendOutcome::Failed {
                reason: "unauthorized",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                404,
                r#"{"ok":false,"error_code":404,"description":"Not Found"}"#
            ),
            SendOutcome::Failed {
                reason: "unauthorized",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                400,
                r#"{"ok":false,"error_code":400,"description":"Bad Request: message text is empty"}"#
            ),
            SendOutcome::Failed {
                reason: "bad_request",
                ..
            }
        ));
        assert!(matches!(
            outcome(502, "<html>Bad Gateway</html>"),
            SendOutcome::Transient {
                reason: "server_error",
                ..
            }
        ));
        let no_body_delay = Answer {
            retry_after: Some(Duration::from_secs(9)),
            ..Answer::new(
                429,
                br#"{"ok":false,"error_code":429,"description":"Too Many Requests"}"#,
            )
        };
        assert_eq!(
            classify_telegram(&no_body_delay),
            SendOutcome::RetryAfter(Duration::from_secs(9))
        );
    }
}
