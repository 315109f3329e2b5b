//! Storage: workspaces and API keys, bots and entry points, links, clicks and statistics,
//! on SQLite (the embedded default) or PostgreSQL (several instances sharing one database).
//!
//! The rest of the server sees traits split by aggregate ([`WorkspaceStore`], [`BotStore`],
//! [`LinkStore`], [`ClickStore`]), held as `Arc<dyn ...>`. One [`Store`] implements them all
//! by running the same SQL on whichever pool is active; the backend is chosen once, from the
//! database URL, by [`connect`].
//!
//! Rules every method keeps:
//! - time is a parameter (`now_ms`, epoch milliseconds), never read from a clock here;
//! - every read, update and delete of a workspace's resource filters on its [`WorkspaceId`],
//!   so another workspace's resource is [`StoreError::NotFound`], never visible;
//! - a unique value already used (a bot name, an entry point key, a link slug) is
//!   [`StoreError::Conflict`] with a message that names it, and nothing is written.

use std::sync::Arc;

use async_trait::async_trait;

/// Runs `$body` with `$pool` bound to the active pool (a `SqlitePool` in one arm, a `PgPool`
/// in the other), so one piece of SQL-running code serves both backends.
macro_rules! with_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.pool {
            $crate::store::db::Pool::Sqlite($pool) => $body,
            $crate::store::db::Pool::Postgres($pool) => $body,
        }
    };
}

mod bots;
mod clicks;
mod db;
mod flow;
mod flow_sql;
mod ids;
mod links;
mod model;
mod postgres;
mod seen;
mod settings;
mod sqlite;
mod start_stats;
mod workspaces;

pub use clicks::STATS_WAIT;
pub use db::{Backend, ConnectOptions, Store, connect, connect_with};
pub use flow::{
    Attempt, Contact, ContactFilter, ContactWrite, Continuation, Delivery, DeliveryAttempt,
    DeliveryFilter, FlowCommit, FlowStore, InboxItem, MessageOutcome, NewDelivery, NewMessage,
    NewRun, OutboxMessage, RecipientOutcome, Run, RunCounts, RunCreated, RunTarget,
    ScenarioVersion, StartRecord, TargetOutcome, TargetStatus, WorkStatus,
};
pub use ids::{
    ApiKeyId, BotId, ClickId, ContactId, DeliveryId, EntryPointId, InboxId, LinkId, MessageId,
    RunId, StartId, WorkspaceId,
};
pub use model::{
    ApiKey, Bot, BotChannel, BotPatch, Bucket, Click, ClickKind, DeepLinkOut, EntryPoint,
    EntryPointPatch, InlineClickId, InlineLinkId, Link, LinkCount, LinkFilter, LinkPatch, NONE_KEY,
    NewApiKey, NewBot, NewClick, NewEntryPoint, NewLink, Payload, Role, Stats, StatsRange,
    StatsScope, UnknownRole, Utm, Workspace, day_of, day_to_date,
};
pub use postgres::link_changes::{LinkChange, LinkChanges};
pub use sqlite::click_writer::{CountsLag, Lag, WriteTurn};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The resource does not exist, or belongs to another workspace.
    #[error("not found")]
    NotFound,
    /// A unique value is already used; `what` is a sentence for the caller, e.g.
    /// `the slug "promo" is already used by another link`.
    #[error("{what}")]
    Conflict { what: String },
    /// A pagination cursor that this store did not produce.
    #[error("invalid cursor: pass the next_cursor of the previous page unchanged")]
    InvalidCursor,
    /// A database URL that names neither SQLite nor PostgreSQL.
    #[error(
        "unsupported database URL {0:?}: use sqlite:<path>, a file path, or postgres://user@host/db"
    )]
    UnsupportedUrl(String),
    /// A row that cannot be read back (e.g. a role or JSON that this version does not know).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// From SQLite's click writer (see `click_writer`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The click writer's thread could not start, or has stopped.
    #[error("{0}")]
    Writer(String),
}

/// Why the database could not serve a request just now, when that is why a [`StoreError`]
/// happened: a failure that passes, after which the same request may well succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Another connection held the lock the request needed for longer than the store waits
    /// for it (SQLite's write lock past its busy timeout; a PostgreSQL lock or serialization
    /// conflict), or no connection came free in time.
    Busy,
    /// The database cannot be reached (connection refused or lost, the pool closed).
    Unreachable,
}

impl StoreError {
    /// Whether this is a failure that passes (see [`Unavailable`]) rather than one that the
    /// same request would meet again.
    pub fn unavailable(&self) -> Option<Unavailable> {
        match self {
            StoreError::Database(e) => sqlx_unavailable(e),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                Some(Unavailable::Busy)
            }
            _ => None,
        }
    }
}

/// See [`StoreError::unavailable`].
fn sqlx_unavailable(e: &sqlx::Error) -> Option<Unavailable> {
    match e {
        sqlx::Error::Database(db) => {
            let code = db.code()?;
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite's extended result codes keep the primary code in their low byte:
                // SQLITE_BUSY (5, "database is locked") and SQLITE_LOCKED (6).
                let primary = code.parse::<i32>().ok()? & 0xff;
                return matches!(primary, 5 | 6).then_some(Unavailable::Busy);
            }
            // PostgreSQL: lock_not_available, serialization_failure, deadlock_detected and
            // too_many_connections; then the operator intervention class (shutting down,
            // starting up) and the connection exception class.
            match &*code {
                "55P03" | "40001" | "40P01" | "53300" => Some(Unavailable::Busy),
                c if c.starts_with("57P") || c.starts_with("08") => Some(Unavailable::Unreachable),
                _ => None,
            }
        }
        sqlx::Error::PoolTimedOut => Some(Unavailable::Busy),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Some(Unavailable::Unreachable),
        _ => None,
    }
}

/// Result of the store.
pub type StoreResult<T> = Result<T, StoreError>;

/// Workspaces and their API keys.
#[async_trait]
pub trait WorkspaceStore: Send + Sync {
    /// The workspace named `name`, created if missing. Safe when called concurrently:
    /// every caller gets the same workspace.
    async fn ensure_workspace(&self, name: &str, now_ms: i64) -> StoreResult<Workspace>;
    async fn workspace_by_name(&self, name: &str) -> StoreResult<Option<Workspace>>;
    async fn workspace(&self, id: &WorkspaceId) -> StoreResult<Workspace>;

    /// Stores a key; `Conflict` if its hash is already stored.
    async fn create_api_key(&self, key: NewApiKey, now_ms: i64) -> StoreResult<ApiKey>;
    /// The key with this hash, unless revoked (what authentication needs).
    async fn api_key_by_hash(&self, key_hash: &str) -> StoreResult<Option<ApiKey>>;
    /// Keys of a workspace, revoked ones included, oldest first.
    async fn list_api_keys(&self, ws: &WorkspaceId) -> StoreResult<Vec<ApiKey>>;
    /// Marks a key revoked (revoking twice keeps the first time).
    async fn revoke_api_key(&self, ws: &WorkspaceId, id: &ApiKeyId, now_ms: i64)
    -> StoreResult<()>;
    /// Records that a key was used.
    async fn touch_api_key(&self, id: &ApiKeyId, now_ms: i64) -> StoreResult<()>;
}

/// How a change to a bot's channels reaches its links' stored deep links (see
/// [`BotStore::update_bot_and_links`]): given the bot's id, its channels and one of its links,
/// changes the link to match and says whether it did.
pub type Relink = dyn Fn(&BotId, &[BotChannel], &mut Link) -> Result<bool, String> + Send + Sync;

/// Bots, their channel settings and their entry points.
#[async_trait]
pub trait BotStore: Send + Sync {
    /// Creates a bot and its channels in one transaction.
    async fn create_bot(&self, ws: &WorkspaceId, bot: NewBot, now_ms: i64) -> StoreResult<Bot>;
    async fn get_bot(&self, ws: &WorkspaceId, id: &BotId) -> StoreResult<Bot>;
    /// A bot of any workspace, for what arrives addressed to a bot (messenger webhooks).
    async fn bot_by_id(&self, id: &BotId) -> StoreResult<Option<Bot>>;
    /// Bots of a workspace with their channels, by name.
    async fn list_bots(&self, ws: &WorkspaceId) -> StoreResult<Vec<Bot>>;
    /// Renames and/or changes channels in one transaction; returns the bot as it now is.
    async fn update_bot(
        &self,
        ws: &WorkspaceId,
        id: &BotId,
        patch: BotPatch,
        now_ms: i64,
    ) -> StoreResult<Bot>;
    /// [`BotStore::update_bot`], and, in the same transaction, each of the bot's links given
    /// to `relink` with the bot's id and channels as they are after the change: the links it
    /// changed (their channels and deep links) are written and returned. When it refuses a
    /// link (`Err`, a sentence that follows the link's slug or code), nothing is changed and
    /// the answer is a `Conflict`.
    async fn update_bot_and_links(
        &self,
        ws: &WorkspaceId,
        id: &BotId,
        patch: BotPatch,
        relink: Option<&Relink>,
        now_ms: i64,
    ) -> StoreResult<(Bot, Vec<Link>)>;
    /// The bot whose web chat is `id` (its webchat channel's `id` setting, else the bot's id),
    /// in any workspace: the public web chat's lookup. Should two bots share a web chat id,
    /// the older.
    async fn bot_by_webchat_id(&self, id: &str) -> StoreResult<Option<Bot>>;
    /// Deletes a bot with its channels, entry points, links and their clicks.
    async fn delete_bot(&self, ws: &WorkspaceId, id: &BotId) -> StoreResult<()>;

    /// `Conflict` when the bot already has an entry point with this key.
    async fn create_entry_point(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        ep: NewEntryPoint,
        now_ms: i64,
    ) -> StoreResult<EntryPoint>;
    async fn entry_point(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        key: &str,
    ) -> StoreResult<EntryPoint>;
    async fn entry_point_by_id(
        &self,
        ws: &WorkspaceId,
        id: &EntryPointId,
    ) -> StoreResult<EntryPoint>;
    /// Entry points of a bot, by key.
    async fn list_entry_points(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
    ) -> StoreResult<Vec<EntryPoint>>;
    async fn update_entry_point(
        &self,
        ws: &WorkspaceId,
        id: &EntryPointId,
        patch: EntryPointPatch,
        now_ms: i64,
    ) -> StoreResult<EntryPoint>;
    /// Deletes an entry point; its links stay, without an entry point.
    async fn delete_entry_point(&self, ws: &WorkspaceId, id: &EntryPointId) -> StoreResult<()>;
}

/// Links.
#[async_trait]
pub trait LinkStore: Send + Sync {
    /// Creates all the links or none (one transaction). Every bot and entry point named must
    /// belong to `ws` (else `NotFound`); a used code or slug is a `Conflict` naming it.
    async fn create_links(
        &self,
        ws: &WorkspaceId,
        links: Vec<NewLink>,
        now_ms: i64,
    ) -> StoreResult<Vec<Link>>;
    async fn get_link(&self, ws: &WorkspaceId, id: &LinkId) -> StoreResult<Link>;
    /// A short link read without waiting (SQLite: on the calling thread, from a connection of
    /// its own), for the redirect path; `None` when this store cannot read it so (then
    /// [`LinkStore::link_by_code_or_slug`]).
    fn link_by_code_or_slug_now(&self, _s: &str) -> Option<StoreResult<Option<Link>>> {
        None
    }
    /// The link whose code, or else whose slug, is `s` (the public redirect lookup; any
    /// workspace). Disabled and expired links are returned too: the caller decides.
    async fn link_by_code_or_slug(&self, s: &str) -> StoreResult<Option<Link>>;
    /// A page of links, newest first, and the cursor of the next page (`None` on the last).
    async fn list_links(
        &self,
        ws: &WorkspaceId,
        filter: LinkFilter,
    ) -> StoreResult<(Vec<Link>, Option<String>)>;
    async fn update_link(
        &self,
        ws: &WorkspaceId,
        id: &LinkId,
        patch: LinkPatch,
        now_ms: i64,
    ) -> StoreResult<Link>;
    /// Deletes a link and its clicks.
    async fn delete_link(&self, ws: &WorkspaceId, id: &LinkId) -> StoreResult<()>;
    /// Takes one use of a link limited by `max_clicks`, atomically; false when none is left
    /// (or the link is gone). Links without a limit always succeed.
    async fn try_consume_click(&self, id: &LinkId) -> StoreResult<bool>;
}

/// Clicks and statistics.
#[async_trait]
pub trait ClickStore: Send + Sync {
    /// Writes a batch in one transaction: the click log and the counts (on SQLite, the log
    /// alone: its clicks are added to the counts before any statistics are read, and unread
    /// within `ConnectOptions::click_fold_every`). A click whose id is already stored is
    /// skipped; one whose link has been deleted meanwhile is logged (and unreachable, as a
    /// deleted link's clicks are) but not counted. Returns how many clicks were logged.
    async fn insert_clicks(&self, clicks: Arc<[NewClick]>) -> StoreResult<u64>;
    async fn click_by_id(&self, id: &ClickId) -> StoreResult<Option<Click>>;
    /// Counts for a link, an entry point or a bot of `ws` (else `NotFound`).
    async fn stats(
        &self,
        ws: &WorkspaceId,
        scope: StatsScope,
        range: StatsRange,
    ) -> StoreResult<Stats>;
    /// The bot's links with the most clicks in the range (links without any are left out).
    async fn top_links(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        range: StatsRange,
        limit: u32,
    ) -> StoreResult<Vec<LinkCount>>;
}

/// The database as a whole: which backend, whether it answers, and the write turns API
/// writes take with the click writer (see [`WriteTurn`]).
#[async_trait]
pub trait Database: Send + Sync {
    fn backend(&self) -> Backend;
    /// Marks an API write under way until the turn is dropped (SQLite; `None` elsewhere).
    fn write_turn(&self) -> Option<WriteTurn>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
}

/// The store seen through each trait, ready for an application state.
#[derive(Clone)]
pub struct Stores {
    pub database: Arc<dyn Database>,
    pub workspaces: Arc<dyn WorkspaceStore>,
    pub bots: Arc<dyn BotStore>,
    pub links: Arc<dyn LinkStore>,
    pub clicks: Arc<dyn ClickStore>,
    pub flow: Arc<dyn FlowStore>,
}

impl Store {
    /// This store behind each of its traits.
    pub fn stores(self: &Arc<Self>) -> Stores {
        Stores {
            database: self.clone(),
            workspaces: self.clone(),
            bots: self.clone(),
            links: self.clone(),
            clicks: self.clone(),
            flow: self.clone(),
        }
    }
}
