//! Unpaged lists, streamed. With neither `page` nor `per_page` a list route
//! returns every match (the contract forbids truncating it), which can be
//! millions of rows: they are never gathered in memory. The domain opens a
//! server-side cursor over the matches ([`DECLARE`] in the list's `repo.rs`,
//! inside a transaction from [`begin`]); [`RowStream`] reads it
//! [`BATCH_ROWS`] rows at a time and serialises each batch straight into one
//! chunk of the JSON array body, so a list costs one batch of rows and one
//! chunk of bytes in memory, whatever the table size.
//!
//! The first batch is read before the response starts, so every error up to
//! there (no database, a bad query) is an ordinary JSON error response. An
//! error after that can only abort the connection (the client sees a
//! truncated body, never a complete-looking one); it is logged.
//!
//! The connection is held while the body streams and released as soon as
//! the last batch is read or the client goes away. Each `FETCH` is its own
//! statement, so the pool's `statement_timeout` bounds each batch, not the
//! whole transfer; a client that stops reading is cut off by
//! `idle_in_transaction_session_timeout` ([`STALLED_CLIENT`]).
//!
//! [`DECLARE`]: https://www.postgresql.org/docs/current/sql-declare.html

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::Stream;
use serde::Serialize;
use shortline_shared::db::Db;
use sqlx::postgres::PgRow;
use sqlx::{FromRow, Postgres, Transaction};

/// The cursor every streamed list reads (one per transaction).
pub const CURSOR: &str = "shortline_rows";
/// Rows per `FETCH`: a chunk of about 64 KiB for typical rows.
pub const BATCH_ROWS: usize = 256;
/// How long the transaction may sit idle (the client not reading) before
/// PostgreSQL ends it and the stream aborts.
pub const STALLED_CLIENT: Duration = Duration::from_secs(60);

/// The text that turns a `SELECT` into the cursor's declaration.
pub fn declare_prefix() -> String {
    format!("DECLARE {CURSOR} NO SCROLL CURSOR FOR ")
}

/// A transaction for a streamed list (through the database breaker): a
/// read-only snapshot ([`crate::paging::snapshot`]), so a count read before
/// the cursor is declared counts exactly the rows it streams.
pub async fn begin(db: &Db) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = crate::paging::snapshot(db).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL idle_in_transaction_session_timeout = {}",
        STALLED_CLIENT.as_millis()
    )))
    .execute(&mut *tx)
    .await?;
    Ok(tx)
}

/// What a list does to each row between reading and writing it (e.g. a
/// link's `short_url`, which is not a column).
pub type Finish<T> = Arc<dyn Fn(&mut T) + Send + Sync>;

/// The rows of an open cursor, as JSON array chunks.
pub struct RowStream<T> {
    tx: Transaction<'static, Postgres>,
    first: Vec<T>,
    finish: Option<Finish<T>>,
    _rows: PhantomData<fn() -> T>,
}

impl<T> RowStream<T>
where
    T: for<'r> FromRow<'r, PgRow> + Serialize + Send + Unpin + 'static,
{
    /// Reads the first batch of the cursor declared in `tx`: errors until
    /// here are the caller's to answer.
    pub async fn start(mut tx: Transaction<'static, Postgres>) -> Result<Self, sqlx::Error> {
        let first = fetch(&mut tx).await?;
        Ok(Self {
            tx,
            first,
            finish: None,
            _rows: PhantomData,
        })
    }

    /// Applies `finish` to every row before it is written.
    pub fn finishing(mut self, finish: impl Fn(&mut T) + Send + Sync + 'static) -> Self {
        self.finish = Some(Arc::new(finish));
        self
    }

    /// The JSON array, one chunk per batch.
    pub fn into_body_stream(self) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
        let finish = self.finish;
        let state = Step::Batch {
            tx: self.tx,
            rows: self.first,
            opened: false,
        };
        futures::stream::unfold(state, move |state| {
            let finish = finish.clone();
            async move { step(state, finish).await }
        })
    }
}

/// The next chunk and what follows it.
async fn step<T>(
    state: Step<T>,
    finish: Option<Finish<T>>,
) -> Option<(Result<Bytes, std::io::Error>, Step<T>)>
where
    T: for<'r> FromRow<'r, PgRow> + Serialize + Send + Unpin + 'static,
{
    let finished = |mut rows: Vec<T>| {
        if let Some(finish) = &finish {
            rows.iter_mut().for_each(|row| finish(row));
        }
        rows
    };
    match state {
        Step::Done => None,
        Step::Fetch { mut tx } => match fetch::<T>(&mut tx).await {
            Ok(rows) => Some(emit(tx, finished(rows), true).await),
            Err(e) => {
                tracing::error!(
                    error = %e,
                    "list stream failed after the response began; aborting it"
                );
                Some((Err(std::io::Error::other(e)), Step::Done))
            }
        },
        Step::Batch { tx, rows, opened } => Some(emit(tx, finished(rows), opened).await),
    }
}

/// Where the stream stands between chunks.
enum Step<T> {
    /// A batch read, to be written.
    Batch {
        tx: Transaction<'static, Postgres>,
        rows: Vec<T>,
        /// Whether `[` has been written.
        opened: bool,
    },
    /// The next batch is to be read.
    Fetch {
        tx: Transaction<'static, Postgres>,
    },
    Done,
}

async fn fetch<T>(tx: &mut Transaction<'static, Postgres>) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    // Not a cached prepared statement: the same `FETCH` text returns other
    // columns for another list's cursor.
    sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(format!(
        "FETCH FORWARD {BATCH_ROWS} FROM {CURSOR}"
    )))
    .persistent(false)
    .fetch_all(&mut **tx)
    .await
}

/// One chunk: the batch's rows (after `[` or `,`), and `]` when the batch
/// was the last (short) one, in which case the transaction ends at once.
async fn emit<T: Serialize>(
    tx: Transaction<'static, Postgres>,
    rows: Vec<T>,
    opened: bool,
) -> (Result<Bytes, std::io::Error>, Step<T>) {
    let mut out = BytesMut::with_capacity(rows.len() * 256 + 2).writer();
    let mut first = !opened;
    if first {
        out.get_mut().put_u8(b'[');
    }
    for row in &rows {
        if !first {
            out.get_mut().put_u8(b',');
        }
        first = false;
        if let Err(e) = serde_json::to_writer(&mut out, row) {
            tracing::error!(error = %e, "list row not serialisable; aborting the list");
            return (Err(std::io::Error::other(e)), Step::Done);
        }
    }
    let last = rows.len() < BATCH_ROWS;
    if last {
        out.get_mut().put_u8(b']');
        // Read-only: nothing to keep; the connection goes back to the pool.
        if let Err(e) = tx.rollback().await {
            tracing::warn!(error = %e, "closing a list transaction failed");
        }
        return (Ok(out.into_inner().freeze()), Step::Done);
    }
    (Ok(out.into_inner().freeze()), Step::Fetch { tx })
}
