//! `shortline-api seed <dir>`: `users.csv`, then `urls.csv`, then
//! `events.csv`, each through the import pipeline, committed batch by batch
//! (a crash leaves earlier batches loaded; re-running skips them).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::mpsc;

use super::pipeline::{CHANNEL_BATCHES, Chunk, CsvTable, ParseFailure, parse_csv};
use super::repo::{SequenceOf, move_sequence_past_ids};
use super::report::{FileReport, SeedReport};
use super::tables::{EventRows, UrlRows, UrlRules, UserRows};
use crate::links::targets::TargetPolicy;

/// Rows per insert for seed files.
const SEED_BATCH_ROWS: usize = 10_000;
/// Per-row problems the seeder writes to the log, per file.
const MAX_LOGGED_PROBLEMS: usize = 20;
/// Rows between two progress log lines.
const PROGRESS_EVERY_ROWS: u64 = 100_000;
/// The "random" part of a seeded event's ULID: a fixed tag above the CSV id.
const SEED_EVENT_TAG: u128 = 0x5EED_0000_0000_0000_0000;

/// Loads `users.csv`, then `urls.csv`, then `events.csv` from `dir` (each
/// optional: a missing file is logged and skipped) and moves the id
/// sequences past the loaded ids. Safe to re-run: a second run inserts
/// nothing. Event rows only: the statistics of the `redirect` events among
/// them are the analytics service's, recomputed from the rows by
/// `shortline-analytics rebuild-rollups` (which `make up` runs next).
///
/// `urls.csv`: `id,user_id,short_code,original_url,title,is_active,created_at,updated_at`
/// (`user_id`, `short_code`, `original_url` required; `user_id` need not
/// exist; a target `targets` refuses is a row problem), and optionally the
/// link-rule columns `redirect_type,expires_at,max_clicks,fallback_url,forward_query,rules`
/// (`rules` as JSON text; checked as `POST /urls` checks them; no password
/// column; rows without a `redirect_type` get 302 here, the configured
/// default with [`seed_dir_with`]). `events.csv`:
/// `id,url_id,user_id,event_type,timestamp,details` (`id`, `event_type`,
/// `timestamp` required).
pub async fn seed_dir(
    db: &PgPool,
    dir: &Path,
    targets: Arc<TargetPolicy>,
) -> anyhow::Result<SeedReport> {
    let rules = UrlRules {
        targets,
        ..UrlRules::default()
    };
    seed_dir_with(db, dir, rules).await
}

/// [`seed_dir`] with the urls rules given in full (the target policy and the
/// configured `DEFAULT_REDIRECT_TYPE`, as `shortline-api seed` passes them).
pub async fn seed_dir_with(
    db: &PgPool,
    dir: &Path,
    url_rules: UrlRules,
) -> anyhow::Result<SeedReport> {
    anyhow::ensure!(
        dir.is_dir(),
        "seed directory {} does not exist",
        dir.display()
    );
    let users = seed_file::<UserRows>(db, &dir.join("users.csv"), ()).await?;
    if users.rows > 0 {
        move_sequence_past_ids(db, SequenceOf::Users).await?;
    }
    let urls = seed_file::<UrlRows>(db, &dir.join("urls.csv"), url_rules).await?;
    if urls.rows > 0 {
        move_sequence_past_ids(db, SequenceOf::Urls).await?;
    }
    let events = seed_file::<EventRows>(db, &dir.join("events.csv"), ()).await?;
    if events.rows > 0 {
        move_sequence_past_ids(db, SequenceOf::Events).await?;
    }
    if events.inserted > 0 {
        tracing::info!(
            events = events.inserted,
            "event rows loaded; `shortline-analytics rebuild-rollups` brings the link statistics up to date"
        );
    }
    Ok(SeedReport {
        users,
        urls,
        events,
    })
}

/// Loads one seed file batch by batch (autocommit); an absent file is an
/// empty report.
async fn seed_file<T: CsvTable>(
    db: &PgPool,
    path: &Path,
    rules: T::Rules,
) -> anyhow::Result<FileReport> {
    if !tokio::fs::try_exists(path).await.unwrap_or(false) {
        tracing::info!(file = %path.display(), "seed file absent; skipping {}", T::NAME);
        return Ok(FileReport::default());
    }
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (tx, mut rx) = mpsc::channel::<Chunk<T::Batch>>(CHANNEL_BATCHES);
    let parser =
        tokio::task::spawn_blocking(move || parse_csv::<T, _>(file, SEED_BATCH_ROWS, rules, &tx));

    let started = Instant::now();
    let mut conn = db.acquire().await?;
    let mut inserted = 0u64;
    let mut next_progress = PROGRESS_EVERY_ROWS;
    while let Some(chunk) = rx.recv().await {
        inserted += T::insert(&mut conn, &chunk.batch)
            .await
            .with_context(|| format!("inserting {} rows from {}", T::NAME, path.display()))?;
        if chunk.rows_read >= next_progress {
            next_progress = (chunk.rows_read / PROGRESS_EVERY_ROWS + 1) * PROGRESS_EVERY_ROWS;
            tracing::info!(file = %path.display(), rows = chunk.rows_read, inserted, "loading {}", T::NAME);
        }
    }
    drop(conn);
    let outcome = match parser.await.context("CSV parser task failed")? {
        Ok(outcome) => outcome,
        Err(ParseFailure::Header(message)) => anyhow::bail!("{}: {message}", path.display()),
        Err(ParseFailure::Read(e)) => {
            return Err(anyhow::Error::new(e).context(format!("reading {}", path.display())));
        }
        Err(ParseFailure::Cancelled) => anyhow::bail!("{}: load stopped early", path.display()),
    };
    for p in outcome.problems.iter().take(MAX_LOGGED_PROBLEMS) {
        tracing::warn!(file = %path.display(), line = p.line, problem = %p.problem, "skipped invalid {} row", T::NAME);
    }
    let report = FileReport {
        rows: outcome.rows,
        inserted,
        skipped: outcome.rows - inserted,
    };
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(
        file = %path.display(),
        rows = report.rows,
        inserted = report.inserted,
        skipped = report.skipped,
        invalid = outcome.invalid,
        elapsed_ms = (secs * 1000.0) as u64,
        rows_per_sec = if secs > 0.0 { (report.rows as f64 / secs) as u64 } else { 0 },
        "{} loaded",
        T::NAME
    );
    Ok(report)
}

/// The ULID of a seeded event: its timestamp, then a fixed tag and the CSV
/// id in the 80 "random" bits. Unique per CSV id and the same on every run.
pub fn seed_event_id(id: i64, at: DateTime<Utc>) -> ulid::Ulid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    ulid::Ulid::from_parts(ms, SEED_EVENT_TAG | u128::from(id.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::fields::parse_time;

    #[test]
    fn seed_event_ids_are_stable_unique_and_timed() {
        let at = parse_time("2025-08-18 05:25:03", "t").expect("time");
        let a = seed_event_id(1, at);
        assert_eq!(a, seed_event_id(1, at));
        assert_ne!(a, seed_event_id(2, at));
        assert_eq!(a.timestamp_ms(), 1_755_494_703_000);
        let parsed: ulid::Ulid = a.to_string().parse().expect("valid ULID text");
        assert_eq!(parsed, a);
    }
}
