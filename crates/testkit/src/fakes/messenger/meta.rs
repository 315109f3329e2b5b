//! Messenger's and Instagram's Send API on the Graph API:
//! `POST https://graph.facebook.com/<version>/me/messages` (or `/<page id>/messages`).
//!
//! Rules followed (developers.facebook.com/docs/messenger-platform: Send API reference, "Common
//! Error Codes", policy overview): the page access token comes as the `access_token` query
//! parameter or `Authorization: Bearer`; the body names `recipient.id` and a `message` (text of at
//! most 2,000 characters, or an attachment, such as a button template of a text of at most 640
//! characters and 1 to 3 buttons) or a `sender_action`; `messaging_type` is `RESPONSE`,
//! `UPDATE` or `MESSAGE_TAG`, the last with a `tag`. Success is `{"recipient_id", "message_id"}`;
//! every error is HTTP 400 with `{"error": {"message", "type", "code", "error_subcode",
//! "fbtrace_id"}}`, so a client must read `error.code`: 190 bad token, 100 bad parameter,
//! 613 too many calls, 551 (subcode 1545041) the person is unavailable (blocked the page), 10
//! (subcode 2018278) outside the 24-hour window, which only a message tag passes.
//!
//! The fake does not require `messaging_type` (Meta asks for it but the Send API defaults it).

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Call, Fake, Platform, Refusal, Send, json};

/// Messenger's longest text message.
const MAX_TEXT_CHARS: usize = 2_000;
/// A button template's longest text, and its most buttons.
const MAX_BUTTON_TEMPLATE_TEXT_CHARS: usize = 640;
const MAX_TEMPLATE_BUTTONS: usize = 3;

/// The message tags that may be sent outside the 24-hour window (Messenger Platform, "Message
/// Tags").
pub(super) const MESSAGE_TAGS: [&str; 4] = [
    "CONFIRMED_EVENT_UPDATE",
    "POST_PURCHASE_UPDATE",
    "ACCOUNT_UPDATE",
    "HUMAN_AGENT",
];

pub(super) async fn handle(fake: &Fake, call: &Call) -> Response {
    let token = call
        .query("access_token")
        .or_else(|| call.bearer())
        .filter(|t| !t.is_empty());
    let Some(token) = token else {
        return graph_error(
            fake,
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        );
    };
    if !fake.knows(Platform::Messenger, token) {
        return graph_error(
            fake,
            StatusCode::BAD_REQUEST,
            190,
            None,
            "Invalid OAuth access token.",
        );
    }
    match read(call) {
        Ok(Read::Action { recipient }) => {
            json(StatusCode::OK, json!({ "recipient_id": recipient }))
        }
        Ok(Read::Message(mut send)) => {
            send.bot = token.to_owned();
            let recipient = send.chat_id.clone();
            match fake.send(send).await {
                Ok(n) => json(
                    StatusCode::OK,
                    json!({"recipient_id": recipient, "message_id": format!("m_fake{n:020}")}),
                ),
                Err(refusal) => refused(fake, refusal),
            }
        }
        Err(message) => graph_error(fake, StatusCode::BAD_REQUEST, 100, None, &message),
    }
}

enum Read {
    /// A `sender_action` (typing, seen): answered, not a message.
    Action {
        recipient: String,
    },
    Message(Send),
}

fn read(call: &Call) -> Result<Read, String> {
    let body = call
        .json_object()
        .ok_or("(#100) The request body must be a JSON object")?;
    let recipient = match body.get("recipient").and_then(|r| r.get("id")) {
        Some(Value::String(id)) if !id.is_empty() => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => return Err("(#100) The parameter recipient is required".into()),
    };
    let Some(message) = body.get("message") else {
        return match body.get("sender_action") {
            Some(_) => Ok(Read::Action { recipient }),
            None => Err("(#100) Must send either message or state".into()),
        };
    };
    let text = message.get("text").and_then(Value::as_str).unwrap_or("");
    if text.is_empty() && message.get("attachment").is_none() {
        return Err("(#100) Param message must be non-empty".into());
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(format!(
            "(#100) Length of param message[text] must be less than or equal to {MAX_TEXT_CHARS}"
        ));
    }
    // What the person reads: the text, or a button template's text.
    let text = match button_template(message)? {
        Some(template_text) => template_text,
        None => text,
    };
    let window_exempt = message_tag(&body)?;
    Ok(Read::Message(Send {
        platform: Platform::Messenger,
        bot: String::new(),
        chat_id: recipient,
        text: text.to_owned(),
        body: Value::Object(body),
        window_exempt,
    }))
}

/// The text of a button template (`attachment.payload.template_type: "button"`), checked as
/// the Send API's "Button Template" reference sets it: a text of 1 to 640 characters and 1 to 3
/// buttons. `None` for any other message.
fn button_template(message: &Value) -> Result<Option<&str>, String> {
    let Some(payload) = message.pointer("/attachment/payload") else {
        return Ok(None);
    };
    if payload.get("template_type").and_then(Value::as_str) != Some("button") {
        return Ok(None);
    }
    let text = payload.get("text").and_then(Value::as_str).unwrap_or("");
    if text.is_empty() {
        return Err("(#100) param message[attachment][payload][text] must be non-empty".into());
    }
    if text.chars().count() > MAX_BUTTON_TEMPLATE_TEXT_CHARS {
        return Err(format!(
            "(#100) Length of param message[attachment][payload][text] must be less than or equal to {MAX_BUTTON_TEMPLATE_TEXT_CHARS}"
        ));
    }
    let buttons = payload.get("buttons").and_then(Value::as_array);
    if !buttons.is_some_and(|b| (1..=MAX_TEMPLATE_BUTTONS).contains(&b.len())) {
        return Err(format!(
            "(#100) param message[attachment][payload][buttons] must have 1 to {MAX_TEMPLATE_BUTTONS} buttons"
        ));
    }
    Ok(Some(text))
}

/// Checks `messaging_type` and `tag`; says whether the send is a tagged message, which may be
/// sent outside the 24-hour window.
fn message_tag(body: &Map<String, Value>) -> Result<bool, String> {
    let messaging_type = body
        .get("messaging_type")
        .and_then(Value::as_str)
        .unwrap_or("RESPONSE");
    match messaging_type {
        "RESPONSE" | "UPDATE" => Ok(false),
        "MESSAGE_TAG" => {
            let tag = body.get("tag").and_then(Value::as_str).unwrap_or("");
            if MESSAGE_TAGS.contains(&tag) {
                Ok(true)
            } else {
                Err(format!(
                    "(#100) Param tag must be one of {{{}}} - got \"{tag}\"",
                    MESSAGE_TAGS.join(", ")
                ))
            }
        }
        other => Err(format!(
            "(#100) Param messaging_type must be one of {{RESPONSE, UPDATE, MESSAGE_TAG}} - got \"{other}\""
        )),
    }
}

fn refused(fake: &Fake, refusal: Refusal) -> Response {
    match refusal {
        Refusal::TooManyRequests { retry_after, .. } => {
            let mut answer = graph_error(
                fake,
                StatusCode::BAD_REQUEST,
                613,
                None,
                "(#613) Calls to this api have exceeded the rate limit.",
            );
            // Meta tells when calls may resume in this header, in minutes.
            let usage = json!({"0": [{
                "type": "messenger",
                "call_count": 100,
                "total_cputime": 1,
                "total_time": 1,
                "estimated_time_to_regain_access": retry_after.div_ceil(60),
            }]});
            answer.headers_mut().insert(
                "x-business-use-case-usage",
                HeaderValue::from_str(&usage.to_string()).expect("JSON is a header value"),
            );
            answer
        }
        Refusal::ServerError(code) => graph_error(
            fake,
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            2,
            None,
            "An unexpected error has occurred. Please retry your request later.",
        ),
        Refusal::Blocked => graph_error(
            fake,
            StatusCode::BAD_REQUEST,
            551,
            Some(1_545_041),
            "(#551) This person isn't available right now.",
        ),
        Refusal::OutsideWindow => graph_error(
            fake,
            StatusCode::BAD_REQUEST,
            10,
            Some(2_018_278),
            "(#10) This message is sent outside of allowed window. Learn more about the new policy here: https://developers.facebook.com/docs/messenger-platform/policy-overview",
        ),
    }
}

/// The Graph API's error answer.
pub(super) fn graph_error(
    fake: &Fake,
    status: StatusCode,
    code: u32,
    subcode: Option<u32>,
    message: &str,
) -> Response {
    graph_error_with(fake, status, code, subcode, message, None)
}

/// The Graph API's error answer, with the Cloud API's `error_data` when `details` is given.
pub(super) fn graph_error_with(
    fake: &Fake,
    status: StatusCode,
    code: u32,
    subcode: Option<u32>,
    message: &str,
    details: Option<&str>,
) -> Response {
    let kind = if code == 100 && subcode == Some(33) {
        "GraphMethodException"
    } else {
        "OAuthException"
    };
    let mut error = json!({
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": format!("AFakeTrace{:012}", fake.next_number()),
    });
    if let Some(subcode) = subcode {
        error["error_subcode"] = json!(subcode);
    }
    if let Some(details) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": details});
    }
    json(status, json!({ "error": error }))
}
