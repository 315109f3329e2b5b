//! The pure rules of botlink: which deep links each messenger accepts, how data is packed
//! into their start parameter, how it is signed, and how it is read back out of what the
//! messenger sends on Start; whether a webhook really comes from the messenger, and which
//! events its body carries. No I/O, no clock, no async: every rule is testable in
//! microseconds, and every later part of botlink (API, redirects, webhooks) calls this crate.

pub mod arrival;
pub mod channel;
pub mod inbound;
pub mod link;
pub mod payload;
pub mod signature;

pub use channel::{Channel, Charset, ParamRule};
pub use inbound::{Inbound, InboundError, InboundKind};
pub use link::{
    DeepLink, LinkError, LinkKind, LinkSpec, ParsedLink, TelegramForm, build_link, parse_link,
};
pub use payload::{Decoded, Fields, JsonPayload, PayloadError, Scheme, StoredRef, decode};
pub use signature::SignatureError;
