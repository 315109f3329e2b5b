//! Outbound requests to addresses a tenant controls: HTTP deliveries to a CRM (`send_me`,
//! `send_request`) and messages through the messenger platforms' APIs.
//!
//! - [`guard`]: which addresses may be reached, and the operator's allow-list
//!   (`--outbound-allow`);
//! - [`client`]: the guarded HTTP client every outbound request goes through;
//! - [`channels`]: one sender per messenger (request builders, answer classification into one
//!   [`channels::SendOutcome`]), sent through the guarded client.
//!
//! The queues and workers that call these live elsewhere; this module sends one request and
//! says what became of it. `docs/outbound.md` is the operator's page.

pub mod channels;
pub mod client;
pub mod guard;

pub use client::{
    Outbound, OutboundBuildError, OutboundConfig, OutboundError, OutboundRequest, OutboundResponse,
    TimeoutStage, USER_AGENT, parse_retry_after, target_of,
};
pub use guard::{AllowParseError, OutboundAllow, Refusal, RefuseReason, classify};
