//! The Start flow end to end over real HTTP: a link carrying the CRM's customer id, a click on
//! its short link, the Start the messenger posts with that click's parameter, the greeting the
//! scenario sends, `send_me` reaching the CRM signed, then `call_node` notifying the person.
//! The fakes stand in for the messenger's API and the CRM, as the platforms behave.

use std::time::Duration;

use botlink_testkit::fakes::sign::telegram_headers;
use botlink_testkit::fakes::{Failure, FakeCrm, FakeMessenger, Limits, Rate};
use botlink_testkit::{ADMIN_KEY, TestServer, client};
use reqwest::StatusCode;
use serde_json::{Value, json};

const TG_TOKEN: &str = "123456:AAE-shop-bot-token";
const TG_SECRET: &str = "tg-webhook-secret-42";
const WAIT: Duration = Duration::from_secs(10);

/// A server that may reach the fakes on loopback, retrying deliveries quickly.
async fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.outbound_allow = "127.0.0.0/8".parse().unwrap();
        c.retry_schedule =
            botlink_server::app::config::parse_retry_schedule("200ms,400ms,800ms").unwrap();
    })
    .await
}

/// The scenario of the issue: a greeting with buttons, `send_me`, and a notification node.
fn scenario(crm_url: &str) -> Value {
    json!({
        "start": "welcome",
        "nodes": {
            "welcome": [
                {"message": "Hello {{user_name}}! Customer {{clientExternalId}}",
                 "buttons": [{"text": "Track order", "node": "track"}, {"text": "Site", "url": "https://example.com"}]},
                {"send_me": {"url": crm_url, "method": "POST",
                             "data": {"customer_id": "{{clientExternalId}}"},
                             "headers": {"Authorization": "Bearer X"}},
                 "ok": "subscribed", "not_ok": "sorry"}
            ],
            "subscribed": [{"message": "You will get order updates here."}],
            "sorry": [{"message": "We could not reach the shop; we keep trying."}],
            "track": [{"set": {"asked": "yes"}}, {"goto": "subscribed"}],
            "order_shipped": [{"if": {"var": "order", "exists": true}, "then": "shipped", "else": "subscribed"}],
            "shipped": [{"message": "Order {{order}} has shipped."}]
        }
    })
}

/// A Telegram bot pointed at the fake; returns its id and signing secret.
async fn telegram_bot(s: &TestServer, messenger: &FakeMessenger) -> (String, String) {
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Shop", "channels": {"telegram": {
                "username": "shop_bot", "token": TG_TOKEN, "webhook_secret": TG_SECRET,
                "api_base_url": messenger.base_url()}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    let secret = bot["signing_secret"]
        .as_str()
        .expect("a signing secret, once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (bot["id"].as_str().unwrap().to_owned(), secret)
}

/// A server with a Telegram bot on the fake messenger, its scenario [`scenario`], and the CRM.
struct Shop {
    messenger: FakeMessenger,
    s: TestServer,
    bot: String,
    crm: FakeCrm,
}

async fn shop() -> Shop {
    let messenger = FakeMessenger::start().await;
    messenger.add_telegram_bot(TG_TOKEN);
    let s = server().await;
    let (bot, signing_secret) = telegram_bot(&s, &messenger).await;
    let crm = FakeCrm::start(&signing_secret).await;
    let (st, saved) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/bots/{bot}/scenario"),
            Some(ADMIN_KEY),
            Some(scenario(&crm.url("/hook"))),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    assert_eq!(saved["version"], 1);
    Shop {
        messenger,
        s,
        bot,
        crm,
    }
}

/// A Telegram update: the person sends `text`.
fn telegram_update(update_id: i64, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": 12,
            "from": {"id": 398866372, "is_bot": false, "first_name": "Ivan", "username": "ivanp", "language_code": "uk"},
            "chat": {"id": 398866372, "first_name": "Ivan", "username": "ivanp", "type": "private"},
            "date": 1763700000,
            "text": text,
            "entities": [{"offset": 0, "length": 6, "type": "bot_command"}]
        }
    })
}

async fn post_update(s: &TestServer, bot: &str, secret: Option<&str>, body: &Value) -> StatusCode {
    let mut req = client()
        .post(s.url(&format!("/webhooks/telegram/{bot}")))
        .body(serde_json::to_vec(body).unwrap())
        .header("content-type", "application/json");
    if let Some(secret) = secret {
        req = req.headers(telegram_headers(secret));
    }
    req.send().await.unwrap().status()
}

/// The parameter a click on `short_url` hands to Telegram.
async fn click(short_url: &str) -> String {
    let resp = client().get(short_url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    location
        .split("start=")
        .nth(1)
        .unwrap_or_else(|| panic!("a start parameter in {location}"))
        .to_owned()
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_start_greets_reports_to_the_crm_and_call_node_notifies() {
    let Shop {
        messenger,
        s,
        bot,
        crm,
    } = shop().await;

    let (st, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "payload": {"external_id": "12345"},
                   "utm": {"source": "site", "campaign": "orders"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let param = click(link["short_url"].as_str().unwrap()).await;
    assert!(
        param.starts_with(&format!("l_{}_", link["code"].as_str().unwrap())),
        "{param}"
    );

    // A forged update is refused and stores nothing.
    let start = telegram_update(873201554, &format!("/start {param}"));
    assert_eq!(
        post_update(&s, &bot, Some("not-the-secret"), &start).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_update(&s, &bot, None, &start).await,
        StatusCode::UNAUTHORIZED
    );
    // The real one, twice (Telegram retries what it thinks failed): processed once.
    assert_eq!(
        post_update(&s, &bot, Some(TG_SECRET), &start).await,
        StatusCode::OK
    );
    assert_eq!(
        post_update(&s, &bot, Some(TG_SECRET), &start).await,
        StatusCode::OK
    );

    let sent = messenger.wait_for_messages(1, WAIT).await;
    assert_eq!(sent[0].chat_id, "398866372");
    assert_eq!(sent[0].text, "Hello Ivan! Customer 12345");
    let keyboard = &sent[0].body["reply_markup"]["inline_keyboard"];
    assert!(keyboard.to_string().contains("Track order"), "{keyboard}");

    let got = crm.wait_for(1, WAIT).await;
    let hook = &got[0];
    assert!(hook.signature_ok, "{:?}", hook.signature_error);
    assert_eq!(hook.path, "/hook");
    assert_eq!(hook.header("authorization"), Some("Bearer X"));
    assert_eq!(
        hook.json.as_ref().unwrap(),
        &json!({"customer_id": "12345", "chat_id": "398866372", "channel": "telegram"})
    );
    // ok: the scenario goes on to "subscribed" (Telegram's 1 message/s per chat paces it).
    let sent = messenger.wait_for_messages(2, WAIT).await;
    assert_eq!(sent[1].text, "You will get order updates here.");

    // The contact, attributed to the link.
    let (st, page) = s
        .get(
            &format!("/api/v1/bots/{bot}/contacts?external_id=12345"),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let contact = &page["contacts"][0];
    assert_eq!(contact["channel"], "telegram");
    assert_eq!(contact["chat_id"], "398866372");
    assert_eq!(contact["subscribed"], true);
    assert_eq!(contact["first_link_id"], link["id"]);
    assert_eq!(contact["utm"]["campaign"], "orders");
    assert_eq!(
        page["contacts"].as_array().unwrap().len(),
        1,
        "one contact for two posts"
    );

    // call_node by the CRM's id.
    let (st, run) = s
        .post(
            &format!("/api/v1/bots/{bot}/call_node"),
            ADMIN_KEY,
            json!({"node": "order_shipped", "variables": {"order": "A-17"}, "to": {"external_id": "12345"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    let sent = messenger.wait_for_messages(3, WAIT).await;
    assert_eq!(sent[2].text, "Order A-17 has shipped.");
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    eventually("the run is done", || async {
        let (_, r) = s.get(&format!("/api/v1/runs/{run_id}"), ADMIN_KEY).await;
        r["status"] == "done" && r["counts"]["sent"] == 1
    })
    .await;
    assert_eq!(messenger.messages().len(), 3, "nothing sent twice");
    assert_eq!(crm.deliveries().len(), 1, "send_me delivered once");

    // A stranger cannot be written to first.
    let (st, err) = s
        .post(
            &format!("/api/v1/bots/{bot}/call_node"),
            ADMIN_KEY,
            json!({"node": "order_shipped", "to": {"channel": "telegram", "chat_id": "555"}}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "not_subscribed");
    s.stop().await;
}

#[tokio::test]
async fn a_tampered_parameter_still_greets_and_records_why() {
    let Shop {
        messenger,
        s,
        bot,
        crm: _crm,
    } = shop().await;
    // A code no link has: the Start runs the start node, unattributed.
    let start = telegram_update(1, "/start l_NoSuchLink");
    assert_eq!(
        post_update(&s, &bot, Some(TG_SECRET), &start).await,
        StatusCode::OK
    );
    let sent = messenger.wait_for_messages(1, WAIT).await;
    assert_eq!(sent[0].text, "Hello Ivan! Customer ");
    let (_, page) = s
        .get(&format!("/api/v1/bots/{bot}/contacts"), ADMIN_KEY)
        .await;
    assert_eq!(page["contacts"][0]["first_link_id"], Value::Null);
    s.stop().await;
}

#[tokio::test]
async fn a_scenario_that_does_not_validate_names_its_node_step_and_field() {
    let s = server().await;
    let messenger = FakeMessenger::start().await;
    let (bot, _) = telegram_bot(&s, &messenger).await;
    let (st, err) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/bots/{bot}/scenario"),
            Some(ADMIN_KEY),
            Some(json!({"start": "welcome", "nodes": {"welcome": [
                {"message": "hi"},
                {"send_me": {"url": "not a url"}, "ok": "nowhere"}]}})),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
    assert_eq!(err["error"]["code"], "invalid_scenario");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("node \"welcome\""), "{message}");
    assert!(message.contains("send_me.url"), "{message}");
    s.stop().await;
}

/// `POST .../channels/telegram/webhook`: Telegram is told botlink's URL and a secret botlink
/// made and kept; updates signed with that secret are taken, and greeted.
#[tokio::test]
async fn registering_the_telegram_webhook_gives_it_a_secret_that_updates_must_carry() {
    let messenger = FakeMessenger::start().await;
    messenger.add_telegram_bot(TG_TOKEN);
    let s = server().await;
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Shop", "channels": {"telegram": {
                "username": "shop_bot", "token": TG_TOKEN, "api_base_url": messenger.base_url()}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    let bot = bot["id"].as_str().unwrap().to_owned();
    let (st, saved) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/bots/{bot}/scenario"),
            Some(ADMIN_KEY),
            Some(json!({"start": "hi", "nodes": {"hi": [{"message": "Welcome!"}]}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    let (st, reg) = s
        .post(
            &format!("/api/v1/bots/{bot}/channels/telegram/webhook"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{reg}");
    assert_eq!(reg["registered"], true);
    let url = s.url(&format!("/webhooks/telegram/{bot}"));
    assert_eq!(reg["webhook_url"], url.as_str());
    let set = messenger
        .webhook(botlink_testkit::fakes::Platform::Telegram, TG_TOKEN)
        .expect("setWebhook was called");
    assert_eq!(set.url, url);
    let secret = set.secret.expect("a secret_token");
    assert!(secret.len() >= 32, "{secret}");
    // The secret is not in any answer of the API.
    let (_, shown) = s.get(&format!("/api/v1/bots/{bot}"), ADMIN_KEY).await;
    assert!(!shown.to_string().contains(&secret), "{shown}");
    // Updates carrying it are taken; others are not.
    let start = telegram_update(7, "/start");
    assert_eq!(
        post_update(&s, &bot, Some("guess"), &start).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_update(&s, &bot, Some(&secret), &start).await,
        StatusCode::OK
    );
    let sent = messenger.wait_for_messages(1, WAIT).await;
    assert_eq!(sent[0].text, "Welcome!");
    // Registering again keeps the secret.
    let (st, _) = s
        .post(
            &format!("/api/v1/bots/{bot}/channels/telegram/webhook"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let again = messenger
        .webhook(botlink_testkit::fakes::Platform::Telegram, TG_TOKEN)
        .unwrap();
    assert_eq!(again.secret.as_deref(), Some(secret.as_str()));
    s.stop().await;
}

/// The ConnectiveOne-compatible route: the chat in the path with variables in the query
/// string, or in a JSON body with `data`; answers in ConnectiveOne's form; chat ids decoded.
#[tokio::test]
async fn the_connectiveone_route_notifies_as_call_node_does() {
    let Shop {
        messenger,
        s,
        bot,
        crm: _crm,
    } = shop().await;
    assert_eq!(
        post_update(&s, &bot, Some(TG_SECRET), &telegram_update(1, "/start")).await,
        StatusCode::OK
    );
    // The greeting, then "subscribed" once send_me is answered.
    messenger.wait_for_messages(2, WAIT).await;

    let compat = |path: &str| s.url(&format!("/kw/api/call_node/{bot}/{path}"));

    // GET, the chat in the path, a variable in the query string.
    let (st, body) = answer(
        client()
            .get(compat("order_shipped/telegram/398866372?order=A%2D17"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "success", "{body}");
    assert!(
        body["run_id"].as_str().unwrap().starts_with("run_"),
        "{body}"
    );
    let sent = messenger.wait_for_messages(3, WAIT).await;
    assert_eq!(sent[2].text, "Order A-17 has shipped.");
    assert_eq!(sent[2].chat_id, "398866372");

    // POST, ConnectiveOne's JSON body: the chat id a number, the variables in `data`.
    let (st, body) = answer(
        client()
            .post(compat("order_shipped"))
            .bearer_auth(ADMIN_KEY)
            .json(
                &json!({"chat_id": 398866372, "channel": "telegram", "bot_id": 1,
                          "data": {"order": "B-2"}}),
            ),
    )
    .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::OK, Some("success")),
        "{body}"
    );
    let sent = messenger.wait_for_messages(4, WAIT).await;
    assert_eq!(sent[3].text, "Order B-2 has shipped.");

    // Refusals, in the same form.
    let (st, body) = answer(client().get(compat("order_shipped/telegram/398866372"))).await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("error")),
        "{body}"
    );
    // A Viber id, URL-encoded in the path, arrives decoded; `facebook` is Messenger.
    let (st, body) = answer(
        client()
            .get(compat("order_shipped/viber/01234567890A%2Bb%2FC%3D%3D"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["code"].as_str()),
        (Some("error"), Some("not_subscribed"))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(r#"chat "01234567890A+b/C==" on viber"#),
        "{body}"
    );
    let (st, body) = answer(
        client()
            .post(compat("order_shipped/facebook/42"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("on messenger"),
        "{body}"
    );
    let (st, body) = answer(
        client()
            .post(compat("order_shipped"))
            .bearer_auth(ADMIN_KEY)
            .json(&json!({"data": {"order": "C-3"}})),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_recipient")),
        "{body}"
    );
    let (st, body) = answer(
        client()
            .post(compat("order_shipped"))
            .bearer_auth(ADMIN_KEY)
            .header("content-type", "application/json")
            .body("{\"chat_id\": "),
    )
    .await;
    assert_eq!(
        (st, body["status"].as_str()),
        (StatusCode::BAD_REQUEST, Some("error")),
        "{body}"
    );
    let (st, body) = answer(
        client()
            .get(compat("no_such_node/telegram/398866372"))
            .bearer_auth(ADMIN_KEY),
    )
    .await;
    assert_eq!(
        (st, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_node")),
        "{body}"
    );
    assert_eq!(messenger.messages().len(), 4, "nothing else was sent");
    s.stop().await;
}

/// A request's status and JSON answer.
async fn answer(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status();
    (status, resp.json::<Value>().await.unwrap())
}

/// A Telegram update from another person: `text` sent from chat `chat`.
fn telegram_update_from(update_id: i64, chat: i64, name: &str, text: &str) -> Value {
    let mut update = telegram_update(update_id, text);
    update["message"]["from"]["id"] = json!(chat);
    update["message"]["from"]["first_name"] = json!(name);
    update["message"]["chat"]["id"] = json!(chat);
    update["message"]["chat"]["first_name"] = json!(name);
    update
}

/// call_node for many: each recipient worked once with its own variables, unknown and repeated
/// ones accounted for, the request safe to repeat under an Idempotency-Key, its recipients
/// listed and exported; a run for later waits for its time, and a cancelled one never goes.
#[tokio::test]
async fn call_node_for_many_accounts_for_every_recipient() {
    let Shop {
        messenger, s, bot, ..
    } = shop().await;
    for (i, (chat, name)) in [(1001, "Ann"), (1002, "Bob")].into_iter().enumerate() {
        let update = telegram_update_from(i as i64 + 1, chat, name, "/start");
        assert_eq!(
            post_update(&s, &bot, Some(TG_SECRET), &update).await,
            StatusCode::OK
        );
    }
    // Each greeted, then told they are subscribed once send_me is answered.
    messenger.wait_for_messages(4, WAIT).await;

    let call = |body: Value, key: &'static str| {
        client()
            .post(s.url(&format!("/api/v1/bots/{bot}/call_node")))
            .bearer_auth(ADMIN_KEY)
            .header("idempotency-key", key)
            .json(&body)
    };
    let many = json!({"node": "order_shipped", "variables": {"order": "A-1"}, "recipients": [
        {"channel": "telegram", "chat_id": "1001"},
        {"channel": "telegram", "chat_id": "1002", "variables": {"order": "B-2"}},
        {"external_id": "nobody"},
        {"channel": "telegram", "chat_id": "1001"},
        {"channel": "telegram", "chat_id": "555"}
    ]});
    let (st, first) = answer(call(many.clone(), "batch-1")).await;
    assert_eq!(st, StatusCode::ACCEPTED, "{first}");
    let run_id = first["run_id"].as_str().unwrap().to_owned();
    // The same request again: the same run, nothing sent twice.
    let (st, again) = answer(call(many.clone(), "batch-1")).await;
    assert_eq!(
        (st, &again["run_id"]),
        (StatusCode::ACCEPTED, &first["run_id"]),
        "{again}"
    );
    // Another request under the same key is refused.
    let (st, err) = answer(call(
        json!({"node": "order_shipped", "recipients": [{"external_id": "x"}]}),
        "batch-1",
    ))
    .await;
    assert_eq!(
        (st, err["error"]["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("idempotency_key_reused")
        ),
        "{err}"
    );

    eventually("the run is done", || async {
        let (_, r) = s.get(&format!("/api/v1/runs/{run_id}"), ADMIN_KEY).await;
        r["status"] == "done"
    })
    .await;
    let (_, run) = s.get(&format!("/api/v1/runs/{run_id}"), ADMIN_KEY).await;
    assert_eq!(
        run["counts"],
        json!({"queued": 0, "sent": 2, "failed": 2, "skipped": 1, "cancelled": 0, "total": 5}),
        "{run}"
    );
    let mut texts: Vec<(String, String)> = messenger.messages()[4..]
        .iter()
        .map(|m| (m.chat_id.clone(), m.text.clone()))
        .collect();
    texts.sort();
    assert_eq!(
        texts,
        [
            ("1001".to_owned(), "Order A-1 has shipped.".to_owned()),
            ("1002".to_owned(), "Order B-2 has shipped.".to_owned())
        ],
        "each once, with its own variables"
    );

    // Each recipient's outcome, in the order asked.
    let (st, page) = s
        .get(
            &format!("/api/v1/runs/{run_id}/recipients?limit=3"),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let outcomes = |page: &Value| -> Vec<(i64, String, Option<String>)> {
        page["recipients"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["seq"].as_i64().unwrap(),
                    r["status"].as_str().unwrap().to_owned(),
                    r["reason"].as_str().map(str::to_owned),
                )
            })
            .collect()
    };
    let cursor = page["next_cursor"]
        .as_str()
        .expect("a second page")
        .to_owned();
    let (_, rest) = s
        .get(
            &format!("/api/v1/runs/{run_id}/recipients?limit=3&cursor={cursor}"),
            ADMIN_KEY,
        )
        .await;
    let mut all = outcomes(&page);
    all.extend(outcomes(&rest));
    let reason = |r: &str| Some(r.to_owned());
    assert_eq!(
        all,
        [
            (1, "sent".to_owned(), None),
            (2, "sent".to_owned(), None),
            (3, "failed".to_owned(), reason("not_subscribed")),
            (4, "skipped".to_owned(), reason("duplicate")),
            (5, "failed".to_owned(), reason("not_subscribed")),
        ]
    );
    let (_, failed) = s
        .get(
            &format!("/api/v1/runs/{run_id}/recipients?status=failed"),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(
        outcomes(&failed).iter().map(|o| o.0).collect::<Vec<_>>(),
        [3, 5]
    );
    let csv = client()
        .get(s.url(&format!("/api/v1/runs/{run_id}/recipients.csv")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 6, "{csv}");
    assert!(
        lines[0].starts_with("seq,external_id,channel,chat_id"),
        "{csv}"
    );
    assert!(
        lines[3].starts_with("3,nobody,,,,failed,not_subscribed"),
        "{csv}"
    );

    // A run for later waits; cancelled, it never goes.
    let later = json!({"node": "order_shipped", "send_at": "2099-01-01T00:00:00Z",
                       "recipients": [{"channel": "telegram", "chat_id": "1001"}]});
    let (st, scheduled) = answer(call(later, "later-1")).await;
    assert_eq!(
        (st, scheduled["status"].as_str()),
        (StatusCode::ACCEPTED, Some("scheduled")),
        "{scheduled}"
    );
    let later_id = scheduled["run_id"].as_str().unwrap().to_owned();
    let (st, cancelled) = s
        .post(
            &format!("/api/v1/runs/{later_id}/cancel"),
            ADMIN_KEY,
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(cancelled["counts"]["cancelled"], 1);
    let (_, runs) = s.get(&format!("/api/v1/bots/{bot}/runs"), ADMIN_KEY).await;
    let listed: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [later_id.as_str(), run_id.as_str()], "newest first");

    // A run soon: nothing before its time, everything after.
    let send_at = time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    let soon = json!({"node": "order_shipped", "variables": {"order": "C-3"},
                      "send_at": send_at.format(&time::format_description::well_known::Rfc3339).unwrap(),
                      "recipients": [{"channel": "telegram", "chat_id": "1002"}]});
    let (st, soon) = answer(call(soon, "soon-1")).await;
    assert_eq!(
        (st, soon["status"].as_str()),
        (StatusCode::ACCEPTED, Some("scheduled")),
        "{soon}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messenger.messages().len(), 6, "not yet");
    let sent = messenger.wait_for_messages(7, WAIT).await;
    assert_eq!(sent[6].text, "Order C-3 has shipped.");
    assert!(
        time::OffsetDateTime::now_utc() >= send_at,
        "not sent before its time"
    );
    assert_eq!(messenger.messages().len(), 7, "nothing else was sent");
    s.stop().await;
}

/// A call for tens of thousands (a body well over the 1 MiB other routes take) is answered at
/// once with its run, every recipient in it.
#[tokio::test]
async fn a_call_for_many_thousands_is_answered_at_once() {
    let Shop { s, bot, .. } = shop().await;
    const N: usize = 40_000;
    let recipients: Vec<Value> = (0..N)
        .map(|i| json!({"external_id": format!("customer-{i:06}"), "variables": {"order": format!("A-{i}")}}))
        .collect();
    let body = json!({"node": "order_shipped", "recipients": recipients});
    assert!(serde_json::to_vec(&body).unwrap().len() > 2 * 1024 * 1024);
    let (st, run) = answer(
        client()
            .post(s.url(&format!("/api/v1/bots/{bot}/call_node")))
            .bearer_auth(ADMIN_KEY)
            .json(&body),
    )
    .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    let run_id = run["run_id"].as_str().unwrap();
    let (_, run) = s.get(&format!("/api/v1/runs/{run_id}"), ADMIN_KEY).await;
    assert_eq!(run["counts"]["total"], N, "{run}");
    let (_, last) = s
        .get(
            &format!("/api/v1/runs/{run_id}/recipients?limit=500&cursor="),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(last["error"]["code"], "invalid_cursor");
    s.stop().await;
}

/// A bot's `rate_limit` holds against a platform enforcing it: messages paced evenly, none
/// answered 429, none lost; a platform's 429 pauses the channel and the message goes later.
#[tokio::test]
async fn sends_keep_to_the_channels_rate_limit() {
    let messenger = FakeMessenger::start().await;
    messenger.add_telegram_bot(TG_TOKEN);
    // The platform allows this bot 11 messages a second, counted over a sliding second; the
    // bot's `rate_limit` says 10 (the margin is for a loaded machine's timing, not botlink's).
    messenger.set_limits(
        TG_TOKEN,
        Limits {
            per_bot: Some(Rate::per_second(11)),
            per_chat: Some(Rate::per_second(1)),
        },
    );
    let s = server().await;
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Paced", "channels": {"telegram": {
                "username": "paced_bot", "token": TG_TOKEN, "webhook_secret": TG_SECRET,
                "api_base_url": messenger.base_url(), "rate_limit": 10}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    assert_eq!(bot["channels"][0]["settings"]["rate_limit"], 10, "{bot}");
    let bot = bot["id"].as_str().unwrap().to_owned();
    let (st, _) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/bots/{bot}/scenario"),
            Some(ADMIN_KEY),
            Some(json!({"start": "quiet", "nodes": {
                "quiet": [{"set": {"seen": "yes"}}],
                "note": [{"message": "Note {{n}}"}]}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    const PEOPLE: i64 = 30;
    for i in 0..PEOPLE {
        let update = telegram_update_from(i + 1, 2000 + i, "P", "/start");
        assert_eq!(
            post_update(&s, &bot, Some(TG_SECRET), &update).await,
            StatusCode::OK
        );
    }
    let recipients: Vec<Value> = (0..PEOPLE)
        .map(|i| json!({"channel": "telegram", "chat_id": (2000 + i).to_string(), "variables": {"n": i.to_string()}}))
        .collect();
    // The Starts are worked before the call's recipients are looked up.
    eventually("every Start is a contact", || async {
        let (_, page) = s
            .get(&format!("/api/v1/bots/{bot}/contacts?limit=100"), ADMIN_KEY)
            .await;
        page["contacts"]
            .as_array()
            .is_some_and(|c| c.len() == PEOPLE as usize)
    })
    .await;
    let (st, run) = s
        .post(
            &format!("/api/v1/bots/{bot}/call_node"),
            ADMIN_KEY,
            json!({"node": "note", "recipients": recipients}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    let sent = messenger
        .wait_for_messages(PEOPLE as usize, Duration::from_secs(20))
        .await;
    assert_eq!(messenger.answered_429s(), 0, "no send over the limit");
    let spread = sent.last().unwrap().at - sent[0].at;
    assert!(
        spread >= Duration::from_millis(2_500),
        "30 messages at 10 a second take about 3 s, not a burst: {spread:?}"
    );
    let mut chats: Vec<&str> = sent.iter().map(|m| m.chat_id.as_str()).collect();
    chats.sort_unstable();
    chats.dedup();
    assert_eq!(chats.len(), PEOPLE as usize, "each person once");

    // The platform asks to wait: the channel pauses, and the message goes after the wait.
    messenger.fail_next(1, Failure::TooManyRequests { retry_after: 2 });
    let asked = std::time::Instant::now();
    let (st, run) = s
        .post(
            &format!("/api/v1/bots/{bot}/call_node"),
            ADMIN_KEY,
            json!({"node": "note", "variables": {"n": "after"}, "to": {"channel": "telegram", "chat_id": "2000"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    let sent = messenger
        .wait_for_messages(PEOPLE as usize + 1, Duration::from_secs(20))
        .await;
    assert_eq!(sent.last().unwrap().text, "Note after");
    assert!(
        asked.elapsed() >= Duration::from_secs(2),
        "sent after the wait the platform asked for"
    );
    s.stop().await;
}
