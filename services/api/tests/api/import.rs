//! `POST /users/bulk` and the seed loader, against the real seed files in
//! `tests/fixtures/seed_data/` (a copy of the shared seed set, so a clone
//! tests on its own; override with `SHORTLINE_SEED_DIR`).

use std::path::PathBuf;

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;

fn seed_dir() -> PathBuf {
    std::env::var("SHORTLINE_SEED_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/seed_data"
            ))
        })
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("seed file {} must exist: {e}", path.display()))
}

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect("count")
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bulk_import_of_the_seed_users(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let res = app
        .upload_csv("/users/bulk", "file", &read(seed_dir().join("users.csv")))
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let report = res.json();
    assert_eq!(report["count"], 400);
    assert_eq!(report["imported"], 400);
    assert_eq!(
        app.get("/users").await.json().as_array().map(Vec::len),
        Some(400)
    );

    // CSV ids and timestamps are kept.
    let first = app.get("/users/1").await.json();
    assert_eq!(
        first,
        json!({"id": 1, "username": "warmharvest01", "email": "warmharvest01@example.com", "created_at": "2025-08-11T22:29:20"})
    );
    // The sequence moved past the imported ids.
    assert_eq!(app.user("fresh").await["id"], 401);

    // Re-uploading: every row still counts, nothing is duplicated.
    let again = app
        .upload_csv("/users/bulk", "file", &read(seed_dir().join("users.csv")))
        .await
        .json();
    assert_eq!(again["count"], 400);
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 401);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bulk_import_counts_duplicate_usernames(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let res = app
        .upload_csv(
            "/users/bulk",
            "file",
            &read(seed_dir().join("variants/lucianlavric/users.csv")),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.json()["count"], 400, "a 400-row file reports 400");
    assert_eq!(
        count(&db, "SELECT count(*) FROM users").await,
        399,
        "the duplicate username is skipped"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM users WHERE username = 'harborriver72'"
        )
        .await,
        1
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bulk_import_edge_cases(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let header_only = app
        .upload_csv("/users/bulk", "file", b"id,username,email,created_at\n")
        .await;
    assert_eq!(header_only.status, StatusCode::CREATED);
    assert_eq!(header_only.json()["count"], 0);

    app.upload_csv("/users/bulk", "other", b"id,username,email,created_at\n")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    app.upload_csv("/users/bulk", "file", b"name,mail\nx,y@z.io\n")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    app.post("/users/bulk", json!({"file": "x"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    app.request(axum::http::Method::POST, "/users/bulk", None, Vec::new())
        .await
        .assert_error(StatusCode::BAD_REQUEST);

    // Bad rows are counted and skipped; good rows around them land.
    let csv = b"id,username,email,created_at\n10,good1,good1@x.io,2025-01-01 00:00:00\n11,,empty@x.io,2025-01-01 00:00:00\n12,bademail,not-an-email,2025-01-01 00:00:00\n13,good2,good2@x.io,2025-01-01 00:00:00\n";
    let report = app.upload_csv("/users/bulk", "file", csv).await.json();
    assert_eq!(report["count"], 4);
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 2);

    // Larger than the cap (1 MiB in tests): 413, and nothing half-imported
    // beyond what was committed before the cap was hit.
    let mut big = b"id,username,email,created_at\n".to_vec();
    let mut i = 1000;
    while big.len() < 1_200_000 {
        big.extend_from_slice(
            format!("{i},user{i},user{i}@example.com,2025-01-01 00:00:00\n").as_bytes(),
        );
        i += 1;
    }
    app.upload_csv("/users/bulk", "file", &big)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn seed_loader_loads_everything_and_reruns_safely(db: PgPool) {
    let report = shortline_api::import::seed_dir(&db, &seed_dir(), Default::default())
        .await
        .expect("seed loads");
    assert_eq!(
        (report.users.rows, report.urls.rows, report.events.rows),
        (400, 2000, 3422)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM users").await, 400);
    assert_eq!(count(&db, "SELECT count(*) FROM urls").await, 2000);
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 3422);
    assert_eq!(
        count(&db, "SELECT count(*) FROM urls WHERE NOT is_active").await,
        353
    );

    let again = shortline_api::import::seed_dir(&db, &seed_dir(), Default::default())
        .await
        .expect("re-run");
    assert_eq!(
        (
            again.users.inserted,
            again.urls.inserted,
            again.events.inserted
        ),
        (0, 0, 0)
    );
    assert_eq!(count(&db, "SELECT count(*) FROM events").await, 3422);

    let app = TestApp::new(db.clone()).await;
    let link = app.get("/urls/1").await.json();
    assert_eq!(link["short_code"], "ENE3UF");
    assert_eq!(link["is_active"], false);
    assert_eq!(link["created_at"], "2025-08-18T05:25:03");
    let event = app.get("/events?url_id=1&per_page=1").await.json();
    assert_eq!(
        event[0]["details"],
        json!({"short_code": "ENE3UF", "original_url": "https://relay.cloud/harbor/garden/1"})
    );
    assert_eq!(event[0]["timestamp"], "2025-08-18T05:25:03");
    // Sequences moved past the loaded ids.
    let uid = app.user("after-seed").await["id"].as_i64().expect("id");
    assert_eq!(uid, 401);
    assert_eq!(app.link(uid, "https://x.io").await["id"], 2001);
    let events = app
        .get("/events?event_type=created&user_id=401")
        .await
        .json();
    assert_eq!(events[0]["id"], 3423);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn seed_loader_keeps_links_of_a_skipped_duplicate_user(db: PgPool) {
    let report = shortline_api::import::seed_dir(
        &db,
        &seed_dir().join("variants/lucianlavric"),
        Default::default(),
    )
    .await
    .expect("loads");
    assert_eq!(report.users.rows, 400);
    assert_eq!(report.users.inserted, 399);
    assert_eq!(report.urls.inserted, 2000, "no link is lost");
    assert_eq!(report.events.inserted, 3422);
}

/// The seeder loads event rows only (a repeated row once, a re-run adds
/// nothing); the statistics of its `redirect` events are the analytics
/// service's (`shortline-analytics rebuild-rollups`: services/e2e shows the
/// seed counted exactly once after it).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn seeded_redirects_are_rows_only(db: PgPool) {
    // Two `redirect` events of link 7, one of them repeated in the file.
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/seeded_redirects"
    ));
    let report = shortline_api::import::seed_dir(&db, &dir, Default::default())
        .await
        .expect("seed loads");
    assert_eq!(report.events.inserted, 3);
    let again = shortline_api::import::seed_dir(&db, &dir, Default::default())
        .await
        .expect("re-run");
    assert_eq!(again.events.inserted, 0);
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM events WHERE event_type = 'redirect'"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            &db,
            "SELECT (SELECT count(*) FROM link_stats) + (SELECT count(*) FROM link_stats_hourly)
                  + (SELECT count(*) FROM rollup_backlog)"
        )
        .await,
        0,
        "the seeder writes no statistics"
    );
}

/// One CSV row with an id near the `bigint` maximum used to move the users
/// sequence there, after which every `POST /users` (and every CSV row
/// without an id) failed with `nextval: reached maximum value`. Such a row is
/// now a per-row problem and id allocation keeps working.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn an_imported_id_cannot_exhaust_the_users_id_sequence(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let res = app
        .upload_csv(
            "/users/bulk",
            "file",
            b"id,username,email,created_at\n9223372036854775807,x1,x1@example.com,2025-01-01T00:00:00\n9007199254740992,x2,x2@example.com,\n",
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let created = app
        .post(
            "/users",
            json!({"username": "a9", "email": "a9@example.com"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.json());
    let report = res.json();
    assert_eq!(
        (report["count"].as_u64(), report["inserted"].as_u64()),
        (Some(2), Some(0))
    );
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{report}");
    for (e, line) in errors.iter().zip([2, 3]) {
        assert_eq!(e["line"], line);
        assert!(
            e["problem"]
                .as_str()
                .is_some_and(|p| p.starts_with("id: must be at most 9007199254740991")),
            "{e}"
        );
    }
    let no_id = app
        .upload_csv(
            "/users/bulk",
            "file",
            b"username,email\nb9,b9@example.com\n",
        )
        .await
        .json();
    assert_eq!(no_id["inserted"], 1, "{no_id}");

    // The ceiling itself is accepted, and allocation carries on above it.
    let top = app
        .upload_csv(
            "/users/bulk",
            "file",
            b"id,username,email\n9007199254740991,c9,c9@example.com\n",
        )
        .await
        .json();
    assert_eq!(top["inserted"], 1, "{top}");
    assert_eq!(app.user("d9").await["id"], 9_007_199_254_740_992_i64);
}

/// The seed loader holds urls and events to the same ceiling: ids above it
/// are skipped rows, and the API still allocates ids afterwards.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn seeded_ids_cannot_exhaust_the_urls_and_events_sequences(db: PgPool) {
    let dir = std::env::temp_dir().join(format!("shortline-seed-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(
        dir.join("users.csv"),
        "id,username,email,created_at\n1,owner,owner@example.com,\n9223372036854775807,huge,huge@example.com,\n",
    )
    .expect("users.csv");
    std::fs::write(
        dir.join("urls.csv"),
        "id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n\
         1,1,seed01,https://example.com/a,,True,,\n\
         9223372036854775807,1,huge01,https://example.com/b,,True,,\n\
         2,9223372036854775807,huge02,https://example.com/c,,True,,\n",
    )
    .expect("urls.csv");
    std::fs::write(
        dir.join("events.csv"),
        "id,url_id,user_id,event_type,timestamp,details\n\
         1,1,1,created,2025-06-01 10:00:00,{}\n\
         9223372036854775807,1,1,created,2025-06-01 10:00:00,{}\n",
    )
    .expect("events.csv");
    let report = shortline_api::import::seed_dir(&db, &dir, Default::default())
        .await
        .expect("seed loads");

    let app = TestApp::new(db.clone()).await;
    let uid = app.user("after").await["id"].as_i64().expect("id");
    assert_eq!(uid, 2);
    let link = app.link(uid, "https://example.com/new").await;
    assert_eq!(link["id"], 2);
    let event = app
        .post(
            "/events",
            json!({"url_id": link["id"], "user_id": uid, "event_type": "click"}),
        )
        .await;
    assert_eq!(event.status, StatusCode::CREATED, "{}", event.json());
    assert_eq!((report.users.rows, report.users.inserted), (2, 1));
    assert_eq!((report.urls.rows, report.urls.inserted), (3, 1));
    assert_eq!((report.events.rows, report.events.inserted), (2, 1));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A NUL in any CSV cell is a per-row problem, never a failed import.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn nul_in_a_csv_cell_is_a_row_problem(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let res = app
        .upload_csv(
            "/users/bulk",
            "file",
            b"id,username,email\n1,a\0b,ab@example.com\n2,cd,c\0d@example.com\n3,ok,ok@example.com\n",
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let report = res.json();
    assert_eq!(report["inserted"], 1, "{report}");
    let problems: Vec<&str> = report["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["problem"].as_str())
        .collect();
    assert_eq!(problems.len(), 2, "{report}");
    assert!(problems[0].starts_with("username:"), "{problems:?}");
    assert!(problems[1].starts_with("email:"), "{problems:?}");
}
