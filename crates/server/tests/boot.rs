//! Starting up: the settings are checked before the address is bound, a secret key other than
//! the one the database was set up with is refused, the files are private, the log is plain
//! text when nobody watches it, and a graceful stop under load writes every click.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use botlink_server::Config;
use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const BROWSER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

/// The binary in `dir`, with no ambient settings.
fn botlink(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_botlink"));
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    c
}

/// Runs a command that must exit by itself within 20 s (a `serve` that should have refused to
/// start but did not is killed, and the test fails).
fn exits(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} did not exit within 20 s; it logged: {}",
                String::from_utf8_lossy(&reader.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    Output {
        status,
        stdout,
        stderr: reader.join().unwrap(),
    }
}

/// A test configuration on `database_url`, as `TestServer` makes it.
fn config(addr: std::net::SocketAddr, database_url: &str) -> Config {
    let mut c = Config::new(addr, database_url);
    c.secret_key = Some("7".repeat(64));
    c.admin_key = Some(ADMIN_KEY.to_owned());
    c
}

/// Runs the server with `adjust`ed test settings, expecting it to refuse to start; returns why.
async fn refused(database_url: &str, adjust: impl FnOnce(&mut Config)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut c = config(listener.local_addr().unwrap(), database_url);
    adjust(&mut c);
    let stop = CancellationToken::new();
    let run = botlink_server::run(c, listener, stop.clone());
    match tokio::time::timeout(Duration::from_secs(20), run).await {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(())) => panic!("the server stopped without refusing to start"),
        Err(_) => {
            stop.cancel();
            panic!("the server started instead of refusing to")
        }
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("botlink.db").display())
}

/// A bot with a Telegram token, which the database keeps sealed under the secret key.
async fn make_bot(s: &TestServer) -> String {
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Shop", "channels": {"telegram": {"username": "shop_bot", "token": "123:ABC"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    bot["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_lost_or_replaced_key_file_is_refused_and_the_right_one_starts() {
    let s = TestServer::start_with(|c| c.secret_key = None).await;
    let bot = make_bot(&s).await;
    let (dir, url) = s.stop().await;
    let key_file = dir.path().join("botlink.key");
    let key = std::fs::read(&key_file).unwrap();

    // Lost: refused, saying which file and how to recover, and no new key is made.
    std::fs::remove_file(&key_file).unwrap();
    let err = refused(&url, |c| c.secret_key = None).await;
    assert!(
        err.contains(&key_file.display().to_string())
            && err.contains("missing")
            && err.contains("Restore")
            && err.contains("backup"),
        "{err}"
    );
    assert!(
        !key_file.exists(),
        "no new key file replaces the lost one: {err}"
    );

    // Another key in its place: refused too.
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    let err = refused(&url, |c| c.secret_key = None).await;
    assert!(
        err.contains("not the one this database was set up with")
            && err.contains("Restore the key file"),
        "{err}"
    );
    // The same wrong key given as BOTLINK_SECRET_KEY: the message says which setting.
    let err = refused(&url, |c| c.secret_key = Some("ab".repeat(32))).await;
    assert!(
        err.contains("BOTLINK_SECRET_KEY") && !err.contains(&"ab".repeat(32)),
        "{err}"
    );

    // The key restored from the backup: it starts, and the stored secrets open.
    std::fs::write(&key_file, &key).unwrap();
    let s = TestServer::start_in(dir, url, |c| c.secret_key = None).await;
    let (st, body) = s.get(&format!("/api/v1/bots/{bot}"), ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    s.stop().await;
}

/// `botlink migrate` and `api-key create` need no key: they neither read nor make one. The
/// first `serve` makes the key file and records its fingerprint; once it is lost, `migrate`
/// and `api-key create` still work, and `serve` refuses to start.
#[test]
fn only_serve_makes_or_checks_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("botlink.key");
    let out = exits({
        let mut c = botlink(dir.path());
        c.args(["api-key", "create", "--role", "admin"]);
        c
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = exits({
        let mut c = botlink(dir.path());
        c.arg("migrate");
        c
    });
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!key_file.exists(), "neither command makes a key file");

    let (mut child, _) = spawn_serve(dir.path(), &[]);
    assert!(key_file.exists(), "the first start makes the key file");
    stop(&mut child);

    std::fs::remove_file(&key_file).unwrap();
    for args in [&["migrate"][..], &["api-key", "create", "--role", "links"]] {
        let out = exits({
            let mut c = botlink(dir.path());
            c.args(args);
            c
        });
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(!key_file.exists(), "{:?}", key_file);
    let out = exits({
        let mut c = botlink(dir.path());
        c.args(["serve", "--listen", "127.0.0.1:0"]);
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("botlink.key is missing") && stderr.contains("backup"),
        "{stderr}"
    );
    assert!(!key_file.exists());
}

/// PostgreSQL for a test: the database's URL, and a schema of its own (testkit).
async fn pg_schema() -> Option<(String, String, String)> {
    let schema = botlink_testkit::postgres_schema().await?;
    Some((
        botlink_testkit::postgres_base_url(),
        schema.name,
        schema.url,
    ))
}

async fn drop_schema(base: &str, schema: &str) {
    let mut conn = sqlx::PgConnection::connect(base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_postgres_instance_with_another_key_is_refused() {
    let Some((base, schema, url)) = pg_schema().await else {
        return;
    };
    let a = TestServer::start_with(|c| c.database_url = url.clone()).await;
    let bot = make_bot(&a).await;
    let err = refused(&url, |c| c.secret_key = Some("8".repeat(64))).await;
    assert!(
        err.contains("not the one this database was set up with")
            && err.contains("BOTLINK_SECRET_KEY")
            && err.contains("other instances"),
        "{err}"
    );
    assert!(
        !err.contains(&"8".repeat(64)),
        "the key is never shown: {err}"
    );
    // Another instance with the same key starts and reads what the first stored.
    let b = TestServer::start_with(|c| c.database_url = url.clone()).await;
    let (st, body) = b.get(&format!("/api/v1/bots/{bot}"), ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    a.stop().await;
    b.stop().await;
    drop_schema(&base, &schema).await;
}

#[tokio::test]
async fn an_admin_key_the_api_would_refuse_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    // Long enough, but without the prefix every API key has: every request would be a 401.
    let err = refused(&url, |c| {
        c.admin_key = Some("x".repeat(40));
    })
    .await;
    assert!(
        err.contains("BOTLINK_ADMIN_KEY") && err.contains("blk_"),
        "{err}"
    );
    assert!(
        !err.contains(&"x".repeat(40)),
        "the key is never shown: {err}"
    );
    let err = refused(&url, |c| c.admin_key = Some("blk_short".into())).await;
    assert!(err.contains("too short"), "{err}");
    let err = refused(&url, |c| {
        c.admin_key = Some(format!("blk_{}", "a".repeat(200)))
    })
    .await;
    assert!(err.contains("128"), "{err}");
    let err = refused(&url, |c| {
        c.admin_key = Some(format!("blk_{} x", "a".repeat(30)))
    })
    .await;
    assert!(err.contains("visible ASCII"), "{err}");
    assert!(
        !dir.path().join("botlink.db").exists(),
        "nothing is created for a configuration that is refused"
    );
}

/// With something already listening on the address, a bad setting is still reported as
/// itself: the settings are checked before the address is bound.
#[test]
fn settings_are_checked_before_the_address_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    for (setting, value, says) in [
        (
            "BOTLINK_ADMIN_KEY",
            "not-a-botlink-key-0123456789",
            "BOTLINK_ADMIN_KEY",
        ),
        ("BOTLINK_SECRET_KEY", "abcd", "BOTLINK_SECRET_KEY"),
        (
            "BOTLINK_DATABASE_URL",
            "mysql://x@h/db",
            "BOTLINK_DATABASE_URL",
        ),
        (
            "BOTLINK_DATABASE_URL",
            "postgres://x@h:port/db",
            "BOTLINK_DATABASE_URL",
        ),
        ("BOTLINK_PUBLIC_URL", "https://", "--public-url"),
    ] {
        let out = exits({
            let mut c = botlink(dir.path());
            c.args(["serve", "--listen", &addr]).env(setting, value);
            c
        });
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{setting}: {stderr}");
        assert!(
            stderr.contains(says) && !stderr.contains("listening on"),
            "{setting}={value}: {stderr}"
        );
    }
    // PostgreSQL without a secret key, on the busy address.
    let out = exits({
        let mut c = botlink(dir.path());
        c.args([
            "serve",
            "--listen",
            &addr,
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ]);
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("BOTLINK_SECRET_KEY"), "{stderr}");
    // Settings that are right: now the address is the problem, and it says so.
    let out = exits({
        let mut c = botlink(dir.path());
        c.args(["serve", "--listen", &addr]);
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("listening on {addr}")), "{stderr}");
    drop(busy);
}

/// A `botlink serve` process, killed when a test ends without stopping it.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `botlink serve --listen 127.0.0.1:0` (text logs, `extra` arguments) in `dir`, and
/// returns it with the log lines up to the one that says where it listens. The rest of its log
/// is read on (and dropped) so that it never blocks on a full pipe.
fn spawn_serve(dir: &Path, extra: &[&str]) -> (Served, Vec<String>) {
    let mut child = Served(
        botlink(dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.0.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited before listening: {seen:?}"))
            .unwrap();
        let done = line.contains("botlink is listening");
        seen.push(line);
        if done {
            break;
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    (child, seen)
}

/// SIGTERM, and waits (up to 20 s) for a clean exit.
fn stop(child: &mut Served) {
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            assert!(exit.success(), "serve exits 0 on SIGTERM: {exit:?}");
            return;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The log goes to a pipe here, as to a log collector: no colour codes in it.
#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_serve(dir.path(), &[]);
    stop(&mut child);
    let log = lines.join("\n");
    assert!(log.contains("INFO"), "{log}");
    assert!(!log.contains('\u{1b}'), "no ANSI escapes: {log:?}");
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The database and its WAL and shared-memory files are created readable by their owner
/// alone, as the key file is.
#[cfg(unix)]
#[tokio::test]
async fn the_database_files_are_private() {
    let s = TestServer::start_with(|c| c.secret_key = None).await;
    make_bot(&s).await;
    let dir = s.dir.path().to_owned();
    for name in [
        "botlink.db",
        "botlink.db-wal",
        "botlink.db-shm",
        "botlink.key",
    ] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    s.stop().await;
}

/// A key file others can read: the server starts, and says so once.
#[cfg(unix)]
#[test]
fn a_key_file_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, lines) = spawn_serve(dir.path(), &[]);
    stop(&mut child);
    assert!(
        !lines.iter().any(|l| l.contains("key file")),
        "no warning for a private key file: {lines:?}"
    );
    let key_file = dir.path().join("botlink.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (mut child, lines) = spawn_serve(dir.path(), &[]);
    stop(&mut child);
    let warnings: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("key file"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning: {lines:?}");
    assert!(
        warnings[0].contains("chmod 600") && warnings[0].contains("644"),
        "{}",
        warnings[0]
    );
}

/// Stopped (as SIGTERM does) while clients are still clicking, with clicks waiting in memory,
/// the server writes every click it answered before it exits.
#[tokio::test]
async fn a_graceful_stop_under_load_writes_every_click_it_answered() {
    // Batches wait up to a second: at the stop, most clicks are still in memory.
    let s = TestServer::start_with(|c| c.click_flush_ms = 1000).await;
    let bot = make_bot(&s).await;
    let (st, link) = s
        .post("/api/v1/links", ADMIN_KEY, json!({"bot_id": bot}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let short = link["short_url"].as_str().unwrap().to_owned();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut clickers = tokio::task::JoinSet::new();
    for i in 0..16 {
        let (client, short, answered) = (s.client.clone(), short.clone(), answered.clone());
        clickers.spawn(async move {
            // Each client clicks until the server stops answering.
            loop {
                let sent = client
                    .get(&short)
                    .header("user-agent", format!("{BROWSER} {i}"))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == StatusCode::FOUND => {
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(resp) => panic!("a click answered {}", resp.status()),
                    Err(_) => return,
                }
            }
        });
    }
    // Stop once the load is on (polled: there is nothing to await).
    let deadline = Instant::now() + Duration::from_secs(20);
    while answered.load(std::sync::atomic::Ordering::SeqCst) < 500 {
        assert!(Instant::now() < deadline, "the clicks do not get through");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (dir, url) = s.stop().await;
    while clickers.join_next().await.transpose().unwrap().is_some() {}
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);

    let s = TestServer::start_in(dir, url, |_| {}).await;
    let (st, stats) = s
        .get(
            &format!("/api/v1/links/{}/stats", link["id"].as_str().unwrap()),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    assert_eq!(
        stats["clicks"],
        Value::from(answered),
        "every click answered with a redirect is counted"
    );
    s.stop().await;
}
