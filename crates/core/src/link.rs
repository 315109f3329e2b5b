//! Building and parsing deep links for every channel (`docs/messengers.md`).
//!
//! A builder checks the bot identifier and the parameter against the channel's rules and
//! refuses, with an error naming the rule, the length and the limit, anything that a client
//! would drop or cut. The parser takes any such URL back to channel, bot, kind and parameter.

use std::fmt::{self, Write as _};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::channel::{Channel, ParamRule};

/// What `encodeURIComponent` leaves alone: letters, digits and `-_.!~*'()`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The marker that WhatsApp and LINE links put before the parameter in the visible text.
pub const TEXT_MARKER: &str = "ref:";

/// How every deep link to a messenger begins: the `https://` hosts, then the app schemes
/// (Telegram's `tg://resolve?`, Viber's `viber://pa?`). [`build_link`] writes nothing else for
/// a channel other than web chat, so a URL that starts otherwise is not a messenger's link.
pub const MESSENGER_URL_PREFIXES: &[&str] = &[
    "https://t.me/",
    "https://telegram.me/",
    "https://m.me/",
    "https://ig.me/",
    "https://wa.me/",
    "https://line.me/",
    "https://max.ru/",
    "tg://resolve?",
    "viber://pa?",
];

/// What a Telegram link asks the client to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkKind {
    /// Open a private chat with the bot (`?start=`). The only kind other channels have.
    Start,
    /// Add the bot to a group (`?startgroup=`), optionally asking for admin rights.
    StartGroup,
    /// Add the bot to a channel as admin (`?startchannel&admin=`); carries no parameter.
    StartChannel,
    /// Open a mini app (`?startapp=`), the bot's main one or a named one.
    StartApp,
}

impl LinkKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkKind::Start => "start",
            LinkKind::StartGroup => "startgroup",
            LinkKind::StartChannel => "startchannel",
            LinkKind::StartApp => "startapp",
        }
    }
}

impl fmt::Display for LinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Administrator rights a `startgroup`/`startchannel` link may request (Telegram Bot API,
/// "ChatAdministratorRights"; joined with `+` in the link).
pub const ADMIN_RIGHTS: &[&str] = &[
    "change_info",
    "post_messages",
    "edit_messages",
    "delete_messages",
    "restrict_members",
    "invite_users",
    "pin_messages",
    "manage_topics",
    "promote_members",
    "manage_video_chats",
    "anonymous",
    "manage_chat",
    "post_stories",
    "edit_stories",
    "delete_stories",
];

/// Which URL form a Telegram link takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TelegramForm {
    /// `https://t.me/...`, opens anywhere.
    #[default]
    TMe,
    /// `https://telegram.me/...`, the older domain.
    TelegramMe,
    /// `tg://resolve?domain=...`, opens the app directly.
    Tg,
}

/// Everything needed to build one deep link.
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec<'a> {
    pub channel: Channel,
    /// The bot's identifier in that channel: Telegram/MAX username, Viber URI, page name,
    /// Instagram user name, WhatsApp number, LINE id (`@...`), web chat bot id.
    pub bot: &'a str,
    pub kind: LinkKind,
    /// The parameter to carry; `None` opens the bot without one.
    pub param: Option<&'a str>,
    /// Mini app short name (Telegram `startapp` only).
    pub app: Option<&'a str>,
    /// Admin rights to request (Telegram `startgroup`/`startchannel` only).
    pub admin: &'a [&'a str],
    /// Pre-filled message text (Viber `text`; WhatsApp/LINE text before the marker).
    pub text: Option<&'a str>,
    pub form: TelegramForm,
    /// Public base URL of botlink (web chat only), e.g. `https://links.example.com`.
    pub base_url: Option<&'a str>,
}

impl<'a> LinkSpec<'a> {
    /// A plain start link with defaults for everything else.
    pub fn new(channel: Channel, bot: &'a str, param: Option<&'a str>) -> Self {
        LinkSpec {
            channel,
            bot,
            kind: LinkKind::Start,
            param,
            app: None,
            admin: &[],
            text: None,
            form: TelegramForm::TMe,
            base_url: None,
        }
    }
}

/// A built deep link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeepLink {
    pub url: String,
    pub channel: Channel,
    pub kind: LinkKind,
    /// The parameter as carried (before URL encoding).
    pub param: Option<String>,
    /// The parameter's length in characters.
    pub length: usize,
    /// The channel's limit for it.
    pub limit: usize,
}

/// Why a link could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error(
        "the {channel} parameter is empty: give a parameter, or leave it out to open the bot without one"
    )]
    EmptyParam { channel: Channel },
    #[error(
        "the {channel} parameter is {len} characters long, over the limit of {limit} ({origin}): {way_out}"
    )]
    TooLong {
        channel: Channel,
        len: usize,
        limit: usize,
        origin: &'static str,
        way_out: &'static str,
    },
    #[error(
        "the {channel} parameter has {ch:?} at position {pos}, outside the allowed set {allowed}: {way_out}"
    )]
    BadChar {
        channel: Channel,
        ch: char,
        pos: usize,
        allowed: &'static str,
        way_out: &'static str,
    },
    #[error("{channel} bot identifier {bot:?} is invalid: {rule}")]
    BadBot {
        channel: Channel,
        bot: String,
        rule: &'static str,
    },
    #[error("{what} is not available on {channel}: {hint}")]
    Unsupported {
        channel: Channel,
        what: &'static str,
        hint: &'static str,
    },
    #[error("unknown admin right {right:?}: use rights joined with '+' or ',' from {}", ADMIN_RIGHTS.join(", "))]
    BadAdminRight { right: String },
    #[error("Telegram mini app name {app:?} is invalid: 3-30 characters of [A-Za-z0-9_]")]
    BadAppName { app: String },
    #[error("the web chat link needs botlink's public base URL (http:// or https://), got {0:?}")]
    BadBaseUrl(String),
    #[error("{channel} text is {len} characters long, over the limit of {limit}: shorten the text")]
    TextTooLong {
        channel: Channel,
        len: usize,
        limit: usize,
    },
    #[error("malformed URL {url:?}: {reason}")]
    Malformed { url: String, reason: &'static str },
    #[error(
        "{url:?} is not a deep link botlink knows: expected t.me, telegram.me, tg://resolve, viber://pa, m.me, ig.me, wa.me, line.me/R/oaMessage, max.ru or a botlink /chat/ link"
    )]
    NotADeepLink { url: String },
}

/// The way out a length or character error suggests, per channel.
fn way_out(channel: Channel, too_long: bool) -> &'static str {
    match (channel, too_long) {
        (Channel::Telegram | Channel::Max, true) => {
            "use a shorter form (raw or entry instead of json), or the stored scheme of `botlink serve`, which keeps the data server-side"
        }
        (Channel::Telegram | Channel::Max | Channel::Whatsapp | Channel::Line, false) => {
            "use the json or text scheme (Base64URL), which only produces allowed characters"
        }
        (Channel::Messenger | Channel::Instagram, false) => {
            "use the json scheme (Base64URL), which only produces allowed characters"
        }
        (_, true) => {
            "use a shorter form, or the stored scheme of `botlink serve`, which keeps the data server-side"
        }
        (_, false) => "remove control characters from the parameter",
    }
}

/// Checks a parameter against a channel's rule. The length is in characters.
pub fn check_param(channel: Channel, rule: ParamRule, param: &str) -> Result<usize, LinkError> {
    if param.is_empty() {
        return Err(LinkError::EmptyParam { channel });
    }
    let mut len = 0;
    for (pos, ch) in param.chars().enumerate() {
        if !rule.charset.allows(ch) {
            return Err(LinkError::BadChar {
                channel,
                ch,
                pos,
                allowed: rule.charset.describe(),
                way_out: way_out(channel, false),
            });
        }
        len = pos + 1;
    }
    if len > rule.max_len {
        return Err(LinkError::TooLong {
            channel,
            len,
            limit: rule.max_len,
            origin: rule.source,
            way_out: way_out(channel, true),
        });
    }
    Ok(len)
}

/// A parameter read from a link that breaks its channel's rule only by the `=` padding of
/// Base64 at its end: Base64 encoders pad by default (Python's `base64.urlsafe_b64encode`,
/// JavaScript's `btoa`), and links built with them carry it. The link as given does not work,
/// since the messenger refuses `=` in a parameter (Telegram opens the bot without it), but the
/// parameter reads the same without the padding, which Base64 decoding does not need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedParam {
    pub channel: Channel,
    /// The characters the channel allows.
    pub allowed: &'static str,
    /// The parameter without its padding: what the link should carry.
    pub unpadded: String,
}

impl fmt::Display for PaddedParam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the link as given does not work: {} takes only {} in a parameter, so it drops this \
             one for its trailing '=' (Base64 padding, which decoding does not need); without \
             it the parameter is {} and the link works",
            self.channel, self.allowed, self.unpadded
        )
    }
}

/// [`check_param`] for a parameter read from a link rather than built: one that breaks the
/// rule only by Base64 padding (one or two `=` at its end) is accepted, with a
/// [`PaddedParam`] that says why the link does not work as given. Building stays strict.
pub fn check_read_param(
    channel: Channel,
    rule: ParamRule,
    param: &str,
) -> Result<Option<PaddedParam>, LinkError> {
    let strict = match check_param(channel, rule, param) {
        Ok(_) => return Ok(None),
        Err(e) => e,
    };
    let unpadded = param.trim_end_matches('=');
    let padding = param.len() - unpadded.len();
    if (1..=2).contains(&padding) && check_param(channel, rule, unpadded).is_ok() {
        Ok(Some(PaddedParam {
            channel,
            allowed: rule.charset.describe(),
            unpadded: unpadded.to_owned(),
        }))
    } else {
        Err(strict)
    }
}

/// The rule that applies to a link of `kind` on `channel`.
pub fn rule_for(channel: Channel, kind: LinkKind) -> ParamRule {
    match (channel, kind) {
        (Channel::Telegram, LinkKind::StartApp) => ParamRule::TELEGRAM_APP,
        _ => channel.param_rule(),
    }
}

fn all_chars(s: &str, ok: impl Fn(char) -> bool) -> bool {
    s.chars().all(ok)
}

/// Checks the bot identifier for a channel and returns it normalised (a leading `@` dropped
/// where the channel's links carry none, `+` and spaces dropped from phone numbers).
pub fn check_bot(channel: Channel, bot: &str) -> Result<String, LinkError> {
    let bad = |rule| LinkError::BadBot {
        channel,
        bot: bot.to_string(),
        rule,
    };
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    match channel {
        Channel::Telegram => {
            let b = bot.strip_prefix('@').unwrap_or(bot);
            let ok = (4..=32).contains(&b.len())
                && b.starts_with(|c: char| c.is_ascii_alphabetic())
                && all_chars(b, word);
            if ok {
                Ok(b.to_string())
            } else {
                Err(bad(
                    "a Telegram username is 4-32 characters of [A-Za-z0-9_] starting with a letter",
                ))
            }
        }
        Channel::Max => {
            let b = bot.strip_prefix('@').unwrap_or(bot);
            let ok = (2..=64).contains(&b.len()) && all_chars(b, word);
            if ok {
                Ok(b.to_string())
            } else {
                Err(bad("a MAX bot name is 2-64 characters of [A-Za-z0-9_]"))
            }
        }
        Channel::Viber => {
            let ok = (1..=64).contains(&bot.len())
                && all_chars(bot, |c| word(c) || c == '-' || c == '.');
            if ok {
                Ok(bot.to_string())
            } else {
                Err(bad("a Viber chat URI is 1-64 characters of [A-Za-z0-9_.-]"))
            }
        }
        Channel::Messenger => {
            let ok = (1..=100).contains(&bot.len())
                && all_chars(bot, |c| word(c) || c == '-' || c == '.')
                && !bot.chars().all(|c| c == '.');
            if ok {
                Ok(bot.to_string())
            } else {
                Err(bad(
                    "a Facebook page name or id is 1-100 characters of [A-Za-z0-9_.-], not only dots",
                ))
            }
        }
        Channel::Instagram => {
            let b = bot.strip_prefix('@').unwrap_or(bot);
            let ok = (1..=30).contains(&b.len())
                && all_chars(b, |c| word(c) || c == '.')
                && !b.chars().all(|c| c == '.');
            if ok {
                Ok(b.to_string())
            } else {
                Err(bad(
                    "an Instagram user name is 1-30 characters of [A-Za-z0-9_.], not only dots",
                ))
            }
        }
        Channel::Whatsapp => {
            let digits: String = bot
                .chars()
                .filter(|c| !matches!(c, '+' | ' ' | '-' | '(' | ')'))
                .collect();
            let ok = (7..=15).contains(&digits.len()) && all_chars(&digits, |c| c.is_ascii_digit());
            if ok {
                Ok(digits)
            } else {
                Err(bad(
                    "a WhatsApp number is 7-15 digits in international form, without leading zeros or '+', e.g. 15550001111",
                ))
            }
        }
        Channel::Line => {
            let b = bot.strip_prefix('@').unwrap_or(bot);
            let ok = (1..=40).contains(&b.len())
                && all_chars(b, |c| {
                    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
                });
            if ok {
                Ok(format!("@{b}"))
            } else {
                Err(bad(
                    "a LINE official account id is '@' and 1-40 characters of [A-Za-z0-9_.-]",
                ))
            }
        }
        Channel::Webchat => {
            let ok = (1..=64).contains(&bot.len()) && all_chars(bot, |c| word(c) || c == '-');
            if ok {
                Ok(bot.to_string())
            } else {
                Err(bad("a web chat bot id is 1-64 characters of [A-Za-z0-9_-]"))
            }
        }
        Channel::Custom => {
            let rest = bot
                .strip_prefix("https://")
                .or_else(|| bot.strip_prefix("http://"));
            let ok = bot.len() <= 2048
                && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
                && !bot.contains(['?', '#'])
                && all_chars(bot, |c| c.is_ascii_graphic());
            if ok {
                Ok(bot.to_string())
            } else {
                Err(bad(
                    "a custom chat's link is an http(s) URL without a query or fragment (its page, which opens with ?start=<p>)",
                ))
            }
        }
    }
}

fn check_app(app: &str) -> Result<(), LinkError> {
    let ok =
        (3..=30).contains(&app.len()) && app.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LinkError::BadAppName {
            app: app.to_string(),
        })
    }
}

/// Parses admin rights given as `right+right` or `right,right`.
pub fn parse_admin_rights(s: &str) -> Result<Vec<&'static str>, LinkError> {
    s.split(['+', ',', ' '])
        .filter(|r| !r.is_empty())
        .map(|r| {
            ADMIN_RIGHTS
                .iter()
                .copied()
                .find(|known| *known == r)
                .ok_or_else(|| LinkError::BadAdminRight {
                    right: r.to_string(),
                })
        })
        .collect()
}

const MAX_TEXT: usize = 1024;

/// Builds the deep link described by `spec`.
pub fn build_link(spec: &LinkSpec<'_>) -> Result<DeepLink, LinkError> {
    let channel = spec.channel;
    let bot = check_bot(channel, spec.bot)?;
    let unsupported = |what, hint| {
        Err(LinkError::Unsupported {
            channel,
            what,
            hint,
        })
    };
    if channel != Channel::Telegram {
        if spec.kind != LinkKind::Start {
            return unsupported(
                "group, channel and mini app links",
                "only Telegram has startgroup, startchannel and startapp",
            );
        }
        if spec.app.is_some() {
            return unsupported("--app", "mini apps are a Telegram feature");
        }
        if !spec.admin.is_empty() {
            return unsupported("--admin", "admin rights are a Telegram feature");
        }
    }
    if spec.text.is_some() && !matches!(channel, Channel::Viber | Channel::Whatsapp | Channel::Line)
    {
        return unsupported(
            "pre-filled text",
            "only Viber, WhatsApp and LINE links carry a text",
        );
    }
    for r in spec.admin {
        if !ADMIN_RIGHTS.contains(r) {
            return Err(LinkError::BadAdminRight {
                right: (*r).to_string(),
            });
        }
    }
    if let Some(text) = spec.text {
        let len = text.chars().count();
        if len > MAX_TEXT {
            return Err(LinkError::TextTooLong {
                channel,
                len,
                limit: MAX_TEXT,
            });
        }
    }

    let rule = rule_for(channel, spec.kind);
    let length = match spec.param {
        Some(p) => check_param(channel, rule, p)?,
        None => 0,
    };
    let mut url = String::with_capacity(48 + bot.len() + spec.param.map_or(0, str::len));
    match channel {
        Channel::Telegram => build_telegram(spec, &bot, &mut url)?,
        Channel::Viber => {
            url.push_str("viber://pa?chatURI=");
            push_encoded(&mut url, &bot);
            if let Some(p) = spec.param {
                url.push_str("&context=");
                push_encoded(&mut url, p);
            }
            if let Some(t) = spec.text {
                url.push_str("&text=");
                push_encoded(&mut url, t);
            }
        }
        Channel::Messenger | Channel::Instagram => {
            url.push_str(if channel == Channel::Messenger {
                "https://m.me/"
            } else {
                "https://ig.me/m/"
            });
            url.push_str(&bot);
            if let Some(p) = spec.param {
                url.push_str("?ref=");
                url.push_str(p); // the Meta set needs no encoding
            }
        }
        Channel::Whatsapp | Channel::Line => {
            let text = visible_text(spec.text, spec.param);
            if channel == Channel::Whatsapp {
                url.push_str("https://wa.me/");
                url.push_str(&bot);
                if !text.is_empty() {
                    url.push_str("?text=");
                    push_encoded(&mut url, &text);
                }
            } else {
                url.push_str("https://line.me/R/oaMessage/");
                push_encoded(&mut url, &bot);
                url.push('/');
                if !text.is_empty() {
                    url.push('?');
                    push_encoded(&mut url, &text);
                }
            }
        }
        Channel::Max => {
            url.push_str("https://max.ru/");
            url.push_str(&bot);
            if let Some(p) = spec.param {
                url.push_str("?start=");
                url.push_str(p);
            }
        }
        Channel::Webchat => {
            let base = spec.base_url.unwrap_or_default().trim_end_matches('/');
            let scheme_ok = base.starts_with("https://") || base.starts_with("http://");
            let host_ok = base
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty());
            if !scheme_ok || !host_ok || base.contains(['?', '#', ' ']) {
                return Err(LinkError::BadBaseUrl(base.to_string()));
            }
            url.push_str(base);
            url.push_str("/chat/");
            url.push_str(&bot);
            if let Some(p) = spec.param {
                url.push_str("?ref=");
                push_encoded(&mut url, p);
            }
        }
        Channel::Custom => {
            url.push_str(&bot);
            if let Some(p) = spec.param {
                url.push_str("?start=");
                push_encoded(&mut url, p);
            }
        }
    }
    Ok(DeepLink {
        url,
        channel,
        kind: spec.kind,
        param: spec.param.map(str::to_string),
        length,
        limit: rule.max_len,
    })
}

/// The visible text of a WhatsApp/LINE link: the person's text, then the marker and parameter.
fn visible_text(text: Option<&str>, param: Option<&str>) -> String {
    match (text, param) {
        (Some(t), Some(p)) => format!("{t} {TEXT_MARKER}{p}"),
        (None, Some(p)) => format!("{TEXT_MARKER}{p}"),
        (Some(t), None) => t.to_string(),
        (None, None) => String::new(),
    }
}

fn push_encoded(out: &mut String, s: &str) {
    // Writing into a String cannot fail.
    let _ = write!(out, "{}", utf8_percent_encode(s, COMPONENT));
}

fn build_telegram(spec: &LinkSpec<'_>, bot: &str, url: &mut String) -> Result<(), LinkError> {
    if spec.kind == LinkKind::StartChannel && spec.param.is_some() {
        return Err(LinkError::Unsupported {
            channel: Channel::Telegram,
            what: "a parameter on a startchannel link",
            hint: "Telegram's startchannel carries admin rights only; use startgroup to pass a parameter",
        });
    }
    if spec.kind == LinkKind::StartChannel && spec.admin.is_empty() {
        return Err(LinkError::Unsupported {
            channel: Channel::Telegram,
            what: "a startchannel link without admin rights",
            hint: "Telegram requires at least one right, e.g. --admin post_messages",
        });
    }
    if !spec.admin.is_empty() && !matches!(spec.kind, LinkKind::StartGroup | LinkKind::StartChannel)
    {
        return Err(LinkError::Unsupported {
            channel: Channel::Telegram,
            what: "admin rights on a private-chat link",
            hint: "admin rights go with --group or --channel links",
        });
    }
    if let Some(app) = spec.app {
        if spec.kind != LinkKind::StartApp {
            return Err(LinkError::Unsupported {
                channel: Channel::Telegram,
                what: "--app on a non-mini-app link",
                hint: "a mini app name goes with startapp links",
            });
        }
        check_app(app)?;
    }
    let mut first = spec.form != TelegramForm::Tg;
    match spec.form {
        TelegramForm::Tg => {
            url.push_str("tg://resolve?domain=");
            url.push_str(bot);
            if let Some(app) = spec.app {
                url.push_str("&appname=");
                url.push_str(app);
            }
        }
        TelegramForm::TMe | TelegramForm::TelegramMe => {
            url.push_str(if spec.form == TelegramForm::TMe {
                "https://t.me/"
            } else {
                "https://telegram.me/"
            });
            url.push_str(bot);
            if let Some(app) = spec.app {
                url.push('/');
                url.push_str(app);
            }
        }
    }
    let mut sep = |url: &mut String| {
        url.push(if first { '?' } else { '&' });
        first = false;
    };
    let key = spec.kind.as_str();
    match (spec.kind, spec.param) {
        (LinkKind::Start, None) => {}
        (_, Some(p)) => {
            sep(url);
            url.push_str(key);
            url.push('=');
            url.push_str(p);
        }
        (_, None) => {
            sep(url);
            url.push_str(key);
        }
    }
    if !spec.admin.is_empty() {
        sep(url);
        url.push_str("admin=");
        url.push_str(&spec.admin.join("+"));
    }
    Ok(())
}

/// A deep link read back from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLink {
    pub channel: Channel,
    /// The bot identifier as the link carries it (LINE ids keep their `@`).
    pub bot: String,
    pub kind: LinkKind,
    /// The raw parameter, URL-decoded; `None` when the link carries none.
    pub param: Option<String>,
    pub app: Option<String>,
    pub admin: Vec<String>,
    /// Visible or pre-filled text (Viber `text`, WhatsApp/LINE text without the marker).
    pub text: Option<String>,
}

fn malformed(url: &str, reason: &'static str) -> LinkError {
    LinkError::Malformed {
        url: url.to_string(),
        reason,
    }
}

fn decode_component(url: &str, s: &str, plus_is_space: bool) -> Result<String, LinkError> {
    let owned;
    let s = if plus_is_space && s.contains('+') {
        owned = s.replace('+', " ");
        owned.as_str()
    } else {
        s
    };
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| malformed(url, "a percent-encoded part is not valid UTF-8"))
}

/// Splits a query string into decoded `(key, value)` pairs; a key without `=` has value `None`.
fn query_pairs(url: &str, query: &str) -> Result<Vec<(String, Option<String>)>, LinkError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((
                decode_component(url, k, true)?,
                Some(decode_component(url, v, true)?),
            )),
            None => Ok((decode_component(url, pair, true)?, None)),
        })
        .collect()
}

fn get<'q>(pairs: &'q [(String, Option<String>)], key: &str) -> Option<&'q Option<String>> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Parses any deep link that [`build_link`] makes (and the other Telegram forms) back into
/// channel, bot, kind and raw parameter.
pub fn parse_link(url: &str) -> Result<ParsedLink, LinkError> {
    let trimmed = url.trim();
    if trimmed.is_empty() {
        return Err(malformed(url, "the URL is empty"));
    }
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| malformed(url, "no scheme (expected https://, tg:// or viber://)"))?;
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
    let (authority_path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let pairs = query_pairs(url, query)?;
    let (host, path) = authority_path
        .split_once('/')
        .unwrap_or((authority_path, ""));
    let host = host.to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();

    match (scheme.as_str(), host) {
        ("tg", "resolve") => {
            let bot = match get(&pairs, "domain") {
                Some(Some(d)) if !d.is_empty() => d.clone(),
                _ => return Err(malformed(url, "tg://resolve needs domain=<bot>")),
            };
            let app = get(&pairs, "appname").cloned().flatten();
            telegram_from_query(url, bot, app, &pairs)
        }
        ("https" | "http", "t.me" | "telegram.me" | "telegram.dog") => {
            let (bot, app) = match segments.as_slice() {
                [bot] => ((*bot).to_string(), None),
                [bot, app] => ((*bot).to_string(), Some((*app).to_string())),
                [] => return Err(malformed(url, "no bot name after the host")),
                _ => return Err(malformed(url, "too many path segments for a bot link")),
            };
            telegram_from_query(url, bot, app, &pairs)
        }
        ("viber", "pa") => {
            let bot = match get(&pairs, "chatURI") {
                Some(Some(b)) if !b.is_empty() => b.clone(),
                _ => return Err(malformed(url, "viber://pa needs chatURI=<uri>")),
            };
            Ok(ParsedLink {
                channel: Channel::Viber,
                bot,
                kind: LinkKind::Start,
                param: get(&pairs, "context").cloned().flatten(),
                app: None,
                admin: vec![],
                text: get(&pairs, "text").cloned().flatten(),
            })
        }
        ("https" | "http", "m.me" | "ig.me") => {
            let (channel, bot) = match (host, segments.as_slice()) {
                ("m.me", [page]) => (Channel::Messenger, *page),
                ("ig.me", ["m", user]) => (Channel::Instagram, *user),
                _ => return Err(malformed(url, "expected m.me/<page> or ig.me/m/<user>")),
            };
            Ok(simple(
                channel,
                bot.to_string(),
                get(&pairs, "ref").cloned().flatten(),
            ))
        }
        ("https" | "http", "wa.me" | "api.whatsapp.com") => {
            let bot = match (host, segments.as_slice()) {
                ("wa.me", [number]) => (*number).to_string(),
                ("api.whatsapp.com", ["send"]) => match get(&pairs, "phone") {
                    Some(Some(p)) if !p.is_empty() => p.clone(),
                    _ => return Err(malformed(url, "api.whatsapp.com/send needs phone=")),
                },
                _ => return Err(malformed(url, "expected wa.me/<number>")),
            };
            let text = get(&pairs, "text").cloned().flatten();
            Ok(visible(Channel::Whatsapp, bot, text))
        }
        ("https" | "http", "line.me") => {
            let id = match segments.as_slice() {
                ["R", "oaMessage", id] | ["R", "oaMessage", id, ..] => {
                    decode_component(url, id, false)?
                }
                _ => return Err(malformed(url, "expected line.me/R/oaMessage/<@id>/?<text>")),
            };
            // The whole query is the message text (no key).
            let text = if query.is_empty() {
                None
            } else {
                Some(decode_component(url, query, false)?)
            };
            Ok(visible(Channel::Line, id, text))
        }
        ("https" | "http", "max.ru") => match segments.as_slice() {
            [bot] => Ok(simple(
                Channel::Max,
                (*bot).to_string(),
                get(&pairs, "start").cloned().flatten(),
            )),
            _ => Err(malformed(url, "expected max.ru/<bot>")),
        },
        ("https" | "http", _) => match (segments.as_slice(), get(&pairs, "start")) {
            ([.., "chat", bot], _) => Ok(simple(
                Channel::Webchat,
                (*bot).to_string(),
                get(&pairs, "ref").cloned().flatten(),
            )),
            // Any other page opened with `?start=`: a custom chat, whose link is the page.
            (_, Some(start)) => Ok(simple(
                Channel::Custom,
                url.split(['?', '#']).next().unwrap_or(url).to_string(),
                start.clone(),
            )),
            _ => Err(LinkError::NotADeepLink {
                url: url.to_string(),
            }),
        },
        _ => Err(LinkError::NotADeepLink {
            url: url.to_string(),
        }),
    }
}

fn simple(channel: Channel, bot: String, param: Option<String>) -> ParsedLink {
    ParsedLink {
        channel,
        bot,
        kind: LinkKind::Start,
        param,
        app: None,
        admin: vec![],
        text: None,
    }
}

/// Splits WhatsApp/LINE visible text into the person's text and the marked parameter.
fn visible(channel: Channel, bot: String, text: Option<String>) -> ParsedLink {
    // An empty `text=` is no text: the builder leaves it out, so the parser does too.
    let (text, param) = match text.filter(|t| !t.is_empty()) {
        Some(t) => match crate::arrival::marker_param(&t, TEXT_MARKER) {
            Some(p) => {
                let before = t[..t.find(TEXT_MARKER).unwrap_or(0)].trim_end().to_string();
                (
                    if before.is_empty() {
                        None
                    } else {
                        Some(before)
                    },
                    Some(p),
                )
            }
            None => (Some(t), None),
        },
        None => (None, None),
    };
    ParsedLink {
        channel,
        bot,
        kind: LinkKind::Start,
        param,
        app: None,
        admin: vec![],
        text,
    }
}

fn telegram_from_query(
    url: &str,
    bot: String,
    app: Option<String>,
    pairs: &[(String, Option<String>)],
) -> Result<ParsedLink, LinkError> {
    let admin: Vec<String> = match get(pairs, "admin") {
        Some(Some(a)) => a
            .split(['+', ' '])
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        _ => vec![],
    };
    let found = [
        LinkKind::Start,
        LinkKind::StartGroup,
        LinkKind::StartChannel,
        LinkKind::StartApp,
    ]
    .into_iter()
    .filter_map(|k| get(pairs, k.as_str()).map(|v| (k, v.clone())))
    .collect::<Vec<_>>();
    let (kind, param) = match found.as_slice() {
        [] if app.is_some() => (LinkKind::StartApp, None),
        [] => (LinkKind::Start, None),
        [(k, v)] => (*k, v.clone().filter(|v| !v.is_empty())),
        _ => {
            return Err(malformed(
                url,
                "more than one of start, startgroup, startchannel, startapp",
            ));
        }
    };
    Ok(ParsedLink {
        channel: Channel::Telegram,
        bot,
        kind,
        param,
        app,
        admin,
        text: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(channel: Channel, bot: &str, param: Option<&str>) -> Result<String, LinkError> {
        build_link(&LinkSpec::new(channel, bot, param)).map(|l| l.url)
    }

    #[test]
    fn a_read_parameter_may_carry_base64_padding_and_a_built_one_may_not() {
        let tg = ParamRule::TELEGRAM;
        // Base64URL of {"eId":"crm-77"}, as a padding encoder writes it.
        let padded = "eyJlSWQiOiJjcm0tNzcifQ==";
        assert!(matches!(
            check_param(Channel::Telegram, tg, padded),
            Err(LinkError::BadChar { ch: '=', .. })
        ));
        assert!(
            link(Channel::Telegram, "shopbot", Some(padded)).is_err(),
            "building stays strict"
        );
        let note = check_read_param(Channel::Telegram, tg, padded)
            .unwrap()
            .expect("a note about the padding");
        assert_eq!(note.unpadded, "eyJlSWQiOiJjcm0tNzcifQ");
        let text = note.to_string();
        assert!(
            text.contains("does not work") && text.contains("eyJlSWQiOiJjcm0tNzcifQ and"),
            "{text}"
        );
        assert_eq!(
            check_read_param(Channel::Telegram, tg, "eyJlSWQiOiJjcm0tNzcifQ"),
            Ok(None)
        );
        assert_eq!(
            check_read_param(Channel::Telegram, tg, "abc="),
            Ok(Some(PaddedParam {
                channel: Channel::Telegram,
                allowed: "[A-Za-z0-9_-]",
                unpadded: "abc".into(),
            }))
        );
        // More than Base64's two, an `=` inside, nothing but padding, another bad character:
        // the strict error.
        for bad in [
            "abc===",
            "a=bc",
            "==",
            "a.b=",
            &format!("{}=", "a".repeat(65)),
        ] {
            assert!(
                check_read_param(Channel::Telegram, tg, bad).is_err(),
                "{bad}"
            );
        }
        // A channel whose parameters may carry `=` needs no note.
        assert_eq!(
            check_read_param(Channel::Messenger, Channel::Messenger.param_rule(), "abc="),
            Ok(None)
        );
    }

    #[test]
    fn every_messenger_link_starts_with_a_listed_prefix() {
        let mut specs = vec![
            LinkSpec::new(Channel::Telegram, "mybot", Some("x1")),
            LinkSpec::new(Channel::Viber, "mybot", Some("x1")),
            LinkSpec::new(Channel::Messenger, "page", Some("x1")),
            LinkSpec::new(Channel::Instagram, "shop.ua", Some("x1")),
            LinkSpec::new(Channel::Whatsapp, "15550001111", Some("x1")),
            LinkSpec::new(Channel::Line, "@shop", Some("x1")),
            LinkSpec::new(Channel::Max, "shop_bot", Some("x1")),
        ];
        for form in [TelegramForm::TelegramMe, TelegramForm::Tg] {
            let mut spec = LinkSpec::new(Channel::Telegram, "mybot", Some("x1"));
            spec.form = form;
            specs.push(spec);
        }
        for spec in &specs {
            let url = build_link(spec).unwrap().url;
            assert!(
                MESSENGER_URL_PREFIXES.iter().any(|p| url.starts_with(p)),
                "{url}"
            );
        }
    }

    #[test]
    fn telegram_start() {
        assert_eq!(
            link(Channel::Telegram, "mybot", Some("customer_12345")).unwrap(),
            "https://t.me/mybot?start=customer_12345"
        );
        assert_eq!(
            link(Channel::Telegram, "@mybot", None).unwrap(),
            "https://t.me/mybot"
        );
    }

    #[test]
    fn telegram_forms_and_kinds() {
        let mut spec = LinkSpec::new(Channel::Telegram, "mybot", Some("team_1"));
        spec.kind = LinkKind::StartGroup;
        spec.admin = &["change_info", "invite_users"];
        assert_eq!(
            build_link(&spec).unwrap().url,
            "https://t.me/mybot?startgroup=team_1&admin=change_info+invite_users"
        );
        spec.form = TelegramForm::Tg;
        assert_eq!(
            build_link(&spec).unwrap().url,
            "tg://resolve?domain=mybot&startgroup=team_1&admin=change_info+invite_users"
        );
        let mut ch = LinkSpec::new(Channel::Telegram, "mybot", None);
        ch.kind = LinkKind::StartChannel;
        ch.admin = &["post_messages"];
        assert_eq!(
            build_link(&ch).unwrap().url,
            "https://t.me/mybot?startchannel&admin=post_messages"
        );
        let mut app = LinkSpec::new(Channel::Telegram, "mybot", Some("x1"));
        app.kind = LinkKind::StartApp;
        assert_eq!(
            build_link(&app).unwrap().url,
            "https://t.me/mybot?startapp=x1"
        );
        app.app = Some("shop");
        assert_eq!(
            build_link(&app).unwrap().url,
            "https://t.me/mybot/shop?startapp=x1"
        );
        app.form = TelegramForm::TelegramMe;
        assert_eq!(
            build_link(&app).unwrap().url,
            "https://telegram.me/mybot/shop?startapp=x1"
        );
        app.form = TelegramForm::Tg;
        assert_eq!(
            build_link(&app).unwrap().url,
            "tg://resolve?domain=mybot&appname=shop&startapp=x1"
        );
    }

    #[test]
    fn telegram_limits_name_rule_length_and_limit() {
        let p = "a".repeat(65);
        let err = link(Channel::Telegram, "mybot", Some(&p)).unwrap_err();
        assert!(matches!(
            err,
            LinkError::TooLong {
                len: 65,
                limit: 64,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(
            msg.contains("65") && msg.contains("64") && msg.contains("stored"),
            "{msg}"
        );
        assert!(link(Channel::Telegram, "mybot", Some(&"a".repeat(64))).is_ok());

        let err = link(Channel::Telegram, "mybot", Some("a.b")).unwrap_err();
        assert!(
            matches!(
                err,
                LinkError::BadChar {
                    ch: '.',
                    pos: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert!(matches!(
            link(Channel::Telegram, "mybot", Some("")).unwrap_err(),
            LinkError::EmptyParam { .. }
        ));
        let mut app = LinkSpec::new(Channel::Telegram, "mybot", None);
        app.kind = LinkKind::StartApp;
        let long = "b".repeat(512);
        app.param = Some(&long);
        assert!(build_link(&app).is_ok());
        let longer = "b".repeat(513);
        app.param = Some(&longer);
        assert!(matches!(
            build_link(&app).unwrap_err(),
            LinkError::TooLong {
                len: 513,
                limit: 512,
                ..
            }
        ));
    }

    #[test]
    fn bad_bots_and_options() {
        assert!(matches!(
            link(Channel::Telegram, "9bot", None).unwrap_err(),
            LinkError::BadBot { .. }
        ));
        assert!(matches!(
            link(Channel::Whatsapp, "12ab", None).unwrap_err(),
            LinkError::BadBot { .. }
        ));
        // A name of dots only would resolve away in a browser.
        for (channel, bot) in [(Channel::Messenger, ".."), (Channel::Instagram, "...")] {
            assert!(matches!(
                link(channel, bot, None).unwrap_err(),
                LinkError::BadBot { .. }
            ));
        }
        let mut s = LinkSpec::new(Channel::Viber, "mybot", Some("x"));
        s.kind = LinkKind::StartGroup;
        assert!(matches!(
            build_link(&s).unwrap_err(),
            LinkError::Unsupported { .. }
        ));
        let mut s = LinkSpec::new(Channel::Telegram, "mybot", Some("x"));
        s.text = Some("hi");
        assert!(matches!(
            build_link(&s).unwrap_err(),
            LinkError::Unsupported { .. }
        ));
        assert!(parse_admin_rights("post_messages+nope").is_err());
        assert_eq!(
            parse_admin_rights("post_messages,invite_users").unwrap(),
            vec!["post_messages", "invite_users"]
        );
        let mut ch = LinkSpec::new(Channel::Telegram, "mybot", Some("p"));
        ch.kind = LinkKind::StartChannel;
        ch.admin = &["post_messages"];
        assert!(matches!(
            build_link(&ch).unwrap_err(),
            LinkError::Unsupported { .. }
        ));
    }

    #[test]
    fn other_channels() {
        let mut v = LinkSpec::new(Channel::Viber, "mybot", Some("12345"));
        v.text = Some("Start!");
        assert_eq!(
            build_link(&v).unwrap().url,
            "viber://pa?chatURI=mybot&context=12345&text=Start!"
        );
        assert_eq!(
            link(
                Channel::Messenger,
                "PAGE-NAME",
                Some("giveaway--value1--738--value2--514--value3")
            )
            .unwrap(),
            "https://m.me/PAGE-NAME?ref=giveaway--value1--738--value2--514--value3"
        );
        assert_eq!(
            link(Channel::Instagram, "shop.ua", Some("summer_sale")).unwrap(),
            "https://ig.me/m/shop.ua?ref=summer_sale"
        );
        assert_eq!(
            link(Channel::Whatsapp, "+1 555 000 1111", Some("summer_sale")).unwrap(),
            "https://wa.me/15550001111?text=ref%3Asummer_sale"
        );
        let mut w = LinkSpec::new(Channel::Whatsapp, "15550001111", Some("summer_sale"));
        w.text = Some("Hello!");
        assert_eq!(
            build_link(&w).unwrap().url,
            "https://wa.me/15550001111?text=Hello!%20ref%3Asummer_sale"
        );
        assert_eq!(
            link(Channel::Line, "@shop", Some("a1")).unwrap(),
            "https://line.me/R/oaMessage/%40shop/?ref%3Aa1"
        );
        assert_eq!(
            link(Channel::Max, "shop_bot", Some("a1")).unwrap(),
            "https://max.ru/shop_bot?start=a1"
        );
        let mut web = LinkSpec::new(Channel::Webchat, "support", Some("hello world"));
        web.base_url = Some("https://links.example.com/");
        assert_eq!(
            build_link(&web).unwrap().url,
            "https://links.example.com/chat/support?ref=hello%20world"
        );
        web.base_url = None;
        assert!(matches!(
            build_link(&web).unwrap_err(),
            LinkError::BadBaseUrl(_)
        ));
        assert!(matches!(
            link(Channel::Messenger, "page", Some("a@b")).unwrap_err(),
            LinkError::BadChar { ch: '@', .. }
        ));
        assert!(matches!(
            link(Channel::Max, "shop_bot", Some(&"x".repeat(129))).unwrap_err(),
            LinkError::TooLong {
                len: 129,
                limit: 128,
                ..
            }
        ));
    }

    #[test]
    fn parses_every_form() {
        let p = parse_link("tg://resolve?domain=mybot&start=abc").unwrap();
        assert_eq!(
            (p.channel, p.bot.as_str(), p.param.as_deref()),
            (Channel::Telegram, "mybot", Some("abc"))
        );
        let p =
            parse_link("https://telegram.me/mybot?startgroup=g1&admin=post_messages+invite_users")
                .unwrap();
        assert_eq!(p.kind, LinkKind::StartGroup);
        assert_eq!(p.admin, vec!["post_messages", "invite_users"]);
        let p = parse_link("https://t.me/mybot/shop?startapp").unwrap();
        assert_eq!(
            (p.kind, p.app.as_deref(), p.param),
            (LinkKind::StartApp, Some("shop"), None)
        );
        let p = parse_link("https://t.me/mybot?startchannel&admin=post_messages").unwrap();
        assert_eq!(p.kind, LinkKind::StartChannel);
        let p = parse_link("viber://pa?chatURI=mybot&context=12345&text=Start!").unwrap();
        assert_eq!(
            (p.param.as_deref(), p.text.as_deref()),
            (Some("12345"), Some("Start!"))
        );
        let p = parse_link("https://wa.me/15550001111?text=Hello!%20ref%3Asummer_sale").unwrap();
        assert_eq!(
            (p.param.as_deref(), p.text.as_deref()),
            (Some("summer_sale"), Some("Hello!"))
        );
        let p = parse_link("https://line.me/R/oaMessage/%40shop/?ref%3Aa1").unwrap();
        assert_eq!((p.bot.as_str(), p.param.as_deref()), ("@shop", Some("a1")));
        let p = parse_link("https://links.example.com/chat/support?ref=hello%20world").unwrap();
        assert_eq!(
            (p.channel, p.param.as_deref()),
            (Channel::Webchat, Some("hello world"))
        );
    }

    #[test]
    fn parse_errors_are_typed() {
        assert!(matches!(
            parse_link("").unwrap_err(),
            LinkError::Malformed { .. }
        ));
        assert!(matches!(
            parse_link("t.me/bot").unwrap_err(),
            LinkError::Malformed { .. }
        ));
        assert!(matches!(
            parse_link("ftp://t.me/x").unwrap_err(),
            LinkError::NotADeepLink { .. }
        ));
        assert!(matches!(
            parse_link("https://t.me/").unwrap_err(),
            LinkError::Malformed { .. }
        ));
        assert!(matches!(
            parse_link("https://t.me/b?start=%ff").unwrap_err(),
            LinkError::Malformed { .. }
        ));
        assert!(matches!(
            parse_link("https://t.me/b?start=a&startgroup=b").unwrap_err(),
            LinkError::Malformed { .. }
        ));
    }
}
