//! Test helpers for botlink: start the real server on `127.0.0.1:0` with a temporary SQLite
//! database, or in a schema of its own on PostgreSQL, and drive it over HTTP.
//!
//! The listener is bound before the server task starts, so a test can send requests at once:
//! they wait in the accept queue until the server is ready. No fixed ports, no sleeps.
//!
//! PostgreSQL comes from `BOTLINK_TEST_POSTGRES_URL` (default the local
//! `postgres://postgres@127.0.0.1:5432/test`). Without one, a PostgreSQL test prints
//! `skipped: ...` and returns; with `CI=true` it fails instead, so that CI never passes a
//! PostgreSQL test that did not run.

pub mod fakes;

use std::net::SocketAddr;

use botlink_core::{Channel, Scheme};
use botlink_server::store::{BotId, DeepLinkOut, NewLink, Payload, Utm};
use botlink_server::{Config, ServeError};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The database a [`TestServer`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A schema of its own in the test PostgreSQL database.
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// The test PostgreSQL database's URL (`BOTLINK_TEST_POSTGRES_URL`, else the local default).
pub fn postgres_base_url() -> String {
    std::env::var("BOTLINK_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// How long a test schema is kept: schemas older than this are dropped when a new one is made
/// (a test that failed, or a server still running when its test ended, leaves its schema).
const STALE_SCHEMA_SECS: u64 = 3_600;

/// A URL to a new, empty schema of the test PostgreSQL database, in which a server sees only
/// its own tables (`search_path`). `None`, after printing `skipped: ...`, when PostgreSQL
/// cannot be reached; with `CI=true` that is a failure instead.
pub async fn postgres_schema_url() -> Option<String> {
    Some(postgres_schema().await?.url)
}

/// A schema of its own in the test PostgreSQL database (see [`postgres_schema`]).
#[derive(Debug, Clone)]
pub struct PgSchema {
    /// The schema's name, for a test's own SQL (`DROP SCHEMA`, `UPDATE <name>.links ...`).
    pub name: String,
    /// The database's URL with the schema as its `search_path`: what a server is given.
    pub url: String,
}

/// A new, empty schema of the test PostgreSQL database; `None`, after printing
/// `skipped: ...`, when PostgreSQL cannot be reached, and a failure with `CI=true`.
pub async fn postgres_schema() -> Option<PgSchema> {
    use sqlx::Connection as _;
    let base = postgres_base_url();
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
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_secs();
    // Schemas left by earlier runs: `t_srv_<seconds>_<random>`.
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 't\\_srv\\_%'",
    )
    .fetch_all(&mut conn)
    .await
    .expect("list the test schemas");
    for name in old {
        let made = name.split('_').nth(2).and_then(|s| s.parse::<u64>().ok());
        if made.is_some_and(|t| t + STALE_SCHEMA_SECS < now) {
            // Another run may be dropping it too: what matters is that it goes.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA IF EXISTS {name} CASCADE"
            )))
            .execute(&mut conn)
            .await;
        }
    }
    let schema = format!(
        "t_srv_{now}_{}",
        botlink_server::util::random_code(10).to_lowercase()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&mut conn)
        .await
        .expect("create a test schema");
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    Some(PgSchema { name: schema, url })
}

/// An HTTP client as tests need one: it does not follow redirects, so a test sees the 302.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// A new one-channel link to `bot`'s Telegram, `shop_bot`, with the stored scheme's deep link
/// for `code`, as the API would make it.
pub fn telegram_link(bot: &BotId, code: &str) -> NewLink {
    NewLink {
        bot_id: bot.clone(),
        entry_point_id: None,
        code: code.to_owned(),
        slug: None,
        title: None,
        channels: vec![Channel::Telegram],
        scheme: Scheme::Stored,
        signed: false,
        payload: Payload::default(),
        deep_links: std::collections::BTreeMap::from([(
            Channel::Telegram,
            DeepLinkOut {
                url: format!("https://t.me/shop_bot?start=l_{code}"),
                param: format!("l_{code}"),
            },
        )]),
        utm: Utm::default(),
        expires_at: None,
        max_clicks: None,
        disabled: false,
    }
}

/// The admin key every test server accepts (`BOTLINK_ADMIN_KEY`).
pub const ADMIN_KEY: &str = "blk_test_admin_key_0123456789abcdefghij";

/// A running botlink server.
pub struct TestServer {
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    pub client: reqwest::Client,
    /// The temporary directory holding the database (kept until the server is dropped).
    pub dir: TempDir,
    pub database_url: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Starts a server with test defaults.
    pub async fn start() -> TestServer {
        TestServer::start_with(|_| {}).await
    }

    /// Starts a server after `adjust` has changed the test configuration.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let database_url = format!("sqlite://{}", dir.path().join("botlink.db").display());
        TestServer::start_in(dir, database_url, adjust).await
    }

    /// Starts a server on `backend` after `adjust` has changed the test configuration; `None`
    /// when that backend is PostgreSQL and it cannot be reached outside CI (the test then
    /// returns, having said `skipped`).
    pub async fn start_on(
        backend: Backend,
        adjust: impl FnOnce(&mut Config),
    ) -> Option<TestServer> {
        match backend {
            Backend::Sqlite => Some(TestServer::start_with(adjust).await),
            Backend::Postgres => {
                let url = postgres_schema_url().await?;
                let dir = tempfile::tempdir().expect("a temporary directory");
                Some(TestServer::start_in(dir, url, adjust).await)
            }
        }
    }

    /// Starts a server on an existing directory and database (e.g. to restart one).
    pub async fn start_in(
        dir: TempDir,
        database_url: String,
        adjust: impl FnOnce(&mut Config),
    ) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let mut config = Config::new(addr, database_url.clone());
        config.secret_key = Some("7".repeat(64));
        config.admin_key = Some(ADMIN_KEY.to_string());
        config.rate_limit_per_second = 10_000;
        config.click_flush_ms = 20;
        adjust(&mut config);
        let database_url = config.database_url.clone();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(botlink_server::run(config, listener, shutdown.clone()));
        TestServer {
            addr,
            base_url: format!("http://{addr}"),
            client: client(),
            dir,
            database_url,
            shutdown,
            task: Some(task),
        }
    }

    /// The full URL of a path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request with an optional API key and JSON body; returns the status and the
    /// JSON answer (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.url(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("the server answers");
        let status = resp.status();
        let text = resp.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// The body of a GET of `path` without a key, as text (e.g. `/metrics`).
    pub async fn text(&self, path: &str) -> String {
        let resp = self.client.get(self.url(path)).send().await;
        resp.expect("the server answers")
            .text()
            .await
            .expect("a body")
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn patch(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(key), Some(body)).await
    }

    pub async fn delete(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(key), None).await
    }

    /// Creates a bot, "Shop", with one channel: Telegram's `shop_bot`; returns its id.
    pub async fn telegram_bot(&self) -> String {
        let body =
            serde_json::json!({"name": "Shop", "channels": {"telegram": {"username": "shop_bot"}}});
        let (st, bot) = self.post("/api/v1/bots", ADMIN_KEY, body).await;
        assert_eq!(st, StatusCode::CREATED, "{bot}");
        bot["id"].as_str().expect("a bot id").to_string()
    }

    /// Stops the server as SIGTERM would, and waits until it has flushed everything.
    pub async fn stop(mut self) -> (TempDir, String) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await
                .expect("the server task does not panic")
                .expect("the server stops cleanly");
        }
        let dir = tempfile::tempdir().expect("a temporary directory");
        let dir = std::mem::replace(&mut self.dir, dir);
        (dir, self.database_url.clone())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Makes each named test, an `async fn(Backend)`, run on SQLite and on PostgreSQL: a module
/// `sqlite` and a module `postgres`, each with a `#[tokio::test]` of the same name, so the
/// output names the backend (`sqlite::links_in_every_scheme`).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A TCP proxy on `127.0.0.1:0` in front of a server (a database, say) that a test can cut
/// and restore, to make that server go away for whoever connects through the proxy and come
/// back.
pub mod cut_proxy {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::{AbortHandle, JoinSet};

    /// See the module. Dropped, it stops and closes every connection.
    pub struct CutProxy {
        addr: SocketAddr,
        state: Arc<Mutex<State>>,
        accepting: AbortHandle,
    }

    #[derive(Default)]
    struct State {
        cut: bool,
        /// The connections being relayed.
        relays: JoinSet<()>,
    }

    impl CutProxy {
        /// Starts relaying every connection to `target`.
        pub async fn start(target: SocketAddr) -> CutProxy {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind 127.0.0.1:0");
            let addr = listener.local_addr().expect("local address");
            let state = Arc::new(Mutex::new(State::default()));
            let shared = state.clone();
            let accepting = tokio::spawn(async move {
                loop {
                    let Ok((mut client, _)) = listener.accept().await else {
                        continue;
                    };
                    let mut state = shared.lock().expect("proxy lock");
                    if state.cut {
                        // Refused: closed at once, before a byte of the protocol.
                        drop(client);
                        continue;
                    }
                    state.relays.spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                }
            })
            .abort_handle();
            CutProxy {
                addr,
                state,
                accepting,
            }
        }

        /// Where to connect to reach the target through the proxy.
        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        /// Closes every connection relayed so far and refuses new ones until
        /// [`CutProxy::restore`].
        pub fn cut(&self) {
            let mut state = self.state.lock().expect("proxy lock");
            state.cut = true;
            // Aborted, a relay drops both of its sockets: each end sees the other close.
            state.relays.abort_all();
        }

        /// Relays new connections again.
        pub fn restore(&self) {
            self.state.lock().expect("proxy lock").cut = false;
        }
    }

    impl Drop for CutProxy {
        fn drop(&mut self) {
            self.accepting.abort();
            self.state.lock().expect("proxy lock").relays.abort_all();
        }
    }
}
