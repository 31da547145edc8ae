//! What an import reports: the answer of `POST /users/bulk` and the counts
//! of `shortline-api seed`.

use schemars::JsonSchema;
use serde::Serialize;

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
