//! `shortline-api import --from bitly|shlink|kutt|yourls FILE` against a real
//! database, with fixtures modelled on each tool's real export
//! (tests/fixtures/imports/): codes, titles, creation dates, visit counts and
//! domains kept, bad rows reported one by one, re-runs idempotent.

use axum::http::StatusCode;
use serde_json::{Value, json};
use shortline_api::ids::UserId;
use shortline_api::import::UrlRules;
use shortline_api::import::adopt::{AdoptReport, import_links};
use shortline_api::import::foreign::Source;
use sqlx::PgPool;

use crate::support::TestApp;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/imports/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn import(app: &TestApp, source: Source, file: &str, user: i64) -> AdoptReport {
    import_links(
        &app.db.clone().into(),
        source,
        &fixture(file),
        UserId::new(user),
        &UrlRules::from_config(&app.state.config).expect("rules"),
    )
    .await
    .expect("import runs")
}

async fn link_by_code(app: &TestApp, code: &str) -> Value {
    let all = app.get("/urls").await.json();
    all.as_array()
        .expect("links")
        .iter()
        .find(|l| l["short_code"] == code)
        .unwrap_or_else(|| panic!("no link {code}"))
        .clone()
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn shlink_exports_keep_codes_domains_dates_and_visits(db: PgPool) {
    let app = TestApp::new(db).await;
    let user = app.user("mover").await["id"].as_i64().expect("id");
    assert_eq!(
        app.post("/domains", json!({"host": "s.test"})).await.status,
        StatusCode::CREATED
    );

    let report = import(&app, Source::Shlink, "shlink.csv", user).await;
    assert_eq!(
        (report.rows, report.created, report.errors),
        (4, 2, 2),
        "{report:?}"
    );
    let errors: Vec<(usize, &str)> = report
        .outcomes
        .iter()
        .filter(|o| o.status == "error")
        .map(|o| (o.row, o.error.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(errors[0].0, 3);
    assert!(errors[0].1.starts_with("short code"), "{errors:?}");
    assert_eq!(errors[1].0, 4);
    assert!(errors[1].1.starts_with("target"), "{errors:?}");

    let spring = link_by_code(&app, "spring24").await;
    assert_eq!(spring["domain"], "s.test");
    assert_eq!(spring["title"], "Spring campaign");
    assert_eq!(
        spring["original_url"],
        "https://example.com/campaigns/spring?ref=shlink"
    );
    assert_eq!(spring["created_at"], "2024-03-01T10:00:00");
    assert_eq!(spring["imported_visits"], 1520);
    assert_eq!(spring["tags"], json!(["promo", "spring"]));
    assert_eq!(spring["user_id"], user);
    let docs = link_by_code(&app, "docs").await;
    assert_eq!(
        (docs["domain"].clone(), docs["created_at"].clone()),
        (Value::Null, json!("2024-03-02T10:30:00"))
    );
    // Its `created` event is at the original time.
    let events = app
        .get(&format!("/urls/{}/events", docs["id"]))
        .await
        .json();
    assert_eq!(events[0]["event_type"], "created");
    assert_eq!(events[0]["timestamp"], "2024-03-02T10:30:00");

    // Re-running changes nothing.
    let again = import(&app, Source::Shlink, "shlink.csv", user).await;
    assert_eq!((again.created, again.exists, again.errors), (0, 2, 2));
    assert_eq!(
        app.get("/urls").await.json().as_array().map(Vec::len),
        Some(2)
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bitly_kutt_and_yourls_exports_load(db: PgPool) {
    let app = TestApp::new(db).await;
    let user = app.user("mover").await["id"].as_i64().expect("id");
    // A link already holding one of the codes, to another target.
    let taken = app
        .post("/urls", json!({"user_id": user, "original_url": "https://example.com/mine", "short_code": "k2"}))
        .await;
    assert_eq!(taken.status, StatusCode::CREATED);

    let bitly = import(&app, Source::Bitly, "bitly.json", user).await;
    assert_eq!((bitly.rows, bitly.created), (2, 2), "{bitly:?}");
    let may = link_by_code(&app, "3xYzAbc").await;
    assert_eq!(may["tags"], json!(["newsletter"]));
    assert_eq!(
        (may["title"].clone(), may["created_at"].clone()),
        (json!("May newsletter"), json!("2023-05-06T07:08:09"))
    );
    assert_eq!(link_by_code(&app, "4AbCdEf").await["title"], Value::Null);

    let kutt = import(&app, Source::Kutt, "kutt.json", user).await;
    assert_eq!(
        (kutt.rows, kutt.created, kutt.conflicts),
        (2, 1, 1),
        "{kutt:?}"
    );
    let conflict = kutt
        .outcomes
        .iter()
        .find(|o| o.status == "conflict")
        .expect("conflict");
    assert_eq!(conflict.short_code.as_deref(), Some("k2"));
    assert_eq!(
        link_by_code(&app, "k2").await["original_url"],
        "https://example.com/mine"
    );
    let kuttme = link_by_code(&app, "kuttme").await;
    assert_eq!(
        (kuttme["title"].clone(), kuttme["imported_visits"].clone()),
        (json!("Kutt link"), json!(12))
    );

    let yourls = import(&app, Source::Yourls, "yourls.json", user).await;
    assert_eq!((yourls.rows, yourls.created), (2, 2), "{yourls:?}");
    assert_eq!(link_by_code(&app, "yr2").await["imported_visits"], 9);
    let table = import(&app, Source::Yourls, "yourls.csv", user).await;
    assert_eq!(table.created, 1);
    assert_eq!(
        link_by_code(&app, "yc1").await["created_at"],
        "2022-03-03T03:03:03"
    );
    // Imported links redirect like any: their targets passed the same checks.
    assert_eq!(
        app.get("/urls").await.json().as_array().map(Vec::len),
        Some(7)
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_command_imports_and_reports_each_row(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let user = app.user("cli").await["id"].as_i64().expect("id");
    let o = db.connect_options();
    let database_url = format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        o.get_host(),
        o.get_port(),
        o.get_database().unwrap_or("postgres")
    );
    let file = format!(
        "{}/tests/fixtures/imports/kutt.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_shortline-api"))
            .args([
                "import",
                "--from",
                "kutt",
                "--user-id",
                &user.to_string(),
                &file,
            ])
            .env("DATABASE_URL", &database_url)
            .env("RUST_LOG", "error")
            .output()
            .expect("shortline-api runs")
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    assert!(rows.iter().all(|r| r["status"] == "created"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l == "import: 2 rows, 2 created, 0 already there, 0 conflicts, 0 errors"),
        "{stdout}"
    );
    let out = run();
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 created, 2 already there"));
    // An unknown user is refused as a whole.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_shortline-api"))
        .args(["import", "--from", "kutt", "--user-id", "999999", &file])
        .env("DATABASE_URL", &database_url)
        .output()
        .expect("runs");
    assert!(!bad.status.success());
}

/// Imported links get `DEFAULT_REDIRECT_TYPE`, as created and seeded ones
/// do (exports carry no redirect type).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn imported_links_get_the_configured_redirect_type(db: PgPool) {
    let mut config = shortline_api::config::ApiConfig::for_urls("postgres://unused", "");
    config.invalidation_wait_ms = 0;
    config.valkey_url = String::new();
    config.default_redirect_type = 308;
    let app = TestApp::with_config(db, config).await;
    let user = app.user("mover").await["id"].as_i64().expect("id");
    let report = import(&app, Source::Kutt, "kutt.json", user).await;
    assert!(report.created > 0, "{report:?}");
    let links = app.get("/urls").await.json();
    let types: Vec<&Value> = links
        .as_array()
        .expect("links")
        .iter()
        .map(|l| &l["redirect_type"])
        .collect();
    assert_eq!(types.len(), report.created);
    assert!(types.iter().all(|t| **t == json!(308)), "{types:?}");
}
