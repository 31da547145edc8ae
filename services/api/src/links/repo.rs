//! SQL for links.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use sqlx::{PgConnection, Postgres, QueryBuilder};

use super::model::Link;
use super::rules::RuleSettings;
use super::stats::{Interval, SeriesPoint};
use super::tags::TagCount;
use crate::ids::{DomainId, LinkId, UserId};
use crate::paging::Page;
use crate::row_stream;

/// The columns of [`Link`], the one list every `SELECT` and `RETURNING`
/// here uses (a macro, for `concat!` into static SQL). The password
/// hash is never read back: only whether there is one.
macro_rules! columns {
    () => {
        "id, user_id, short_code, original_url, title, tags, is_active,
         (SELECT host FROM domains d WHERE d.id = urls.domain_id) AS domain, created_at, updated_at,
         redirect_type, expires_at, max_clicks, fallback_url, forward_query, rules,
         password_hash IS NOT NULL AS password_protected, imported_visits"
    };
}

const SELECT: &str = concat!("SELECT ", columns!(), " FROM urls");

/// What happens to a link's password on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordWrite {
    /// Leave it as it is.
    Keep,
    /// Store this argon2id PHC string.
    Set(String),
    /// Remove the protection.
    Clear,
}

/// Filters of `GET /urls`.
#[derive(Debug, Clone, Default)]
pub struct LinkFilter {
    pub user_id: Option<UserId>,
    pub is_active: Option<bool>,
    /// Links with every one of these (normalised) tags.
    pub tags: Vec<String>,
    /// Links whose title, original URL or short code contains this,
    /// ignoring case (a plain substring: `%` and `_` are literal).
    pub search: Option<String>,
}

/// The order of `GET /urls` (`sort`); ties always by id, in the same
/// direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LinkOrder {
    /// By id (the contract's order).
    #[default]
    Id,
    CreatedAt,
    CreatedAtDesc,
    /// By redirects (`link_stats.redirect_count`, 0 when none), fewest first.
    Clicks,
    ClicksDesc,
}

impl LinkOrder {
    /// Parses `sort`: `created_at`, `-created_at`, `clicks`, `-clicks`.
    pub fn parse(sort: &str) -> Option<Self> {
        Some(match sort {
            "created_at" => Self::CreatedAt,
            "-created_at" => Self::CreatedAtDesc,
            "clicks" => Self::Clicks,
            "-clicks" => Self::ClicksDesc,
            _ => return None,
        })
    }

    /// The `sort` value that asks for this order (`None`: the default).
    pub fn as_param(self) -> Option<&'static str> {
        match self {
            Self::Id => None,
            Self::CreatedAt => Some("created_at"),
            Self::CreatedAtDesc => Some("-created_at"),
            Self::Clicks => Some("clicks"),
            Self::ClicksDesc => Some("-clicks"),
        }
    }

    fn order_by(self) -> &'static str {
        match self {
            Self::Id => " ORDER BY id",
            Self::CreatedAt => " ORDER BY created_at, id",
            Self::CreatedAtDesc => " ORDER BY created_at DESC, id DESC",
            Self::Clicks => " ORDER BY COALESCE(s.redirect_count, 0), id",
            Self::ClicksDesc => " ORDER BY COALESCE(s.redirect_count, 0) DESC, id DESC",
        }
    }

    fn joins_stats(self) -> bool {
        matches!(self, Self::Clicks | Self::ClicksDesc)
    }
}

/// `term` as an `ILIKE` pattern matching it anywhere, its own `\`, `%` and
/// `_` escaped (`\` is `LIKE`'s default escape character).
fn contains_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// A link row plus whether it was deleted (not part of the wire shape).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkState {
    #[sqlx(flatten)]
    pub link: Link,
    pub deleted: bool,
}

/// A new link's row (its code aside).
#[derive(Debug, Clone, Copy)]
pub struct NewRow<'a> {
    pub user_id: UserId,
    pub original_url: &'a str,
    pub title: Option<&'a str>,
    /// Normalised and sorted ([`super::tags`]).
    pub tags: &'a [String],
    pub settings: &'a RuleSettings,
    /// An argon2id PHC string.
    pub password_hash: Option<&'a str>,
    /// `None`: the default domain.
    pub domain_id: Option<DomainId>,
}

/// Inserts a link unless its code is taken (`None` then).
pub async fn insert(
    conn: &mut PgConnection,
    short_code: &str,
    row: NewRow<'_>,
) -> Result<Option<Link>, sqlx::Error> {
    let s = row.settings;
    sqlx::query_as::<_, Link>(concat!(
        "INSERT INTO urls (user_id, short_code, original_url, title, redirect_type, expires_at,
                           max_clicks, fallback_url, forward_query, rules, password_hash, tags,
                           domain_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         ON CONFLICT ((COALESCE(domain_id, 0)), short_code) DO NOTHING
         RETURNING ",
        columns!()
    ))
    .bind(row.user_id)
    .bind(short_code)
    .bind(row.original_url)
    .bind(row.title)
    .bind(s.redirect_type)
    .bind(s.expires_at)
    .bind(s.max_clicks)
    .bind(s.fallback_url.as_deref())
    .bind(s.forward_query)
    .bind(sqlx::types::Json(&s.rules))
    .bind(row.password_hash)
    .bind(row.tags)
    .bind(row.domain_id)
    .fetch_optional(conn)
    .await
}

/// What makes an existing link "the same" for `find_if_exists`: its owner
/// and target (and its code, when one is asked for). The one place that
/// decides it, so a link's domain can join the comparison.
#[derive(Debug, Clone, Copy)]
pub struct SameLink<'a> {
    pub user_id: UserId,
    pub original_url: &'a str,
    pub short_code: Option<&'a str>,
    /// The link's domain (`None`: the default domain).
    pub domain_id: Option<DomainId>,
}

/// The advisory-lock class of [`lock_same`] (its two-key space is apart
/// from every one-key lock).
const SAME_LINK_LOCK: i32 = 0x534c_4653;

/// Serialises `find_if_exists` for one owner and target until the
/// transaction ends, so that concurrent calls find the one link the first
/// of them made instead of each making its own.
pub async fn lock_same(conn: &mut PgConnection, same: SameLink<'_>) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text || ' ' || $3))")
        .bind(SAME_LINK_LOCK)
        .bind(same.user_id)
        .bind(same.original_url)
        .execute(conn)
        .await?;
    Ok(())
}

/// The oldest active, undeleted link that is [`SameLink`], if any.
pub async fn find_same(
    conn: &mut PgConnection,
    same: SameLink<'_>,
) -> Result<Option<Link>, sqlx::Error> {
    sqlx::query_as::<_, Link>(concat!(
        "SELECT ",
        columns!(),
        " FROM urls
         WHERE user_id = $1 AND original_url = $2 AND ($3::text IS NULL OR short_code = $3)
           AND domain_id IS NOT DISTINCT FROM $4
           AND is_active AND deleted_at IS NULL
         ORDER BY id LIMIT 1"
    ))
    .bind(same.user_id)
    .bind(same.original_url)
    .bind(same.short_code)
    .bind(same.domain_id)
    .fetch_optional(conn)
    .await
}

/// The user a link belongs to (deleted links included, as [`get`] finds
/// them), if the link exists.
pub async fn owner(conn: &mut PgConnection, id: LinkId) -> Result<Option<UserId>, sqlx::Error> {
    sqlx::query_scalar("SELECT user_id FROM urls WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await
}

pub async fn get(conn: &mut PgConnection, id: LinkId) -> Result<Option<Link>, sqlx::Error> {
    sqlx::query_as::<_, Link>(concat!("SELECT ", columns!(), " FROM urls WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The link and its deleted flag, row-locked until the transaction ends.
pub async fn lock(conn: &mut PgConnection, id: LinkId) -> Result<Option<LinkState>, sqlx::Error> {
    sqlx::query_as::<_, LinkState>(concat!(
        "SELECT ",
        columns!(),
        ", deleted_at IS NOT NULL AS deleted FROM urls WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

pub async fn list(
    conn: &mut PgConnection,
    filter: &LinkFilter,
    order: LinkOrder,
    page: Page,
) -> Result<Vec<Link>, sqlx::Error> {
    // Not a cached prepared statement: a generic plan cannot see the
    // search pattern or the tags and walks the primary key, filtering every
    // row (seconds at 1M links); planned with its values, the trigram and
    // tag indexes answer it.
    select("", filter, order, page)
        .build_query_as::<Link>()
        .persistent(false)
        .fetch_all(conn)
        .await
}

/// Opens the `row_stream` cursor over every link matching the filters, in
/// `order` (the transaction's; read it with `RowStream`).
pub async fn declare_all(
    conn: &mut PgConnection,
    filter: &LinkFilter,
    order: LinkOrder,
) -> Result<(), sqlx::Error> {
    select(&row_stream::declare_prefix(), filter, order, Page::ALL)
        .build()
        .persistent(false)
        .execute(conn)
        .await?;
    Ok(())
}

/// How many links match the filters (paging aside).
pub async fn count(conn: &mut PgConnection, filter: &LinkFilter) -> Result<i64, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new("SELECT count(*) FROM urls WHERE TRUE");
    filtered(&mut q, filter);
    // Planned with its values, as `list`.
    q.build_query_scalar::<i64>()
        .persistent(false)
        .fetch_one(conn)
        .await
}

fn select(init: &str, filter: &LinkFilter, order: LinkOrder, page: Page) -> QueryBuilder<Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("{init}{SELECT}"));
    if order.joins_stats() {
        // No column of link_stats shares a name with one of urls.
        q.push(" LEFT JOIN link_stats s ON s.url_id = urls.id");
    }
    q.push(" WHERE TRUE");
    filtered(&mut q, filter);
    q.push(order.order_by());
    if let Some(limit) = page.limit {
        q.push(" LIMIT ").push_bind(limit);
    }
    if page.offset > 0 {
        q.push(" OFFSET ").push_bind(page.offset);
    }
    q
}

/// The `AND`s of the filters.
fn filtered(q: &mut QueryBuilder<Postgres>, filter: &LinkFilter) {
    if let Some(user_id) = filter.user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    if let Some(is_active) = filter.is_active {
        q.push(" AND is_active = ").push_bind(is_active);
    }
    if !filter.tags.is_empty() {
        // `@>` is what the GIN index on `tags` answers.
        q.push(" AND tags @> ").push_bind(filter.tags.clone());
    }
    if let Some(term) = &filter.search {
        // Each ILIKE can use its column's trigram index (BitmapOr).
        let pattern = contains_pattern(term);
        q.push(" AND (title ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR original_url ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR short_code ILIKE ")
            .push_bind(pattern)
            .push(")");
    }
}

/// The tags of the links (a user's, or everyone's), with how many links
/// carry each, by tag (`GET /tags`): a page, or the `row_stream` cursor
/// over all of them when `declare` is set (then nothing is returned).
fn tag_counts_query(init: &str, user_id: Option<UserId>, page: Page) -> QueryBuilder<Postgres> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!(
        "{init}SELECT tag, count(*)::int8 AS links FROM urls, unnest(tags) AS tag WHERE TRUE"
    ));
    if let Some(user_id) = user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    q.push(" GROUP BY tag ORDER BY tag");
    if let Some(limit) = page.limit {
        q.push(" LIMIT ").push_bind(limit);
    }
    if page.offset > 0 {
        q.push(" OFFSET ").push_bind(page.offset);
    }
    q
}

/// One page of tag counts.
pub async fn tag_counts(
    conn: &mut PgConnection,
    user_id: Option<UserId>,
    page: Page,
) -> Result<Vec<TagCount>, sqlx::Error> {
    tag_counts_query("", user_id, page)
        .build_query_as::<TagCount>()
        .fetch_all(conn)
        .await
}

/// Opens the `row_stream` cursor over every tag count.
pub async fn declare_tag_counts(
    conn: &mut PgConnection,
    user_id: Option<UserId>,
) -> Result<(), sqlx::Error> {
    tag_counts_query(&row_stream::declare_prefix(), user_id, Page::ALL)
        .build()
        .execute(conn)
        .await?;
    Ok(())
}

/// How many distinct tags [`tag_counts`] lists.
pub async fn count_tags(
    conn: &mut PgConnection,
    user_id: Option<UserId>,
) -> Result<i64, sqlx::Error> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("SELECT count(DISTINCT tag) FROM urls, unnest(tags) AS tag WHERE TRUE");
    if let Some(user_id) = user_id {
        q.push(" AND user_id = ").push_bind(user_id);
    }
    q.build_query_scalar::<i64>().fetch_one(conn).await
}

/// A link's editable fields as they are to be written.
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    pub original_url: &'a str,
    pub title: Option<&'a str>,
    pub tags: &'a [String],
    pub is_active: bool,
    pub settings: &'a RuleSettings,
    pub password: &'a PasswordWrite,
}

/// Writes a link's editable fields and bumps `updated_at`; reactivating a
/// deleted link undeletes it.
pub async fn update(conn: &mut PgConnection, id: LinkId, e: Edit<'_>) -> Result<Link, sqlx::Error> {
    let s = e.settings;
    let (write_password, password_hash) = match e.password {
        PasswordWrite::Keep => (false, None),
        PasswordWrite::Set(hash) => (true, Some(hash.as_str())),
        PasswordWrite::Clear => (true, None),
    };
    sqlx::query_as::<_, Link>(concat!(
        "UPDATE urls SET original_url = $2, title = $3, is_active = $4, updated_at = now(),
             deleted_at = CASE WHEN $4 THEN NULL ELSE deleted_at END,
             redirect_type = $5, expires_at = $6, max_clicks = $7, fallback_url = $8,
             forward_query = $9, rules = $10,
             password_hash = CASE WHEN $11 THEN $12 ELSE password_hash END,
             tags = $13
         WHERE id = $1
         RETURNING ",
        columns!()
    ))
    .bind(id)
    .bind(e.original_url)
    .bind(e.title)
    .bind(e.is_active)
    .bind(s.redirect_type)
    .bind(s.expires_at)
    .bind(s.max_clicks)
    .bind(s.fallback_url.as_deref())
    .bind(s.forward_query)
    .bind(sqlx::types::Json(&s.rules))
    .bind(write_password)
    .bind(password_hash)
    .bind(e.tags)
    .fetch_one(conn)
    .await
}

/// Soft-deletes a link that is not deleted yet (`None` otherwise).
pub async fn mark_deleted(
    conn: &mut PgConnection,
    id: LinkId,
) -> Result<Option<Link>, sqlx::Error> {
    sqlx::query_as::<_, Link>(concat!(
        "UPDATE urls SET is_active = FALSE, deleted_at = now(), updated_at = now()
         WHERE id = $1 AND deleted_at IS NULL
         RETURNING ",
        columns!()
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Total redirects and the last redirect time, from the rollup.
pub async fn redirect_totals(
    conn: &mut PgConnection,
    id: LinkId,
) -> Result<(i64, Option<DateTime<Utc>>), sqlx::Error> {
    let row: Option<(i64, Option<DateTime<Utc>>)> =
        sqlx::query_as("SELECT redirect_count, last_redirect_at FROM link_stats WHERE url_id = $1")
            .bind(id)
            .fetch_optional(conn)
            .await?;
    Ok(row.unwrap_or((0, None)))
}

/// Redirects per bucket from the hourly rollup, one row for every bucket
/// from `first` to `last` (bucket starts, UTC), empty ones with 0. Day
/// buckets sum the hours of their UTC day.
pub async fn redirect_series(
    conn: &mut PgConnection,
    id: LinkId,
    first: NaiveDateTime,
    last: NaiveDateTime,
    interval: Interval,
) -> Result<Vec<SeriesPoint>, sqlx::Error> {
    sqlx::query_as::<_, SeriesPoint>(
        "WITH counts AS (
             SELECT date_trunc($4, hour AT TIME ZONE 'UTC') AS start,
                    SUM(redirect_count) AS redirects
             FROM link_stats_hourly
             WHERE url_id = $1
               AND hour >= $2 AT TIME ZONE 'UTC'
               AND hour < ($3 + ('1 ' || $4)::interval) AT TIME ZONE 'UTC'
             GROUP BY 1
         )
         SELECT b.start AT TIME ZONE 'UTC' AS start, COALESCE(c.redirects, 0)::int8 AS count
         FROM generate_series($2, $3, ('1 ' || $4)::interval) AS b(start)
         LEFT JOIN counts c ON c.start = b.start
         ORDER BY b.start",
    )
    .bind(id)
    .bind(first)
    .bind(last)
    .bind(interval.sql_unit())
    .fetch_all(conn)
    .await
}

/// The most frequent referrer hosts (`''`: direct) on the given UTC days,
/// most first, then by name.
pub async fn top_referrers(
    conn: &mut PgConnection,
    id: LinkId,
    first_day: NaiveDate,
    last_day: NaiveDate,
    limit: i64,
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT referrer, SUM(redirect_count)::int8 AS redirects
         FROM link_stats_referrers
         WHERE url_id = $1 AND day BETWEEN $2 AND $3
         GROUP BY referrer
         ORDER BY redirects DESC, referrer COLLATE \"C\"
         LIMIT $4",
    )
    .bind(id)
    .bind(first_day)
    .bind(last_day)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Redirects on the given UTC days by user-agent class.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentCount {
    pub browser: String,
    pub os: String,
    pub device: String,
    pub is_bot: bool,
    pub count: i64,
}

/// Redirects by (browser, os, device, bot) on the given UTC days.
pub async fn agent_counts(
    conn: &mut PgConnection,
    id: LinkId,
    first_day: NaiveDate,
    last_day: NaiveDate,
) -> Result<Vec<AgentCount>, sqlx::Error> {
    sqlx::query_as::<_, AgentCount>(
        "SELECT browser, os, device, is_bot, SUM(redirect_count)::int8 AS count
         FROM link_stats_agents
         WHERE url_id = $1 AND day BETWEEN $2 AND $3
         GROUP BY browser, os, device, is_bot",
    )
    .bind(id)
    .bind(first_day)
    .bind(last_day)
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_literal_substrings() {
        assert_eq!(contains_pattern("Shop"), "%Shop%");
        assert_eq!(contains_pattern("50%_off\\x"), "%50\\%\\_off\\\\x%");
    }

    #[test]
    fn sort_values() {
        for v in ["created_at", "-created_at", "clicks", "-clicks"] {
            assert_eq!(LinkOrder::parse(v).and_then(LinkOrder::as_param), Some(v));
        }
        assert_eq!(LinkOrder::parse("id"), None);
        assert_eq!(LinkOrder::parse("-title"), None);
    }
}
