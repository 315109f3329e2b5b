//! What the service tells when things fail: bad times are the caller's 422, a database that
//! another process holds locked makes writes a 503 with `Retry-After` and statistics say they
//! lag, and `/healthz` turns 503 as soon as clicks are dropped or API writes fail. The real
//! server on port 0 with a temporary SQLite file; another connection holds SQLite's write lock.

use std::time::{Duration, Instant};

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

const BROWSER: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";

async fn make_bot(s: &TestServer, name: &str) -> (StatusCode, Value) {
    s.post(
        "/api/v1/bots",
        ADMIN_KEY,
        json!({"name": name, "channels": {"telegram": {"username": "shop_bot"}}}),
    )
    .await
}

/// A bot and a Telegram link to it: the link's code and id.
async fn telegram_link(s: &TestServer) -> (String, String) {
    let (st, bot) = make_bot(s, "Shop").await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    let (st, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot["id"], "channels": ["telegram"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let text = |k: &str| link[k].as_str().unwrap().to_string();
    (text("code"), text("id"))
}

/// Follows a short link `n` times at once; every answer is a redirect.
async fn click(s: &TestServer, code: &str, n: usize) {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (s.client.clone(), s.url(&format!("/l/{code}")));
        set.spawn(async move {
            let resp = client.get(url).header("user-agent", BROWSER).send().await;
            resp.unwrap().status()
        });
    }
    let statuses = set.join_all().await;
    assert!(
        statuses.iter().all(|st| *st == StatusCode::FOUND),
        "redirects do not wait for the database: {statuses:?}"
    );
}

/// Another process's connection holding SQLite's write lock until dropped.
struct WriteLock(rusqlite::Connection);

impl WriteLock {
    fn take(s: &TestServer) -> WriteLock {
        let file = s.database_url.strip_prefix("sqlite://").unwrap();
        let conn = rusqlite::Connection::open(file).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }

    fn release(self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

async fn health(s: &TestServer) -> (StatusCode, Value) {
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Polls `/healthz` until its status word is `want`, for up to `within`; returns its body.
async fn health_says(s: &TestServer, want: &str, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let (st, body) = health(s).await;
        if body["status"] == want {
            let ok = if want == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            assert_eq!(st, ok, "{body}");
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still {st} {body}, not {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_error(st: StatusCode, body: &Value, status: StatusCode, code: &str) -> String {
    assert_eq!(st, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

/// A time that is not RFC 3339, multi-byte characters where digits belong among them, is
/// the caller's mistake: a 422 that names the field and the form, not a dropped connection.
#[tokio::test]
async fn a_time_that_is_not_rfc3339_is_a_422_naming_the_field() {
    let s = TestServer::start().await;
    let (st, bot) = make_bot(&s, "Shop").await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    for bad in [
        "2026-12-01T00:00:00+0\u{e9}00",
        "2026-12-01T00:00:00\u{e9}",
        "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
        "2026-12-01 00:00:00",
        "2026-02-30T00:00:00Z",
        "tomorrow",
    ] {
        let (st, body) = s
            .post(
                "/api/v1/links",
                ADMIN_KEY,
                json!({"bot_id": bot["id"], "channels": ["telegram"], "expires_at": bad}),
            )
            .await;
        let message = assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_time");
        assert!(
            message.contains("expires_at") && message.contains("RFC 3339"),
            "{message}"
        );
    }
    let (st, page) = s.get("/api/v1/links", ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["links"], json!([]), "nothing was created");

    // A change is checked alike.
    let (st, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot["id"], "channels": ["telegram"],
                   "expires_at": "2099-12-01T02:00:00.5+02:00"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    assert_eq!(link["expires_at"], "2099-12-01T00:00:00.500Z");
    let path = format!("/api/v1/links/{}", link["id"].as_str().unwrap());
    let (st, body) = s
        .patch(
            &path,
            ADMIN_KEY,
            json!({"expires_at": "2099-12-01T00:00:00+0\u{e9}00"}),
        )
        .await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_time");
    let (st, kept) = s.get(&path, ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(kept["expires_at"], "2099-12-01T00:00:00.500Z", "unchanged");
    s.stop().await;
}

/// A write that cannot have the write lock (another process holds it) is a 503 with
/// `Retry-After` after the busy timeout, having changed nothing; `/healthz` tells at once
/// that writes fail, and is well again at the first write that succeeds.
#[tokio::test]
async fn a_write_under_a_locked_database_is_a_503_with_retry_after() {
    let s = TestServer::start().await;
    assert_eq!(health(&s).await, (StatusCode::OK, json!({"status": "ok"})));

    let lock = WriteLock::take(&s);
    let started = Instant::now();
    let resp = s
        .client
        .post(s.url("/api/v1/bots"))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({"name": "Locked out", "channels": {"telegram": {"username": "shop_bot"}}}))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    let (st, retry_after) = (resp.status(), resp.headers().get("retry-after").cloned());
    let body: Value = resp.json().await.unwrap();
    let message = assert_error(st, &body, StatusCode::SERVICE_UNAVAILABLE, "database_busy");
    assert!(
        message.contains("nothing was changed") && message.contains("retry after"),
        "{message}"
    );
    let retry_after: u64 = retry_after
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(waited < Duration::from_secs(9), "bounded wait: {waited:?}");

    let body = health_says(&s, "database busy", Duration::from_secs(1)).await;
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("API writes have failed") && message.contains("write lock"),
        "{message}"
    );

    lock.release();
    let (st, bot) = make_bot(&s, "Shop").await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    health_says(&s, "ok", Duration::from_secs(1)).await;
    let (st, bots) = s.get("/api/v1/bots", ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK);
    let names: Vec<&str> = bots["bots"]
        .as_array()
        .unwrap_or_else(|| panic!("{bots}"))
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Shop"], "the refused write left nothing");
    s.stop().await;
}

/// A full click queue that drops clicks turns `/healthz` 503 at once, long before a stuck
/// batch would (its grace is set far off here), saying what and what to do.
#[tokio::test]
async fn healthz_tells_of_dropped_clicks_at_once() {
    let s = TestServer::start_with(|c| {
        c.click_queue = 2;
        c.click_batch = 2;
        c.click_write_grace = Duration::from_secs(600);
    })
    .await;
    let (code, _) = telegram_link(&s).await;
    health_says(&s, "ok", Duration::from_secs(1)).await;

    let lock = WriteLock::take(&s);
    let started = Instant::now();
    // The writer takes a batch and waits for the lock; the queue holds two more; the rest
    // wait for room in vain, and are dropped.
    click(&s, &code, 20).await;
    let body = health_says(&s, "clicks dropped", Duration::from_secs(1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "told at once, not after a grace"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("queue") && message.contains("--click-queue"),
        "{message}"
    );
    assert!(body["clicks_dropped"].as_u64().unwrap() >= 1, "{body}");
    let metrics = s.text("/metrics").await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("botlink_clicks_dropped_total") && !l.ends_with(" 0")),
        "{metrics}"
    );
    lock.release();
    s.stop().await;
}

/// Statistics asked for while another process holds the write lock (clicks wait to be
/// written and counted) answer within a bounded wait, with the counts they have and
/// `"fresh": false` saying what they may lack; once the lock is gone, they catch up.
#[tokio::test]
async fn stats_under_a_locked_database_answer_in_time_and_say_they_lag() {
    let s = TestServer::start_with(|c| c.click_write_grace = Duration::from_millis(300)).await;
    let (code, id) = telegram_link(&s).await;
    let stats_path = format!("/api/v1/links/{id}/stats");
    click(&s, &code, 3).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (st, stats) = s.get(&stats_path, ADMIN_KEY).await;
        assert_eq!(st, StatusCode::OK, "{stats}");
        if stats["clicks"] == 3 {
            assert_eq!(stats["fresh"], true, "{stats}");
            assert!(stats.get("message").is_none(), "{stats}");
            break;
        }
        assert!(Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let lock = WriteLock::take(&s);
    click(&s, &code, 4).await;
    // The click writer now waits for the lock (up to the busy timeout) with these clicks.
    health_says(&s, "clicks not written", Duration::from_secs(3)).await;
    let started = Instant::now();
    let (st, stats) = s.get(&stats_path, ADMIN_KEY).await;
    let waited = started.elapsed();
    assert_eq!(st, StatusCode::OK, "{stats}");
    assert!(waited < Duration::from_secs(4), "bounded wait: {waited:?}");
    assert_eq!(stats["clicks"], 3, "the counts it has: {stats}");
    assert_eq!(stats["fresh"], false, "{stats}");
    let message = stats["message"].as_str().unwrap();
    assert!(
        message.contains("may lack the clicks") && message.contains("ask again"),
        "{message}"
    );
    assert!(
        stats["as_of"].is_null() || stats["as_of"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{stats}"
    );

    lock.release();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (st, stats) = s.get(&stats_path, ADMIN_KEY).await;
        assert_eq!(st, StatusCode::OK, "{stats}");
        if stats["fresh"] == true && stats["clicks"] == 7 {
            assert!(stats["as_of"].as_str().is_some_and(|t| t.ends_with('Z')));
            break;
        }
        assert!(Instant::now() < deadline, "did not catch up: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.stop().await;
}
