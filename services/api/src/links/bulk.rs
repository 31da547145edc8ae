//! `POST /urls/bulk`: up to [`MAX_ROWS`] links from a JSON array of
//! `POST /urls` bodies or a CSV (`user_id,original_url,title,short_code,tags`,
//! tags `;`-separated), each row read, validated and written exactly as
//! `POST /urls` does it ([`super::prepare`], [`super::create_in`]).
//!
//! Rows are checked first (fields, the caller's right to act for the row's
//! user, targets, password hashing), then written in one transaction with a
//! savepoint per row: a row that fails (unknown user, taken code) is rolled
//! back to its savepoint and reported, the others commit together, with their
//! `created` events and change events, and propagate once.

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};
use sqlx::Connection;

use super::model::{Link, NewLink};
use super::{Made, Prepared};
use crate::error::{ApiError, FieldErrors};
use crate::ids::UserId;
use crate::mutation::{Changed, Committed, Mutation};
use crate::state::AppState;
use crate::validate::{Fields, FromJson};

/// Most rows in one request (more: 413).
pub const MAX_ROWS: usize = 1000;

/// The CSV columns, in their documented order.
pub const CSV_HEADER: &str = "user_id,original_url,title,short_code,tags";

/// The answer of `POST /urls/bulk`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BulkLinksReport {
    /// Rows read.
    pub count: u64,
    /// Rows that created a link.
    pub created: u64,
    /// Rows answered with an existing link (`find_if_exists`).
    pub existing: u64,
    /// The link of each row that has one (created or existing), by row.
    pub links: Vec<RowLink>,
    /// Each row that made no link, by row, with what `POST /urls` would have
    /// answered for it.
    pub errors: Vec<RowError>,
}

/// A row's link.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RowLink {
    /// 1-based row (the JSON array's element, or the CSV's data row: the
    /// header is not a row).
    pub row: u64,
    /// Whether the link existed already (`find_if_exists`).
    pub existing: bool,
    pub link: Link,
}

/// A row that made no link.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RowError {
    /// 1-based row.
    pub row: u64,
    /// The status `POST /urls` would have answered (400, 403, 404, 409, 422).
    pub status: u16,
    /// Its message, e.g. `short_code already exists`.
    pub error: String,
    /// For field problems: field → problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<FieldErrors>,
}

impl RowError {
    fn of(row: u64, e: ApiError) -> Self {
        let status = e.status().as_u16();
        if status >= 500 {
            tracing::error!(row, "bulk link row failed");
        }
        let (error, details) = e.into_message();
        Self {
            row,
            status,
            error,
            details,
        }
    }
}

/// The rows of a JSON body: an array of objects (any other element is that
/// row's 400); not an array is a 400 for the request, more than
/// [`MAX_ROWS`] a 413.
pub fn rows_from_json(bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
    let rows = match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(rows)) => rows,
        Ok(_) => {
            return Err(ApiError::BadRequest(
                "request body must be a JSON array of POST /urls bodies".into(),
            ));
        }
        Err(e) => {
            return Err(ApiError::BadRequest(format!(
                "request body is not valid JSON: {e}"
            )));
        }
    };
    check_row_count(rows.len())?;
    Ok(rows)
}

/// The rows of a CSV with a header naming its columns (`user_id` and
/// `original_url` required; `title`, `short_code`, `tags` optional, any
/// order; others ignored), each as the JSON body it stands for (empty cells
/// are absent fields; `tags` split at `;`). A bad header is a 400, more than
/// [`MAX_ROWS`] rows a 413; a row that cannot be read is that row's 400.
pub fn rows_from_csv(bytes: &[u8]) -> Result<Vec<Value>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header = reader
        .headers()
        .map_err(|e| ApiError::BadRequest(format!("could not read the CSV header: {e}")))?
        .clone();
    let column = |name: &str| header.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(user_id), Some(original_url)) = (column("user_id"), column("original_url")) else {
        return Err(ApiError::BadRequest(format!(
            "the CSV header must name user_id and original_url (columns: {CSV_HEADER})"
        )));
    };
    let (title, short_code, tags) = (column("title"), column("short_code"), column("tags"));
    let mut rows = Vec::new();
    for record in reader.records() {
        check_row_count(rows.len() + 1)?;
        let Ok(record) = record else {
            rows.push(Value::String("unreadable CSV row".into()));
            continue;
        };
        let cell = |i: Option<usize>| i.and_then(|i| record.get(i)).filter(|c| !c.is_empty());
        let mut obj = Map::new();
        if let Some(id) = cell(Some(user_id)) {
            let id = id
                .parse::<i64>()
                .map_or_else(|_| Value::String(id.to_owned()), Value::from);
            obj.insert("user_id".into(), id);
        }
        for (name, i) in [
            ("original_url", Some(original_url)),
            ("title", title),
            ("short_code", short_code),
        ] {
            if let Some(value) = cell(i) {
                obj.insert(name.into(), Value::String(value.to_owned()));
            }
        }
        if let Some(tags) = cell(tags) {
            let tags = tags
                .split(';')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| Value::String(t.to_owned()))
                .collect();
            obj.insert("tags".into(), Value::Array(tags));
        }
        rows.push(Value::Object(obj));
    }
    Ok(rows)
}

fn check_row_count(rows: usize) -> Result<(), ApiError> {
    if rows > MAX_ROWS {
        return Err(ApiError::PayloadTooLarge(format!(
            "at most {MAX_ROWS} links per request"
        )));
    }
    Ok(())
}

/// Creates the link of every usable row; `authorize` says whether the caller
/// may act for a row's user. A bad row never stops the others.
pub async fn create_all(
    state: &AppState,
    rows: Vec<Value>,
    authorize: impl Fn(UserId) -> Result<(), ApiError>,
) -> Result<Committed<BulkLinksReport>, ApiError> {
    check_row_count(rows.len())?;
    let count = rows.len() as u64;
    let mut errors = Vec::new();
    let mut ready: Vec<(u64, Prepared)> = Vec::new();
    for (i, value) in rows.into_iter().enumerate() {
        let row = i as u64 + 1;
        match prepare_row(state, &value, &authorize).await {
            Ok(prepared) => ready.push((row, prepared)),
            Err(e) => errors.push(RowError::of(row, e)),
        }
    }

    let mut tx = Mutation::begin(state).await?;
    let mut made: Vec<(u64, Made)> = Vec::new();
    for (row, prepared) in &ready {
        let mut savepoint = (*tx).begin().await?;
        match super::create_in(state, &mut savepoint, prepared).await {
            Ok(link) => {
                savepoint.commit().await?;
                made.push((*row, link));
            }
            Err(e) => {
                savepoint.rollback().await?;
                errors.push(RowError::of(*row, e));
            }
        }
    }
    errors.sort_by_key(|e| e.row);
    let changes: Vec<Changed> = made
        .iter()
        .filter(|(_, m)| !m.existing)
        .map(|(_, m)| Changed::LinkCreated(m.link.snapshot()))
        .collect();
    let created = changes.len() as u64;
    let report = BulkLinksReport {
        count,
        created,
        existing: made.len() as u64 - created,
        links: made
            .iter()
            .map(|(row, m)| RowLink {
                row: *row,
                existing: m.existing,
                link: m.link.clone(),
            })
            .collect(),
        errors,
    };
    let committed = tx.commit(changes, report).await?;
    for (_, m) in &made {
        super::log_created(state, m);
    }
    tracing::info!(
        rows = count,
        created,
        failed = committed.value.errors.len(),
        "bulk links processed"
    );
    Ok(committed)
}

/// One row read as `POST /urls` reads its body, checked for the caller and
/// prepared.
async fn prepare_row(
    state: &AppState,
    value: &Value,
    authorize: &impl Fn(UserId) -> Result<(), ApiError>,
) -> Result<Prepared, ApiError> {
    let Some(obj) = value.as_object() else {
        let problem = value
            .as_str()
            .unwrap_or("each row must be a JSON object (a POST /urls body)");
        return Err(ApiError::BadRequest(problem.to_owned()));
    };
    let mut fields = Fields::new(obj);
    let new = NewLink::from_json(&mut fields);
    fields.finish()?;
    let new = new.ok_or_else(|| ApiError::BadRequest("invalid row".into()))?;
    authorize(new.user_id)?;
    super::prepare(state, new).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_rows_become_bodies() {
        let csv = b"original_url,user_id,tags,extra\nhttps://a.io,7,Work; q4 ;,x\nhttps://b.io,abc,,\n,3,,\n";
        let rows = rows_from_csv(csv).expect("rows");
        assert_eq!(
            rows,
            [
                json!({"user_id": 7, "original_url": "https://a.io", "tags": ["Work", "q4"]}),
                json!({"user_id": "abc", "original_url": "https://b.io"}),
                json!({"user_id": 3}),
            ]
        );
        assert!(rows_from_csv(b"user_id,title\n1,x\n").is_err());
        let many = format!("user_id,original_url\n{}", "1,https://a.io\n".repeat(1001));
        assert!(matches!(
            rows_from_csv(many.as_bytes()),
            Err(ApiError::PayloadTooLarge(_))
        ));
    }

    #[test]
    fn json_rows() {
        assert_eq!(rows_from_json(b"[{}, 1]").map(|r| r.len()).ok(), Some(2));
        assert!(matches!(
            rows_from_json(b"{}"),
            Err(ApiError::BadRequest(_))
        ));
        let many = serde_json::to_vec(&vec![json!({}); 1001]).expect("json");
        assert!(matches!(
            rows_from_json(&many),
            Err(ApiError::PayloadTooLarge(_))
        ));
    }
}
