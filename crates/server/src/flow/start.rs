//! The inbox: each update received from a messenger becomes a contact (created or updated), a
//! Start attributed to its link when it carries one, and the scenario's run, whose messages
//! and first request are written in the same transaction that marks the update done.
//!
//! When a contact counts as subscribed (the bot may write to it), per platform:
//! - Telegram, MAX, Messenger, Instagram, WhatsApp, custom: from its Start or first message;
//!   no longer once the platform reports a block (`my_chat_member` kicked, `bot_stopped`) or
//!   a send is refused as blocked.
//! - Viber: `conversation_started` creates the contact, not subscribed, keeping the deep
//!   link's context; the `subscribed` callback, or the person's first message, subscribes it,
//!   and the Start runs then with the kept context (Viber sends no context later).
//! - LINE: `follow` (a new friend, or an unblock); `unfollow` ends it. A new friend's follow
//!   runs the start node; the marker in a message's text is a Start with its parameter (a
//!   follow that the same webhook follows with that Start is left to it: see `webhooks`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use botlink_core::{Channel, Inbound, InboundKind, Scheme};
use botlink_scenario::{Runner, Scenario, Vars};

use super::run::drive;
use super::{Flow, FlowError, now_ms};
use crate::store::{
    Bot, BotId, ClickId, Contact, ContactId, ContactWrite, EntryPointId, FlowCommit, InboxItem,
    Link, LinkId, StartId, StartRecord, StoreError, Utm,
};

/// Updates claimed at once.
const BATCH: u32 = 32;
/// Attempts at processing one update before it is given up (with its error kept).
const MAX_ATTEMPTS: i64 = 8;

/// Claims the updates that are due and processes them; returns how many it claimed. The
/// batch's bots and scenarios are read once, its updates processed concurrently, and what
/// they write committed together.
pub async fn process_due(flow: &Arc<Flow>) -> Result<usize, StoreError> {
    let items = flow
        .flow
        .claim_inbox(BATCH, flow.lease_ms, now_ms())
        .await?;
    let n = items.len();
    if n == 0 {
        return Ok(0);
    }
    let mut ctx: HashMap<BotId, Arc<Result<BotContext, String>>> = HashMap::new();
    for item in &items {
        if !ctx.contains_key(&item.bot_id) {
            let c = bot_context(flow, &item.bot_id)
                .await
                .map_err(|e| e.to_string());
            ctx.insert(item.bot_id.clone(), Arc::new(c));
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for item in items {
        let flow = flow.clone();
        let ctx = ctx[&item.bot_id].clone();
        tasks.spawn(async move {
            let outcome = match &*ctx {
                Ok(ctx) => prepare(&flow, ctx, &item).await,
                Err(e) => Err(FlowError::Other(e.clone())),
            };
            (item, outcome)
        });
    }
    let mut commits = Vec::with_capacity(n);
    let mut failed = Vec::new();
    while let Some(done) = tasks.join_next().await {
        // A task that panicked leaves its update leased: it is taken up again after the lease.
        let Ok((item, outcome)) = done else { continue };
        match outcome {
            Ok(commit) => commits.push((item, commit)),
            Err(e) => failed.push((item, e.to_string())),
        }
    }
    let batch: Vec<_> = commits
        .iter()
        .map(|(item, commit)| (item.bot_id.clone(), commit.clone()))
        .collect();
    let now = now_ms();
    let outcomes = flow.flow.commit_all(&batch, now).await;
    for ((item, _), outcome) in commits.into_iter().zip(outcomes) {
        if let Err(e) = outcome {
            failed.push((item, e.to_string()));
        }
    }
    if failed.len() < n {
        flow.wake.outbox.notify_one();
        flow.wake.deliveries.notify_one();
    }
    for (item, error) in failed {
        let attempts = item.attempts;
        let now = now_ms();
        let retry_at =
            (attempts + 1 < MAX_ATTEMPTS).then(|| now + 1_000 * (1 << attempts.clamp(0, 10)));
        tracing::warn!(update = %item.id, error = %error, attempt = attempts + 1, "processing an update failed");
        if let Err(e) = flow
            .flow
            .inbox_failed(&item.id, &error, retry_at, now)
            .await
        {
            tracing::error!(update = %item.id, error = %e, "recording a failed update");
        }
    }
    Ok(n)
}

/// What processing a bot's updates needs, read once a batch: the bot (`None`: deleted since)
/// and its current scenario.
struct BotContext {
    bot: Option<Bot>,
    scenario: Option<(i64, Scenario)>,
}

async fn bot_context(flow: &Flow, id: &BotId) -> Result<BotContext, FlowError> {
    let Some(bot) = flow.bots.bot_by_id(id).await? else {
        return Ok(BotContext {
            bot: None,
            scenario: None,
        });
    };
    let scenario = current_scenario(flow, &bot).await?;
    Ok(BotContext {
        bot: Some(bot),
        scenario,
    })
}

/// Where a Start came from, as far as its parameter tells.
#[derive(Debug, Default)]
struct Attribution {
    link_id: Option<LinkId>,
    click_id: Option<ClickId>,
    entry_point_id: Option<EntryPointId>,
    utm: Utm,
    /// The node the link's entry point names.
    node: Option<String>,
    external_id: Option<String>,
    phone: Option<String>,
    email: Option<String>,
    variables: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
    /// Scenario variables the parameter adds (`messenger_input_param`, ...).
    vars: Vec<(String, String)>,
    unattributed: Option<String>,
}

/// What a Start's parameter says: its payload, and its link and click for the stored scheme.
/// A parameter that cannot be read, or names a link it cannot be, is not an error: the Start
/// goes on unattributed, saying why.
async fn attribute(flow: &Flow, bot: &Bot, param: &str, now: i64) -> Attribution {
    let key = flow.secret.signing_key(bot.id.as_str());
    let mut a = Attribution::default();
    let decoded = match botlink_core::decode(param, Some(&key), None) {
        Ok(d) => d,
        Err(e) => {
            a.vars
                .push(("messenger_input_param".to_owned(), param.to_owned()));
            a.unattributed = Some(e.to_string());
            return a;
        }
    };
    a.vars = decoded.scenario_variables();
    if let Some(stored) = &decoded.stored {
        let link = match flow.links.link_by_code_or_slug(&stored.code).await {
            Ok(Some(link)) if link.bot_id == bot.id && link.scheme == Scheme::Stored => link,
            Ok(_) => {
                a.unattributed = Some(format!(
                    "no link of this bot has the code {:?}",
                    stored.code
                ));
                return a;
            }
            Err(e) => {
                a.unattributed = Some(format!("the link could not be looked up: {e}"));
                return a;
            }
        };
        if let Some(why) = unusable(&link, now) {
            a.unattributed = Some(why);
            return a;
        }
        // The click id is taken as the parameter says, not looked up: the click may still be
        // in the click queue (written within `--click-flush-ms`) when the Start arrives, and a
        // made-up id could only claim a click of this same link.
        a.click_id = stored.click.as_deref().map(ClickId::from);
        let p = &link.payload;
        a.external_id = p.external_id.clone();
        a.phone = p.phone.clone();
        a.email = p.email.clone();
        a.variables = p.variables.clone();
        a.fields = p.fields.clone();
        a.vars.extend(
            p.external_id
                .iter()
                .map(|v| ("clientExternalId".to_owned(), v.clone())),
        );
        a.vars
            .extend(p.phone.iter().map(|v| ("phone".to_owned(), v.clone())));
        a.vars
            .extend(p.email.iter().map(|v| ("email".to_owned(), v.clone())));
        a.vars
            .extend(p.variables.iter().map(|(k, v)| (k.clone(), v.clone())));
        a.vars
            .extend(p.fields.iter().map(|(k, v)| (k.clone(), v.clone())));
        if let Some(ep) = &link.entry_point_id
            && let Ok(e) = flow.bots.entry_point_by_id(&bot.workspace_id, ep).await
        {
            a.node = e.node;
            a.entry_point_id = Some(e.id);
        }
        a.utm = link.utm.clone();
        a.link_id = Some(link.id);
        return a;
    }
    a.external_id = decoded.external_id.clone();
    a.phone = decoded.phone.clone();
    a.email = decoded.email.clone();
    a.variables = decoded.variables.iter().cloned().collect();
    a.fields = decoded.fields.iter().cloned().collect();
    if let Some(key) = &decoded.entry {
        match flow.bots.entry_point(&bot.workspace_id, &bot.id, key).await {
            Ok(e) => {
                if let (Some(field), Some(value)) = (&e.default_field, &decoded.entry_value) {
                    a.fields.insert(field.clone(), value.clone());
                    a.vars.push((field.clone(), value.clone()));
                }
                a.node = e.node;
                a.utm = e.utm;
                a.entry_point_id = Some(e.id);
            }
            Err(_) => a.unattributed = Some(format!("the bot has no entry point {key:?}")),
        }
    }
    a
}

/// Why a link no longer takes Starts, if it does not.
fn unusable(link: &Link, now: i64) -> Option<String> {
    if link.disabled {
        Some("the link is disabled".to_owned())
    } else if link.expires_at.is_some_and(|t| t <= now) {
        Some("the link has expired".to_owned())
    } else {
        None
    }
}

/// What an update does, before the scenario runs.
struct Plan {
    write: ContactWrite,
    /// A Start, with its parameter.
    start: Option<Option<String>>,
    /// A node a button asked for.
    node: Option<String>,
}

fn plan(channel: Channel, event: &Inbound, existing: Option<&Contact>) -> Plan {
    let mut write = ContactWrite {
        new_id: ContactId::new(),
        channel,
        chat_id: event.chat_id.clone(),
        user_id: Some(event.user_id.clone()),
        name: event.user_name.clone(),
        language: event.language.clone(),
        external_id: None,
        phone: None,
        email: None,
        variables: BTreeMap::new(),
        fields: BTreeMap::new(),
        subscribed: existing.is_none().then_some(false),
        touch: None,
        pending_param: None,
        inbound: false,
    };
    let mut start = None;
    let mut node = None;
    let kept = || existing.and_then(|c| c.pending_param.clone());
    match &event.kind {
        InboundKind::Start { param } => {
            write.subscribed = Some(true);
            write.inbound = true;
            start = Some(param.clone());
        }
        InboundKind::ConversationStarted { context } => {
            write.pending_param = Some(context.clone().filter(|c| !c.is_empty()));
        }
        InboundKind::Subscribed => {
            let was = existing.is_some_and(|c| c.subscribed);
            write.subscribed = Some(true);
            match channel {
                Channel::Viber if !was => {
                    start = Some(kept());
                    write.pending_param = Some(None);
                }
                Channel::Line if existing.is_none() => start = Some(None),
                _ => {}
            }
        }
        InboundKind::Unsubscribed => write.subscribed = Some(false),
        InboundKind::Message { .. } => {
            write.inbound = true;
            let subscribed = existing.is_some_and(|c| c.subscribed);
            write.subscribed = Some(true);
            if channel == Channel::Viber && !subscribed {
                start = Some(kept());
                write.pending_param = Some(None);
            } else if existing.is_none() {
                // A person who writes first has started the bot.
                start = Some(None);
            }
        }
        InboundKind::Postback { payload } => {
            write.inbound = true;
            write.subscribed = Some(true);
            match payload.strip_prefix("n:") {
                Some(n) => node = Some(n.to_owned()),
                None if existing.is_none() => start = Some(None),
                None => {}
            }
        }
    }
    Plan { write, start, node }
}

/// The variables a run for this contact starts with: its stored ones, then what this update
/// and its parameter say.
fn contact_vars(
    channel: Channel,
    event: &Inbound,
    existing: Option<&Contact>,
    write: &ContactWrite,
    extra: &[(String, String)],
    utm: Option<&Utm>,
) -> Vars {
    let mut vars = Vars::new();
    if let Some(c) = existing {
        vars.extend(c.fields.clone());
        vars.extend(c.variables.clone());
        let put = |vars: &mut Vars, k: &str, v: &Option<String>| {
            if let Some(v) = v {
                vars.insert(k.to_owned(), v.clone());
            }
        };
        put(&mut vars, "clientExternalId", &c.external_id);
        put(&mut vars, "phone", &c.phone);
        put(&mut vars, "email", &c.email);
    }
    vars.extend(write.fields.clone());
    vars.extend(write.variables.clone());
    vars.extend(extra.iter().cloned());
    let utm = utm.or(existing.map(|c| &c.utm));
    if let Some(u) = utm {
        for (k, v) in [
            ("utm_source", &u.source),
            ("utm_medium", &u.medium),
            ("utm_campaign", &u.campaign),
            ("utm_term", &u.term),
            ("utm_content", &u.content),
        ] {
            if let Some(v) = v {
                vars.insert(k.to_owned(), v.clone());
            }
        }
    }
    // Set last: a payload cannot pass itself off as another chat.
    vars.insert("chat_id".to_owned(), event.chat_id.clone());
    vars.insert("channel".to_owned(), channel.as_str().to_owned());
    if let Some(name) = event
        .user_name
        .as_ref()
        .or(existing.and_then(|c| c.name.as_ref()))
    {
        vars.insert("user_name".to_owned(), name.clone());
    }
    if let Some(lang) = event
        .language
        .as_ref()
        .or(existing.and_then(|c| c.language.as_ref()))
    {
        vars.insert("language".to_owned(), lang.clone());
    }
    vars
}

/// The bot's current scenario, read: `None` when it has none.
pub async fn current_scenario(
    flow: &Flow,
    bot: &Bot,
) -> Result<Option<(i64, Scenario)>, FlowError> {
    let Some(v) = flow.flow.current_scenario(&bot.id).await? else {
        return Ok(None);
    };
    let bytes = serde_json::to_vec(&v.document).expect("a JSON value serializes");
    let scenario = Scenario::from_json(&bytes).map_err(|e| {
        FlowError::Other(format!(
            "the stored scenario version {} of bot {} does not read: {e}",
            v.version, bot.id
        ))
    })?;
    Ok(Some((v.version, scenario)))
}

/// What processing one update writes, in one commit: the contact, the Start, the run.
async fn prepare(flow: &Flow, ctx: &BotContext, item: &InboxItem) -> Result<FlowCommit, FlowError> {
    let now = now_ms();
    let Some(bot) = &ctx.bot else {
        // The bot was deleted since (its inbox goes with it): nothing to do.
        return Ok(FlowCommit {
            inbox_done: Some(item.id.clone()),
            ..FlowCommit::default()
        });
    };
    let event = &item.event;
    let existing = flow
        .flow
        .contact_by_chat(&bot.id, item.channel, &event.chat_id)
        .await?;
    let Plan {
        mut write,
        start,
        node: asked,
    } = plan(item.channel, event, existing.as_ref());
    let scenario = &ctx.scenario;
    let mut commit = FlowCommit {
        inbox_done: Some(item.id.clone()),
        ..FlowCommit::default()
    };
    let mut run_from: Option<String> = None;
    let mut extra = Vec::new();
    let mut utm = None;
    if let Some(param) = start {
        let a = match param.as_deref().filter(|p| !p.is_empty()) {
            Some(p) => attribute(flow, bot, p, now).await,
            None => Attribution::default(),
        };
        write.external_id = a.external_id.clone();
        write.phone = a.phone.clone();
        write.email = a.email.clone();
        write.variables = a.variables.clone();
        write.fields = a.fields.clone();
        if let Some(link) = &a.link_id {
            write.touch = Some((link.clone(), a.utm.clone()));
        }
        let node = a
            .node
            .clone()
            .filter(|n| {
                scenario
                    .as_ref()
                    .is_some_and(|(_, s)| s.nodes.contains_key(n))
            })
            .or_else(|| scenario.as_ref().map(|(_, s)| s.start.clone()));
        commit.start = Some(StartRecord {
            id: StartId::new(),
            link_id: a.link_id.clone(),
            click_id: a.click_id.clone(),
            entry_point_id: a.entry_point_id.clone(),
            utm: a.utm.clone(),
            param: param.clone(),
            node: node.clone().unwrap_or_default(),
            unattributed: a.unattributed.clone(),
            at: now,
        });
        if a.link_id.is_some() || a.entry_point_id.is_some() {
            utm = Some(a.utm.clone());
        }
        extra = a.vars;
        run_from = node;
    } else if let Some(n) = asked {
        run_from = Some(n);
    }
    if let (Some(node), Some((version, scenario))) = (run_from, scenario.as_ref()) {
        let vars = contact_vars(
            item.channel,
            event,
            existing.as_ref(),
            &write,
            &extra,
            utm.as_ref(),
        );
        match Runner::start(scenario, Some(&node), vars) {
            Ok(runner) => {
                let d = drive(scenario, runner);
                if let Some(why) = &d.halted {
                    tracing::warn!(bot = %bot.id, node = %node, reason = %why, "a scenario run stopped early");
                }
                let (messages, deliveries) = d.into_rows(*version, None);
                commit.messages = messages;
                commit.deliveries = deliveries;
            }
            // A button to a node that is gone, after the scenario changed.
            Err(e) => {
                tracing::info!(bot = %bot.id, error = %e, "an update asked for a node the scenario no longer has")
            }
        }
    }
    commit.contact = Some(write);
    Ok(commit)
}
