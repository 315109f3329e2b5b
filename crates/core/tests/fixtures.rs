//! Every start payload in `tests/fixtures/start-payloads/` (copied from the shared fixtures,
//! in the shapes each platform documents) goes through the matching `arrival` function, and
//! the user id, chat id and parameter that a Start would record are checked exactly. The
//! parameter is then decoded, as the worker would, to check what the scenario receives.

use std::fs;
use std::path::{Path, PathBuf};

use botlink_core::arrival::{
    self, ArrivalError, Start, meta_referrals, telegram_update, viber_callback, whatsapp_messages,
};
use botlink_core::link::TEXT_MARKER;
use botlink_core::{Channel, Scheme, decode};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/start-payloads")
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The one start a single-event body carries.
fn only(starts: Vec<Start>, name: &str) -> Start {
    assert_eq!(starts.len(), 1, "{name}: expected exactly one start");
    starts.into_iter().next().unwrap()
}

fn ids(s: &Start) -> (Channel, &str, &str, Option<&str>) {
    (
        s.channel,
        s.user_id.as_str(),
        s.chat_id.as_str(),
        s.param.as_deref(),
    )
}

fn telegram_start(name: &str) {
    let s = telegram_update(&read(name), Some("mybot")).unwrap();
    assert_eq!(
        ids(&s),
        (
            Channel::Telegram,
            "398866372",
            "398866372",
            Some("eyJlIjoiZW1haWxAZ21haWwuY29tIn0")
        )
    );
    assert_eq!(s.user_name.as_deref(), Some("Ivan Petrenko"));
    assert_eq!(s.event_id.as_deref(), Some("873201554"));
    // Without a bot name the private-chat command is accepted too.
    assert_eq!(telegram_update(&read(name), None).unwrap().param, s.param);
    let d = decode(s.param.as_deref().unwrap(), None, None).unwrap();
    assert_eq!(d.scheme, Some(Scheme::Json));
    assert_eq!(d.email.as_deref(), Some("email@gmail.com"));
    assert_eq!((d.phone, d.external_id), (None, None));
}

fn telegram_group(name: &str) {
    let body = read(name);
    let s = telegram_update(&body, Some("mybot")).unwrap();
    assert_eq!(
        ids(&s),
        (
            Channel::Telegram,
            "398866372",
            "-1001234567890",
            Some("team_1")
        )
    );
    assert_eq!(s.user_name.as_deref(), Some("Ivan"));
    // `@mybot` matches case-insensitively and with a leading `@`.
    assert_eq!(
        telegram_update(&body, Some("@MyBot"))
            .unwrap()
            .param
            .as_deref(),
        Some("team_1")
    );
    // The same command in a group where another bot receives it is not that bot's start.
    assert_eq!(
        telegram_update(&body, Some("otherbot")).unwrap_err(),
        ArrivalError::OtherBot {
            addressed: "mybot".into(),
            bot: "otherbot".into()
        }
    );
    let d = decode("team_1", None, None).unwrap();
    assert_eq!(d.scheme, Some(Scheme::Raw));
    assert_eq!(d.inner, "team_1");
}

fn viber_started(name: &str) {
    let s = viber_callback(&read(name)).unwrap();
    assert_eq!(
        ids(&s),
        (
            Channel::Viber,
            "01234567890A=",
            "01234567890A=",
            Some("customer_12345")
        )
    );
    assert_eq!(s.user_name.as_deref(), Some("John McClane"));
    assert_eq!(s.event_id.as_deref(), Some("5491234567890123456"));
    assert_eq!(
        decode("customer_12345", None, None).unwrap().scheme,
        Some(Scheme::Raw)
    );
}

fn viber_subscribed(name: &str) {
    let s = viber_callback(&read(name)).unwrap();
    // `subscribed` never carries the context: the one saved at conversation_started applies.
    assert_eq!(
        ids(&s),
        (Channel::Viber, "01234567890A=", "01234567890A=", None)
    );
    assert_eq!(s.event_id.as_deref(), Some("5491234567890123999"));
}

fn messenger_postback(name: &str) {
    let s = only(meta_referrals(&read(name)).unwrap(), name);
    assert_eq!(
        ids(&s),
        (
            Channel::Messenger,
            "6700000000000001",
            "6700000000000001",
            Some("giveaway--value1--738--value2")
        )
    );
    assert_eq!(s.event_id.as_deref(), Some("m_AbCdEf"));
    let d = decode(s.param.as_deref().unwrap(), None, None).unwrap();
    assert_eq!(d.scheme, Some(Scheme::Fields));
    assert_eq!(d.entry.as_deref(), Some("giveaway"));
    assert_eq!(d.entry_value.as_deref(), Some("value1"));
    assert_eq!(d.fields, vec![("738".to_string(), "value2".to_string())]);
}

fn messenger_referral(name: &str) {
    let s = only(meta_referrals(&read(name)).unwrap(), name);
    assert_eq!(
        ids(&s),
        (
            Channel::Messenger,
            "6700000000000001",
            "6700000000000001",
            Some("order_67890")
        )
    );
    assert_eq!(
        s.event_id.as_deref(),
        Some("6700000000000001:1763700100100")
    );
    assert_eq!(
        decode("order_67890", None, None).unwrap().scheme,
        Some(Scheme::Raw)
    );
}

fn instagram_referral(name: &str) {
    let s = only(meta_referrals(&read(name)).unwrap(), name);
    assert_eq!(
        ids(&s),
        (
            Channel::Instagram,
            "1200000000000001",
            "1200000000000001",
            Some("summer_sale")
        )
    );
}

fn whatsapp_text(name: &str) {
    let s = only(whatsapp_messages(&read(name), TEXT_MARKER).unwrap(), name);
    assert_eq!(
        ids(&s),
        (
            Channel::Whatsapp,
            "380501234567",
            "380501234567",
            Some("summer_sale")
        )
    );
    assert_eq!(s.user_name.as_deref(), Some("Maria"));
    assert_eq!(
        s.event_id.as_deref(),
        Some("wamid.HBgMMzgwNTAxMjM0NTY3FQIAEhgUM0EwMDAwMDAwMDAwMDAwMDAwMDAA")
    );
    // Another marker finds nothing in the same text: the parameter is absent, not guessed.
    let other = only(whatsapp_messages(&read(name), "code=").unwrap(), name);
    assert_eq!(other.param, None);
}

/// A check of one fixture file, given its name.
type Check = fn(&str);

/// Which check each start fixture gets. Every file of the folder, these and the other
/// webhook bodies beside them, is also read by `tests/webhooks.rs`, whose
/// `every_fixture_is_read_into_its_events` fails for a file it does not list.
const CHECKS: &[(&str, Check)] = &[
    ("telegram-start.json", telegram_start),
    ("telegram-start-group.json", telegram_group),
    ("viber-conversation-started.json", viber_started),
    ("viber-subscribed.json", viber_subscribed),
    ("messenger-postback-referral.json", messenger_postback),
    ("messenger-referral.json", messenger_referral),
    ("instagram-referral.json", instagram_referral),
    ("whatsapp-text.json", whatsapp_text),
];

#[test]
fn every_start_fixture_is_checked() {
    for (name, check) in CHECKS {
        check(name);
    }
}

#[test]
fn fixtures_are_not_starts_for_other_parsers() {
    // A body sent to the wrong webhook is an error or yields nothing, never a start.
    let tg = read("telegram-start.json");
    assert!(viber_callback(&tg).is_err());
    assert!(meta_referrals(&tg).is_err());
    assert!(arrival::max_update(&tg).is_err());
    assert!(arrival::line_events(&tg, TEXT_MARKER).is_err());
    assert!(whatsapp_messages(&tg, TEXT_MARKER).is_err());
    let viber = read("viber-conversation-started.json");
    assert!(telegram_update(&viber, None).is_err());
    let wa = read("whatsapp-text.json");
    assert!(meta_referrals(&wa).is_err());
    let fb = read("messenger-referral.json");
    assert_eq!(whatsapp_messages(&fb, TEXT_MARKER).unwrap(), vec![]);
}
