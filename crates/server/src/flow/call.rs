//! call_node: a CRM runs a node of the bot's scenario for a contact that has started the bot
//! (a bot cannot write first), e.g. "your order has shipped". The run's messages and requests
//! go through the outbox like a Start's; the run's recipient learns its outcome when they are
//! sent.

use std::collections::BTreeMap;

use botlink_core::Channel;
use botlink_scenario::{Runner, Vars};

use super::run::drive;
use super::start::current_scenario;
use super::{Flow, FlowError, now_ms};
use crate::domain::DomainError;
use crate::store::{Bot, Contact, FlowCommit, RecipientOutcome, Run, RunId, WorkStatus};

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

/// Starts `node` for the recipient: answers the run at once; its messages are queued.
pub async fn call_node(
    flow: &Flow,
    bot: &Bot,
    node: &str,
    variables: BTreeMap<String, String>,
    to: Recipient,
) -> Result<Run, FlowError> {
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
    let contact = match &to {
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
    let who = match &to {
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
    let now = now_ms();
    let run_id = RunId::new();
    let run = Run {
        id: run_id.clone(),
        workspace_id: bot.workspace_id.clone(),
        bot_id: bot.id.clone(),
        node: node.to_owned(),
        variables: variables.clone(),
        created_at: now,
        recipients: vec![RecipientOutcome {
            run_id,
            contact_id: contact.id.clone(),
            status: WorkStatus::Pending,
            reason: None,
        }],
    };
    flow.flow.create_run(&bot.workspace_id, &run, now).await?;
    let mut vars = stored_vars(&contact);
    vars.extend(variables);
    // Set last: the call's variables cannot redirect the run to another chat.
    vars.insert("chat_id".to_owned(), contact.chat_id.clone());
    vars.insert("channel".to_owned(), contact.channel.as_str().to_owned());
    let runner = Runner::start(&scenario, Some(node), vars)
        .map_err(|e| DomainError::invalid("unknown_node", e.to_string()))?;
    let d = drive(&scenario, runner);
    let halted = d.halted.clone();
    let (messages, deliveries) = d.into_rows(version, Some(&run.id));
    let nothing_to_send = messages.is_empty() && deliveries.is_empty();
    let commit = FlowCommit {
        contact_id: Some(contact.id.clone()),
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
    };
    flow.flow.commit(&bot.id, commit, now).await?;
    flow.wake.outbox.notify_one();
    flow.wake.deliveries.notify_one();
    Ok(run)
}
