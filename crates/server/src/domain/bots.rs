//! Bots' rules: a channel's settings (checked, and split into public settings and sealed
//! secrets), where they keep the bot's identifier, and how a change to a bot's channels
//! reaches the links made for it.

use std::collections::BTreeMap;

use botlink_core::Channel;

use super::DomainError;
use crate::crypto::SecretKey;
use crate::store::{BotChannel, BotId, Link};

/// The settings key holding a channel's bot identifier.
pub fn identifier_key(channel: Channel) -> &'static str {
    match channel {
        Channel::Telegram | Channel::Instagram | Channel::Max => "username",
        Channel::Viber => "uri",
        Channel::Messenger => "page",
        Channel::Whatsapp => "number",
        Channel::Line | Channel::Webchat => "id",
        Channel::Custom => "link",
    }
}

/// The bot's identifier in a channel, from stored settings.
pub fn identifier(bot_id: &BotId, ch: &BotChannel) -> Option<String> {
    let channel = ch.channel;
    ch.settings
        .get(identifier_key(channel))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .or_else(|| (channel == Channel::Webchat).then(|| bot_id.to_string()))
}

/// How a change to the bot's channels named in `changed` reaches each of its links, whose
/// deep links were stored when it was made: a channel the bot no longer has leaves the link
/// (its short link no longer offers or follows it; adding the channel back does not return
/// it to old links), and a channel whose settings changed gets its deep link built again with
/// the bot's identifier there now, keeping the link's parameter and visible text.
pub fn relink(
    public_url: String,
    changed: Vec<Channel>,
) -> impl Fn(&BotId, &[BotChannel], &mut Link) -> Result<bool, String> + Send + Sync {
    move |bot_id, channels, link| {
        let mut touched = false;
        for c in &changed {
            if !link.channels.contains(c) {
                continue;
            }
            let Some(bc) = channels.iter().find(|bc| bc.channel == *c) else {
                link.channels.retain(|l| l != c);
                link.deep_links.remove(c);
                touched = true;
                continue;
            };
            let Some(deep) = link.deep_links.get_mut(c) else {
                continue;
            };
            let ident = identifier(bot_id, bc)
                .ok_or_else(|| format!("needs the bot's identifier in {c}: set it"))?;
            let text = link.payload.text.as_deref();
            let url = super::linkgen::deep_link(*c, &ident, &deep.param, text, &public_url)
                .map_err(|e| {
                    format!(
                        "cannot open in {c} with these settings ({e}); nothing was changed: \
                         keep the old settings, or delete the link first"
                    )
                })?
                .url;
            if url != deep.url {
                deep.url = url;
                touched = true;
            }
        }
        Ok(touched)
    }
}

fn check_url(channel: Channel, field: &str, url: &str) -> Result<(), DomainError> {
    let ok = url::Url::parse(url)
        .ok()
        .is_some_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
    if ok {
        Ok(())
    } else {
        Err(DomainError::invalid(
            "invalid_channel_settings",
            format!("{channel}.{field} {url:?} is not an http(s) URL"),
        ))
    }
}

/// A channel's settings as given: `(name, value)` pairs, `None` for a setting not given
/// (and, for a secret, `Some("")` to remove it).
pub type Given<'a> = [(&'static str, &'a Option<String>)];

/// Validates and splits one channel's settings into public JSON and a sealed secret blob
/// (merged over `old_secrets` when updating: a secret not given keeps its stored value, so
/// settings can be edited without sending the token again).
pub fn channel_row(
    key: &SecretKey,
    bot_id: &BotId,
    channel: Channel,
    public: &Given<'_>,
    secrets_given: &Given<'_>,
    old_secrets: Option<&[u8]>,
) -> Result<BotChannel, DomainError> {
    use super::validate::{SECRET, SETTING, URL};
    let mut settings = serde_json::Map::new();
    for &(k, v) in public {
        if let Some(v) = v {
            let rule = if matches!(k, "api_base_url" | "link" | "url") {
                URL
            } else {
                SETTING
            };
            rule.check(&format!("channels.{channel}.{k}"), v)?;
            settings.insert(
                k.to_string(),
                serde_json::Value::String(v.trim().to_string()),
            );
        }
    }
    // Checked before the stored secrets are opened; the message names the field, never the
    // value.
    for &(k, v) in secrets_given {
        SECRET.check_opt(&format!("channels.{channel}.{k}"), v.as_deref())?;
    }
    let ident_key = identifier_key(channel);
    match settings.get(ident_key).and_then(|v| v.as_str()) {
        Some(ident) => {
            let normal = botlink_core::link::check_bot(channel, ident)
                .map_err(|e| DomainError::invalid("invalid_channel_settings", e.to_string()))?;
            settings.insert(ident_key.to_string(), serde_json::Value::String(normal));
        }
        None if channel == Channel::Webchat => {}
        None => {
            return Err(DomainError::invalid(
                "invalid_channel_settings",
                format!("the {channel} channel needs `{ident_key}`, the bot's identifier there"),
            ));
        }
    }
    for &(k, v) in public {
        if let (true, Some(u)) = (matches!(k, "api_base_url" | "url"), v) {
            check_url(channel, k, u)?;
        }
    }
    let mut secrets = match old_secrets {
        Some(sealed) => open_sealed(key, bot_id, channel, sealed)?,
        None => ChannelSecrets::new(),
    };
    for &(k, v) in secrets_given {
        if let Some(v) = v {
            if v.is_empty() {
                secrets.remove(k);
            } else {
                secrets.insert(k.to_string(), v.clone());
            }
        }
    }
    let sealed = (!secrets.is_empty()).then(|| {
        let names: Vec<String> = secrets.keys().cloned().collect();
        settings.insert("secrets".into(), serde_json::json!(names));
        key.seal(
            &serde_json::to_vec(&secrets).expect("a map of strings serializes"),
            &secrets_context(bot_id, channel),
        )
    });
    Ok(BotChannel {
        channel,
        settings: serde_json::Value::Object(settings),
        secrets: sealed,
    })
}

/// A channel's secrets (tokens, app secrets, webhook secrets) by name, opened.
pub type ChannelSecrets = BTreeMap<String, String>;

/// What a channel's sealed secrets are bound to: they open only for this bot and channel.
fn secrets_context(bot_id: &BotId, channel: Channel) -> String {
    format!("{bot_id}/{channel}")
}

fn open_sealed(
    key: &SecretKey,
    bot_id: &BotId,
    channel: Channel,
    sealed: &[u8],
) -> Result<ChannelSecrets, DomainError> {
    let plain = key
        .open(sealed, &secrets_context(bot_id, channel))
        .map_err(|e| {
            DomainError::Internal(format!("the {channel} secrets of bot {bot_id}: {e}"))
        })?;
    serde_json::from_slice(&plain).map_err(|e| {
        DomainError::Internal(format!(
            "the {channel} secrets of bot {bot_id} are not a map of strings: {e}"
        ))
    })
}

/// The secrets of a bot's channel, opened (empty when it has none).
pub fn open_secrets(
    key: &SecretKey,
    bot_id: &BotId,
    ch: &BotChannel,
) -> Result<ChannelSecrets, DomainError> {
    match &ch.secrets {
        Some(sealed) => open_sealed(key, bot_id, ch.channel, sealed),
        None => Ok(ChannelSecrets::new()),
    }
}

/// The channel with the secret `name` set to `value` (sealed again with the others), and the
/// settings' list of secret names updated: for secrets botlink makes itself (a webhook's).
pub fn with_secret(
    key: &SecretKey,
    bot_id: &BotId,
    ch: &BotChannel,
    name: &str,
    value: &str,
) -> Result<BotChannel, DomainError> {
    let mut secrets = open_secrets(key, bot_id, ch)?;
    secrets.insert(name.to_owned(), value.to_owned());
    let mut settings = ch.settings.clone();
    if let Some(map) = settings.as_object_mut() {
        let names: Vec<&String> = secrets.keys().collect();
        map.insert("secrets".into(), serde_json::json!(names));
    }
    Ok(BotChannel {
        channel: ch.channel,
        settings,
        secrets: Some(key.seal(
            &serde_json::to_vec(&secrets).expect("a map of strings serializes"),
            &secrets_context(bot_id, ch.channel),
        )),
    })
}
