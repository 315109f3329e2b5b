//! `meta_referrals` on any body: every start is Messenger or Instagram, has a sender id, and
//! carries a non-empty ref or none.

#![no_main]

use botlink_core::Channel;
use botlink_core::arrival::meta_referrals;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    if let Ok(starts) = meta_referrals(body) {
        for s in starts {
            assert!(matches!(s.channel, Channel::Messenger | Channel::Instagram));
            assert!(!s.user_id.is_empty());
            assert_eq!(s.chat_id, s.user_id);
            assert!(s.param.as_deref().is_none_or(|p| !p.is_empty()));
        }
    }
});
