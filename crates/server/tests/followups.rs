//! Follow-ups: times with a separator other than `T`, and `botlink api-key create
//! --workspace` names held to the API's rule for names.

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::json;

/// RFC 3339 separates the date from the time with `T` (or `t`; its note allows a space):
/// any other character is refused with the 422 that names the field, and nothing is created.
#[tokio::test]
async fn an_expiry_with_another_separator_than_t_is_refused() {
    let s = TestServer::start().await;
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Shop", "channels": {"telegram": {"username": "shop_bot"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    let bot = bot["id"].as_str().unwrap();
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
