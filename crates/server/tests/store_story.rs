//! The storage story: one realistic sequence that drives every store method, run on SQLite
//! (always) and on PostgreSQL (`BOTLINK_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`, each run in a fresh schema). When PostgreSQL
//! cannot be reached its half is skipped, unless `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use botlink_core::Channel;
use botlink_server::store::{
    self, ApiKeyId, Bot, BotChannel, BotId, BotPatch, BotStore, Bucket, Click, ClickId, ClickKind,
    ClickStore, ConnectOptions, DeepLinkOut, EntryPointPatch, LinkCount, LinkFilter, LinkId,
    LinkPatch, LinkStore, NewApiKey, NewBot, NewClick, NewEntryPoint, Payload, Role, StatsRange,
    StatsScope, Store, StoreError, Utm, WorkspaceId, WorkspaceStore,
};
use botlink_server::util::click_id;
use botlink_testkit::telegram_link;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;

/// 2024-05-02T00:00:00Z, the start of day 19845.
const T0: i64 = 1_714_608_000_000;
const DAY: i64 = 86_400_000;
const D1: i64 = 19_845;
const D2: i64 = 19_846;

// ---------------------------------------------------------------------------------------
// Backends

async fn sqlite_store(dir: &TempDir, url_form: bool) -> Store {
    let path = dir.path().join("botlink.db");
    let url = if url_form {
        format!("sqlite:{}", path.display())
    } else {
        path.display().to_string()
    };
    let store = store::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    store.migrate().await.expect("migrating twice is a no-op");
    assert!(path.exists(), "the database file is created");
    store
}

/// A fresh schema in the test PostgreSQL database, dropped when this value is dropped.
struct PgSchema {
    url: String,
    schema: String,
}

impl PgSchema {
    /// `None` (after saying why) when PostgreSQL is not reachable outside CI.
    async fn create() -> Option<(PgSchema, Store)> {
        Self::create_through(i64::MAX).await
    }

    /// [`PgSchema::create`], with the migrations up to `version` only.
    async fn create_through(version: i64) -> Option<(PgSchema, Store)> {
        let url = std::env::var("BOTLINK_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let mut conn = match PgConnection::connect(&url).await {
            Ok(c) => c,
            Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
                panic!("PostgreSQL not reachable at {url}: {e} (CI=true, so this test must run)")
            }
            Err(e) => {
                println!("skipped: PostgreSQL not reachable at {url}: {e}");
                return None;
            }
        };
        let schema = format!("t_{:016x}", rand::random::<u64>());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .expect("create a test schema");
        conn.close().await.ok();
        let guard = PgSchema {
            url: url.clone(),
            schema: schema.clone(),
        };
        let options = ConnectOptions {
            postgres_schema: Some(schema),
            ..ConnectOptions::default()
        };
        let store = store::connect_with(&url, &options)
            .await
            .expect("connect the store to PostgreSQL");
        store
            .migrate_through(version)
            .await
            .expect("migrate PostgreSQL");
        store
            .migrate_through(version)
            .await
            .expect("migrating twice is a no-op");
        Some((guard, store))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // Drop runs outside async code: use a runtime of its own, on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = sqlx::query(AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test]
async fn story_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(sqlite_store(&dir, true).await);
    let started = Instant::now();
    story(store.clone()).await;
    println!("sqlite story: {:?}", started.elapsed());
    store.close().await;
}

#[tokio::test]
async fn story_on_postgres() {
    let Some((schema, store)) = PgSchema::create().await else {
        return;
    };
    let store = Arc::new(store);
    let started = Instant::now();
    story(store.clone()).await;
    println!("postgres story: {:?}", started.elapsed());
    store.close().await;
    drop(schema);
}

#[tokio::test]
async fn click_batch_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let store = sqlite_store(&dir, false).await;
    click_batch(&store, "sqlite").await;
    store.close().await;
}

#[tokio::test]
async fn click_batch_on_postgres() {
    let Some((schema, store)) = PgSchema::create().await else {
        return;
    };
    click_batch(&store, "postgres").await;
    store.close().await;
    drop(schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let store = Arc::new(sqlite_store(&dir, true).await);
    concurrent_writers(store.clone()).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_postgres() {
    let Some((schema, store)) = PgSchema::create().await else {
        return;
    };
    let store = Arc::new(store);
    concurrent_writers(store.clone()).await;
    store.close().await;
    drop(schema);
}

#[tokio::test]
async fn repeat_visitors_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let first = sqlite_store(&dir, false).await;
    // A second instance on the same file: it has seen none of the first one's visitors.
    let second = sqlite_store(&dir, false).await;
    repeat_visitors(&first, &second).await;
    first.close().await;
    second.close().await;
}

/// SQLite stores a batch's counts as deltas, added to the counts later: by whichever process
/// reads statistics first, or by the writer within its fold interval. Each delta is added
/// once. (A process killed before it adds its deltas leaves them to the next: see
/// `serve.rs`.)
#[tokio::test]
async fn counts_are_added_once_whichever_process_adds_them() {
    let dir = TempDir::new().unwrap();
    // Writers that fold a second after a batch, not the default 10 s, to keep the test short.
    let options = ConnectOptions {
        click_fold_every: std::time::Duration::from_secs(1),
        ..ConnectOptions::default()
    };
    let url = dir.path().join("botlink.db").display().to_string();
    let first = store::connect_with(&url, &options).await.unwrap();
    first.migrate().await.unwrap();
    let second = store::connect_with(&url, &options).await.unwrap();
    let (ws, _bot, link) = bot_with_link(&first, "two", "tWoPrOcS").await;
    let on = |id: &str, who: &str| telegram_click(&link, id, who);
    assert_eq!(
        first
            .insert_clicks([on("p1", "a"), on("p2", "b")].into())
            .await
            .unwrap(),
        2
    );
    // The second process adds the first one's deltas; the first finds none left.
    assert_eq!(link_clicks(&second, &ws, &link.id).await, (2, 2));
    assert_eq!(link_clicks(&first, &ws, &link.id).await, (2, 2));

    assert_eq!(
        second
            .insert_clicks([on("p3", "a"), on("p4", "c")].into())
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        first.insert_clicks([on("p5", "d")].into()).await.unwrap(),
        1
    );
    // Unread, the deltas wait; each writer adds its own within its second, and once.
    assert_eq!(raw_counts(&dir).await, (2, 2, 2));
    // Nothing to await from outside the writers: watch the table until they have folded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let counts = raw_counts(&dir).await;
        if counts == (0, 5, 4) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unread deltas not folded within 5 s: {counts:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(link_clicks(&first, &ws, &link.id).await, (5, 4));
    assert_eq!(link_clicks(&second, &ws, &link.id).await, (5, 4));

    // Both processes writing and reading statistics at once.
    futures_join4(
        click_and_read(&first, &ws, &link, "q"),
        click_and_read(&second, &ws, &link, "r"),
        click_and_read(&first, &ws, &link, "s"),
        click_and_read(&second, &ws, &link, "t"),
    )
    .await;
    assert_eq!(link_clicks(&first, &ws, &link.id).await, (805, 8));
    assert_eq!(raw_counts(&dir).await, (0, 805, 8));
    first.close().await;
    second.close().await;
}

/// 20 batches of 10 clicks on `link` by the visitor `who`, reading the link's statistics
/// after each.
async fn click_and_read(s: &Store, ws: &WorkspaceId, link: &store::Link, who: &str) {
    for b in 0..20 {
        let batch: Vec<NewClick> = (0..10)
            .map(|i| telegram_click(link, &format!("{who}{b:02}{i}"), who))
            .collect();
        assert_eq!(s.insert_clicks(batch.into()).await.unwrap(), 10);
        link_clicks(s, ws, &link.id).await;
    }
}

/// Straight from the SQLite file in `dir`: the rows of the click log not yet added to the
/// counts (a batch's, here), and the clicks and unique clicks in `click_counts`.
async fn raw_counts(dir: &TempDir) -> (i64, i64, i64) {
    let url = format!("sqlite:{}", dir.path().join("botlink.db").display());
    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let waiting: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM click_log WHERE seq > (SELECT seq FROM click_log_folded)",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    let (clicks, unique): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(clicks), 0), COALESCE(SUM(unique_clicks), 0) FROM click_counts",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    (waiting, clicks, unique)
}

/// A link's clicks and unique clicks.
async fn link_clicks(s: &Store, ws: &WorkspaceId, link: &LinkId) -> (i64, i64) {
    let s = s
        .stats(ws, StatsScope::Link(link.clone()), StatsRange::ALL)
        .await
        .unwrap();
    (s.clicks, s.unique_clicks)
}

#[tokio::test]
async fn repeat_visitors_on_postgres() {
    let Some((schema, first)) = PgSchema::create().await else {
        return;
    };
    let options = ConnectOptions {
        postgres_schema: Some(schema.schema.clone()),
        ..ConnectOptions::default()
    };
    let second = store::connect_with(&schema.url, &options)
        .await
        .expect("a second instance on the same schema");
    repeat_visitors(&first, &second).await;
    first.close().await;
    second.close().await;
    drop(schema);
}

#[tokio::test]
async fn urls_pick_the_backend() {
    let dir = TempDir::new().unwrap();
    let mem = store::connect("sqlite::memory:").await.unwrap();
    mem.migrate().await.unwrap();
    assert_eq!(mem.backend(), store::Backend::Sqlite);
    let ws = mem.ensure_workspace("m", T0).await.unwrap();
    // One in-memory database across the pool's connections.
    assert_eq!(mem.workspace_by_name("m").await.unwrap(), Some(ws));
    mem.ping().await.unwrap();

    let nested = dir.path().join("fresh.db");
    let s = store::connect(&format!("sqlite://{}", nested.display()))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    assert!(nested.exists());

    match store::connect("mysql://root@localhost/db").await {
        Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, "mysql://root@localhost/db"),
        other => panic!("expected UnsupportedUrl, got {other:?}"),
    }
}

/// An in-memory database is one database for the pool and the click writer (a thread and a
/// connection of its own): the clicks it writes are counted. A second in-memory store is
/// another database.
#[tokio::test]
async fn clicks_on_an_in_memory_database() {
    let mem = store::connect("sqlite::memory:").await.unwrap();
    mem.migrate().await.unwrap();
    let (ws, _bot, link) = bot_with_link(&mem, "mem", "mEmOrY1").await;
    let on = |id: &str, who: &str| telegram_click(&link, id, who);
    let batch = [on("m1", "a"), on("m2", "b"), on("m3", "a")];
    assert_eq!(mem.insert_clicks(batch[..].into()).await.unwrap(), 3);
    let scope = || StatsScope::Link(link.id.clone());
    let s = mem.stats(&ws, scope(), StatsRange::ALL).await.unwrap();
    assert_eq!((s.clicks, s.unique_clicks, s.previews), (3, 2, 0));
    assert_eq!(
        mem.click_by_id(&ClickId::from("m2"))
            .await
            .unwrap()
            .map(|c| c.link_id),
        Some(link.id.clone())
    );

    // Closed, the store answers with errors, its click writer too.
    mem.close().await;
    let err = mem.stats(&ws, scope(), StatsRange::ALL).await.unwrap_err();
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    let err = mem.insert_clicks([on("m4", "c")].into()).await.unwrap_err();
    assert!(matches!(err, StoreError::Writer(_)), "{err:?}");

    let other = store::connect("sqlite::memory:").await.unwrap();
    other.migrate().await.unwrap();
    assert_eq!(other.workspace_by_name("mem").await.unwrap(), None);
    let (ws2, _bot, link2) = bot_with_link(&other, "mem", "mEmOrY1").await;
    let again = NewClick {
        link_id: (&link2.id).into(),
        ..on("m1", "a")
    };
    assert_eq!(other.insert_clicks([again].into()).await.unwrap(), 1);
    let s = other
        .stats(&ws2, StatsScope::Link(link2.id), StatsRange::ALL)
        .await
        .unwrap();
    assert_eq!((s.clicks, s.unique_clicks), (1, 1));
}

// ---------------------------------------------------------------------------------------
// Helpers

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

fn conflict_text(r: Result<impl std::fmt::Debug, StoreError>) -> String {
    match r {
        Err(StoreError::Conflict { what }) => what,
        other => panic!("expected Conflict, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    match r {
        Err(StoreError::NotFound) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
}

fn utm(source: &str, medium: &str, campaign: &str) -> Utm {
    Utm {
        source: Some(source.into()),
        medium: Some(medium.into()),
        campaign: Some(campaign.into()),
        term: None,
        content: None,
    }
}

struct ClickSpec<'a> {
    id: &'a str,
    link: &'a store::Link,
    channel: Option<&'a str>,
    kind: ClickKind,
    at: i64,
    visitor: Option<&'a str>,
}

fn click(c: ClickSpec<'_>) -> NewClick {
    NewClick {
        id: c.id.into(),
        link_id: (&c.link.id).into(),
        channel: c.channel.map(|ch| ch.parse().expect("a channel name")),
        kind: c.kind,
        at: c.at,
        visitor: c.visitor.map(visitor),
    }
}

/// A Telegram click on `link` on 2024-05-02 by the visitor named `who`.
fn telegram_click(link: &store::Link, id: &str, who: &str) -> NewClick {
    click(ClickSpec {
        id,
        link,
        channel: Some("telegram"),
        kind: ClickKind::Click,
        at: T0 + 1,
        visitor: Some(who),
    })
}

/// A visitor hash named for the test: the name's bytes, zero-padded.
fn visitor(name: &str) -> [u8; 16] {
    let mut v = [0; 16];
    v[..name.len()].copy_from_slice(name.as_bytes());
    v
}

/// The counts of the link that both the story and the upgrade test click: three clicks (two
/// visitors) on Telegram and a preview on 2024-05-02, a click on Viber the next day.
fn assert_two_day_link(s: &store::Stats) {
    assert_eq!((s.clicks, s.unique_clicks, s.previews), (4, 3, 1));
    assert_eq!(
        s.by_channel,
        [
            bucket("telegram", 3, 2, 0),
            bucket("viber", 1, 1, 0),
            bucket("(none)", 0, 0, 1)
        ]
    );
    assert_eq!(
        s.by_day,
        [bucket("2024-05-02", 3, 2, 1), bucket("2024-05-03", 1, 1, 0)]
    );
}

fn bucket(key: &str, clicks: i64, unique_clicks: i64, previews: i64) -> Bucket {
    Bucket {
        key: key.into(),
        clicks,
        unique_clicks,
        previews,
        starts: 0,
    }
}

fn codes(links: &[store::Link]) -> Vec<&str> {
    links.iter().map(|l| l.code.as_str()).collect()
}

// ---------------------------------------------------------------------------------------
// The story

async fn story(store: Arc<Store>) {
    let stores = store.stores();
    let (workspaces, bots, links, clicks) =
        (stores.workspaces, stores.bots, stores.links, stores.clicks);

    // --- Workspaces: get-or-create, also when callers race.
    let acme = workspaces.ensure_workspace("acme", T0).await.unwrap();
    assert!(acme.id.as_str().starts_with("ws_"));
    assert_eq!((acme.name.as_str(), acme.created_at), ("acme", T0));
    assert_eq!(
        workspaces.ensure_workspace("acme", T0 + 5).await.unwrap(),
        acme,
        "the existing one"
    );
    let racers = futures_join4(
        workspaces.ensure_workspace("race", T0),
        workspaces.ensure_workspace("race", T0 + 1),
        workspaces.ensure_workspace("race", T0 + 2),
        workspaces.ensure_workspace("race", T0 + 3),
    )
    .await;
    let race_id = racers[0].as_ref().unwrap().id.clone();
    assert!(
        racers.iter().all(|r| r.as_ref().unwrap().id == race_id),
        "{racers:?}"
    );
    assert_eq!(
        workspaces.workspace_by_name("acme").await.unwrap(),
        Some(acme.clone())
    );
    assert_eq!(workspaces.workspace_by_name("nobody").await.unwrap(), None);
    assert_eq!(workspaces.workspace(&acme.id).await.unwrap(), acme);
    assert_not_found(workspaces.workspace(&WorkspaceId::new()).await);
    let ws = acme.id.clone();

    // --- API keys: stored by hash, found by hash until revoked.
    let secret = "blk_3fA9kQ2mZx7LpR1vT8wY5nB0cD4eF6gH";
    let key = workspaces
        .create_api_key(
            NewApiKey {
                workspace_id: ws.clone(),
                name: Some("ci".into()),
                role: Role::Links,
                key_hash: sha256_hex(secret),
                key_prefix: secret[..8].to_owned(),
            },
            T0 + 10,
        )
        .await
        .unwrap();
    assert!(key.id.as_str().starts_with("key_"));
    let found = workspaces
        .api_key_by_hash(&sha256_hex(secret))
        .await
        .unwrap()
        .expect("key found by its hash");
    assert_eq!(found, key);
    assert_eq!(
        (
            found.role,
            found.key_prefix.as_str(),
            found.workspace_id.clone()
        ),
        (Role::Links, "blk_3fA9", ws.clone())
    );
    assert_eq!(
        workspaces
            .api_key_by_hash(&sha256_hex("blk_wrong"))
            .await
            .unwrap(),
        None
    );
    let dup = NewApiKey {
        workspace_id: ws.clone(),
        name: None,
        role: Role::Admin,
        key_hash: sha256_hex(secret),
        key_prefix: "blk_3fA9".into(),
    };
    assert!(conflict_text(workspaces.create_api_key(dup.clone(), T0).await).contains("API key"));
    assert_not_found(
        workspaces
            .create_api_key(
                NewApiKey {
                    workspace_id: WorkspaceId::new(),
                    key_hash: sha256_hex("x"),
                    ..dup
                },
                T0,
            )
            .await,
    );
    let admin = workspaces
        .create_api_key(
            NewApiKey {
                workspace_id: ws.clone(),
                name: None,
                role: Role::Admin,
                key_hash: sha256_hex("blk_admin"),
                key_prefix: "blk_admi".into(),
            },
            T0 + 20,
        )
        .await
        .unwrap();
    workspaces.touch_api_key(&key.id, T0 + 30).await.unwrap();
    workspaces
        .revoke_api_key(&ws, &admin.id, T0 + 40)
        .await
        .unwrap();
    workspaces
        .revoke_api_key(&ws, &admin.id, T0 + 50)
        .await
        .unwrap();
    assert_eq!(
        workspaces
            .api_key_by_hash(&sha256_hex("blk_admin"))
            .await
            .unwrap(),
        None,
        "revoked"
    );
    let listed = workspaces.list_api_keys(&ws).await.unwrap();
    assert_eq!(
        listed.iter().map(|k| k.id.clone()).collect::<Vec<_>>(),
        vec![key.id.clone(), admin.id.clone()]
    );
    assert_eq!(
        (listed[0].last_used_at, listed[0].revoked_at),
        (Some(T0 + 30), None)
    );
    assert_eq!(
        listed[1].revoked_at,
        Some(T0 + 40),
        "revoking twice keeps the first time"
    );
    assert_not_found(workspaces.revoke_api_key(&ws, &ApiKeyId::new(), T0).await);

    // --- Bots with channels, in one transaction.
    let telegram = BotChannel {
        channel: Channel::Telegram,
        settings: json!({"username": "shop_bot"}),
        secrets: Some(b"sealed:token".to_vec()),
    };
    let viber = BotChannel {
        channel: Channel::Viber,
        settings: json!({"uri": "shop"}),
        secrets: None,
    };
    let shop = bots
        .create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "shop".into(),
                channels: vec![viber.clone(), telegram.clone()],
            },
            T0 + 100,
        )
        .await
        .unwrap();
    assert!(shop.id.as_str().starts_with("bot_"));
    let fetched = bots.get_bot(&ws, &shop.id).await.unwrap();
    assert_eq!(fetched, shop);
    assert_eq!(
        fetched.channels,
        vec![telegram.clone(), viber.clone()],
        "sorted by channel, secrets kept"
    );
    assert!(
        !serde_json::to_string(&fetched).unwrap().contains("sealed"),
        "secrets are never serialized"
    );
    let what = conflict_text(
        bots.create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "shop".into(),
                channels: vec![],
            },
            T0,
        )
        .await,
    );
    assert!(what.contains("\"shop\""), "{what}");
    let what = conflict_text(
        bots.create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "twice".into(),
                channels: vec![viber.clone(), viber.clone()],
            },
            T0,
        )
        .await,
    );
    assert!(what.contains("viber"), "{what}");
    let support = bots
        .create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "support".into(),
                channels: vec![],
            },
            T0 + 200,
        )
        .await
        .unwrap();
    let all = bots.list_bots(&ws).await.unwrap();
    assert_eq!(
        all.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["shop", "support"],
        "nothing of 'twice'"
    );
    assert_eq!(all[0], shop);
    assert_not_found(
        bots.create_bot(
            &WorkspaceId::new(),
            NewBot {
                id: BotId::new(),
                name: "x".into(),
                channels: vec![],
            },
            T0,
        )
        .await,
    );

    // --- Entry points.
    let welcome = bots
        .create_entry_point(
            &ws,
            &shop.id,
            NewEntryPoint {
                key: "welcome".into(),
                node: Some("n1".into()),
                default_field: None,
                utm: Utm {
                    source: Some("site".into()),
                    ..Utm::default()
                },
            },
            T0 + 300,
        )
        .await
        .unwrap();
    assert!(welcome.id.as_str().starts_with("ep_"));
    let promo = bots
        .create_entry_point(
            &ws,
            &shop.id,
            NewEntryPoint {
                key: "promo".into(),
                node: None,
                default_field: Some("coupon".into()),
                utm: Utm::default(),
            },
            T0 + 310,
        )
        .await
        .unwrap();
    assert_eq!(promo.utm, Utm::default());
    let what = conflict_text(
        bots.create_entry_point(
            &ws,
            &shop.id,
            NewEntryPoint {
                key: "welcome".into(),
                node: None,
                default_field: None,
                utm: Utm::default(),
            },
            T0,
        )
        .await,
    );
    assert!(what.contains("\"welcome\""), "{what}");
    // The same key on another bot is fine.
    let support_welcome = bots
        .create_entry_point(
            &ws,
            &support.id,
            NewEntryPoint {
                key: "welcome".into(),
                node: None,
                default_field: None,
                utm: Utm::default(),
            },
            T0 + 320,
        )
        .await
        .unwrap();
    assert_eq!(
        bots.entry_point(&ws, &shop.id, "welcome").await.unwrap(),
        welcome
    );
    assert_eq!(
        bots.entry_point_by_id(&ws, &welcome.id).await.unwrap(),
        welcome
    );
    assert_not_found(bots.entry_point(&ws, &shop.id, "nope").await);
    let eps = bots.list_entry_points(&ws, &shop.id).await.unwrap();
    assert_eq!(eps, vec![promo.clone(), welcome.clone()], "by key");
    assert_not_found(bots.list_entry_points(&ws, &BotId::new()).await);

    // --- Links: three at once.
    let t_links = T0 + 1_000;
    let mut l1 = telegram_link(&shop.id, "Ab3dE9x");
    l1.entry_point_id = Some(welcome.id.clone());
    l1.slug = Some("spring".into());
    l1.title = Some("Spring newsletter".into());
    l1.channels = vec![Channel::Telegram, Channel::Viber];
    l1.payload = Payload {
        external_id: Some("12345".into()),
        variables: BTreeMap::from([("city".into(), "Moscow".into())]),
        ..Payload::default()
    };
    l1.deep_links.insert(
        Channel::Viber,
        DeepLinkOut {
            url: "viber://pa?chatURI=shop&context=l_Ab3dE9x".into(),
            param: "l_Ab3dE9x".into(),
        },
    );
    l1.utm = Utm {
        term: Some("bots".into()),
        content: Some("header".into()),
        ..utm("newsletter", "email", "spring")
    };
    l1.signed = true;
    let mut l2 = telegram_link(&shop.id, "Zz9Yy8X");
    l2.entry_point_id = Some(promo.id.clone());
    l2.max_clicks = Some(2);
    l2.expires_at = Some(T0 + 30 * DAY);
    l2.utm = utm("ads", "cpc", "spring");
    l2.title = Some("Coupon 100%_off".into());
    let l3 = telegram_link(&shop.id, "q1W2e3R");
    let created = links
        .create_links(&ws, vec![l1, l2, l3], t_links)
        .await
        .unwrap();
    let [l1, l2, l3] = <[store::Link; 3]>::try_from(created.clone()).unwrap();
    assert!(l1.id.as_str().starts_with("lnk_"));
    assert_eq!(
        (l1.clicks_used, l1.disabled, l1.created_at, l1.updated_at),
        (0, false, t_links, t_links)
    );
    for l in &created {
        assert_eq!(
            &links.get_link(&ws, &l.id).await.unwrap(),
            l,
            "a link reads back as created"
        );
    }

    // A batch with one bad link writes nothing: a used slug, a used code, a slug equal to a
    // code, an entry point of another bot, an unknown bot.
    let mut fresh = telegram_link(&shop.id, "fReSh01");
    fresh.slug = Some("fresh".into());
    let mut again = telegram_link(&shop.id, "aGaIn02");
    again.slug = Some("spring".into());
    let what = conflict_text(
        links
            .create_links(&ws, vec![fresh.clone(), again], T0 + 2_000)
            .await,
    );
    assert!(what.contains("\"spring\""), "names the slug: {what}");
    let what = conflict_text(
        links
            .create_links(
                &ws,
                vec![fresh.clone(), telegram_link(&shop.id, "Ab3dE9x")],
                T0,
            )
            .await,
    );
    assert!(what.contains("\"Ab3dE9x\""), "names the code: {what}");
    let mut slug_is_code = telegram_link(&shop.id, "other01");
    slug_is_code.slug = Some("q1W2e3R".into());
    assert!(
        conflict_text(links.create_links(&ws, vec![slug_is_code], T0).await)
            .contains("\"q1W2e3R\"")
    );
    let mut code_is_slug = telegram_link(&shop.id, "spring");
    code_is_slug.slug = None;
    assert!(
        conflict_text(links.create_links(&ws, vec![code_is_slug], T0).await).contains("\"spring\"")
    );
    let mut wrong_ep = fresh.clone();
    wrong_ep.entry_point_id = Some(support_welcome.id.clone());
    assert_not_found(links.create_links(&ws, vec![wrong_ep], T0).await);
    assert_not_found(
        links
            .create_links(&ws, vec![telegram_link(&BotId::new(), "nobot01")], T0)
            .await,
    );
    assert_eq!(
        links.link_by_code_or_slug("fresh").await.unwrap(),
        None,
        "rolled back"
    );
    assert_eq!(
        links.link_by_code_or_slug("fReSh01").await.unwrap(),
        None,
        "rolled back"
    );
    let (page, _) = links.list_links(&ws, LinkFilter::default()).await.unwrap();
    assert_eq!(page.len(), 3);

    // Redirect lookup: by code, by slug, nothing else.
    assert_eq!(
        links
            .link_by_code_or_slug("Ab3dE9x")
            .await
            .unwrap()
            .as_ref(),
        Some(&l1)
    );
    assert_eq!(
        links.link_by_code_or_slug("spring").await.unwrap().as_ref(),
        Some(&l1)
    );
    assert_eq!(
        links.link_by_code_or_slug("ab3de9x").await.unwrap(),
        None,
        "codes are case-sensitive"
    );
    assert_eq!(links.link_by_code_or_slug("").await.unwrap(), None);
    // The same lookup without waiting (a SQLite file: on the caller's thread) answers the
    // same; PostgreSQL declines it, and the pool is asked.
    for code in ["Ab3dE9x", "spring", "ab3de9x", ""] {
        let pooled = links.link_by_code_or_slug(code).await.unwrap();
        match store.link_by_code_or_slug_now(code) {
            Some(now) => assert_eq!(now.unwrap(), pooled, "{code:?}"),
            None => assert_eq!(store.backend(), store::Backend::Postgres, "{code:?}"),
        }
    }
    if store.backend() == store::Backend::Sqlite {
        assert!(store.link_by_code_or_slug_now("spring").is_some());
    }

    // Listing: newest first (ties by id, newest first), in pages, with filters.
    let mut l4_new = telegram_link(&support.id, "sUpP0rt");
    l4_new.title = Some("Support".into());
    let l4 = links
        .create_links(&ws, vec![l4_new], T0 + 3_000)
        .await
        .unwrap()
        .remove(0);
    let mut expect = vec![l3.clone(), l2.clone(), l1.clone()];
    expect.sort_by(|a, b| b.id.cmp(&a.id));
    expect.insert(0, l4.clone());
    let (p1, c1) = links
        .list_links(
            &ws,
            LinkFilter {
                limit: Some(2),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p1, expect[..2]);
    let c1 = c1.expect("a next page");
    let (p2, c2) = links
        .list_links(
            &ws,
            LinkFilter {
                limit: Some(2),
                cursor: Some(c1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p2, expect[2..]);
    assert_eq!(c2, None, "exactly two pages");
    let list = |f: LinkFilter| {
        let links = links.clone();
        let ws = ws.clone();
        async move { links.list_links(&ws, f).await.unwrap().0 }
    };
    assert_eq!(
        codes(
            &list(LinkFilter {
                bot_id: Some(support.id.clone()),
                ..Default::default()
            })
            .await
        ),
        ["sUpP0rt"]
    );
    assert_eq!(
        codes(
            &list(LinkFilter {
                entry_point_id: Some(promo.id.clone()),
                ..Default::default()
            })
            .await
        ),
        ["Zz9Yy8X"]
    );
    let spring = list(LinkFilter {
        utm_campaign: Some("spring".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(spring.len(), 2);
    assert_eq!(
        codes(
            &list(LinkFilter {
                utm_source: Some("ads".into()),
                utm_medium: Some("cpc".into()),
                ..Default::default()
            })
            .await
        ),
        ["Zz9Yy8X"]
    );
    assert_eq!(
        codes(
            &list(LinkFilter {
                q: Some("NEWSLETTER".into()),
                ..Default::default()
            })
            .await
        ),
        ["Ab3dE9x"]
    );
    assert_eq!(
        codes(
            &list(LinkFilter {
                q: Some("q1w2".into()),
                ..Default::default()
            })
            .await
        ),
        ["q1W2e3R"]
    );
    assert_eq!(
        list(LinkFilter {
            q: Some("SPRING".into()),
            ..Default::default()
        })
        .await
        .len(),
        2,
        "slug or campaign"
    );
    assert_eq!(
        codes(
            &list(LinkFilter {
                q: Some("100%_".into()),
                ..Default::default()
            })
            .await
        ),
        ["Zz9Yy8X"]
    );
    assert_eq!(
        list(LinkFilter {
            q: Some("%".into()),
            bot_id: Some(support.id.clone()),
            ..Default::default()
        })
        .await,
        []
    );
    match links
        .list_links(
            &ws,
            LinkFilter {
                cursor: Some("not-a-cursor".into()),
                ..Default::default()
            },
        )
        .await
    {
        Err(StoreError::InvalidCursor) => {}
        other => panic!("expected InvalidCursor, got {other:?}"),
    }

    // Limited links: two uses, then none, also when redirects race.
    let uses = futures_join4(
        links.try_consume_click(&l2.id),
        links.try_consume_click(&l2.id),
        links.try_consume_click(&l2.id),
        links.try_consume_click(&l2.id),
    )
    .await;
    assert_eq!(
        uses.iter().filter(|r| *r.as_ref().unwrap()).count(),
        2,
        "{uses:?}"
    );
    assert_eq!(links.get_link(&ws, &l2.id).await.unwrap().clicks_used, 2);
    assert!(links.try_consume_click(&l1.id).await.unwrap(), "no limit");
    assert!(!links.try_consume_click(&LinkId::new()).await.unwrap());

    // --- Clicks: one batch, with a duplicate id and a click of a link that no longer exists.
    let d1 = T0 + 3_600_000; // 2024-05-02 01:00
    let d2 = T0 + DAY + 60_000; // 2024-05-03 00:01
    let ghost = store::Link {
        id: LinkId::new(),
        ..l3.clone()
    };
    let spec =
        |id: &str, link: &store::Link, channel: Option<&str>, kind, at, visitor: Option<&str>| {
            click(ClickSpec {
                id,
                link,
                channel,
                kind,
                at,
                visitor,
            })
        };
    use ClickKind::{Click as C, Preview as P};
    let batch = vec![
        spec("c1", &l1, Some("telegram"), C, d1, Some("v1")),
        spec("c2", &l1, Some("telegram"), C, d1 + 1, Some("v1")),
        spec("c3", &l1, Some("telegram"), C, d1 + 2, Some("v2")),
        spec("c4", &l1, Some("viber"), C, d2, Some("v3")),
        spec("c5", &l1, None, P, d1 + 3, None),
        spec("c6", &l2, Some("telegram"), C, d2 + 1, Some("v1")),
        spec("c7", &l3, None, C, d1 + 4, None),
        spec("c1", &l1, Some("telegram"), C, d1 + 5, Some("v9")),
        spec("c8", &ghost, None, C, d1, None),
    ];
    assert_eq!(
        clicks.insert_clicks(batch[..].into()).await.unwrap(),
        8,
        "the duplicate id skipped; the deleted link's click logged (and counted nowhere)"
    );
    assert_eq!(
        clicks.insert_clicks(batch[..].into()).await.unwrap(),
        0,
        "idempotent"
    );
    assert_eq!(clicks.insert_clicks(Vec::new().into()).await.unwrap(), 0);
    let c4 = clicks
        .click_by_id(&ClickId::from("c4"))
        .await
        .unwrap()
        .expect("click c4");
    assert_eq!(
        c4,
        Click {
            id: ClickId::from("c4"),
            link_id: l1.id.clone(),
            workspace_id: ws.clone(),
            bot_id: shop.id.clone(),
            entry_point_id: Some(welcome.id.clone()),
            channel: Some(Channel::Viber),
            kind: C,
            at: d2,
            day: D2,
            visitor: Some(hex::encode(visitor("v3"))),
            utm_source: Some("newsletter".into()),
            utm_medium: Some("email".into()),
            utm_campaign: Some("spring".into()),
        }
    );
    assert_eq!(
        clicks
            .click_by_id(&ClickId::from("c1"))
            .await
            .unwrap()
            .unwrap()
            .visitor,
        Some(hex::encode(visitor("v1")))
    );
    assert_eq!(
        clicks.click_by_id(&ClickId::from("c8")).await.unwrap(),
        None
    );

    // --- Statistics.
    let s = clicks
        .stats(&ws, StatsScope::Link(l1.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_two_day_link(&s);
    assert_eq!(s.by_utm_source, [bucket("newsletter", 4, 3, 1)]);
    assert_eq!(s.by_utm_medium, [bucket("email", 4, 3, 1)]);
    assert_eq!(s.by_utm_campaign, [bucket("spring", 4, 3, 1)]);
    let second_day = clicks
        .stats(
            &ws,
            StatsScope::Link(l1.id.clone()),
            StatsRange::days(D2, D2),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            second_day.clicks,
            second_day.unique_clicks,
            second_day.previews
        ),
        (1, 1, 0)
    );
    assert_eq!(second_day.by_day, [bucket("2024-05-03", 1, 1, 0)]);
    let from_d2 = StatsRange {
        from_day: Some(D2),
        to_day: None,
    };
    assert_eq!(
        clicks
            .stats(&ws, StatsScope::Bot(shop.id.clone()), from_d2)
            .await
            .unwrap()
            .clicks,
        2
    );
    let until_d1 = StatsRange {
        from_day: None,
        to_day: Some(D1),
    };
    assert_eq!(
        clicks
            .stats(&ws, StatsScope::Bot(shop.id.clone()), until_d1)
            .await
            .unwrap()
            .clicks,
        4
    );
    let ep_stats = clicks
        .stats(
            &ws,
            StatsScope::EntryPoint(welcome.id.clone()),
            StatsRange::ALL,
        )
        .await
        .unwrap();
    assert_eq!(
        ep_stats, s,
        "all of the welcome entry point's clicks came through l1"
    );
    let b = clicks
        .stats(&ws, StatsScope::Bot(shop.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    // A visitor is unique once per link and day: v1 on l1 and again on l2.
    assert_eq!((b.clicks, b.unique_clicks, b.previews), (6, 4, 1));
    assert_eq!(
        b.by_channel,
        [
            bucket("telegram", 4, 3, 0),
            bucket("(none)", 1, 0, 1),
            bucket("viber", 1, 1, 0)
        ]
    );
    assert_eq!(
        b.by_day,
        [bucket("2024-05-02", 4, 2, 1), bucket("2024-05-03", 2, 2, 0)]
    );
    assert_eq!(
        b.by_utm_source,
        [
            bucket("newsletter", 4, 3, 1),
            bucket("(none)", 1, 0, 0),
            bucket("ads", 1, 1, 0)
        ]
    );
    assert_eq!(
        b.by_utm_medium,
        [
            bucket("email", 4, 3, 1),
            bucket("(none)", 1, 0, 0),
            bucket("cpc", 1, 1, 0)
        ]
    );
    assert_eq!(
        b.by_utm_campaign,
        [bucket("spring", 5, 4, 1), bucket("(none)", 1, 0, 0)]
    );
    let empty = clicks
        .stats(&ws, StatsScope::Bot(support.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_eq!(empty, store::Stats::default());
    assert_not_found(
        clicks
            .stats(&ws, StatsScope::Link(LinkId::new()), StatsRange::ALL)
            .await,
    );

    let top = clicks
        .top_links(&ws, &shop.id, StatsRange::ALL, 10)
        .await
        .unwrap();
    let count = |l: &store::Link, clicks, unique_clicks, previews| LinkCount {
        link_id: l.id.clone(),
        code: l.code.clone(),
        slug: l.slug.clone(),
        title: l.title.clone(),
        clicks,
        unique_clicks,
        previews,
    };
    assert_eq!(
        top,
        [
            count(&l1, 4, 3, 1),
            count(&l2, 1, 1, 0),
            count(&l3, 1, 0, 0)
        ]
    );
    assert_eq!(
        clicks
            .top_links(&ws, &shop.id, StatsRange::ALL, 1)
            .await
            .unwrap(),
        [count(&l1, 4, 3, 1)]
    );
    assert_eq!(
        clicks
            .top_links(&ws, &shop.id, StatsRange::days(D2, D2), 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        clicks
            .top_links(&ws, &support.id, StatsRange::ALL, 10)
            .await
            .unwrap(),
        []
    );

    // --- Isolation: another workspace sees none of it and can change none of it.
    let other = workspaces.ensure_workspace("other", T0).await.unwrap().id;
    assert_ne!(other, ws);
    assert_not_found(bots.get_bot(&other, &shop.id).await);
    assert_eq!(bots.list_bots(&other).await.unwrap(), []);
    assert_not_found(
        bots.update_bot(
            &other,
            &shop.id,
            BotPatch {
                name: Some("mine".into()),
                ..Default::default()
            },
            T0,
        )
        .await,
    );
    assert_not_found(bots.delete_bot(&other, &shop.id).await);
    assert_not_found(
        bots.create_entry_point(
            &other,
            &shop.id,
            NewEntryPoint {
                key: "x".into(),
                node: None,
                default_field: None,
                utm: Utm::default(),
            },
            T0,
        )
        .await,
    );
    assert_not_found(bots.entry_point(&other, &shop.id, "welcome").await);
    assert_not_found(bots.entry_point_by_id(&other, &welcome.id).await);
    assert_not_found(bots.list_entry_points(&other, &shop.id).await);
    assert_not_found(
        bots.update_entry_point(&other, &welcome.id, EntryPointPatch::default(), T0)
            .await,
    );
    assert_not_found(bots.delete_entry_point(&other, &welcome.id).await);
    assert_not_found(links.get_link(&other, &l1.id).await);
    assert_eq!(
        links
            .list_links(&other, LinkFilter::default())
            .await
            .unwrap(),
        (vec![], None)
    );
    assert_not_found(
        links
            .update_link(
                &other,
                &l1.id,
                LinkPatch {
                    disabled: Some(true),
                    ..Default::default()
                },
                T0,
            )
            .await,
    );
    assert_not_found(links.delete_link(&other, &l1.id).await);
    assert_not_found(
        links
            .create_links(&other, vec![telegram_link(&shop.id, "steal01")], T0)
            .await,
    );
    assert_not_found(
        clicks
            .stats(&other, StatsScope::Link(l1.id.clone()), StatsRange::ALL)
            .await,
    );
    assert_not_found(
        clicks
            .stats(
                &other,
                StatsScope::EntryPoint(welcome.id.clone()),
                StatsRange::ALL,
            )
            .await,
    );
    assert_not_found(
        clicks
            .stats(&other, StatsScope::Bot(shop.id.clone()), StatsRange::ALL)
            .await,
    );
    assert_not_found(
        clicks
            .top_links(&other, &shop.id, StatsRange::ALL, 10)
            .await,
    );
    assert_eq!(workspaces.list_api_keys(&other).await.unwrap(), []);
    assert_not_found(workspaces.revoke_api_key(&other, &key.id, T0).await);
    assert!(
        workspaces
            .api_key_by_hash(&sha256_hex(secret))
            .await
            .unwrap()
            .is_some(),
        "untouched"
    );
    assert!(
        !links.get_link(&ws, &l1.id).await.unwrap().disabled,
        "untouched"
    );

    // --- Updates.
    let t_up = T0 + 10_000;
    let patched = links
        .update_link(
            &ws,
            &l1.id,
            LinkPatch {
                disabled: Some(true),
                expires_at: Some(Some(T0 + 7 * DAY)),
                max_clicks: Some(Some(100)),
                title: Some(None),
            },
            t_up,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            patched.disabled,
            patched.expires_at,
            patched.max_clicks,
            patched.title.clone()
        ),
        (true, Some(T0 + 7 * DAY), Some(100), None)
    );
    assert_eq!(
        (patched.updated_at, patched.created_at, patched.clicks_used),
        (t_up, t_links, 1)
    );
    assert_eq!(patched.slug, l1.slug, "untouched fields stay");
    let patched = links
        .update_link(
            &ws,
            &l1.id,
            LinkPatch {
                expires_at: Some(None),
                ..Default::default()
            },
            t_up + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        (patched.disabled, patched.expires_at, patched.max_clicks),
        (true, None, Some(100))
    );
    assert_eq!(
        links.link_by_code_or_slug("spring").await.unwrap(),
        Some(patched.clone()),
        "disabled links resolve"
    );

    let renamed = bots
        .update_bot(
            &ws,
            &shop.id,
            BotPatch {
                name: Some("shop2".into()),
                upsert_channels: vec![
                    BotChannel {
                        channel: Channel::Telegram,
                        settings: json!({"username": "shop2_bot"}),
                        secrets: None,
                    },
                    BotChannel {
                        channel: Channel::Max,
                        settings: json!({"username": "shop_max"}),
                        secrets: Some(b"sealed:max".to_vec()),
                    },
                ],
                remove_channels: vec![Channel::Viber, Channel::Line],
            },
            t_up,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            renamed.name.as_str(),
            renamed.created_at,
            renamed.updated_at
        ),
        ("shop2", T0 + 100, t_up)
    );
    assert_eq!(
        renamed.channels,
        [
            BotChannel {
                channel: Channel::Max,
                settings: json!({"username": "shop_max"}),
                secrets: Some(b"sealed:max".to_vec())
            },
            BotChannel {
                channel: Channel::Telegram,
                settings: json!({"username": "shop2_bot"}),
                secrets: Some(b"sealed:token".to_vec())
            },
        ],
        "viber removed, telegram settings replaced with its secrets kept, max added"
    );
    let what = conflict_text(
        bots.update_bot(
            &ws,
            &shop.id,
            BotPatch {
                name: Some("support".into()),
                ..Default::default()
            },
            t_up,
        )
        .await,
    );
    assert!(what.contains("\"support\""), "{what}");
    assert_eq!(
        bots.get_bot(&ws, &shop.id).await.unwrap(),
        renamed,
        "a refused update changes nothing"
    );

    let hello = bots
        .update_entry_point(
            &ws,
            &welcome.id,
            EntryPointPatch {
                key: Some("hello".into()),
                node: Some(None),
                default_field: Some(Some("email".into())),
                utm: None,
            },
            t_up,
        )
        .await
        .unwrap();
    assert_eq!(
        (
            hello.key.as_str(),
            hello.node.clone(),
            hello.default_field.as_deref(),
            hello.utm.clone(),
            hello.updated_at
        ),
        (
            "hello",
            None,
            Some("email"),
            Utm {
                source: Some("site".into()),
                ..Utm::default()
            },
            t_up
        )
    );
    assert_not_found(bots.entry_point(&ws, &shop.id, "welcome").await);
    let what = conflict_text(
        bots.update_entry_point(
            &ws,
            &welcome.id,
            EntryPointPatch {
                key: Some("promo".into()),
                ..Default::default()
            },
            t_up,
        )
        .await,
    );
    assert!(what.contains("\"promo\""), "{what}");

    // --- Deletes and their cascades.
    bots.delete_entry_point(&ws, &promo.id).await.unwrap();
    assert_not_found(bots.delete_entry_point(&ws, &promo.id).await);
    assert_eq!(
        links.get_link(&ws, &l2.id).await.unwrap().entry_point_id,
        None,
        "the link stays, without it"
    );
    assert_eq!(
        clicks
            .click_by_id(&ClickId::from("c6"))
            .await
            .unwrap()
            .unwrap()
            .link_id,
        l2.id,
        "clicks stay"
    );

    links.delete_link(&ws, &l3.id).await.unwrap();
    assert_not_found(links.get_link(&ws, &l3.id).await);
    assert_not_found(links.delete_link(&ws, &l3.id).await);
    assert_eq!(
        clicks.click_by_id(&ClickId::from("c7")).await.unwrap(),
        None,
        "its clicks went with it (unreachable without their link)"
    );
    let b = clicks
        .stats(&ws, StatsScope::Bot(shop.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_eq!((b.clicks, b.unique_clicks, b.previews), (5, 4, 1));

    bots.delete_bot(&ws, &shop.id).await.unwrap();
    assert_not_found(bots.get_bot(&ws, &shop.id).await);
    assert_not_found(bots.delete_bot(&ws, &shop.id).await);
    assert_not_found(bots.entry_point_by_id(&ws, &welcome.id).await);
    assert_not_found(links.get_link(&ws, &l1.id).await);
    assert_eq!(links.link_by_code_or_slug("spring").await.unwrap(), None);
    assert_eq!(
        clicks.click_by_id(&ClickId::from("c1")).await.unwrap(),
        None
    );
    assert_not_found(
        clicks
            .stats(&ws, StatsScope::Bot(shop.id.clone()), StatsRange::ALL)
            .await,
    );
    let left: Vec<Bot> = bots.list_bots(&ws).await.unwrap();
    assert_eq!(
        left.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        ["support"]
    );
    assert_eq!(
        codes(
            &links
                .list_links(&ws, LinkFilter::default())
                .await
                .unwrap()
                .0
        ),
        ["sUpP0rt"]
    );
    assert_eq!(
        bots.list_entry_points(&ws, &support.id).await.unwrap(),
        [support_welcome]
    );
}

#[tokio::test]
async fn upgrade_keeps_counts_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite:{}", dir.path().join("old.db").display());
    let store = store::connect(&url).await.unwrap();
    store.migrate_through(1).await.unwrap();
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    upgrade_keeps_counts(&store, &mut conn).await;
}

#[tokio::test]
async fn upgrade_keeps_counts_on_postgres() {
    let Some((schema, store)) = PgSchema::create_through(1).await else {
        return;
    };
    let mut conn = PgConnection::connect(&schema.url).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "SET search_path TO {}",
        schema.schema
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    upgrade_keeps_counts(&store, &mut conn).await;
}

/// SQLite's upgrade to the click log (migration 0004): clicks written one row each before it
/// are still found and counted, and so are the counts that waited as deltas; later clicks go
/// to the log.
#[tokio::test]
async fn upgrade_to_the_click_log_keeps_clicks_and_waiting_counts_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite:{}", dir.path().join("old.db").display());
    let store = store::connect(&url).await.unwrap();
    store.migrate_through(3).await.unwrap();
    let (ws, _bot, link) = bot_with_link(&store, "old", "oLdLoG1").await;
    let mut old = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // As botlink wrote a batch of two clicks by one visitor before 0004: their rows, and their
    // counts as one row of deltas, not yet added.
    let ids = [click_id(T0 + 5), click_id(T0 + 6)];
    for (id, at) in ids.iter().zip([T0 + 5, T0 + 6]) {
        sqlx::query(
            "INSERT INTO clicks (id, link_id, channel, kind, at, visitor) \
             VALUES ($1, $2, 'telegram', 'click', $3, $4)",
        )
        .bind(id.as_str())
        .bind(link.id.as_str())
        .bind(at)
        .bind(&[0xaa; 16][..])
        .execute(&mut old)
        .await
        .unwrap();
    }
    let mut deltas = vec![1u8];
    for text in [link.id.as_str(), "telegram"] {
        deltas.extend_from_slice(&(text.len() as u16).to_le_bytes());
        deltas.extend_from_slice(text.as_bytes());
    }
    for n in [D1, 2, 1, 0] {
        deltas.extend_from_slice(&n.to_le_bytes());
    }
    sqlx::query("INSERT INTO click_count_deltas (counts) VALUES ($1)")
        .bind(deltas)
        .execute(&mut old)
        .await
        .unwrap();
    old.close().await.unwrap();

    store.migrate().await.expect("upgrade");
    assert_eq!(link_clicks(&store, &ws, &link.id).await, (2, 1));
    let found = store
        .click_by_id(&ClickId::from(ids[1].as_str()))
        .await
        .unwrap()
        .expect("a click from before the log");
    assert_eq!((found.at, found.link_id), (T0 + 6, link.id.clone()));

    let later = NewClick {
        id: click_id(T0 + 7).as_str().into(),
        ..telegram_click(&link, "unused", "b")
    };
    assert_eq!(
        store.insert_clicks([later.clone()].into()).await.unwrap(),
        1
    );
    assert_eq!(link_clicks(&store, &ws, &link.id).await, (3, 2));
    let found = store
        .click_by_id(&ClickId::from(later.id.as_str()))
        .await
        .unwrap()
        .expect("logged");
    assert_eq!(found.visitor, Some(hex::encode(visitor("b"))));
    store.close().await;
}

#[tokio::test]
async fn click_ids_with_their_time_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let store = sqlite_store(&dir, false).await;
    click_ids_with_their_time(&store).await;
    store.close().await;
}

#[tokio::test]
async fn click_ids_with_their_time_on_postgres() {
    let Some((schema, store)) = PgSchema::create().await else {
        return;
    };
    click_ids_with_their_time(&store).await;
    store.close().await;
    drop(schema);
}

/// Clicks with the ids botlink makes (their time first), as redirects write them: batches
/// that share a millisecond, a batch written again, an id twice in a batch; each click is
/// stored once, found by its id with what it was, and counted once.
async fn click_ids_with_their_time(store: &Store) {
    let (ws, _bot, link) = bot_with_link(store, "timed", "tImEd01").await;
    let at = |ms: i64, who: &str, kind: ClickKind| NewClick {
        id: click_id(ms).as_str().into(),
        channel: (kind == ClickKind::Click).then_some(botlink_core::Channel::Telegram),
        kind,
        at: ms,
        ..telegram_click(&link, "unused", who)
    };
    let t = T0 + 1_000;
    let first = [
        at(t, "a", ClickKind::Click),
        at(t, "b", ClickKind::Preview),
        at(t + 1, "a", ClickKind::Click),
    ];
    assert_eq!(store.insert_clicks(first.to_vec().into()).await.unwrap(), 3);
    let second = [
        at(t + 1, "b", ClickKind::Click),
        at(t + 2, "c", ClickKind::Click),
        first[2].clone(),
    ];
    let mut batch = second.to_vec();
    batch.push(second[0].clone());
    assert_eq!(store.insert_clicks(batch.clone().into()).await.unwrap(), 2);
    assert_eq!(store.insert_clicks(batch.into()).await.unwrap(), 0, "again");

    for c in first.iter().chain(&second[..2]) {
        let found = store
            .click_by_id(&ClickId::from(c.id.as_str()))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} is stored", c.id));
        assert_eq!(
            (&found.link_id, found.kind, found.at, found.channel),
            (&link.id, c.kind, c.at, c.channel),
        );
        assert_eq!(found.visitor, c.visitor.map(hex::encode));
        assert_eq!(found.workspace_id, ws);
    }
    let never = ClickId::from(click_id(t + 1).as_str());
    assert_eq!(store.click_by_id(&never).await.unwrap(), None);
    let s = store
        .stats(&ws, StatsScope::Link(link.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_eq!((s.clicks, s.unique_clicks, s.previews), (4, 3, 1));
}

/// A workspace named `name` with a bot and one link, coded `code`, for click tests.
async fn bot_with_link(store: &Store, name: &str, code: &str) -> (WorkspaceId, Bot, store::Link) {
    let ws = store.ensure_workspace(name, T0).await.unwrap().id;
    let bot = store
        .create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: name.into(),
                channels: vec![],
            },
            T0,
        )
        .await
        .unwrap();
    let link = store
        .create_links(&ws, vec![telegram_link(&bot.id, code)], T0)
        .await
        .unwrap()
        .remove(0);
    (ws, bot, link)
}

/// Clicks written by the first schema (one row per click, counted when read) are counted the
/// same after the upgrade to stored counts, and later clicks add to them.
async fn upgrade_keeps_counts<C>(store: &Store, old: &mut C)
where
    for<'c> &'c mut C: sqlx::Executor<'c>,
{
    let (ws, bot, link) = bot_with_link(store, "old", "oLdOnE1").await;
    let (a, b) = (hex::encode([0xaa; 16]), hex::encode([0xbb; 16]));
    let rows = [
        ("o1", Some("telegram"), "click", T0 + 1, D1, Some(&a)),
        ("o2", Some("telegram"), "click", T0 + 2, D1, Some(&a)),
        ("o3", Some("viber"), "click", T0 + 3, D1, Some(&b)),
        ("o4", None, "preview", T0 + 4, D1, None),
        ("o5", Some("telegram"), "click", T0 + DAY, D2, Some(&a)),
    ];
    for (id, channel, kind, at, day, visitor) in rows {
        let sql = format!(
            "INSERT INTO clicks (id, link_id, workspace_id, bot_id, entry_point_id, channel, \
             kind, at, day, visitor, utm_source, utm_medium, utm_campaign) VALUES ('{id}', \
             '{}', '{}', '{}', NULL, {}, '{kind}', {at}, {day}, {}, NULL, NULL, NULL)",
            link.id.as_str(),
            ws.as_str(),
            bot.id.as_str(),
            channel.map_or("NULL".to_owned(), |c| format!("'{c}'")),
            visitor.map_or("NULL".to_owned(), |v| format!("'{v}'")),
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut *old)
            .await
            .unwrap();
    }

    store.migrate().await.expect("upgrade");
    let s = store
        .stats(&ws, StatsScope::Link(link.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_two_day_link(&s);
    let o1 = store
        .click_by_id(&ClickId::from("o1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o1.visitor, o1.day), (Some(a.clone()), D1));

    // The same visitor again on day 2: a click, not a unique one. A new one on day 2: both.
    let later = |id: &str, v: u8| NewClick {
        id: id.into(),
        link_id: (&link.id).into(),
        channel: Some(botlink_core::Channel::Telegram),
        kind: ClickKind::Click,
        at: T0 + DAY + 10,
        visitor: Some([v; 16]),
    };
    assert_eq!(
        store
            .insert_clicks([later("o6", 0xaa), later("o7", 0xcc)].into())
            .await
            .unwrap(),
        2
    );
    let s = store
        .stats(&ws, StatsScope::Link(link.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_eq!((s.clicks, s.unique_clicks, s.previews), (6, 4, 1));
}

/// A visitor's later clicks on a link that day are not unique, whether the instance that
/// writes them has written one of theirs before (and remembers it) or not (and asks the
/// database); on the next day, or on another link, the first click is unique again.
async fn repeat_visitors(first: &Store, second: &Store) {
    let (ws, bot, l1) = bot_with_link(first, "repeat", "rEpEaT1").await;
    let l2 = first
        .create_links(&ws, vec![telegram_link(&bot.id, "rEpEaT2")], T0)
        .await
        .unwrap()
        .remove(0);
    let mut n = 0;
    let mut click_on = |link: &store::Link, who: &str, kind: ClickKind, at: i64| {
        n += 1;
        NewClick {
            id: format!("r{n:03}").into(),
            link_id: (&link.id).into(),
            channel: Some(botlink_core::Channel::Telegram),
            kind,
            at,
            visitor: Some(visitor(who)),
        }
    };
    let click = ClickKind::Click;
    let batches = [
        // Twice in one batch: one unique click.
        (
            first,
            vec![
                click_on(&l1, "v1", click, T0 + 1),
                click_on(&l1, "v1", click, T0 + 2),
            ],
        ),
        // Again, from the instance that wrote the first: not unique. The same visitor on the
        // other link: unique. A preview is never a unique click.
        (
            first,
            vec![
                click_on(&l1, "v1", click, T0 + 3),
                click_on(&l2, "v1", click, T0 + 4),
                click_on(&l1, "v2", ClickKind::Preview, T0 + 5),
            ],
        ),
        // The other instance: v1 is not unique there either; v3 is new.
        (
            second,
            vec![
                click_on(&l1, "v1", click, T0 + 6),
                click_on(&l1, "v3", click, T0 + 7),
            ],
        ),
        // v3 again through the first instance, which never wrote v3: not unique.
        (first, vec![click_on(&l1, "v3", click, T0 + 8)]),
        // The next day: v1 is unique again.
        (first, vec![click_on(&l1, "v1", click, T0 + DAY + 1)]),
    ];
    for (store, batch) in &batches {
        assert_eq!(
            store.insert_clicks(batch[..].into()).await.unwrap(),
            batch.len() as u64
        );
    }
    for store in [first, second] {
        let s = store
            .stats(&ws, StatsScope::Link(l1.id.clone()), StatsRange::ALL)
            .await
            .unwrap();
        assert_eq!((s.clicks, s.unique_clicks, s.previews), (7, 3, 1));
        assert_eq!(
            s.by_day,
            [bucket("2024-05-02", 6, 2, 1), bucket("2024-05-03", 1, 1, 0)]
        );
        let s = store
            .stats(&ws, StatsScope::Link(l2.id.clone()), StatsRange::ALL)
            .await
            .unwrap();
        assert_eq!((s.clicks, s.unique_clicks, s.previews), (1, 1, 0));
    }
}

/// 10,000 clicks in one call, counted exactly.
async fn click_batch(store: &Store, backend: &str) {
    let (ws, bot, link) = bot_with_link(store, "batch", "bAtCh01").await;
    const N: usize = 10_000;
    let channels = ["telegram", "viber", "whatsapp", "messenger"];
    let batch: Vec<NewClick> = (0..N)
        .map(|i| NewClick {
            id: format!("k{i:05}").into(),
            link_id: (&link.id).into(),
            channel: Some(channels[i % 4].parse().unwrap()),
            // Every tenth is a preview.
            kind: if i % 10 == 9 {
                ClickKind::Preview
            } else {
                ClickKind::Click
            },
            // Five days, 2,000 clicks each.
            at: T0 + (i as i64 / 2_000) * DAY + i as i64,
            // 1,000 distinct visitors, each twice a day.
            visitor: Some(visitor(&format!("visitor{}", i % 1_000))),
        })
        .collect();

    let started = Instant::now();
    assert_eq!(
        store.insert_clicks(batch[..].into()).await.unwrap(),
        N as u64
    );
    let first = started.elapsed();
    let started = Instant::now();
    assert_eq!(
        store.insert_clicks(batch[..].into()).await.unwrap(),
        0,
        "all ids already stored"
    );
    let again = started.elapsed();
    let started = Instant::now();
    let s = store
        .stats(&ws, StatsScope::Link(link.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    let stats_time = started.elapsed();
    println!(
        "{backend}: insert 10,000 clicks {first:?}; re-insert (all duplicates) {again:?}; stats {stats_time:?}"
    );

    assert_eq!((s.clicks, s.previews), (9_000, 1_000));
    // Visitors i % 1000 with i % 10 == 9 only ever preview: 100 of the 1,000 never click.
    // The other 900 are unique once a day, on five days.
    assert_eq!(s.unique_clicks, 4_500);
    assert_eq!(s.by_day.len(), 5);
    assert!(
        s.by_day
            .iter()
            .all(|d| d.clicks == 1_800 && d.previews == 200),
        "{:?}",
        s.by_day
    );
    assert_eq!(s.by_day[0].key, "2024-05-02");
    assert_eq!(s.by_day[4].key, "2024-05-06");
    let by_channel: BTreeMap<_, _> = s
        .by_channel
        .iter()
        .map(|b| (b.key.as_str(), (b.clicks, b.previews)))
        .collect();
    // i % 4 picks the channel and i % 10 == 9 the previews: odd i only, so viber (1) and
    // messenger (3) get them all.
    assert_eq!(
        by_channel,
        BTreeMap::from([
            ("messenger", (2_000, 500)),
            ("telegram", (2_500, 0)),
            ("viber", (2_000, 500)),
            ("whatsapp", (2_500, 0)),
        ])
    );
    assert_eq!(s.by_utm_source, [bucket("(none)", 9_000, 4_500, 1_000)]);
    let top = store
        .top_links(&ws, &bot.id, StatsRange::ALL, 5)
        .await
        .unwrap();
    assert_eq!(
        (
            top.len(),
            top[0].clicks,
            top[0].unique_clicks,
            top[0].previews
        ),
        (1, 9_000, 4_500, 1_000)
    );
}

/// Eight tasks at once create links (a transaction that reads, then writes) and record
/// clicks: none fails on a busy database, every row is written.
async fn concurrent_writers(store: Arc<Store>) {
    let ws = store.ensure_workspace("busy", T0).await.unwrap().id;
    let bot = store
        .create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "b".into(),
                channels: vec![],
            },
            T0,
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (store, ws, bot) = (store.clone(), ws.clone(), bot.id.clone());
            tokio::spawn(async move {
                for round in 0..10 {
                    let code = format!("t{t}r{round}");
                    let link = store
                        .create_links(&ws, vec![telegram_link(&bot, &code)], T0 + round)
                        .await
                        .unwrap_or_else(|e| panic!("task {t} round {round}: create_links: {e}"))
                        .remove(0);
                    let batch: Vec<NewClick> = (0..50)
                        .map(|i| NewClick {
                            id: format!("{code}c{i}").into(),
                            link_id: (&link.id).into(),
                            channel: None,
                            kind: ClickKind::Click,
                            at: T0 + i,
                            visitor: None,
                        })
                        .collect();
                    let n = store
                        .insert_clicks(batch[..].into())
                        .await
                        .unwrap_or_else(|e| panic!("task {t} round {round}: insert_clicks: {e}"));
                    assert_eq!(n, 50);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let s = store
        .stats(&ws, StatsScope::Bot(bot.id.clone()), StatsRange::ALL)
        .await
        .unwrap();
    assert_eq!(s.clicks, 8 * 10 * 50);
    let (links, _) = store
        .list_links(
            &ws,
            LinkFilter {
                limit: Some(500),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(links.len(), 80);
}

/// Runs four futures concurrently (on one task: they interleave at each await).
async fn futures_join4<A, B, C, D, T>(a: A, b: B, c: C, d: D) -> Vec<T>
where
    A: Future<Output = T>,
    B: Future<Output = T>,
    C: Future<Output = T>,
    D: Future<Output = T>,
{
    let (a, b, c, d) = tokio::join!(a, b, c, d);
    vec![a, b, c, d]
}

/// A stored value this version cannot read (a channel or scheme it does not know, UTM tags of
/// another shape) is an error that names the table, never a silent default.
#[tokio::test]
async fn unreadable_values_are_errors_not_defaults_on_sqlite() {
    let dir = TempDir::new().unwrap();
    let store = sqlite_store(&dir, true).await;
    let (ws, bot, link) = bot_with_link(&store, "corrupt", "cOrRuPt1").await;
    store
        .update_bot(
            &ws,
            &bot.id,
            BotPatch {
                upsert_channels: vec![BotChannel {
                    channel: Channel::Telegram,
                    settings: json!({"username": "shop_bot"}),
                    secrets: None,
                }],
                ..BotPatch::default()
            },
            T0,
        )
        .await
        .unwrap();
    let ep = store
        .create_entry_point(
            &ws,
            &bot.id,
            NewEntryPoint {
                key: "spring".into(),
                node: None,
                default_field: None,
                utm: utm("site", "qr", "spring"),
            },
            T0,
        )
        .await
        .unwrap();
    assert_eq!(ep.utm, utm("site", "qr", "spring"));
    let url = format!("sqlite:{}", dir.path().join("botlink.db").display());
    let mut raw = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "UPDATE links SET scheme = 'zipped'",
        "UPDATE bot_channels SET channel = 'telegrm'",
        "UPDATE entry_points SET utm = '{\"utm_source\": \"site\"}'",
    ] {
        sqlx::query(sql).execute(&mut raw).await.unwrap();
    }
    let corrupt = |r: Result<String, StoreError>| match r {
        Err(StoreError::Corrupt { table, detail }) => format!("{table}: {detail}"),
        other => panic!("read as {other:?}, not as corrupt"),
    };
    let why = corrupt(
        store
            .get_link(&ws, &link.id)
            .await
            .map(|l| l.scheme.to_string()),
    );
    assert!(why.starts_with("links:") && why.contains("zipped"), "{why}");
    let why = corrupt(
        store
            .get_bot(&ws, &bot.id)
            .await
            .map(|b| format!("{:?}", b.channels)),
    );
    assert!(
        why.starts_with("bot_channels:") && why.contains("telegrm"),
        "{why}"
    );
    let why = corrupt(
        store
            .entry_point(&ws, &bot.id, "spring")
            .await
            .map(|e| format!("{:?}", e.utm)),
    );
    assert!(
        why.starts_with("entry_points:") && why.contains("utm_source"),
        "{why}"
    );
}
