//! Inbound webhooks: every body in `tests/fixtures/start-payloads/` read into the exact events
//! the server would store, the rules of each platform on small bodies, every signature scheme
//! against known vectors (and forged, missing and malformed signatures refused), Standard
//! Webhooks' timestamp tolerance, and property tests that no input panics a parser or a
//! verifier.

use std::fs;
use std::path::{Path, PathBuf};

use botlink_core::inbound::{self, Inbound, InboundError, InboundKind, MAX_CUSTOM_ID_LEN};
use botlink_core::link::TEXT_MARKER;
use botlink_core::signature::standard_webhooks::{self, DEFAULT_TOLERANCE_SECS, Secret};
use botlink_core::signature::{
    SignatureError, hub_challenge, verify_hub, verify_line, verify_max, verify_telegram,
    verify_viber,
};
use botlink_core::{Scheme, arrival, decode};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// fixtures

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/start-payloads")
}

fn read(name: &str) -> Vec<u8> {
    let path = dir().join(name);
    fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn event(
    event_id: &str,
    user_id: &str,
    chat_id: &str,
    user_name: Option<&str>,
    language: Option<&str>,
    kind: InboundKind,
) -> Inbound {
    Inbound {
        event_id: event_id.into(),
        user_id: user_id.into(),
        chat_id: chat_id.into(),
        user_name: user_name.map(Into::into),
        language: language.map(Into::into),
        kind,
    }
}

fn start(param: &str) -> InboundKind {
    InboundKind::Start {
        param: Some(param.into()),
    }
}

fn message(text: &str) -> InboundKind {
    InboundKind::Message { text: text.into() }
}

fn postback(payload: &str) -> InboundKind {
    InboundKind::Postback {
        payload: payload.into(),
    }
}

const IVAN: (&str, &str, Option<&str>, Option<&str>) =
    ("398866372", "398866372", Some("Ivan Petrenko"), Some("uk"));

fn ivan(event_id: &str, kind: InboundKind) -> Inbound {
    event(event_id, IVAN.0, IVAN.1, IVAN.2, IVAN.3, kind)
}

fn telegram_start(name: &str) {
    let events = inbound::telegram(&read(name), Some("mybot")).unwrap();
    assert_eq!(
        events,
        [ivan("873201554", start("eyJlIjoiZW1haWxAZ21haWwuY29tIn0"))]
    );
    assert_eq!(inbound::telegram(&read(name), None).unwrap(), events);
}

fn telegram_group(name: &str) {
    let body = read(name);
    let expected = [event(
        "873201555",
        "398866372",
        "-1001234567890",
        Some("Ivan"),
        Some("en"),
        start("team_1"),
    )];
    assert_eq!(inbound::telegram(&body, Some("mybot")).unwrap(), expected);
    assert_eq!(inbound::telegram(&body, Some("@MyBot")).unwrap(), expected);
    // In a group, `/start@mybot` is not the start of another bot receiving the same message.
    assert_eq!(inbound::telegram(&body, Some("otherbot")).unwrap(), []);
}

fn telegram_text(name: &str) {
    assert_eq!(
        inbound::telegram(&read(name), Some("mybot")).unwrap(),
        [ivan("873201556", message("What sizes do you have?"))]
    );
}

fn telegram_callback(name: &str) {
    assert_eq!(
        inbound::telegram(&read(name), Some("mybot")).unwrap(),
        [ivan("873201557", postback("size_m"))]
    );
}

fn telegram_blocked(name: &str) {
    assert_eq!(
        inbound::telegram(&read(name), Some("mybot")).unwrap(),
        [ivan("873201558", InboundKind::Unsubscribed)]
    );
}

const JOHN: (&str, Option<&str>, Option<&str>) =
    ("01234567890A=", Some("John McClane"), Some("en"));

fn john(event_id: &str, kind: InboundKind) -> Inbound {
    event(event_id, JOHN.0, JOHN.0, JOHN.1, JOHN.2, kind)
}

fn viber_started(name: &str) {
    assert_eq!(
        inbound::viber(&read(name)).unwrap(),
        [john(
            "5491234567890123456",
            InboundKind::ConversationStarted {
                context: Some("customer_12345".into())
            }
        )]
    );
}

fn viber_subscribed(name: &str) {
    assert_eq!(
        inbound::viber(&read(name)).unwrap(),
        [john("5491234567890123999", InboundKind::Subscribed)]
    );
}

fn viber_message(name: &str) {
    assert_eq!(
        inbound::viber(&read(name)).unwrap(),
        [john(
            "5491234567890124001",
            message("Do you deliver on Sundays?")
        )]
    );
}

fn viber_unsubscribed(name: &str) {
    // `unsubscribed` carries only `user_id`: no name, no language.
    assert_eq!(
        inbound::viber(&read(name)).unwrap(),
        [event(
            "5491234567890124555",
            JOHN.0,
            JOHN.0,
            None,
            None,
            InboundKind::Unsubscribed
        )]
    );
}

fn psid(event_id: &str, kind: InboundKind) -> Inbound {
    event(
        event_id,
        "6700000000000001",
        "6700000000000001",
        None,
        None,
        kind,
    )
}

fn messenger_postback(name: &str) {
    let events = inbound::messenger(&read(name)).unwrap();
    assert_eq!(
        events,
        [psid("m_AbCdEf", start("giveaway--value1--738--value2"))]
    );
    let d = decode("giveaway--value1--738--value2", None, None).unwrap();
    assert_eq!(d.scheme, Some(Scheme::Fields));
}

fn messenger_referral(name: &str) {
    // A `messaging_referrals` event has no mid: its id is derived from sender and timestamp.
    assert_eq!(
        inbound::messenger(&read(name)).unwrap(),
        [psid(
            "referral:6700000000000001:1763700100100",
            start("order_67890")
        )]
    );
}

fn instagram_referral(name: &str) {
    assert_eq!(
        inbound::instagram(&read(name)).unwrap(),
        [event(
            "referral:1200000000000001:1763700200100",
            "1200000000000001",
            "1200000000000001",
            None,
            None,
            start("summer_sale")
        )]
    );
    // The same body on the Messenger endpoint is a configuration error, said as such.
    assert_eq!(
        inbound::messenger(&read(name)).unwrap_err().to_string(),
        "object is \"instagram\"; this endpoint takes \"page\""
    );
}

fn whatsapp_text(name: &str) {
    let body = read(name);
    let maria = |kind| {
        event(
            "wamid.HBgMMzgwNTAxMjM0NTY3FQIAEhgUM0EwMDAwMDAwMDAwMDAwMDAwMDAA",
            "380501234567",
            "380501234567",
            Some("Maria"),
            None,
            kind,
        )
    };
    assert_eq!(
        inbound::whatsapp(&body, TEXT_MARKER).unwrap(),
        [maria(start("summer_sale"))]
    );
    // Under another marker the same text is a plain message: the parameter is not guessed.
    assert_eq!(
        inbound::whatsapp(&body, "code=").unwrap(),
        [maria(message("Hello! ref:summer_sale"))]
    );
}

fn whatsapp_status(name: &str) {
    // Delivery receipts of botlink's own messages: nothing happened on the person's side.
    assert_eq!(inbound::whatsapp(&read(name), TEXT_MARKER).unwrap(), []);
}

fn line_follow_then_text(name: &str) {
    let user = "U4af4980629d4e6f8a1b3c5d7e9f0a2b4";
    assert_eq!(
        inbound::line(&read(name), TEXT_MARKER).unwrap(),
        [
            event(
                "01KAK2Z8Q3M7V9N4T6B1C5D8EA",
                user,
                user,
                None,
                None,
                InboundKind::Subscribed
            ),
            event(
                "01KAK2ZC7R2K8W3P5X9D4F6G1H",
                user,
                user,
                None,
                None,
                start("l_Ab3dE9xQ_1Xb2Kp9mQ7rT4aZ")
            ),
        ]
    );
    let d = decode("l_Ab3dE9xQ_1Xb2Kp9mQ7rT4aZ", None, None).unwrap();
    assert_eq!(d.scheme, Some(Scheme::Stored));
}

fn max_bot_started(name: &str) {
    assert_eq!(
        inbound::max(&read(name)).unwrap(),
        [event(
            "bot_started:123456789:1763700600123",
            "123456789",
            "182182182",
            Some("Olga Smirnova"),
            Some("ru"),
            start("n__3")
        )]
    );
    assert_eq!(
        decode("n__3", None, None).unwrap().scheme,
        Some(Scheme::Entry)
    );
}

fn custom_events(name: &str) {
    let ann = |id: &str, kind, named: bool| {
        event(
            id,
            "visitor-8812",
            "conv-5521",
            named.then_some("Ann Lee"),
            named.then_some("en"),
            kind,
        )
    };
    assert_eq!(
        inbound::custom(&read(name)).unwrap(),
        [
            ann("evt_01KAK30000START", start("customer_12345"), true),
            ann("evt_01KAK30001MSG", message("Hello"), false),
            ann("evt_01KAK30002BTN", postback("size_m"), false),
            // No chat_id: the person's own id.
            event(
                "evt_01KAK30003UNSUB",
                "visitor-8812",
                "visitor-8812",
                None,
                None,
                InboundKind::Unsubscribed
            ),
        ]
    );
}

/// A check of one fixture file, given its name.
type Check = fn(&str);

/// Which check each fixture file gets. A file in the folder without an entry here fails
/// `every_fixture_is_read_into_its_events`, so no fixture is silently skipped.
const CHECKS: &[(&str, Check)] = &[
    ("telegram-start.json", telegram_start),
    ("telegram-start-group.json", telegram_group),
    ("telegram-text.json", telegram_text),
    ("telegram-callback.json", telegram_callback),
    ("telegram-blocked.json", telegram_blocked),
    ("viber-conversation-started.json", viber_started),
    ("viber-subscribed.json", viber_subscribed),
    ("viber-message.json", viber_message),
    ("viber-unsubscribed.json", viber_unsubscribed),
    ("messenger-postback-referral.json", messenger_postback),
    ("messenger-referral.json", messenger_referral),
    ("instagram-referral.json", instagram_referral),
    ("whatsapp-text.json", whatsapp_text),
    ("whatsapp-status.json", whatsapp_status),
    ("line-follow-then-text.json", line_follow_then_text),
    ("max-bot-started.json", max_bot_started),
    ("custom-events.json", custom_events),
];

#[test]
fn every_fixture_is_read_into_its_events() {
    let mut files: Vec<String> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let mut known: Vec<String> = CHECKS.iter().map(|(n, _)| (*n).to_string()).collect();
    known.sort();
    assert_eq!(files, known, "fixtures on disk and checks listed differ");
    for (name, check) in CHECKS {
        check(name);
    }
}

#[test]
fn inbound_starts_agree_with_arrival() {
    // Both modules read the same start: same person, chat and parameter.
    let same = |i: &Inbound, a: &arrival::Start| {
        assert_eq!(
            (i.user_id.as_str(), i.chat_id.as_str()),
            (a.user_id.as_str(), a.chat_id.as_str())
        );
        assert_eq!(
            i.kind,
            InboundKind::Start {
                param: a.param.clone()
            }
        );
    };
    for name in ["telegram-start.json", "telegram-start-group.json"] {
        let body = read(name);
        same(
            &inbound::telegram(&body, Some("mybot")).unwrap()[0],
            &arrival::telegram_update(&body, Some("mybot")).unwrap(),
        );
    }
    for (name, parse) in [
        (
            "messenger-postback-referral.json",
            inbound::messenger as fn(&[u8]) -> _,
        ),
        ("messenger-referral.json", inbound::messenger),
        ("instagram-referral.json", inbound::instagram),
    ] {
        let body = read(name);
        same(
            &parse(&body).unwrap()[0],
            &arrival::meta_referrals(&body).unwrap()[0],
        );
    }
    let body = read("whatsapp-text.json");
    same(
        &inbound::whatsapp(&body, TEXT_MARKER).unwrap()[0],
        &arrival::whatsapp_messages(&body, TEXT_MARKER).unwrap()[0],
    );
    let body = read("line-follow-then-text.json");
    same(
        &inbound::line(&body, TEXT_MARKER).unwrap()[1],
        &arrival::line_events(&body, TEXT_MARKER).unwrap()[0],
    );
    let body = read("max-bot-started.json");
    same(
        &inbound::max(&body).unwrap()[0],
        &arrival::max_update(&body).unwrap(),
    );
}

#[test]
fn fixtures_sent_to_the_wrong_endpoint_are_errors() {
    let tg = read("telegram-start.json");
    assert!(inbound::viber(&tg).is_err());
    assert!(inbound::messenger(&tg).is_err());
    assert!(inbound::whatsapp(&tg, TEXT_MARKER).is_err());
    assert!(inbound::line(&tg, TEXT_MARKER).is_err());
    assert!(inbound::max(&tg).is_err());
    assert!(inbound::custom(&tg).is_err());
    let viber = read("viber-message.json");
    assert_eq!(
        inbound::telegram(&viber, None).unwrap_err(),
        InboundError::Missing("update_id".into())
    );
    assert!(inbound::whatsapp(&read("messenger-referral.json"), TEXT_MARKER).is_err());
    assert!(inbound::messenger(&read("whatsapp-text.json")).is_err());
}

// ---------------------------------------------------------------------------------------------
// platform rules on small bodies

fn tg(update: Value) -> Vec<Inbound> {
    inbound::telegram(update.to_string().as_bytes(), Some("mybot")).unwrap()
}

fn tg_user() -> Value {
    json!({"id": 42, "is_bot": false, "first_name": "Ann"})
}

#[test]
fn telegram_rules() {
    let msg = |text: &str| {
        json!({"update_id": 1, "message": {"message_id": 1, "date": 1, "from": tg_user(),
               "chat": {"id": 42, "type": "private"}, "text": text}})
    };
    assert_eq!(
        tg(msg("/start")),
        [event(
            "1",
            "42",
            "42",
            Some("Ann"),
            None,
            InboundKind::Start { param: None }
        )]
    );
    assert_eq!(tg(msg("/start abc"))[0].kind, start("abc"));
    assert_eq!(tg(msg("/startx"))[0].kind, message("/startx"));
    assert_eq!(tg(msg("/help"))[0].kind, message("/help"));
    assert_eq!(tg(msg("/start@otherbot abc")), []);

    // Updates botlink does not use, and messages that are not a person's text.
    let edited = json!({"update_id": 2, "edited_message": {"message_id": 1, "date": 1,
        "from": tg_user(), "chat": {"id": 42, "type": "private"}, "text": "x"}});
    assert_eq!(tg(edited), []);
    let photo = json!({"update_id": 3, "message": {"message_id": 1, "date": 1, "from": tg_user(),
        "chat": {"id": 42, "type": "private"}, "photo": []}});
    assert_eq!(tg(photo), []);
    let from_bot = json!({"update_id": 4, "message": {"message_id": 1, "date": 1,
        "from": {"id": 7, "is_bot": true, "first_name": "B"}, "chat": {"id": 42, "type": "private"},
        "text": "hi"}});
    assert_eq!(tg(from_bot), []);
    let inline = json!({"update_id": 5, "callback_query": {"id": "9", "from": tg_user(),
        "inline_message_id": "AAA", "chat_instance": "1", "data": "x"}});
    assert_eq!(tg(inline), []);

    // my_chat_member: blocked, unblocked, promoted.
    let member = |old: &str, new: &str| {
        json!({"update_id": 6, "my_chat_member": {"chat": {"id": 42, "type": "private"},
            "from": tg_user(), "date": 1,
            "old_chat_member": {"status": old, "user": {"id": 7, "is_bot": true, "first_name": "B"}},
            "new_chat_member": {"status": new, "user": {"id": 7, "is_bot": true, "first_name": "B"}}}})
    };
    assert_eq!(
        tg(member("kicked", "member"))[0].kind,
        InboundKind::Subscribed
    );
    assert_eq!(
        tg(member("member", "kicked"))[0].kind,
        InboundKind::Unsubscribed
    );
    assert_eq!(
        tg(member("administrator", "left"))[0].kind,
        InboundKind::Unsubscribed
    );
    assert_eq!(tg(member("member", "administrator")), []);

    // Shape errors name the field.
    let bad = |body: &[u8]| inbound::telegram(body, None).unwrap_err();
    assert!(matches!(bad(b"{"), InboundError::NotJson(_)));
    assert_eq!(bad(b"{}"), InboundError::Missing("update_id".into()));
    assert_eq!(
        bad(br#"{"update_id": "1"}"#),
        InboundError::Missing("update_id".into())
    );
    assert_eq!(
        bad(br#"{"update_id": 1, "message": {"from": {"id": 1}, "text": "hi"}}"#),
        InboundError::Missing("message.chat.id".into())
    );
}

#[test]
fn viber_rules() {
    let viber = |v: Value| inbound::viber(v.to_string().as_bytes());
    for event in ["delivered", "seen", "failed", "webhook", "client_status"] {
        let body = json!({"event": event, "timestamp": 1, "message_token": 2, "user_id": "u"});
        assert_eq!(viber(body).unwrap(), [], "{event}");
    }
    let picture = json!({"event": "message", "timestamp": 1, "message_token": 3,
        "sender": {"id": "u"}, "message": {"type": "picture", "media": "https://x/y.jpg"}});
    assert_eq!(viber(picture).unwrap(), []);
    // A message token beyond 2^53 is kept exactly, not rounded through a float.
    let big = json!({"event": "subscribed", "timestamp": 1,
        "message_token": 18446744073709551615u64, "user": {"id": "u"}});
    assert_eq!(viber(big).unwrap()[0].event_id, "18446744073709551615");
    // Without a token, the id is derived from the event, the user and the timestamp.
    let no_token = json!({"event": "unsubscribed", "timestamp": 1763700000123u64, "user_id": "u"});
    assert_eq!(
        viber(no_token).unwrap()[0].event_id,
        "unsubscribed:u:1763700000123"
    );
    assert_eq!(
        viber(json!({"timestamp": 1})).unwrap_err(),
        InboundError::Missing("event".into())
    );
    assert_eq!(
        viber(json!({"event": "message", "message_token": 1, "message": {"type": "text", "text": "x"}}))
            .unwrap_err(),
        InboundError::Missing("sender".into())
    );
    assert_eq!(
        viber(json!({"event": "conversation_started", "message_token": 1, "user": {"name": "x"}}))
            .unwrap_err(),
        InboundError::Missing("user.id".into())
    );
}

fn page(messaging: Value) -> Vec<u8> {
    json!({"object": "page", "entry": [{"id": "1", "time": 1, "messaging": messaging}]})
        .to_string()
        .into_bytes()
}

#[test]
fn messenger_rules() {
    let item = |extra: Value| {
        let mut m = json!({"sender": {"id": "P1"}, "recipient": {"id": "PAGE"}, "timestamp": 1700});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    };
    let body = page(json!([
        item(json!({"message": {"mid": "m1", "text": "hello"}})),
        item(json!({"message": {"mid": "m2", "text": "echo", "is_echo": true}})),
        item(
            json!({"message": {"mid": "m3", "text": "Red", "quick_reply": {"payload": "COLOR_RED"}}})
        ),
        item(json!({"postback": {"mid": "m4", "title": "Menu", "payload": "MENU"}})),
        item(json!({"postback": {"title": "Get Started", "payload": "GET_STARTED"}})),
        item(
            json!({"message": {"mid": "m5", "text": "hi", "referral": {"ref": "ad_7", "source": "ADS", "type": "OPEN_THREAD"}}})
        ),
        item(json!({"referral": {"ref": "", "source": "SHORTLINK", "type": "OPEN_THREAD"}})),
        item(json!({"read": {"watermark": 1}})),
        item(json!({"delivery": {"mids": ["m1"], "watermark": 1}})),
        item(json!({"message": {"mid": "m6", "attachments": [{"type": "image"}]}})),
    ]));
    let events = inbound::messenger(&body).unwrap();
    let got: Vec<(&str, &InboundKind)> = events
        .iter()
        .map(|e| (e.event_id.as_str(), &e.kind))
        .collect();
    assert_eq!(
        got,
        [
            ("m1", &message("hello")),
            ("m3", &postback("COLOR_RED")),
            ("m4", &postback("MENU")),
            ("postback:P1:1700", &postback("GET_STARTED")),
            ("m5", &start("ad_7")),
            ("referral:P1:1700", &InboundKind::Start { param: None }),
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.user_id == "P1" && e.chat_id == "P1")
    );

    assert_eq!(
        inbound::messenger(&page(
            json!([{"timestamp": 1, "message": {"mid": "m", "text": "x"}}])
        ))
        .unwrap_err(),
        InboundError::Missing("entry[].messaging[].sender.id".into())
    );
    assert_eq!(
        inbound::messenger(br#"{"object": "page"}"#).unwrap_err(),
        InboundError::Missing("entry".into())
    );
    assert_eq!(
        inbound::instagram(b"{}").unwrap_err(),
        InboundError::Missing("object".into())
    );
    // Entries without `messaging` (feed changes, standby) carry nothing botlink uses.
    assert_eq!(
        inbound::messenger(br#"{"object":"page","entry":[{"id":"1","changes":[]}]}"#).unwrap(),
        []
    );
}

#[test]
fn instagram_icebreaker_with_a_ref_is_a_start() {
    // An ig.me link with a ref, when the account has icebreakers: the tap is a postback
    // carrying the referral (Meta's "Using ig.me Links").
    let body = json!({"object": "instagram", "entry": [{"id": "17841400000000001", "time": 1,
        "messaging": [{"sender": {"id": "IG1"}, "recipient": {"id": "17841400000000001"},
        "timestamp": 1502905976377u64, "postback": {"mid": "aWdfZAG1", "title": "What's new?",
        "payload": "ICEBREAKER_1", "referral": {"ref": "summer_sale", "source": "SHORTLINKS",
        "type": "OPEN_THREAD"}}}]}]});
    assert_eq!(
        inbound::instagram(body.to_string().as_bytes()).unwrap(),
        [event(
            "aWdfZAG1",
            "IG1",
            "IG1",
            None,
            None,
            start("summer_sale")
        )]
    );
}

#[test]
fn whatsapp_rules() {
    let wa = |messages: Value| {
        let body = json!({"object": "whatsapp_business_account", "entry": [{"id": "1",
            "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
            "contacts": [{"profile": {"name": "Bo"}, "wa_id": "15550002222"}],
            "messages": messages}}]}]});
        inbound::whatsapp(body.to_string().as_bytes(), TEXT_MARKER)
    };
    let m = |id: &str, extra: Value| {
        let mut m = json!({"from": "15550002222", "id": id, "timestamp": "1"});
        m.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        m
    };
    let events = wa(json!([
        m(
            "w1",
            json!({"type": "text", "text": {"body": "Where is my order?"}})
        ),
        m(
            "w2",
            json!({"type": "interactive", "interactive": {"type": "button_reply",
            "button_reply": {"id": "track", "title": "Track"}}})
        ),
        m(
            "w3",
            json!({"type": "interactive", "interactive": {"type": "list_reply",
            "list_reply": {"id": "size_l", "title": "L"}}})
        ),
        m(
            "w4",
            json!({"type": "button", "button": {"text": "Stop", "payload": "STOP"}})
        ),
        m(
            "w5",
            json!({"type": "image", "image": {"id": "1", "mime_type": "image/jpeg"}})
        ),
        m(
            "w6",
            json!({"type": "reaction", "reaction": {"message_id": "w1", "emoji": "👍"}})
        ),
    ]))
    .unwrap();
    let kinds: Vec<(&str, &InboundKind)> = events
        .iter()
        .map(|e| (e.event_id.as_str(), &e.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("w1", &message("Where is my order?")),
            ("w2", &postback("track")),
            ("w3", &postback("size_l")),
            ("w4", &postback("STOP")),
        ]
    );
    assert!(events.iter().all(|e| e.user_name.as_deref() == Some("Bo")));
    assert_eq!(
        wa(json!([{"id": "w7", "type": "text", "text": {"body": "x"}}])).unwrap_err(),
        InboundError::Missing("entry[].changes[].value.messages[].from".into())
    );
    assert!(matches!(
        inbound::whatsapp(br#"{"object":"page","entry":[]}"#, TEXT_MARKER),
        Err(InboundError::Invalid { .. })
    ));
}

#[test]
fn line_rules() {
    let line = |events: Value| {
        let body = json!({"destination": "Uf3a9b0c2d4e6f8a1b3c5d7e9f0a2b4c6", "events": events});
        inbound::line(body.to_string().as_bytes(), TEXT_MARKER)
    };
    let e = |id: &str, source: Value, extra: Value| {
        let mut e = json!({"mode": "active", "timestamp": 1, "webhookEventId": id,
            "deliveryContext": {"isRedelivery": false}, "source": source});
        e.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        e
    };
    let user = json!({"type": "user", "userId": "U1"});
    let group = json!({"type": "group", "groupId": "C9", "userId": "U1"});
    let events = line(json!([
        e("E1", user.clone(), json!({"type": "unfollow"})),
        e(
            "E2",
            user.clone(),
            json!({"type": "postback", "postback": {"data": "action=buy"}})
        ),
        e(
            "E3",
            group.clone(),
            json!({"type": "message", "message": {"type": "text", "id": "1", "text": "hi all"}})
        ),
        e(
            "E4",
            user.clone(),
            json!({"type": "message", "message": {"type": "sticker", "id": "2"}})
        ),
        e("E5", group, json!({"type": "join"})),
        e(
            "E6",
            json!({"type": "group", "groupId": "C9"}),
            json!({"type": "message",
            "message": {"type": "text", "id": "3", "text": "no user id"}})
        ),
    ]))
    .unwrap();
    assert_eq!(
        events,
        [
            event("E1", "U1", "U1", None, None, InboundKind::Unsubscribed),
            event("E2", "U1", "U1", None, None, postback("action=buy")),
            event("E3", "U1", "C9", None, None, message("hi all")),
        ]
    );
    // LINE's check when the webhook URL is set: no events.
    assert_eq!(line(json!([])).unwrap(), []);
    assert_eq!(
        line(json!([{"type": "follow", "source": {"type": "user", "userId": "U1"}}])).unwrap_err(),
        InboundError::Missing("events[].webhookEventId".into())
    );
    assert_eq!(
        inbound::line(b"{}", TEXT_MARKER).unwrap_err(),
        InboundError::Missing("events".into())
    );
}

#[test]
fn max_rules() {
    let max = |v: Value| inbound::max(v.to_string().as_bytes());
    let user = json!({"user_id": 42, "first_name": "Olga", "last_name": null, "is_bot": false});
    let created = |text: &str| {
        json!({"update_type": "message_created", "timestamp": 1763700700000u64, "user_locale": "ru",
            "message": {"sender": user, "recipient": {"chat_id": 555, "chat_type": "dialog", "user_id": 7},
            "timestamp": 1763700700000u64, "body": {"mid": "mid.0001", "seq": 1, "text": text}}})
    };
    assert_eq!(
        max(created("Hello")).unwrap(),
        [event(
            "mid.0001",
            "42",
            "555",
            Some("Olga"),
            Some("ru"),
            message("Hello")
        )]
    );
    // MAX sends a deep link's payload in bot_started only: typed text stays text.
    assert_eq!(
        max(created("/start promo")).unwrap()[0].kind,
        message("/start promo")
    );
    let stopped = json!({"update_type": "bot_stopped", "timestamp": 1763700800000u64,
        "chat_id": 555, "user": user});
    assert_eq!(
        max(stopped).unwrap(),
        [event(
            "bot_stopped:42:1763700800000",
            "42",
            "555",
            Some("Olga"),
            None,
            InboundKind::Unsubscribed
        )]
    );
    let callback = json!({"update_type": "message_callback", "timestamp": 1763700900500u64,
        "callback": {"timestamp": 1763700900000u64, "callback_id": "kb1", "payload": "size_m", "user": user},
        "message": {"recipient": {"chat_id": 555, "chat_type": "dialog"}, "timestamp": 1,
        "body": {"mid": "mid.0002", "seq": 2, "text": "Pick"}}});
    assert_eq!(
        max(callback).unwrap(),
        [event(
            "message_callback:42:1763700900000",
            "42",
            "555",
            Some("Olga"),
            None,
            postback("size_m")
        )]
    );
    let channel_post = json!({"update_type": "message_created", "timestamp": 1,
        "message": {"sender": null, "recipient": {"chat_id": -1, "chat_type": "channel"},
        "timestamp": 1, "body": {"mid": "mid.3", "seq": 3, "text": "news"}}});
    assert_eq!(max(channel_post).unwrap(), []);
    assert_eq!(
        max(json!({"update_type": "dialog_muted", "timestamp": 1, "chat_id": 1, "user": user}))
            .unwrap(),
        []
    );
    assert_eq!(
        max(json!({"timestamp": 1})).unwrap_err(),
        InboundError::Missing("update_type".into())
    );
    assert_eq!(
        max(json!({"update_type": "bot_started", "timestamp": 1, "user": user})).unwrap_err(),
        InboundError::Missing("chat_id".into())
    );
}

#[test]
fn custom_rules() {
    let custom = |v: Value| inbound::custom(v.to_string().as_bytes());
    let user = json!({"id": "u1"});
    assert_eq!(
        custom(json!({"events": [{"id": "e1", "type": "start", "user": user}]})).unwrap(),
        [event(
            "e1",
            "u1",
            "u1",
            None,
            None,
            InboundKind::Start { param: None }
        )]
    );
    assert_eq!(custom(json!({"events": []})).unwrap(), []);
    let err = |v: Value| custom(v).unwrap_err().to_string();
    assert_eq!(
        err(json!({"events": [
            {"id": "e1", "type": "subscribed", "user": user},
            {"id": "e2", "type": "sticker", "user": user}]})),
        "events[1].type is \"sticker\"; expected start, message, postback, subscribed or unsubscribed"
    );
    assert_eq!(
        err(json!({"events": [{"id": "e1", "type": "message", "user": user}]})),
        "the body has no events[0].text"
    );
    assert_eq!(
        err(json!({"events": [{"id": "e1", "type": "start", "user": {"name": "x"}}]})),
        "the body has no events[0].user.id"
    );
    assert_eq!(
        err(json!({"events": [{"id": 7, "type": "start", "user": user}]})),
        "events[0].id is not a string"
    );
    assert_eq!(
        err(json!({"events": [{"id": "", "type": "start", "user": user}]})),
        "events[0].id is 0 bytes long; an id is 1 to 256 bytes"
    );
    let long = "x".repeat(MAX_CUSTOM_ID_LEN + 1);
    assert_eq!(
        err(json!({"events": [{"id": "e", "type": "start", "user": {"id": long}}]})),
        "events[0].user.id is 257 bytes long; an id is 1 to 256 bytes"
    );
    let exact = "x".repeat(MAX_CUSTOM_ID_LEN);
    assert!(custom(json!({"events": [{"id": exact, "type": "start", "user": user}]})).is_ok());
    assert_eq!(err(json!({"event": []})), "the body has no events");
}

#[test]
fn an_event_is_stored_in_a_stable_json_form() {
    let e = event(
        "873201554",
        "398866372",
        "398866372",
        Some("Ivan"),
        None,
        start("abc"),
    );
    let stored = serde_json::to_string(&e).unwrap();
    assert_eq!(
        stored,
        r#"{"event_id":"873201554","user_id":"398866372","chat_id":"398866372","user_name":"Ivan","language":null,"kind":{"type":"start","param":"abc"}}"#
    );
    assert_eq!(serde_json::from_str::<Inbound>(&stored).unwrap(), e);
    let kinds = [
        (
            InboundKind::ConversationStarted { context: None },
            r#"{"type":"conversation_started","context":null}"#,
        ),
        (InboundKind::Subscribed, r#"{"type":"subscribed"}"#),
        (InboundKind::Unsubscribed, r#"{"type":"unsubscribed"}"#),
        (message("hi"), r#"{"type":"message","text":"hi"}"#),
        (postback("p"), r#"{"type":"postback","payload":"p"}"#),
    ];
    for (kind, json) in kinds {
        assert_eq!(serde_json::to_string(&kind).unwrap(), json);
        assert_eq!(serde_json::from_str::<InboundKind>(json).unwrap(), kind);
    }
}

// ---------------------------------------------------------------------------------------------
// signatures: known vectors

/// Viber's documented example auth token.
const VIBER_TOKEN: &str = "445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9";
const VIBER_BODY: &[u8] =
    br#"{"event":"webhook","timestamp":1457764197627,"message_token":241256543215}"#;
/// printf '%s' '{"event":"webhook","timestamp":1457764197627,"message_token":241256543215}' \
///   | openssl dgst -sha256 -hmac '445da6az1s345z78-dazcczb2542zv51a-e0vc5fva17480im9' -hex
const VIBER_SIGNATURE: &str = "bd52434b46be1542d32bfa5e3332b757b927e183c5ef3b20a5f9877207dc55b9";

const APP_SECRET: &str = "6f1d2c3b4a5968778695a4b3c2d1e0f9";
const HUB_BODY: &[u8] = br#"{"object":"page","entry":[]}"#;
/// printf '%s' '{"object":"page","entry":[]}' \
///   | openssl dgst -sha256 -hmac '6f1d2c3b4a5968778695a4b3c2d1e0f9' -hex
const HUB_SIGNATURE: &str =
    "sha256=b9977e342ac84b7a4149aebdc84a7d777ba3ace57a8c0c455faae15436faae09";

const LINE_SECRET: &str = "8c4f1d2e3b5a69788796a5b4c3d2e1f0";
const LINE_BODY: &[u8] = br#"{"destination":"Uf3a9b0c2d4e6f8a1b3c5d7e9f0a2b4c6","events":[]}"#;
/// printf '%s' '{"destination":"Uf3a9b0c2d4e6f8a1b3c5d7e9f0a2b4c6","events":[]}' \
///   | openssl dgst -sha256 -hmac '8c4f1d2e3b5a69788796a5b4c3d2e1f0' -binary | base64
const LINE_SIGNATURE: &str = "4sKiV31D1qMyWfOvTBOKlWnz0AXckop+0hlkx2suaDo=";

fn h(s: &str) -> Option<&[u8]> {
    Some(s.as_bytes())
}

#[test]
fn telegram_and_max_compare_the_secret_token() {
    let secret = "tg_Secret-0123456789";
    assert_eq!(verify_telegram(h(secret), secret), Ok(()));
    assert_eq!(verify_max(h(secret), secret), Ok(()));
    for forged in [
        "tg_Secret-012345678",
        "tg_Secret-01234567890",
        "TG_SECRET-0123456789",
        "x",
    ] {
        assert_eq!(
            verify_telegram(h(forged), secret),
            Err(SignatureError::Mismatch("X-Telegram-Bot-Api-Secret-Token"))
        );
        assert_eq!(
            verify_max(h(forged), secret),
            Err(SignatureError::Mismatch("X-Max-Bot-Api-Secret"))
        );
    }
    assert_eq!(
        verify_telegram(None, secret),
        Err(SignatureError::MissingHeader(
            "X-Telegram-Bot-Api-Secret-Token"
        ))
    );
    assert!(matches!(
        verify_max(Some(b""), secret),
        Err(SignatureError::MalformedHeader { .. })
    ));
    // Header bytes that are not UTF-8 are compared as bytes, like any other value.
    assert_eq!(
        verify_telegram(Some(&[0xff, 0xfe]), secret),
        Err(SignatureError::Mismatch("X-Telegram-Bot-Api-Secret-Token"))
    );
    // An empty configured secret would accept anyone: it is refused, even with an empty header.
    assert!(matches!(
        verify_telegram(Some(b""), ""),
        Err(SignatureError::BadSecret { .. })
    ));
}

#[test]
fn viber_signature_is_hex_hmac_of_the_body() {
    assert_eq!(
        verify_viber(h(VIBER_SIGNATURE), VIBER_BODY, VIBER_TOKEN),
        Ok(())
    );
    let upper = VIBER_SIGNATURE.to_uppercase();
    assert_eq!(verify_viber(h(&upper), VIBER_BODY, VIBER_TOKEN), Ok(()));
    let mismatch = Err(SignatureError::Mismatch("X-Viber-Content-Signature"));
    let mut changed = VIBER_BODY.to_vec();
    changed[10] ^= 1;
    assert_eq!(
        verify_viber(h(VIBER_SIGNATURE), &changed, VIBER_TOKEN),
        mismatch
    );
    assert_eq!(
        verify_viber(h(VIBER_SIGNATURE), VIBER_BODY, "other-token"),
        mismatch
    );
    assert_eq!(
        verify_viber(
            h(&format!("{}0", &VIBER_SIGNATURE[..63])),
            VIBER_BODY,
            VIBER_TOKEN
        ),
        mismatch
    );
    for malformed in [
        &VIBER_SIGNATURE[..63],
        &VIBER_SIGNATURE[..62],
        "zz",
        &format!("{VIBER_SIGNATURE}00"),
    ] {
        assert!(
            matches!(
                verify_viber(h(malformed), VIBER_BODY, VIBER_TOKEN),
                Err(SignatureError::MalformedHeader {
                    header: "X-Viber-Content-Signature",
                    ..
                })
            ),
            "{malformed}"
        );
    }
    assert_eq!(
        verify_viber(None, VIBER_BODY, VIBER_TOKEN),
        Err(SignatureError::MissingHeader("X-Viber-Content-Signature"))
    );
}

#[test]
fn hub_signature_is_sha256_hex_hmac_under_the_app_secret() {
    assert_eq!(verify_hub(h(HUB_SIGNATURE), HUB_BODY, APP_SECRET), Ok(()));
    let upper = format!("sha256={}", HUB_SIGNATURE[7..].to_uppercase());
    assert_eq!(verify_hub(h(&upper), HUB_BODY, APP_SECRET), Ok(()));
    assert_eq!(
        verify_hub(
            h(HUB_SIGNATURE),
            br#"{"object":"page","entry":[{}]}"#,
            APP_SECRET
        ),
        Err(SignatureError::Mismatch("X-Hub-Signature-256"))
    );
    assert_eq!(
        verify_hub(h(HUB_SIGNATURE), HUB_BODY, "another-app-secret"),
        Err(SignatureError::Mismatch("X-Hub-Signature-256"))
    );
    for malformed in [
        &HUB_SIGNATURE[7..],
        "sha1=0123456789abcdef0123456789abcdef01234567",
        "SHA256=00",
    ] {
        assert!(matches!(
            verify_hub(h(malformed), HUB_BODY, APP_SECRET),
            Err(SignatureError::MalformedHeader {
                header: "X-Hub-Signature-256",
                ..
            })
        ));
    }
    assert!(matches!(
        verify_hub(h(HUB_SIGNATURE), HUB_BODY, ""),
        Err(SignatureError::BadSecret {
            what: "app secret",
            ..
        })
    ));
}

#[test]
fn line_signature_is_base64_hmac_under_the_channel_secret() {
    assert_eq!(
        verify_line(h(LINE_SIGNATURE), LINE_BODY, LINE_SECRET),
        Ok(())
    );
    // The padding carries nothing; a sender that leaves it out is accepted.
    let unpadded = LINE_SIGNATURE.trim_end_matches('=');
    assert_eq!(verify_line(h(unpadded), LINE_BODY, LINE_SECRET), Ok(()));
    assert_eq!(
        verify_line(h(LINE_SIGNATURE), b"{}", LINE_SECRET),
        Err(SignatureError::Mismatch("X-Line-Signature"))
    );
    // Base64 of 31 bytes, not Base64, hex instead of Base64.
    for malformed in [
        "4sKiV31D1qMyWfOvTBOKlWnz0AXckop+0hlkx2suaA==",
        "not base64!",
        "e2c2a2577d43d6a33259f3af4c138a9569f3d005dc928a7ed21964c76b2e683a",
    ] {
        assert!(
            matches!(
                verify_line(h(malformed), LINE_BODY, LINE_SECRET),
                Err(SignatureError::MalformedHeader {
                    header: "X-Line-Signature",
                    ..
                })
            ),
            "{malformed}"
        );
    }
    assert_eq!(
        verify_line(None, LINE_BODY, LINE_SECRET),
        Err(SignatureError::MissingHeader("X-Line-Signature"))
    );
}

#[test]
fn hub_handshake_echoes_the_challenge_only_for_the_right_token() {
    let token = "botlink-verify-7f3a";
    assert_eq!(
        hub_challenge(Some("subscribe"), Some(token), Some("1158201444"), token),
        Ok("1158201444")
    );
    let refused = |mode, given, challenge| {
        matches!(
            hub_challenge(mode, given, challenge, token),
            Err(SignatureError::HandshakeRefused(_))
        )
    };
    assert!(refused(Some("unsubscribe"), Some(token), Some("1")));
    assert!(refused(None, Some(token), Some("1")));
    assert!(refused(
        Some("subscribe"),
        Some("botlink-verify-7f3b"),
        Some("1")
    ));
    assert!(refused(Some("subscribe"), None, Some("1")));
    assert!(refused(Some("subscribe"), Some(token), None));
    assert!(refused(Some("subscribe"), Some(token), Some("")));
    assert!(refused(
        Some("subscribe"),
        Some(token),
        Some("<script>alert(1)</script>")
    ));
    assert!(refused(
        Some("subscribe"),
        Some(token),
        Some(&"1".repeat(257))
    ));
    assert!(matches!(
        hub_challenge(Some("subscribe"), Some(""), Some("1"), ""),
        Err(SignatureError::BadSecret { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Standard Webhooks

/// The vector of the specification's JavaScript library test "sign function works"
/// (standard-webhooks/standard-webhooks, libraries/javascript/src/webhook.test.ts), checked
/// independently with:
/// printf '%s' 'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}' | openssl dgst \
///   -sha256 -mac HMAC -macopt hexkey:$(printf '%s' MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw | base64 -d \
///   | xxd -p -c 100) -binary | base64
const SW_JS: (&str, &str, i64, &[u8], &str) = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    br#"{"test": 2432232314}"#,
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
);

/// The vector of the specification's Rust library test `test_sign`
/// (libraries/rust/src/lib.rs), checked the same way with openssl.
const SW_RUST: (&str, &str, i64, &[u8], &str) = (
    "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
    1649367553,
    br#"{"email":"test@example.com","username":"test_user"}"#,
    "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
);

fn sw_verify(
    secret: &Secret,
    id: &str,
    ts: &str,
    sig: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    standard_webhooks::verify(
        secret,
        h(id),
        h(ts),
        h(sig),
        body,
        now,
        DEFAULT_TOLERANCE_SECS,
    )
}

#[test]
fn standard_webhooks_sign_matches_the_specification_vectors() {
    for (secret, id, ts, body, expected) in [SW_JS, SW_RUST] {
        let secret = Secret::parse(secret).unwrap();
        assert_eq!(standard_webhooks::sign(&secret, id, ts, body), expected);
        assert_eq!(
            sw_verify(&secret, id, &ts.to_string(), expected, body, ts),
            Ok(())
        );
    }
}

#[test]
fn standard_webhooks_verify_refuses_what_the_specification_refuses() {
    let (secret, id, ts, body, good) = SW_RUST;
    let secret = Secret::parse(secret).unwrap();
    let t = ts.to_string();
    let mismatch = Err(SignatureError::Mismatch("webhook-signature"));

    // The spec's own examples: a signature of something else, and the rotation list with the
    // good one among others (including other versions), and without it.
    assert_eq!(
        sw_verify(
            &secret,
            id,
            &t,
            "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=",
            body,
            ts
        ),
        mismatch
    );
    let others = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=";
    assert_eq!(
        sw_verify(
            &secret,
            id,
            &t,
            &format!("{others} v2,abc v1a,xyz {good}"),
            body,
            ts
        ),
        Ok(())
    );
    assert_eq!(sw_verify(&secret, id, &t, others, body, ts), mismatch);

    // Truncated and empty signatures never match a prefix.
    assert_eq!(sw_verify(&secret, id, &t, &good[..8], body, ts), mismatch);
    assert_eq!(sw_verify(&secret, id, &t, "v1,", body, ts), mismatch);
    assert_eq!(
        sw_verify(&secret, id, &t, "v1,dawfeoifkpqwoekfpqoekf", body, ts),
        mismatch
    );

    // The id, the timestamp and the body are all signed.
    assert_eq!(
        sw_verify(&secret, "msg_other", &t, good, body, ts),
        mismatch
    );
    assert_eq!(
        sw_verify(&secret, id, &(ts + 1).to_string(), good, body, ts),
        mismatch
    );
    assert_eq!(sw_verify(&secret, id, &t, good, b"{}", ts), mismatch);
    let other = Secret::from_bytes(&[7u8; 24]).unwrap();
    assert_eq!(sw_verify(&other, id, &t, good, body, ts), mismatch);

    // Only asymmetric entries: nothing this receiver can check.
    assert!(matches!(
        sw_verify(
            &secret,
            id,
            &t,
            "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
            body,
            ts
        ),
        Err(SignatureError::MalformedHeader {
            header: "webhook-signature",
            ..
        })
    ));

    // Missing and malformed headers.
    let verify = |id: Option<&[u8]>, ts_h: Option<&[u8]>, sig: Option<&[u8]>| {
        standard_webhooks::verify(&secret, id, ts_h, sig, body, ts, DEFAULT_TOLERANCE_SECS)
    };
    assert_eq!(
        verify(None, h(&t), h(good)),
        Err(SignatureError::MissingHeader("webhook-id"))
    );
    assert_eq!(
        verify(h(id), None, h(good)),
        Err(SignatureError::MissingHeader("webhook-timestamp"))
    );
    assert_eq!(
        verify(h(id), h(&t), None),
        Err(SignatureError::MissingHeader("webhook-signature"))
    );
    for bad_ts in [
        "hello",
        "-1649367553",
        "+1649367553",
        " 1649367553",
        "1649367553.5",
        "1234567890123456789",
    ] {
        assert!(
            matches!(
                verify(h(id), h(bad_ts), h(good)),
                Err(SignatureError::MalformedHeader {
                    header: "webhook-timestamp",
                    ..
                })
            ),
            "{bad_ts}"
        );
    }
    assert!(matches!(
        verify(h("msg.1"), h(&t), h(good)),
        Err(SignatureError::MalformedHeader {
            header: "webhook-id",
            ..
        })
    ));
}

#[test]
fn standard_webhooks_timestamps_are_accepted_within_the_tolerance_both_ways() {
    let secret = Secret::from_bytes(b"0123456789abcdef01234567").unwrap();
    let now = 1_763_700_000;
    let check = |ts: i64, tolerance: u64| {
        let sig = standard_webhooks::sign(&secret, "msg_1", ts, b"{}");
        standard_webhooks::verify(
            &secret,
            h("msg_1"),
            h(&ts.to_string()),
            h(&sig),
            b"{}",
            now,
            tolerance,
        )
    };
    assert_eq!(check(now, 300), Ok(()));
    assert_eq!(check(now - 300, 300), Ok(()));
    assert_eq!(check(now + 300, 300), Ok(()));
    assert_eq!(
        check(now - 301, 300),
        Err(SignatureError::TimestampTooOld {
            age_secs: 301,
            tolerance_secs: 300
        })
    );
    assert_eq!(
        check(now + 301, 300),
        Err(SignatureError::TimestampTooNew {
            ahead_secs: 301,
            tolerance_secs: 300
        })
    );
    assert_eq!(check(now - 3600, 3600), Ok(()));
    // Milliseconds sent for seconds land far in the future, and the message says why.
    let ms = check(now * 1000, 300).unwrap_err();
    assert!(matches!(ms, SignatureError::TimestampTooNew { .. }));
    assert!(ms.to_string().contains("milliseconds instead of seconds"));
    assert_eq!(DEFAULT_TOLERANCE_SECS, 300);
}

#[test]
fn standard_webhooks_secrets() {
    let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    assert_eq!(secret.to_whsec(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(format!("{secret:?}"), "Secret(..)");
    assert!(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
            .parse::<Secret>()
            .is_ok()
    );
    let reason = |s: &str| match Secret::parse(s) {
        Err(SignatureError::BadSecret { reason, .. }) => reason,
        other => panic!("{s}: {other:?}"),
    };
    assert_eq!(
        reason("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "it does not start with whsec_"
    );
    assert_eq!(
        reason("whsec_not*base64"),
        "the text after whsec_ is not standard Base64"
    );
    // 18 and 66 bytes of key.
    assert_eq!(
        reason("whsec_MfKQ9r8GKYqrTwjUPD8I"),
        "it has fewer than 24 bytes of key"
    );
    let long = format!("whsec_{}", "A".repeat(88));
    assert_eq!(reason(&long), "it has more than 64 bytes of key");
    assert!(Secret::from_bytes(&[1u8; 24]).is_ok());
    assert!(Secret::from_bytes(&[1u8; 64]).is_ok());
    assert!(Secret::from_bytes(&[1u8; 23]).is_err());
    // The error shows the rule, never the secret.
    let text = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8I")
        .unwrap_err()
        .to_string();
    assert!(!text.contains("MfKQ9r8GKYqrTwjUPD8I"), "{text}");
}

#[test]
fn signature_errors_say_what_was_wrong_without_secrets() {
    let messages = [
        verify_viber(h(VIBER_SIGNATURE), b"{}", VIBER_TOKEN),
        verify_hub(h("sha256=00"), HUB_BODY, APP_SECRET),
        verify_line(None, LINE_BODY, LINE_SECRET),
        verify_telegram(h("guess"), "tg_Secret-0123456789"),
    ]
    .map(|r| r.unwrap_err().to_string());
    assert_eq!(
        messages,
        [
            "the X-Viber-Content-Signature header does not match: the request was not signed \
             with this channel's secret, or its body was changed on the way",
            "the X-Hub-Signature-256 header is malformed: expected 64 hexadecimal digits (an \
             HMAC-SHA256)",
            "the X-Line-Signature header is missing",
            "the X-Telegram-Bot-Api-Secret-Token header does not match: the request was not \
             signed with this channel's secret, or its body was changed on the way",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// properties

/// JSON shaped like the platforms' bodies: their keys, nested at random, and sometimes wrapped
/// in a platform's envelope so the parsers get past their first checks.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![
            Just("/start".to_string()),
            Just("/start@mybot x".to_string()),
            Just("ref:abc".to_string()),
            Just("text".to_string()),
            Just("page".to_string()),
            Just("kicked".to_string()),
            Just("member".to_string()),
            Just("user".to_string()),
            Just("group".to_string()),
            any::<String>(),
        ]
        .prop_map(Value::String),
    ];
    let keys = proptest::sample::select(vec![
        "update_id",
        "message",
        "callback_query",
        "my_chat_member",
        "from",
        "chat",
        "id",
        "text",
        "data",
        "is_bot",
        "old_chat_member",
        "new_chat_member",
        "status",
        "first_name",
        "last_name",
        "language_code",
        "event",
        "user",
        "user_id",
        "sender",
        "context",
        "message_token",
        "timestamp",
        "type",
        "object",
        "entry",
        "messaging",
        "postback",
        "referral",
        "ref",
        "mid",
        "is_echo",
        "quick_reply",
        "payload",
        "changes",
        "field",
        "value",
        "messages",
        "contacts",
        "wa_id",
        "profile",
        "name",
        "body",
        "interactive",
        "button_reply",
        "list_reply",
        "button",
        "events",
        "source",
        "userId",
        "groupId",
        "roomId",
        "webhookEventId",
        "update_type",
        "chat_id",
        "recipient",
        "callback",
        "user_locale",
        "param",
        "language",
    ]);
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let envelope = (0..8usize, json_value()).prop_map(|(which, v)| {
        let wrapped = match which {
            0 => json!({"update_id": 1, "message": v}),
            1 => json!({"update_id": 1, "callback_query": v}),
            2 => json!({"update_id": 1, "my_chat_member": v}),
            3 => json!({"object": "page", "entry": [{"messaging": [v]}]}),
            4 => json!({"object": "whatsapp_business_account",
                        "entry": [{"changes": [{"field": "messages", "value": {"messages": [v]}}]}]}),
            5 => json!({"events": [v]}),
            6 => json!({"update_type": "message_created", "timestamp": 1, "message": v}),
            _ => v,
        };
        serde_json::to_vec(&wrapped).unwrap()
    });
    prop_oneof![proptest::collection::vec(any::<u8>(), 0..200), envelope,]
}

/// Every parser on `body`; every event any of them yields has its ids.
fn all_parsers(body: &[u8], text: &str) -> Result<(), TestCaseError> {
    let results = [
        inbound::telegram(body, None),
        inbound::telegram(body, Some(text)),
        inbound::viber(body),
        inbound::messenger(body),
        inbound::instagram(body),
        inbound::whatsapp(body, TEXT_MARKER),
        inbound::whatsapp(body, text),
        inbound::line(body, TEXT_MARKER),
        inbound::line(body, text),
        inbound::max(body),
        inbound::custom(body),
    ];
    for events in results.into_iter().flatten() {
        for e in events {
            prop_assert!(
                !e.event_id.is_empty() && !e.user_id.is_empty() && !e.chat_id.is_empty(),
                "{:?}",
                e
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn parsers_never_panic(body in body(), text in any::<String>()) {
        all_parsers(&body, &text)?;
    }

    #[test]
    fn verifiers_never_panic(
        header in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..100)),
        other in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        body in proptest::collection::vec(any::<u8>(), 0..100),
        secret in any::<String>(),
        now in any::<i64>(),
        tolerance in any::<u64>(),
    ) {
        let header = header.as_deref();
        let _ = verify_telegram(header, &secret);
        let _ = verify_max(header, &secret);
        let _ = verify_viber(header, &body, &secret);
        let _ = verify_hub(header, &body, &secret);
        let _ = verify_line(header, &body, &secret);
        let text = header.map(String::from_utf8_lossy);
        let _ = hub_challenge(text.as_deref(), Some(&secret), text.as_deref(), &secret);
        let _ = Secret::parse(&secret);
        let key = Secret::from_bytes(&[9u8; 32]).unwrap();
        let _ = standard_webhooks::verify(&key, header, other.as_deref(), header, &body, now, tolerance);
        let _ = standard_webhooks::verify(&key, other.as_deref(), header, other.as_deref(), &body, now, tolerance);
        let _ = standard_webhooks::sign(&key, &secret, now, &body);
    }

    #[test]
    fn standard_webhooks_round_trip_and_any_change_is_refused(
        key in proptest::collection::vec(any::<u8>(), 24..=64),
        id in "[A-Za-z0-9_-]{1,40}",
        ts in 0i64..10_000_000_000,
        body in proptest::collection::vec(any::<u8>(), 0..200),
        flip in any::<proptest::sample::Index>(),
    ) {
        let secret = Secret::from_bytes(&key).unwrap();
        prop_assert_eq!(Secret::parse(&secret.to_whsec()).unwrap().to_whsec(), secret.to_whsec());
        let sig = standard_webhooks::sign(&secret, &id, ts, &body);
        let verify = |body: &[u8]| standard_webhooks::verify(
            &secret, h(&id), h(&ts.to_string()), h(&sig), body, ts, DEFAULT_TOLERANCE_SECS,
        );
        prop_assert_eq!(verify(&body), Ok(()));
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[flip.index(body.len())] ^= 0x01;
            prop_assert_eq!(verify(&changed), Err(SignatureError::Mismatch("webhook-signature")));
        }
        let mut longer = body.clone();
        longer.push(b' ');
        prop_assert_eq!(verify(&longer), Err(SignatureError::Mismatch("webhook-signature")));
    }

    #[test]
    fn errors_never_carry_the_secret(
        secret in "[A-Za-z0-9]{12,40}",
        header in proptest::option::of("[ -~]{0,80}"),
        body in proptest::collection::vec(any::<u8>(), 0..50),
    ) {
        let header = header.as_deref().map(str::as_bytes);
        for result in [
            verify_telegram(header, &secret),
            verify_max(header, &secret),
            verify_viber(header, &body, &secret),
            verify_hub(header, &body, &secret),
            verify_line(header, &body, &secret),
            hub_challenge(Some("subscribe"), Some("x"), Some("1"), &secret).map(|_| ()),
        ] {
            if let Err(e) = result {
                prop_assert!(!e.to_string().contains(&secret), "{}", e);
            }
        }
    }
}
