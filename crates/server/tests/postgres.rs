//! The service on PostgreSQL, the multi-instance mode: two `botlink` servers share one
//! database; a link made on one redirects on the other, and clicks from both add up exactly.
//!
//! PostgreSQL comes from `BOTLINK_TEST_POSTGRES_URL` (default the machine's
//! `postgres://postgres@127.0.0.1:5432/test`). Each run works in a schema of its own, dropped
//! at the end. Without a reachable PostgreSQL the test says it skipped; with `CI=true` it fails.

use botlink_testkit::{ADMIN_KEY, TestServer};
use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection as _;

async fn schema_url() -> Option<(String, String, String)> {
    let base = std::env::var("BOTLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let mut conn = match sqlx::PgConnection::connect(&base).await {
        Ok(c) => c,
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("PostgreSQL must be reachable in CI at {base}: {e}")
        }
        Err(e) => {
            eprintln!("skipped: PostgreSQL not reachable at {base}: {e}");
            return None;
        }
    };
    let schema = format!(
        "t_http_{}",
        botlink_server::util::random_code(10).to_lowercase()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some((base, schema, url))
}

#[tokio::test]
async fn two_instances_share_one_postgres_database() {
    let Some((base, schema, url)) = schema_url().await else {
        return;
    };
    let a = TestServer::start_with(|c| c.database_url = url.clone()).await;
    let b = TestServer::start_with(|c| c.database_url = url.clone()).await;

    let (st, bot) = a
        .post("/api/v1/bots", ADMIN_KEY, json!({"name": "Shop", "channels": {"telegram": {"username": "shop_bot", "token": "1:x"}}}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{bot}");
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

    let mut conn = sqlx::PgConnection::connect(&base).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&mut conn)
        .await
        .unwrap();
}
