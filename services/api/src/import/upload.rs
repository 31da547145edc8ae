//! `POST /users/bulk`: the multipart upload ([`CsvUpload`], which hands the
//! `file` field to the importer as an owned byte stream) and the users CSV
//! streamed into `users` in one transaction ([`import_users`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::OperationInput;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{FromRequest, Multipart, Request};
use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::pipeline::{CHANNEL_BATCHES, Chunk, CsvTable, ParseFailure, parse_csv};
use super::repo::{SequenceOf, bump_sequence_unlocked, move_sequence_past_ids};
use super::report::BulkReport;
use super::tables::{UserBatch, UserRows};
use crate::error::ApiError;

/// Rows per insert for `POST /users/bulk`.
const UPLOAD_BATCH_ROWS: usize = 5_000;

/// The bytes of an upload, as the importer reads them.
pub type UploadStream = BoxStream<'static, Result<bytes::Bytes, std::io::Error>>;

/// A `multipart/form-data` upload whose `file` field holds a CSV. A body
/// that is not multipart is refused only when the file is asked for
/// ([`CsvUpload::import_with`]), so the handler checks access first.
pub struct CsvUpload(Result<Multipart, MultipartRejection>);

impl<S: Send + Sync> FromRequest<S> for CsvUpload {
    type Rejection = std::convert::Infallible;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(CsvUpload(Multipart::from_request(req, state).await))
    }
}

impl OperationInput for CsvUpload {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <Multipart as OperationInput>::operation_input(ctx, operation);
    }
}

impl CsvUpload {
    /// Finds the `file` field (other fields are skipped) and runs `import`
    /// on its bytes as they arrive: the field is pumped into a small channel
    /// beside it, as the importer parses on a blocking thread and needs an
    /// owned stream. No multipart body, a malformed one or no `file` field
    /// is a 400.
    pub async fn import_with<F, Fut, T>(self, import: F) -> Result<T, ApiError>
    where
        F: FnOnce(UploadStream) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut multipart = self.0.map_err(|_| {
            ApiError::BadRequest("expected a multipart/form-data upload with a `file` field".into())
        })?;
        loop {
            let field = multipart
                .next_field()
                .await
                .map_err(|e| ApiError::BadRequest(format!("malformed multipart body: {e}")))?
                .ok_or_else(|| ApiError::BadRequest("missing `file` field (a users CSV)".into()))?;
            if field.name() != Some("file") {
                continue;
            }
            let (tx, rx) = mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(8);
            let pump = async move {
                let mut field = field;
                while let Some(chunk) = field.next().await {
                    let chunk = chunk.map_err(std::io::Error::other);
                    let failed = chunk.is_err();
                    if tx.send(chunk).await.is_err() || failed {
                        break;
                    }
                }
            };
            let body =
                futures::stream::unfold(
                    rx,
                    |mut rx| async move { rx.recv().await.map(|c| (c, rx)) },
                )
                .boxed();
            let (_, imported) = tokio::join!(pump, import(body));
            return imported;
        }
    }
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
