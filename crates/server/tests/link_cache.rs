//! The link cache over real HTTP. On SQLite: a bot's deletion and a change to its channels
//! reach its short links at once (they were just clicked, so cached), and a web chat link
//! leads to a page rather than a dead end. On PostgreSQL (this file's own process, so that the
//! metric it reads is its instance's alone): cached links go on redirecting while the database
//! is away.
//!
//! PostgreSQL comes from `BOTLINK_TEST_POSTGRES_URL` (default the machine's
//! `postgres://postgres@127.0.0.1:5432/test`), in a schema of its own dropped at the end.
//! Without a reachable PostgreSQL the test says it skipped; with `CI=true` it fails.

use std::time::{Duration, Instant};

use botlink_testkit::cut_proxy::CutProxy;
use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;

const BROWSER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

/// What a browser's GET of `path` answers: the status, the `Location` and the body.
async fn open(s: &TestServer, path: &str) -> (StatusCode, String, String) {
    let resp = s
        .client
        .get(s.url(path))
        .header("user-agent", BROWSER)
        .send()
        .await
        .expect("the server answers");
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, location, resp.text().await.expect("a body"))
}

async fn make_bot(s: &TestServer, channels: Value) -> String {
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Shop", "channels": channels}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    bot["id"].as_str().unwrap().to_owned()
}

async fn make_link(s: &TestServer, body: Value) -> Value {
    let (st, link) = s.post("/api/v1/links", ADMIN_KEY, body).await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    link
}

#[tokio::test]
async fn a_deleted_bots_links_end_at_once() {
    let s = TestServer::start().await;
    let bot = make_bot(
        &s,
        json!({"telegram": {"username": "shop_bot", "token": "1:x"}}),
    )
    .await;
    let link = make_link(&s, json!({"bot_id": bot, "slug": "gone-soon"})).await;
    let code = link["code"].as_str().unwrap();
    let paths = [
        format!("/l/{code}"),
        "/l/gone-soon".to_owned(),
        format!("/l/{code}/telegram"),
    ];
    let qr = ["/l/gone-soon/qr.svg", "/l/gone-soon/qr.png"];
    // Clicked: now in the link cache.
    for p in &paths {
        assert_eq!(open(&s, p).await.0, StatusCode::FOUND, "{p}");
    }
    for p in qr {
        assert_eq!(open(&s, p).await.0, StatusCode::OK, "{p}");
    }

    let (st, body) = s.delete(&format!("/api/v1/bots/{bot}"), ADMIN_KEY).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    for p in paths.iter().map(String::as_str).chain(qr) {
        let (st, location, page) = open(&s, p).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{p} still goes to {location:?}");
        assert!(page.contains("Link not found"), "{p}: {page}");
    }
}

#[tokio::test]
async fn a_bots_channel_change_reaches_its_links_at_once() {
    let s = TestServer::start().await;
    let bot = make_bot(
        &s,
        json!({
            "telegram": {"username": "shop_bot", "token": "1:x"},
            "viber": {"uri": "shopbot", "token": "v"},
        }),
    )
    .await;
    let both = make_link(&s, json!({"bot_id": bot, "slug": "both-ways"})).await;
    let telegram = make_link(
        &s,
        json!({"bot_id": bot, "channels": ["telegram"], "slug": "tg-only"}),
    )
    .await;
    let viber = make_link(
        &s,
        json!({"bot_id": bot, "channels": ["viber"], "slug": "viber-only", "payload": {"text": "Hi"}}),
    )
    .await;
    let both_code = both["code"].as_str().unwrap();
    let viber_code = viber["code"].as_str().unwrap();

    // Clicked: now in the link cache.
    let (st, to, _) = open(&s, "/l/both-ways/telegram").await;
    assert_eq!(st, StatusCode::FOUND);
    assert!(to.starts_with("https://t.me/shop_bot?start="), "{to}");
    let (st, page) = (
        open(&s, "/l/both-ways").await.0,
        open(&s, "/l/both-ways").await.2,
    );
    assert_eq!(st, StatusCode::OK, "the chooser");
    assert!(
        page.contains("/telegram\"") && page.contains("/viber\""),
        "{page}"
    );
    for p in ["/l/both-ways/viber", "/l/viber-only", "/l/tg-only"] {
        assert_eq!(open(&s, p).await.0, StatusCode::FOUND, "{p}");
    }
    assert!(
        open(&s, "/l/viber-only")
            .await
            .1
            .contains("chatURI=shopbot&")
    );

    // Telegram removed, Viber moved to another public account.
    let (st, body) = s
        .patch(
            &format!("/api/v1/bots/{bot}"),
            ADMIN_KEY,
            json!({"channels": {"telegram": null, "viber": {"uri": "newshop"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");

    // Telegram is offered and followed nowhere any more.
    let (st, to, _) = open(&s, "/l/both-ways/telegram").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "still goes to {to:?}");
    let (st, to, _) = open(&s, &format!("/l/{both_code}")).await;
    assert_eq!(st, StatusCode::FOUND, "one channel left: straight to it");
    assert!(to.starts_with("viber://pa?chatURI=newshop&"), "{to}");
    // Viber goes to the new account, by slug and by code, the visible text kept.
    for p in [
        "/l/both-ways/viber".to_owned(),
        "/l/viber-only".to_owned(),
        format!("/l/{viber_code}/viber"),
    ] {
        let (st, to, _) = open(&s, &p).await;
        assert_eq!(st, StatusCode::FOUND, "{p}");
        assert!(to.starts_with("viber://pa?chatURI=newshop&"), "{p}: {to}");
    }
    assert!(open(&s, "/l/viber-only").await.1.ends_with("&text=Hi"));
    // A link left with no channel has ended, and says why.
    let (st, to, page) = open(&s, "/l/tg-only").await;
    assert_eq!(st, StatusCode::GONE, "still goes to {to:?}");
    assert!(page.contains("no longer"), "{page}");

    // The API shows the links as they now are.
    let id = both["id"].as_str().unwrap();
    let (_, now) = s.get(&format!("/api/v1/links/{id}"), ADMIN_KEY).await;
    let channels = now["channels"].as_array().unwrap();
    assert_eq!(channels.len(), 1, "{now}");
    assert_eq!(channels[0]["channel"], "viber");
    assert!(
        channels[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("viber://pa?chatURI=newshop&"),
        "{now}"
    );
    let id = telegram["id"].as_str().unwrap();
    let (_, now) = s.get(&format!("/api/v1/links/{id}"), ADMIN_KEY).await;
    assert_eq!(now["channels"], json!([]), "{now}");
}

/// The web chat is not built yet: its link's page says so and offers the bot's other
/// messengers, carrying the link's parameter; it is never a dead end.
#[tokio::test]
async fn a_web_chat_link_leads_to_a_page_with_the_bots_other_messengers() {
    let s = TestServer::start().await;
    let bot = make_bot(
        &s,
        json!({
            "webchat": {},
            "telegram": {"username": "shop_bot", "token": "1:x"},
            "viber": {"uri": "shopbot", "token": "v"},
        }),
    )
    .await;
    // Renamed with a name a page must escape.
    let (st, _) = s
        .patch(
            &format!("/api/v1/bots/{bot}"),
            ADMIN_KEY,
            json!({"name": "<Shop & Co>"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let link = make_link(
        &s,
        json!({"bot_id": bot, "channels": ["webchat"], "scheme": "raw", "payload": {"param": "promo_42"}}),
    )
    .await;
    let code = link["code"].as_str().unwrap();
    let (st, to, _) = open(&s, &format!("/l/{code}")).await;
    assert_eq!(st, StatusCode::FOUND);
    let path = to.strip_prefix(&s.base_url).expect("our own web chat");
    assert_eq!(path, format!("/chat/{bot}?ref=promo_42"));

    let (st, _, page) = open(&s, path).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(page.contains("coming"), "{page}");
    assert!(
        page.contains("&lt;Shop &amp; Co&gt;") && !page.contains("<Shop"),
        "{page}"
    );
    assert!(
        page.contains("href=\"https://t.me/shop_bot?start=promo_42\""),
        "{page}"
    );
    assert!(
        page.contains("viber://pa?chatURI=shopbot&amp;context=promo_42"),
        "{page}"
    );
    assert!(!page.contains("/chat/"), "no button back to itself: {page}");

    // Without a ref: the plain chats.
    let (st, _, page) = open(&s, &format!("/chat/{bot}")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(page.contains("href=\"https://t.me/shop_bot\""), "{page}");

    // A ref is text from the address bar: escaped, and kept out of a channel it does not fit.
    let (st, _, page) = open(&s, &format!("/chat/{bot}?ref=%22%3E%3Cscript%3E")).await;
    assert_eq!(st, StatusCode::OK);
    assert!(
        !page.contains("<script") && !page.contains("\"><s"),
        "{page}"
    );
    assert!(page.contains("href=\"https://t.me/shop_bot\""), "{page}");

    // A bot with the web chat alone: a clear page, no buttons.
    let lone = make_bot(&s, json!({"webchat": {"id": "lone-chat"}})).await;
    let (st, _, page) = open(&s, "/chat/lone-chat?ref=x").await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert!(
        page.contains("coming") && !page.contains("class=\"b "),
        "{page}"
    );
    // Its web chat is named by its id, not the bot's.
    assert_eq!(
        open(&s, &format!("/chat/{lone}")).await.0,
        StatusCode::NOT_FOUND
    );

    // An unknown bot: a page that says so.
    let (st, _, page) = open(&s, "/chat/nobody-here?ref=x").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(
        page.contains("<html") && page.contains("not found"),
        "{page}"
    );
}

/// A schema of its own on the test PostgreSQL (testkit): the server's URL, the schema's name,
/// and a connection to the database for the test's own SQL.
async fn postgres_schema() -> Option<(String, String, sqlx::PgConnection)> {
    let schema = botlink_testkit::postgres_schema().await?;
    let base = botlink_testkit::postgres_base_url();
    let conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("PostgreSQL answered a moment ago");
    Some((schema.url, schema.name, conn))
}

/// Whether `server` listens to link changes now, by its metric.
async fn listening(server: &TestServer) -> bool {
    server
        .text("/metrics")
        .await
        .contains("botlink_link_changes_listening 1")
}

/// Waits up to `secs` for `check` to hold of `server`.
async fn soon<F: AsyncFn(&TestServer) -> bool>(
    server: &TestServer,
    secs: u64,
    what: &str,
    check: F,
) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check(server).await {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database goes away from an instance that keeps links 10 min (the proxy between them is
/// cut: every connection closed, new ones refused) and comes back. Meanwhile the links it had
/// in memory go on redirecting, with their clicks queued and counted once the database is
/// back; a link it did not have gets a clear 503 page. Then it listens again and hears of a
/// change made outside it.
/// A server on the database at `url` through a proxy that can cut it off, listening to link
/// changes; `link_cache_ms` as `--link-cache-ms`.
async fn behind_cut_proxy(url: &str, link_cache_ms: Option<u64>) -> (CutProxy, TestServer) {
    let mut proxied = reqwest::Url::parse(url).unwrap();
    let target = tokio::net::lookup_host((
        proxied.host_str().unwrap().to_owned(),
        proxied.port().unwrap_or(5432),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = CutProxy::start(target).await;
    proxied.set_host(Some("127.0.0.1")).unwrap();
    proxied.set_port(Some(proxy.addr().port())).unwrap();
    let s = TestServer::start_with(|c| {
        c.database_url = proxied.to_string();
        c.link_cache_ms = link_cache_ms;
    })
    .await;
    soon(&s, 10, "listening to link changes", listening).await;
    (proxy, s)
}

#[tokio::test]
async fn cached_links_go_on_redirecting_while_the_database_is_away() {
    let Some((url, schema, mut conn)) = postgres_schema().await else {
        return;
    };
    let (proxy, s) = behind_cut_proxy(&url, Some(600_000)).await;
    let bot = make_bot(
        &s,
        json!({"telegram": {"username": "shop_bot", "token": "1:x"}}),
    )
    .await;
    let kept = make_link(&s, json!({"bot_id": bot, "slug": "pg-kept"})).await;
    make_link(&s, json!({"bot_id": bot, "slug": "pg-cold"})).await;
    assert_eq!(open(&s, "/l/pg-kept").await.0, StatusCode::FOUND);

    proxy.cut();
    soon(&s, 5, "the lost connection noticed", async |s| {
        !listening(s).await
    })
    .await;
    // Clicks spread over half a second: the whole cache used to go within 0.2 s.
    let during = 10;
    for _ in 0..during {
        let (st, to, _) = open(&s, "/l/pg-kept").await;
        assert_eq!(
            st,
            StatusCode::FOUND,
            "a cached link while the database is away"
        );
        assert!(to.starts_with("https://t.me/shop_bot?start="), "{to}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..3 {
        let (st, _, page) = open(&s, "/l/pg-cold").await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{page}");
        assert!(page.contains("Try again in a moment"), "{page}");
    }
    assert!(!listening(&s).await);

    proxy.restore();
    soon(&s, 15, "listening to link changes again", listening).await;
    // Cached again, then changed outside botlink: heard, though links live 10 min.
    assert_eq!(open(&s, "/l/pg-kept").await.0, StatusCode::FOUND);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE {schema}.links SET disabled = TRUE WHERE slug = 'pg-kept'"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    // Each redirect until then is a click more.
    let mut after = 1;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match open(&s, "/l/pg-kept").await.0 {
            StatusCode::GONE => break,
            StatusCode::FOUND => after += 1,
            other => panic!("the changed link answers {other}"),
        }
        assert!(Instant::now() < deadline, "the change is not heard");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every click: the one before, those during the outage, those after.
    let id = kept["id"].as_str().unwrap();
    let want = 1 + during + after;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, stats) = s.get(&format!("/api/v1/links/{id}/stats"), ADMIN_KEY).await;
        if stats["clicks"] == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not every click counted, {want} wanted: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    s.stop().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}

/// With the default settings, an instance that loses the database keeps its links only
/// briefly (it cannot hear of changes), but when looking one up again fails it serves the copy
/// it has: a link clicked before the outage goes on redirecting past that brief lifetime; a
/// link it never had gets the 503 page. Once the database is back, a change is seen at once.
#[tokio::test]
async fn with_default_settings_cached_links_redirect_past_the_brief_lifetime_of_an_outage() {
    let Some((url, schema, mut conn)) = postgres_schema().await else {
        return;
    };
    let (proxy, s) = behind_cut_proxy(&url, None).await;
    let bot = make_bot(
        &s,
        json!({"telegram": {"username": "shop_bot", "token": "1:x"}}),
    )
    .await;
    let kept = make_link(&s, json!({"bot_id": bot, "slug": "pg-warm"})).await;
    make_link(&s, json!({"bot_id": bot, "slug": "pg-never"})).await;
    assert_eq!(open(&s, "/l/pg-warm").await.0, StatusCode::FOUND);

    proxy.cut();
    soon(&s, 5, "the lost connection noticed", async |s| {
        !listening(s).await
    })
    .await;
    // The brief lifetime (2 s, from the loss) is a clock, with nothing to await: clicks go on
    // for a little longer than it, so that the last ones need the copy to stand in for a
    // failed lookup.
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_millis(2_500) {
        let (st, to, page) = open(&s, "/l/pg-warm").await;
        assert_eq!(
            st,
            StatusCode::FOUND,
            "a cached link {:?} into the outage: {page}",
            outage.elapsed()
        );
        assert!(to.starts_with("https://t.me/shop_bot?start="), "{to}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (st, _, page) = open(&s, "/l/pg-never").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{page}");
    assert!(page.contains("Try again in a moment"), "{page}");

    proxy.restore();
    soon(&s, 15, "listening to link changes again", listening).await;
    assert_eq!(open(&s, "/l/pg-warm").await.0, StatusCode::FOUND);
    let id = kept["id"].as_str().unwrap();
    let (st, body) = s
        .patch(
            &format!("/api/v1/links/{id}"),
            ADMIN_KEY,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let (st, _, page) = open(&s, "/l/pg-warm").await;
    assert_eq!(st, StatusCode::GONE, "the disabled link at once: {page}");

    s.stop().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}
