//! A ConnectiveOne-compatible call_node, so that a CRM already integrated with that platform
//! switches to botlink by changing its base URL:
//!
//! - `GET` or `POST /kw/api/call_node/{bot_id}/{node}/{channel}/{chat_id}?name=value...`
//! - `GET` or `POST /kw/api/call_node/{bot_id}/{node}` with a JSON body
//!   `{"chat_id": "398866372", "channel": "telegram", "data": {"name": "value"}}`
//!
//! Variables come from the query string and from the body's `data` (the body's win). Chat ids
//! are URL-decoded (Viber's carry `=`, `+` and `/`: send `/` as `%2F`). The channel takes
//! botlink's names and ConnectiveOne's (`facebook` for Messenger, `custom_channel` for
//! custom). The answer is ConnectiveOne's, `{"status": "success" | "error", "message": ...}`,
//! with botlink's `run_id` on success and its error `code` on failure, and an HTTP status as
//! botlink's own API would answer (200 on success). It is authenticated like every other route
//! (`Authorization: Bearer blk_...`, a key with the `notify` or `admin` role), and does what
//! `POST /api/v1/bots/{bot_id}/call_node` does: it is not in the OpenAPI document, whose
//! error envelope it does not use.

use std::collections::{BTreeMap, HashMap};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use botlink_core::Channel;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::ApiError;
use crate::api::notify::flow_error;
use crate::app::AppState;
use crate::domain::links::parse_channel;
use crate::domain::validate;
use crate::flow::call::{Recipient, call_node, new_run};
use crate::store::Role;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/kw/api/call_node/{bot_id}/{node}", get(call).post(call))
        .route(
            "/kw/api/call_node/{bot_id}/{node}/{channel}/{chat_id}",
            get(call).post(call),
        )
}

/// The JSON body ConnectiveOne's clients send (other fields, such as `bot_id` or
/// `connector_alias`, are ignored: the path names the bot and the node).
#[derive(Debug, Default, Deserialize)]
struct CompatBody {
    chat_id: Option<Value>,
    channel: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, Value>,
}

async fn call(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    Path(path): Path<HashMap<String, String>>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    match run(state, auth, path, query, body).await {
        Ok((run_id, who)) => (
            StatusCode::OK,
            axum::Json(json!({
                "status": "success",
                "message": format!("the node is queued for {who}"),
                "run_id": run_id,
            })),
        )
            .into_response(),
        Err(e) => error(e),
    }
}

/// The call: its run's id and whom it is for.
async fn run(
    state: AppState,
    auth: Result<Auth, ApiError>,
    path: HashMap<String, String>,
    query: Option<String>,
    body: Bytes,
) -> Result<(String, String), ApiError> {
    let auth = auth?;
    auth.require(&[Role::Notify])?;
    let (bot_id, node) = (&path["bot_id"], &path["node"]);
    validate::NODE.check("node", node)?;
    let body: CompatBody = if body.iter().all(u8::is_ascii_whitespace) {
        CompatBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the body is not the JSON call_node takes ({{\"chat_id\", \"channel\", \"data\": {{...}}}}): {e}"
            ))
        })?
    };

    let mut variables = BTreeMap::new();
    let pairs = url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes());
    for (k, v) in pairs {
        variables.insert(k.into_owned(), v.into_owned());
    }
    for (k, v) in body.data {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null => String::new(),
            Value::Array(_) | Value::Object(_) => {
                return Err(ApiError::invalid(
                    "invalid_variable",
                    format!(
                        "data.{k} is a list or an object: variables are text, numbers or booleans"
                    ),
                ));
            }
        };
        variables.insert(k, v);
    }
    for (k, v) in &variables {
        validate::PAYLOAD.check("a variable's name", k)?;
        validate::PAYLOAD_TEXT.check(&format!("variables.{k}"), v)?;
    }

    let channel = path.get("channel").cloned().or(body.channel);
    let chat_id = match path.get("chat_id") {
        Some(id) => Some(id.clone()),
        None => match body.chat_id {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                return Err(ApiError::invalid(
                    "invalid_recipient",
                    "chat_id is text or a number",
                ));
            }
        },
    };
    let (Some(channel), Some(chat_id)) = (channel, chat_id) else {
        return Err(ApiError::invalid(
            "invalid_recipient",
            "whom to notify: put the channel and chat_id in the path (/kw/api/call_node/{bot_id}/{node}/{channel}/{chat_id}) or in the body ({\"channel\": ..., \"chat_id\": ...})",
        ));
    };
    validate::SETTING.check("chat_id", &chat_id)?;
    let channel = compat_channel(&channel)?;
    let who = format!("chat {chat_id:?} on {channel}");

    let bot = load_bot(&state, &auth, bot_id).await?;
    let _turn = state.write_turn();
    let run = new_run(&bot, node.clone(), variables);
    let id = call_node(
        state.flow_context(),
        run,
        Recipient::Chat { channel, chat_id },
    )
    .await
    .map_err(flow_error)?;
    Ok((id.to_string(), who))
}

/// A channel by botlink's name or ConnectiveOne's.
fn compat_channel(name: &str) -> Result<Channel, ApiError> {
    let name = match name {
        "facebook" => "messenger",
        "custom_channel" => "custom",
        other => other,
    };
    Ok(parse_channel(name)?)
}

/// An error in ConnectiveOne's form, with the status (and `Retry-After`) botlink's API gives it.
fn error(e: ApiError) -> Response {
    let (status, code) = e.status_and_code();
    let message = match &e {
        ApiError::Internal(_) => "internal error".to_owned(),
        other => other.to_string(),
    };
    // The standard answer logs what must be logged and carries the headers (`Retry-After`).
    let standard = e.into_response();
    let mut resp = (
        status,
        axum::Json(json!({"status": "error", "message": message, "code": code})),
    )
        .into_response();
    if let Some(retry) = standard.headers().get(axum::http::header::RETRY_AFTER) {
        resp.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, retry.clone());
    }
    resp
}
