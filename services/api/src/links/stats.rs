//! Redirect statistics of one link (`GET /urls/{id}/stats`): the all-time
//! totals, a zero-filled time series over a range, and the range's top
//! referrers and user-agent breakdowns, all read from the rollups the
//! analytics consumer maintains (`link_stats`, `link_stats_hourly`,
//! `link_stats_referrers`, `link_stats_agents`).
//!
//! Ranges are whole UTC buckets: the series runs from the bucket holding
//! `from` to the bucket holding `to`, both included; the daily breakdowns
//! cover the UTC days from `from`'s to `to`'s, both included.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Timelike, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use shortline_shared::wire;

use super::model::Link;
use super::repo::{self, AgentCount};
use crate::error::{ApiError, FieldErrors};
use crate::ids::LinkId;
use crate::state::AppState;

/// Most buckets one series may hold.
pub const MAX_POINTS: i64 = 2000;
/// The range when `from` is not given: this long before `to`.
pub const DEFAULT_RANGE: TimeDelta = TimeDelta::days(7);
/// How many referrers `top_referrers` lists.
pub const TOP_REFERRERS: i64 = 10;
/// How a redirect without a usable `Referer` is listed.
pub const DIRECT: &str = "(direct)";

/// The width of one series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Hour,
    Day,
}

impl Interval {
    fn parse(raw: &str) -> Option<Self> {
        match raw.trim() {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            _ => None,
        }
    }

    /// The unit as PostgreSQL's `date_trunc` and `interval` spell it.
    pub fn sql_unit(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
        }
    }

    fn step(self) -> TimeDelta {
        match self {
            Interval::Hour => TimeDelta::hours(1),
            Interval::Day => TimeDelta::days(1),
        }
    }

    /// The start of the bucket holding `t`.
    fn bucket_of(self, t: DateTime<Utc>) -> NaiveDateTime {
        let t = t.naive_utc();
        let time = match self {
            Interval::Hour => NaiveTime::from_hms_opt(t.hour(), 0, 0),
            Interval::Day => NaiveTime::from_hms_opt(0, 0, 0),
        };
        t.date().and_time(time.unwrap_or(NaiveTime::MIN))
    }
}

/// A checked statistics range: `from` ≤ `to`, at most [`MAX_POINTS`]
/// buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub interval: Interval,
}

impl StatsRange {
    /// Reads the raw query values (`to` defaults to `now`, `from` to seven
    /// days before `to`, `interval` to `hour`); every bad value is named in
    /// one 400.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        interval: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Self, ApiError> {
        let mut errors = FieldErrors::new();
        let mut timestamp = |field: &str, raw: Option<&str>| match raw.map(parse_bound) {
            None => Some(None),
            Some(Ok(t)) => Some(Some(t)),
            Some(Err(problem)) => {
                errors.insert(field.to_owned(), problem.to_owned());
                None
            }
        };
        let from = timestamp("from", from);
        let to = timestamp("to", to);
        let interval = match interval.map(|raw| (raw, Interval::parse(raw))) {
            None => Some(Interval::Hour),
            Some((_, Some(i))) => Some(i),
            Some((raw, None)) => {
                errors.insert(
                    "interval".into(),
                    format!("must be `hour` or `day`, got {raw:?}"),
                );
                None
            }
        };
        let (Some(from), Some(to), Some(interval)) = (from, to, interval) else {
            return Err(ApiError::Validation(errors));
        };
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to - DEFAULT_RANGE);
        let range = StatsRange { from, to, interval };
        if from > to {
            errors.insert("from".into(), "must not be after `to`".into());
        } else if range.points() > MAX_POINTS {
            errors.insert(
                "from".into(),
                format!(
                    "the range holds {} {} buckets, more than the {MAX_POINTS} allowed: \
                     narrow the range{}",
                    range.points(),
                    interval.sql_unit(),
                    if interval == Interval::Hour {
                        " or use interval=day"
                    } else {
                        ""
                    }
                ),
            );
        }
        if errors.is_empty() {
            Ok(range)
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// Start of the first bucket.
    pub fn first_bucket(&self) -> NaiveDateTime {
        self.interval.bucket_of(self.from)
    }

    /// Start of the last bucket.
    pub fn last_bucket(&self) -> NaiveDateTime {
        self.interval.bucket_of(self.to)
    }

    /// Number of buckets in the series.
    pub fn points(&self) -> i64 {
        let span = self.last_bucket() - self.first_bucket();
        span.num_seconds() / self.interval.step().num_seconds() + 1
    }

    /// The UTC days the breakdowns cover (both included).
    pub fn days(&self) -> (NaiveDate, NaiveDate) {
        (self.from.date_naive(), self.to.date_naive())
    }
}

/// A range bound: any timestamp shape the API accepts, in years 1–9999.
fn parse_bound(raw: &str) -> Result<DateTime<Utc>, &'static str> {
    let problem = "must be a timestamp like 2025-09-19T22:25:05 (UTC)";
    let t = wire::parse_timestamp(raw).ok_or(problem)?;
    if (1..=9999).contains(&t.year()) {
        Ok(t)
    } else {
        Err(problem)
    }
}

/// `GET /urls/{id}/stats`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LinkStats {
    pub url: Link,
    /// Successful redirects recorded for this link, all time.
    pub redirect_count: i64,
    /// Time of the latest redirect (`YYYY-MM-DDTHH:MM:SS`), or null.
    #[serde(with = "shortline_shared::wire::timestamp_opt")]
    #[schemars(with = "Option<String>")]
    pub last_redirect_at: Option<DateTime<Utc>>,
    /// Start of the range (as asked, or its default), `YYYY-MM-DDTHH:MM:SS`.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2026-11-16T09:30:00")]
    pub from: DateTime<Utc>,
    /// End of the range (as asked, or now), `YYYY-MM-DDTHH:MM:SS`.
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2026-11-23T09:30:00")]
    pub to: DateTime<Utc>,
    /// Bucket width of `series`.
    pub interval: Interval,
    /// Redirects per bucket, every bucket from the one holding `from` to the
    /// one holding `to` (UTC), empty buckets included with `count: 0`.
    pub series: Vec<SeriesPoint>,
    /// The ten most frequent referrer hosts on the range's days; `(direct)`
    /// counts redirects without a usable `Referer`.
    pub top_referrers: Vec<ReferrerCount>,
    /// Redirects by browser family on the range's days.
    pub browsers: Vec<NamedCount>,
    /// Redirects by operating-system family on the range's days.
    pub operating_systems: Vec<NamedCount>,
    /// Redirects by device class (`desktop`, `mobile`, `tablet`, `bot`,
    /// `other`) on the range's days.
    pub devices: Vec<NamedCount>,
    /// Redirects by known bots and crawlers on the range's days.
    pub bots: i64,
}

/// One bucket of the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct SeriesPoint {
    /// Start of the bucket, `YYYY-MM-DDTHH:MM:SS` (UTC).
    #[serde(with = "shortline_shared::wire::timestamp")]
    #[schemars(with = "String", example = "2026-11-22T14:00:00")]
    pub start: DateTime<Utc>,
    pub count: i64,
}

/// Redirects from one referrer host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ReferrerCount {
    /// A host such as `news.example.org`, or `(direct)`.
    pub referrer: String,
    pub count: i64,
}

/// Redirects of one browser, operating system or device class.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct NamedCount {
    pub name: String,
    pub count: i64,
}

/// A link's statistics over a range; 404 when the link does not exist.
///
/// All reads share one snapshot, so the answer never mixes a rollup fold's
/// before and after (e.g. `bots` counted but `top_referrers` not yet).
pub async fn stats(state: &AppState, id: LinkId, range: StatsRange) -> Result<LinkStats, ApiError> {
    let mut conn = state
        .db
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let url = repo::get(&mut conn, id)
        .await?
        .map(|link| super::present(state, link))
        .ok_or_else(LinkId::not_found)?;
    let (redirect_count, last_redirect_at) = repo::redirect_totals(&mut conn, id).await?;
    let series = repo::redirect_series(
        &mut conn,
        id,
        range.first_bucket(),
        range.last_bucket(),
        range.interval,
    )
    .await?;
    let (first_day, last_day) = range.days();
    let top_referrers = repo::top_referrers(&mut conn, id, first_day, last_day, TOP_REFERRERS)
        .await?
        .into_iter()
        .map(|(referrer, count)| ReferrerCount {
            referrer: if referrer.is_empty() {
                DIRECT.to_owned()
            } else {
                referrer
            },
            count,
        })
        .collect();
    let agents = repo::agent_counts(&mut conn, id, first_day, last_day).await?;
    conn.commit().await?;
    Ok(LinkStats {
        url,
        redirect_count,
        last_redirect_at,
        from: range.from,
        to: range.to,
        interval: range.interval,
        series,
        top_referrers,
        browsers: breakdown(&agents, |a| &a.browser),
        operating_systems: breakdown(&agents, |a| &a.os),
        devices: breakdown(&agents, |a| &a.device),
        bots: agents.iter().filter(|a| a.is_bot).map(|a| a.count).sum(),
    })
}

/// Sums agent rows by one of their names; by count, most first, then name.
fn breakdown(agents: &[AgentCount], name: impl Fn(&AgentCount) -> &String) -> Vec<NamedCount> {
    let mut sums: BTreeMap<&str, i64> = BTreeMap::new();
    for a in agents {
        *sums.entry(name(a).as_str()).or_default() += a.count;
    }
    let mut out: Vec<NamedCount> = sums
        .into_iter()
        .map(|(name, count)| NamedCount {
            name: name.to_owned(),
            count,
        })
        .collect();
    // The map already ordered names; a stable sort keeps that among equals.
    out.sort_by_key(|n| std::cmp::Reverse(n.count));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        wire::parse_timestamp(s).unwrap_or_else(|| panic!("{s}"))
    }

    fn details(e: ApiError) -> FieldErrors {
        match e {
            ApiError::Validation(d) => d,
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn defaults_to_the_last_week_by_hour() {
        let now = at("2026-11-23T10:30:00");
        let r = StatsRange::parse(None, None, None, now).expect("valid");
        assert_eq!((r.from, r.to), (at("2026-11-16T10:30:00"), now));
        assert_eq!(r.interval, Interval::Hour);
        assert_eq!(r.points(), 7 * 24 + 1);
        assert_eq!(r.first_bucket(), at("2026-11-16T10:00:00").naive_utc());
        let to_only =
            StatsRange::parse(None, Some("2026-01-08 00:00:00"), Some("day"), now).expect("valid");
        assert_eq!(to_only.from, at("2026-01-01T00:00:00"));
        assert_eq!(to_only.points(), 8);
        assert_eq!(
            to_only.days(),
            (
                NaiveDate::from_ymd_opt(2026, 1, 1).expect("date"),
                NaiveDate::from_ymd_opt(2026, 1, 8).expect("date")
            )
        );
    }

    #[test]
    fn accepts_every_wire_shape() {
        let now = at("2026-11-23T10:30:00");
        for s in [
            "2026-11-20T01:02:03",
            "2026-11-20 01:02:03",
            "2026-11-20T01:02:03.5",
            "2026-11-20T01:02:03Z",
            "2026-11-20T03:02:03+02:00",
        ] {
            let r = StatsRange::parse(Some(s), None, None, now).expect(s);
            assert_eq!(
                wire::format_timestamp(&r.from),
                "2026-11-20T01:02:03",
                "{s}"
            );
        }
    }

    #[test]
    fn rejects_bad_values_naming_each_field() {
        let now = at("2026-11-23T10:30:00");
        let e = details(
            StatsRange::parse(Some("yesterday"), Some("x"), Some("week"), now).expect_err("bad"),
        );
        assert_eq!(
            e.keys().map(String::as_str).collect::<Vec<_>>(),
            ["from", "interval", "to"]
        );
        let e = details(
            StatsRange::parse(
                Some("2026-11-02T00:00:00"),
                Some("2026-11-01T00:00:00"),
                None,
                now,
            )
            .expect_err("reversed"),
        );
        assert!(e.contains_key("from"));
        assert!(StatsRange::parse(Some("0000-01-01T00:00:00"), None, None, now).is_err());
    }

    #[test]
    fn limits_the_number_of_points() {
        let now = at("2026-11-23T10:30:00");
        // 2,000 hourly buckets: 1999 hours apart.
        let to = "2026-03-01T00:00:00";
        let from = at(to) - TimeDelta::hours(MAX_POINTS - 1);
        let from = wire::format_timestamp(&from);
        let ok = StatsRange::parse(Some(&from), Some(to), None, now).expect("2000 points");
        assert_eq!(ok.points(), MAX_POINTS);
        let from = wire::format_timestamp(&(at(to) - TimeDelta::hours(MAX_POINTS)));
        let e = details(StatsRange::parse(Some(&from), Some(to), None, now).expect_err("2001"));
        assert!(e["from"].contains("interval=day"), "{e:?}");
        assert!(StatsRange::parse(Some(&from), Some(to), Some("day"), now).is_ok());
    }

    #[test]
    fn breakdowns_sum_by_name_most_first() {
        let row = |browser: &str, os: &str, count| AgentCount {
            browser: browser.into(),
            os: os.into(),
            device: "desktop".into(),
            is_bot: false,
            count,
        };
        let rows = [
            row("Firefox", "Linux", 2),
            row("Chrome", "Linux", 3),
            row("Firefox", "Windows", 2),
            row("Safari", "macOS", 4),
        ];
        let names = |v: Vec<NamedCount>| -> Vec<(String, i64)> {
            v.into_iter().map(|n| (n.name, n.count)).collect()
        };
        assert_eq!(
            names(breakdown(&rows, |a| &a.browser)),
            [
                ("Firefox".to_owned(), 4),
                ("Safari".to_owned(), 4),
                ("Chrome".to_owned(), 3)
            ]
        );
        assert_eq!(
            names(breakdown(&rows, |a| &a.os)),
            [
                ("Linux".to_owned(), 5),
                ("macOS".to_owned(), 4),
                ("Windows".to_owned(), 2)
            ]
        );
    }
}
