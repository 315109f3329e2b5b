//! The Start flow's storage story: updates received, claimed and processed, contacts, the
//! business transaction and the work it leaves (messages, deliveries), scenarios and runs; run
//! on SQLite (always) and on PostgreSQL (a fresh schema of the test database; skipped when it
//! cannot be reached, unless `CI=true`).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use botlink_core::{Channel, Inbound, InboundKind};
use botlink_server::store::{
    self, Attempt, BotId, Contact, ContactFilter, ContactId, ContactWrite, Continuation,
    DeliveryAttempt, DeliveryFilter, DeliveryId, FlowCommit, InboxId, LinkId, MessageId,
    MessageOutcome, NewBot, NewDelivery, NewMessage, NewRun, OutboxMessage, RecipientOutcome, Run,
    RunCounts, RunCreated, RunId, RunTarget, StartId, StartRecord, Store, StoreError, Stores,
    TargetOutcome, TargetStatus, Utm, WorkStatus, WorkspaceId,
};
use botlink_testkit::telegram_link;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, PgConnection, SqliteConnection};
use tempfile::TempDir;

/// 2024-05-02T00:00:00Z.
const T0: i64 = 1_714_608_000_000;
const SEC: i64 = 1_000;
const LEASE: i64 = 30 * SEC;

// ---------------------------------------------------------------------------------------
// Backends

/// A store, and a connection of the test's own to look at its tables.
struct Backend {
    store: Arc<Store>,
    stores: Stores,
    raw: Raw,
    _dir: Option<TempDir>,
}

enum Raw {
    Sqlite(String),
    Postgres(String),
}

impl Raw {
    /// The single integer a query answers.
    async fn int(&self, sql: &str) -> i64 {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(url) => {
                let mut c = SqliteConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
            Raw::Postgres(url) => {
                let mut c = PgConnection::connect(url).await.unwrap();
                sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
            }
        }
    }

    async fn execute(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Raw::Sqlite(url) => {
                let mut c = SqliteConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
            Raw::Postgres(url) => {
                let mut c = PgConnection::connect(url).await.unwrap();
                sqlx::query(sql).execute(&mut c).await.unwrap();
            }
        };
    }

    async fn count(&self, table: &str) -> i64 {
        self.int(&format!("SELECT COUNT(*) FROM {table}")).await
    }
}

async fn sqlite() -> Backend {
    let dir = TempDir::new().unwrap();
    let url = format!("sqlite:{}", dir.path().join("botlink.db").display());
    let store = store::connect(&url).await.expect("open SQLite");
    store.migrate().await.expect("migrate SQLite");
    let store = Arc::new(store);
    Backend {
        stores: store.stores(),
        store,
        raw: Raw::Sqlite(url),
        _dir: Some(dir),
    }
}

/// `None` (after saying why) when PostgreSQL cannot be reached outside CI.
async fn postgres() -> Option<Backend> {
    let schema = botlink_testkit::postgres_schema().await?;
    let store = store::connect(&schema.url)
        .await
        .expect("connect to PostgreSQL");
    store.migrate().await.expect("migrate PostgreSQL");
    let store = Arc::new(store);
    Some(Backend {
        stores: store.stores(),
        store,
        raw: Raw::Postgres(schema.url),
        _dir: None,
    })
}

#[tokio::test]
async fn story_on_sqlite() {
    let b = sqlite().await;
    story(&b).await;
    b.store.close().await;
}

#[tokio::test]
async fn story_on_postgres() {
    let Some(b) = postgres().await else {
        return;
    };
    story(&b).await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_sqlite() {
    let b = sqlite().await;
    concurrent_claims(&b).await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_on_postgres() {
    let Some(b) = postgres().await else {
        return;
    };
    concurrent_claims(&b).await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_slots_on_sqlite() {
    let b = sqlite().await;
    send_slots(&b).await;
    b.store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn send_slots_on_postgres() {
    let Some(b) = postgres().await else {
        return;
    };
    send_slots(&b).await;
    b.store.close().await;
}

#[tokio::test]
async fn batched_commits_on_sqlite() {
    let b = sqlite().await;
    batched_commits(&b).await;
    b.store.close().await;
}

#[tokio::test]
async fn batched_commits_on_postgres() {
    let Some(b) = postgres().await else {
        return;
    };
    batched_commits(&b).await;
    b.store.close().await;
}

// ---------------------------------------------------------------------------------------
// Helpers

fn event(id: &str, chat: &str, kind: InboundKind) -> Inbound {
    Inbound {
        event_id: id.to_owned(),
        user_id: chat.to_owned(),
        chat_id: chat.to_owned(),
        user_name: Some("Ann".to_owned()),
        language: Some("en".to_owned()),
        kind,
    }
}

fn text(id: &str, chat: &str, text: &str) -> Inbound {
    event(
        id,
        chat,
        InboundKind::Message {
            text: text.to_owned(),
        },
    )
}

fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A contact write as a worker makes it for an update: nothing set but what is given.
fn contact_write(channel: Channel, chat: &str) -> ContactWrite {
    ContactWrite {
        new_id: ContactId::new(),
        channel,
        chat_id: chat.to_owned(),
        user_id: Some(chat.to_owned()),
        name: None,
        language: None,
        external_id: None,
        phone: None,
        email: None,
        variables: BTreeMap::new(),
        fields: BTreeMap::new(),
        subscribed: None,
        touch: None,
        pending_param: None,
        inbound: true,
    }
}

fn campaign(name: &str) -> Utm {
    Utm {
        source: Some("ads".to_owned()),
        campaign: Some(name.to_owned()),
        ..Utm::default()
    }
}

fn message(text: &str) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        message: json!({"type": "text", "text": text}),
        run_id: None,
    }
}

fn delivery(url: &str, continuation: Option<Continuation>) -> NewDelivery {
    NewDelivery {
        id: DeliveryId::new(),
        kind: "send_me".to_owned(),
        method: "POST".to_owned(),
        url: url.to_owned(),
        headers: vec![("x-shop".to_owned(), "1".to_owned())],
        data: json!({"event": "start", "chat_id": "100"}),
        continuation,
    }
}

fn attempt(id: &DeliveryId, at: i64, status: Option<u16>, outcome: WorkStatus) -> DeliveryAttempt {
    DeliveryAttempt {
        id: id.clone(),
        attempt: Attempt {
            at,
            status,
            error: status
                .filter(|s| !(200..300).contains(s))
                .map(|s| format!("answered {s}")),
            duration_ms: 120,
        },
        status: outcome,
        next_at: (outcome == WorkStatus::Pending).then_some(at + 60 * SEC),
        clear_continuation: true,
    }
}

fn ids<T, I: Clone>(items: &[T], id: impl Fn(&T) -> &I) -> Vec<I> {
    items.iter().map(|i| id(i).clone()).collect()
}

async fn new_bot(s: &Stores, ws: &WorkspaceId, name: &str) -> BotId {
    s.bots
        .create_bot(
            ws,
            NewBot {
                id: BotId::new(),
                name: name.to_owned(),
                channels: vec![],
            },
            T0,
        )
        .await
        .unwrap()
        .id
}

async fn new_link(s: &Stores, ws: &WorkspaceId, bot: &BotId, code: &str) -> LinkId {
    s.links
        .create_links(ws, vec![telegram_link(bot, code)], T0)
        .await
        .unwrap()
        .remove(0)
        .id
}

fn not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(r, Err(StoreError::NotFound)),
        "{what}: expected NotFound, got {r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The story

async fn story(b: &Backend) {
    let s = &b.stores;
    let flow = &s.flow;
    let ws = s.workspaces.ensure_workspace("shop", T0).await.unwrap().id;
    let other_ws = s.workspaces.ensure_workspace("rival", T0).await.unwrap().id;
    let bot = new_bot(s, &ws, "shop bot").await;
    let other_bot = new_bot(s, &other_ws, "rival bot").await;
    let spring = new_link(s, &ws, &bot, "sPrInG01").await;
    let summer = new_link(s, &ws, &bot, "sUmMeR01").await;

    // --- The inbox: stored once, however often the platform sends an update.
    let start = event(
        "u1",
        "100",
        InboundKind::Start {
            param: Some("l_sPrInG01".to_owned()),
        },
    );
    let hello = text("u2", "100", "hello");
    let other_chat = text("u3", "200", "hi");
    let events = [start.clone(), hello.clone(), other_chat.clone()];
    assert_eq!(
        flow.receive(&bot, Channel::Telegram, &events, T0)
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        flow.receive(&bot, Channel::Telegram, &events[..2], T0 + SEC)
            .await
            .unwrap(),
        0,
        "an update received again is stored once"
    );
    // The same event id on another channel is another update.
    assert_eq!(
        flow.receive(&bot, Channel::Viber, &[text("u1", "v-1", "hi")], T0)
            .await
            .unwrap(),
        1
    );
    not_found(
        flow.receive(&BotId::new(), Channel::Telegram, &events, T0)
            .await,
        "receive for an unknown bot",
    );
    assert_eq!(b.raw.count("inbox").await, 4);

    // --- Claims: oldest first, a chat's updates one at a time, leased.
    let now = T0 + 2 * SEC;
    let claimed = flow.claim_inbox(10, LEASE, now).await.unwrap();
    let events_claimed: Vec<&str> = claimed.iter().map(|i| i.event.event_id.as_str()).collect();
    assert_eq!(
        events_claimed,
        ["u1", "u3", "u1"],
        "the Start and the other chats' updates; `hello` waits behind the Start of its chat"
    );
    assert_eq!(claimed[0].event, start);
    assert_eq!(claimed[0].channel, Channel::Telegram);
    assert_eq!(claimed[2].channel, Channel::Viber);
    assert_eq!(
        (claimed[0].bot_id.clone(), claimed[0].workspace_id.clone()),
        (bot.clone(), ws.clone())
    );
    assert_eq!((claimed[0].received_at, claimed[0].attempts), (T0, 0));
    let (start_item, other_item, viber_item) = (
        claimed[0].id.clone(),
        claimed[1].id.clone(),
        claimed[2].id.clone(),
    );
    assert!(
        flow.claim_inbox(10, LEASE, now + LEASE - 1)
            .await
            .unwrap()
            .is_empty(),
        "within the lease nothing is handed out again"
    );
    let again = flow.claim_inbox(10, LEASE, now + LEASE).await.unwrap();
    assert_eq!(
        ids(&again, |i| &i.id),
        [start_item.clone(), other_item.clone(), viber_item.clone()]
    );
    assert!(
        again.iter().all(|i| i.attempts == 1),
        "one earlier attempt each: {again:?}"
    );
    // Processing the Viber update failed: retried later; the other chat's is given up.
    let now = now + LEASE;
    flow.inbox_failed(&viber_item, "scenario missing", Some(now + 60 * SEC), now)
        .await
        .unwrap();
    flow.inbox_failed(&other_item, "cannot decode", None, now)
        .await
        .unwrap();
    not_found(
        flow.inbox_failed(&InboxId::new(), "x", None, now).await,
        "an unknown inbox item",
    );

    // --- The Start's transaction: contact, Start, two messages, a delivery, the update done.
    let ann = ContactId::new();
    let (greeting, menu) = (message("Welcome!"), message("Pick one"));
    let run_continuation = Continuation {
        scenario_version: 1,
        runner: json!({"node": "crm", "step": 2}),
        run_id: None,
    };
    let lead = delivery("https://crm.example/hook", Some(run_continuation.clone()));
    let start_commit = FlowCommit {
        contact: Some(ContactWrite {
            new_id: ann.clone(),
            name: Some("Ann".to_owned()),
            language: Some("en".to_owned()),
            external_id: Some("crm-1".to_owned()),
            phone: Some("+7 900 000-00-01".to_owned()),
            variables: vars(&[("plan", "basic"), ("city", "Riga")]),
            fields: vars(&[("source", "ads")]),
            touch: Some((spring.clone(), campaign("spring"))),
            ..contact_write(Channel::Telegram, "100")
        }),
        contact_id: None,
        start: Some(StartRecord {
            id: StartId::new(),
            link_id: Some(spring.clone()),
            click_id: None,
            entry_point_id: None,
            utm: campaign("spring"),
            param: Some("l_sPrInG01".to_owned()),
            node: "start".to_owned(),
            unattributed: None,
            at: now,
        }),
        messages: vec![greeting.clone(), menu.clone()],
        deliveries: vec![lead.clone()],
        inbox_done: Some(start_item.clone()),
        attempt: None,
        recipient: None,
        target: None,
        message_done: None,
        unsubscribe: false,
    };
    let id = flow.commit(&bot, start_commit.clone(), now).await.unwrap();
    assert_eq!(id, Some(ann.clone()));
    let c = flow.contact(&ws, &ann).await.unwrap();
    assert_eq!(
        c,
        Contact {
            id: ann.clone(),
            workspace_id: ws.clone(),
            bot_id: bot.clone(),
            channel: Channel::Telegram,
            chat_id: "100".to_owned(),
            user_id: Some("100".to_owned()),
            name: Some("Ann".to_owned()),
            language: Some("en".to_owned()),
            external_id: Some("crm-1".to_owned()),
            phone: Some("+7 900 000-00-01".to_owned()),
            email: None,
            variables: vars(&[("plan", "basic"), ("city", "Riga")]),
            fields: vars(&[("source", "ads")]),
            subscribed: true,
            first_link_id: Some(spring.clone()),
            last_link_id: Some(spring.clone()),
            utm: campaign("spring"),
            pending_param: None,
            created_at: now,
            last_seen_at: now,
            last_inbound_at: Some(now),
        }
    );
    // The same work committed again (a lost claim, done twice) adds nothing.
    let id = flow
        .commit(&bot, start_commit.clone(), now + SEC)
        .await
        .unwrap();
    assert_eq!(id, Some(ann.clone()));
    assert_eq!(b.raw.count("contacts").await, 1);
    assert_eq!(b.raw.count("starts").await, 1);
    assert_eq!(b.raw.count("messages").await, 2);
    assert_eq!(b.raw.count("deliveries").await, 1);
    assert_eq!(
        b.raw
            .int("SELECT COUNT(*) FROM inbox WHERE status = 'done'")
            .await,
        1,
        "the Start's update is done"
    );
    not_found(
        flow.commit(&BotId::new(), FlowCommit::default(), now).await,
        "a commit for an unknown bot",
    );
    not_found(
        flow.commit(
            &bot,
            FlowCommit {
                messages: vec![message("lost")],
                ..FlowCommit::default()
            },
            now,
        )
        .await,
        "messages for no contact",
    );

    // The chat's next update is claimable now that the Start is done.
    let now = now + 2 * SEC;
    let next = flow.claim_inbox(10, LEASE, now).await.unwrap();
    assert_eq!(next.len(), 1, "{next:?}");
    assert_eq!(next[0].event, hello);

    // --- Its commit: the same chat, a later link: the contact is merged, not replaced.
    let id = flow
        .commit(
            &bot,
            FlowCommit {
                contact: Some(ContactWrite {
                    variables: vars(&[("plan", "pro"), ("size", "M")]),
                    touch: Some((summer.clone(), campaign("summer"))),
                    ..contact_write(Channel::Telegram, "100")
                }),
                inbox_done: Some(next[0].id.clone()),
                ..FlowCommit::default()
            },
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        id,
        Some(ann.clone()),
        "the stored contact's id, not the new one"
    );
    let c = flow.contact(&ws, &ann).await.unwrap();
    assert_eq!(c.name.as_deref(), Some("Ann"), "a name not given is kept");
    assert_eq!(
        c.external_id.as_deref(),
        Some("crm-1"),
        "an external id not given is kept"
    );
    assert_eq!(
        c.variables,
        vars(&[("plan", "pro"), ("city", "Riga"), ("size", "M")])
    );
    assert_eq!(c.fields, vars(&[("source", "ads")]));
    assert_eq!(
        c.first_link_id,
        Some(spring.clone()),
        "the first touch stays"
    );
    assert_eq!(c.last_link_id, Some(summer.clone()));
    assert_eq!(c.utm, campaign("summer"));
    assert_eq!(
        (c.created_at, c.last_seen_at, c.last_inbound_at),
        (now - 2 * SEC, now, Some(now))
    );
    // Not an inbound update (a delivery went on): seen, the 24-hour window unchanged.
    flow.commit(
        &bot,
        FlowCommit {
            contact: Some(ContactWrite {
                inbound: false,
                ..contact_write(Channel::Telegram, "100")
            }),
            ..FlowCommit::default()
        },
        now + SEC,
    )
    .await
    .unwrap();
    let c = flow.contact(&ws, &ann).await.unwrap();
    assert_eq!((c.last_seen_at, c.last_inbound_at), (now + SEC, Some(now)));
    assert_eq!(
        c.last_link_id,
        Some(summer.clone()),
        "an untouched contact keeps its last link"
    );
    assert_eq!(c.utm, campaign("summer"));

    // Blocked, then back.
    flow.unsubscribe(&ann, now).await.unwrap();
    assert!(!flow.contact(&ws, &ann).await.unwrap().subscribed);
    flow.commit(
        &bot,
        FlowCommit {
            contact: Some(contact_write(Channel::Telegram, "100")),
            ..FlowCommit::default()
        },
        now,
    )
    .await
    .unwrap();
    assert!(
        !flow.contact(&ws, &ann).await.unwrap().subscribed,
        "kept when not given"
    );
    flow.commit(
        &bot,
        FlowCommit {
            contact: Some(ContactWrite {
                subscribed: Some(true),
                ..contact_write(Channel::Telegram, "100")
            }),
            ..FlowCommit::default()
        },
        now,
    )
    .await
    .unwrap();
    assert!(flow.contact(&ws, &ann).await.unwrap().subscribed);
    not_found(
        flow.unsubscribe(&ContactId::new(), now).await,
        "unsubscribing an unknown contact",
    );

    // --- The outbox: a contact's messages one at a time, in order.
    let now = now + 10 * SEC;
    let out = flow.claim_messages(10, LEASE, now).await.unwrap();
    assert_eq!(
        ids(&out, |m| &m.id),
        vec![greeting.id.clone()],
        "the greeting alone"
    );
    let m = &out[0];
    assert_eq!(
        (m.channel, m.chat_id.as_str(), m.attempts),
        (Channel::Telegram, "100", 0)
    );
    assert_eq!(
        (
            m.contact_id.clone(),
            m.bot_id.clone(),
            m.workspace_id.clone()
        ),
        (ann.clone(), bot.clone(), ws.clone())
    );
    assert_eq!(m.message, greeting.message);
    assert_eq!(
        flow.claim_messages(10, LEASE, now + LEASE + 1)
            .await
            .unwrap(),
        [OutboxMessage {
            attempts: 1,
            ..m.clone()
        }],
        "after the lease the greeting again, never the menu before it"
    );
    flow.message_done(&greeting.id, WorkStatus::Done, None, None, now + LEASE + 2)
        .await
        .unwrap();
    let out = flow
        .claim_messages(10, LEASE, now + LEASE + 2)
        .await
        .unwrap();
    assert_eq!(
        ids(&out, |m| &m.id),
        vec![menu.id.clone()],
        "the menu once the greeting is sent"
    );
    // Rate limited: retried in 5 s.
    let now = now + LEASE + 3;
    flow.message_done(
        &menu.id,
        WorkStatus::Pending,
        Some("429 Too Many Requests"),
        Some(now + 5 * SEC),
        now,
    )
    .await
    .unwrap();
    assert!(
        flow.claim_messages(10, LEASE, now + 5 * SEC - 1)
            .await
            .unwrap()
            .is_empty()
    );
    let out = flow.claim_messages(10, LEASE, now + 5 * SEC).await.unwrap();
    assert_eq!(ids(&out, |m| &m.id), vec![menu.id.clone()]);
    assert_eq!(out[0].attempts, 1);
    flow.message_done(&menu.id, WorkStatus::Done, None, None, now + 5 * SEC)
        .await
        .unwrap();
    assert!(
        flow.claim_messages(10, LEASE, now + 100 * SEC)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.raw
            .int("SELECT COUNT(*) FROM messages WHERE status = 'done' AND sent_at IS NOT NULL")
            .await,
        2
    );
    not_found(
        flow.message_done(&MessageId::new(), WorkStatus::Done, None, None, now)
            .await,
        "an unknown message",
    );

    // --- Deliveries: attempts recorded, the continuation consumed by the first answer.
    let now = now + 10 * SEC;
    let due = flow.claim_deliveries(10, LEASE, now).await.unwrap();
    assert_eq!(ids(&due, |d| &d.id), vec![lead.id.clone()]);
    let d = &due[0];
    assert_eq!(
        (d.attempts, d.status, d.contact_id.clone()),
        (0, WorkStatus::Pending, ann.clone())
    );
    assert_eq!(
        (d.kind.as_str(), d.method.as_str(), d.url.as_str()),
        ("send_me", "POST", "https://crm.example/hook")
    );
    assert_eq!(
        (d.headers.clone(), d.data.clone()),
        (lead.headers.clone(), lead.data.clone())
    );
    assert_eq!(d.continuation, Some(run_continuation));
    assert!(
        flow.claim_deliveries(10, LEASE, now + 1)
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );
    let failed = FlowCommit {
        contact_id: Some(ann.clone()),
        attempt: Some(attempt(&lead.id, now + 1, Some(500), WorkStatus::Pending)),
        // The run went on along `not_ok`.
        messages: vec![message("Sorry, try later")],
        ..FlowCommit::default()
    };
    assert_eq!(
        flow.commit(&bot, failed.clone(), now + 1).await.unwrap(),
        Some(ann.clone())
    );
    flow.commit(&bot, failed, now + 2).await.unwrap();
    let (d, attempts) = flow.delivery(&ws, &lead.id).await.unwrap();
    assert_eq!(
        attempts.len(),
        1,
        "the same attempt recorded twice is kept once"
    );
    assert_eq!(
        (d.status, d.attempts, d.next_at),
        (WorkStatus::Pending, 1, Some(now + 1 + 60 * SEC))
    );
    assert_eq!(d.last_error.as_deref(), Some("answered 500"));
    assert_eq!(d.continuation, None, "consumed by the first answer");
    assert_eq!(b.raw.count("messages").await, 3);
    assert!(
        flow.claim_deliveries(10, LEASE, now + 2)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let due = flow
        .claim_deliveries(10, LEASE, now + 1 + 60 * SEC)
        .await
        .unwrap();
    assert_eq!((due.len(), due[0].attempts), (1, 1));
    let now = now + 1 + 60 * SEC;
    flow.commit(
        &bot,
        FlowCommit {
            attempt: Some(attempt(&lead.id, now + 1, Some(200), WorkStatus::Done)),
            ..FlowCommit::default()
        },
        now + 1,
    )
    .await
    .unwrap();
    let (d, attempts) = flow.delivery(&ws, &lead.id).await.unwrap();
    assert_eq!(
        (d.status, d.attempts, d.next_at, d.last_error.clone()),
        (WorkStatus::Done, 2, None, None)
    );
    assert_eq!(
        attempts
            .iter()
            .map(|a| (a.at, a.status))
            .collect::<Vec<_>>(),
        [(now - 60 * SEC, Some(500)), (now + 1, Some(200))],
        "attempts in order"
    );
    assert_eq!(attempts[0].error.as_deref(), Some("answered 500"));
    assert_eq!(attempts[1].duration_ms, 120);
    not_found(
        flow.commit(
            &other_bot,
            FlowCommit {
                attempt: Some(attempt(&lead.id, now + 5, Some(200), WorkStatus::Done)),
                ..FlowCommit::default()
            },
            now,
        )
        .await,
        "another bot's delivery",
    );

    // Sent again by hand.
    let d = flow.retry_delivery(&ws, &lead.id, now + 10).await.unwrap();
    assert_eq!(
        (d.status, d.next_at, d.attempts),
        (WorkStatus::Pending, Some(now + 10), 2)
    );
    let due = flow.claim_deliveries(10, LEASE, now + 10).await.unwrap();
    assert_eq!(
        (ids(&due, |d| &d.id), due[0].attempts),
        (vec![lead.id.clone()], 2)
    );
    flow.commit(
        &bot,
        FlowCommit {
            attempt: Some(attempt(&lead.id, now + 11, Some(204), WorkStatus::Done)),
            ..FlowCommit::default()
        },
        now + 11,
    )
    .await
    .unwrap();
    not_found(
        flow.retry_delivery(&other_ws, &lead.id, now).await,
        "another workspace's retry",
    );
    not_found(
        flow.delivery(&other_ws, &lead.id).await,
        "another workspace's delivery",
    );

    // --- More contacts: another channel with the same external id, another chat.
    let now = now + 20 * SEC;
    let wa = flow
        .commit(
            &bot,
            FlowCommit {
                contact: Some(ContactWrite {
                    external_id: Some("crm-1".to_owned()),
                    name: Some("Ann W".to_owned()),
                    email: Some("ann@example.com".to_owned()),
                    ..contact_write(Channel::Whatsapp, "79000000001")
                }),
                deliveries: vec![delivery("https://crm.example/a", None)],
                ..FlowCommit::default()
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
    let bob = flow
        .commit(
            &bot,
            FlowCommit {
                contact: Some(ContactWrite {
                    name: Some("Bob".to_owned()),
                    // Viber: the context of `conversation_started`, until the person subscribes.
                    subscribed: Some(false),
                    pending_param: Some(Some("l_sUmMeR01".to_owned())),
                    ..contact_write(Channel::Viber, "v-1")
                }),
                deliveries: vec![delivery("https://crm.example/b", None)],
                ..FlowCommit::default()
            },
            now + SEC,
        )
        .await
        .unwrap()
        .unwrap();
    let c = flow.contact(&ws, &bob).await.unwrap();
    assert_eq!(
        (c.subscribed, c.pending_param.as_deref()),
        (false, Some("l_sUmMeR01"))
    );
    assert_eq!(
        (c.first_link_id.clone(), c.utm.clone()),
        (None, Utm::default())
    );
    flow.commit(
        &bot,
        FlowCommit {
            contact: Some(contact_write(Channel::Viber, "v-1")),
            ..FlowCommit::default()
        },
        now + SEC,
    )
    .await
    .unwrap();
    assert_eq!(
        flow.contact(&ws, &bob)
            .await
            .unwrap()
            .pending_param
            .as_deref(),
        Some("l_sUmMeR01"),
        "kept"
    );
    flow.commit(
        &bot,
        FlowCommit {
            contact: Some(ContactWrite {
                subscribed: Some(true),
                pending_param: Some(None),
                ..contact_write(Channel::Viber, "v-1")
            }),
            ..FlowCommit::default()
        },
        now + SEC,
    )
    .await
    .unwrap();
    let c = flow.contact(&ws, &bob).await.unwrap();
    assert_eq!((c.subscribed, c.pending_param), (true, None), "cleared");
    let carl = flow
        .commit(
            &bot,
            FlowCommit {
                contact: Some(contact_write(Channel::Telegram, "200")),
                ..FlowCommit::default()
            },
            now + 2 * SEC,
        )
        .await
        .unwrap()
        .unwrap();

    let found = flow
        .contacts_by_external_id(&ws, &bot, "crm-1")
        .await
        .unwrap();
    assert_eq!(
        ids(&found, |c| &c.id),
        [ann.clone(), wa.clone()],
        "by channel: telegram, whatsapp"
    );
    assert!(
        flow.contacts_by_external_id(&ws, &bot, "crm-2")
            .await
            .unwrap()
            .is_empty()
    );
    not_found(
        flow.contacts_by_external_id(&other_ws, &bot, "crm-1").await,
        "another workspace's bot",
    );
    let by_chat = flow
        .contact_by_chat(&bot, Channel::Telegram, "200")
        .await
        .unwrap();
    assert_eq!(by_chat.map(|c| c.id), Some(carl.clone()));
    assert!(
        flow.contact_by_chat(&bot, Channel::Viber, "200")
            .await
            .unwrap()
            .is_none()
    );

    // --- Listing contacts: newest first, a page at a time, filtered.
    let page = |filter: ContactFilter| {
        let (flow, ws, bot) = (flow.clone(), ws.clone(), bot.clone());
        async move { flow.list_contacts(&ws, &bot, &filter).await }
    };
    let (first, cursor) = page(ContactFilter {
        limit: Some(3),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(
        ids(&first, |c| &c.id),
        [carl.clone(), bob.clone(), wa.clone()]
    );
    let cursor = cursor.expect("a next page");
    let (second, end) = page(ContactFilter {
        limit: Some(3),
        cursor: Some(cursor),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!((ids(&second, |c| &c.id), end), (vec![ann.clone()], None));
    let (all, end) = page(ContactFilter::default()).await.unwrap();
    assert_eq!((all.len(), end), (4, None));
    let (tg, _) = page(ContactFilter {
        channel: Some(Channel::Telegram),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&tg, |c| &c.id), [carl.clone(), ann.clone()]);
    let (q, _) = page(ContactFilter {
        q: Some("  ANN ".to_owned()),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(
        ids(&q, |c| &c.id),
        [wa.clone(), ann.clone()],
        "names, case aside"
    );
    let (q, _) = page(ContactFilter {
        q: Some("EXAMPLE.com".to_owned()),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&q, |c| &c.id), vec![wa.clone()], "e-mails");
    let (q, _) = page(ContactFilter {
        q: Some("900 000".to_owned()),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&q, |c| &c.id), vec![ann.clone()], "phones");
    let (q, _) = page(ContactFilter {
        q: Some("%".to_owned()),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert!(q.is_empty(), "a LIKE wildcard is a plain character: {q:?}");
    let (x, _) = page(ContactFilter {
        external_id: Some("crm-1".to_owned()),
        channel: Some(Channel::Whatsapp),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&x, |c| &c.id), vec![wa.clone()]);
    let (x, _) = page(ContactFilter {
        chat_id: Some("v-1".to_owned()),
        ..ContactFilter::default()
    })
    .await
    .unwrap();
    assert_eq!(ids(&x, |c| &c.id), vec![bob.clone()]);
    assert!(matches!(
        page(ContactFilter {
            cursor: Some("not a cursor".to_owned()),
            ..ContactFilter::default()
        })
        .await,
        Err(StoreError::InvalidCursor)
    ));
    not_found(
        flow.list_contacts(&other_ws, &bot, &ContactFilter::default())
            .await,
        "another workspace's contacts",
    );
    not_found(
        flow.contact(&other_ws, &ann).await,
        "another workspace's contact",
    );

    // --- Listing deliveries: newest first, by bot and status.
    let list = |filter: DeliveryFilter| {
        let (flow, ws) = (flow.clone(), ws.clone());
        async move { flow.list_deliveries(&ws, &filter).await.unwrap() }
    };
    let (all, end) = list(DeliveryFilter::default()).await;
    let all_ids = ids(&all, |d| &d.id);
    assert_eq!((all.len(), end), (3, None));
    assert_eq!(all_ids[2], lead.id, "the oldest last");
    assert_eq!(all[0].contact_id, bob, "the newest first");
    let (p1, cursor) = list(DeliveryFilter {
        limit: Some(2),
        ..DeliveryFilter::default()
    })
    .await;
    let (p2, end) = list(DeliveryFilter {
        limit: Some(2),
        cursor,
        ..DeliveryFilter::default()
    })
    .await;
    assert_eq!([ids(&p1, |d| &d.id), ids(&p2, |d| &d.id)].concat(), all_ids);
    assert_eq!(end, None);
    let (done, _) = list(DeliveryFilter {
        status: Some(WorkStatus::Done),
        ..DeliveryFilter::default()
    })
    .await;
    assert_eq!(ids(&done, |d| &d.id), vec![lead.id.clone()]);
    let (pending, _) = list(DeliveryFilter {
        bot_id: Some(bot.clone()),
        status: Some(WorkStatus::Pending),
        ..DeliveryFilter::default()
    })
    .await;
    assert_eq!(pending.len(), 2);
    let (none, _) = list(DeliveryFilter {
        bot_id: Some(other_bot.clone()),
        ..DeliveryFilter::default()
    })
    .await;
    assert!(none.is_empty());
    let (theirs, _) = flow
        .list_deliveries(&other_ws, &DeliveryFilter::default())
        .await
        .unwrap();
    assert!(theirs.is_empty(), "another workspace sees none");

    // --- Scenarios: versions numbered from 1, the latest current.
    assert_eq!(flow.current_scenario(&bot).await.unwrap(), None);
    let v1 = flow
        .save_scenario(&ws, &bot, json!({"nodes": {"start": 1}}), now)
        .await
        .unwrap();
    let v2 = flow
        .save_scenario(&ws, &bot, json!({"nodes": {"start": 2}}), now + SEC)
        .await
        .unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    assert_eq!(flow.current_scenario(&bot).await.unwrap(), Some(v2.clone()));
    assert_eq!(flow.scenario_version(&bot, 1).await.unwrap(), v1);
    not_found(flow.scenario_version(&bot, 3).await, "a version not saved");
    let versions = flow.scenario_versions(&ws, &bot).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.created_at, v.document.clone()))
            .collect::<Vec<_>>(),
        [
            (2, now + SEC, serde_json::Value::Null),
            (1, now, serde_json::Value::Null)
        ]
    );
    not_found(
        flow.scenario_versions(&other_ws, &bot).await,
        "another workspace's versions",
    );
    not_found(
        flow.save_scenario(&other_ws, &bot, json!({}), now).await,
        "saving into another workspace's bot",
    );

    // --- A call_node run for many: its recipients, each worked once, and their outcomes.
    let run = Run {
        id: RunId::new(),
        workspace_id: ws.clone(),
        bot_id: bot.clone(),
        node: "promo".to_owned(),
        variables: vars(&[("discount", "10")]),
        created_at: now,
        send_at: None,
        cancelled_at: None,
        idempotency_key: Some("order-batch-7".to_owned()),
        request_hash: Some("hash-1".to_owned()),
        counts: RunCounts::default(),
    };
    let target = |run: &Run, seq: i64, chat: &str| RunTarget {
        run_id: run.id.clone(),
        seq,
        external_id: None,
        channel: Some(Channel::Telegram),
        chat_id: Some(chat.to_owned()),
        variables: vars(&[("order", &format!("A-{seq}"))]),
        contact_id: None,
        status: TargetStatus::Pending,
        reason: None,
        updated_at: now,
    };
    let targets = vec![
        target(&run, 1, "100"),
        target(&run, 2, "no-such-chat"),
        target(&run, 3, "100"),
    ];
    assert_eq!(
        flow.create_run(
            &NewRun {
                run: run.clone(),
                targets: targets.clone()
            },
            now
        )
        .await
        .unwrap(),
        RunCreated::New
    );
    // The same key: the same request answers the same run; another request is refused.
    let again = Run {
        id: RunId::new(),
        ..run.clone()
    };
    assert_eq!(
        flow.create_run(
            &NewRun {
                run: again.clone(),
                targets: vec![]
            },
            now
        )
        .await
        .unwrap(),
        RunCreated::Repeated(run.id.clone())
    );
    assert!(matches!(
        flow.create_run(
            &NewRun {
                run: Run {
                    request_hash: Some("hash-2".to_owned()),
                    ..again.clone()
                },
                targets: vec![]
            },
            now
        )
        .await,
        Err(StoreError::Conflict { .. })
    ));
    not_found(
        flow.run(&ws, &again.id).await,
        "a repeated request makes no run",
    );
    let stored = flow.run(&ws, &run.id).await.unwrap();
    assert_eq!(
        stored,
        Run {
            counts: RunCounts {
                pending: 3,
                ..RunCounts::default()
            },
            ..run.clone()
        }
    );

    // Claimed once, in their order, leased.
    let claimed = flow.claim_targets(10, LEASE, now).await.unwrap();
    assert_eq!(claimed, targets);
    assert!(
        flow.claim_targets(10, LEASE, now).await.unwrap().is_empty(),
        "leased"
    );
    // The first queued for Ann with its message; the second no contact; the third Ann again:
    // skipped, its message left out.
    let promo = NewMessage {
        run_id: Some(run.id.clone()),
        ..message("10% off, order A-1")
    };
    let twice = NewMessage {
        run_id: Some(run.id.clone()),
        ..message("10% off, order A-3")
    };
    let worked =
        |seq: i64, contact: Option<&ContactId>, status, reason: Option<&str>| TargetOutcome {
            run_id: run.id.clone(),
            seq,
            contact_id: contact.cloned(),
            status,
            reason: reason.map(str::to_owned),
        };
    let out = flow
        .commit_all(
            &[
                (
                    bot.clone(),
                    FlowCommit {
                        contact_id: Some(ann.clone()),
                        target: Some(worked(1, Some(&ann), TargetStatus::Queued, None)),
                        messages: vec![promo.clone()],
                        ..FlowCommit::default()
                    },
                ),
                (
                    bot.clone(),
                    FlowCommit {
                        target: Some(worked(
                            2,
                            None,
                            TargetStatus::Failed,
                            Some("not_subscribed"),
                        )),
                        ..FlowCommit::default()
                    },
                ),
                (
                    bot.clone(),
                    FlowCommit {
                        contact_id: Some(ann.clone()),
                        target: Some(worked(3, Some(&ann), TargetStatus::Queued, None)),
                        messages: vec![twice.clone()],
                        ..FlowCommit::default()
                    },
                ),
            ],
            now,
        )
        .await;
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(
        b.raw
            .int(&format!(
                "SELECT COUNT(*) FROM messages WHERE id IN ('{}', '{}')",
                promo.id, twice.id
            ))
            .await,
        1,
        "the duplicate's message is left out"
    );
    // Its message sent: the recipient is.
    flow.commit(
        &bot,
        FlowCommit {
            contact_id: Some(ann.clone()),
            recipient: Some(RecipientOutcome {
                run_id: run.id.clone(),
                contact_id: ann.clone(),
                status: WorkStatus::Done,
                reason: None,
            }),
            ..FlowCommit::default()
        },
        now,
    )
    .await
    .unwrap();
    assert_eq!(
        flow.run(&ws, &run.id).await.unwrap().counts,
        RunCounts {
            sent: 1,
            failed: 1,
            skipped: 1,
            ..RunCounts::default()
        }
    );
    // The recipients, paged in their order, and by outcome.
    let (page, next) = flow
        .run_targets(&ws, &run.id, &[], Some(2), None)
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|t| (t.seq, t.status)).collect::<Vec<_>>(),
        [(1, TargetStatus::Sent), (2, TargetStatus::Failed)]
    );
    assert_eq!(page[0].contact_id, Some(ann.clone()));
    assert_eq!(page[1].reason.as_deref(), Some("not_subscribed"));
    let (rest, next) = flow
        .run_targets(&ws, &run.id, &[], Some(2), next.as_deref())
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|t| t.seq).collect::<Vec<_>>(), [3]);
    assert_eq!(next, None);
    let (skipped, _) = flow
        .run_targets(&ws, &run.id, &[TargetStatus::Skipped], None, None)
        .await
        .unwrap();
    assert_eq!(
        skipped
            .iter()
            .map(|t| (t.seq, t.reason.as_deref()))
            .collect::<Vec<_>>(),
        [(3, Some("duplicate"))]
    );
    assert_eq!(
        b.raw
            .int(&format!(
                "SELECT COUNT(*) FROM messages WHERE id = '{}' AND run_id = '{}' AND contact_id = '{ann}'",
                promo.id, run.id
            ))
            .await,
        1,
        "the run's message is Ann's, in the outbox"
    );
    not_found(
        flow.run(&other_ws, &run.id).await,
        "another workspace's run",
    );
    not_found(
        flow.run_targets(&other_ws, &run.id, &[], None, None).await,
        "another workspace's run's recipients",
    );
    not_found(
        flow.create_run(
            &NewRun {
                run: Run {
                    id: RunId::new(),
                    workspace_id: other_ws.clone(),
                    idempotency_key: None,
                    ..run.clone()
                },
                targets: vec![],
            },
            now,
        )
        .await,
        "a run of another workspace's bot",
    );

    // A run for later waits for its time; cancelled, it never goes.
    let later = Run {
        id: RunId::new(),
        send_at: Some(now + 3_600 * SEC),
        idempotency_key: None,
        request_hash: None,
        ..run.clone()
    };
    flow.create_run(
        &NewRun {
            run: later.clone(),
            targets: vec![target(&later, 1, "100"), target(&later, 2, "200")],
        },
        now,
    )
    .await
    .unwrap();
    assert!(
        flow.claim_targets(10, LEASE, now + LEASE + 1)
            .await
            .unwrap()
            .is_empty()
    );
    let (runs, next) = flow.runs_of_bot(&ws, &bot, None, None).await.unwrap();
    assert_eq!(
        runs.iter()
            .map(|r| (r.id.clone(), r.counts.total()))
            .collect::<Vec<_>>(),
        [(later.id.clone(), 2), (run.id.clone(), 3)],
        "newest first, counted"
    );
    assert_eq!(next, None);
    not_found(
        flow.runs_of_bot(&other_ws, &bot, None, None).await,
        "another workspace's bot's runs",
    );
    let cancelled = flow.cancel_run(&ws, &later.id, now + 1).await.unwrap();
    assert_eq!(cancelled.cancelled_at, Some(now + 1));
    assert_eq!(cancelled.counts.cancelled, 2);
    assert_eq!(
        flow.cancel_run(&ws, &later.id, now + 2).await.unwrap(),
        cancelled,
        "cancelling again changes nothing"
    );
    assert!(
        flow.claim_targets(10, LEASE, now + 7_200 * SEC)
            .await
            .unwrap()
            .is_empty()
    );
    not_found(
        flow.cancel_run(&other_ws, &later.id, now).await,
        "another workspace's run",
    );

    // --- The signing secret.
    assert_eq!(flow.signing_secret(&bot).await.unwrap(), None);
    flow.set_signing_secret(&ws, &bot, b"sealed-secret", now)
        .await
        .unwrap();
    assert_eq!(
        flow.signing_secret(&bot).await.unwrap().as_deref(),
        Some(&b"sealed-secret"[..])
    );
    not_found(
        flow.set_signing_secret(&other_ws, &bot, b"x", now).await,
        "another workspace's bot",
    );
    not_found(flow.signing_secret(&BotId::new()).await, "an unknown bot");

    // --- A value this version cannot read is an error, not a default.
    b.raw
        .execute(&format!(
            "UPDATE contacts SET channel = 'pigeon' WHERE id = '{carl}'"
        ))
        .await;
    assert!(matches!(
        flow.contact(&ws, &carl).await,
        Err(StoreError::Corrupt { .. })
    ));
    b.raw
        .execute(&format!(
            "UPDATE contacts SET channel = 'telegram' WHERE id = '{carl}'"
        ))
        .await;

    // --- Deleting a contact deletes its Starts, work, run outcomes and received updates.
    not_found(
        flow.delete_contact(&other_ws, &ann).await,
        "another workspace's contact",
    );
    flow.delete_contact(&ws, &ann).await.unwrap();
    not_found(flow.contact(&ws, &ann).await, "a deleted contact");
    not_found(flow.delete_contact(&ws, &ann).await, "deleting twice");
    for (table, col) in [
        ("starts", "contact_id"),
        ("messages", "contact_id"),
        ("deliveries", "contact_id"),
        ("run_targets", "contact_id"),
    ] {
        assert_eq!(
            b.raw
                .int(&format!(
                    "SELECT COUNT(*) FROM {table} WHERE {col} = '{ann}'"
                ))
                .await,
            0,
            "{table}"
        );
    }
    assert_eq!(b.raw.int("SELECT COUNT(*) FROM delivery_attempts").await, 0);
    assert_eq!(
        b.raw
            .int("SELECT COUNT(*) FROM inbox WHERE chat_id = '100'")
            .await,
        0
    );
    assert_eq!(b.raw.count("contacts").await, 3, "the others stay");
    assert_eq!(
        flow.run(&ws, &run.id).await.unwrap().counts.total(),
        1,
        "Ann's outcomes went with her; the recipient that was no contact stays"
    );

    // --- Deleting the bot deletes all of its flow.
    s.bots.delete_bot(&ws, &bot).await.unwrap();
    for table in [
        "inbox",
        "contacts",
        "starts",
        "messages",
        "deliveries",
        "delivery_attempts",
        "scenario_versions",
        "runs",
        "run_targets",
    ] {
        assert_eq!(
            b.raw.count(table).await,
            0,
            "{table} after the bot's deletion"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Concurrent claimers

/// Two workers claiming at once never get the same update or message, and a contact's second
/// message is never handed out while the first is under way.
async fn concurrent_claims(b: &Backend) {
    let s = &b.stores;
    let flow = &s.flow;
    let ws = s.workspaces.ensure_workspace("busy", T0).await.unwrap().id;
    let bot = new_bot(s, &ws, "busy bot").await;
    const CHATS: usize = 120;
    let events: Vec<Inbound> = (0..CHATS)
        .map(|i| text(&format!("e{i}"), &format!("chat-{i}"), "hi"))
        .collect();
    assert_eq!(
        flow.receive(&bot, Channel::Telegram, &events, T0)
            .await
            .unwrap(),
        CHATS as u64
    );
    let mut seconds = Vec::new();
    for i in 0..CHATS {
        let (first, second) = (message("one"), message("two"));
        seconds.push(second.id.clone());
        flow.commit(
            &bot,
            FlowCommit {
                contact: Some(contact_write(Channel::Telegram, &format!("chat-{i}"))),
                messages: vec![first, second],
                ..FlowCommit::default()
            },
            T0,
        )
        .await
        .unwrap();
    }

    // Each worker claims small batches until nothing is left; leases outlast the test.
    async fn drain<T, F, Fut>(claim: F) -> Vec<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Vec<T>>,
    {
        let mut got = Vec::new();
        loop {
            let batch = claim().await;
            if batch.is_empty() {
                return got;
            }
            got.extend(batch);
        }
    }
    let worker = |kind: &'static str| {
        let flow = flow.clone();
        tokio::spawn(async move {
            match kind {
                "inbox" => {
                    drain(|| async { flow.claim_inbox(7, 600 * SEC, T0 + SEC).await.unwrap() })
                        .await
                        .into_iter()
                        .map(|i| i.id.to_string())
                        .collect::<Vec<_>>()
                }
                _ => drain(|| async { flow.claim_messages(7, 600 * SEC, T0 + SEC).await.unwrap() })
                    .await
                    .into_iter()
                    .map(|m| m.id.to_string())
                    .collect::<Vec<_>>(),
            }
        })
    };
    for kind in ["inbox", "messages"] {
        let (a, b2) = (worker(kind), worker(kind));
        let (a, b2) = (a.await.unwrap(), b2.await.unwrap());
        let all: Vec<&String> = a.iter().chain(&b2).collect();
        let unique: HashSet<&String> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "{kind}: an item handed out twice");
        assert_eq!(all.len(), CHATS, "{kind}: every chat's first item, once");
        if kind == "messages" {
            let seconds: HashSet<String> = seconds.iter().map(ToString::to_string).collect();
            assert!(
                all.iter().all(|m| !seconds.contains(*m)),
                "a contact's second message handed out while its first is under way"
            );
        }
    }
    assert_eq!(
        b.raw
            .int("SELECT COUNT(*) FROM inbox WHERE attempts <> 1")
            .await,
        0
    );
}

/// A worker's batch committed together: each commit all or nothing, one that fails (an unknown
/// message) leaving the others written, with its own error in its place; a message's outcome
/// and a block recorded by a commit.
async fn batched_commits(b: &Backend) {
    let s = &b.stores;
    let flow = &s.flow;
    let ws = s.workspaces.ensure_workspace("batch", T0).await.unwrap().id;
    let bot = new_bot(s, &ws, "batch bot").await;
    let other = new_bot(s, &ws, "other bot").await;
    let (hi, bye) = (message("hi"), message("bye"));
    let ann = flow
        .commit(
            &bot,
            FlowCommit {
                contact: Some(contact_write(Channel::Telegram, "1")),
                messages: vec![hi.clone()],
                ..FlowCommit::default()
            },
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    let bob = flow
        .commit(
            &other,
            FlowCommit {
                contact: Some(contact_write(Channel::Viber, "2")),
                messages: vec![bye.clone()],
                ..FlowCommit::default()
            },
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    let claimed = flow.claim_messages(10, LEASE, T0).await.unwrap();
    assert_eq!(claimed.len(), 2);

    let sent = |id: &MessageId| MessageOutcome {
        id: id.clone(),
        status: WorkStatus::Done,
        error: None,
        retry_at: None,
        hold_next_until: None,
    };
    let carol_write = contact_write(Channel::Telegram, "3");
    let carol = carol_write.new_id.clone();
    let batch = vec![
        // Ann's greeting sent.
        (
            bot.clone(),
            FlowCommit {
                message_done: Some(sent(&hi.id)),
                ..FlowCommit::default()
            },
        ),
        // A message that does not exist: this one fails, alone.
        (
            bot.clone(),
            FlowCommit {
                contact: Some(contact_write(Channel::Telegram, "9")),
                message_done: Some(sent(&MessageId::new())),
                ..FlowCommit::default()
            },
        ),
        // Bob blocked the other bot: his message given up, he unsubscribed.
        (
            other.clone(),
            FlowCommit {
                contact_id: Some(bob.clone()),
                unsubscribe: true,
                message_done: Some(MessageOutcome {
                    id: bye.id.clone(),
                    status: WorkStatus::Failed,
                    error: Some("blocked: bot was blocked by the user".to_owned()),
                    retry_at: None,
                    hold_next_until: None,
                }),
                ..FlowCommit::default()
            },
        ),
        // A new contact.
        (
            bot.clone(),
            FlowCommit {
                contact: Some(carol_write),
                ..FlowCommit::default()
            },
        ),
    ];
    let mut out = flow.commit_all(&batch, T0 + SEC).await;
    assert_eq!(out.len(), 4, "{out:?}");
    assert_eq!(out[0].as_ref().unwrap(), &None);
    not_found(out.remove(1), "the unknown message's commit");
    assert_eq!(out[1].as_ref().unwrap(), &Some(bob.clone()));
    assert_eq!(out[2].as_ref().unwrap(), &Some(carol.clone()));

    assert_eq!(
        b.raw
            .int(&format!("SELECT COUNT(*) FROM messages WHERE id = '{}' AND status = 'done' AND sent_at IS NOT NULL", hi.id))
            .await,
        1,
        "the greeting is sent"
    );
    assert_eq!(
        b.raw
            .int(&format!(
                "SELECT COUNT(*) FROM messages WHERE id = '{}' AND status = 'failed'",
                bye.id
            ))
            .await,
        1,
        "Bob's message is given up"
    );
    assert!(
        !flow.contact(&ws, &bob).await.unwrap().subscribed,
        "Bob blocked the bot"
    );
    assert!(flow.contact(&ws, &ann).await.unwrap().subscribed);
    assert!(flow.contact(&ws, &carol).await.is_ok(), "Carol is written");
    assert_eq!(
        flow.contact_by_chat(&bot, Channel::Telegram, "9")
            .await
            .unwrap(),
        None,
        "the failed commit wrote nothing, not even its contact"
    );
    assert!(flow.commit_all(&[], T0).await.is_empty());
}

/// Send slots: taken in runs that never overlap, from any number of takers at once; a pause
/// moves the next slot past it; a chat's least gap holds its next message back.
async fn send_slots(b: &Backend) {
    let s = &b.stores;
    let flow = s.flow.clone();
    let ws = s.workspaces.ensure_workspace("paced", T0).await.unwrap().id;
    let bot = new_bot(s, &ws, "paced bot").await;
    let tg = Channel::Telegram;
    assert_eq!(
        flow.take_send_slots(&bot, tg, 5, 100, 1_000).await.unwrap(),
        1_000
    );
    assert_eq!(
        flow.take_send_slots(&bot, tg, 3, 100, 1_000).await.unwrap(),
        1_500,
        "after the first five"
    );
    assert_eq!(
        flow.take_send_slots(&bot, tg, 1, 100, 5_000).await.unwrap(),
        5_000,
        "unused time is not saved up"
    );
    assert_eq!(
        flow.take_send_slots(&bot, Channel::Viber, 1, 100, 5_000)
            .await
            .unwrap(),
        5_000,
        "each channel its own"
    );
    flow.pause_sends(&bot, tg, 9_000).await.unwrap();
    assert_eq!(
        flow.take_send_slots(&bot, tg, 1, 100, 6_000).await.unwrap(),
        9_000,
        "paused until then"
    );
    flow.pause_sends(&bot, tg, 7_000).await.unwrap();
    assert_eq!(
        flow.take_send_slots(&bot, tg, 1, 100, 6_000).await.unwrap(),
        9_100,
        "a shorter pause shortens nothing"
    );

    // Eight takers at once: every run of slots its own.
    let mut takers = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (flow, bot) = (flow.clone(), bot.clone());
        takers.spawn(async move {
            flow.take_send_slots(&bot, Channel::Line, 50, 10, 0)
                .await
                .unwrap()
        });
    }
    let mut firsts = Vec::new();
    while let Some(first) = takers.join_next().await {
        firsts.push(first.unwrap());
    }
    firsts.sort_unstable();
    assert_eq!(
        firsts,
        (0..8).map(|i| i * 500).collect::<Vec<_>>(),
        "runs of 50 slots, none shared"
    );

    // A chat's least gap: its next message waits.
    let (first, second) = (message("one"), message("two"));
    flow.commit(
        &bot,
        FlowCommit {
            contact: Some(contact_write(tg, "gap")),
            messages: vec![first.clone(), second.clone()],
            ..FlowCommit::default()
        },
        T0,
    )
    .await
    .unwrap();
    let claimed = flow.claim_messages(10, LEASE, T0).await.unwrap();
    assert_eq!(ids(&claimed, |m| &m.id), vec![first.id.clone()]);
    flow.commit(
        &bot,
        FlowCommit {
            message_done: Some(MessageOutcome {
                id: first.id.clone(),
                status: WorkStatus::Done,
                error: None,
                retry_at: None,
                hold_next_until: Some(T0 + SEC),
            }),
            ..FlowCommit::default()
        },
        T0 + 10,
    )
    .await
    .unwrap();
    assert!(
        flow.claim_messages(10, LEASE, T0 + SEC - 1)
            .await
            .unwrap()
            .is_empty(),
        "held back"
    );
    let claimed = flow.claim_messages(10, LEASE, T0 + SEC).await.unwrap();
    assert_eq!(ids(&claimed, |m| &m.id), vec![second.id.clone()]);
}
