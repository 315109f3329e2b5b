//! What the service tells when things fail: bad times are the caller's 422. The real server
//! on port 0 with a temporary SQLite file.

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn make_bot(s: &TestServer, name: &str) -> (StatusCode, Value) {
    s.post(
        "/api/v1/bots",
        ADMIN_KEY,
        json!({"name": name, "channels": {"telegram": {"username": "shop_bot"}}}),
    )
    .await
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
