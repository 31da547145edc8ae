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
//!   thread, so publishing to NATS is counted too);
//! * `plain1` and `rules1`: the same, for one plain link and for one link
//!   with rules (a device rule and `forward_query`, which the example
//!   writes as code `hotpath-rules`), each requested by a phone with a
//!   `?utm_source=` query: what deciding the rules adds per request
//!   (`rules1 - plain1`).
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

/// A request by a phone (the rules link's device rule matches it).
fn phone(path: &str) -> Request<Body> {
    Request::get(path)
        .header("host", "127.0.0.1:8000")
        .header(
            "user-agent",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
        )
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
    let codes: Vec<String> = sqlx::query_scalar(
        "SELECT short_code FROM urls WHERE is_active AND short_code <> 'hotpath-rules'",
    )
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
    // One link with rules: phones go elsewhere, queries are forwarded.
    sqlx::query(
        "INSERT INTO urls (user_id, short_code, original_url, forward_query, rules)
         SELECT user_id, 'hotpath-rules', 'https://example.com/hotpath?ref=bench', TRUE,
                '[{\"when\": {\"device\": [\"mobile\", \"tablet\"]}, \"target\": \"https://m.example.com/hotpath\"}]'::jsonb
         FROM urls LIMIT 1
         ON CONFLICT ((COALESCE(domain_id, 0)), short_code) DO NOTHING",
    )
    .execute(&state.db)
    .await?;
    let plain_one = format!("{}?utm_source=bench", paths[0]);
    let rules_one = "/hotpath-rules?utm_source=bench".to_owned();
    for path in [&plain_one, &rules_one] {
        let response = fast.handle(phone(path), peer).await;
        anyhow::ensure!(
            response.status() == StatusCode::FOUND,
            "{path}: {}",
            response.status()
        );
    }
    let response = fast.handle(phone(&rules_one), peer).await;
    anyhow::ensure!(
        response.headers()["location"] == "https://m.example.com/hotpath?utm_source=bench"
            && response.headers()["x-cache"] == "HIT",
        "the rules link is not answered from L1 by its rule: {:?}",
        response.headers()
    );
    let mut picks = Picks(0x9E37_79B9_7F4A_7C15);
    let (mut map_ns, mut l1_ns, mut request_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut plain1_ns, mut rules1_ns) = (Vec::new(), Vec::new());
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
        for (path, ns) in [(&plain_one, &mut plain1_ns), (&rules_one, &mut rules1_ns)] {
            let start = Instant::now();
            for i in 0..lookups {
                let response = fast.handle(phone(path), peer).await;
                found += usize::from(response.status() == StatusCode::FOUND);
                if i % 256 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            ns.push(start.elapsed().as_nanos() as f64 / lookups as f64);
        }
    }
    // A slow run can outlive some L1 entries (REDIRECT_L1_TTL_SECS): the
    // `l1` loop then misses them. Anything beyond a trace is a fault.
    let total = 5 * rounds * lookups;
    anyhow::ensure!(
        found * 1000 >= total * 999,
        "{found} of {total} lookups found their link"
    );
    let (map, l1, request) = (median(map_ns), median(l1_ns), median(request_ns));
    let (plain1, rules1) = (median(plain1_ns), median(rules1_ns));
    println!(
        "hotpath: {} links, {rounds} rounds of {lookups} random codes each (medians): \
         map {map:.0} ns, l1 {l1:.0} ns, request {request:.0} ns per code; \
         one link by a phone with a query: plain1 {plain1:.0} ns, rules1 {rules1:.0} ns \
         (device rule + forward_query: {:+.0} ns)",
        codes.len(),
        rules1 - plain1,
    );
    service.shutdown().await;
    Ok(())
}
