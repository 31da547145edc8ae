//! `shortline-api import --from <tool> FILE`: links exported from another
//! shortener ([`super::foreign`]) loaded as the links of one user, keeping
//! their codes, titles, tags (normalised like `POST /urls`'s), creation
//! dates and visit counts (`imported_visits`).
//!
//! Each link lands on the custom domain its short URL had when Shortline
//! has that domain (`POST /domains`), else on the default domain. A link
//! whose code is taken there is skipped: `exists` when it is the same
//! target (a re-run), `conflict` when another link holds the code. Every
//! row is reported; one bad row never stops the others. A new link gets its
//! `created` event (at its original creation time); like the seed loader,
//! the import writes no change events: new codes need no invalidation
//! beyond the few seconds a replica remembers an unknown code.

use std::collections::HashMap;

use serde::Serialize;
use shortline_shared::db::Db;

use super::UrlRules;
use super::foreign::{self, ForeignLink, Source};
use super::repo;
use crate::domains::model::normalize_host;
use crate::ids::{DomainId, UserId};
use crate::links::codes;

/// What happened to one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowOutcome {
    pub row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_code: Option<String>,
    /// `created`, `exists` (already imported), `conflict` (the code belongs
    /// to another link) or `error`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The whole import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AdoptReport {
    pub rows: usize,
    pub created: usize,
    pub exists: usize,
    pub conflicts: usize,
    pub errors: usize,
    pub outcomes: Vec<RowOutcome>,
}

/// Imports an export of `source` as links of `user_id`.
pub async fn import_links(
    db: &Db,
    source: Source,
    bytes: &[u8],
    user_id: UserId,
    rules: &UrlRules,
) -> anyhow::Result<AdoptReport> {
    let rows = foreign::read(source, bytes)?;
    let mut conn = db.acquire().await?;
    anyhow::ensure!(
        crate::users::repo::exists(&mut conn, user_id).await?,
        "user {user_id} does not exist"
    );
    let mut report = AdoptReport {
        rows: rows.len(),
        ..AdoptReport::default()
    };
    // An export names few domains: each is looked up once.
    let mut domains = HashMap::new();
    for row in rows {
        let outcome = match row {
            Err(problem) => error(problem.row, None, problem.error),
            Ok(link) => adopt(&mut conn, &link, user_id, rules, &mut domains).await?,
        };
        match outcome.status {
            "created" => report.created += 1,
            "exists" => report.exists += 1,
            "conflict" => report.conflicts += 1,
            _ => report.errors += 1,
        }
        report.outcomes.push(outcome);
    }
    Ok(report)
}

fn error(row: usize, code: Option<&str>, error: String) -> RowOutcome {
    RowOutcome {
        row,
        short_code: code.map(str::to_owned),
        status: "error",
        url_id: None,
        error: Some(error),
    }
}

/// One link: checked like `POST /urls`, then inserted unless its code is
/// taken on its domain.
async fn adopt(
    conn: &mut sqlx::PgConnection,
    link: &ForeignLink,
    user_id: UserId,
    rules: &UrlRules,
    domains: &mut HashMap<String, Option<DomainId>>,
) -> anyhow::Result<RowOutcome> {
    let code = Some(link.code.as_str());
    if let Err(problem) = codes::check_custom(&link.code) {
        return Ok(error(link.row, code, format!("short code: {problem}")));
    }
    if let Err(refused) = rules.targets.check(&link.long_url) {
        return Ok(error(link.row, code, format!("target: {refused}")));
    }
    let tags = match crate::links::tags::normalise_all(link.tags.iter().map(String::as_str)) {
        Ok(tags) => tags,
        Err(problem) => return Ok(error(link.row, code, format!("tags: {problem}"))),
    };
    let domain_id = match link.host.as_deref().map(normalize_host) {
        Some(Ok(host)) => match domains.get(&host) {
            Some(known) => *known,
            None => {
                let found = crate::domains::repo::find(conn, &host).await?;
                domains.insert(host, found);
                found
            }
        },
        _ => None,
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let new = repo::ForeignRow {
        tags: &tags,
        user_id,
        domain_id,
        redirect_type: rules.default_redirect_type,
    };
    let inserted = repo::insert_foreign_link(&mut tx, link, &new).await?;
    let outcome = match inserted {
        Some(url_id) => {
            repo::insert_created_event(&mut tx, url_id, user_id, link).await?;
            RowOutcome {
                row: link.row,
                short_code: Some(link.code.clone()),
                status: "created",
                url_id: Some(url_id),
                error: None,
            }
        }
        None => {
            let holder = repo::code_holder(&mut tx, &link.code, domain_id).await?;
            let same = holder
                .as_ref()
                .is_some_and(|(_, url)| *url == link.long_url);
            RowOutcome {
                row: link.row,
                short_code: Some(link.code.clone()),
                status: if same { "exists" } else { "conflict" },
                url_id: holder.map(|(id, _)| id),
                error: (!same).then(|| "the code belongs to another link on its domain".into()),
            }
        }
    };
    tx.commit().await?;
    Ok(outcome)
}
