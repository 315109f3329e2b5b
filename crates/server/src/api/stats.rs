//! Click statistics per link, per entry point and per bot.

use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::{load_bot, not_found};
use crate::api::entry_points::load_entry;
use crate::api::error::{ApiError, ErrorBody, Query};
use crate::api::links::load_link;
use crate::app::AppState;
use crate::store::{LinkCount, Role, Stats, StatsRange, StatsScope};
use crate::util::parse_day;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeQuery {
    /// First day counted, `YYYY-MM-DD` (UTC).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day counted, `YYYY-MM-DD` (UTC), not before `from`.
    #[param(format = Date)]
    pub to: Option<String>,
}

/// A bot's stats take a range and how many top links to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BotStatsQuery {
    /// First day counted, `YYYY-MM-DD` (UTC).
    #[param(format = Date)]
    pub from: Option<String>,
    /// Last day counted, `YYYY-MM-DD` (UTC), not before `from`.
    #[param(format = Date)]
    pub to: Option<String>,
    /// How many top links to list (1-100, default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotStatsOut {
    #[serde(flatten)]
    pub totals: Stats,
    /// The bot's links ranked by clicks.
    pub links: Vec<LinkCount>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(link_stats))
        .routes(routes!(entry_point_stats))
        .routes(routes!(bot_stats))
}

fn range(from: &Option<String>, to: &Option<String>) -> Result<StatsRange, ApiError> {
    let day = |what: &str, s: &Option<String>| {
        s.as_deref()
            .map(|s| {
                parse_day(s).ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_date",
                        format!("{what} {s:?} is not a date such as 2026-11-21"),
                    )
                })
            })
            .transpose()
    };
    let r = StatsRange {
        from_day: day("from", from)?,
        to_day: day("to", to)?,
    };
    if let (Some(f), Some(t)) = (r.from_day, r.to_day)
        && f > t
    {
        return Err(ApiError::invalid("invalid_date", "from is after to"));
    }
    Ok(r)
}

/// Clicks of one link.
#[utoipa::path(get, path = "/api/v1/links/{link_id}/stats", tag = "stats", security(("api_key" = [])),
    params(("link_id" = String, Path), RangeQuery),
    responses((status = 200, body = Stats), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn link_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<axum::Json<Stats>, ApiError> {
    auth.require(&[Role::Links])?;
    let r = range(&q.from, &q.to)?;
    let link = load_link(&state, &auth, &id).await?;
    let s = state
        .clicks()
        .stats(&auth.workspace_id, StatsScope::Link(link.id), r)
        .await
        .map_err(|e| not_found(e, "link", &id))?;
    Ok(axum::Json(s))
}

/// Clicks of every link of one entry point.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/entry_points/{key}/stats", tag = "stats",
    security(("api_key" = [])), params(("bot_id" = String, Path), ("key" = String, Path), RangeQuery),
    responses((status = 200, body = Stats), (status = 404, body = ErrorBody)))]
pub async fn entry_point_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, key)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<axum::Json<Stats>, ApiError> {
    auth.require(&[Role::Links])?;
    let r = range(&q.from, &q.to)?;
    let e = load_entry(&state, &auth, &bot_id, &key).await?;
    let s = state
        .clicks()
        .stats(&auth.workspace_id, StatsScope::EntryPoint(e.id), r)
        .await
        .map_err(|e| not_found(e, "entry point", &key))?;
    Ok(axum::Json(s))
}

/// A whole bot: totals, breakdowns, and its links ranked by clicks.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/stats", tag = "stats", security(("api_key" = [])),
    params(("bot_id" = String, Path), BotStatsQuery),
    responses((status = 200, body = BotStatsOut), (status = 404, body = ErrorBody)))]
pub async fn bot_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Query(q): Query<BotStatsQuery>,
) -> Result<axum::Json<BotStatsOut>, ApiError> {
    auth.require(&[Role::Links])?;
    let r = range(&q.from, &q.to)?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be 1-100"));
    }
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let s = state
        .clicks()
        .stats(&auth.workspace_id, StatsScope::Bot(bot.id.clone()), r)
        .await?;
    let top = state
        .clicks()
        .top_links(&auth.workspace_id, &bot.id, r, limit)
        .await?;
    Ok(axum::Json(BotStatsOut {
        totals: s,
        links: top,
    }))
}
