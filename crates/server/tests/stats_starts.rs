//! Statistics of Starts, on SQLite and PostgreSQL. Over real HTTP: clicks on short links, the
//! Starts Telegram posts after them (a FakeMessenger takes the greetings), and what the link,
//! entry point and bot statistics then say: `starts`, `new_contacts`, `subscribed`,
//! `conversion`, and Starts in the breakdowns and in a range of days. In the store: a Start
//! is counted once however often its commit is repeated, and Starts recorded before the
//! counts existed (migration 7) are counted by it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use botlink_server::store::{
    self, BotId, ClickStore, ContactId, FlowCommit, NewBot, StartId, StartRecord, StatsRange,
    StatsScope, Store, Utm,
};
use botlink_server::util::{day_of, format_day, now_ms};
use botlink_testkit::fakes::FakeMessenger;
use botlink_testkit::fakes::sign::telegram_headers;
use botlink_testkit::{ADMIN_KEY, Backend, TestServer, client, on_both_backends};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

const TG_TOKEN: &str = "123456:AAE-shop-bot-token";
const TG_SECRET: &str = "tg-webhook-secret-42";
const WAIT: Duration = Duration::from_secs(10);

/// The bot, its links and the people of the story (see [`story`]).
struct World {
    s: TestServer,
    messenger: FakeMessenger,
    bot: String,
    /// Entry point `promo`: 3 clicks, Started by Ann and Bob.
    a: String,
    /// No entry point: 2 clicks, Started by Ann again and by Cid, who then blocks the bot.
    b: String,
    /// Entry point `promo`: 1 click, no Start.
    c: String,
}

async fn server(b: Backend) -> Option<TestServer> {
    TestServer::start_on(b, |c| {
        c.outbound_allow = "127.0.0.0/8".parse().unwrap();
    })
    .await
}

/// A Telegram update from person `who` (their user id is also their chat's).
fn update(update_id: i64, who: i64, name: &str, text: &str) -> Value {
    json!({
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": who, "is_bot": false, "first_name": name},
            "chat": {"id": who, "first_name": name, "type": "private"},
            "date": 1763700000,
            "text": text,
            "entities": [{"offset": 0, "length": 6, "type": "bot_command"}]
        }
    })
}

/// Person `who` blocks the bot.
fn blocks(update_id: i64, who: i64) -> Value {
    json!({
        "update_id": update_id,
        "my_chat_member": {
            "chat": {"id": who, "type": "private"},
            "from": {"id": who, "is_bot": false, "first_name": "Cid"},
            "date": 1763700100,
            "old_chat_member": {"status": "member", "user": {"id": 1, "is_bot": true, "first_name": "Shop"}},
            "new_chat_member": {"status": "kicked", "until_date": 0, "user": {"id": 1, "is_bot": true, "first_name": "Shop"}}
        }
    })
}

async fn post_update(w: &World, body: &Value) {
    let st = client()
        .post(w.s.url(&format!("/webhooks/telegram/{}", w.bot)))
        .headers(telegram_headers(TG_SECRET))
        .json(body)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(st, StatusCode::OK, "{body}");
}

/// Makes a link; returns its id and short URL.
async fn link(s: &TestServer, body: Value) -> (String, String) {
    let (st, link) = s.post("/api/v1/links", ADMIN_KEY, body).await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    (
        link["id"].as_str().unwrap().to_owned(),
        link["short_url"].as_str().unwrap().to_owned(),
    )
}

/// Clicks a short link; returns the Start parameter it hands to Telegram (`l_<code>_<click>`).
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

async fn stats(s: &TestServer, path: &str) -> Value {
    let (st, stats) = s.get(path, ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    stats
}

/// Waits until the link's stats count `n` clicks (they are written off the request path).
async fn clicks_reach(s: &TestServer, link: &str, n: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = stats(s, &format!("/api/v1/links/{link}/stats")).await["clicks"]
            .as_i64()
            .unwrap();
        if got == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "clicks stuck at {got}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a user reads first: (clicks, starts, new contacts, subscribed, conversion).
fn totals(s: &Value) -> (i64, i64, i64, i64, Option<f64>) {
    (
        s["clicks"].as_i64().unwrap(),
        s["starts"].as_i64().unwrap(),
        s["new_contacts"].as_i64().unwrap(),
        s["subscribed"].as_i64().unwrap(),
        s["conversion"].as_f64(),
    )
}

/// A bucket as (key, clicks, starts).
fn buckets(s: &Value, dim: &str) -> Vec<(String, i64, i64)> {
    s[dim]
        .as_array()
        .unwrap_or_else(|| panic!("{dim} in {s}"))
        .iter()
        .map(|b| {
            (
                b["key"].as_str().unwrap().to_owned(),
                b["clicks"].as_i64().unwrap(),
                b["starts"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The story: a Telegram bot greeting each Start, an entry point `promo` (UTM source `qr`),
/// links A (`promo`, source `site`), B (source `ads`) and C (`promo`), six clicks, and six
/// Starts from five people: Ann through A then through B, Bob through A, Cid through B (then
/// he blocks the bot), Dee with `n__promo` (an entry point, no link), Eve with a bare
/// `/start`.
async fn story(backend: Backend) -> Option<World> {
    let messenger = FakeMessenger::start().await;
    messenger.add_telegram_bot(TG_TOKEN);
    let s = server(backend).await?;
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
    let bot = bot["id"].as_str().unwrap().to_owned();
    let (st, saved) = s
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/bots/{bot}/scenario"),
            Some(ADMIN_KEY),
            Some(json!({"start": "welcome", "nodes": {"welcome": [{"message": "Hello {{user_name}}"}]}})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{saved}");
    let (st, ep) = s
        .post(
            &format!("/api/v1/bots/{bot}/entry_points"),
            ADMIN_KEY,
            json!({"key": "promo", "utm": {"source": "qr"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");

    let (a, a_url) = link(
        &s,
        json!({"bot_id": bot, "entry_point": "promo", "utm": {"source": "site"}}),
    )
    .await;
    let (b, b_url) = link(&s, json!({"bot_id": bot, "utm": {"source": "ads"}})).await;
    let (c, c_url) = link(&s, json!({"bot_id": bot, "entry_point": "promo"})).await;

    // Before any click or Start: nothing, and no conversion to speak of.
    let before = stats(&s, &format!("/api/v1/links/{a}/stats")).await;
    assert_eq!(totals(&before), (0, 0, 0, 0, None), "{before}");

    let a_params = [
        click(&a_url).await,
        click(&a_url).await,
        click(&a_url).await,
    ];
    let b_params = [click(&b_url).await, click(&b_url).await];
    click(&c_url).await;
    for (id, n) in [(&a, 3), (&b, 2), (&c, 1)] {
        clicks_reach(&s, id, n).await;
    }

    let w = World {
        s,
        messenger,
        bot,
        a,
        b,
        c,
    };
    let (ann, bob, cid, dee, eve) = (1001, 1002, 1003, 1004, 1005);
    let starts = [
        (ann, "Ann", format!("/start {}", a_params[0])),
        (bob, "Bob", format!("/start {}", a_params[1])),
        (cid, "Cid", format!("/start {}", b_params[0])),
        (dee, "Dee", "/start n__promo".to_owned()),
        (eve, "Eve", "/start".to_owned()),
        // Ann again, through B: her first touch stays A.
        (ann, "Ann", format!("/start {}", b_params[1])),
    ];
    for (i, (who, name, text)) in starts.iter().enumerate() {
        post_update(&w, &update(i as i64 + 1, *who, name, text)).await;
    }
    // Each Start greets once, and the greeting is written with the Start: all six are
    // recorded once the messenger has taken six messages.
    let sent = w.messenger.wait_for_messages(6, WAIT).await;
    assert_eq!(sent.len(), 6, "{sent:?}");

    post_update(&w, &blocks(7, cid)).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (st, page) =
            w.s.get(
                &format!("/api/v1/bots/{}/contacts?chat_id={cid}", w.bot),
                ADMIN_KEY,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        if page["contacts"][0]["subscribed"] == false {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Cid's block not recorded: {page}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Some(w)
}

async fn starts_and_contacts_per_link_entry_point_and_bot(backend: Backend) {
    let Some(w) = story(backend).await else {
        return;
    };
    let (s, bot) = (&w.s, &w.bot);
    let link_stats = |id: &str| format!("/api/v1/links/{id}/stats");

    // A: 3 clicks, Ann's and Bob's Starts, both new through A and subscribed.
    let a = stats(s, &link_stats(&w.a)).await;
    assert_eq!(totals(&a), (3, 2, 2, 2, Some(2.0 / 3.0)), "{a}");
    let today = format_day(day_of(now_ms()));
    assert_eq!(buckets(&a, "by_day"), [(today.clone(), 3, 2)], "{a}");
    assert_eq!(buckets(&a, "by_channel"), [("telegram".into(), 3, 2)]);
    assert_eq!(buckets(&a, "by_utm_source"), [("site".into(), 3, 2)]);

    // B: 2 clicks, Cid's Start and Ann's second; only Cid is new through B, and he blocked
    // the bot since.
    let b = stats(s, &link_stats(&w.b)).await;
    assert_eq!(totals(&b), (2, 2, 1, 0, Some(1.0)), "{b}");

    // C: a click, no Start.
    let c = stats(s, &link_stats(&w.c)).await;
    assert_eq!(totals(&c), (1, 0, 0, 0, Some(0.0)), "{c}");

    // promo: the clicks of A and C; A's Starts and Dee's `n__promo`; new contacts through
    // its links only (Dee came through no link).
    let ep = stats(s, &format!("/api/v1/bots/{bot}/entry_points/promo/stats")).await;
    assert_eq!(totals(&ep), (4, 3, 2, 2, Some(0.75)), "{ep}");
    assert_eq!(
        buckets(&ep, "by_utm_source"),
        [("site".into(), 3, 2), ("qr".into(), 1, 1),],
        "C carries the entry point's source; so does Dee's Start"
    );

    // The bot: every click and every Start (Eve's, attributed to nothing, too), and every
    // contact: five people, Cid unsubscribed.
    let all = stats(s, &format!("/api/v1/bots/{bot}/stats")).await;
    assert_eq!(totals(&all), (6, 6, 5, 4, Some(1.0)), "{all}");
    assert_eq!(buckets(&all, "by_day"), [(today, 6, 6)]);
    assert_eq!(buckets(&all, "by_channel"), [("telegram".into(), 6, 6)]);
    assert_eq!(
        buckets(&all, "by_utm_source"),
        [
            ("site".into(), 3, 2),
            ("ads".into(), 2, 2),
            ("qr".into(), 1, 1),
            ("(none)".into(), 0, 1),
        ],
        "{all}"
    );
    // The links ranked by clicks are as before.
    assert_eq!(all["links"][0]["link_id"], w.a.as_str());
    assert_eq!(all["links"][0]["clicks"], 3);
    w.s.stop().await;
}

async fn a_range_counts_the_starts_and_contacts_of_its_days(backend: Backend) {
    let Some(w) = story(backend).await else {
        return;
    };
    let day = day_of(now_ms());
    let (yesterday, today, tomorrow) = (format_day(day - 1), format_day(day), format_day(day + 1));
    let paths = [
        format!("/api/v1/links/{}/stats", w.a),
        format!("/api/v1/bots/{}/entry_points/promo/stats", w.bot),
        format!("/api/v1/bots/{}/stats", w.bot),
    ];
    let expected = [
        (3, 2, 2, 2, Some(2.0 / 3.0)),
        (4, 3, 2, 2, Some(0.75)),
        (6, 6, 5, 4, Some(1.0)),
    ];
    for (path, expected) in paths.iter().zip(expected) {
        let only_today = stats(&w.s, &format!("{path}?from={today}&to={today}")).await;
        assert_eq!(totals(&only_today), expected, "{path}: {only_today}");
        let from_today = stats(&w.s, &format!("{path}?from={today}")).await;
        assert_eq!(totals(&from_today), expected, "{path}: {from_today}");
        for range in [format!("from={tomorrow}"), format!("to={yesterday}")] {
            let none = stats(&w.s, &format!("{path}?{range}")).await;
            assert_eq!(totals(&none), (0, 0, 0, 0, None), "{path}?{range}: {none}");
            assert_eq!(none["by_day"], json!([]), "{path}?{range}: {none}");
        }
    }
    // Every bucket of the bot's stats lists the Starts of its value.
    let all = stats(&w.s, &paths[2]).await;
    for dim in [
        "by_channel",
        "by_day",
        "by_utm_source",
        "by_utm_medium",
        "by_utm_campaign",
    ] {
        let sum: i64 = buckets(&all, dim).iter().map(|b| b.2).sum();
        assert_eq!(sum, 6, "{dim}: {all}");
    }
    w.s.stop().await;
}

// ---------------------------------------------------------------------------------------
// The store: counted once, and across the upgrade

/// 2024-05-02T00:00:00Z.
const T0: i64 = 1_714_608_000_000;
const DAY: i64 = 86_400_000;

/// A store migrated through `version`, and the URL a test's own connection takes.
async fn store_through(b: Backend, version: i64) -> Option<(Arc<Store>, String, TempDir)> {
    let dir = TempDir::new().unwrap();
    let url = match b {
        Backend::Sqlite => format!("sqlite:{}", dir.path().join("botlink.db").display()),
        Backend::Postgres => botlink_testkit::postgres_schema().await?.url,
    };
    let store = store::connect(&url).await.expect("connect the store");
    store.migrate_through(version).await.expect("migrate");
    Some((Arc::new(store), url, dir))
}

/// Runs SQL of the test's own (rows as an older botlink wrote them).
async fn execute(url: &str, sql: String) {
    let sql = AssertSqlSafe(sql);
    if url.starts_with("sqlite:") {
        let mut c = SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    } else {
        let mut c = PgConnection::connect(url).await.unwrap();
        sqlx::query(sql).execute(&mut c).await.unwrap();
    }
}

/// A stats bucket as (key, clicks, starts).
fn store_buckets(b: &[store::Bucket]) -> Vec<(&str, i64, i64)> {
    b.iter()
        .map(|b| (b.key.as_str(), b.clicks, b.starts))
        .collect()
}

async fn starts_are_counted_once_and_across_the_upgrade(b: Backend) {
    let Some((store, url, _dir)) = store_through(b, 6).await else {
        return;
    };
    let s = store.stores();
    let ws = s.workspaces.ensure_workspace("shop", T0).await.unwrap().id;
    let bot = s
        .bots
        .create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "shop bot".to_owned(),
                channels: vec![],
            },
            T0,
        )
        .await
        .unwrap()
        .id;
    let link = s
        .links
        .create_links(
            &ws,
            vec![botlink_testkit::telegram_link(&bot, "sPrInG01")],
            T0,
        )
        .await
        .unwrap()
        .remove(0)
        .id;

    // Before migration 7: Ann started the bot through the link on 2024-05-02 (UTM tags as
    // the Start recorded them), Bob with no parameter. As botlink wrote them then.
    let spring = serde_json::to_string(&Utm {
        source: Some("ads".to_owned()),
        campaign: Some("spring".to_owned()),
        ..Utm::default()
    })
    .unwrap();
    let ann = ContactId::new();
    let bob = ContactId::new();
    for (contact, chat, first_link) in [
        (&ann, "100", format!("'{link}'")),
        (&bob, "200", "NULL".to_owned()),
    ] {
        execute(
            &url,
            format!(
                "INSERT INTO contacts (id, workspace_id, bot_id, channel, chat_id, variables, \
                 fields, subscribed, first_link_id, last_link_id, utm, created_at, updated_at, \
                 last_seen_at) VALUES ('{contact}', '{ws}', '{bot}', 'telegram', '{chat}', '{{}}', \
                 '{{}}', TRUE, {first_link}, {first_link}, '{{}}', {T0}, {T0}, {T0})"
            ),
        )
        .await;
    }
    for (contact, link_id, utm) in [
        (&ann, format!("'{link}'"), spring.clone()),
        (
            &bob,
            "NULL".to_owned(),
            serde_json::to_string(&Utm::default()).unwrap(),
        ),
    ] {
        execute(
            &url,
            format!(
                "INSERT INTO starts (id, workspace_id, bot_id, contact_id, link_id, utm, node, at) \
                 VALUES ('{}', '{ws}', '{bot}', '{contact}', {link_id}, '{utm}', 'welcome', {})",
                StartId::new(),
                T0 + 1_000
            ),
        )
        .await;
    }

    store.migrate().await.expect("migrate through 7");
    let stats = |scope| {
        let store = store.clone();
        let ws = ws.clone();
        async move { store.stats(&ws, scope, StatsRange::ALL).await.unwrap() }
    };
    let l = stats(StatsScope::Link(link.clone())).await;
    assert_eq!(
        (l.clicks, l.starts, l.new_contacts, l.subscribed),
        (0, 1, 1, 1)
    );
    assert_eq!(l.conversion(), None, "no clicks: no conversion");
    assert_eq!(store_buckets(&l.by_day), [("2024-05-02", 0, 1)]);
    assert_eq!(store_buckets(&l.by_channel), [("telegram", 0, 1)]);
    assert_eq!(store_buckets(&l.by_utm_source), [("ads", 0, 1)]);
    assert_eq!(store_buckets(&l.by_utm_medium), [("(none)", 0, 1)]);
    assert_eq!(store_buckets(&l.by_utm_campaign), [("spring", 0, 1)]);
    let all = stats(StatsScope::Bot(bot.clone())).await;
    assert_eq!((all.starts, all.new_contacts, all.subscribed), (2, 2, 2));
    assert_eq!(
        store_buckets(&all.by_utm_source),
        [("(none)", 0, 1), ("ads", 0, 1)]
    );

    // A day later Ann starts the bot through the link again; the worker's commit is
    // repeated (a lost claim): one Start, counted once.
    let again = FlowCommit {
        contact_id: Some(ann.clone()),
        start: Some(StartRecord {
            id: StartId::new(),
            link_id: Some(link.clone()),
            click_id: None,
            entry_point_id: None,
            utm: Utm::default(),
            param: Some("l_sPrInG01".to_owned()),
            node: "welcome".to_owned(),
            unattributed: None,
            at: T0 + DAY,
        }),
        ..FlowCommit::default()
    };
    for _ in 0..2 {
        s.flow.commit(&bot, again.clone(), T0 + DAY).await.unwrap();
    }
    let l = stats(StatsScope::Link(link.clone())).await;
    assert_eq!(
        (l.starts, l.new_contacts),
        (2, 1),
        "the repeated commit adds one Start; Ann is new once"
    );
    assert_eq!(
        store_buckets(&l.by_day),
        [("2024-05-02", 0, 1), ("2024-05-03", 0, 1)]
    );
    let second_day = store
        .stats(
            &ws,
            StatsScope::Link(link.clone()),
            StatsRange::days(19_846, 19_846),
        )
        .await
        .unwrap();
    assert_eq!((second_day.starts, second_day.new_contacts), (1, 0));
    assert_eq!(stats(StatsScope::Bot(bot.clone())).await.starts, 3);
    store.close().await;
}

on_both_backends!(
    starts_and_contacts_per_link_entry_point_and_bot,
    a_range_counts_the_starts_and_contacts_of_its_days,
    starts_are_counted_once_and_across_the_upgrade,
);
