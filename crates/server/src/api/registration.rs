//! `POST /api/v1/bots/{bot_id}/channels/{channel}/webhook`: tells the platform where to send
//! the bot's updates (`<public-url>/webhooks/<channel>/<bot_id>`). Telegram (`setWebhook`) and
//! MAX (`/subscriptions`) get a secret botlink makes and keeps as the channel's
//! `webhook_secret` (unless one is set); Viber (`set_webhook`) signs with the bot's token.
//! Meta's apps and LINE register in their consoles: the answer says where, with the URL to
//! paste.

use axum::extract::{Path, State};
use botlink_core::Channel;
use rand::distr::{Alphanumeric, SampleString};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::{ApiError, ErrorBody};
use crate::app::AppState;
use crate::domain::bots::with_secret;
use crate::domain::links::parse_channel;
use crate::flow::creds::{channel_of, secrets_of, sender};
use crate::outbound::channels::RegistrationOutcome;
use crate::store::BotPatch;

/// What the registration did.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOut {
    /// The URL the platform posts the bot's updates to.
    pub webhook_url: String,
    /// `true` when the platform confirmed it; `false` when it must be pasted in the
    /// platform's console (`instructions` says where).
    pub registered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register_webhook))
}

/// Register botlink's webhook URL with the platform.
#[utoipa::path(post, path = "/api/v1/bots/{bot_id}/channels/{channel}/webhook", tag = "bots",
    security(("api_key" = [])),
    params(("bot_id" = String, Path), ("channel" = crate::api::bots::ChannelName, Path)),
    responses((status = 200, body = WebhookOut), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 502, description = "the platform refused (its answer is in the message)", body = ErrorBody)))]
pub async fn register_webhook(
    State(state): State<AppState>,
    auth: Auth,
    Path((bot_id, channel)): Path<(String, String)>,
) -> Result<axum::Json<WebhookOut>, ApiError> {
    auth.admin()?;
    let channel = parse_channel(&channel)?;
    let mut bot = load_bot(&state, &auth, &bot_id).await?;
    if channel_of(&bot, channel).is_err() {
        return Err(ApiError::NotFound(format!(
            "the {channel} channel of bot {bot_id:?} (add it to the bot first)"
        )));
    }
    if channel == Channel::Webchat {
        return Err(ApiError::invalid(
            "no_webhook",
            "the web chat is served by botlink itself: it has no webhook to register",
        ));
    }
    let webhook_url = format!("{}/webhooks/{channel}/{}", state.public_url(), bot.id);
    // Telegram and MAX send back a secret of botlink's choosing: make one if the channel has
    // none, and keep it before the platform is told (an update may come at once).
    let mut secret = String::new();
    if matches!(channel, Channel::Telegram | Channel::Max) {
        let secrets = secrets_of(state.secret(), &bot, channel).map_err(ApiError::internal)?;
        secret = match secrets.get("webhook_secret").filter(|s| !s.is_empty()) {
            Some(s) => s.clone(),
            None => {
                let made = Alphanumeric.sample_string(&mut rand::rng(), 48);
                let row = with_secret(
                    state.secret(),
                    &bot.id,
                    channel_of(&bot, channel).expect("checked above"),
                    "webhook_secret",
                    &made,
                )?;
                let _turn = state.write_turn();
                bot = state
                    .bots()
                    .update_bot(
                        &auth.workspace_id,
                        &bot.id,
                        BotPatch {
                            upsert_channels: vec![row],
                            ..BotPatch::default()
                        },
                        crate::util::now_ms(),
                    )
                    .await?;
                made
            }
        };
    }
    let sender = sender(state.secret(), &bot, channel)
        .map_err(|e| ApiError::invalid("invalid_channel_settings", e.to_string()))?;
    let outcome = sender
        .register_webhook(
            &state.flow_context().outbound,
            &webhook_url,
            &secret,
            crate::util::now_ms(),
        )
        .await;
    match outcome {
        RegistrationOutcome::Registered => Ok(axum::Json(WebhookOut {
            webhook_url,
            registered: true,
            instructions: None,
        })),
        RegistrationOutcome::Manual {
            console,
            webhook_url,
        } => Ok(axum::Json(WebhookOut {
            webhook_url,
            registered: false,
            instructions: Some(console.to_owned()),
        })),
        RegistrationOutcome::NotRegistered(why) => Err(ApiError::Upstream(format!(
            "{channel} did not register the webhook: {why:?}"
        ))),
    }
}
