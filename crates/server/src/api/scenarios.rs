//! `/api/v1/bots/{bot_id}/scenario`: the bot's scenario (`docs/scenarios.md`), versioned:
//! each save is a new version, and an old one can be restored (as a new version).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::IntoResponse;
use botlink_scenario::Scenario;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::{ApiError, ErrorBody, RawBody};
use crate::app::AppState;
use crate::store::{Role, ScenarioVersion, StoreError};
use crate::util::format_rfc3339;

/// A saved version.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScenarioSaved {
    pub version: i64,
    pub nodes: usize,
    pub created_at: String,
    /// For a restore: the version it copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<i64>,
}

/// A version in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionOut {
    pub version: i64,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// Newest first.
    pub versions: Vec<VersionOut>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_scenario, get_scenario))
        .routes(routes!(list_versions))
        .routes(routes!(restore_version))
}

/// Reads a scenario sent as JSON or YAML; one that does not validate is 422
/// `invalid_scenario`, naming the node, the step and the field of each error.
fn read(headers: &HeaderMap, body: &[u8]) -> Result<Scenario, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let parsed = match ctype.as_str() {
        "application/json" => Scenario::from_json(body),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Scenario::from_yaml(body)
        }
        _ => {
            return Err(ApiError::BadRequest(
                "send the scenario as JSON (Content-Type: application/json) or YAML (application/yaml)"
                    .into(),
            ));
        }
    };
    parsed.map_err(|e| ApiError::invalid("invalid_scenario", e.to_string()))
}

fn saved(v: &ScenarioVersion, nodes: usize, restored_from: Option<i64>) -> ScenarioSaved {
    ScenarioSaved {
        version: v.version,
        nodes,
        created_at: format_rfc3339(v.created_at),
        restored_from,
    }
}

/// Save a new version of the bot's scenario (JSON, or YAML with `Content-Type:
/// application/yaml`).
#[utoipa::path(put, path = "/api/v1/bots/{bot_id}/scenario", tag = "scenarios",
    security(("api_key" = [])), params(("bot_id" = String, Path)),
    request_body(content = serde_json::Value, description = "the scenario document (docs/scenarios.md)",
        content_type = "application/json"),
    responses((status = 200, body = ScenarioSaved), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_scenario(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<ScenarioSaved>, ApiError> {
    auth.admin()?;
    let scenario = read(&headers, &body)?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let document = serde_json::to_value(&scenario).map_err(ApiError::internal)?;
    let v = state
        .flow()
        .save_scenario(&auth.workspace_id, &bot.id, document, crate::util::now_ms())
        .await?;
    Ok(axum::Json(saved(&v, scenario.nodes.len(), None)))
}

/// The bot's current scenario document; its version is in the `ETag` header. A bot that has
/// none yet has an empty one (version 0: a Start sends nothing).
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/scenario", tag = "scenarios",
    security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 200, body = serde_json::Value, description = "the document"),
        (status = 404, body = ErrorBody)))]
pub async fn get_scenario(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
) -> Result<axum::response::Response, ApiError> {
    auth.require(&[Role::Links, Role::Notify])?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let v = state
        .flow()
        .current_scenario(&bot.id)
        .await?
        .unwrap_or_else(|| ScenarioVersion {
            bot_id: bot.id.clone(),
            version: 0,
            document: serde_json::json!({"start": "start", "nodes": {"start": []}}),
            created_at: bot.created_at,
        });
    let mut resp = axum::Json(v.document).into_response();
    resp.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(&format!("\"{}\"", v.version)).expect("digits"),
    );
    Ok(resp)
}

/// Every version of the bot's scenario, newest first.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/scenario/versions", tag = "scenarios",
    security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
pub async fn list_versions(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
) -> Result<axum::Json<VersionList>, ApiError> {
    auth.require(&[Role::Links, Role::Notify])?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let versions = state
        .flow()
        .scenario_versions(&auth.workspace_id, &bot.id)
        .await?;
    Ok(axum::Json(VersionList {
        versions: versions
            .iter()
            .map(|v| VersionOut {
                version: v.version,
                created_at: format_rfc3339(v.created_at),
            })
            .collect(),
    }))
}

/// Make an old version current again (saved as a new version).
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/scenario/versions/{version}/restore",
    tag = "scenarios", security(("api_key" = [])),
    params(("bot_id" = String, Path), ("version" = i64, Path, minimum = 1)),
    responses((status = 200, body = ScenarioSaved), (status = 404, body = ErrorBody)))]
pub async fn restore_version(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, version)): Path<(String, String)>,
) -> Result<axum::Json<ScenarioSaved>, ApiError> {
    auth.admin()?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    // Versions are numbered from 1: anything else names no version.
    let version: i64 = version.parse().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::NotFound(format!(
            "version {version:?} of the scenario of bot {bot_id:?}"
        ))
    })?;
    let old = state
        .flow()
        .scenario_version(&bot.id, version)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::NotFound(format!(
                "version {version} of the scenario of bot {bot_id:?}"
            )),
            e => e.into(),
        })?;
    let nodes = old
        .document
        .get("nodes")
        .and_then(|n| n.as_object())
        .map_or(0, |n| n.len());
    let v = state
        .flow()
        .save_scenario(
            &auth.workspace_id,
            &bot.id,
            old.document,
            crate::util::now_ms(),
        )
        .await?;
    Ok(axum::Json(saved(&v, nodes, Some(version))))
}
