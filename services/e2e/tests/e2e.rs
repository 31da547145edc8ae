//! The write API, redirect replicas and analytics against the same real
//! Postgres, Valkey and NATS: after the API answers a change, the very next
//! redirect on any replica reflects it (asked the way the service's server
//! asks: the fast path for links held in memory, the router for the rest);
//! every redirect logs one event; a redirect posted to the API reaches the
//! same statistics as a click, through the pipeline; and a seed's events are
//! counted by the analytics service's rebuild.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{Value, json};
use shortline_redirect::Service;
use shortline_redirect::config::RedirectConfig;
use shortline_redirect::fast::FastPath;
use shortline_shared::events::Subjects;
use shortline_shared::testing::{self, unique_prefix};
use sqlx::PgPool;

use shortline_e2e::send;

/// A new user (`username`) and a link of theirs to `url`, through the API;
/// both must be created.
async fn user_with_link(api: &Router, username: &str, url: &str) -> (Value, Value) {
    let (s, user, _) = send(
        api,
        Method::POST,
        "/users",
        Some(json!({"username": username, "email": format!("{username}@example.com")})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{user}");
    let (s, link, _) = send(
        api,
        Method::POST,
        "/urls",
        Some(json!({"user_id": user["id"], "original_url": url})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{link}");
    (user, link)
}

/// `GET /{code}` as the redirect service's server handles it: status and
/// `Location`.
async fn redirect_get(fast: &FastPath, code: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .uri(format!("/{code}"))
        .body(Body::empty())
        .expect("request");
    let response = fast.handle(request, ([127, 0, 0, 1], 40_000).into()).await;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (response.status(), location)
}

/// What a redirect for a code must answer right now.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Found(String),
    NotFound,
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_thousand_changes_and_never_a_stale_redirect(db: PgPool) {
    let prefix = unique_prefix();
    let (nats_url, valkey_url) = shortline_e2e::server_urls();
    let subjects = Subjects::new(&prefix);

    // Two redirect replicas (own L1 each, shared Valkey), started first so
    // their change consumers exist before the first change.
    let mut config = RedirectConfig::for_urls("postgres://unused", &valkey_url, &nats_url, &prefix);
    config.change_stream_wait_ms = 30_000;
    let replicas = [
        Service::start_with_pool(&config, db.clone())
            .await
            .expect("replica a"),
        Service::start_with_pool(&config, db.clone())
            .await
            .expect("replica b"),
    ];
    // As the service serves: the fast path in front of the router.
    let redirect: Vec<FastPath> = replicas
        .iter()
        .map(|s| FastPath::new(s.state.clone()))
        .collect();

    // The API, with its relay running too (the fast path and the relay race
    // for the same rows; the stream keeps one of each).
    let client = shortline_shared::nats::connect(&nats_url, "e2e")
        .await
        .expect("nats");
    let api_service = shortline_e2e::api(
        db.clone(),
        &prefix,
        Some(&nats_url),
        Duration::from_secs(30),
    )
    .await;
    let api = api_service.router();

    // Wait until both replicas read the change stream (it exists once the
    // relay has started).
    shortline_e2e::wait_for_change_readers(&client, &subjects, 2, Duration::from_secs(20), "")
        .await;

    let (status, user, _) = send(
        &api,
        Method::POST,
        "/users",
        Some(json!({"username": "e2e", "email": "e2e@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let user_id = user["id"].as_i64().expect("user id");

    let mut stale = Vec::new();
    let mut pairs = 0usize;
    let mut link: Option<(i64, String)> = None;
    let mut current = String::new();
    let mut round = 0usize;
    while pairs < 1000 {
        round += 1;
        // A live link to work on; a new one takes a code that both replicas
        // have just cached as unknown.
        let (id, code) = match &link {
            Some(l) => l.clone(),
            None => {
                let code = format!("e2e-{round}");
                for r in &redirect {
                    let (s, _) = redirect_get(r, &code).await;
                    assert_eq!(s, StatusCode::NOT_FOUND);
                }
                current = format!("https://example.com/{round}/start");
                let (s, body, _) = send(
                    &api,
                    Method::POST,
                    "/urls",
                    Some(json!({"user_id": user_id, "original_url": current, "short_code": code})),
                )
                .await;
                assert_eq!(s, StatusCode::CREATED, "{body}");
                let l = (body["id"].as_i64().expect("url id"), code);
                link = Some(l.clone());
                pairs += 1;
                check(
                    &redirect,
                    &l.1,
                    &Expect::Found(current.clone()),
                    &mut stale,
                    pairs,
                )
                .await;
                l
            }
        };
        let uri = format!("/urls/{id}");
        // Warm both replicas with the current answer, then change it.
        check(
            &redirect,
            &code,
            &Expect::Found(current.clone()),
            &mut stale,
            pairs,
        )
        .await;
        let step = round % 4;
        let expect = match step {
            0 | 1 => {
                current = format!("https://example.com/{round}/target-{step}");
                let (s, body, _) = send(
                    &api,
                    Method::PUT,
                    &uri,
                    Some(json!({"original_url": current})),
                )
                .await;
                assert_eq!(s, StatusCode::OK, "{body}");
                Expect::Found(current.clone())
            }
            2 => {
                let (s, body, _) =
                    send(&api, Method::PUT, &uri, Some(json!({"is_active": false}))).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                pairs += 1;
                check(&redirect, &code, &Expect::NotFound, &mut stale, pairs).await;
                let (s, body, _) =
                    send(&api, Method::PUT, &uri, Some(json!({"is_active": true}))).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                Expect::Found(current.clone())
            }
            _ => {
                let (s, _, _) = send(&api, Method::DELETE, &uri, None).await;
                assert_eq!(s, StatusCode::NO_CONTENT);
                link = None;
                Expect::NotFound
            }
        };
        pairs += 1;
        check(&redirect, &code, &expect, &mut stale, pairs).await;
    }
    assert!(
        stale.is_empty(),
        "{} stale answers in {pairs} change→redirect pairs: {:?}",
        stale.len(),
        &stale[..stale.len().min(10)]
    );

    api_service.shutdown().await;
    for s in replicas {
        s.shutdown().await;
    }
}

/// A takedown while NATS is away: the API tombstones Valkey itself and says
/// the change is unconfirmed; the redirect replica, no longer reading the
/// change stream, re-reads what L1 holds within a second, so the link stops
/// redirecting although no change event can reach it.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_takedown_takes_effect_while_nats_is_down(db: PgPool) {
    let prefix = unique_prefix();
    let (_, valkey_url) = shortline_e2e::server_urls();
    let mut nats = testing::OwnServer::start(testing::ServerKind::Nats).await;
    let api_service = shortline_e2e::api_with_valkey(
        db.clone(),
        &prefix,
        Some(&nats.url()),
        Duration::from_secs(5),
        &valkey_url,
    )
    .await;
    let api = api_service.router();
    let mut config =
        RedirectConfig::for_urls("postgres://unused", &valkey_url, &nats.url(), &prefix);
    config.change_stream_wait_ms = 30_000;
    let service = Service::start_with_pool(&config, db.clone())
        .await
        .expect("redirect");
    let fast = FastPath::new(service.state.clone());
    let (_, link) = user_with_link(&api, "takedown", "https://example.com/phish").await;
    let code = link["short_code"].as_str().expect("code").to_owned();
    // Valkey holds the link, as it does once the creation's short-lived
    // tombstone is gone and a replica loaded it (written here rather than
    // waited for).
    let valkey =
        shortline_shared::cache::Valkey::connect(&valkey_url, &Default::default()).expect("valkey");
    let key = shortline_shared::cache::link_key(&prefix, &code);
    let value = format!(
        "{}\t{}\thttps://example.com/phish",
        link["id"], link["user_id"]
    );
    let mut stored = false;
    for _ in 0..100 {
        if valkey
            .set(
                &key,
                &value,
                Duration::from_secs(600),
                Duration::from_secs(1),
            )
            .await
            .is_ok()
        {
            stored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(stored, "the link is in Valkey");
    // And in L1.
    for _ in 0..2 {
        assert_eq!(
            redirect_get(&fast, &code).await,
            (StatusCode::FOUND, "https://example.com/phish".to_owned())
        );
    }

    nats.stop();
    let request = Request::builder()
        .method(Method::PUT)
        .uri(format!("/urls/{}", link["id"]))
        .header("content-type", "application/json")
        .body(Body::from(r#"{"is_active": false}"#))
        .expect("request");
    let reply = testing::call(api.clone(), request).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("shortline-propagation"), "unconfirmed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (status, _) = redirect_get(&fast, &code).await;
        if status == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the deactivated link still redirects with NATS down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And it stays down.
    for _ in 0..20 {
        assert_eq!(redirect_get(&fast, &code).await.0, StatusCode::NOT_FOUND);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // NATS back: changes flow through the stream again and are confirmed.
    nats.resume().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let request = Request::builder()
            .method(Method::PUT)
            .uri(format!("/urls/{}", link["id"]))
            .header("content-type", "application/json")
            .body(Body::from(r#"{"title": "checked"}"#))
            .expect("request");
        let reply = testing::call(api.clone(), request).await;
        assert_eq!(reply.status, StatusCode::OK);
        if reply.header("shortline-propagation") == "acknowledged" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "changes are not confirmed after NATS came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    service.shutdown().await;
    api_service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_redirect_logs_one_event_end_to_end(db: PgPool) {
    let prefix = unique_prefix();
    let (nats_url, valkey_url) = shortline_e2e::server_urls();
    let api_service = shortline_e2e::api(
        db.clone(),
        &prefix,
        Some(&nats_url),
        Duration::from_secs(30),
    )
    .await;
    let api = api_service.router();
    let mut redirect_config =
        RedirectConfig::for_urls("postgres://unused", &valkey_url, &nats_url, &prefix);
    redirect_config.change_stream_wait_ms = 30_000;
    let replicas = [
        Service::start_with_pool(&redirect_config, db.clone())
            .await
            .expect("replica a"),
        Service::start_with_pool(&redirect_config, db.clone())
            .await
            .expect("replica b"),
    ];
    let analytics = shortline_analytics::Service::start_with_pool(
        &shortline_analytics::config::AnalyticsConfig::for_urls(&nats_url, &prefix),
        db.clone(),
    )
    .await
    .expect("analytics");

    let (_, link) = user_with_link(&api, "clicker", "https://example.com/landing").await;
    let code = link["short_code"].as_str().expect("code").to_owned();
    let id = link["id"].as_i64().expect("id");

    const N: usize = 250;
    for i in 0..N {
        let router = shortline_redirect::router(replicas[i % 2].state.clone());
        let (status, _, location) = send(&router, Method::GET, &format!("/{code}"), None).await;
        assert_eq!(
            (status, location.as_str()),
            (StatusCode::FOUND, "https://example.com/landing")
        );
    }
    // HEAD and unknown codes log nothing.
    let router = shortline_redirect::router(replicas[0].state.clone());
    assert_eq!(
        send(&router, Method::HEAD, &format!("/{code}"), None)
            .await
            .0,
        StatusCode::FOUND
    );
    assert_eq!(
        send(&router, Method::GET, "/no-such-code", None).await.0,
        StatusCode::NOT_FOUND
    );

    let events =
        shortline_e2e::redirect_events_once_counted(&api, id, N, Duration::from_secs(30)).await;
    assert_eq!(events.len(), N, "exactly one event per redirect");
    let (_, stats, _) = send(&api, Method::GET, &format!("/urls/{id}/stats"), None).await;
    assert_eq!(stats["redirect_count"], json!(N));
    assert!(
        events[0]["details"]["user_agent"].is_null()
            || events[0]["details"]["user_agent"].is_string()
    );

    for s in replicas {
        s.shutdown().await;
    }
    analytics.shutdown().await;
    api_service.shutdown().await;
}

/// Asks both replicas; records every answer that differs from `expect`.
async fn check(
    redirect: &[FastPath],
    code: &str,
    expect: &Expect,
    stale: &mut Vec<String>,
    pair: usize,
) {
    for (i, r) in redirect.iter().enumerate() {
        let (status, location) = redirect_get(r, code).await;
        let got = match status {
            StatusCode::FOUND => Expect::Found(location),
            StatusCode::NOT_FOUND => Expect::NotFound,
            other => panic!("unexpected status {other}"),
        };
        if &got != expect {
            stale.push(format!(
                "pair {pair} replica {i} code {code}: expected {expect:?}, got {got:?}"
            ));
        }
    }
}

/// A `redirect` recorded through `POST /events` (not through a redirect
/// replica) reaches the same statistics as a click: the API answers with the
/// event row at once and puts the event in its outbox; the relay publishes
/// it on the click stream, the analytics consumer adds it to the totals and
/// the hourly series, and its rollup job folds the breakdowns.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_posted_redirect_event_reaches_the_breakdowns(db: PgPool) {
    let prefix = unique_prefix();
    let (nats_url, _) = shortline_e2e::server_urls();
    let api_service =
        shortline_e2e::api(db.clone(), &prefix, Some(&nats_url), Duration::from_secs(2)).await;
    let api = api_service.router();
    let mut config = shortline_analytics::config::AnalyticsConfig::for_urls(&nats_url, &prefix);
    config.rollup_interval_ms = 50;
    let analytics = shortline_analytics::Service::start_with_pool(&config, db.clone())
        .await
        .expect("analytics");

    let (user, link) = user_with_link(&api, "poster", "https://example.com/posted").await;
    let id = link["id"].as_i64().expect("id");
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
    for details in [
        json!({"user_agent": firefox, "referrer": "https://news.example.org/a"}),
        json!({"user_agent": firefox}),
        json!({"user_agent": "curl/8.5.0", "referrer": "https://news.example.org/b"}),
    ] {
        let (status, body, _) = send(
            &api,
            Method::POST,
            "/events",
            Some(json!({"url_id": id, "user_id": user["id"], "event_type": "redirect", "details": details})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    // The log reads its own writes at once.
    let (_, events, _) = send(
        &api,
        Method::GET,
        &format!("/events?url_id={id}&event_type=redirect"),
        None,
    )
    .await;
    assert_eq!(events.as_array().map(Vec::len), Some(3), "{events}");
    let series_sum = |stats: &Value| -> i64 {
        stats["series"]
            .as_array()
            .expect("series")
            .iter()
            .filter_map(|p| p["count"].as_i64())
            .sum()
    };
    // The total, the last redirect and the hourly series within the
    // pipeline's latency; the breakdowns within the rollup interval after.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let (_, stats, _) = send(&api, Method::GET, &format!("/urls/{id}/stats"), None).await;
        if stats["redirect_count"] == json!(3) && stats["bots"] == json!(1) {
            break stats;
        }
        assert!(tokio::time::Instant::now() < deadline, "stats: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(series_sum(&stats), 3, "{stats}");
    assert!(
        stats["last_redirect_at"]
            .as_str()
            .is_some_and(|t| t.len() == 19 && t.as_bytes()[10] == b'T'),
        "{stats}"
    );
    assert_eq!(
        stats["top_referrers"],
        json!([{"referrer": "news.example.org", "count": 2}, {"referrer": "(direct)", "count": 1}])
    );
    assert_eq!(
        stats["devices"],
        json!([{"name": "desktop", "count": 2}, {"name": "bot", "count": 1}])
    );
    assert_eq!(stats["browsers"][0], json!({"name": "Firefox", "count": 2}));
    // Counted once: no second event row, nothing pending, and no more after
    // another rollup interval.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, again, _) = send(&api, Method::GET, &format!("/urls/{id}/stats"), None).await;
    assert_eq!(again["redirect_count"], json!(3), "{again}");
    let (_, events, _) = send(&api, Method::GET, &format!("/events?url_id={id}"), None).await;
    assert_eq!(
        events
            .as_array()
            .map(|e| e.iter().filter(|e| e["event_type"] == "redirect").count()),
        Some(3)
    );
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM rollup_pending")
        .fetch_one(&db)
        .await
        .expect("pending");
    assert_eq!(pending, 0);
    analytics.shutdown().await;
    api_service.shutdown().await;
}

/// The seed loads event rows only; `shortline-analytics rebuild-rollups`
/// (which `make up` runs after it) counts its `redirect` events in
/// `link_stats` and `link_stats_hourly` and, classified like a click, in the
/// breakdowns. A repeated row counts once, and a re-run of both adds
/// nothing.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn seeded_redirects_count_once_after_the_rebuild(db: PgPool) {
    // Two `redirect` events of link 7 (a bot from news.example.org at 10:05
    // and a direct visit without a user agent at 11:05, that row twice).
    let dir = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../api/tests/fixtures/seeded_redirects"
    ));
    let count = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .expect("count")
        }
    };
    for _ in 0..2 {
        shortline_api::import::seed_dir(&db, &dir, Default::default())
            .await
            .expect("seed loads");
        shortline_analytics::repo::rebuild_rollups(&db)
            .await
            .expect("rollups rebuilt");
        assert_eq!(
            count("SELECT redirect_count FROM link_stats WHERE url_id = 7").await,
            2
        );
        let agents: Vec<(String, String, bool, i64)> = sqlx::query_as(
            "SELECT day::text, device, is_bot, redirect_count FROM link_stats_agents
             WHERE url_id = 7 ORDER BY device",
        )
        .fetch_all(&db)
        .await
        .expect("agents");
        assert_eq!(
            agents,
            vec![
                ("2025-06-01".to_owned(), "bot".to_owned(), true, 1),
                ("2025-06-01".to_owned(), "other".to_owned(), false, 1),
            ]
        );
        let referrers: Vec<(String, i64)> = sqlx::query_as(
            "SELECT referrer, redirect_count FROM link_stats_referrers WHERE url_id = 7 ORDER BY referrer",
        )
        .fetch_all(&db)
        .await
        .expect("referrers");
        assert_eq!(
            referrers,
            vec![(String::new(), 1), ("news.example.org".to_owned(), 1)]
        );
        let hours: Vec<(String, i64)> = sqlx::query_as(
            "SELECT to_char(hour AT TIME ZONE 'UTC', 'HH24'), redirect_count FROM link_stats_hourly
             WHERE url_id = 7 ORDER BY hour",
        )
        .fetch_all(&db)
        .await
        .expect("hourly");
        assert_eq!(hours, vec![("10".to_owned(), 1), ("11".to_owned(), 1)]);
    }
}
