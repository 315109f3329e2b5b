//! The fakes, driven over real HTTP as botlink will drive them: each platform's good send, wrong
//! credentials, floods, blocked people and rate limits; the CRM's signature check and switches.

use std::time::{Duration, Instant};

use botlink_testkit::fakes::{
    Failure, FakeCrm, FakeMessenger, Limits, Platform, Rate, WebhookSetting, sign,
};
use reqwest::header::HeaderMap;
use reqwest::{Client, RequestBuilder};
use serde_json::{Value, json};

const TELEGRAM: &str = "123456:ABC-DEF1234ghIkl-zyx57W2v1u123ew11";
const VIBER: &str = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9";
const PAGE: &str = "EAAGpage-access-token";
const WA_NUMBER: &str = "106540352242922";
const WA_TOKEN: &str = "EAAGwhatsapp-access-token";
const LINE: &str = "line-channel-access-token";
const MAX: &str = "max-bot-token";

/// A fake with one bot of each platform.
async fn messenger() -> (FakeMessenger, Client) {
    let fake = FakeMessenger::start().await;
    fake.add_telegram_bot(TELEGRAM);
    fake.add_viber_bot(VIBER);
    fake.add_meta_page(PAGE);
    fake.add_whatsapp_number(WA_NUMBER, WA_TOKEN);
    fake.add_line_channel(LINE);
    fake.add_max_bot(MAX);
    (fake, botlink_testkit::client())
}

/// Sends a request; the status, the body as JSON (`Null` if it is not), the headers.
async fn call(request: RequestBuilder) -> (u16, Value, HeaderMap) {
    let answer = request.send().await.expect("the fake answers");
    let status = answer.status().as_u16();
    let headers = answer.headers().clone();
    let text = answer.text().await.expect("a body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

fn telegram_send(
    fake: &FakeMessenger,
    client: &Client,
    token: &str,
    body: Value,
) -> RequestBuilder {
    client
        .post(format!("{}/bot{token}/sendMessage", fake.base_url()))
        .json(&body)
}

fn viber_send(fake: &FakeMessenger, client: &Client, token: &str, body: Value) -> RequestBuilder {
    client
        .post(format!("{}/pa/send_message", fake.base_url()))
        .header("X-Viber-Auth-Token", token)
        .json(&body)
}

fn viber_text(receiver: &str, text: &str) -> Value {
    json!({"receiver": receiver, "type": "text", "text": text, "sender": {"name": "Shop"}})
}

fn messenger_send(fake: &FakeMessenger, client: &Client, body: Value) -> RequestBuilder {
    client
        .post(format!("{}/v23.0/me/messages", fake.base_url()))
        .bearer_auth(PAGE)
        .json(&body)
}

fn whatsapp_send(fake: &FakeMessenger, client: &Client, body: Value) -> RequestBuilder {
    client
        .post(format!("{}/v23.0/{WA_NUMBER}/messages", fake.base_url()))
        .bearer_auth(WA_TOKEN)
        .json(&body)
}

fn whatsapp_text(to: &str, text: &str) -> Value {
    json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": to,
           "type": "text", "text": {"preview_url": false, "body": text}})
}

fn line_push(fake: &FakeMessenger, client: &Client, body: Value) -> RequestBuilder {
    client
        .post(format!("{}/v2/bot/message/push", fake.base_url()))
        .bearer_auth(LINE)
        .json(&body)
}

fn max_send(fake: &FakeMessenger, client: &Client, user: i64, body: Value) -> RequestBuilder {
    client
        .post(format!("{}/messages?user_id={user}", fake.base_url()))
        .header("Authorization", MAX)
        .json(&body)
}

// ---------------------------------------------------------------------------------------------
// Telegram

#[tokio::test]
async fn telegram_records_a_send_in_json_or_form_with_its_fields() {
    let (fake, client) = messenger().await;
    let markup = json!({"inline_keyboard": [[{"text": "Buy", "callback_data": "buy"}]]});
    let (st, body, _) = call(telegram_send(
        &fake,
        &client,
        TELEGRAM,
        json!({"chat_id": 42, "text": "Hello", "reply_markup": markup}),
    ))
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["ok"], true);
    assert!(body["result"]["message_id"].as_u64().is_some(), "{body}");
    assert_eq!(body["result"]["chat"], json!({"id": 42, "type": "private"}));
    assert_eq!(body["result"]["text"], "Hello");
    assert_eq!(body["result"]["from"]["id"], 123456);

    // A form, as many clients send: reply_markup is then a JSON string.
    let form = format!(
        "chat_id=43&text=Hi%20there&reply_markup={}",
        url_encode(&markup.to_string())
    );
    let (st, body, _) = call(
        client
            .post(format!("{}/bot{TELEGRAM}/sendMessage", fake.base_url()))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form),
    )
    .await;
    assert_eq!(st, 200, "{body}");

    let sent = fake.messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].platform, Platform::Telegram);
    assert_eq!(sent[0].bot, TELEGRAM);
    assert_eq!(
        (sent[0].chat_id.as_str(), sent[0].text.as_str()),
        ("42", "Hello")
    );
    assert_eq!(sent[0].body["reply_markup"], markup);
    assert_eq!(
        (sent[1].chat_id.as_str(), sent[1].text.as_str()),
        ("43", "Hi there")
    );
    assert_eq!(
        sent[1].body["reply_markup"], markup,
        "the form's markup, parsed"
    );
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn telegram_refuses_a_wrong_token_and_bad_parameters_as_telegram_does() {
    let (fake, client) = messenger().await;
    let (st, body, _) = call(telegram_send(
        &fake,
        &client,
        "123456:wrong",
        json!({"chat_id": 42, "text": "Hello"}),
    ))
    .await;
    assert_eq!(st, 401);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
    );
    let (st, body, _) = call(telegram_send(
        &fake,
        &client,
        TELEGRAM,
        json!({"chat_id": 42}),
    ))
    .await;
    assert_eq!(st, 400);
    assert_eq!(body["description"], "Bad Request: message text is empty");
    let (st, body, _) = call(telegram_send(
        &fake,
        &client,
        TELEGRAM,
        json!({"text": "Hello"}),
    ))
    .await;
    assert_eq!(st, 400);
    assert_eq!(body["description"], "Bad Request: chat_id is empty");
    let (st, body, _) =
        call(client.get(format!("{}/bot{TELEGRAM}/sendTeleport", fake.base_url()))).await;
    assert_eq!((st, body["description"].as_str()), (404, Some("Not Found")));
    assert!(fake.messages().is_empty());
    assert_eq!(fake.requests(), 4);
}

#[tokio::test]
async fn telegram_answers_an_injected_flood_with_retry_after_then_accepts() {
    let (fake, client) = messenger().await;
    fake.fail_next(1, Failure::TooManyRequests { retry_after: 7 });
    let send = || {
        telegram_send(
            &fake,
            &client,
            TELEGRAM,
            json!({"chat_id": 42, "text": "Hi"}),
        )
    };
    let (st, body, _) = call(send()).await;
    assert_eq!(st, 429);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 429,
               "description": "Too Many Requests: retry after 7",
               "parameters": {"retry_after": 7}})
    );
    assert!(fake.messages().is_empty());
    let (st, _, _) = call(send()).await;
    assert_eq!(st, 200);
    assert_eq!(fake.messages().len(), 1);
    assert_eq!((fake.answered_429s(), fake.over_limit_429s()), (1, 0));
}

#[tokio::test]
async fn telegram_answers_403_for_a_person_who_blocked_the_bot() {
    let (fake, client) = messenger().await;
    fake.block("42");
    let (st, body, _) = call(telegram_send(
        &fake,
        &client,
        TELEGRAM,
        json!({"chat_id": 42, "text": "Hi"}),
    ))
    .await;
    assert_eq!(st, 403);
    assert_eq!(
        body,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
    );
    let (st, _, _) = call(telegram_send(
        &fake,
        &client,
        TELEGRAM,
        json!({"chat_id": 43, "text": "Hi"}),
    ))
    .await;
    assert_eq!(st, 200, "another chat is not blocked");
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(fake.messages()[0].chat_id, "43");
}

#[tokio::test]
async fn telegram_keeps_a_bot_to_30_messages_a_second() {
    let (fake, client) = messenger().await;
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for chat in 0..40 {
        let request = telegram_send(
            &fake,
            &client,
            TELEGRAM,
            json!({"chat_id": 1000 + chat, "text": "Sale!"}),
        );
        sends.spawn(call(request));
    }
    let answers = sends.join_all().await;
    let elapsed = started.elapsed();
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|(st, _, _)| *st == 429)
        .map(|(_, body, _)| body)
        .collect();
    assert_eq!(
        answers.iter().filter(|(st, _, _)| *st == 200).count(),
        30,
        "40 sends in {elapsed:?}"
    );
    assert_eq!(refused.len(), 10);
    assert!(
        refused
            .iter()
            .all(|b| b["parameters"]["retry_after"].as_u64() == Some(1)),
        "{refused:?}"
    );
    let sent = fake.messages();
    assert_eq!(sent.len(), 30);
    assert_eq!((fake.over_limit_429s(), fake.answered_429s()), (10, 10));
    // Never more than 30 recorded in any one second.
    for m in &sent {
        let in_second = sent
            .iter()
            .filter(|o| o.at >= m.at && o.at < m.at + Duration::from_secs(1))
            .count();
        assert!(in_second <= 30);
    }
}

#[tokio::test]
async fn telegram_keeps_a_chat_to_one_message_a_second() {
    let (fake, client) = messenger().await;
    let send = |chat: i64| {
        telegram_send(
            &fake,
            &client,
            TELEGRAM,
            json!({"chat_id": chat, "text": "Hi"}),
        )
    };
    assert_eq!(call(send(7)).await.0, 200);
    let (st, body, _) = call(send(7)).await;
    assert_eq!(st, 429);
    assert_eq!(body["parameters"]["retry_after"], 1);
    assert_eq!(
        call(send(8)).await.0,
        200,
        "another chat has its own second"
    );
    assert_eq!(fake.over_limit_429s(), 1);

    // Once the first message's second has passed, chat 7 may have another.
    let first = fake.messages()[0].at;
    tokio::time::sleep_until((first + Duration::from_secs(1)).into()).await;
    assert_eq!(call(send(7)).await.0, 200);
    assert_eq!(fake.messages().len(), 3);

    // A test may set other limits.
    fake.set_limits(TELEGRAM, Limits::NONE);
    assert_eq!(call(send(7)).await.0, 200);
}

#[tokio::test]
async fn telegram_sets_webhooks_and_tells_who_the_bot_is() {
    let (fake, client) = messenger().await;
    let method = |m: &str| format!("{}/bot{TELEGRAM}/{m}", fake.base_url());
    let (st, body, _) = call(client.post(method("setWebhook")).json(&json!({
        "url": "http://127.0.0.1:9/tg", "secret_token": "s3cr3t_-", "allowed_updates": ["message"]
    })))
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        body,
        json!({"ok": true, "result": true, "description": "Webhook was set"})
    );
    let hook: WebhookSetting = fake
        .webhook(Platform::Telegram, TELEGRAM)
        .expect("a webhook");
    assert_eq!(hook.url, "http://127.0.0.1:9/tg");
    assert_eq!(hook.secret.as_deref(), Some("s3cr3t_-"));
    assert_eq!(hook.body["allowed_updates"], json!(["message"]));

    let (st, body, _) = call(
        client
            .post(method("setWebhook"))
            .json(&json!({"url": "http://127.0.0.1:9/tg", "secret_token": "no spaces"})),
    )
    .await;
    assert_eq!(st, 400, "{body}");

    let (st, body, _) = call(client.get(method("getMe"))).await;
    assert_eq!(st, 200);
    assert_eq!(body["result"]["id"], 123456);
    assert_eq!(body["result"]["is_bot"], true);

    let (st, body, _) = call(client.post(method("deleteWebhook"))).await;
    assert_eq!((st, body["result"].clone()), (200, json!(true)));
    assert_eq!(fake.webhook(Platform::Telegram, TELEGRAM), None);
}

// ---------------------------------------------------------------------------------------------
// Viber

#[tokio::test]
async fn viber_records_a_send_and_answers_with_a_message_token() {
    let (fake, client) = messenger().await;
    let keyboard = json!({"Type": "keyboard", "Buttons": [{"ActionType": "reply", "ActionBody": "buy", "Text": "Buy"}]});
    let mut body = viber_text("01234567890A=", "Hello");
    body["keyboard"] = keyboard.clone();
    let (st, answer, _) = call(viber_send(&fake, &client, VIBER, body)).await;
    assert_eq!(st, 200);
    assert_eq!(answer["status"], 0);
    assert_eq!(answer["status_message"], "ok");
    assert!(answer["message_token"].as_u64().is_some(), "{answer}");
    let sent = fake.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].platform, Platform::Viber);
    assert_eq!(
        (sent[0].chat_id.as_str(), sent[0].text.as_str()),
        ("01234567890A=", "Hello")
    );
    assert_eq!(sent[0].body["keyboard"], keyboard);
    assert_eq!(sent[0].body["sender"]["name"], "Shop");
}

#[tokio::test]
async fn viber_answers_errors_in_the_body_with_http_200() {
    let (fake, client) = messenger().await;
    let (st, body, _) = call(viber_send(&fake, &client, "wrong", viber_text("u1", "Hi"))).await;
    assert_eq!(st, 200);
    assert_eq!(
        body,
        json!({"status": 2, "status_message": "invalidAuthToken"})
    );
    let (st, body, _) = call(viber_send(
        &fake,
        &client,
        VIBER,
        json!({"receiver": "u1", "type": "text", "text": "Hi"}),
    ))
    .await;
    assert_eq!(
        (st, body["status"].clone()),
        (200, json!(4)),
        "no sender.name"
    );
    let mut long_name = viber_text("u1", "Hi");
    long_name["sender"]["name"] = json!("A sender name of more than 28 chars");
    let (_, body, _) = call(viber_send(&fake, &client, VIBER, long_name)).await;
    assert_eq!(body["status"], 3);

    fake.fail_next_for(VIBER, 1, Failure::TooManyRequests { retry_after: 1 });
    let (st, body, _) = call(viber_send(&fake, &client, VIBER, viber_text("u1", "Hi"))).await;
    assert_eq!(st, 200, "Viber has no HTTP 429");
    assert_eq!(body["status"], 12);
    fake.block("u2");
    let (_, body, _) = call(viber_send(&fake, &client, VIBER, viber_text("u2", "Hi"))).await;
    assert_eq!(
        (body["status"].clone(), body["status_message"].clone()),
        (json!(6), json!("notSubscribed"))
    );
    assert!(fake.messages().is_empty());

    let (_, body, _) = call(viber_send(&fake, &client, VIBER, viber_text("u1", "Hi"))).await;
    assert_eq!(body["status"], 0, "accepted after the flood");
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(fake.answered_429s(), 1);
}

#[tokio::test]
async fn viber_checks_a_new_webhook_with_a_signed_callback() {
    let (fake, client) = messenger().await;
    let receiver = FakeCrm::start("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").await;
    let set = |url: String| {
        client
            .post(format!("{}/pa/set_webhook", fake.base_url()))
            .header("X-Viber-Auth-Token", VIBER)
            .json(&json!({"url": url, "event_types": ["conversation_started", "subscribed"]}))
    };
    let (_, body, _) = call(set(receiver.url("/viber"))).await;
    assert_eq!(body["status"], 0, "{body}");
    assert_eq!(
        body["event_types"],
        json!(["conversation_started", "subscribed"])
    );
    let callbacks = receiver.deliveries();
    assert_eq!(callbacks.len(), 1);
    assert_eq!(callbacks[0].path, "/viber");
    assert_eq!(callbacks[0].json.as_ref().unwrap()["event"], "webhook");
    assert_eq!(
        callbacks[0].header(sign::VIBER_SIGNATURE_HEADER),
        Some(sign::viber_signature(VIBER, &callbacks[0].body).as_str())
    );
    assert_eq!(
        fake.webhook(Platform::Viber, VIBER).map(|w| w.url),
        Some(receiver.url("/viber"))
    );

    // A URL that does not answer 200 is refused.
    receiver.down();
    let (_, body, _) = call(set(receiver.url("/other"))).await;
    assert_eq!(body, json!({"status": 1, "status_message": "invalidUrl"}));
    assert_eq!(
        fake.webhook(Platform::Viber, VIBER).map(|w| w.url),
        Some(receiver.url("/viber"))
    );
}

// ---------------------------------------------------------------------------------------------
// Messenger and Instagram

#[tokio::test]
async fn messenger_records_a_send_with_the_token_in_the_query_or_a_header() {
    let (fake, client) = messenger().await;
    let body = json!({"recipient": {"id": "1254477777772919"}, "messaging_type": "RESPONSE",
                      "message": {"text": "Hello"}});
    let (st, answer, _) = call(
        client
            .post(format!(
                "{}/v23.0/me/messages?access_token={PAGE}",
                fake.base_url()
            ))
            .json(&body),
    )
    .await;
    assert_eq!(st, 200, "{answer}");
    assert_eq!(answer["recipient_id"], "1254477777772919");
    assert!(answer["message_id"].as_str().unwrap().starts_with("m_"));
    let (st, _, _) = call(messenger_send(&fake, &client, body)).await;
    assert_eq!(st, 200);
    let sent = fake.messages();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0].platform, Platform::Messenger);
    assert_eq!(sent[0].bot, PAGE);
    assert_eq!(
        (sent[0].chat_id.as_str(), sent[0].text.as_str()),
        ("1254477777772919", "Hello")
    );
}

#[tokio::test]
async fn messenger_answers_errors_as_the_graph_api_does() {
    let (fake, client) = messenger().await;
    let text = |to: &str| json!({"recipient": {"id": to}, "message": {"text": "Hi"}});
    let (st, body, _) = call(
        client
            .post(format!("{}/v23.0/me/messages", fake.base_url()))
            .bearer_auth("wrong")
            .json(&text("1")),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(body["error"]["code"], 190);
    assert_eq!(body["error"]["type"], "OAuthException");
    assert_eq!(body["error"]["message"], "Invalid OAuth access token.");
    assert!(body["error"]["fbtrace_id"].is_string());

    fake.fail_next(1, Failure::TooManyRequests { retry_after: 90 });
    let (st, body, headers) = call(messenger_send(&fake, &client, text("1"))).await;
    assert_eq!((st, body["error"]["code"].clone()), (400, json!(613)));
    let usage: Value =
        serde_json::from_str(headers["x-business-use-case-usage"].to_str().unwrap()).unwrap();
    assert_eq!(usage["0"][0]["estimated_time_to_regain_access"], 2);

    fake.block("2");
    let (st, body, _) = call(messenger_send(&fake, &client, text("2"))).await;
    assert_eq!(st, 400);
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(551), json!(1545041))
    );
    assert_eq!(
        body["error"]["message"],
        "(#551) This person isn't available right now."
    );
    assert!(fake.messages().is_empty());
    assert_eq!(call(messenger_send(&fake, &client, text("1"))).await.0, 200);
}

#[tokio::test]
async fn messenger_lets_only_a_message_tag_through_a_closed_window() {
    let (fake, client) = messenger().await;
    fake.outside_window("3");
    let (st, body, _) = call(messenger_send(
        &fake,
        &client,
        json!({"recipient": {"id": "3"}, "messaging_type": "RESPONSE", "message": {"text": "Hi"}}),
    ))
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(10), json!(2018278))
    );
    let (st, body, _) = call(messenger_send(
        &fake,
        &client,
        json!({"recipient": {"id": "3"}, "messaging_type": "MESSAGE_TAG", "tag": "SALE",
               "message": {"text": "Hi"}}),
    ))
    .await;
    assert_eq!((st, body["error"]["code"].clone()), (400, json!(100)));
    let (st, _, _) = call(messenger_send(
        &fake,
        &client,
        json!({"recipient": {"id": "3"}, "messaging_type": "MESSAGE_TAG", "tag": "ACCOUNT_UPDATE",
               "message": {"text": "Your order shipped"}}),
    ))
    .await;
    assert_eq!(st, 200);
    assert_eq!(fake.messages().len(), 1);
    assert_eq!(fake.messages()[0].body["tag"], "ACCOUNT_UPDATE");
}

// ---------------------------------------------------------------------------------------------
// WhatsApp

#[tokio::test]
async fn whatsapp_records_a_text_send() {
    let (fake, client) = messenger().await;
    let (st, body, _) = call(whatsapp_send(
        &fake,
        &client,
        whatsapp_text("+1 650-555-1234", "Hello"),
    ))
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    assert_eq!(
        body["contacts"],
        json!([{"input": "+1 650-555-1234", "wa_id": "16505551234"}])
    );
    assert!(
        body["messages"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("wamid.")
    );
    let sent = fake.messages();
    assert_eq!(sent[0].platform, Platform::WhatsApp);
    assert_eq!(sent[0].bot, WA_NUMBER);
    assert_eq!(
        (sent[0].chat_id.as_str(), sent[0].text.as_str()),
        ("+1 650-555-1234", "Hello")
    );
}

#[tokio::test]
async fn whatsapp_refuses_a_wrong_token_and_another_businesss_number() {
    let (fake, client) = messenger().await;
    fake.add_whatsapp_number("200000000000001", "EAAGother-token");
    let (st, body, _) = call(
        client
            .post(format!("{}/v23.0/{WA_NUMBER}/messages", fake.base_url()))
            .bearer_auth("wrong")
            .json(&whatsapp_text("16505551234", "Hi")),
    )
    .await;
    assert_eq!((st, body["error"]["code"].clone()), (401, json!(190)));
    let (st, body, _) = call(
        client
            .post(format!(
                "{}/v23.0/200000000000001/messages",
                fake.base_url()
            ))
            .bearer_auth(WA_TOKEN)
            .json(&whatsapp_text("16505551234", "Hi")),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(
        (
            body["error"]["code"].clone(),
            body["error"]["error_subcode"].clone()
        ),
        (json!(100), json!(33))
    );
    assert_eq!(body["error"]["type"], "GraphMethodException");
    let (st, body, _) = call(whatsapp_send(
        &fake,
        &client,
        json!({"messaging_product": "whatsapp", "to": "16505551234", "type": "text"}),
    ))
    .await;
    assert_eq!((st, body["error"]["code"].clone()), (400, json!(100)));
    assert!(fake.messages().is_empty());
}

#[tokio::test]
async fn whatsapp_answers_floods_blocks_and_the_closed_window_with_its_codes() {
    let (fake, client) = messenger().await;
    fake.fail_next(1, Failure::TooManyRequests { retry_after: 1 });
    let (st, body, _) = call(whatsapp_send(&fake, &client, whatsapp_text("1555", "Hi"))).await;
    assert_eq!((st, body["error"]["code"].clone()), (400, json!(130429)));
    assert_eq!(body["error"]["error_data"]["messaging_product"], "whatsapp");
    assert_eq!(
        call(whatsapp_send(&fake, &client, whatsapp_text("1555", "Hi")))
            .await
            .0,
        200
    );

    // The pair limit, when a test sets it.
    fake.set_limits(
        WA_NUMBER,
        Limits {
            per_bot: None,
            per_chat: Some(Rate::new(1, Duration::from_secs(6))),
        },
    );
    let (st, _, _) = call(whatsapp_send(&fake, &client, whatsapp_text("1555", "Hi"))).await;
    assert_eq!(st, 200);
    let (_, body, _) = call(whatsapp_send(&fake, &client, whatsapp_text("1555", "Hi"))).await;
    assert_eq!(body["error"]["code"], 131056);
    fake.set_limits(WA_NUMBER, Limits::of(Platform::WhatsApp));

    fake.block("1666");
    let (_, body, _) = call(whatsapp_send(&fake, &client, whatsapp_text("1666", "Hi"))).await;
    assert_eq!(body["error"]["code"], 131026);

    fake.outside_window("1777");
    let (st, body, _) = call(whatsapp_send(&fake, &client, whatsapp_text("1777", "Hi"))).await;
    assert_eq!((st, body["error"]["code"].clone()), (400, json!(131047)));
    let template = json!({"messaging_product": "whatsapp", "to": "1777", "type": "template",
        "template": {"name": "order_update", "language": {"code": "en_US"}}});
    let (st, body, _) = call(whatsapp_send(&fake, &client, template)).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["messages"][0]["message_status"], "accepted");

    let sent = fake.messages();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].body["template"]["name"], "order_update");
}

// ---------------------------------------------------------------------------------------------
// LINE

#[tokio::test]
async fn line_records_a_push_and_answers_its_sent_messages() {
    let (fake, client) = messenger().await;
    let (st, body, headers) = call(line_push(
        &fake,
        &client,
        json!({"to": "U4af4980629", "messages": [{"type": "text", "text": "Hello"},
                                                  {"type": "text", "text": "World"}]}),
    ))
    .await;
    assert_eq!(st, 200, "{body}");
    let sent_messages = body["sentMessages"].as_array().unwrap();
    assert_eq!(sent_messages.len(), 2);
    assert!(
        sent_messages
            .iter()
            .all(|m| m["id"].is_string() && m["quoteToken"].is_string())
    );
    assert!(headers.contains_key("x-line-request-id"));
    let sent = fake.messages();
    assert_eq!(sent[0].platform, Platform::Line);
    assert_eq!(
        (sent[0].chat_id.as_str(), sent[0].text.as_str()),
        ("U4af4980629", "Hello\nWorld")
    );
}

#[tokio::test]
async fn line_answers_errors_with_a_message_and_hides_a_block() {
    let (fake, client) = messenger().await;
    let push = |to: &str| json!({"to": to, "messages": [{"type": "text", "text": "Hi"}]});
    let (st, body, _) = call(
        client
            .post(format!("{}/v2/bot/message/push", fake.base_url()))
            .bearer_auth("wrong")
            .json(&push("U1")),
    )
    .await;
    assert_eq!(st, 401);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication failed")
    );
    let (st, body, _) = call(line_push(&fake, &client, json!({"messages": []}))).await;
    assert_eq!(st, 400);
    assert_eq!(body["message"], "The request body has 2 error(s)");
    assert_eq!(body["details"][0]["property"], "to");

    fake.fail_next(1, Failure::TooManyRequests { retry_after: 1 });
    let (st, body, _) = call(line_push(&fake, &client, push("U1"))).await;
    assert_eq!(st, 429);
    assert_eq!(
        body["message"],
        "The API rate limit has been exceeded. Try again later."
    );

    fake.block("U2");
    let (st, body, _) = call(line_push(&fake, &client, push("U2"))).await;
    assert_eq!(st, 200, "LINE does not tell");
    assert_eq!(body["sentMessages"].as_array().unwrap().len(), 1);
    assert!(fake.messages().is_empty(), "but the message goes nowhere");

    assert_eq!(call(line_push(&fake, &client, push("U1"))).await.0, 200);
    assert_eq!(fake.messages().len(), 1);
}

#[tokio::test]
async fn line_accepts_a_retry_key_once() {
    let (fake, client) = messenger().await;
    let push = || {
        line_push(
            &fake,
            &client,
            json!({"to": "U1", "messages": [{"type": "text", "text": "Paid"}]}),
        )
        .header("X-Line-Retry-Key", "123e4567-e89b-12d3-a456-426614174000")
    };
    let (st, first, _) = call(push()).await;
    assert_eq!(st, 200);
    let (st, again, headers) = call(push()).await;
    assert_eq!(st, 409);
    assert_eq!(again["message"], "The retry key is already accepted");
    assert_eq!(again["sentMessages"], first["sentMessages"]);
    assert!(headers.contains_key("x-line-accepted-request-id"));
    assert_eq!(fake.messages().len(), 1);

    let (st, _, _) = call(
        line_push(
            &fake,
            &client,
            json!({"to": "U1", "messages": [{"type": "text", "text": "x"}]}),
        )
        .header("X-Line-Retry-Key", "not-a-uuid"),
    )
    .await;
    assert_eq!(st, 400);
}

// ---------------------------------------------------------------------------------------------
// MAX

#[tokio::test]
async fn max_records_a_send_to_a_user() {
    let (fake, client) = messenger().await;
    let attachments = json!([{"type": "inline_keyboard", "payload": {"buttons": [[
        {"type": "link", "text": "Open", "url": "https://example.com"}]]}}]);
    let (st, body, _) = call(max_send(
        &fake,
        &client,
        42,
        json!({"text": "Hello", "attachments": attachments}),
    ))
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["message"]["body"]["text"], "Hello");
    assert_eq!(body["message"]["recipient"]["user_id"], 42);
    assert!(
        body["message"]["body"]["mid"]
            .as_str()
            .unwrap()
            .starts_with("mid.")
    );
    let sent = fake.messages();
    assert_eq!(sent[0].platform, Platform::Max);
    assert_eq!(
        (sent[0].chat_id.as_str(), sent[0].text.as_str()),
        ("user:42", "Hello")
    );
    assert_eq!(sent[0].body["attachments"], attachments);
}

#[tokio::test]
async fn max_answers_errors_with_a_code_and_a_message() {
    let (fake, client) = messenger().await;
    let (st, body, _) = call(
        client
            .post(format!("{}/messages?user_id=42", fake.base_url()))
            .header("Authorization", "wrong")
            .json(&json!({"text": "Hi"})),
    )
    .await;
    assert_eq!(st, 401);
    assert_eq!(
        body,
        json!({"code": "verify.token", "message": "Invalid access_token"})
    );
    let (st, _, _) = call(
        client
            .post(format!("{}/messages", fake.base_url()))
            .header("Authorization", MAX)
            .json(&json!({"text": "Hi"})),
    )
    .await;
    assert_eq!(st, 400, "no user_id nor chat_id");

    fake.fail_next(1, Failure::TooManyRequests { retry_after: 1 });
    let (st, body, _) = call(max_send(&fake, &client, 42, json!({"text": "Hi"}))).await;
    assert_eq!(
        (st, body["code"].clone()),
        (429, json!("too.many.requests"))
    );
    fake.block("user:43");
    let (st, body, _) = call(max_send(&fake, &client, 43, json!({"text": "Hi"}))).await;
    assert_eq!(st, 403);
    assert_eq!(
        body,
        json!({"code": "chat.denied", "message": "error.dialog.suspended"})
    );
    assert_eq!(
        call(max_send(&fake, &client, 42, json!({"text": "Hi"})))
            .await
            .0,
        200
    );

    // Two messages a second into one dialog.
    assert_eq!(
        call(max_send(&fake, &client, 42, json!({"text": "Hi"})))
            .await
            .0,
        200
    );
    let (st, _, _) = call(max_send(&fake, &client, 42, json!({"text": "Hi"}))).await;
    assert_eq!(st, 429);
    assert_eq!(fake.messages().len(), 2);
    assert_eq!(fake.over_limit_429s(), 1);
}

#[tokio::test]
async fn max_subscribes_a_webhook_with_its_secret() {
    let (fake, client) = messenger().await;
    let subscribe = |secret: &str| {
        client
            .post(format!("{}/subscriptions", fake.base_url()))
            .header("Authorization", MAX)
            .json(
                &json!({"url": "http://127.0.0.1:9/max", "update_types": ["bot_started"],
                          "secret": secret}),
            )
    };
    let (st, body, _) = call(subscribe("abc")).await;
    assert_eq!(st, 400, "a secret of fewer than 5 characters: {body}");
    let (st, body, _) = call(subscribe("s3cr3t-value")).await;
    assert_eq!((st, body), (200, json!({"success": true})));
    let hook = fake.webhook(Platform::Max, MAX).expect("a subscription");
    assert_eq!(hook.url, "http://127.0.0.1:9/max");
    assert_eq!(hook.secret.as_deref(), Some("s3cr3t-value"));
}

// ---------------------------------------------------------------------------------------------
// Failures, waiting, counting

#[tokio::test]
async fn an_injected_server_error_hang_or_delay_then_the_usual_answer() {
    let (fake, client) = messenger().await;
    let send = |chat: i64| {
        telegram_send(
            &fake,
            &client,
            TELEGRAM,
            json!({"chat_id": chat, "text": "Hi"}),
        )
    };
    fake.fail_next(1, Failure::ServerError(502));
    let (st, body, _) = call(send(1)).await;
    assert_eq!(st, 502);
    assert_eq!(body["description"], "Bad Gateway");

    fake.fail_next(1, Failure::Hang);
    let hung = send(2).timeout(Duration::from_millis(300)).send().await;
    assert!(hung.expect_err("no answer").is_timeout());

    fake.fail_next(1, Failure::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(call(send(3)).await.0, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let sent = fake.messages();
    assert_eq!(sent.len(), 1, "only the slow send went through");
    assert_eq!(sent[0].chat_id, "3");
}

#[tokio::test]
async fn failures_for_one_bot_leave_the_others_alone() {
    let (fake, client) = messenger().await;
    fake.add_telegram_bot("777:other");
    fake.fail_next_for("777:other", 2, Failure::ServerError(500));
    let body = json!({"chat_id": 1, "text": "Hi"});
    assert_eq!(
        call(telegram_send(&fake, &client, TELEGRAM, body.clone()))
            .await
            .0,
        200
    );
    let body = json!({"chat_id": 2, "text": "Hi"});
    assert_eq!(
        call(telegram_send(&fake, &client, "777:other", body.clone()))
            .await
            .0,
        500
    );
    assert_eq!(
        call(telegram_send(&fake, &client, "777:other", body.clone()))
            .await
            .0,
        500
    );
    let body = json!({"chat_id": 3, "text": "Hi"});
    assert_eq!(
        call(telegram_send(&fake, &client, "777:other", body))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn waiting_for_messages_returns_when_they_arrive_or_the_time_is_up() {
    let (fake, client) = messenger().await;
    let mut sends = tokio::task::JoinSet::new();
    for chat in 0..3 {
        sends.spawn(call(telegram_send(
            &fake,
            &client,
            TELEGRAM,
            json!({"chat_id": chat, "text": "Hi"}),
        )));
    }
    let sent = fake.wait_for_messages(3, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 3);
    sends.join_all().await;

    let started = Instant::now();
    let sent = fake.wait_for_messages(4, Duration::from_millis(200)).await;
    assert_eq!(sent.len(), 3, "no fourth message came");
    assert!(started.elapsed() >= Duration::from_millis(200));

    fake.clear();
    assert!(fake.messages().is_empty());
    assert_eq!(fake.requests(), 3);
    call(client.get(format!("{}/nowhere", fake.base_url()))).await;
    assert_eq!(fake.requests(), 4, "every request counts, known or not");
}

// ---------------------------------------------------------------------------------------------
// The CRM

const CRM_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A delivery of `body` signed with `secret`, as botlink sends one.
fn delivery(crm: &FakeCrm, secret: &str, id: &str, body: &str) -> RequestBuilder {
    botlink_testkit::client()
        .post(crm.url("/hooks/botlink?source=test"))
        .header("content-type", "application/json")
        .headers(sign::standard_webhooks_headers(
            secret,
            id,
            unix_now(),
            body.as_bytes(),
        ))
        .body(body.to_owned())
}

#[tokio::test]
async fn crm_checks_the_signature_on_the_raw_body() {
    let crm = FakeCrm::start(CRM_SECRET).await;
    let body = r#"{"type":"send_me","data":{"name":"Ann"}}"#;
    let (st, _, _) = call(delivery(&crm, CRM_SECRET, "msg_1", body)).await;
    assert_eq!(st, 200);
    // Signed for one body, sent with another.
    let tampered = delivery(&crm, CRM_SECRET, "msg_2", body)
        .body(r#"{"type":"send_me","data":{"name":"Bob"}}"#);
    assert_eq!(
        call(tampered).await.0,
        200,
        "the CRM answers; it records the failure"
    );
    let other_secret = "whsec_c2VjcmV0LW9mLWFub3RoZXItZW5kcG9pbnQ=";
    call(delivery(&crm, other_secret, "msg_3", body)).await;
    call(
        botlink_testkit::client()
            .post(crm.url("/hooks/botlink"))
            .body(body),
    )
    .await;

    let got = crm.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 4);
    assert!(got[0].signature_ok, "{:?}", got[0].signature_error);
    assert_eq!(got[0].webhook_id.as_deref(), Some("msg_1"));
    assert_eq!(got[0].method, reqwest::Method::POST);
    assert_eq!(got[0].path, "/hooks/botlink");
    assert_eq!(got[0].query.as_deref(), Some("source=test"));
    assert_eq!(got[0].body, body.as_bytes());
    assert_eq!(got[0].json.as_ref().unwrap()["data"]["name"], "Ann");
    assert_eq!(got[0].answered, 200);
    assert!(!got[1].signature_ok);
    assert!(!got[2].signature_ok);
    assert!(!got[3].signature_ok);
    assert_eq!(
        got[3].signature_error.as_deref(),
        Some("no `webhook-id` header")
    );
}

#[tokio::test]
async fn crm_goes_down_fails_on_demand_and_comes_back() {
    let crm = FakeCrm::start(CRM_SECRET).await;
    let send = |id: &str| delivery(&crm, CRM_SECRET, id, "{}");
    crm.retry_after(30);
    crm.down();
    let (st, _, headers) = call(send("1")).await;
    assert_eq!(st, 503);
    assert_eq!(headers["retry-after"], "30");
    crm.up();
    let (st, _, headers) = call(send("2")).await;
    assert_eq!(st, 200);
    assert!(!headers.contains_key("retry-after"));
    crm.fail_next(2, 500);
    assert_eq!(call(send("3")).await.0, 500);
    assert_eq!(call(send("4")).await.0, 500);
    assert_eq!(call(send("5")).await.0, 200);
    crm.gone();
    assert_eq!(call(send("6")).await.0, 410);
    let answered: Vec<u16> = crm.deliveries().iter().map(|d| d.answered).collect();
    assert_eq!(answered, [503, 200, 500, 500, 200, 410]);
}

#[tokio::test]
async fn crm_refuses_connections_then_listens_again_on_the_same_port() {
    let crm = FakeCrm::start(CRM_SECRET).await;
    let url = crm.url("/hooks");
    assert_eq!(call(delivery(&crm, CRM_SECRET, "1", "{}")).await.0, 200);
    crm.refuse().await;
    let refused = delivery(&crm, CRM_SECRET, "2", "{}").send().await;
    assert!(refused.expect_err("refused").is_connect());
    crm.resume().await;
    assert_eq!(crm.url("/hooks"), url);
    assert_eq!(call(delivery(&crm, CRM_SECRET, "3", "{}")).await.0, 200);
    let ids: Vec<String> = crm
        .deliveries()
        .into_iter()
        .filter_map(|d| d.webhook_id)
        .collect();
    assert_eq!(ids, ["1", "3"]);
}

#[tokio::test]
async fn crm_answers_the_json_a_test_gives_it() {
    let crm = FakeCrm::start(CRM_SECRET).await;
    crm.answer_json(json!({"deal_id": 7, "stage": "new"}));
    let (st, body, headers) = call(delivery(&crm, CRM_SECRET, "1", "{}")).await;
    assert_eq!(st, 200);
    assert_eq!(body, json!({"deal_id": 7, "stage": "new"}));
    assert_eq!(headers["content-type"], "application/json");
}
