//! `viber_callback` on any body: a start has a user id, writes back to it, and carries a
//! non-empty context or none.

#![no_main]

use botlink_core::Channel;
use botlink_core::arrival::viber_callback;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(s) = viber_callback(body) {
        assert_eq!(s.channel, Channel::Viber);
        assert!(!s.user_id.is_empty());
        assert_eq!(s.chat_id, s.user_id);
        assert!(s.param.as_deref().is_none_or(|p| !p.is_empty()));
    }
});
