//! Microbenchmark of the service's hot path in process (no sockets, no
//! kernel, no client): what its own code costs per cached redirect, which the
//! HTTP benchmark (`loadtests/redirect.sh`) sees only mixed with the kernel's
//! and wrk's share of two busy cores.
//!
//! Starts the real service state (`Service::start`, so Postgres, Valkey and
//! NATS from the usual environment: `DATABASE_URL`, `VALKEY_URL`, `NATS_URL`,
//! `NATS_PREFIX`), requests every active link of the database once through
//! [`FastPath`] (L1 fill, through the router), then measures in alternating
//! rounds, for a random active code each time:
//!
//! * `map`: a `HashMap` get of the code's target (the least an in-memory
//!   lookup among that many entries costs on this machine);
//! * `l1`: `LinkCache::cached` plus the `Location` value;
//! * `request`: `FastPath::handle` of `GET /{code}`, the whole answer as the
//!   server makes it, click included (the click publisher runs on the same
//!   thread, so publishing to NATS is counted too).
//!
//! ```sh
//! cargo build --release -p shortline-redirect --example hotpath
//! $CARGO_TARGET_DIR/release/examples/hotpath [LOOKUPS] [ROUNDS]
//! ```
//!
//! `loadtests/redirect.sh` runs it on its 100,000 links after the HTTP runs
//! and prints its line under the table.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use clap::Parser;
use shortline_redirect::code::CodeKey;
use shortline_redirect::config::RedirectConfig;
use shortline_redirect::fast::FastPath;
use shortline_redirect::resolve::Target;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// xorshift64*: a cheap, deterministic sequence of random indexes.
struct Picks(u64);

impl Picks {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        // The high bits of the product are the random part.
        #[allow(clippy::cast_possible_truncation)]
        let i = ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as usize) % n;
        i
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn get(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "127.0.0.1:8000")
        .body(Body::empty())
        .expect("a valid request")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let lookups: usize = args.next().map_or(Ok(1_000_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let config = RedirectConfig::try_parse_from(["hotpath"])?;
    let service = shortline_redirect::Service::start(&config).await?;
    let state = service.state.clone();
    let codes: Vec<String> = sqlx::query_scalar("SELECT short_code FROM urls WHERE is_active")
        .fetch_all(&state.db)
        .await?;
    anyhow::ensure!(!codes.is_empty(), "no active links in the database");
    let fast = FastPath::new(state.clone());
    let peer: SocketAddr = "127.0.0.1:40000".parse()?;
    let mut plain: HashMap<CodeKey, Target> = HashMap::with_capacity(codes.len());
    for code in &codes {
        let response = fast.handle(get(&format!("/{code}")), peer).await;
        anyhow::ensure!(
            response.status() == StatusCode::FOUND,
            "/{code}: {}",
            response.status()
        );
        let target = state
            .links
            .cached(code)
            .await
            .context("not in L1 after a redirect")?;
        plain.insert(CodeKey::new(code), target);
    }
    let paths: Vec<String> = codes.iter().map(|c| format!("/{c}")).collect();
    let mut picks = Picks(0x9E37_79B9_7F4A_7C15);
    let (mut map_ns, mut l1_ns, mut request_ns) = (Vec::new(), Vec::new(), Vec::new());
    let mut found = 0usize;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..lookups {
            let code = &codes[picks.next(codes.len())];
            if let Some(location) = plain.get(&CodeKey::new(code)).and_then(Target::location) {
                found += std::hint::black_box(location).len().min(1);
            }
        }
        map_ns.push(start.elapsed().as_nanos() as f64 / lookups as f64);
        let start = Instant::now();
        for _ in 0..lookups {
            let code = &codes[picks.next(codes.len())];
            if let Some(location) = state
                .links
                .cached(code)
                .await
                .as_ref()
                .and_then(Target::location)
            {
                found += std::hint::black_box(location).len().min(1);
            }
        }
        l1_ns.push(start.elapsed().as_nanos() as f64 / lookups as f64);
        let start = Instant::now();
        for i in 0..lookups {
            let path = &paths[picks.next(codes.len())];
            let response = fast.handle(get(path), peer).await;
            found += usize::from(response.status() == StatusCode::FOUND);
            if i % 256 == 0 {
                // Let the click publisher take what was buffered.
                tokio::task::yield_now().await;
            }
        }
        request_ns.push(start.elapsed().as_nanos() as f64 / lookups as f64);
    }
    anyhow::ensure!(
        found == 3 * rounds * lookups,
        "{found} of {} lookups found their link",
        3 * rounds * lookups
    );
    let (map, l1, request) = (median(map_ns), median(l1_ns), median(request_ns));
    println!(
        "hotpath: {} links, {rounds} rounds of {lookups} random codes each (medians): \
         map {map:.0} ns, l1 {l1:.0} ns, request {request:.0} ns per code",
        codes.len(),
    );
    service.shutdown().await;
    Ok(())
}
