//! The MAX bot API: `https://platform-api2.max.ru`.
//!
//! Rules followed (dev.max.ru/docs-api: "Авторизация", `POST /messages`, `POST /subscriptions`,
//! and the official clients' error fixtures): the token travels as `Authorization: <token>`
//! (a token in the query is no longer accepted); `POST /messages?user_id=<id>` (or
//! `?chat_id=<id>`) with `{"text" (at most 4,000 characters), "attachments", "link", "notify",
//! "format"}` answers `{"message": {"sender", "recipient", "timestamp", "body": {"mid", "seq",
//! "text", "attachments"}}}`. Errors are `{"code", "message"}`: 401 `verify.token` "Invalid
//! access_token", 403 `chat.denied` "error.dialog.suspended" when the person stopped or blocked
//! the bot, 429 `too.many.requests`. `POST /subscriptions` with `{"url", "update_types",
//! "secret"}` (the secret 5-256 characters of A-Z, a-z, 0-9, _ and -) answers
//! `{"success": true}`.
//!
//! Differences: the fake takes `http://` subscription URLs (MAX wants HTTPS). The error code of a
//! malformed request (`proto.payload`) is the fake's choice: MAX's documentation lists the HTTP
//! statuses but not those codes.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, Fake, Platform, Refusal, Send, WebhookSetting, json};

const MAX_TEXT_CHARS: usize = 4_000;

pub(super) async fn handle(fake: &Fake, call: &Call) -> Response {
    let token = call.header("authorization").unwrap_or_default();
    if !fake.knows(Platform::Max, token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "verify.token",
            "Invalid access_token",
        );
    }
    match (&call.method, call.path.as_str()) {
        (&Method::POST, "/messages") => send_message(fake, token, call).await,
        (&Method::POST, "/subscriptions") => subscribe(fake, token, call),
        (&Method::GET, "/subscriptions") => {
            let setting = webhook_of(fake, token);
            let list: Vec<Value> = setting
                .iter()
                .map(|w| {
                    json!({
                        "url": w.url,
                        "time": crate::fakes::unix_now() * 1000,
                        "update_types": w.body.get("update_types").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect();
            json(StatusCode::OK, json!({ "subscriptions": list }))
        }
        (&Method::DELETE, "/subscriptions") => {
            let url = call.query("url").unwrap_or_default();
            let mut state = fake.state();
            if let Some(bot) = state.bots.get_mut(&(Platform::Max, token.to_owned()))
                && bot.webhook.as_ref().is_some_and(|w| w.url == url)
            {
                bot.webhook = None;
            }
            json(StatusCode::OK, json!({ "success": true }))
        }
        _ => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method.not.allowed",
            "Method not allowed",
        ),
    }
}

async fn send_message(fake: &Fake, token: &str, call: &Call) -> Response {
    let id_param = |name: &str| call.query(name).and_then(|v| v.parse::<i64>().ok());
    let (chat_id, recipient) = match (id_param("user_id"), id_param("chat_id")) {
        (Some(user), _) => (
            format!("user:{user}"),
            json!({"chat_id": user, "chat_type": "dialog", "user_id": user}),
        ),
        (None, Some(chat)) => (
            format!("chat:{chat}"),
            json!({"chat_id": chat, "chat_type": "chat"}),
        ),
        (None, None) => {
            return error(
                StatusCode::BAD_REQUEST,
                "proto.payload",
                "user_id or chat_id is required",
            );
        }
    };
    let body = if call.body.is_empty() {
        Some(serde_json::Map::new())
    } else {
        call.json_object()
    };
    let Some(body) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "proto.payload",
            "the body must be a JSON object",
        );
    };
    let text = body.get("text").and_then(Value::as_str).unwrap_or("");
    let attachments = body
        .get("attachments")
        .filter(|a| !a.is_null())
        .cloned()
        .unwrap_or(json!([]));
    let has_attachments = attachments.as_array().is_some_and(|a| !a.is_empty());
    if text.is_empty() && !has_attachments {
        return error(
            StatusCode::BAD_REQUEST,
            "proto.payload",
            "text or attachments is required",
        );
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return error(
            StatusCode::BAD_REQUEST,
            "proto.payload",
            &format!("text: size must be between 0 and {MAX_TEXT_CHARS}"),
        );
    }
    let text = text.to_owned();
    let send = Send {
        platform: Platform::Max,
        bot: token.to_owned(),
        chat_id,
        text: text.clone(),
        body: Value::Object(body),
        window_exempt: true,
    };
    match fake.send(send).await {
        Ok(n) => {
            let now_ms = crate::fakes::unix_now() * 1000;
            json(
                StatusCode::OK,
                json!({"message": {
                    "sender": {
                        "user_id": 1,
                        "first_name": "Fake bot",
                        "username": "fake_bot",
                        "is_bot": true,
                        "last_activity_time": now_ms,
                    },
                    "recipient": recipient,
                    "timestamp": now_ms,
                    "body": {
                        "mid": format!("mid.fake{n:024x}"),
                        "seq": n,
                        "text": text,
                        "attachments": attachments,
                    },
                }}),
            )
        }
        Err(Refusal::TooManyRequests { .. }) => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too.many.requests",
            "Too many requests",
        ),
        Err(Refusal::Blocked) => error(
            StatusCode::FORBIDDEN,
            "chat.denied",
            "error.dialog.suspended",
        ),
        Err(Refusal::ServerError(code)) => error(
            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "internal.error",
            "Internal error",
        ),
        Err(Refusal::OutsideWindow) => unreachable!("MAX has no 24-hour window"),
    }
}

fn subscribe(fake: &Fake, token: &str, call: &Call) -> Response {
    let Some(body) = call.json_object() else {
        return error(
            StatusCode::BAD_REQUEST,
            "proto.payload",
            "the body must be a JSON object",
        );
    };
    let url = body.get("url").and_then(Value::as_str).unwrap_or("");
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return error(StatusCode::BAD_REQUEST, "proto.payload", "url is invalid");
    }
    let secret = body.get("secret").and_then(Value::as_str);
    if let Some(s) = secret {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if !(5..=256).contains(&s.len()) || !s.bytes().all(allowed) {
            return error(
                StatusCode::BAD_REQUEST,
                "proto.payload",
                "secret must be 5-256 characters of A-Z, a-z, 0-9, _ and -",
            );
        }
    }
    let setting = WebhookSetting {
        url: url.to_owned(),
        secret: secret.map(str::to_owned),
        body: Value::Object(body.clone()),
    };
    if let Some(bot) = fake
        .state()
        .bots
        .get_mut(&(Platform::Max, token.to_owned()))
    {
        bot.webhook = Some(setting);
    }
    json(StatusCode::OK, json!({ "success": true }))
}

fn webhook_of(fake: &Fake, token: &str) -> Option<WebhookSetting> {
    let state = fake.state();
    state
        .bots
        .get(&(Platform::Max, token.to_owned()))?
        .webhook
        .clone()
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, json!({"code": code, "message": message}))
}
