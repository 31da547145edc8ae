//! CSV import: `POST /users/bulk` (a streamed multipart upload) and the seed
//! loader behind `shortline-api seed <dir>`.
//!
//! Both run the same pipeline. A blocking task reads the CSV with the `csv`
//! crate (an upload is bridged from its async byte stream with
//! `StreamReader` + `SyncIoBridge`, a seed file is read directly), checks each
//! row, and sends batches of valid rows through a small bounded channel; the
//! async side inserts each batch with one `INSERT … SELECT … FROM UNNEST(…)
//! ON CONFLICT DO NOTHING`. Nothing holds more than a couple of batches in
//! memory, whatever the file size.
//!
//! Rules shared by every file:
//! * Columns are found by header name (case-insensitive, any order; unknown
//!   columns are ignored). Fields are trimmed.
//! * A row that cannot be used (wrong number of fields, a bad id, email,
//!   timestamp, target URL, a NUL character, …) is counted, skipped and
//!   reported with its line number; it never aborts the load. Only an
//!   unreadable input or a database failure does.
//! * Ids (of the row and the ones it refers to) are integers from 1 to
//!   [`MAX_IMPORTED_ID`] (2^53 − 1). A larger id would move the table's id
//!   sequence to it, and one near the `bigint` maximum would leave no id for
//!   any later insert; 2^53 − 1 also is the largest integer every JSON
//!   client reads exactly.
//! * Link targets follow the API's rules (the shared URL rule and the
//!   deployment's target policy: own hosts, blocklist).
//! * CSV ids are kept. Rows whose id or unique key (username, email, short
//!   code, event ULID) already exists, in the database or earlier in the same
//!   file, are skipped but counted: the bare `ON CONFLICT DO NOTHING` covers
//!   every unique index, the partial ones on live users included, and also
//!   duplicates inside one statement (the first row wins).
//! * Afterwards each table's id sequence is moved past its largest id (ids
//!   above the ceiling, from before it existed, are not counted), never
//!   backwards (see [`move_sequence_past_ids`]).
//!
//! `POST /users/bulk` runs in one transaction: an upload that fails half way
//! (too large, broken stream, database error) leaves nothing behind, and a
//! re-run is idempotent because duplicates are skipped. The seeder commits
//! batch by batch (a crash leaves earlier batches loaded; re-running skips
//! them). Each `redirect` event it inserts also gets a `rollup_backlog` row
//! (agent and referrer host classified from its `details`), in the same
//! statement, for the breakdowns the analytics service's rollup job folds;
//! after the events it recomputes the per-link rollups (`link_stats`,
//! `link_stats_hourly`) of the links it loaded `redirect` events for.
//!
//! Event rows get a deterministic ULID derived from their CSV id and
//! timestamp ([`seed_event_id`]), so a re-run deduplicates them too. An event
//! whose `details` is not a JSON object is kept, wrapped as
//! `{"value": <the JSON value, or the raw text if it is not JSON>}`; empty
//! details become `{}`.

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, Datelike, Utc};
use csv::{ByteRecord, ReaderBuilder, Trim};
use futures::StreamExt;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::ApiError;
use crate::links::codes::check_custom;
use crate::links::targets::TargetPolicy;
use crate::users::model::{check_user_field_len, is_valid_email};
use crate::validate::holds_nul;

/// Rows per insert for `POST /users/bulk`.
const UPLOAD_BATCH_ROWS: usize = 5_000;
/// Rows per insert for seed files.
const SEED_BATCH_ROWS: usize = 10_000;
/// Parsed batches waiting for the database (bounds memory; keeps the parser
/// one step ahead of the inserts).
const CHANNEL_BATCHES: usize = 2;
/// Per-row problems kept for a report.
const MAX_REPORTED_PROBLEMS: usize = 100;
/// Per-row problems the seeder writes to the log, per file.
const MAX_LOGGED_PROBLEMS: usize = 20;
/// Rows between two progress log lines.
const PROGRESS_EVERY_ROWS: u64 = 100_000;
/// Longest value accepted in a column with a B-tree index (PostgreSQL
/// rejects index entries above ~2.7 kB, which would fail a whole batch).
const MAX_INDEXED_BYTES: usize = 1_024;
/// Largest id an import accepts: 2^53 − 1 (see the module docs).
pub const MAX_IMPORTED_ID: i64 = (1 << 53) - 1;
/// The "random" part of a seeded event's ULID: a fixed tag above the CSV id.
const SEED_EVENT_TAG: u128 = 0x5EED_0000_0000_0000_0000;

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Result of `POST /users/bulk`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BulkReport {
    /// Every data row read, duplicates and invalid rows included.
    pub count: u64,
    /// The same value as `count` (the contract's `{"count": N, "imported": N}`).
    pub imported: u64,
    /// Rows that created a new user.
    pub inserted: u64,
    /// Rows not inserted: duplicates (id, username or email already present,
    /// in the database or earlier in the file) and invalid rows.
    pub skipped: u64,
    /// The first 100 invalid rows, with what is wrong with each.
    pub errors: Vec<RowProblem>,
}

/// One unusable CSV row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RowProblem {
    /// Line of the file where the row starts (the header is line 1).
    pub line: u64,
    /// What is wrong with it, e.g. `email: must be a valid address`.
    pub problem: String,
}

/// What `shortline-api seed <dir>` loaded.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub users: FileReport,
    pub urls: FileReport,
    pub events: FileReport,
}

/// Counts for one seed file (all zero when the file is absent).
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    /// Data rows read.
    pub rows: u64,
    /// Rows that created a new record.
    pub inserted: u64,
    /// Duplicates and invalid rows.
    pub skipped: u64,
}

/// Streams a users CSV into `users`, in one transaction.
///
/// The header names the columns (`id,username,email,created_at`; any order,
/// extra columns ignored). `username` and `email` are required; without an
/// `id` (column absent or cell empty) the sequence assigns one, without a
/// `created_at` the row gets `now()`. `body` is the raw upload; more than
/// `max_bytes` of it is a 413 and nothing is imported.
pub async fn import_users<S>(db: &PgPool, body: S, max_bytes: usize) -> Result<BulkReport, ApiError>
where
    S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin + 'static,
{
    let too_large = Arc::new(AtomicBool::new(false));
    let reader = SyncIoBridge::new(StreamReader::new(cap_stream(
        body,
        max_bytes,
        too_large.clone(),
    )));
    let (tx, mut rx) = mpsc::channel::<Chunk<UserBatch>>(CHANNEL_BATCHES);
    let parser = tokio::task::spawn_blocking(move || {
        parse_csv::<UserRows, _>(reader, UPLOAD_BATCH_ROWS, (), &tx)
    });

    let started = Instant::now();
    let mut txn: Option<sqlx::Transaction<'static, sqlx::Postgres>> = None;
    let mut inserted = 0u64;
    while let Some(chunk) = rx.recv().await {
        let conn = match &mut txn {
            Some(t) => t,
            None => txn.insert(db.begin().await?),
        };
        // An error returns early: dropping `rx` stops the parser and `txn`
        // rolls everything back.
        inserted += UserRows::insert(conn, &chunk.batch).await?;
    }
    let outcome = match parser.await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(ParseFailure::Header(message))) => return Err(ApiError::BadRequest(message)),
        Ok(Err(ParseFailure::Read(_))) if too_large.load(Ordering::Relaxed) => {
            return Err(ApiError::PayloadTooLarge(format!(
                "CSV upload exceeds {max_bytes} bytes"
            )));
        }
        Ok(Err(ParseFailure::Read(e))) => {
            return Err(ApiError::BadRequest(format!(
                "could not read the uploaded CSV: {e}"
            )));
        }
        Ok(Err(ParseFailure::Cancelled)) => {
            return Err(ApiError::Internal("CSV import stopped early".into()));
        }
        Err(e) => return Err(ApiError::Internal(format!("CSV parser task failed: {e}"))),
    };
    if let Some(mut t) = txn {
        if inserted > 0 {
            // Before the commit too, so that no insert between the commit and
            // the exact bump below can draw an imported id.
            bump_sequence_unlocked(&mut t, SequenceOf::Users).await?;
        }
        t.commit().await?;
    }
    if inserted > 0 {
        move_sequence_past_ids(db, SequenceOf::Users).await?;
    }
    let report = BulkReport {
        count: outcome.rows,
        imported: outcome.rows,
        inserted,
        skipped: outcome.rows - inserted,
        errors: outcome.problems,
    };
    tracing::info!(
        rows = report.count,
        inserted = report.inserted,
        skipped = report.skipped,
        invalid = outcome.invalid,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "users CSV imported"
    );
    Ok(report)
}

/// Loads `users.csv`, then `urls.csv`, then `events.csv` from `dir` (each
/// optional: a missing file is logged and skipped), moves the id sequences
/// past the loaded ids and recomputes the per-link rollups (`link_stats`,
/// `link_stats_hourly`) of the links that have `redirect` events in the file
/// (their breakdowns follow from the backlog rows the inserts appended).
/// Safe to re-run: a second run inserts nothing.
///
/// `urls.csv`: `id,user_id,short_code,original_url,title,is_active,created_at,updated_at`
/// (`user_id`, `short_code`, `original_url` required; `user_id` need not
/// exist; a target `targets` refuses is a row problem). `events.csv`:
/// `id,url_id,user_id,event_type,timestamp,details` (`id`, `event_type`,
/// `timestamp` required).
pub async fn seed_dir(
    db: &PgPool,
    dir: &Path,
    targets: Arc<TargetPolicy>,
) -> anyhow::Result<SeedReport> {
    anyhow::ensure!(
        dir.is_dir(),
        "seed directory {} does not exist",
        dir.display()
    );
    let users = seed_file::<UserRows>(db, &dir.join("users.csv"), (), |_| {}).await?;
    if users.rows > 0 {
        move_sequence_past_ids(db, SequenceOf::Users).await?;
    }
    let urls = seed_file::<UrlRows>(db, &dir.join("urls.csv"), targets, |_| {}).await?;
    if urls.rows > 0 {
        move_sequence_past_ids(db, SequenceOf::Urls).await?;
    }
    let mut redirected = BTreeSet::new();
    let events = seed_file::<EventRows>(db, &dir.join("events.csv"), (), |batch: &EventBatch| {
        redirected.extend(batch.redirect_url_ids());
    })
    .await?;
    if events.rows > 0 {
        move_sequence_past_ids(db, SequenceOf::Events).await?;
    }
    if !redirected.is_empty() {
        let links = redirected.len();
        recompute_rollups(db, &redirected.into_iter().collect::<Vec<_>>()).await?;
        tracing::info!(links, "redirect rollups recomputed");
    }
    Ok(SeedReport {
        users,
        urls,
        events,
    })
}

// ---------------------------------------------------------------------------
// The pipeline
// ---------------------------------------------------------------------------

/// One CSV shape: its columns, how a record becomes a batch row, and how a
/// batch is inserted.
trait CsvTable: Sized + Send + 'static {
    /// File kind in logs (`users`).
    const NAME: &'static str;
    /// The documented header, quoted in error messages.
    const HEADER: &'static str;
    type Batch: Default + Send + 'static;
    /// What checking a row needs beyond the row (the target policy).
    type Rules: Send + 'static;

    /// Finds the columns; `Err` names what is missing.
    fn from_header(header: &Header, rules: Self::Rules) -> Result<Self, String>;
    /// Checks one record and appends it to `batch`; `Err` says what is wrong.
    fn push(&self, record: &ByteRecord, batch: &mut Self::Batch) -> Result<(), String>;
    fn len(batch: &Self::Batch) -> usize;
    /// Inserts a batch, skipping conflicts; returns the rows inserted.
    fn insert<'c>(
        conn: &'c mut PgConnection,
        batch: &'c Self::Batch,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c;
}

/// A batch of valid rows and how many data rows had been read with it.
struct Chunk<B> {
    rows_read: u64,
    batch: B,
}

/// What the parser saw in a whole file.
#[derive(Debug, Default)]
struct ParseOutcome {
    /// Data rows read.
    rows: u64,
    /// Rows rejected before reaching the database.
    invalid: u64,
    /// The first [`MAX_REPORTED_PROBLEMS`] of them.
    problems: Vec<RowProblem>,
}

#[derive(Debug)]
enum ParseFailure {
    /// No usable header; the message names the expected one.
    Header(String),
    /// The input could not be read (I/O error, stream broken or over its cap).
    Read(std::io::Error),
    /// The receiving side went away.
    Cancelled,
}

/// A header row: trimmed, lower-cased column names.
struct Header(Vec<String>);

impl Header {
    fn from_record(record: &ByteRecord) -> Self {
        let names = record
            .iter()
            .enumerate()
            .map(|(i, raw)| {
                let name = String::from_utf8_lossy(raw);
                let name = if i == 0 {
                    name.trim_start_matches('\u{feff}')
                } else {
                    &name
                };
                name.trim().to_ascii_lowercase()
            })
            .collect();
        Header(names)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn find(&self, column: &str) -> Option<usize> {
        self.0.iter().position(|c| c == column)
    }

    /// Positions of `required` columns, or a message naming the missing ones.
    fn require<const N: usize>(
        &self,
        required: [&str; N],
        expected: &str,
    ) -> Result<[usize; N], String> {
        let found = required.map(|c| self.find(c));
        let missing: Vec<&str> = required
            .iter()
            .zip(&found)
            .filter(|(_, f)| f.is_none())
            .map(|(c, _)| *c)
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "CSV header must name the columns `{expected}`; missing: {}",
                missing.join(", ")
            ));
        }
        Ok(found.map(|f| f.unwrap_or_default()))
    }
}

/// Reads a whole CSV, sending batches of valid rows to `tx`. Runs on a
/// blocking thread.
fn parse_csv<T: CsvTable, R: Read>(
    input: R,
    batch_rows: usize,
    rules: T::Rules,
    tx: &mpsc::Sender<Chunk<T::Batch>>,
) -> Result<ParseOutcome, ParseFailure> {
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(Trim::All)
        .buffer_capacity(64 * 1024)
        .from_reader(input);
    let mut record = ByteRecord::new();
    let header = match reader.read_byte_record(&mut record) {
        Ok(true) => Header::from_record(&record),
        Ok(false) => {
            return Err(ParseFailure::Header(format!(
                "empty CSV: expected a header line `{}`",
                T::HEADER
            )));
        }
        Err(e) => return Err(read_failure(e)),
    };
    let table = T::from_header(&header, rules).map_err(ParseFailure::Header)?;

    let mut outcome = ParseOutcome::default();
    let mut batch = T::Batch::default();
    loop {
        if tx.is_closed() {
            return Err(ParseFailure::Cancelled);
        }
        let (line, checked) = match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                let line = record.position().map_or(0, csv::Position::line);
                let checked = if record.len() == header.len() {
                    table.push(&record, &mut batch)
                } else {
                    Err(format!(
                        "expected {} fields, found {}",
                        header.len(),
                        record.len()
                    ))
                };
                (line, checked)
            }
            Err(e) if e.is_io_error() => return Err(read_failure(e)),
            Err(e) => {
                let line = e.position().map_or(0, csv::Position::line);
                (line, Err(format!("unreadable CSV row: {e}")))
            }
        };
        outcome.rows += 1;
        if let Err(problem) = checked {
            outcome.invalid += 1;
            if outcome.problems.len() < MAX_REPORTED_PROBLEMS {
                outcome.problems.push(RowProblem { line, problem });
            }
        }
        if T::len(&batch) >= batch_rows {
            let chunk = Chunk {
                rows_read: outcome.rows,
                batch: std::mem::take(&mut batch),
            };
            tx.blocking_send(chunk)
                .map_err(|_| ParseFailure::Cancelled)?;
        }
    }
    if T::len(&batch) > 0 {
        tx.blocking_send(Chunk {
            rows_read: outcome.rows,
            batch,
        })
        .map_err(|_| ParseFailure::Cancelled)?;
    }
    Ok(outcome)
}

fn read_failure(e: csv::Error) -> ParseFailure {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => ParseFailure::Read(e),
        other => ParseFailure::Read(std::io::Error::other(format!("{other:?}"))),
    }
}

/// Passes the upload through, failing it (and raising `too_large`) once more
/// than `max_bytes` have gone by.
fn cap_stream<S>(
    body: S,
    max_bytes: usize,
    too_large: Arc<AtomicBool>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin + 'static
where
    S: futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Unpin + 'static,
{
    let mut seen = 0usize;
    body.map(move |chunk| {
        let chunk = chunk?;
        seen = seen.saturating_add(chunk.len());
        if seen > max_bytes {
            too_large.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other(format!(
                "CSV upload exceeds {max_bytes} bytes"
            )));
        }
        Ok(chunk)
    })
}

/// Loads one seed file batch by batch (autocommit); an absent file is an
/// empty report.
async fn seed_file<T: CsvTable>(
    db: &PgPool,
    path: &Path,
    rules: T::Rules,
    mut on_batch: impl FnMut(&T::Batch) + Send,
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
        on_batch(&chunk.batch);
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

// ---------------------------------------------------------------------------
// Field parsing
// ---------------------------------------------------------------------------

/// A field as text (`Ok("")` when empty); PostgreSQL text cannot hold NUL.
fn text<'r>(record: &'r ByteRecord, idx: usize, column: &str) -> Result<&'r str, String> {
    let raw = record.get(idx).unwrap_or_default();
    let s = std::str::from_utf8(raw).map_err(|_| format!("{column}: not valid UTF-8"))?;
    if s.contains('\0') {
        return Err(format!("{column}: contains a NUL character"));
    }
    Ok(s)
}

/// An optional column's field: `None` when the column is absent or the cell empty.
fn optional<'r>(
    record: &'r ByteRecord,
    idx: Option<usize>,
    column: &str,
) -> Result<Option<&'r str>, String> {
    match idx {
        None => Ok(None),
        Some(i) => text(record, i, column).map(|s| (!s.is_empty()).then_some(s)),
    }
}

/// A required, non-empty field.
fn required<'r>(record: &'r ByteRecord, idx: usize, column: &str) -> Result<&'r str, String> {
    match text(record, idx, column)? {
        "" => Err(format!("{column}: must not be empty")),
        s => Ok(s),
    }
}

/// A value for a column with a B-tree index.
fn indexed<'s>(s: &'s str, column: &str) -> Result<&'s str, String> {
    if s.len() > MAX_INDEXED_BYTES {
        return Err(format!("{column}: longer than {MAX_INDEXED_BYTES} bytes"));
    }
    Ok(s)
}

/// A positive integer id up to [`MAX_IMPORTED_ID`] (a spreadsheet's `12.0`
/// is accepted as 12).
fn parse_id(s: &str, column: &str) -> Result<i64, String> {
    let digits = s.strip_suffix(".0").unwrap_or(s);
    match digits.parse::<i64>() {
        Ok(id) if id > MAX_IMPORTED_ID => Err(format!(
            "{column}: must be at most {MAX_IMPORTED_ID}, got {:?}",
            clip(s)
        )),
        Ok(id) if id > 0 => Ok(id),
        _ => Err(format!(
            "{column}: must be a positive integer, got {:?}",
            clip(s)
        )),
    }
}

fn parse_optional_id(s: Option<&str>, column: &str) -> Result<Option<i64>, String> {
    s.map(|s| parse_id(s, column)).transpose()
}

/// A timestamp the contract accepts, within years 1–9999 (PostgreSQL's
/// range is narrower than chrono's).
fn parse_time(s: &str, column: &str) -> Result<DateTime<Utc>, String> {
    match shortline_shared::wire::parse_timestamp(s) {
        Some(t) if (1..=9999).contains(&t.year()) => Ok(t),
        _ => Err(format!(
            "{column}: must be a timestamp like 2025-09-19 22:25:05, got {:?}",
            clip(s)
        )),
    }
}

fn parse_optional_time(s: Option<&str>, column: &str) -> Result<Option<DateTime<Utc>>, String> {
    s.map(|s| parse_time(s, column)).transpose()
}

/// `True`/`False` as the seed files write them, and the usual spellings.
fn parse_bool(s: &str, column: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" => Ok(true),
        "false" | "f" | "0" | "no" => Ok(false),
        _ => Err(format!(
            "{column}: must be True or False, got {:?}",
            clip(s)
        )),
    }
}

/// `details` as a JSON object: objects as given, other JSON values and
/// non-JSON text wrapped as `{"value": …}`, empty as `{}`. `Err` when the
/// JSON holds a NUL (`\u0000`), which `jsonb` rejects.
fn details_object(raw: &str) -> Result<Value, String> {
    if raw.is_empty() {
        return Ok(Value::Object(serde_json::Map::new()));
    }
    let value = match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        Ok(other) => serde_json::json!({ "value": other }),
        Err(_) => serde_json::json!({ "value": raw }),
    };
    if holds_nul(&value) {
        return Err("details: contains a NUL character".into());
    }
    Ok(value)
}

/// The ULID of a seeded event: its timestamp, then a fixed tag and the CSV
/// id in the 80 "random" bits. Unique per CSV id and the same on every run.
pub fn seed_event_id(id: i64, at: DateTime<Utc>) -> ulid::Ulid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    ulid::Ulid::from_parts(ms, SEED_EVENT_TAG | u128::from(id.unsigned_abs()))
}

/// The start of a value, for error messages.
fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

// ---------------------------------------------------------------------------
// users.csv
// ---------------------------------------------------------------------------

/// Column positions in a users CSV.
struct UserRows {
    id: Option<usize>,
    username: usize,
    email: usize,
    created_at: Option<usize>,
}

#[derive(Default)]
struct UserBatch {
    ids: Vec<Option<i64>>,
    usernames: Vec<String>,
    emails: Vec<String>,
    created_at: Vec<Option<DateTime<Utc>>>,
}

impl CsvTable for UserRows {
    const NAME: &'static str = "users";
    const HEADER: &'static str = "id,username,email,created_at";
    type Batch = UserBatch;
    type Rules = ();

    fn from_header(header: &Header, (): ()) -> Result<Self, String> {
        let [username, email] = header.require(["username", "email"], Self::HEADER)?;
        Ok(UserRows {
            id: header.find("id"),
            username,
            email,
            created_at: header.find("created_at"),
        })
    }

    fn push(&self, r: &ByteRecord, batch: &mut UserBatch) -> Result<(), String> {
        let id = parse_optional_id(optional(r, self.id, "id")?, "id")?;
        let username = required(r, self.username, "username")?;
        check_user_field_len(username).map_err(|e| format!("username: {e}"))?;
        let email = required(r, self.email, "email")?;
        check_user_field_len(email).map_err(|e| format!("email: {e}"))?;
        if !is_valid_email(email) {
            return Err(format!(
                "email: must be a valid address, got {:?}",
                clip(email)
            ));
        }
        let created_at =
            parse_optional_time(optional(r, self.created_at, "created_at")?, "created_at")?;
        batch.ids.push(id);
        batch.usernames.push(username.to_owned());
        batch.emails.push(email.to_owned());
        batch.created_at.push(created_at);
        Ok(())
    }

    fn len(batch: &UserBatch) -> usize {
        batch.ids.len()
    }

    async fn insert(conn: &mut PgConnection, b: &UserBatch) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO users (id, username, email, created_at)
             SELECT COALESCE(r.id, nextval(pg_get_serial_sequence('users', 'id')::regclass)),
                    r.username, r.email, COALESCE(r.created_at, now())
             FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[])
                  AS r(id, username, email, created_at)
             ON CONFLICT DO NOTHING",
        )
        .bind(&b.ids)
        .bind(&b.usernames)
        .bind(&b.emails)
        .bind(&b.created_at)
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }
}

// ---------------------------------------------------------------------------
// urls.csv
// ---------------------------------------------------------------------------

/// Column positions in a urls CSV, and the target policy.
struct UrlRows {
    targets: Arc<TargetPolicy>,
    id: Option<usize>,
    user_id: usize,
    short_code: usize,
    original_url: usize,
    title: Option<usize>,
    is_active: Option<usize>,
    created_at: Option<usize>,
    updated_at: Option<usize>,
}

#[derive(Default)]
struct UrlBatch {
    ids: Vec<Option<i64>>,
    user_ids: Vec<i64>,
    short_codes: Vec<String>,
    original_urls: Vec<String>,
    titles: Vec<Option<String>>,
    is_active: Vec<bool>,
    created_at: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<Option<DateTime<Utc>>>,
}

impl CsvTable for UrlRows {
    const NAME: &'static str = "urls";
    const HEADER: &'static str =
        "id,user_id,short_code,original_url,title,is_active,created_at,updated_at";
    type Batch = UrlBatch;
    type Rules = Arc<TargetPolicy>;

    fn from_header(h: &Header, targets: Arc<TargetPolicy>) -> Result<Self, String> {
        let [user_id, short_code, original_url] =
            h.require(["user_id", "short_code", "original_url"], Self::HEADER)?;
        Ok(UrlRows {
            targets,
            id: h.find("id"),
            user_id,
            short_code,
            original_url,
            title: h.find("title"),
            is_active: h.find("is_active"),
            created_at: h.find("created_at"),
            updated_at: h.find("updated_at"),
        })
    }

    fn push(&self, r: &ByteRecord, batch: &mut UrlBatch) -> Result<(), String> {
        let id = parse_optional_id(optional(r, self.id, "id")?, "id")?;
        let user_id = parse_id(required(r, self.user_id, "user_id")?, "user_id")?;
        let short_code = required(r, self.short_code, "short_code")?;
        check_custom(short_code).map_err(|e| format!("short_code: {e}"))?;
        let original_url = required(r, self.original_url, "original_url")?;
        self.targets
            .check(original_url)
            .map_err(|e| format!("original_url: {e}"))?;
        let title = optional(r, self.title, "title")?;
        let is_active = optional(r, self.is_active, "is_active")?
            .map(|s| parse_bool(s, "is_active"))
            .transpose()?
            .unwrap_or(true);
        let created_at =
            parse_optional_time(optional(r, self.created_at, "created_at")?, "created_at")?;
        let updated_at =
            parse_optional_time(optional(r, self.updated_at, "updated_at")?, "updated_at")?;
        batch.ids.push(id);
        batch.user_ids.push(user_id);
        batch.short_codes.push(short_code.to_owned());
        batch.original_urls.push(original_url.to_owned());
        batch.titles.push(title.map(str::to_owned));
        batch.is_active.push(is_active);
        batch.created_at.push(created_at);
        batch.updated_at.push(updated_at);
        Ok(())
    }

    fn len(batch: &UrlBatch) -> usize {
        batch.ids.len()
    }

    async fn insert(conn: &mut PgConnection, b: &UrlBatch) -> Result<u64, sqlx::Error> {
        let done = sqlx::query(
            "INSERT INTO urls (id, user_id, short_code, original_url, title, is_active, created_at, updated_at)
             SELECT COALESCE(r.id, nextval(pg_get_serial_sequence('urls', 'id')::regclass)),
                    r.user_id, r.short_code, r.original_url, r.title, r.is_active,
                    COALESCE(r.created_at, now()), COALESCE(r.updated_at, r.created_at, now())
             FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::boolean[],
                         $7::timestamptz[], $8::timestamptz[])
                  AS r(id, user_id, short_code, original_url, title, is_active, created_at, updated_at)
             ON CONFLICT DO NOTHING",
        )
        .bind(&b.ids)
        .bind(&b.user_ids)
        .bind(&b.short_codes)
        .bind(&b.original_urls)
        .bind(&b.titles)
        .bind(&b.is_active)
        .bind(&b.created_at)
        .bind(&b.updated_at)
        .execute(conn)
        .await?;
        Ok(done.rows_affected())
    }
}

// ---------------------------------------------------------------------------
// events.csv
// ---------------------------------------------------------------------------

/// Column positions in an events CSV.
struct EventRows {
    id: usize,
    url_id: Option<usize>,
    user_id: Option<usize>,
    event_type: usize,
    timestamp: usize,
    details: Option<usize>,
}

#[derive(Default)]
struct EventBatch {
    ids: Vec<i64>,
    event_ids: Vec<String>,
    url_ids: Vec<Option<i64>>,
    user_ids: Vec<Option<i64>>,
    event_types: Vec<String>,
    occurred_at: Vec<DateTime<Utc>>,
    details: Vec<String>,
    // Breakdown keys (used for `redirect` rows only).
    referrers: Vec<String>,
    browsers: Vec<String>,
    oses: Vec<String>,
    devices: Vec<&'static str>,
    is_bots: Vec<bool>,
}

impl EventBatch {
    /// Links this batch holds `redirect` events for.
    fn redirect_url_ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.event_types
            .iter()
            .zip(&self.url_ids)
            .filter(|(t, _)| *t == "redirect")
            .filter_map(|(_, url_id)| *url_id)
    }
}

impl CsvTable for EventRows {
    const NAME: &'static str = "events";
    const HEADER: &'static str = "id,url_id,user_id,event_type,timestamp,details";
    type Batch = EventBatch;
    type Rules = ();

    fn from_header(h: &Header, (): ()) -> Result<Self, String> {
        let [id, event_type, timestamp] =
            h.require(["id", "event_type", "timestamp"], Self::HEADER)?;
        Ok(EventRows {
            id,
            url_id: h.find("url_id"),
            user_id: h.find("user_id"),
            event_type,
            timestamp,
            details: h.find("details"),
        })
    }

    fn push(&self, r: &ByteRecord, batch: &mut EventBatch) -> Result<(), String> {
        let id = parse_id(required(r, self.id, "id")?, "id")?;
        let url_id = parse_optional_id(optional(r, self.url_id, "url_id")?, "url_id")?;
        let user_id = parse_optional_id(optional(r, self.user_id, "user_id")?, "user_id")?;
        let event_type = indexed(required(r, self.event_type, "event_type")?, "event_type")?;
        let at = parse_time(required(r, self.timestamp, "timestamp")?, "timestamp")?;
        let details = details_object(optional(r, self.details, "details")?.unwrap_or_default())?;
        let (agent, referrer) = if event_type == "redirect" {
            shortline_shared::breakdown::of_details(&details)
        } else {
            (shortline_shared::breakdown::classify(None), String::new())
        };
        batch.referrers.push(referrer);
        batch.browsers.push(agent.browser);
        batch.oses.push(agent.os);
        batch.devices.push(agent.device);
        batch.is_bots.push(agent.is_bot);
        batch.ids.push(id);
        batch.event_ids.push(seed_event_id(id, at).to_string());
        batch.url_ids.push(url_id);
        batch.user_ids.push(user_id);
        batch.event_types.push(event_type.to_owned());
        batch.occurred_at.push(at);
        batch.details.push(details.to_string());
        Ok(())
    }

    fn len(batch: &EventBatch) -> usize {
        batch.ids.len()
    }

    async fn insert(conn: &mut PgConnection, b: &EventBatch) -> Result<u64, sqlx::Error> {
        let inserted: i64 = sqlx::query_scalar(
            "WITH input AS (
                 SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                                      $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::text[],
                                      $11::text[], $12::bool[]) WITH ORDINALITY
                      AS r(id, event_id, url_id, user_id, event_type, occurred_at, details,
                           referrer, browser, os, device, is_bot, n)
             ),
             ins AS (
                 INSERT INTO events (id, event_id, url_id, user_id, event_type, occurred_at, details)
                 SELECT id, event_id, url_id, user_id, event_type, occurred_at, details::jsonb
                 FROM input ORDER BY n
                 ON CONFLICT DO NOTHING
                 RETURNING id
             ),
             -- A row repeated in the batch is inserted once (the first wins),
             -- so it gets one backlog row, from that first row.
             first AS (
                 SELECT DISTINCT ON (id) * FROM input ORDER BY id, n
             ),
             backlog AS (
                 INSERT INTO rollup_backlog (url_id, occurred_at, referrer, browser, os, device, is_bot)
                 SELECT f.url_id, f.occurred_at, f.referrer, f.browser, f.os, f.device, f.is_bot
                 FROM first f JOIN ins USING (id)
                 WHERE f.event_type = 'redirect' AND f.url_id IS NOT NULL
             )
             SELECT count(*) FROM ins",
        )
        .bind(&b.ids)
        .bind(&b.event_ids)
        .bind(&b.url_ids)
        .bind(&b.user_ids)
        .bind(&b.event_types)
        .bind(&b.occurred_at)
        .bind(&b.details)
        .bind(&b.referrers)
        .bind(&b.browsers)
        .bind(&b.oses)
        .bind(&b.devices)
        .bind(&b.is_bots)
        .fetch_one(conn)
        .await?;
        Ok(inserted.max(0) as u64)
    }
}

/// Rewrites `link_stats` and `link_stats_hourly` for `url_ids` from their
/// `redirect` events (totals, last redirect, per-hour counts in UTC). The
/// referrer and user-agent breakdowns are not rewritten: the inserted events
/// reach them through `rollup_backlog`.
async fn recompute_rollups(db: &PgPool, url_ids: &[i64]) -> Result<(), sqlx::Error> {
    for ids in url_ids.chunks(SEED_BATCH_ROWS) {
        let mut tx = db.begin().await?;
        sqlx::query(
            "INSERT INTO link_stats (url_id, redirect_count, last_redirect_at)
             SELECT url_id, count(*), max(occurred_at) FROM events
             WHERE event_type = 'redirect' AND url_id = ANY($1::bigint[])
             GROUP BY url_id
             ON CONFLICT (url_id) DO UPDATE
             SET redirect_count = EXCLUDED.redirect_count, last_redirect_at = EXCLUDED.last_redirect_at",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO link_stats_hourly (url_id, hour, redirect_count)
             SELECT url_id, date_trunc('hour', occurred_at, 'UTC'), count(*) FROM events
             WHERE event_type = 'redirect' AND url_id = ANY($1::bigint[])
             GROUP BY 1, 2
             ON CONFLICT (url_id, hour) DO UPDATE SET redirect_count = EXCLUDED.redirect_count",
        )
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Id sequences
// ---------------------------------------------------------------------------

/// A table whose `id` sequence an import moves.
#[derive(Debug, Clone, Copy)]
enum SequenceOf {
    Users,
    Urls,
    Events,
}

impl SequenceOf {
    /// `LOCK TABLE` statement for the table.
    fn lock_sql(self) -> &'static str {
        match self {
            SequenceOf::Users => "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE",
            SequenceOf::Urls => "LOCK TABLE urls IN SHARE ROW EXCLUSIVE MODE",
            SequenceOf::Events => "LOCK TABLE events IN SHARE ROW EXCLUSIVE MODE",
        }
    }

    /// Moves the sequence to the largest id up to [`MAX_IMPORTED_ID`]
    /// (written out in the SQL), never backwards.
    fn setval_sql(self) -> &'static str {
        match self {
            SequenceOf::Users => {
                "SELECT setval(s.seq, GREATEST((SELECT max(id) FROM users WHERE id <= 9007199254740991), pg_sequence_last_value(s.seq), 1))
                 FROM (SELECT pg_get_serial_sequence('users', 'id')::regclass AS seq) s"
            }
            SequenceOf::Urls => {
                "SELECT setval(s.seq, GREATEST((SELECT max(id) FROM urls WHERE id <= 9007199254740991), pg_sequence_last_value(s.seq), 1))
                 FROM (SELECT pg_get_serial_sequence('urls', 'id')::regclass AS seq) s"
            }
            SequenceOf::Events => {
                "SELECT setval(s.seq, GREATEST((SELECT max(id) FROM events WHERE id <= 9007199254740991), pg_sequence_last_value(s.seq), 1))
                 FROM (SELECT pg_get_serial_sequence('events', 'id')::regclass AS seq) s"
            }
        }
    }
}

/// Moves a table's id sequence past its largest id, exactly: a short
/// transaction takes a lock that waits for in-flight writers and holds off
/// new inserts (which draw from the sequence) while it reads `max(id)` and
/// sets the sequence, which never moves backwards. If the lock is not granted
/// within 2 s (a long writer), it falls back to the same `setval` unlocked,
/// where a concurrent `nextval` racing the one statement could still be
/// handed an id that is about to be reused.
async fn move_sequence_past_ids(db: &PgPool, table: SequenceOf) -> Result<i64, sqlx::Error> {
    let mut tx = db.begin().await?;
    sqlx::query("SET LOCAL lock_timeout = '2s'")
        .execute(&mut *tx)
        .await?;
    match sqlx::query(table.lock_sql()).execute(&mut *tx).await {
        Ok(_) => {
            let value = sqlx::query_scalar::<_, i64>(table.setval_sql())
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(value)
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            drop(tx);
            tracing::warn!(
                ?table,
                "id sequence lock not granted in 2 s; moving the sequence without it"
            );
            let mut conn = db.acquire().await?;
            bump_sequence_unlocked(&mut conn, table).await
        }
        Err(e) => Err(e),
    }
}

/// The same `setval` without the lock (inside the caller's transaction,
/// where `max(id)` includes its own uncommitted rows).
async fn bump_sequence_unlocked(
    conn: &mut PgConnection,
    table: SequenceOf,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>(table.setval_sql())
        .fetch_one(conn)
        .await
}

// ---------------------------------------------------------------------------
// Tests (pure parsing; the database paths are covered by the API's
// integration tests)
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `csv` on a thread the way the importers do; returns the outcome
    /// and every batch sent.
    fn parse_all<T: CsvTable>(
        csv: &str,
        batch_rows: usize,
    ) -> (Result<ParseOutcome, ParseFailure>, Vec<Chunk<T::Batch>>)
    where
        T::Batch: 'static,
        T::Rules: Default,
    {
        let (tx, mut rx) = mpsc::channel(1);
        let input = csv.as_bytes().to_vec();
        let parser = std::thread::spawn(move || {
            parse_csv::<T, _>(
                std::io::Cursor::new(input),
                batch_rows,
                T::Rules::default(),
                &tx,
            )
        });
        let mut chunks = Vec::new();
        while let Some(c) = rx.blocking_recv() {
            chunks.push(c);
        }
        (parser.join().expect("parser thread"), chunks)
    }

    #[test]
    fn users_header_any_order_extra_columns_and_optional_id() {
        let csv = "\u{feff}Email , nickname,username\nann@x.io,a,ann\nbob@x.io,b,bob\n";
        let (outcome, chunks) = parse_all::<UserRows>(csv, 10);
        let outcome = outcome.expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (2, 0));
        assert_eq!(chunks.len(), 1);
        let b = &chunks[0].batch;
        assert_eq!(b.usernames, ["ann", "bob"]);
        assert_eq!(b.emails, ["ann@x.io", "bob@x.io"]);
        assert_eq!(b.ids, [None, None]);
        assert_eq!(b.created_at, [None, None]);
    }

    #[test]
    fn users_header_problems() {
        for csv in [
            "",
            "id,username,created_at\n1,a,2025-01-01 00:00:00\n",
            "id,email\n",
        ] {
            match parse_all::<UserRows>(csv, 10).0 {
                Err(ParseFailure::Header(m)) => {
                    assert!(m.contains("id,username,email,created_at"), "{m}")
                }
                other => panic!("{csv:?}: {other:?}"),
            }
        }
        let (outcome, chunks) = parse_all::<UserRows>("id,username,email,created_at\n", 10);
        assert_eq!(outcome.expect("header only").rows, 0);
        assert!(chunks.is_empty());
    }

    #[test]
    fn invalid_user_rows_are_counted_reported_and_skipped() {
        let csv = "id,username,email,created_at\n\
                   1,ann,ann@x.io,2025-09-19 22:25:05\n\
                   2,bob,not-an-email,2025-09-19 22:25:05\n\
                   x,cat,cat@x.io,\n\
                   4,,dan@x.io,\n\
                   5,eve,eve@x.io,yesterday\n\
                   6,fay,fay@x.io\n\
                   \"7\",\"g,h\",gh@x.io,2025-09-19T22:25:05\n";
        let (outcome, chunks) = parse_all::<UserRows>(csv, 10);
        let outcome = outcome.expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (7, 5));
        let lines: Vec<u64> = outcome.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 5, 6, 7]);
        assert!(
            outcome.problems[0].problem.starts_with("email:"),
            "{:?}",
            outcome.problems[0]
        );
        assert!(outcome.problems[1].problem.starts_with("id:"));
        assert!(outcome.problems[2].problem.starts_with("username:"));
        assert!(outcome.problems[3].problem.starts_with("created_at:"));
        assert_eq!(outcome.problems[4].problem, "expected 4 fields, found 3");
        let b = &chunks[0].batch;
        assert_eq!(b.ids, [Some(1), Some(7)]);
        assert_eq!(b.usernames, ["ann", "g,h"]);
    }

    #[test]
    fn batches_split_and_carry_rows_read() {
        let mut csv = String::from("username,email\n");
        for i in 0..25 {
            csv.push_str(&format!("u{i},u{i}@x.io\n"));
        }
        csv.push_str("bad,bad\n");
        let (outcome, chunks) = parse_all::<UserRows>(&csv, 10);
        assert_eq!(outcome.expect("parses").rows, 26);
        let sizes: Vec<usize> = chunks.iter().map(|c| UserRows::len(&c.batch)).collect();
        assert_eq!(sizes, [10, 10, 5]);
        assert_eq!(chunks.last().map(|c| c.rows_read), Some(26));
    }

    #[test]
    fn problems_are_capped() {
        let mut csv = String::from("username,email\n");
        for _ in 0..150 {
            csv.push_str("x,nope\n");
        }
        let outcome = parse_all::<UserRows>(&csv, 10).0.expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (150, 150));
        assert_eq!(outcome.problems.len(), MAX_REPORTED_PROBLEMS);
    }

    #[test]
    fn url_rows() {
        let csv = "id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n\
                   1,1,ENE3UF,https://relay.cloud/a,Launch deck,False,2025-08-18 05:25:03,2025-10-08 12:48:37\n\
                   2,150,MTOGkL,https://seeded.app/b,,true,2025-10-30 20:22:45,\n\
                   3,1,users,https://x.io,,True,,\n\
                   4,1,abc123,javascript:alert(1),,True,,\n\
                   5,1,abc124,https://x.io,,maybe,,\n";
        let (outcome, chunks) = parse_all::<UrlRows>(csv, 10);
        let outcome = outcome.expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (5, 3));
        let b = &chunks[0].batch;
        assert_eq!(b.ids, [Some(1), Some(2)]);
        assert_eq!(b.titles, [Some("Launch deck".to_owned()), None]);
        assert_eq!(b.is_active, [false, true]);
        assert!(b.updated_at[0].is_some() && b.updated_at[1].is_none());
    }

    #[test]
    fn event_rows_and_ids() {
        let csv = "id,url_id,user_id,event_type,timestamp,details\n\
                   1,1,1,created,2025-08-18 05:25:03,\"{\"\"short_code\"\":\"\"ENE3UF\"\"}\"\n\
                   2,1,,redirect,2025-08-18 06:00:00,\"[1,2]\"\n\
                   3,,,redirect,2025-08-18 06:00:00,not json\n\
                   4,1,1,,2025-08-18 06:00:00,{}\n";
        let (outcome, chunks) = parse_all::<EventRows>(csv, 10);
        let outcome = outcome.expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (4, 1));
        let b = &chunks[0].batch;
        assert_eq!(
            b.details,
            [
                r#"{"short_code":"ENE3UF"}"#,
                r#"{"value":[1,2]}"#,
                r#"{"value":"not json"}"#
            ]
        );
        assert_eq!(b.user_ids, [Some(1), None, None]);
        assert_eq!(b.redirect_url_ids().collect::<Vec<_>>(), [1]);
        assert_eq!(
            b.event_ids[0],
            seed_event_id(1, b.occurred_at[0]).to_string()
        );
        assert_eq!(b.event_ids[0].len(), 26);
    }

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

    #[test]
    fn field_rules() {
        assert_eq!(parse_id("12", "id"), Ok(12));
        assert_eq!(parse_id("12.0", "id"), Ok(12));
        for bad in [
            "0",
            "-3",
            "1.5",
            "x",
            "99999999999999999999",
            "9223372036854775807",
            "9007199254740992",
        ] {
            assert!(parse_id(bad, "id").is_err(), "{bad}");
        }
        assert_eq!(parse_id("9007199254740991", "id"), Ok(MAX_IMPORTED_ID));
        for table in [SequenceOf::Users, SequenceOf::Urls, SequenceOf::Events] {
            assert!(
                table
                    .setval_sql()
                    .contains(&format!("id <= {MAX_IMPORTED_ID})")),
                "{table:?}"
            );
        }
        for (s, v) in [
            ("True", true),
            ("False", false),
            ("true", true),
            ("0", false),
            ("1", true),
        ] {
            assert_eq!(parse_bool(s, "b"), Ok(v), "{s}");
        }
        assert!(parse_bool("maybe", "b").is_err());
        assert!(parse_time("+20000-01-01T00:00:00", "t").is_err());
        assert_eq!(
            details_object("").map(|v| v.to_string()),
            Ok("{}".to_owned())
        );
        assert_eq!(
            details_object("3").map(|v| v.to_string()),
            Ok(r#"{"value":3}"#.to_owned())
        );
        assert!(details_object(r#"{"a":"\u0000"}"#).is_err());
        assert!(indexed(&"x".repeat(MAX_INDEXED_BYTES + 1), "event_type").is_err());
    }

    #[test]
    fn nul_and_bad_utf8_are_row_problems() {
        let mut csv = b"username,email\n".to_vec();
        csv.extend_from_slice(b"a\0b,ab@x.io\n\xff\xfe,cd@x.io\nok,ok@x.io\n");
        let (tx, mut rx) = mpsc::channel(4);
        let outcome =
            parse_csv::<UserRows, _>(std::io::Cursor::new(csv), 10, (), &tx).expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (3, 2));
        let chunk = rx.try_recv().expect("one batch");
        assert_eq!(chunk.batch.usernames, ["ok"]);
    }
}
