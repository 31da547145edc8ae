//! Load tool for `loadtests/analytics.sh`.
//!
//! ```text
//! clickload fill <nats_url> <prefix> <clicks> [per_batch]
//!     Pre-fills the click stream of <prefix> with <clicks> clicks (batches of
//!     per_batch, default 500) spread over 100,000 url ids, with a realistic
//!     mix of user agents and referrers. Prints the publish rate.
//! clickload latency <redirect_base_url> <database_url> <short_code> <url_id> <n> [per_sec]
//!     Sends <n> GET redirects (default 20 per second) and, for each, times
//!     how long until its event row is visible in Postgres: the end-to-end
//!     latency redirect → row. Prints p50, p90, p99 and max in ms.
//! clickload drop <nats_url> <prefix>
//!     Deletes the click, dead-letter and change streams of <prefix> (those
//!     that exist) and prints the names of the streams it deleted.
//! clickload count <nats_url> <prefix>
//!     Prints how many messages those streams hold in all (a click message
//!     carries a batch of clicks).
//! ```

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::stream::{FuturesUnordered, StreamExt};
use shortline_shared::events::{Click, ClickBatch, Subjects};
use shortline_shared::nats::{clicks_stream_config, ensure_stream};

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const REFERRERS: &[Option<&str>] = &[
    None,
    Some("https://news.example.org/item?id=1"),
    Some("https://www.example.com/blog/post"),
    Some("https://social.example.net/@someone/1"),
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fill") if args.len() >= 4 => {
            let per_batch = args.get(4).map_or(Ok(500), |s| s.parse())?;
            fill(&args[1], &args[2], args[3].parse()?, per_batch).await
        }
        Some("latency") if args.len() >= 6 => {
            let per_sec: u64 = args.get(6).map_or(Ok(20), |s| s.parse())?;
            latency(
                &args[1],
                &args[2],
                &args[3],
                args[4].parse()?,
                args[5].parse()?,
                per_sec,
            )
            .await
        }
        Some("drop") if args.len() >= 3 => drop_streams(&args[1], &args[2]).await,
        Some("count") if args.len() >= 3 => count_messages(&args[1], &args[2]).await,
        _ => anyhow::bail!(
            "usage: clickload fill <nats_url> <prefix> <clicks> [per_batch]\n       clickload latency <redirect_base_url> <database_url> <short_code> <url_id> <n> [per_sec]\n       clickload drop <nats_url> <prefix>\n       clickload count <nats_url> <prefix>"
        ),
    }
}

/// The streams of a prefix that the load tests create.
fn streams(prefix: &str) -> [String; 3] {
    let subjects = Subjects::new(prefix);
    [
        subjects.clicks_stream(),
        subjects.dead_letter_stream(),
        subjects.changes_stream(),
    ]
}

fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    matches!(
        e.kind(),
        jetstream::context::GetStreamErrorKind::JetStream(ref j)
            if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
    )
}

async fn count_messages(nats_url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = shortline_shared::nats::connect(nats_url, "clickload").await?;
    let js = jetstream::new(client);
    let mut total = 0;
    for name in streams(prefix) {
        match js.get_stream(&name).await {
            Ok(mut stream) => total += stream.info().await?.state.messages,
            Err(e) if is_not_found(&e) => {}
            Err(e) => anyhow::bail!("reading stream {name}: {e}"),
        }
    }
    println!("{total}");
    Ok(())
}

async fn drop_streams(nats_url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = shortline_shared::nats::connect(nats_url, "clickload").await?;
    let js = jetstream::new(client);
    for name in streams(prefix) {
        match js.delete_stream(&name).await {
            Ok(_) => println!("{name}"),
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::DeleteStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) => {}
            Err(e) => anyhow::bail!("deleting stream {name}: {e}"),
        }
    }
    Ok(())
}

async fn fill(nats_url: &str, prefix: &str, clicks: u64, per_batch: u64) -> anyhow::Result<()> {
    let client = shortline_shared::nats::connect(nats_url, "clickload").await?;
    let js = jetstream::new(client);
    let subjects = Subjects::new(prefix);
    ensure_stream(&js, clicks_stream_config(&subjects))
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut n = 0u64;
    while sent < clicks {
        let size = per_batch.min(clicks - sent);
        let batch: Vec<Click> = (0..size)
            .map(|_| {
                n += 1;
                // A cheap deterministic spread (no RNG dependency).
                let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                Click {
                    event_id: ulid::Ulid::generate(),
                    url_id: (h % 100_000) as i64 + 1,
                    user_id: (h % 1_000) as i64 + 1,
                    short_code: format!("c{}", h % 100_000),
                    occurred_at: chrono::Utc::now(),
                    user_agent: Some(AGENTS[(h >> 20) as usize % AGENTS.len()].to_owned()),
                    referrer: REFERRERS[(h >> 30) as usize % REFERRERS.len()].map(str::to_owned),
                    ip: Some(format!("198.51.{}.0", (h >> 40) % 256)),
                    outcome: None,
                }
            })
            .collect();
        let payload = serde_json::to_vec(&ClickBatch::new(batch))?;
        in_flight.push(
            js.publish(subjects.clicks(), payload.into())
                .await?
                .into_future(),
        );
        sent += size;
        if in_flight.len() >= 256 {
            in_flight.next().await.transpose()?;
        }
    }
    while let Some(ack) = in_flight.next().await {
        ack?;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "filled {clicks} clicks in {} messages in {secs:.1} s ({:.0} clicks/s)",
        clicks.div_ceil(per_batch),
        clicks as f64 / secs
    );
    Ok(())
}

async fn latency(
    base: &str,
    database_url: &str,
    code: &str,
    url_id: i64,
    n: usize,
    per_sec: u64,
) -> anyhow::Result<()> {
    let db = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(database_url)
        .await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let count = |db: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE url_id = $1 AND event_type = 'redirect'",
        )
        .bind(url_id)
        .fetch_one(&db)
        .await
    };
    let mut seen = count(db.clone()).await?;
    let pace = Duration::from_millis(1000 / per_sec.max(1));
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let next = Instant::now() + pace;
        let started = Instant::now();
        let res = http.get(format!("{base}/{code}")).send().await?;
        anyhow::ensure!(
            res.status().as_u16() == 302,
            "redirect answered {}",
            res.status()
        );
        loop {
            let now = count(db.clone()).await?;
            if now > seen {
                seen = now;
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(10),
                "event row never appeared"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep_until(next.into()).await;
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "end-to-end redirect -> row visible, {n} samples at {per_sec}/s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    Ok(())
}
