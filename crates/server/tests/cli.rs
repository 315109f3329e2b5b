//! The offline `botlink` commands (`link`, `decode`, `qr`, `links`), run as the real binary.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use botlink_core::payload::{JsonPayload, encode_json, sign};
use botlink_core::{Channel, parse_link};
use serde_json::Value;

const KEY: &str = "0123456789abcdef-test-key";

/// The binary with no ambient botlink settings, so that tests see only what they pass.
fn botlink() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_botlink"));
    cmd.env_remove("BOTLINK_SIGN_KEY")
        .env_remove("BOTLINK_PUBLIC_URL");
    cmd
}

fn run(args: &[&str]) -> Output {
    botlink()
        .args(args)
        .output()
        .expect("the botlink binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8 output")
}

/// Runs a command that must succeed and returns its stdout without the final newline.
#[track_caller]
fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "botlink {args:?} failed: {}",
        text(&out.stderr)
    );
    text(&out.stdout).trim_end_matches('\n').to_string()
}

/// Runs a command that must fail with exit code 2, nothing on stdout and exactly one
/// `error: ...` line on stderr; returns that line.
#[track_caller]
fn fails(args: &[&str]) -> String {
    let out = run(args);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "botlink {args:?} should exit 2; stdout: {} stderr: {stderr}",
        text(&out.stdout)
    );
    assert!(out.stdout.is_empty(), "stdout: {}", text(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

#[track_caller]
fn json(args: &[&str]) -> Value {
    let out = ok(args);
    assert_eq!(out.lines().count(), 1, "one JSON object on one line: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

// ---------------------------------------------------------------------------------------------
// link: the exact contract

#[test]
fn link_json_scheme_reproduces_the_design_vectors() {
    let cases = [
        (
            ["--email", "email@gmail.com"],
            "https://t.me/bot_name?start=eyJlIjoiZW1haWxAZ21haWwuY29tIn0",
        ),
        (
            ["--phone", "79000000000"],
            "https://t.me/bot_name?start=eyJwIjoiNzkwMDAwMDAwMDAifQ",
        ),
        (
            ["--external-id", "externalId"],
            "https://t.me/bot_name?start=eyJlSWQiOiJleHRlcm5hbElkIn0",
        ),
        (
            ["--var", "city=Moscow"],
            "https://t.me/bot_name?start=eyJ2Ijp7ImNpdHkiOiJNb3Njb3cifX0",
        ),
    ];
    for (opts, url) in cases {
        let mut args = vec!["link", "telegram", "bot_name"];
        args.extend(opts);
        assert_eq!(ok(&args), url);
    }
}

#[test]
fn link_raw_and_entry() {
    assert_eq!(
        ok(&["link", "telegram", "mybot", "--param", "customer_12345"]),
        "https://t.me/mybot?start=customer_12345"
    );
    assert_eq!(
        ok(&["link", "telegram", "mybot", "--entry", "3"]),
        "https://t.me/mybot?start=n__3"
    );
    assert_eq!(ok(&["link", "telegram", "mybot"]), "https://t.me/mybot");
}

#[test]
fn link_viber_with_text() {
    assert_eq!(
        ok(&[
            "link", "viber", "mybot", "--param", "12345", "--text", "Start!"
        ]),
        "viber://pa?chatURI=mybot&context=12345&text=Start!"
    );
}

#[test]
fn link_messenger_fields() {
    assert_eq!(
        ok(&[
            "link",
            "messenger",
            "PAGE-NAME",
            "--entry",
            "giveaway",
            "--value",
            "value1",
            "--field",
            "738=value2",
            "--field",
            "514=value3",
        ]),
        "https://m.me/PAGE-NAME?ref=giveaway--value1--738--value2--514--value3"
    );
}

#[test]
fn link_every_channel() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["instagram", "shop.ua", "--param", "summer_sale"],
            "https://ig.me/m/shop.ua?ref=summer_sale",
        ),
        (
            &[
                "whatsapp",
                "+1 555 000 1111",
                "--param",
                "summer_sale",
                "--text",
                "Hello!",
            ],
            "https://wa.me/15550001111?text=Hello!%20ref%3Asummer_sale",
        ),
        (
            &["line", "@shop", "--param", "a1"],
            "https://line.me/R/oaMessage/%40shop/?ref%3Aa1",
        ),
        (
            &["max", "shop_bot", "--param", "a1"],
            "https://max.ru/shop_bot?start=a1",
        ),
        (
            &[
                "webchat",
                "support",
                "--param",
                "hello world",
                "--base-url",
                "https://links.example.com/",
            ],
            "https://links.example.com/chat/support?ref=hello%20world",
        ),
    ];
    for (opts, url) in cases {
        let mut args = vec!["link"];
        args.extend(*opts);
        assert_eq!(ok(&args), *url, "{opts:?}");
    }
}

#[test]
fn link_telegram_kinds_and_forms() {
    assert_eq!(
        ok(&[
            "link",
            "telegram",
            "mybot",
            "--param",
            "team_1",
            "--group",
            "--admin",
            "post_messages,invite_users"
        ]),
        "https://t.me/mybot?startgroup=team_1&admin=post_messages+invite_users"
    );
    assert_eq!(
        ok(&[
            "link",
            "telegram",
            "mybot",
            "--channel-admin",
            "post_messages+edit_messages"
        ]),
        "https://t.me/mybot?startchannel&admin=post_messages+edit_messages"
    );
    assert_eq!(
        ok(&[
            "link", "telegram", "mybot", "--app", "shop", "--param", "x1"
        ]),
        "https://t.me/mybot/shop?startapp=x1"
    );
    assert_eq!(
        ok(&["link", "telegram", "mybot", "--startapp", "--param", "x1"]),
        "https://t.me/mybot?startapp=x1"
    );
    assert_eq!(
        ok(&[
            "link", "telegram", "mybot", "--param", "abc", "--form", "tg"
        ]),
        "tg://resolve?domain=mybot&start=abc"
    );
    assert_eq!(
        ok(&[
            "link",
            "telegram",
            "mybot",
            "--param",
            "abc",
            "--form",
            "telegram.me"
        ]),
        "https://telegram.me/mybot?start=abc"
    );
    // Mini apps take up to 512 characters.
    let long = "b".repeat(512);
    let url = ok(&["link", "telegram", "mybot", "--startapp", "--param", &long]);
    assert_eq!(url, format!("https://t.me/mybot?startapp={long}"));
    let longer = "b".repeat(513);
    let err = fails(&[
        "link",
        "telegram",
        "mybot",
        "--startapp",
        "--param",
        &longer,
    ]);
    assert!(err.contains("513") && err.contains("512"), "{err}");
}

#[test]
fn link_json_output_has_every_key() {
    let v = json(&[
        "link",
        "telegram",
        "@bot_name",
        "--email",
        "email@gmail.com",
        "--json",
    ]);
    assert_eq!(
        v["url"],
        "https://t.me/bot_name?start=eyJlIjoiZW1haWxAZ21haWwuY29tIn0"
    );
    assert_eq!(v["param"], "eyJlIjoiZW1haWxAZ21haWwuY29tIn0");
    assert_eq!(v["length"], 31);
    assert_eq!(v["limit"], 64);
    assert_eq!(v["channel"], "telegram");
    assert_eq!(v["bot"], "bot_name");
    assert_eq!(v["scheme"], "json");
    assert_eq!(v["kind"], "start");
    assert_eq!(v["signed"], false);

    let v = json(&["link", "messenger", "page", "--entry", "3", "--json"]);
    assert_eq!(
        (v["scheme"].as_str(), v["limit"].as_u64()),
        (Some("entry"), Some(2083))
    );
    let v = json(&[
        "link",
        "telegram",
        "mybot",
        "--startapp",
        "--param",
        "x",
        "--json",
    ]);
    assert_eq!(
        (v["kind"].as_str(), v["limit"].as_u64()),
        (Some("startapp"), Some(512))
    );
    let v = json(&["link", "telegram", "mybot", "--json"]);
    assert_eq!(
        (
            v["param"].clone(),
            v["scheme"].clone(),
            v["length"].as_u64()
        ),
        (Value::Null, Value::Null, Some(0))
    );
}

#[test]
fn link_text_scheme_is_aiogram_base64() {
    let v = json(&[
        "link",
        "telegram",
        "mybot",
        "--encode",
        "hello world",
        "--json",
    ]);
    assert_eq!(v["param"], "aGVsbG8gd29ybGQ");
    assert_eq!(v["scheme"], "text");
}

// ---------------------------------------------------------------------------------------------
// link: errors

#[test]
fn too_long_names_the_limit_the_length_and_the_way_out() {
    let p = "a".repeat(65);
    let err = fails(&["link", "telegram", "mybot", "--param", &p]);
    assert!(
        err.contains("65 characters") && err.contains("limit of 64"),
        "{err}"
    );
    assert!(err.contains("stored scheme of `botlink serve`"), "{err}");

    let max = "x".repeat(129);
    let err = fails(&["link", "max", "shop_bot", "--param", &max]);
    assert!(err.contains("129") && err.contains("128"), "{err}");
}

#[test]
fn json_over_64_characters_is_refused_with_its_size() {
    let email = "a.very.long.address.for.testing@example-company.com";
    let payload = JsonPayload {
        email: Some(email.into()),
        ..JsonPayload::default()
    };
    let encoded = encode_json(&payload).unwrap().len();
    assert!(encoded > 64);
    let err = fails(&["link", "telegram", "mybot", "--email", email]);
    assert!(err.contains(&format!("{encoded} characters")), "{err}");
    assert!(err.contains("limit of 64"), "{err}");
    let json_bytes = email.len() + r#"{"e":""}"#.len();
    assert!(
        err.contains(&format!("{json_bytes} bytes before Base64URL")),
        "{err}"
    );
    // The same payload fits Messenger.
    assert!(
        ok(&["link", "messenger", "page", "--email", email])
            .starts_with("https://m.me/page?ref=eyJ")
    );
}

#[test]
fn signing_counts_against_the_limit_and_says_so() {
    let p = "a".repeat(60);
    assert!(ok(&["link", "telegram", "mybot", "--param", &p]).ends_with(&p));
    let err = fails(&[
        "link",
        "telegram",
        "mybot",
        "--param",
        &p,
        "--sign-key",
        KEY,
    ]);
    assert!(err.contains("71 characters") && err.contains("64"), "{err}");
    assert!(err.contains("signature adds 11"), "{err}");
}

#[test]
fn wrong_characters_and_empty_parameters() {
    let err = fails(&["link", "telegram", "mybot", "--param", "a.b"]);
    assert!(
        err.contains("'.'") && err.contains("[A-Za-z0-9_-]"),
        "{err}"
    );
    let err = fails(&["link", "messenger", "page", "--param", "a@b"]);
    assert!(err.contains("'@'") && err.contains("json scheme"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--param", ""]);
    assert!(err.contains("empty"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--encode", ""]);
    assert!(err.contains("empty"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--email", ""]);
    assert!(err.contains("--email is empty"), "{err}");
}

#[test]
fn mixing_schemes_names_the_conflicting_options() {
    let err = fails(&[
        "link", "telegram", "mybot", "--param", "x", "--email", "a@b.c",
    ]);
    assert!(err.contains("--param") && err.contains("--email"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--encode", "x", "--entry", "3"]);
    assert!(err.contains("--encode") && err.contains("--entry"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--var", "a=b", "--value", "v"]);
    assert!(err.contains("--var") && err.contains("--value"), "{err}");
    let err = fails(&["link", "messenger", "page", "--value", "v"]);
    assert!(err.contains("--value needs --entry"), "{err}");
    let err = fails(&[
        "link",
        "messenger",
        "page",
        "--entry",
        "e",
        "--field",
        "1=x",
    ]);
    assert!(err.contains("--field needs --value"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--var", "novalue"]);
    assert!(
        err.contains("KEY=VALUE") && err.contains("novalue"),
        "{err}"
    );
    let err = fails(&[
        "link",
        "messenger",
        "page",
        "--entry",
        "e",
        "--value",
        "a--b",
    ]);
    assert!(err.contains("'--'"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--group", "--startapp"]);
    assert!(
        err.contains("--group") && err.contains("--startapp"),
        "{err}"
    );
}

#[test]
fn channel_and_option_errors() {
    let err = fails(&[
        "link", "telegram", "mybot", "--param", "x", "--admin", "fly",
    ]);
    assert!(err.contains("\"fly\""), "{err}");
    let err = fails(&[
        "link",
        "telegram",
        "mybot",
        "--param",
        "x",
        "--admin",
        "post_messages",
    ]);
    assert!(err.contains("--group"), "{err}");
    let err = fails(&["link", "webchat", "support", "--param", "x"]);
    assert!(err.contains("base URL"), "{err}");
    let err = fails(&["link", "viber", "mybot", "--param", "x", "--group"]);
    assert!(err.contains("only Telegram"), "{err}");
    let err = fails(&["link", "telegram", "9bot", "--param", "x"]);
    assert!(err.contains("4-32 characters"), "{err}");
    let err = fails(&["link", "telegram", "mybot", "--param", "x", "--text", "hi"]);
    assert!(err.contains("text"), "{err}");
    // clap's own usage errors exit 2 too.
    let out = run(&["link", "icq", "mybot"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unknown channel"),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------
// decode

const DECODE_KEYS: &[&str] = &[
    "channel",
    "bot",
    "param",
    "scheme",
    "entry",
    "external_id",
    "phone",
    "email",
    "variables",
    "fields",
    "kind",
    "verified",
    "inner_scheme",
    "text",
    "scenario_variables",
    "note",
];

#[track_caller]
fn decoded(args: &[&str]) -> Value {
    let mut all = vec!["decode"];
    all.extend(args);
    let v = json(&all);
    for k in DECODE_KEYS {
        assert!(v.get(k).is_some(), "key {k} missing from {v}");
    }
    v
}

#[test]
fn decode_json_link() {
    let v = decoded(&[
        "https://t.me/bot_name?start=eyJlIjoiZW1haWxAZ21haWwuY29tIn0",
        "--json",
    ]);
    assert_eq!(v["channel"], "telegram");
    assert_eq!(v["bot"], "bot_name");
    assert_eq!(v["kind"], "start");
    assert_eq!(v["scheme"], "json");
    assert_eq!(v["email"], "email@gmail.com");
    assert_eq!(v["phone"], Value::Null);
    assert_eq!(v["entry"], Value::Null);
    assert_eq!(v["verified"], Value::Null);
    assert_eq!(v["variables"], serde_json::json!({}));
    assert_eq!(v["fields"], serde_json::json!({}));
    assert_eq!(v["scenario_variables"]["email"], "email@gmail.com");

    // Every json key at once, from a bare parameter.
    let url = ok(&[
        "link",
        "messenger",
        "page",
        "--phone",
        "79000000000",
        "--email",
        "e@x.io",
        "--external-id",
        "c42",
        "--var",
        "city=Moscow",
        "--var",
        "plan=pro",
    ]);
    let param = parse_link(&url).unwrap().param.unwrap();
    let v = decoded(&[&param, "--json"]);
    assert_eq!(v["channel"], Value::Null);
    assert_eq!(v["bot"], Value::Null);
    assert_eq!(v["phone"], "79000000000");
    assert_eq!(v["email"], "e@x.io");
    assert_eq!(v["external_id"], "c42");
    assert_eq!(
        v["variables"],
        serde_json::json!({"city": "Moscow", "plan": "pro"})
    );
    assert_eq!(v["scenario_variables"]["clientExternalId"], "c42");
    assert_eq!(v["scenario_variables"]["city"], "Moscow");
}

#[test]
fn decode_raw_entry_fields_stored_text() {
    let v = decoded(&["https://t.me/mybot?start=customer_12345", "--json"]);
    assert_eq!(
        (v["scheme"].as_str(), v["param"].as_str()),
        (Some("raw"), Some("customer_12345"))
    );
    assert_eq!(
        v["scenario_variables"]["messenger_input_param"],
        "customer_12345"
    );

    let v = decoded(&["https://t.me/mybot?start=n__3", "--json"]);
    assert_eq!(
        (v["scheme"].as_str(), v["entry"].as_str()),
        (Some("entry"), Some("3"))
    );

    let v = decoded(&[
        "https://m.me/PAGE-NAME?ref=giveaway--value1--738--value2--514--value3",
        "--json",
    ]);
    assert_eq!(v["channel"], "messenger");
    assert_eq!(v["bot"], "PAGE-NAME");
    assert_eq!(v["scheme"], "fields");
    assert_eq!(v["entry"], "giveaway");
    assert_eq!(v["entry_value"], "value1");
    assert_eq!(
        v["fields"],
        serde_json::json!({"738": "value2", "514": "value3"})
    );

    let v = decoded(&["l_Ab3_Zz9", "--json"]);
    assert_eq!(v["scheme"], "stored");
    assert_eq!(
        v["stored"],
        serde_json::json!({"code": "Ab3", "click": "Zz9"})
    );

    let v = decoded(&["aGVsbG8gd29ybGQ", "--json"]);
    assert_eq!(
        (v["scheme"].as_str(), v["text"].as_str()),
        (Some("text"), Some("hello world"))
    );
    // Forcing a scheme.
    let v = decoded(&["aGVsbG8gd29ybGQ", "--scheme", "raw", "--json"]);
    assert_eq!(
        (v["scheme"].as_str(), v["text"].clone()),
        (Some("raw"), Value::Null)
    );
}

#[test]
fn decode_other_channels_and_bare_hosts() {
    let v = decoded(&[
        "viber://pa?chatURI=mybot&context=12345&text=Start!",
        "--json",
    ]);
    assert_eq!(
        (v["channel"].as_str(), v["param"].as_str()),
        (Some("viber"), Some("12345"))
    );
    let v = decoded(&[
        "https://wa.me/15550001111?text=Hello!%20ref%3Asummer_sale",
        "--json",
    ]);
    assert_eq!(
        (v["channel"].as_str(), v["param"].as_str()),
        (Some("whatsapp"), Some("summer_sale"))
    );
    let v = decoded(&["t.me/mybot?startgroup=n__7", "--json"]);
    assert_eq!(
        (v["kind"].as_str(), v["entry"].as_str()),
        (Some("startgroup"), Some("7"))
    );
    // A link without a parameter decodes to no payload.
    let v = decoded(&["https://t.me/mybot", "--json"]);
    assert_eq!(
        (v["bot"].as_str(), v["param"].clone(), v["scheme"].clone()),
        (Some("mybot"), Value::Null, Value::Null)
    );
}

#[test]
fn decode_signed_with_right_key_wrong_key_and_tampering() {
    let url = ok(&[
        "link",
        "telegram",
        "mybot",
        "--external-id",
        "c42",
        "--sign-key",
        KEY,
    ]);
    let link = json(&[
        "link",
        "telegram",
        "mybot",
        "--external-id",
        "c42",
        "--sign-key",
        KEY,
        "--json",
    ]);
    assert_eq!(link["url"], url.as_str());
    assert_eq!(link["signed"], true);
    assert_eq!(link["scheme"], "signed");
    assert_eq!(link["inner_scheme"], "json");
    let param = link["param"].as_str().unwrap();
    assert!(param.starts_with("s_"), "{param}");

    let v = decoded(&[&url, "--sign-key", KEY, "--json"]);
    assert_eq!(v["scheme"], "signed");
    assert_eq!(v["inner_scheme"], "json");
    assert_eq!(v["verified"], true);
    assert_eq!(v["external_id"], "c42");

    // The key can come from the environment too.
    let out = botlink()
        .args(["decode", &url, "--json"])
        .env("BOTLINK_SIGN_KEY", KEY)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["verified"], true);

    // Without a key: recognised, not verified.
    let v = decoded(&[&url, "--json"]);
    assert_eq!(
        (v["scheme"].as_str(), v["verified"].clone()),
        (Some("signed"), Value::Null)
    );

    let err = fails(&["decode", &url, "--sign-key", "another key 0123456789"]);
    assert!(err.contains("signature does not match"), "{err}");

    // Someone edits the customer id inside a signed raw parameter.
    let signed = sign(KEY.as_bytes(), "customer_12345").unwrap();
    let v = decoded(&[&signed, "--sign-key", KEY, "--json"]);
    assert_eq!(
        (v["inner_scheme"].as_str(), v["verified"].as_bool()),
        (Some("raw"), Some(true))
    );
    let tampered = signed.replace("12345", "12346");
    let err = fails(&["decode", &tampered, "--sign-key", KEY]);
    assert!(err.contains("signature does not match"), "{err}");

    // An unsigned parameter with a key: decoded, marked unverified.
    let v = decoded(&["customer_12345", "--sign-key", KEY, "--json"]);
    assert_eq!(v["verified"], false);
}

#[test]
fn decode_human_output_is_aligned() {
    let out = ok(&[
        "decode",
        "https://t.me/bot_name?start=eyJlIjoiZW1haWxAZ21haWwuY29tIn0",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // Values start in the same column on every line.
    let value_col = |l: &str| {
        let c = l.find(':').unwrap() + 1;
        c + (l[c..].len() - l[c..].trim_start().len())
    };
    let first = value_col(lines[0]);
    for l in &lines {
        assert_eq!(value_col(l), first, "values line up: {out}");
    }
    let get = |k: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("{k}:")))
            .map(|l| l.split_once(':').unwrap().1.trim())
    };
    assert_eq!(get("channel"), Some("telegram"));
    assert_eq!(get("bot"), Some("bot_name"));
    assert_eq!(get("scheme"), Some("json"));
    assert_eq!(get("email"), Some("email@gmail.com"));
}

#[test]
fn decode_errors() {
    let err = fails(&["decode", "https://t.me/"]);
    assert!(err.contains("malformed URL"), "{err}");
    let err = fails(&["decode", "ftp://t.me/x"]);
    assert!(err.contains("not a deep link"), "{err}");
    let err = fails(&["decode", "https://t.me/b?start=%ff"]);
    assert!(err.contains("malformed URL"), "{err}");
    let p = "a".repeat(65);
    let err = fails(&["decode", &p, "--channel", "telegram"]);
    assert!(err.contains("65") && err.contains("64"), "{err}");
    // Without --channel the same parameter is just raw data.
    assert_eq!(decoded(&[&p, "--json"])["scheme"], "raw");
    let err = fails(&["decode", &format!("https://t.me/mybot?start={p}")]);
    assert!(err.contains("65") && err.contains("64"), "{err}");
    let err = fails(&["decode", "a.b", "--channel", "telegram"]);
    assert!(err.contains("'.'"), "{err}");
    let err = fails(&[
        "decode",
        "https://t.me/mybot?start=abc",
        "--channel",
        "viber",
    ]);
    assert!(
        err.contains("telegram link") && err.contains("viber"),
        "{err}"
    );
    let err = fails(&["decode", "abc", "--scheme", "entry"]);
    assert!(err.contains("n__"), "{err}");
    let err = fails(&["decode", ""]);
    assert!(err.contains("empty"), "{err}");
    let out = run(&["decode", "abc", "--scheme", "morse"]);
    assert_eq!(out.status.code(), Some(2));
}

// ---------------------------------------------------------------------------------------------
// qr

fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert!(
        buf.contains(&0) && buf.contains(&255),
        "black modules on white"
    );
    (info.width, info.height)
}

#[test]
fn qr_png_and_svg_files() {
    let dir = tempfile::tempdir().unwrap();
    let url = "https://t.me/mybot?start=customer_12345";
    let modules = qrcode::QrCode::new(url).unwrap().width() as u32;

    let png = dir.path().join("code.png");
    assert_eq!(ok(&["qr", url, "--png", png.to_str().unwrap()]), "");
    let side = (modules + 8) * 8;
    assert_eq!(png_size(&png), (side, side));
    ok(&["qr", url, "--png", png.to_str().unwrap(), "--size", "3"]);
    assert_eq!(png_size(&png), ((modules + 8) * 3, (modules + 8) * 3));

    let svg = dir.path().join("code.svg");
    ok(&["qr", url, "--svg", svg.to_str().unwrap()]);
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains(&format!("width=\"{side}\"")),
        "{svg}"
    );
}

#[test]
fn qr_in_the_terminal_uses_half_blocks_with_a_quiet_zone() {
    let url = "https://t.me/mybot?start=x";
    let modules = qrcode::QrCode::new(url).unwrap().width();
    let out = ok(&["qr", url]);
    let lines: Vec<&str> = out.lines().collect();
    // Two module rows per line, 4 modules of quiet zone on each side.
    assert_eq!(lines.len(), (modules + 8).div_ceil(2));
    assert!(lines.iter().all(|l| l.chars().count() == modules + 8));
    assert!(
        lines[0].chars().all(|c| c == '█'),
        "quiet zone drawn light: {}",
        lines[0]
    );
    assert!(out.contains('▀') || out.contains('▄'));
}

#[test]
fn qr_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/code.png");
    let out = run(&["qr", "https://t.me/x", "--png", missing.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unwritable file is an I/O failure"
    );
    assert!(
        text(&out.stderr).starts_with("error: writing "),
        "{}",
        text(&out.stderr)
    );
    let err = fails(&[
        "qr",
        "https://t.me/x",
        "--png",
        dir.path().join("a.png").to_str().unwrap(),
        "--size",
        "0",
    ]);
    assert!(err.contains("module size"), "{err}");
    let big = "x".repeat(5000);
    let err = fails(&["qr", &big]);
    assert!(err.contains("5000 bytes"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// links (CSV)

fn read_csv(data: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_reader(data);
    let header = r.headers().unwrap().iter().map(str::to_string).collect();
    let rows = r
        .records()
        .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
        .collect();
    (header, rows)
}

const CUSTOMERS: &str = "\
id,email,phone,city
1,ann@example.com,79000000001,Moscow
2,a.very.long.address.for.testing@example-company.com,79000000002,Kyiv
3,cy@example.com,79000000003,
4,bob@example.com,,Riga
5,,79000000005,
";

#[test]
fn links_from_csv_with_one_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    std::fs::write(&input, CUSTOMERS).unwrap();
    let out = run(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        output.to_str().unwrap(),
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--email-col",
        "email",
        "--var-col",
        "c=city",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    assert!(
        summary.starts_with("5 rows: 3 links, 2 errors, in "),
        "{summary}"
    );
    assert!(summary.contains(" rows/s)"), "{summary}");

    let (header, rows) = read_csv(&std::fs::read(&output).unwrap());
    assert_eq!(
        header,
        ["id", "email", "phone", "city", "url", "param", "error"]
    );
    assert_eq!(rows.len(), 5);
    // Input columns are copied unchanged.
    for (row, line) in rows.iter().zip(CUSTOMERS.lines().skip(1)) {
        assert_eq!(row[..4].join(","), line);
    }
    let bad = &rows[1];
    assert_eq!((bad[4].as_str(), bad[5].as_str()), ("", ""));
    assert!(bad[6].contains("limit of 64"), "{}", bad[6]);
    // Neither an e-mail nor a city: nothing to carry.
    let empty = &rows[4];
    assert_eq!((empty[4].as_str(), empty[5].as_str()), ("", ""));
    assert!(empty[6].contains("json payload is empty"), "{}", empty[6]);
    for i in [0, 2, 3] {
        let row = &rows[i];
        assert_eq!(row[6], "", "row {i} has no error");
        let link = parse_link(&row[4]).unwrap();
        assert_eq!(
            (link.channel, link.bot.as_str()),
            (Channel::Telegram, "mybot")
        );
        assert_eq!(link.param.as_deref(), Some(row[5].as_str()));
        let d = botlink_core::decode(&row[5], None, None).unwrap();
        assert_eq!(
            d.email.as_deref(),
            Some(row[1].as_str()).filter(|s| !s.is_empty())
        );
        let city: Vec<(String, String)> = if row[3].is_empty() {
            vec![]
        } else {
            vec![("c".into(), row[3].clone())]
        };
        assert_eq!(d.variables, city);
    }
    assert_eq!(
        rows[0][4],
        ok(&[
            "link",
            "telegram",
            "mybot",
            "--email",
            "ann@example.com",
            "--var",
            "c=Moscow"
        ])
    );
}

#[test]
fn links_raw_rows_that_do_not_fit_get_their_error() {
    let input = "code\nok_1\na.b\n\nok_2\n";
    let mut child = botlink()
        .args([
            "links",
            "--csv",
            "-",
            "--out",
            "-",
            "--channel",
            "telegram",
            "--bot",
            "mybot",
            "--param-col",
            "code",
            "--sign-key",
            KEY,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("3 rows: 2 links, 1 error, in "),
        "{}",
        text(&out.stderr)
    );
    let (header, rows) = read_csv(&out.stdout);
    assert_eq!(header, ["code", "url", "param", "error"]);
    // The empty line is not a row for the csv reader; a.b is.
    assert_eq!(rows.len(), 3);
    assert!(rows[1][3].contains("'.'"), "{:?}", rows[1]);
    for i in [0, 2] {
        let param = parse_link(&rows[i][1]).unwrap().param.unwrap();
        let d = botlink_core::decode(&param, Some(KEY.as_bytes()), None).unwrap();
        assert_eq!(
            (d.verified, d.inner.as_str()),
            (Some(true), rows[i][0].as_str())
        );
    }
}

#[test]
fn links_fields_and_empty_cells() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "name,size,color\nann,L,red\nbob,,\n,M,blue\n").unwrap();
    let out = run(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        "-",
        "--channel",
        "messenger",
        "--bot",
        "PAGE-NAME",
        "--entry",
        "giveaway",
        "--value-col",
        "name",
        "--field-col",
        "738=size",
        "--field-col",
        "514=color",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, rows) = read_csv(&out.stdout);
    assert_eq!(
        rows[0][3],
        "https://m.me/PAGE-NAME?ref=giveaway--ann--738--L--514--red"
    );
    assert_eq!(rows[1][3], "https://m.me/PAGE-NAME?ref=giveaway--bob");
    assert_eq!(rows[2][3], "");
    assert!(rows[2][5].contains("empty"), "{:?}", rows[2]);
}

#[test]
fn links_header_and_option_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, CUSTOMERS).unwrap();
    let out = dir.path().join("out.csv");
    let base = |extra: &[&str]| {
        let mut a = vec![
            "links",
            "--csv",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--channel",
            "telegram",
            "--bot",
            "mybot",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let call = |extra: &[&str]| {
        let args = base(extra);
        fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = call(&["--email-col", "mail"]);
    assert!(
        err.contains("\"mail\"") && err.contains("id, email, phone, city"),
        "{err}"
    );
    let err = call(&["--var-col", "c=town"]);
    assert!(
        err.contains("\"town\"") && err.contains("--var-col"),
        "{err}"
    );
    let err = call(&["--param-col", "id", "--email-col", "email"]);
    assert!(
        err.contains("--param-col") && err.contains("--email-col"),
        "{err}"
    );
    let err = call(&[]);
    assert!(err.contains("--param-col"), "{err}");
    let err = call(&["--value-col", "id"]);
    assert!(err.contains("--entry"), "{err}");
    let err = fails(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--channel",
        "telegram",
        "--bot",
        "9bot",
        "--param-col",
        "id",
    ]);
    assert!(err.contains("4-32"), "{err}");
    assert!(!out.exists(), "nothing written when the options are wrong");
    let err = fails(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        input.to_str().unwrap(),
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--param-col",
        "id",
    ]);
    assert!(err.contains("input file"), "{err}");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), CUSTOMERS);

    let missing = dir.path().join("missing.csv");
    let o = run(&[
        "links",
        "--csv",
        missing.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--param-col",
        "id",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a missing input file is an I/O failure"
    );
    let unwritable = dir.path().join("no/such/dir/out.csv");
    let o = run(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        unwritable.to_str().unwrap(),
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--param-col",
        "id",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).starts_with("error: creating "),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn links_all_rows_failing_still_exits_0_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    std::fs::write(&input, "code\na.b\nc d\n").unwrap();
    let out = run(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        "-",
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--param-col",
        "code",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let summary = text(&out.stderr);
    assert!(
        summary.starts_with("2 rows: 0 links, 2 errors"),
        "{summary}"
    );
    assert!(summary.contains("every row failed"), "{summary}");
}

#[test]
fn links_reads_a_spreadsheet_csv_with_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("excel.csv");
    std::fs::write(&input, "\u{feff}id,name\r\ncustomer_1,Ann\r\n").unwrap();
    let out = run(&[
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        "-",
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--param-col",
        "id",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let (_, rows) = read_csv(&out.stdout);
    assert_eq!(rows[0][2], "https://t.me/mybot?start=customer_1");
}

#[test]
fn short_signing_keys_are_refused() {
    let err = fails(&[
        "link",
        "telegram",
        "mybot",
        "--param",
        "customer_12345",
        "--sign-key",
        "secret",
    ]);
    assert!(
        err.contains("6 bytes") && err.contains("at least 16"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Values that start with `-`, empty QR codes, unclosed CSV quotes, padded parameters

#[test]
fn option_values_may_start_with_a_hyphen() {
    // A Telegram chat id, as a raw parameter.
    assert_eq!(
        ok(&["link", "telegram", "mybot", "--param", "-100"]),
        "https://t.me/mybot?start=-100"
    );
    let url = ok(&["link", "telegram", "mybot", "--external-id", "-77"]);
    let d = decoded(&[&url, "--json"]);
    assert_eq!(d["external_id"], "-77", "{d}");
    let url = ok(&[
        "link", "telegram", "mybot", "--phone", "-1", "--email", "-a@b.c",
    ]);
    let d = decoded(&[&url, "--json"]);
    assert_eq!(
        (d["phone"].as_str(), d["email"].as_str()),
        (Some("-1"), Some("-a@b.c"))
    );
    let url = ok(&["link", "telegram", "mybot", "--encode", "-5 degrees"]);
    assert_eq!(decoded(&[&url, "--json"])["text"], "-5 degrees");
    // The value reaches the fields rule, which says why it cannot be carried (not clap, which
    // took it for an option).
    let err = fails(&["link", "messenger", "shop", "--entry", "7", "--value", "-5"]);
    assert!(err.contains("fields rule"), "{err}");
    assert_eq!(
        ok(&["link", "viber", "mybot", "--param", "x1", "--text", "-hi"]),
        "viber://pa?chatURI=mybot&context=x1&text=-hi"
    );
}

#[test]
fn a_qr_code_of_nothing_is_refused() {
    for empty in ["", "  "] {
        let err = fails(&["qr", empty]);
        assert!(
            err.contains("empty") && err.contains("botlink qr https://"),
            "{err}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("qr.png");
    fails(&["qr", "", "--png", png.to_str().unwrap()]);
    assert!(!png.exists(), "no image of nothing");
}

#[test]
fn an_unclosed_quote_in_the_csv_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let output = dir.path().join("out.csv");
    // Row 2's cell opens a quote that nothing closes: the csv crate would read rows 2 and 3 as
    // one cell.
    std::fs::write(
        &input,
        "id,email\n1,a@example.com\n2,\"b@example.com\n3,c@example.com\n",
    )
    .unwrap();
    let args = [
        "links",
        "--csv",
        input.to_str().unwrap(),
        "--out",
        output.to_str().unwrap(),
        "--channel",
        "telegram",
        "--bot",
        "mybot",
        "--email-col",
        "email",
    ];
    let err = fails(&args);
    assert!(
        err.contains("in.csv") && err.contains("line 3") && err.contains("never closed"),
        "{err}"
    );
    assert!(!output.exists(), "no half-written output: {err}");
    // From stdin too, in the header.
    let mut child = botlink()
        .args([
            "links",
            "--csv",
            "-",
            "--out",
            "-",
            "--channel",
            "telegram",
            "--bot",
            "mybot",
        ])
        .args(["--email-col", "email"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"id,\"email\n1,a@example.com\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("line 1"),
        "{}",
        text(&out.stderr)
    );
    // Quotes that close, doubled quotes inside them, a quote inside an unquoted cell, CRLF:
    // read as before.
    std::fs::write(
        &input,
        "id,email\r\n1,\"a\"\"b@example.com\"\r\n2,c\"d@example.com\r\n\"3\",\"e@example.com\"",
    )
    .unwrap();
    let out = run(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).starts_with("3 rows: 3 links, 0 errors, in "),
        "{}",
        text(&out.stderr)
    );
    let (_, rows) = read_csv(&std::fs::read(&output).unwrap());
    let emails: Vec<_> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        emails,
        ["a\"b@example.com", "c\"d@example.com", "e@example.com"]
    );
}

#[test]
fn one_row_one_link_one_error_in_the_singular() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let links = || {
        run(&[
            "links",
            "--csv",
            input.to_str().unwrap(),
            "--out",
            dir.path().join("out.csv").to_str().unwrap(),
            "--channel",
            "telegram",
            "--bot",
            "mybot",
            "--param-col",
            "id",
        ])
    };
    std::fs::write(&input, "id\ncustomer.1\n").unwrap();
    let out = links();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = text(&out.stderr);
    assert!(
        summary.starts_with("1 row: 0 links, 1 error, in "),
        "{summary}"
    );
    std::fs::write(&input, "id\ncustomer_1\n").unwrap();
    let out = links();
    let summary = text(&out.stderr);
    assert!(
        summary.starts_with("1 row: 1 link, 0 errors, in "),
        "{summary}"
    );
}

/// Links made with a padding Base64 encoder carry `=`, which Telegram does not take: they are
/// read, with a note that the link does not work as given; building one stays refused.
#[test]
fn a_padded_parameter_is_read_with_a_note() {
    let url = "https://telegram.me/shopbot?start=eyJlSWQiOiJjcm0tNzcifQ==";
    let human = ok(&["decode", url]);
    assert!(human.contains("crm-77"), "{human}");
    let note = human
        .lines()
        .find(|l| l.starts_with("note:"))
        .unwrap_or_else(|| panic!("a note: {human}"));
    assert!(
        note.contains("does not work") && note.contains("eyJlSWQiOiJjcm0tNzcifQ and"),
        "{note}"
    );
    let d = decoded(&[url, "--json"]);
    assert_eq!(d["external_id"], "crm-77");
    assert!(d["note"].as_str().unwrap().contains("'='"), "{d}");
    // A bare parameter checked against Telegram's rule: the same.
    let d = decoded(&["eyJlSWQiOiJjcm0tNzcifQ=", "--channel", "telegram", "--json"]);
    assert_eq!(d["external_id"], "crm-77");
    assert!(d["note"].is_string(), "{d}");
    // Without padding: no note.
    let d = decoded(&[
        "https://t.me/shopbot?start=eyJlSWQiOiJjcm0tNzcifQ",
        "--json",
    ]);
    assert!(d["note"].is_null(), "{d}");
    // Building stays strict.
    let err = fails(&[
        "link",
        "telegram",
        "shopbot",
        "--param",
        "eyJlSWQiOiJjcm0tNzcifQ==",
    ]);
    assert!(err.contains("'='"), "{err}");
    // Anything else outside the rule is still an error.
    let err = fails(&["decode", "https://t.me/shopbot?start=a.b="]);
    assert!(err.contains("'.'"), "{err}");
}
