//! The import pipeline every CSV goes through: [`parse_csv`] reads a file on
//! a blocking thread with the `csv` crate, finds the columns by header name,
//! checks each row through its [`CsvTable`] and sends batches of valid rows
//! through a small bounded channel to the async side that inserts them.
//! Nothing holds more than a couple of batches in memory, whatever the file
//! size; unusable rows are counted and reported, never fatal.

use std::future::Future;
use std::io::Read;

use csv::{ByteRecord, ReaderBuilder, Trim};
use sqlx::PgConnection;
use tokio::sync::mpsc;

use super::report::RowProblem;

/// Parsed batches waiting for the database (bounds memory; keeps the parser
/// one step ahead of the inserts).
pub(super) const CHANNEL_BATCHES: usize = 2;
/// Per-row problems kept for a report.
pub(super) const MAX_REPORTED_PROBLEMS: usize = 100;

/// One CSV shape: its columns, how a record becomes a batch row, and how a
/// batch is inserted.
pub(super) trait CsvTable: Sized + Send + 'static {
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
pub(super) struct Chunk<B> {
    pub(super) rows_read: u64,
    pub(super) batch: B,
}

/// What the parser saw in a whole file.
#[derive(Debug, Default)]
pub(super) struct ParseOutcome {
    /// Data rows read.
    pub(super) rows: u64,
    /// Rows rejected before reaching the database.
    pub(super) invalid: u64,
    /// The first [`MAX_REPORTED_PROBLEMS`] of them.
    pub(super) problems: Vec<RowProblem>,
}

#[derive(Debug)]
pub(super) enum ParseFailure {
    /// No usable header; the message names the expected one.
    Header(String),
    /// The input could not be read (I/O error, stream broken or over its cap).
    Read(std::io::Error),
    /// The receiving side went away.
    Cancelled,
}

/// A header row: trimmed, lower-cased column names.
pub(super) struct Header(Vec<String>);

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

    pub(super) fn find(&self, column: &str) -> Option<usize> {
        self.0.iter().position(|c| c == column)
    }

    /// Positions of `required` columns, or a message naming the missing ones.
    pub(super) fn require<const N: usize>(
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
pub(super) fn parse_csv<T: CsvTable, R: Read>(
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::import::tables::UserRows;

    /// Parses `csv` on a thread the way the importers do; returns the outcome
    /// and every batch sent.
    pub(in crate::import) fn parse_all<T: CsvTable>(
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
