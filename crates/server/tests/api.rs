//! The link service over real HTTP: the real server on port 0, on a temporary SQLite file and
//! (the tests named in `on_both_backends!`) again on PostgreSQL, in a schema of its own.

use std::time::{Duration, Instant};

use botlink_core::payload::{Scheme, decode};
use botlink_core::{Channel, parse_link};
use botlink_server::store::{self, ClickId, ClickStore, WorkspaceStore};
use botlink_testkit::{ADMIN_KEY, Backend, TestServer, on_both_backends};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const BROWSER: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";

/// A bot with Telegram, Viber and Messenger.
async fn make_bot(s: &TestServer, key: &str) -> String {
    let (st, bot) = s
        .post(
            "/api/v1/bots",
            key,
            json!({
                "name": "Shop",
                "channels": {
                    "telegram": {"username": "shop_bot", "token": "123456:SECRET-telegram-token"},
                    "viber": {"uri": "shopbot", "token": "viber-secret-token"},
                    "messenger": {"page": "PAGE-NAME", "app_secret": "meta-app-secret", "page_token": "meta-page-token"}
                }
            }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    bot["id"].as_str().unwrap().to_string()
}

async fn make_entry(s: &TestServer, bot: &str, key: &str, default_field: Option<&str>) {
    let (st, body) = s
        .post(
            &format!("/api/v1/bots/{bot}/entry_points"),
            ADMIN_KEY,
            json!({"key": key, "node": "welcome", "default_field": default_field,
                   "utm": {"source": "site", "medium": "button"}}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
}

async fn follow(s: &TestServer, path: &str, ua: &str) -> reqwest::Response {
    s.client
        .get(s.url(path))
        .header("user-agent", ua)
        .send()
        .await
        .unwrap()
}

fn assert_error(st: StatusCode, body: &Value, status: StatusCode, code: &str) {
    assert_eq!(st, status, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.len() > 10),
        "{body}"
    );
}

/// Waits until the link's stats show `n` clicks (clicks are written off the request path,
/// visible within a second), then checks they stay exactly `n`.
async fn clicks_reach(s: &TestServer, link: &str, n: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (st, stats) = s
            .get(&format!("/api/v1/links/{link}/stats"), ADMIN_KEY)
            .await;
        assert_eq!(st, StatusCode::OK, "{stats}");
        let got = stats["clicks"].as_i64().unwrap();
        assert!(got <= n, "more clicks than requests: {got} > {n}");
        if got == n {
            return stats;
        }
        assert!(
            Instant::now() < deadline,
            "clicks stuck at {got}, expected {n}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn keys_roles_and_workspace_isolation(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    // No key, a malformed key, an unknown key.
    let (st, body) = s.call(Method::GET, "/api/v1/bots", None, None).await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (st, body) = s.get("/api/v1/bots", "not-a-key").await;
    assert_error(st, &body, StatusCode::UNAUTHORIZED, "unauthorized");
    let (st, _) = s
        .get("/api/v1/bots", "blk_00000000000000000000000000000000")
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let bot = make_bot(&s, ADMIN_KEY).await;

    // An admin makes a links key and a notify key; each is shown once.
    let (st, k) = s
        .post(
            "/api/v1/api_keys",
            ADMIN_KEY,
            json!({"role": "links", "name": "crm"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    let links_key = k["key"].as_str().unwrap().to_string();
    assert!(links_key.starts_with("blk_"));
    let (_, k) = s
        .post("/api/v1/api_keys", ADMIN_KEY, json!({"role": "notify"}))
        .await;
    let notify_key = k["key"].as_str().unwrap().to_string();
    let (st, body) = s
        .post("/api/v1/api_keys", ADMIN_KEY, json!({"role": "root"}))
        .await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_role");
    let (_, list) = s.get("/api/v1/api_keys", ADMIN_KEY).await;
    let listed = list.to_string();
    assert!(
        !listed.contains(&links_key) && !listed.contains(&notify_key),
        "keys are never listed"
    );

    // links: create links and read stats, but not manage bots or keys.
    let (st, link) = s
        .post(
            "/api/v1/links",
            &links_key,
            json!({"bot_id": bot, "channels": ["telegram"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let link_id = link["id"].as_str().unwrap().to_string();
    let (st, _) = s
        .get(&format!("/api/v1/links/{link_id}/stats"), &links_key)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s
        .post("/api/v1/bots", &links_key, json!({"name": "x"}))
        .await;
    assert_error(st, &body, StatusCode::FORBIDDEN, "forbidden");
    let (st, _) = s
        .post("/api/v1/api_keys", &links_key, json!({"role": "admin"}))
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // notify: nothing of this yet (call_node comes later).
    let (st, body) = s
        .post("/api/v1/links", &notify_key, json!({"bot_id": bot}))
        .await;
    assert_error(st, &body, StatusCode::FORBIDDEN, "forbidden");
    let (st, _) = s
        .get(&format!("/api/v1/links/{link_id}"), &notify_key)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // A revoked key stops working at once.
    let (_, k) = s
        .post("/api/v1/api_keys", ADMIN_KEY, json!({"role": "links"}))
        .await;
    let (revoked, revoked_id) = (
        k["key"].as_str().unwrap().to_string(),
        k["id"].as_str().unwrap().to_string(),
    );
    let (st, _) = s
        .delete(&format!("/api/v1/api_keys/{revoked_id}"), ADMIN_KEY)
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = s.get("/api/v1/bots", &revoked).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Another workspace: its admin sees none of this workspace's resources.
    let db = store::connect(&s.database_url).await.unwrap();
    let other = db.ensure_workspace("acme", 0).await.unwrap();
    let (other_key, _) =
        botlink_server::api::keys::issue_key(&db, &other.id, store::Role::Admin, None)
            .await
            .unwrap();
    let (_, bots) = s.get("/api/v1/bots", &other_key).await;
    assert_eq!(bots["bots"], json!([]));
    for path in [
        format!("/api/v1/bots/{bot}"),
        format!("/api/v1/bots/{bot}/entry_points"),
        format!("/api/v1/bots/{bot}/stats"),
        format!("/api/v1/links/{link_id}"),
        format!("/api/v1/links/{link_id}/stats"),
    ] {
        let (st, body) = s.get(&path, &other_key).await;
        assert_error(st, &body, StatusCode::NOT_FOUND, "not_found");
    }
    let (st, _) = s
        .patch(
            &format!("/api/v1/links/{link_id}"),
            &other_key,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s.delete(&format!("/api/v1/bots/{bot}"), &other_key).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = s
        .post("/api/v1/links", &other_key, json!({"bot_id": bot}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (_, page) = s.get("/api/v1/links", &other_key).await;
    assert_eq!(page["links"], json!([]));
    // ...and the first workspace still has everything.
    let (st, _) = s.get(&format!("/api/v1/links/{link_id}"), ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK);
    s.stop().await;
}

async fn secrets_are_sealed_and_never_returned(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    let (_, got) = s.get(&format!("/api/v1/bots/{bot}"), ADMIN_KEY).await;
    let text = got.to_string();
    for secret in [
        "123456:SECRET-telegram-token",
        "viber-secret-token",
        "meta-app-secret",
        "meta-page-token",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let tg = got["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "telegram")
        .unwrap();
    assert_eq!(tg["identifier"], "shop_bot");
    assert_eq!(tg["secrets"], json!(["token"]));
    // Updating the username keeps the stored token.
    let (st, upd) = s
        .patch(
            &format!("/api/v1/bots/{bot}"),
            ADMIN_KEY,
            json!({"channels": {"telegram": {"username": "@shop2_bot"}, "viber": null}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{upd}");
    let tg = upd["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["channel"] == "telegram")
        .unwrap();
    assert_eq!(
        (tg["identifier"].as_str(), &tg["secrets"]),
        (Some("shop2_bot"), &json!(["token"]))
    );
    assert!(
        upd["channels"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["channel"] != "viber")
    );
    // Nor are they in the database in clear: its files, or every row of every table.
    let (dir, url) = s.stop().await;
    let raw = match b {
        Backend::Sqlite => {
            let mut raw = Vec::new();
            for entry in std::fs::read_dir(dir.path()).unwrap() {
                raw.extend(std::fs::read(entry.unwrap().path()).unwrap());
            }
            String::from_utf8_lossy(&raw).into_owned()
        }
        Backend::Postgres => {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            let mut raw = String::new();
            for table in tables {
                let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT t::text FROM {table} t"
                )))
                .fetch_all(&mut conn)
                .await
                .unwrap();
                raw.extend(rows);
            }
            raw
        }
    };
    assert!(raw.contains("shop2_bot"), "the public settings are stored");
    for secret in [
        "SECRET-telegram-token",
        "meta-app-secret",
        "meta-page-token",
    ] {
        assert!(!raw.contains(secret), "{secret} is stored in clear");
    }
}

async fn links_in_every_scheme(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    make_entry(&s, &bot, "giveaway", Some("name")).await;
    make_entry(&s, &bot, "3", None).await;

    let create = |body: Value| {
        let s = &s;
        async move { s.post("/api/v1/links", ADMIN_KEY, body).await }
    };
    let url_of = |link: &Value, ch: &str| {
        link["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["channel"] == ch)
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string()
    };

    // stored (default): every channel of the bot, the parameter is l_<code>.
    let (st, link) = create(json!({"bot_id": bot, "entry_point": "giveaway", "payload": {"external_id": "12345", "variables": {"city": "Kyiv"}}})).await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    assert_eq!(link["scheme"], "stored");
    assert_eq!(link["channels"].as_array().unwrap().len(), 3);
    let code = link["code"].as_str().unwrap();
    assert_eq!(
        url_of(&link, "telegram"),
        format!("https://t.me/shop_bot?start=l_{code}")
    );
    assert_eq!(
        url_of(&link, "viber"),
        format!("viber://pa?chatURI=shopbot&context=l_{code}")
    );
    assert_eq!(link["short_url"], format!("{}/l/{code}", s.base_url));
    assert_eq!(link["qr_svg"], format!("{}/l/{code}/qr.svg", s.base_url));
    assert_eq!(
        link["utm"]["source"], "site",
        "entry point UTM defaults apply"
    );
    assert_eq!(link["payload"]["external_id"], "12345");

    // json: exactly the documented vector (docs/payload-schemes.md).
    let (_, link) = create(json!({"bot_id": bot, "channels": ["telegram"], "scheme": "json", "payload": {"email": "email@gmail.com"}})).await;
    assert_eq!(
        url_of(&link, "telegram"),
        "https://t.me/shop_bot?start=eyJlIjoiZW1haWxAZ21haWwuY29tIn0"
    );

    // fields: the entry point's default field takes the first value.
    let (_, link) = create(json!({"bot_id": bot, "channels": ["messenger"], "scheme": "fields", "entry_point": "giveaway",
        "payload": {"fields": {"name": "value1", "738": "value2", "514": "value3"}}})).await;
    assert_eq!(
        url_of(&link, "messenger"),
        "https://m.me/PAGE-NAME?ref=giveaway--value1--514--value3--738--value2"
    );

    // raw and entry.
    let (_, link) = create(json!({"bot_id": bot, "channels": ["telegram"], "scheme": "raw", "payload": {"param": "customer_12345"}})).await;
    assert_eq!(
        url_of(&link, "telegram"),
        "https://t.me/shop_bot?start=customer_12345"
    );
    let (_, link) = create(
        json!({"bot_id": bot, "channels": ["telegram"], "scheme": "entry", "entry_point": "3"}),
    )
    .await;
    assert_eq!(
        url_of(&link, "telegram"),
        "https://t.me/shop_bot?start=n__3"
    );

    // signed: the tag is there, and editing the parameter is caught with the bot's key.
    let (_, link) = create(json!({"bot_id": bot, "channels": ["telegram"], "scheme": "raw", "signed": true, "payload": {"param": "customer_12345"}})).await;
    let param = parse_link(&url_of(&link, "telegram"))
        .unwrap()
        .param
        .unwrap();
    assert!(
        param.starts_with("s_") && param.ends_with("_customer_12345"),
        "{param}"
    );
    let d = decode(&param, None, None).unwrap();
    assert_eq!(
        (d.scheme, d.inner.as_str()),
        (Some(Scheme::Signed), "customer_12345")
    );

    // many in one request, all or nothing.
    let (st, many) = create(json!({"links": [
        {"bot_id": bot, "channels": ["telegram"], "slug": "batch-one"},
        {"bot_id": bot, "channels": ["viber"], "scheme": "raw", "payload": {"param": "order_67890"}}
    ]}))
    .await;
    assert_eq!(st, StatusCode::CREATED, "{many}");
    assert_eq!(many["links"].as_array().unwrap().len(), 2);
    assert_eq!(
        many["links"][0]["short_url"],
        format!("{}/l/batch-one", s.base_url)
    );
    let (_, before) = s.get("/api/v1/links?limit=200", ADMIN_KEY).await;
    let (st, body) = create(json!({"links": [
        {"bot_id": bot, "channels": ["telegram"], "slug": "fresh-slug"},
        {"bot_id": bot, "channels": ["telegram"], "slug": "batch-one"}
    ]}))
    .await;
    assert_error(st, &body, StatusCode::CONFLICT, "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("links[1]"),
        "{body}"
    );
    let (_, after) = s.get("/api/v1/links?limit=200", ADMIN_KEY).await;
    assert_eq!(
        before["links"].as_array().unwrap().len(),
        after["links"].as_array().unwrap().len(),
        "nothing half-written"
    );

    // List, filter, paginate, get, update, delete.
    let (_, all) = s.get("/api/v1/links?limit=200", ADMIN_KEY).await;
    let total = all["links"].as_array().unwrap().len();
    assert_eq!(total, 8, "six single links and a batch of two");
    let (_, page1) = s.get("/api/v1/links?limit=3", ADMIN_KEY).await;
    assert_eq!(page1["links"].as_array().unwrap().len(), 3);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = s
        .get(&format!("/api/v1/links?limit=3&cursor={cursor}"), ADMIN_KEY)
        .await;
    let (_, page3) = s
        .get(
            &format!(
                "/api/v1/links?limit=3&cursor={}",
                page2["next_cursor"].as_str().unwrap()
            ),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(page3["links"].as_array().unwrap().len(), 2);
    assert!(page3["next_cursor"].is_null());
    let mut seen: Vec<String> = [&page1, &page2, &page3]
        .iter()
        .flat_map(|p| {
            p["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_str().unwrap().to_string())
        })
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "pages neither skip nor repeat");
    let (_, by_entry) = s
        .get(
            &format!("/api/v1/links?bot_id={bot}&entry_point=giveaway"),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(by_entry["links"].as_array().unwrap().len(), 2);
    // The three links made for an entry point inherit its utm_source.
    let (_, by_utm) = s.get("/api/v1/links?utm_source=site", ADMIN_KEY).await;
    assert_eq!(by_utm["links"].as_array().unwrap().len(), 3);
    let (_, by_text) = s.get("/api/v1/links?q=batch-one", ADMIN_KEY).await;
    assert_eq!(by_text["links"].as_array().unwrap().len(), 1);
    s.stop().await;
}

async fn bad_input_is_a_clear_4xx(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    // Too long for Telegram in the json scheme: names the channel, the length and the limit.
    let (st, body) = s
        .post("/api/v1/links", ADMIN_KEY, json!({"bot_id": bot, "scheme": "json", "payload": {"email": "a.very.long.address.for.testing@example-company.com", "phone": "380501234567"}}))
        .await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "payload_too_long",
    );
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("telegram") && msg.contains("64") && msg.contains("stored"),
        "{msg}"
    );
    let encoded_len = botlink_core::payload::encode_json(&botlink_core::JsonPayload {
        email: Some("a.very.long.address.for.testing@example-company.com".into()),
        phone: Some("380501234567".into()),
        ..Default::default()
    })
    .unwrap()
    .len();
    assert!(
        msg.contains(&encoded_len.to_string()),
        "{msg} should say {encoded_len}"
    );
    // Characters Telegram would drop.
    let (st, body) = s
        .post("/api/v1/links", ADMIN_KEY, json!({"bot_id": bot, "channels": ["telegram"], "scheme": "raw", "payload": {"param": "a b"}}))
        .await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "payload_bad_characters",
    );
    let cases = [
        (
            json!({"bot_id": bot, "scheme": "json"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_payload",
        ),
        (
            json!({"bot_id": bot, "scheme": "raw"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"bot_id": bot, "scheme": "entry"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
        ),
        (
            json!({"bot_id": bot, "scheme": "nope"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"bot_id": bot, "channels": ["icq"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_channel",
        ),
        (
            json!({"bot_id": bot, "channels": ["line"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_channel",
        ),
        (
            json!({"bot_id": bot, "channels": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_channel",
        ),
        (
            json!({"bot_id": bot, "expires_at": "tomorrow"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
        ),
        (
            json!({"bot_id": bot, "expires_at": "2001-01-01T00:00:00Z"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_time",
        ),
        (
            json!({"bot_id": bot, "max_clicks": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_max_clicks",
        ),
        (
            json!({"bot_id": bot, "slug": "a/b"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_slug",
        ),
        (
            json!({"bot_id": bot, "entry_point": "missing"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"bot_id": "bot_nope"}),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            json!({"bot_id": bot, "surprise": 1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            json!({"links": []}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_batch",
        ),
    ];
    for (body, status, code) in cases {
        let (st, got) = s.post("/api/v1/links", ADMIN_KEY, body.clone()).await;
        assert_error(st, &got, status, code);
    }
    // Not JSON at all, and JSON without its content type.
    let resp = s
        .client
        .post(s.url("/api/v1/links"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_request");
    let resp = s
        .client
        .post(s.url("/api/v1/links"))
        .bearer_auth(ADMIN_KEY)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Bots and entry points.
    let (st, body) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "x", "channels": {"telegram": {}}}),
        )
        .await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_channel_settings",
    );
    let (st, body) = s
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "x", "channels": {"telegram": {"username": "1bad"}}}),
        )
        .await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_channel_settings",
    );
    let (st, body) = s.post("/api/v1/bots", ADMIN_KEY, json!({"name": "x", "channels": {"telegram": {"username": "good_bot", "api_base_url": "ftp://x"}}})).await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_channel_settings",
    );
    let (st, body) = s
        .post("/api/v1/bots", ADMIN_KEY, json!({"name": "Shop"}))
        .await;
    assert_error(st, &body, StatusCode::CONFLICT, "conflict");
    let (st, body) = s
        .post(
            &format!("/api/v1/bots/{bot}/entry_points"),
            ADMIN_KEY,
            json!({"key": "a--b"}),
        )
        .await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_entry_point",
    );
    make_entry(&s, &bot, "promo", None).await;
    let (st, body) = s
        .post(
            &format!("/api/v1/bots/{bot}/entry_points"),
            ADMIN_KEY,
            json!({"key": "promo"}),
        )
        .await;
    assert_error(st, &body, StatusCode::CONFLICT, "conflict");
    let (st, body) = s.get("/api/v1/links?cursor=garbage", ADMIN_KEY).await;
    assert_error(
        st,
        &body,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    );
    let (st, body) = s.get("/api/v1/links?limit=0", ADMIN_KEY).await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_limit");
    let (st, body) = s
        .get(
            &format!("/api/v1/bots/{bot}/stats?from=2026-13-01"),
            ADMIN_KEY,
        )
        .await;
    assert_error(st, &body, StatusCode::UNPROCESSABLE_ENTITY, "invalid_date");
    s.stop().await;
}

async fn redirects_previews_and_their_counts(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    let (_, one) = s.post("/api/v1/links", ADMIN_KEY, json!({"bot_id": bot, "channels": ["telegram"], "title": "Summer sale", "utm": {"source": "newsletter", "campaign": "summer"}})).await;
    let (code, id) = (
        one["code"].as_str().unwrap().to_string(),
        one["id"].as_str().unwrap().to_string(),
    );

    // A click: 302 to the deep link, not cached, carrying this click's id.
    let resp = follow(&s, &format!("/l/{code}"), BROWSER).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let parsed = parse_link(&location).unwrap();
    assert_eq!(
        (parsed.channel, parsed.bot.as_str()),
        (Channel::Telegram, "shop_bot")
    );
    let d = decode(parsed.param.as_deref().unwrap(), None, None).unwrap();
    let stored = d.stored.expect("the stored scheme");
    assert_eq!(stored.code, code);
    let click_id = stored.click.expect("a click id");
    assert!(location.len() - "https://t.me/shop_bot?start=".len() <= 64);

    // Crawlers get OpenGraph and count as previews; HEAD counts as nothing.
    for ua in [
        "TelegramBot (like TwitterBot)",
        "facebookexternalhit/1.1",
        "WhatsApp/2.23.20.0",
        "Slackbot-LinkExpanding 1.0",
    ] {
        let resp = follow(&s, &format!("/l/{code}"), ua).await;
        assert_eq!(resp.status(), StatusCode::OK, "{ua}");
        let html = resp.text().await.unwrap();
        assert!(
            html.contains("og:title") && html.contains("Summer sale"),
            "{html}"
        );
    }
    let resp = s
        .client
        .head(s.url(&format!("/l/{code}")))
        .header("user-agent", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);

    let stats = clicks_reach(&s, &id, 1).await;
    assert_eq!(stats["previews"], 4);
    assert_eq!(stats["unique_clicks"], 1);
    assert_eq!(stats["by_channel"][0]["key"], "telegram");
    assert_eq!(stats["by_utm_source"][0]["key"], "newsletter");
    assert_eq!(stats["by_utm_campaign"][0]["clicks"], 1);
    // The click id in the deep link names the stored click.
    let db = store::connect(&s.database_url).await.unwrap();
    let click = db
        .click_by_id(&ClickId::from(click_id.clone()))
        .await
        .unwrap()
        .expect("the click is stored");
    assert_eq!(
        (click.link_id.as_str(), click.channel.map(|c| c.as_str())),
        (id.as_str(), Some("telegram"))
    );

    // Many channels: a page with a button per messenger; each button redirects.
    let (_, many) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "slug": "choose"}),
        )
        .await;
    let resp = follow(&s, "/l/choose", BROWSER).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let html = resp.text().await.unwrap();
    for ch in ["telegram", "viber", "messenger"] {
        assert!(html.contains(&format!("/l/choose/{ch}")), "{html}");
    }
    assert!(html.contains("/l/choose/qr.svg"));
    let resp = follow(&s, "/l/choose/viber", BROWSER).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("viber://pa?chatURI=shopbot&context=l_")
    );
    let resp = follow(&s, "/l/choose/line", BROWSER).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    clicks_reach(&s, many["id"].as_str().unwrap(), 1).await;

    // QR codes of the short link.
    let resp = follow(&s, "/l/choose/qr.svg", BROWSER).await;
    assert_eq!(resp.headers()["content-type"], "image/svg+xml");
    assert!(resp.text().await.unwrap().contains("<svg"));
    let resp = follow(&s, "/l/choose/qr.png", BROWSER).await;
    assert_eq!(resp.headers()["content-type"], "image/png");
    assert!(
        resp.bytes()
            .await
            .unwrap()
            .starts_with(b"\x89PNG\r\n\x1a\n")
    );

    // Unknown 404, disabled and expired 410: human pages.
    let resp = follow(&s, "/l/nosuchcode", BROWSER).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(resp.text().await.unwrap().contains("<h1>"));
    let (st, _) = s
        .patch(
            &format!("/api/v1/links/{id}"),
            ADMIN_KEY,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(
        follow(&s, &format!("/l/{code}"), BROWSER).await.status(),
        StatusCode::GONE
    );
    // An expiry must be in the future when set, so this one is a moment away; the link works
    // until then and is gone after.
    let soon = botlink_server::util::now_ms() + 1_000;
    let (st, body) = s
        .patch(
            &format!("/api/v1/links/{id}"),
            ADMIN_KEY,
            json!({"disabled": false, "expires_at": botlink_server::util::format_rfc3339(soon)}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = follow(&s, &format!("/l/{code}"), BROWSER).await.status();
        if status == StatusCode::GONE {
            assert!(
                botlink_server::util::now_ms() >= soon,
                "gone before it expired"
            );
            break;
        }
        assert_eq!(status, StatusCode::FOUND);
        assert!(Instant::now() < deadline, "the link did not expire");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.patch(
        &format!("/api/v1/links/{id}"),
        ADMIN_KEY,
        json!({"expires_at": null}),
    )
    .await;
    assert_eq!(
        follow(&s, &format!("/l/{code}"), BROWSER).await.status(),
        StatusCode::FOUND
    );

    // A click cap: exactly max_clicks clicks go through.
    let (_, capped) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "channels": ["telegram"], "max_clicks": 2}),
        )
        .await;
    let capped_code = capped["code"].as_str().unwrap();
    let statuses: Vec<StatusCode> = futures_statuses(&s, &format!("/l/{capped_code}"), 5).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::FOUND).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::GONE).count(),
        3
    );

    // A deleted link is gone for good.
    let (st, _) = s.delete(&format!("/api/v1/links/{id}"), ADMIN_KEY).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert_eq!(
        follow(&s, &format!("/l/{code}"), BROWSER).await.status(),
        StatusCode::NOT_FOUND
    );
    s.stop().await;
}

/// A bot and a one-channel Telegram link to it, made through the API: the link's code and id.
async fn telegram_link(s: &TestServer) -> (String, String) {
    let bot = make_bot(s, ADMIN_KEY).await;
    let (st, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "channels": ["telegram"]}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let text = |k: &str| link[k].as_str().unwrap().to_string();
    (text("code"), text("id"))
}

async fn futures_statuses(s: &TestServer, path: &str, n: usize) -> Vec<StatusCode> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url) = (s.client.clone(), s.url(path));
        set.spawn(async move {
            client
                .get(url)
                .header("user-agent", BROWSER)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    set.join_all().await
}

async fn a_burst_of_concurrent_clicks_is_counted_exactly(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    make_entry(&s, &bot, "promo", None).await;
    let (_, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "channels": ["telegram"], "entry_point": "promo"}),
        )
        .await;
    let (code, id) = (link["code"].as_str().unwrap(), link["id"].as_str().unwrap());
    let n = 500;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, url) = (s.client.clone(), s.url(&format!("/l/{code}")));
        set.spawn(async move {
            // Ten distinct visitors (user agents), fifty clicks each.
            let ua = format!("{BROWSER} visitor/{}", i % 10);
            client
                .get(url)
                .header("user-agent", ua)
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    let statuses = set.join_all().await;
    assert!(statuses.iter().all(|st| *st == StatusCode::FOUND));
    let stats = clicks_reach(&s, id, n).await;
    assert_eq!(stats["unique_clicks"], 10);
    let today = botlink_server::util::format_day(botlink_server::util::day_of(
        botlink_server::util::now_ms(),
    ));
    assert_eq!(
        stats["by_day"],
        json!([{"key": today, "clicks": n, "unique_clicks": 10, "previews": 0, "starts": 0}])
    );
    let (st, ep) = s
        .get(
            &format!("/api/v1/bots/{bot}/entry_points/promo/stats"),
            ADMIN_KEY,
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{ep}");
    assert_eq!(
        (
            ep["clicks"].as_i64(),
            ep["by_utm_source"][0]["key"].as_str()
        ),
        (Some(n), Some("site"))
    );
    let (_, bot_stats) = s.get(&format!("/api/v1/bots/{bot}/stats"), ADMIN_KEY).await;
    assert_eq!(bot_stats["clicks"], n);
    assert_eq!(bot_stats["links"][0]["link_id"], id);
    assert_eq!(bot_stats["links"][0]["clicks"], n);
    let metrics = s.text("/metrics").await;
    assert!(
        metrics.contains("botlink_clicks_flushed_total"),
        "{metrics}"
    );
    // Redirects are served without the router's middleware, and still counted per route.
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("botlink_http_requests_total{")
                && l.contains(r#"route="/l/{code}""#)
                && l.contains(r#"status="302""#)),
        "{metrics}"
    );
    s.stop().await;
}

/// Reads until the server closes `stream` (end of stream, a reset, or a 408 before it), within
/// `within`; false when it is still open then.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, within: std::time::Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 512];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => buf[..n].starts_with(b"HTTP/1.1 408"),
        Err(_) => false,
    }
}

/// A connection that sends no whole request head in time (nothing at all, a byte now and
/// then, or nothing more after an answer) is closed; one that asks in time is answered.
#[tokio::test]
async fn connections_that_send_no_request_in_time_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = std::time::Duration::from_millis(300);
    let s = TestServer::start_with(|c| c.idle_timeout = timeout).await;
    let mut silent = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut trickle = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // A byte every 30 ms: the head would take a second; the server closes it first.
    let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
    let mut sent = 0;
    for b in head {
        if trickle.write_all(&[*b]).await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(timeout / 10).await;
    }
    assert!(
        sent < head.len(),
        "the server still read after {sent} bytes"
    );
    assert!(closed_by_server(&mut silent, timeout * 10).await);
    assert!(closed_by_server(&mut trickle, timeout * 10).await);

    // In time: answered, twice on one connection; then, idle, it is closed.
    let mut polite = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..2 {
        polite
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = polite.read(&mut buf).await.unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::sleep(timeout / 2).await;
    }
    assert!(
        !closed_by_server(&mut polite, timeout / 4).await,
        "still open within the timeout"
    );
    assert!(
        closed_by_server(&mut polite, timeout * 10).await,
        "closed once idle"
    );
    s.stop().await;
}

/// A request body that does not arrive whole by the deadline is a 408 with the error body,
/// and holds up neither the connection nor the server's shutdown.
#[tokio::test]
async fn a_body_that_trickles_past_its_deadline_is_a_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = std::time::Duration::from_millis(300);
    let s = TestServer::start_with(|c| c.body_deadline = deadline).await;
    let stream = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST /api/v1/bots HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    // A byte every 50 ms: the body would take five seconds.
    let trickle = async move {
        for _ in 0..99 {
            tokio::time::sleep(deadline / 6).await;
            if writer.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    let read = async {
        let mut buf = [0u8; 1024];
        let n = reader.read(&mut buf).await.unwrap_or(0);
        buf[..n].to_vec()
    };
    let answer = tokio::select! {
        answer = read => answer,
        _ = trickle => Vec::new(),
    };
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"request_timeout\""), "{answer}");
    assert!(started.elapsed() < deadline * 10);
    let stopping = std::time::Instant::now();
    s.stop().await;
    assert!(stopping.elapsed() < std::time::Duration::from_secs(2));
}

/// A link that expires while the link cache holds it is refused from the cache: the answer
/// without a database lookup checks the expiry too.
async fn a_link_that_expires_in_the_cache_is_gone(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    let expires = botlink_server::util::now_ms() + 1_500;
    let (st, link) = s
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "channels": ["telegram"],
                   "expires_at": botlink_server::util::format_rfc3339(expires)}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let path = format!("/l/{}", link["code"].as_str().unwrap());
    // Looked up, then served from the cache.
    for _ in 0..2 {
        assert_eq!(follow(&s, &path, BROWSER).await.status(), StatusCode::FOUND);
    }
    let wait = expires - botlink_server::util::now_ms() + 50;
    tokio::time::sleep(std::time::Duration::from_millis(wait.max(0) as u64)).await;
    assert_eq!(follow(&s, &path, BROWSER).await.status(), StatusCode::GONE);
    s.stop().await;
}

/// A click queue with room for two: a burst of 200 redirects finds it full, waits for room
/// instead of answering at once, and every click is counted. The redirects may wait 10 s for
/// room (200 ms by default), so that a busy machine, which slows the writer, cannot make this
/// test drop clicks: that a click is dropped once the wait is over is tested beside the queue.
async fn a_full_click_queue_slows_redirects_and_loses_no_click(b: Backend) {
    let Some(s) = TestServer::start_on(b, |c| {
        c.click_queue = 2;
        c.click_batch = 2;
        c.click_full_wait = Duration::from_secs(10);
    })
    .await
    else {
        return;
    };
    let (code, id) = telegram_link(&s).await;
    let n = 200;
    let statuses = futures_statuses(&s, &format!("/l/{code}"), n).await;
    assert!(
        statuses.iter().all(|st| *st == StatusCode::FOUND),
        "{statuses:?}"
    );
    let stats = clicks_reach(&s, &id, n as i64).await;
    assert_eq!(stats["clicks"], n);
    s.stop().await;
}

/// `/healthz`: its status and JSON body.
async fn health(s: &TestServer) -> (StatusCode, Value) {
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Polls `/healthz` until it answers `want`, for up to 5 s; returns its body.
async fn health_becomes(s: &TestServer, want: StatusCode) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (st, body) = health(s).await;
        if st == want {
            return body;
        }
        assert!(Instant::now() < deadline, "/healthz still {st}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A database that takes no writes for a while (another process holds SQLite's write lock):
/// redirects go on answering, `/healthz` tells that clicks are not being written, and once
/// the lock is gone every click is written and counted, and `/healthz` is well again.
#[tokio::test]
async fn clicks_wait_out_a_locked_database_and_healthz_tells() {
    let s = TestServer::start_with(|c| c.click_write_grace = Duration::from_millis(300)).await;
    let (code, id) = telegram_link(&s).await;
    assert_eq!(health(&s).await, (StatusCode::OK, json!({"status": "ok"})));

    let file = s.database_url.strip_prefix("sqlite://").unwrap();
    let lock = rusqlite::Connection::open(file).unwrap();
    lock.busy_timeout(Duration::from_secs(5)).unwrap();
    lock.execute_batch("BEGIN IMMEDIATE").unwrap();
    let n = 50;
    let statuses = futures_statuses(&s, &format!("/l/{code}"), n).await;
    assert!(
        statuses.iter().all(|st| *st == StatusCode::FOUND),
        "redirects do not wait for the database: {statuses:?}"
    );
    let body = health_becomes(&s, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["status"], "clicks not written", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("waited") && message.contains("dropped once it is full"),
        "{message}"
    );
    assert!(
        body["clicks_waiting"].as_u64().unwrap() <= n as u64,
        "{body}"
    );

    lock.execute_batch("ROLLBACK").unwrap();
    drop(lock);
    assert_eq!(
        health_becomes(&s, StatusCode::OK).await,
        json!({"status": "ok"})
    );
    let stats = clicks_reach(&s, &id, n as i64).await;
    assert_eq!(stats["clicks"], n);
    s.stop().await;
}

/// Redirects take a short path past the router unless their path is percent-encoded (the
/// router decodes it): both paths answer alike and count alike.
async fn encoded_and_plain_short_paths_answer_alike(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let (code, id) = telegram_link(&s).await;
    let (code, id) = (code.as_str(), id.as_str());
    let encoded = format!("%{:02X}{}", code.as_bytes()[0], &code[1..]);
    let paths = [
        format!("/l/{code}"),
        format!("/l/{encoded}"),
        format!("/l/{code}/telegram"),
        format!("/l/{encoded}/telegram"),
    ];
    for path in &paths {
        let resp = s.client.get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::FOUND, "{path}");
        let location = resp.headers()["location"].to_str().unwrap();
        assert!(
            location.starts_with(&format!("https://t.me/shop_bot?start=l_{code}_")),
            "{path}: {location}"
        );
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        // HEAD: the same answer, no click.
        let head = s.client.head(s.url(path)).send().await.unwrap();
        assert_eq!(head.status(), StatusCode::FOUND, "HEAD {path}");
    }
    for path in [format!("/l/{code}/line"), format!("/l/{encoded}/line")] {
        let resp = s.client.get(s.url(&path)).send().await.unwrap();
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{path}: not a channel of the link"
        );
    }
    let resp = s
        .client
        .post(s.url(&format!("/l/{code}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    let stats = clicks_reach(&s, id, paths.len() as i64).await;
    assert_eq!(stats["by_channel"][0]["key"], "telegram");
    s.stop().await;
}

async fn shutdown_flushes_queued_clicks(b: Backend) {
    // Clicks wait up to a minute in the queue: only the shutdown flush can write them.
    let Some(s) = TestServer::start_on(b, |c| {
        c.click_flush_ms = 60_000;
        c.click_batch = 100_000;
    })
    .await
    else {
        return;
    };
    let (code, id) = telegram_link(&s).await;
    for _ in 0..25 {
        assert_eq!(
            follow(&s, &format!("/l/{code}"), BROWSER).await.status(),
            StatusCode::FOUND
        );
    }
    let (dir, db_url) = s.stop().await;
    let s = TestServer::start_in(dir, db_url, |_| {}).await;
    let (_, stats) = s.get(&format!("/api/v1/links/{id}/stats"), ADMIN_KEY).await;
    assert_eq!(stats["clicks"], 25, "{stats}");
    s.stop().await;
}

async fn rate_limit_per_key_answers_429_with_retry_after(b: Backend) {
    let Some(s) = TestServer::start_on(b, |c| c.rate_limit_per_second = 2).await else {
        return;
    };
    let mut limited = None;
    for _ in 0..20 {
        let resp = s
            .client
            .get(s.url("/api/v1/bots"))
            .bearer_auth(ADMIN_KEY)
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(resp);
            break;
        }
    }
    let resp = limited.expect("20 quick requests exceed 2 per second with a burst of 4");
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    s.stop().await;
}

async fn health_metrics_and_api_docs(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let resp = s.client.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let spec: Value = s
        .client
        .get(s.url("/api-docs/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/api/v1/links"]["post"].is_object(), "{spec}");
    assert!(spec["paths"]["/api/v1/bots/{bot_id}/stats"]["get"].is_object());
    let resp = s.client.get(s.url("/api-docs/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.unwrap().contains("swagger"));
    s.stop().await;
}

async fn racing_for_one_slug_makes_one_link_and_clear_conflicts(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let client = s.client.clone();
        let url = s.url("/api/v1/links");
        let bot = bot.clone();
        set.spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(ADMIN_KEY)
                .json(&json!({"bot_id": bot, "channels": ["telegram"], "slug": "summer-sale"}))
                .send()
                .await
                .unwrap();
            let st = r.status();
            (st, r.json::<Value>().await.unwrap())
        });
    }
    let answers = set.join_all().await;
    let created = answers
        .iter()
        .filter(|(st, _)| *st == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    for (st, body) in answers.iter().filter(|(st, _)| *st != StatusCode::CREATED) {
        assert_error(*st, body, StatusCode::CONFLICT, "conflict");
    }
    let (st, list) = s.get("/api/v1/links", ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    let links = list["links"].as_array().expect("a list");
    assert_eq!(links.len(), 1, "{list}");
    assert_eq!(links[0]["slug"], "summer-sale", "{list}");
    let r = follow(&s, "/l/summer-sale", BROWSER).await;
    assert_eq!(r.status(), StatusCode::FOUND);
}

async fn an_oversized_body_is_a_413_with_the_error_body_and_creates_nothing(b: Backend) {
    let Some(s) = TestServer::start_on(b, |_| {}).await else {
        return;
    };
    let bot = make_bot(&s, ADMIN_KEY).await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let r = s
        .client
        .post(s.url("/api/v1/links"))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"bot_id": "{bot}", "payload": {{"variables": {{"note": "{huge}"}}}}}}"#
        ))
        .send()
        .await
        .unwrap();
    let st = r.status();
    let body: Value = r.json().await.unwrap();
    assert_error(st, &body, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let (st, list) = s.get("/api/v1/links", ADMIN_KEY).await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["links"].as_array().map(Vec::len), Some(0), "{list}");
}

on_both_backends!(
    a_full_click_queue_slows_redirects_and_loses_no_click,
    keys_roles_and_workspace_isolation,
    secrets_are_sealed_and_never_returned,
    links_in_every_scheme,
    bad_input_is_a_clear_4xx,
    redirects_previews_and_their_counts,
    a_burst_of_concurrent_clicks_is_counted_exactly,
    a_link_that_expires_in_the_cache_is_gone,
    encoded_and_plain_short_paths_answer_alike,
    shutdown_flushes_queued_clicks,
    racing_for_one_slug_makes_one_link_and_clear_conflicts,
    an_oversized_body_is_a_413_with_the_error_body_and_creates_nothing,
    health_metrics_and_api_docs,
    rate_limit_per_key_answers_429_with_retry_after,
);
