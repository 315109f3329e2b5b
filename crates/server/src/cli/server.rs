//! The server's commands: `serve`, `migrate`, `api-key create`, `openapi`.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use super::CliError;
use crate::app::config::Config;
use crate::domain::validate;
use crate::store::Store;

/// A retry schedule, read as one value (clap takes a `Vec` field for many).
type RetrySchedule = Vec<std::time::Duration>;

/// Where the database is.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    /// `sqlite://botlink.db` (the default: a file in the working directory) or
    /// `postgres://user@host/db`.
    #[arg(
        long,
        env = "BOTLINK_DATABASE_URL",
        default_value = "sqlite://botlink.db"
    )]
    pub database_url: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `botlink serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "BOTLINK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Public base URL for short links and webhooks, e.g. https://links.example.com
    /// (default: http://<listen>).
    #[arg(long, env = "BOTLINK_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Server secret: 32 bytes as hex or Base64 (`openssl rand -hex 32`). Without it, SQLite
    /// deployments keep a key file beside the database, created on first start.
    #[arg(
        long,
        env = "BOTLINK_SECRET_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub secret_key: Option<String>,
    /// Key file used when no secret key is given (default: beside the SQLite file).
    #[arg(long, env = "BOTLINK_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// An admin API key of the default workspace: `blk_` and at least 20 more characters
    /// (e.g. blk_$(openssl rand -hex 16)).
    #[arg(long, env = "BOTLINK_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// API requests per second allowed per key (bursts of twice that).
    #[arg(long, env = "BOTLINK_RATE_LIMIT", default_value_t = 50)]
    pub rate_limit: u32,
    /// Clicks held in memory before they are written. When it is full, a redirect waits up to
    /// 200 ms for room, then its click is dropped and counted.
    #[arg(long, env = "BOTLINK_CLICK_QUEUE", default_value_t = 16_384)]
    pub click_queue: usize,
    /// Longest a click waits in memory before its batch is written, in ms (1 to 1000: clicks
    /// show in stats within about this long). Longer batches cost less to write.
    #[arg(long, env = "BOTLINK_CLICK_FLUSH_MS", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub click_flush_ms: u64,
    /// Most clicks written in one transaction (1 to 10000). Larger batches write each changed
    /// page once for more clicks; smaller ones hold the database, and the threads that
    /// prepare them, for less time at once.
    #[arg(long, env = "BOTLINK_CLICK_BATCH", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub click_batch: u16,
    /// How long a resolved short link is kept in memory, in ms (default: 600000; a changed
    /// link is forgotten at once, on PostgreSQL by every instance; 2000 while an instance
    /// cannot hear of other instances' changes).
    #[arg(long, env = "BOTLINK_LINK_CACHE_MS")]
    pub link_cache_ms: Option<u64>,
    /// Seconds a connection may go without sending a whole request head (counted from when it
    /// opened or from the last answer); then it is closed. Keep it above the idle timeout of a
    /// load balancer in front (60 s on AWS ALB and in nginx's upstream keep-alive).
    #[arg(long, env = "BOTLINK_IDLE_TIMEOUT", default_value_t = 75,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub idle_timeout: u64,
    /// Take the client address from X-Forwarded-For (only behind a proxy you trust).
    #[arg(long, env = "BOTLINK_BEHIND_PROXY")]
    pub behind_proxy: bool,
    /// Address ranges that deliveries and channel API calls may reach although they are
    /// private, loopback, link-local or the like: comma-separated CIDRs, e.g. 10.1.0.0/16
    /// (refused by default, so that a scenario cannot reach your internal network).
    #[arg(long, env = "BOTLINK_OUTBOUND_ALLOW", default_value = "",
          value_parser = |s: &str| s.parse::<crate::outbound::OutboundAllow>().map_err(|e| e.to_string()))]
    pub outbound_allow: crate::outbound::OutboundAllow,
    /// When a failed delivery is tried again: the wait after each failed attempt in turn,
    /// comma-separated (after the last, the delivery is given up).
    #[arg(long, env = "BOTLINK_RETRY_SCHEDULE",
          default_value = crate::app::config::DEFAULT_RETRY_SCHEDULE,
          value_parser = crate::app::config::parse_retry_schedule)]
    pub retry_schedule: RetrySchedule,
    /// How long a worker's claim on an update, a message or a delivery lasts, in ms (1000 to
    /// 3600000; default 60000): work an instance was doing when it died is taken up again
    /// after this. Hidden: below the outbound timeout (15 s) another instance may make an
    /// attempt still under way a second time; tests that kill a server shorten it.
    #[arg(long, env = "BOTLINK_WORKER_LEASE_MS", hide = true,
          default_value_t = crate::flow::LEASE_MS,
          value_parser = clap::value_parser!(i64).range(1_000..=3_600_000))]
    pub worker_lease_ms: i64,
    /// Log lines as text or JSON (level from RUST_LOG, default info).
    #[arg(long, env = "BOTLINK_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// `botlink migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DbArgs,
}

/// `botlink api-key ...`.
#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key (and the workspace, if needed) and print it once on stdout.
    Create {
        /// Workspace name: 1-100 characters without control characters or direction
        /// overrides, as the API's names.
        #[arg(long, default_value = crate::app::DEFAULT_WORKSPACE)]
        workspace: String,
        /// admin, links or notify.
        #[arg(long)]
        role: String,
        /// A name to recognise the key by (the same rule as --workspace).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the async runtime", e))
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal: a file or a log collector would keep
    // them as text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(|| LogSink(std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Where log lines go: stderr, whose failures are dropped with the line. When nobody reads
/// stderr any more (a closed pipe: a log collector that stopped, `botlink serve | head`), a
/// failed write must not stop the server: tracing's own report of it goes to stderr too, and
/// a failed report panics, in whatever task was logging (the one that handles SIGTERM, say).
struct LogSink(std::io::Stderr);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = self.0.flush();
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

pub fn serve(args: ServeArgs) -> Result<(), CliError> {
    init_logs(args.log_format);
    // A panic in a handler is answered by a 500 and logged; Rust's own report on stderr would
    // tell it a second time, outside the log's format.
    crate::api::error::log_panics();
    let mut config = Config::new(args.listen, args.db.database_url);
    let explicit_public_url = args.public_url.is_some();
    if let Some(url) = args.public_url {
        config.public_url = url.trim_end_matches('/').to_string();
    }
    config.secret_key = args.secret_key;
    config.key_file = args.key_file;
    config.admin_key = args.admin_key;
    config.rate_limit_per_second = args.rate_limit;
    config.click_queue = args.click_queue;
    config.click_flush_ms = args.click_flush_ms;
    config.click_batch = usize::from(args.click_batch);
    config.behind_proxy = args.behind_proxy;
    config.link_cache_ms = args.link_cache_ms;
    config.outbound_allow = args.outbound_allow;
    config.retry_schedule = args.retry_schedule;
    config.worker_lease_ms = args.worker_lease_ms;
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout);
    // Everything that can be checked without the network, before binding: a bad setting is
    // reported as itself, not as whatever binding the address runs into.
    let mut checked = config.validate().map_err(CliError::input)?;
    runtime()?.block_on(async move {
        let listen = checked.config().listen_addr();
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| CliError::io(format!("listening on {listen}"), e))?;
        if !explicit_public_url {
            // With port 0 the real port is known only now.
            let addr = listener
                .local_addr()
                .map_err(|e| CliError::io("reading the listening address", e))?;
            checked.set_public_url(format!("http://{addr}"));
        }
        let token = CancellationToken::new();
        let t = token.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            t.cancel();
            tracing::info!("shutting down: finishing requests and writing queued clicks");
        });
        crate::app::run_checked(checked, listener, token)
            .await
            .map_err(|e| CliError::failed(format!("botlink serve: {e}")))
    })
}

/// Connects to the database and runs the migrations, as [`crate::app::open_store`] does, but
/// with an error that says which of the two steps failed.
async fn open_store(db: &DbArgs) -> Result<Store, CliError> {
    let store = crate::store::connect(&db.database_url)
        .await
        .map_err(|e| CliError::failed(format!("connecting to the database: {e}")))?;
    store
        .migrate()
        .await
        .map_err(|e| CliError::failed(format!("migrating: {e}")))?;
    Ok(store)
}

pub fn migrate(args: MigrateArgs) -> Result<(), CliError> {
    runtime()?.block_on(async move {
        open_store(&args.db).await?;
        eprintln!("the database is up to date");
        Ok(())
    })
}

pub fn api_key(args: ApiKeyArgs) -> Result<(), CliError> {
    let ApiKeyCommand::Create {
        workspace,
        role,
        name,
        db,
    } = args.command;
    let role = role.parse::<crate::store::Role>().map_err(|_| {
        CliError::input(format!("unknown role {role:?}: use admin, links or notify"))
    })?;
    // The names the API would refuse are refused here too, before the database is opened:
    // they end up in the same logs, exports and answers.
    let workspace = validate::name("--workspace", &workspace).map_err(CliError::input)?;
    let name = name
        .map(|n| validate::name("--name", &n))
        .transpose()
        .map_err(CliError::input)?;
    runtime()?.block_on(async move {
        let store = open_store(&db).await?;
        use crate::store::WorkspaceStore as _;
        let ws = store
            .ensure_workspace(&workspace, crate::util::now_ms())
            .await
            .map_err(|e| CliError::failed(format!("creating the workspace: {e}")))?;
        let (key, row) = crate::api::keys::issue_key(&store, &ws.id, role, name)
            .await
            .map_err(|e| CliError::failed(format!("storing the key: {e}")))?;
        eprintln!(
            "created {} key {} in workspace {:?}; it is shown once:",
            row.role, row.id, ws.name
        );
        println!("{key}");
        Ok(())
    })
}

pub fn openapi() -> Result<(), CliError> {
    let json = crate::api::openapi()
        .to_pretty_json()
        .map_err(|e| CliError::failed(format!("rendering the OpenAPI document: {e}")))?;
    println!("{json}");
    Ok(())
}
