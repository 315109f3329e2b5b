//! One HTTP server on `127.0.0.1:0` serving the send APIs of every messenger platform botlink
//! writes to, at the platforms' own paths, so that a channel's `api_base_url` can point at it in
//! place of the platform's origin (`https://api.telegram.org`, `https://chatapi.viber.com`,
//! `https://graph.facebook.com`, `https://api.line.me`, `https://platform-api2.max.ru`).
//!
//! What it serves, each platform in a file of its own under `messenger/`, which cites the
//! platform's rules it follows:
//!
//! | platform | calls |
//! |---|---|
//! | Telegram (`telegram.rs`) | `/bot<token>/sendMessage`, `setWebhook`, `deleteWebhook`, `getWebhookInfo`, `getMe` |
//! | Viber (`viber.rs`) | `POST /pa/send_message`, `POST /pa/set_webhook` |
//! | Messenger, Instagram (`meta.rs`) | `POST /<version>/me/messages` (or `/<page id>/messages`) |
//! | WhatsApp Cloud API (`whatsapp.rs`) | `POST /<version>/<phone number id>/messages` |
//! | LINE (`line.rs`) | `POST /v2/bot/message/push` |
//! | MAX (`max.rs`) | `POST /messages?user_id=` or `?chat_id=`, `POST /subscriptions` |
//!
//! A send that the platform would accept is recorded ([`FakeMessenger::messages`]). Before that,
//! in this order, it may be refused: by an injected failure ([`FakeMessenger::fail_next`]), by the
//! platform's rate limits ([`Limits`], measured over a sliding window), because the person blocked
//! the bot ([`FakeMessenger::block`]), or because the 24-hour window of Messenger and WhatsApp is
//! closed ([`FakeMessenger::outside_window`]). Each refusal is answered in the platform's own words.

mod line;
mod max;
mod meta;
mod telegram;
mod viber;
mod whatsapp;

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A messenger platform the fake stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Platform {
    Telegram,
    Viber,
    /// Messenger and Instagram: one Send API on the Graph API, authorised by a page token.
    Messenger,
    /// The WhatsApp Cloud API, on the Graph API.
    WhatsApp,
    Line,
    Max,
}

/// A message the fake accepted, as the platform would have delivered it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub platform: Platform,
    /// Who sent it: the bot token (Telegram, Viber, LINE, MAX), the page access token
    /// (Messenger, Instagram), or the phone number id (WhatsApp).
    pub bot: String,
    /// To whom: `chat_id`, Viber's `receiver`, `recipient.id`, WhatsApp's `to`, LINE's `to`, or
    /// MAX's `user_id` / `chat_id` (written `user:<id>` / `chat:<id>`).
    pub chat_id: String,
    /// The message's text, as the person reads it: a button template's or an interactive
    /// message's text too (LINE: the texts of one push, one a line; empty when there is none,
    /// e.g. a WhatsApp template).
    pub text: String,
    /// The request's parameters as the platform read them (Telegram's query, form and JSON
    /// merged, `reply_markup` parsed), for the fields a test wants to check.
    pub body: Value,
    pub at: Instant,
}

/// At most `count` sends in any window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    pub const fn new(count: u32, per: Duration) -> Rate {
        Rate { count, per }
    }

    pub const fn per_second(count: u32) -> Rate {
        Rate::new(count, Duration::from_secs(1))
    }
}

/// The send rates a platform enforces on one bot (token, page, number), over a sliding window.
/// A send beyond either is answered as the platform answers a flood, counted in
/// [`FakeMessenger::over_limit_429s`], and not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// All of the bot's sends.
    pub per_bot: Option<Rate>,
    /// The bot's sends to one chat.
    pub per_chat: Option<Rate>,
}

impl Limits {
    /// No limits.
    pub const NONE: Limits = Limits {
        per_bot: None,
        per_chat: None,
    };

    /// The limits each platform documents, which a new bot gets.
    pub fn of(platform: Platform) -> Limits {
        match platform {
            // Bot FAQ, "My bot is hitting limits": about 30 messages a second in all, and no more
            // than one a second in a single chat, else 429 with `retry_after`.
            Platform::Telegram => Limits {
                per_bot: Some(Rate::per_second(30)),
                per_chat: Some(Rate::per_second(1)),
            },
            // REST Bot API, send_message: up to 100 messages an hour to a user who has not
            // replied, then status 12. (The count restarts when the user replies; the fake sees
            // no replies, so it does not restart.)
            Platform::Viber => Limits {
                per_bot: None,
                per_chat: Some(Rate::new(100, Duration::from_secs(3600))),
            },
            // Send API: 300 calls a second per page (docs/messengers.md).
            Platform::Messenger => Limits {
                per_bot: Some(Rate::per_second(300)),
                per_chat: None,
            },
            // Cloud API throughput: 80 messages a second per number by default. The pair limit
            // (about one message every 6 s to one person, with bursts allowed) is left to a test
            // that sets it, as a sliding window cannot model the bursts.
            Platform::WhatsApp => Limits {
                per_bot: Some(Rate::per_second(80)),
                per_chat: None,
            },
            // Messaging API rate limits: 2,000 push requests a second per channel.
            Platform::Line => Limits {
                per_bot: Some(Rate::per_second(2_000)),
                per_chat: None,
            },
            // platform-api: 30 requests a second per bot; POST /messages: at most two messages a
            // second into one dialog, group or channel.
            Platform::Max => Limits {
                per_bot: Some(Rate::per_second(30)),
                per_chat: Some(Rate::per_second(2)),
            },
        }
    }
}

/// A failure the fake answers in place of the next sends (see [`FakeMessenger::fail_next`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The platform's answer to a flood: Telegram 429 with `retry_after`, Viber status 12,
    /// Messenger error 613, WhatsApp 130429, LINE 429, MAX 429. `retry_after` is in seconds and
    /// reaches the client only where the platform says it (Telegram's `parameters.retry_after`;
    /// Meta's `X-Business-Use-Case-Usage`, in minutes).
    TooManyRequests { retry_after: u32 },
    /// An HTTP 5xx with the platform's error body.
    ServerError(u16),
    /// No answer at all, until the client gives up (or the fake is dropped).
    Hang,
    /// The usual answer, after a delay.
    Slow(Duration),
}

/// A webhook a bot registered with the platform (Telegram `setWebhook`, Viber `set_webhook`,
/// MAX `POST /subscriptions`).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSetting {
    pub url: String,
    /// Telegram's `secret_token`, MAX's `secret`.
    pub secret: Option<String>,
    /// The whole request, for the other fields (`allowed_updates`, `event_types`, ...).
    pub body: Value,
}

/// See the module documentation. Dropped, it stops serving.
pub struct FakeMessenger {
    addr: SocketAddr,
    fake: Arc<Fake>,
}

impl FakeMessenger {
    /// Starts the fake on `127.0.0.1:0`, with no bots: every credential is refused until added.
    pub async fn start() -> FakeMessenger {
        let listener = super::bind_any().await;
        let addr = listener.local_addr().expect("local address");
        let (sent_count, _) = watch::channel(0);
        let fake = Arc::new(Fake {
            state: Mutex::new(FakeState::default()),
            sent_count,
            stop: CancellationToken::new(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(5))
                .build()
                .expect("an HTTP client"),
        });
        let router = Router::new().fallback(dispatch).with_state(fake.clone());
        super::serve(listener, router, fake.stop.clone());
        FakeMessenger { addr, fake }
    }

    /// `http://127.0.0.1:<port>`: what replaces the platform's origin in `api_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Accepts a Telegram bot token (`<bot id>:<secret>`).
    pub fn add_telegram_bot(&self, token: &str) {
        self.add(Platform::Telegram, token, None);
    }

    /// Accepts a Viber bot's authentication token.
    pub fn add_viber_bot(&self, token: &str) {
        self.add(Platform::Viber, token, None);
    }

    /// Accepts a page access token for Messenger and Instagram.
    pub fn add_meta_page(&self, page_access_token: &str) {
        self.add(Platform::Messenger, page_access_token, None);
    }

    /// Accepts a WhatsApp business phone number, which `access_token` may send from.
    pub fn add_whatsapp_number(&self, phone_number_id: &str, access_token: &str) {
        self.add(
            Platform::WhatsApp,
            phone_number_id,
            Some(access_token.to_owned()),
        );
    }

    /// Accepts a LINE channel access token.
    pub fn add_line_channel(&self, channel_access_token: &str) {
        self.add(Platform::Line, channel_access_token, None);
    }

    /// Accepts a MAX bot token.
    pub fn add_max_bot(&self, token: &str) {
        self.add(Platform::Max, token, None);
    }

    fn add(&self, platform: Platform, key: &str, access_token: Option<String>) {
        self.fake.state().bots.insert(
            (platform, key.to_owned()),
            Bot {
                limits: Limits::of(platform),
                access_token,
                ..Bot::default()
            },
        );
    }

    /// Sets the rate limits of `bot` (as in [`SentMessage::bot`]), in place of its platform's. A
    /// limit counts the sends made while it is set.
    pub fn set_limits(&self, bot: &str, limits: Limits) {
        for b in self.fake.state().bots_named(bot) {
            b.limits = limits;
        }
    }

    /// Answers the next `n` sends, of any bot, with `failure` (after a bot's own
    /// [`FakeMessenger::fail_next_for`]). Only sends: `setWebhook`, `getMe` and the like answer
    /// as usual.
    pub fn fail_next(&self, n: usize, failure: Failure) {
        self.fake
            .state()
            .failures
            .extend(std::iter::repeat_n(failure, n));
    }

    /// Answers the next `n` sends of `bot` (as in [`SentMessage::bot`]) with `failure`.
    pub fn fail_next_for(&self, bot: &str, n: usize, failure: Failure) {
        for b in self.fake.state().bots_named(bot) {
            b.failures.extend(std::iter::repeat_n(failure.clone(), n));
        }
    }

    /// Makes `chat_id` a person who blocked the bot, on every platform: Telegram 403 "Forbidden:
    /// bot was blocked by the user", Viber status 6, Messenger error 551, WhatsApp 131026, MAX
    /// 403 `chat.denied`; LINE answers 200 and drops the message, as LINE does.
    pub fn block(&self, chat_id: &str) {
        self.fake.state().blocked.insert(chat_id.to_owned());
    }

    /// Undoes [`FakeMessenger::block`].
    pub fn unblock(&self, chat_id: &str) {
        self.fake.state().blocked.remove(chat_id);
    }

    /// Makes `chat_id`'s last message older than 24 hours, for the platforms that have the
    /// window: Messenger then refuses all but a `MESSAGE_TAG` send with a valid `tag` (error 10,
    /// subcode 2018278), WhatsApp all but a template (131047).
    pub fn outside_window(&self, chat_id: &str) {
        self.fake.state().outside_window.insert(chat_id.to_owned());
    }

    /// Undoes [`FakeMessenger::outside_window`], as a new message from the person would.
    pub fn inside_window(&self, chat_id: &str) {
        self.fake.state().outside_window.remove(chat_id);
    }

    /// Every message accepted so far, in order.
    pub fn messages(&self) -> Vec<SentMessage> {
        self.fake.state().sent.clone()
    }

    /// Waits until at least `n` messages have been accepted, or `timeout` has passed; returns
    /// them all (fewer than `n` if the time ran out).
    pub async fn wait_for_messages(&self, n: usize, timeout: Duration) -> Vec<SentMessage> {
        let mut count = self.fake.sent_count.subscribe();
        let _ = tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await;
        self.messages()
    }

    /// Forgets the messages accepted so far (counters, switches and rate windows stay).
    pub fn clear(&self) {
        let mut state = self.fake.state();
        state.sent.clear();
        self.fake.sent_count.send_replace(0);
    }

    /// Every HTTP request received, whatever its answer.
    pub fn requests(&self) -> usize {
        self.fake.state().requests
    }

    /// Every flood answer given (429, or the platform's equivalent), injected or over a limit.
    pub fn answered_429s(&self) -> usize {
        self.fake.state().answered_429s
    }

    /// The flood answers given because a send went over a [`Limits`] rate.
    pub fn over_limit_429s(&self) -> usize {
        self.fake.state().over_limit_429s
    }

    /// The webhook `bot` (as in [`SentMessage::bot`]) registered on `platform`, if any.
    pub fn webhook(&self, platform: Platform, bot: &str) -> Option<WebhookSetting> {
        let state = self.fake.state();
        state.bots.get(&(platform, bot.to_owned()))?.webhook.clone()
    }
}

impl Drop for FakeMessenger {
    fn drop(&mut self) {
        self.fake.stop.cancel();
    }
}

/// What the server's handlers share.
struct Fake {
    state: Mutex<FakeState>,
    /// How many messages are recorded, for [`FakeMessenger::wait_for_messages`].
    sent_count: watch::Sender<usize>,
    stop: CancellationToken,
    /// For the calls the fake makes itself (Viber's check of a new webhook).
    http: reqwest::Client,
}

#[derive(Default)]
struct FakeState {
    /// By platform and key: the token, or the phone number id for WhatsApp.
    bots: HashMap<(Platform, String), Bot>,
    failures: VecDeque<Failure>,
    blocked: HashSet<String>,
    outside_window: HashSet<String>,
    sent: Vec<SentMessage>,
    requests: usize,
    answered_429s: usize,
    over_limit_429s: usize,
    /// The last number given to a message, a trace id or a request id.
    last_number: u64,
}

#[derive(Default)]
struct Bot {
    limits: Limits,
    /// WhatsApp: the access token the number accepts.
    access_token: Option<String>,
    failures: VecDeque<Failure>,
    /// When the bot's recent sends were admitted, oldest first.
    sends: VecDeque<Instant>,
    sends_by_chat: HashMap<String, VecDeque<Instant>>,
    webhook: Option<WebhookSetting>,
    /// LINE's `X-Line-Retry-Key`s already accepted, with the answer given then.
    retry_keys: HashMap<String, Value>,
}

impl FakeState {
    fn bots_named<'a>(&'a mut self, key: &'a str) -> impl Iterator<Item = &'a mut Bot> + 'a {
        self.bots
            .iter_mut()
            .filter(move |((_, k), _)| k == key)
            .map(|(_, b)| b)
    }

    fn next_number(&mut self) -> u64 {
        self.last_number += 1;
        self.last_number
    }
}

/// One send, as a platform module read it from the request.
struct Send {
    platform: Platform,
    bot: String,
    chat_id: String,
    text: String,
    body: Value,
    /// May pass a closed 24-hour window: a Messenger message tag, a WhatsApp template.
    window_exempt: bool,
}

/// Why the fake refused a send that the platform module had read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    TooManyRequests { retry_after: u32, scope: Scope },
    ServerError(u16),
    Blocked,
    OutsideWindow,
}

/// Which flood a [`Refusal::TooManyRequests`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    Injected,
    Bot,
    Chat,
}

impl Fake {
    fn state(&self) -> MutexGuard<'_, FakeState> {
        // A panic under the lock is a bug in the fake: the test fails anyway.
        self.state.lock().expect("the fake's state")
    }

    fn knows(&self, platform: Platform, key: &str) -> bool {
        self.state().bots.contains_key(&(platform, key.to_owned()))
    }

    fn next_number(&self) -> u64 {
        self.state().next_number()
    }

    /// Runs a send through the injected failures, the rate limits, blocks and the 24-hour
    /// window, and records it; returns the message's number.
    async fn send(&self, send: Send) -> Result<u64, Refusal> {
        let key = (send.platform, send.bot.clone());
        let failure = {
            let mut state = self.state();
            let own = state
                .bots
                .get_mut(&key)
                .and_then(|b| b.failures.pop_front());
            own.or_else(|| state.failures.pop_front())
        };
        match failure {
            None => {}
            Some(Failure::TooManyRequests { retry_after }) => {
                self.state().answered_429s += 1;
                return Err(Refusal::TooManyRequests {
                    retry_after,
                    scope: Scope::Injected,
                });
            }
            Some(Failure::ServerError(status)) => return Err(Refusal::ServerError(status)),
            Some(Failure::Hang) => {
                self.stop.cancelled().await;
                return Err(Refusal::ServerError(503));
            }
            Some(Failure::Slow(delay)) => {
                let _ = self
                    .stop
                    .run_until_cancelled(tokio::time::sleep(delay))
                    .await;
            }
        }

        let mut state = self.state();
        let now = Instant::now();
        let bot = state.bots.get_mut(&key).expect("a send from a known bot");
        if let Err((retry_after, scope)) = bot.admit(&send.chat_id, now) {
            state.answered_429s += 1;
            state.over_limit_429s += 1;
            return Err(Refusal::TooManyRequests { retry_after, scope });
        }
        if state.blocked.contains(&send.chat_id) {
            return Err(Refusal::Blocked);
        }
        if state.outside_window.contains(&send.chat_id) && !send.window_exempt {
            return Err(Refusal::OutsideWindow);
        }
        let number = state.next_number();
        state.sent.push(SentMessage {
            platform: send.platform,
            bot: send.bot,
            chat_id: send.chat_id,
            text: send.text,
            body: send.body,
            at: now,
        });
        self.sent_count.send_replace(state.sent.len());
        Ok(number)
    }
}

impl Bot {
    /// Admits a send at `now` if the bot's and the chat's windows have room, and counts it in
    /// both; else says how long until the fuller one has room (whole seconds, at least 1, as
    /// Telegram's `retry_after`).
    fn admit(&mut self, chat_id: &str, now: Instant) -> Result<(), (u32, Scope)> {
        // Chats are counted only under a per-chat limit, so that a bot without one keeps no
        // window for each of its chats.
        let mut chat_sends = self
            .limits
            .per_chat
            .map(|_| self.sends_by_chat.entry(chat_id.to_owned()).or_default());
        let bot_wait = wait(&mut self.sends, self.limits.per_bot, now);
        let chat_wait = chat_sends
            .as_deref_mut()
            .and_then(|sends| wait(sends, self.limits.per_chat, now));
        let refused = match (bot_wait, chat_wait) {
            (Some(b), Some(c)) if c > b => Some((c, Scope::Chat)),
            (Some(b), _) => Some((b, Scope::Bot)),
            (None, Some(c)) => Some((c, Scope::Chat)),
            (None, None) => None,
        };
        if let Some((w, scope)) = refused {
            return Err((w.as_secs_f64().ceil().max(1.0) as u32, scope));
        }
        if self.limits.per_bot.is_some() {
            self.sends.push_back(now);
        }
        if let Some(sends) = chat_sends {
            sends.push_back(now);
        }
        Ok(())
    }
}

/// Drops the sends that left the window; `None` if there is room for one more, else how long
/// until the oldest leaves.
fn wait(sends: &mut VecDeque<Instant>, rate: Option<Rate>, now: Instant) -> Option<Duration> {
    let rate = rate?;
    while sends
        .front()
        .is_some_and(|t| now.duration_since(*t) >= rate.per)
    {
        sends.pop_front();
    }
    if sends.len() < rate.count as usize {
        return None;
    }
    let oldest = *sends.front()?;
    Some(rate.per - now.duration_since(oldest))
}

/// One request, as the platform modules read it.
struct Call {
    method: Method,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Call {
    fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The token of `Authorization: Bearer <token>`.
    fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim())
    }

    fn content_type(&self) -> &str {
        self.header("content-type")
            .and_then(|v| v.split(';').next())
            .map(str::trim)
            .unwrap_or("")
    }

    /// The body as a JSON object.
    fn json_object(&self) -> Option<serde_json::Map<String, Value>> {
        match serde_json::from_slice(&self.body) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }
}

fn json(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Reads a request and hands it to its platform by path.
async fn dispatch(
    AxumState(fake): AxumState<Arc<Fake>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.state().requests += 1;
    let query = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let call = Call {
        method,
        path: uri.path().to_owned(),
        query,
        headers,
        body,
    };
    if let Some(rest) = call.path.strip_prefix("/bot") {
        let rest = rest.to_owned();
        return telegram::handle(&fake, &call, &rest).await;
    }
    match call.path.as_str() {
        "/pa/send_message" | "/pa/set_webhook" => viber::handle(&fake, &call).await,
        "/v2/bot/message/push" => line::handle(&fake, &call).await,
        "/messages" | "/subscriptions" => max::handle(&fake, &call).await,
        path => match graph_messages_node(path) {
            Some(node) if whatsapp::is_whatsapp(&fake, &call, &node) => {
                whatsapp::handle(&fake, &call, &node).await
            }
            Some(_) => meta::handle(&fake, &call).await,
            None => (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain")],
                "no such API in the fake",
            )
                .into_response(),
        },
    }
}

/// The node of a Graph API `POST [/<version>]/<node>/messages` (`me`, a page id or a phone
/// number id).
fn graph_messages_node(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.first().is_some_and(|p| is_graph_version(p)) {
        parts.remove(0);
    }
    match parts.as_slice() {
        [node, "messages"] if !node.is_empty() => Some((*node).to_owned()),
        _ => None,
    }
}

/// `v23.0`, `v2`: how the Graph API versions its paths.
fn is_graph_version(segment: &str) -> bool {
    segment.strip_prefix('v').is_some_and(|v| {
        !v.is_empty()
            && v.split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sliding_window_admits_its_count_then_says_how_long_to_wait() {
        let t0 = Instant::now();
        let mut sends = VecDeque::new();
        let rate = Some(Rate::new(2, Duration::from_secs(1)));
        assert_eq!(wait(&mut sends, rate, t0), None);
        sends.push_back(t0);
        sends.push_back(t0 + Duration::from_millis(400));
        assert_eq!(
            wait(&mut sends, rate, t0 + Duration::from_millis(500)),
            Some(Duration::from_millis(500))
        );
        // The first send has left the window: room for one.
        assert_eq!(wait(&mut sends, rate, t0 + Duration::from_secs(1)), None);
        assert_eq!(sends.len(), 1);
        assert_eq!(wait(&mut sends, None, t0), None);
    }

    #[test]
    fn graph_paths_name_their_node() {
        assert_eq!(
            graph_messages_node("/v23.0/me/messages").as_deref(),
            Some("me")
        );
        assert_eq!(graph_messages_node("/me/messages").as_deref(), Some("me"));
        assert_eq!(
            graph_messages_node("/v21.0/106540352242922/messages").as_deref(),
            Some("106540352242922")
        );
        assert_eq!(graph_messages_node("/v23.0/me/message_attachments"), None);
        assert_eq!(graph_messages_node("/messages"), None);
        assert!(!is_graph_version("v"));
        assert!(!is_graph_version("v1..0"));
    }
}
