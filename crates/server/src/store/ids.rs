//! Typed ids: opaque strings that cannot be mixed up across module boundaries.
//!
//! Generated ids are `<prefix>_<uuid v7 in hex>`: v7 uuids sort by creation time, so rows
//! created together sit together in indexes, and the prefix tells a reader what an id names.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Wraps an id received from outside (a URL path, a database row); no check is made:
        /// an id that names nothing is simply not found.
        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, prefix = $prefix:literal) => {
        typed_id!($(#[$doc])* $name);

        impl $name {
            #[doc = concat!("A new, unique id: `", $prefix, "_` followed by a uuid v7 in hex.")]
            // A random id is not a sensible `Default`.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(format!(concat!($prefix, "_{}"), uuid::Uuid::now_v7().simple()))
            }
        }
    };
}

typed_id!(
    /// A workspace: the tenant that owns bots, links and API keys.
    WorkspaceId, prefix = "ws"
);
typed_id!(
    /// An API key (its id, not the secret).
    ApiKeyId, prefix = "key"
);
typed_id!(
    /// A bot and its channel settings.
    BotId, prefix = "bot"
);
typed_id!(
    /// An entry point of a bot's scenario.
    EntryPointId, prefix = "ep"
);
typed_id!(
    /// A link made through the API.
    LinkId, prefix = "lnk"
);
typed_id!(
    /// A click. Chosen by the caller (a short random code that can travel inside a
    /// parameter and tie a later Start to the click), so there is no generator here.
    ClickId
);

typed_id!(
    /// A contact: one person in one channel of one bot.
    ContactId, prefix = "ct"
);
typed_id!(
    /// An update received from a messenger, in the inbox.
    InboxId, prefix = "in"
);
typed_id!(
    /// A recorded Start.
    StartId, prefix = "st"
);
typed_id!(
    /// A message in the outbox, to send through a channel.
    MessageId, prefix = "om"
);
typed_id!(
    /// A delivery (`send_me`, `send_request`): also its Standard Webhooks `webhook-id`, the
    /// same on every attempt so that the receiver can drop a duplicate.
    DeliveryId, prefix = "msg"
);
typed_id!(
    /// A call_node run.
    RunId, prefix = "run"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_sort_by_creation() {
        let a = LinkId::new();
        let b = LinkId::new();
        assert!(a.as_str().starts_with("lnk_"));
        assert_eq!(a.as_str().len(), "lnk_".len() + 32);
        assert!(a < b, "uuid v7 ids sort by creation time: {a} then {b}");
        assert!(WorkspaceId::new().as_str().starts_with("ws_"));
        assert!(ApiKeyId::new().as_str().starts_with("key_"));
        assert!(BotId::new().as_str().starts_with("bot_"));
        assert!(EntryPointId::new().as_str().starts_with("ep_"));
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let id = ClickId::from("aB3xYz9");
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"aB3xYz9\"");
        let back: ClickId = serde_json::from_str("\"aB3xYz9\"").unwrap();
        assert_eq!(back, id);
    }
}
