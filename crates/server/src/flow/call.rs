//! call_node: a CRM runs a node of the bot's scenario for a contact that has started the bot
//! (a bot cannot write first), e.g. "your order has shipped". The run's messages and requests
//! go through the outbox like a Start's; the run's recipient learns its outcome when they are
//! sent.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use botlink_core::Channel;
use botlink_scenario::{Runner, Scenario, Vars};

use super::run::drive;
use super::start::current_scenario;
use super::{Flow, FlowError, now_ms};
use crate::domain::DomainError;
use crate::store::{
    Bot, Contact, FlowCommit, NewRun, RecipientOutcome, Run, RunCounts, RunCreated, RunId,
    RunTarget, StoreError, TargetOutcome, TargetStatus, WorkStatus,
};

/// Whom a call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A chat in a channel.
    Chat { channel: Channel, chat_id: String },
    /// The contact with the CRM's id (the one seen last, when it has several channels).
    External(String),
}

/// The variables a run for a stored contact starts with.
pub fn stored_vars(c: &Contact) -> Vars {
    let mut vars = Vars::new();
    vars.extend(c.fields.clone());
    vars.extend(c.variables.clone());
    for (k, v) in [
        ("clientExternalId", &c.external_id),
        ("phone", &c.phone),
        ("email", &c.email),
        ("user_name", &c.name),
        ("language", &c.language),
        ("utm_source", &c.utm.source),
        ("utm_medium", &c.utm.medium),
        ("utm_campaign", &c.utm.campaign),
        ("utm_term", &c.utm.term),
        ("utm_content", &c.utm.content),
    ] {
        if let Some(v) = v {
            vars.insert(k.to_owned(), v.clone());
        }
    }
    vars.insert("chat_id".to_owned(), c.chat_id.clone());
    vars.insert("channel".to_owned(), c.channel.as_str().to_owned());
    vars
}

/// The contact a recipient names: the chat's, or the one with the CRM's id (the one seen last,
/// subscribed first, when it has several channels). Refused when the bot may not write to it.
pub async fn resolve(flow: &Flow, bot: &Bot, to: &Recipient) -> Result<Contact, FlowError> {
    let contact = match to {
        Recipient::Chat { channel, chat_id } => {
            flow.flow
                .contact_by_chat(&bot.id, *channel, chat_id)
                .await?
        }
        Recipient::External(id) => {
            let mut all = flow
                .flow
                .contacts_by_external_id(&bot.workspace_id, &bot.id, id)
                .await?;
            all.sort_by_key(|c| (c.subscribed, c.last_seen_at));
            all.pop()
        }
    };
    let who = match to {
        Recipient::Chat { channel, chat_id } => format!("chat {chat_id:?} on {channel}"),
        Recipient::External(id) => format!("the contact with external_id {id:?}"),
    };
    let Some(contact) = contact else {
        return Err(DomainError::invalid(
            "not_subscribed",
            format!(
                "{who} has never started this bot, and a bot cannot write first: the person must open the bot (press Start) before it can notify them"
            ),
        )
        .into());
    };
    if !contact.subscribed {
        return Err(DomainError::invalid(
            "unsubscribed",
            format!(
                "{who} has blocked or left the bot: it can write again once the person starts it again"
            ),
        )
        .into());
    }
    Ok(contact)
}

/// The bot's current scenario, which must have `node`.
async fn scenario_with(flow: &Flow, bot: &Bot, node: &str) -> Result<(i64, Scenario), FlowError> {
    let Some((version, scenario)) = current_scenario(flow, bot).await? else {
        return Err(DomainError::invalid(
            "no_scenario",
            format!(
                "the bot has no scenario: save one with PUT /api/v1/bots/{}/scenario first",
                bot.id
            ),
        )
        .into());
    };
    if !scenario.nodes.contains_key(node) {
        return Err(DomainError::invalid(
            "unknown_node",
            format!("the bot's scenario has no node {node:?}"),
        )
        .into());
    }
    Ok((version, scenario))
}

/// What running `run`'s node for its target `seq`, resolved to `contact`, writes: the target
/// queued with the node's messages and requests (done at once when it sends nothing).
fn queue_for(
    scenario: &(i64, Scenario),
    run: &Run,
    seq: i64,
    contact: &Contact,
    variables: &BTreeMap<String, String>,
) -> Result<FlowCommit, DomainError> {
    let (version, scenario) = scenario;
    let mut vars = stored_vars(contact);
    vars.extend(run.variables.clone());
    vars.extend(variables.clone());
    // Set last: the call's variables cannot redirect the run to another chat.
    vars.insert("chat_id".to_owned(), contact.chat_id.clone());
    vars.insert("channel".to_owned(), contact.channel.as_str().to_owned());
    let runner = Runner::start(scenario, Some(&run.node), vars)
        .map_err(|e| DomainError::invalid("unknown_node", e.to_string()))?;
    let d = drive(scenario, runner);
    let halted = d.halted.clone();
    let (messages, deliveries) = d.into_rows(*version, Some(&run.id));
    let nothing_to_send = messages.is_empty() && deliveries.is_empty();
    Ok(FlowCommit {
        contact_id: Some(contact.id.clone()),
        target: Some(TargetOutcome {
            run_id: run.id.clone(),
            seq,
            contact_id: Some(contact.id.clone()),
            status: TargetStatus::Queued,
            reason: None,
        }),
        messages,
        deliveries,
        // A run that sends nothing is done at once.
        recipient: nothing_to_send.then(|| RecipientOutcome {
            run_id: run.id.clone(),
            contact_id: contact.id.clone(),
            status: if halted.is_some() {
                WorkStatus::Failed
            } else {
                WorkStatus::Done
            },
            reason: halted,
        }),
        ..FlowCommit::default()
    })
}

/// A run of `node` for the bot, at once, without an idempotency key.
pub fn new_run(bot: &Bot, node: String, variables: BTreeMap<String, String>) -> Run {
    Run {
        id: RunId::new(),
        workspace_id: bot.workspace_id.clone(),
        bot_id: bot.id.clone(),
        node,
        variables,
        created_at: 0,
        send_at: None,
        cancelled_at: None,
        idempotency_key: None,
        request_hash: None,
        counts: RunCounts::default(),
    }
}

/// A recipient as a run's target, not worked yet.
pub fn pending_target(
    run: &RunId,
    seq: i64,
    to: &Recipient,
    variables: BTreeMap<String, String>,
) -> RunTarget {
    let (external_id, channel, chat_id) = match to {
        Recipient::External(id) => (Some(id.clone()), None, None),
        Recipient::Chat { channel, chat_id } => (None, Some(*channel), Some(chat_id.clone())),
    };
    RunTarget {
        run_id: run.clone(),
        seq,
        external_id,
        channel,
        chat_id,
        variables,
        contact_id: None,
        status: TargetStatus::Pending,
        reason: None,
        updated_at: 0,
    }
}

/// Runs `node` for one recipient, checked at once (a person who never started the bot, or
/// blocked it, is refused and nothing is written): answers the run; its messages are queued.
/// With an idempotency key used before for the same request, that run, and nothing is sent
/// again.
pub async fn call_node(flow: &Flow, mut run: Run, to: Recipient) -> Result<RunId, FlowError> {
    let bot = bot_of(flow, &run).await?;
    let scenario = scenario_with(flow, &bot, &run.node).await?;
    let contact = resolve(flow, &bot, &to).await?;
    let now = now_ms();
    run.created_at = now;
    let target = pending_target(&run.id, 1, &to, BTreeMap::new());
    let created = flow
        .flow
        .create_run(
            &NewRun {
                run: run.clone(),
                targets: vec![target],
            },
            now,
        )
        .await?;
    if let RunCreated::Repeated(id) = created {
        return Ok(id);
    }
    // Had this process died here, the target would still be pending, and the runs worker
    // would queue it.
    let commit = queue_for(&scenario, &run, 1, &contact, &BTreeMap::new())?;
    flow.flow.commit(&bot.id, commit, now).await?;
    flow.wake.outbox.notify_one();
    flow.wake.deliveries.notify_one();
    Ok(run.id)
}

/// Makes a run for many recipients, answered at once: the runs worker queues them (from
/// `run.send_at` on). The scenario must have the node now; each recipient is checked when it
/// is worked. With an idempotency key used before for the same request, that run.
pub async fn call_many(
    flow: &Flow,
    mut run: Run,
    recipients: Vec<(Recipient, BTreeMap<String, String>)>,
) -> Result<RunId, FlowError> {
    let bot = bot_of(flow, &run).await?;
    scenario_with(flow, &bot, &run.node).await?;
    let now = now_ms();
    run.created_at = now;
    let targets = recipients
        .into_iter()
        .zip(1..)
        .map(|((to, vars), seq)| pending_target(&run.id, seq, &to, vars))
        .collect();
    let created = flow
        .flow
        .create_run(
            &NewRun {
                run: run.clone(),
                targets,
            },
            now,
        )
        .await?;
    flow.wake.runs.notify_one();
    Ok(match created {
        RunCreated::New => run.id,
        RunCreated::Repeated(id) => id,
    })
}

async fn bot_of(flow: &Flow, run: &Run) -> Result<Bot, FlowError> {
    flow.bots
        .bot_by_id(&run.bot_id)
        .await?
        .ok_or(FlowError::Store(StoreError::NotFound))
}

/// Targets claimed at once.
const BATCH: u32 = 64;

/// Claims the recipients of runs that are due and queues them; returns how many it claimed.
pub async fn expand_due(flow: &Arc<Flow>) -> Result<usize, StoreError> {
    let targets = flow
        .flow
        .claim_targets(BATCH, flow.lease_ms, now_ms())
        .await?;
    let n = targets.len();
    if n == 0 {
        return Ok(0);
    }
    // Each run, its bot and scenario once.
    let mut runs: HashMap<RunId, Option<RunContext>> = HashMap::new();
    for t in &targets {
        if runs.contains_key(&t.run_id) {
            continue;
        }
        // A run deleted since (with its bot) took its targets with it.
        let Ok(run) = flow.flow.run_by_id(&t.run_id).await else {
            runs.insert(t.run_id.clone(), None);
            continue;
        };
        let ready = async {
            let bot = bot_of(flow, &run).await?;
            let scenario = scenario_with(flow, &bot, &run.node).await?;
            Ok::<_, FlowError>((bot, scenario))
        }
        .await
        .map_err(|e| reason_of(&e));
        runs.insert(t.run_id.clone(), Some(RunContext { run, ready }));
    }
    let mut commits = Vec::with_capacity(n);
    for t in targets {
        let Some(RunContext { run, ready }) = &runs[&t.run_id] else {
            continue;
        };
        let commit = match ready {
            // The bot has no scenario, or no longer the node: each recipient fails, saying so.
            Err(reason) => failed(&t, reason),
            Ok((bot, scenario)) => {
                let to = match (&t.external_id, t.channel, &t.chat_id) {
                    (Some(id), _, _) => Ok(Recipient::External(id.clone())),
                    (None, Some(channel), Some(chat_id)) => Ok(Recipient::Chat {
                        channel,
                        chat_id: chat_id.clone(),
                    }),
                    _ => Err("invalid_recipient"),
                };
                match to {
                    Err(reason) => failed(&t, reason),
                    Ok(to) => match resolve(flow, bot, &to).await {
                        Ok(contact) => queue_for(scenario, run, t.seq, &contact, &t.variables)
                            .unwrap_or_else(|e| failed(&t, e.code())),
                        Err(e) => failed(&t, &reason_of(&e)),
                    },
                }
            }
        };
        commits.push((run.bot_id.clone(), commit));
    }
    for (commit, outcome) in commits
        .iter()
        .zip(flow.flow.commit_all(&commits, now_ms()).await)
    {
        if let (Err(e), Some(t)) = (outcome, &commit.1.target) {
            // Left pending: claimed again when its lease ends.
            tracing::warn!(run = %t.run_id, recipient = t.seq, error = %e, "queueing a run's recipient failed");
        }
    }
    flow.wake.outbox.notify_one();
    flow.wake.deliveries.notify_one();
    Ok(n)
}

/// What queueing a run's recipients needs, read once a batch: the run, and its bot and
/// scenario (or why they cannot be had: each recipient fails with that reason).
struct RunContext {
    run: Run,
    ready: Result<(Bot, (i64, Scenario)), String>,
}

/// A target given up at once, with its reason.
fn failed(t: &RunTarget, reason: &str) -> FlowCommit {
    FlowCommit {
        target: Some(TargetOutcome {
            run_id: t.run_id.clone(),
            seq: t.seq,
            contact_id: None,
            status: TargetStatus::Failed,
            reason: Some(reason.to_owned()),
        }),
        ..FlowCommit::default()
    }
}

/// A recipient's failure as its stable reason code.
fn reason_of(e: &FlowError) -> String {
    match e {
        FlowError::Domain(d) => d.code().to_owned(),
        FlowError::Store(StoreError::NotFound) => "not_found".to_owned(),
        other => format!("error: {other}"),
    }
}
