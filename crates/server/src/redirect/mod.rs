//! The public side: `GET /l/{code}` and friends. A one-channel link answers 302 to its deep
//! link; a many-channel link answers a page with a button per messenger. Link-preview crawlers
//! get OpenGraph tags and count as previews; HEAD counts as nothing. Every click is queued for
//! the click worker, never written on the request path.

pub mod cache;
pub mod clicks;
pub mod pages;
pub mod qr;
pub mod webchat;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use botlink_core::{Channel, Scheme};

use crate::app::AppState;

use crate::crypto::SecretKey;
use crate::domain::linkgen;
use crate::store::{ClickKind, InlineClickId, InlineLinkId, Link, LinkId, NewClick};
use crate::util::{CLICK_ID_LEN, InlineStr, NewClickId, click_id, day_of, now_ms};

/// A short link ready to follow, as the link cache keeps it: only what redirects need (not
/// the payload, which may be large), with each channel's deep link taken apart once when the
/// link is loaded rather than on every click.
///
/// What nearly every click reads comes first (`repr(C)` keeps the order), in place, beside the
/// `Arc`'s counts: over many links in turn, each pointer a click followed out of the link was
/// a cache miss, most of what finding the link and building its redirect cost.
#[repr(C)]
pub struct Resolved {
    disabled: bool,
    /// The link's channel, when it has only one.
    only: Option<Channel>,
    expires_at: Option<i64>,
    max_clicks: Option<i64>,
    /// The link's id as a click to record holds it.
    queued_id: InlineLinkId,
    /// The click template of the `only` channel's deep link, when it has one that fits.
    only_template: Option<InlineTemplate>,
    id: LinkId,
    code: String,
    slug: Option<String>,
    title: Option<String>,
    /// The link's channels, in the link's order.
    channels: Vec<Channel>,
    /// One per channel with a deep link.
    targets: Vec<Target>,
    /// Signed links (only they): the bot's parameter-signing key.
    key: Option<[u8; 32]>,
}

struct Target {
    channel: Channel,
    /// The deep link as stored.
    url: String,
    /// Stored scheme: the deep link's bot and visible text, to rebuild it with each click's
    /// id.
    stored: Option<StoredTarget>,
}

struct StoredTarget {
    bot: Box<str>,
    text: Option<Box<str>>,
    /// Unsigned links: the deep link with its click id's place marked, filled in per click
    /// instead of building the link again.
    template: Option<ClickTemplate>,
}

/// A deep link whose click id is at `at` (click ids are base62, the same in any URL).
struct ClickTemplate {
    url: String,
    at: usize,
}

impl StoredTarget {
    /// This channel's deep link for one click: the link's code and the click's id in the
    /// parameter, signed with `key` for a signed link.
    fn deep_link(
        &self,
        channel: Channel,
        code: &str,
        click_id: &str,
        key: Option<&[u8; 32]>,
        public_url: &str,
    ) -> Result<String, linkgen::ComposeError> {
        let key = key.map_or(&[][..], |k| &k[..]);
        linkgen::stored_click_param(code, click_id, !key.is_empty(), key)
            .and_then(|p| {
                linkgen::deep_link(channel, &self.bot, &p, self.text.as_deref(), public_url)
            })
            .map(|d| d.url)
    }
}

impl ClickTemplate {
    /// Builds the deep link (with `build`) for two different click ids and keeps it when they
    /// differ in exactly one click id's place; `None` otherwise (then each click builds its
    /// link).
    fn new(build: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let (zeros, zeds) = ([b'0'; CLICK_ID_LEN], [b'z'; CLICK_ID_LEN]);
        let a = build(std::str::from_utf8(&zeros).ok()?)?;
        let b = build(std::str::from_utf8(&zeds).ok()?)?;
        let at = a.bytes().zip(b.bytes()).position(|(x, y)| x != y)?;
        let end = at + CLICK_ID_LEN;
        let marked = a.len() == b.len()
            && a.get(at..end)?.as_bytes() == zeros
            && b.get(at..end)?.as_bytes() == zeds
            && a[end..] == b[end..];
        marked.then_some(ClickTemplate { url: a, at })
    }

    fn with(&self, click_id: &str) -> String {
        let mut url = self.url.clone();
        url.replace_range(self.at..self.at + CLICK_ID_LEN, click_id);
        url
    }
}

/// A [`ClickTemplate`] held in place: the deep links of one-channel links are short.
struct InlineTemplate {
    url: InlineStr<INLINE_TEMPLATE>,
    at: u8,
}

/// The longest deep link an [`InlineTemplate`] holds (a Telegram link with a 32-character bot
/// name and a click id is 78 bytes).
const INLINE_TEMPLATE: usize = 110;

impl InlineTemplate {
    /// `None` when the deep link is too long to hold in place.
    fn new(t: &ClickTemplate) -> Option<Self> {
        if t.url.len() > INLINE_TEMPLATE {
            return None;
        }
        Some(InlineTemplate {
            url: InlineStr::new(&t.url),
            at: t.at.try_into().ok()?,
        })
    }

    fn with(&self, click_id: &str) -> String {
        let url = self.url.as_str();
        let at = usize::from(self.at);
        // The click id's place is ASCII (it held one): both ends are char boundaries.
        [&url[..at], click_id, &url[at + CLICK_ID_LEN..]].concat()
    }
}

impl Resolved {
    /// About how much memory this link takes, with the allocator's overhead: what the link
    /// cache counts.
    pub fn footprint(&self) -> usize {
        const ALLOC: usize = 16;
        let text = |s: &str| s.len() + ALLOC;
        let opt = |s: &Option<String>| s.as_deref().map_or(0, text);
        let targets: usize = self
            .targets
            .iter()
            .map(|t| {
                let stored = t.stored.as_ref().map_or(0, |s| {
                    text(&s.bot)
                        + s.text.as_deref().map_or(0, text)
                        + s.template.as_ref().map_or(0, |t| text(&t.url))
                });
                std::mem::size_of::<Target>() + text(&t.url) + stored
            })
            .sum();
        std::mem::size_of::<Resolved>()
            + 2 * std::mem::size_of::<usize>()
            + ALLOC
            + text(self.id.as_str())
            + text(&self.code)
            + opt(&self.slug)
            + opt(&self.title)
            + self.channels.len()
            + ALLOC
            + targets
            + ALLOC
    }

    pub fn new(link: Link, secret: &SecretKey, public_url: &str) -> Self {
        let stored = link.scheme == Scheme::Stored;
        let mut targets: Vec<Target> = link
            .deep_links
            .into_iter()
            .map(|(channel, d)| {
                let parsed = if stored {
                    match botlink_core::parse_link(&d.url) {
                        Ok(parsed) => {
                            let mut target = StoredTarget {
                                bot: parsed.bot.into(),
                                text: parsed.text.map(Into::into),
                                template: None,
                            };
                            if !link.signed {
                                target.template = ClickTemplate::new(|id| {
                                    target
                                        .deep_link(channel, &link.code, id, None, public_url)
                                        .ok()
                                });
                            }
                            Some(target)
                        }
                        Err(e) => {
                            // Cannot happen for links that passed creation; clicks then go to
                            // the stored deep link, without a click id.
                            tracing::warn!(error = %e, link = %link.id, "a stored deep link does not parse");
                            None
                        }
                    }
                } else {
                    None
                };
                Target {
                    channel,
                    url: d.url,
                    stored: parsed,
                }
            })
            .collect();
        let only = match link.channels.as_slice() {
            &[one] => Some(one),
            _ => None,
        };
        // Held in place, the one channel's template need not be kept twice.
        let only_template = only.and_then(|one| {
            let stored = targets
                .iter_mut()
                .find(|t| t.channel == one)?
                .stored
                .as_mut()?;
            let inline = InlineTemplate::new(stored.template.as_ref()?)?;
            stored.template = None;
            Some(inline)
        });
        Self {
            key: link
                .signed
                .then(|| secret.signing_key(link.bot_id.as_str())),
            only,
            only_template,
            queued_id: InlineLinkId::new(link.id.as_str()),
            channels: link.channels,
            targets,
            id: link.id,
            code: link.code,
            slug: link.slug,
            title: link.title,
            disabled: link.disabled,
            expires_at: link.expires_at,
            max_clicks: link.max_clicks,
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(ROUTE_OPEN, get(open))
        .route("/l/{code}/qr.svg", get(qr_svg))
        .route("/l/{code}/qr.png", get(qr_png))
        .route(ROUTE_CHANNEL, get(open_channel))
}

fn page(status: StatusCode, html: String) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Html(html),
    )
        .into_response()
}

fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        pages::message(
            "Link not found",
            "This link does not exist. Check that it was copied whole.",
        ),
    )
}

fn gone(why: &str) -> Response {
    page(StatusCode::GONE, pages::message("This link has ended", why))
}

fn unavailable() -> Response {
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message(
            "Try again in a moment",
            "This link cannot be opened just now. Please try again in a minute.",
        ),
    )
}

/// Who is asking: the facts a click row needs.
struct Visitor<'a> {
    ip: IpAddr,
    user_agent: &'a str,
    head: bool,
}

/// What a redirect reads of its request.
struct RequestView<'a> {
    method: &'a Method,
    headers: &'a HeaderMap,
}

impl<'a> From<&'a Parts> for RequestView<'a> {
    fn from(parts: &'a Parts) -> Self {
        RequestView {
            method: &parts.method,
            headers: &parts.headers,
        }
    }
}

/// Reads the visitor off the request: the peer's address, or behind a proxy the first
/// `X-Forwarded-For` address (the peer's when that one does not parse).
fn visitor<'a>(state: &AppState, req: &RequestView<'a>, peer: SocketAddr) -> Visitor<'a> {
    let headers = &req.headers;
    let forwarded = state
        .config()
        .behind_proxy
        .then(|| {
            headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .and_then(|s| s.trim().parse().ok())
        })
        .flatten();
    Visitor {
        ip: forwarded.unwrap_or(peer.ip()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
        head: req.method == Method::HEAD,
    }
}

/// Looks a link up (in the link cache, else the database) and checks that it may be followed
/// now.
async fn live_link(state: &AppState, code: &str) -> Result<Arc<Resolved>, Response> {
    match state.resolve_link(code).await {
        Ok(Some(l)) => followable(l).map_err(Ended::page),
        Ok(None) => Err(not_found()),
        Err(e) => {
            state.redirect_db_failed("resolving a short link", &e);
            Err(unavailable())
        }
    }
}

/// Why a link may not be followed now.
#[derive(Debug, Clone, Copy)]
enum Ended {
    SwitchedOff,
    Expired,
    /// Its bot no longer has any of its channels.
    NoChannels,
}

impl Ended {
    /// The page that says so.
    fn page(self) -> Response {
        gone(match self {
            Ended::SwitchedOff => "The owner of this link has switched it off.",
            Ended::Expired => "This link has expired.",
            Ended::NoChannels => {
                "This link's chat is no longer open in any of the messengers it offered."
            }
        })
    }
}

/// The link, if it may be followed now.
fn followable(link: Arc<Resolved>) -> Result<Arc<Resolved>, Ended> {
    if link.disabled {
        return Err(Ended::SwitchedOff);
    }
    if link.expires_at.is_some_and(|t| t <= now_ms()) {
        return Err(Ended::Expired);
    }
    // A one-channel link's channel is in place: its list would be a cache miss more.
    if link.only.is_none() && link.channels.is_empty() {
        return Err(Ended::NoChannels);
    }
    Ok(link)
}

/// A click (or a preview) of `link` by `v` at `at`, ready for the queue.
fn queued(
    state: &AppState,
    link: &Resolved,
    channel: Option<Channel>,
    kind: ClickKind,
    v: &Visitor<'_>,
    at: i64,
    id: NewClickId,
) -> NewClick {
    NewClick {
        id: InlineClickId::new(id.as_str()),
        link_id: link.queued_id.clone(),
        channel,
        kind,
        at,
        visitor: Some(state.visitor_hash(day_of(at), v.ip, v.user_agent)),
    }
}

/// What following a link comes to, decided without waiting for anything.
// Made and taken apart at once, by value: boxing the answer would cost every click an
// allocation to spare the rare use-taking case a few bytes.
#[allow(clippy::large_enum_variant)]
enum Follow {
    /// This answer, once this click (or preview), if any, is queued.
    Answer(Response, Option<NewClick>),
    /// The link caps its clicks: one of its uses must be taken (in the database) first.
    TakeUse,
}

impl From<Response> for Follow {
    fn from(answer: Response) -> Self {
        Follow::Answer(answer, None)
    }
}

/// Follows `link` (which may be followed: see [`followable`]), by its short code `code` and,
/// for `/l/{code}/{channel}`, the channel of the path; `use_taken` once a use of a capped link
/// has been taken for this request.
///
/// `/l/{code}` answers the deep link of a one-channel link and the chooser page of a
/// many-channel one; `/l/{code}/{channel}` the deep link into that channel. A link-preview
/// crawler's fetch gets the OpenGraph page and counts as a preview (HEAD as nothing).
fn follow(
    state: &AppState,
    link: &Resolved,
    code: &str,
    channel: Option<&str>,
    v: &Visitor<'_>,
    use_taken: bool,
) -> Follow {
    let channel = match channel {
        None => None,
        Some(name) => match name.parse::<Channel>() {
            // A one-channel link's channel is in place: its list would be a cache miss more.
            Ok(c) if link.only == Some(c) || link.channels.contains(&c) => Some(c),
            _ => return not_found().into(),
        },
    };
    if pages::is_crawler(v.user_agent) {
        let preview = (!v.head).then(|| {
            let at = now_ms();
            queued(
                state,
                link,
                channel,
                ClickKind::Preview,
                v,
                at,
                click_id(at),
            )
        });
        return Follow::Answer(preview_page(state, link, code), preview);
    }
    match channel.or(link.only) {
        Some(one) => click(state, link, one, v, use_taken),
        None => page(
            StatusCode::OK,
            pages::chooser(
                link.title.as_deref().unwrap_or("Open the chat"),
                code,
                &link.channels,
            ),
        )
        .into(),
    }
}

/// The page a link-preview crawler gets: OpenGraph tags.
fn preview_page(state: &AppState, link: &Resolved, code: &str) -> Response {
    let title = link
        .title
        .clone()
        .unwrap_or_else(|| match link.channels.as_slice() {
            [one] => format!("Open in {}", one.display_name()),
            _ => "Open in your messenger".to_string(),
        });
    let url = state.short_url(code);
    page(
        StatusCode::OK,
        pages::preview(&title, "Tap to open the chat.", &url),
    )
}

/// Follows the link `code` (and the path's channel) as far as it can without waiting: `None`
/// when it must wait, for the database (a link neither in the link cache nor readable at once,
/// a use of a capped link to take) or for room in the click queue. Then [`follow_waiting`]
/// answers.
fn follow_now(
    state: &AppState,
    code: &str,
    channel: Option<&str>,
    req: &RequestView<'_>,
    peer: SocketAddr,
) -> Option<Response> {
    let Some(link) = state.link_now(code)? else {
        return Some(not_found());
    };
    let link = match followable(link) {
        Ok(l) => l,
        Err(ended) => return Some(ended.page()),
    };
    match follow(
        state,
        &link,
        code,
        channel,
        &visitor(state, req, peer),
        false,
    ) {
        Follow::Answer(answer, None) => Some(answer),
        Follow::Answer(answer, Some(click)) => {
            state.recorder().try_record(click).ok().map(|()| answer)
        }
        Follow::TakeUse => None,
    }
}

/// Follows the link `code` (and the path's channel), waiting for what it must: the link's
/// lookup, a use of a capped link, room in the click queue.
async fn follow_waiting(
    state: &AppState,
    code: &str,
    channel: Option<&str>,
    req: &RequestView<'_>,
    peer: SocketAddr,
) -> Response {
    let link = match live_link(state, code).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let v = visitor(state, req, peer);
    let mut use_taken = false;
    loop {
        match follow(state, &link, code, channel, &v, use_taken) {
            Follow::Answer(answer, click) => {
                if let Some(click) = click {
                    state.recorder().record(click).await;
                }
                return answer;
            }
            Follow::TakeUse => match state.links().try_consume_click(&link.id).await {
                Ok(true) => use_taken = true,
                Ok(false) => return gone("This link has been used as many times as it allows."),
                Err(e) => {
                    state.redirect_db_failed("counting a capped link's click", &e);
                    return unavailable();
                }
            },
        }
    }
}

async fn open(
    State(state): State<AppState>,
    Path(code): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, _body) = req.into_parts();
    follow_waiting(&state, &code, None, &(&parts).into(), peer).await
}

async fn open_channel(
    State(state): State<AppState>,
    Path((code, channel)): Path<(String, String)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let (parts, _body) = req.into_parts();
    follow_waiting(&state, &code, Some(&channel), &(&parts).into(), peer).await
}

/// The route templates of the redirects, as the metrics label them.
const ROUTE_OPEN: &str = "/l/{code}";
const ROUTE_CHANNEL: &str = "/l/{code}/{channel}";

/// A request that [`serve_fast`] answers without the router.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastRoute {
    /// `/l/{code}`
    Open,
    /// `/l/{code}/{channel}`
    Channel,
}

/// Whether `req` is a redirect the fast path serves: `GET` or `HEAD` of `/l/{code}` or
/// `/l/{code}/{channel}`. QR codes, other methods and percent-encoded paths (which the router
/// decodes) go through the router.
pub fn fast_route<B>(req: &axum::http::Request<B>) -> Option<FastRoute> {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return None;
    }
    let rest = req.uri().path().strip_prefix("/l/")?;
    if rest.is_empty() || rest.contains('%') {
        return None;
    }
    match rest.split_once('/') {
        None => Some(FastRoute::Open),
        Some((code, channel))
            if !code.is_empty()
                && !channel.is_empty()
                && !channel.contains('/')
                && channel != "qr.svg"
                && channel != "qr.png" =>
        {
            Some(FastRoute::Channel)
        }
        Some(_) => None,
    }
}

/// The code and the channel (of `/l/{code}/{channel}`) of a redirect's path.
fn code_and_channel(route: FastRoute, path: &str) -> (&str, Option<&str>) {
    let rest = path.strip_prefix("/l/").unwrap_or_default();
    match (route, rest.split_once('/')) {
        (FastRoute::Channel, Some((code, channel))) => (code, Some(channel)),
        _ => (rest, None),
    }
}

/// Serves a redirect that [`fast_route`] picked, as the router would (same answers, same
/// metrics) without its routing and middleware, when it can answer without waiting (see
/// [`follow_now`]): this is the path nearly every click takes, and it allocates no future for
/// it. `None`: [`serve_fast`] answers it.
pub fn serve_fast_now<B>(
    state: &AppState,
    req: &axum::http::Request<B>,
    peer: SocketAddr,
    route: FastRoute,
) -> Option<Response> {
    let started = std::time::Instant::now();
    let (code, channel) = code_and_channel(route, req.uri().path());
    // The request's parts, borrowed: the visitor and the method are all that is read.
    let parts = RequestView {
        method: req.method(),
        headers: req.headers(),
    };
    let resp = follow_now(state, code, channel, &parts, peer)?;
    observe(state, route, req.method(), resp.status(), started);
    Some(resp)
}

/// Serves a redirect that [`fast_route`] picked and [`serve_fast_now`] could not answer
/// without waiting.
pub async fn serve_fast<B>(
    state: AppState,
    req: axum::http::Request<B>,
    peer: SocketAddr,
    route: FastRoute,
) -> Response {
    let started = std::time::Instant::now();
    let (req, _body) = req.into_parts();
    let (code, channel) = code_and_channel(route, req.uri.path());
    let resp = follow_waiting(&state, code, channel, &(&req).into(), peer).await;
    observe(&state, route, &req.method, resp.status(), started);
    resp
}

/// Counts a redirect route's request and its latency.
fn observe(
    state: &AppState,
    route: FastRoute,
    method: &Method,
    status: StatusCode,
    started: std::time::Instant,
) {
    if status == StatusCode::FOUND && method == Method::GET {
        state.redirect_series(route).observe(started);
    } else {
        let template = match route {
            FastRoute::Open => ROUTE_OPEN,
            FastRoute::Channel => ROUTE_CHANNEL,
        };
        crate::app::metrics::observe(template, method, status.as_u16(), started);
    }
}

/// The metrics series of redirects that went to a messenger (`GET`, 302), by route: what
/// [`serve_fast`] records nearly every time.
pub struct RedirectSeries {
    open: crate::app::metrics::Series,
    channel: crate::app::metrics::Series,
}

impl Default for RedirectSeries {
    fn default() -> Self {
        let series = |route| crate::app::metrics::Series::new(route, &Method::GET, 302);
        RedirectSeries {
            open: series(ROUTE_OPEN),
            channel: series(ROUTE_CHANNEL),
        }
    }
}

impl RedirectSeries {
    pub fn of(&self, route: FastRoute) -> &crate::app::metrics::Series {
        match route {
            FastRoute::Open => &self.open,
            FastRoute::Channel => &self.channel,
        }
    }
}

/// A click into `channel` of `link`: the redirect to its deep link, and the click to count
/// (none for HEAD). A capped link's click takes a use first (see [`Follow::TakeUse`]).
fn click(
    state: &AppState,
    link: &Resolved,
    channel: Channel,
    v: &Visitor<'_>,
    use_taken: bool,
) -> Follow {
    if v.head {
        // No click, no click id.
        let d = link.targets.iter().find(|t| t.channel == channel);
        return d
            .and_then(|d| checked_redirect(state, link, channel, Cow::Borrowed(&d.url)))
            .unwrap_or_else(not_found)
            .into();
    }
    // The one-channel link's template, in place; else the channel's deep link.
    let deep = match link
        .only_template
        .as_ref()
        .filter(|_| link.only == Some(channel))
    {
        Some(t) => Ok(t),
        None => match link.targets.iter().find(|t| t.channel == channel) {
            Some(d) => Err(d),
            None => return not_found().into(),
        },
    };
    if link.max_clicks.is_some() && !use_taken {
        return Follow::TakeUse;
    }
    let at = now_ms();
    let click_id = click_id(at);
    let target: Cow<'_, str> = match deep {
        Ok(t) => Cow::Owned(t.with(click_id.as_str())),
        Err(d) => match &d.stored {
            // The stored deep link named the bot and the visible text: rebuild it with the
            // click id in the parameter.
            Some(parsed) => match &parsed.template {
                Some(t) => Cow::Owned(t.with(click_id.as_str())),
                None => match parsed.deep_link(
                    channel,
                    &link.code,
                    click_id.as_str(),
                    link.key.as_ref(),
                    state.public_url(),
                ) {
                    Ok(url) => Cow::Owned(url),
                    Err(e) => {
                        // Cannot happen for links that passed creation; fall back to the
                        // stored deep link.
                        tracing::warn!(error = %e, link = %link.id, "building a per-click deep link");
                        Cow::Borrowed(&d.url)
                    }
                },
            },
            None => Cow::Borrowed(&d.url),
        },
    };
    let Some(answer) = checked_redirect(state, link, channel, target) else {
        return not_found().into();
    };
    let click = queued(
        state,
        link,
        Some(channel),
        ClickKind::Click,
        v,
        at,
        click_id,
    );
    Follow::Answer(answer, Some(click))
}

/// The 302 to a deep link, if it goes to a messenger (see [`pages::is_safe_target`]) or to the
/// bot's custom chat page ([`pages::is_custom_chat_target`]): never an open redirect. A
/// per-click link becomes the header without being copied.
fn checked_redirect(
    state: &AppState,
    link: &Resolved,
    channel: Channel,
    target: Cow<'_, str>,
) -> Option<Response> {
    let safe = match channel {
        Channel::Custom => pages::is_custom_chat_target(&target),
        _ => pages::is_safe_target(&target, state.public_url()),
    };
    if !safe {
        tracing::error!(link = %link.id, "refusing to redirect to a target outside the messengers");
        return None;
    }
    let location = match target {
        Cow::Owned(url) => HeaderValue::from_maybe_shared(axum::body::Bytes::from(url)),
        Cow::Borrowed(url) => HeaderValue::from_str(url),
    };
    let location = location.ok()?;
    Some(
        (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                ),
            ],
        )
            .into_response(),
    )
}

async fn qr_svg(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    qr(&state, &code, QrFormat::Svg).await
}

async fn qr_png(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    qr(&state, &code, QrFormat::Png).await
}

#[derive(Clone, Copy)]
enum QrFormat {
    Svg,
    Png,
}

/// The QR code of a link's short URL.
async fn qr(state: &AppState, code: &str, format: QrFormat) -> Response {
    let link = match live_link(state, code).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    let url = short_url(state, &link);
    let rendered = match format {
        QrFormat::Svg => {
            crate::redirect::qr::qr_svg(&url, 8).map(|svg| ("image/svg+xml", svg.into_bytes()))
        }
        QrFormat::Png => crate::redirect::qr::qr_png(&url, 8).map(|png| ("image/png", png)),
    };
    match rendered {
        Ok((content_type, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, max-age=3600"),
                ),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a QR code");
            unavailable()
        }
    }
}

fn short_url(state: &AppState, link: &Resolved) -> String {
    state.short_url(link.slug.as_deref().unwrap_or(&link.code))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str) -> Option<FastRoute> {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("a request");
        fast_route(&req)
    }

    #[test]
    fn a_click_template_gives_the_link_a_full_build_gives() {
        let bots = [
            (Channel::Telegram, "shop_bot", None),
            (Channel::Viber, "shopbot", Some("Hello there")),
            (Channel::Messenger, "PageName", None),
            (Channel::Instagram, "shop.ig", None),
            (Channel::Whatsapp, "380501234567", Some("Hi! Code:")),
            (Channel::Line, "@shop", Some("hi")),
            (Channel::Max, "shop_bot", None),
            (Channel::Webchat, "shop", None),
        ];
        let mut templated = Vec::new();
        for (channel, bot, text) in bots {
            let public = "https://go.example.com";
            let target = StoredTarget {
                bot: bot.into(),
                text: text.map(Into::into),
                template: None,
            };
            let Some(t) = ClickTemplate::new(|id| {
                target.deep_link(channel, "AbC123x", id, None, public).ok()
            }) else {
                continue;
            };
            templated.push(channel);
            // In place too, when it fits (they all do here).
            let inline = InlineTemplate::new(&t).expect("a short deep link fits");
            for _ in 0..20 {
                let id = click_id(now_ms());
                let full = linkgen::stored_click_param("AbC123x", id.as_str(), false, &[])
                    .and_then(|p| linkgen::deep_link(channel, bot, &p, text, public))
                    .expect("a link the template was made from builds")
                    .url;
                assert_eq!(t.with(id.as_str()), full, "{channel:?}");
                assert_eq!(inline.with(id.as_str()), full, "{channel:?} in place");
            }
        }
        assert!(
            templated.contains(&Channel::Telegram) && templated.contains(&Channel::Viber),
            "{templated:?}"
        );
    }

    #[test]
    fn a_template_too_long_to_hold_in_place_is_not() {
        let long = ClickTemplate {
            url: format!(
                "https://t.me/{}?start=l_AbC123x_{}",
                "b".repeat(90),
                "0".repeat(15)
            ),
            at: 13 + 90 + 17,
        };
        assert!(long.url.len() > INLINE_TEMPLATE);
        assert!(InlineTemplate::new(&long).is_none());
    }

    #[test]
    fn only_plain_redirects_take_the_fast_path() {
        use FastRoute::{Channel, Open};
        for (method, path, want) in [
            (Method::GET, "/l/AbC123", Some(Open)),
            (Method::HEAD, "/l/AbC123", Some(Open)),
            (Method::GET, "/l/AbC123?utm=x", Some(Open)),
            (Method::GET, "/l/spring-sale", Some(Open)),
            (Method::GET, "/l/AbC123/telegram", Some(Channel)),
            (Method::GET, "/l/AbC123/nonsense", Some(Channel)),
            // The router's: QR codes, encoded paths, other methods and shapes.
            (Method::GET, "/l/AbC123/qr.svg", None),
            (Method::GET, "/l/AbC123/qr.png", None),
            (Method::GET, "/l/%41bC123", None),
            (Method::POST, "/l/AbC123", None),
            (Method::GET, "/l/", None),
            (Method::GET, "/l/AbC123/", None),
            (Method::GET, "/l//telegram", None),
            (Method::GET, "/l/AbC123/telegram/x", None),
            (Method::GET, "/api/v1/links", None),
            (Method::GET, "/lx/AbC123", None),
        ] {
            assert_eq!(route(method.clone(), path), want, "{method} {path}");
        }
    }
}
