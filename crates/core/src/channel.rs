//! The messengers botlink links into, and each one's rules for the bot identifier and the
//! deep-link parameter (`docs/messengers.md`).

use std::fmt;
use std::str::FromStr;

/// A messenger (or botlink's own web chat) that a deep link opens. Serialized as its
/// lowercase name ([`Channel::as_str`]); reading accepts only that name, so a stored value
/// is exact (the aliases of [`FromStr`] are for people typing).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Telegram,
    Viber,
    Messenger,
    Instagram,
    Whatsapp,
    Line,
    Max,
    Webchat,
    /// A business's own chat (an app or a site widget): its page opens with `?start=<p>`,
    /// its backend posts updates to botlink and receives the bot's messages, both signed
    /// (`docs/custom-channel.md`).
    Custom,
}

impl Channel {
    /// Every channel, in the order botlink lists them.
    pub const ALL: [Channel; 9] = [
        Channel::Telegram,
        Channel::Viber,
        Channel::Messenger,
        Channel::Instagram,
        Channel::Whatsapp,
        Channel::Line,
        Channel::Max,
        Channel::Webchat,
        Channel::Custom,
    ];

    /// The lowercase name used on the command line, in the API and in storage.
    pub const fn as_str(self) -> &'static str {
        match self {
            Channel::Telegram => "telegram",
            Channel::Viber => "viber",
            Channel::Messenger => "messenger",
            Channel::Instagram => "instagram",
            Channel::Whatsapp => "whatsapp",
            Channel::Line => "line",
            Channel::Max => "max",
            Channel::Webchat => "webchat",
            Channel::Custom => "custom",
        }
    }

    /// A human name for pages and buttons.
    pub const fn display_name(self) -> &'static str {
        match self {
            Channel::Telegram => "Telegram",
            Channel::Viber => "Viber",
            Channel::Messenger => "Messenger",
            Channel::Instagram => "Instagram",
            Channel::Whatsapp => "WhatsApp",
            Channel::Line => "LINE",
            Channel::Max => "MAX",
            Channel::Webchat => "Web chat",
            Channel::Custom => "Chat",
        }
    }

    /// The rule for this channel's start parameter (for Telegram, of `?start=`/`?startgroup=`;
    /// mini apps have their own, see [`ParamRule::TELEGRAM_APP`]).
    pub const fn param_rule(self) -> ParamRule {
        match self {
            Channel::Telegram => ParamRule::TELEGRAM,
            Channel::Viber => ParamRule::VIBER,
            Channel::Messenger | Channel::Instagram => ParamRule::META,
            Channel::Whatsapp | Channel::Line => ParamRule::VISIBLE_TEXT,
            Channel::Max => ParamRule::MAX,
            Channel::Webchat => ParamRule::WEBCHAT,
            Channel::Custom => ParamRule::CUSTOM,
        }
    }

    /// Whether the parameter travels hidden (true) or as text the person sees and sends (false).
    pub const fn param_is_hidden(self) -> bool {
        !matches!(self, Channel::Whatsapp | Channel::Line)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A channel name that botlink does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown channel {0:?}: use one of telegram, viber, messenger, instagram, whatsapp, line, max, webchat, custom"
)]
pub struct UnknownChannel(pub String);

impl FromStr for Channel {
    type Err = UnknownChannel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str() == lower)
            .or(match lower.as_str() {
                "tg" => Some(Channel::Telegram),
                "fb" | "facebook" => Some(Channel::Messenger),
                "ig" => Some(Channel::Instagram),
                "wa" => Some(Channel::Whatsapp),
                "web" => Some(Channel::Webchat),
                _ => None,
            })
            .ok_or_else(|| UnknownChannel(s.to_string()))
    }
}

/// Which characters a parameter may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// `[A-Za-z0-9_-]`: Telegram drops any other character silently, so botlink refuses them.
    UrlSafe,
    /// `[A-Za-z0-9_=-]`: the set Meta passes through `ref` unchanged.
    MetaRef,
    /// Any text; it is percent-encoded into the URL.
    AnyText,
}

impl Charset {
    /// Whether `c` may appear in a parameter of this set.
    #[inline]
    pub fn allows(self, c: char) -> bool {
        match self {
            Charset::UrlSafe => c.is_ascii_alphanumeric() || c == '_' || c == '-',
            Charset::MetaRef => c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '=',
            Charset::AnyText => !c.is_control(),
        }
    }

    /// How the set reads in an error message.
    pub const fn describe(self) -> &'static str {
        match self {
            Charset::UrlSafe => "[A-Za-z0-9_-]",
            Charset::MetaRef => "[A-Za-z0-9_=-]",
            Charset::AnyText => "printable text (no control characters)",
        }
    }
}

/// A channel's rule for the deep-link parameter: allowed characters and the length limit,
/// counted in characters of the parameter before URL encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamRule {
    pub charset: Charset,
    pub max_len: usize,
    /// Where the limit comes from, for error messages and docs.
    pub source: &'static str,
}

impl ParamRule {
    /// Telegram `?start=` / `?startgroup=`: 1–64 characters of `[A-Za-z0-9_-]`.
    pub const TELEGRAM: ParamRule = ParamRule {
        charset: Charset::UrlSafe,
        max_len: 64,
        source: "Telegram Bot API, deep linking",
    };
    /// Telegram mini app `?startapp=`: up to 512 characters of `[A-Za-z0-9_-]`.
    pub const TELEGRAM_APP: ParamRule = ParamRule {
        charset: Charset::UrlSafe,
        max_len: 512,
        source: "Telegram Mini Apps, startapp",
    };
    /// Viber `context`: any text, URL-encoded. Viber documents no limit; botlink caps it so
    /// that the link stays usable in QR codes and SMS.
    pub const VIBER: ParamRule = ParamRule {
        charset: Charset::AnyText,
        max_len: 255,
        source: "botlink's cap for Viber context",
    };
    /// Messenger and Instagram `ref`: up to 2,083 characters of `[A-Za-z0-9_=-]`.
    pub const META: ParamRule = ParamRule {
        charset: Charset::MetaRef,
        max_len: 2083,
        source: "Meta m.me / ig.me ref parameter",
    };
    /// WhatsApp and LINE carry the parameter inside visible text after a marker, so it must be
    /// one URL-safe token, short enough not to put people off sending it.
    pub const VISIBLE_TEXT: ParamRule = ParamRule {
        charset: Charset::UrlSafe,
        max_len: 256,
        source: "botlink's cap for a parameter inside visible message text",
    };
    /// MAX `?start=`: up to 128 characters.
    pub const MAX: ParamRule = ParamRule {
        charset: Charset::UrlSafe,
        max_len: 128,
        source: "MAX bot deep links",
    };
    /// botlink's web chat `?ref=`: URL-encoded text.
    pub const WEBCHAT: ParamRule = ParamRule {
        charset: Charset::AnyText,
        max_len: 2048,
        source: "botlink's cap for web chat ref",
    };
    /// A custom chat's `?start=`: URL-encoded text, as the web chat's.
    pub const CUSTOM: ParamRule = ParamRule {
        charset: Charset::AnyText,
        max_len: 2048,
        source: "botlink's cap for a custom chat's start",
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert_eq!("TG".parse::<Channel>().unwrap(), Channel::Telegram);
        let err = "icq".parse::<Channel>().unwrap_err().to_string();
        assert!(err.contains("icq") && err.contains("telegram"), "{err}");
    }

    #[test]
    fn charsets() {
        assert!(Charset::UrlSafe.allows('a') && Charset::UrlSafe.allows('-'));
        assert!(!Charset::UrlSafe.allows('=') && !Charset::UrlSafe.allows('.'));
        assert!(Charset::MetaRef.allows('='));
        assert!(!Charset::MetaRef.allows('@'));
        assert!(Charset::AnyText.allows('é') && !Charset::AnyText.allows('\n'));
    }
}
