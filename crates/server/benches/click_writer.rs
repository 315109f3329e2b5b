//! CPU per click of the SQLite click writer, alone: batches of clicks spread evenly over many
//! links (as `bench/redirect` sends them), written through `ClickStore::insert_clicks` into a
//! file database, with the process's CPU time measured around each round.
//!
//! The whole-server benchmark (`bench/redirect`) swings by more than a writer change is worth
//! on a shared machine; this one has no network, no load generator and no request threads, so
//! two builds of the writer can be compared by their figures here.
//!
//!   cargo bench -p botlink-server --bench click_writer
//!
//! Knobs (environment): LINKS=10000 BATCH=500 BATCHES=400 (per round) ROUNDS=5
//! VISITORS=1 (distinct visitors, taken round-robin; 1 is the redirect benchmark's one
//! visitor, 0 a new visitor on every click) RATE=33500 (clicks per second handed to the
//! writer, as a server answering that many redirects would; 0: as fast as it writes them)
//! FOLD_MS=10000 (how long counts wait unread before the writer adds them: the server's
//! default). Clicks are timed (and their ids made) as if they came at the rate. Each round
//! ends with a read of the statistics, which adds what waits, within the round's CPU time.
//! The rate matters: a fold adds to each counts row once, so the more clicks between folds,
//! the fewer additions per click; and the clicks of a millisecond share a row of the log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use botlink_server::store::{
    self, BotId, BotStore, ClickKind, ClickStore, ConnectOptions, LinkId, LinkStore, NewBot,
    NewClick, NewLink, StatsRange, StatsScope, WorkspaceStore,
};
use botlink_server::util::{click_id, now_ms};
use botlink_testkit::telegram_link;

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU time of the whole process (user and system, every thread, exited ones too), from
/// `/proc/self/stat` in clock ticks (10 ms: a round takes seconds).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc (Linux)");
    // Fields 14 and 15 (utime, stime), counted after the ")" that ends the command name.
    let after = &stat[stat.rfind(')').expect("a stat line") + 2..];
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse::<u64>().expect("a number"))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// The process's peak resident memory (VmHWM), in KiB.
fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc (Linux)");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

fn main() {
    let links = knob("LINKS", 10_000);
    let batch = knob("BATCH", 500);
    let batches = knob("BATCHES", 400);
    let rounds = knob("ROUNDS", 5);
    let visitors = knob("VISITORS", 1);
    let rate = knob("RATE", 33_500);
    let default_fold = ConnectOptions::default().click_fold_every.as_millis() as u64;
    let fold_every = Duration::from_millis(knob("FOLD_MS", default_fold));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(run(
        links, batch, batches, rounds, visitors, rate, fold_every,
    ));
}

async fn run(
    links: usize,
    batch: usize,
    batches: usize,
    rounds: usize,
    visitors: usize,
    rate: usize,
    fold_every: Duration,
) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite:{}", dir.path().join("bench.db").display());
    let options = ConnectOptions {
        click_fold_every: fold_every,
        ..ConnectOptions::default()
    };
    let store = store::connect_with(&url, &options)
        .await
        .expect("open SQLite");
    store.migrate().await.expect("migrate");
    let now = now_ms();
    let ws = store.ensure_workspace("bench", now).await.unwrap().id;
    let bot = store
        .create_bot(
            &ws,
            NewBot {
                id: BotId::new(),
                name: "Shop".into(),
                channels: vec![],
            },
            now,
        )
        .await
        .unwrap();
    let mut ids: Vec<LinkId> = Vec::with_capacity(links);
    for chunk in (0..links).collect::<Vec<_>>().chunks(1000) {
        let new: Vec<NewLink> = chunk
            .iter()
            .map(|i| telegram_link(&bot.id, &format!("bench{i:06}")))
            .collect();
        ids.extend(
            store
                .create_links(&ws, new, now)
                .await
                .unwrap()
                .into_iter()
                .map(|l| l.id),
        );
    }
    let store: Arc<dyn ClickStore> = Arc::new(store);
    // A read of the bot's statistics: it adds the counts that wait first.
    let read = || store.stats(&ws, StatsScope::Bot(bot.id.clone()), StatsRange::ALL);

    // Clicks carry the times they would have at the rate (33,500 a second when unpaced), from
    // the time the bench starts: click ids begin with their time, and how many clicks share a
    // millisecond shapes the click log's rows.
    let spacing = 1000.0 / if rate > 0 { rate } else { 33_500 } as f64;
    let start = now_ms();
    let mut next = 0usize;
    let mut make = |n: usize| -> Arc<[NewClick]> {
        (0..n)
            .map(|_| {
                let k = next;
                next += 1;
                let at = start + (k as f64 * spacing) as i64;
                let v = if visitors == 0 { k } else { k % visitors };
                NewClick {
                    id: click_id(at).as_str().into(),
                    link_id: (&ids[k % ids.len()]).into(),
                    channel: Some(botlink_core::Channel::Telegram),
                    kind: ClickKind::Click,
                    at,
                    visitor: Some((v as u128).to_le_bytes()),
                }
            })
            .collect()
    };

    // Warm-up: every link's counts row of the day exists (once the warm-up's deltas are
    // folded), the caches are full.
    for _ in 0..(links / batch + 1) * 2 {
        store.insert_clicks(make(batch)).await.unwrap();
    }
    read().await.unwrap();
    let mut per_click = Vec::with_capacity(rounds);
    for r in 1..=rounds {
        let work: Vec<_> = (0..batches).map(|_| make(batch)).collect();
        let (cpu0, wall0) = (process_cpu(), Instant::now());
        let every = (rate > 0).then(|| Duration::from_secs_f64(batch as f64 / rate as f64));
        for (i, b) in work.into_iter().enumerate() {
            if let Some(every) = every {
                tokio::time::sleep_until((wall0 + every * i as u32).into()).await;
            }
            store.insert_clicks(b).await.unwrap();
        }
        // The round's deltas are folded within the round.
        read().await.unwrap();
        let (cpu, wall) = (process_cpu() - cpu0, wall0.elapsed());
        let n = (batches * batch) as f64;
        let us = cpu.as_secs_f64() * 1e6 / n;
        println!(
            "round {r}: {:.2} µs CPU per click, {:.2} µs wall ({} clicks)",
            us,
            wall.as_secs_f64() * 1e6 / n,
            batches * batch
        );
        per_click.push(us);
    }
    per_click.sort_by(f64::total_cmp);
    println!(
        "median {:.2} µs CPU per click ({links} links, batches of {batch}, visitors {visitors}, \
         {rate} clicks/s, folded every {} ms); peak RSS {} MB",
        per_click[per_click.len() / 2],
        fold_every.as_millis(),
        peak_rss_kb() / 1024
    );
}
