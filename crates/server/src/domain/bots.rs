//! Bots' rules: where each channel's settings keep the bot's identifier, and how a change to
//! a bot's channels reaches the links made for it.

use botlink_core::Channel;

use crate::store::{BotChannel, BotId, Link};

/// The settings key holding a channel's bot identifier.
pub fn identifier_key(channel: Channel) -> &'static str {
    match channel {
        Channel::Telegram | Channel::Instagram | Channel::Max => "username",
        Channel::Viber => "uri",
        Channel::Messenger => "page",
        Channel::Whatsapp => "number",
        Channel::Line | Channel::Webchat => "id",
    }
}

/// The bot's identifier in a channel, from stored settings.
pub fn identifier(bot_id: &BotId, ch: &BotChannel) -> Option<String> {
    let channel: Channel = ch.channel.parse().ok()?;
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
            let name = c.as_str();
            if !link.channels.iter().any(|l| l == name) {
                continue;
            }
            let Some(bc) = channels.iter().find(|bc| bc.channel == name) else {
                link.channels.retain(|l| l != name);
                link.deep_links.remove(name);
                touched = true;
                continue;
            };
            let Some(deep) = link.deep_links.get_mut(name) else {
                continue;
            };
            let ident = identifier(bot_id, bc)
                .ok_or_else(|| format!("needs the bot's identifier in {c}: set it"))?;
            let text = link.payload.get("text").and_then(|t| t.as_str());
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
