//! Link rules through the real redirect service (its own HTTP server: the
//! fast path in front of the router), against a real per-test Postgres
//! database, the shared Valkey and NATS: redirect types and their caching,
//! expiry to the second, exact click limits across two replicas, targeting
//! rules, query forwarding, passwords, fail-closed limits and pages for
//! browsers.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header;
use serde_json::{Value, json};
use shortline_shared::events::{Change, Subjects};
use sqlx::PgPool;

mod support;
use support::*;

/// A link's rule columns, for [`insert_ruled`].
#[derive(Default)]
struct Ruled<'a> {
    redirect_type: Option<i16>,
    expires_at: Option<DateTime<Utc>>,
    max_clicks: Option<i64>,
    fallback_url: Option<&'a str>,
    forward_query: bool,
    rules: Option<Value>,
    password: Option<&'a str>,
}

fn hash(password: &str) -> String {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default()
        .hash_password(password.as_bytes())
        .expect("hash")
        .to_string()
}

/// Writes a link with rules straight into Postgres, as the API stores them.
async fn insert_ruled(db: &PgPool, code: &str, url: &str, r: Ruled<'_>) -> i64 {
    let id = insert_link(db, code, url, true).await;
    sqlx::query(
        "UPDATE urls SET redirect_type = $2, expires_at = $3, max_clicks = $4, fallback_url = $5,
             forward_query = $6, rules = $7, password_hash = $8 WHERE id = $1",
    )
    .bind(id)
    .bind(r.redirect_type.unwrap_or(302))
    .bind(r.expires_at)
    .bind(r.max_clicks)
    .bind(r.fallback_url)
    .bind(r.forward_query)
    .bind(r.rules.unwrap_or_else(|| json!([])))
    .bind(r.password.map(hash))
    .execute(db)
    .await
    .expect("rule columns");
    id
}

async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.expect("an answer")
}

fn location(r: &reqwest::Response) -> &str {
    r.headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn cache_control(r: &reqwest::Response) -> &str {
    r.headers()
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1";
const PIXEL: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
const DESKTOP: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const HTML: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// Each redirect type answers with its status, through the router (first
/// request) and the fast path (second); only 301/308 of links without rules
/// may be kept by browsers and proxies.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn each_redirect_type_answers_with_its_status_and_caching(db: PgPool) {
    for t in [301, 302, 307, 308] {
        insert_ruled(
            &db,
            &format!("type{t}"),
            "https://example.com/t",
            Ruled {
                redirect_type: Some(t),
                ..Default::default()
            },
        )
        .await;
    }
    insert_ruled(
        &db,
        "ruled301",
        "https://example.com/t",
        Ruled {
            redirect_type: Some(301),
            forward_query: true,
            ..Default::default()
        },
    )
    .await;
    let mut c = config(&shared_valkey(), &shared_nats());
    c.permanent_max_age_secs = 1234;
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    for (code, status, caching) in [
        ("type301", 301, "public, max-age=1234"),
        ("type302", 302, "private, no-store"),
        ("type307", 307, "private, no-store"),
        ("type308", 308, "public, max-age=1234"),
        ("ruled301", 301, "private, no-store"),
    ] {
        for pass in ["MISS", "HIT"] {
            let r = send(http.get(format!("{}/{code}", served.base))).await;
            assert_eq!(
                (r.status().as_u16(), cache_control(&r), location(&r)),
                (status, caching, "https://example.com/t"),
                "{code} ({pass})"
            );
            assert_eq!(
                r.headers()["x-cache"],
                if pass == "MISS" { "MISS" } else { "HIT" },
                "{code}"
            );
        }
    }
    served.stop().await;
    service.shutdown().await;
}

/// A link expiring 2 s ahead redirects (from L1, which holds the expiry)
/// until that second, then answers 410 without any change event: a request
/// that started before the expiry may redirect, one that ended after it
/// never does. Browsers get a page; a link with a fallback goes there.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn links_expire_to_the_second_on_every_replica_by_themselves(db: PgPool) {
    let expires = Utc::now() + chrono::Duration::seconds(2);
    insert_ruled(
        &db,
        "expire2",
        "https://example.com/e",
        Ruled {
            expires_at: Some(expires),
            ..Default::default()
        },
    )
    .await;
    insert_ruled(
        &db,
        "expired",
        "https://example.com/e",
        Ruled {
            expires_at: Some(Utc::now() - chrono::Duration::seconds(1)),
            fallback_url: Some("https://example.com/fallback"),
            ..Default::default()
        },
    )
    .await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let (mut redirects, mut hits) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let before = Utc::now();
        let r = send(http.get(format!("{}/expire2", served.base))).await;
        let after = Utc::now();
        match r.status().as_u16() {
            302 => {
                assert!(
                    before < expires,
                    "redirected although asked after the expiry"
                );
                redirects += 1;
                hits += usize::from(r.headers()["x-cache"] == "HIT");
            }
            410 => {
                assert!(after >= expires, "410 before the expiry");
                let body: Value = r.json().await.expect("json");
                assert_eq!(body["error"], "This link has expired");
                break;
            }
            other => panic!("unexpected {other}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        redirects > 0 && hits > 0,
        "{redirects} redirects, {hits} from L1"
    );
    let page = send(
        http.get(format!("{}/expire2", served.base))
            .header(header::ACCEPT, HTML),
    )
    .await;
    assert_eq!(page.status().as_u16(), 410);
    assert!(
        page.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(
        page.text()
            .await
            .expect("body")
            .contains("no longer available")
    );
    // The fallback: a 302, recorded as such.
    let r = send(http.get(format!("{}/expired", served.base))).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (302, "https://example.com/fallback")
    );
    let got = clicks(&shared_nats(), &subjects, redirects + 1).await;
    assert_eq!(
        got.len(),
        redirects + 1,
        "one click per redirect, none for the 410s"
    );
    assert_eq!(
        got.iter()
            .filter(|c| c.outcome.as_deref() == Some("fallback"))
            .count(),
        1
    );
    assert!(got.iter().all(|c| c.outcome.is_some()));
    served.stop().await;
    service.shutdown().await;
}

/// `max_clicks=1000` under 64 concurrent clients spread over two replicas:
/// exactly 1000 redirects and 1000 clicks, every other request 410 (or 503
/// when a replica could not count in time: then not counted either).
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_click_limit_is_exact_across_replicas_and_concurrency(db: PgPool) {
    insert_ruled(
        &db,
        "limit1k",
        "https://example.com/l",
        Ruled {
            max_clicks: Some(1000),
            ..Default::default()
        },
    )
    .await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let (one, two) = (start(&c, &db).await, start(&c, &db).await);
    let (a, b) = (Served::start(&one).await, Served::start(&two).await);
    let bases = [a.base.clone(), b.base.clone()];
    let mut tasks = Vec::new();
    for client in 0..64 {
        let base = bases[client % 2].clone();
        tasks.push(tokio::spawn(async move {
            let http = no_redirects();
            let mut statuses = Vec::new();
            for _ in 0..20 {
                let r = send(http.get(format!("{base}/limit1k"))).await;
                statuses.push(r.status().as_u16());
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.extend(t.await.expect("client"));
    }
    // A take whose Valkey reply is late (a starved machine) answers 503 and
    // is given back; once those settle, the clicks they held are served.
    for service in [&one, &two] {
        eventually("failed takes given back", || async {
            service.state.limits.giving_back() == 0
        })
        .await;
    }
    for base in &bases {
        loop {
            let status = send(no_redirects().get(format!("{base}/limit1k")))
                .await
                .status()
                .as_u16();
            statuses.push(status);
            if status == 410 {
                break;
            }
            assert!(statuses.len() < 2_560, "never exhausted");
        }
    }
    let count = |s| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(count(302), 1000, "{:?}", (count(410), count(503)));
    assert_eq!(count(302) + count(410) + count(503), statuses.len());
    let got = clicks(&shared_nats(), &subjects, 1000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got_later = clicks(&shared_nats(), &subjects, 1000).await;
    assert_eq!((got.len(), got_later.len()), (1000, 1000));
    // A HEAD only looks; the limit still holds on both replicas.
    for base in &bases {
        let head = send(no_redirects().head(format!("{base}/limit1k"))).await;
        assert_eq!(head.status().as_u16(), 410);
    }
    a.stop().await;
    b.stop().await;
    one.shutdown().await;
    two.shutdown().await;
}

/// A click whose count Valkey answers too late (stalled here with `CLIENT
/// PAUSE`, run after the request gave up) answers 503 and is given back:
/// the link still gets exactly its `max_clicks` redirects.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_click_counted_too_late_is_given_back(db: PgPool) {
    use shortline_shared::testing::{OwnServer, ServerKind};
    let valkey = OwnServer::start(ServerKind::Valkey).await;
    let id = insert_ruled(
        &db,
        "late3",
        "https://example.com/late",
        Ruled {
            max_clicks: Some(3),
            ..Default::default()
        },
    )
    .await;
    let mut c = config(&valkey.url(), &shared_nats());
    c.limit_timeout_ms = 100;
    let counter = format!("{}:clicks:{id}", c.common.nats_prefix);
    let service = start(&c, &db).await;
    assert_eq!(get(&service, "/late3").await.status.as_u16(), 302);

    assert_eq!(
        valkey
            .valkey_command(&["CLIENT", "PAUSE", "700", "WRITE"])
            .await,
        "+OK"
    );
    let late = get(&service, "/late3").await;
    assert_eq!(late.status.as_u16(), 503, "{:?}", late.body);
    assert!(service.state.limits.giving_back() > 0);
    eventually("the late take given back", || async {
        service.state.limits.giving_back() == 0
    })
    .await;
    let count = valkey.valkey_session(None, &[&["GET", &counter]]).await;
    assert_eq!(count, ["1"]);

    let after: Vec<u16> = futures::future::join_all((0..3).map(|_| get(&service, "/late3")))
        .await
        .iter()
        .map(|r| r.status.as_u16())
        .collect();
    let mut sorted = after.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [302, 302, 410], "{after:?}");
    service.shutdown().await;
}

/// The counters work as the services' own Valkey user (keys under the
/// `shortline:` prefix only, scripts allowed), also when a late take is
/// given back.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn click_counts_work_as_the_services_valkey_user(db: PgPool) {
    use shortline_redirect::limits::{Clicks, Limits};
    use shortline_shared::cache::{Valkey, ValkeySettings};
    use shortline_shared::testing::{OwnServer, ServerKind};
    let valkey = OwnServer::start_secured(ServerKind::Valkey).await;
    let id = insert_link(&db, "acl3", "https://example.com/acl", true).await;
    let client =
        Valkey::connect(&valkey.url_as("shortline"), &ValkeySettings::default()).expect("client");
    eventually("the shortline user logged in", || client.ping()).await;
    let limits = Limits::new(
        Some(client.clone()),
        db.clone().into(),
        "shortline",
        5,
        Duration::from_secs(60),
        Duration::from_millis(100),
    );
    assert_eq!(
        limits.click(id, 3, true).await.expect("take"),
        Clicks::Allowed
    );

    let admin = |command: &'static [&'static str]| {
        let valkey = &valkey;
        async move { valkey.valkey_session(Some("admin"), &[command]).await }
    };
    assert_eq!(admin(&["CLIENT", "PAUSE", "700", "WRITE"]).await, ["+OK"]);
    assert!(
        limits.click(id, 3, true).await.is_err(),
        "a take past its timeout"
    );
    eventually("the late take given back", || async {
        limits.giving_back() == 0
    })
    .await;
    let counter = format!("shortline:clicks:{id}");
    let count = valkey
        .valkey_session(Some("admin"), &[&["GET", &counter]])
        .await;
    assert_eq!(count, ["1"]);

    for expected in [Clicks::Allowed, Clicks::Allowed, Clicks::Exhausted] {
        assert_eq!(limits.click(id, 3, true).await.expect("take"), expected);
    }
}

/// Rules pick targets by device, OS and language (first match wins), and
/// each click records which.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn rules_pick_the_target_by_agent_and_language(db: PgPool) {
    insert_ruled(
        &db,
        "ruled1",
        "https://example.com/default",
        Ruled {
            rules: Some(json!([
                {"when": {"os": ["ios"]}, "target": "https://apps.example/ios"},
                {"when": {"device": ["mobile", "tablet"], "os": ["android"]}, "target": "https://play.example/app"},
                {"when": {"language": ["de"]}, "target": "https://example.de/"},
                {"when": {"device": ["desktop"], "language": ["pt-BR"]}, "target": "https://example.com.br/"}
            ])),
            ..Default::default()
        },
    )
    .await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let cases = [
        (IPHONE, "de", "https://apps.example/ios", "rule:0"),
        (PIXEL, "en", "https://play.example/app", "rule:1"),
        (
            DESKTOP,
            "de-AT,de;q=0.9,en;q=0.5",
            "https://example.de/",
            "rule:2",
        ),
        (
            DESKTOP,
            "en-US,de;q=0.9",
            "https://example.com/default",
            "target",
        ),
        (
            DESKTOP,
            "pt-BR,pt;q=0.8",
            "https://example.com.br/",
            "rule:3",
        ),
        (DESKTOP, "pt-PT", "https://example.com/default", "target"),
    ];
    // Twice: the router, then the fast path, agree.
    for _ in 0..2 {
        for (ua, lang, want, _) in cases {
            let r = send(
                http.get(format!("{}/ruled1", served.base))
                    .header(header::USER_AGENT, ua)
                    .header(header::ACCEPT_LANGUAGE, lang),
            )
            .await;
            assert_eq!(
                (r.status().as_u16(), location(&r), cache_control(&r)),
                (302, want, "private, no-store"),
                "{ua} {lang}"
            );
        }
    }
    let got = clicks(&shared_nats(), &subjects, 12).await;
    let mut outcomes: Vec<&str> = got.iter().filter_map(|c| c.outcome.as_deref()).collect();
    outcomes.sort_unstable();
    let mut want: Vec<&str> = cases.iter().flat_map(|c| [c.3, c.3]).collect();
    want.sort_unstable();
    assert_eq!(outcomes, want);
    served.stop().await;
    service.shutdown().await;
}

/// `forward_query` merges the request's query into the target's (its own
/// keys kept, encoded characters as sent, the fragment last), on the router
/// and the fast path; without it the query stays behind.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn queries_are_forwarded_when_asked(db: PgPool) {
    insert_ruled(
        &db,
        "fwdq",
        "https://example.com/p?a=1&keep=x#frag",
        Ruled {
            forward_query: true,
            ..Default::default()
        },
    )
    .await;
    insert_link(&db, "nofwd", "https://example.com/p?a=1", true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    for _ in 0..2 {
        let r = send(http.get(format!(
            "{}/fwdq?a=2&utm_source=news&t=%E2%82%AC%20x&t=2",
            served.base
        )))
        .await;
        assert_eq!(
            location(&r),
            "https://example.com/p?a=1&keep=x&utm_source=news&t=%E2%82%AC%20x&t=2#frag"
        );
        let r = send(http.get(format!("{}/fwdq", served.base))).await;
        assert_eq!(location(&r), "https://example.com/p?a=1&keep=x#frag");
        let r = send(http.get(format!("{}/nofwd?utm_source=news", served.base))).await;
        assert_eq!(location(&r), "https://example.com/p?a=1");
    }
    served.stop().await;
    service.shutdown().await;
}

/// A password-protected link: JSON clients send `X-Link-Password`, browsers
/// get a form (no scripts, noindex) that posts back and is answered 303;
/// wrong passwords are 401 and, past the limit per link and client, 429
/// even for the right one. Only the redirects are clicks.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_password_guards_the_link_and_guessing_is_limited(db: PgPool) {
    insert_ruled(
        &db,
        "secret1",
        "https://example.com/s",
        Ruled {
            password: Some("opensesame"),
            ..Default::default()
        },
    )
    .await;
    let mut c = config(&shared_valkey(), &shared_nats());
    c.password_attempts = 3;
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let url = format!("{}/secret1", served.base);

    let r = send(http.get(&url)).await;
    assert_eq!(r.status().as_u16(), 401);
    let body: Value = r.json().await.expect("json");
    assert!(
        body["error"]
            .as_str()
            .expect("error")
            .contains("X-Link-Password")
    );

    let form = send(http.get(&url).header(header::ACCEPT, HTML)).await;
    assert_eq!(form.status().as_u16(), 200);
    let csp = form.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(form.headers()["x-robots-tag"], "noindex, nofollow");
    let page = form.text().await.expect("page");
    assert!(
        page.contains(r#"<form method="post" action="/secret1">"#) && !page.contains("<script")
    );

    let r = send(http.get(&url).header("x-link-password", "opensesame")).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (302, "https://example.com/s")
    );
    let r = send(
        http.post(&url)
            .header(header::ACCEPT, HTML)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("password=opensesame"),
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "https://example.com/s")
    );

    let r = send(
        http.post(&url)
            .header(header::ACCEPT, HTML)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body("password=nope"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.expect("page").contains("Wrong password"));
    for _ in 0..2 {
        let r = send(http.get(&url).header("x-link-password", "wrong")).await;
        assert_eq!(r.status().as_u16(), 401);
    }
    // Three wrong ones: the fourth attempt is refused, right or not.
    let r = send(http.get(&url).header("x-link-password", "opensesame")).await;
    assert_eq!(r.status().as_u16(), 429);
    assert!(r.headers().contains_key(header::RETRY_AFTER));
    let got = clicks(&shared_nats(), &subjects, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        clicks(&shared_nats(), &subjects, 2).await.len(),
        2,
        "{got:?}"
    );
    served.stop().await;
    service.shutdown().await;
}

/// Without Valkey a click-limited or protected link cannot be counted:
/// 503, never a redirect past the limit. Plain links keep redirecting.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn limited_links_fail_closed_without_valkey(db: PgPool) {
    insert_ruled(
        &db,
        "limited",
        "https://example.com/l",
        Ruled {
            max_clicks: Some(5),
            ..Default::default()
        },
    )
    .await;
    insert_ruled(
        &db,
        "guarded",
        "https://example.com/g",
        Ruled {
            password: Some("pw"),
            ..Default::default()
        },
    )
    .await;
    insert_link(&db, "plainv", "https://example.com/p", true).await;
    // Nothing listens on port 1.
    let c = config("redis://127.0.0.1:1", &shared_nats());
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let r = send(http.get(format!("{}/limited", served.base))).await;
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "This link cannot be served right now");
    let r = send(
        http.get(format!("{}/guarded", served.base))
            .header("x-link-password", "pw"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 503);
    let r = send(http.get(format!("{}/plainv", served.base))).await;
    assert_eq!(r.status().as_u16(), 302);
    served.stop().await;
    service.shutdown().await;
}

/// Browsers asking for unknown codes get the 404 page (replaceable from
/// `REDIRECT_TEMPLATE_DIR`); API clients keep the contract's JSON 404.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn browsers_get_pages_and_api_clients_json(db: PgPool) {
    let dir = std::env::temp_dir().join(format!(
        "shortline-templates-{}",
        shortline_shared::testing::unique_prefix()
    ));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("not_found.html"), "<h1>Nothing at {{code}}</h1>").expect("template");
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let r = send(http.get(format!("{}/nothere", served.base))).await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("application/json")
    );
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"], "Short code not found");
    let r = send(
        http.get(format!("{}/nothere", served.base))
            .header(header::ACCEPT, HTML),
    )
    .await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        r.headers()[header::CONTENT_TYPE]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    assert!(r.text().await.expect("page").contains("does not exist"));
    served.stop().await;
    service.shutdown().await;

    let mut c = config(&shared_valkey(), &shared_nats());
    c.template_dir = dir.display().to_string();
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let r = send(
        http.get(format!("{}/nothere", served.base))
            .header(header::ACCEPT, HTML),
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.expect("page")),
        (404, "<h1>Nothing at nothere</h1>".to_owned())
    );
    served.stop().await;
    service.shutdown().await;
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A rule edit announced on the change stream drops the cached entry, as a
/// target edit does: the next request follows the new rules.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn rule_edits_reach_the_cached_entry_through_the_change_stream(db: PgPool) {
    let id = insert_ruled(
        &db,
        "edited",
        "https://example.com/d",
        Ruled {
            rules: Some(
                json!([{"when": {"device": ["mobile"]}, "target": "https://m.example/old"}]),
            ),
            ..Default::default()
        },
    )
    .await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let mobile = || {
        http.get(format!("{}/edited", served.base))
            .header(header::USER_AGENT, PIXEL)
    };
    assert_eq!(location(&send(mobile()).await), "https://m.example/old");
    assert_eq!(send(mobile()).await.headers()["x-cache"], "HIT");
    sqlx::query("UPDATE urls SET rules = $2 WHERE id = $1")
        .bind(id)
        .bind(json!([{"when": {"device": ["mobile"]}, "target": "https://m.example/new"}]))
        .execute(&db)
        .await
        .expect("edit");
    let sequence = publish_change(
        &shared_nats(),
        &subjects,
        Change::LinkUpdated {
            link: snapshot(id, "edited", "https://example.com/d", true),
            changed: vec!["rules".into()],
        },
    )
    .await;
    assert!(sequence > 0);
    eventually("the new rule is served", || async {
        location(&send(mobile()).await) == "https://m.example/new"
    })
    .await;
    served.stop().await;
    service.shutdown().await;
}
