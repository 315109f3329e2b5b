//! `/api/v1/bots`: bots and their channel settings. Secrets (tokens, app secrets) are sealed
//! before they reach the database and never come back: answers list only their names.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use botlink_core::Channel;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::error::{ApiError, ErrorBody, Json};
use crate::app::AppState;
use crate::domain::bots::{channel_row, identifier, relink};
use crate::domain::links::parse_channel;
use crate::flow::deliver::new_signing_secret;
use crate::flow::pace::MAX_RATE_LIMIT;
use crate::store::{Bot, BotChannel, BotId, BotPatch, NewBot, Role};
use crate::util::format_rfc3339;

/// One channel's settings. Which fields apply depends on the channel:
/// telegram `username`, `token`; viber `uri`, `token`; messenger `page`, `page_id`,
/// `app_secret`, `page_token`, `verify_token`; instagram `username`, `app_secret`,
/// `access_token`; whatsapp `number`, `phone_number_id`, `business_account_id`,
/// `access_token`, `app_secret`; line `id`, `channel_secret`, `access_token`; max `username`,
/// `token`; webchat `id` (default: the bot's id); custom `link`, `url`, `webhook_secret`. Any
/// channel takes `api_base_url` (e.g. a local Telegram Bot API server) and `rate_limit`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelIn {
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub username: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub uri: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub page: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub page_id: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub number: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub phone_number_id: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub business_account_id: Option<String>,
    #[schema(
        max_length = 256,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub id: Option<String>,
    /// An http(s) URL.
    #[schema(
        max_length = 2048,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub api_base_url: Option<String>,
    /// Messages a second this bot may send on the channel, all chats together, in place of
    /// the platform's documented limit (e.g. Telegram's paid broadcasts: up to 1,000).
    #[schema(minimum = 1, maximum = 100000)]
    pub rate_limit: Option<u32>,
    /// custom: the chat's page (an http(s) URL without a query), which links open with
    /// `?start=<parameter>`.
    #[schema(
        max_length = 2048,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub link: Option<String>,
    /// custom: where botlink posts the bot's messages (signed with `webhook_secret`).
    #[schema(
        max_length = 2048,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub url: Option<String>,
    /// Secret. An empty string removes it.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub token: Option<String>,
    /// Secret.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub app_secret: Option<String>,
    /// Secret.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub page_token: Option<String>,
    /// Secret.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub access_token: Option<String>,
    /// Secret.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub channel_secret: Option<String>,
    /// Secret.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub verify_token: Option<String>,
    /// Secret.
    #[schema(
        max_length = 4096,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub webhook_secret: Option<String>,
}

/// A bot's channels by name, as `BotIn` takes them (the document's view of the map).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ChannelsIn {
    #[schema(required = false)]
    telegram: ChannelIn,
    #[schema(required = false)]
    viber: ChannelIn,
    #[schema(required = false)]
    messenger: ChannelIn,
    #[schema(required = false)]
    instagram: ChannelIn,
    #[schema(required = false)]
    whatsapp: ChannelIn,
    #[schema(required = false)]
    line: ChannelIn,
    #[schema(required = false)]
    max: ChannelIn,
    #[schema(required = false)]
    webchat: ChannelIn,
    #[schema(required = false)]
    custom: ChannelIn,
}

/// Channels to set (an object) or remove (`null`), as `BotPatchIn` takes them.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ChannelsPatchIn {
    telegram: Option<ChannelIn>,
    viber: Option<ChannelIn>,
    messenger: Option<ChannelIn>,
    instagram: Option<ChannelIn>,
    whatsapp: Option<ChannelIn>,
    line: Option<ChannelIn>,
    max: Option<ChannelIn>,
    webchat: Option<ChannelIn>,
    custom: Option<ChannelIn>,
}

/// A channel's name, as links and bots take it.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ChannelName {
    Telegram,
    Viber,
    Messenger,
    Instagram,
    Whatsapp,
    Line,
    Max,
    Webchat,
    Custom,
}

const PUBLIC_FIELDS: &[&str] = &[
    "username",
    "uri",
    "page",
    "page_id",
    "number",
    "phone_number_id",
    "business_account_id",
    "id",
    "api_base_url",
    "link",
    "url",
    "rate_limit",
];

/// A channel's row with its `rate_limit` setting, checked.
fn with_rate_limit(mut row: BotChannel, ch: &ChannelIn) -> Result<BotChannel, ApiError> {
    if let Some(n) = ch.rate_limit {
        if !(1..=MAX_RATE_LIMIT).contains(&n) {
            return Err(ApiError::invalid(
                "invalid_channel_settings",
                format!(
                    "channels.{}.rate_limit must be 1 to {MAX_RATE_LIMIT} messages a second",
                    row.channel
                ),
            ));
        }
        if let Some(m) = row.settings.as_object_mut() {
            m.insert("rate_limit".to_owned(), n.into());
        }
    }
    Ok(row)
}

impl ChannelIn {
    fn public(&self) -> [(&'static str, &Option<String>); 11] {
        [
            ("username", &self.username),
            ("uri", &self.uri),
            ("page", &self.page),
            ("page_id", &self.page_id),
            ("number", &self.number),
            ("phone_number_id", &self.phone_number_id),
            ("business_account_id", &self.business_account_id),
            ("id", &self.id),
            ("api_base_url", &self.api_base_url),
            ("link", &self.link),
            ("url", &self.url),
        ]
    }

    fn secrets(&self) -> [(&'static str, &Option<String>); 7] {
        [
            ("token", &self.token),
            ("app_secret", &self.app_secret),
            ("page_token", &self.page_token),
            ("access_token", &self.access_token),
            ("channel_secret", &self.channel_secret),
            ("verify_token", &self.verify_token),
            ("webhook_secret", &self.webhook_secret),
        ]
    }
}

/// A new bot.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotIn {
    /// A name unique in the workspace: 1-100 characters of plain text.
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*[^\s\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069][^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: String,
    /// Settings by channel name (`telegram`, `viber`, ...).
    #[serde(default)]
    #[schema(value_type = ChannelsIn)]
    pub channels: BTreeMap<String, ChannelIn>,
}

/// A change to a bot: a new name, and channels to set (an object) or remove (`null`).
/// Secrets left out of a channel keep their stored values.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BotPatchIn {
    #[schema(
        max_length = 100,
        pattern = r"^[^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*[^\s\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069][^\x00-\x1F\x7F-\x9F\u202A-\u202E\u2066-\u2069]*$"
    )]
    pub name: Option<String>,
    /// Channel name to settings (an object like `ChannelIn`), or `null` to remove the channel.
    #[serde(default)]
    #[schema(value_type = ChannelsPatchIn)]
    pub channels: BTreeMap<String, Option<ChannelIn>>,
}

/// A channel as the API shows it: public settings and the names of the secrets that are set.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelOut {
    pub channel: String,
    /// The bot's identifier in this channel (username, URI, page, number, LINE id...).
    pub identifier: String,
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    /// Names of the secrets stored for this channel; their values are never returned.
    pub secrets: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotOut {
    pub id: String,
    pub name: String,
    pub channels: Vec<ChannelOut>,
    /// The secret that signs the bot's deliveries (`whsec_...`, Standard Webhooks): in the
    /// answer that creates the bot only, never again (rotate it to get a new one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signing_secret: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A bot's new signing secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecretOut {
    /// `whsec_` and Base64: verify deliveries' `webhook-signature` with it. Shown once.
    pub signing_secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BotList {
    pub bots: Vec<BotOut>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_bot, list_bots))
        .routes(routes!(get_bot, update_bot, delete_bot))
        .routes(routes!(rotate_signing_secret))
}

pub fn bot_out(bot: &Bot) -> BotOut {
    BotOut {
        id: bot.id.to_string(),
        name: bot.name.clone(),
        channels: bot
            .channels
            .iter()
            .map(|c| {
                let mut settings = c.settings.clone();
                let secrets = settings
                    .as_object_mut()
                    .and_then(|m| m.remove("secrets"))
                    .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
                    .unwrap_or_default();
                if let Some(m) = settings.as_object_mut() {
                    m.retain(|k, _| PUBLIC_FIELDS.contains(&k.as_str()));
                }
                ChannelOut {
                    channel: c.channel.as_str().to_owned(),
                    identifier: identifier(&bot.id, c).unwrap_or_default(),
                    settings,
                    secrets,
                }
            })
            .collect(),
        signing_secret: None,
        created_at: format_rfc3339(bot.created_at),
        updated_at: format_rfc3339(bot.updated_at),
    }
}

fn check_name(name: &str) -> Result<String, ApiError> {
    Ok(crate::domain::validate::name("name", name)?)
}

/// Create a bot with its channels.
#[utoipa::path(post, path = "/api/v1/bots", tag = "bots", request_body = BotIn,
    security(("api_key" = [])),
    responses((status = 201, body = BotOut), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_bot(
    State(state): State<AppState>,
    auth: Auth,
    Json(input): Json<BotIn>,
) -> Result<(StatusCode, axum::Json<BotOut>), ApiError> {
    auth.admin()?;
    let name = check_name(&input.name)?;
    let id = BotId::new();
    let mut channels = Vec::with_capacity(input.channels.len());
    for (name, ch) in &input.channels {
        let channel = parse_channel(name)?;
        channels.push(with_rate_limit(
            channel_row(
                state.secret(),
                &id,
                channel,
                &ch.public(),
                &ch.secrets(),
                None,
            )?,
            ch,
        )?);
    }
    let now = crate::util::now_ms();
    let bot = state
        .bots()
        .create_bot(&auth.workspace_id, NewBot { id, name, channels }, now)
        .await?;
    let (whsec, sealed) = new_signing_secret(state.secret(), &bot.id);
    state
        .flow()
        .set_signing_secret(&auth.workspace_id, &bot.id, &sealed, now)
        .await?;
    let mut out = bot_out(&bot);
    out.signing_secret = Some(whsec);
    Ok((StatusCode::CREATED, axum::Json(out)))
}

/// Make a new signing secret for the bot's deliveries; the old one stops at once.
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/signing_secret", tag = "bots",
    security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 200, body = SigningSecretOut), (status = 404, body = ErrorBody)))]
pub async fn rotate_signing_secret(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
) -> Result<axum::Json<SigningSecretOut>, ApiError> {
    auth.admin()?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let (whsec, sealed) = new_signing_secret(state.secret(), &bot.id);
    state
        .flow()
        .set_signing_secret(&auth.workspace_id, &bot.id, &sealed, crate::util::now_ms())
        .await?;
    Ok(axum::Json(SigningSecretOut {
        signing_secret: whsec,
    }))
}

/// List the workspace's bots.
#[utoipa::path(get, path = "/api/v1/bots", tag = "bots", security(("api_key" = [])),
    responses((status = 200, body = BotList)))]
pub async fn list_bots(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<axum::Json<BotList>, ApiError> {
    auth.require(&[Role::Links])?;
    let bots = state.bots().list_bots(&auth.workspace_id).await?;
    Ok(axum::Json(BotList {
        bots: bots.iter().map(bot_out).collect(),
    }))
}

/// Get one bot.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}", tag = "bots", security(("api_key" = [])),
    params(("bot_id" = String, Path)),
    responses((status = 200, body = BotOut), (status = 404, body = ErrorBody)))]
pub async fn get_bot(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
) -> Result<axum::Json<BotOut>, ApiError> {
    auth.require(&[Role::Links])?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    Ok(axum::Json(bot_out(&bot)))
}

/// Loads a bot of the caller's workspace, 404 otherwise.
pub async fn load_bot(state: &AppState, auth: &Auth, bot_id: &str) -> Result<Bot, ApiError> {
    state
        .bots()
        .get_bot(&auth.workspace_id, &BotId::from(bot_id.to_string()))
        .await
        .map_err(|e| not_found(e, "bot", bot_id))
}

pub fn not_found(e: crate::store::StoreError, what: &str, id: &str) -> ApiError {
    match e {
        crate::store::StoreError::NotFound => ApiError::NotFound(format!("{what} {id:?}")),
        other => other.into(),
    }
}

/// Rename a bot, set or remove channels. Its links follow at once: a channel removed leaves
/// them, a channel changed gets their deep links made again (409, and nothing changed, when a
/// link cannot open with the new settings).
#[utoipa::path(patch, path = "/api/v1/bots/{bot_id}", tag = "bots", request_body = BotPatchIn,
    security(("api_key" = [])), params(("bot_id" = String, Path)),
    responses((status = 200, body = BotOut), (status = 404, body = ErrorBody),
        (status = 409, description = "another bot of the workspace has this name, or one of its links cannot open with the new settings (nothing was changed)", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_bot(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Json(input): Json<BotPatchIn>,
) -> Result<axum::Json<BotOut>, ApiError> {
    auth.admin()?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let name = input.name.as_deref().map(check_name).transpose()?;
    let mut upsert = Vec::new();
    let mut remove = Vec::new();
    for (name, ch) in &input.channels {
        let channel = parse_channel(name)?;
        match ch {
            Some(ch) => {
                let old = bot
                    .channels
                    .iter()
                    .find(|c| c.channel == channel)
                    .and_then(|c| c.secrets.as_deref());
                upsert.push(with_rate_limit(
                    channel_row(
                        state.secret(),
                        &bot.id,
                        channel,
                        &ch.public(),
                        &ch.secrets(),
                        old,
                    )?,
                    ch,
                )?);
            }
            None => remove.push(channel),
        }
    }
    let changed: Vec<Channel> = input
        .channels
        .keys()
        .filter_map(|name| name.parse().ok())
        .collect();
    let relink = relink(state.public_url().to_owned(), changed);
    let (bot, relinked) = state
        .bots()
        .update_bot_and_links(
            &auth.workspace_id,
            &bot.id,
            BotPatch {
                name,
                upsert_channels: upsert,
                remove_channels: remove,
            },
            Some(&relink),
            crate::util::now_ms(),
        )
        .await?;
    // On PostgreSQL the other instances hear of each link changed, from its trigger.
    for link in &relinked {
        state.forget_link(link);
    }
    Ok(axum::Json(bot_out(&bot)))
}

/// Delete a bot with its entry points, links and their clicks.
#[utoipa::path(delete, path = "/api/v1/bots/{bot_id}", tag = "bots", security(("api_key" = [])),
    params(("bot_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_bot(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.admin()?;
    state
        .bots()
        .delete_bot(&auth.workspace_id, &BotId::from(bot_id.clone()))
        .await
        .map_err(|e| not_found(e, "bot", &bot_id))?;
    // Its links went with it (on PostgreSQL the other instances hear of each one deleted,
    // from its trigger). Bots are rarely deleted: forgetting every cached link is simpler
    // than finding the bot's first.
    state.forget_all_links();
    Ok(StatusCode::NO_CONTENT)
}
