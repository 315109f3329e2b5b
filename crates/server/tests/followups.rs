//! Follow-ups: times with a separator other than `T`, `botlink api-key create --workspace`
//! names held to the API's rule for names, and a handler's panic logged once under `serve`.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::json;

/// RFC 3339 separates the date from the time with `T` (or `t`; its note allows a space):
/// any other character is refused with the 422 that names the field, and nothing is created.
#[tokio::test]
async fn an_expiry_with_another_separator_than_t_is_refused() {
    let s = TestServer::start().await;
    let bot = s.telegram_bot().await;
    let bot = bot.as_str();
    for bad in [
        "2126-12-01X00:00:00Z",
        "2126-12-01_00:00:00Z",
        "2126-12-01900:00:00Z",
        "2126-12-01/00:00:00Z",
    ] {
        let (st, err) = s
            .post(
                "/api/v1/links",
                ADMIN_KEY,
                json!({"bot_id": bot, "expires_at": bad}),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {err}");
        assert_eq!(err["error"]["code"], "invalid_time", "{err}");
        let m = err["error"]["message"].as_str().unwrap();
        assert!(m.contains("expires_at") && m.contains(bad), "{m}");
    }
    let (_, links) = s.get("/api/v1/links", ADMIN_KEY).await;
    assert_eq!(links["links"].as_array().unwrap().len(), 0, "{links}");
    for good in [
        "2126-12-01T00:00:00Z",
        "2126-12-01t00:00:00Z",
        "2126-12-01 00:00:00Z",
    ] {
        let (st, link) = s
            .post(
                "/api/v1/links",
                ADMIN_KEY,
                json!({"bot_id": bot, "expires_at": good}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{good}: {link}");
        assert_eq!(link["expires_at"], "2126-12-01T00:00:00.000Z", "{link}");
    }
    s.stop().await;
}

/// `botlink api-key create` in `dir`, with no ambient settings.
fn api_key_create(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_botlink"))
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .args(["api-key", "create", "--role", "admin"])
        .args(args)
        .output()
        .expect("the botlink binary runs")
}

/// A workspace or key name given to `api-key create` follows the API's rule for names: a
/// control character, a direction override or more than 100 characters exit 2 with one line
/// naming the option, the rule and the limit, and nothing is stored or printed.
#[test]
fn api_key_create_holds_names_to_the_rule_of_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let long = "w".repeat(101);
    for (option, value, said) in [
        ("--workspace", "acme\u{1}", "control character U+0001"),
        ("--workspace", "acme\u{1b}[31m", "control character U+001B"),
        ("--workspace", "\u{202E}emca", "direction override U+202E"),
        ("--workspace", long.as_str(), "101 characters"),
        ("--workspace", "   ", "empty"),
        ("--name", "crm\u{7}", "control character U+0007"),
    ] {
        let out = api_key_create(dir.path(), &[option, value]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{option} {value:?}: {stderr}");
        assert!(out.stdout.is_empty(), "no key is printed: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(option) && stderr.contains(said) && stderr.contains("100"),
            "{option} {value:?}: {stderr}"
        );
    }
    assert!(
        !dir.path().join("botlink.db").exists(),
        "refused before the database is opened"
    );

    let out = api_key_create(dir.path(), &["--workspace", " Acme ", "--name", "crm"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("workspace \"Acme\""),
        "trimmed, as the API does: {stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("blk_"));
}

/// A log written to memory.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With the hook `botlink serve` installs, a panic is logged as it happens, with its message
/// and place; the 500 made of it afterwards (as the router's panic layer makes it) does not
/// log it a second time.
#[test]
fn with_serves_panic_hook_a_handlers_panic_is_logged_once_with_its_place() {
    botlink_server::api::error::log_panics();
    let log = Log::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer({
            let log = log.clone();
            move || log.clone()
        })
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let line = line!() + 2;
    let panic = std::panic::catch_unwind(AssertUnwindSafe(|| {
        panic!("index out of range near table link_secrets");
    }))
    .unwrap_err();
    let resp = botlink_server::api::error::panic_response(panic);
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);

    let written = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert_eq!(written.lines().count(), 1, "logged once: {written}");
    assert!(
        written.contains("index out of range near table link_secrets"),
        "{written}"
    );
    assert!(
        written.contains(&format!("followups.rs:{line}")),
        "where it panicked: {written}"
    );
}
