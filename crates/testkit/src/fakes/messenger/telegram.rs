//! Telegram's Bot API: `https://api.telegram.org/bot<token>/<method>`.
//!
//! Rules followed (core.telegram.org/bots/api, "Making requests"): GET and POST; parameters in
//! the query string, `application/x-www-form-urlencoded` or `application/json`; method names
//! case-insensitive; every answer is `{"ok": true, "result": ...}` or
//! `{"ok": false, "error_code": N, "description": "..."}`, a flood adding
//! `"parameters": {"retry_after": N}`. A wrong token is 401 "Unauthorized"; an unknown method 404
//! "Not Found".
//!
//! Not served: `multipart/form-data` (file uploads), and methods other than `sendMessage`,
//! `setWebhook`, `deleteWebhook`, `getWebhookInfo` and `getMe` (404, as Telegram answers an
//! unknown method). `setWebhook` takes an `http://` URL, which Telegram would refuse, because
//! tests serve plain HTTP.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};

use super::{Call, Fake, Platform, Refusal, Send, WebhookSetting, json};

/// Telegram's longest message text (sendMessage: 1-4096 characters).
const MAX_TEXT_CHARS: usize = 4096;

pub(super) async fn handle(fake: &Fake, call: &Call, rest: &str) -> Response {
    let Some((token, method)) = rest.split_once('/') else {
        return error(404, "Not Found");
    };
    if !fake.knows(Platform::Telegram, token) {
        return error(401, "Unauthorized");
    }
    let params = match params(call) {
        Ok(p) => p,
        Err(description) => return error(400, description),
    };
    match method.to_ascii_lowercase().as_str() {
        "sendmessage" => send_message(fake, token, params).await,
        "setwebhook" => set_webhook(fake, token, params),
        "deletewebhook" => {
            set_webhook_of(fake, token, None);
            ok_described(json!(true), "Webhook was deleted")
        }
        "getwebhookinfo" => {
            let url = fake
                .state()
                .bots
                .get(&(Platform::Telegram, token.to_owned()))
                .and_then(|b| b.webhook.as_ref().map(|w| w.url.clone()))
                .unwrap_or_default();
            ok(json!({"url": url, "has_custom_certificate": false, "pending_update_count": 0}))
        }
        "getme" => ok(bot_user(token)),
        _ => error(404, "Not Found"),
    }
}

async fn send_message(fake: &Fake, token: &str, params: Map<String, Value>) -> Response {
    let chat = match params.get("chat_id") {
        Some(Value::Number(n)) => Value::Number(n.clone()),
        Some(Value::String(s)) if !s.is_empty() => Value::String(s.clone()),
        _ => return error(400, "Bad Request: chat_id is empty"),
    };
    let chat_id = match &chat {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = match params.get("text") {
        Some(Value::String(t)) if !t.trim().is_empty() => t.clone(),
        _ => return error(400, "Bad Request: message text is empty"),
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return error(400, "Bad Request: message is too long");
    }
    let send = Send {
        platform: Platform::Telegram,
        bot: token.to_owned(),
        chat_id: chat_id.clone(),
        text: text.clone(),
        body: Value::Object(params),
        window_exempt: true,
    };
    match fake.send(send).await {
        Ok(message_id) => ok(json!({
            "message_id": message_id,
            "from": bot_user(token),
            "chat": {"id": chat, "type": chat_type(&chat_id)},
            "date": crate::fakes::unix_now(),
            "text": text,
        })),
        Err(refusal) => refused(refusal),
    }
}

fn set_webhook(fake: &Fake, token: &str, params: Map<String, Value>) -> Response {
    let url = params.get("url").and_then(Value::as_str).unwrap_or("");
    if url.is_empty() {
        return if set_webhook_of(fake, token, None) {
            ok_described(json!(true), "Webhook was deleted")
        } else {
            ok_described(json!(true), "Webhook is already deleted")
        };
    }
    // setWebhook: `secret_token`, 1-256 characters of A-Z, a-z, 0-9, _ and -.
    let secret = params
        .get("secret_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    if let Some(s) = secret {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        if s.len() > 256 || !s.bytes().all(allowed) {
            return error(
                400,
                "Bad Request: secret token contains unallowed characters",
            );
        }
    }
    let setting = WebhookSetting {
        url: url.to_owned(),
        secret: secret.map(str::to_owned),
        body: Value::Object(params.clone()),
    };
    set_webhook_of(fake, token, Some(setting));
    ok_described(json!(true), "Webhook was set")
}

/// Replaces the bot's webhook; says whether it had one.
fn set_webhook_of(fake: &Fake, token: &str, setting: Option<WebhookSetting>) -> bool {
    let mut state = fake.state();
    let bot = state
        .bots
        .get_mut(&(Platform::Telegram, token.to_owned()))
        .expect("a known bot");
    std::mem::replace(&mut bot.webhook, setting).is_some()
}

/// The query string and the body's parameters, one object; `reply_markup` given as a JSON
/// string (as a form must) is parsed, so that a test sees the same object either way.
fn params(call: &Call) -> Result<Map<String, Value>, &'static str> {
    let mut params: Map<String, Value> = call
        .query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    if !call.body.is_empty() {
        match call.content_type() {
            "application/json" => match call.json_object() {
                Some(object) => params.extend(object),
                None => return Err("Bad Request: can't parse JSON object"),
            },
            "application/x-www-form-urlencoded" => {
                for (k, v) in url::form_urlencoded::parse(&call.body) {
                    params.insert(k.into_owned(), Value::String(v.into_owned()));
                }
            }
            _ => return Err("Bad Request: the fake reads only query, form or JSON parameters"),
        }
    }
    if let Some(Value::String(markup)) = params.get("reply_markup") {
        match serde_json::from_str::<Value>(markup) {
            Ok(parsed @ Value::Object(_)) => {
                params.insert("reply_markup".into(), parsed);
            }
            _ => return Err("Bad Request: can't parse reply keyboard markup JSON object"),
        }
    }
    Ok(params)
}

/// The bot as `getMe` and a message's `from` show it; its id is the token's first part.
fn bot_user(token: &str) -> Value {
    let id: i64 = token
        .split(':')
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    json!({
        "id": id,
        "is_bot": true,
        "first_name": "Fake bot",
        "username": format!("fake_{id}_bot"),
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
    })
}

/// Telegram's chat ids: people are positive, groups negative, supergroups and channels
/// `-100...`, public ones also `@username`.
fn chat_type(chat_id: &str) -> &'static str {
    if chat_id.starts_with('@') || chat_id.starts_with("-100") {
        "supergroup"
    } else if chat_id.starts_with('-') {
        "group"
    } else {
        "private"
    }
}

fn ok(result: Value) -> Response {
    json(StatusCode::OK, json!({"ok": true, "result": result}))
}

fn ok_described(result: Value, description: &str) -> Response {
    json(
        StatusCode::OK,
        json!({"ok": true, "result": result, "description": description}),
    )
}

fn error(code: u16, description: &str) -> Response {
    let status = StatusCode::from_u16(code).expect("an HTTP status");
    json(
        status,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::TooManyRequests { retry_after, .. } => json(
            StatusCode::TOO_MANY_REQUESTS,
            json!({
                "ok": false,
                "error_code": 429,
                "description": format!("Too Many Requests: retry after {retry_after}"),
                "parameters": {"retry_after": retry_after},
            }),
        ),
        Refusal::ServerError(code) => {
            let reason = StatusCode::from_u16(code)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("Internal Server Error");
            error(code, reason)
        }
        // Telegram's answer when the person blocked the bot (or never started it).
        Refusal::Blocked => error(403, "Forbidden: bot was blocked by the user"),
        Refusal::OutsideWindow => unreachable!("Telegram has no 24-hour window"),
    }
}
