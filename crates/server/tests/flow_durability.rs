//! Nothing the Start flow has taken on is lost: not when the server is killed (`kill -9`) with
//! hundreds of greetings and deliveries pending, nor when the CRM is down for a while. Every
//! greeting reaches the messenger and every `send_me` reaches the CRM, signed; a delivery made
//! again carries the `webhook-id` it had, so that the CRM can tell it has had it. Retries come
//! in the order they fall due, wait as long as a `Retry-After` asks, and stop at a 410.
//!
//! The kill test runs `botlink serve` as a process of its own and kills it with SIGKILL; the
//! others run the server in the test's process.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use botlink_testkit::cut_proxy::CutProxy;
use botlink_testkit::fakes::sign::telegram_headers;
use botlink_testkit::fakes::{Failure, FakeCrm, FakeMessenger, Limits, Received};
use botlink_testkit::{ADMIN_KEY, TestServer, client};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const TG_TOKEN: &str = "123456:AAE-shop-bot-token";
const TG_SECRET: &str = "tg-webhook-secret-42";

/// The admin API of a server.
#[derive(Clone)]
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: String) -> Api {
        Api {
            base,
            client: client(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(ADMIN_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A Telegram bot whose API calls go to `api_base_url`, with `scenario`; returns its id
    /// and its signing secret.
    async fn shop_bot(&self, api_base_url: &str, scenario: impl FnOnce(&str) -> Value) -> Shop {
        let (st, bot) = self
            .post(
                "/api/v1/bots",
                json!({"name": "Shop", "channels": {"telegram": {
                    "username": "shop_bot", "token": TG_TOKEN, "webhook_secret": TG_SECRET,
                    "api_base_url": api_base_url}}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{bot}");
        let id = bot["id"].as_str().unwrap().to_owned();
        let secret = bot["signing_secret"].as_str().unwrap().to_owned();
        let crm = FakeCrm::start(&secret).await;
        let (st, saved) = self
            .call(
                Method::PUT,
                &format!("/api/v1/bots/{id}/scenario"),
                Some(scenario(&crm.url("/hook"))),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{saved}");
        Shop { bot: id, crm }
    }

    /// Posts `update` to the bot's Telegram webhook, as Telegram does; the server answers 200
    /// once it has stored it.
    async fn post_update(&self, bot: &str, update: &Value) {
        let status = self
            .client
            .post(self.url(&format!("/webhooks/telegram/{bot}")))
            .headers(telegram_headers(TG_SECRET))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(update).unwrap())
            .send()
            .await
            .expect("the server answers")
            .status();
        assert_eq!(status, StatusCode::OK, "{update}");
    }

    /// Every delivery with this status (`pending`, `delivered`, `failed`), page by page.
    async fn deliveries(&self, status: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/api/v1/deliveries?status={status}&limit=500");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (st, page) = self.get(&path).await;
            assert_eq!(st, StatusCode::OK, "{page}");
            all.extend(page["deliveries"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    /// One delivery with its attempt log.
    async fn delivery(&self, id: &str) -> Value {
        let (st, d) = self.get(&format!("/api/v1/deliveries/{id}")).await;
        assert_eq!(st, StatusCode::OK, "{d}");
        d
    }
}

/// A bot and the CRM its scenario reports to.
struct Shop {
    bot: String,
    crm: FakeCrm,
}

/// The scenario, cut to what a Start does: a greeting, then `send_me` to the CRM.
fn greet_and_report(crm_url: &str) -> Value {
    json!({"start": "welcome", "nodes": {"welcome": [
        {"message": "Hello {{user_name}}! Customer {{clientExternalId}}"},
        {"send_me": {"url": crm_url, "data": {"customer_id": "{{clientExternalId}}"}}}
    ]}})
}

/// A scenario that only reports the Start to the CRM.
fn report(crm_url: &str) -> Value {
    json!({"start": "welcome", "nodes": {"welcome": [
        {"send_me": {"url": crm_url, "data": {"customer_id": "{{clientExternalId}}"}}}
    ]}})
}

/// A Telegram update: `name` (in a private chat of their own) sends `text`.
fn telegram_update(update_id: i64, chat_id: i64, name: &str, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": 1,
            "from": {"id": chat_id, "is_bot": false, "first_name": name},
            "chat": {"id": chat_id, "first_name": name, "type": "private"},
            "date": 1763700000,
            "text": text,
            "entities": [{"offset": 0, "length": 6, "type": "bot_command"}]
        }
    })
}

/// The chat a CRM request reports (`send_me` adds `chat_id` to its data).
fn chat_of(r: &Received) -> String {
    r.json
        .as_ref()
        .and_then(|j| j["chat_id"].as_str())
        .unwrap_or_else(|| panic!("a send_me body with a chat_id: {:?}", r.json))
        .to_owned()
}

fn answered_2xx(r: &Received) -> bool {
    (200..300).contains(&r.answered)
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

/// Waits (polling) until `check` holds; fails the test after `within`.
async fn eventually<F, Fut>(what: &str, within: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    assert!(
        holds_within(within, check).await,
        "{what}: not within {within:?}"
    );
}

/// Whether `check` comes to hold (polled) within `within`.
async fn holds_within<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

/// Epoch milliseconds of an RFC 3339 time the API wrote.
fn ms(rfc3339: &Value) -> i64 {
    let s = rfc3339.as_str().expect("a time");
    botlink_server::util::parse_rfc3339(s).unwrap_or_else(|| panic!("an RFC 3339 time: {s}"))
}

// --- kill -9 ------------------------------------------------------------------------------

/// Starts posted in the kill test (the issue asks for at least 200 pending): each from a person
/// of their own, half of them carrying a link's parameter (each from a click of its own), half
/// a plain `/start`.
const STARTS: usize = 250;
/// The CRM's external ids of the links the Starts come through.
const CUSTOMERS: usize = 5;
/// How long the CRM, back up, holds its answers before the kill: longer than the test lets
/// the killed server live, so that no answer reaches it.
const ANSWERS_HELD: Duration = Duration::from_secs(10);
/// Waits after each failed delivery attempt: quick at first, then 2 s, for about half a
/// minute (more than the test takes before the kill, so that none is given up).
const RETRY_SCHEDULE: &str = "200ms,500ms,1s,1s,1s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s,2s";
/// The killed server's leases: the work it had claimed is taken up this long after (the
/// default, a minute, would only make the test wait).
const LEASE_MS: &str = "2000";

/// `botlink serve` as a process of its own, on the SQLite file in a directory. Dropped, it is
/// killed.
struct Serve {
    child: Option<Child>,
    api: Api,
    /// Its log lines so far, for a failing test to show.
    log: Arc<Mutex<Vec<String>>>,
}

impl Serve {
    /// Starts it and waits until it listens (its log says where).
    async fn start(dir: &Path) -> Serve {
        let dir = dir.to_owned();
        tokio::task::spawn_blocking(move || Serve::spawn(&dir))
            .await
            .unwrap()
    }

    fn spawn(dir: &Path) -> Serve {
        let db = dir.join("botlink.db");
        let mut child = Command::new(env!("CARGO_BIN_EXE_botlink"))
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BOTLINK_ADMIN_KEY", ADMIN_KEY)
            .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
            .arg(format!("sqlite://{}", db.display()))
            .args(["--secret-key", &"7".repeat(64)])
            .args(["--outbound-allow", "127.0.0.0/8"])
            .args(["--retry-schedule", RETRY_SCHEDULE])
            .args(["--worker-lease-ms", LEASE_MS])
            .args(["--rate-limit", "100000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("botlink serve starts");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (listening, addr) = std::sync::mpsc::channel();
        let lines = log.clone();
        // Read to the end, so that the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("botlink is listening")
                    && let Some(addr) = line.split("addr=").nth(1)
                {
                    let _ = listening.send(addr.split_whitespace().next().unwrap().to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let addr = addr
            .recv_timeout(Duration::from_secs(90))
            .unwrap_or_else(|e| {
                let _ = child.kill();
                panic!("serve did not listen ({e}): {:?}", log.lock().unwrap())
            });
        Serve {
            child: Some(child),
            api: Api::new(format!("http://{addr}")),
            log,
        }
    }

    /// SIGKILL: the process ends at once, whatever it was doing.
    fn kill(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running server");
        child.kill().unwrap();
        child.wait().unwrap()
    }

    /// The log's last lines.
    fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Person `i` of the kill test: their chat, and whether their Start carries a link.
fn person(i: usize) -> (i64, bool) {
    (700_000_000 + i as i64, i.is_multiple_of(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_with_hundreds_pending_a_restarted_server_delivers_every_one() {
    let dir = tempfile::tempdir().unwrap();
    let messenger = FakeMessenger::start().await;
    messenger.add_telegram_bot(TG_TOKEN);
    messenger.set_limits(TG_TOKEN, Limits::NONE);
    // The messenger is reached through a line the test can cut: while it is cut, no greeting
    // can get through, so the test knows how many are pending.
    let line = CutProxy::start(
        messenger
            .base_url()
            .trim_start_matches("http://")
            .parse()
            .unwrap(),
    )
    .await;
    let mut server = Serve::start(dir.path()).await;
    let api = server.api.clone();
    let Shop { bot, crm } = api
        .shop_bot(&format!("http://{}", line.addr()), greet_and_report)
        .await;
    let mut links = Vec::new();
    for c in 0..CUSTOMERS {
        let (st, link) = api
            .post(
                "/api/v1/links",
                json!({"bot_id": bot, "payload": {"external_id": format!("C{c}")}}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{link}");
        links.push(link["short_url"].as_str().unwrap().to_owned());
    }

    // Both fail: the CRM answers 503, the messenger cannot be reached.
    crm.down();
    line.cut();
    // Who says what: person i's name is P<i>; a linked one is customer C<i/2 % 5>.
    let mut expected: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut posts = tokio::task::JoinSet::new();
    for t in 0..8 {
        let (api, bot, links) = (api.clone(), bot.clone(), links.clone());
        posts.spawn(async move {
            let mut said = Vec::new();
            for i in (t..STARTS).step_by(8) {
                let (chat, linked) = person(i);
                let (text, customer) = if linked {
                    let c = (i / 2) % CUSTOMERS;
                    (
                        format!("/start {}", click(&links[c]).await),
                        format!("C{c}"),
                    )
                } else {
                    ("/start".to_owned(), String::new())
                };
                let update = telegram_update(10_000 + i as i64, chat, &format!("P{i}"), &text);
                api.post_update(&bot, &update).await;
                said.push((
                    chat.to_string(),
                    (format!("Hello P{i}! Customer {customer}"), customer),
                ));
            }
            said
        });
    }
    while let Some(said) = posts.join_next().await {
        expected.extend(said.unwrap());
    }
    assert_eq!(expected.len(), STARTS);

    // Every Start processed: its greeting and its delivery stored, the delivery failing.
    eventually(
        "every Start's delivery, pending",
        Duration::from_secs(60),
        || async { api.deliveries("pending").await.len() == STARTS },
    )
    .await;
    let pending_deliveries = STARTS;
    let pending_greetings = STARTS - messenger.messages().len();
    assert_eq!(pending_greetings, STARTS, "nothing gets through the cut");

    // The CRM comes back, slowly: it takes the next deliveries (and answers 200) but holds
    // its answers past the kill. Those deliveries are done for the CRM, not for botlink.
    crm.delay(ANSWERS_HELD);
    crm.up();
    let up_at = Instant::now();
    eventually(
        "deliveries in flight to the CRM",
        Duration::from_secs(10),
        || async { crm.deliveries().iter().any(answered_2xx) },
    )
    .await;
    let status = server.kill();
    // So every delivery was still pending at the kill: none had had a 2xx answer.
    assert!(
        up_at.elapsed() < ANSWERS_HELD,
        "killed before any of the CRM's answers could reach the server"
    );
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL: {status:?}");
    }
    drop(server);

    // Both come back; the messenger refuses a tenth of the next sends as a flood, at first.
    crm.delay(Duration::ZERO);
    line.restore();
    messenger.fail_next(STARTS / 10, Failure::TooManyRequests { retry_after: 1 });
    let restarted_at = Instant::now();
    let in_flight: HashSet<String> = crm
        .deliveries()
        .iter()
        .filter(|r| answered_2xx(r))
        .map(|r| r.webhook_id.clone().expect("a webhook-id"))
        .collect();
    let server = Serve::start(dir.path()).await;
    let api = server.api.clone();

    let all_greeted = holds_within(Duration::from_secs(60), || async {
        let greeted: HashSet<String> = messenger
            .messages()
            .into_iter()
            .map(|m| m.chat_id)
            .collect();
        greeted.len() == STARTS
    })
    .await;
    assert!(
        all_greeted,
        "every greeting, within a minute: {}",
        server.log_tail()
    );
    let all_delivered = holds_within(Duration::from_secs(60), || async {
        api.deliveries("delivered").await.len() == STARTS
    })
    .await;
    assert!(
        all_delivered,
        "every delivery, within a minute: {}",
        server.log_tail()
    );
    let took = restarted_at.elapsed();
    assert!(
        api.deliveries("pending").await.is_empty() && api.deliveries("failed").await.is_empty(),
        "{}",
        server.log_tail()
    );

    // Every greeting reached its own person, in their words; count those sent twice.
    let mut greetings: HashMap<String, usize> = HashMap::new();
    for m in messenger.messages() {
        let (text, _) = &expected[&m.chat_id];
        assert_eq!(&m.text, text, "the greeting of chat {}", m.chat_id);
        *greetings.entry(m.chat_id).or_default() += 1;
    }
    assert_eq!(greetings.len(), STARTS);
    let greeting_duplicates: usize = greetings.values().map(|n| n - 1).sum();

    // Every delivery reached the CRM signed, with its chat's data, one webhook-id a chat
    // whatever the attempt, and that id is the delivery's.
    let received = crm.deliveries();
    let mut ids_of_chat: HashMap<String, HashSet<String>> = HashMap::new();
    let mut delivered_after_restart: HashMap<String, usize> = HashMap::new();
    let mut answered_200: HashMap<String, usize> = HashMap::new();
    for r in &received {
        assert!(r.signature_ok, "{:?}", r.signature_error);
        let chat = chat_of(r);
        let (_, customer) = &expected[&chat];
        assert_eq!(
            r.json.as_ref().unwrap(),
            &json!({"customer_id": customer, "chat_id": chat, "channel": "telegram"})
        );
        let id = r.webhook_id.clone().expect("a webhook-id");
        ids_of_chat.entry(chat).or_default().insert(id.clone());
        if answered_2xx(r) {
            *answered_200.entry(id.clone()).or_default() += 1;
            if r.at > restarted_at {
                *delivered_after_restart.entry(id).or_default() += 1;
            }
        }
    }
    assert_eq!(
        ids_of_chat.len(),
        STARTS,
        "every chat's send_me reached the CRM"
    );
    for (chat, ids) in &ids_of_chat {
        assert_eq!(
            ids.len(),
            1,
            "chat {chat}: one webhook-id on every attempt: {ids:?}"
        );
    }
    for d in api.deliveries("delivered").await {
        let chat = d["data"]["chat_id"].as_str().unwrap();
        let id = d["id"].as_str().unwrap();
        assert!(
            ids_of_chat[chat].contains(id),
            "the CRM got delivery {id} under its id"
        );
        assert!(
            delivered_after_restart.contains_key(id),
            "delivery {id}: the 200 the server saw came after the restart"
        );
    }
    // The deliveries whose 200 the kill cut off were made again, with the same webhook-id.
    assert!(!in_flight.is_empty());
    for id in &in_flight {
        assert!(
            answered_200[id] >= 2,
            "delivery {id}, answered when the server was killed, is made again"
        );
    }
    let delivery_duplicates: usize = answered_200.values().map(|n| n - 1).sum();
    println!(
        "kill -9 with {pending_deliveries} deliveries pending ({} of them in flight, answered \
         200 by the CRM too late) and {pending_greetings} greetings pending; after the restart, \
         within {took:?}: {STARTS} greetings sent ({greeting_duplicates} sent again), \
         {STARTS} deliveries delivered ({delivery_duplicates} more than once, each under its \
         one webhook-id), {} CRM requests in all",
        in_flight.len(),
        received.len()
    );
}

// --- the CRM down, then up ----------------------------------------------------------------

/// A server that reaches the fakes on loopback and retries deliveries on `schedule`.
async fn server(schedule: &str) -> TestServer {
    let schedule = botlink_server::app::config::parse_retry_schedule(schedule).unwrap();
    TestServer::start_with(|c| {
        c.outbound_allow = "127.0.0.0/8".parse().unwrap();
        c.retry_schedule = schedule;
    })
    .await
}

/// The requests the CRM received for `chat`, in order.
fn received_for(crm: &FakeCrm, chat: &str) -> Vec<Received> {
    crm.deliveries()
        .into_iter()
        .filter(|r| chat_of(r) == chat)
        .collect()
}

/// The delivery of `chat`'s Start, with its attempt log, once there is one.
async fn delivery_of(api: &Api, chat: &str) -> Option<Value> {
    let (st, page) = api.get("/api/v1/deliveries?limit=500").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    let d = page["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["data"]["chat_id"] == chat)?
        .clone();
    Some(api.delivery(d["id"].as_str().unwrap()).await)
}

/// Whether `chat`'s delivery has `field` at `value`.
async fn delivery_has(api: &Api, chat: &str, field: &str, value: Value) -> bool {
    delivery_of(api, chat)
        .await
        .is_some_and(|d| d[field] == value)
}

/// The attempts' HTTP statuses and start times (epoch ms), as the API lists them.
fn attempt_log(d: &Value) -> Vec<(Option<u64>, i64)> {
    d["attempt_log"]
        .as_array()
        .expect("an attempt log")
        .iter()
        .map(|a| (a["status"].as_u64(), ms(&a["at"])))
        .collect()
}

/// The retry schedule (ms) of [`a_crm_down_then_up_gets_every_delivery_in_the_order_they_fell_due`].
const DUE_SCHEDULE: [u64; 4] = [400, 1500, 4000, 10_000];

#[tokio::test]
async fn a_crm_down_then_up_gets_every_delivery_in_the_order_they_fell_due() {
    let schedule: Vec<String> = DUE_SCHEDULE.iter().map(|ms| format!("{ms}ms")).collect();
    let s = server(&schedule.join(",")).await;
    let api = Api::new(s.base_url.clone());
    let messenger = FakeMessenger::start().await;
    let Shop { bot, crm } = api.shop_bot(&messenger.base_url(), report).await;
    crm.down();

    // Three groups of Starts, made one group after the other: the first group's deliveries
    // fail three times (their next attempt 4 s after the third), the second's twice (1.5 s),
    // the third's once (400 ms). So when the CRM is back they fall due in the reverse of the
    // order they were made in, each group a second or more apart.
    const GROUP: usize = 4;
    let chat = |g: usize, j: usize| (900_000 + 10 * g + j) as i64;
    for (g, failures) in [(0, 3), (1, 2), (2, 1)] {
        if g == 2 {
            // The CRM is up again, but for the first attempts of this group: only they can
            // be due now.
            crm.up();
            crm.fail_next(GROUP, 503);
        }
        for j in 0..GROUP {
            let update = telegram_update((100 * g + j) as i64, chat(g, j), "Ann", "/start");
            api.post_update(&bot, &update).await;
        }
        eventually(
            &format!("group {g}: {failures} failed attempts each"),
            Duration::from_secs(20),
            || async {
                (0..GROUP).all(|j| received_for(&crm, &chat(g, j).to_string()).len() >= failures)
            },
        )
        .await;
    }
    eventually(
        "every delivery answered 200",
        Duration::from_secs(30),
        || async { crm.deliveries().iter().filter(|r| answered_2xx(r)).count() == 3 * GROUP },
    )
    .await;
    // A worker records its batch's attempts together, once all of them have been answered.
    eventually(
        "every delivery recorded as delivered",
        Duration::from_secs(10),
        || async {
            let mut all = true;
            for g in 0..3 {
                for j in 0..GROUP {
                    all &=
                        delivery_has(&api, &chat(g, j).to_string(), "status", "delivered".into())
                            .await;
                }
            }
            all
        },
    )
    .await;

    // Arrival: the third group, then the second, then the first.
    let arrived: Vec<usize> = crm
        .deliveries()
        .iter()
        .filter(|r| answered_2xx(r))
        .map(|r| (chat_of(r).parse::<i64>().unwrap() - 900_000) as usize / 10)
        .collect();
    let due_order: Vec<usize> = [2, 1, 0].into_iter().flat_map(|g| [g; GROUP]).collect();
    assert_eq!(
        arrived, due_order,
        "deliveries arrive in the order they fell due"
    );

    for (g, failures) in [(0, 3), (1, 2), (2, 1)] {
        for j in 0..GROUP {
            let chat = chat(g, j).to_string();
            let got = received_for(&crm, &chat);
            let d = delivery_of(&api, &chat).await.unwrap();
            assert_eq!(d["status"], "delivered", "{d}");
            // Each attempt recorded, as the CRM answered it: 503s, then 200.
            let log = attempt_log(&d);
            let mut statuses = vec![Some(503); failures];
            statuses.push(Some(200));
            assert_eq!(
                log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                statuses,
                "{d}"
            );
            assert_eq!(d["attempts"], failures + 1, "{d}");
            assert_eq!(
                got.iter().map(|r| r.answered).collect::<Vec<_>>(),
                statuses
                    .iter()
                    .map(|s| s.unwrap() as u16)
                    .collect::<Vec<_>>()
            );
            // Each retry not before its wait on the schedule.
            for (k, pair) in log.windows(2).enumerate() {
                assert!(
                    pair[1].1 - pair[0].1 >= DUE_SCHEDULE[k] as i64,
                    "attempt {} of {chat} came {} ms after the one before, before its wait: {d}",
                    k + 2,
                    pair[1].1 - pair[0].1
                );
            }
            // One webhook-id on every attempt: the delivery's id.
            for r in &got {
                assert!(r.signature_ok, "{:?}", r.signature_error);
                assert_eq!(r.webhook_id.as_deref(), d["id"].as_str());
            }
        }
    }
    s.stop().await;
}

// --- Retry-After and 410 ------------------------------------------------------------------

#[tokio::test]
async fn a_retry_after_from_the_crm_is_waited_for() {
    let s = server("200ms,200ms,200ms").await;
    let api = Api::new(s.base_url.clone());
    let messenger = FakeMessenger::start().await;
    let Shop { bot, crm } = api.shop_bot(&messenger.base_url(), report).await;
    // One 503 asking for 2 s, far more than the schedule's 200 ms.
    crm.retry_after(2);
    crm.fail_next(1, 503);
    api.post_update(&bot, &telegram_update(1, 42, "Ann", "/start"))
        .await;
    eventually(
        "the first attempt recorded",
        Duration::from_secs(10),
        || async { delivery_has(&api, "42", "attempts", json!(1)).await },
    )
    .await;
    let d = delivery_of(&api, "42").await.unwrap();
    assert_eq!(d["status"], "pending", "{d}");
    let first = attempt_log(&d)[0];
    assert_eq!(first.0, Some(503));
    assert!(
        ms(&d["next_attempt_at"]) - first.1 >= 2000,
        "the next attempt is set at least 2 s on: {d}"
    );

    eventually("delivered", Duration::from_secs(10), || async {
        delivery_has(&api, "42", "status", json!("delivered")).await
    })
    .await;
    let d = delivery_of(&api, "42").await.unwrap();
    let log = attempt_log(&d);
    assert_eq!(
        log.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [Some(503), Some(200)]
    );
    assert!(log[1].1 - log[0].1 >= 2000, "{d}");
    let got = received_for(&crm, "42");
    assert_eq!(got.len(), 2);
    assert!(
        got[1].at.duration_since(got[0].at) >= Duration::from_secs(2),
        "the CRM heard again only after the 2 s it asked for: {:?}",
        got[1].at.duration_since(got[0].at)
    );
    assert_eq!(got[0].webhook_id, got[1].webhook_id);
    s.stop().await;
}

#[tokio::test]
async fn a_410_from_the_crm_stops_the_retries() {
    let s = server("400ms,400ms,400ms").await;
    let api = Api::new(s.base_url.clone());
    let messenger = FakeMessenger::start().await;
    let Shop { bot, crm } = api.shop_bot(&messenger.base_url(), report).await;
    crm.gone();
    api.post_update(&bot, &telegram_update(1, 42, "Ann", "/start"))
        .await;
    eventually("given up", Duration::from_secs(10), || async {
        delivery_has(&api, "42", "status", json!("failed")).await
    })
    .await;

    // Another delivery, failing once: its retry comes 400 ms after its first attempt, so
    // after the moment the first delivery's retry would have come, had it had one.
    crm.up();
    crm.fail_next(1, 503);
    api.post_update(&bot, &telegram_update(2, 43, "Bob", "/start"))
        .await;
    eventually("the other delivered", Duration::from_secs(10), || async {
        delivery_has(&api, "43", "status", json!("delivered")).await
    })
    .await;
    assert_eq!(
        attempt_log(&delivery_of(&api, "43").await.unwrap())
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>(),
        [Some(503), Some(200)]
    );

    let d = delivery_of(&api, "42").await.unwrap();
    assert_eq!(d["status"], "failed", "{d}");
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(d["next_attempt_at"], Value::Null, "{d}");
    assert!(
        d["last_error"].as_str().unwrap_or_default().contains("410"),
        "{d}"
    );
    assert_eq!(
        attempt_log(&d).iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [Some(410)]
    );
    assert_eq!(
        received_for(&crm, "42").len(),
        1,
        "the CRM heard of it once"
    );
    s.stop().await;
}
