//! Benchmark baseline: the least a redirect server can do. A bare hyper 1.x HTTP/1.1 server
//! that answers every request `302 Found` with a fixed `Location` and `X-Cache: HIT` and an
//! empty body: no routing, no lookup, no middleware, no logging.
//!
//! It runs on the same runtime the real service uses (tokio multi-thread, default worker
//! count = one per core), HTTP/1.1 with keep-alive and default socket options (as
//! `axum::serve` leaves them), so `loadtests/redirect.sh` can put the real
//! `shortline-redirect` next to it and report what the service costs over a plain 302.
//!
//! ```sh
//! cargo build --release -p shortline-redirect --example bare302
//! $CARGO_TARGET_DIR/release/examples/bare302 [LISTEN_ADDR]   # default 127.0.0.1:18090
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_LENGTH, HeaderValue, LOCATION};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const DEFAULT_LISTEN: &str = "127.0.0.1:18090";
const LOCATION_VALUE: &str = "https://example.com/landing/page";

async fn redirect(_req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut res = Response::new(Empty::new());
    *res.status_mut() = StatusCode::FOUND;
    let headers = res.headers_mut();
    headers.insert(LOCATION, HeaderValue::from_static(LOCATION_VALUE));
    headers.insert("x-cache", HeaderValue::from_static("HIT"));
    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(res)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen: SocketAddr = std::env::args()
        .nth(1)
        .as_deref()
        .unwrap_or(DEFAULT_LISTEN)
        .parse()?;
    let listener = TcpListener::bind(listen).await?;
    eprintln!("bare302 listening on {listen}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(conn) => conn,
            // Out of file descriptors and the like: keep serving the connections we have.
            Err(e) => {
                eprintln!("accept failed: {e}");
                continue;
            }
        };
        tokio::spawn(async move {
            // Connection errors (client reset, etc.) only end that connection.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(redirect))
                .await;
        });
    }
}
