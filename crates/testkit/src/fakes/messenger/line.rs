//! LINE's Messaging API push: `POST https://api.line.me/v2/bot/message/push`.
//!
//! Rules followed (developers.line.biz/en/reference/messaging-api, "Send push message", "Status
//! codes", "Retry an API request"): `Authorization: Bearer <channel access token>`; the body is
//! `{"to", "messages": [1 to 5 message objects]}`, a text message's `text` at most 5,000
//! characters, a buttons template's `text` at most 160 (the person reads it as the message's
//! text). Success is 200 `{"sentMessages": [{"id", "quoteToken"}]}` with an
//! `X-Line-Request-Id`; errors are `{"message", "details"?}` with 400, 401, 409, 429 or 500. An
//! `X-Line-Retry-Key` (a UUID) makes a retry safe: a key already accepted is answered 409 "The
//! retry key is already accepted", with the first answer's `sentMessages`, and sends nothing.
//!
//! A person who blocked the account is not revealed: LINE answers 200 and the message goes
//! nowhere; the fake does the same and does not record it (botlink learns of a block from the
//! `unfollow` webhook).

use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Call, Fake, Platform, Refusal, Send, json};

const MAX_MESSAGES: usize = 5;
const MAX_TEXT_CHARS: usize = 5_000;
const MAX_ALT_TEXT_CHARS: usize = 400;
const MAX_BUTTONS_TEXT_CHARS: usize = 160;
const MAX_BUTTONS_TEXT_WITH_TITLE_CHARS: usize = 60;
const MAX_BUTTONS_ACTIONS: usize = 4;
/// LINE's message ids are decimal numbers of 18 digits; the fake's count up from here.
const FIRST_MESSAGE_ID: u64 = 461_230_966_842_064_000;

pub(super) async fn handle(fake: &Fake, call: &Call) -> Response {
    let token = call.bearer().unwrap_or_default();
    if !fake.knows(Platform::Line, token) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Authentication failed. Confirm that the access token in the authorization header is valid.",
        );
    }
    let retry_key = call.header("x-line-retry-key");
    if let Some(key) = retry_key {
        if !is_uuid(key) {
            return error(
                StatusCode::BAD_REQUEST,
                "The value for the 'X-Line-Retry-Key' header is invalid",
            );
        }
        let accepted = fake
            .state()
            .bots
            .get(&(Platform::Line, token.to_owned()))
            .and_then(|b| b.retry_keys.get(key).cloned());
        if let Some(sent_messages) = accepted {
            let mut answer = json(
                StatusCode::CONFLICT,
                json!({"message": "The retry key is already accepted", "sentMessages": sent_messages}),
            );
            set_request_id(fake, &mut answer, "x-line-accepted-request-id");
            return answer;
        }
    }
    let (send, count) = match read(call) {
        Ok(read) => read,
        Err(details) => {
            return json(
                StatusCode::BAD_REQUEST,
                json!({
                    "message": format!("The request body has {} error(s)", details.len()),
                    "details": details,
                }),
            );
        }
    };
    let mut send = send;
    send.bot = token.to_owned();
    let outcome = fake.send(send).await;
    let n = match outcome {
        Ok(n) => n,
        // LINE does not tell that the person blocked the account.
        Err(Refusal::Blocked) => fake.next_number(),
        Err(Refusal::TooManyRequests { .. }) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "The API rate limit has been exceeded. Try again later.",
            );
        }
        Err(Refusal::ServerError(code)) => {
            return error(
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "An error occurred in the internal server.",
            );
        }
        Err(Refusal::OutsideWindow) => unreachable!("LINE has no 24-hour window"),
    };
    let sent_messages: Vec<Value> = (0..count as u64)
        .map(|i| {
            json!({
                "id": (FIRST_MESSAGE_ID + n * 10 + i).to_string(),
                "quoteToken": format!("fakeQuoteToken{n}x{i}"),
            })
        })
        .collect();
    if let Some(key) = retry_key {
        let mut state = fake.state();
        if let Some(bot) = state.bots.get_mut(&(Platform::Line, token.to_owned())) {
            bot.retry_keys.insert(key.to_owned(), json!(sent_messages));
        }
    }
    let mut answer = json(StatusCode::OK, json!({ "sentMessages": sent_messages }));
    set_request_id(fake, &mut answer, "x-line-request-id");
    answer
}

/// Reads a push; the send and how many messages it holds, or the errors' details.
fn read(call: &Call) -> Result<(Send, usize), Vec<Value>> {
    let detail = |property: &str, message: &str| json!({"message": message, "property": property});
    let Some(body) = call.json_object() else {
        return Err(vec![detail("", "The request body must be a JSON object")]);
    };
    let mut details = Vec::new();
    let to = body.get("to").and_then(Value::as_str).unwrap_or("");
    if to.is_empty() {
        details.push(detail("to", "must be specified"));
    }
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        details.push(detail(
            "messages",
            &format!("Size must be between 1 and {MAX_MESSAGES}"),
        ));
    }
    let mut texts = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        match message.get("type").and_then(Value::as_str) {
            None => details.push(detail(&format!("messages[{i}].type"), "must be specified")),
            Some("text") => match message.get("text").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && t.chars().count() <= MAX_TEXT_CHARS => {
                    texts.push(t.to_owned());
                }
                Some(t) if !t.is_empty() => details.push(detail(
                    &format!("messages[{i}].text"),
                    &format!("Length must be between 0 and {MAX_TEXT_CHARS}"),
                )),
                _ => details.push(detail(&format!("messages[{i}].text"), "must be specified")),
            },
            Some("template") => match buttons_template(i, message) {
                Ok(Some(t)) => texts.push(t.to_owned()),
                Ok(None) => {}
                Err(mut d) => details.append(&mut d),
            },
            Some(_) => {}
        }
    }
    if !details.is_empty() {
        return Err(details);
    }
    let send = Send {
        platform: Platform::Line,
        bot: String::new(),
        chat_id: to.to_owned(),
        text: texts.join("\n"),
        body: Value::Object(body),
        window_exempt: true,
    };
    Ok((send, messages.len()))
}

/// The text of a buttons template message, checked as the Messaging API reference sets it
/// ("Template messages", "Buttons template"): `altText` of 1 to 400 characters, a `text` of 1
/// to 160 characters (60 with a `title` or `thumbnailImageUrl`) and 1 to 4 actions. `None` for
/// other templates; the errors' details otherwise.
fn buttons_template(i: usize, message: &Value) -> Result<Option<&str>, Vec<Value>> {
    let detail = |property: &str, message: &str| json!({"message": message, "property": format!("messages[{i}].{property}")});
    let Some(template) = message
        .get("template")
        .filter(|t| t.get("type").and_then(Value::as_str) == Some("buttons"))
    else {
        return Ok(None);
    };
    let mut details = Vec::new();
    let alt_text = message.get("altText").and_then(Value::as_str).unwrap_or("");
    if alt_text.is_empty() || alt_text.chars().count() > MAX_ALT_TEXT_CHARS {
        details.push(detail(
            "altText",
            &format!("Length must be between 1 and {MAX_ALT_TEXT_CHARS}"),
        ));
    }
    let text = template.get("text").and_then(Value::as_str).unwrap_or("");
    let with_title = template.get("title").is_some() || template.get("thumbnailImageUrl").is_some();
    let limit = if with_title {
        MAX_BUTTONS_TEXT_WITH_TITLE_CHARS
    } else {
        MAX_BUTTONS_TEXT_CHARS
    };
    if text.is_empty() || text.chars().count() > limit {
        details.push(detail(
            "template.text",
            &format!("Length must be between 1 and {limit}"),
        ));
    }
    let actions = template.get("actions").and_then(Value::as_array);
    if !actions.is_some_and(|a| (1..=MAX_BUTTONS_ACTIONS).contains(&a.len())) {
        details.push(detail(
            "template.actions",
            &format!("Size must be between 1 and {MAX_BUTTONS_ACTIONS}"),
        ));
    }
    if details.is_empty() {
        Ok(Some(text))
    } else {
        Err(details)
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    json(status, json!({ "message": message }))
}

fn set_request_id(fake: &Fake, answer: &mut Response, header: &'static str) {
    let id = format!("{:08x}-0000-4000-8000-{:012x}", 0xfa6e, fake.next_number());
    answer
        .headers_mut()
        .insert(header, HeaderValue::from_str(&id).expect("ASCII"));
}

/// `8-4-4-4-12` hex digits, as LINE requires of a retry key.
fn is_uuid(key: &str) -> bool {
    let groups: Vec<&str> = key.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}
