//! `/api/v1/bots/{bot_id}/entry_points`: where a link starts a bot's scenario.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::{load_bot, not_found};
use crate::api::error::{ApiError, ErrorBody, Json};
use crate::app::AppState;
use crate::domain::validate;
use crate::store::{EntryPoint, EntryPointPatch, NewEntryPoint, Role, Utm};
use crate::util::format_rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPointIn {
    /// The key links and the entry/fields schemes use, e.g. `giveaway` or `3`:
    /// 1-64 characters of `[A-Za-z0-9_-]`, no `--`.
    #[schema(max_length = 64, pattern = r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")]
    pub key: String,
    /// The scenario node a Start through this entry point runs.
    #[schema(
        max_length = 64,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub node: Option<String>,
    /// The field that a single-value payload fills; the same rule as `key`.
    #[schema(max_length = 64, pattern = r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")]
    pub default_field: Option<String>,
    /// Default UTM tags for links made for this entry point.
    #[serde(default)]
    pub utm: Utm,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPointPatchIn {
    /// A new node; `null` clears it.
    #[serde(default, deserialize_with = "crate::api::double_option")]
    #[schema(value_type = Option<String>, max_length = 64, pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$")]
    pub node: Option<Option<String>>,
    /// A new default field; `null` clears it.
    #[serde(default, deserialize_with = "crate::api::double_option")]
    #[schema(value_type = Option<String>, max_length = 64, pattern = r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")]
    pub default_field: Option<Option<String>>,
    pub utm: Option<Utm>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryPointOut {
    pub id: String,
    pub bot_id: String,
    pub key: String,
    pub node: Option<String>,
    pub default_field: Option<String>,
    pub utm: Utm,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryPointList {
    pub entry_points: Vec<EntryPointOut>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_entry_point, list_entry_points))
        .routes(routes!(
            get_entry_point,
            update_entry_point,
            delete_entry_point
        ))
}

pub fn entry_out(e: &EntryPoint) -> EntryPointOut {
    EntryPointOut {
        id: e.id.to_string(),
        bot_id: e.bot_id.to_string(),
        key: e.key.clone(),
        node: e.node.clone(),
        default_field: e.default_field.clone(),
        utm: e.utm.clone(),
        created_at: format_rfc3339(e.created_at),
        updated_at: format_rfc3339(e.updated_at),
    }
}

/// The key: it goes into deep links (`n__<key>`, the fields scheme's first part).
fn check_key(key: &str) -> Result<(), ApiError> {
    Ok(validate::deep_link_key("invalid_entry_point", "key", key)?)
}

/// The node and the default field, as creating and changing an entry point both check them.
/// The default field names a field in the fields scheme's parameter, so it follows the key's
/// rule.
fn check_target(node: Option<&str>, default_field: Option<&str>) -> Result<(), ApiError> {
    validate::NODE.check_opt("node", node)?;
    if let Some(f) = default_field {
        validate::deep_link_key("invalid_entry_point", "default_field", f)?;
    }
    Ok(())
}

/// Create an entry point.
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/entry_points", tag = "entry points",
    request_body = EntryPointIn, security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 201, body = EntryPointOut), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_entry_point(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Json(input): Json<EntryPointIn>,
) -> Result<(StatusCode, axum::Json<EntryPointOut>), ApiError> {
    auth.admin()?;
    check_key(&input.key)?;
    check_target(input.node.as_deref(), input.default_field.as_deref())?;
    input.utm.check()?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let e = state
        .bots()
        .create_entry_point(
            &auth.workspace_id,
            &bot.id,
            NewEntryPoint {
                key: input.key.clone(),
                node: input.node,
                default_field: input.default_field,
                utm: input.utm,
            },
            crate::util::now_ms(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { .. } => ApiError::Conflict(format!(
                "the bot already has an entry point {:?}; pick another key or update that one",
                input.key
            )),
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, axum::Json(entry_out(&e))))
}

/// List a bot's entry points.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/entry_points", tag = "entry points",
    security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 200, body = EntryPointList), (status = 404, body = ErrorBody)))]
pub async fn list_entry_points(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
) -> Result<axum::Json<EntryPointList>, ApiError> {
    auth.require(&[Role::Links])?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let list = state
        .bots()
        .list_entry_points(&auth.workspace_id, &bot.id)
        .await?;
    Ok(axum::Json(EntryPointList {
        entry_points: list.iter().map(entry_out).collect(),
    }))
}

/// Loads an entry point by bot and key, 404 otherwise.
pub async fn load_entry(
    state: &AppState,
    auth: &Auth,
    bot_id: &str,
    key: &str,
) -> Result<EntryPoint, ApiError> {
    let bot = load_bot(state, auth, bot_id).await?;
    state
        .bots()
        .entry_point(&auth.workspace_id, &bot.id, key)
        .await
        .map_err(|e| not_found(e, "entry point", key))
}

/// Get an entry point.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/entry_points/{key}", tag = "entry points",
    security(("api_key" = [])), params(("bot_id" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = EntryPointOut), (status = 404, body = ErrorBody)))]
pub async fn get_entry_point(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, key)): Path<(String, String)>,
) -> Result<axum::Json<EntryPointOut>, ApiError> {
    auth.require(&[Role::Links])?;
    Ok(axum::Json(entry_out(
        &load_entry(&state, &auth, &bot_id, &key).await?,
    )))
}

/// Change an entry point's node, default field or UTM defaults.
#[utoipa::path(patch, path = "/api/v1/bots/{bot_id}/entry_points/{key}", tag = "entry points",
    request_body = EntryPointPatchIn, security(("api_key" = [])),
    params(("bot_id" = String, Path), ("key" = String, Path)),
    responses((status = 200, body = EntryPointOut), (status = 404, body = ErrorBody)))]
pub async fn update_entry_point(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, key)): Path<(String, String)>,
    Json(input): Json<EntryPointPatchIn>,
) -> Result<axum::Json<EntryPointOut>, ApiError> {
    auth.admin()?;
    check_target(
        input.node.as_ref().and_then(|n| n.as_deref()),
        input.default_field.as_ref().and_then(|f| f.as_deref()),
    )?;
    if let Some(u) = &input.utm {
        u.check()?;
    }
    let e = load_entry(&state, &auth, &bot_id, &key).await?;
    let e = state
        .bots()
        .update_entry_point(
            &auth.workspace_id,
            &e.id,
            EntryPointPatch {
                key: None,
                node: input.node,
                default_field: input.default_field,
                utm: input.utm,
            },
            crate::util::now_ms(),
        )
        .await?;
    Ok(axum::Json(entry_out(&e)))
}

/// Delete an entry point; its links stay and start at the bot's default.
#[utoipa::path(delete, path = "/api/v1/bots/{bot_id}/entry_points/{key}", tag = "entry points",
    security(("api_key" = [])), params(("bot_id" = String, Path), ("key" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_entry_point(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, key)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    auth.admin()?;
    let e = load_entry(&state, &auth, &bot_id, &key).await?;
    state
        .bots()
        .delete_entry_point(&auth.workspace_id, &e.id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
