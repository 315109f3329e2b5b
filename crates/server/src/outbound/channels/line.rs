//! LINE Messaging API (developers.line.biz/en/reference/messaging-api/): push messages.
//!
//! - `POST /v2/bot/message/push` with `Authorization: Bearer <channel access token>`: `to`
//!   (the user id) and `messages`: a text (at most 5,000 characters) or, with buttons, a
//!   buttons template (`altText`, `template.type: "buttons"`, text at most 160 characters, at
//!   most 4 actions with labels of at most 20 characters: `uri` for URLs, `postback` with
//!   `data` of at most 300 characters for nodes).
//! - `X-Line-Retry-Key` (a UUID) makes a retry safe: LINE answers 409 to a key it has already
//!   accepted, with the messages it sent then. botlink sends the message id when it is a UUID.
//! - Errors are `{"message": "...", "details": [...]}` with the HTTP status. LINE answers 200
//!   to a push to a person who blocked the account: blocking is not seen here but in the
//!   `unfollow` webhook event.
//! - The webhook URL is set in the LINE Developers Console ([`CONSOLE`]).

use reqwest::header::HeaderName;
use serde_json::{Value, json};

use super::{
    Answer, ButtonTarget, MessageError, OutMessage, SendOutcome, classify_http, endpoint,
    limit_buttons, limit_chars, node_payload, require, secret_header,
};
use crate::outbound::client::OutboundRequest;

const CHANNEL: &str = "line";
/// LINE's origin for this endpoint (the API's other domain, api-data.line.me, serves
/// content uploads and downloads only).
pub const API_BASE: &str = "https://api.line.me";
const TEXT_LIMIT: usize = 5000;
const BUTTONS_TEXT_LIMIT: usize = 160;
const ACTION_LIMIT: usize = 4;
const LABEL_LIMIT: usize = 20;
const POSTBACK_DATA_LIMIT: usize = 300;
/// Where the webhook is registered by hand.
pub const CONSOLE: &str = "the LINE Developers Console: the channel's Messaging API tab > Webhook settings: paste this webhook URL, turn \"Use webhook\" on, and press Verify";

/// A LINE Official Account's secret.
#[derive(Clone)]
pub struct LineCreds {
    pub channel_access_token: String,
}

/// The push request for `msg`.
pub fn send_message_request(
    creds: &LineCreds,
    api_base_url: Option<&str>,
    msg: &OutMessage,
) -> Result<OutboundRequest, MessageError> {
    require(
        CHANNEL,
        "the channel access token",
        &creds.channel_access_token,
    )?;
    require(CHANNEL, "the user id", &msg.chat_id)?;
    require(CHANNEL, "the text", &msg.text)?;
    let message = if msg.buttons.is_empty() {
        limit_chars(CHANNEL, "the text", &msg.text, TEXT_LIMIT)?;
        json!({ "type": "text", "text": msg.text })
    } else {
        limit_chars(
            CHANNEL,
            "the text of a message with buttons",
            &msg.text,
            BUTTONS_TEXT_LIMIT,
        )?;
        limit_buttons(CHANNEL, msg.buttons.len(), ACTION_LIMIT)?;
        let mut actions = Vec::with_capacity(msg.buttons.len());
        for button in &msg.buttons {
            limit_chars(
                CHANNEL,
                &format!("the label of button {:?}", button.text),
                &button.text,
                LABEL_LIMIT,
            )?;
            actions.push(match &button.target {
                ButtonTarget::Url(url) => {
                    json!({ "type": "uri", "label": button.text, "uri": url })
                }
                ButtonTarget::Node(node) => {
                    let data = node_payload(node);
                    limit_chars(CHANNEL, "a postback's data", &data, POSTBACK_DATA_LIMIT)?;
                    // `displayText` shows the press in the chat as the person's message.
                    json!({
                        "type": "postback",
                        "label": button.text,
                        "data": data,
                        "displayText": button.text,
                    })
                }
            });
        }
        json!({
            "type": "template",
            // altText is at most 400 characters; the text is already at most 160.
            "altText": msg.text,
            "template": { "type": "buttons", "text": msg.text, "actions": actions },
        })
    };
    let body = json!({ "to": msg.chat_id, "messages": [message] });
    let url = endpoint(
        CHANNEL,
        api_base_url,
        API_BASE,
        &["v2", "bot", "message", "push"],
    )?;
    let mut request = OutboundRequest::post_json(url, &body);
    request.headers.insert(
        reqwest::header::AUTHORIZATION,
        secret_header(CHANNEL, format!("Bearer {}", creds.channel_access_token))?,
    );
    if let Ok(key) = uuid::Uuid::parse_str(&msg.id) {
        request.headers.insert(
            HeaderName::from_static("x-line-retry-key"),
            key.hyphenated()
                .to_string()
                .parse()
                .map_err(|_| MessageError::new(CHANNEL, "the retry key is not a header value"))?,
        );
    }
    Ok(request)
}

/// Classifies a push answer.
///
/// | answer | outcome |
/// |---|---|
/// | 200 `{"sentMessages":[{"id"}]}` | `Sent` |
/// | 409 (this `X-Line-Retry-Key` was already accepted) | `Sent`: the earlier try went out |
/// | 429 "You have reached your monthly limit." | `Failed { monthly_limit }` |
/// | 429 (rate limit, concurrency limit) | `RetryAfter` (`Retry-After`, else 30 s) |
/// | 401 | `Failed { unauthorized }`; 403 `Failed { forbidden }` (the plan or account lacks the API) |
/// | 400 | `Failed { bad_request }` (an unknown user id is a 400 too) |
/// | 5xx | `Transient { server_error }` |
pub fn classify_line(answer: &Answer) -> SendOutcome {
    let body = answer.json();
    let sent_id = || {
        body.as_ref().and_then(|b| {
            b.get("sentMessages")?
                .get(0)?
                .get("id")?
                .as_str()
                .map(str::to_string)
        })
    };
    if answer.status.is_success() || answer.status.as_u16() == 409 {
        return SendOutcome::Sent {
            message_id: sent_id(),
        };
    }
    let message = body
        .as_ref()
        .and_then(|b| b.get("message")?.as_str().map(str::to_string));
    let detail = match (&message, body.as_ref().and_then(|b| b.get("details"))) {
        (Some(m), Some(Value::Array(details))) if !details.is_empty() => {
            super::detail(&format!("{m}: {}", Value::Array(details.clone())))
        }
        (Some(m), _) => super::detail(m),
        (None, _) => answer.text(),
    };
    if answer.status.as_u16() == 429
        && message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("monthly limit"))
    {
        return SendOutcome::Failed {
            reason: "monthly_limit",
            detail,
        };
    }
    classify_http(answer, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::channels::{Button, DEFAULT_RETRY_AFTER};

    fn creds() -> LineCreds {
        LineCreds {
            channel_access_token: "line-token".into(),
        }
    }

    fn message(id: &str, buttons: Vec<Button>) -> OutMessage {
        OutMessage {
            id: id.into(),
            chat_id: "U4af4980629a7f5c1cdb3e1e3e2a1e0c5".into(),
            text: "Pick one".into(),
            buttons,
            tag: None,
            template: None,
        }
    }

    #[test]
    fn a_push_has_the_bearer_token_and_a_retry_key_when_the_id_is_a_uuid() {
        let id = "0195f3c2-7a8b-7c3d-9e4f-a1b2c3d4e5f6";
        let request = send_message_request(&creds(), None, &message(id, vec![])).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://api.line.me/v2/bot/message/push"
        );
        assert_eq!(request.headers["authorization"], "Bearer line-token");
        assert_eq!(request.headers["x-line-retry-key"], id);
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"to": "U4af4980629a7f5c1cdb3e1e3e2a1e0c5", "messages": [{"type": "text", "text": "Pick one"}]})
        );
        let request = send_message_request(&creds(), None, &message("d-1", vec![])).unwrap();
        assert!(request.headers.get("x-line-retry-key").is_none());
    }

    #[test]
    fn buttons_make_a_buttons_template() {
        let msg = message(
            "d1",
            vec![
                Button {
                    text: "Yes".into(),
                    target: ButtonTarget::Node("yes".into()),
                },
                Button {
                    text: "Site".into(),
                    target: ButtonTarget::Url("https://example.com".into()),
                },
            ],
        );
        let request = send_message_request(&creds(), None, &msg).unwrap();
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body["messages"][0],
            json!({
                "type": "template",
                "altText": "Pick one",
                "template": {"type": "buttons", "text": "Pick one", "actions": [
                    {"type": "postback", "label": "Yes", "data": "n:yes", "displayText": "Yes"},
                    {"type": "uri", "label": "Site", "uri": "https://example.com"},
                ]},
            })
        );
        let mut long = msg.clone();
        long.text = "x".repeat(161);
        let e = send_message_request(&creds(), None, &long).unwrap_err();
        assert!(
            e.to_string()
                .contains("161 characters, over the limit of 160"),
            "{e}"
        );
    }

    #[test]
    fn answers_are_classified_by_status_and_message() {
        assert_eq!(
            classify_line(&Answer::new(
                200,
                br#"{"sentMessages":[{"id":"461230966842064897","quoteToken":"IStG5h1Tz7b..."}]}"#
            )),
            SendOutcome::Sent {
                message_id: Some("461230966842064897".into())
            }
        );
        assert_eq!(
            classify_line(&Answer::new(409, br#"{"message":"The retry key is already accepted","sentMessages":[{"id":"461230966842064897","quoteToken":"IStG5h1Tz7b..."}]}"#)),
            SendOutcome::Sent { message_id: Some("461230966842064897".into()) }
        );
        assert_eq!(
            classify_line(&Answer::new(
                429,
                br#"{"message":"The API rate limit has been exceeded. Try again later."}"#
            )),
            SendOutcome::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            classify_line(&Answer::new(
                429,
                br#"{"message":"You have reached your monthly limit."}"#
            )),
            SendOutcome::Failed {
                reason: "monthly_limit",
                detail: "You have reached your monthly limit.".into()
            }
        );
        assert!(matches!(
            classify_line(&Answer::new(401, br#"{"message":"Authentication failed due to the following reason: invalid token. Confirm that the access token in the authorization header is valid."}"#)),
            SendOutcome::Failed { reason: "unauthorized", .. }
        ));
        assert!(matches!(
            classify_line(&Answer::new(
                403,
                br#"{"message":"Access to this API is not available for your account"}"#
            )),
            SendOutcome::Failed {
                reason: "forbidden",
                ..
            }
        ));
        let bad = classify_line(&Answer::new(400, br#"{"message":"The request body has 1 error(s)","details":[{"message":"must be specified","property":"to"}]}"#));
        assert_eq!(
            bad,
            SendOutcome::Failed {
                reason: "bad_request",
                detail: r#"The request body has 1 error(s): [{"message":"must be specified","property":"to"}]"#.into()
            }
        );
        assert!(matches!(
            classify_line(&Answer::new(500, br#"{"message":"Internal server error"}"#)),
            SendOutcome::Transient {
                reason: "server_error",
                ..
            }
        ));
    }
}
