//! The baseline of the Start benchmark (`bench/start`): the least a server on botlink's stack
//! (tokio + hyper 1.x, SQLite) can do with a messenger's webhook and still be durable. Every
//! `POST`, whatever its path and headers, has its body inserted as one row into a SQLite table,
//! and is answered `200 {"ok":true}` only after that insert has committed. No routing, no
//! signature check, no parsing, no deduplication, no worker, no metrics, no logging.
//!
//! Durability is botlink's: a SQLite file in WAL mode with `synchronous=NORMAL` and the same
//! `wal_autocheckpoint` and busy timeout as botlink's pool (`crates/server/src/store/db.rs`),
//! so a commit appends to the WAL without an fsync, and a checkpoint syncs. Each body is its
//! own transaction, as botlink's webhook handler commits each update on its own (no group
//! commit): the inserts go, one at a time, to one thread holding one connection and a prepared
//! statement, which answers each request as its insert commits. (botlink's handler also runs
//! its transaction on a connection thread of its own, sqlx's, and waits for the commit.)
//!
//! Usage: `bareinbox ADDR DB_FILE`. Prints `listening on ADDR` when ready. Other methods than
//! `POST` are answered 200 without a write (readiness checks).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// botlink's `SQLITE_BUSY_TIMEOUT` and `SQLITE_WAL_AUTOCHECKPOINT` (`store/db.rs`).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
const WAL_AUTOCHECKPOINT: u32 = 4000;

/// A body to insert, and where to say that it committed.
type Job = (Bytes, oneshot::Sender<Result<(), String>>);

/// Opens the database as botlink opens its SQLite file, with the inbox table.
fn open(path: &str) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).with_context(|| format!("opening {path}"))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS inbox (
             id INTEGER PRIMARY KEY,
             received_at INTEGER NOT NULL,
             body BLOB NOT NULL
         )",
    )?;
    Ok(conn)
}

/// The writer: each body in a transaction of its own (autocommit), answered when committed.
fn write(conn: rusqlite::Connection, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut insert = conn
        .prepare("INSERT INTO inbox (received_at, body) VALUES (?1, ?2)")
        .expect("the insert prepares");
    while let Some((body, done)) = jobs.blocking_recv() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let result = insert
            .execute(rusqlite::params![now_ms, &body[..]])
            .map(drop)
            .map_err(|e| e.to_string());
        // The request may have gone (its client closed the connection): the row stays.
        let _ = done.send(result);
    }
}

fn answer(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

async fn receive(
    req: Request<Incoming>,
    jobs: mpsc::UnboundedSender<Job>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST {
        return Ok(answer(StatusCode::OK, r#"{"ok":true}"#));
    }
    let Ok(body) = req.into_body().collect().await else {
        return Ok(answer(StatusCode::BAD_REQUEST, r#"{"ok":false}"#));
    };
    let (done, committed) = oneshot::channel();
    if jobs.send((body.to_bytes(), done)).is_err() {
        return Ok(answer(StatusCode::INTERNAL_SERVER_ERROR, r#"{"ok":false}"#));
    }
    Ok(match committed.await {
        Ok(Ok(())) => answer(StatusCode::OK, r#"{"ok":true}"#),
        Ok(Err(e)) => {
            eprintln!("insert: {e}");
            answer(StatusCode::SERVICE_UNAVAILABLE, r#"{"ok":false}"#)
        }
        Err(_) => answer(StatusCode::INTERNAL_SERVER_ERROR, r#"{"ok":false}"#),
    })
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(db)) = (args.next(), args.next()) else {
        anyhow::bail!("usage: bareinbox ADDR DB_FILE");
    };
    let addr: SocketAddr = addr.parse().context("ADDR")?;
    let conn = open(&db)?;
    let (jobs, queue) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("bareinbox-writer".to_owned())
        .spawn(move || write(conn, queue))?;
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the open connections.
                eprintln!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let jobs = jobs.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| receive(req, jobs.clone()));
            // Keep-alive is on by default; a client closing its connection is not an error here.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
