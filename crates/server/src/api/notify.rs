//! call_node: a CRM notifies people who have started the bot, by running a node of the bot's
//! scenario for one of them or many (`POST /api/v1/bots/{bot_id}/call_node`), and follows the
//! run (`GET /api/v1/runs/{run_id}`, its recipients, cancel, the bot's runs).

use std::collections::BTreeMap;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::{ApiError, ErrorBody, Json, Query};
use crate::app::AppState;
use crate::domain::links::parse_channel;
use crate::domain::validate;
use crate::flow::FlowError;
use crate::flow::call::{Recipient, call_many, call_node as call_one, new_run};
use crate::store::{Role, Run, RunId, RunTarget, StoreError, TargetStatus};
use crate::util::{format_rfc3339, now_ms, parse_rfc3339};

/// Whom to notify: a chat (`channel` and `chat_id`), or the contact with the CRM's id.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToIn {
    #[schema(value_type = Option<crate::api::bots::ChannelName>)]
    pub channel: Option<String>,
    #[schema(max_length = 256)]
    pub chat_id: Option<String>,
    /// The CRM's id, as the link's payload carried it (`clientExternalId`).
    #[schema(max_length = 1024)]
    pub external_id: Option<String>,
}

/// One recipient of a run for many: as `to`, with its own variables over the call's.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipientIn {
    #[schema(value_type = Option<crate::api::bots::ChannelName>)]
    pub channel: Option<String>,
    #[schema(max_length = 256)]
    pub chat_id: Option<String>,
    #[schema(max_length = 1024)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// A node to run for one person (`to`) or for many (`recipients`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallNodeIn {
    /// The scenario node to run.
    #[schema(min_length = 1, max_length = 64)]
    pub node: String,
    /// Variables the node's templates see, over the contact's own.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// One person, checked at once: a person who never started the bot, or blocked it, is a
    /// 422.
    pub to: Option<ToIn>,
    /// Many people (up to 100,000), each checked when it is worked: its outcome is in the run.
    #[schema(max_items = 100000)]
    pub recipients: Option<Vec<RecipientIn>>,
    /// When to send (RFC 3339); at once when absent or past.
    #[schema(format = DateTime)]
    pub send_at: Option<String>,
}

/// A run, as call_node answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallNodeOut {
    pub run_id: String,
    /// `queued` (one person: the messages are in the outbox), `scheduled` (many, for
    /// `send_at`), `running` (many, being sent), or the run's status when an
    /// `Idempotency-Key` repeated the request.
    pub status: String,
}

/// A run's recipients by outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct CountsOut {
    /// Not sent yet (waiting for their turn, or in the outbox).
    pub queued: i64,
    pub sent: i64,
    pub failed: i64,
    pub skipped: i64,
    pub cancelled: i64,
    pub total: i64,
}

/// A run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    pub id: String,
    pub bot_id: String,
    pub node: String,
    /// `scheduled` (waiting for `send_at`), `running`, `done` or `cancelled`.
    pub status: String,
    pub counts: CountsOut,
    pub send_at: Option<String>,
    pub cancelled_at: Option<String>,
    pub created_at: String,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    pub runs: Vec<RunOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One recipient of a run and its outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientOut {
    /// Its place in the request, from 1.
    pub seq: i64,
    pub external_id: Option<String>,
    pub channel: Option<String>,
    pub chat_id: Option<String>,
    /// The contact it was sent to, once known.
    pub contact_id: Option<String>,
    /// `queued`, `sent`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    /// Why it failed or was skipped: `not_subscribed`, `unsubscribed`, `blocked`,
    /// `outside_window`, `duplicate`, ...
    pub reason: Option<String>,
    pub updated_at: String,
}

/// A page of a run's recipients.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientPage {
    pub recipients: Vec<RecipientOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecipientQuery {
    /// Only the recipients with this outcome.
    #[param(value_type = Option<String>, pattern = "^(queued|sent|failed|skipped|cancelled)$")]
    pub status: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The most recipients one call takes.
const MAX_RECIPIENTS: usize = 100_000;

/// The largest call_node body: 100,000 recipients with a few variables each (the other
/// routes take 1 MiB).
const MAX_CALL_BODY: usize = 32 * 1024 * 1024;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(
            OpenApiRouter::new()
                .routes(routes!(call_node))
                .layer(DefaultBodyLimit::max(MAX_CALL_BODY)),
        )
        .routes(routes!(get_run))
        .routes(routes!(list_recipients))
        .routes(routes!(export_recipients))
        .routes(routes!(cancel_run))
        .routes(routes!(list_runs))
}

pub(crate) fn flow_error(e: FlowError) -> ApiError {
    match e {
        FlowError::Store(e) => e.into(),
        FlowError::Domain(e) => e.into(),
        FlowError::Other(detail) => ApiError::Internal(detail),
    }
}

/// What the API calls a recipient's status (`pending`, not worked yet, is `queued` too).
fn status_name(s: TargetStatus) -> &'static str {
    match s {
        TargetStatus::Pending | TargetStatus::Queued => "queued",
        other => other.as_str(),
    }
}

/// A run's status, from its counts.
fn run_status(run: &Run, now: i64) -> &'static str {
    let c = &run.counts;
    if run.cancelled_at.is_some() {
        "cancelled"
    } else if c.pending + c.queued == 0 {
        "done"
    } else if run.send_at.is_some_and(|at| at > now) && c.pending == c.total() {
        "scheduled"
    } else {
        "running"
    }
}

fn run_out(run: &Run) -> RunOut {
    let c = &run.counts;
    RunOut {
        id: run.id.to_string(),
        bot_id: run.bot_id.to_string(),
        node: run.node.clone(),
        status: run_status(run, now_ms()).to_owned(),
        counts: CountsOut {
            queued: c.pending + c.queued,
            sent: c.sent,
            failed: c.failed,
            skipped: c.skipped,
            cancelled: c.cancelled,
            total: c.total(),
        },
        send_at: run.send_at.map(format_rfc3339),
        cancelled_at: run.cancelled_at.map(format_rfc3339),
        created_at: format_rfc3339(run.created_at),
    }
}

fn recipient_out(t: &RunTarget) -> RecipientOut {
    RecipientOut {
        seq: t.seq,
        external_id: t.external_id.clone(),
        channel: t.channel.map(|c| c.as_str().to_owned()),
        chat_id: t.chat_id.clone(),
        contact_id: t.contact_id.as_ref().map(ToString::to_string),
        status: status_name(t.status).to_owned(),
        reason: t.reason.clone(),
        updated_at: format_rfc3339(t.updated_at),
    }
}

/// Whom a recipient names: a chat, or an external id; `at` names it in errors.
fn recipient(
    at: &str,
    channel: Option<String>,
    chat_id: Option<String>,
    external_id: Option<String>,
) -> Result<Recipient, ApiError> {
    match (channel, chat_id, external_id) {
        (Some(channel), Some(chat_id), None) => {
            validate::SETTING.check(&format!("{at}.chat_id"), &chat_id)?;
            Ok(Recipient::Chat {
                channel: parse_channel(&channel)?,
                chat_id,
            })
        }
        (None, None, Some(id)) => {
            validate::PAYLOAD.check(&format!("{at}.external_id"), &id)?;
            Ok(Recipient::External(id))
        }
        _ => Err(ApiError::invalid(
            "invalid_recipient",
            format!("{at} takes either channel and chat_id, or external_id"),
        )),
    }
}

fn check_variables(at: &str, vars: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (k, v) in vars {
        validate::PAYLOAD.check("a variable's name", k)?;
        validate::PAYLOAD_TEXT.check(&format!("{at}.{k}"), v)?;
    }
    Ok(())
}

/// The `Idempotency-Key` header, if sent.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

/// Run a node of the bot's scenario for one person who has started the bot (`to`), or for
/// many (`recipients`).
///
/// One person is checked at once: one who never started the bot is refused with 422
/// `not_subscribed`, one who blocked it with 422 `unsubscribed`. Many are answered at once
/// whatever their number, and each is checked when its turn comes: its outcome is in the run
/// (`GET /api/v1/runs/{run_id}/recipients`). With `send_at` the run waits until then. With an
/// `Idempotency-Key` header, the same key with the same body answers the same run and sends
/// nothing again; with another body, 422 `idempotency_key_reused`.
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/call_node", tag = "notify",
    request_body = CallNodeIn, security(("api_key" = [])),
    params(("bot_id" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the call safe to repeat: kept with the run")),
    responses((status = 202, body = CallNodeOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn call_node(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
    Json(input): Json<CallNodeIn>,
) -> Result<(StatusCode, axum::Json<CallNodeOut>), ApiError> {
    auth.require(&[Role::Notify])?;
    validate::NODE.check("node", &input.node)?;
    check_variables("variables", &input.variables)?;
    let key = idempotency_key(&headers)?;
    let request_hash = key.as_ref().map(|_| {
        let canonical = serde_json::to_vec(&input).expect("the request serializes");
        hex::encode(Sha256::digest(canonical))
    });
    let send_at = match &input.send_at {
        None => None,
        Some(t) => Some(parse_rfc3339(t).ok_or_else(|| {
            ApiError::invalid(
                "invalid_send_at",
                format!("send_at {t:?} is not an RFC 3339 time, such as 2026-12-24T09:00:00Z"),
            )
        })?),
    };
    let CallNodeIn {
        node,
        variables,
        to,
        recipients,
        ..
    } = input;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let run = Run {
        send_at,
        idempotency_key: key,
        request_hash,
        ..new_run(&bot, node, variables)
    };
    let _turn = state.write_turn();
    let id = match (to, recipients) {
        (Some(to), None) => {
            if send_at.is_some() {
                return Err(ApiError::invalid(
                    "invalid_send_at",
                    "send_at schedules a run for recipients: send the person as recipients: [...]",
                ));
            }
            let to = recipient("to", to.channel, to.chat_id, to.external_id)?;
            call_one(state.flow_context(), run, to)
                .await
                .map_err(idempotency_error)?
        }
        (None, Some(list)) => {
            if list.is_empty() || list.len() > MAX_RECIPIENTS {
                return Err(ApiError::invalid(
                    "invalid_recipients",
                    format!(
                        "recipients takes 1 to {MAX_RECIPIENTS} people; split larger sends into several calls"
                    ),
                ));
            }
            let mut many = Vec::with_capacity(list.len());
            for (i, r) in list.into_iter().enumerate() {
                let at = format!("recipients[{i}]");
                check_variables(&format!("{at}.variables"), &r.variables)?;
                many.push((
                    recipient(&at, r.channel, r.chat_id, r.external_id)?,
                    r.variables,
                ));
            }
            call_many(state.flow_context(), run, many)
                .await
                .map_err(idempotency_error)?
        }
        _ => {
            return Err(ApiError::invalid(
                "invalid_recipient",
                "call_node takes either to (one person) or recipients (many)",
            ));
        }
    };
    let stored = state.flow().run(&auth.workspace_id, &id).await?;
    let status = match run_status(&stored, now_ms()) {
        "running" if stored.counts.total() == 1 => "queued",
        other => other,
    };
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(CallNodeOut {
            run_id: id.to_string(),
            status: status.to_owned(),
        }),
    ))
}

/// A reused idempotency key is the caller's mistake (422), not a conflict of state.
fn idempotency_error(e: FlowError) -> ApiError {
    match e {
        FlowError::Store(StoreError::Conflict { what }) if what.contains("Idempotency-Key") => {
            ApiError::invalid("idempotency_key_reused", what)
        }
        e => flow_error(e),
    }
}

fn run_not_found(e: StoreError, id: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound(format!("run {id:?}")),
        e => e.into(),
    }
}

/// A call_node run, with its recipients counted by outcome.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}", tag = "notify", security(("api_key" = [])),
    params(("run_id" = String, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = ErrorBody)))]
pub async fn get_run(
    State(state): State<AppState>,
    auth: Auth,
    Path(run_id): Path<String>,
) -> Result<axum::Json<RunOut>, ApiError> {
    auth.require(&[Role::Notify])?;
    let run = state
        .flow()
        .run(&auth.workspace_id, &RunId::from(run_id.as_str()))
        .await
        .map_err(|e| run_not_found(e, &run_id))?;
    Ok(axum::Json(run_out(&run)))
}

fn statuses(q: &RecipientQuery) -> Result<Vec<TargetStatus>, ApiError> {
    Ok(match q.status.as_deref() {
        None => Vec::new(),
        Some("queued") => vec![TargetStatus::Pending, TargetStatus::Queued],
        Some(s @ ("sent" | "failed" | "skipped" | "cancelled")) => {
            vec![s.parse().expect("a recipient status")]
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_status",
                format!("status {other:?} is not one of queued, sent, failed, skipped, cancelled"),
            ));
        }
    })
}

fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be 1-500"));
    }
    Ok(limit)
}

/// A run's recipients in the order they were asked for, with their outcomes, paginated.
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/recipients", tag = "notify",
    security(("api_key" = [])), params(("run_id" = String, Path), RecipientQuery),
    responses((status = 200, body = RecipientPage), (status = 404, body = ErrorBody)))]
pub async fn list_recipients(
    State(state): State<AppState>,
    auth: Auth,
    Path(run_id): Path<String>,
    Query(q): Query<RecipientQuery>,
) -> Result<axum::Json<RecipientPage>, ApiError> {
    auth.require(&[Role::Notify])?;
    let statuses = statuses(&q)?;
    let limit = page_limit(q.limit)?;
    let (targets, next_cursor) = state
        .flow()
        .run_targets(
            &auth.workspace_id,
            &RunId::from(run_id.as_str()),
            &statuses,
            Some(limit),
            q.cursor.as_deref(),
        )
        .await
        .map_err(|e| run_not_found(e, &run_id))?;
    Ok(axum::Json(RecipientPage {
        recipients: targets.iter().map(recipient_out).collect(),
        next_cursor,
    }))
}

/// Every recipient of a run as CSV (`status` filters as in the list).
#[utoipa::path(get, path = "/api/v1/runs/{run_id}/recipients.csv", tag = "notify",
    security(("api_key" = [])), params(("run_id" = String, Path), RecipientQuery),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)))]
pub async fn export_recipients(
    State(state): State<AppState>,
    auth: Auth,
    Path(run_id): Path<String>,
    Query(q): Query<RecipientQuery>,
) -> Result<axum::response::Response, ApiError> {
    auth.require(&[Role::Notify])?;
    let statuses = statuses(&q)?;
    let run = RunId::from(run_id.as_str());
    let mut out = csv::Writer::from_writer(Vec::new());
    let row_error = |e: csv::Error| ApiError::internal(format!("writing CSV: {e}"));
    out.write_record([
        "seq",
        "external_id",
        "channel",
        "chat_id",
        "contact_id",
        "status",
        "reason",
        "updated_at",
    ])
    .map_err(row_error)?;
    let mut cursor = None;
    loop {
        let (targets, next) = state
            .flow()
            .run_targets(
                &auth.workspace_id,
                &run,
                &statuses,
                Some(500),
                cursor.as_deref(),
            )
            .await
            .map_err(|e| run_not_found(e, &run_id))?;
        for t in targets.iter().map(recipient_out) {
            let opt = |v: Option<String>| v.unwrap_or_default();
            out.write_record([
                t.seq.to_string(),
                opt(t.external_id),
                opt(t.channel),
                opt(t.chat_id),
                opt(t.contact_id),
                t.status,
                opt(t.reason),
                t.updated_at,
            ])
            .map_err(row_error)?;
        }
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::internal(format!("writing CSV: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{run_id}-recipients.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// Cancel a run: the recipients not sent yet are not sent (`cancelled`); those already in the
/// middle of a node's messages get the rest of them. Cancelling again changes nothing.
#[utoipa::path(post, path = "/api/v1/runs/{run_id}/cancel", tag = "notify",
    security(("api_key" = [])), params(("run_id" = String, Path)),
    responses((status = 200, body = RunOut), (status = 404, body = ErrorBody)))]
pub async fn cancel_run(
    State(state): State<AppState>,
    auth: Auth,
    Path(run_id): Path<String>,
) -> Result<axum::Json<RunOut>, ApiError> {
    auth.require(&[Role::Notify])?;
    let _turn = state.write_turn();
    let run = state
        .flow()
        .cancel_run(&auth.workspace_id, &RunId::from(run_id.as_str()), now_ms())
        .await
        .map_err(|e| run_not_found(e, &run_id))?;
    Ok(axum::Json(run_out(&run)))
}

/// The bot's runs, newest first, paginated.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/runs", tag = "notify",
    security(("api_key" = [])), params(("bot_id" = String, Path), RunQuery),
    responses((status = 200, body = RunPage), (status = 404, body = ErrorBody)))]
pub async fn list_runs(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<axum::Json<RunPage>, ApiError> {
    auth.require(&[Role::Notify])?;
    let limit = page_limit(q.limit)?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let (runs, next_cursor) = state
        .flow()
        .runs_of_bot(
            &auth.workspace_id,
            &bot.id,
            Some(limit),
            q.cursor.as_deref(),
        )
        .await?;
    Ok(axum::Json(RunPage {
        runs: runs.iter().map(run_out).collect(),
        next_cursor,
    }))
}
