//! The load generator of the redirect benchmark (`bench/redirect`): HTTP/1.1 GETs over
//! keep-alive connections, on one thread, in one of two modes.
//!
//! * Closed loop (no `--rate`): every connection sends its next request as soon as the answer
//!   to the last one arrives. This finds the peak rate; latency is from send to answer.
//! * Open loop (`--rate R`): requests are scheduled at a fixed total rate R, spread evenly over
//!   the connections (each sends every `connections / R` seconds), whatever the server does.
//!   A request that could not go out on time because its connection was still waiting for the
//!   previous answer has its latency measured from its *scheduled* send time, so a stalled
//!   server shows up in the percentiles instead of slowing the generator down (no coordinated
//!   omission). When the connection was idle, latency is from the actual send, and how late
//!   the generator's own timer fired is reported separately (`lag_*`). The schedule is kept
//!   to the microsecond (see [`pace`]): tokio's timers round up to the next millisecond,
//!   which sent each millisecond's requests in one burst (41 at once at 41,000 req/s), so
//!   that even a server answering in 10 µs showed a p50 of 0.3 ms.
//!
//! An answer's latency ends when it arrived, as the kernel stamped it (`SO_TIMESTAMPNS`, on
//! Linux), not when this thread got round to reading it: the generator's own delays (another
//! process on its CPU, its work on other connections) are not the server's. How long answers
//! waited to be read is reported as `read_lag_*`.
//!
//! Paths come from `--paths FILE` (one per line, taken round-robin, so every path is asked
//! for equally) or `--path P`. Every request comes from one visitor (one user agent), unless
//! `--visitors N`: then request k carries visitor k mod N in its user agent, so that with N at
//! least the number of requests every click is a new visitor's. Every answer's status is
//! counted; `non_302` and `errors` (I/O failures, timeouts, answers still missing at the end)
//! should be zero. `--timeline FILE` writes the latencies by 100 ms of the run.
//!
//! Output: `key=value` lines on stdout (see `Report::print`). Bounded: sending stops after
//! `--duration` seconds and answers are awaited at most `--timeout-ms` longer.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::time::timeout_at;

/// A phone browser's user agent: link-preview crawlers are served differently.
const USER_AGENT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) \
    AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";

struct Args {
    addr: SocketAddr,
    paths: Vec<String>,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    timeout: Duration,
    visitors: u64,
    timeline: Option<String>,
}

fn usage() -> &'static str {
    "usage: loadgen --addr HOST:PORT (--paths FILE | --path PATH) [--connections N] \
     [--duration SECS] [--rate REQ_PER_SEC] [--timeout-ms MS] [--visitors N] [--timeline FILE]"
}

fn parse_args() -> Result<Args> {
    let mut addr = None;
    let mut paths = Vec::new();
    let mut connections = 64;
    let mut duration = 10.0;
    let mut rate = None;
    let mut timeout_ms = 2000;
    let mut visitors = 1u64;
    let mut timeline = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?.parse().context("--addr")?),
            "--path" => paths.push(value()?),
            "--paths" => {
                let file = value()?;
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
                paths.extend(
                    text.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(String::from),
                );
            }
            "--connections" => connections = value()?.parse().context("--connections")?,
            "--duration" => duration = value()?.parse().context("--duration")?,
            "--rate" => rate = Some(value()?.parse::<f64>().context("--rate")?),
            "--timeout-ms" => timeout_ms = value()?.parse().context("--timeout-ms")?,
            "--visitors" => visitors = value()?.parse().context("--visitors")?,
            "--timeline" => timeline = Some(value()?),
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{}", usage()),
        }
    }
    let Some(addr) = addr else {
        bail!("--addr is required\n{}", usage())
    };
    if paths.is_empty() {
        bail!("no paths: give --paths FILE or --path PATH\n{}", usage());
    }
    if connections == 0 || !(duration > 0.0 && duration <= 3600.0) {
        bail!("--connections must be at least 1 and --duration in (0, 3600]");
    }
    if rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    Ok(Args {
        addr,
        paths,
        connections,
        duration: Duration::from_secs_f64(duration),
        rate,
        timeout: Duration::from_millis(timeout_ms),
        visitors: visitors.max(1),
        timeline,
    })
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    responses: u64,
    status_302: u64,
    non_302: u64,
    /// Non-302 statuses seen, for the report (status, count).
    other: Vec<(u16, u64)>,
    errors: u64,
    connects: u64,
    latencies_us: Vec<u32>,
    /// With `--timeline`: (ms from the start to the latency's start, latency µs) per answer.
    timed: Vec<(u32, u32)>,
    lags_us: Vec<u32>,
    /// How long each answer waited in the socket before this thread read it (Linux).
    read_lags_us: Vec<u32>,
    last_answer: Option<Instant>,
}

impl Tally {
    fn status(&mut self, status: u16) {
        self.responses += 1;
        if status == 302 {
            self.status_302 += 1;
        } else {
            self.non_302 += 1;
            match self.other.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => self.other.push((status, 1)),
            }
        }
    }
}

struct Shared {
    addr: SocketAddr,
    host: String,
    paths: Vec<String>,
    /// Whole requests, ready to write (one visitor).
    requests: Vec<Vec<u8>>,
    visitors: u64,
    next: AtomicUsize,
    /// Whether answers are kept with their times, for `--timeline`.
    timeline: bool,
    /// Open loop: answers' arrival times come from the kernel (see [`fill`]).
    stamped: bool,
}

impl Shared {
    fn next_request(&self) -> Cow<'_, [u8]> {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let i = k % self.requests.len();
        if self.visitors == 1 {
            return Cow::Borrowed(&self.requests[i]);
        }
        let visitor = k as u64 % self.visitors;
        Cow::Owned(request(
            &self.paths[i],
            &self.host,
            &format!("{USER_AGENT} v/{visitor}"),
        ))
    }
}

fn request(path: &str, host: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\n\r\n"
    )
    .into_bytes()
}

/// One response read.
struct Answer {
    status: u16,
    /// The server will close the connection.
    close: bool,
    /// When its last bytes arrived: the kernel's receive time where there is one, else when
    /// they were read.
    arrived: Instant,
}

/// Reads one response off `stream` (status line, headers, a `Content-Length` or chunked
/// body). `buf` keeps any bytes past it.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>, stamped: bool) -> Result<Answer> {
    let mut arrived = Instant::now();
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        arrived = fill(stream, buf, stamped).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).context("response head is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut length = 0usize;
    let mut chunked = false;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().context("bad content-length")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    buf.drain(..head_end);
    if chunked {
        // Enough for the small pages botlink answers with: read up to the last chunk.
        let end = loop {
            if let Some(i) = find(buf, b"0\r\n\r\n") {
                break i + 5;
            }
            arrived = fill(stream, buf, stamped).await?;
        };
        buf.drain(..end);
    } else {
        while buf.len() < length {
            arrived = fill(stream, buf, stamped).await?;
        }
        buf.drain(..length);
    }
    Ok(Answer {
        status,
        close,
        arrived,
    })
}

/// Reads what has arrived on `stream` into `buf`, and returns when it arrived. When `stamped`
/// (the open loop, on Linux), that is the kernel's receive time of those bytes
/// (`SO_TIMESTAMPNS`, see [`stamp_arrivals`]), so that the time this thread spent off its CPU
/// (another process on it, or its own work on other connections) is not counted as the
/// server's. Otherwise it is now: the closed loop's latency is queueing by design, and a plain
/// read keeps the generator's cost per request, and so the peak it can drive, as it was.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, stamped: bool) -> Result<Instant> {
    let mut chunk = [0u8; 4096];
    #[cfg(target_os = "linux")]
    let (n, arrived) = if !stamped {
        (stream.read(&mut chunk).await?, None)
    } else {
        loop {
            use std::os::fd::AsRawFd as _;
            stream.readable().await?;
            let fd = stream.as_raw_fd();
            match stream.try_io(tokio::io::Interest::READABLE, || {
                recv_stamped(fd, &mut chunk)
            }) {
                Ok(read) => break read,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e.into()),
            }
        }
    };
    #[cfg(not(target_os = "linux"))]
    let (n, arrived) = {
        let _ = stamped;
        (stream.read(&mut chunk).await?, None)
    };
    if n == 0 {
        bail!("connection closed by the server");
    }
    buf.extend_from_slice(&chunk[..n]);
    let now = Instant::now();
    // The stamp is wall-clock time; how long ago it was, on the monotonic clock.
    let ago = arrived.and_then(|at| std::time::SystemTime::now().duration_since(at).ok());
    Ok(ago.and_then(|ago| now.checked_sub(ago)).unwrap_or(now))
}

/// Asks the kernel to stamp every received segment with its arrival time.
#[cfg(target_os = "linux")]
fn stamp_arrivals(stream: &TcpStream) -> std::io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
    Ok(setsockopt(stream, ReceiveTimestampns, &true)?)
}

#[cfg(not(target_os = "linux"))]
fn stamp_arrivals(_: &TcpStream) -> std::io::Result<()> {
    Ok(())
}

/// One `recvmsg`: the bytes read, and the arrival time of the last of them, if stamped.
#[cfg(target_os = "linux")]
fn recv_stamped(
    fd: std::os::fd::RawFd,
    chunk: &mut [u8],
) -> std::io::Result<(usize, Option<std::time::SystemTime>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut control = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [std::io::IoSliceMut::new(chunk)];
    let msg = recvmsg::<()>(fd, &mut iov, Some(&mut control), MsgFlags::empty())?;
    let stamp = msg.cmsgs()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(ts) => Some(
            std::time::UNIX_EPOCH
                + Duration::new(ts.tv_sec().try_into().ok()?, ts.tv_nsec().try_into().ok()?),
        ),
        _ => None,
    });
    Ok((msg.bytes, stamp))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

/// One connection's loop. In open-loop mode `schedule` hands it each request's send time when
/// that time has come (see [`pace`]); it ends when the schedule does.
async fn connection(
    shared: Arc<Shared>,
    start: Instant,
    end: Instant,
    give_up: Instant,
    mut schedule: Option<mpsc::UnboundedReceiver<Instant>>,
) -> Tally {
    let mut t = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    let mut prev_done = start;
    loop {
        // When this request should go out, and from when its latency counts.
        let scheduled = match schedule.as_mut() {
            Some(rx) => match rx.recv().await {
                Some(s) => Some(s),
                None => break,
            },
            None => None,
        };
        let now = Instant::now();
        if now >= end {
            break;
        }
        let from = match scheduled {
            // The previous answer came after this request's turn: the server held it up.
            Some(s) if prev_done > s => s,
            Some(s) => {
                t.lags_us.push(micros(now - s));
                now
            }
            None => now,
        };
        if stream.is_none() {
            match timeout_at(give_up.into(), TcpStream::connect(shared.addr)).await {
                Ok(Ok(s)) => {
                    t.connects += 1;
                    if shared.stamped
                        && let Err(e) = stamp_arrivals(&s)
                    {
                        eprintln!(
                            "loadgen: no receive timestamps, latencies include its own delays: {e}"
                        );
                    }
                    stream = Some(s);
                }
                _ => {
                    t.errors += 1;
                    prev_done = Instant::now();
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected above");
        t.sent += 1;
        let answered = timeout_at(give_up.into(), async {
            s.write_all(&shared.next_request()).await?;
            read_response(s, &mut buf, shared.stamped).await
        })
        .await;
        let read_at = Instant::now();
        let done = match &answered {
            Ok(Ok(a)) => {
                t.read_lags_us.push(micros(read_at - a.arrived));
                a.arrived
            }
            _ => read_at,
        };
        prev_done = done;
        match answered {
            Ok(Ok(Answer { status, close, .. })) => {
                t.status(status);
                t.latencies_us.push(micros(done - from));
                if shared.timeline {
                    let at = from.saturating_duration_since(start).as_millis() as u32;
                    t.timed.push((at, micros(done - from)));
                }
                t.last_answer = Some(done);
                if close {
                    stream = None;
                    buf.clear();
                }
            }
            Ok(Err(_)) | Err(_) => {
                t.errors += 1;
                stream = None;
                buf.clear();
            }
        }
        if read_at >= give_up {
            break;
        }
    }
    t
}

/// The open loop's clock: connection `c` of `n` sends every `interval`, starting at
/// `start + interval * c / n`, so the requests of all connections are spread evenly. Each send
/// time is handed to its connection when it comes; a connection still waiting for its last
/// answer finds it queued and sends late, with its latency counted from this time. Returning
/// at `end` drops the senders, which ends the connections' loops.
///
/// Within a millisecond of a send time it yields to the runtime until the time comes instead
/// of sleeping (each yield also polls the sockets), so requests leave within microseconds of
/// their time: tokio's timers round up to the next millisecond, which sent each millisecond's
/// requests in one burst. So at any rate over about 1,000 req/s the generator's thread is
/// always busy, and its CPU share says nothing about its load.
async fn pace(
    start: Instant,
    end: Instant,
    interval: Duration,
    senders: Vec<UnboundedSender<Instant>>,
) {
    const SPIN: Duration = Duration::from_millis(1);
    let n = senders.len() as u32;
    for k in 0u32.. {
        for (c, tx) in (0u32..).zip(&senders) {
            let at = start + interval * k + interval * c / n;
            if at >= end {
                return;
            }
            loop {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                if left > SPIN * 2 {
                    tokio::time::sleep(left - SPIN).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
            // A connection that gave up (past `give_up`) has dropped its receiver.
            let _ = tx.send(at);
        }
    }
}

/// The p-th percentile (0-100) of sorted values, nearest rank.
fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time of this process in seconds (user + system, from /proc/self/stat).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // CLK_TCK is 100 on every Linux this runs on; run.sh uses getconf for the servers.
    Some(ticks / 100.0)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let host = args.addr.to_string();
    let requests = args
        .paths
        .iter()
        .map(|p| request(p, &host, USER_AGENT))
        .collect();
    let shared = Arc::new(Shared {
        addr: args.addr,
        host,
        paths: args.paths.clone(),
        requests,
        visitors: args.visitors,
        next: AtomicUsize::new(0),
        timeline: args.timeline.is_some(),
        stamped: args.rate.is_some(),
    });
    // One thread: pin it with taskset and it stays on its core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cpu_before = own_cpu_seconds();
    let (tallies, start) = rt.block_on(async {
        let start = Instant::now() + Duration::from_millis(20);
        let end = start + args.duration;
        let give_up = end + args.timeout;
        let interval = args
            .rate
            .map(|r| Duration::from_secs_f64(args.connections as f64 / r));
        let mut tasks = Vec::with_capacity(args.connections);
        let mut senders = Vec::with_capacity(args.connections);
        for _ in 0..args.connections {
            let schedule = interval.map(|_| {
                let (tx, rx) = mpsc::unbounded_channel();
                senders.push(tx);
                rx
            });
            tasks.push(tokio::spawn(connection(
                shared.clone(),
                start,
                end,
                give_up,
                schedule,
            )));
        }
        let pacer = interval.map(|iv| tokio::spawn(pace(start, end, iv, senders)));
        let mut tallies = Vec::with_capacity(tasks.len());
        for t in tasks {
            tallies.push(t.await.expect("connection task"));
        }
        if let Some(p) = pacer {
            p.await.expect("pacer task");
        }
        (tallies, start)
    });
    let cpu = match (cpu_before, own_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let report = Report::new(tallies, start, args.duration, args.rate, cpu);
    report.print();
    if let Some(file) = &args.timeline {
        std::fs::write(file, report.timeline()).with_context(|| format!("writing {file}"))?;
    }
    Ok(())
}

struct Report {
    total: Tally,
    /// When the run started, as wall-clock time (to line the timeline up with other traces).
    start_unix_ms: u128,
    elapsed: Duration,
    rate: Option<f64>,
    cpu: Option<f64>,
}

impl Report {
    fn new(
        tallies: Vec<Tally>,
        start: Instant,
        duration: Duration,
        rate: Option<f64>,
        cpu: Option<f64>,
    ) -> Report {
        let mut total = Tally::default();
        for t in tallies {
            total.sent += t.sent;
            total.responses += t.responses;
            total.status_302 += t.status_302;
            total.non_302 += t.non_302;
            total.errors += t.errors;
            total.connects += t.connects;
            for (s, n) in t.other {
                match total.other.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, m)) => *m += n,
                    None => total.other.push((s, n)),
                }
            }
            total.latencies_us.extend(t.latencies_us);
            total.lags_us.extend(t.lags_us);
            total.read_lags_us.extend(t.read_lags_us);
            total.timed.extend(t.timed);
            total.last_answer = total.last_answer.max(t.last_answer);
        }
        total.latencies_us.sort_unstable();
        total.lags_us.sort_unstable();
        total.read_lags_us.sort_unstable();
        // The run lasts until its last answer (at least the nominal duration).
        let elapsed = total
            .last_answer
            .map(|l| l.saturating_duration_since(start))
            .unwrap_or(duration)
            .max(duration);
        // `start` was an Instant; the wall clock now, less the time since then.
        let start_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(start.elapsed())
            .as_millis();
        Report {
            total,
            start_unix_ms,
            elapsed,
            rate,
            cpu,
        }
    }

    /// `--timeline`: per 100 ms of the run (by when each request's latency began), the
    /// answers, their p50, p99 and max latency in µs; a line each, tab-separated, after a line
    /// with the run's start in Unix milliseconds.
    fn timeline(&self) -> String {
        let mut windows: std::collections::BTreeMap<u32, Vec<u32>> = Default::default();
        for &(at, us) in &self.total.timed {
            windows.entry(at / 100).or_default().push(us);
        }
        let mut out = format!(
            "# start_unix_ms={}\nms\tanswers\tp50_us\tp99_us\tmax_us\n",
            self.start_unix_ms
        );
        for (w, mut l) in windows {
            l.sort_unstable();
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                w * 100,
                l.len(),
                percentile(&l, 50.0),
                percentile(&l, 99.0),
                l.last().copied().unwrap_or(0)
            ));
        }
        out
    }

    fn print(&self) {
        let t = &self.total;
        let secs = self.elapsed.as_secs_f64();
        let l = &t.latencies_us;
        println!("mode={}", if self.rate.is_some() { "rate" } else { "peak" });
        println!("target_rate={:.0}", self.rate.unwrap_or(0.0));
        println!("elapsed_s={secs:.3}");
        println!("sent={}", t.sent);
        println!("responses={}", t.responses);
        println!("status_302={}", t.status_302);
        println!("non_302={}", t.non_302);
        let mut other = t.other.clone();
        other.sort_unstable();
        let other: Vec<String> = other.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        println!("non_302_statuses={}", other.join(","));
        println!("errors={}", t.errors);
        println!("connects={}", t.connects);
        println!("rps={:.0}", t.responses as f64 / secs);
        for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)] {
            println!("{name}_us={}", percentile(l, p));
        }
        println!("max_us={}", l.last().copied().unwrap_or(0));
        println!("lag_p99_us={}", percentile(&t.lags_us, 99.0));
        println!("lag_max_us={}", t.lags_us.last().copied().unwrap_or(0));
        println!("read_lag_p99_us={}", percentile(&t.read_lags_us, 99.0));
        println!(
            "read_lag_max_us={}",
            t.read_lags_us.last().copied().unwrap_or(0)
        );
        if let Some(cpu) = self.cpu {
            println!("loadgen_cpu_pct={:.0}", 100.0 * cpu / secs);
        }
    }
}
