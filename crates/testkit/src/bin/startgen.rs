//! The load generator of the Start benchmark (`bench/start`): Telegram updates in which a
//! person presses Start, posted to a webhook over HTTP/1.1 keep-alive connections, and, with
//! `--sink`, the other end of botlink's Start flow, so that a Start is counted when its
//! `send_me` delivery arrives.
//!
//! Every update is new: request k carries `update_id` and chat (and user) id `first_id + k`,
//! the text `/start <param>` with the params of `--params FILE` taken round-robin (stored-scheme
//! links made beforehand), and `X-Telegram-Bot-Api-Secret-Token: <secret>`, as Telegram posts
//! it (core.telegram.org/bots/api#setwebhook). Two modes, as `loadgen`'s:
//!
//! * Closed loop (no `--rate`): each connection posts its next update as soon as the answer to
//!   the last one arrives. This finds the peak; latency is from send to answer.
//! * Open loop (`--rate R`): updates leave on a fixed schedule, R a second spread evenly over
//!   the connections, whatever the server does; an update that could not leave on time (its
//!   connection still waiting) has its latency counted from its scheduled time (no
//!   coordinated omission), and answers' arrival times are the kernel's (`SO_TIMESTAMPNS`).
//!
//! `--sink ADDR` binds, before the first update, a lean HTTP server standing for both ends
//! botlink talks to: the CRM (`POST /hook`, the scenario's `send_me`: answered 200, its
//! Standard Webhooks signature not checked, so that the sink costs little) and the Telegram Bot
//! API (`POST /bot<token>/sendMessage`, the greeting: answered
//! `{"ok":true,"result":{"message_id":1}}`, no rate limit). Each arrival is stamped and
//! matched to its update by the `chat_id` in its body. After the last answer, the run waits
//! (at most `--drain-timeout` seconds) until every accepted update (a 200) has had its
//! delivery and its message, and reports deliveries per second from the first update sent to
//! the last delivery received (Starts per second, end to end) and each Start's lag from its
//! update to its delivery.
//!
//! Output: `key=value` lines on stdout (see `Report::print`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{self, UnboundedSender};
use tokio::time::timeout_at;

/// Telegram's header carrying the webhook's `secret_token`.
const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";

struct Args {
    addr: SocketAddr,
    path: String,
    secret: String,
    params: Vec<String>,
    connections: usize,
    duration: Duration,
    rate: Option<f64>,
    timeout: Duration,
    first_id: u64,
    sink: Option<SocketAddr>,
    drain_timeout: Duration,
}

fn usage() -> &'static str {
    "usage: startgen --addr HOST:PORT --path /webhooks/telegram/BOT_ID --secret S \
     --params FILE [--connections N] [--duration SECS] [--rate UPDATES_PER_SEC] \
     [--timeout-ms MS] [--first-id N] [--sink HOST:PORT] [--drain-timeout SECS]"
}

fn parse_args() -> Result<Args> {
    let mut addr = None;
    let mut path = None;
    let mut secret = String::new();
    let mut params = Vec::new();
    let mut connections = 40;
    let mut duration = 10.0;
    let mut rate = None;
    let mut timeout_ms = 5000;
    // Distinct from every earlier run's ids without being told: microseconds since 1970
    // (under 2^53, so a JSON reader that takes numbers as doubles reads them exactly).
    let mut first_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_micros() as u64);
    let mut sink = None;
    let mut drain_timeout = 120.0;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?.parse().context("--addr")?),
            "--path" => path = Some(value()?),
            "--secret" => secret = value()?,
            "--params" => {
                let file = value()?;
                let text =
                    std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
                params.extend(
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
            "--first-id" => first_id = value()?.parse().context("--first-id")?,
            "--sink" => sink = Some(value()?.parse().context("--sink")?),
            "--drain-timeout" => drain_timeout = value()?.parse().context("--drain-timeout")?,
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}\n{}", usage()),
        }
    }
    let (Some(addr), Some(path)) = (addr, path) else {
        bail!("--addr and --path are required\n{}", usage())
    };
    if params.is_empty() {
        bail!("no Start parameters: give --params FILE\n{}", usage());
    }
    if connections == 0 || !(duration > 0.0 && duration <= 3600.0) {
        bail!("--connections must be at least 1 and --duration in (0, 3600]");
    }
    if rate.is_some_and(|r: f64| r.is_nan() || r <= 0.0) {
        bail!("--rate must be positive");
    }
    if !(0.0..=3600.0).contains(&drain_timeout) {
        bail!("--drain-timeout must be in [0, 3600]");
    }
    Ok(Args {
        addr,
        path,
        secret,
        params,
        connections,
        duration: Duration::from_secs_f64(duration),
        rate,
        timeout: Duration::from_millis(timeout_ms),
        first_id,
        sink,
        drain_timeout: Duration::from_secs_f64(drain_timeout),
    })
}

// ---------------------------------------------------------------------------------------------
// The webhook side

struct Shared {
    addr: SocketAddr,
    host: String,
    path: String,
    secret: String,
    params: Vec<String>,
    first_id: u64,
    next: AtomicU64,
    /// Open loop: answers' arrival times come from the kernel (see [`fill`]).
    stamped: bool,
}

impl Shared {
    /// The next update, as a whole request, and its id.
    fn next_request(&self) -> (u64, Vec<u8>) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let id = self.first_id + k;
        let param = &self.params[(k % self.params.len() as u64) as usize];
        let date = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // A private chat's Start as Telegram sends it (the chat id is the user's id).
        let body = format!(
            r#"{{"update_id":{id},"message":{{"message_id":1,"from":{{"id":{id},"is_bot":false,"first_name":"Ann","last_name":"Lee","username":"ann{id}","language_code":"en"}},"chat":{{"id":{id},"first_name":"Ann","last_name":"Lee","username":"ann{id}","type":"private"}},"date":{date},"text":"/start {param}","entities":[{{"offset":0,"length":6,"type":"bot_command"}}]}}}}"#
        );
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             {SECRET_HEADER}: {secret}\r\nContent-Length: {len}\r\n\r\n{body}",
            path = self.path,
            host = self.host,
            secret = self.secret,
            len = body.len(),
        );
        (id, request.into_bytes())
    }
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    responses: u64,
    status_200: u64,
    non_200: u64,
    /// Other statuses seen, for the report (status, count).
    other: Vec<(u16, u64)>,
    errors: u64,
    connects: u64,
    latencies_us: Vec<u32>,
    /// Each accepted update (answered 200): its id and when its latency began.
    accepted: Vec<(u64, Instant)>,
    last_answer: Option<Instant>,
}

impl Tally {
    fn status(&mut self, status: u16) {
        self.responses += 1;
        if status == 200 {
            self.status_200 += 1;
        } else {
            self.non_200 += 1;
            match self.other.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += 1,
                None => self.other.push((status, 1)),
            }
        }
    }
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

/// Reads one response with a `Content-Length` body (what botlink and bareinbox answer) off
/// `stream`; `buf` keeps any bytes past it.
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
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().context("bad content-length")?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked answer: not what a webhook answers here");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    buf.drain(..head_end);
    while buf.len() < length {
        arrived = fill(stream, buf, stamped).await?;
    }
    buf.drain(..length);
    Ok(Answer {
        status,
        close,
        arrived,
    })
}

/// Reads what has arrived on `stream` into `buf`, and returns when it arrived: in the open
/// loop (on Linux) the kernel's receive time (`SO_TIMESTAMPNS`), so that this thread's own
/// delays (the sink's work, another process on its CPU) are not counted as the server's;
/// otherwise now.
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

/// One connection's loop. In the open loop `schedule` hands it each update's send time when
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
    if schedule.is_none() {
        tokio::time::sleep_until(start.into()).await;
    }
    let mut prev_done = start;
    loop {
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
            // The previous answer came after this update's turn: the server held it up.
            Some(s) if prev_done > s => s,
            _ => now,
        };
        if stream.is_none() {
            match timeout_at(give_up.into(), TcpStream::connect(shared.addr)).await {
                Ok(Ok(s)) => {
                    t.connects += 1;
                    if shared.stamped
                        && let Err(e) = stamp_arrivals(&s)
                    {
                        eprintln!(
                            "startgen: no receive timestamps, latencies include its own delays: {e}"
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
        let (id, request) = shared.next_request();
        t.sent += 1;
        let answered = timeout_at(give_up.into(), async {
            s.write_all(&request).await?;
            read_response(s, &mut buf, shared.stamped).await
        })
        .await;
        let read_at = Instant::now();
        match answered {
            Ok(Ok(Answer {
                status,
                close,
                arrived,
            })) => {
                prev_done = arrived;
                t.status(status);
                t.latencies_us
                    .push(micros(arrived.saturating_duration_since(from)));
                if status == 200 {
                    t.accepted.push((id, from));
                }
                t.last_answer = Some(arrived);
                if close {
                    stream = None;
                    buf.clear();
                }
            }
            Ok(Err(_)) | Err(_) => {
                prev_done = read_at;
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

/// The open loop's clock, as `loadgen`'s: connection `c` of `n` sends every `interval`,
/// starting at `start + interval * c / n`; within a millisecond of a send time it yields to
/// the runtime instead of sleeping (tokio's timers round up to whole milliseconds, which would
/// send each millisecond's updates in one burst). Returning at `end` drops the senders, which
/// ends the connections' loops.
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

// ---------------------------------------------------------------------------------------------
// The sink: the CRM and the Telegram Bot API

/// What the sink received: per arrival, the chat id in its body and when it arrived.
#[derive(Default)]
struct Arrivals {
    deliveries: Vec<(u64, Instant)>,
    messages: Vec<(u64, Instant)>,
    /// Requests to other paths, or without a readable `chat_id`.
    other: u64,
}

struct Sink {
    arrivals: Mutex<Arrivals>,
    /// Arrivals of this run's chats (ids from `first_id` on), for the drain's check.
    deliveries: AtomicU64,
    messages: AtomicU64,
    first_id: u64,
}

/// The `chat_id` of a delivery's or a `sendMessage`'s JSON body: botlink writes it as text;
/// a number is taken too.
fn chat_id(body: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    match v.get("chat_id")? {
        serde_json::Value::String(s) => s.parse().ok(),
        n => n.as_u64(),
    }
}

fn json_answer(body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn sink_request(
    sink: Arc<Sink>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    let at = Instant::now();
    let is_message = path.starts_with("/bot") && path.ends_with("/sendMessage");
    let is_delivery = path == "/hook";
    let id = chat_id(&body);
    {
        let mut a = sink.arrivals.lock().expect("the sink's lock");
        match (id, is_delivery, is_message) {
            (Some(id), true, _) => a.deliveries.push((id, at)),
            (Some(id), _, true) => a.messages.push((id, at)),
            _ => a.other += 1,
        }
    }
    if id.is_some_and(|id| id >= sink.first_id) {
        if is_delivery {
            sink.deliveries.fetch_add(1, Ordering::Relaxed);
        } else if is_message {
            sink.messages.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(json_answer(if is_message {
        r#"{"ok":true,"result":{"message_id":1}}"#
    } else {
        r#"{"ok":true}"#
    }))
}

/// Binds the sink and serves it on a thread of its own (its own runtime), so that its work
/// does not hold up the open loop's clock.
fn start_sink(addr: SocketAddr, first_id: u64) -> Result<Arc<Sink>> {
    let sink = Arc::new(Sink {
        arrivals: Mutex::default(),
        deliveries: AtomicU64::new(0),
        messages: AtomicU64::new(0),
        first_id,
    });
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    listener.set_nonblocking(true)?;
    let s = sink.clone();
    std::thread::Builder::new()
        .name("startgen-sink".to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the sink's runtime");
            rt.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("the sink's listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let s = s.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |req| sink_request(s.clone(), req));
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(sink)
}

// ---------------------------------------------------------------------------------------------

/// The p-th percentile (0-100) of sorted values, nearest rank.
fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU time of this process in seconds (user + system, from /proc/self/stat).
fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // CLK_TCK is 100 on every Linux this runs on.
    Some(ticks / 100.0)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let sink = args
        .sink
        .map(|addr| start_sink(addr, args.first_id))
        .transpose()?;
    let shared = Arc::new(Shared {
        addr: args.addr,
        host: args.addr.to_string(),
        path: args.path.clone(),
        secret: args.secret.clone(),
        params: args.params.clone(),
        first_id: args.first_id,
        next: AtomicU64::new(0),
        stamped: args.rate.is_some(),
    });
    // One thread for the updates: pin the process with taskset and it stays on its core.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cpu_before = own_cpu_seconds();
    let start = Instant::now() + Duration::from_millis(20);
    let tallies = rt.block_on(async {
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
        tallies
    });
    let cpu = match (cpu_before, own_cpu_seconds()) {
        (Some(a), Some(b)) => Some(b - a),
        _ => None,
    };
    let mut report = Report::new(tallies, start, args.duration, args.rate, cpu);
    if let Some(sink) = sink {
        report.drain(&sink, args.drain_timeout);
    }
    report.print();
    // This process's CPU time over the whole run, its sink's and the drain's included.
    if let (Some(a), Some(b)) = (cpu_before, own_cpu_seconds()) {
        println!("cpu_s={:.2}", b - a);
    }
    Ok(())
}

/// What the sink saw of this run's Starts.
struct Delivered {
    /// Accepted updates whose delivery / message arrived (each counted once).
    deliveries: u64,
    messages: u64,
    /// Arrivals beyond the first for one chat (a delivery or message sent twice).
    duplicates: u64,
    /// Arrivals for chats of no update of this run (an earlier run's stragglers).
    foreign: u64,
    other: u64,
    /// From the first update sent to the last delivery arrived.
    e2e: Duration,
    /// From the last webhook answer to the last delivery.
    drain: Duration,
    /// Per delivered Start, from its update's send (or scheduled) time to its delivery, µs.
    lags_us: Vec<u32>,
}

struct Report {
    total: Tally,
    start: Instant,
    elapsed: Duration,
    rate: Option<f64>,
    cpu: Option<f64>,
    delivered: Option<Delivered>,
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
            total.status_200 += t.status_200;
            total.non_200 += t.non_200;
            total.errors += t.errors;
            total.connects += t.connects;
            for (s, n) in t.other {
                match total.other.iter_mut().find(|(x, _)| *x == s) {
                    Some((_, m)) => *m += n,
                    None => total.other.push((s, n)),
                }
            }
            total.latencies_us.extend(t.latencies_us);
            total.accepted.extend(t.accepted);
            total.last_answer = total.last_answer.max(t.last_answer);
        }
        total.latencies_us.sort_unstable();
        total.accepted.sort_unstable_by_key(|(id, _)| *id);
        // The run lasts until its last answer (at least the nominal duration).
        let elapsed = total
            .last_answer
            .map(|l| l.saturating_duration_since(start))
            .unwrap_or(duration)
            .max(duration);
        Report {
            total,
            start,
            elapsed,
            rate,
            cpu,
            delivered: None,
        }
    }

    /// Waits until every accepted update has had its delivery and its message (at most
    /// `timeout`), then matches them up.
    fn drain(&mut self, sink: &Sink, timeout: Duration) {
        let expected = self.total.accepted.len() as u64;
        let give_up = Instant::now() + timeout;
        while (sink.deliveries.load(Ordering::Relaxed) < expected
            || sink.messages.load(Ordering::Relaxed) < expected)
            && Instant::now() < give_up
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        let a = sink.arrivals.lock().expect("the sink's lock");
        let accepted = &self.total.accepted;
        let sent_at = |id: u64| {
            accepted
                .binary_search_by_key(&id, |(i, _)| *i)
                .ok()
                .map(|i| accepted[i].1)
        };
        let mut seen = std::collections::HashSet::new();
        let mut d = Delivered {
            deliveries: 0,
            messages: 0,
            duplicates: 0,
            foreign: 0,
            other: a.other,
            e2e: Duration::ZERO,
            drain: Duration::ZERO,
            lags_us: Vec::new(),
        };
        let mut last = None;
        for &(id, at) in &a.deliveries {
            let Some(sent) = sent_at(id) else {
                d.foreign += 1;
                continue;
            };
            if !seen.insert(id) {
                d.duplicates += 1;
                continue;
            }
            d.deliveries += 1;
            d.lags_us.push(micros(at.saturating_duration_since(sent)));
            last = last.max(Some(at));
        }
        seen.clear();
        for &(id, _) in &a.messages {
            if sent_at(id).is_none() {
                d.foreign += 1;
            } else if seen.insert(id) {
                d.messages += 1;
            } else {
                d.duplicates += 1;
            }
        }
        d.lags_us.sort_unstable();
        if let Some(last) = last {
            d.e2e = last.saturating_duration_since(self.start);
            d.drain = self
                .total
                .last_answer
                .map_or(Duration::ZERO, |l| last.saturating_duration_since(l));
        }
        self.delivered = Some(d);
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
        println!("status_200={}", t.status_200);
        println!("non_200={}", t.non_200);
        let mut other = t.other.clone();
        other.sort_unstable();
        let other: Vec<String> = other.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        println!("non_200_statuses={}", other.join(","));
        println!("errors={}", t.errors);
        println!("connects={}", t.connects);
        // Accepted updates a second (answered 200).
        println!("rps={:.0}", t.status_200 as f64 / secs);
        for (name, p) in [("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9)] {
            println!("{name}_us={}", percentile(l, p));
        }
        println!("max_us={}", l.last().copied().unwrap_or(0));
        if let Some(cpu) = self.cpu {
            println!("loadgen_cpu_pct={:.0}", 100.0 * cpu / secs);
        }
        if let Some(d) = &self.delivered {
            let e2e = d.e2e.as_secs_f64();
            println!("deliveries={}", d.deliveries);
            println!("messages={}", d.messages);
            println!("missing_deliveries={}", t.status_200 - d.deliveries);
            println!("missing_messages={}", t.status_200 - d.messages);
            println!("duplicates={}", d.duplicates);
            println!("foreign={}", d.foreign);
            println!("sink_other={}", d.other);
            println!("e2e_s={e2e:.3}");
            println!("drain_s={:.3}", d.drain.as_secs_f64());
            // Starts a second, end to end: deliveries over the time from the first update sent
            // to the last delivery received.
            println!(
                "delivered_rps={:.0}",
                if e2e > 0.0 {
                    d.deliveries as f64 / e2e
                } else {
                    0.0
                }
            );
            for (name, p) in [("lag_p50", 50.0), ("lag_p99", 99.0)] {
                println!("{name}_us={}", percentile(&d.lags_us, p));
            }
            println!("lag_max_us={}", d.lags_us.last().copied().unwrap_or(0));
        }
    }
}
