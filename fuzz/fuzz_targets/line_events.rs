//! `line_events` on any body, with the `ref:` marker and a marker from the input (its first
//! byte gives the marker's length). A parameter found is a run of `[A-Za-z0-9_=-]`.

#![no_main]

use botlink_core::Channel;
use botlink_core::arrival::{Start, line_events};
use botlink_core::link::TEXT_MARKER;
use libfuzzer_sys::fuzz_target;

fn check(starts: Vec<Start>) {
    for s in starts {
        assert_eq!(s.channel, Channel::Line);
        assert!(!s.user_id.is_empty());
        assert_eq!(s.chat_id, s.user_id);
        if let Some(p) = &s.param {
            assert!(!p.is_empty());
            assert!(
                p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '='))
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(starts) = line_events(data, TEXT_MARKER) {
        check(starts);
    }
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 8).min(rest.len());
    let (marker, body) = rest.split_at(n);
    if let Ok(marker) = std::str::from_utf8(marker)
        && let Ok(starts) = line_events(body, marker)
    {
        check(starts);
    }
});
