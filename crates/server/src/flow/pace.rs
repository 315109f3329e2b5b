//! Sending at each platform's pace: per bot and channel a rate (messages a second: the
//! platform's documented limit, or the channel's `rate_limit` setting, e.g. for Telegram's paid
//! broadcasts), and for some platforms a least gap between two messages to one chat.
//!
//! The rate holds across every instance together: slots are taken from the database
//! (`FlowStore::take_send_slots`), a run of them at a time, and each message waits for its
//! slot, so messages go evenly spaced rather than in bursts. A platform's 429 pushes the next
//! slot past the wait it asks for (`FlowStore::pause_sends`): the bot is paused on that channel
//! everywhere, and the message is tried again.

use botlink_core::Channel;

use crate::store::Bot;

/// How fast a bot may send on a channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Messages a second, all chats together.
    pub per_second: u32,
    /// The least time between two messages to one chat, in ms.
    pub per_chat_ms: Option<i64>,
}

/// The share of a rate botlink uses, in percent. Platforms count requests as they arrive,
/// over a sliding second, and the network moves arrivals by a few milliseconds either way:
/// slots exactly at the limit let an eleventh message of ten a second arrive inside the same
/// second now and then (two 429s in thirty at 10/s, in a test against a strict window).
const USE_PERCENT: i64 = 97;

impl Pace {
    /// The time between two slots, in microseconds.
    pub fn interval_us(&self) -> i64 {
        100_000_000 / (i64::from(self.per_second.max(1)) * USE_PERCENT)
    }
}

/// The highest `rate_limit` a channel takes (messages a second).
pub const MAX_RATE_LIMIT: u32 = 100_000;

/// The limits each platform documents, by default: `None` where it documents none that a bot
/// could keep to (Viber counts messages per user per hour; custom channels and the web chat
/// are the operator's own).
pub fn default_pace(channel: Channel) -> Option<Pace> {
    let pace = |per_second, per_chat_ms| {
        Some(Pace {
            per_second,
            per_chat_ms,
        })
    };
    match channel {
        // Bot FAQ: about 30 messages a second in all, at most one a second to one chat.
        Channel::Telegram => pace(30, Some(1_000)),
        // Send API: 300 calls a second per page.
        Channel::Messenger => pace(300, None),
        // Instagram messaging: 100 calls a second per professional account.
        Channel::Instagram => pace(100, None),
        // Cloud API: 80 messages a second per number by default.
        Channel::Whatsapp => pace(80, None),
        // Messaging API: 2,000 push requests a second per channel.
        Channel::Line => pace(2_000, None),
        // platform-api: 30 requests a second per bot; two messages a second into one dialog.
        Channel::Max => pace(30, Some(500)),
        Channel::Viber | Channel::Custom | Channel::Webchat => None,
    }
}

/// The pace of `bot` on `channel`: its `rate_limit` setting over the platform's default rate.
pub fn pace_of(bot: &Bot, channel: Channel) -> Option<Pace> {
    let set = bot
        .channels
        .iter()
        .find(|c| c.channel == channel)
        .and_then(|c| c.settings.get("rate_limit"))
        .and_then(serde_json::Value::as_u64)
        .and_then(|n| u32::try_from(n).ok())
        .filter(|n| *n > 0);
    match (set, default_pace(channel)) {
        (Some(per_second), Some(d)) => Some(Pace { per_second, ..d }),
        (Some(per_second), None) => Some(Pace {
            per_second,
            per_chat_ms: None,
        }),
        (None, d) => d,
    }
}
