//! The outbox: messages sent through each channel's API, a contact's in the order they were
//! written. A rate limit or a passing failure delays a message, never drops it; a platform's
//! "blocked" unsubscribes the contact.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use botlink_core::Channel;

use super::creds::sender;
use super::pace::{Pace, pace_of};
use super::{Flow, now_ms};
use crate::outbound::channels::{self, ChannelSender, SendOutcome};
use crate::store::{
    BotId, FlowCommit, MessageOutcome, OutboxMessage, RecipientOutcome, StoreError, WorkStatus,
};

/// Messages claimed at once.
const BATCH: u32 = 64;
/// Attempts at a message that keeps failing in passing (5xx, timeouts) before it is given up.
const MAX_ATTEMPTS: i64 = 12;

/// Claims the messages that are due and sends each; returns how many it claimed.
pub async fn send_due(flow: &Arc<Flow>) -> Result<usize, StoreError> {
    let claimed = flow
        .flow
        .claim_messages(BATCH, flow.lease_ms, now_ms())
        .await?;
    let n = claimed.len();
    // Per bot channel, once a batch: its sender (its secrets opened once) and its pace.
    let mut channels: HashMap<(BotId, Channel), Arc<ChannelContext>> = HashMap::new();
    for m in &claimed {
        let key = (m.bot_id.clone(), m.channel);
        if channels.contains_key(&key) {
            continue;
        }
        let ctx = match flow.bots.bot_by_id(&m.bot_id).await? {
            Some(bot) => ChannelContext {
                sender: sender(&flow.secret, &bot, m.channel).map_err(|e| e.to_string()),
                pace: pace_of(&bot, m.channel),
            },
            None => ChannelContext {
                sender: Err("the bot was deleted".to_owned()),
                pace: None,
            },
        };
        channels.insert(key, Arc::new(ctx));
    }
    // Each paced channel's messages of the batch get a run of slots, taken at once.
    let mut slots: HashMap<(BotId, Channel), (i64, i64)> = HashMap::new();
    for (key, ctx) in &channels {
        let Some(pace) = ctx.pace else { continue };
        let count = claimed
            .iter()
            .filter(|m| m.bot_id == key.0 && m.channel == key.1)
            .count();
        let interval = pace.interval_us();
        let first = flow
            .flow
            .take_send_slots(
                &key.0,
                key.1,
                u32::try_from(count).unwrap_or(u32::MAX),
                interval,
                now_us(),
            )
            .await?;
        slots.insert(key.clone(), (first, interval));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for m in claimed {
        let key = (m.bot_id.clone(), m.channel);
        let ctx = channels[&key].clone();
        let at = slots.get_mut(&key).map(|(next, interval)| {
            let at = *next;
            *next += *interval;
            at
        });
        let flow = flow.clone();
        tasks.spawn(async move {
            if let Some(at) = at {
                let wait = at - now_us();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_micros(wait.unsigned_abs())).await;
                }
            }
            let bot = m.bot_id.clone();
            (bot, send_one(&flow, &ctx, m).await)
        });
    }
    // The outcomes committed together; a message whose task panicked stays leased, and is sent
    // again after the lease.
    let mut outcomes = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    let written = flow.flow.commit_all(&outcomes, now_ms()).await;
    let mut sent = false;
    for ((_, commit), w) in outcomes.iter().zip(written) {
        let Some(m) = &commit.message_done else {
            continue;
        };
        match w {
            Ok(_) => sent |= m.status == WorkStatus::Done,
            Err(e) => tracing::error!(message = %m.id, error = %e, "recording a message's outcome"),
        }
    }
    if sent {
        // The contacts' next messages may now go.
        flow.wake.outbox.notify_one();
    }
    Ok(n)
}

/// The channel's form of a scenario's rendered message.
fn to_channel(m: &OutboxMessage) -> Result<channels::OutMessage, String> {
    let out: botlink_scenario::OutMessage = serde_json::from_value(m.message.clone())
        .map_err(|e| format!("the stored message does not read: {e}"))?;
    Ok(channels::OutMessage {
        id: m.id.to_string(),
        chat_id: m.chat_id.clone(),
        text: out.text,
        buttons: out
            .buttons
            .into_iter()
            .map(|b| channels::Button {
                text: b.text,
                target: match b.target {
                    botlink_scenario::ButtonTarget::Node(n) => channels::ButtonTarget::Node(n),
                    botlink_scenario::ButtonTarget::Url(u) => channels::ButtonTarget::Url(u),
                },
            })
            .collect(),
        tag: out.tag,
        template: out.template.map(|t| channels::WhatsappTemplate {
            name: t.name,
            language: t.language,
            components: t
                .components
                .map(serde_json::Value::Array)
                .unwrap_or(serde_json::Value::Null),
        }),
    })
}

/// Sends one message; what its outcome writes: the message done, failed or put off, and a
/// contact that blocked the bot unsubscribed.
async fn send_one(flow: &Flow, ctx: &ChannelContext, m: OutboxMessage) -> FlowCommit {
    let now = now_ms();
    let outcome = match (ctx.sender.as_ref().map_err(Clone::clone), to_channel(&m)) {
        (Ok(sender), Ok(msg)) => sender.send(&flow.outbound, &msg, now).await,
        (Err(e), _) | (_, Err(e)) => SendOutcome::Failed {
            reason: "cannot_send",
            detail: e,
        },
    };
    let now = now_ms();
    let attempts = m.attempts + 1;
    let mut unsubscribe = false;
    let (status, error, retry_at) = match &outcome {
        SendOutcome::Sent { .. } => (WorkStatus::Done, None, None),
        SendOutcome::RetryAfter(wait) => {
            let until = now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2);
            // The whole bot waits on this channel, on every instance.
            if let Err(e) = flow
                .flow
                .pause_sends(&m.bot_id, m.channel, until.saturating_mul(1000))
                .await
            {
                tracing::warn!(bot = %m.bot_id, channel = %m.channel, error = %e, "pausing a channel's sends");
            }
            (
                WorkStatus::Pending,
                Some(format!("rate limited: retry after {} ms", wait.as_millis())),
                Some(until),
            )
        }
        SendOutcome::Transient { reason, detail } if attempts < MAX_ATTEMPTS => (
            WorkStatus::Pending,
            Some(format!("{reason}: {detail}")),
            Some(now + backoff(attempts)),
        ),
        SendOutcome::Transient { reason, detail } | SendOutcome::Failed { reason, detail } => (
            WorkStatus::Failed,
            Some(format!("{reason}: {detail}")),
            None,
        ),
        SendOutcome::Blocked { reason, detail } => {
            unsubscribe = true;
            (
                WorkStatus::Failed,
                Some(format!("blocked: {reason}: {detail}")),
                None,
            )
        }
        SendOutcome::OutsideWindow { detail } => (
            WorkStatus::Failed,
            Some(format!("outside_window: {detail}")),
            None,
        ),
    };
    if status == WorkStatus::Failed {
        tracing::warn!(message = %m.id, bot = %m.bot_id, channel = %m.channel, error = error.as_deref().unwrap_or(""), "a message was given up");
    }
    let recipient = match (&m.run_id, status != WorkStatus::Pending) {
        (Some(run_id), true) => Some(RecipientOutcome {
            run_id: run_id.clone(),
            contact_id: m.contact_id.clone(),
            status,
            reason: error
                .as_deref()
                .map(|e| e.split(':').next().unwrap_or_default().to_owned()),
        }),
        _ => None,
    };
    FlowCommit {
        contact_id: (unsubscribe || recipient.is_some()).then(|| m.contact_id.clone()),
        recipient,
        unsubscribe,
        message_done: Some(MessageOutcome {
            id: m.id,
            status,
            error,
            retry_at,
            hold_next_until: ctx
                .pace
                .and_then(|p| p.per_chat_ms)
                .filter(|_| status == WorkStatus::Done)
                .map(|gap| now + gap),
        }),
        ..FlowCommit::default()
    }
}

/// What sending on one bot channel needs, once a batch.
struct ChannelContext {
    sender: Result<ChannelSender, String>,
    pace: Option<Pace>,
}

/// Epoch microseconds now.
fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The wait before retrying a message after `attempts` passing failures: 1 s, doubling, at
/// most 10 min.
fn backoff(attempts: i64) -> i64 {
    let secs = 1i64 << attempts.clamp(0, 10);
    Duration::from_secs(secs.min(600) as u64).as_millis() as i64
}
