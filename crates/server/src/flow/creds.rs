//! A bot channel's settings and opened secrets, as its sender needs them.

use botlink_core::Channel;

use crate::crypto::SecretKey;
use crate::domain::bots::{ChannelSecrets, open_secrets};
use crate::outbound::channels::{
    ChannelCreds, ChannelSender, CustomCreds, LineCreds, MaxCreds, MetaCreds, TelegramCreds,
    ViberCreds, WhatsappCreds,
};
use crate::store::{Bot, BotChannel};

/// Why a channel cannot send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredsError {
    #[error("the bot has no {0} channel")]
    NoChannel(Channel),
    #[error("the bot's {channel} channel has no `{what}`: set it on the bot")]
    Missing {
        channel: Channel,
        what: &'static str,
    },
    #[error("the {0} channel does not send through botlink")]
    NotSending(Channel),
    #[error("{0}")]
    Secrets(String),
}

/// The bot's settings for `channel`.
pub fn channel_of(bot: &Bot, channel: Channel) -> Result<&BotChannel, CredsError> {
    bot.channels
        .iter()
        .find(|c| c.channel == channel)
        .ok_or(CredsError::NoChannel(channel))
}

/// The opened secrets of the bot's `channel`.
pub fn secrets_of(
    key: &SecretKey,
    bot: &Bot,
    channel: Channel,
) -> Result<ChannelSecrets, CredsError> {
    let ch = channel_of(bot, channel)?;
    open_secrets(key, &bot.id, ch).map_err(|e| CredsError::Secrets(e.to_string()))
}

fn setting(ch: &BotChannel, name: &str) -> Option<String> {
    ch.settings
        .get(name)
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// What sends the bot's messages on `channel`.
pub fn sender(key: &SecretKey, bot: &Bot, channel: Channel) -> Result<ChannelSender, CredsError> {
    let ch = channel_of(bot, channel)?;
    let secrets = open_secrets(key, &bot.id, ch).map_err(|e| CredsError::Secrets(e.to_string()))?;
    let secret = |what: &'static str| {
        secrets
            .get(what)
            .filter(|s| !s.is_empty())
            .cloned()
            .ok_or(CredsError::Missing { channel, what })
    };
    let public =
        |what: &'static str| setting(ch, what).ok_or(CredsError::Missing { channel, what });
    let creds = match channel {
        Channel::Telegram => ChannelCreds::Telegram(TelegramCreds {
            token: secret("token")?,
        }),
        Channel::Viber => ChannelCreds::Viber(ViberCreds {
            token: secret("token")?,
            sender_name: bot.name.clone(),
        }),
        Channel::Messenger => ChannelCreds::Messenger(MetaCreds {
            page_access_token: secret("page_token")?,
        }),
        Channel::Instagram => ChannelCreds::Instagram(MetaCreds {
            page_access_token: secret("access_token")?,
        }),
        Channel::Whatsapp => ChannelCreds::Whatsapp(WhatsappCreds {
            access_token: secret("access_token")?,
            phone_number_id: public("phone_number_id")?,
        }),
        Channel::Line => ChannelCreds::Line(LineCreds {
            channel_access_token: secret("access_token")?,
        }),
        Channel::Max => ChannelCreds::Max(MaxCreds {
            token: secret("token")?,
        }),
        Channel::Custom => ChannelCreds::Custom(CustomCreds {
            url: public("url")?,
            webhook_secret: secret("webhook_secret")?,
        }),
        Channel::Webchat => return Err(CredsError::NotSending(channel)),
    };
    Ok(ChannelSender::new(creds, setting(ch, "api_base_url")))
}
