//! Links exported from other shorteners, for `shortline-api import --from
//! bitly|shlink|kutt|yourls FILE`: their export formats read into one
//! [`ForeignLink`] per row, keeping codes, titles, tags, creation dates and,
//! where exported, visit counts.
//!
//! The formats, as the tools write them:
//! * **Shlink**: the web client's "Export" CSV, `createdAt,domain,shortCode,
//!   shortUrl,longUrl,title,tags,visits` (tags joined by `|`; older clients
//!   wrote `createdAt,shortUrl,longUrl,title,tags,visits` with tags joined
//!   by `,`, the code then comes from `shortUrl`).
//! * **Bitly**: the API's bitlink list (`GET /v4/groups/{group}/bitlinks`:
//!   `{"links": [{"id": "bit.ly/abc", "link", "long_url", "title",
//!   "created_at": "2024-01-02T03:04:05+0000", "tags": [...],
//!   "custom_bitlinks": [...]}]}`), or a CSV export whose columns are found
//!   by name (`link`/`bitlink`/`short link`, `long_url`/`long url`/
//!   `destination url`, `title`, `tags`, `created`/`created_at`/`date
//!   created`, `clicks`/`engagements`/`total clicks`).
//! * **Kutt**: the API's link list (`GET /api/v2/links`: `{"data":
//!   [{"address", "target", "description", "created_at", "visit_count",
//!   "domain", "link", "tags"?}]}`, or the bare array).
//! * **YOURLS**: the API's `action=stats&format=json` answer (`{"links":
//!   {"link_1": {"shorturl", "url", "title", "timestamp", "clicks"}}}`), or
//!   a CSV of its `yourls_url` table (`keyword,url,title,timestamp,ip,
//!   clicks`). Its timestamps are the server's local time; they are taken
//!   as UTC.
//!
//! A row that cannot be read (no code, a code Shortline cannot serve, no
//! target) is reported with its row number and skipped; the others load.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use serde_json::Value;

/// The tools whose exports are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    Bitly,
    Shlink,
    Kutt,
    Yourls,
}

/// One exported link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignLink {
    /// 1-based row (CSV: the data row; JSON: the link's position).
    pub row: usize,
    pub code: String,
    /// The host of its short URL (as exported), if known.
    pub host: Option<String>,
    pub long_url: String,
    pub title: Option<String>,
    pub tags: Vec<String>,
    pub created_at: Option<DateTime<Utc>>,
    pub visits: Option<i64>,
}

/// A row that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub row: usize,
    pub error: String,
}

/// Reads an export of `source`: every link, or the problem of its row.
/// Fails only when the file as a whole is not such an export.
pub fn read(source: Source, bytes: &[u8]) -> anyhow::Result<Vec<Result<ForeignLink, RowProblem>>> {
    let text = std::str::from_utf8(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes))
        .map_err(|_| anyhow::anyhow!("the file is not UTF-8 text"))?;
    let json = text.trim_start().starts_with(['{', '[']);
    match (source, json) {
        (Source::Shlink, false) => read_csv(text, &SHLINK),
        (Source::Bitly, false) => read_csv(text, &BITLY),
        (Source::Yourls, false) => read_csv(text, &YOURLS),
        (Source::Bitly, true) => read_json(text, "links", &BITLY),
        (Source::Kutt, true) => read_json(text, "data", &KUTT_JSON),
        (Source::Yourls, true) => read_json(text, "links", &YOURLS),
        (Source::Kutt, false) => anyhow::bail!("a Kutt export is the JSON of its link list"),
        (Source::Shlink, true) => anyhow::bail!("a Shlink export is the web client's CSV"),
    }
}

/// Where a format keeps each field: candidate column or key names (CSV
/// headers compared case-insensitively), in order of preference.
struct Columns {
    code: &'static [&'static str],
    short_url: &'static [&'static str],
    domain: &'static [&'static str],
    long_url: &'static [&'static str],
    title: &'static [&'static str],
    tags: &'static [&'static str],
    created: &'static [&'static str],
    visits: &'static [&'static str],
}

const SHLINK: Columns = Columns {
    code: &["shortcode"],
    short_url: &["shorturl"],
    domain: &["domain"],
    long_url: &["longurl"],
    title: &["title"],
    tags: &["tags"],
    created: &["createdat", "datecreated"],
    visits: &["visits", "visitscount"],
};

const BITLY: Columns = Columns {
    code: &[],
    short_url: &["link", "bitlink", "short link", "short url", "id"],
    domain: &[],
    long_url: &[
        "long_url",
        "long url",
        "destination url",
        "original url",
        "url",
    ],
    title: &["title"],
    tags: &["tags"],
    created: &["created_at", "created", "date created", "creation date"],
    visits: &["clicks", "total clicks", "engagements", "total engagements"],
};

const YOURLS: Columns = Columns {
    code: &["keyword"],
    short_url: &["shorturl"],
    domain: &[],
    long_url: &["url"],
    title: &["title"],
    tags: &[],
    created: &["timestamp"],
    visits: &["clicks"],
};

const KUTT_JSON: Columns = Columns {
    code: &["address"],
    short_url: &["link"],
    domain: &["domain"],
    long_url: &["target"],
    title: &["description", "title"],
    tags: &["tags"],
    created: &["created_at"],
    visits: &["visit_count"],
};

/// One record's fields by (lower-cased) name, whatever the file's shape.
type Record = HashMap<String, Value>;

fn read_csv(text: &str, columns: &Columns) -> anyhow::Result<Vec<Result<ForeignLink, RowProblem>>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("unreadable CSV header: {e}"))?
        .iter()
        .map(str::to_ascii_lowercase)
        .collect();
    let found = |names: &[&str]| names.iter().any(|n| headers.iter().any(|h| h == n));
    anyhow::ensure!(
        found(columns.long_url) && (found(columns.code) || found(columns.short_url)),
        "not this tool's export: the header needs a target column ({}) and a code or short URL column ({})",
        columns.long_url.join("/"),
        [columns.code, columns.short_url].concat().join("/")
    );
    let mut out = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        match record {
            Ok(record) => {
                let fields: Record = headers
                    .iter()
                    .zip(record.iter())
                    .map(|(h, v)| (h.clone(), Value::String(v.to_owned())))
                    .collect();
                out.push(link_of(row, &fields, columns));
            }
            Err(e) => out.push(Err(RowProblem {
                row,
                error: format!("unreadable CSV row: {e}"),
            })),
        }
    }
    Ok(out)
}

fn read_json(
    text: &str,
    list_key: &str,
    columns: &Columns,
) -> anyhow::Result<Vec<Result<ForeignLink, RowProblem>>> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("invalid JSON: {e}"))?;
    let items: Vec<Value> = match value {
        Value::Array(items) => items,
        Value::Object(mut top) => match top.remove(list_key) {
            Some(Value::Array(items)) => items,
            // YOURLS keys its links `link_1`, `link_2`, ... in order.
            Some(Value::Object(map)) => {
                let mut links: Vec<(String, Value)> = map.into_iter().collect();
                links.sort_by_key(|(k, _)| {
                    k.trim_start_matches(|c: char| !c.is_ascii_digit())
                        .parse::<u64>()
                        .unwrap_or(u64::MAX)
                });
                links.into_iter().map(|(_, v)| v).collect()
            }
            _ => anyhow::bail!("not this tool's export: no `{list_key}` list"),
        },
        _ => anyhow::bail!("not this tool's export: expected a JSON object or array"),
    };
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::Object(map) => {
                let fields: Record = map
                    .into_iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                link_of(i + 1, &fields, columns)
            }
            _ => Err(RowProblem {
                row: i + 1,
                error: "not a JSON object".into(),
            }),
        })
        .collect())
}

/// The first non-empty value among `names`, as text.
fn text(fields: &Record, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match fields.get(*n)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn link_of(row: usize, fields: &Record, columns: &Columns) -> Result<ForeignLink, RowProblem> {
    let problem = |error: String| RowProblem { row, error };
    let short_url = text(fields, columns.short_url);
    let parsed_short = short_url.as_deref().and_then(parse_short_url);
    let code = text(fields, columns.code)
        .or_else(|| parsed_short.as_ref().map(|(_, code)| code.clone()))
        .ok_or_else(|| problem("no short code (nor a short URL to take it from)".into()))?;
    let long_url = text(fields, columns.long_url).ok_or_else(|| problem("no target URL".into()))?;
    let host = text(fields, columns.domain)
        .or_else(|| parsed_short.map(|(host, _)| host))
        .map(|h| h.to_ascii_lowercase());
    let tags = columns
        .tags
        .iter()
        .find_map(|n| fields.get(*n))
        .map(tags_of)
        .unwrap_or_default();
    let created_at = match text(fields, columns.created) {
        Some(s) => {
            Some(parse_time(&s).ok_or_else(|| problem(format!("unreadable creation time {s:?}")))?)
        }
        None => None,
    };
    let visits = match text(fields, columns.visits) {
        Some(s) => Some(
            s.parse::<i64>()
                .ok()
                .filter(|v| *v >= 0)
                .ok_or_else(|| problem(format!("unreadable visit count {s:?}")))?,
        ),
        None => None,
    };
    let link = ForeignLink {
        row,
        code,
        host,
        long_url,
        title: text(fields, columns.title),
        tags,
        created_at,
        visits,
    };
    // PostgreSQL stores no NUL in text: such a row is refused here, not by
    // the insert (which would stop the whole import).
    let texts = [
        ("code", Some(&link.code)),
        ("target URL", Some(&link.long_url)),
        ("domain", link.host.as_ref()),
        ("title", link.title.as_ref()),
    ];
    let with_nul = texts
        .into_iter()
        .find(|(_, text)| text.is_some_and(|t| t.contains('\0')))
        .map(|(name, _)| name)
        .or_else(|| link.tags.iter().any(|t| t.contains('\0')).then_some("tags"));
    match with_nul {
        Some(name) => Err(problem(format!("{name}: contains a NUL character"))),
        None => Ok(link),
    }
}

/// `https://host/code` (or `host/code`, as Bitly ids are) → (host, code).
fn parse_short_url(s: &str) -> Option<(String, String)> {
    let with_scheme = if s.contains("://") {
        s.to_owned()
    } else {
        format!("https://{s}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    let code = url.path().trim_matches('/');
    (!code.is_empty() && !code.contains('/')).then(|| {
        (
            url.host_str().unwrap_or_default().to_owned(),
            code.to_owned(),
        )
    })
}

/// A JSON list of tags, or text joined by `|` (or `,` when there is no `|`).
fn tags_of(value: &Value) -> Vec<String> {
    let raw: Vec<String> = match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("name").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            })
            .collect(),
        Value::String(s) if s.contains('|') => s.split('|').map(str::to_owned).collect(),
        Value::String(s) => s.split(',').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let mut tags: Vec<String> = raw
        .into_iter()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect();
    tags.dedup();
    tags
}

/// RFC 3339, Bitly's `+0000` offsets, or `YYYY-MM-DD HH:MM:SS` (UTC).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z"))
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            [
                "%Y-%m-%d %H:%M:%S",
                "%Y-%m-%dT%H:%M:%S",
                "%Y-%m-%d %H:%M:%S%.f",
            ]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(|t| t.and_utc())
        })
        // The years the seed files may hold too (PostgreSQL refuses some
        // that chrono reads, which would stop the whole import).
        .filter(|t| (1..=9999).contains(&t.year()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(rows: Vec<Result<ForeignLink, RowProblem>>) -> Vec<ForeignLink> {
        rows.into_iter().map(|r| r.expect("row")).collect()
    }

    #[test]
    fn shlink_csv_old_and_new() {
        let new = "createdAt,domain,shortCode,shortUrl,longUrl,title,tags,visits\n\
            2024-03-01T10:00:00+00:00,s.test,abc12,https://s.test/abc12,https://example.com/a,Launch,promo|spring,42\n";
        let link = &ok(read(Source::Shlink, new.as_bytes()).expect("csv"))[0];
        assert_eq!(
            (link.code.as_str(), link.host.as_deref(), link.visits),
            ("abc12", Some("s.test"), Some(42))
        );
        assert_eq!(link.tags, ["promo", "spring"]);
        let old = "createdAt,shortUrl,longUrl,title,tags,visits\n\
            2021-01-01T00:00:00+01:00,https://s.test/old1,https://example.com/o,,\"a,b\",0\n";
        let link = &ok(read(Source::Shlink, old.as_bytes()).expect("csv"))[0];
        assert_eq!((link.code.as_str(), link.title.as_deref()), ("old1", None));
        assert_eq!(link.tags, ["a", "b"]);
        assert_eq!(
            link.created_at.map(|t| t.to_rfc3339()),
            Some("2020-12-31T23:00:00+00:00".into())
        );
    }

    #[test]
    fn problems_are_per_row_and_wrong_files_fail_whole() {
        let csv = "createdAt,domain,shortCode,shortUrl,longUrl,title,tags,visits\n\
            yesterday,,x1,,https://example.com,,,1\n,,,,https://example.com,,,\n,,x3,,https://example.com,,,-4\n";
        let rows = read(Source::Shlink, csv.as_bytes()).expect("csv");
        assert!(rows.iter().all(Result::is_err), "{rows:?}");
        assert_eq!(rows[1].as_ref().err().map(|p| p.row), Some(2));
        assert!(read(Source::Shlink, b"id,username\n1,x\n").is_err());
        // A NUL anywhere it would be stored, or a year PostgreSQL may refuse:
        // that row is reported, the others still come.
        let json = r#"{"data": [
            {"address": "n1", "target": "https://example.com/1", "description": "a\u0000b"},
            {"address": "n2", "target": "https://example.com/2", "created_at": "-5000-01-01 00:00:00"},
            {"address": "n3", "target": "https://example.com/3"}]}"#;
        let rows = read(Source::Kutt, json.as_bytes()).expect("json");
        let problems: Vec<_> = rows.iter().filter_map(|r| r.as_ref().err()).collect();
        assert_eq!(
            problems.iter().map(|p| p.row).collect::<Vec<_>>(),
            [1, 2],
            "{rows:?}"
        );
        assert!(
            problems[0].error.contains("title: contains a NUL"),
            "{problems:?}"
        );
        assert_eq!(rows[2].as_ref().map(|l| l.code.as_str()).ok(), Some("n3"));
        assert!(read(Source::Kutt, b"address,target\n").is_err());
        assert!(read(Source::Bitly, b"{\"nope\": 1}").is_err());
    }

    #[test]
    fn bitly_json_and_csv() {
        let json = r#"{"links": [{"created_at": "2023-05-06T07:08:09+0000", "id": "bit.ly/3xYz", "link": "https://bit.ly/3xYz",
            "custom_bitlinks": [], "long_url": "https://example.com/b", "title": "B", "archived": false, "tags": ["x", "y"]}],
            "pagination": {"total": 1}}"#;
        let link = &ok(read(Source::Bitly, json.as_bytes()).expect("json"))[0];
        assert_eq!(
            (link.code.as_str(), link.host.as_deref()),
            ("3xYz", Some("bit.ly"))
        );
        assert_eq!(
            link.created_at.map(|t| t.to_rfc3339()),
            Some("2023-05-06T07:08:09+00:00".into())
        );
        let csv = "Link,Long URL,Title,Tags,Created,Clicks\nbit.ly/abc,https://example.com/c,C,\"t1, t2\",2023-01-02 03:04:05,17\n";
        let link = &ok(read(Source::Bitly, csv.as_bytes()).expect("csv"))[0];
        assert_eq!((link.code.as_str(), link.visits), ("abc", Some(17)));
        assert_eq!(link.tags, ["t1", "t2"]);
    }

    #[test]
    fn kutt_and_yourls() {
        let kutt = r#"{"limit": 10, "skip": 0, "total": 1, "data": [{"id": "0e1b", "address": "kt1", "banned": false,
            "created_at": "2024-02-03T04:05:06.000Z", "updated_at": "2024-02-03T04:05:06.000Z", "description": "K",
            "link": "https://kutt.test/kt1", "password": false, "target": "https://example.com/k", "visit_count": 5}]}"#;
        let link = &ok(read(Source::Kutt, kutt.as_bytes()).expect("json"))[0];
        assert_eq!(
            (link.code.as_str(), link.title.as_deref(), link.visits),
            ("kt1", Some("K"), Some(5))
        );
        let yourls = r#"{"links": {"link_2": {"shorturl": "http://y.test/b", "url": "https://example.com/yb", "title": "YB",
            "timestamp": "2022-02-02 02:02:02", "ip": "127.0.0.1", "clicks": "9"},
            "link_1": {"shorturl": "http://y.test/a", "url": "https://example.com/ya", "title": "YA",
            "timestamp": "2022-01-01 01:01:01", "ip": "127.0.0.1", "clicks": "3"}}, "stats": {"total_links": "2"}}"#;
        let links = ok(read(Source::Yourls, yourls.as_bytes()).expect("json"));
        assert_eq!(
            links.iter().map(|l| l.code.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(links[1].visits, Some(9));
        let csv = "keyword,url,title,timestamp,ip,clicks\nyc,https://example.com/yc,YC,2022-03-03 03:03:03,10.0.0.1,4\n";
        let link = &ok(read(Source::Yourls, csv.as_bytes()).expect("csv"))[0];
        assert_eq!((link.code.as_str(), link.visits), ("yc", Some(4)));
    }
}
