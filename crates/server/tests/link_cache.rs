//! What the link cache must not hide, over real HTTP on SQLite: a bot's deletion and a change
//! to its channels reach its short links at once (they were just clicked, so cached), and a
//! web chat link leads to a page rather than a dead end.

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

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
