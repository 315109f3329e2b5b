//! Per-operation cost of the core rules: building links (with each payload scheme), parsing
//! them, decoding parameters with auto-detection, and reading a Telegram start update.
//!
//! A baseline runs in the same process: `format!("https://t.me/{bot}?start={p}")`, which is
//! what a link builder with no validation at all costs. After criterion's own report, the
//! bench prints a Markdown table with ns/op, ops/s on one core and the ratio to that baseline,
//! read from criterion's estimates of this run (BENCHMARKS.md shows how to run it).
//!
//!   cargo bench -p botlink-core --bench core -- --warm-up-time 1 --measurement-time 3

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use botlink_core::arrival::telegram_update;
use botlink_core::payload::{encode_entry, encode_fields, encode_json, encode_stored, sign};
use botlink_core::{
    Channel, Fields, JsonPayload, LinkSpec, Scheme, build_link, decode, parse_link,
};
use criterion::{Criterion, Throughput};

const BOT: &str = "mybot";
const RAW: &str = "customer_12345";
const KEY: &[u8] = b"0123456789abcdef-bench-key";
const TELEGRAM_START: &[u8] =
    include_bytes!("../tests/fixtures/start-payloads/telegram-start.json");

/// `(group, id, what it measures)` of every benchmark, in table order; the first is the baseline.
const TABLE: &[(&str, &str, &str)] = &[
    (
        "baseline",
        "format_tme",
        "baseline: `format!(\"https://t.me/{bot}?start={p}\")`, no validation",
    ),
    (
        "build",
        "telegram_raw",
        "build Telegram link, raw `customer_12345`",
    ),
    (
        "build",
        "telegram_json",
        "encode json (e-mail) + build Telegram link",
    ),
    (
        "build",
        "telegram_entry",
        "encode entry `n__3` + build Telegram link",
    ),
    (
        "build",
        "telegram_fields",
        "encode fields (entry, value, 1 pair) + build Telegram link",
    ),
    (
        "build",
        "telegram_signed",
        "sign raw (HMAC-SHA256) + build Telegram link",
    ),
    (
        "build",
        "telegram_stored",
        "encode stored `l_<code>_<click>` + build Telegram link",
    ),
    (
        "build",
        "whatsapp_raw",
        "build WhatsApp link (percent-encoded text)",
    ),
    ("parse", "telegram_link", "`parse_link` of a Telegram link"),
    ("parse", "whatsapp_link", "`parse_link` of a WhatsApp link"),
    ("decode", "raw", "`decode` auto-detect: raw"),
    ("decode", "json", "`decode` auto-detect: json"),
    ("decode", "entry", "`decode` auto-detect: entry"),
    ("decode", "fields", "`decode` auto-detect: fields"),
    ("decode", "stored", "`decode` auto-detect: stored"),
    (
        "decode",
        "signed_verified",
        "`decode` auto-detect: signed json, verified with the key",
    ),
    (
        "arrival",
        "telegram_update",
        "`telegram_update` on telegram-start.json",
    ),
];

fn email() -> JsonPayload {
    JsonPayload {
        email: Some("email@gmail.com".into()),
        ..JsonPayload::default()
    }
}

fn giveaway() -> Fields {
    Fields {
        entry: "giveaway".into(),
        value: "value1".into(),
        fields: vec![("738".into(), "value2".into())],
    }
}

fn telegram(param: &str) -> String {
    build_link(&LinkSpec::new(Channel::Telegram, BOT, Some(param)))
        .unwrap()
        .url
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(1));
    g.bench_function("format_tme", |b| {
        b.iter(|| format!("https://t.me/{}?start={}", black_box(BOT), black_box(RAW)))
    });
    g.finish();

    let mut g = c.benchmark_group("build");
    g.throughput(Throughput::Elements(1));
    g.bench_function("telegram_raw", |b| {
        b.iter(|| {
            build_link(&LinkSpec::new(
                Channel::Telegram,
                black_box(BOT),
                Some(black_box(RAW)),
            ))
            .unwrap()
        })
    });
    let payload = email();
    g.bench_function("telegram_json", |b| {
        b.iter(|| {
            let p = encode_json(black_box(&payload)).unwrap();
            build_link(&LinkSpec::new(Channel::Telegram, BOT, Some(&p))).unwrap()
        })
    });
    g.bench_function("telegram_entry", |b| {
        b.iter(|| {
            let p = encode_entry(black_box("3")).unwrap();
            build_link(&LinkSpec::new(Channel::Telegram, BOT, Some(&p))).unwrap()
        })
    });
    let fields = giveaway();
    g.bench_function("telegram_fields", |b| {
        b.iter(|| {
            let p = encode_fields(black_box(&fields)).unwrap();
            build_link(&LinkSpec::new(Channel::Telegram, BOT, Some(&p))).unwrap()
        })
    });
    g.bench_function("telegram_signed", |b| {
        b.iter(|| {
            let p = sign(black_box(KEY), black_box(RAW)).unwrap();
            build_link(&LinkSpec::new(Channel::Telegram, BOT, Some(&p))).unwrap()
        })
    });
    g.bench_function("telegram_stored", |b| {
        b.iter(|| {
            let p = encode_stored(black_box("Ab3dE9xQ"), Some(black_box("Zk81mPq0Lw2c"))).unwrap();
            build_link(&LinkSpec::new(Channel::Telegram, BOT, Some(&p))).unwrap()
        })
    });
    g.bench_function("whatsapp_raw", |b| {
        b.iter(|| {
            build_link(&LinkSpec::new(
                Channel::Whatsapp,
                black_box("+1 555 000 1111"),
                Some(black_box("summer_sale")),
            ))
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("parse");
    g.throughput(Throughput::Elements(1));
    let tg = telegram(RAW);
    g.bench_function("telegram_link", |b| {
        b.iter(|| parse_link(black_box(&tg)).unwrap())
    });
    let wa = build_link(&LinkSpec::new(
        Channel::Whatsapp,
        "15550001111",
        Some("summer_sale"),
    ))
    .unwrap()
    .url;
    g.bench_function("whatsapp_link", |b| {
        b.iter(|| parse_link(black_box(&wa)).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    let json = encode_json(&payload).unwrap();
    let signed = sign(KEY, &json).unwrap();
    let params = [
        ("raw", RAW.to_string(), None, Scheme::Raw),
        ("json", json, None, Scheme::Json),
        ("entry", encode_entry("3").unwrap(), None, Scheme::Entry),
        (
            "fields",
            encode_fields(&fields).unwrap(),
            None,
            Scheme::Fields,
        ),
        (
            "stored",
            encode_stored("Ab3dE9xQ", Some("Zk81mPq0Lw2c")).unwrap(),
            None,
            Scheme::Stored,
        ),
        ("signed_verified", signed, Some(KEY), Scheme::Json),
    ];
    for (id, param, key, scheme) in &params {
        // Check once, outside the timing, that each parameter decodes as the scheme it names.
        let d = decode(param, *key, None).unwrap();
        assert_eq!(d.inner_scheme.or(d.scheme), Some(*scheme), "{param}");
        g.bench_function(*id, |b| {
            b.iter(|| decode(black_box(param), *key, None).unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("arrival");
    g.throughput(Throughput::Elements(1));
    g.bench_function("telegram_update", |b| {
        b.iter(|| telegram_update(black_box(TELEGRAM_START), Some("mybot")).unwrap())
    });
    g.finish();
}

/// Where criterion writes its estimates: `$CRITERION_HOME`, or `criterion/` in the target
/// directory that holds this executable (`<target>/release/deps/core-<hash>`).
fn criterion_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return Some(home.into());
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    let exe = std::env::current_exe().ok()?;
    Some(exe.ancestors().nth(3)?.join("criterion"))
}

/// Criterion's point estimate of ns per iteration for one benchmark, if this run wrote it:
/// the slope of the linear regression where there is one (what criterion prints), else the mean.
fn estimate(dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(id).join("new").join("estimates.json");
    let written = fs::metadata(&path).and_then(|m| m.modified()).ok()?;
    if written < since {
        return None; // left over from an earlier run, e.g. one filtered to other benchmarks
    }
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&path).ok()?).ok()?;
    let point = |k: &str| v.get(k)?.get("point_estimate")?.as_f64();
    point("slope").or_else(|| point("mean"))
}

fn print_table(since: SystemTime) {
    let Some(dir) = criterion_dir() else {
        return;
    };
    let rows: Vec<(&str, f64)> = TABLE
        .iter()
        .filter_map(|(group, id, what)| Some((*what, estimate(&dir, group, id, since)?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let baseline = estimate(&dir, TABLE[0].0, TABLE[0].1, since);
    println!("\n| operation | ns/op | ops/s (one core) | × baseline |");
    println!("|---|---:|---:|---:|");
    for (what, ns) in rows {
        let ratio = baseline.map_or("–".to_string(), |b| format!("{:.1}", ns / b));
        println!(
            "| {what} | {ns:.0} | {} | {ratio} |",
            group_thousands(1e9 / ns)
        );
    }
}

fn group_thousands(x: f64) -> String {
    let digits = format!("{:.0}", x);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn main() {
    let since = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    print_table(since);
}
