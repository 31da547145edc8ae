//! The link-rule fields of issue #15 on the write side: stored, read back,
//! defaulted, edited and cleared, logged as change events, checked (400 per
//! field, 422 with the path of a bad rule), seeded from CSV; and the
//! password never leaves as anything but `password_protected`.

use std::path::PathBuf;
use std::sync::Arc;

use argon2::password_hash::PasswordVerifier;
use argon2::password_hash::phc::PasswordHash;
use axum::http::StatusCode;
use serde_json::{Value, json};
use shortline_api::config::ApiConfig;
use shortline_api::import::UrlRules;
use shortline_api::links::targets::TargetPolicy;
use sqlx::PgPool;

use crate::support::TestApp;

const PASSWORD: &str = "correct horse battery staple";

fn rules() -> Value {
    json!([
        {"when": {"device": ["mobile"], "language": ["de", "pt-BR"]}, "target": "https://example.com/de/mobile"},
        {"when": {"os": ["ios", "macos"]}, "target": "https://apps.example.com/x"}
    ])
}

fn full_body(user_id: i64) -> Value {
    json!({
        "user_id": user_id,
        "original_url": "https://example.com/a",
        "title": "t",
        "redirect_type": 307,
        "expires_at": "2030-01-02T03:04:05+02:00",
        "max_clicks": 1000,
        "fallback_url": "https://example.com/over",
        "forward_query": true,
        "rules": rules(),
        "password": PASSWORD,
    })
}

async fn stored_hash(db: &PgPool, id: &Value) -> Option<String> {
    sqlx::query_scalar("SELECT password_hash FROM urls WHERE id = $1")
        .bind(id.as_i64().expect("id"))
        .fetch_one(db)
        .await
        .expect("row")
}

fn verifies(hash: &str, password: &str) -> bool {
    let parsed = PasswordHash::new(hash).expect("a PHC string");
    argon2::Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Asserts that nothing a client or another service can read holds the
/// hash or the password: the text given, the event log, the outbox.
async fn assert_no_secret(app: &TestApp, seen: &[&[u8]]) {
    let events = app.get("/events").await;
    let outbox: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM outbox")
        .fetch_all(&app.db)
        .await
        .expect("outbox");
    let outbox = outbox.join("\n");
    for text in seen
        .iter()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .chain([String::from_utf8_lossy(&events.body).into_owned(), outbox])
    {
        assert!(!text.contains("argon2"), "a hash leaked: {text}");
        assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    }
}

/// `(field, new_value)` of a link's `updated` events, in order.
async fn updates(app: &TestApp, id: &Value) -> Vec<(String, Value)> {
    app.get(&format!("/urls/{id}/events"))
        .await
        .json()
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event_type"] == "updated")
        .map(|e| {
            (
                e["details"]["field"].as_str().unwrap_or("").to_owned(),
                e["details"]["new_value"].clone(),
            )
        })
        .collect()
}

/// The `changed` lists of the `link.updated` change events, in order.
async fn changed_lists(app: &TestApp) -> Vec<Vec<String>> {
    let rows: Vec<Value> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE payload->>'type' = 'link.updated' ORDER BY id",
    )
    .fetch_all(&app.db)
    .await
    .expect("outbox");
    rows.iter()
        .map(|p| {
            p["changed"]
                .as_array()
                .expect("changed")
                .iter()
                .map(|f| f.as_str().unwrap_or("").to_owned())
                .collect()
        })
        .collect()
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_link_with_every_field_reads_back_and_its_password_only_as_a_hash(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let res = app.post("/urls", full_body(uid)).await;
    assert_eq!(
        res.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let link = res.json();
    assert_eq!(link["redirect_type"], 307);
    // The offset is converted; the contract's format, UTC.
    assert_eq!(link["expires_at"], "2030-01-02T01:04:05");
    assert_eq!(link["max_clicks"], 1000);
    assert_eq!(link["fallback_url"], "https://example.com/over");
    assert_eq!(link["forward_query"], true);
    assert_eq!(link["rules"], rules());
    assert_eq!(link["password_protected"], true);
    assert!(link.get("password").is_none() && link.get("password_hash").is_none());

    let one = app.get(&format!("/urls/{}", link["id"])).await;
    assert_eq!(one.json(), link);
    let all = app.get("/urls").await;
    assert_eq!(all.json(), json!([link.clone()]));
    let page = app.get(&format!("/urls?user_id={uid}&page=1")).await;
    assert_eq!(page.json(), json!([link.clone()]));

    let hash = stored_hash(&db, &link["id"])
        .await
        .expect("a hash is stored");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(verifies(&hash, PASSWORD));
    assert!(!verifies(&hash, "wrong"));
    assert_no_secret(&app, &[&res.body, &one.body, &all.body, &page.body]).await;

    // The rule columns as the redirect service reads them.
    let (redirect_type, rules_json): (i16, Value) =
        sqlx::query_as("SELECT redirect_type, rules FROM urls WHERE id = $1")
            .bind(link["id"].as_i64())
            .fetch_one(&db)
            .await
            .expect("row");
    assert_eq!(redirect_type, 307);
    assert_eq!(rules_json, rules());
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn defaults_and_nulls_on_create(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let plain = app.link(uid, "https://example.com/plain").await;
    let with_nulls = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/n", "redirect_type": null,
                   "expires_at": null, "max_clicks": null, "fallback_url": null, "rules": null,
                   "password": null}),
        )
        .await;
    assert_eq!(with_nulls.status, StatusCode::CREATED);
    let empty_rules = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/e", "rules": []}),
        )
        .await;
    assert_eq!(empty_rules.status, StatusCode::CREATED);
    for link in [plain, with_nulls.json(), empty_rules.json()] {
        assert_eq!(link["redirect_type"], 302, "{link}");
        assert_eq!(link["expires_at"], Value::Null);
        assert_eq!(link["max_clicks"], Value::Null);
        assert_eq!(link["fallback_url"], Value::Null);
        assert_eq!(link["forward_query"], false);
        assert_eq!(link["rules"], json!([]));
        assert_eq!(link["password_protected"], false);
        assert_eq!(stored_hash(&db, &link["id"]).await, None);
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_configured_default_redirect_type_is_used(db: PgPool) {
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.invalidation_wait_ms = 0;
    config.valkey_url = String::new();
    config.default_redirect_type = 308;
    let app = TestApp::with_config(db, config).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    assert_eq!(
        app.link(uid, "https://example.com/a").await["redirect_type"],
        308
    );
    let chosen = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/b", "redirect_type": 302}),
        )
        .await;
    assert_eq!(chosen.json()["redirect_type"], 302);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn put_sets_and_clears_each_field_with_one_event_per_change(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://example.com/a").await;
    let id = &link["id"];
    let uri = format!("/urls/{id}");

    // Set every field.
    let set = app
        .put(
            &uri,
            json!({"redirect_type": 301, "expires_at": "2031-05-06T07:08:09", "max_clicks": 5,
                   "fallback_url": "https://example.com/over", "forward_query": true,
                   "rules": rules(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        set.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&set.body)
    );
    let updated = set.json();
    assert_eq!(updated["redirect_type"], 301);
    assert_eq!(updated["expires_at"], "2031-05-06T07:08:09");
    assert_eq!(updated["max_clicks"], 5);
    assert_eq!(updated["fallback_url"], "https://example.com/over");
    assert_eq!(updated["forward_query"], true);
    assert_eq!(updated["rules"], rules());
    assert_eq!(updated["password_protected"], true);
    assert_eq!(app.get(&uri).await.json(), updated);
    let first_hash = stored_hash(&db, id).await.expect("hash");
    assert!(verifies(&first_hash, PASSWORD));
    let set_events = vec![
        ("redirect_type".to_owned(), json!(301)),
        ("expires_at".to_owned(), json!("2031-05-06T07:08:09")),
        ("max_clicks".to_owned(), json!(5)),
        ("fallback_url".to_owned(), json!("https://example.com/over")),
        ("forward_query".to_owned(), json!(true)),
        ("rules".to_owned(), rules()),
        ("password".to_owned(), json!("[redacted]")),
    ];
    assert_eq!(updates(&app, id).await, set_events);
    let fields = |v: &[(String, Value)]| v.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>();
    assert_eq!(changed_lists(&app).await, [fields(&set_events)]);

    // The same values again: nothing changed, nothing logged, but a given
    // password always counts (it cannot be compared) and is hashed anew.
    let again = app
        .put(
            &uri,
            json!({"redirect_type": 301, "expires_at": "2031-05-06T09:08:09+02:00",
                   "max_clicks": 5, "fallback_url": "https://example.com/over",
                   "forward_query": true, "rules": rules(), "password": "another one"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    let mut expected = set_events.clone();
    expected.push(("password".to_owned(), json!("[redacted]")));
    assert_eq!(updates(&app, id).await, expected);
    let second_hash = stored_hash(&db, id).await.expect("hash");
    assert!(verifies(&second_hash, "another one") && !verifies(&second_hash, PASSWORD));

    // Clear each one.
    let cleared = app
        .put(
            &uri,
            json!({"redirect_type": 302, "expires_at": null, "max_clicks": null,
                   "fallback_url": null, "forward_query": false, "rules": null,
                   "password": null}),
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    let cleared = cleared.json();
    assert_eq!(cleared["redirect_type"], 302);
    assert_eq!(cleared["expires_at"], Value::Null);
    assert_eq!(cleared["max_clicks"], Value::Null);
    assert_eq!(cleared["fallback_url"], Value::Null);
    assert_eq!(cleared["forward_query"], false);
    assert_eq!(cleared["rules"], json!([]));
    assert_eq!(cleared["password_protected"], false);
    assert_eq!(stored_hash(&db, id).await, None);
    let clear_events = vec![
        ("redirect_type".to_owned(), json!(302)),
        ("expires_at".to_owned(), Value::Null),
        ("max_clicks".to_owned(), Value::Null),
        ("fallback_url".to_owned(), Value::Null),
        ("forward_query".to_owned(), json!(false)),
        ("rules".to_owned(), json!([])),
        ("password".to_owned(), Value::Null),
    ];
    expected.extend(clear_events.clone());
    assert_eq!(updates(&app, id).await, expected);

    // Removing what is not there logs nothing and sends no change event.
    let before = changed_lists(&app).await.len();
    let noop = app
        .put(
            &uri,
            json!({"password": null, "rules": [], "max_clicks": null}),
        )
        .await;
    assert_eq!(noop.status, StatusCode::OK);
    assert_eq!(updates(&app, id).await, expected);
    assert_eq!(changed_lists(&app).await.len(), before);

    // Each edit of a rule field alone is a link.updated naming it, as a
    // target edit is: that is what drops the redirect caches.
    for (body, field) in [
        (json!({"redirect_type": 308}), "redirect_type"),
        (json!({"expires_at": "2000-01-01T00:00:00"}), "expires_at"),
        (json!({"max_clicks": 1}), "max_clicks"),
        (
            json!({"fallback_url": "https://example.com/f"}),
            "fallback_url",
        ),
        (json!({"forward_query": true}), "forward_query"),
        (json!({"rules": rules()}), "rules"),
        (json!({"password": "p"}), "password"),
        (
            json!({"original_url": "https://example.com/b"}),
            "original_url",
        ),
    ] {
        assert_eq!(app.put(&uri, body).await.status, StatusCode::OK, "{field}");
        let lists = changed_lists(&app).await;
        assert_eq!(lists.last(), Some(&vec![field.to_owned()]), "{field}");
    }
    // A past expiry is accepted (the link then answers as expired).
    assert_eq!(
        app.get(&uri).await.json()["expires_at"],
        "2000-01-01T00:00:00"
    );
    assert_no_secret(&app, &[&set.body]).await;
}

/// Asserts a 400 whose `details` name exactly `field`.
fn assert_field_400(res: &crate::support::TestResponse, field: &str, what: &str) {
    let err = res.assert_error(StatusCode::BAD_REQUEST);
    let keys: Vec<&String> = err["details"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no details: {err}"))
        .keys()
        .collect();
    assert_eq!(keys, [field], "{what}: {err}");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bad_values_of_the_other_fields_are_400_naming_the_field(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://example.com/a").await;
    let uri = format!("/urls/{}", link["id"]);
    let cases: Vec<(&str, Value)> = vec![
        ("redirect_type", json!(303)),
        ("redirect_type", json!("302")),
        ("redirect_type", json!(302.5)),
        ("redirect_type", json!(-302)),
        ("expires_at", json!("tomorrow")),
        ("expires_at", json!("2030-13-01T00:00:00")),
        ("expires_at", json!(1_900_000_000)),
        ("max_clicks", json!(0)),
        ("max_clicks", json!(-1)),
        ("max_clicks", json!(1.5)),
        ("max_clicks", json!("10")),
        ("fallback_url", json!("ftp://example.com/")),
        ("fallback_url", json!("https://a@example.com/")),
        ("fallback_url", json!("")),
        ("fallback_url", json!(5)),
        ("forward_query", json!("true")),
        ("forward_query", json!(1)),
        ("forward_query", Value::Null),
        ("password", json!("")),
        ("password", json!("x".repeat(257))),
        ("password", json!("a\u{0}b")),
        ("password", json!(1234)),
    ];
    for (field, value) in &cases {
        let mut body = json!({"user_id": uid, "original_url": "https://example.com/n"});
        body[*field] = value.clone();
        let what = format!("POST {field}={value}");
        assert_field_400(&app.post("/urls", body).await, field, &what);
        let what = format!("PUT {field}={value}");
        assert_field_400(&app.put(&uri, json!({*field: value})).await, field, &what);
    }
    // `redirect_type` may not be null on an edit.
    assert_field_400(
        &app.put(&uri, json!({"redirect_type": null})).await,
        "redirect_type",
        "PUT null redirect_type",
    );
    let err = app
        .put(&uri, json!({"redirect_type": 303}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(
        err["details"]["redirect_type"],
        "must be one of 301, 302, 307, 308"
    );
    // 256 characters (not bytes) is fine; surrounding spaces are kept.
    let long = "é".repeat(256);
    assert_eq!(
        app.put(&uri, json!({"password": long})).await.status,
        StatusCode::OK
    );
    let hash = stored_hash(&db, &link["id"]).await.expect("hash");
    assert!(verifies(&hash, &long));
    app.put(&uri, json!({"password": " padded "})).await;
    let hash = stored_hash(&db, &link["id"]).await.expect("hash");
    assert!(verifies(&hash, " padded ") && !verifies(&hash, "padded"));

    // A fallback on this service's own host is the policy's 422, named.
    for res in [
        app.post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/n",
                   "fallback_url": "http://localhost:8000/x"}),
        )
        .await,
        app.put(&uri, json!({"fallback_url": "http://localhost:8000/x"}))
            .await,
    ] {
        let err = res.assert_error(StatusCode::UNPROCESSABLE_ENTITY);
        assert!(err["details"]["fallback_url"].is_string(), "{err}");
    }
    // Nothing of it was stored.
    let now = app.get(&uri).await.json();
    assert_eq!(now["fallback_url"], Value::Null);
    assert_eq!(now["redirect_type"], 302);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn rule_problems_are_422_with_the_path_of_the_bad_value(db: PgPool) {
    let app = TestApp::new(db.clone()).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app.link(uid, "https://example.com/a").await;
    let uri = format!("/urls/{}", link["id"]);
    let good = json!({"when": {"device": ["desktop"]}, "target": "https://example.com/d"});
    let too_many: Vec<Value> = (0..21).map(|_| good.clone()).collect();
    let many_values: Vec<&str> = (0..21).map(|_| "mobile").collect();
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!("mobile"),
            "rules",
            "must be an array of at most 20 rules",
        ),
        (
            json!({"when": {}}),
            "rules",
            "must be an array of at most 20 rules",
        ),
        (
            json!(too_many),
            "rules",
            "must be an array of at most 20 rules",
        ),
        (json!([1]), "rules[0]", "must be an object"),
        (
            json!([good, {"when": {"device": ["fridge"]}, "target": "https://example.com/x"}]),
            "rules[1].when.device[0]",
            "must be one of mobile, tablet, desktop, bot, other",
        ),
        (
            json!([{"when": {"os": ["ios", "beos"]}, "target": "https://example.com/x"}]),
            "rules[0].when.os[1]",
            "must be one of ios, android, windows, macos, linux, chromeos, other",
        ),
        (
            json!([{"when": {"language": ["deutsch"]}, "target": "https://example.com/x"}]),
            "rules[0].when.language[0]",
            "must be a language tag like de or pt-BR",
        ),
        (
            json!([{"when": {"language": [7]}, "target": "https://example.com/x"}]),
            "rules[0].when.language[0]",
            "must be a language tag",
        ),
        (
            json!([good, good, {"when": {}, "target": "https://example.com/x"}]),
            "rules[2].when",
            "needs at least one of device, os, language",
        ),
        (
            json!([{"target": "https://example.com/x"}]),
            "rules[0].when",
            "is required",
        ),
        (
            json!([{"when": ["mobile"], "target": "https://example.com/x"}]),
            "rules[0].when",
            "must be an object",
        ),
        (
            json!([{"when": {"device": []}, "target": "https://example.com/x"}]),
            "rules[0].when.device",
            "must be a non-empty list of at most 20 values",
        ),
        (
            json!([{"when": {"device": "mobile"}, "target": "https://example.com/x"}]),
            "rules[0].when.device",
            "must be a non-empty list",
        ),
        (
            json!([{"when": {"device": many_values}, "target": "https://example.com/x"}]),
            "rules[0].when.device",
            "at most 20 values",
        ),
        (
            json!([{"when": {"device": ["mobile"], "colour": ["red"]}, "target": "https://example.com/x"}]),
            "rules[0].when.colour",
            "unknown condition",
        ),
        (
            json!([{"when": {"device": ["mobile"]}, "target": "https://example.com/x", "weight": 1}]),
            "rules[0].weight",
            "unknown field",
        ),
        (
            json!([{"when": {"device": ["mobile"]}}]),
            "rules[0].target",
            "is required",
        ),
        (
            json!([{"when": {"device": ["mobile"]}, "target": "ftp://example.com/x"}]),
            "rules[0].target",
            "http",
        ),
        (
            json!([{"when": {"device": ["mobile"]}, "target": 5}]),
            "rules[0].target",
            "must be a string",
        ),
        // The target policy (this service's own host) too.
        (
            json!([good, {"when": {"device": ["mobile"]}, "target": "http://localhost:8000/loop"}]),
            "rules[1].target",
            "this service itself",
        ),
    ];
    for (rules, path, problem) in &cases {
        for res in [
            app.post(
                "/urls",
                json!({"user_id": uid, "original_url": "https://example.com/n", "rules": rules}),
            )
            .await,
            app.put(&uri, json!({"rules": rules})).await,
        ] {
            let err = res.assert_error(StatusCode::UNPROCESSABLE_ENTITY);
            let details = err["details"].as_object().expect("details");
            assert_eq!(details.keys().collect::<Vec<_>>(), [path], "{rules}: {err}");
            let said = details[*path].as_str().unwrap_or("");
            assert!(said.contains(problem), "{rules}: {said:?}");
        }
    }
    // Several problems are all named.
    let err = app
        .put(
            &uri,
            json!({"rules": [
                {"when": {"device": ["fridge"], "os": ["beos"]}, "target": "nope"},
                {"when": {}, "target": "https://example.com/x"}
            ]}),
        )
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY);
    let mut paths: Vec<&String> = err["details"]
        .as_object()
        .expect("details")
        .keys()
        .collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "rules[0].target",
            "rules[0].when.device[0]",
            "rules[0].when.os[0]",
            "rules[1].when"
        ]
    );
    // A 400 problem elsewhere wins: the answer is the 400, naming it alone.
    let res = app
        .put(&uri, json!({"title": 5, "rules": [{"when": {}}]}))
        .await;
    assert_field_400(&res, "title", "title and a bad rule");
    // Nothing was stored, no event logged.
    let now = app.get(&uri).await.json();
    assert_eq!(now["rules"], json!([]));
    assert!(updates(&app, &link["id"]).await.is_empty());
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM urls")
        .fetch_one(&db)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shortline-{what}-{}", ulid::Ulid::generate()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_seed_loader_takes_the_rule_columns_and_reports_bad_rows(db: PgPool) {
    let dir = temp_dir("seed-rules");
    let rules_cell = r#""[{""when"":{""device"":[""mobile""],""language"":[""de""]},""target"":""https://example.com/de""}]""#;
    let bad_rule =
        r#""[{""when"":{""device"":[""fridge""]},""target"":""https://example.com/x""}]""#;
    let csv = format!(
        "id,user_id,short_code,original_url,title,is_active,created_at,updated_at,redirect_type,expires_at,max_clicks,fallback_url,forward_query,rules\n\
         1,1,full01,https://example.com/a,,True,,,301,2030-01-02 03:04:05,10,https://example.com/over,True,{rules_cell}\n\
         2,1,dflt01,https://example.com/b,,True,,,,,,,,\n\
         3,1,badrt1,https://example.com/c,,True,,,303,,,,,\n\
         4,1,badru1,https://example.com/d,,True,,,,,,,,{bad_rule}\n\
         5,1,badmc1,https://example.com/e,,True,,,,,0,,,\n\
         6,1,badfb1,https://example.com/f,,True,,,,,,http://localhost:8000/x,,\n\
         7,1,badex1,https://example.com/g,,True,,,,someday,,,,\n\
         8,1,badfq1,https://example.com/h,,True,,,,,,,maybe,\n\
         9,1,badjs1,https://example.com/i,,True,,,,,,,,not json\n"
    );
    std::fs::write(dir.join("urls.csv"), csv).expect("write");
    let rules = UrlRules {
        targets: Arc::new(TargetPolicy::new(&["localhost:8000".into()], None).expect("policy")),
        default_redirect_type: 308,
    };
    let report = shortline_api::import::seed_dir_with(&db, &dir, rules)
        .await
        .expect("the load is not aborted");
    assert_eq!(
        (report.urls.rows, report.urls.inserted, report.urls.skipped),
        (9, 2, 7)
    );

    let app = TestApp::new(db.clone()).await;
    let full = app.get("/urls/1").await.json();
    assert_eq!(full["redirect_type"], 301);
    assert_eq!(full["expires_at"], "2030-01-02T03:04:05");
    assert_eq!(full["max_clicks"], 10);
    assert_eq!(full["fallback_url"], "https://example.com/over");
    assert_eq!(full["forward_query"], true);
    assert_eq!(
        full["rules"],
        json!([{"when": {"device": ["mobile"], "language": ["de"]}, "target": "https://example.com/de"}])
    );
    assert_eq!(full["password_protected"], false);
    // Empty cells keep the defaults; the redirect type is the configured one.
    let plain = app.get("/urls/2").await.json();
    assert_eq!(plain["redirect_type"], 308);
    assert_eq!(plain["expires_at"], Value::Null);
    assert_eq!(plain["max_clicks"], Value::Null);
    assert_eq!(plain["fallback_url"], Value::Null);
    assert_eq!(plain["forward_query"], false);
    assert_eq!(plain["rules"], json!([]));

    // A file without the columns (the seed's own shape) keeps every default,
    // 302 with `seed_dir`.
    let dir2 = temp_dir("seed-rules-plain");
    std::fs::write(
        dir2.join("urls.csv"),
        "id,user_id,short_code,original_url,title,is_active,created_at,updated_at\n\
         20,1,old001,https://example.com/o,,True,,\n",
    )
    .expect("write");
    shortline_api::import::seed_dir(&db, &dir2, Default::default())
        .await
        .expect("seeded");
    let old = app.get("/urls/20").await.json();
    assert_eq!(old["redirect_type"], 302);
    assert_eq!(old["rules"], json!([]));
    assert_eq!(old["forward_query"], false);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}
