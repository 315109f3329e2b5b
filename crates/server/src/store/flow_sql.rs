//! [`FlowStore`] on SQLite and PostgreSQL (the tables of `migrations/*/0006_flow.sql`).
//!
//! Work (inbox items, messages, deliveries) is claimed with one `UPDATE ... WHERE ... IN
//! (SELECT ... LIMIT n) RETURNING ...` that leases the rows (`locked_until`) and counts the
//! claim (`attempts`; what a claim hands out counts the earlier ones). On PostgreSQL the inner select takes `FOR UPDATE SKIP LOCKED`, so that
//! concurrent claimers (several instances) pass over each other's rows instead of waiting for
//! them; SQLite has no such clause and needs none: it runs one writer at a time, and the
//! statement is atomic.
//!
//! A chat's updates and a contact's messages are claimed one at a time, in the order they were
//! written: a row is claimable only when no older row of its chat (its contact) is pending.
//! So a greeting is never overtaken by the next message, nor a Start by the message that
//! followed it, even with several workers.
//!
//! On SQLite every method that writes first takes a write turn with the click writer (see
//! [`WriteTurn`]), as the API's writes do: workers call these outside HTTP requests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use botlink_core::{Channel, Inbound};
use sqlx::QueryBuilder;

use super::db::{
    Backend, Cols, Store, from_json, from_name, is_unique_violation, like_escape, to_json,
};
use super::flow::{
    Attempt, Contact, ContactFilter, Delivery, DeliveryFilter, FlowCommit, FlowStore, InboxItem,
    MessageOutcome, NewRun, OutboxMessage, Run, RunCounts, RunCreated, RunTarget, ScenarioVersion,
    TargetStatus, WorkStatus,
};
use super::ids::{BotId, ContactId, DeliveryId, InboxId, MessageId, RunId, WorkspaceId};
use super::start_stats::count_start;
use super::{StoreError, StoreResult, Utm, WriteTurn};

/// The most commits [`FlowStore::commit_all`] writes in one transaction. On SQLite a webhook's
/// insert waits for the transaction under way, and a Start's commit is about ten statements:
/// eight keep that wait to a few milliseconds, where a whole batch of 32 held it for 10 to 20.
const COMMIT_CHUNK: usize = 8;

/// A page's size when none is asked for, and the largest one.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 500;

macro_rules! contact_cols {
    () => {
        "id, workspace_id, bot_id, channel, chat_id, user_id, name, language, external_id, phone, \
         email, variables, fields, subscribed, first_link_id, last_link_id, utm, pending_param, \
         created_at, last_seen_at, last_inbound_at"
    };
}

macro_rules! delivery_cols {
    () => {
        "id, workspace_id, bot_id, contact_id, kind, method, url, headers, data, continuation, \
         status, attempts, next_at, last_error, created_at, updated_at"
    };
}

/// The inbox items due, oldest first, none of a chat with an older pending item; `$1` now,
/// `$3` how many. Walks `inbox_pending` (`seq` order) and stops after `$3`.
macro_rules! pick_inbox {
    () => {
        "SELECT i.seq FROM inbox i WHERE i.status = 'pending' AND i.next_at <= $1 \
         AND (i.locked_until IS NULL OR i.locked_until <= $1) \
         AND NOT EXISTS (SELECT 1 FROM inbox o WHERE o.bot_id = i.bot_id AND o.channel = i.channel \
         AND o.chat_id = i.chat_id AND o.status = 'pending' AND o.seq < i.seq) \
         ORDER BY i.seq LIMIT $3"
    };
}

/// The messages due, oldest first, none of a contact with an older pending message.
macro_rules! pick_messages {
    () => {
        "SELECT m.seq FROM messages m WHERE m.status = 'pending' AND m.next_at <= $1 \
         AND (m.locked_until IS NULL OR m.locked_until <= $1) \
         AND NOT EXISTS (SELECT 1 FROM messages o WHERE o.contact_id = m.contact_id \
         AND o.status = 'pending' AND o.seq < m.seq) \
         ORDER BY m.seq LIMIT $3"
    };
}

/// The deliveries due, the longest due first.
macro_rules! pick_deliveries {
    () => {
        "SELECT d.id FROM deliveries d WHERE d.status = 'pending' AND d.next_at <= $1 \
         AND (d.locked_until IS NULL OR d.locked_until <= $1) ORDER BY d.next_at, d.id LIMIT $3"
    };
}

/// A claim on SQLite: the rows `$pick` chooses leased until `$2` and counted, in one statement
/// (SQLite runs one writer at a time, so no other claim can take them meanwhile).
macro_rules! claim_sqlite {
    ($table:literal, $key:literal, $pick:expr) => {
        concat!(
            "UPDATE ",
            $table,
            " SET locked_until = $2, attempts = attempts + 1 WHERE ",
            $key,
            " IN (",
            $pick,
            ") RETURNING *"
        )
    };
}

/// A claim on PostgreSQL: the selection runs once, as a materialized CTE, taking its rows with
/// `FOR UPDATE SKIP LOCKED` so that concurrent claimers pass over each other's rows. (As a
/// `WHERE key IN (subquery)` PostgreSQL may run the selection again per row, or pick a plan
/// that walks the whole backlog: claims of 1 to 10 s of CPU with 3,000 updates pending.)
macro_rules! claim_postgres {
    ($table:literal, $key:literal, $pick:expr) => {
        concat!(
            "WITH c AS MATERIALIZED (",
            $pick,
            " FOR UPDATE SKIP LOCKED) UPDATE ",
            $table,
            " t SET locked_until = $2, attempts = t.attempts + 1 FROM c WHERE t.",
            $key,
            " = c.",
            $key,
            " RETURNING t.*"
        )
    };
}

/// Whether any item of a queue is due (`$1` now): a read, which never waits for SQLite's write
/// lock, so that workers that find nothing to do take no write lock and hold no connection
/// waiting for one (claiming is a write even when it claims nothing).
const INBOX_DUE: &str = "SELECT 1 FROM inbox WHERE status = 'pending' AND next_at <= $1 \
     AND (locked_until IS NULL OR locked_until <= $1) LIMIT 1";
const MESSAGES_DUE: &str = "SELECT 1 FROM messages WHERE status = 'pending' AND next_at <= $1 \
     AND (locked_until IS NULL OR locked_until <= $1) LIMIT 1";
const DELIVERIES_DUE: &str = "SELECT 1 FROM deliveries WHERE status = 'pending' AND next_at <= $1 \
     AND (locked_until IS NULL OR locked_until <= $1) LIMIT 1";

/// Claim statements for one backend.
struct Claims {
    inbox: &'static str,
    messages: &'static str,
    deliveries: &'static str,
}

const SQLITE_CLAIMS: Claims = Claims {
    inbox: claim_sqlite!("inbox", "seq", pick_inbox!()),
    messages: claim_sqlite!("messages", "seq", pick_messages!()),
    deliveries: claim_sqlite!("deliveries", "id", pick_deliveries!()),
};

const POSTGRES_CLAIMS: Claims = Claims {
    inbox: claim_postgres!("inbox", "seq", pick_inbox!()),
    messages: claim_postgres!("messages", "seq", pick_messages!()),
    deliveries: claim_postgres!("deliveries", "id", pick_deliveries!()),
};

/// Upserts a contact (see [`ContactWrite`] for the rules), returning its id and the variables
/// and fields it had (a new contact: those written).
const UPSERT_CONTACT: &str = concat!(
    "INSERT INTO contacts (",
    contact_cols!(),
    ", updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, COALESCE($14, TRUE), \
     $15, $15, $16, $17, $18, $18, CASE WHEN $19 THEN $18 ELSE NULL END, $18) \
     ON CONFLICT (bot_id, channel, chat_id) DO UPDATE SET \
     user_id = COALESCE(excluded.user_id, contacts.user_id), \
     name = COALESCE(excluded.name, contacts.name), \
     language = COALESCE(excluded.language, contacts.language), \
     external_id = COALESCE(excluded.external_id, contacts.external_id), \
     phone = COALESCE(excluded.phone, contacts.phone), \
     email = COALESCE(excluded.email, contacts.email), \
     subscribed = COALESCE($14, contacts.subscribed), \
     first_link_id = COALESCE(contacts.first_link_id, excluded.first_link_id), \
     last_link_id = COALESCE(excluded.last_link_id, contacts.last_link_id), \
     utm = CASE WHEN $15 IS NULL THEN contacts.utm ELSE excluded.utm END, \
     pending_param = CASE WHEN $20 THEN excluded.pending_param ELSE contacts.pending_param END, \
     last_seen_at = excluded.last_seen_at, \
     last_inbound_at = CASE WHEN $19 THEN excluded.last_seen_at ELSE contacts.last_inbound_at END, \
     updated_at = excluded.updated_at \
     RETURNING id, variables, fields"
);

/// A contact blocked the bot: `$1` its id, `$2` false, `$3` now.
const UNSUBSCRIBE: &str = "UPDATE contacts SET subscribed = $2, updated_at = $3 WHERE id = $1";

/// Records a message's outcome (see [`FlowStore::message_done`]).
fn message_done_query<DB: sqlx::Database>(
    m: &MessageOutcome,
    now_ms: i64,
) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments>
where
    for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    Option<i64>: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    i64: for<'a> sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let (next_at, sent_at) = match m.status {
        WorkStatus::Pending => (Some(m.retry_at.unwrap_or(now_ms)), None),
        WorkStatus::Done => (None, Some(now_ms)),
        WorkStatus::Failed => (None, None),
    };
    sqlx::query(
        "UPDATE messages SET status = $2, next_at = $3, locked_until = NULL, error = $4, \
         sent_at = COALESCE($5, sent_at), updated_at = $6 WHERE id = $1",
    )
    .bind(m.id.as_str())
    .bind(m.status.as_str())
    .bind(next_at)
    .bind(m.error.as_deref())
    .bind(sent_at)
    .bind(now_ms)
}

/// The writes of one [`FlowCommit`] in the transaction `$tx`, for bot `$bot` of workspace
/// `$ws`: an `async` block answering the contact's id (or the commit's error, when the caller
/// rolls the transaction back). A macro, not a function, so that one text serves both
/// backends' transactions, as `with_pool!` does.
macro_rules! commit_in {
    ($tx:ident, $bot:expr, $ws:expr, $commit:expr, $now:expr) => {
        async {
            // 1. The contact.
            let contact = if let Some(cw) = &$commit.contact {
                let row = sqlx::query(UPSERT_CONTACT)
                    .bind(cw.new_id.as_str())
                    .bind($ws)
                    .bind($bot.as_str())
                    .bind(cw.channel.as_str())
                    .bind(&cw.chat_id)
                    .bind(cw.user_id.as_deref())
                    .bind(cw.name.as_deref())
                    .bind(cw.language.as_deref())
                    .bind(cw.external_id.as_deref())
                    .bind(cw.phone.as_deref())
                    .bind(cw.email.as_deref())
                    .bind(to_json(&cw.variables))
                    .bind(to_json(&cw.fields))
                    .bind(cw.subscribed)
                    .bind(cw.touch.as_ref().map(|(link, _)| link.as_str()))
                    .bind(to_json(cw.touch.as_ref().map_or(&Utm::default(), |(_, utm)| utm)))
                    .bind(cw.pending_param.clone().flatten())
                    .bind($now)
                    .bind(cw.inbound)
                    .bind(cw.pending_param.is_some())
                    .fetch_one(&mut *$tx)
                    .await?;
                let id = row.text("id")?;
                if id != cw.new_id.as_str() {
                    // Merged here rather than in SQL (SQLite's json_patch, PostgreSQL's jsonb
                    // ||): the upsert locked the row, so nothing changes it meanwhile.
                    let merge = |col: &str, new: &BTreeMap<String, String>| -> StoreResult<Option<String>> {
                        let stored: BTreeMap<String, String> = from_json("contacts", &row.text(col)?)?;
                        let mut merged = stored.clone();
                        merged.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
                        Ok((merged != stored).then(|| to_json(&merged)))
                    };
                    let variables = merge("variables", &cw.variables)?;
                    let fields = merge("fields", &cw.fields)?;
                    if variables.is_some() || fields.is_some() {
                        sqlx::query(
                            "UPDATE contacts SET variables = COALESCE($2, variables), \
                             fields = COALESCE($3, fields) WHERE id = $1",
                        )
                        .bind(&id)
                        .bind(variables)
                        .bind(fields)
                        .execute(&mut *$tx)
                        .await?;
                    }
                }
                Some(CommitContact { id, channel: cw.channel, chat_id: cw.chat_id.clone() })
            } else if let Some(id) = &$commit.contact_id {
                let row = sqlx::query("SELECT channel, chat_id FROM contacts WHERE id = $1 AND bot_id = $2")
                    .bind(id.as_str())
                    .bind($bot.as_str())
                    .fetch_optional(&mut *$tx)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                Some(CommitContact {
                    id: id.as_str().to_owned(),
                    channel: from_name("contacts", &row.text("channel")?)?,
                    chat_id: row.text("chat_id")?,
                })
            } else {
                None
            };
            let needs_contact =
                $commit.start.is_some() || !$commit.messages.is_empty() || !$commit.deliveries.is_empty();
            let contact = match contact {
                Some(c) => Some(c),
                // A Start, a message or a delivery is always some contact's.
                None if needs_contact => return Err(StoreError::NotFound),
                None => None,
            };

            // 1b. A bulk run's target: queued for the contact unless the contact is a recipient
            // of the run already (then skipped, and its messages left out), or failed. A
            // target no longer pending (cancelled, or worked after a lost lease) takes nothing.
            let mut skip_messages = false;
            if let Some(t) = &$commit.target {
                let contact_id = t.contact_id.as_ref().map(|c| c.as_str());
                let first = sqlx::query(
                    "UPDATE run_targets SET contact_id = $3, status = $4, reason = $5, \
                     locked_until = NULL, updated_at = $6 \
                     WHERE run_id = $1 AND seq = $2 AND status = 'pending' \
                     AND ($3 IS NULL OR NOT EXISTS (SELECT 1 FROM run_targets o WHERE o.run_id = $1 \
                     AND o.contact_id = $3 AND o.status <> 'skipped')) \
                     AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND bot_id = $7)",
                )
                .bind(t.run_id.as_str())
                .bind(t.seq)
                .bind(contact_id)
                .bind(t.status.as_str())
                .bind(t.reason.as_deref())
                .bind($now)
                .bind($bot.as_str())
                .execute(&mut *$tx)
                .await?;
                if first.rows_affected() == 0 {
                    skip_messages = true;
                    sqlx::query(
                        "UPDATE run_targets SET contact_id = $3, status = 'skipped', reason = 'duplicate', \
                         locked_until = NULL, updated_at = $4 \
                         WHERE run_id = $1 AND seq = $2 AND status = 'pending' \
                         AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND bot_id = $5)",
                    )
                    .bind(t.run_id.as_str())
                    .bind(t.seq)
                    .bind(contact_id)
                    .bind($now)
                    .bind($bot.as_str())
                    .execute(&mut *$tx)
                    .await?;
                }
            }

            // 2. The Start, the messages and the deliveries: ids chosen by the caller, so a
            // repeated commit finds them written and adds nothing.
            if let (Some(start), Some(c)) = (&$commit.start, &contact) {
                let recorded = sqlx::query(
                    "INSERT INTO starts (id, workspace_id, bot_id, contact_id, link_id, click_id, \
                     entry_point_id, utm, param, node, unattributed, at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (id) DO NOTHING",
                )
                .bind(start.id.as_str())
                .bind($ws)
                .bind($bot.as_str())
                .bind(&c.id)
                .bind(start.link_id.as_ref().map(|l| l.as_str()))
                .bind(start.click_id.as_ref().map(|l| l.as_str()))
                .bind(start.entry_point_id.as_ref().map(|l| l.as_str()))
                .bind(to_json(&start.utm))
                .bind(start.param.as_deref())
                .bind(&start.node)
                .bind(start.unattributed.as_deref())
                .bind(start.at)
                .execute(&mut *$tx)
                .await?;
                // Counted once, when recorded (see `start_stats`).
                if recorded.rows_affected() == 1 {
                    count_start($bot, c.channel, start).build().execute(&mut *$tx).await?;
                }
            }
            if let (Some(c), false) = (&contact, skip_messages) {
                for m in &$commit.messages {
                    sqlx::query(
                        "INSERT INTO messages (id, workspace_id, bot_id, contact_id, channel, chat_id, \
                         message, run_id, status, attempts, next_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', 0, $9, $9, $9) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(m.id.as_str())
                    .bind($ws)
                    .bind($bot.as_str())
                    .bind(&c.id)
                    .bind(c.channel.as_str())
                    .bind(&c.chat_id)
                    .bind(to_json(&m.message))
                    .bind(m.run_id.as_ref().map(|r| r.as_str()))
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                }
                for d in &$commit.deliveries {
                    sqlx::query(
                        "INSERT INTO deliveries (id, workspace_id, bot_id, contact_id, kind, method, url, \
                         headers, data, continuation, status, attempts, next_at, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $11, $11) \
                         ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(d.id.as_str())
                    .bind($ws)
                    .bind($bot.as_str())
                    .bind(&c.id)
                    .bind(&d.kind)
                    .bind(&d.method)
                    .bind(&d.url)
                    .bind(to_json(&d.headers))
                    .bind(to_json(&d.data))
                    .bind(d.continuation.as_ref().map(to_json))
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
                }
            }

            // 3. The update processed.
            if let Some(id) = &$commit.inbox_done {
                sqlx::query(
                    "UPDATE inbox SET status = 'done', next_at = NULL, locked_until = NULL, error = NULL, \
                     updated_at = $2 WHERE id = $1",
                )
                .bind(id.as_str())
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            }

            // 4. A delivery's attempt: `attempts` becomes the number recorded (a claim counted
            // the attempt under way; one whose worker died left no record and counts no more).
            if let Some(a) = &$commit.attempt {
                let next_at = match a.status {
                    WorkStatus::Pending => Some(a.next_at.unwrap_or($now)),
                    WorkStatus::Done | WorkStatus::Failed => None,
                };
                let found = sqlx::query("SELECT id FROM deliveries WHERE id = $1 AND bot_id = $2")
                    .bind(a.id.as_str())
                    .bind($bot.as_str())
                    .fetch_optional(&mut *$tx)
                    .await?;
                if found.is_none() {
                    return Err(StoreError::NotFound);
                }
                sqlx::query(
                    "INSERT INTO delivery_attempts (delivery_id, at, status, error, duration_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (delivery_id, at) DO NOTHING",
                )
                .bind(a.id.as_str())
                .bind(a.attempt.at)
                .bind(a.attempt.status.map(i64::from))
                .bind(a.attempt.error.as_deref())
                .bind(a.attempt.duration_ms)
                .execute(&mut *$tx)
                .await?;
                sqlx::query(
                    "UPDATE deliveries SET status = $2, next_at = $3, locked_until = NULL, last_error = $4, \
                     attempts = (SELECT COUNT(*) FROM delivery_attempts WHERE delivery_id = $1), \
                     continuation = CASE WHEN $5 THEN NULL ELSE continuation END, updated_at = $6 \
                     WHERE id = $1",
                )
                .bind(a.id.as_str())
                .bind(a.status.as_str())
                .bind(next_at)
                .bind(a.attempt.error.as_deref())
                .bind(a.clear_continuation)
                .bind($now)
                .execute(&mut *$tx)
                .await?;
            }

            // 5. A call_node recipient's outcome, its messages sent or given up (nothing when
            // the recipient was cancelled meanwhile).
            if let Some(r) = &$commit.recipient {
                let status = match r.status {
                    WorkStatus::Pending => TargetStatus::Queued,
                    WorkStatus::Done => TargetStatus::Sent,
                    WorkStatus::Failed => TargetStatus::Failed,
                };
                sqlx::query(
                    "UPDATE run_targets SET status = $3, reason = $4, updated_at = $5 \
                     WHERE run_id = $1 AND contact_id = $2 AND status = 'queued' \
                     AND EXISTS (SELECT 1 FROM runs WHERE id = $1 AND bot_id = $6)",
                )
                .bind(r.run_id.as_str())
                .bind(r.contact_id.as_str())
                .bind(status.as_str())
                .bind(r.reason.as_deref())
                .bind($now)
                .bind($bot.as_str())
                .execute(&mut *$tx)
                .await?;
            }
            // 6. A message's outcome, and the gap before the contact's next one.
            if let Some(m) = &$commit.message_done {
                let done = message_done_query(m, $now).execute(&mut *$tx).await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                if let Some(until) = m.hold_next_until {
                    sqlx::query(
                        "UPDATE messages SET next_at = CASE WHEN next_at < $2 THEN $2 ELSE next_at END \
                         WHERE contact_id = (SELECT contact_id FROM messages WHERE id = $1) \
                         AND status = 'pending' AND id <> $1",
                    )
                    .bind(m.id.as_str())
                    .bind(until)
                    .execute(&mut *$tx)
                    .await?;
                }
            }
            // 7. The contact blocked the bot.
            if $commit.unsubscribe {
                let Some(c) = &contact else {
                    return Err(StoreError::NotFound);
                };
                sqlx::query(UNSUBSCRIBE)
                    .bind(&c.id)
                    .bind(false)
                    .bind($now)
                    .execute(&mut *$tx)
                    .await?;
            }
            Ok::<_, StoreError>(contact.map(|c| ContactId::from(c.id)))
        }
    };
}

fn inbox_from<R: Cols>(r: &R) -> StoreResult<(i64, InboxItem)> {
    Ok((
        r.int("seq")?,
        InboxItem {
            id: r.text("id")?.into(),
            workspace_id: r.text("workspace_id")?.into(),
            bot_id: r.text("bot_id")?.into(),
            channel: from_name("inbox", &r.text("channel")?)?,
            event: from_json("inbox", &r.text("event")?)?,
            received_at: r.int("received_at")?,
            // The claim counted itself.
            attempts: r.int("attempts")? - 1,
        },
    ))
}

fn contact_from<R: Cols>(r: &R) -> StoreResult<Contact> {
    Ok(Contact {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        channel: from_name("contacts", &r.text("channel")?)?,
        chat_id: r.text("chat_id")?,
        user_id: r.opt_text("user_id")?,
        name: r.opt_text("name")?,
        language: r.opt_text("language")?,
        external_id: r.opt_text("external_id")?,
        phone: r.opt_text("phone")?,
        email: r.opt_text("email")?,
        variables: from_json("contacts", &r.text("variables")?)?,
        fields: from_json("contacts", &r.text("fields")?)?,
        subscribed: r.boolean("subscribed")?,
        first_link_id: r.opt_text("first_link_id")?.map(Into::into),
        last_link_id: r.opt_text("last_link_id")?.map(Into::into),
        utm: from_json("contacts", &r.text("utm")?)?,
        pending_param: r.opt_text("pending_param")?,
        created_at: r.int("created_at")?,
        last_seen_at: r.int("last_seen_at")?,
        last_inbound_at: r.opt_int("last_inbound_at")?,
    })
}

fn message_from<R: Cols>(r: &R) -> StoreResult<(i64, OutboxMessage)> {
    Ok((
        r.int("seq")?,
        OutboxMessage {
            id: r.text("id")?.into(),
            workspace_id: r.text("workspace_id")?.into(),
            bot_id: r.text("bot_id")?.into(),
            contact_id: r.text("contact_id")?.into(),
            channel: from_name("messages", &r.text("channel")?)?,
            chat_id: r.text("chat_id")?,
            message: from_json("messages", &r.text("message")?)?,
            run_id: r.opt_text("run_id")?.map(Into::into),
            // The claim counted itself.
            attempts: r.int("attempts")? - 1,
            created_at: r.int("created_at")?,
        },
    ))
}

fn delivery_from<R: Cols>(r: &R) -> StoreResult<Delivery> {
    Ok(Delivery {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        contact_id: r.text("contact_id")?.into(),
        kind: r.text("kind")?,
        method: r.text("method")?,
        url: r.text("url")?,
        headers: from_json("deliveries", &r.text("headers")?)?,
        data: from_json("deliveries", &r.text("data")?)?,
        continuation: r
            .opt_text("continuation")?
            .map(|c| from_json("deliveries", &c))
            .transpose()?,
        status: from_name("deliveries", &r.text("status")?)?,
        attempts: r.int("attempts")?,
        next_at: r.opt_int("next_at")?,
        last_error: r.opt_text("last_error")?,
        created_at: r.int("created_at")?,
        updated_at: r.int("updated_at")?,
    })
}

fn attempt_from<R: Cols>(r: &R) -> StoreResult<Attempt> {
    let status = r
        .opt_int("status")?
        .map(|s| {
            u16::try_from(s).map_err(|_| StoreError::Corrupt {
                table: "delivery_attempts",
                detail: format!("HTTP status {s} out of range"),
            })
        })
        .transpose()?;
    Ok(Attempt {
        at: r.int("at")?,
        status,
        error: r.opt_text("error")?,
        duration_ms: r.int("duration_ms")?,
    })
}

/// A scenario version; its document left out (`null`) unless `document`.
fn scenario_from<R: Cols>(r: &R, document: bool) -> StoreResult<ScenarioVersion> {
    Ok(ScenarioVersion {
        bot_id: r.text("bot_id")?.into(),
        version: r.int("version")?,
        document: if document {
            from_json("scenario_versions", &r.text("document")?)?
        } else {
            serde_json::Value::Null
        },
        created_at: r.int("created_at")?,
    })
}

/// The columns of `runs` a [`Run`] is read from.
macro_rules! run_cols {
    () => {
        "id, workspace_id, bot_id, node, variables, created_at, send_at, cancelled_at, \
         idempotency_key, request_hash"
    };
}

/// A run, its counts left at zero (see [`Store::run_counts`]).
fn run_from<R: Cols>(r: &R) -> StoreResult<Run> {
    Ok(Run {
        id: r.text("id")?.into(),
        workspace_id: r.text("workspace_id")?.into(),
        bot_id: r.text("bot_id")?.into(),
        node: r.text("node")?,
        variables: from_json("runs", &r.text("variables")?)?,
        created_at: r.int("created_at")?,
        send_at: r.opt_int("send_at")?,
        cancelled_at: r.opt_int("cancelled_at")?,
        idempotency_key: r.opt_text("idempotency_key")?,
        request_hash: r.opt_text("request_hash")?,
        counts: RunCounts::default(),
    })
}

fn target_from<R: Cols>(r: &R) -> StoreResult<RunTarget> {
    Ok(RunTarget {
        run_id: r.text("run_id")?.into(),
        seq: r.int("seq")?,
        external_id: r.opt_text("external_id")?,
        channel: r
            .opt_text("channel")?
            .map(|c| from_name("run_targets", &c))
            .transpose()?,
        chat_id: r.opt_text("chat_id")?,
        variables: from_json("run_targets", &r.text("variables")?)?,
        contact_id: r.opt_text("contact_id")?.map(Into::into),
        status: from_name("run_targets", &r.text("status")?)?,
        reason: r.opt_text("reason")?,
        updated_at: r.int("updated_at")?,
    })
}

/// Adds `n` recipients of status `status` to `counts`.
fn add_count(counts: &mut RunCounts, status: &str, n: i64) -> StoreResult<()> {
    let slot = match from_name::<TargetStatus>("run_targets", status)? {
        TargetStatus::Pending => &mut counts.pending,
        TargetStatus::Queued => &mut counts.queued,
        TargetStatus::Sent => &mut counts.sent,
        TargetStatus::Failed => &mut counts.failed,
        TargetStatus::Skipped => &mut counts.skipped,
        TargetStatus::Cancelled => &mut counts.cancelled,
    };
    *slot += n;
    Ok(())
}

/// Targets written by one statement when a run is made (10 values each: well under SQLite's
/// and PostgreSQL's limits on bound values).
const TARGETS_PER_INSERT: usize = 500;

/// Whether a target of a due run waits (`$1` now).
const TARGETS_DUE: &str = "SELECT 1 FROM run_targets t JOIN runs r ON r.id = t.run_id \
     WHERE t.status = 'pending' AND (t.locked_until IS NULL OR t.locked_until <= $1) \
     AND r.cancelled_at IS NULL AND (r.send_at IS NULL OR r.send_at <= $1) LIMIT 1";

/// The targets due, oldest run first and in their order; `$1` now, `$3` how many.
macro_rules! pick_targets {
    () => {
        "SELECT t.run_id, t.seq FROM run_targets t JOIN runs r ON r.id = t.run_id \
         WHERE t.status = 'pending' AND (t.locked_until IS NULL OR t.locked_until <= $1) \
         AND r.cancelled_at IS NULL AND (r.send_at IS NULL OR r.send_at <= $1) \
         ORDER BY r.created_at, t.run_id, t.seq LIMIT $3"
    };
}

const SQLITE_CLAIM_TARGETS: &str = concat!(
    "UPDATE run_targets SET locked_until = $2 WHERE (run_id, seq) IN (",
    pick_targets!(),
    ") RETURNING *"
);
const POSTGRES_CLAIM_TARGETS: &str = concat!(
    "WITH c AS MATERIALIZED (",
    pick_targets!(),
    " FOR UPDATE OF t SKIP LOCKED) UPDATE run_targets x SET locked_until = $2 FROM c \
     WHERE x.run_id = c.run_id AND x.seq = c.seq RETURNING x.*"
);

/// The cursor of the page after a row sorted by (`at`, `id`) descending, hex-encoded so that
/// callers treat it as opaque (the form links' cursors take).
fn cursor_after(at: i64, id: &str) -> String {
    hex::encode(format!("{at}:{id}"))
}

fn parse_cursor(cursor: &str) -> StoreResult<(i64, String)> {
    let bytes = hex::decode(cursor).map_err(|_| StoreError::InvalidCursor)?;
    let text = String::from_utf8(bytes).map_err(|_| StoreError::InvalidCursor)?;
    let (at, id) = text.split_once(':').ok_or(StoreError::InvalidCursor)?;
    Ok((
        at.parse().map_err(|_| StoreError::InvalidCursor)?,
        id.to_owned(),
    ))
}

fn page_size(limit: Option<u32>) -> u32 {
    limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE)
}

/// Cuts a page fetched with one row too many; the cursor of the next page, if there is one.
fn cut_page<T>(rows: &mut Vec<T>, limit: u32, key: impl Fn(&T) -> (i64, &str)) -> Option<String> {
    if rows.len() <= limit as usize {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|last| {
        let (at, id) = key(last);
        cursor_after(at, id)
    })
}

/// See [`Store::flow_turn`].
struct FlowTurn {
    _lock: tokio::sync::OwnedMutexGuard<()>,
    _turn: Option<WriteTurn>,
}

/// The contact a commit's Start, messages and deliveries are about.
struct CommitContact {
    id: String,
    channel: Channel,
    chat_id: String,
}

impl Store {
    /// On SQLite, this process's turn at the write lock, held by each method that writes for
    /// as long as it writes: the flow's writes one at a time (see `Store::flow_writes`), and a
    /// write turn with the click writer, ready. Nothing on PostgreSQL.
    async fn flow_turn(&self) -> Option<FlowTurn> {
        if self.backend() != Backend::Sqlite {
            return None;
        }
        let lock = self.flow_writes.clone().lock_owned().await;
        let turn = self.write_turn();
        if let Some(turn) = &turn {
            turn.ready().await;
        }
        Some(FlowTurn {
            _lock: lock,
            _turn: turn,
        })
    }

    /// Whether the queue that `due` asks about has an item due now.
    async fn any_due(&self, due: &'static str, now_ms: i64) -> StoreResult<bool> {
        Ok(with_pool!(self, pool => {
            sqlx::query(due).bind(now_ms).fetch_optional(pool).await?.is_some()
        }))
    }

    /// Each of `commits` (see [`commit_in!`]) in one transaction: all of them, or none and the
    /// first error.
    async fn commit_together(
        &self,
        commits: &[(BotId, FlowCommit)],
        now_ms: i64,
    ) -> StoreResult<Vec<Option<ContactId>>> {
        if commits.is_empty() {
            return Ok(Vec::new());
        }
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            let mut ids = Vec::with_capacity(commits.len());
            // A bot's workspace, read once a batch (which is mostly one bot's).
            let mut workspaces: Vec<(&BotId, String)> = Vec::new();
            for (bot, commit) in commits {
                let ws = match workspaces.iter().find(|(b, _)| *b == bot) {
                    Some((_, ws)) => ws.clone(),
                    None => {
                        let ws: String = sqlx::query_scalar("SELECT workspace_id FROM bots WHERE id = $1")
                            .bind(bot.as_str())
                            .fetch_optional(&mut *tx)
                            .await?
                            .ok_or(StoreError::NotFound)?;
                        workspaces.push((bot, ws.clone()));
                        ws
                    }
                };
                ids.push(commit_in!(tx, bot, &ws, commit, now_ms).await?);
            }
            tx.commit().await?;
            Ok(ids)
        })
    }

    /// Whether claims are prepared once per connection. Not on PostgreSQL: a prepared
    /// statement switches to a generic plan after five runs, planned from the statistics of
    /// then, and a plan made while the queue was empty (an anti-join scanning the whole inbox
    /// for each row) kept each claim 1 to 10 s on the CPU once thousands of updates waited
    /// (14 ms planned afresh). Planning a claim each time costs well under a millisecond.
    fn claims_persist(&self) -> bool {
        self.backend() == Backend::Sqlite
    }

    fn claims(&self) -> &'static Claims {
        match self.backend() {
            Backend::Sqlite => &SQLITE_CLAIMS,
            Backend::Postgres => &POSTGRES_CLAIMS,
        }
    }
}

#[async_trait]
impl FlowStore for Store {
    async fn receive(
        &self,
        bot: &BotId,
        channel: Channel,
        events: &[Inbound],
        now_ms: i64,
    ) -> StoreResult<u64> {
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            let ws: String = sqlx::query_scalar("SELECT workspace_id FROM bots WHERE id = $1")
                .bind(bot.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut new = 0;
            for event in events {
                new += sqlx::query(
                    "INSERT INTO inbox (id, workspace_id, bot_id, channel, event_id, chat_id, event, \
                     status, attempts, next_at, received_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8, $8) \
                     ON CONFLICT (bot_id, channel, event_id) DO NOTHING",
                )
                .bind(InboxId::new().as_str())
                .bind(&ws)
                .bind(bot.as_str())
                .bind(channel.as_str())
                .bind(&event.event_id)
                .bind(&event.chat_id)
                .bind(to_json(event))
                .bind(now_ms)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
            tx.commit().await?;
            Ok(new)
        })
    }

    async fn claim_inbox(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<InboxItem>> {
        if !self.any_due(INBOX_DUE, now_ms).await? {
            return Ok(Vec::new());
        }
        let _turn = self.flow_turn().await;
        let mut items = with_pool!(self, pool => {
            let rows = sqlx::query(self.claims().inbox)
                .persistent(self.claims_persist())
                .bind(now_ms)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(inbox_from).collect::<StoreResult<Vec<_>>>()?
        });
        // RETURNING gives no order.
        items.sort_by_key(|(seq, _)| *seq);
        Ok(items.into_iter().map(|(_, item)| item).collect())
    }

    async fn inbox_failed(
        &self,
        id: &InboxId,
        error: &str,
        retry_at: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let status = if retry_at.is_some() {
            WorkStatus::Pending
        } else {
            WorkStatus::Failed
        };
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE inbox SET status = $2, next_at = $3, locked_until = NULL, error = $4, \
                 updated_at = $5 WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(status.as_str())
            .bind(retry_at)
            .bind(error)
            .bind(now_ms)
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    async fn contact(&self, ws: &WorkspaceId, id: &ContactId) -> StoreResult<Contact> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!(
                "SELECT ", contact_cols!(), " FROM contacts WHERE id = $1 AND workspace_id = $2"
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)?;
            contact_from(&row)
        })
    }

    async fn contact_by_chat(
        &self,
        bot: &BotId,
        channel: Channel,
        chat_id: &str,
    ) -> StoreResult<Option<Contact>> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!(
                "SELECT ", contact_cols!(),
                " FROM contacts WHERE bot_id = $1 AND channel = $2 AND chat_id = $3"
            ))
            .bind(bot.as_str())
            .bind(channel.as_str())
            .bind(chat_id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(contact_from).transpose()
        })
    }

    async fn contacts_by_external_id(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        external_id: &str,
    ) -> StoreResult<Vec<Contact>> {
        with_pool!(self, pool => {
            // An unknown bot is `NotFound`, not an empty list.
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            let rows = sqlx::query(concat!(
                "SELECT ", contact_cols!(),
                " FROM contacts WHERE bot_id = $1 AND external_id = $2 AND workspace_id = $3 \
                 ORDER BY channel, created_at, id"
            ))
            .bind(bot.as_str())
            .bind(external_id)
            .bind(ws.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter().map(contact_from).collect()
        })
    }

    async fn list_contacts(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        filter: &ContactFilter,
    ) -> StoreResult<(Vec<Contact>, Option<String>)> {
        let limit = page_size(filter.limit);
        let after = filter.cursor.as_deref().map(parse_cursor).transpose()?;
        let q = filter
            .q
            .as_deref()
            .map(str::trim)
            .filter(|q| !q.is_empty())
            .map(|q| format!("%{}%", like_escape(&q.to_lowercase())));
        let mut contacts = with_pool!(self, pool => {
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut sql = QueryBuilder::new(concat!(
                "SELECT ", contact_cols!(), " FROM contacts WHERE bot_id = "
            ));
            sql.push_bind(bot.as_str());
            sql.push(" AND workspace_id = ").push_bind(ws.as_str());
            if let Some(channel) = filter.channel {
                sql.push(" AND channel = ").push_bind(channel.as_str());
            }
            if let Some(chat_id) = &filter.chat_id {
                sql.push(" AND chat_id = ").push_bind(chat_id.as_str());
            }
            if let Some(external_id) = &filter.external_id {
                sql.push(" AND external_id = ").push_bind(external_id.as_str());
            }
            if let Some(q) = &q {
                // LOWER on both sides: PostgreSQL's LIKE is case-sensitive, SQLite's is not.
                sql.push(" AND (");
                for (i, col) in ["name", "external_id", "phone", "email"].iter().enumerate() {
                    if i > 0 {
                        sql.push(" OR ");
                    }
                    sql.push(format_args!("LOWER({col}) LIKE ")).push_bind(q.as_str()).push(" ESCAPE '\\'");
                }
                sql.push(")");
            }
            if let Some((at, id)) = &after {
                sql.push(" AND (created_at < ").push_bind(*at);
                sql.push(" OR (created_at = ").push_bind(*at).push(" AND id < ").push_bind(id.as_str()).push("))");
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(contact_from).collect::<StoreResult<Vec<_>>>()?
        });
        let next = cut_page(&mut contacts, limit, |c| (c.created_at, c.id.as_str()));
        Ok((contacts, next))
    }

    async fn delete_contact(&self, ws: &WorkspaceId, id: &ContactId) -> StoreResult<()> {
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            let row = sqlx::query(
                "SELECT bot_id, channel, chat_id FROM contacts WHERE id = $1 AND workspace_id = $2",
            )
            .bind(id.as_str())
            .bind(ws.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            // The updates received from the chat hold the person's data too (name, messages).
            sqlx::query("DELETE FROM inbox WHERE bot_id = $1 AND channel = $2 AND chat_id = $3")
                .bind(row.text("bot_id")?)
                .bind(row.text("channel")?)
                .bind(row.text("chat_id")?)
                .execute(&mut *tx)
                .await?;
            // Its Starts, messages, deliveries and run outcomes go with it (ON DELETE CASCADE).
            sqlx::query("DELETE FROM contacts WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    async fn unsubscribe(&self, id: &ContactId, now_ms: i64) -> StoreResult<()> {
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let done = sqlx::query(UNSUBSCRIBE)
                .bind(id.as_str())
                .bind(false)
                .bind(now_ms)
                .execute(pool)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    async fn commit(
        &self,
        bot: &BotId,
        commit: FlowCommit,
        now_ms: i64,
    ) -> StoreResult<Option<ContactId>> {
        let mut ids = self
            .commit_together(&[(bot.clone(), commit)], now_ms)
            .await?;
        Ok(ids.pop().flatten())
    }

    async fn commit_all(
        &self,
        commits: &[(BotId, FlowCommit)],
        now_ms: i64,
    ) -> Vec<StoreResult<Option<ContactId>>> {
        let mut out = Vec::with_capacity(commits.len());
        for chunk in commits.chunks(COMMIT_CHUNK) {
            match self.commit_together(chunk, now_ms).await {
                Ok(ids) => out.extend(ids.into_iter().map(Ok)),
                Err(e) if chunk.len() == 1 => out.push(Err(e)),
                // One of them failed, and took the rest back with it: each alone, so that the
                // others are written and the failure is that one's.
                Err(_) => {
                    for c in chunk {
                        out.push(
                            self.commit_together(std::slice::from_ref(c), now_ms)
                                .await
                                .map(|mut ids| ids.pop().flatten()),
                        );
                    }
                }
            }
        }
        out
    }

    async fn take_send_slots(
        &self,
        bot: &BotId,
        channel: Channel,
        count: u32,
        interval_us: i64,
        now_us: i64,
    ) -> StoreResult<i64> {
        let span = i64::from(count).saturating_mul(interval_us);
        let _turn = self.flow_turn().await;
        let next: i64 = with_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO send_slots (bot_id, channel, next_at) VALUES ($1, $2, $3 + $4) \
                 ON CONFLICT (bot_id, channel) DO UPDATE SET next_at = \
                 CASE WHEN send_slots.next_at > $3 THEN send_slots.next_at ELSE $3 END + $4 \
                 RETURNING next_at",
            )
            .bind(bot.as_str())
            .bind(channel.as_str())
            .bind(now_us)
            .bind(span)
            .fetch_one(pool)
            .await?
        });
        Ok(next - span)
    }

    async fn pause_sends(&self, bot: &BotId, channel: Channel, until_us: i64) -> StoreResult<()> {
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO send_slots (bot_id, channel, next_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (bot_id, channel) DO UPDATE SET next_at = \
                 CASE WHEN send_slots.next_at > $3 THEN send_slots.next_at ELSE $3 END",
            )
            .bind(bot.as_str())
            .bind(channel.as_str())
            .bind(until_us)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    async fn claim_messages(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        if !self.any_due(MESSAGES_DUE, now_ms).await? {
            return Ok(Vec::new());
        }
        let _turn = self.flow_turn().await;
        let mut messages = with_pool!(self, pool => {
            let rows = sqlx::query(self.claims().messages)
                .persistent(self.claims_persist())
                .bind(now_ms)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(message_from).collect::<StoreResult<Vec<_>>>()?
        });
        messages.sort_by_key(|(seq, _)| *seq);
        Ok(messages.into_iter().map(|(_, m)| m).collect())
    }

    async fn message_done(
        &self,
        id: &MessageId,
        status: WorkStatus,
        error: Option<&str>,
        retry_at: Option<i64>,
        now_ms: i64,
    ) -> StoreResult<()> {
        let outcome = MessageOutcome {
            id: id.clone(),
            status,
            error: error.map(str::to_owned),
            retry_at,
            hold_next_until: None,
        };
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let done = message_done_query(&outcome, now_ms).execute(pool).await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<Delivery>> {
        if !self.any_due(DELIVERIES_DUE, now_ms).await? {
            return Ok(Vec::new());
        }
        let _turn = self.flow_turn().await;
        let mut deliveries = with_pool!(self, pool => {
            let rows = sqlx::query(self.claims().deliveries)
                .persistent(self.claims_persist())
                .bind(now_ms)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(delivery_from).collect::<StoreResult<Vec<_>>>()?
        });
        for d in &mut deliveries {
            // The claim counted itself.
            d.attempts -= 1;
        }
        deliveries.sort_by(|a, b| (a.next_at, &a.id).cmp(&(b.next_at, &b.id)));
        Ok(deliveries)
    }

    async fn delivery(
        &self,
        ws: &WorkspaceId,
        id: &DeliveryId,
    ) -> StoreResult<(Delivery, Vec<Attempt>)> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_snapshot()).await?;
            let row = sqlx::query(concat!(
                "SELECT ", delivery_cols!(), " FROM deliveries WHERE id = $1 AND workspace_id = $2"
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let delivery = delivery_from(&row)?;
            let rows = sqlx::query(
                "SELECT at, status, error, duration_ms FROM delivery_attempts WHERE delivery_id = $1 ORDER BY at",
            )
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            let attempts = rows.iter().map(attempt_from).collect::<StoreResult<Vec<_>>>()?;
            tx.commit().await?;
            Ok((delivery, attempts))
        })
    }

    async fn list_deliveries(
        &self,
        ws: &WorkspaceId,
        filter: &DeliveryFilter,
    ) -> StoreResult<(Vec<Delivery>, Option<String>)> {
        let limit = page_size(filter.limit);
        let after = filter.cursor.as_deref().map(parse_cursor).transpose()?;
        let mut deliveries = with_pool!(self, pool => {
            let mut sql = QueryBuilder::new(concat!(
                "SELECT ", delivery_cols!(), " FROM deliveries WHERE workspace_id = "
            ));
            sql.push_bind(ws.as_str());
            if let Some(bot) = &filter.bot_id {
                sql.push(" AND bot_id = ").push_bind(bot.as_str());
            }
            if let Some(status) = filter.status {
                sql.push(" AND status = ").push_bind(status.as_str());
            }
            if let Some((at, id)) = &after {
                sql.push(" AND (created_at < ").push_bind(*at);
                sql.push(" OR (created_at = ").push_bind(*at).push(" AND id < ").push_bind(id.as_str()).push("))");
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = sql.build().fetch_all(pool).await?;
            rows.iter().map(delivery_from).collect::<StoreResult<Vec<_>>>()?
        });
        let next = cut_page(&mut deliveries, limit, |d| (d.created_at, d.id.as_str()));
        Ok((deliveries, next))
    }

    async fn retry_delivery(
        &self,
        ws: &WorkspaceId,
        id: &DeliveryId,
        now_ms: i64,
    ) -> StoreResult<Delivery> {
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            // A lease under way is kept: the attempt in flight ends before another starts.
            let row = sqlx::query(concat!(
                "UPDATE deliveries SET status = 'pending', next_at = $3, updated_at = $3 \
                 WHERE id = $1 AND workspace_id = $2 RETURNING ", delivery_cols!()
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)?;
            delivery_from(&row)
        })
    }

    async fn save_scenario(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        document: serde_json::Value,
        now_ms: i64,
    ) -> StoreResult<ScenarioVersion> {
        let _turn = self.flow_turn().await;
        let version = with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            // Locks the bot's row (PostgreSQL), so that two saves at once number their
            // versions one after the other; it changes nothing.
            let done = sqlx::query("UPDATE bots SET updated_at = updated_at WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            let version: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM scenario_versions WHERE bot_id = $1",
            )
            .bind(bot.as_str())
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO scenario_versions (bot_id, version, workspace_id, document, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(bot.as_str())
            .bind(version)
            .bind(ws.as_str())
            .bind(to_json(&document))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            version
        });
        Ok(ScenarioVersion {
            bot_id: bot.clone(),
            version,
            document,
            created_at: now_ms,
        })
    }

    async fn current_scenario(&self, bot: &BotId) -> StoreResult<Option<ScenarioVersion>> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT bot_id, version, document, created_at FROM scenario_versions \
                 WHERE bot_id = $1 ORDER BY version DESC LIMIT 1",
            )
            .bind(bot.as_str())
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| scenario_from(r, true)).transpose()
        })
    }

    async fn scenario_version(&self, bot: &BotId, version: i64) -> StoreResult<ScenarioVersion> {
        with_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT bot_id, version, document, created_at FROM scenario_versions \
                 WHERE bot_id = $1 AND version = $2",
            )
            .bind(bot.as_str())
            .bind(version)
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound)?;
            scenario_from(&row, true)
        })
    }

    async fn scenario_versions(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
    ) -> StoreResult<Vec<ScenarioVersion>> {
        with_pool!(self, pool => {
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            let rows = sqlx::query(
                "SELECT bot_id, version, created_at FROM scenario_versions \
                 WHERE bot_id = $1 AND workspace_id = $2 ORDER BY version DESC",
            )
            .bind(bot.as_str())
            .bind(ws.as_str())
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| scenario_from(r, false)).collect()
        })
    }

    async fn create_run(&self, new: &NewRun, now_ms: i64) -> StoreResult<RunCreated> {
        let run = &new.run;
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_write()).await?;
            if let Some(key) = &run.idempotency_key {
                let before = sqlx::query(
                    "SELECT id, request_hash FROM runs WHERE bot_id = $1 AND idempotency_key = $2",
                )
                .bind(run.bot_id.as_str())
                .bind(key)
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(before) = before {
                    return if before.opt_text("request_hash")? == run.request_hash {
                        Ok(RunCreated::Repeated(before.text("id")?.into()))
                    } else {
                        Err(StoreError::Conflict {
                            what: "this Idempotency-Key was used for another request to this bot: \
                                   send a new key for a new request"
                                .to_owned(),
                        })
                    };
                }
            }
            let done = sqlx::query(
                "INSERT INTO runs (id, workspace_id, bot_id, node, variables, created_at, send_at, \
                 idempotency_key, request_hash) \
                 SELECT $1, workspace_id, id, $4, $5, $6, $7, $8, $9 FROM bots WHERE id = $2 AND workspace_id = $3",
            )
            .bind(run.id.as_str())
            .bind(run.bot_id.as_str())
            .bind(run.workspace_id.as_str())
            .bind(&run.node)
            .bind(to_json(&run.variables))
            .bind(now_ms)
            .bind(run.send_at)
            .bind(run.idempotency_key.as_deref())
            .bind(run.request_hash.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict {
                        what: "a run with this id, or a request with this Idempotency-Key, is already \
                               under way: retry the same request to get its run"
                            .to_owned(),
                    }
                } else {
                    StoreError::Database(e)
                }
            })?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
            for chunk in new.targets.chunks(TARGETS_PER_INSERT) {
                let mut sql = QueryBuilder::new(
                    "INSERT INTO run_targets (run_id, seq, external_id, channel, chat_id, variables, \
                     contact_id, status, reason, updated_at) ",
                );
                sql.push_values(chunk, |mut row, t| {
                    row.push_bind(run.id.as_str())
                        .push_bind(t.seq)
                        .push_bind(t.external_id.as_deref())
                        .push_bind(t.channel.map(|c| c.as_str()))
                        .push_bind(t.chat_id.as_deref())
                        .push_bind(to_json(&t.variables))
                        .push_bind(t.contact_id.as_ref().map(|c| c.as_str()))
                        .push_bind(t.status.as_str())
                        .push_bind(t.reason.as_deref())
                        .push_bind(now_ms);
                });
                sql.build().execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(RunCreated::New)
    }

    async fn run(&self, ws: &WorkspaceId, id: &RunId) -> StoreResult<Run> {
        with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_snapshot()).await?;
            let row = sqlx::query(concat!(
                "SELECT ", run_cols!(), " FROM runs WHERE id = $1 AND workspace_id = $2"
            ))
            .bind(id.as_str())
            .bind(ws.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
            let mut run = run_from(&row)?;
            let counts = sqlx::query(
                "SELECT status, COUNT(*) AS n FROM run_targets WHERE run_id = $1 GROUP BY status",
            )
            .bind(id.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for c in &counts {
                add_count(&mut run.counts, &c.text("status")?, c.int("n")?)?;
            }
            tx.commit().await?;
            Ok(run)
        })
    }

    async fn runs_of_bot(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> StoreResult<(Vec<Run>, Option<String>)> {
        let limit = page_size(limit);
        let after = cursor.map(parse_cursor).transpose()?;
        let mut runs = with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_snapshot()).await?;
            sqlx::query("SELECT id FROM bots WHERE id = $1 AND workspace_id = $2")
                .bind(bot.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut sql = QueryBuilder::new(concat!("SELECT ", run_cols!(), " FROM runs WHERE bot_id = "));
            sql.push_bind(bot.as_str());
            if let Some((at, id)) = &after {
                sql.push(" AND (created_at < ").push_bind(*at);
                sql.push(" OR (created_at = ").push_bind(*at).push(" AND id < ").push_bind(id.as_str()).push("))");
            }
            sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = sql.build().fetch_all(&mut *tx).await?;
            let mut runs = rows.iter().map(run_from).collect::<StoreResult<Vec<_>>>()?;
            if !runs.is_empty() {
                let mut sql = QueryBuilder::new(
                    "SELECT run_id, status, COUNT(*) AS n FROM run_targets WHERE run_id IN (",
                );
                let mut ids = sql.separated(", ");
                for r in &runs {
                    ids.push_bind(r.id.as_str());
                }
                sql.push(") GROUP BY run_id, status");
                let counts = sql.build().fetch_all(&mut *tx).await?;
                for c in &counts {
                    let run_id = c.text("run_id")?;
                    if let Some(run) = runs.iter_mut().find(|r| r.id.as_str() == run_id) {
                        add_count(&mut run.counts, &c.text("status")?, c.int("n")?)?;
                    }
                }
            }
            tx.commit().await?;
            runs
        });
        let next = cut_page(&mut runs, limit, |r| (r.created_at, r.id.as_str()));
        Ok((runs, next))
    }

    async fn run_by_id(&self, id: &RunId) -> StoreResult<Run> {
        with_pool!(self, pool => {
            let row = sqlx::query(concat!("SELECT ", run_cols!(), " FROM runs WHERE id = $1"))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            run_from(&row)
        })
    }

    async fn run_targets(
        &self,
        ws: &WorkspaceId,
        run: &RunId,
        statuses: &[TargetStatus],
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> StoreResult<(Vec<RunTarget>, Option<String>)> {
        let limit = page_size(limit);
        // The cursor is the last seq of the page before, as the other cursors are made.
        let after = cursor.map(parse_cursor).transpose()?.map(|(seq, _)| seq);
        let mut targets = with_pool!(self, pool => {
            let mut tx = pool.begin_with(self.begin_snapshot()).await?;
            sqlx::query("SELECT id FROM runs WHERE id = $1 AND workspace_id = $2")
                .bind(run.as_str())
                .bind(ws.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let mut sql = QueryBuilder::new("SELECT * FROM run_targets WHERE run_id = ");
            sql.push_bind(run.as_str());
            if !statuses.is_empty() {
                sql.push(" AND status IN (");
                let mut list = sql.separated(", ");
                for status in statuses {
                    list.push_bind(status.as_str());
                }
                sql.push(")");
            }
            if let Some(seq) = after {
                sql.push(" AND seq > ").push_bind(seq);
            }
            sql.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit) + 1);
            let rows = sql.build().fetch_all(&mut *tx).await?;
            tx.commit().await?;
            rows.iter().map(target_from).collect::<StoreResult<Vec<_>>>()?
        });
        let next = if targets.len() > limit as usize {
            targets.truncate(limit as usize);
            targets.last().map(|t| cursor_after(t.seq, ""))
        } else {
            None
        };
        Ok((targets, next))
    }

    async fn cancel_run(&self, ws: &WorkspaceId, id: &RunId, now_ms: i64) -> StoreResult<Run> {
        {
            let _turn = self.flow_turn().await;
            with_pool!(self, pool => {
                let mut tx = pool.begin_with(self.begin_write()).await?;
                let found = sqlx::query(
                    "UPDATE runs SET cancelled_at = COALESCE(cancelled_at, $3) \
                     WHERE id = $1 AND workspace_id = $2",
                )
                .bind(id.as_str())
                .bind(ws.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                if found.rows_affected() == 0 {
                    return Err(StoreError::NotFound);
                }
                sqlx::query(
                    "UPDATE run_targets SET status = 'cancelled', locked_until = NULL, updated_at = $2 \
                     WHERE run_id = $1 AND status = 'pending'",
                )
                .bind(id.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                // Queued recipients none of whose messages has gone: cancelled, and their
                // messages given up. One with a message sent keeps the rest of its node.
                sqlx::query(
                    "UPDATE run_targets SET status = 'cancelled', updated_at = $2 \
                     WHERE run_id = $1 AND status = 'queued' AND NOT EXISTS (SELECT 1 FROM messages m \
                     WHERE m.run_id = $1 AND m.contact_id = run_targets.contact_id AND m.status <> 'pending')",
                )
                .bind(id.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE messages SET status = 'failed', error = 'cancelled', next_at = NULL, \
                     locked_until = NULL, updated_at = $2 \
                     WHERE run_id = $1 AND status = 'pending' AND contact_id IN (SELECT contact_id \
                     FROM run_targets WHERE run_id = $1 AND status = 'cancelled' AND contact_id IS NOT NULL)",
                )
                .bind(id.as_str())
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            });
        }
        self.run(ws, id).await
    }

    async fn claim_targets(
        &self,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> StoreResult<Vec<RunTarget>> {
        if !self.any_due(TARGETS_DUE, now_ms).await? {
            return Ok(Vec::new());
        }
        let _turn = self.flow_turn().await;
        let mut targets = with_pool!(self, pool => {
            let sql = match self.backend() {
                Backend::Sqlite => SQLITE_CLAIM_TARGETS,
                Backend::Postgres => POSTGRES_CLAIM_TARGETS,
            };
            let rows = sqlx::query(sql)
                .persistent(self.claims_persist())
                .bind(now_ms)
                .bind(now_ms.saturating_add(lease_ms))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(target_from).collect::<StoreResult<Vec<_>>>()?
        });
        targets.sort_by(|a, b| (a.run_id.as_str(), a.seq).cmp(&(b.run_id.as_str(), b.seq)));
        Ok(targets)
    }

    async fn set_signing_secret(
        &self,
        ws: &WorkspaceId,
        bot: &BotId,
        sealed: &[u8],
        now_ms: i64,
    ) -> StoreResult<()> {
        let _turn = self.flow_turn().await;
        with_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE bots SET signing_secret = $3, updated_at = $4 WHERE id = $1 AND workspace_id = $2",
            )
            .bind(bot.as_str())
            .bind(ws.as_str())
            .bind(sealed)
            .bind(now_ms)
            .execute(pool)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound);
            }
        });
        Ok(())
    }

    async fn signing_secret(&self, bot: &BotId) -> StoreResult<Option<Vec<u8>>> {
        with_pool!(self, pool => {
            let row = sqlx::query("SELECT signing_secret FROM bots WHERE id = $1")
                .bind(bot.as_str())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            Ok(row.opt_bytes("signing_secret")?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let (at, id) = parse_cursor(&cursor_after(1_714_608_000_000, "ct_0190")).unwrap();
        assert_eq!((at, id.as_str()), (1_714_608_000_000, "ct_0190"));
        assert!(matches!(parse_cursor("zz"), Err(StoreError::InvalidCursor)));
        assert!(matches!(
            parse_cursor(&hex::encode("x:ct")),
            Err(StoreError::InvalidCursor)
        ));
    }

    #[test]
    fn pages_are_cut_after_the_limit_with_the_last_row_as_cursor() {
        let mut rows = vec![(3, "c"), (2, "b"), (1, "a")];
        let next = cut_page(&mut rows, 2, |r| (r.0, r.1));
        assert_eq!(rows, vec![(3, "c"), (2, "b")]);
        assert_eq!(next, Some(cursor_after(2, "b")));
        let mut rows = vec![(3, "c"), (2, "b")];
        assert_eq!(cut_page(&mut rows, 2, |r| (r.0, r.1)), None);
    }
}
