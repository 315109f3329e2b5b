//! The baseline of the redirect benchmark (`bench/redirect`): the least an HTTP/1.1 server on
//! the same stack as botlink (tokio + hyper 1.x) can do for a short link. Every request, whatever
//! its path, gets the same `302 Found` to a Telegram deep link, with the headers botlink's
//! redirect sends (`Cache-Control: no-store`, `Referrer-Policy: no-referrer`). No routing, no
//! lookup, no click, no metrics, no logging.
//!
//! Usage: `bare302 [ADDR]` (default `127.0.0.1:8081`). Prints `listening on ADDR` when ready.
//! The runtime is tokio's multi-threaded one with its default worker count, as in `botlink
//! serve`, so both servers use the CPUs they are pinned to in the same way.

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CACHE_CONTROL, HeaderValue, LOCATION, REFERRER_POLICY};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const TARGET: &str = "https://t.me/shop_bot?start=x";

async fn found(_req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut resp = Response::new(Empty::new());
    *resp.status_mut() = StatusCode::FOUND;
    let h = resp.headers_mut();
    h.insert(LOCATION, HeaderValue::from_static(TARGET));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(resp)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or("127.0.0.1:8081")
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: keep serving the open connections.
                eprintln!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        // No TCP_NODELAY: `axum::serve`, which botlink uses, does not set it either.
        tokio::spawn(async move {
            // Keep-alive is on by default; a client closing its connection is not an error here.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(found))
                .await;
        });
    }
}
