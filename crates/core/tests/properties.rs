//! Property tests for the core rules: every encode/decode pair round-trips.
//!
//! 1. Every payload scheme round-trips, and auto-detection names the scheme its encoder made.
//! 2. Every link `build_link` makes parses back to the same channel, bot, kind and parameter,
//!    and parameters just over a limit or with a refused character are typed errors.
//! 3. Nothing that reads untrusted input panics on arbitrary input.

use botlink_core::arrival;
use botlink_core::link::{ADMIN_RIGHTS, TEXT_MARKER, check_bot, rule_for};
use botlink_core::payload::{
    self, SIGNED_OVERHEAD, decode_fields, decode_json, decode_stored, decode_text, encode_entry,
    encode_fields, encode_json, encode_stored, encode_text, sign, verify,
};
use botlink_core::{
    Channel, Charset, Fields, JsonPayload, LinkError, LinkKind, LinkSpec, PayloadError, Scheme,
    TelegramForm, build_link, decode, parse_link,
};
use proptest::prelude::*;
use proptest::sample::select;

const KEY: &[u8] = b"0123456789abcdef-botlink-test-key";

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// generators

/// Any text, weighted towards what breaks encoders: quotes, backslashes, control characters,
/// non-ASCII letters and emoji.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        4 => "[\"\\\\a-z0-9 _=+/@.\t\n\r\u{0}\u{1f}\u{7f}éїЖ€😀\u{2028}]{0,24}",
        1 => Just(String::new()),
    ]
}

fn json_payload() -> impl Strategy<Value = JsonPayload> {
    (
        proptest::option::of(any_text()),
        proptest::option::of(any_text()),
        proptest::option::of(any_text()),
        // Variables are a JSON object: keys are unique.
        proptest::collection::btree_map(any_text(), any_text(), 0..5),
    )
        .prop_map(|(phone, email, external_id, vars)| JsonPayload {
            phone,
            email,
            external_id,
            variables: vars.into_iter().collect(),
        })
        .prop_filter("the json scheme refuses an empty payload", |p| {
            !p.is_empty()
        })
}

/// A value the fields scheme accepts: non-empty, no `--`, not starting or ending with `-`.
fn field_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9_]([A-Za-z0-9_-]{0,10}[A-Za-z0-9_])?",
        any::<String>(),
    ]
    .prop_filter("the fields rule", |s| {
        !s.is_empty() && !s.contains("--") && !s.starts_with('-') && !s.ends_with('-')
    })
}

fn fields(part: BoxedStrategy<String>) -> impl Strategy<Value = Fields> {
    (
        part.clone(),
        part.clone(),
        proptest::collection::vec((part.clone(), part), 0..4),
    )
        .prop_map(|(entry, value, fields)| Fields {
            entry,
            value,
            fields,
        })
}

/// A fields part of the kind links carry (Telegram-safe, as `giveaway--value1--738--value2`),
/// and not starting with a prefix another scheme reserves (`l_`, `n__`, `s_`).
fn link_field_part() -> BoxedStrategy<String> {
    "[A-Za-z0-9]([A-Za-z0-9_-]{0,10}[A-Za-z0-9_])?"
        .prop_filter("the fields rule and no reserved prefix", |s| {
            !s.contains("--")
                && !s.starts_with("l_")
                && !s.starts_with("n__")
                && !s.starts_with("s_")
        })
        .boxed()
}

fn base62() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,16}"
}

/// One inner parameter of each scheme signing can wrap, with the scheme it is.
fn inner_param() -> impl Strategy<Value = (Scheme, String)> {
    prop_oneof![
        "[a-z]{2,10}_[0-9]{1,8}".prop_map(|p| (Scheme::Raw, p)),
        json_payload().prop_map(|p| (Scheme::Json, encode_json(&p).unwrap())),
        "[A-Za-z0-9_-]{1,12}".prop_map(|id| (Scheme::Entry, encode_entry(&id).unwrap())),
        fields(link_field_part()).prop_map(|f| (Scheme::Fields, encode_fields(&f).unwrap())),
        (base62(), proptest::option::of(base62()))
            .prop_map(|(c, k)| (Scheme::Stored, encode_stored(&c, k.as_deref()).unwrap())),
    ]
}

fn sorted(mut v: Vec<(String, String)>) -> Vec<(String, String)> {
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// 1. payload schemes

proptest! {
    #![proptest_config(config())]

    #[test]
    fn json_round_trips(p in json_payload()) {
        let param = encode_json(&p).unwrap();
        prop_assert!(param.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{}", param);
        let back = decode_json(&param).unwrap();
        prop_assert_eq!(&back.phone, &p.phone);
        prop_assert_eq!(&back.email, &p.email);
        prop_assert_eq!(&back.external_id, &p.external_id);
        // `v` is a JSON object: its order is not part of the data.
        prop_assert_eq!(sorted(back.variables.clone()), sorted(p.variables.clone()));
        // Real links carry padding; it decodes the same.
        let padded = format!("{param}{}", "=".repeat((4 - param.len() % 4) % 4));
        prop_assert_eq!(decode_json(&padded).unwrap(), back.clone());
        // The compact JSON is what serde_json reads back too.
        let text = payload::json_text(&p);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        prop_assert_eq!(v.get("e").and_then(|e| e.as_str()), p.email.as_deref());
        // Auto-detection finds the json scheme and fills the values.
        let d = decode(&param, None, None).unwrap();
        prop_assert_eq!(d.scheme, Some(Scheme::Json), "{}", param);
        prop_assert_eq!((d.phone, d.email, d.external_id), (p.phone, p.email, p.external_id));
    }

    #[test]
    fn entry_round_trips(id in "[A-Za-z0-9_-]{1,40}") {
        let param = encode_entry(&id).unwrap();
        prop_assert_eq!(&param, &format!("n__{id}"));
        let d = decode(&param, None, None).unwrap();
        prop_assert_eq!(d.scheme, Some(Scheme::Entry));
        prop_assert_eq!(d.entry.as_deref(), Some(id.as_str()));
    }

    #[test]
    fn entry_refuses_other_characters(id in "[A-Za-z0-9_-]{0,5}[^A-Za-z0-9_-][A-Za-z0-9_-]{0,5}") {
        prop_assert!(matches!(encode_entry(&id), Err(PayloadError::BadIdChar { .. })), "{:?}", id);
    }

    #[test]
    fn fields_round_trip(f in fields(field_part().boxed())) {
        let param = encode_fields(&f).unwrap();
        prop_assert_eq!(decode_fields(&param).unwrap(), f.clone());
        let d = decode(&param, None, Some(Scheme::Fields)).unwrap();
        prop_assert_eq!(d.entry.as_deref(), Some(f.entry.as_str()));
        prop_assert_eq!(d.entry_value.as_deref(), Some(f.value.as_str()));
        prop_assert_eq!(d.fields, f.fields);
    }

    #[test]
    fn fields_are_detected(f in fields(link_field_part())) {
        let param = encode_fields(&f).unwrap();
        let d = decode(&param, None, None).unwrap();
        prop_assert_eq!(d.scheme, Some(Scheme::Fields), "{}", param);
        prop_assert_eq!(d.entry, Some(f.entry));
        prop_assert_eq!(d.entry_value, Some(f.value));
        prop_assert_eq!(d.fields, f.fields);
    }

    #[test]
    fn fields_refuse_values_that_would_split_differently(
        good in field_part(),
        bad in prop_oneof![
            "[a-z]{0,4}--[a-z]{0,4}",
            "-[a-z0-9]{0,6}",
            "[a-z0-9]{0,6}-",
            Just(String::new()),
        ],
        slot in 0usize..4,
    ) {
        let mut f = Fields { entry: good.clone(), value: good.clone(), fields: vec![(good.clone(), good)] };
        match slot {
            0 => f.entry = bad,
            1 => f.value = bad,
            2 => f.fields[0].0 = bad,
            _ => f.fields[0].1 = bad,
        }
        prop_assert!(matches!(encode_fields(&f), Err(PayloadError::FieldRule { .. })), "{:?}", f);
    }

    #[test]
    fn stored_round_trips(code in base62(), click in proptest::option::of(base62())) {
        let param = encode_stored(&code, click.as_deref()).unwrap();
        let expected = payload::StoredRef { code, click };
        prop_assert_eq!(decode_stored(&param).unwrap(), expected.clone());
        let d = decode(&param, None, None).unwrap();
        prop_assert_eq!(d.scheme, Some(Scheme::Stored));
        prop_assert_eq!(d.stored, Some(expected));
    }

    #[test]
    fn signed_round_trips_over_every_scheme((scheme, inner) in inner_param()) {
        let signed = sign(KEY, &inner).unwrap();
        prop_assert_eq!(signed.len(), inner.len() + SIGNED_OVERHEAD);
        prop_assert_eq!(verify(KEY, &signed).unwrap(), inner.clone());
        for key in [Some(KEY), None] {
            let d = decode(&signed, key, None).unwrap();
            prop_assert_eq!(d.scheme, Some(Scheme::Signed));
            prop_assert_eq!(d.inner_scheme, Some(scheme), "{}", inner);
            prop_assert_eq!(d.verified, key.map(|_| true));
            prop_assert_eq!(&d.inner, &inner);
        }
        // Another key never verifies it.
        prop_assert_eq!(verify(b"another key, 16+ bytes", &signed), Err(PayloadError::BadSignature));
    }

    #[test]
    fn any_single_character_change_of_a_signed_param_is_caught(
        (_scheme, inner) in inner_param(),
        at in any::<proptest::sample::Index>(),
        with in prop_oneof![
            "[A-Za-z0-9_=-]",
            any::<char>().prop_map(String::from),
        ],
    ) {
        let signed = sign(KEY, &inner).unwrap();
        let chars: Vec<char> = signed.chars().collect();
        let i = at.index(chars.len());
        let with = with.chars().next().unwrap();
        prop_assume!(chars[i] != with);
        let tampered: String = chars.iter().enumerate()
            .map(|(j, c)| if j == i { with } else { *c })
            .collect();
        match decode(&tampered, Some(KEY), None) {
            Err(_) => {}
            // Accepted only as something that is not a verified copy of the inner parameter:
            // the prefix or separator was changed, so it reads as unsigned (verified: false).
            Ok(d) => {
                prop_assert_ne!(d.verified, Some(true), "{} accepted as signed", tampered);
                prop_assert_ne!(&d.inner, &inner);
            }
        }
        prop_assert!(verify(KEY, &tampered).is_err(), "{}", tampered);
    }

    #[test]
    fn text_round_trips(text in any::<String>().prop_filter("non-empty", |s| !s.is_empty())) {
        let param = encode_text(&text).unwrap();
        prop_assert!(!param.contains('='), "{}", param);
        prop_assert_eq!(decode_text(&param).unwrap(), text.clone());
        let padded = format!("{param}{}", "=".repeat((4 - param.len() % 4) % 4));
        prop_assert_eq!(decode_text(&padded).unwrap(), text.clone());
        // Auto-detection of text is a heuristic; naming the scheme always works.
        let d = decode(&param, None, Some(Scheme::Text)).unwrap();
        prop_assert_eq!(d.scheme, Some(Scheme::Text));
        prop_assert_eq!(d.text, Some(text));
    }

    #[test]
    fn typical_raw_params_detect_as_raw(p in "[a-z]{2,12}_[0-9]{1,10}|[a-z]{2,12}(_[a-z0-9]{1,8}){1,3}") {
        let d = decode(&p, None, None).unwrap();
        prop_assert_eq!(d.scheme, Some(Scheme::Raw), "{}", p);
        prop_assert_eq!(&d.inner, &p);
        prop_assert_eq!(payload::detect(&p), Scheme::Raw);
    }
}

#[test]
fn json_whose_base64_contains_the_fields_separator_is_json() {
    // Regression (found by `json_round_trips`): Base64URL of non-ASCII JSON can contain `--`
    // (here from the UTF-8 of 対), and detection used to try fields before json, reading
    // this as entry `eyJ2Ijp7InByb21vIjoi5a` with value `562WIn19`.
    let p = JsonPayload {
        variables: vec![("promo".into(), "対策".into())],
        ..JsonPayload::default()
    };
    let param = encode_json(&p).unwrap();
    assert_eq!(param, "eyJ2Ijp7InByb21vIjoi5a--562WIn19");
    let d = decode(&param, None, None).unwrap();
    assert_eq!(d.scheme, Some(Scheme::Json));
    assert_eq!(d.variables, p.variables);
    assert_eq!(d.entry, None);
    let d = decode(&sign(KEY, &param).unwrap(), Some(KEY), None).unwrap();
    assert_eq!(d.inner_scheme, Some(Scheme::Json));
}

#[test]
fn identifiers_that_happen_to_be_base64_of_letters_stay_raw() {
    // Regression (found by `typical_raw_params_detect_as_raw`): these decode as Base64URL to
    // a few letters of some script ("ƈ?㝴", "ʊ?ߏ:") and used to be detected as aiogram text.
    for raw in [
        "xog_4520", "yoo_3486", "adi_5426", "xog_clk", "am_pspk", "s_2_x",
    ] {
        assert_eq!(payload::detect(raw), Scheme::Raw, "{raw}");
        assert_eq!(decode(raw, None, None).unwrap().scheme, Some(Scheme::Raw));
    }
    // Text that a person encoded is still found.
    assert_eq!(payload::detect("aGVsbG8gd29ybGQ"), Scheme::Text);
    assert_eq!(
        payload::detect(&encode_text("Привіт, світ").unwrap()),
        Scheme::Text
    );
}

#[test]
fn a_raw_param_named_like_a_stored_code_is_read_as_stored() {
    // `l_` is the stored scheme's prefix: `l_5` is a stored code, not a raw parameter. This
    // pins the documented ambiguity so that a change to it is deliberate.
    assert_eq!(payload::detect("l_5"), Scheme::Stored);
    assert_eq!(payload::detect("ll_5"), Scheme::Raw);
}

// ---------------------------------------------------------------------------------------------
// 2. links

/// A parameter valid for `charset`, of 1..=`max` characters.
fn param_for(charset: Charset, max: usize) -> BoxedStrategy<String> {
    let lens = 1..=max;
    match charset {
        Charset::UrlSafe => proptest::collection::vec(
            select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
                    .chars()
                    .collect::<Vec<_>>(),
            ),
            lens,
        )
        .prop_map(|v| v.into_iter().collect())
        .boxed(),
        Charset::MetaRef => proptest::collection::vec(
            select(
                "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_=-"
                    .chars()
                    .collect::<Vec<_>>(),
            ),
            lens,
        )
        .prop_map(|v| v.into_iter().collect())
        .boxed(),
        Charset::AnyText => proptest::collection::vec(
            prop_oneof![
                any::<char>(),
                select(" &=?#%+/@:;,'\"\\<>ref".chars().collect::<Vec<_>>()),
            ]
            .prop_filter("no control characters", |c| !c.is_control()),
            lens,
        )
        .prop_map(|v| v.into_iter().collect())
        .boxed(),
    }
}

/// A valid bot identifier for `channel`, as a person might type it.
fn bot_for(channel: Channel) -> BoxedStrategy<String> {
    match channel {
        Channel::Telegram => "@?[A-Za-z][A-Za-z0-9_]{3,31}".boxed(),
        Channel::Max => "@?[A-Za-z0-9_]{2,64}".boxed(),
        Channel::Viber | Channel::Messenger => "[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}".boxed(),
        Channel::Instagram => "@?[A-Za-z0-9_][A-Za-z0-9_.]{0,29}".boxed(),
        Channel::Whatsapp => "\\+?[1-9][0-9]{6,14}".boxed(),
        Channel::Line => "@?[A-Za-z0-9_][A-Za-z0-9_.-]{0,39}".boxed(),
        Channel::Webchat => "[A-Za-z0-9_-]{1,64}".boxed(),
        Channel::Custom => "https://shop[a-z]{0,8}\\.example/app/[a-z]{1,10}".boxed(),
    }
}

#[derive(Debug, Clone)]
struct Case {
    channel: Channel,
    bot: String,
    kind: LinkKind,
    form: TelegramForm,
    param: Option<String>,
    app: Option<String>,
    admin: Vec<&'static str>,
}

fn kind_and_form() -> impl Strategy<Value = (LinkKind, TelegramForm)> {
    (
        select(vec![
            LinkKind::Start,
            LinkKind::StartGroup,
            LinkKind::StartChannel,
            LinkKind::StartApp,
        ]),
        select(vec![
            TelegramForm::TMe,
            TelegramForm::TelegramMe,
            TelegramForm::Tg,
        ]),
    )
}

fn link_case() -> impl Strategy<Value = Case> {
    (select(Channel::ALL.to_vec()), kind_and_form()).prop_flat_map(|(channel, (kind, form))| {
        let (kind, form) = if channel == Channel::Telegram {
            (kind, form)
        } else {
            (LinkKind::Start, TelegramForm::TMe)
        };
        let rule = rule_for(channel, kind);
        let param = if kind == LinkKind::StartChannel {
            Just(None).boxed()
        } else {
            proptest::option::weighted(0.9, param_for(rule.charset, rule.max_len)).boxed()
        };
        let app = if kind == LinkKind::StartApp {
            proptest::option::of("[A-Za-z0-9_]{3,30}").boxed()
        } else {
            Just(None).boxed()
        };
        let admin = match kind {
            LinkKind::StartGroup => {
                proptest::sample::subsequence(ADMIN_RIGHTS.to_vec(), 0..4).boxed()
            }
            LinkKind::StartChannel => {
                proptest::sample::subsequence(ADMIN_RIGHTS.to_vec(), 1..4).boxed()
            }
            _ => Just(vec![]).boxed(),
        };
        (bot_for(channel), param, app, admin).prop_map(move |(bot, param, app, admin)| Case {
            channel,
            bot,
            kind,
            form,
            param,
            app,
            admin,
        })
    })
}

const BASE_URL: &str = "https://links.example.com";

fn spec(c: &Case) -> LinkSpec<'_> {
    let mut s = LinkSpec::new(c.channel, &c.bot, c.param.as_deref());
    s.kind = c.kind;
    s.form = c.form;
    s.app = c.app.as_deref();
    s.admin = &c.admin;
    s.base_url = Some(BASE_URL);
    s
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_built_link_parses_back(c in link_case()) {
        let link = build_link(&spec(&c)).unwrap();
        prop_assert_eq!(link.channel, c.channel);
        prop_assert_eq!(&link.param, &c.param);
        if c.channel == Channel::Custom && c.param.is_none() {
            // A custom chat's page is any URL: only its `?start=` tells it apart.
            prop_assert!(parse_link(&link.url).is_err(), "{}", link.url);
            return Ok(());
        }
        let parsed = parse_link(&link.url).unwrap();
        prop_assert_eq!(parsed.channel, c.channel, "{}", link.url);
        prop_assert_eq!(&parsed.bot, &check_bot(c.channel, &c.bot).unwrap(), "{}", link.url);
        prop_assert_eq!(parsed.kind, c.kind, "{}", link.url);
        prop_assert_eq!(&parsed.param, &c.param, "{}", link.url);
        prop_assert_eq!(&parsed.app, &c.app);
        prop_assert_eq!(parsed.admin, c.admin.iter().map(|r| r.to_string()).collect::<Vec<_>>());
        if let Some(p) = &c.param {
            prop_assert_eq!(link.length, p.chars().count());
        }
        prop_assert_eq!(link.limit, rule_for(c.channel, c.kind).max_len);
    }

    #[test]
    fn pre_filled_text_survives_the_round_trip(
        channel in select(vec![Channel::Viber, Channel::Whatsapp, Channel::Line]),
        text in "[^\\p{Cc}]{1,40}",
        param in "[A-Za-z0-9_-]{1,32}",
    ) {
        let text = text.trim().to_string();
        prop_assume!(!text.is_empty() && !text.contains(TEXT_MARKER));
        let bot = if channel == Channel::Whatsapp { "15550001111" } else { "shop" };
        let mut s = LinkSpec::new(channel, bot, Some(&param));
        s.text = Some(&text);
        let url = build_link(&s).unwrap().url;
        let parsed = parse_link(&url).unwrap();
        prop_assert_eq!(parsed.param.as_deref(), Some(param.as_str()), "{}", url);
        prop_assert_eq!(parsed.text.as_deref(), Some(text.as_str()), "{}", url);
    }

    #[test]
    fn one_over_the_limit_is_too_long(c in link_case()) {
        prop_assume!(c.kind != LinkKind::StartChannel);
        let rule = rule_for(c.channel, c.kind);
        let over: String = "a".repeat(rule.max_len + 1);
        let mut c = c;
        c.param = Some(over);
        let err = build_link(&spec(&c)).unwrap_err();
        let is_too_long = matches!(
            err,
            LinkError::TooLong { channel, len, limit, .. }
                if channel == c.channel && len == rule.max_len + 1 && limit == rule.max_len
        );
        prop_assert!(is_too_long, "{:?}", err);
        let msg = err.to_string();
        prop_assert!(msg.contains(&(rule.max_len + 1).to_string()) && msg.contains(&rule.max_len.to_string()), "{}", msg);
    }

    #[test]
    fn a_refused_character_is_bad_char(
        c in link_case(),
        at in any::<proptest::sample::Index>(),
        bad in any::<char>(),
    ) {
        prop_assume!(c.kind != LinkKind::StartChannel);
        let rule = rule_for(c.channel, c.kind);
        prop_assume!(!rule.charset.allows(bad));
        let mut chars: Vec<char> = c.param.clone().unwrap_or_else(|| "p".into()).chars().collect();
        let pos = at.index(chars.len());
        chars[pos] = bad;
        let mut c = c;
        c.param = Some(chars.into_iter().collect());
        let err = build_link(&spec(&c)).unwrap_err();
        let is_bad_char = matches!(
            err,
            LinkError::BadChar { channel, ch, pos: p, .. }
                if channel == c.channel && ch == bad && p == pos
        );
        prop_assert!(is_bad_char, "{:?}", err);
    }
}

#[test]
fn an_empty_whatsapp_number_is_malformed() {
    // Regression (found by `parse_link_never_panics`): `api.whatsapp.com/send?phone=` used to
    // parse as a link to the bot "".
    for url in [
        "https://api.whatsapp.com/send?phone=",
        "https://api.whatsapp.com/send?phone=&text=ref%3Aa1",
        "https://api.whatsapp.com/send?phone=#",
    ] {
        assert!(
            matches!(parse_link(url), Err(LinkError::Malformed { .. })),
            "{url}"
        );
    }
    let p = parse_link("https://api.whatsapp.com/send?phone=15550001111&text=ref%3Aa1").unwrap();
    assert_eq!(
        (p.channel, p.bot.as_str(), p.param.as_deref()),
        (Channel::Whatsapp, "15550001111", Some("a1"))
    );
}

#[test]
fn an_empty_visible_text_is_no_text() {
    // Regression (found by the parse_link fuzz target): `wa.me/<n>?text=` parsed with text
    // `Some("")`, which the builder leaves out, so the link did not survive a rebuild.
    for url in [
        "https://wa.me/15550001111?text=",
        "https://api.whatsapp.com/send?phone=15550001111&text=",
    ] {
        let p = parse_link(url).unwrap();
        assert_eq!((p.text, p.param), (None, None), "{url}");
    }
    let p = parse_link("https://wa.me/15550001111?text=Hi").unwrap();
    assert_eq!(p.text.as_deref(), Some("Hi"));
}

// ---------------------------------------------------------------------------------------------
// 3. no panics on untrusted input

/// Strings near what the parsers expect (a known prefix, then noise), plus arbitrary ones.
fn url_like() -> impl Strategy<Value = String> {
    let prefix = select(vec![
        "",
        "https://t.me/",
        "https://telegram.me/bot/app?",
        "tg://resolve?domain=",
        "viber://pa?chatURI=",
        "https://m.me/",
        "https://ig.me/m/",
        "https://wa.me/1555?text=",
        "https://api.whatsapp.com/send?phone=",
        "https://line.me/R/oaMessage/",
        "https://max.ru/",
        "https://x.example/chat/",
    ]);
    let tail = prop_oneof![
        any::<String>(),
        "[a-z0-9@%&=?#/+._ -]{0,40}",
        "(%[0-9a-fA-F]{0,2}|[&=?/]|start|startapp|ref|ref:|admin|text|context)*",
    ];
    (prefix, tail).prop_map(|(p, t)| format!("{p}{t}"))
}

/// JSON bodies shaped like the webhooks, with values of any JSON type in every place.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "(/start|/start@mybot|ref:|[a-z ]){0,6}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    let keys = select(vec![
        "message",
        "text",
        "from",
        "chat",
        "id",
        "first_name",
        "last_name",
        "update_id",
        "event",
        "user",
        "context",
        "message_token",
        "object",
        "entry",
        "messaging",
        "postback",
        "referral",
        "ref",
        "sender",
        "mid",
        "timestamp",
        "changes",
        "value",
        "contacts",
        "wa_id",
        "profile",
        "name",
        "messages",
        "body",
        "events",
        "type",
        "source",
        "userId",
        "webhookEventId",
        "update_type",
        "user_id",
        "chat_id",
        "payload",
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
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ]
}

fn all_arrivals(body: &[u8], text: &str) {
    let _ = arrival::telegram_update(body, None);
    let _ = arrival::telegram_update(body, Some(text));
    let _ = arrival::viber_callback(body);
    let _ = arrival::meta_referrals(body);
    let _ = arrival::whatsapp_messages(body, TEXT_MARKER);
    let _ = arrival::whatsapp_messages(body, text);
    let _ = arrival::line_events(body, TEXT_MARKER);
    let _ = arrival::line_events(body, text);
    let _ = arrival::max_update(body);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn parse_link_never_panics(url in url_like()) {
        if let Ok(p) = parse_link(&url) {
            prop_assert!(!p.bot.is_empty(), "{:?}", p);
        }
    }

    #[test]
    fn decode_never_panics(
        param in prop_oneof![any::<String>(), "(s_|l_|n__|eyJ|--|[A-Za-z0-9_=-]){0,12}"],
        key in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
        scheme in proptest::option::of(select(vec![
            Scheme::Raw, Scheme::Json, Scheme::Entry, Scheme::Fields,
            Scheme::Stored, Scheme::Signed, Scheme::Text,
        ])),
    ) {
        let _ = decode(&param, key.as_deref(), scheme);
        let _ = payload::detect(&param);
        let _ = verify(KEY, &param);
    }

    #[test]
    fn arrivals_never_panic(body in body(), text in any::<String>()) {
        all_arrivals(&body, &text);
        let _ = arrival::telegram_start_param(&text, None);
        let _ = arrival::telegram_start_param(&text, Some(&text));
        let _ = arrival::marker_param(&text, TEXT_MARKER);
        let s = String::from_utf8_lossy(&body);
        let _ = arrival::marker_param(&s, &text);
    }

    #[test]
    fn telegram_start_param_reads_what_follows_start(
        p in "[^\\s]([^\\n]{0,30}[^\\s])?",
        bot in "[A-Za-z][A-Za-z0-9_]{3,10}",
    ) {
        prop_assert_eq!(arrival::telegram_start_param(&format!("/start {p}"), None).unwrap(), Some(p.clone()));
        prop_assert_eq!(
            arrival::telegram_start_param(&format!("/start@{bot} {p}"), Some(&bot)).unwrap(),
            Some(p)
        );
    }
}
