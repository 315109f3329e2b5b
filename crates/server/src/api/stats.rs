//! Statistics per link, per entry point and per bot: clicks, the Starts that followed and
//! the contacts they brought.

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
use crate::store::{LinkCount, Role, STATS_WAIT, Stats, StatsRange, StatsScope};
use crate::util::{format_rfc3339, now_ms, parse_day};

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

/// Statistics, and how up to date they are.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsOut {
    #[serde(flatten)]
    pub counts: Stats,
    /// Starts per click, `starts / clicks`; null without clicks. Starts may also come
    /// without a click through botlink (a deep link or QR code shared as is, an `n__<key>`
    /// parameter written elsewhere; for a bot, people who open it unprompted), so it may
    /// exceed 1.
    pub conversion: Option<f64>,
    /// Whether every click made before this request is counted, as far as this server
    /// knows: clicks are written within about `--click-flush-ms` of their redirect, and
    /// counted when statistics are read. `false` when the latest could not be written or
    /// counted in time (the database is locked by another process, as a rule): these counts
    /// may lack them, and `message` says which and why. Ask again shortly.
    pub fresh: bool,
    /// RFC 3339: these counts hold the clicks made before about this time. This answer's
    /// time when `fresh`; else the time from which clicks may be missing, or null when that
    /// is since the server started.
    pub as_of: Option<String>,
    /// When not `fresh`: what the counts may lack, why, and what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl StatsOut {
    /// `counts` as the store read them, told with what lags behind them: clicks written but
    /// not yet counted (`counts.lag`), and clicks made since `unwritten_from` that wait to be
    /// written (see [`crate::redirect::clicks::ClickRecorder::unwritten_from`]).
    fn new(counts: Stats, unwritten_from: Option<i64>) -> Self {
        let mut why = Vec::new();
        // From when clicks may be missing; `None` inside: since the server started.
        let mut since: Option<Option<i64>> = None;
        if let Some(lag) = counts.lag {
            why.push(format!(
                "clicks written were not all counted in time: {}",
                lag.why.why()
            ));
            since = Some(lag.since_ms);
        }
        if let Some(from) = unwritten_from {
            why.push(
                "clicks wait to be written, as the database does not take them (the server's \
                 log says why)"
                    .to_owned(),
            );
            since = Some(match since {
                Some(Some(ms)) => Some(ms.min(from)),
                Some(None) => None,
                None => Some(from),
            });
        }
        let (fresh, as_of, message) = match since {
            None => (true, Some(now_ms()), None),
            Some(since) => {
                let after = since.map_or_else(
                    || "since the server started".to_owned(),
                    |ms| format!("made after {}", format_rfc3339(ms)),
                );
                let message = format!(
                    "these counts may lack the clicks {after}: {}. They are counted once the \
                     database takes them: ask again shortly",
                    why.join("; ")
                );
                (false, since, Some(message))
            }
        };
        StatsOut {
            conversion: counts.conversion(),
            counts,
            fresh,
            as_of: as_of.map(format_rfc3339),
            message,
        }
    }
}

/// Statistics as the API answers them: counts, and how up to date they are.
fn stats_out(state: &AppState, counts: Stats) -> StatsOut {
    StatsOut::new(counts, state.recorder().unwritten_from(STATS_WAIT))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotStatsOut {
    #[serde(flatten)]
    pub totals: StatsOut,
    /// The bot's links ranked by clicks (as up to date as the totals).
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

/// Clicks, Starts and new contacts of one link, and its clicks' conversion to Starts.
#[utoipa::path(get, path = "/api/v1/links/{link_id}/stats", tag = "stats", security(("api_key" = [])),
    params(("link_id" = String, Path), RangeQuery),
    responses((status = 200, body = StatsOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn link_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Query(q): Query<RangeQuery>,
) -> Result<axum::Json<StatsOut>, ApiError> {
    auth.require(&[Role::Links])?;
    let r = range(&q.from, &q.to)?;
    let link = load_link(&state, &auth, &id).await?;
    let s = state
        .clicks()
        .stats(&auth.workspace_id, StatsScope::Link(link.id), r)
        .await
        .map_err(|e| not_found(e, "link", &id))?;
    Ok(axum::Json(stats_out(&state, s)))
}

/// Clicks of every link of one entry point, its Starts and new contacts.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/entry_points/{key}/stats", tag = "stats",
    security(("api_key" = [])), params(("bot_id" = String, Path), ("key" = String, Path), RangeQuery),
    responses((status = 200, body = StatsOut), (status = 404, body = ErrorBody)))]
pub async fn entry_point_stats(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, key)): Path<(String, String)>,
    Query(q): Query<RangeQuery>,
) -> Result<axum::Json<StatsOut>, ApiError> {
    auth.require(&[Role::Links])?;
    let r = range(&q.from, &q.to)?;
    let e = load_entry(&state, &auth, &bot_id, &key).await?;
    let s = state
        .clicks()
        .stats(&auth.workspace_id, StatsScope::EntryPoint(e.id), r)
        .await
        .map_err(|e| not_found(e, "entry point", &key))?;
    Ok(axum::Json(stats_out(&state, s)))
}

/// A whole bot: totals, breakdowns, and its links ranked by clicks.
///
/// A bot's `starts` and `new_contacts` are all of them, attributed to a link or not.
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
    // Together, so that both wait for the same count of the latest clicks, once.
    let (s, top) = tokio::join!(
        state
            .clicks()
            .stats(&auth.workspace_id, StatsScope::Bot(bot.id.clone()), r),
        state
            .clicks()
            .top_links(&auth.workspace_id, &bot.id, r, limit),
    );
    Ok(axum::Json(BotStatsOut {
        totals: stats_out(&state, s?),
        links: top?,
    }))
}
