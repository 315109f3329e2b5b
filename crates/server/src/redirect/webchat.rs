//! `GET /chat/{bot}`: where a web chat link leads (`?ref=` carries the link's parameter). The
//! web chat itself is not built yet; until it is, this page says so and offers the bot's
//! other messengers, so that a web chat link is never a dead end.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use botlink_core::Channel;
use botlink_core::link::{LinkSpec, build_link};
use serde::Deserialize;

use crate::app::AppState;
use crate::domain::bots::identifier;
use crate::redirect::pages;

pub fn router() -> Router<AppState> {
    Router::new().route("/chat/{bot}", get(chat))
}

#[derive(Debug, Deserialize)]
struct ChatQuery {
    /// The link's parameter, as the web chat deep link carries it.
    #[serde(rename = "ref")]
    reference: Option<String>,
}

fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(html),
    )
        .into_response()
}

async fn chat(
    State(state): State<AppState>,
    Path(bot): Path<String>,
    Query(query): Query<ChatQuery>,
) -> Response {
    let bot = match state.bots().bot_by_webchat_id(&bot).await {
        Ok(Some(bot)) => bot,
        Ok(None) => {
            return page(
                StatusCode::NOT_FOUND,
                pages::message(
                    "Chat not found",
                    "There is no chat at this address. Check that the link was copied whole.",
                ),
            );
        }
        Err(e) => {
            state.redirect_db_failed("looking up a web chat's bot", &e);
            return page(
                StatusCode::SERVICE_UNAVAILABLE,
                pages::message(
                    "Try again in a moment",
                    "The chat service is busy. Please retry.",
                ),
            );
        }
    };
    let public_url = state.public_url();
    let reference = query.reference.as_deref().filter(|r| !r.is_empty());
    let others: Vec<(Channel, String)> = bot
        .channels
        .iter()
        .filter_map(|bc| {
            let channel = bc.channel;
            if channel == Channel::Webchat {
                return None;
            }
            let ident = identifier(&bot.id, bc)?;
            // A link's parameter is the same in each of its channels (signed or not, and a
            // stored link's with the click's id): carried into the other messengers' deep
            // links, it tells the bot which link, and which click, brought the customer, as
            // the web chat would have. One a messenger does not take (too long, characters it
            // drops) is left out of that messenger's link: its chat still opens, untagged,
            // rather than not at all.
            let tagged = reference.and_then(|r| {
                crate::domain::linkgen::deep_link(channel, &ident, r, None, public_url).ok()
            });
            let url = match tagged {
                Some(d) => d.url,
                None => build_link(&LinkSpec::new(channel, &ident, None)).ok()?.url,
            };
            pages::is_safe_target(&url, public_url).then_some((channel, url))
        })
        .collect();
    page(StatusCode::OK, pages::webchat_coming(&bot.name, &others))
}
