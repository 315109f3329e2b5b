//! What the store reads and writes: workspaces, API keys, bots, entry points, links, clicks
//! and the statistics computed from clicks. Times are epoch milliseconds (UTC); days are
//! whole days since the Unix epoch (UTC).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use botlink_core::{Channel, Scheme};
use serde::{Deserialize, Serialize};

use super::ids::{ApiKeyId, BotId, ClickId, EntryPointId, LinkId, WorkspaceId};
use super::sqlite::click_writer::CountsLag;

/// The day (since the Unix epoch, UTC) that an epoch-milliseconds instant falls on, and a
/// day as an ISO date (`YYYY-MM-DD`): the helpers of [`crate::util`], under the store's names.
pub use crate::util::{day_of, format_day as day_to_date};

/// A tenant: owns bots, links and API keys. Names are unique.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: i64,
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in its workspace.
    Admin,
    /// Create and read links and their statistics.
    Links,
    /// Send notifications (`call_node`).
    Notify,
}

impl Role {
    /// The role as stored and shown: `admin`, `links`, `notify`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Links => "links",
            Role::Notify => "notify",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not `admin`, `links` or `notify`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: expected admin, links or notify")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "links" => Ok(Role::Links),
            "notify" => Ok(Role::Notify),
            other => Err(UnknownRole(other.to_owned())),
        }
    }
}

/// An API key as stored: never the key itself, only its SHA-256 (hex) and a short prefix
/// for people to recognise it in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub workspace_id: WorkspaceId,
    pub name: Option<String>,
    pub role: Role,
    pub key_prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A key to store. The caller generates the secret, shows it once and passes its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    pub workspace_id: WorkspaceId,
    pub name: Option<String>,
    pub role: Role,
    /// Lowercase hex SHA-256 of the whole key.
    pub key_hash: String,
    /// The first characters of the key, for display (`blk_3fA9…`).
    pub key_prefix: String,
}

/// One channel of a bot: its public settings and its secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotChannel {
    pub channel: Channel,
    /// Public settings (username, uri, page, number, api_base_url, ...), a JSON object.
    pub settings: serde_json::Value,
    /// Tokens and app secrets, already encrypted by the caller; opaque bytes here. Never
    /// serialized, so they cannot leak through an API response or a log line.
    #[serde(skip_serializing, default)]
    pub secrets: Option<Vec<u8>>,
}

/// A bot with its channels (sorted by channel name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bot {
    pub id: BotId,
    pub workspace_id: WorkspaceId,
    pub name: String,
    pub channels: Vec<BotChannel>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A bot to create. Names are unique within a workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewBot {
    /// The caller chooses the id (`BotId::new()`), so that it can seal the channels' secrets
    /// bound to it before the row exists.
    pub id: BotId,
    pub name: String,
    pub channels: Vec<BotChannel>,
}

/// Changes to a bot, applied in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BotPatch {
    /// A new name (unique within the workspace).
    pub name: Option<String>,
    /// Channels to add or replace. A channel given with `secrets: None` keeps the secrets
    /// it had, so settings can be edited without sending the token again.
    #[serde(default)]
    pub upsert_channels: Vec<BotChannel>,
    /// Channels to remove (channels not configured are ignored).
    #[serde(default)]
    pub remove_channels: Vec<Channel>,
}

/// An entry point of a bot's scenario: what `n__<key>` and stored links start at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryPoint {
    pub id: EntryPointId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    /// Unique within the bot; the `<id>` of `n__<id>`.
    pub key: String,
    /// The scenario node to start at.
    pub node: Option<String>,
    /// The field that the first value of a `fields` parameter fills.
    pub default_field: Option<String>,
    /// Default UTM tags of links made for this entry point.
    pub utm: Utm,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An entry point to create.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntryPoint {
    pub key: String,
    pub node: Option<String>,
    pub default_field: Option<String>,
    #[serde(default)]
    pub utm: Utm,
}

/// Changes to an entry point. `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryPointPatch {
    pub key: Option<String>,
    pub node: Option<Option<String>>,
    pub default_field: Option<Option<String>>,
    pub utm: Option<Utm>,
}

/// UTM tags of a link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Utm {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub source: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub medium: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub campaign: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub term: Option<String>,
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub content: Option<String>,
}

/// The data a link carries to the bot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    /// The customer's id in the CRM (`clientExternalId` in scenarios).
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub external_id: Option<String>,
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub phone: Option<String>,
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub email: Option<String>,
    /// Free variables (`v` in the json scheme).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Field values by field id (fields scheme).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// The parameter itself (raw scheme).
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub param: Option<String>,
    /// The value for the entry point's default field (fields scheme).
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub value: Option<String>,
    /// Text pre-filled in the message box (Viber, WhatsApp, LINE); may span lines.
    #[schema(
        max_length = 1024,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub text: Option<String>,
}

/// The deep link built for one channel of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeepLinkOut {
    /// The URL that opens the bot (`https://t.me/bot?start=...`).
    pub url: String,
    /// The parameter carried by the URL.
    pub param: String,
}

/// A link made through the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub id: LinkId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub entry_point_id: Option<EntryPointId>,
    /// Random base62 code of the short URL; unique.
    pub code: String,
    /// A custom short-URL slug; unique, and never equal to another link's code.
    pub slug: Option<String>,
    pub title: Option<String>,
    pub channels: Vec<Channel>,
    pub scheme: Scheme,
    pub signed: bool,
    pub payload: Payload,
    /// The deep link built for each channel.
    pub deep_links: BTreeMap<Channel, DeepLinkOut>,
    pub utm: Utm,
    pub expires_at: Option<i64>,
    pub max_clicks: Option<i64>,
    pub clicks_used: i64,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A link to create. Code (and slug) are chosen by the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewLink {
    pub bot_id: BotId,
    pub entry_point_id: Option<EntryPointId>,
    pub code: String,
    pub slug: Option<String>,
    pub title: Option<String>,
    pub channels: Vec<Channel>,
    pub scheme: Scheme,
    pub signed: bool,
    pub payload: Payload,
    pub deep_links: BTreeMap<Channel, DeepLinkOut>,
    #[serde(default)]
    pub utm: Utm,
    pub expires_at: Option<i64>,
    pub max_clicks: Option<i64>,
    #[serde(default)]
    pub disabled: bool,
}

/// Which links to list. Every filter is optional; `q` is a case-insensitive substring of the
/// title, slug, code or UTM campaign.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkFilter {
    pub bot_id: Option<BotId>,
    pub entry_point_id: Option<EntryPointId>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub q: Option<String>,
    /// Page size, 1..=[`LinkFilter::MAX_LIMIT`]; [`LinkFilter::DEFAULT_LIMIT`] when absent.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl LinkFilter {
    pub const DEFAULT_LIMIT: u32 = 50;
    pub const MAX_LIMIT: u32 = 500;
}

/// Changes to a link. `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkPatch {
    pub disabled: Option<bool>,
    pub expires_at: Option<Option<i64>>,
    pub max_clicks: Option<Option<i64>>,
    pub title: Option<Option<String>>,
}

/// A redirect served to a person, or a fetch by a link-preview crawler (not a click).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClickKind {
    Click,
    Preview,
}

impl ClickKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ClickKind::Click => "click",
            ClickKind::Preview => "preview",
        }
    }
}

impl FromStr for ClickKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "click" => Ok(ClickKind::Click),
            "preview" => Ok(ClickKind::Preview),
            other => Err(format!(
                "unknown click kind {other:?}: expected click or preview"
            )),
        }
    }
}

/// A click id held in place (see [`NewClick`]).
pub type InlineClickId = crate::util::InlineStr<24>;

/// A link id held in place (see [`NewClick`]).
pub type InlineLinkId = crate::util::InlineStr<40>;

impl From<&LinkId> for InlineLinkId {
    fn from(id: &LinkId) -> Self {
        InlineLinkId::new(id.as_str())
    }
}

/// A click to record: what the link does not already say. The day is derived from `at`.
///
/// Its ids are held in place (as long as botlink's own: a click id is 15 characters, a link
/// id 36), so that a redirect queues its click, and the queue hands a batch to the store,
/// without an allocation a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClick {
    pub id: InlineClickId,
    pub link_id: InlineLinkId,
    /// The channel the person was sent to, when known.
    pub channel: Option<Channel>,
    pub kind: ClickKind,
    /// Epoch milliseconds.
    pub at: i64,
    /// A salted hash that identifies a visitor on one day without identifying a person.
    pub visitor: Option<[u8; 16]>,
}

/// A recorded click.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Click {
    pub id: ClickId,
    pub link_id: LinkId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub entry_point_id: Option<EntryPointId>,
    pub channel: Option<Channel>,
    pub kind: ClickKind,
    pub at: i64,
    /// Days since the Unix epoch (UTC).
    pub day: i64,
    /// The visitor hash, in hex.
    pub visitor: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
}

/// What statistics are about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "id")]
pub enum StatsScope {
    Link(LinkId),
    EntryPoint(EntryPointId),
    Bot(BotId),
}

/// An inclusive range of days (since the Unix epoch, UTC); open where `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsRange {
    pub from_day: Option<i64>,
    pub to_day: Option<i64>,
}

impl StatsRange {
    /// Every day.
    pub const ALL: StatsRange = StatsRange {
        from_day: None,
        to_day: None,
    };

    /// From `from_day` to `to_day`, both included.
    pub fn days(from_day: i64, to_day: i64) -> Self {
        StatsRange {
            from_day: Some(from_day),
            to_day: Some(to_day),
        }
    }
}

/// The key that stands for a missing value in a bucket (no channel, no UTM tag).
pub const NONE_KEY: &str = "(none)";

/// Counts for one value of a dimension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Bucket {
    /// The value (`telegram`, `2024-05-01`, `newsletter`), or [`NONE_KEY`].
    pub key: String,
    pub clicks: i64,
    /// Clicks that were their visitor's first on the link that day (visitors are told apart
    /// by a hash of address and browser that changes daily; clicks without one never count).
    /// They add up: a bucket's unique clicks are the sum of its links' and days'.
    pub unique_clicks: i64,
    pub previews: i64,
    /// Starts with this value, of those the statistics' `starts` count: the Start's day, the
    /// channel of the person who started the bot, the UTM tags the Start was attributed with.
    pub starts: i64,
}

/// Statistics of a link, an entry point or a bot over a range of days. Buckets are sorted by
/// clicks (most first), then by Starts (most first), then by key, except `by_day`, which is
/// in date order and lists only days with at least one click, preview or Start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stats {
    pub clicks: i64,
    pub unique_clicks: i64,
    pub previews: i64,
    /// Starts in the range attributed to the link, or to the entry point (through one of its
    /// links or its own `n__<key>` parameter). For a bot: all its Starts, attributed or not
    /// (a Start without a parameter, or with one that could not be attributed, included).
    /// A Start counts once botlink has processed the messenger's update, moments after it
    /// arrived, and stays counted when its contact is deleted later.
    pub starts: i64,
    /// Contacts created in the range whose first attributed Start (first touch) came through
    /// the link, or through one of the entry point's links. For a bot: all its contacts
    /// created in the range, attributed or not.
    pub new_contacts: i64,
    /// Of `new_contacts`, those the bot may write to now (who have not blocked it since).
    pub subscribed: i64,
    pub by_channel: Vec<Bucket>,
    pub by_day: Vec<Bucket>,
    pub by_utm_source: Vec<Bucket>,
    pub by_utm_medium: Vec<Bucket>,
    pub by_utm_campaign: Vec<Bucket>,
    /// Set when these counts may lack the clicks written last (see [`CountsLag`]); `None`
    /// when every click written before they were asked for is counted. The API tells it in
    /// its own words.
    #[serde(skip)]
    pub lag: Option<CountsLag>,
}

impl Stats {
    /// Starts per click (`starts / clicks`), `None` without clicks. Starts can come without a
    /// click through botlink (a deep link or QR code shared as is, an `n__<key>` parameter
    /// written elsewhere, for a bot a person who writes first), so it may exceed 1.
    pub fn conversion(&self) -> Option<f64> {
        (self.clicks > 0).then(|| self.starts as f64 / self.clicks as f64)
    }
}

/// A link ranked by its clicks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LinkCount {
    #[schema(value_type = String)]
    pub link_id: LinkId,
    pub code: String,
    pub slug: Option<String>,
    pub title: Option<String>,
    pub clicks: i64,
    pub unique_clicks: i64,
    pub previews: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_map_to_utc_dates() {
        assert_eq!(day_to_date(0), "1970-01-01");
        assert_eq!(day_to_date(-1), "1969-12-31");
        assert_eq!(day_to_date(19_844), "2024-05-01");
        assert_eq!(day_to_date(11_016), "2000-02-29");
        // 2024-05-01T23:59:59.999Z and 2024-05-02T00:00:00Z
        assert_eq!(day_of(1_714_607_999_999), 19_844);
        assert_eq!(day_of(1_714_608_000_000), 19_845);
        assert_eq!(day_of(-1), -1);
    }

    #[test]
    fn roles_round_trip() {
        for r in [Role::Admin, Role::Links, Role::Notify] {
            assert_eq!(r.as_str().parse::<Role>(), Ok(r));
        }
        assert_eq!("root".parse::<Role>(), Err(UnknownRole("root".into())));
    }
}
