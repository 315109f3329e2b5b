//! `max_update` on any body: a start has a user id and a chat id, and carries a non-empty
//! payload or none.

#![no_main]

use botlink_core::Channel;
use botlink_core::arrival::max_update;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(s) = max_update(body) {
        assert_eq!(s.channel, Channel::Max);
        assert!(!s.user_id.is_empty() && !s.chat_id.is_empty());
        assert!(s.param.as_deref().is_none_or(|p| !p.is_empty()));
    }
});
