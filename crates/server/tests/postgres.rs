//! The service on PostgreSQL, the multi-instance mode: two `botlink` servers share one
//! database; a link made on one redirects on the other, and clicks from both add up exactly.
//!
//! PostgreSQL comes from `BOTLINK_TEST_POSTGRES_URL` (default the machine's
//! `postgres://postgres@127.0.0.1:5432/test`). Each test works in a schema of its own (testkit
//! drops those an hour old). Without a reachable PostgreSQL the test says it skipped; with
//! `CI=true` it fails.

use std::time::{Duration, Instant};

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

/// A new schema of the test database, and the database's own URL (for a test's direct
/// connection): `None` when PostgreSQL cannot be reached outside CI (see testkit).
async fn schema_url() -> Option<(String, String)> {
    let url = botlink_testkit::postgres_schema_url().await?;
    Some((botlink_testkit::postgres_base_url(), url))
}

/// Two servers on the database at `url`, and a Telegram bot made on the first. They keep
/// links 10 min whether or not they hear of changes, so that a change another instance made
/// can only be seen in time through its announcement.
async fn two_instances(url: &str) -> (TestServer, TestServer, serde_json::Value) {
    let start = || {
        TestServer::start_with(|c| {
            c.database_url = url.to_owned();
            c.link_cache_ms = Some(600_000);
        })
    };
    let (a, b) = (start().await, start().await);
    let (st, bot) = a
        .post("/api/v1/bots", ADMIN_KEY, json!({"name": "Shop", "channels": {"telegram": {"username": "shop_bot", "token": "1:x"}}}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    (a, b, bot)
}

#[tokio::test]
async fn two_instances_share_one_postgres_database() {
    let Some((_, url)) = schema_url().await else {
        return;
    };
    let (a, b, bot) = two_instances(&url).await;
    let (st, link) = a
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot["id"], "slug": "pg-summer"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let id = link["id"].as_str().unwrap().to_string();
    // The slug is taken for both instances.
    let (st, _) = b
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot["id"], "slug": "pg-summer"}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let mut set = tokio::task::JoinSet::new();
    for i in 0..200 {
        let server = if i % 2 == 0 { &a } else { &b };
        let (client, url) = (server.client.clone(), server.url("/l/pg-summer"));
        set.spawn(async move {
            client
                .get(url)
                .header("user-agent", "Mozilla/5.0")
                .send()
                .await
                .unwrap()
                .status()
        });
    }
    assert!(set.join_all().await.iter().all(|s| *s == StatusCode::FOUND));
    // Stop both: each flushes its queue; then every click is in the shared database.
    a.stop().await;
    let (dir, _) = b.stop().await;
    let c = TestServer::start_in(dir, url.clone(), |_| {}).await;
    let (_, stats) = c.get(&format!("/api/v1/links/{id}/stats"), ADMIN_KEY).await;
    assert_eq!(stats["clicks"], 200, "{stats}");
    assert_eq!(stats["by_channel"][0]["key"], "telegram");
    c.stop().await;
}

/// What `path` answers on `server` (a browser's GET, redirects not followed).
async fn status_of(server: &TestServer, path: &str) -> StatusCode {
    server
        .client
        .get(server.url(path))
        .header("user-agent", "Mozilla/5.0")
        .send()
        .await
        .unwrap()
        .status()
}

/// Asks `path` of `server` until it answers `want`, for up to 3 s (the link cache keeps a
/// link 10 min: only the announcement of the change can make it answer in time).
async fn answers_soon(server: &TestServer, path: &str, want: StatusCode) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let got = status_of(server, path).await;
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A link that one instance changes, the others forget at once (they keep links for 10 min):
/// disabled on B, A answers 410 for its slug and its code; deleted on B, 404 on A. When A
/// loses the connection it listens on, it listens again and goes on hearing of changes.
#[tokio::test]
async fn a_link_changed_on_one_instance_is_forgotten_by_the_others() {
    let Some((base, url)) = schema_url().await else {
        return;
    };
    let (a, b, bot) = two_instances(&url).await;
    let mut links = Vec::new();
    for slug in ["pg-spring", "pg-autumn"] {
        let (st, link) = b
            .post(
                "/api/v1/links",
                ADMIN_KEY,
                json!({"bot_id": bot["id"], "slug": slug}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{link}");
        let code = link["code"].as_str().unwrap().to_owned();
        let id = link["id"].as_str().unwrap().to_owned();
        // A caches it, by slug and by code.
        for path in [format!("/l/{slug}"), format!("/l/{code}")] {
            assert_eq!(status_of(&a, &path).await, StatusCode::FOUND, "{path}");
        }
        links.push((slug, code, id));
    }

    let (slug, code, id) = &links[0];
    let (st, body) = b
        .patch(
            &format!("/api/v1/links/{id}"),
            ADMIN_KEY,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    answers_soon(&a, &format!("/l/{slug}"), StatusCode::GONE).await;
    answers_soon(&a, &format!("/l/{code}"), StatusCode::GONE).await;
    let (st, _) = b
        .patch(
            &format!("/api/v1/links/{id}"),
            ADMIN_KEY,
            json!({"disabled": false}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    answers_soon(&a, &format!("/l/{slug}"), StatusCode::FOUND).await;

    // Both instances lose the connections they listen on.
    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query = 'LISTEN \"botlink_links\"' AND pid <> pg_backend_pid()",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(ended.len() >= 2, "both instances listen: {ended:?}");
    let (slug, code, id) = &links[1];
    assert_eq!(
        status_of(&a, &format!("/l/{slug}")).await,
        StatusCode::FOUND
    );
    // A listens again: with links kept 10 min, the only ways A can stop answering from the
    // copy it has of the first link, disabled now on B, are to hear of it or to forget every
    // link when it listens again; either way, once it answers 410, it listens.
    let (slug0, id0) = (&links[0].0, &links[0].2);
    let (st, body) = b
        .patch(
            &format!("/api/v1/links/{id0}"),
            ADMIN_KEY,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    answers_soon(&a, &format!("/l/{slug0}"), StatusCode::GONE).await;
    // Once A says it listens again, a link it has just looked up (and keeps for 10 min) can
    // only be forgotten by hearing of its deletion.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !a
        .text("/metrics")
        .await
        .contains("botlink_link_changes_listening 1")
    {
        assert!(Instant::now() < deadline, "A does not listen again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status_of(&a, &format!("/l/{slug}")).await,
        StatusCode::FOUND
    );
    // Deleted now, A must hear of it.
    let (st, body) = b.delete(&format!("/api/v1/links/{id}"), ADMIN_KEY).await;
    assert!(st.is_success(), "{st} {body}");
    answers_soon(&a, &format!("/l/{slug}"), StatusCode::NOT_FOUND).await;
    answers_soon(&a, &format!("/l/{code}"), StatusCode::NOT_FOUND).await;

    a.stop().await;
    b.stop().await;
}

/// Where `path` sends a browser on `server`, once it sends it somewhere starting with `want`,
/// for up to 3 s (as [`answers_soon`]).
async fn goes_soon(server: &TestServer, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let resp = server
            .client
            .get(server.url(path))
            .header("user-agent", "Mozilla/5.0")
            .send()
            .await
            .unwrap();
        let to = resp
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_owned());
        if resp.status() == StatusCode::FOUND && to.as_deref().is_some_and(|t| t.starts_with(want))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} still answers {} to {to:?}, not {want}",
            resp.status()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A bot changed or deleted on one instance: every instance's cached links follow at once
/// (they keep links 10 min): a removed channel is no longer followed, a changed Viber account
/// is, and a deleted bot's links answer 404, short links and QR codes alike. (And its web
/// chat page, on PostgreSQL.)
#[tokio::test]
async fn a_bot_changed_or_deleted_on_one_instance_reaches_its_links_everywhere() {
    let Some((_, url)) = schema_url().await else {
        return;
    };
    let (a, b, _) = two_instances(&url).await;
    let (st, bot) = b
        .post(
            "/api/v1/bots",
            ADMIN_KEY,
            json!({"name": "Two", "channels": {
                "telegram": {"username": "two_bot", "token": "1:x"},
                "viber": {"uri": "twoshop", "token": "v"},
            }}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
    let bot = bot["id"].as_str().unwrap().to_owned();
    let (st, link) = b
        .post(
            "/api/v1/links",
            ADMIN_KEY,
            json!({"bot_id": bot, "slug": "pg-both"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{link}");
    let code = link["code"].as_str().unwrap().to_owned();
    // Both instances cache it.
    for s in [&a, &b] {
        goes_soon(s, "/l/pg-both/telegram", "https://t.me/two_bot?start=").await;
        goes_soon(
            s,
            &format!("/l/{code}/viber"),
            "viber://pa?chatURI=twoshop&",
        )
        .await;
        assert_eq!(status_of(s, "/l/pg-both/qr.svg").await, StatusCode::OK);
    }

    let (st, body) = a
        .patch(
            &format!("/api/v1/bots/{bot}"),
            ADMIN_KEY,
            json!({"channels": {"telegram": null, "viber": {"uri": "twonew"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    for s in [&a, &b] {
        answers_soon(s, "/l/pg-both/telegram", StatusCode::NOT_FOUND).await;
        goes_soon(s, &format!("/l/{code}/viber"), "viber://pa?chatURI=twonew&").await;
        goes_soon(s, "/l/pg-both", "viber://pa?chatURI=twonew&").await;
    }

    // Its web chat, named by an id of its own (with a character LIKE would take for any),
    // is found on either instance.
    let (st, body) = a
        .patch(
            &format!("/api/v1/bots/{bot}"),
            ADMIN_KEY,
            json!({"channels": {"webchat": {"id": "two_chat"}}}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    for s in [&a, &b] {
        let page = s
            .client
            .get(s.url("/chat/two_chat?ref=l_x"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK);
        let page = page.text().await.unwrap();
        assert!(page.contains("chatURI=twonew&amp;context=l_x"), "{page}");
        assert_eq!(status_of(s, "/chat/two-chat").await, StatusCode::NOT_FOUND);
    }

    let (st, body) = a.delete(&format!("/api/v1/bots/{bot}"), ADMIN_KEY).await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(status_of(&b, "/chat/two_chat").await, StatusCode::NOT_FOUND);
    for s in [&a, &b] {
        for path in [
            "/l/pg-both".to_owned(),
            format!("/l/{code}"),
            format!("/l/{code}/viber"),
            "/l/pg-both/qr.svg".to_owned(),
            "/l/pg-both/qr.png".to_owned(),
        ] {
            answers_soon(s, &path, StatusCode::NOT_FOUND).await;
        }
    }

    a.stop().await;
    b.stop().await;
}
