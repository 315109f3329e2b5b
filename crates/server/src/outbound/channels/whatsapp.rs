//! WhatsApp Cloud API (developers.facebook.com/docs/whatsapp/cloud-api/reference/messages):
//! `POST /v21.0/<phone_number_id>/messages` with `Authorization: Bearer <access token>`.
//!
//! - Every body has `messaging_product: "whatsapp"`, `recipient_type: "individual"` and `to`
//!   (the person's WhatsApp id).
//! - A text is `type: "text"`, `text.body` (at most 4,096 characters).
//! - Node buttons are an interactive reply-button message (`interactive.type: "button"`, at
//!   most 3 buttons, titles at most 20 characters, ids at most 256; body at most 1,024
//!   characters). One URL button is a call-to-action URL message (`interactive.type:
//!   "cta_url"`). WhatsApp has no message mixing the two or holding several URL buttons: such
//!   a message is refused, not reshaped.
//! - A template is `type: "template"` with `template.name`, `template.language.code` and
//!   `template.components`: outside the 24-hour window, the only message WhatsApp delivers.
//! - Errors are Graph API errors (`error.code`, "Cloud API error codes").
//! - The webhook is registered in the App Dashboard ([`CONSOLE`]).

use serde_json::{Value, json};

use super::meta::{API_BASE, GRAPH_API_VERSION, graph_error, rate_limit_wait};
use super::{
    Answer, ButtonTarget, MessageError, OutMessage, SendOutcome, classify_http, endpoint,
    limit_buttons, limit_chars, node_payload, require, secret_header,
};
use crate::outbound::client::OutboundRequest;

const CHANNEL: &str = "whatsapp";
const TEXT_LIMIT: usize = 4096;
const INTERACTIVE_BODY_LIMIT: usize = 1024;
const REPLY_BUTTON_LIMIT: usize = 3;
const BUTTON_TITLE_LIMIT: usize = 20;
const REPLY_ID_LIMIT: usize = 256;
/// Where the webhook is registered by hand.
pub const CONSOLE: &str = "the Meta App Dashboard: WhatsApp > Configuration > Webhook: paste this callback URL with the channel's verify token, and subscribe to the messages field";

/// A WhatsApp Business phone number's settings and secret.
#[derive(Clone)]
pub struct WhatsappCreds {
    /// A system user's (or the app's temporary) access token.
    pub access_token: String,
    /// The business phone number's id (not the number itself).
    pub phone_number_id: String,
}

/// The Cloud API request for `msg`: its template when it has one, else its text and buttons.
pub fn send_message_request(
    creds: &WhatsappCreds,
    api_base_url: Option<&str>,
    msg: &OutMessage,
) -> Result<OutboundRequest, MessageError> {
    require(CHANNEL, "the access token", &creds.access_token)?;
    require(CHANNEL, "the phone number id", &creds.phone_number_id)?;
    require(CHANNEL, "the recipient", &msg.chat_id)?;
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": msg.chat_id,
    });
    if let Some(template) = &msg.template {
        require(CHANNEL, "the template name", &template.name)?;
        require(CHANNEL, "the template language", &template.language)?;
        let mut spec = json!({ "name": template.name, "language": { "code": template.language } });
        if !template.components.is_null() {
            spec["components"] = template.components.clone();
        }
        body["type"] = json!("template");
        body["template"] = spec;
    } else {
        require(CHANNEL, "the text", &msg.text)?;
        fill_content(&mut body, msg)?;
    }
    let url = endpoint(
        CHANNEL,
        api_base_url,
        API_BASE,
        &[GRAPH_API_VERSION, &creds.phone_number_id, "messages"],
    )?;
    let mut request = OutboundRequest::post_json(url, &body);
    request.headers.insert(
        reqwest::header::AUTHORIZATION,
        secret_header(CHANNEL, format!("Bearer {}", creds.access_token))?,
    );
    Ok(request)
}

fn fill_content(body: &mut Value, msg: &OutMessage) -> Result<(), MessageError> {
    let urls: Vec<(&str, &str)> = msg
        .buttons
        .iter()
        .filter_map(|b| match &b.target {
            ButtonTarget::Url(url) => Some((b.text.as_str(), url.as_str())),
            ButtonTarget::Node(_) => None,
        })
        .collect();
    let nodes: Vec<(&str, &str)> = msg
        .buttons
        .iter()
        .filter_map(|b| match &b.target {
            ButtonTarget::Node(node) => Some((b.text.as_str(), node.as_str())),
            ButtonTarget::Url(_) => None,
        })
        .collect();
    if msg.buttons.is_empty() {
        limit_chars(CHANNEL, "the text", &msg.text, TEXT_LIMIT)?;
        body["type"] = json!("text");
        body["text"] = json!({ "body": msg.text });
        return Ok(());
    }
    limit_chars(
        CHANNEL,
        "the text of a message with buttons",
        &msg.text,
        INTERACTIVE_BODY_LIMIT,
    )?;
    for button in &msg.buttons {
        limit_chars(
            CHANNEL,
            &format!("the title of button {:?}", button.text),
            &button.text,
            BUTTON_TITLE_LIMIT,
        )?;
    }
    let interactive = match (urls.as_slice(), nodes.as_slice()) {
        ([], nodes) => {
            limit_buttons(CHANNEL, nodes.len(), REPLY_BUTTON_LIMIT)?;
            let mut buttons = Vec::with_capacity(nodes.len());
            for (title, node) in nodes {
                let id = node_payload(node);
                limit_chars(CHANNEL, "a reply button's id", &id, REPLY_ID_LIMIT)?;
                buttons.push(json!({ "type": "reply", "reply": { "id": id, "title": title } }));
            }
            json!({
                "type": "button",
                "body": { "text": msg.text },
                "action": { "buttons": buttons },
            })
        }
        ([(title, url)], []) => json!({
            "type": "cta_url",
            "body": { "text": msg.text },
            "action": {
                "name": "cta_url",
                "parameters": { "display_text": title, "url": url },
            },
        }),
        _ => {
            return Err(MessageError::new(
                CHANNEL,
                format!(
                    "{} URL and {} node buttons: WhatsApp sends either up to 3 node buttons or one URL button",
                    urls.len(),
                    nodes.len()
                ),
            ));
        }
    };
    body["type"] = json!("interactive");
    body["interactive"] = interactive;
    Ok(())
}

/// Classifies a Cloud API answer.
///
/// | code | outcome |
/// |---|---|
/// | none, `messages[0].id` | `Sent` |
/// | 4, 80007, 130429, 131048, 131056 (rate limits, pair rate limit, spam rate limit) | `RetryAfter` (`Retry-After`, else 30 s) |
/// | 131047 (re-engagement: more than 24 hours since the person's last message) | `OutsideWindow` |
/// | 131026 (message undeliverable) | `Blocked { undeliverable }` |
/// | 131050 (the person stopped marketing messages) | `Blocked { opted_out }` |
/// | 0, 190 (authentication, expired token) | `Failed { unauthorized }` |
/// | 3, 10, 200-299, 131005 (permission) | `Failed { permission_denied }` |
/// | 131030 (recipient not in the test allow-list) | `Failed { recipient_not_allowed }` |
/// | 132000-132999 (template errors) | `Failed { template_invalid }` |
/// | 133010 (business number not registered) | `Failed { sender_not_registered }` |
/// | 368, 131031 (business restricted or locked) | `Failed { sender_restricted }` |
/// | 1, 2, 131000, 131016 (unknown, service unavailable) | `Transient { temporary_failure }` |
/// | other | `Failed { bad_request }` |
pub fn classify_whatsapp(answer: &Answer) -> SendOutcome {
    let body = answer.json();
    let Some((code, _, detail)) = body.as_ref().and_then(graph_error) else {
        if answer.status.is_success() {
            let message_id = body.as_ref().and_then(|b| {
                b.get("messages")?
                    .get(0)?
                    .get("id")?
                    .as_str()
                    .map(str::to_string)
            });
            return SendOutcome::Sent { message_id };
        }
        return classify_http(answer, answer.text());
    };
    // The Cloud API puts the useful explanation in `error.error_data.details`.
    let detail = body
        .as_ref()
        .and_then(|b| b.get("error")?.get("error_data")?.get("details")?.as_str())
        .map(|d| super::detail(&format!("{detail}: {d}")))
        .unwrap_or(detail);
    let failed = |reason| SendOutcome::Failed {
        reason,
        detail: detail.clone(),
    };
    match code {
        4 | 80007 | 130429 | 131048 | 131056 => SendOutcome::RetryAfter(rate_limit_wait(answer)),
        131047 => SendOutcome::OutsideWindow { detail },
        131026 => SendOutcome::Blocked {
            reason: "undeliverable",
            detail,
        },
        131050 => SendOutcome::Blocked {
            reason: "opted_out",
            detail,
        },
        0 | 190 => failed("unauthorized"),
        3 | 10 | 200..=299 | 131005 => failed("permission_denied"),
        131030 => failed("recipient_not_allowed"),
        132000..=132999 => failed("template_invalid"),
        133010 => failed("sender_not_registered"),
        368 | 131031 => failed("sender_restricted"),
        1 | 2 | 131000 | 131016 => SendOutcome::Transient {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::channels::{Button, DEFAULT_RETRY_AFTER, WhatsappTemplate};

    fn creds() -> WhatsappCreds {
        WhatsappCreds {
            access_token: "EAAJ-system-user".into(),
            phone_number_id: "106540352242922".into(),
        }
    }

    fn message(buttons: Vec<Button>) -> OutMessage {
        OutMessage {
            id: "d1".into(),
            chat_id: "16505551234".into(),
            text: "Your code is ready".into(),
            buttons,
            tag: None,
            template: None,
        }
    }

    fn body(msg: &OutMessage) -> Value {
        let request = send_message_request(&creds(), None, msg).unwrap();
        serde_json::from_slice(request.body.as_ref().unwrap()).unwrap()
    }

    #[test]
    fn text_goes_to_the_phone_number_id_with_a_bearer_token() {
        let request = send_message_request(&creds(), None, &message(vec![])).unwrap();
        assert_eq!(
            request.url.as_str(),
            "https://graph.facebook.com/v21.0/106540352242922/messages"
        );
        assert_eq!(request.headers["authorization"], "Bearer EAAJ-system-user");
        assert_eq!(
            body(&message(vec![])),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "text",
                "text": {"body": "Your code is ready"},
            })
        );
    }

    #[test]
    fn a_template_replaces_the_text() {
        let mut msg = message(vec![]);
        msg.template = Some(WhatsappTemplate {
            name: "order_update".into(),
            language: "en_US".into(),
            components: json!([{"type": "body", "parameters": [{"type": "text", "text": "42"}]}]),
        });
        let b = body(&msg);
        assert_eq!(b["type"], "template");
        assert_eq!(
            b["template"],
            json!({
                "name": "order_update",
                "language": {"code": "en_US"},
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "42"}]}],
            })
        );
        assert!(b.get("text").is_none());
    }

    #[test]
    fn node_buttons_are_reply_buttons_and_one_url_a_cta_url() {
        let nodes = message(vec![Button {
            text: "Yes".into(),
            target: ButtonTarget::Node("confirm".into()),
        }]);
        assert_eq!(
            body(&nodes)["interactive"],
            json!({
                "type": "button",
                "body": {"text": "Your code is ready"},
                "action": {"buttons": [{"type": "reply", "reply": {"id": "n:confirm", "title": "Yes"}}]},
            })
        );
        let url = message(vec![Button {
            text: "Open".into(),
            target: ButtonTarget::Url("https://example.com".into()),
        }]);
        assert_eq!(
            body(&url)["interactive"],
            json!({
                "type": "cta_url",
                "body": {"text": "Your code is ready"},
                "action": {"name": "cta_url", "parameters": {"display_text": "Open", "url": "https://example.com"}},
            })
        );
        let mixed = message(vec![
            Button {
                text: "Yes".into(),
                target: ButtonTarget::Node("confirm".into()),
            },
            Button {
                text: "Open".into(),
                target: ButtonTarget::Url("https://example.com".into()),
            },
        ]);
        let e = send_message_request(&creds(), None, &mixed).unwrap_err();
        assert!(e.to_string().contains("1 URL and 1 node buttons"), "{e}");
    }

    fn outcome(status: u16, code: i64, message: &str, details: &str) -> SendOutcome {
        let body = json!({"error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "error_data": {"messaging_product": "whatsapp", "details": details},
            "fbtrace_id": "Az8or2yhqkZfEZ-_4Qn_Bam",
        }})
        .to_string();
        classify_whatsapp(&Answer::new(status, body.as_bytes()))
    }

    #[test]
    fn cloud_api_errors_are_classified_by_code() {
        assert_eq!(
            classify_whatsapp(&Answer::new(200, br#"{"messaging_product":"whatsapp","contacts":[{"input":"16505551234","wa_id":"16505551234"}],"messages":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA"}]}"#)),
            SendOutcome::Sent { message_id: Some("wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA".into()) }
        );
        assert_eq!(
            outcome(
                400,
                130429,
                "(#130429) Rate limit hit",
                "Cloud API message throughput has been reached."
            ),
            SendOutcome::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            outcome(
                400,
                131056,
                "(#131056) (Business Account, Consumer Account) pair rate limit hit",
                "Too many messages sent from the sender phone number to the same recipient phone number in a short period of time."
            ),
            SendOutcome::RetryAfter(DEFAULT_RETRY_AFTER)
        );
        assert_eq!(
            outcome(400, 131047, "(#131047) Re-engagement message", "Message failed to send because more than 24 hours have passed since the customer last replied to this number."),
            SendOutcome::OutsideWindow {
                detail: "(#131047) Re-engagement message: Message failed to send because more than 24 hours have passed since the customer last replied to this number.".into()
            }
        );
        assert!(matches!(
            outcome(
                400,
                131026,
                "(#131026) Message Undeliverable",
                "Unable to deliver message."
            ),
            SendOutcome::Blocked {
                reason: "undeliverable",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                401,
                190,
                "Error validating access token: Session has expired",
                ""
            ),
            SendOutcome::Failed {
                reason: "unauthorized",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                400,
                132001,
                "(#132001) Template name does not exist in the translation",
                "template name (order_update) does not exist in en_US"
            ),
            SendOutcome::Failed {
                reason: "template_invalid",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                400,
                131030,
                "(#131030) Recipient phone number not in allowed list",
                ""
            ),
            SendOutcome::Failed {
                reason: "recipient_not_allowed",
                ..
            }
        ));
        assert!(matches!(
            outcome(
                503,
                131016,
                "(#131016) Service unavailable",
                "A service is temporarily unavailable."
            ),
            SendOutcome::Transient {
                reason: "temporary_failure",
                ..
            }
        ));
    }
}
