//! `/api/v1/links`: short links into a bot, with each channel's deep link.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::{load_bot, not_found};
use crate::api::error::{ApiError, ErrorBody, Json, Query};
use crate::app::AppState;
use crate::domain::linkgen::SchemeIn;
use crate::domain::links::{LinkContext, LinkDraft, check_settings, new_link};
use crate::store::Payload;
use crate::store::{Bot, EntryPoint, Link, LinkFilter, LinkId, LinkPatch, NewLink, Role, Utm};
use crate::util::{format_rfc3339, now_ms};
use botlink_core::LinkKind;
use botlink_core::link::rule_for;

/// Most links one request may create.
pub const MAX_BATCH: usize = 1000;

/// A link to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkIn {
    pub bot_id: String,
    /// The entry point's key; its default UTM tags fill the ones not given.
    #[schema(max_length = 64, pattern = r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")]
    pub entry_point: Option<String>,
    /// Channels to link into (default: every channel the bot has).
    #[schema(value_type = Option<Vec<crate::api::bots::ChannelName>>, min_items = 1)]
    pub channels: Option<Vec<String>>,
    #[serde(default)]
    pub payload: Payload,
    #[serde(default)]
    pub utm: Utm,
    /// `stored` (default): the parameter is a short code resolved server-side.
    #[serde(default)]
    pub scheme: SchemeIn,
    /// Add an HMAC tag so the parameter cannot be edited.
    #[serde(default)]
    pub signed: bool,
    /// A custom short-link slug (3-64 characters of `[A-Za-z0-9_-]`).
    #[schema(min_length = 3, max_length = 64, pattern = r"^[A-Za-z0-9_-]*$")]
    pub slug: Option<String>,
    /// Up to 200 characters of plain text.
    #[schema(
        max_length = 200,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub title: Option<String>,
    /// RFC 3339, in the future; after it the short link answers 410 Gone.
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// After this many clicks the short link answers 410 Gone.
    #[schema(minimum = 1)]
    pub max_clicks: Option<i64>,
}

/// One link, or many at once (`{"links": [...]}`, all or nothing).
///
/// A body with a `links` key is a batch, any other object one link; each shape is then read
/// strictly, so a wrong field is named (`links[2].title: invalid type ...`) rather than
/// reported as matching neither shape.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum LinksIn {
    Many(LinkBatchIn),
    One(Box<LinkIn>),
}

/// Many links at once, all or nothing.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkBatchIn {
    /// 1 to 1000 links.
    #[schema(min_items = 1, max_items = 1000)]
    pub links: Vec<LinkIn>,
}

impl<'de> Deserialize<'de> for LinksIn {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let body = serde_json::Value::deserialize(d)?;
        let Some(object) = body.as_object() else {
            return Err(D::Error::custom(
                "expected a link (a JSON object with `bot_id`) or `{\"links\": [...]}`",
            ));
        };
        let named = |e: serde_path_to_error::Error<serde_json::Error>| D::Error::custom(e);
        if object.contains_key("links") {
            serde_path_to_error::deserialize(body)
                .map(LinksIn::Many)
                .map_err(named)
        } else {
            serde_path_to_error::deserialize(body)
                .map(|l| LinksIn::One(Box::new(l)))
                .map_err(named)
        }
    }
}

/// One channel's way in.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelLinkOut {
    pub channel: String,
    /// The deep link. For the stored scheme, clicks through the short link carry the click id too.
    pub url: String,
    pub param: String,
    /// The parameter's length and the channel's limit.
    pub length: usize,
    pub limit: usize,
    /// The short link straight into this channel.
    pub short_url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkOut {
    pub id: String,
    pub code: String,
    pub slug: Option<String>,
    pub short_url: String,
    pub qr_svg: String,
    pub qr_png: String,
    pub bot_id: String,
    pub entry_point_id: Option<String>,
    pub title: Option<String>,
    #[schema(value_type = SchemeIn)]
    pub scheme: String,
    pub signed: bool,
    pub channels: Vec<ChannelLinkOut>,
    pub payload: Payload,
    pub utm: Utm,
    pub expires_at: Option<String>,
    pub max_clicks: Option<i64>,
    pub disabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// What creating links answers: the link, or `{"links": [...]}` for a batch.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum LinksCreated {
    Many(LinksOut),
    One(Box<LinkOut>),
}

/// The links of a batch, in the order asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinksOut {
    pub links: Vec<LinkOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LinkPage {
    pub links: Vec<LinkOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    pub bot_id: Option<String>,
    /// Entry point key (with `bot_id`) or id.
    pub entry_point: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    /// Text to look for in the title, slug, code or campaign.
    pub q: Option<String>,
    /// Page size, 1-200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// A change to a link. `expires_at: null` removes the expiry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPatchIn {
    pub disabled: Option<bool>,
    /// RFC 3339, in the future; `null` removes the expiry.
    #[serde(default, deserialize_with = "crate::api::double_option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Option<String>>,
    /// `null` removes the cap.
    #[serde(default, deserialize_with = "crate::api::double_option")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    pub max_clicks: Option<Option<i64>>,
    /// A new title; `null` clears it.
    #[serde(default, deserialize_with = "crate::api::double_option")]
    #[schema(value_type = Option<String>, max_length = 200, pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$")]
    pub title: Option<Option<String>>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_links, list_links))
        .routes(routes!(get_link, update_link, delete_link))
}

pub fn link_out(state: &AppState, link: &Link) -> LinkOut {
    let short_url = state.short_url(link.slug.as_deref().unwrap_or(&link.code));
    LinkOut {
        id: link.id.to_string(),
        code: link.code.clone(),
        slug: link.slug.clone(),
        qr_svg: format!("{short_url}/qr.svg"),
        qr_png: format!("{short_url}/qr.png"),
        bot_id: link.bot_id.to_string(),
        entry_point_id: link.entry_point_id.as_ref().map(|e| e.to_string()),
        title: link.title.clone(),
        scheme: link.scheme.as_str().to_owned(),
        signed: link.signed,
        channels: link
            .channels
            .iter()
            .filter_map(|&c| {
                let d = link.deep_links.get(&c)?;
                Some(ChannelLinkOut {
                    channel: c.as_str().to_owned(),
                    url: d.url.clone(),
                    param: d.param.clone(),
                    length: d.param.chars().count(),
                    limit: rule_for(c, LinkKind::Start).max_len,
                    short_url: format!("{short_url}/{c}"),
                })
            })
            .collect(),
        short_url,
        payload: link.payload.clone(),
        utm: link.utm.clone(),
        expires_at: link.expires_at.map(format_rfc3339),
        max_clicks: link.max_clicks,
        disabled: link.disabled,
        created_at: format_rfc3339(link.created_at),
        updated_at: format_rfc3339(link.updated_at),
    }
}

/// Validates one link request and turns it into a row.
/// Bots and entry points already read for this request: a batch of a thousand links for one
/// bot reads the bot once, not a thousand times.
#[derive(Default)]
struct Loaded {
    bots: HashMap<String, Arc<Bot>>,
    entry_points: HashMap<(String, String), Arc<EntryPoint>>,
}

async fn prepare(
    state: &AppState,
    auth: &Auth,
    loaded: &mut Loaded,
    input: LinkIn,
    now: i64,
) -> Result<NewLink, ApiError> {
    let bot = match loaded.bots.get(&input.bot_id) {
        Some(bot) => bot.clone(),
        None => {
            let bot = Arc::new(load_bot(state, auth, &input.bot_id).await?);
            loaded.bots.insert(input.bot_id.clone(), bot.clone());
            bot
        }
    };
    let entry = match &input.entry_point {
        Some(key) => {
            let id = (input.bot_id.clone(), key.clone());
            Some(match loaded.entry_points.get(&id) {
                Some(e) => e.clone(),
                None => {
                    let e = Arc::new(
                        state
                            .bots()
                            .entry_point(&auth.workspace_id, &bot.id, key)
                            .await
                            .map_err(|e| not_found(e, "entry point", key))?,
                    );
                    loaded.entry_points.insert(id, e.clone());
                    e
                }
            })
        }
        None => None,
    };
    let draft = LinkDraft {
        channels: input.channels,
        payload: input.payload,
        utm: input.utm,
        scheme: input.scheme,
        signed: input.signed,
        slug: input.slug,
        title: input.title,
        expires_at: input.expires_at,
        max_clicks: input.max_clicks,
    };
    Ok(new_link(
        &LinkContext {
            secret: state.secret(),
            public_url: state.public_url(),
        },
        &bot,
        entry.as_deref(),
        draft,
        now,
    )?)
}

/// Create a link, or many (`{"links": [...]}`, up to 1000, all or nothing).
#[utoipa::path(post, path = "/api/v1/links", tag = "links", request_body = LinksIn,
    security(("api_key" = [])),
    responses((status = 201, description = "a LinkOut, or {links: [LinkOut]} for a batch", body = LinksCreated),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_links(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<LinksIn>,
) -> Result<(StatusCode, axum::Json<LinksCreated>), ApiError> {
    auth.require(&[Role::Links])?;
    let now = now_ms();
    let (inputs, many) = match input {
        LinksIn::One(l) => (vec![*l], false),
        LinksIn::Many(batch) => (batch.links, true),
    };
    if inputs.is_empty() || inputs.len() > MAX_BATCH {
        return Err(ApiError::invalid(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH} links, got {}", inputs.len()),
        ));
    }
    let mut rows = Vec::with_capacity(inputs.len());
    let mut slugs = std::collections::HashSet::new();
    let mut loaded = Loaded::default();
    for (i, l) in inputs.into_iter().enumerate() {
        let at = |e: ApiError| if many { prefix(i, e) } else { e };
        if let Some(s) = &l.slug {
            if !slugs.insert(s.clone()) {
                return Err(at(ApiError::Conflict(format!(
                    "slug {s:?} appears twice in the batch"
                ))));
            }
            if state.links().link_by_code_or_slug(s).await?.is_some() {
                return Err(at(ApiError::Conflict(format!(
                    "slug {s:?} is taken: choose another"
                ))));
            }
        }
        rows.push(
            prepare(&state, &auth, &mut loaded, l, now)
                .await
                .map_err(at)?,
        );
    }
    let created = state
        .links()
        .create_links(&auth.workspace_id, rows, now)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict { what } => ApiError::Conflict(format!(
                "{what} is taken: choose another; nothing was created"
            )),
            other => other.into(),
        })?;
    let mut links: Vec<LinkOut> = created.iter().map(|l| link_out(&state, l)).collect();
    let body = match links.pop() {
        Some(one) if !many => LinksCreated::One(Box::new(one)),
        last => {
            links.extend(last);
            LinksCreated::Many(LinksOut { links })
        }
    };
    Ok((StatusCode::CREATED, axum::Json(body)))
}

fn prefix(i: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::Invalid { code, message } => ApiError::Invalid {
            code,
            message: format!("links[{i}]: {message}"),
        },
        ApiError::NotFound(m) => ApiError::NotFound(format!("links[{i}]: {m}")),
        ApiError::Conflict(m) => ApiError::Conflict(format!("links[{i}]: {m}")),
        other => other,
    }
}

/// List links, newest first, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/links", tag = "links", params(LinkQuery),
    security(("api_key" = [])), responses((status = 200, body = LinkPage),
        (status = 404, description = "`bot_id` or `entry_point` names nothing in the key's workspace", body = ErrorBody)))]
pub async fn list_links(
    State(state): State<AppState>,
    auth: Auth,
    Query(q): Query<LinkQuery>,
) -> Result<axum::Json<LinkPage>, ApiError> {
    auth.require(&[Role::Links])?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be 1-200"));
    }
    let bot_id = match &q.bot_id {
        Some(b) => Some(load_bot(&state, &auth, b).await?.id),
        None => None,
    };
    let entry_point_id = match (&q.entry_point, &bot_id) {
        (Some(key), Some(bot)) => Some(
            state
                .bots()
                .entry_point(&auth.workspace_id, bot, key)
                .await
                .map_err(|e| not_found(e, "entry point", key))?
                .id,
        ),
        (Some(id), None) => Some(crate::store::EntryPointId::from(id.clone())),
        (None, _) => None,
    };
    let (links, next_cursor) = state
        .links()
        .list_links(
            &auth.workspace_id,
            LinkFilter {
                bot_id,
                entry_point_id,
                utm_source: q.utm_source,
                utm_medium: q.utm_medium,
                utm_campaign: q.utm_campaign,
                q: q.q,
                limit: Some(limit),
                cursor: q.cursor,
            },
        )
        .await?;
    Ok(axum::Json(LinkPage {
        links: links.iter().map(|l| link_out(&state, l)).collect(),
        next_cursor,
    }))
}

pub async fn load_link(state: &AppState, auth: &Auth, id: &str) -> Result<Link, ApiError> {
    state
        .links()
        .get_link(&auth.workspace_id, &LinkId::from(id.to_string()))
        .await
        .map_err(|e| not_found(e, "link", id))
}

/// Get a link.
#[utoipa::path(get, path = "/api/v1/links/{link_id}", tag = "links", security(("api_key" = [])),
    params(("link_id" = String, Path)),
    responses((status = 200, body = LinkOut), (status = 404, body = ErrorBody)))]
pub async fn get_link(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<LinkOut>, ApiError> {
    auth.require(&[Role::Links])?;
    let link = load_link(&state, &auth, &id).await?;
    Ok(axum::Json(link_out(&state, &link)))
}

/// Disable or re-enable a link, change its expiry, click cap or title.
#[utoipa::path(patch, path = "/api/v1/links/{link_id}", tag = "links", request_body = LinkPatchIn,
    security(("api_key" = [])), params(("link_id" = String, Path)),
    responses((status = 200, body = LinkOut), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_link(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    Json(input): Json<LinkPatchIn>,
) -> Result<axum::Json<LinkOut>, ApiError> {
    auth.admin()?;
    let now = now_ms();
    let expires_at = check_settings(
        input.title.as_ref().and_then(|t| t.as_deref()),
        input.expires_at.as_ref().and_then(|e| e.as_deref()),
        input.max_clicks.flatten(),
        now,
    )?;
    // `Some(None)` (null) removes the expiry; absent leaves it.
    let expires_at = input.expires_at.as_ref().map(|_| expires_at);
    let link = load_link(&state, &auth, &id).await?;
    let updated = state
        .links()
        .update_link(
            &auth.workspace_id,
            &link.id,
            LinkPatch {
                disabled: input.disabled,
                expires_at,
                max_clicks: input.max_clicks,
                title: input.title,
            },
            now,
        )
        .await?;
    state.forget_link(&link);
    Ok(axum::Json(link_out(&state, &updated)))
}

/// Delete a link and its clicks; its short link then answers 404.
#[utoipa::path(delete, path = "/api/v1/links/{link_id}", tag = "links", security(("api_key" = [])),
    params(("link_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_link(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.admin()?;
    let link = load_link(&state, &auth, &id).await?;
    state
        .links()
        .delete_link(&auth.workspace_id, &link.id)
        .await?;
    state.forget_link(&link);
    Ok(StatusCode::NO_CONTENT)
}
