//! `telegram_update` on any body and `telegram_start_param` on any text. A start found has
//! ids, and its parameter is trimmed, non-empty and read back the same from `/start <p>`.

#![no_main]

use botlink_core::Channel;
use botlink_core::arrival::{telegram_start_param, telegram_update};
use libfuzzer_sys::fuzz_target;

fn check_param(p: &str) {
    assert!(!p.is_empty());
    assert_eq!(p, p.trim(), "{p:?} is not trimmed");
    assert_eq!(
        telegram_start_param(&format!("/start {p}"), None)
            .unwrap()
            .as_deref(),
        Some(p)
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    let bot = (mode & 1 == 1).then_some("mybot");
    if let Ok(s) = telegram_update(body, bot) {
        assert_eq!(s.channel, Channel::Telegram);
        assert!(!s.user_id.is_empty() && !s.chat_id.is_empty());
        if let Some(p) = &s.param {
            check_param(p);
        }
    }
    let text = String::from_utf8_lossy(body);
    if let Ok(Some(p)) = telegram_start_param(&text, bot) {
        check_param(&p);
        assert!(text.contains(&p));
    }
});
