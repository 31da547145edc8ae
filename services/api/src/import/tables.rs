//! The three CSV shapes: `users.csv`, `urls.csv`, `events.csv`. Each finds
//! its columns in the header, checks a record into a batch of column arrays
//! and hands the batch to its insert in `repo`.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use csv::ByteRecord;
use sqlx::PgConnection;

use super::fields::{
    clip, details_object, indexed, optional, parse_bool, parse_id, parse_optional_id,
    parse_optional_time, parse_time, required,
};
use super::pipeline::{CsvTable, Header};
use super::repo;
use super::seed::seed_event_id;
use crate::links::codes::check_custom;
use crate::links::rules::{
    EXPIRES_AT_PROBLEM, parse_expires_at, parse_rules, redirect_type, redirect_type_problem,
};
use crate::links::targets::TargetPolicy;
use crate::users::model::{check_user_field_len, is_valid_email};

/// Column positions in a users CSV.
pub(super) struct UserRows {
    id: Option<usize>,
    username: usize,
    email: usize,
    created_at: Option<usize>,
}

#[derive(Default)]
pub(super) struct UserBatch {
    pub(super) ids: Vec<Option<i64>>,
    pub(super) usernames: Vec<String>,
    pub(super) emails: Vec<String>,
    pub(super) created_at: Vec<Option<DateTime<Utc>>>,
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

    fn insert<'c>(
        conn: &'c mut PgConnection,
        batch: &'c Self::Batch,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
        repo::insert_users(conn, batch)
    }

    fn len(batch: &UserBatch) -> usize {
        batch.ids.len()
    }
}

/// What checking a urls row needs beyond the row.
#[derive(Debug, Clone)]
pub struct UrlRules {
    /// The target policy every target (original, fallback, rules') meets.
    pub targets: Arc<TargetPolicy>,
    /// The `redirect_type` of rows without one (the API's
    /// `DEFAULT_REDIRECT_TYPE`).
    pub default_redirect_type: i16,
}

impl UrlRules {
    /// The rules of the API's configuration (`PUBLIC_HOSTS`,
    /// `TARGET_BLOCKLIST_FILE`, `DEFAULT_REDIRECT_TYPE`).
    pub fn from_config(config: &crate::config::ApiConfig) -> anyhow::Result<Self> {
        Ok(Self {
            targets: Arc::new(config.target_policy()?),
            default_redirect_type: config.default_redirect_type,
        })
    }
}

impl Default for UrlRules {
    /// The default target policy and redirect type (302).
    fn default() -> Self {
        Self {
            targets: Arc::default(),
            default_redirect_type: i16::try_from(
                shortline_shared::link_rules::DEFAULT_REDIRECT_TYPE,
            )
            .unwrap_or(302),
        }
    }
}

/// Column positions in a urls CSV, and the rules rows are checked by.
pub(super) struct UrlRows {
    rules: UrlRules,
    id: Option<usize>,
    user_id: usize,
    short_code: usize,
    original_url: usize,
    title: Option<usize>,
    is_active: Option<usize>,
    created_at: Option<usize>,
    updated_at: Option<usize>,
    redirect_type: Option<usize>,
    expires_at: Option<usize>,
    max_clicks: Option<usize>,
    fallback_url: Option<usize>,
    forward_query: Option<usize>,
    link_rules: Option<usize>,
}

#[derive(Default)]
pub(super) struct UrlBatch {
    pub(super) ids: Vec<Option<i64>>,
    pub(super) user_ids: Vec<i64>,
    pub(super) short_codes: Vec<String>,
    pub(super) original_urls: Vec<String>,
    pub(super) titles: Vec<Option<String>>,
    pub(super) is_active: Vec<bool>,
    pub(super) created_at: Vec<Option<DateTime<Utc>>>,
    pub(super) updated_at: Vec<Option<DateTime<Utc>>>,
    pub(super) redirect_types: Vec<i16>,
    pub(super) expires_at: Vec<Option<DateTime<Utc>>>,
    pub(super) max_clicks: Vec<Option<i64>>,
    pub(super) fallback_urls: Vec<Option<String>>,
    pub(super) forward_query: Vec<bool>,
    /// Each row's rules as JSON text (`[]` when none).
    pub(super) rules: Vec<String>,
}

impl CsvTable for UrlRows {
    const NAME: &'static str = "urls";
    const HEADER: &'static str = "id,user_id,short_code,original_url,title,is_active,created_at,updated_at,redirect_type,expires_at,max_clicks,fallback_url,forward_query,rules";
    type Batch = UrlBatch;
    type Rules = UrlRules;

    fn from_header(h: &Header, rules: UrlRules) -> Result<Self, String> {
        let [user_id, short_code, original_url] =
            h.require(["user_id", "short_code", "original_url"], Self::HEADER)?;
        Ok(UrlRows {
            rules,
            id: h.find("id"),
            user_id,
            short_code,
            original_url,
            title: h.find("title"),
            is_active: h.find("is_active"),
            created_at: h.find("created_at"),
            updated_at: h.find("updated_at"),
            redirect_type: h.find("redirect_type"),
            expires_at: h.find("expires_at"),
            max_clicks: h.find("max_clicks"),
            fallback_url: h.find("fallback_url"),
            forward_query: h.find("forward_query"),
            link_rules: h.find("rules"),
        })
    }

    fn push(&self, r: &ByteRecord, batch: &mut UrlBatch) -> Result<(), String> {
        let id = parse_optional_id(optional(r, self.id, "id")?, "id")?;
        let user_id = parse_id(required(r, self.user_id, "user_id")?, "user_id")?;
        let short_code = required(r, self.short_code, "short_code")?;
        check_custom(short_code).map_err(|e| format!("short_code: {e}"))?;
        let original_url = required(r, self.original_url, "original_url")?;
        let targets = &self.rules.targets;
        targets
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
        let redirect_type = optional(r, self.redirect_type, "redirect_type")?
            .map(|s| {
                s.parse::<u64>()
                    .ok()
                    .and_then(redirect_type)
                    .ok_or_else(|| {
                        format!(
                            "redirect_type: {}, got {:?}",
                            redirect_type_problem(),
                            clip(s)
                        )
                    })
            })
            .transpose()?
            .unwrap_or(self.rules.default_redirect_type);
        let expires_at = optional(r, self.expires_at, "expires_at")?
            .map(|s| {
                parse_expires_at(s)
                    .ok_or_else(|| format!("expires_at: {EXPIRES_AT_PROBLEM}, got {:?}", clip(s)))
            })
            .transpose()?;
        let max_clicks = optional(r, self.max_clicks, "max_clicks")?
            .map(|s| match s.parse::<i64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "max_clicks: must be a positive integer, got {:?}",
                    clip(s)
                )),
            })
            .transpose()?;
        let fallback_url = optional(r, self.fallback_url, "fallback_url")?;
        if let Some(url) = fallback_url {
            targets
                .check(url)
                .map_err(|e| format!("fallback_url: {e}"))?;
        }
        let forward_query = optional(r, self.forward_query, "forward_query")?
            .map(|s| parse_bool(s, "forward_query"))
            .transpose()?
            .unwrap_or(false);
        let rules = match optional(r, self.link_rules, "rules")? {
            None => Vec::new(),
            Some(text) => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| format!("rules: must be a JSON array of rules ({e})"))?;
                let mut first = None;
                let rules = parse_rules(&value, &mut |path, problem| {
                    first.get_or_insert(format!("{path}: {problem}"));
                });
                match (rules, first) {
                    (Some(rules), None) => rules,
                    (_, problem) => return Err(problem.unwrap_or_else(|| "rules: invalid".into())),
                }
            }
        };
        for (i, rule) in rules.iter().enumerate() {
            targets
                .check(&rule.target)
                .map_err(|e| format!("rules[{i}].target: {e}"))?;
        }
        let rules = serde_json::to_string(&rules).map_err(|e| format!("rules: {e}"))?;
        batch.ids.push(id);
        batch.user_ids.push(user_id);
        batch.short_codes.push(short_code.to_owned());
        batch.original_urls.push(original_url.to_owned());
        batch.titles.push(title.map(str::to_owned));
        batch.is_active.push(is_active);
        batch.created_at.push(created_at);
        batch.updated_at.push(updated_at);
        batch.redirect_types.push(redirect_type);
        batch.expires_at.push(expires_at);
        batch.max_clicks.push(max_clicks);
        batch.fallback_urls.push(fallback_url.map(str::to_owned));
        batch.forward_query.push(forward_query);
        batch.rules.push(rules);
        Ok(())
    }

    fn insert<'c>(
        conn: &'c mut PgConnection,
        batch: &'c Self::Batch,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
        repo::insert_urls(conn, batch)
    }

    fn len(batch: &UrlBatch) -> usize {
        batch.ids.len()
    }
}

/// Column positions in an events CSV.
pub(super) struct EventRows {
    id: usize,
    url_id: Option<usize>,
    user_id: Option<usize>,
    event_type: usize,
    timestamp: usize,
    details: Option<usize>,
}

#[derive(Default)]
pub(super) struct EventBatch {
    pub(super) ids: Vec<i64>,
    pub(super) event_ids: Vec<String>,
    pub(super) url_ids: Vec<Option<i64>>,
    pub(super) user_ids: Vec<Option<i64>>,
    pub(super) event_types: Vec<String>,
    pub(super) occurred_at: Vec<DateTime<Utc>>,
    pub(super) details: Vec<String>,
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
        batch.ids.push(id);
        batch.event_ids.push(seed_event_id(id, at).to_string());
        batch.url_ids.push(url_id);
        batch.user_ids.push(user_id);
        batch.event_types.push(event_type.to_owned());
        batch.occurred_at.push(at);
        batch.details.push(details.to_string());
        Ok(())
    }

    fn insert<'c>(
        conn: &'c mut PgConnection,
        batch: &'c Self::Batch,
    ) -> impl Future<Output = Result<u64, sqlx::Error>> + Send + 'c {
        repo::insert_events(conn, batch)
    }

    fn len(batch: &EventBatch) -> usize {
        batch.ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::pipeline::ParseFailure;
    use crate::import::pipeline::tests::parse_all;

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
    fn url_rows_with_rule_columns() {
        let csv = "user_id,short_code,original_url,redirect_type,expires_at,max_clicks,fallback_url,forward_query,rules\n\
                   1,full01,https://x.io/a,307,2030-01-02T03:04:05+01:00,5,https://x.io/f,true,\"[{\"\"when\"\":{\"\"os\"\":[\"\"ios\"\"]},\"\"target\"\":\"\"https://x.io/i\"\"}]\"\n\
                   1,dflt01,https://x.io/b,,,,,,\n\
                   1,bad001,https://x.io/c,302.0,,,,,\n\
                   1,bad002,https://x.io/c,,,-4,,,\n\
                   1,bad003,https://x.io/c,,,,,,\"[{\"\"when\"\":{\"\"os\"\":[\"\"beos\"\"]},\"\"target\"\":\"\"https://x.io/i\"\"}]\"\n\
                   1,bad004,https://x.io/c,,,,,,{\n\
                   1,bad005,https://x.io/c,,,,http://localhost:8000/x,,\n";
        let (outcome, chunks) = parse_all::<UrlRows>(csv, 10);
        let outcome = outcome.expect("parses");
        assert_eq!((outcome.rows, outcome.invalid), (7, 5));
        let problems: Vec<&str> = outcome
            .problems
            .iter()
            .map(|p| p.problem.as_str())
            .collect();
        assert!(
            problems[0].starts_with("redirect_type: must be one of 301, 302, 307, 308"),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with("max_clicks: must be a positive integer"),
            "{problems:?}"
        );
        assert_eq!(
            problems[2],
            "rules[0].when.os[0]: must be one of ios, android, windows, macos, linux, chromeos, other"
        );
        assert!(
            problems[3].starts_with("rules: must be a JSON array of rules"),
            "{problems:?}"
        );
        assert!(
            problems[4].starts_with("fallback_url: must not point at this service"),
            "{problems:?}"
        );
        let b = &chunks[0].batch;
        assert_eq!(b.redirect_types, [307, 302]);
        assert_eq!(b.max_clicks, [Some(5), None]);
        assert_eq!(b.fallback_urls, [Some("https://x.io/f".to_owned()), None]);
        assert_eq!(b.forward_query, [true, false]);
        assert_eq!(
            b.rules,
            [
                r#"[{"when":{"os":["ios"]},"target":"https://x.io/i"}]"#,
                "[]"
            ]
        );
        assert_eq!(
            b.expires_at[0].map(|t| shortline_shared::wire::format_timestamp(&t)),
            Some("2030-01-02T02:04:05".to_owned())
        );
        assert_eq!(b.expires_at[1], None);
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
        assert_eq!(
            b.event_ids[0],
            seed_event_id(1, b.occurred_at[0]).to_string()
        );
        assert_eq!(b.event_ids[0].len(), 26);
    }
}
