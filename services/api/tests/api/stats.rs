//! `GET /urls/{id}/stats`: totals, the zero-filled series, referrers and
//! user-agent breakdowns, read from rollup rows written here with SQL (as
//! the analytics consumer would write them).

use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::{TestApp, is_wire_timestamp};

/// A user and a link; returns the link's JSON.
async fn link(app: &TestApp) -> Value {
    let uid = app.user("u").await["id"].as_i64().expect("id");
    app.link(uid, "https://stats.example.com/a").await
}

async fn hourly(db: &PgPool, url_id: i64, hour: &str, count: i64) {
    sqlx::query(
        "INSERT INTO link_stats_hourly (url_id, hour, redirect_count) VALUES ($1, $2::timestamptz, $3)",
    )
    .bind(url_id)
    .bind(hour)
    .bind(count)
    .execute(db)
    .await
    .expect("hourly row");
}

async fn referrer(db: &PgPool, url_id: i64, day: &str, host: &str, count: i64) {
    sqlx::query(
        "INSERT INTO link_stats_referrers (url_id, day, referrer, redirect_count) VALUES ($1, $2::date, $3, $4)",
    )
    .bind(url_id)
    .bind(day)
    .bind(host)
    .bind(count)
    .execute(db)
    .await
    .expect("referrer row");
}

async fn agent(db: &PgPool, url_id: i64, day: &str, agent: (&str, &str, &str, bool), count: i64) {
    sqlx::query(
        "INSERT INTO link_stats_agents (url_id, day, browser, os, device, is_bot, redirect_count)
         VALUES ($1, $2::date, $3, $4, $5, $6, $7)",
    )
    .bind(url_id)
    .bind(day)
    .bind(agent.0)
    .bind(agent.1)
    .bind(agent.2)
    .bind(agent.3)
    .bind(count)
    .execute(db)
    .await
    .expect("agent row");
}

fn series(stats: &Value) -> Vec<(String, i64)> {
    stats["series"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["start"].as_str().unwrap_or("?").to_owned(),
                p["count"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn pairs(list: &Value, key: &str) -> Vec<(String, i64)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p[key].as_str().unwrap_or("?").to_owned(),
                p["count"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn owned(v: &[(&str, i64)]) -> Vec<(String, i64)> {
    v.iter().map(|(s, n)| ((*s).to_owned(), *n)).collect()
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_link_without_redirects(db: PgPool) {
    let app = TestApp::new(db).await;
    let link = link(&app).await;
    let res = app.get(&format!("/urls/{}/stats", link["id"])).await;
    assert_eq!(res.status, StatusCode::OK);
    let stats = res.json();
    assert_eq!(stats["url"], link);
    assert_eq!(stats["redirect_count"], 0);
    assert_eq!(stats["last_redirect_at"], Value::Null);
    assert_eq!(stats["interval"], "hour");
    for key in ["top_referrers", "browsers", "operating_systems", "devices"] {
        assert_eq!(stats[key], json!([]), "{key}");
    }
    assert_eq!(stats["bots"], 0);
    // Default range: the 7 days before now, every hour present, all zero.
    assert!(is_wire_timestamp(&stats["from"]) && is_wire_timestamp(&stats["to"]));
    let parse = |v: &Value| {
        chrono::NaiveDateTime::parse_from_str(v.as_str().unwrap_or(""), "%Y-%m-%dT%H:%M:%S")
            .expect("timestamp")
    };
    let (from, to) = (parse(&stats["from"]), parse(&stats["to"]));
    assert_eq!(to - from, chrono::TimeDelta::days(7));
    assert!((chrono::Utc::now().naive_utc() - to).num_seconds().abs() < 60);
    let points = series(&stats);
    assert!(
        points.len() == 168 || points.len() == 169,
        "{}",
        points.len()
    );
    assert!(points.iter().all(|(_, n)| *n == 0));
    assert!(points.windows(2).all(|w| w[0].0 < w[1].0));
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_field_over_a_range(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let link = link(&app).await;
    let id = link["id"].as_i64().expect("id");
    let other = app
        .link(link["user_id"].as_i64().expect("uid"), "https://other.io")
        .await["id"]
        .as_i64()
        .expect("id");

    sqlx::query(
        "INSERT INTO link_stats (url_id, redirect_count, last_redirect_at)
         VALUES ($1, 1234, '2026-11-21 00:59:58.75+00')",
    )
    .bind(id)
    .execute(&db)
    .await
    .expect("totals");
    hourly(&db, id, "2026-11-19 23:00:00+00", 100).await;
    hourly(&db, id, "2026-11-20 10:00:00+00", 3).await;
    hourly(&db, id, "2026-11-20 12:00:00+00", 5).await;
    hourly(&db, id, "2026-11-21 00:00:00+00", 7).await;
    hourly(&db, other, "2026-11-20 11:00:00+00", 999).await;

    // Referrers: 12 hosts on the range's days, one outside, another link's.
    for (i, host) in ('a'..='l').enumerate() {
        let count = if i < 2 { 1 } else { i as i64 };
        referrer(&db, id, "2026-11-20", &format!("{host}.example.org"), count).await;
    }
    referrer(&db, id, "2026-11-20", "", 6).await;
    referrer(&db, id, "2026-11-21", "", 4).await;
    referrer(&db, id, "2026-11-22", "late.example.org", 500).await;
    referrer(&db, other, "2026-11-20", "other.example.org", 500).await;

    let firefox_linux = ("Firefox", "Linux", "desktop", false);
    agent(&db, id, "2026-11-20", firefox_linux, 4).await;
    agent(&db, id, "2026-11-21", firefox_linux, 1).await;
    agent(&db, id, "2026-11-20", ("Safari", "iOS", "mobile", false), 5).await;
    agent(
        &db,
        id,
        "2026-11-20",
        ("Chrome", "Android", "tablet", false),
        2,
    )
    .await;
    agent(
        &db,
        id,
        "2026-11-20",
        ("Googlebot", "Other", "bot", true),
        3,
    )
    .await;
    agent(
        &db,
        id,
        "2026-11-22",
        ("Edge", "Windows", "desktop", false),
        50,
    )
    .await;
    agent(
        &db,
        other,
        "2026-11-20",
        ("Edge", "Windows", "desktop", false),
        50,
    )
    .await;

    let stats = app
        .get(&format!(
            "/urls/{id}/stats?from=2026-11-20T10:30:00&to=2026-11-21T00:10:00"
        ))
        .await;
    assert_eq!(stats.status, StatusCode::OK);
    let stats = stats.json();
    assert_eq!(stats["url"], link);
    assert_eq!(stats["redirect_count"], 1234, "all time, not the range");
    assert_eq!(stats["last_redirect_at"], "2026-11-21T00:59:58");
    assert_eq!(stats["from"], "2026-11-20T10:30:00");
    assert_eq!(stats["to"], "2026-11-21T00:10:00");
    assert_eq!(stats["interval"], "hour");
    let points = series(&stats);
    assert_eq!(points.len(), 15, "10:00 … 00:00, both ends included");
    assert_eq!(points[0], ("2026-11-20T10:00:00".to_owned(), 3));
    assert_eq!(points[1], ("2026-11-20T11:00:00".to_owned(), 0));
    assert_eq!(points[2], ("2026-11-20T12:00:00".to_owned(), 5));
    assert_eq!(points[14], ("2026-11-21T00:00:00".to_owned(), 7));
    assert_eq!(points.iter().map(|p| p.1).sum::<i64>(), 15);
    for p in stats["series"].as_array().into_iter().flatten() {
        assert!(is_wire_timestamp(&p["start"]), "{p}");
        assert_eq!(p.as_object().map(|o| o.len()), Some(2), "{p}");
    }

    // Days 2026-11-20 and 2026-11-21: top ten, most first, ties by name.
    assert_eq!(
        pairs(&stats["top_referrers"], "referrer"),
        owned(&[
            ("l.example.org", 11),
            ("(direct)", 10),
            ("k.example.org", 10),
            ("j.example.org", 9),
            ("i.example.org", 8),
            ("h.example.org", 7),
            ("g.example.org", 6),
            ("f.example.org", 5),
            ("e.example.org", 4),
            ("d.example.org", 3),
        ])
    );
    assert_eq!(
        pairs(&stats["browsers"], "name"),
        owned(&[
            ("Firefox", 5),
            ("Safari", 5),
            ("Googlebot", 3),
            ("Chrome", 2)
        ])
    );
    assert_eq!(
        pairs(&stats["operating_systems"], "name"),
        owned(&[("Linux", 5), ("iOS", 5), ("Other", 3), ("Android", 2)])
    );
    assert_eq!(
        pairs(&stats["devices"], "name"),
        owned(&[("desktop", 5), ("mobile", 5), ("bot", 3), ("tablet", 2)])
    );
    assert_eq!(stats["bots"], 3);
    let mut keys: Vec<&str> = stats
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bots",
            "browsers",
            "devices",
            "from",
            "interval",
            "last_redirect_at",
            "operating_systems",
            "redirect_count",
            "series",
            "to",
            "top_referrers",
            "url"
        ]
    );

    // Day buckets sum the hours of each UTC day.
    let daily = app
        .get(&format!(
            "/urls/{id}/stats?from=2026-11-18T05:00:00&to=2026-11-22T01:00:00&interval=day"
        ))
        .await
        .json();
    assert_eq!(daily["interval"], "day");
    assert_eq!(
        series(&daily),
        owned(&[
            ("2026-11-18T00:00:00", 0),
            ("2026-11-19T00:00:00", 100),
            ("2026-11-20T00:00:00", 8),
            ("2026-11-21T00:00:00", 7),
            ("2026-11-22T00:00:00", 0),
        ])
    );
    // The wider range's days now include 2026-11-22.
    assert_eq!(daily["top_referrers"][0]["referrer"], "late.example.org");
    assert_eq!(daily["browsers"][0], json!({"name": "Edge", "count": 50}));

    // A range with nothing in it: zero buckets, empty breakdowns.
    let quiet = app
        .get(&format!(
            "/urls/{id}/stats?from=2026-11-01T00:00:00&to=2026-11-01T02:59:59"
        ))
        .await
        .json();
    assert_eq!(
        series(&quiet),
        owned(&[
            ("2026-11-01T00:00:00", 0),
            ("2026-11-01T01:00:00", 0),
            ("2026-11-01T02:00:00", 0),
        ])
    );
    assert_eq!(quiet["top_referrers"], json!([]));
    assert_eq!(quiet["browsers"], json!([]));
    assert_eq!(quiet["bots"], 0);
    assert_eq!(quiet["redirect_count"], 1234);

    // A single instant is one bucket; other accepted timestamp shapes.
    for query in [
        "from=2026-11-20T12:15:00&to=2026-11-20T12:15:00",
        "from=2026-11-20%2012:15:00&to=2026-11-20%2012:45:00.5",
        "from=2026-11-20T14:15:00%2B02:00&to=2026-11-20T12:59:59Z",
    ] {
        let one = app.get(&format!("/urls/{id}/stats?{query}")).await;
        assert_eq!(one.status, StatusCode::OK, "{query}");
        assert_eq!(
            series(&one.json()),
            owned(&[("2026-11-20T12:00:00", 5)]),
            "{query}"
        );
    }
    // Only `to`: `from` is seven days earlier.
    let to_only = app
        .get(&format!(
            "/urls/{id}/stats?to=2026-11-21T00:00:00&interval=day"
        ))
        .await
        .json();
    assert_eq!(to_only["from"], "2026-11-14T00:00:00");
    assert_eq!(series(&to_only).len(), 8);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bad_ranges_are_400_naming_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let id = link(&app).await["id"].as_i64().expect("id");
    let cases: &[(&str, &[&str])] = &[
        ("from=yesterday", &["from"]),
        ("to=2026-13-01T00:00:00", &["to"]),
        ("from=", &["from"]),
        ("interval=week", &["interval"]),
        ("interval=HOUR", &["interval"]),
        ("interval=", &["interval"]),
        ("from=2026-11-02T00:00:00&to=2026-11-01T00:00:00", &["from"]),
        // 2,001 hourly buckets.
        ("from=2026-01-01T00:00:00&to=2026-03-25T08:00:00", &["from"]),
        // Only `from`, long ago: the range up to now is too long.
        ("from=2000-01-01T00:00:00", &["from"]),
        // 2,001 daily buckets.
        (
            "from=2020-01-01T00:00:00&to=2025-06-23T00:00:00&interval=day",
            &["from"],
        ),
        // Only `from`, in the future: after the default `to`.
        ("from=2999-01-01T00:00:00", &["from"]),
        ("from=x&to=y&interval=z", &["from", "interval", "to"]),
    ];
    for (query, fields) in cases {
        let err = app
            .get(&format!("/urls/{id}/stats?{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert_eq!(err["error"], "validation failed", "{query}");
        let named: Vec<&str> = err["details"]
            .as_object()
            .map(|d| d.keys().map(String::as_str).collect())
            .unwrap_or_default();
        assert_eq!(&named, fields, "{query}: {err}");
    }
    // The largest ranges allowed: 2,000 buckets.
    for query in [
        "from=2026-01-01T00:00:00&to=2026-03-25T07:00:00",
        "from=2020-01-01T00:00:00&to=2025-06-22T00:00:00&interval=day",
    ] {
        let res = app.get(&format!("/urls/{id}/stats?{query}")).await;
        assert_eq!(res.status, StatusCode::OK, "{query}");
        assert_eq!(series(&res.json()).len(), 2000, "{query}");
    }
    // Unknown links stay a 404, whatever the range.
    for uri in [
        "/urls/999/stats".to_owned(),
        "/urls/999/stats?interval=day".to_owned(),
        "/urls/abc/stats".to_owned(),
        "/urls/0/stats".to_owned(),
    ] {
        let err = app.get(&uri).await.assert_error(StatusCode::NOT_FOUND);
        assert_eq!(err["error"], "URL not found", "{uri}");
    }
}
