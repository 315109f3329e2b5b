//! The WhatsApp Cloud API: `POST https://graph.facebook.com/<version>/<phone number id>/messages`.
//!
//! Rules followed (developers.facebook.com/docs/whatsapp/cloud-api: messages reference, "Error
//! codes"): `Authorization: Bearer <access token>`; the body has `messaging_product: whatsapp`,
//! `to`, `type` (`text` by default, with `text.body` of at most 4,096 characters; `template` with
//! `template.name` and `template.language.code`; other types are taken as they come). Success is
//! `{"messaging_product": "whatsapp", "contacts": [{"input", "wa_id"}], "messages": [{"id":
//! "wamid..."}]}`. Errors are the Graph API's, with `error_data.details`: a bad token is 401 code
//! 190; a number the token cannot use is 400 code 100 subcode 33; a flood is 400 code 130429 (per
//! number) or 131056 (per pair of numbers); outside the 24-hour window 131047, which a template
//! passes; an undeliverable message (the person blocked the business) 131026.
//!
//! Difference: the Cloud API reports 131026 and 131047 mostly later, in a `statuses` webhook of a
//! message it first accepted with 200; the fake answers them at once, as the send's error. It
//! sends no status webhooks.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::meta::{graph_error, graph_error_with};
use super::{Call, Fake, Platform, Refusal, Scope, Send, json};

/// The Cloud API's longest text message.
const MAX_TEXT_CHARS: usize = 4_096;

/// Whether a Graph API `<node>/messages` call is for WhatsApp: `node` is a number the fake knows,
/// or the body says `messaging_product: whatsapp`.
pub(super) fn is_whatsapp(fake: &Fake, call: &Call, node: &str) -> bool {
    node != "me"
        && (fake.knows(Platform::WhatsApp, node)
            || call
                .json_object()
                .is_some_and(|b| b.get("messaging_product").is_some()))
}

pub(super) async fn handle(fake: &Fake, call: &Call, phone_number_id: &str) -> Response {
    let token = call.bearer().or_else(|| call.query("access_token"));
    let (token_known, number_allowed) = {
        let state = fake.state();
        let token_known = token.is_some_and(|t| {
            state
                .bots
                .iter()
                .any(|((p, _), b)| *p == Platform::WhatsApp && b.access_token.as_deref() == Some(t))
        });
        let number = state
            .bots
            .get(&(Platform::WhatsApp, phone_number_id.to_owned()));
        let allowed = number.is_some_and(|b| b.access_token.as_deref() == token);
        (token_known, allowed)
    };
    if !token_known {
        return graph_error(
            fake,
            StatusCode::UNAUTHORIZED,
            190,
            None,
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    if !number_allowed {
        return graph_error(
            fake,
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            &format!(
                "Unsupported post request. Object with ID '{phone_number_id}' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
            ),
        );
    }
    let mut send = match read(call) {
        Ok(send) => send,
        Err(message) => return graph_error(fake, StatusCode::BAD_REQUEST, 100, None, &message),
    };
    send.bot = phone_number_id.to_owned();
    let to = send.chat_id.clone();
    let template = send.window_exempt;
    match fake.send(send).await {
        Ok(n) => {
            let mut message = json!({ "id": format!("wamid.FAKE{n:020}") });
            if template {
                message["message_status"] = json!("accepted");
            }
            json(
                StatusCode::OK,
                json!({
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": wa_id(&to)}],
                    "messages": [message],
                }),
            )
        }
        Err(refusal) => refused(fake, refusal),
    }
}

fn read(call: &Call) -> Result<Send, String> {
    let body = call.json_object().ok_or("(#100) Invalid parameter")?;
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return Err("(#100) The parameter messaging_product is required.".into());
    }
    let to = match body.get("to").and_then(Value::as_str) {
        Some(to) if !to.is_empty() => to.to_owned(),
        _ => return Err("(#100) The parameter to is required.".into()),
    };
    let kind = body.get("type").and_then(Value::as_str).unwrap_or("text");
    let text = match kind {
        "text" => {
            let text = body
                .get("text")
                .and_then(|t| t.get("body"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if text.is_empty() {
                return Err("(#100) The parameter text['body'] is required.".into());
            }
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(format!(
                    "(#100) Param text['body'] must be at most {MAX_TEXT_CHARS} characters long."
                ));
            }
            text.to_owned()
        }
        "template" => {
            let template = body.get("template");
            let field = |path: &[&str]| {
                path.iter()
                    .try_fold(template?, |v, k| v.get(k))
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
            };
            if field(&["name"]).is_none() {
                return Err("(#100) The parameter template['name'] is required.".into());
            }
            if field(&["language", "code"]).is_none() {
                return Err("(#100) The parameter template['language'] is required.".into());
            }
            String::new()
        }
        // Interactive messages carry their text in `interactive.body.text`.
        _ => body
            .get("interactive")
            .and_then(|i| i.get("body"))
            .and_then(|b| b.get("text"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
    };
    Ok(Send {
        platform: Platform::WhatsApp,
        bot: String::new(),
        chat_id: to,
        text,
        window_exempt: kind == "template",
        body: Value::Object(body),
    })
}

/// The WhatsApp id of a phone number: its digits.
fn wa_id(to: &str) -> String {
    to.chars().filter(char::is_ascii_digit).collect()
}

fn refused(fake: &Fake, refusal: Refusal) -> Response {
    let error = |code: u32, message: &str, details: &str| {
        graph_error_with(
            fake,
            StatusCode::BAD_REQUEST,
            code,
            None,
            message,
            Some(details),
        )
    };
    match refusal {
        Refusal::TooManyRequests {
            scope: Scope::Chat, ..
        } => error(
            131_056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number to the same phone number in a short period of time.",
        ),
        Refusal::TooManyRequests { .. } => error(
            130_429,
            "(#130429) Rate limit hit",
            "Message failed to send because there were too many messages sent from this phone number in a short period of time.",
        ),
        Refusal::ServerError(code) => graph_error_with(
            fake,
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            131_000,
            None,
            "(#131000) Something went wrong",
            Some("Message failed to send due to an unknown error."),
        ),
        Refusal::Blocked => error(
            131_026,
            "(#131026) Message Undeliverable",
            "Message failed to send because the recipient could not receive it.",
        ),
        Refusal::OutsideWindow => error(
            131_047,
            "(#131047) Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        ),
    }
}
