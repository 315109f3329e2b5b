//! `POST /webhooks/{channel}/{bot_id}`: what the messengers send. Each update is verified on
//! the raw bytes, before anything parses them, with the channel's own scheme (constant-time
//! compares), read into events, stored durably and deduplicated on the platform's event id,
//! and answered 200 at once; the inbox worker (`flow::start`) does the rest.
//!
//! | channel | verified by |
//! |---|---|
//! | telegram | `X-Telegram-Bot-Api-Secret-Token` = the channel's `webhook_secret` |
//! | viber | `X-Viber-Content-Signature` = hex HMAC-SHA256 of the body keyed by `token` |
//! | messenger, instagram, whatsapp | `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 keyed by app_secret>`; `GET` answers the `hub.challenge` handshake with `verify_token` |
//! | line | `X-Line-Signature` = Base64 HMAC-SHA256 keyed by `channel_secret` |
//! | max | `X-Max-Bot-Api-Secret` = `webhook_secret` |
//! | custom | Standard Webhooks headers signed with `webhook_secret` |

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::post;
use botlink_core::signature::{self, standard_webhooks};
use botlink_core::{Channel, Inbound, InboundKind, inbound};
use serde::Deserialize;

use crate::api::error::{ApiError, RawBody};
use crate::app::AppState;
use crate::flow::creds::{channel_of, secrets_of};
use crate::store::{Bot, BotId};

pub fn router() -> Router<AppState> {
    Router::new().route("/webhooks/{channel}/{bot_id}", post(receive).get(handshake))
}

/// The channel a webhook path names: exactly its lowercase name; the web chat takes no
/// webhooks.
fn webhook_channel(name: &str) -> Result<Channel, ApiError> {
    Channel::ALL
        .into_iter()
        .find(|c| c.as_str() == name && *c != Channel::Webchat)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "webhook channel {name:?} (use telegram, viber, messenger, instagram, whatsapp, line, max or custom)"
            ))
        })
}

/// The bot the path names, with the channel configured.
async fn bot_with_channel(
    state: &AppState,
    bot_id: &str,
    channel: Channel,
) -> Result<Bot, ApiError> {
    let bot = state
        .bots()
        .bot_by_id(&BotId::from(bot_id))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("bot {bot_id:?}")))?;
    channel_of(&bot, channel)
        .map_err(|_| ApiError::NotFound(format!("the {channel} channel of bot {bot_id:?}")))?;
    Ok(bot)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers.get(name).map(|v| v.as_bytes())
}

/// Verifies the update's signature and reads its events.
fn verify_and_read(
    channel: Channel,
    bot: &Bot,
    secrets: &crate::domain::bots::ChannelSecrets,
    headers: &HeaderMap,
    body: &[u8],
    now_secs: i64,
) -> Result<Vec<Inbound>, ApiError> {
    let secret = |name: &str| -> Result<&str, ApiError> {
        secrets
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                ApiError::InvalidSignature(format!(
                    "the bot's {channel} channel has no {name} to verify updates with: set it on the bot"
                ))
            })
    };
    let verified = match channel {
        Channel::Telegram => signature::verify_telegram(
            header(headers, signature::TELEGRAM_HEADER),
            secret("webhook_secret")?,
        ),
        Channel::Max => signature::verify_max(
            header(headers, signature::MAX_HEADER),
            secret("webhook_secret")?,
        ),
        Channel::Viber => signature::verify_viber(
            header(headers, signature::VIBER_HEADER),
            body,
            secret("token")?,
        ),
        Channel::Messenger | Channel::Instagram | Channel::Whatsapp => signature::verify_hub(
            header(headers, signature::HUB_HEADER),
            body,
            secret("app_secret")?,
        ),
        Channel::Line => signature::verify_line(
            header(headers, signature::LINE_HEADER),
            body,
            secret("channel_secret")?,
        ),
        Channel::Custom => {
            let key = standard_webhooks::Secret::parse(secret("webhook_secret")?).map_err(|e| {
                ApiError::InvalidSignature(format!(
                    "the custom channel's webhook_secret is not a whsec_ secret ({e}): set one on the bot"
                ))
            })?;
            standard_webhooks::verify(
                &key,
                header(headers, standard_webhooks::ID_HEADER),
                header(headers, standard_webhooks::TIMESTAMP_HEADER),
                header(headers, standard_webhooks::SIGNATURE_HEADER),
                body,
                now_secs,
                standard_webhooks::DEFAULT_TOLERANCE_SECS,
            )
        }
        Channel::Webchat => unreachable!("refused by webhook_channel"),
    };
    verified.map_err(|e| ApiError::InvalidSignature(format!("{e}: nothing was stored")))?;
    let marker = botlink_core::link::TEXT_MARKER;
    let username = channel_of(bot, channel)
        .ok()
        .and_then(|c| c.settings.get("username"))
        .and_then(|v| v.as_str());
    let read = match channel {
        Channel::Telegram => inbound::telegram(body, username),
        Channel::Viber => inbound::viber(body),
        Channel::Messenger => inbound::messenger(body),
        Channel::Instagram => inbound::instagram(body),
        Channel::Whatsapp => inbound::whatsapp(body, marker),
        Channel::Line => inbound::line(body, marker),
        Channel::Max => inbound::max(body),
        Channel::Custom => inbound::custom(body),
        Channel::Webchat => unreachable!("refused by webhook_channel"),
    };
    let events =
        read.map_err(|e| ApiError::BadRequest(format!("the {channel} update does not read: {e}")))?;
    Ok(match channel {
        Channel::Line => without_follows_a_start_supersedes(events),
        _ => events,
    })
}

/// A LINE batch without the `follow`s the same batch follows with that chat's Start: a new
/// friend who sends the text a link pre-filled (`follow`, then the marker message). The Start
/// subscribes the contact and runs the start node attributed to the link; the follow would run
/// it once more before, unattributed, greeting the person twice and reporting them to the CRM
/// without their customer id.
fn without_follows_a_start_supersedes(events: Vec<Inbound>) -> Vec<Inbound> {
    let superseded: Vec<bool> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            matches!(e.kind, InboundKind::Subscribed)
                && events[i + 1..].iter().any(|later| {
                    later.chat_id == e.chat_id
                        && matches!(later.kind, InboundKind::Start { param: Some(_) })
                })
        })
        .collect();
    events
        .into_iter()
        .zip(superseded)
        .filter_map(|(e, superseded)| (!superseded).then_some(e))
        .collect()
}

/// Receives one update.
async fn receive(
    State(state): State<AppState>,
    Path((channel, bot_id)): Path<(String, String)>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let channel = webhook_channel(&channel)?;
    let bot = bot_with_channel(&state, &bot_id, channel).await?;
    let secrets = secrets_of(state.secret(), &bot, channel).map_err(ApiError::internal)?;
    let now = crate::util::now_ms();
    let events = verify_and_read(channel, &bot, &secrets, &headers, &body, now / 1000)?;
    let _turn = state.write_turn();
    let new = state.flow().receive(&bot.id, channel, &events, now).await?;
    if new > 0 {
        state.wake().inbox.notify_one();
    }
    Ok(axum::Json(serde_json::json!({"ok": true, "received": new})))
}

#[derive(Debug, Deserialize)]
struct Handshake {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake (Messenger, Instagram, WhatsApp): the challenge echoed when
/// the verify token matches, else 403.
async fn handshake(
    State(state): State<AppState>,
    Path((channel, bot_id)): Path<(String, String)>,
    Query(q): Query<Handshake>,
) -> Result<axum::response::Response, ApiError> {
    let channel = webhook_channel(&channel)?;
    if !matches!(
        channel,
        Channel::Messenger | Channel::Instagram | Channel::Whatsapp
    ) {
        return Err(ApiError::NotFound(format!(
            "a GET handshake for {channel} (only Messenger, Instagram and WhatsApp have one)"
        )));
    }
    let bot = bot_with_channel(&state, &bot_id, channel).await?;
    let secrets = secrets_of(state.secret(), &bot, channel).map_err(ApiError::internal)?;
    let verify_token = secrets
        .get("verify_token")
        .map(String::as_str)
        .unwrap_or("");
    match signature::hub_challenge(
        q.mode.as_deref(),
        q.verify_token.as_deref(),
        q.challenge.as_deref(),
        verify_token,
    ) {
        Ok(challenge) => Ok(challenge.to_owned().into_response()),
        Err(e) => Err(ApiError::Forbidden(format!("{e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, chat: &str, kind: InboundKind) -> Inbound {
        Inbound {
            event_id: id.into(),
            user_id: chat.into(),
            chat_id: chat.into(),
            user_name: None,
            language: None,
            kind,
        }
    }

    #[test]
    fn a_follow_before_the_same_chats_start_is_left_to_the_start() {
        let start = |id, chat| {
            event(
                id,
                chat,
                InboundKind::Start {
                    param: Some("l_Ab3dE9xQ".into()),
                },
            )
        };
        let follow = |id, chat| event(id, chat, InboundKind::Subscribed);
        let ids = |events: Vec<Inbound>| -> Vec<String> {
            without_follows_a_start_supersedes(events)
                .into_iter()
                .map(|e| e.event_id)
                .collect()
        };
        assert_eq!(ids(vec![follow("f", "U1"), start("s", "U1")]), ["s"]);
        // Another person's Start, a Start before the follow, a follow alone: kept.
        assert_eq!(ids(vec![follow("f", "U1"), start("s", "U2")]), ["f", "s"]);
        assert_eq!(ids(vec![start("s", "U1"), follow("f", "U1")]), ["s", "f"]);
        assert_eq!(ids(vec![follow("f", "U1")]), ["f"]);
        let plain = event("m", "U1", InboundKind::Message { text: "Hi".into() });
        assert_eq!(ids(vec![follow("f", "U1"), plain]), ["f", "m"]);
    }
}
