use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::{TestApp, is_wire_timestamp};

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn record_and_filter(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let l1 = app.link(u1, "https://a.io").await;
    let l2 = app.link(u2, "https://b.io").await;

    let res = app.post("/events", json!({"url_id": l1["id"], "user_id": u1, "event_type": "shared", "details": {"channel": "mail"}})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    let e = res.json();
    assert!(e["id"].is_i64());
    assert_eq!(e["event_type"], "shared");
    assert_eq!(e["details"], json!({"channel": "mail"}));
    assert!(is_wire_timestamp(&e["timestamp"]));
    let no_details = app
        .post(
            "/events",
            json!({"url_id": l2["id"], "user_id": u2, "event_type": "shared"}),
        )
        .await;
    assert_eq!(no_details.json()["details"], json!({}));

    let count = |v: serde_json::Value| v.as_array().map(Vec::len).unwrap_or(usize::MAX);
    assert_eq!(
        count(app.get("/events").await.json()),
        4,
        "2 created + 2 shared"
    );
    assert_eq!(
        count(
            app.get(&format!("/events?url_id={}", l1["id"]))
                .await
                .json()
        ),
        2
    );
    assert_eq!(
        count(app.get(&format!("/events?user_id={u2}")).await.json()),
        2
    );
    assert_eq!(count(app.get("/events?event_type=shared").await.json()), 2);
    assert_eq!(
        count(
            app.get(&format!(
                "/events?event_type=shared&user_id={u1}&url_id={}",
                l1["id"]
            ))
            .await
            .json()
        ),
        1
    );
    assert_eq!(count(app.get("/events?event_type=nothing").await.json()), 0);
    assert_eq!(count(app.get("/events?page=2&per_page=3").await.json()), 1);
    let all = app.get("/events").await.json();
    let ids: Vec<i64> = all
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    app.get("/events?url_id=x")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn record_rejects_bad_input(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://a.io").await["id"].clone();
    let err = app
        .post(
            "/events",
            json!({"url_id": 999, "user_id": uid, "event_type": "x"}),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "URL not found");
    let err = app
        .post(
            "/events",
            json!({"url_id": lid, "user_id": 999, "event_type": "x"}),
        )
        .await
        .assert_error(StatusCode::NOT_FOUND);
    assert_eq!(err["error"], "User not found");
    for (body, field) in [
        (
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": "a string"}),
            "details",
        ),
        (
            json!({"url_id": lid, "user_id": uid, "event_type": "x", "details": [1]}),
            "details",
        ),
        (
            json!({"url_id": lid, "user_id": uid, "event_type": ""}),
            "event_type",
        ),
        (
            json!({"url_id": lid, "user_id": uid, "event_type": 3}),
            "event_type",
        ),
        (json!({"url_id": lid, "user_id": uid}), "event_type"),
        (
            json!({"url_id": "1", "user_id": uid, "event_type": "x"}),
            "url_id",
        ),
        (json!({"url_id": lid, "event_type": "x"}), "user_id"),
    ] {
        let err = app
            .post("/events", body.clone())
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(err["details"][field].is_string(), "{body}: {err}");
    }
    assert_eq!(
        app.get("/events").await.json().as_array().map(Vec::len),
        Some(1),
        "only the created event"
    );
}

/// The target of the `rel="next"` link of a `Link` header, if the response
/// has one.
fn next_link(res: &crate::support::TestResponse) -> Option<String> {
    crate::link_management::link_rel(res, "next")
}

fn ids(v: &serde_json::Value) -> Vec<i64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_i64())
        .collect()
}

/// Follows `rel="next"` links from `first`, returning every page's ids.
async fn walk(app: &TestApp, first: &str) -> Vec<Vec<i64>> {
    let mut pages = Vec::new();
    let mut uri = Some(first.to_owned());
    while let Some(u) = uri {
        let res = app.get(&u).await;
        assert_eq!(res.status, StatusCode::OK, "{u}");
        pages.push(ids(&res.json()));
        uri = next_link(&res);
        assert!(pages.len() < 100, "runaway paging at {u}");
    }
    pages
}

/// 150 events: the link's `created`, then `redirect` and `shared` events of
/// two users (`shared` every third), written straight into the log.
async fn many_events(app: &TestApp) -> (i64, i64, i64) {
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let lid = app.link(u1, "https://a.io").await["id"]
        .as_i64()
        .expect("id");
    sqlx::query(
        "INSERT INTO events (event_id, url_id, user_id, event_type, details)
         SELECT 'test-' || g, $1, CASE WHEN g % 2 = 0 THEN $2 ELSE $3 END,
                CASE WHEN g % 3 = 0 THEN 'shared' ELSE 'redirect' END, '{}'::jsonb
         FROM generate_series(1, 149) AS g",
    )
    .bind(lid)
    .bind(u1)
    .bind(u2)
    .execute(&app.db)
    .await
    .expect("events");
    (lid, u1, u2)
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn keyset_paging(db: PgPool) {
    let app = TestApp::new(db).await;
    let (lid, u1, _) = many_events(&app).await;
    let all = ids(&app.get("/events").await.json());
    assert_eq!(all.len(), 150);

    // No paging parameter: everything, no Link header.
    assert!(next_link(&app.get("/events").await).is_none());
    // after_id alone: 100 per page, then the rest.
    let res = app.get("/events?after_id=0").await;
    assert_eq!(ids(&res.json()), all[..100]);
    let next = next_link(&res).expect("a next link");
    assert_eq!(next, format!("/events?per_page=100&after_id={}", all[99]));
    let res = app.get(&next).await;
    assert_eq!(ids(&res.json()), all[100..]);
    assert!(next_link(&res).is_none(), "the last page has no next link");
    // after_id in the middle.
    assert_eq!(
        ids(&app
            .get(&format!("/events?after_id={}", all[139]))
            .await
            .json()),
        all[140..]
    );
    assert_eq!(
        app.get(&format!("/events?after_id={}", all[149]))
            .await
            .json(),
        json!([])
    );
    // Walking with a page size visits every event once, in order; a last
    // page that is exactly full has no next link (150 = 15 × 10).
    let pages = walk(&app, "/events?after_id=0&per_page=10").await;
    assert_eq!(pages.len(), 15);
    assert_eq!(pages.concat(), all);
    // Offset pages link to the next page number.
    let res = app.get("/events?page=3&per_page=20").await;
    assert_eq!(ids(&res.json()), all[40..60]);
    assert_eq!(
        next_link(&res).as_deref(),
        Some("/events?page=4&per_page=20")
    );
    assert!(next_link(&app.get("/events?page=8&per_page=20").await).is_none());
    assert_eq!(walk(&app, "/events?per_page=7").await.concat(), all);
    // per_page is clamped as for offset pages.
    assert_eq!(
        ids(&app.get("/events?after_id=0&per_page=5000").await.json()),
        all
    );

    // Filters combine with after_id and are kept in the next link.
    let shared: Vec<i64> = ids(&app
        .get(&format!("/events?event_type=shared&user_id={u1}"))
        .await
        .json());
    assert_eq!(shared.len(), 24);
    let first = format!("/events?event_type=shared&user_id={u1}&per_page=5");
    let res = app.get(&first).await;
    assert_eq!(
        next_link(&res).as_deref(),
        Some(format!("/events?user_id={u1}&event_type=shared&page=2&per_page=5").as_str())
    );
    let keyset = app
        .get(&format!(
            "/events?event_type=shared&user_id={u1}&per_page=5&after_id=0"
        ))
        .await;
    assert_eq!(
        next_link(&keyset).as_deref(),
        Some(
            format!(
                "/events?user_id={u1}&event_type=shared&per_page=5&after_id={}",
                shared[4]
            )
            .as_str()
        )
    );
    let pages = walk(&app, &first).await;
    assert_eq!(pages.len(), 5);
    assert_eq!(pages.concat(), shared);
    let after = shared[10];
    assert_eq!(
        ids(&app
            .get(&format!(
                "/events?url_id={lid}&user_id={u1}&event_type=shared&after_id={after}"
            ))
            .await
            .json()),
        shared[11..]
    );
    // Filter values are encoded in the link.
    let res = app
        .post(
            "/events",
            json!({"url_id": lid, "user_id": u1, "event_type": "a b&c=d"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    app.post(
        "/events",
        json!({"url_id": lid, "user_id": u1, "event_type": "a b&c=d"}),
    )
    .await;
    let res = app.get("/events?event_type=a%20b%26c%3Dd&per_page=1").await;
    let next = next_link(&res).expect("next");
    assert!(
        next == "/events?event_type=a+b%26c%3Dd&page=2&per_page=1",
        "{next}"
    );
    assert_eq!(
        app.get(&next).await.json().as_array().map(Vec::len),
        Some(1)
    );

    // A link's events page the same way.
    let link_events = ids(&app.get(&format!("/urls/{lid}/events")).await.json());
    assert_eq!(link_events.len(), 152);
    let res = app.get(&format!("/urls/{lid}/events?per_page=50")).await;
    assert_eq!(
        next_link(&res).as_deref(),
        Some(format!("/urls/{lid}/events?page=2&per_page=50").as_str())
    );
    let pages = walk(&app, &format!("/urls/{lid}/events?after_id=0")).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [100, 52]);
    assert_eq!(pages.concat(), link_events);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bad_keyset_parameters_are_400(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://a.io").await["id"]
        .as_i64()
        .expect("id");
    for base in ["/events".to_owned(), format!("/urls/{lid}/events")] {
        for (query, field) in [
            ("after_id=-1", "after_id"),
            ("after_id=abc", "after_id"),
            ("after_id=1.5", "after_id"),
            ("after_id=", "after_id"),
            ("after_id=99999999999999999999", "after_id"),
            ("after_id=3&page=1", "page"),
            ("after_id=3&per_page=0", "per_page"),
        ] {
            let uri = format!("{base}?{query}");
            let err = app.get(&uri).await.assert_error(StatusCode::BAD_REQUEST);
            assert_eq!(err["error"], "validation failed", "{uri}");
            assert!(err["details"][field].is_string(), "{uri}: {err}");
        }
    }
    app.get("/urls/999/events?after_id=0")
        .await
        .assert_error(StatusCode::NOT_FOUND);
}

/// An event's user must own its link: another (existing) user's id is a 400
/// naming `user_id`, and nothing is recorded.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn an_event_for_another_users_link_is_400(db: PgPool) {
    let app = TestApp::new(db).await;
    let owner = app.user("owner").await["id"].as_i64().expect("id");
    let other = app.user("other").await["id"].as_i64().expect("id");
    let link = app.link(owner, "https://a.io").await;
    let res = app
        .post(
            "/events",
            json!({"url_id": link["id"], "user_id": other, "event_type": "redirect"}),
        )
        .await;
    let err = res.assert_error(StatusCode::BAD_REQUEST);
    let problem = err["details"]["user_id"].as_str().expect("names user_id");
    assert!(problem.contains("does not own"), "{problem}");
    assert_eq!(
        app.get(&format!("/events?user_id={other}"))
            .await
            .json()
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let stats = app.get(&format!("/urls/{}/stats", link["id"])).await.json();
    assert_eq!(stats["redirect_count"], 0);
    // The owner may.
    let ok = app
        .post(
            "/events",
            json!({"url_id": link["id"], "user_id": owner, "event_type": "redirect"}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

/// A `redirect` recorded through `POST /events` is answered and logged at
/// once; its statistics are the analytics service's to write, so the API
/// writes none: the event waits, marked `rollup_pending`, in the outbox as a
/// recorded click on the click subject (services/e2e shows it counted).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_posted_redirect_goes_to_analytics_through_the_outbox(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://s.io").await;
    for event_type in ["redirect", "redirect", "redirect", "shared"] {
        let res = app.post("/events", json!({"url_id": link["id"], "user_id": uid, "event_type": event_type, "details": {"referrer": "x"}})).await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    assert_eq!(
        app.get(&format!(
            "/events?url_id={}&event_type=redirect",
            link["id"]
        ))
        .await
        .json()
        .as_array()
        .map(Vec::len),
        Some(3)
    );
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rollup_pending p JOIN events e USING (event_id)
         WHERE e.url_id = $1 AND e.event_type = 'redirect'",
    )
    .bind(link["id"].as_i64())
    .fetch_one(&app.db)
    .await
    .expect("pending");
    assert_eq!(pending, 3);
    let clicks: Vec<(String, serde_json::Value)> = sqlx::query_as(
        "SELECT subject, payload FROM outbox WHERE subject = 'test.clicks' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .expect("outbox");
    assert_eq!(clicks.len(), 3);
    for (_, batch) in &clicks {
        assert_eq!(batch["recorded"], true, "{batch}");
        assert_eq!(batch["clicks"][0]["url_id"], link["id"], "{batch}");
        assert_eq!(batch["clicks"][0]["referrer"], "x", "{batch}");
    }
    let written: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM link_stats) + (SELECT count(*) FROM link_stats_hourly)
              + (SELECT count(*) FROM rollup_backlog)",
    )
    .fetch_one(&app.db)
    .await
    .expect("rollups");
    assert_eq!(written, 0, "the API writes no statistics");
    let stats = app.get(&format!("/urls/{}/stats", link["id"])).await.json();
    assert_eq!(stats["redirect_count"], 0);
}

/// Just what the streamed-list checks read of each row.
#[derive(serde::Deserialize)]
struct Row {
    id: i64,
    #[serde(default)]
    event_type: Option<String>,
}

/// Parses a list body into its rows (typed: 200k rows as JSON values would
/// take hundreds of megabytes in the test itself).
fn rows(res: &crate::support::TestResponse) -> Vec<Row> {
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body[..res.body.len().min(500)])
    );
    serde_json::from_slice(&res.body).expect("a JSON array of rows")
}

/// Asserts a list is every id in `expect`, in order, and came as a stream
/// (chunked: no `Content-Length`), not a body built whole in memory.
fn assert_streamed(res: &crate::support::TestResponse, expect: &[i64], what: &str) {
    assert!(
        res.headers.get("content-length").is_none(),
        "{what}: an unpaged list is streamed, not buffered (content-length {:?})",
        res.headers.get("content-length")
    );
    assert_eq!(
        res.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{what}"
    );
    let got: Vec<i64> = rows(res).iter().map(|r| r.id).collect();
    assert_eq!(got.len(), expect.len(), "{what}: row count");
    assert_eq!(
        (got.first(), got.last()),
        (expect.first(), expect.last()),
        "{what}: first and last ids"
    );
    assert!(got == expect, "{what}: every id once, ascending");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn unpaged_lists_stream_every_row(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("streamer").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://stream.example/0").await["id"]
        .as_i64()
        .expect("id");
    // 200k events (half of them the link's), 511 more users (512 in all:
    // a multiple of the stream's batch), 599 more links.
    sqlx::query(
        "INSERT INTO events (event_id, url_id, user_id, event_type, details)
         SELECT 'bulk-' || g, CASE WHEN g % 2 = 0 THEN $1 ELSE 0 END, $2,
                CASE WHEN g % 3 = 0 THEN 'shared' ELSE 'bulk' END,
                jsonb_build_object('n', g, 'note', repeat('x', 40))
         FROM generate_series(1, 200000) g",
    )
    .bind(lid)
    .bind(uid)
    .execute(&db)
    .await
    .expect("insert events");
    sqlx::query(
        "INSERT INTO users (username, email)
         SELECT 'bulk' || g, 'bulk' || g || '@example.com' FROM generate_series(1, 511) g",
    )
    .execute(&db)
    .await
    .expect("insert users");
    sqlx::query(
        "INSERT INTO urls (user_id, short_code, original_url)
         SELECT $1, 'bulk' || g, 'https://stream.example/' || g FROM generate_series(1, 599) g",
    )
    .bind(uid)
    .execute(&db)
    .await
    .expect("insert links");
    let ids = |sql: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .bind(lid)
                .fetch_all(&db)
                .await
                .expect("ids")
        }
    };

    let all = ids("SELECT id FROM events WHERE $1::int8 IS NOT NULL ORDER BY id").await;
    assert_eq!(
        all.len(),
        200_001,
        "the link's `created` event and 200k more"
    );
    assert_streamed(&app.get("/events").await, &all, "GET /events");
    assert_streamed(
        &app.get("/events?event_type=shared").await,
        &ids("SELECT id FROM events WHERE $1::int8 IS NOT NULL AND event_type = 'shared' ORDER BY id").await,
        "GET /events?event_type=shared",
    );
    assert_streamed(
        &app.get(&format!("/urls/{lid}/events")).await,
        &ids("SELECT id FROM events WHERE url_id = $1 ORDER BY id").await,
        "GET /urls/{id}/events",
    );
    assert_streamed(
        &app.get("/users").await,
        &ids("SELECT id FROM users WHERE $1::int8 IS NOT NULL ORDER BY id").await,
        "GET /users",
    );
    assert_streamed(
        &app.get(&format!("/urls?user_id={uid}")).await,
        &ids("SELECT id FROM urls WHERE $1::int8 IS NOT NULL ORDER BY id").await,
        "GET /urls?user_id=",
    );
    // Rows are the contract's objects, whole.
    let users = app.get("/users").await.json();
    assert_eq!(users.as_array().map(Vec::len), Some(512));
    assert_eq!(users[0]["username"], "streamer");
    assert!(is_wire_timestamp(&users[511]["created_at"]));
    let typed = rows(&app.get("/events?event_type=shared").await);
    assert!(
        typed
            .iter()
            .all(|r| r.event_type.as_deref() == Some("shared"))
    );

    // Nothing matching: an empty array, still streamed.
    assert_streamed(&app.get("/events?event_type=none").await, &[], "no match");
    // Errors before the first row are ordinary JSON errors.
    app.get("/events?user_id=x")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    app.get("/urls/999999/events")
        .await
        .assert_error(StatusCode::NOT_FOUND);
    // Pages are unchanged: bounded, with their `Link` header.
    let page = app.get("/events?per_page=1000").await;
    assert_eq!(rows(&page).len(), 1000);
    assert!(next_link(&page).is_some());
}
