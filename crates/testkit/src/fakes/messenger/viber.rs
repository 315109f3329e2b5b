//! Viber's REST Bot API: `https://chatapi.viber.com/pa/<call>`.
//!
//! Rules followed (developers.viber.com/docs/api/rest-bot-api, creators.viber.com "Send a
//! Message" and "Common Errors"): the token travels in `X-Viber-Auth-Token`; every answer is
//! HTTP 200 with `status` 0 for success and an error number otherwise (2 invalidAuthToken,
//! 3 badData, 4 missingData, 6 notSubscribed, 12 for too many messages to one user), so a
//! client must read the body, not the HTTP status. `send_message` needs `receiver`, `type`,
//! `sender.name` (at most 28 characters), and for `type: text` a `text` (at most 7,000
//! characters); a request is at most 30 KB. `set_webhook` makes Viber call the URL at once with
//! an `event: webhook` callback, signed like every callback, and fails with status 1 unless the
//! URL answers 200.
//!
//! Differences: the fake takes `http://` webhook URLs (Viber wants HTTPS), and reads the token
//! only from the header (not from an `auth_token` field in the body, which old clients used).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{Call, Fake, Platform, Refusal, Send, WebhookSetting, json};

/// The chat host Viber names in its answers.
const CHAT_HOSTNAME: &str = "SN-CHAT-01_";
/// Viber's message tokens are 64-bit numbers; the fake's count up from here.
const FIRST_MESSAGE_TOKEN: u64 = 5_741_311_803_571_721_000;
const MAX_SENDER_NAME_CHARS: usize = 28;
const MAX_TEXT_CHARS: usize = 7_000;
const MAX_REQUEST_BYTES: usize = 30 * 1024;

pub(super) async fn handle(fake: &Fake, call: &Call) -> Response {
    let token = call.header("x-viber-auth-token").unwrap_or_default();
    if !fake.knows(Platform::Viber, token) {
        return status(2, "invalidAuthToken");
    }
    let Some(body) = call.json_object() else {
        return status(3, "badData");
    };
    if call.path == "/pa/set_webhook" {
        set_webhook(fake, token, body).await
    } else {
        send_message(fake, token, call, body).await
    }
}

async fn send_message(fake: &Fake, token: &str, call: &Call, body: Map<String, Value>) -> Response {
    let text_of = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or("");
    let receiver = text_of("receiver").to_owned();
    let kind = text_of("type");
    let sender_name = body
        .get("sender")
        .and_then(|s| s.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = text_of("text").to_owned();
    if receiver.is_empty() || kind.is_empty() || sender_name.is_empty() {
        return status(4, "missingData");
    }
    if kind == "text" && text.is_empty() {
        return status(4, "missingData");
    }
    if sender_name.chars().count() > MAX_SENDER_NAME_CHARS
        || text.chars().count() > MAX_TEXT_CHARS
        || call.body.len() > MAX_REQUEST_BYTES
    {
        return status(3, "badData");
    }
    let send = Send {
        platform: Platform::Viber,
        bot: token.to_owned(),
        chat_id: receiver,
        text,
        body: Value::Object(body),
        window_exempt: true,
    };
    match fake.send(send).await {
        Ok(n) => json(
            StatusCode::OK,
            json!({
                "status": 0,
                "status_message": "ok",
                "message_token": FIRST_MESSAGE_TOKEN + n,
                "chat_hostname": CHAT_HOSTNAME,
                "billing_status": 1,
            }),
        ),
        Err(Refusal::TooManyRequests { .. }) => {
            // The send_message page's own example of this answer: HTTP 200, status 12.
            refused_with(fake, 12, "Too many requests")
        }
        Err(Refusal::Blocked) => refused_with(fake, 6, "notSubscribed"),
        Err(Refusal::ServerError(code)) => server_error(code),
        Err(Refusal::OutsideWindow) => unreachable!("Viber has no 24-hour window"),
    }
}

async fn set_webhook(fake: &Fake, token: &str, body: Map<String, Value>) -> Response {
    let url = body.get("url").and_then(Value::as_str).unwrap_or("");
    if url.is_empty() {
        // "Removing the webhook is done by calling with an empty string."
        store_webhook(fake, token, None);
        return status(0, "ok");
    }
    if !webhook_answers(fake, token, url).await {
        return status(1, "invalidUrl");
    }
    let event_types = body.get("event_types").cloned().unwrap_or_else(|| {
        json!([
            "delivered",
            "seen",
            "failed",
            "subscribed",
            "unsubscribed",
            "conversation_started"
        ])
    });
    store_webhook(
        fake,
        token,
        Some(WebhookSetting {
            url: url.to_owned(),
            secret: None,
            body: Value::Object(body.clone()),
        }),
    );
    json(
        StatusCode::OK,
        json!({
            "status": 0,
            "status_message": "ok",
            "chat_hostname": CHAT_HOSTNAME,
            "event_types": event_types,
        }),
    )
}

/// Viber's check of a new webhook: an `event: webhook` callback, signed with the bot's token,
/// which must be answered 200.
async fn webhook_answers(fake: &Fake, token: &str, url: &str) -> bool {
    let callback = json!({
        "event": "webhook",
        "timestamp": crate::fakes::unix_now() * 1000,
        "chat_hostname": CHAT_HOSTNAME,
        "message_token": FIRST_MESSAGE_TOKEN + fake.next_number(),
    })
    .to_string();
    let answer = fake
        .http
        .post(url)
        .header("content-type", "application/json")
        .headers(crate::fakes::sign::viber_headers(
            token,
            callback.as_bytes(),
        ))
        .body(callback)
        .send()
        .await;
    answer.is_ok_and(|a| a.status() == StatusCode::OK)
}

fn store_webhook(fake: &Fake, token: &str, setting: Option<WebhookSetting>) {
    let mut state = fake.state();
    if let Some(bot) = state.bots.get_mut(&(Platform::Viber, token.to_owned())) {
        bot.webhook = setting;
    }
}

fn status(status: u32, message: &str) -> Response {
    json(
        StatusCode::OK,
        json!({"status": status, "status_message": message}),
    )
}

/// A refused send still gets a message token, as in Viber's examples.
fn refused_with(fake: &Fake, status: u32, message: &str) -> Response {
    json(
        StatusCode::OK,
        json!({
            "status": status,
            "status_message": message,
            "message_token": FIRST_MESSAGE_TOKEN + fake.next_number(),
            "chat_hostname": CHAT_HOSTNAME,
        }),
    )
}

fn server_error(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, "Internal Server Error").into_response()
}
