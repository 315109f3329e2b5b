//! call_node: a CRM notifies a person who has started the bot, by running a node of the
//! bot's scenario for them (`POST /api/v1/bots/{bot_id}/call_node`), and follows the run
//! (`GET /api/v1/runs/{run_id}`).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::{ApiError, ErrorBody, Json};
use crate::app::AppState;
use crate::domain::links::parse_channel;
use crate::domain::validate;
use crate::flow::FlowError;
use crate::flow::call::{Recipient, call_node as run_node};
use crate::store::{Role, Run, RunId, StoreError, WorkStatus};
use crate::util::format_rfc3339;

/// Whom to notify: a chat (`channel` and `chat_id`), or the contact with the CRM's id.
#[derive(Debug, Deserialize, ToSchema)]
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

/// A node to run for one person.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CallNodeIn {
    /// The scenario node to run.
    #[schema(min_length = 1, max_length = 64)]
    pub node: String,
    /// Variables the node's templates see, over the contact's own.
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    pub to: ToIn,
}

/// A run, as call_node answers it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallNodeOut {
    pub run_id: String,
    /// `queued`: the messages are in the outbox.
    pub status: String,
}

/// One recipient's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecipientOut {
    pub contact_id: String,
    /// `queued`, `sent` or `failed`.
    pub status: String,
    /// Why it failed: `blocked`, `outside_window`, `cannot_send`, ...
    pub reason: Option<String>,
}

/// A run and its recipients.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunOut {
    pub id: String,
    pub bot_id: String,
    pub node: String,
    /// `running` while a recipient is queued, then `done`.
    pub status: String,
    pub recipients: Vec<RecipientOut>,
    pub created_at: String,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(call_node))
        .routes(routes!(get_run))
}

pub(crate) fn flow_error(e: FlowError) -> ApiError {
    match e {
        FlowError::Store(e) => e.into(),
        FlowError::Domain(e) => e.into(),
        FlowError::Other(detail) => ApiError::Internal(detail),
    }
}

fn recipient_status(s: WorkStatus) -> &'static str {
    match s {
        WorkStatus::Pending => "queued",
        WorkStatus::Done => "sent",
        WorkStatus::Failed => "failed",
    }
}

fn run_out(run: &Run) -> RunOut {
    let done = run
        .recipients
        .iter()
        .all(|r| r.status != WorkStatus::Pending);
    RunOut {
        id: run.id.to_string(),
        bot_id: run.bot_id.to_string(),
        node: run.node.clone(),
        status: if done { "done" } else { "running" }.to_owned(),
        recipients: run
            .recipients
            .iter()
            .map(|r| RecipientOut {
                contact_id: r.contact_id.to_string(),
                status: recipient_status(r.status).to_owned(),
                reason: r.reason.clone(),
            })
            .collect(),
        created_at: format_rfc3339(run.created_at),
    }
}

/// Run a node of the bot's scenario for a person who has started the bot.
///
/// The bot cannot write first: a person who never started it is refused with 422
/// `not_subscribed`, one who blocked it with 422 `unsubscribed`.
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/call_node", tag = "notify",
    request_body = CallNodeIn, security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 202, body = CallNodeOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn call_node(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Json(input): Json<CallNodeIn>,
) -> Result<(StatusCode, axum::Json<CallNodeOut>), ApiError> {
    auth.require(&[Role::Notify])?;
    validate::NODE.check("node", &input.node)?;
    for (k, v) in &input.variables {
        validate::PAYLOAD.check("a variable's name", k)?;
        validate::PAYLOAD_TEXT.check(&format!("variables.{k}"), v)?;
    }
    let to = match (input.to.channel, input.to.chat_id, input.to.external_id) {
        (Some(channel), Some(chat_id), None) => {
            validate::SETTING.check("to.chat_id", &chat_id)?;
            Recipient::Chat {
                channel: parse_channel(&channel)?,
                chat_id,
            }
        }
        (None, None, Some(id)) => {
            validate::PAYLOAD.check("to.external_id", &id)?;
            Recipient::External(id)
        }
        _ => {
            return Err(ApiError::invalid(
                "invalid_recipient",
                "to takes either channel and chat_id, or external_id",
            ));
        }
    };
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let _turn = state.write_turn();
    let run = run_node(state.flow_context(), &bot, &input.node, input.variables, to)
        .await
        .map_err(flow_error)?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(CallNodeOut {
            run_id: run.id.to_string(),
            status: "queued".to_owned(),
        }),
    ))
}

/// A call_node run, with each recipient's outcome.
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
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(format!("run {run_id:?}")),
            e => e.into(),
        })?;
    Ok(axum::Json(run_out(&run)))
}
