//! The Start flow end to end over real HTTP on every channel but Telegram (which `flow.rs`
//! covers): a link carrying the CRM's customer id, a click on its short link, the platform's own
//! Start payload (`crates/core/tests/fixtures/start-payloads/`) carrying that click's parameter
//! and signed the way the platform signs, the greeting reaching the platform's API (a fake),
//! `send_me` reaching the CRM signed, then `call_node` notifying the person. Then what the
//! webhooks refuse: forged and unsigned updates, unknown bots and channels, oversized bodies,
//! replays, a wrong Meta handshake, deliveries to private addresses, a key without the role.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use botlink_testkit::fakes::sign;
use botlink_testkit::fakes::{FakeCrm, FakeMessenger};
use botlink_testkit::{ADMIN_KEY, TestServer, client};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use url::Url;

const WAIT: Duration = Duration::from_secs(10);

const VIBER_TOKEN: &str = "4f1c2a9e8d7b6a55-5e8c1d9f2b7a6c40";
const META_PAGE_TOKEN: &str = "EAAGpageAccessToken0123456789";
const IG_TOKEN: &str = "IGAAinstagramAccessToken0123456789";
const META_APP_SECRET: &str = "3c1f0a9e7b5d2c4e6f8a0b1c2d3e4f50";
const META_VERIFY_TOKEN: &str = "meta-verify-token-19";
const WA_TOKEN: &str = "EAAGwhatsappAccessToken0123456789";
const WA_PHONE_NUMBER_ID: &str = "106000000000001";
const LINE_TOKEN: &str = "line-channel-access-token-0123456789";
const LINE_SECRET: &str = "8d2f6c0a4e1b3d5f7a9c0e2b4d6f8a1c";
const MAX_TOKEN: &str = "max-bot-token-0123456789";
const MAX_SECRET: &str = "max-webhook-secret-42";
/// `whsec_` and the Base64 of 32 bytes, as Standard Webhooks writes a secret.
const CUSTOM_SECRET: &str = "whsec_Ym90bGluay1jdXN0b20tY2hhbm5lbC10ZXN0LWtleSE=";
const WRONG_CUSTOM_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// One channel's part in the story: how its bot is set up, what its platform posts when the
/// person opens the deep link, how the platform signs it, and who the person is there.
struct Channel {
    name: &'static str,
    /// The bot's settings for the channel; `api` is the platform's API (the fake messenger),
    /// `chat_service` where a custom channel's messages go.
    settings: fn(api: &str, chat_service: &str) -> Value,
    /// Makes the fake messenger accept the channel's credentials.
    accept: fn(&FakeMessenger),
    /// The bodies the platform posts, in order, when the person opens the deep link at
    /// `location`: its fixture, with the link's parameter where the platform carries it.
    start: fn(location: &Url) -> Vec<Value>,
    /// The headers the platform sends with `body`, made with `secret`.
    sign: fn(secret: &str, body: &[u8]) -> HeaderMap,
    /// The secret the platform signs with (the bot's), and one it does not.
    secret: &'static str,
    wrong_secret: &'static str,
    /// The person's chat id, as botlink stores it and the CRM receives it.
    chat_id: &'static str,
    /// Whom the platform's API names as the receiver (MAX: `chat:<id>`).
    sent_to: &'static str,
    /// The person's name as the platform gives it ("" where it gives none).
    user_name: &'static str,
}

fn fixture(name: &str) -> Value {
    let text = match name {
        "viber-conversation-started" => {
            include_str!("../../core/tests/fixtures/start-payloads/viber-conversation-started.json")
        }
        "viber-subscribed" => {
            include_str!("../../core/tests/fixtures/start-payloads/viber-subscribed.json")
        }
        "messenger-postback-referral" => include_str!(
            "../../core/tests/fixtures/start-payloads/messenger-postback-referral.json"
        ),
        "instagram-referral" => {
            include_str!("../../core/tests/fixtures/start-payloads/instagram-referral.json")
        }
        "whatsapp-text" => {
            include_str!("../../core/tests/fixtures/start-payloads/whatsapp-text.json")
        }
        "line-follow-then-text" => {
            include_str!("../../core/tests/fixtures/start-payloads/line-follow-then-text.json")
        }
        "max-bot-started" => {
            include_str!("../../core/tests/fixtures/start-payloads/max-bot-started.json")
        }
        "custom-events" => {
            include_str!("../../core/tests/fixtures/start-payloads/custom-events.json")
        }
        other => panic!("no fixture {other}"),
    };
    serde_json::from_str(text).unwrap()
}

/// `fixture` with the string at `pointer` replaced by `value`, which must be there already.
fn with(mut fixture: Value, pointer: &str, value: &str) -> Value {
    let slot = fixture
        .pointer_mut(pointer)
        .unwrap_or_else(|| panic!("the fixture has {pointer}"));
    assert!(slot.is_string(), "{pointer} is a string in the fixture");
    *slot = json!(value);
    fixture
}

/// A query parameter of the deep link.
fn query(location: &Url, key: &str) -> String {
    location
        .query_pairs()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("{key}= in {location}"))
        .1
        .into_owned()
}

const VIBER: Channel = Channel {
    name: "viber",
    settings: |api, _| json!({"uri": "shopbot", "token": VIBER_TOKEN, "api_base_url": api}),
    accept: |m| m.add_viber_bot(VIBER_TOKEN),
    // Viber hands the link's `context` over in `conversation_started` only; the person is
    // subscribed by the `subscribed` callback that follows, which carries no context.
    start: |location| {
        vec![
            with(
                fixture("viber-conversation-started"),
                "/context",
                &query(location, "context"),
            ),
            fixture("viber-subscribed"),
        ]
    },
    sign: |secret, body| sign::viber_headers(secret, body),
    secret: VIBER_TOKEN,
    wrong_secret: "not-the-viber-token",
    chat_id: "01234567890A=",
    sent_to: "01234567890A=",
    user_name: "John McClane",
};

const MESSENGER: Channel = Channel {
    name: "messenger",
    settings: |api, _| {
        json!({"page": "shoppage", "page_token": META_PAGE_TOKEN, "app_secret": META_APP_SECRET,
               "verify_token": META_VERIFY_TOKEN, "api_base_url": api})
    },
    accept: |m| m.add_meta_page(META_PAGE_TOKEN),
    // A new thread: Get Started, with the link's `ref` in the postback's referral.
    start: |location| {
        vec![with(
            fixture("messenger-postback-referral"),
            "/entry/0/messaging/0/postback/referral/ref",
            &query(location, "ref"),
        )]
    },
    sign: |secret, body| sign::hub_headers(secret, body),
    secret: META_APP_SECRET,
    wrong_secret: "not-the-app-secret",
    chat_id: "6700000000000001",
    sent_to: "6700000000000001",
    user_name: "",
};

const INSTAGRAM: Channel = Channel {
    name: "instagram",
    settings: |api, _| {
        json!({"username": "shop.ig", "access_token": IG_TOKEN, "app_secret": META_APP_SECRET,
               "api_base_url": api})
    },
    accept: |m| m.add_meta_page(IG_TOKEN),
    start: |location| {
        vec![with(
            fixture("instagram-referral"),
            "/entry/0/messaging/0/referral/ref",
            &query(location, "ref"),
        )]
    },
    sign: |secret, body| sign::hub_headers(secret, body),
    secret: META_APP_SECRET,
    wrong_secret: "not-the-app-secret",
    chat_id: "1200000000000001",
    sent_to: "1200000000000001",
    user_name: "",
};

const WHATSAPP: Channel = Channel {
    name: "whatsapp",
    settings: |api, _| {
        json!({"number": "15550001111", "phone_number_id": WA_PHONE_NUMBER_ID,
               "access_token": WA_TOKEN, "app_secret": META_APP_SECRET, "api_base_url": api})
    },
    accept: |m| m.add_whatsapp_number(WA_PHONE_NUMBER_ID, WA_TOKEN),
    // WhatsApp links carry no hidden parameter: the person sends the text the link pre-fills,
    // the marker and parameter in it.
    start: |location| {
        vec![with(
            fixture("whatsapp-text"),
            "/entry/0/changes/0/value/messages/0/text/body",
            &query(location, "text"),
        )]
    },
    sign: |secret, body| sign::hub_headers(secret, body),
    secret: META_APP_SECRET,
    wrong_secret: "not-the-app-secret",
    chat_id: "380501234567",
    sent_to: "380501234567",
    user_name: "Maria",
};

const LINE: Channel = Channel {
    name: "line",
    settings: |api, _| {
        json!({"id": "@shopline", "access_token": LINE_TOKEN, "channel_secret": LINE_SECRET,
               "api_base_url": api})
    },
    accept: |m| m.add_line_channel(LINE_TOKEN),
    // A new friend's follow, then the text the link pre-fills (LINE's whole query), in one batch.
    start: |location| {
        let query = location.query().expect("the pre-filled text");
        let text: String = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, _)| k)
            .collect();
        vec![with(
            fixture("line-follow-then-text"),
            "/events/1/message/text",
            &text,
        )]
    },
    sign: |secret, body| sign::line_headers(secret, body),
    secret: LINE_SECRET,
    wrong_secret: "not-the-channel-secret",
    chat_id: "U4af4980629d4e6f8a1b3c5d7e9f0a2b4",
    sent_to: "U4af4980629d4e6f8a1b3c5d7e9f0a2b4",
    user_name: "",
};

const MAX: Channel = Channel {
    name: "max",
    settings: |api, _| {
        json!({"username": "shop_bot", "token": MAX_TOKEN, "webhook_secret": MAX_SECRET,
               "api_base_url": api})
    },
    accept: |m| m.add_max_bot(MAX_TOKEN),
    start: |location| {
        vec![with(
            fixture("max-bot-started"),
            "/payload",
            &query(location, "start"),
        )]
    },
    sign: |secret, _| sign::max_headers(secret),
    secret: MAX_SECRET,
    wrong_secret: "not-the-max-secret",
    chat_id: "182182182",
    sent_to: "chat:182182182",
    user_name: "Olga Smirnova",
};

const CUSTOM: Channel = Channel {
    name: "custom",
    settings: |_, chat_service| {
        json!({"link": "https://chat.example.com/shop", "url": chat_service,
               "webhook_secret": CUSTOM_SECRET})
    },
    accept: |_| {},
    // The fixture's `start` event alone (its others would go on to write and unsubscribe).
    start: |location| {
        let start = with(
            fixture("custom-events")["events"][0].clone(),
            "/param",
            &query(location, "start"),
        );
        assert_eq!(start["type"], "start");
        vec![json!({"events": [start]})]
    },
    sign: |secret, body| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let id = format!("msg_{}", now.as_nanos());
        sign::standard_webhooks_headers(secret, &id, now.as_secs() as i64, body)
    },
    secret: CUSTOM_SECRET,
    wrong_secret: WRONG_CUSTOM_SECRET,
    chat_id: "conv-5521",
    sent_to: "conv-5521",
    user_name: "Ann Lee",
};

/// A server that may reach the fakes on loopback (or not), retrying deliveries quickly.
async fn server(reach_loopback: bool) -> TestServer {
    TestServer::start_with(|c| {
        if reach_loopback {
            c.outbound_allow = "127.0.0.0/8".parse().unwrap();
        }
        c.retry_schedule =
            botlink_server::app::config::parse_retry_schedule("200ms,400ms,800ms").unwrap();
    })
    .await
}

/// The scenario: a greeting with a button, `send_me`, and a notification node.
fn scenario(crm_url: &str) -> Value {
    json!({
        "start": "welcome",
        "nodes": {
            "welcome": [
                {"message": "Hello {{user_name}}! Customer {{clientExternalId}}",
                 "buttons": [{"text": "Track order", "node": "track"}]},
                {"send_me": {"url": crm_url, "method": "POST",
                             "data": {"customer_id": "{{clientExternalId}}"},
                             "headers": {"Authorization": "Bearer X"}}}
            ],
            "track": [{"message": "Your order is on its way."}],
            "order_shipped": [{"message": "Order {{order}} has shipped."}]
        }
    })
}

/// A message the person was sent, as the platform's API (or a custom channel's chat service)
/// took it.
#[derive(Debug)]
struct Sent {
    to: String,
    text: String,
    /// The request, for its buttons.
    request: Value,
}

/// Everything a bot set up for one channel needs around it.
struct Setup {
    s: TestServer,
    messenger: FakeMessenger,
    /// A custom channel's chat service: it verifies botlink's signature as it should.
    chat_service: FakeCrm,
    crm: FakeCrm,
    bot: String,
}

impl Setup {
    /// A bot on `channel` whose scenario sends `send_me` to the CRM.
    async fn new(channel: &Channel, reach_loopback: bool) -> Setup {
        let messenger = FakeMessenger::start().await;
        (channel.accept)(&messenger);
        let chat_service = FakeCrm::start(CUSTOM_SECRET).await;
        let s = server(reach_loopback).await;
        let settings = (channel.settings)(&messenger.base_url(), &chat_service.url("/messages"));
        let (st, bot) = s
            .post(
                "/api/v1/bots",
                ADMIN_KEY,
                json!({"name": "Shop", "channels": {channel.name: settings}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{bot}");
        let signing_secret = bot["signing_secret"].as_str().expect("a signing secret");
        let crm = FakeCrm::start(signing_secret).await;
        let bot = bot["id"].as_str().unwrap().to_owned();
        let (st, saved) = s
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/bots/{bot}/scenario"),
                Some(ADMIN_KEY),
                Some(scenario(&crm.url("/hook"))),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{saved}");
        Setup {
            s,
            messenger,
            chat_service,
            crm,
            bot,
        }
    }

    /// A stored-scheme link for customer 12345, clicked: the link, and where the click went.
    async fn clicked_link(&self) -> (Value, Url) {
        let (st, link) = self
            .s
            .post(
                "/api/v1/links",
                ADMIN_KEY,
                json!({"bot_id": self.bot, "payload": {"external_id": "12345", "text": "Hello!"},
                       "utm": {"source": "site", "campaign": "orders"}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{link}");
        let resp = client()
            .get(link["short_url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{link}");
        let location = resp.headers()["location"].to_str().unwrap().to_owned();
        // The click's parameter: the link's code and the click's id.
        let code = link["code"].as_str().unwrap();
        assert!(location.contains(&format!("l_{code}_")), "{location}");
        (link, Url::parse(&location).unwrap())
    }

    /// Posts `body` to the channel's webhook with `headers`.
    async fn post(
        &self,
        channel: &str,
        bot: &str,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let resp = client()
            .post(self.s.url(&format!("/webhooks/{channel}/{bot}")))
            .header("content-type", "application/json")
            .headers(headers)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Posts `body` as the platform does, signed; returns how many events were new.
    async fn deliver(&self, channel: &Channel, body: &Value) -> i64 {
        let bytes = serde_json::to_vec(body).unwrap();
        let (st, answer) = self
            .post(
                channel.name,
                &self.bot,
                (channel.sign)(channel.secret, &bytes),
                bytes,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{answer}");
        answer["received"].as_i64().expect("a count of new events")
    }

    /// Every message sent so far: through a platform's API, or to the chat service.
    fn sent(&self) -> Vec<Sent> {
        let through_api = self.messenger.messages().into_iter().map(|m| Sent {
            to: m.chat_id,
            text: m.text,
            request: m.body,
        });
        let to_chat_service = self.chat_service.deliveries().into_iter().map(|r| {
            assert!(r.signature_ok, "{:?}", r.signature_error);
            let body = r.json.expect("a JSON message");
            Sent {
                to: body["chat_id"].as_str().unwrap().to_owned(),
                text: body["text"].as_str().unwrap().to_owned(),
                request: body,
            }
        });
        through_api.chain(to_chat_service).collect()
    }

    /// Waits until a message with `text` was sent; returns every message with that text.
    async fn wait_for_text(&self, text: &str) -> Vec<Sent> {
        eventually(&format!("a message {text:?}"), || async {
            let sent: Vec<Sent> = self.sent().into_iter().filter(|m| m.text == text).collect();
            (!sent.is_empty()).then_some(sent)
        })
        .await
    }

    /// Waits until the CRM received a request whose body is `json`; returns every request it
    /// received with that body.
    async fn wait_for_crm(&self, json: &Value) -> Vec<botlink_testkit::fakes::Received> {
        eventually(&format!("the CRM receives {json}"), || async {
            let got: Vec<_> = self
                .crm
                .deliveries()
                .into_iter()
                .filter(|r| r.json.as_ref() == Some(json))
                .collect();
            (!got.is_empty()).then_some(got)
        })
        .await
    }

    async fn contacts(&self) -> Vec<Value> {
        let (st, page) = self
            .s
            .get(&format!("/api/v1/bots/{}/contacts", self.bot), ADMIN_KEY)
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        page["contacts"].as_array().unwrap().clone()
    }
}

/// Waits until `check` finds what it looks for; returns it.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The story of the issue on one channel: link, click, the platform's Start, the greeting,
/// `send_me` to the CRM, `call_node` by the CRM's id, the notification.
async fn start_to_notification(channel: &Channel) {
    let setup = Setup::new(channel, true).await;
    let (link, location) = setup.clicked_link().await;

    for body in (channel.start)(&location) {
        assert!(setup.deliver(channel, &body).await > 0, "{body}");
        // The platform retries what it thinks failed: the same update is taken once.
        assert_eq!(setup.deliver(channel, &body).await, 0, "{body}");
    }

    let greeting = format!("Hello {}! Customer 12345", channel.user_name);
    let greeted = setup.wait_for_text(&greeting).await;
    assert_eq!(greeted[0].to, channel.sent_to);
    let request = greeted[0].request.to_string();
    assert!(request.contains("Track order"), "the button: {request}");

    let report =
        json!({"customer_id": "12345", "chat_id": channel.chat_id, "channel": channel.name});
    let hook = &setup.wait_for_crm(&report).await[0];
    assert!(hook.signature_ok, "{:?}", hook.signature_error);
    assert_eq!(hook.path, "/hook");
    assert_eq!(hook.header("authorization"), Some("Bearer X"));

    // The contact, attributed to the link.
    let (st, page) = setup
        .s
        .get(
            &format!("/api/v1/bots/{}/contacts?external_id=12345", setup.bot),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["contacts"].as_array().unwrap().len(), 1, "{page}");
    let contact = &page["contacts"][0];
    assert_eq!(contact["channel"], channel.name);
    assert_eq!(contact["chat_id"], channel.chat_id);
    assert_eq!(contact["subscribed"], true);
    assert_eq!(contact["first_link_id"], link["id"]);
    assert_eq!(contact["utm"]["campaign"], "orders");

    // The CRM notifies customer 12345.
    let (st, run) = setup
        .s
        .post(
            &format!("/api/v1/bots/{}/call_node", setup.bot),
            ADMIN_KEY,
            json!({"node": "order_shipped", "variables": {"order": "A-17"},
                   "to": {"external_id": "12345"}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    let notified = setup.wait_for_text("Order A-17 has shipped.").await;
    assert_eq!(notified[0].to, channel.sent_to);
    let run_id = run["run_id"].as_str().unwrap().to_owned();
    eventually("the run is done", || async {
        let (_, r) = setup
            .s
            .get(&format!("/api/v1/runs/{run_id}"), ADMIN_KEY)
            .await;
        (r["status"] == "done" && r["counts"]["sent"] == 1).then_some(())
    })
    .await;
    // Greeted once, reported once, notified once: nothing else reached the person or the CRM.
    let texts: Vec<String> = setup.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, [greeting.as_str(), "Order A-17 has shipped."]);
    assert_eq!(setup.crm.deliveries().len(), 1, "reported once");
    setup.s.stop().await;
}

#[tokio::test]
async fn viber_start_greets_reports_and_notifies() {
    start_to_notification(&VIBER).await;
}

#[tokio::test]
async fn messenger_start_greets_reports_and_notifies() {
    start_to_notification(&MESSENGER).await;
}

#[tokio::test]
async fn instagram_start_greets_reports_and_notifies() {
    start_to_notification(&INSTAGRAM).await;
}

#[tokio::test]
async fn whatsapp_start_greets_reports_and_notifies() {
    start_to_notification(&WHATSAPP).await;
}

#[tokio::test]
async fn line_start_greets_reports_and_notifies() {
    start_to_notification(&LINE).await;
}

#[tokio::test]
async fn max_start_greets_reports_and_notifies() {
    start_to_notification(&MAX).await;
}

#[tokio::test]
async fn custom_start_greets_reports_and_notifies() {
    start_to_notification(&CUSTOM).await;
}

/// Forged, unsigned and tampered Starts are refused with 401 `invalid_signature` and store
/// nothing: the real one, posted after them, is new, and makes the only contact.
async fn forged_and_unsigned_starts_store_nothing(channel: &Channel) {
    let setup = Setup::new(channel, true).await;
    let (_, location) = setup.clicked_link().await;
    let bodies = (channel.start)(&location);
    for body in &bodies {
        let bytes = serde_json::to_vec(body).unwrap();
        let mut tampered = body.clone();
        tampered["tampered"] = json!(true);
        let tampered = serde_json::to_vec(&tampered).unwrap();
        for (what, headers, body) in [
            (
                "forged",
                (channel.sign)(channel.wrong_secret, &bytes),
                bytes.clone(),
            ),
            ("unsigned", HeaderMap::new(), bytes.clone()),
            ("tampered", (channel.sign)(channel.secret, &bytes), tampered),
        ] {
            // MAX signs no body: its secret header is all there is to check.
            if what == "tampered" && channel.name == "max" {
                continue;
            }
            let (st, err) = setup.post(channel.name, &setup.bot, headers, body).await;
            assert_eq!(st, StatusCode::UNAUTHORIZED, "{what}: {err}");
            assert_eq!(err["error"]["code"], "invalid_signature", "{what}: {err}");
        }
    }
    assert_eq!(setup.contacts().await, Vec::<Value>::new());
    // Had any been stored, the real updates would be repeats (`received: 0`).
    for body in &bodies {
        assert!(setup.deliver(channel, body).await > 0, "{body}");
    }
    let greeting = format!("Hello {}! Customer 12345", channel.user_name);
    setup.wait_for_text(&greeting).await;
    assert_eq!(setup.contacts().await.len(), 1);
    let texts: Vec<String> = setup.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(texts, [greeting]);
    setup.s.stop().await;
}

#[tokio::test]
async fn viber_refuses_forged_and_unsigned_callbacks() {
    forged_and_unsigned_starts_store_nothing(&VIBER).await;
}

#[tokio::test]
async fn messenger_refuses_forged_and_unsigned_webhooks() {
    forged_and_unsigned_starts_store_nothing(&MESSENGER).await;
}

#[tokio::test]
async fn instagram_refuses_forged_and_unsigned_webhooks() {
    forged_and_unsigned_starts_store_nothing(&INSTAGRAM).await;
}

#[tokio::test]
async fn whatsapp_refuses_forged_and_unsigned_webhooks() {
    forged_and_unsigned_starts_store_nothing(&WHATSAPP).await;
}

#[tokio::test]
async fn line_refuses_forged_and_unsigned_webhooks() {
    forged_and_unsigned_starts_store_nothing(&LINE).await;
}

#[tokio::test]
async fn max_refuses_forged_and_unsigned_updates() {
    forged_and_unsigned_starts_store_nothing(&MAX).await;
}

#[tokio::test]
async fn custom_refuses_forged_and_unsigned_events() {
    forged_and_unsigned_starts_store_nothing(&CUSTOM).await;
}

#[tokio::test]
async fn custom_refuses_events_signed_too_long_ago() {
    let setup = Setup::new(&CUSTOM, true).await;
    let (_, location) = setup.clicked_link().await;
    let body = serde_json::to_vec(&(CUSTOM.start)(&location)[0]).unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Standard Webhooks: a timestamp more than 5 minutes from the receiver's clock, either way.
    for at in [now - 6 * 60, now + 6 * 60] {
        let headers = sign::standard_webhooks_headers(CUSTOM_SECRET, "msg_captured", at, &body);
        let (st, err) = setup
            .post("custom", &setup.bot, headers, body.clone())
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{err}");
        assert_eq!(err["error"]["code"], "invalid_signature");
    }
    assert_eq!(setup.contacts().await, Vec::<Value>::new());
    setup.s.stop().await;
}

#[tokio::test]
async fn unknown_bots_and_channels_are_not_found() {
    let setup = Setup::new(&VIBER, true).await;
    let body = serde_json::to_vec(&fixture("viber-subscribed")).unwrap();
    let signed = || sign::viber_headers(VIBER_TOKEN, &body);
    let (st, err) = setup
        .post("viber", "bot_NoSuchBot", signed(), body.clone())
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{err}");
    assert_eq!(err["error"]["code"], "not_found");
    // The bot has no LINE channel (nor a webhook for the web chat, or a messenger named icq).
    let line = sign::line_headers(LINE_SECRET, &body);
    for channel in ["line", "webchat", "icq"] {
        let (st, err) = setup
            .post(channel, &setup.bot, line.clone(), body.clone())
            .await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{channel}: {err}");
        assert_eq!(err["error"]["code"], "not_found", "{channel}: {err}");
    }
    assert_eq!(setup.contacts().await, Vec::<Value>::new());
    setup.s.stop().await;
}

#[tokio::test]
async fn a_body_over_one_mib_is_refused() {
    let setup = Setup::new(&VIBER, true).await;
    const MIB: usize = 1024 * 1024;
    // A signed callback, padded with JSON whitespace to 1 MiB and to one byte more.
    let padded = |len: usize| {
        let mut body = serde_json::to_vec(&fixture("viber-subscribed")).unwrap();
        body.resize(len, b' ');
        body
    };
    let over = padded(MIB + 1);
    let (st, err) = setup
        .post(
            "viber",
            &setup.bot,
            sign::viber_headers(VIBER_TOKEN, &over),
            over,
        )
        .await;
    assert_eq!(st, StatusCode::PAYLOAD_TOO_LARGE, "{err}");
    assert_eq!(err["error"]["code"], "too_large");
    assert_eq!(setup.contacts().await, Vec::<Value>::new());
    let at_limit = padded(MIB);
    let (st, answer) = setup
        .post(
            "viber",
            &setup.bot,
            sign::viber_headers(VIBER_TOKEN, &at_limit),
            at_limit,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{answer}");
    assert_eq!(answer["received"], 1);
    setup.s.stop().await;
}

#[tokio::test]
async fn an_update_posted_twice_at_once_greets_once() {
    let setup = Setup::new(&MESSENGER, true).await;
    let (_, location) = setup.clicked_link().await;
    let body = (MESSENGER.start)(&location).remove(0);
    let (a, b) = tokio::join!(
        setup.deliver(&MESSENGER, &body),
        setup.deliver(&MESSENGER, &body)
    );
    assert_eq!(a + b, 1, "stored once: {a} + {b}");
    setup.wait_for_text("Hello ! Customer 12345").await;
    // A later message to the same person goes after every earlier one.
    let (st, run) = setup
        .s
        .post(
            &format!("/api/v1/bots/{}/call_node", setup.bot),
            ADMIN_KEY,
            json!({"node": "order_shipped", "variables": {"order": "A-17"},
                   "to": {"channel": "messenger", "chat_id": MESSENGER.chat_id}}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    setup.wait_for_text("Order A-17 has shipped.").await;
    let texts: Vec<String> = setup.sent().into_iter().map(|m| m.text).collect();
    assert_eq!(
        texts,
        ["Hello ! Customer 12345", "Order A-17 has shipped."],
        "one greeting"
    );
    assert_eq!(setup.crm.deliveries().len(), 1, "one send_me");
    setup.s.stop().await;
}

#[tokio::test]
async fn the_meta_handshake_echoes_the_challenge_for_the_verify_token_only() {
    let setup = Setup::new(&MESSENGER, true).await;
    let handshake = |mode: &str, token: &str| {
        let mut url =
            Url::parse(&setup.s.url(&format!("/webhooks/messenger/{}", setup.bot))).unwrap();
        url.query_pairs_mut()
            .append_pair("hub.mode", mode)
            .append_pair("hub.verify_token", token)
            .append_pair("hub.challenge", "1158201444");
        client().get(url).send()
    };
    let resp = handshake("subscribe", META_VERIFY_TOKEN).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        resp.headers()
    );
    assert_eq!(resp.text().await.unwrap(), "1158201444");
    for (mode, token) in [
        ("subscribe", "not-the-verify-token"),
        ("subscribe", ""),
        ("unsubscribe", META_VERIFY_TOKEN),
    ] {
        let resp = handshake(mode, token).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{mode} {token}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"]["code"], "forbidden", "{err}");
        assert!(
            !err.to_string().contains("1158201444"),
            "no challenge: {err}"
        );
    }
    setup.s.stop().await;
}

#[tokio::test]
async fn send_me_to_a_private_address_fails_naming_it_and_reaches_nothing() {
    // A server without --outbound-allow: loopback is as private as 10.0.0.1.
    let setup = Setup::new(&MESSENGER, false).await;
    let (_, location) = setup.clicked_link().await;
    let body = (MESSENGER.start)(&location).remove(0);
    assert_eq!(setup.deliver(&MESSENGER, &body).await, 1);

    let list = format!("/api/v1/deliveries?bot_id={}", setup.bot);
    let id: String = eventually("a delivery", || async {
        let (_, page) = setup.s.get(&list, ADMIN_KEY).await;
        Some(page["deliveries"][0]["id"].as_str()?.to_owned())
    })
    .await;
    let delivery = eventually("the delivery is given up", || async {
        let (_, d) = setup
            .s
            .get(&format!("/api/v1/deliveries/{id}"), ADMIN_KEY)
            .await;
        (d["status"] == "failed").then_some(d)
    })
    .await;
    assert_eq!(delivery["url"], setup.crm.url("/hook"));
    // The refused address, the target, and the way to allow it.
    let refused = format!(
        "refused 127.0.0.1 (loopback) for {}: allow it with --outbound-allow",
        setup.crm.base_url()
    );
    let error = delivery["last_error"].as_str().expect("an error");
    assert!(error.contains(&refused), "{error}");
    let attempts = delivery["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 4, "every attempt of the retry schedule");
    for a in attempts {
        assert_eq!(a["status"], Value::Null, "no answer: {a}");
        assert!(a["error"].as_str().unwrap().contains(&refused), "{a}");
    }
    assert_eq!(setup.crm.deliveries().len(), 0, "the CRM received nothing");
    setup.s.stop().await;
}

#[tokio::test]
async fn call_node_needs_the_notify_role() {
    let setup = Setup::new(&MESSENGER, true).await;
    let (_, location) = setup.clicked_link().await;
    let body = (MESSENGER.start)(&location).remove(0);
    setup.deliver(&MESSENGER, &body).await;
    setup.wait_for_text("Hello ! Customer 12345").await;
    let call = json!({"node": "order_shipped", "variables": {"order": "A-17"},
                      "to": {"external_id": "12345"}});
    let path = format!("/api/v1/bots/{}/call_node", setup.bot);
    let (st, err) = setup
        .s
        .post(&path, &api_key(&setup.s, "links").await, call.clone())
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(err["error"]["code"], "forbidden");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("notify"),
        "{err}"
    );
    // The same call with a notify key goes through: only the role was missing.
    let (st, run) = setup
        .s
        .post(&path, &api_key(&setup.s, "notify").await, call)
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{run}");
    setup.wait_for_text("Order A-17 has shipped.").await;
    assert_eq!(setup.sent().len(), 2, "the links key sent nothing");
    setup.s.stop().await;
}

/// A new API key with `role`.
async fn api_key(s: &TestServer, role: &str) -> String {
    let (st, key) = s
        .post(
            "/api/v1/api_keys",
            ADMIN_KEY,
            json!({"role": role, "name": role}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    key["key"].as_str().unwrap().to_owned()
}
