//! Deliveries: the requests scenarios make to a CRM (`send_me`, `send_request`), with every
//! attempt, and a retry on demand. Header values are never shown (they may carry the CRM's
//! credentials): only their names.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::{ApiError, ErrorBody, Query};
use crate::app::AppState;
use crate::store::{Attempt, Delivery, DeliveryFilter, DeliveryId, Role, StoreError, WorkStatus};
use crate::util::format_rfc3339;

/// A delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// Also its `webhook-id`, the same on every attempt.
    pub id: String,
    pub bot_id: String,
    pub contact_id: String,
    /// `send_me` or `send_request`.
    pub kind: String,
    pub method: String,
    pub url: String,
    /// The names of the headers it sends (values are not shown).
    pub headers: Vec<String>,
    pub data: serde_json::Value,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Every attempt, oldest first (on `GET /api/v1/deliveries/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptOut>>,
}

/// One attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    pub at: String,
    /// The answer's HTTP status, when one came.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// Where a delivery stands.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryOut>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryQuery {
    pub bot_id: Option<String>,
    #[param(inline, value_type = Option<DeliveryStatus>)]
    pub status: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_deliveries))
        .routes(routes!(get_delivery))
        .routes(routes!(retry_delivery))
}

fn status_name(s: WorkStatus) -> &'static str {
    match s {
        WorkStatus::Pending => "pending",
        WorkStatus::Done => "delivered",
        WorkStatus::Failed => "failed",
    }
}

fn delivery_out(d: &Delivery, attempts: Option<&[Attempt]>) -> DeliveryOut {
    DeliveryOut {
        id: d.id.to_string(),
        bot_id: d.bot_id.to_string(),
        contact_id: d.contact_id.to_string(),
        kind: d.kind.clone(),
        method: d.method.clone(),
        url: d.url.clone(),
        headers: d.headers.iter().map(|(n, _)| n.clone()).collect(),
        data: d.data.clone(),
        status: status_name(d.status).to_owned(),
        attempts: d.attempts,
        next_attempt_at: d
            .next_at
            .filter(|_| d.status == WorkStatus::Pending)
            .map(format_rfc3339),
        last_error: d.last_error.clone(),
        created_at: format_rfc3339(d.created_at),
        updated_at: format_rfc3339(d.updated_at),
        attempt_log: attempts.map(|a| {
            a.iter()
                .map(|a| AttemptOut {
                    at: format_rfc3339(a.at),
                    status: a.status,
                    error: a.error.clone(),
                    duration_ms: a.duration_ms,
                })
                .collect()
        }),
    }
}

fn not_found(e: StoreError, id: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound(format!("delivery {id:?}")),
        e => e.into(),
    }
}

/// Deliveries, newest first, by bot and status.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "deliveries", params(DeliveryQuery),
    security(("api_key" = [])),
    responses((status = 200, body = DeliveryPage), (status = 404, body = ErrorBody)))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<DeliveryQuery>,
) -> Result<axum::Json<DeliveryPage>, ApiError> {
    auth.require(&[Role::Notify])?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be 1-500"));
    }
    let status = match q.status.as_deref() {
        None => None,
        Some("pending") => Some(WorkStatus::Pending),
        Some("delivered") => Some(WorkStatus::Done),
        Some("failed") => Some(WorkStatus::Failed),
        Some(other) => {
            return Err(ApiError::invalid(
                "invalid_status",
                format!("status {other:?}: use pending, delivered or failed"),
            ));
        }
    };
    let bot_id = match &q.bot_id {
        Some(b) => Some(load_bot(&state, &auth, b).await?.id),
        None => None,
    };
    let (deliveries, next_cursor) = state
        .flow()
        .list_deliveries(
            &auth.workspace_id,
            &DeliveryFilter {
                bot_id,
                status,
                limit: Some(limit),
                cursor: q.cursor,
            },
        )
        .await?;
    Ok(axum::Json(DeliveryPage {
        deliveries: deliveries.iter().map(|d| delivery_out(d, None)).collect(),
        next_cursor,
    }))
}

/// One delivery with every attempt.
#[utoipa::path(get, path = "/api/v1/deliveries/{delivery_id}", tag = "deliveries",
    params(("delivery_id" = String, Path)), security(("api_key" = [])),
    responses((status = 200, body = DeliveryOut), (status = 404, body = ErrorBody)))]
pub async fn get_delivery(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<DeliveryOut>, ApiError> {
    auth.require(&[Role::Notify])?;
    let (d, attempts) = state
        .flow()
        .delivery(&auth.workspace_id, &DeliveryId::from(id.as_str()))
        .await
        .map_err(|e| not_found(e, &id))?;
    Ok(axum::Json(delivery_out(&d, Some(&attempts))))
}

/// Try a delivery again now (a failed one too).
#[utoipa::path(post, path = "/api/v1/deliveries/{delivery_id}/retry", tag = "deliveries",
    params(("delivery_id" = String, Path)), security(("api_key" = [])),
    responses((status = 200, body = DeliveryOut), (status = 404, body = ErrorBody)))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<DeliveryOut>, ApiError> {
    auth.require(&[Role::Notify])?;
    let _turn = state.write_turn();
    let d = state
        .flow()
        .retry_delivery(
            &auth.workspace_id,
            &DeliveryId::from(id.as_str()),
            crate::util::now_ms(),
        )
        .await
        .map_err(|e| not_found(e, &id))?;
    state.wake().deliveries.notify_one();
    Ok(axum::Json(delivery_out(&d, None)))
}
