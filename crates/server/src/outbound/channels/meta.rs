//! Meta's Send API for Messenger and Instagram (developers.facebook.com/docs/messenger-platform/
//! reference/send-api): `POST /v21.0/me/messages?access_token=<page access token>`.
//!
//! - The body is `recipient.id` (the PSID or IGSID), `messaging_type` (`RESPONSE`, or
//!   `MESSAGE_TAG` with `tag` outside the 24-hour window) and `message`: `text` (at most 2,000
//!   characters), or, with buttons, a button template (`attachment.payload.template_type:
//!   "button"`, text at most 640 characters, 1-3 buttons of at most 20 characters: `web_url`
//!   for URLs, `postback` with `payload` for nodes).
//! - The token goes in the `access_token` query parameter, as Meta's Send API reference writes
//!   it; [`crate::outbound::client`] never prints a URL past its origin, so it stays out of logs.
//! - Errors are `{"error":{"message","type","code","error_subcode","fbtrace_id"}}` ("Messenger
//!   Platform error codes").
//! - Webhooks are registered in the Meta App Dashboard, not through this API ([`CONSOLE`]).

use std::time::Duration;

use serde_json::{Value, json};

use super::{
    Answer, ButtonTarget, DEFAULT_RETRY_AFTER, MessageError, OutMessage, SendOutcome,
    classify_http, endpoint, limit_buttons, limit_chars, node_payload, require,
};
use crate::outbound::client::OutboundRequest;

/// Meta's Graph API origin.
pub const API_BASE: &str = "https://graph.facebook.com";
/// The Graph API version of every Meta call (Messenger, Instagram, WhatsApp). Meta retires a
/// version about two years after its release: move this forward before then.
pub const GRAPH_API_VERSION: &str = "v21.0";
const TEXT_LIMIT: usize = 2000;
const BUTTON_TEMPLATE_TEXT_LIMIT: usize = 640;
const BUTTON_LIMIT: usize = 3;
const BUTTON_TITLE_LIMIT: usize = 20;
/// Where the webhook is registered by hand.
pub const CONSOLE: &str = "the Meta App Dashboard: Messenger (or Instagram) > Webhooks: paste this callback URL with the channel's verify token, and subscribe the Page to messages, messaging_postbacks and messaging_referrals";

/// A Facebook Page's (or its linked Instagram account's) secret.
#[derive(Clone)]
pub struct MetaCreds {
    pub page_access_token: String,
}

/// The Send API request for `msg`, on `channel` (`messenger` or `instagram`).
pub fn send_message_request(
    channel: &'static str,
    creds: &MetaCreds,
    api_base_url: Option<&str>,
    msg: &OutMessage,
) -> Result<OutboundRequest, MessageError> {
    require(channel, "the page access token", &creds.page_access_token)?;
    require(channel, "the recipient id", &msg.chat_id)?;
    require(channel, "the text", &msg.text)?;
    let message = if msg.buttons.is_empty() {
        limit_chars(channel, "the text", &msg.text, TEXT_LIMIT)?;
        json!({ "text": msg.text })
    } else {
        limit_chars(
            channel,
            "the text of a message with buttons",
            &msg.text,
            BUTTON_TEMPLATE_TEXT_LIMIT,
        )?;
        limit_buttons(channel, msg.buttons.len(), BUTTON_LIMIT)?;
        let mut buttons = Vec::with_capacity(msg.buttons.len());
        for button in &msg.buttons {
            limit_chars(
                channel,
                &format!("the title of button {:?}", button.text),
                &button.text,
                BUTTON_TITLE_LIMIT,
            )?;
            buttons.push(match &button.target {
                ButtonTarget::Url(url) => {
                    json!({ "type": "web_url", "url": url, "title": button.text })
                }
                ButtonTarget::Node(node) => json!({
                    "type": "postback",
                    "title": button.text,
                    "payload": node_payload(node),
                }),
            });
        }
        json!({
            "attachment": {
                "type": "template",
                "payload": { "template_type": "button", "text": msg.text, "buttons": buttons },
            },
        })
    };
    let mut body = json!({
        "recipient": { "id": msg.chat_id },
        "messaging_type": "RESPONSE",
        "message": message,
    });
    if let Some(tag) = &msg.tag {
        body["messaging_type"] = json!("MESSAGE_TAG");
        body["tag"] = json!(tag);
    }
    let mut url = endpoint(
        channel,
        api_base_url,
        API_BASE,
        &[GRAPH_API_VERSION, "me", "messages"],
    )?;
    url.query_pairs_mut()
        .append_pair("access_token", &creds.page_access_token);
    Ok(OutboundRequest::post_json(url, &body))
}

/// `error.code` and `error.error_subcode` of a Graph API error body, with its message.
pub(super) fn graph_error(body: &Value) -> Option<(i64, Option<i64>, String)> {
    let error = body.get("error")?;
    let code = error.get("code")?.as_i64()?;
    let subcode = error.get("error_subcode").and_then(Value::as_i64);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((code, subcode, super::detail(message)))
}

/// Classifies a Send API answer (Messenger and Instagram).
///
/// | code (subcode) | outcome |
/// |---|---|
/// | none, `message_id` | `Sent` |
/// | 4, 9, 17, 32, 613 (rate limits) | `RetryAfter` (`Retry-After`, else 30 s) |
/// | 10 (2018278, 2018065, 2534022): "sent outside of allowed window" | `OutsideWindow` |
/// | 10 (2018108): "this person isn't receiving messages from you right now" | `Blocked { cannot_receive }` |
/// | 551, 200 (1545041): "this person isn't available right now" | `Blocked { user_unavailable }` |
/// | 100 (2018001): "no matching user found" | `Blocked { user_not_found }` |
/// | 190, 102: invalid or expired token | `Failed { unauthorized }` |
/// | 10, 200-299: permission | `Failed { permission_denied }` |
/// | 1, 2, 1200: temporary | `Transient { temporary_failure }` |
/// | other 100 and the rest | `Failed { bad_request }` |
pub fn classify_meta(answer: &Answer) -> SendOutcome {
    let body = answer.json();
    let Some((code, subcode, detail)) = body.as_ref().and_then(graph_error) else {
        if answer.status.is_success() {
            let message_id = body
                .as_ref()
                .and_then(|b| b.get("message_id")?.as_str().map(str::to_string));
            return SendOutcome::Sent { message_id };
        }
        return classify_http(answer, answer.text());
    };
    let failed = |reason| SendOutcome::Failed {
        reason,
        detail: detail.clone(),
    };
    let blocked = |reason| SendOutcome::Blocked {
        reason,
        detail: detail.clone(),
    };
    match (code, subcode) {
        (4 | 9 | 17 | 32 | 613, _) => SendOutcome::RetryAfter(rate_limit_wait(answer)),
        (10, Some(2018278 | 2018065 | 2534022)) => SendOutcome::OutsideWindow { detail },
        (10, Some(2018108)) => blocked("cannot_receive"),
        (551, _) | (200, Some(1545041)) => blocked("user_unavailable"),
        (100, Some(2018001)) => blocked("user_not_found"),
        (190 | 102, _) => failed("unauthorized"),
        (10 | 200..=299, _) => failed("permission_denied"),
        (1 | 2 | 1200, _) => SendOutcome::Transient {
            reason: "temporary_failure",
            detail,
        },
        _ if answer.status.is_server_error() => SendOutcome::Transient {
            reason: "server_error",
            detail,
        },
        _ => failed("bad_request"),
    }
}

pub(super) fn rate_limit_wait(answer: &Answer) -> Duration {
    answer.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::channels::Button;

    fn creds() -> MetaCreds {
        MetaCreds {
            page_access_token: "EAAG-page-token".into(),
        }
    }

    fn message(buttons: Vec<Button>, tag: Option<&str>) -> OutMessage {
        OutMessage {
            id: "d1".into(),
            chat_id: "6543210987654321".into(),
            text: "Your order shipped".into(),
            buttons,
            tag: tag.map(str::to_string),
            template: None,
        }
    }

    #[test]
    fn a_plain_text_is_a_response_with_the_token_in_the_query() {
        let request =
            send_message_request("messenger", &creds(), None, &message(vec![], None)).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://graph.facebook.com/v21.0/me/messages?access_token=EAAG-page-token"
        );
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "recipient": {"id": "6543210987654321"},
                "messaging_type": "RESPONSE",
                "message": {"text": "Your order shipped"},
            })
        );
    }

    #[test]
    fn buttons_make_a_button_template_and_a_tag_a_tagged_message() {
        let msg = message(
            vec![
                Button {
                    text: "Track".into(),
                    target: ButtonTarget::Url("https://example.com/t".into()),
                },
                Button {
                    text: "Help".into(),
                    target: ButtonTarget::Node("help".into()),
                },
            ],
            Some("ACCOUNT_UPDATE"),
        );
        let request = send_message_request("instagram", &creds(), None, &msg).unwrap();
        let body: Value = serde_json::from_slice(request.body.as_ref().unwrap()).unwrap();
        assert_eq!(body["messaging_type"], "MESSAGE_TAG");
        assert_eq!(body["tag"], "ACCOUNT_UPDATE");
        assert_eq!(
            body["message"],
            json!({"attachment": {"type": "template", "payload": {
                "template_type": "button",
                "text": "Your order shipped",
                "buttons": [
                    {"type": "web_url", "url": "https://example.com/t", "title": "Track"},
                    {"type": "postback", "title": "Help", "payload": "n:help"},
                ],
            }}})
        );
        let four = message(
            (0..4)
                .map(|i| Button {
                    text: format!("b{i}"),
                    target: ButtonTarget::Node("x".into()),
                })
                .collect(),
            None,
        );
        let e = send_message_request("messenger", &creds(), None, &four).unwrap_err();
        assert_eq!(e.to_string(), "messenger: 4 buttons, over the limit of 3");
    }

    fn outcome(status: u16, code: i64, subcode: Option<i64>, message: &str) -> SendOutcome {
        let mut error = json!({"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "BLBz/WZt8dN"});
        if let Some(subcode) = subcode {
            error["error_subcode"] = json!(subcode);
        }
        let body = json!({ "error": error }).to_string();
        classify_meta(&Answer::new(status, body.as_bytes()))
    }

    #[test]
    fn graph_errors_are_classified_as_the_error_codes_page_lists_them() {
        assert_eq!(
            classify_meta(&Answer::new(
                200,
                br#"{"recipient_id":"6543210987654321","message_id":"m_AG5Hz2U"}"#
            )),
            SendOutcome::Sent {
                message_id: Some("m_AG5Hz2U".into())
            }
        );
        assert_eq!(
            outcome(
                400,
                613,
                None,
                "Calls to this API have exceeded the rate limit."
            ),
            SendOutcome::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            outcome(
                400,
                4,
                Some(2018022),
                "(#4) Too many send requests to phone numbers"
            ),
            SendOutcome::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert!(matches!(
            outcome(
                400,
                10,
                Some(2018278),
                "(#10) This message is sent outside of allowed window."
            ),
            SendOutcome::OutsideWindow { .. }
        ));
        assert!(matches!(
            outcome(
                400,
                10,
                Some(2018108),
                "(#10) This person isn't receiving messages from you right now."
            ),
            SendOutcome::Blocked {
                reason: "cannot_receive",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                400,
                551,
                Some(1545041),
                "This person isn't available right now."
            ),
            SendOutcome::Blocked {
                reason: "user_unavailable",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                400,
                200,
                Some(1545041),
                "(#200) The person is not available right now"
            ),
            SendOutcome::Blocked {
                reason: "user_unavailable",
                ..
            }
        ));
        assert!(matches!(
            outcome(400, 100, Some(2018001), "(#100) No matching user found"),
            SendOutcome::Blocked {
                reason: "user_not_found",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                401,
                190,
                Some(463),
                "Error validating access token: Session has expired"
            ),
            SendOutcome::Failed {
                reason: "unauthorized",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                403,
                200,
                Some(2018028),
                "(#200) Cannot message users who are not admins, developers or testers of the app until pages_messaging permission is reviewed and the app is live."
            ),
            SendOutcome::Failed {
                reason: "permission_denied",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                500,
                1200,
                None,
                "Temporary send message failure. Please try again later."
            ),
            SendOutcome::Transient {
                reason: "temporary_failure",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                400,
                100,
                None,
                "(#100) Param recipient[id] must be a valid ID string"
            ),
            SendOutcome::Failed {
                reason: "bad_request",
                ..
            }
        ));
    }
}
