//! `/api/v1/api_keys`: an admin makes and revokes its workspace's keys. A key is shown once.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::error::{ApiError, ErrorBody, Json};
use crate::app::AppState;
use crate::crypto::{api_key_hash, new_api_key};
use crate::store::{ApiKey, ApiKeyId, NewApiKey, Role, WorkspaceId, WorkspaceStore};
use crate::util::{format_rfc3339, now_ms};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIn {
    /// `admin` (everything in the workspace), `links` (create links, read links and stats;
    /// not change or delete them) or `notify` (call_node only).
    #[schema(value_type = Role)]
    pub role: String,
    /// 1-100 characters of plain text.
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*[^\s\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069][^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyOut {
    pub id: String,
    #[schema(value_type = Role)]
    pub role: String,
    pub name: Option<String>,
    /// The first characters, to recognise the key.
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// Whether the key was revoked: it no longer authenticates anything.
    pub revoked: bool,
    /// When the key was revoked; `null` while it works.
    pub revoked_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NewApiKeyOut {
    #[serde(flatten)]
    pub info: ApiKeyOut,
    /// The key itself. Shown this once; only its hash is stored.
    pub key: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyOut>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

fn out(k: &ApiKey) -> ApiKeyOut {
    ApiKeyOut {
        id: k.id.to_string(),
        role: k.role.as_str().to_string(),
        name: k.name.clone(),
        prefix: k.key_prefix.clone(),
        created_at: format_rfc3339(k.created_at),
        last_used_at: k.last_used_at.map(format_rfc3339),
        revoked: k.revoked_at.is_some(),
        revoked_at: k.revoked_at.map(format_rfc3339),
    }
}

pub fn parse_role(s: &str) -> Result<Role, ApiError> {
    s.parse::<Role>().map_err(|_| {
        ApiError::invalid(
            "invalid_role",
            format!("unknown role {s:?}: use admin, links or notify"),
        )
    })
}

/// Makes a key in a workspace and returns it with its stored row.
pub async fn issue_key(
    store: &dyn WorkspaceStore,
    workspace: &WorkspaceId,
    role: Role,
    name: Option<String>,
) -> Result<(String, ApiKey), crate::store::StoreError> {
    let key = new_api_key();
    let row = store
        .create_api_key(
            NewApiKey {
                workspace_id: workspace.clone(),
                name,
                role,
                key_hash: api_key_hash(&key),
                key_prefix: key[..12].to_string(),
            },
            now_ms(),
        )
        .await?;
    Ok((key, row))
}

/// Create an API key (admin only). The answer is the only time the key is shown.
#[utoipa::path(post, path = "/api/v1/api_keys", tag = "api keys", request_body = ApiKeyIn,
    security(("api_key" = [])),
    responses((status = 201, body = NewApiKeyOut), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_key(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<ApiKeyIn>,
) -> Result<(StatusCode, axum::Json<NewApiKeyOut>), ApiError> {
    auth.admin()?;
    let role = parse_role(&input.role)?;
    let name = input
        .name
        .as_deref()
        .map(|n| crate::domain::validate::name("name", n))
        .transpose()?;
    let (key, row) = issue_key(state.workspaces(), &auth.workspace_id, role, name).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(NewApiKeyOut {
            info: out(&row),
            key,
        }),
    ))
}

/// List the workspace's keys (never the keys themselves), revoked ones marked.
#[utoipa::path(get, path = "/api/v1/api_keys", tag = "api keys", security(("api_key" = [])),
    responses((status = 200, body = ApiKeyList)))]
pub async fn list_keys(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<ApiKeyList>, ApiError> {
    auth.admin()?;
    let keys = state.workspaces().list_api_keys(&auth.workspace_id).await?;
    Ok(axum::Json(ApiKeyList {
        api_keys: keys.iter().map(out).collect(),
    }))
}

/// Revoke a key; it stops working at once.
#[utoipa::path(delete, path = "/api/v1/api_keys/{key_id}", tag = "api keys", security(("api_key" = [])),
    params(("key_id" = String, Path)), responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke_key(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.admin()?;
    state
        .workspaces()
        .revoke_api_key(&auth.workspace_id, &ApiKeyId::from(id.clone()), now_ms())
        .await
        .map_err(|e| crate::api::bots::not_found(e, "API key", &id))?;
    Ok(StatusCode::NO_CONTENT)
}
