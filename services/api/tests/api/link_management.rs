//! The link-management surface of issue #16: short URLs and `Location`,
//! list totals and `Link` headers, tags, search and sort, and the create
//! conveniences (`find_if_exists`, `POST /urls/bulk`).

use axum::http::StatusCode;
use serde_json::{Value, json};
use shortline_api::config::ApiConfig;
use shortline_api::links::short_url::PublicBase;
use sqlx::PgPool;

use crate::support::{TestApp, TestResponse};

fn header_str<'a>(res: &'a TestResponse, name: &str) -> Option<&'a str> {
    res.headers.get(name).and_then(|v| v.to_str().ok())
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_link_answer_carries_its_short_url_and_create_its_location(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let res = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/a", "short_code": "abc-1"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let link = res.json();
    let id = link["id"].as_i64().expect("id");
    assert_eq!(link["short_url"], "http://127.0.0.1:8000/abc-1");
    assert_eq!(header_str(&res, "location"), Some(&*format!("/urls/{id}")));

    let read = app.get(&format!("/urls/{id}")).await.json();
    assert_eq!(read["short_url"], "http://127.0.0.1:8000/abc-1");
    let put = app
        .put(&format!("/urls/{id}"), json!({"title": "x"}))
        .await
        .json();
    assert_eq!(put["short_url"], "http://127.0.0.1:8000/abc-1");
    // Paged and streamed lists alike.
    let page = app.get("/urls?per_page=5").await.json();
    assert_eq!(page[0]["short_url"], "http://127.0.0.1:8000/abc-1");
    let all = app.get("/urls").await.json();
    assert_eq!(all[0]["short_url"], "http://127.0.0.1:8000/abc-1");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_short_url_follows_public_base_url(db: PgPool) {
    let mut config = ApiConfig::for_urls("postgres://unused", "");
    config.invalidation_wait_ms = 0;
    config.valkey_url = String::new();
    config.public_base_url = PublicBase::parse("https://Sho.rt/").expect("base");
    let app = TestApp::with_config(db, config).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let link = app
        .post(
            "/urls",
            json!({"user_id": uid, "original_url": "https://example.com/a", "short_code": "Xy_9"}),
        )
        .await
        .json();
    assert_eq!(link["short_url"], "https://sho.rt/Xy_9");
    let all = app.get("/urls").await.json();
    assert_eq!(all[0]["short_url"], "https://sho.rt/Xy_9");
}

/// The target of the `rel` link of a `Link` header (RFC 8288), if any.
pub fn link_rel(res: &TestResponse, rel: &str) -> Option<String> {
    let value = header_str(res, "link")?;
    value.split(", ").find_map(|part| {
        let (target, params) = part.split_once(">; ")?;
        (params == format!("rel=\"{rel}\"")).then(|| target.trim_start_matches('<').to_owned())
    })
}

fn total(res: &TestResponse) -> i64 {
    header_str(res, "x-total-count")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-Total-Count: {:?}", res.headers))
}

fn len(res: &TestResponse) -> usize {
    res.json().as_array().map(Vec::len).expect("an array")
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_list_counts_its_matches_and_links_its_pages(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    for i in 0..7 {
        app.link(u1, &format!("https://example.com/{i}")).await;
    }
    let other = app.link(u2, "https://example.com/other").await;

    // Unpaged (streamed): every match, its count, no Link.
    let res = app.get(&format!("/urls?user_id={u1}")).await;
    assert_eq!((total(&res), len(&res)), (7, 7));
    assert!(header_str(&res, "link").is_none());
    // Paged: the count ignores paging; first/prev/next/last keep the filters.
    let res = app
        .get(&format!("/urls?user_id={u1}&page=2&per_page=3"))
        .await;
    assert_eq!((total(&res), len(&res)), (7, 3));
    let at = |n: i64| format!("/urls?user_id={u1}&page={n}&per_page=3");
    assert_eq!(link_rel(&res, "first"), Some(at(1)));
    assert_eq!(link_rel(&res, "prev"), Some(at(1)));
    assert_eq!(link_rel(&res, "next"), Some(at(3)));
    assert_eq!(link_rel(&res, "last"), Some(at(3)));
    let first = app.get(&at(1)).await;
    assert_eq!(link_rel(&first, "prev"), None);
    let last = app.get(&at(3)).await;
    assert_eq!((len(&last), link_rel(&last, "next")), (1, None));
    assert_eq!(link_rel(&last, "prev"), Some(at(2)));
    // Beyond the end: empty, prev is the last page.
    let beyond = app.get(&at(9)).await;
    assert_eq!((total(&beyond), len(&beyond)), (7, 0));
    assert_eq!(link_rel(&beyond, "prev"), Some(at(3)));
    // Nothing matches: one (empty) page.
    let none = app.get("/urls?user_id=999&per_page=3").await;
    assert_eq!(total(&none), 0);
    assert_eq!(
        link_rel(&none, "last"),
        Some("/urls?user_id=999&page=1&per_page=3".into())
    );

    // The other lists.
    let res = app.get("/users").await;
    assert_eq!((total(&res), len(&res)), (2, 2));
    let res = app.get("/users?per_page=1").await;
    assert_eq!((total(&res), len(&res)), (2, 1));
    assert_eq!(
        link_rel(&res, "next"),
        Some("/users?page=2&per_page=1".into())
    );
    let res = app.get("/events").await;
    assert_eq!((total(&res), len(&res)), (8, 8));
    let res = app.get(&format!("/events?user_id={u2}&per_page=5")).await;
    assert_eq!((total(&res), len(&res)), (1, 1));
    let res = app.get(&format!("/urls/{}/events", other["id"])).await;
    assert_eq!((total(&res), len(&res)), (1, 1));
    let res = app
        .get(&format!(
            "/urls/{}/events?after_id=0&per_page=1",
            other["id"]
        ))
        .await;
    assert_eq!(total(&res), 1);
    let res = app.get("/keys").await;
    assert_eq!((total(&res), len(&res)), (1, 1));
    TestApp::make_key(&app.db, Some(u1)).await;
    let res = app.get("/keys?per_page=1&page=2").await;
    assert_eq!((total(&res), len(&res)), (2, 1));
    assert_eq!(
        link_rel(&res, "first"),
        Some("/keys?page=1&per_page=1".into())
    );

    // A user key counts only its own links.
    let key = TestApp::make_key(&app.db, Some(u2)).await;
    let res = app
        .as_key(
            Some(&key),
            axum::http::Method::GET,
            "/urls?per_page=10",
            None,
        )
        .await;
    assert_eq!((total(&res), len(&res)), (1, 1));
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn an_unpaged_count_is_of_the_rows_it_streams(db: PgPool) {
    // More rows than one cursor batch, so the body is several chunks.
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    sqlx::query(
        "INSERT INTO urls (user_id, short_code, original_url)
         SELECT $1, 'c' || g, 'https://example.com/' || g FROM generate_series(1, 700) g",
    )
    .bind(uid)
    .execute(&app.db)
    .await
    .expect("links");
    let res = app.get("/urls").await;
    assert_eq!((total(&res), len(&res)), (700, 700));
    let res = app.get("/urls?is_active=false").await;
    assert_eq!((total(&res), len(&res)), (0, 0));
}

/// `GET /keys` without paging streams its rows like the other lists (more
/// keys than one cursor batch here); paged, it is one body.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_key_list_streams_when_unpaged(db: PgPool) {
    let app = TestApp::new(db).await;
    sqlx::query(
        "INSERT INTO api_keys (public_id, secret_hash, name)
         SELECT 'bulk' || g, sha256(g::text::bytea), 'key ' || g FROM generate_series(1, 600) g",
    )
    .execute(&app.db)
    .await
    .expect("keys");
    let res = app.get("/keys").await;
    assert!(
        res.headers.get("content-length").is_none(),
        "streamed, not buffered"
    );
    let all = total(&res);
    assert!(all > 600, "{all}");
    assert_eq!(len(&res), usize::try_from(all).expect("count"));
    let ids: Vec<i64> = res
        .json()
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["id"].as_i64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "by id");
    let paged = app.get("/keys?page=2&per_page=100").await;
    assert_eq!((total(&paged), len(&paged)), (all, 100));
    assert!(paged.headers.get("content-length").is_some());
}

async fn tagged(app: &TestApp, user_id: i64, url: &str, tags: Value) -> Value {
    app.created(
        "/urls",
        json!({"user_id": user_id, "original_url": url, "tags": tags}),
    )
    .await
}

fn id_of(link: &Value) -> i64 {
    link["id"].as_i64().expect("an id")
}

fn codes_of(v: &Value) -> Vec<i64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["id"].as_i64())
        .collect()
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn tags_are_normalised_stored_filtered_and_counted(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let a = tagged(
        &app,
        u1,
        "https://a.io",
        json!([" Work ", "Q4  Launch", "work", "x.y_z-1"]),
    )
    .await;
    assert_eq!(a["tags"], json!(["q4 launch", "work", "x.y_z-1"]));
    let b = tagged(&app, u1, "https://b.io", json!(["work"])).await;
    let c = tagged(&app, u2, "https://c.io", json!(["work", "private"])).await;
    let plain = app.link(u1, "https://d.io").await;
    assert_eq!(plain["tags"], json!([]));

    // ALL the given tags; compared normalised.
    let ids = |res: TestResponse| codes_of(&res.json());
    assert_eq!(
        ids(app.get("/urls?tag=work").await),
        [id_of(&a), id_of(&b), id_of(&c)]
    );
    assert_eq!(
        ids(app.get("/urls?tag=WORK&tag=q4%20launch").await),
        [id_of(&a)]
    );
    assert_eq!(
        ids(app.get(&format!("/urls?tag=work&user_id={u2}")).await),
        [id_of(&c)]
    );
    assert_eq!(
        ids(app.get("/urls?tag=work&tag=nothing").await),
        Vec::<i64>::new()
    );
    let res = app.get("/urls?tag=work&per_page=1").await;
    assert_eq!(total(&res), 3);
    assert_eq!(
        link_rel(&res, "next"),
        Some("/urls?tag=work&page=2&per_page=1".into())
    );
    app.get("/urls?tag=a/b")
        .await
        .assert_error(StatusCode::BAD_REQUEST);

    // GET /tags: everyone's for an admin, or one user's; a user key its own.
    let all = app.get("/tags").await;
    assert_eq!(total(&all), 4);
    assert_eq!(
        all.json(),
        json!([
            {"tag": "private", "links": 1},
            {"tag": "q4 launch", "links": 1},
            {"tag": "work", "links": 3},
            {"tag": "x.y_z-1", "links": 1}
        ])
    );
    let mine = app.get(&format!("/tags?user_id={u2}")).await.json();
    assert_eq!(
        mine,
        json!([{"tag": "private", "links": 1}, {"tag": "work", "links": 1}])
    );
    let paged = app.get("/tags?per_page=2&page=2").await;
    assert_eq!((total(&paged), len(&paged)), (4, 2));
    assert_eq!(paged.json()[0]["tag"], "work");
    let key = TestApp::make_key(&app.db, Some(u2)).await;
    let as_u2 = |uri: String| {
        let key = key.clone();
        let app = &app;
        async move {
            app.as_key(Some(&key), axum::http::Method::GET, &uri, None)
                .await
        }
    };
    assert_eq!(as_u2("/tags".into()).await.json(), mine);
    assert_eq!(as_u2(format!("/tags?user_id={u1}")).await.json(), json!([]));
    assert_eq!(ids(as_u2("/urls?tag=work".into()).await), [id_of(&c)]);

    // Edits replace the tags and log one `updated` event with the new ones.
    let uri = format!("/urls/{}", b["id"]);
    let res = app
        .put(&uri, json!({"tags": ["Home", "work", "home"]}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["tags"], json!(["home", "work"]));
    // The same tags again change nothing.
    assert_eq!(
        app.put(&uri, json!({"tags": ["work", "home"]}))
            .await
            .status,
        StatusCode::OK
    );
    let cleared = app.put(&uri, json!({"tags": null})).await.json();
    assert_eq!(cleared["tags"], json!([]));
    let events = app.get(&format!("{uri}/events")).await.json();
    let updates: Vec<&Value> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["event_type"] == "updated")
        .map(|e| &e["details"])
        .collect();
    assert_eq!(
        updates,
        [
            &json!({"field": "tags", "new_value": ["home", "work"]}),
            &json!({"field": "tags", "new_value": []})
        ]
    );
    assert_eq!(
        app.outbox_types()
            .await
            .iter()
            .filter(|t| *t == "link.updated")
            .count(),
        2
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bad_tags_are_400_naming_tags(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let lid = app.link(uid, "https://a.io").await["id"]
        .as_i64()
        .expect("id");
    let too_many: Vec<String> = (0..21).map(|i| format!("t{i}")).collect();
    for tags in [
        json!("work"),
        json!([1]),
        json!([""]),
        json!(["a/b"]),
        json!(["x".repeat(51)]),
        json!(too_many),
        json!([{"tag": "x"}]),
    ] {
        let body = app
            .post(
                "/urls",
                json!({"user_id": uid, "original_url": "https://a.io", "tags": tags}),
            )
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(body["details"]["tags"].is_string(), "{tags}: {body}");
        let body = app
            .put(&format!("/urls/{lid}"), json!({"tags": tags}))
            .await
            .assert_error(StatusCode::BAD_REQUEST);
        assert!(body["details"]["tags"].is_string(), "{tags}: {body}");
    }
    // Twenty distinct (after normalising) are fine.
    let mut twenty: Vec<String> = (0..20).map(|i| format!("t{i}")).collect();
    twenty.push("T0".into());
    let link = tagged(&app, uid, "https://a.io", json!(twenty)).await;
    assert_eq!(link["tags"].as_array().map(Vec::len), Some(20));
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn search_matches_title_url_and_code_ignoring_case(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let post = |body: Value| {
        let app = &app;
        async move {
            let res = app.post("/urls", body).await;
            assert_eq!(res.status, StatusCode::CREATED);
            id_of(&res.json())
        }
    };
    let by_title = post(json!({"user_id": u1, "original_url": "https://a.io/1", "title": "Spring SALE 2026", "tags": ["promo"]})).await;
    let by_url =
        post(json!({"user_id": u1, "original_url": "https://shop.example/spring-sale"})).await;
    let by_code =
        post(json!({"user_id": u2, "original_url": "https://b.io", "short_code": "SpringSale"}))
            .await;
    let literal =
        post(json!({"user_id": u2, "original_url": "https://c.io", "title": "100% off_now"})).await;
    let _other =
        post(json!({"user_id": u1, "original_url": "https://d.io", "title": "autumn"})).await;

    let ids = |res: TestResponse| codes_of(&res.json());
    assert_eq!(
        ids(app.get("/urls?q=spring").await),
        [by_title, by_url, by_code]
    );
    assert_eq!(
        ids(app.get("/urls?q=SALE").await),
        [by_title, by_url, by_code]
    );
    assert_eq!(ids(app.get("/urls?q=%20spring-sale%20").await), [by_url]);
    // % and _ are literal, not wildcards.
    assert_eq!(ids(app.get("/urls?q=0%25%20off_").await), [literal]);
    assert_eq!(ids(app.get("/urls?q=%25").await), [literal]);
    assert_eq!(ids(app.get("/urls?q=_").await), [literal]);
    // Combined with the other filters and paging.
    assert_eq!(
        ids(app.get(&format!("/urls?q=spring&user_id={u1}")).await),
        [by_title, by_url]
    );
    assert_eq!(ids(app.get("/urls?q=spring&tag=promo").await), [by_title]);
    let res = app.get("/urls?q=spring&per_page=2&page=2").await;
    assert_eq!((total(&res), codes_of(&res.json())), (3, vec![by_code]));
    assert_eq!(
        link_rel(&res, "first"),
        Some("/urls?q=spring&page=1&per_page=2".into())
    );
    // A user key searches its own links only.
    let key = TestApp::make_key(&app.db, Some(u2)).await;
    let res = app
        .as_key(Some(&key), axum::http::Method::GET, "/urls?q=spring", None)
        .await;
    assert_eq!(ids(res), [by_code]);
    // Blank is no search; too long is a 400.
    assert_eq!(total(&app.get("/urls?q=%20").await), 5);
    let long = "x".repeat(201);
    let body = app
        .get(&format!("/urls?q={long}"))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(body["details"]["q"].is_string(), "{body}");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn sort_by_creation_and_clicks_ties_by_id(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(id_of(&app.link(uid, &format!("https://a.io/{i}")).await));
    }
    let (a, b, c, d) = (ids[0], ids[1], ids[2], ids[3]);
    // b and c created at the same time; a newest.
    sqlx::query(
        "UPDATE urls SET created_at = CASE id WHEN $1 THEN '2026-03-01'::timestamptz
                                         WHEN $4 THEN '2026-01-01'::timestamptz
                                         ELSE '2026-02-01'::timestamptz END
         WHERE id IN ($1, $2, $3, $4)",
    )
    .bind(a)
    .bind(b)
    .bind(c)
    .bind(d)
    .execute(&app.db)
    .await
    .expect("times");
    // Clicks: c 5, a 5, d 1, b none.
    sqlx::query("INSERT INTO link_stats (url_id, redirect_count) VALUES ($1, 5), ($2, 5), ($3, 1)")
        .bind(c)
        .bind(a)
        .bind(d)
        .execute(&app.db)
        .await
        .expect("stats");
    let order = |uri: &'static str| {
        let app = &app;
        async move { codes_of(&app.get(uri).await.json()) }
    };
    assert_eq!(order("/urls").await, [a, b, c, d]);
    assert_eq!(order("/urls?sort=created_at").await, [d, b, c, a]);
    assert_eq!(order("/urls?sort=-created_at").await, [a, c, b, d]);
    assert_eq!(order("/urls?sort=clicks").await, [b, d, a, c]);
    assert_eq!(order("/urls?sort=-clicks").await, [c, a, d, b]);
    // Paged the same, and the links keep the sort.
    assert_eq!(order("/urls?sort=-clicks&per_page=2&page=2").await, [d, b]);
    let res = app.get("/urls?sort=-clicks&per_page=2").await;
    assert_eq!(
        link_rel(&res, "next"),
        Some("/urls?sort=-clicks&page=2&per_page=2".into())
    );
    let body = app
        .get("/urls?sort=title")
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(body["details"]["sort"].is_string(), "{body}");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn find_if_exists_answers_the_callers_existing_link(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    let first = app.link(u1, "https://example.com/x").await;
    let find = |user_id: i64, extra: Value| {
        let app = &app;
        async move {
            let mut body = json!({"user_id": user_id, "original_url": "https://example.com/x", "find_if_exists": true});
            if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                b.extend(e.clone());
            }
            app.post("/urls", body).await
        }
    };
    let res = find(u1, json!({})).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), first);
    assert_eq!(
        header_str(&res, "location"),
        Some(&*format!("/urls/{}", first["id"]))
    );
    // Nothing was created or logged.
    assert_eq!(total(&app.get("/urls").await), 1);
    assert_eq!(
        app.outbox_types()
            .await
            .iter()
            .filter(|t| *t == "link.created")
            .count(),
        1
    );
    // Another user's link, another URL, an asked-for code, an inactive link: a new one.
    assert_eq!(find(u2, json!({})).await.status, StatusCode::CREATED);
    let other = find(u1, json!({"original_url": "https://example.com/y"})).await;
    assert_eq!(other.status, StatusCode::CREATED);
    assert_eq!(
        find(u1, json!({"short_code": "mine"})).await.status,
        StatusCode::CREATED
    );
    let again = find(u1, json!({"short_code": "mine"})).await;
    assert_eq!(
        (again.status, again.json()["short_code"].clone()),
        (StatusCode::OK, json!("mine"))
    );
    app.put(
        &format!("/urls/{}", other.json()["id"]),
        json!({"is_active": false}),
    )
    .await;
    assert_eq!(
        find(u1, json!({"original_url": "https://example.com/y"}))
            .await
            .status,
        StatusCode::CREATED
    );
    // Without it (or false), the same URL makes a new link, as before.
    assert_eq!(
        find(u1, json!({"find_if_exists": false})).await.status,
        StatusCode::CREATED
    );
    let body = find(u1, json!({"find_if_exists": "yes"}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert!(body["details"]["find_if_exists"].is_string(), "{body}");
}

/// Concurrent `find_if_exists` calls for the same user and URL answer one
/// link: one 201, the others 200 with it.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn concurrent_find_if_exists_calls_answer_one_link(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("racer").await["id"].as_i64().expect("id");
    let body =
        json!({"user_id": uid, "original_url": "https://example.com/race", "find_if_exists": true});
    let answers = futures::future::join_all((0..8).map(|_| app.post("/urls", body.clone()))).await;
    let created = answers
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let found = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!((created, found), (1, 7));
    let ids: std::collections::BTreeSet<_> =
        answers.iter().map(|r| r.json()["id"].as_i64()).collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(total(&app.get("/urls").await), 1);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bulk_json_creates_each_good_row_and_reports_the_bad_ones(db: PgPool) {
    let app = TestApp::new(db).await;
    let u1 = app.user("one").await["id"].as_i64().expect("id");
    let u2 = app.user("two").await["id"].as_i64().expect("id");
    app.post(
        "/urls",
        json!({"user_id": u1, "original_url": "https://taken.io", "short_code": "taken"}),
    )
    .await;
    let res = app
        .post(
            "/urls/bulk",
            json!([
                {"user_id": u1, "original_url": "https://a.io", "title": "A", "tags": ["X", "y"]},
                {"user_id": u1, "original_url": "not a url"},
                {"user_id": u1, "original_url": "https://b.io", "short_code": "taken"},
                {"user_id": 999, "original_url": "https://c.io"},
                "nonsense",
                {"user_id": u2, "original_url": "https://d.io", "short_code": "dee"},
                {"user_id": u1, "original_url": "https://taken.io", "find_if_exists": true},
                {"user_id": u1, "original_url": "https://a.io", "short_code": "dee"}
            ]),
        )
        .await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let report = res.json();
    assert_eq!(
        (&report["count"], &report["created"], &report["existing"]),
        (&json!(8), &json!(2), &json!(1))
    );
    let rows: Vec<(i64, bool, Value)> = report["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                l["row"].as_i64().unwrap_or(0),
                l["existing"] == true,
                l["link"]["short_url"].clone(),
            )
        })
        .collect();
    assert_eq!(rows[0].0, 1);
    assert_eq!(rows[1], (6, false, json!("http://127.0.0.1:8000/dee")));
    assert_eq!(rows[2], (7, true, json!("http://127.0.0.1:8000/taken")));
    assert_eq!(report["links"][0]["link"]["tags"], json!(["x", "y"]));
    let errors: Vec<(i64, i64)> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["row"].as_i64().unwrap_or(0),
                e["status"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(errors, [(2, 400), (3, 409), (4, 404), (5, 400), (8, 409)]);
    assert!(
        report["errors"][0]["details"]["original_url"].is_string(),
        "{report}"
    );
    assert_eq!(report["errors"][1]["error"], "short_code already exists");
    // The created links exist, with their events, through the one write path.
    assert_eq!(total(&app.get("/urls").await), 3);
    assert_eq!(
        app.outbox_types()
            .await
            .iter()
            .filter(|t| *t == "link.created")
            .count(),
        3
    );
    let a = &report["links"][0]["link"];
    let events = app.get(&format!("/urls/{}/events", a["id"])).await.json();
    assert_eq!(events[0]["event_type"], "created");

    // A user key may only create its own links; other rows are 403 rows.
    let key = TestApp::make_key(&app.db, Some(u2)).await;
    let body = json!([
        {"user_id": u2, "original_url": "https://mine.io"},
        {"user_id": u1, "original_url": "https://theirs.io"}
    ]);
    let res = app
        .as_key(
            Some(&key),
            axum::http::Method::POST,
            "/urls/bulk",
            Some(body),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let report = res.json();
    assert_eq!(report["created"], 1);
    assert_eq!(report["errors"][0]["row"], 2);
    assert_eq!(report["errors"][0]["status"], 403);

    // More than 1,000 rows: 413, nothing created; not an array: 400.
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"user_id": u1, "original_url": format!("https://m.io/{i}")}))
        .collect();
    app.post("/urls/bulk", json!(many))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);
    app.post("/urls/bulk", json!({"user_id": u1}))
        .await
        .assert_error(StatusCode::BAD_REQUEST);
    assert_eq!(total(&app.get("/urls").await), 4);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn bulk_csv_upload(db: PgPool) {
    let app = TestApp::new(db).await;
    let uid = app.user("u").await["id"].as_i64().expect("id");
    let csv = format!(
        "user_id,original_url,title,short_code,tags\n\
         {uid},https://a.io/1,First,,work;Q4 Plan\n\
         {uid},https://a.io/2,,code-2,\n\
         {uid},nope,,,\n\
         x,https://a.io/3,,,\n\
         {uid},https://a.io/4,\"Quoted, title\",,\n"
    );
    let res = app.upload_csv("/urls/bulk", "file", csv.as_bytes()).await;
    assert_eq!(
        res.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&res.body)
    );
    let report = res.json();
    assert_eq!(
        (&report["count"], &report["created"]),
        (&json!(5), &json!(3))
    );
    assert_eq!(
        report["links"][0]["link"]["tags"],
        json!(["q4 plan", "work"])
    );
    assert_eq!(report["links"][1]["link"]["short_code"], "code-2");
    assert_eq!(report["links"][2]["link"]["title"], "Quoted, title");
    let rows: Vec<&Value> = report["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| &e["row"])
        .collect();
    assert_eq!(rows, [&json!(3), &json!(4)]);
    assert!(
        report["errors"][1]["details"]["user_id"].is_string(),
        "{report}"
    );

    let bad = app
        .upload_csv("/urls/bulk", "file", b"url,user\nx,1\n")
        .await;
    bad.assert_error(StatusCode::BAD_REQUEST);
    let many = format!(
        "user_id,original_url\n{}",
        format!("{uid},https://a.io\n").repeat(1001)
    );
    app.upload_csv("/urls/bulk", "file", many.as_bytes())
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE);
}
