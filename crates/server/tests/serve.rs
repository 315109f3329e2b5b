//! The `botlink serve` binary: starts on the SQLite default, answers, and on SIGTERM finishes
//! and writes its queued clicks before it exits 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use botlink_server::store::{self, ClickStore, StatsRange, StatsScope, WorkspaceStore};
use botlink_testkit::client;
use serde_json::{Value, json};
use sqlx::Connection;

fn botlink(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_botlink"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

#[tokio::test]
async fn serve_on_the_default_database_and_stop_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // A key for automation, printed once on stdout.
    let key = api_key(dir.path());
    assert!(key.starts_with("blk_") && key.len() > 30, "{key}");
    assert!(
        dir.path().join("botlink.db").exists(),
        "the default database is botlink.db"
    );

    let (mut child, base) = spawn_serve(dir.path());
    assert!(
        dir.path().join("botlink.key").exists(),
        "the key file is created beside the database"
    );
    let http = client();
    let link = create_link(&http, &base, &key).await;
    let short = link["short_url"].as_str().unwrap().to_string();
    assert!(
        short.starts_with(&base),
        "short links use the real port: {short}"
    );
    for _ in 0..7 {
        let resp = http
            .get(&short)
            .header("user-agent", "Mozilla/5.0")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 302);
    }
    let exit = stop(&mut child).await;
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
    // Every click was written before the process exited.
    assert_eq!(counted(dir.path(), &link).await, 7);
}

#[test]
fn bad_server_flags_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let out = botlink(dir.path())
        .args(["serve", "--public-url", "links.example.com"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
    let out = botlink(dir.path())
        .args(["api-key", "create", "--role", "root"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin, links or notify"));
    let out = botlink(dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("BOTLINK_SECRET_KEY"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends SIGTERM and waits for the process to exit (failing the test after 20 s).
async fn stop(child: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("serve did not stop within 20 s of SIGTERM");
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The address in the (JSON) log line that says where serve listens.
fn listening_at(lines: &mut impl Iterator<Item = std::io::Result<String>>) -> String {
    loop {
        let line = lines.next().expect("serve logs before exiting").unwrap();
        let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if let Some(a) = v["fields"]["addr"].as_str() {
            return a.to_string();
        }
    }
}

/// A `botlink serve` process, killed when a test ends without stopping it (a failed one).
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for Served {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Served {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Starts `botlink serve` on port 0 in `dir`; returns the process and its base URL. Its log
/// is read on, so that it never writes to a closed or full pipe, unless `close_log`: then the
/// pipe is closed once serve has said where it listens.
fn spawn_serve_with(dir: &std::path::Path, close_log: bool) -> (Served, String) {
    let mut child = Served(
        botlink(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("BOTLINK_LOG_FORMAT", "json")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = listening_at(&mut lines);
    if !close_log {
        std::thread::spawn(move || lines.for_each(drop));
    }
    (child, format!("http://{addr}"))
}

fn spawn_serve(dir: &std::path::Path) -> (Served, String) {
    spawn_serve_with(dir, false)
}

/// A new admin key, printed once on stdout.
fn api_key(dir: &std::path::Path) -> String {
    let out = botlink(dir)
        .args(["api-key", "create", "--role", "admin"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A bot with Telegram, and a link to it.
async fn create_link(http: &reqwest::Client, base: &str, key: &str) -> Value {
    let bot: Value = http
        .post(format!("{base}/api/v1/bots"))
        .bearer_auth(key)
        .json(&json!({"name": "Shop", "channels": {"telegram": {"username": "shop_bot"}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    http.post(format!("{base}/api/v1/links"))
        .bearer_auth(key)
        .json(&json!({"bot_id": bot["id"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The URL of serve's default database in `dir`.
fn db_url(dir: &std::path::Path) -> String {
    format!("sqlite://{}", dir.join("botlink.db").display())
}

/// The clicks counted for `link` in the database in `dir`.
async fn counted(dir: &std::path::Path, link: &Value) -> i64 {
    let db = store::connect(&db_url(dir)).await.unwrap();
    let ws = db.workspace_by_name("default").await.unwrap().unwrap();
    let stats = db
        .stats(
            &ws.id,
            StatsScope::Link(link["id"].as_str().unwrap().into()),
            StatsRange::ALL,
        )
        .await
        .unwrap();
    db.close().await;
    stats.clicks
}

/// What `/metrics` answers.
async fn exposition(http: &reqwest::Client, base: &str) -> String {
    http.get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A metric's value from `/metrics` (failing the test when it is not exported).
async fn metric(http: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = exposition(http, base).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} is not exported:\n{text}"))
}

/// Waits (up to 2 s) for a counter to reach `value`; returns the value it last had.
async fn metric_reaching(http: &reqwest::Client, base: &str, name: &str, value: f64) -> f64 {
    let mut seen = 0.0;
    for _ in 0..200 {
        seen = metric(http, base, name).await;
        if seen >= value {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    seen
}

/// Killed (`SIGKILL`, no shutdown) once its clicks are written, the server has lost none of
/// them: a batch's clicks are committed to the click log, and those not yet added to the
/// counts are added by the next reader.
#[tokio::test]
async fn a_killed_server_keeps_the_clicks_it_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let key = api_key(dir.path());
    let (mut child, base) = spawn_serve(dir.path());
    let http = client();
    let link = create_link(&http, &base, &key).await;
    let short = link["short_url"].as_str().unwrap();
    let first_click = std::time::Instant::now();
    for _ in 0..9 {
        assert_eq!(http.get(short).send().await.unwrap().status(), 302);
    }
    // Written: every queued click flushed (within the click flush interval, 50 ms).
    let flushed = metric_reaching(&http, &base, "botlink_clicks_flushed_total", 9.0).await;
    assert_eq!(flushed, 9.0, "the clicks are written");
    child.kill().unwrap();
    child.wait().unwrap();
    // The server had no time to add them to the counts (it does within 10 s): the next reader
    // does. (On a machine slow enough to take 10 s to get here, it had.)
    let mut raw = sqlx::SqliteConnection::connect(&db_url(dir.path()))
        .await
        .unwrap();
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM click_log WHERE seq > (SELECT seq FROM click_log_folded)",
    )
    .fetch_one(&mut raw)
    .await
    .unwrap();
    raw.close().await.unwrap();
    assert!(
        waiting > 0 || first_click.elapsed() > std::time::Duration::from_secs(10),
        "the clicks wait in the log, not yet counted"
    );
    assert_eq!(counted(dir.path(), &link).await, 9);
}

/// A server whose log nobody reads any more (the pipe closed: a log collector that stopped)
/// still stops on SIGTERM, and still answers until then.
#[tokio::test]
async fn serve_stops_on_sigterm_when_its_log_pipe_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = spawn_serve_with(dir.path(), true);
    let health = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let exit = stop(&mut child).await;
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
}

/// When the clicks' counts cannot be added to (here a trigger refuses every change to them, as
/// a database that another process keeps locked would), operators see it in
/// `botlink_click_fold_errors_total`, statistics are still served, without the waiting
/// clicks, and once the counts can be written again every click is counted, none twice.
#[tokio::test]
async fn counts_that_cannot_be_added_to_are_reported_and_caught_up() {
    let dir = tempfile::tempdir().unwrap();
    let key = api_key(dir.path());
    let (mut child, base) = spawn_serve(dir.path());
    let http = client();
    assert_eq!(
        metric(&http, &base, "botlink_click_fold_errors_total").await,
        0.0,
        "exported before any failure"
    );
    assert!(
        exposition(&http, &base)
            .await
            .contains("# HELP botlink_click_fold_errors_total Failed attempts"),
        "with its help text"
    );
    let link = create_link(&http, &base, &key).await;
    let mut raw = sqlx::SqliteConnection::connect(&db_url(dir.path()))
        .await
        .unwrap();
    for sql in [
        "CREATE TRIGGER refuse_insert BEFORE INSERT ON click_counts \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        "CREATE TRIGGER refuse_update BEFORE UPDATE ON click_counts \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    ] {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    let short = link["short_url"].as_str().unwrap();
    for _ in 0..5 {
        assert_eq!(http.get(short).send().await.unwrap().status(), 302);
    }
    // Written (within the flush interval, 50 ms), with their counts as deltas.
    let flushed = metric_reaching(&http, &base, "botlink_clicks_flushed_total", 5.0).await;
    assert_eq!(flushed, 5.0, "the clicks are written");
    let stats_url = format!("{base}/api/v1/links/{}/stats", link["id"].as_str().unwrap());
    let clicks = async || -> i64 {
        let resp = http.get(&stats_url).bearer_auth(&key).send().await.unwrap();
        assert_eq!(resp.status(), 200, "statistics are served");
        resp.json::<Value>().await.unwrap()["clicks"]
            .as_i64()
            .unwrap()
    };
    // Every read of statistics tries to add the waiting counts first, fails, and says so
    // (the writer's own timer, 10 s after the batch, does not come into this test).
    let errors = metric(&http, &base, "botlink_click_fold_errors_total").await;
    assert_eq!(clicks().await, 0, "counts not added");
    assert_eq!(clicks().await, 0, "counts not added");
    assert_eq!(
        metric(&http, &base, "botlink_click_fold_errors_total").await,
        errors + 2.0,
        "each failed fold counted"
    );
    for sql in ["DROP TRIGGER refuse_insert", "DROP TRIGGER refuse_update"] {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    raw.close().await.unwrap();
    assert_eq!(clicks().await, 5, "caught up at the next read");
    assert_eq!(clicks().await, 5, "none counted twice");
    let exit = stop(&mut child).await;
    assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
    assert_eq!(counted(dir.path(), &link).await, 5);
}
