//! What the Start flow reads and writes: updates received from the messengers (the inbox),
//! contacts, Starts, scenarios, and the work they cause (messages to send, deliveries to a
//! CRM, call_node runs).
//!
//! The rule that keeps anything from being lost: whatever a piece of work causes is written in
//! the same transaction that records the work as done ([`FlowStore::commit`]). A worker that
//! dies mid-way leaves its claim to expire (a lease), and the next claim does the work again;
//! what it then writes carries the same ids, so nothing is done twice that was committed once.

use std::collections::BTreeMap;

use async_trait::async_trait;
use botlink_core::{Channel, Inbound};
use serde::{Deserialize, Serialize};

use super::ids::{
    BotId, ClickId, ContactId, DeliveryId, EntryPointId, InboxId, LinkId, MessageId, RunId,
    StartId, WorkspaceId,
};
use super::{StoreResult, Utm};

/// An update in the inbox, claimed for processing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    pub id: InboxId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub channel: Channel,
    pub event: Inbound,
    pub received_at: i64,
    /// Earlier attempts to process it (0 on the first claim).
    pub attempts: i64,
}

/// A contact: one person (a chat) in one channel of one bot. Unique on
/// (`bot_id`, `channel`, `chat_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub id: ContactId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub channel: Channel,
    pub chat_id: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    /// The CRM's id for the person (`clientExternalId`), from a link's payload.
    pub external_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
    /// Whether the bot may write to the person (per each platform's rule).
    pub subscribed: bool,
    /// The link of the first Start attributed to a link (first touch), and of the last.
    pub first_link_id: Option<LinkId>,
    pub last_link_id: Option<LinkId>,
    /// The UTM tags of the last attributed Start.
    pub utm: Utm,
    /// A Viber `conversation_started` context kept until the person subscribes.
    pub pending_param: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// When the person last wrote (Meta's and WhatsApp's 24-hour window runs from it).
    pub last_inbound_at: Option<i64>,
}

/// Which contacts to list; every filter optional. `q` is a case-insensitive substring of the
/// name, external id, phone or e-mail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactFilter {
    pub channel: Option<Channel>,
    pub chat_id: Option<String>,
    pub external_id: Option<String>,
    pub q: Option<String>,
    /// Page size, 1..=500; 50 when absent.
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A Start as recorded: attributed to its link, click, entry point and UTM tags, or with the
/// reason it could not be (a malformed, tampered or expired parameter, an unknown link...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRecord {
    pub id: StartId,
    pub link_id: Option<LinkId>,
    pub click_id: Option<ClickId>,
    pub entry_point_id: Option<EntryPointId>,
    pub utm: Utm,
    /// The raw parameter, as it arrived.
    pub param: Option<String>,
    /// The scenario node the Start ran.
    pub node: String,
    /// Why the Start is not attributed (`None` when it is, or when it carried no parameter).
    pub unattributed: Option<String>,
    pub at: i64,
}

/// A message to send through a contact's channel: the scenario's rendered message
/// (`botlink_scenario::OutMessage`, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewMessage {
    pub id: MessageId,
    pub message: serde_json::Value,
    pub run_id: Option<RunId>,
}

/// A message in the outbox, claimed for sending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxMessage {
    pub id: MessageId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub contact_id: ContactId,
    pub channel: Channel,
    pub chat_id: String,
    pub message: serde_json::Value,
    pub run_id: Option<RunId>,
    /// Earlier attempts to send it (0 on the first claim).
    pub attempts: i64,
    pub created_at: i64,
}

/// Where a message or delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkStatus {
    /// Waiting for its next attempt.
    Pending,
    /// Done: a message sent, a delivery answered 2xx.
    Done,
    /// Given up (a reason says why).
    Failed,
}

impl WorkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkStatus::Pending => "pending",
            WorkStatus::Done => "done",
            WorkStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for WorkStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(WorkStatus::Pending),
            "done" => Ok(WorkStatus::Done),
            "failed" => Ok(WorkStatus::Failed),
            other => Err(format!("unknown status {other:?}")),
        }
    }
}

/// A scenario run waiting for a delivery's first answer, to go on along `ok` or `not_ok`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Continuation {
    /// The scenario version the run started on.
    pub scenario_version: i64,
    /// The runner (`botlink_scenario::Runner`), as JSON.
    pub runner: serde_json::Value,
    pub run_id: Option<RunId>,
}

/// An HTTP delivery to make (`send_me`, `send_request`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewDelivery {
    pub id: DeliveryId,
    /// `send_me` or `send_request`.
    pub kind: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    /// The rendered `data`.
    pub data: serde_json::Value,
    pub continuation: Option<Continuation>,
}

/// A delivery, with where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: DeliveryId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub contact_id: ContactId,
    pub kind: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub data: serde_json::Value,
    /// Present until the first attempt has been answered (or failed).
    pub continuation: Option<Continuation>,
    pub status: WorkStatus,
    /// The attempts recorded, and one more while a claim's attempt is under way; as a claim
    /// hands it out, the earlier attempts (0 on the first claim).
    pub attempts: i64,
    /// When the next attempt is due (pending only).
    pub next_at: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at: i64,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// What went wrong (a refused address, a timeout, a non-2xx answer...).
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryFilter {
    pub bot_id: Option<BotId>,
    pub status: Option<WorkStatus>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A delivery attempt's outcome, as [`FlowCommit`] records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub id: DeliveryId,
    pub attempt: Attempt,
    /// `Done`, `Failed` (given up), or `Pending` with the time of the next attempt.
    pub status: WorkStatus,
    pub next_at: Option<i64>,
    /// Whether the continuation was consumed (the run went on, or there was none).
    pub clear_continuation: bool,
}

/// A message's outcome, as [`FlowCommit`] records it (see [`FlowStore::message_done`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageOutcome {
    pub id: MessageId,
    /// `Done` (sent), `Failed` (given up, with `error`), or `Pending` again at `retry_at`.
    pub status: WorkStatus,
    pub error: Option<String>,
    pub retry_at: Option<i64>,
    /// The contact's next message waits until then at least (a platform's least gap between
    /// two messages to one chat).
    pub hold_next_until: Option<i64>,
}

/// What a contact becomes: created with `new_id` when (bot, channel, chat_id) is new, else
/// the stored contact updated. A value that is `None` keeps the stored one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContactWrite {
    pub new_id: ContactId,
    pub channel: Channel,
    pub chat_id: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    /// Set when `Some` (a link's payload), kept otherwise.
    pub external_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// Merged over the stored ones.
    pub variables: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
    /// Set when `Some`, kept otherwise (a new contact: subscribed unless `Some(false)`).
    pub subscribed: Option<bool>,
    /// An attributed Start's link and UTM tags: the first link is set once, the last always.
    pub touch: Option<(LinkId, Utm)>,
    /// `Some(v)` sets the pending parameter (`None` clears it); `None` keeps it.
    pub pending_param: Option<Option<String>>,
    /// The person wrote: the 24-hour window starts again.
    pub inbound: bool,
}

/// A call_node run's recipient outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientOutcome {
    pub run_id: RunId,
    pub contact_id: ContactId,
    pub status: WorkStatus,
    pub reason: Option<String>,
}

/// Writes that make one business transaction: all of them or none. Every id is chosen by the
/// caller, so that committing the same work twice (after a lost claim) finds it done.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowCommit {
    /// The contact the rest is about, upserted first; `contact_id` names it when it is not
    /// written.
    pub contact: Option<ContactWrite>,
    pub contact_id: Option<ContactId>,
    pub start: Option<StartRecord>,
    /// Messages to send to the contact, in this order.
    pub messages: Vec<NewMessage>,
    /// Deliveries to make for the contact.
    pub deliveries: Vec<NewDelivery>,
    /// The inbox item this work processed, marked done.
    pub inbox_done: Option<InboxId>,
    /// A delivery's attempt, recorded.
    pub attempt: Option<DeliveryAttempt>,
    /// A call_node recipient's outcome, once its messages are sent or given up.
    pub recipient: Option<RecipientOutcome>,
    /// A bulk run's target worked: written before the messages, which are left out when the
    /// target turns out a duplicate.
    pub target: Option<TargetOutcome>,
    /// A message sent, given up or put off.
    pub message_done: Option<MessageOutcome>,
    /// The contact (`contact_id`) is no longer subscribed: the platform said it blocked the bot.
    pub unsubscribe: bool,
}

/// A scenario version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioVersion {
    pub bot_id: BotId,
    pub version: i64,
    /// The document as saved (JSON).
    pub document: serde_json::Value,
    pub created_at: i64,
}

/// A call_node run: a node run for one recipient or many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: RunId,
    pub workspace_id: WorkspaceId,
    pub bot_id: BotId,
    pub node: String,
    /// The call's variables; a recipient's own override them.
    pub variables: BTreeMap<String, String>,
    pub created_at: i64,
    /// When its recipients are worked (`None`: at once).
    pub send_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub idempotency_key: Option<String>,
    /// A hash of the request that made the run, to tell a repeated request from another one
    /// under the same idempotency key.
    pub request_hash: Option<String>,
    /// How many recipients stand where (filled when read).
    pub counts: RunCounts,
}

/// A run's recipients by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunCounts {
    pub pending: i64,
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub cancelled: i64,
}

impl RunCounts {
    pub fn total(&self) -> i64 {
        self.pending + self.queued + self.sent + self.failed + self.skipped + self.cancelled
    }
}

/// Where a run's recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetStatus {
    /// Not worked yet (a bulk run's recipients wait for the expander, and for `send_at`).
    Pending,
    /// Its messages are in the outbox.
    Queued,
    Sent,
    /// `reason` says why: `not_subscribed`, `unsubscribed`, `blocked`, `outside_window`, ...
    Failed,
    /// Not sent, by rule: `duplicate` (the contact was a recipient of the run already).
    Skipped,
    Cancelled,
}

impl TargetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TargetStatus::Pending => "pending",
            TargetStatus::Queued => "queued",
            TargetStatus::Sent => "sent",
            TargetStatus::Failed => "failed",
            TargetStatus::Skipped => "skipped",
            TargetStatus::Cancelled => "cancelled",
        }
    }
}

impl std::str::FromStr for TargetStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "pending" => TargetStatus::Pending,
            "queued" => TargetStatus::Queued,
            "sent" => TargetStatus::Sent,
            "failed" => TargetStatus::Failed,
            "skipped" => TargetStatus::Skipped,
            "cancelled" => TargetStatus::Cancelled,
            other => return Err(format!("unknown recipient status {other:?}")),
        })
    }
}

/// A run's recipient: whom (an external id, or a channel and chat id), its own variables, the
/// contact it resolved to, and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTarget {
    pub run_id: RunId,
    /// Its place in the request, from 1.
    pub seq: i64,
    pub external_id: Option<String>,
    pub channel: Option<Channel>,
    pub chat_id: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub contact_id: Option<ContactId>,
    pub status: TargetStatus,
    pub reason: Option<String>,
    pub updated_at: i64,
}

/// A target worked by the expander: resolved to a contact and queued (its messages in the same
/// commit; `Skipped` instead when the contact is already a recipient of the run), or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetOutcome {
    pub run_id: RunId,
    pub seq: i64,
    pub contact_id: Option<ContactId>,
    pub status: TargetStatus,
    pub reason: Option<String>,
}

/// What a run is made with: its recipients in order, each [`RunTarget`] as asked (its
/// `seq`, `contact_id`, `status` and `reason` as known: a single call resolves its one
/// recipient at once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewRun {
    pub run: Run,
    pub targets: Vec<RunTarget>,
}

/// How an idempotent run request was taken.
#[derive(Debug, Clone, PartialEq)]
pub enum RunCreated {
    /// A new run.
    New,
    /// The key was used before for the same request: that run, unchanged.
    Repeated(RunId),
}

/// The Start flow's storage.
#[async_trait]
pub trait FlowStore: Send + Sync {
    // The inbox.

    /// Stores the events not stored before for this bot and channel (deduplicated on
    /// (bot, channel, event_id)), durably, before the webhook is answered. Returns how many
    /// were new. `NotFound` when the bot does not exist.
    async fn receive(
        &self,
        bot: &BotId,
        channel: Channel,
        events: &[Inbound],
        now_ms: i64,
    ) -> StoreResult<u64>;
    /// Claims up to `limit` inbox items due (oldest first), leased for `lease_ms`: another
    /// claim skips them until the lease ends. A chat's updates are claimed in the order they
    /// were received, never two at once (one waits while an older one is pending).
    async fn claim_inbox(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<InboxItem>>;
    /// Processing an item failed: retried at `retry_at`, or given up (`None`) with `error`.
    async fn inbox_failed(
        &self,
        id: &InboxId,
        error: &str,
        retry_at: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()>;

    // Contacts.

    async fn contact(&self, ws: &WorkspaceId, id: &ContactId) -> StoreResult<Contact>;
    /// The contact of a chat, if any.
    async fn contact_by_chat(
        &self,
        bot: &BotId,
        channel: Channel,
        chat_id: &str,
    ) -> StoreResult<Option<Contact>>;
    /// The bot's contacts with this external id (one per channel at most, as a rule).
    async fn contacts_by_external_id(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        external_id: &str,
    ) -> StoreResult<Vec<Contact>>;
    /// A page of the bot's contacts, newest first, and the cursor of the next page.
    async fn list_contacts(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        filter: &ContactFilter,
    ) -> StoreResult<(Vec<Contact>, Option<String>)>;
    /// Deletes a contact with its personal data, variables, Starts and pending work.
    async fn delete_contact(&self, ws: &WorkspaceId, id: &ContactId) -> StoreResult<()>;
    /// Marks a contact unsubscribed (a platform said the person blocked the bot).
    async fn unsubscribe(&self, id: &ContactId, now_ms: i64) -> StoreResult<()>;

    // The business transaction.

    /// Writes everything in `commit` in one transaction; returns the contact's id (the
    /// stored one when the chat already had a contact).
    async fn commit(
        &self,
        bot: &BotId,
        commit: FlowCommit,
        now_ms: i64,
    ) -> StoreResult<Option<ContactId>>;
    /// Commits each of `commits` as [`FlowStore::commit`] does, several to a transaction (a
    /// worker's batch in a few transactions rather than one per item). Each commit is still all
    /// or nothing, and one that fails does not take the others with it. The outcomes in the
    /// order of `commits`.
    async fn commit_all(
        &self,
        commits: &[(BotId, FlowCommit)],
        now_ms: i64,
    ) -> Vec<StoreResult<Option<ContactId>>>;

    // Pacing (see `flow::pace`).

    /// Takes `count` send slots of the bot on the channel, `interval_us` apart, from the next
    /// free one (or `now_us`, if later): answers the first; the others follow at the interval.
    /// No two calls, from any instance, get the same slots.
    async fn take_send_slots(
        &self,
        bot: &BotId,
        channel: Channel,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> StoreResult<i64>;
    /// No slot of the bot on the channel before `until_us` (a platform asked to wait).
    async fn pause_sends(&self, bot: &BotId, channel: Channel, until_us: i64) -> StoreResult<()>;

    // The outbox.

    /// Claims up to `limit` messages due, oldest first, leased for `lease_ms`; a contact's
    /// messages are claimed in the order they were written, never two of one contact at once.
    async fn claim_messages(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// A message was sent (or given up, `Failed` with `error`), or is retried at `retry_at`.
    async fn message_done(
        &self,
        id: &MessageId,
        status: WorkStatus,
        error: Option<&str>,
        retry_at: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()>;
    /// Claims up to `limit` deliveries due, leased for `lease_ms`.
    async fn claim_deliveries(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<Delivery>>;
    async fn delivery(
        &self,
        ws: &WorkspaceId,
        id: &DeliveryId,
    ) -> StoreResult<(Delivery, Vec<Attempt>)>;
    async fn list_deliveries(
        &self,
        ws: &WorkspaceId,
        filter: &DeliveryFilter,
    ) -> StoreResult<(Vec<Delivery>, Option<String>)>;
    /// Makes a delivery due now again (a failed one becomes pending).
    async fn retry_delivery(
        &self,
        ws: &WorkspaceId,
        id: &DeliveryId,
        now_ms: i64,
    ) -> StoreResult<Delivery>;

    // Scenarios.

    /// Saves a new version of the bot's scenario; returns it.
    async fn save_scenario(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        document: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<ScenarioVersion>;
    /// The latest version, if any.
    async fn current_scenario(&self, bot: &BotId) -> StoreResult<Option<ScenarioVersion>>;
    async fn scenario_version(&self, bot: &BotId, version: i64) -> StoreResult<ScenarioVersion>;
    /// Every version, newest first (documents left out: `null`).
    async fn scenario_versions(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
    ) -> StoreResult<Vec<ScenarioVersion>>;

    // Runs.

    /// Makes a run with its targets, all or nothing. With an idempotency key the bot has used
    /// before: `Repeated` with that run when the request hash is the same, else
    /// `Conflict`; nothing is written.
    async fn create_run(&self, new: &NewRun, now_ms: i64) -> StoreResult<RunCreated>;
    /// A run with its counts.
    async fn run(&self, ws: &WorkspaceId, id: &RunId) -> StoreResult<Run>;
    /// A page of a bot's runs, newest first, and the cursor of the next page.
    async fn runs_of_bot(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> StoreResult<(Vec<Run>, Option<String>)>;
    /// A run by id alone (its counts left at zero), for the workers.
    async fn run_by_id(&self, id: &RunId) -> StoreResult<Run>;
    /// A page of a run's recipients in their order, those of `statuses` only unless it is
    /// empty, and the cursor of the next page.
    async fn run_targets(
        &self,
        ws: &WorkspaceId,
        run: &RunId,
        statuses: &[TargetStatus],
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> StoreResult<(Vec<RunTarget>, Option<String>)>;
    /// Cancels a run: its recipients not worked yet, and those whose messages are all unsent,
    /// become `cancelled`, and those messages are given up. Cancelling a cancelled run changes
    /// nothing. Returns the run.
    async fn cancel_run(&self, ws: &WorkspaceId, id: &RunId, now_ms: i64) -> StoreResult<Run>;
    /// Claims up to `limit` targets of runs that are due (not cancelled, `send_at` past),
    /// oldest run first and in their order, leased for `lease_ms`.
    async fn claim_targets(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<RunTarget>>;

    async fn set_signing_secret(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        sealed: &[u8],
        now_ms: i64,
    ) -> StoreResult<()>;
    async fn signing_secret(&self, bot: &BotId) -> StoreResult<Option<Vec<u8>>>;
}
