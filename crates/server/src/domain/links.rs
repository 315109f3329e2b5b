//! Links' rules: what a link request must satisfy, and how it becomes a row with each
//! channel's deep link. Called by the API (one link or a batch); no HTTP, no storage.

use std::collections::BTreeMap;

use botlink_core::Channel;

use super::DomainError;
use super::bots::identifier;
use super::linkgen::{self, EntryTarget, SchemeIn};
use super::validate;
use crate::crypto::SecretKey;
use crate::store::{Bot, DeepLinkOut, EntryPoint, NewLink, Payload, Utm};
use crate::util::{parse_rfc3339, random_code};

/// Length of generated short codes: 62^8 ≈ 2·10^14, unguessable at any click rate.
pub const CODE_LEN: usize = 8;

/// What a link is made with: the server's key (signed parameters) and its public URL (web
/// chat links).
pub struct LinkContext<'a> {
    pub secret: &'a SecretKey,
    pub public_url: &'a str,
}

/// A link as asked for, once its bot and entry point are known.
#[derive(Debug, Clone)]
pub struct LinkDraft {
    /// Channel names to link into; `None` for every channel the bot has.
    pub channels: Option<Vec<String>>,
    pub payload: Payload,
    pub utm: Utm,
    pub scheme: SchemeIn,
    pub signed: bool,
    pub slug: Option<String>,
    pub title: Option<String>,
    /// RFC 3339.
    pub expires_at: Option<String>,
    pub max_clicks: Option<i64>,
}

/// A channel name as people type it (aliases such as `tg` included).
pub fn parse_channel(name: &str) -> Result<Channel, DomainError> {
    name.parse::<Channel>()
        .map_err(|e| DomainError::invalid("invalid_channel", e.to_string()))
}

impl Utm {
    /// Fills tags missing here from `defaults` (an entry point's).
    pub fn or(&self, defaults: &Utm) -> Utm {
        Utm {
            source: self.source.clone().or_else(|| defaults.source.clone()),
            medium: self.medium.clone().or_else(|| defaults.medium.clone()),
            campaign: self.campaign.clone().or_else(|| defaults.campaign.clone()),
            term: self.term.clone().or_else(|| defaults.term.clone()),
            content: self.content.clone().or_else(|| defaults.content.clone()),
        }
    }

    /// Each tag given is 1 to [`validate::UTM_MAX`] characters of plain text.
    pub fn check(&self) -> Result<(), DomainError> {
        for (name, v) in [
            ("source", &self.source),
            ("medium", &self.medium),
            ("campaign", &self.campaign),
            ("term", &self.term),
            ("content", &self.content),
        ] {
            if let Some(v) = v {
                if v.is_empty() {
                    return Err(DomainError::invalid(
                        "invalid_utm",
                        format!(
                            "utm.{name} is empty: give 1-{} characters or leave it out",
                            validate::UTM_MAX
                        ),
                    ));
                }
                validate::UTM.check(&format!("utm.{name}"), v)?;
            }
        }
        Ok(())
    }
}

pub fn check_slug(slug: &str) -> Result<(), DomainError> {
    let ok = (3..=64).contains(&slug.len())
        && slug
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "invalid_slug",
            format!("slug {slug:?} must be 3-64 characters of [A-Za-z0-9_-]"),
        ))
    }
}

pub fn parse_time(what: &str, s: &str) -> Result<i64, DomainError> {
    parse_rfc3339(s).ok_or_else(|| {
        DomainError::invalid(
            "invalid_time",
            format!("{what} {s:?} is not an RFC 3339 time such as 2026-12-31T23:59:59Z"),
        )
    })
}

/// The checks creating and changing a link share, so that no change makes a link that could
/// not have been created: the title's text rule, an expiry in the future, a click cap of at
/// least one. Returns the expiry in epoch milliseconds.
pub fn check_settings(
    title: Option<&str>,
    expires_at: Option<&str>,
    max_clicks: Option<i64>,
    now: i64,
) -> Result<Option<i64>, DomainError> {
    validate::TITLE.check_opt("title", title)?;
    let expires_at = expires_at
        .map(|s| parse_time("expires_at", s))
        .transpose()?;
    if expires_at.is_some_and(|t| t <= now) {
        return Err(DomainError::invalid(
            "invalid_time",
            "expires_at is in the past: give a future time (or null for no expiry)",
        ));
    }
    if max_clicks.is_some_and(|m| m < 1) {
        return Err(DomainError::invalid(
            "invalid_max_clicks",
            "max_clicks must be at least 1 (or null for no cap)",
        ));
    }
    Ok(expires_at)
}

/// Every value of a payload is plain text of bounded length (the message text may span lines).
pub fn check_payload(p: &Payload) -> Result<(), DomainError> {
    use validate::{PAYLOAD, PAYLOAD_TEXT};
    for (field, v) in [
        ("payload.external_id", &p.external_id),
        ("payload.phone", &p.phone),
        ("payload.email", &p.email),
        ("payload.param", &p.param),
        ("payload.value", &p.value),
    ] {
        PAYLOAD.check_opt(field, v.as_deref())?;
    }
    PAYLOAD_TEXT.check_opt("payload.text", p.text.as_deref())?;
    for (map, m) in [("variables", &p.variables), ("fields", &p.fields)] {
        for (k, v) in m {
            PAYLOAD.check(&format!("a name in payload.{map}"), k)?;
            PAYLOAD.check(&format!("payload.{map}.{k}"), v)?;
        }
    }
    Ok(())
}

/// Checks a link request against the bot (and entry point) it names and builds the row: a
/// fresh code, the parameter in the scheme asked for (signed if asked), and each channel's
/// deep link.
pub fn new_link(
    ctx: &LinkContext<'_>,
    bot: &Bot,
    entry: Option<&EntryPoint>,
    input: LinkDraft,
    now: i64,
) -> Result<NewLink, DomainError> {
    input.utm.check()?;
    let utm = match entry {
        Some(e) => input.utm.or(&e.utm),
        None => input.utm.clone(),
    };
    if let Some(slug) = &input.slug {
        check_slug(slug)?;
    }
    let expires_at = check_settings(
        input.title.as_deref(),
        input.expires_at.as_deref(),
        input.max_clicks,
        now,
    )?;
    check_payload(&input.payload)?;

    // Channels: the ones asked for, each of which the bot must have.
    let channels: Vec<Channel> = match &input.channels {
        Some(list) if list.is_empty() => {
            return Err(DomainError::invalid(
                "invalid_channel",
                "channels is empty: name at least one, or leave it out for all of the bot's channels",
            ));
        }
        Some(list) => {
            let mut out = Vec::new();
            for name in list {
                let c = parse_channel(name)?;
                if !bot.channels.iter().any(|bc| bc.channel == c) {
                    return Err(DomainError::invalid(
                        "invalid_channel",
                        format!("the bot has no {c} channel: add it to the bot first"),
                    ));
                }
                if !out.contains(&c) {
                    out.push(c);
                }
            }
            out
        }
        None => bot.channels.iter().map(|bc| bc.channel).collect(),
    };
    if channels.is_empty() {
        return Err(DomainError::invalid(
            "invalid_channel",
            "the bot has no channels: add one (e.g. telegram with its username) first",
        ));
    }

    let code = random_code(CODE_LEN);
    let target = entry.map(|e| EntryTarget {
        key: e.key.clone(),
        default_field: e.default_field.clone(),
    });
    let compose = |e: linkgen::ComposeError| DomainError::invalid(e.code(), e.to_string());
    let param = linkgen::base_param(input.scheme, &input.payload, target.as_ref(), &code)
        .map_err(compose)?;
    let param = if input.signed {
        linkgen::maybe_sign(param, true, &ctx.secret.signing_key(bot.id.as_str()))
            .map_err(compose)?
    } else {
        param
    };
    let mut deep = BTreeMap::new();
    for c in &channels {
        let bc = bot
            .channels
            .iter()
            .find(|bc| bc.channel == *c)
            .expect("checked above");
        let ident = identifier(&bot.id, bc).ok_or_else(|| {
            DomainError::invalid(
                "invalid_channel_settings",
                format!("the bot's {c} channel has no identifier: set it on the bot"),
            )
        })?;
        let text = input.payload.text.as_deref();
        let dl = linkgen::deep_link(*c, &ident, &param, text, ctx.public_url).map_err(compose)?;
        deep.insert(
            *c,
            DeepLinkOut {
                url: dl.url,
                param: param.clone(),
            },
        );
    }
    Ok(NewLink {
        bot_id: bot.id.clone(),
        entry_point_id: entry.map(|e| e.id.clone()),
        code,
        slug: input.slug,
        title: input.title,
        channels,
        scheme: input.scheme.into(),
        signed: input.signed,
        payload: input.payload,
        deep_links: deep,
        utm,
        expires_at,
        max_clicks: input.max_clicks,
        disabled: false,
    })
}
