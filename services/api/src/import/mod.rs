//! CSV import: `POST /users/bulk` (a streamed multipart upload) and the seed
//! loader behind `shortline-api seed <dir>`; and links exported from other
//! shorteners (`shortline-api import --from bitly|shlink|kutt|yourls FILE`:
//! `foreign` reads their formats, `adopt` loads them).
//!
//! Both run the same pipeline (`pipeline`). A blocking task reads the CSV
//! with the `csv` crate (an upload is bridged from its async byte stream with
//! `StreamReader` + `SyncIoBridge`, a seed file is read directly), checks each
//! row (`tables`, with `fields`), and sends batches of valid rows through a
//! small bounded channel; the async side inserts each batch with one `INSERT
//! … SELECT … FROM UNNEST(…) ON CONFLICT DO NOTHING` (`repo`). Nothing holds
//! more than a couple of batches in memory, whatever the file size. `upload`
//! is the HTTP side (`POST /users/bulk`), `seed` the command, `report` what
//! both answer.
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
//! * `urls.csv` may carry the link-rule columns `redirect_type`,
//!   `expires_at`, `max_clicks`, `fallback_url`, `forward_query` and `rules`
//!   (JSON text), checked as `POST /urls` checks them (a rule problem is
//!   reported with its path, `rules[0].when.device[1]: …`); absent columns
//!   and empty cells keep the defaults (the redirect type: the API's
//!   `DEFAULT_REDIRECT_TYPE` for `shortline-api seed`). There is no password
//!   column: a password is only ever set through the API.
//! * CSV ids are kept. Rows whose id or unique key (username, email, short
//!   code, event ULID) already exists, in the database or earlier in the same
//!   file, are skipped but counted: the bare `ON CONFLICT DO NOTHING` covers
//!   every unique index, the partial ones on live users included, and also
//!   duplicates inside one statement (the first row wins).
//! * Afterwards each table's id sequence is moved past its largest id (ids
//!   above the ceiling, from before it existed, are not counted), never
//!   backwards (see `repo::move_sequence_past_ids`).
//!
//! `POST /users/bulk` runs in one transaction: an upload that fails half way
//! (too large, broken stream, database error) leaves nothing behind, and a
//! re-run is idempotent because duplicates are skipped; it imports users and
//! nothing else. The seeder commits batch by batch (a crash leaves earlier
//! batches loaded; re-running skips them). It loads event rows only: the
//! link statistics are the analytics service's read models, recomputed from
//! the rows by `shortline-analytics rebuild-rollups` (`make up` runs it after
//! the seed).
//!
//! Event rows get a deterministic ULID derived from their CSV id and
//! timestamp ([`seed_event_id`]), so a re-run deduplicates them too. An event
//! whose `details` is not a JSON object is kept, wrapped as
//! `{"value": <the JSON value, or the raw text if it is not JSON>}`; empty
//! details become `{}`.

pub mod adopt;
mod fields;
pub mod foreign;
mod pipeline;
mod repo;
mod report;
mod seed;
mod tables;
mod upload;

pub use fields::MAX_IMPORTED_ID;
pub use report::{BulkReport, FileReport, RowProblem, SeedReport};
pub use seed::{seed_dir, seed_dir_with, seed_event_id};
pub use tables::UrlRules;
pub use upload::{CsvUpload, UploadStream, import_users};
