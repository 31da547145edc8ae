//! Link tags: how a tag is spelled (normalised on the way in, so `Work`,
//! ` work ` and `WORK` are one tag) and how many a link may have. A link's
//! tags are stored sorted and without duplicates in its `tags` column; the
//! counts of `GET /tags` are read from it ([`super::repo::tag_counts`]).

use schemars::JsonSchema;
use serde::Serialize;

use super::repo;
use crate::error::ApiError;
use crate::ids::UserId;
use crate::paging::{self, Listing, Page};
use crate::row_stream::{self, RowStream};
use crate::state::AppState;
use crate::validate::Fields;

/// A tag and how many links carry it (`GET /tags`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct TagCount {
    #[schemars(example = &"newsletter")]
    pub tag: String,
    /// Links with this tag (deactivated and deleted ones too, as
    /// `GET /urls?tag=` lists them).
    #[schemars(example = 12)]
    pub links: i64,
}

/// The tags of a user's links (everyone's: `None`), by tag, with counts: a
/// page, or every one streamed; with their number.
pub async fn list(
    state: &AppState,
    user_id: Option<UserId>,
    page: Page,
) -> Result<Listing<TagCount>, ApiError> {
    if page.is_all() {
        let mut tx = row_stream::begin(&state.db).await?;
        let total = repo::count_tags(&mut tx, user_id).await?;
        repo::declare_tag_counts(&mut tx, user_id).await?;
        return Ok(Listing::all(RowStream::start(tx).await?, total));
    }
    let mut tx = paging::snapshot(&state.db).await?;
    let total = repo::count_tags(&mut tx, user_id).await?;
    let tags = repo::tag_counts(&mut tx, user_id, page).await?;
    tx.rollback().await?;
    Ok(Listing::items(tags, total))
}

/// Most tags on one link.
pub const MAX_TAGS: usize = 20;
/// Longest tag, in characters (after normalising).
pub const MAX_TAG_CHARS: usize = 50;

/// The problem with a tag list, as the 400 names it.
const PROBLEM: &str = "must be an array of at most 20 tags, each 1-50 characters of letters, digits, '-', '_', '.' and spaces";

/// One tag as stored: trimmed, lower-cased, runs of whitespace collapsed to
/// one space; `None` when it is empty, too long or has other characters.
pub fn normalise(raw: &str) -> Option<String> {
    let tag = raw
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    let chars = tag.chars().count();
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ');
    ((1..=MAX_TAG_CHARS).contains(&chars) && tag.chars().all(allowed)).then_some(tag)
}

/// A whole list: each normalised, duplicates dropped, sorted; `Err` names
/// the problem (a bad tag, or more than [`MAX_TAGS`] distinct ones).
pub fn normalise_all<'a>(raw: impl IntoIterator<Item = &'a str>) -> Result<Vec<String>, String> {
    let mut tags = Vec::new();
    for (i, tag) in raw.into_iter().enumerate() {
        match normalise(tag) {
            Some(tag) => tags.push(tag),
            None => return Err(format!("{PROBLEM} (tags[{i}] is not)")),
        }
    }
    tags.sort_unstable();
    tags.dedup();
    if tags.len() > MAX_TAGS {
        return Err(format!("{PROBLEM} (got {} distinct tags)", tags.len()));
    }
    Ok(tags)
}

/// Reads `tags` from a body: absent is `None`, `null` is no tags, an array
/// of strings is normalised; anything else is a 400 naming `tags`.
pub fn read(f: &mut Fields<'_>) -> Option<Vec<String>> {
    let value = f.value("tags")?;
    let result = match value {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(items) => {
            let strings: Option<Vec<&str>> = items.iter().map(|v| v.as_str()).collect();
            match strings {
                Some(strings) => normalise_all(strings),
                None => Err(PROBLEM.to_owned()),
            }
        }
        _ => Err(PROBLEM.to_owned()),
    };
    match result {
        Ok(tags) => Some(tags),
        Err(problem) => {
            f.error("tags", problem);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_normalised() {
        assert_eq!(
            normalise("  Q4  Launch\tPlan "),
            Some("q4 launch plan".into())
        );
        assert_eq!(normalise("v1.2_beta-x"), Some("v1.2_beta-x".into()));
        assert_eq!(normalise("Größe"), Some("größe".into()));
        for bad in ["", "   ", "a/b", "a,b", "#x", "\0", &"x".repeat(51)] {
            assert_eq!(normalise(bad), None, "{bad:?}");
        }
        assert_eq!(normalise(&"x".repeat(50)).map(|t| t.len()), Some(50));
    }

    #[test]
    fn lists_drop_duplicates_sort_and_stop_at_twenty() {
        assert_eq!(
            normalise_all(["b", "A", " a ", "c"]),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        let twenty: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
        let mut dup = twenty.clone();
        dup.push("T0".into());
        assert_eq!(
            normalise_all(dup.iter().map(String::as_str)).map(|t| t.len()),
            Ok(20)
        );
        let mut more = twenty;
        more.push("t20".into());
        assert!(normalise_all(more.iter().map(String::as_str)).is_err());
        assert!(normalise_all(["ok", "no/pe"]).is_err());
    }
}
