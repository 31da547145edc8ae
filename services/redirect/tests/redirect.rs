//! The redirect service through its real router, against a real per-test
//! Postgres database, real Valkey and real NATS. The degradation tests start
//! their own `valkey-server` / `nats-server` (from the tools directory) so
//! that they can stop them, and reach Postgres through a proxy they can cut.

use std::net::SocketAddr;
use std::time::Duration;

use async_nats::jetstream;
use axum::http::{Method, StatusCode};
use futures::StreamExt;
use shortline_redirect::Service;
use shortline_shared::events::{Change, Subjects};
use shortline_shared::testing::{self, OwnServer, ServerKind, TcpProxy, unique_prefix};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

mod qr;
mod support;
use support::*;

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn redirects_to_the_stored_url_exactly_through_each_layer(db: PgPool) {
    let url = "https://example.com/a/b?x=1&y=%20z#frag";
    insert_link(&db, "abc123", url, true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;

    let first = get(&service, "/abc123").await;
    assert_eq!(first.status, StatusCode::FOUND);
    assert_eq!(first.header("location"), url);
    assert_eq!(
        first.header("x-cache"),
        "MISS",
        "first answer comes from Postgres"
    );
    let second = get(&service, "/abc123").await;
    assert_eq!(
        (
            second.status,
            second.header("location"),
            second.header("x-cache")
        ),
        (StatusCode::FOUND, url, "HIT")
    );
    let head = call(&service, Method::HEAD, "/abc123").await;
    assert_eq!(
        (head.status, head.header("location")),
        (StatusCode::FOUND, url)
    );

    // A second replica (empty L1) finds it in Valkey: a HIT, not Postgres.
    let replica = start(&c, &db).await;
    let mut from_l2 = get(&replica, "/abc123").await;
    for _ in 0..50 {
        // The first replica writes Valkey off the request path.
        if from_l2.header("x-cache") == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        replica.state.links.invalidate_all_local();
        from_l2 = get(&replica, "/abc123").await;
    }
    assert_eq!(
        (from_l2.header("location"), from_l2.header("x-cache")),
        (url, "HIT")
    );

    // Two GETs on the first replica, one on the second: three clicks; HEAD
    // records none.
    let subjects = Subjects::new(&c.common.nats_prefix);
    let got = clicks(&shared_nats(), &subjects, 3).await;
    assert!(got.len() >= 3, "clicks: {got:?}");
    assert!(
        got.iter()
            .all(|k| k.short_code == "abc123" && k.user_id == 7)
    );
    service.shutdown().await;
    replica.shutdown().await;
}

/// Queries of the service waiting for a lock on `urls` in this database.
async fn link_queries_waiting(db: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
         AND wait_event_type = 'Lock' AND query LIKE '%FROM urls WHERE COALESCE(domain_id, 0) = 0 AND short_code%'",
    )
    .fetch_one(db)
    .await
    .expect("pg_stat_activity")
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn concurrent_misses_for_one_code_share_one_lookup(db: PgPool) {
    let url = "https://example.com/coalesced";
    insert_link(&db, "coal1", url, true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;

    // Hold every read of `urls` until all the requests are in; watch them
    // on a connection of our own (lookups may take all the others).
    let mut watcher = db.acquire().await.expect("connection");
    let mut lock = db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE urls IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock");
    let requests = futures::future::join_all((0..20).map(|_| get(&service, "/coal1")));
    let watch = async {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while link_queries_waiting(&mut watcher).await == 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Every request has been polled by now; give stragglers time to show.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let waiting = link_queries_waiting(&mut watcher).await;
        lock.commit().await.expect("release");
        waiting
    };
    let (replies, waiting) = tokio::join!(requests, watch);
    assert_eq!(
        waiting, 1,
        "20 concurrent misses made {waiting} Postgres lookups"
    );
    assert!(
        replies
            .iter()
            .all(|r| r.status == StatusCode::FOUND && r.header("location") == url)
    );
    let misses = replies
        .iter()
        .filter(|r| r.header("x-cache") == "MISS")
        .count();
    assert_eq!(
        misses, 1,
        "one request loaded it, the others shared its answer"
    );
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn unknown_and_inactive_codes_are_json_404_and_cached_negatively(db: PgPool) {
    insert_link(&db, "sleepy", "https://example.com/s", false).await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    for uri in ["/nope42", "/sleepy", &format!("/{}", "x".repeat(65))] {
        let a = get(&service, uri).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(a.json()["error"], "Short code not found");
    }
    // POST is for password forms: an unknown code is a 404 for it too.
    let post = call(&service, Method::POST, "/nope42").await;
    assert_eq!(post.status, StatusCode::NOT_FOUND);
    assert_eq!(post.json()["error"], "Short code not found");

    // Created behind the cache's back: still a (negatively cached) 404 ...
    let id = insert_link(&db, "nope42", "https://example.com/new", true).await;
    assert_eq!(get(&service, "/nope42").await.status, StatusCode::NOT_FOUND);
    // ... until its change event arrives.
    publish_change(
        &shared_nats(),
        &subjects,
        Change::LinkCreated {
            link: snapshot(id, "nope42", "https://example.com/new", true),
        },
    )
    .await;
    eventually("link.created drops the negative entry", || async {
        get(&service, "/nope42").await.status == StatusCode::FOUND
    })
    .await;

    // Deactivated: the change event makes it a 404 again.
    deactivate(&db, &subjects, id, "nope42", "https://example.com/new").await;
    eventually("link.updated drops the entry", || async {
        get(&service, "/nope42").await.status == StatusCode::NOT_FOUND
    })
    .await;
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn clicks_carry_the_request_and_a_truncated_client_address(db: PgPool) {
    let id = insert_link(&db, "clicky", "https://example.com/c", true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    // A real listener, so the handler sees the TCP peer (127.0.0.1, a trusted
    // proxy by default).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = shortline_redirect::router(service.state.clone())
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = http
        .get(format!("http://{addr}/clicky"))
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0",
        )
        .header("referer", "https://news.example.org/item?id=1")
        .header("x-forwarded-for", "10.9.9.9, 198.51.100.77")
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), reqwest::StatusCode::FOUND);
    let head = http
        .head(format!("http://{addr}/clicky"))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), reqwest::StatusCode::FOUND);
    let missing = http
        .get(format!("http://{addr}/absent"))
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);

    // Wait for the first click, give a wrong second one time to show up,
    // then read them all.
    clicks(&shared_nats(), &Subjects::new(&c.common.nats_prefix), 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = clicks(&shared_nats(), &Subjects::new(&c.common.nats_prefix), 1).await;
    assert_eq!(
        got.len(),
        1,
        "one click for the GET, none for HEAD or 404: {got:?}"
    );
    let click = &got[0];
    assert_eq!((click.url_id, click.user_id), (id, 7));
    assert_eq!(click.ip.as_deref(), Some("198.51.100.0"));
    assert_eq!(
        click.user_agent.as_deref(),
        Some("Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0")
    );
    assert_eq!(
        click.referrer.as_deref(),
        Some("https://news.example.org/item?id=1")
    );
    assert_eq!(click.event_id.to_string().len(), 26);
    server.abort();
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn valkey_down_redirects_still_succeed(db: PgPool) {
    insert_link(&db, "warm01", "https://example.com/w", true).await;
    insert_link(&db, "cold01", "https://example.com/c", true).await;
    let mut valkey = OwnServer::start(ServerKind::Valkey).await;
    let c = config(&valkey.url(), &shared_nats());
    let service = start(&c, &db).await;
    eventually("valkey connected", || async {
        service
            .state
            .valkey
            .as_ref()
            .is_some_and(|v| v.is_connected())
    })
    .await;
    assert_eq!(get(&service, "/warm01").await.status, StatusCode::FOUND);

    valkey.stop();
    let warm = get(&service, "/warm01").await;
    assert_eq!(
        (warm.status, warm.header("x-cache")),
        (StatusCode::FOUND, "HIT")
    );
    let started = std::time::Instant::now();
    let cold = get(&service, "/cold01").await;
    assert_eq!(
        (cold.status, cold.header("location"), cold.header("x-cache")),
        (StatusCode::FOUND, "https://example.com/c", "MISS")
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a dead Valkey must not stall the request"
    );
    let ready = get(&service, "/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["valkey"], "unreachable");

    // Back: used again (a replica with an empty L1 reads what is written now).
    valkey.resume().await;
    eventually("valkey reconnected", || async {
        service
            .state
            .valkey
            .as_ref()
            .is_some_and(|v| v.is_connected())
    })
    .await;
    service.state.links.invalidate_all_local();
    assert_eq!(get(&service, "/cold01").await.status, StatusCode::FOUND);
    service.shutdown().await;
}

/// Whether every redirect replica's change consumer has acknowledged the
/// change at `sequence` (the API's test before it answers a write).
async fn change_acked(subjects: &Subjects, sequence: u64) -> bool {
    let client = shortline_shared::nats::connect(&shared_nats(), "redirect-test")
        .await
        .expect("nats");
    let stream = jetstream::new(client)
        .get_stream(subjects.changes_stream())
        .await
        .expect("change stream");
    let mut consumers = stream.consumers();
    let mut acked = true;
    while let Some(info) = consumers.next().await {
        let info = info.expect("consumer info");
        acked &= info.ack_floor.stream_sequence >= sequence
            || (info.num_pending == 0 && info.num_ack_pending == 0);
    }
    acked
}

/// A change whose Valkey tombstone cannot be written (here Valkey refuses
/// writes: out of memory) is not acknowledged, so the write side never
/// hears "applied" while Valkey may still serve the old target; meanwhile
/// this replica's loads of that code skip Valkey. Once writes work again
/// the redelivered change writes its tombstone and is acknowledged.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_change_is_acked_only_once_its_tombstone_is_written(db: PgPool) {
    let id = insert_link(&db, "tomb01", "https://example.com/old", true).await;
    let valkey = OwnServer::start(ServerKind::Valkey).await;
    let c = config(&valkey.url(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let l2 = shortline_shared::cache::Valkey::connect(&valkey.url(), &Default::default())
        .expect("valkey client");
    let key = format!("{}:link:tomb01", c.common.nats_prefix);
    eventually("valkey connected", || async {
        l2.is_connected()
            && service
                .state
                .valkey
                .as_ref()
                .is_some_and(|v| v.is_connected())
    })
    .await;
    assert_eq!(get(&service, "/tomb01").await.header("x-cache"), "MISS");
    eventually("the link written to L2", || async {
        l2.get(&key).await.ok().flatten().is_some()
    })
    .await;
    let old_l2 = l2.get(&key).await.expect("get").expect("value");
    assert!(old_l2.ends_with("https://example.com/old"), "{old_l2}");

    for args in [
        ["CONFIG", "SET", "maxmemory-policy", "noeviction"],
        ["CONFIG", "SET", "maxmemory", "1"],
    ] {
        assert_eq!(valkey.valkey_command(&args).await, "+OK");
    }
    let sequence = retarget(&db, &subjects, id, "tomb01", "https://example.com/new").await;
    // L1 is dropped at once, and with L2 not trusted Postgres answers.
    eventually("the new target served", || async {
        get(&service, "/tomb01").await.header("location") == "https://example.com/new"
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !change_acked(&subjects, sequence).await,
        "a change whose tombstone failed must not be acknowledged"
    );
    assert_eq!(l2.get(&key).await.expect("get"), Some(old_l2));
    // (Each redelivery drops L1 again, so this may be a Postgres answer.)
    assert_eq!(
        get(&service, "/tomb01").await.header("location"),
        "https://example.com/new"
    );

    assert_eq!(
        valkey
            .valkey_command(&["CONFIG", "SET", "maxmemory", "0"])
            .await,
        "+OK"
    );
    eventually("the change acknowledged", || async {
        change_acked(&subjects, sequence).await
    })
    .await;
    assert_eq!(l2.get(&key).await.expect("get").as_deref(), Some("!"));
    service.state.links.invalidate_all_local();
    let reply = get(&service, "/tomb01").await;
    assert_eq!(
        (reply.header("location"), reply.header("x-cache")),
        ("https://example.com/new", "MISS")
    );
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn postgres_unreachable_cached_links_still_redirect(db: PgPool) {
    insert_link(&db, "inl1", "https://example.com/1", true).await;
    insert_link(&db, "inl2", "https://example.com/2", true).await;
    insert_link(&db, "nowhere", "https://example.com/n", true).await;
    let opts = db.connect_options().as_ref().clone();
    let target: SocketAddr = ([127, 0, 0, 1], opts.get_port()).into();
    let proxy = TcpProxy::start(target).await;
    let through_proxy = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(opts.port(proxy.addr().port()));
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &through_proxy).await;
    // A replica without L1: only Valkey can save it.
    let mut c2 = c.clone();
    c2.l1_capacity = 0;
    let l2_only = start(&c2, &through_proxy).await;

    assert_eq!(get(&service, "/inl1").await.status, StatusCode::FOUND);
    assert_eq!(get(&service, "/inl2").await.status, StatusCode::FOUND);
    eventually("inl2 written to Valkey", || async {
        get(&l2_only, "/inl2").await.header("x-cache") == "HIT"
    })
    .await;

    proxy.cut().await;
    let a = get(&service, "/inl1").await;
    assert_eq!(
        (a.status, a.header("location"), a.header("x-cache")),
        (StatusCode::FOUND, "https://example.com/1", "HIT")
    );
    let b = get(&l2_only, "/inl2").await;
    assert_eq!(
        (b.status, b.header("location"), b.header("x-cache")),
        (StatusCode::FOUND, "https://example.com/2", "HIT")
    );
    let unknown = get(&service, "/nowhere").await;
    assert_eq!(
        unknown.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "not cached and no Postgres"
    );
    assert!(unknown.json()["error"].is_string());
    let ready = get(&service, "/ready").await;
    assert_eq!(
        (ready.status, ready.json()["postgres"].as_str()),
        (StatusCode::OK, Some("unreachable"))
    );
    service.shutdown().await;
    l2_only.shutdown().await;
}

/// Postgres away: codes no cache holds answer 503 at once while the
/// database is known down (not after the pool's acquire timeout each), and
/// the replica recovers by itself when Postgres is back.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn postgres_away_uncached_codes_fail_fast_and_recover(db: PgPool) {
    insert_link(&db, "later1", "https://example.com/later", true).await;
    let opts = db.connect_options().as_ref().clone();
    let target: SocketAddr = ([127, 0, 0, 1], opts.get_port()).into();
    let mut proxy = TcpProxy::start(target).await;
    // The production pool's acquire timeout (shared::db::PoolSettings).
    let through_proxy = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(3))
        .connect_lazy_with(opts.port(proxy.addr().port()));
    let service = start(&config(&shared_valkey(), &shared_nats()), &through_proxy).await;
    assert_eq!(
        get(&service, "/nosuch0").await.status,
        StatusCode::NOT_FOUND
    );

    proxy.cut().await;
    // The first miss finds out (it may wait for the pool's timeout).
    assert_eq!(
        get(&service, "/nosuch1").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // 3 s each would be a minute; fail-fast answers take milliseconds.
    let unavailable = tokio::time::timeout(Duration::from_secs(20), async {
        let mut unavailable = 0;
        for i in 0..20 {
            let reply = get(&service, &format!("/never{i}")).await;
            assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
            assert!(reply.json()["error"].is_string());
            unavailable += 1;
        }
        unavailable
    })
    .await
    .expect("20 misses while Postgres is away finish within seconds, not a minute");
    assert_eq!(unavailable, 20);

    proxy.heal().await;
    eventually(
        "the replica asks Postgres again once it is back",
        || async { get(&service, "/later1").await.status == StatusCode::FOUND },
    )
    .await;
    assert_eq!(
        get(&service, "/later1").await.header("location"),
        "https://example.com/later"
    );
    service.shutdown().await;
}

/// A replica that served (and cached) links before it could read the change
/// stream (NATS not there yet) drops them once it reads it: a change made
/// meanwhile never reached it.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn links_cached_before_the_change_stream_is_read_are_dropped(db: PgPool) {
    let id = insert_link(&db, "early1", "https://example.com/old", true).await;
    let mut nats = OwnServer::not_started(ServerKind::Nats);
    // No Valkey: only L1 and Postgres, so what is served shows what L1 holds.
    let mut c = config("", &nats.url());
    c.change_stream_wait_ms = 200;
    let service = Service::start_with_pool(&c, db.clone())
        .await
        .expect("starts without NATS");
    get(&service, "/early1").await;
    assert_eq!(get(&service, "/early1").await.header("x-cache"), "HIT");
    sqlx::query("UPDATE urls SET original_url = 'https://example.com/new' WHERE id = $1")
        .bind(id)
        .execute(&db)
        .await
        .expect("update");
    // The change's event cannot reach this replica: L1 still answers.
    assert_eq!(
        get(&service, "/early1").await.header("location"),
        "https://example.com/old"
    );

    nats.resume().await;
    eventually("L1 dropped once the change stream is read", || async {
        get(&service, "/early1").await.header("location") == "https://example.com/new"
    })
    .await;
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn nats_down_redirects_succeed_and_buffered_clicks_are_published_after(db: PgPool) {
    insert_link(&db, "buffy", "https://example.com/b", true).await;
    let mut nats = OwnServer::start(ServerKind::Nats).await;
    let c = config(&shared_valkey(), &nats.url());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    for _ in 0..5 {
        assert_eq!(get(&service, "/buffy").await.status, StatusCode::FOUND);
    }
    assert_eq!(clicks(&nats.url(), &subjects, 5).await.len(), 5);

    nats.stop();
    for _ in 0..40 {
        assert_eq!(get(&service, "/buffy").await.status, StatusCode::FOUND);
    }
    eventually("/ready reports NATS unreachable", || async {
        get(&service, "/ready").await.json()["nats"] == "unreachable"
    })
    .await;

    nats.resume().await;
    let got = clicks(&nats.url(), &subjects, 45).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = clicks(&nats.url(), &subjects, 45).await;
    assert_eq!(
        (got.len(), again.len()),
        (45, 45),
        "every click once, none twice"
    );
    let mut ids: Vec<_> = again.iter().map(|k| k.event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 45);
    service.shutdown().await;
}

/// The value of the first sample of `name` whose line holds every one of
/// `labels`, in a Prometheus text exposition.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && labels.iter().all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn clicks_beyond_the_buffer_are_dropped_and_counted(db: PgPool) {
    insert_link(&db, "overfl", "https://example.com/o", true).await;
    let mut nats = OwnServer::start(ServerKind::Nats).await;
    let mut c = config(&shared_valkey(), &nats.url());
    c.click_buffer = 5;
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    assert_eq!(get(&service, "/overfl").await.status, StatusCode::FOUND);
    assert_eq!(clicks(&nats.url(), &subjects, 1).await.len(), 1);

    nats.stop();
    eventually("/ready reports NATS unreachable", || async {
        get(&service, "/ready").await.json()["nats"] == "unreachable"
    })
    .await;
    for _ in 0..30 {
        assert_eq!(get(&service, "/overfl").await.status, StatusCode::FOUND);
    }
    let metrics = String::from_utf8(get(&service, "/metrics").await.body.to_vec()).expect("text");
    // Absent: nothing was counted.
    let dropped = sample(
        &metrics,
        "shortline_clicks_dropped_total",
        &["reason=\"overflow\""],
    )
    .unwrap_or(0.0);
    // 5 wait in the buffer, the publisher holds the batch it keeps retrying
    // (what had arrived when it took its batch, a few at most): the rest
    // overflowed.
    assert!(
        (18.0..=25.0).contains(&dropped),
        "{dropped} clicks counted as overflow"
    );

    // Every click not counted as dropped is published once NATS is back.
    nats.resume().await;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let kept = 1 + 30 - dropped as usize;
    let got = clicks(&nats.url(), &subjects, kept).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = clicks(&nats.url(), &subjects, kept).await;
    assert_eq!((got.len(), again.len()), (kept, kept));
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn shutdown_flushes_the_click_buffer(db: PgPool) {
    insert_link(&db, "flush1", "https://example.com/f", true).await;
    let mut c = config(&shared_valkey(), &shared_nats());
    // Batches would wait a minute to fill: only the shutdown flush sends them.
    c.click_linger_ms = 60_000;
    c.click_batch_max = 10_000;
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    for _ in 0..25 {
        assert_eq!(get(&service, "/flush1").await.status, StatusCode::FOUND);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = clicks(&shared_nats(), &subjects, 0).await.len();
    assert_eq!(before, 0, "nothing sent before the shutdown");
    tokio::time::timeout(Duration::from_secs(15), service.shutdown())
        .await
        .expect("shutdown finishes");
    assert_eq!(clicks(&shared_nats(), &subjects, 25).await.len(), 25);
}

/// A graceful shutdown (SIGTERM) while NATS is down loses no click: the
/// binary spills its buffer to a file within its flush timeout, and the next
/// replica to start with NATS up publishes every click once and deletes the
/// file.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn clicks_buffered_during_a_nats_outage_survive_a_graceful_shutdown(db: PgPool) {
    const N: usize = 37;
    insert_link(&db, "spill1", "https://example.com/s", true).await;
    let mut nats = OwnServer::start(ServerKind::Nats).await;
    let prefix = unique_prefix();
    let subjects = Subjects::new(&prefix);
    let dir = spill_dir();
    let dir_text = dir.display().to_string();
    let binary = Binary::start(
        &db,
        &[
            ("NATS_URL", nats.url().as_str()),
            ("NATS_PREFIX", prefix.as_str()),
            ("CLICK_SPILL_DIR", dir_text.as_str()),
            ("CLICK_FLUSH_TIMEOUT_SECS", "1"),
        ],
    );
    let http = no_redirects();
    binary.wait_ready(&http).await;
    nats.stop();
    for _ in 0..N {
        let res = http
            .get(format!("{}/spill1", binary.base))
            .send()
            .await
            .expect("redirect");
        assert_eq!(res.status(), reqwest::StatusCode::FOUND);
    }
    let lines = binary.terminate();
    let spills = shortline_redirect::spill::SpillDir::new(&dir);
    let files = spills.files().expect("spill dir lists");
    assert_eq!(files.len(), 1, "one spill file; log: {lines:#?}");
    let spilled: Vec<_> = shortline_redirect::spill::SpillDir::read(&files[0])
        .expect("spill file reads")
        .into_iter()
        .flat_map(|b| b.clicks)
        .collect();
    assert_eq!(spilled.len(), N, "every buffered click is in the file");
    assert!(spilled.iter().all(|c| c.short_code == "spill1"));

    nats.resume().await;
    let mut c = config(&shared_valkey(), &nats.url());
    c.common.nats_prefix = prefix.clone();
    c.click_spill_dir = dir_text.clone();
    let replica = start(&c, &db).await;
    eventually("the spill file is replayed and deleted", || async {
        spills.files().map(|f| f.is_empty()).unwrap_or(false)
    })
    .await;
    let got = clicks(&nats.url(), &subjects, N).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = clicks(&nats.url(), &subjects, N).await;
    assert_eq!((got.len(), again.len()), (N, N), "every click once");
    let mut ids: Vec<_> = again.iter().map(|k| k.event_id).collect();
    let mut want: Vec<_> = spilled.iter().map(|k| k.event_id).collect();
    ids.sort();
    want.sort();
    assert_eq!(ids, want, "the clicks keep their ULIDs");
    let metrics = String::from_utf8(get(&replica, "/metrics").await.body.to_vec()).expect("text");
    assert_eq!(
        sample(&metrics, "shortline_clicks_replayed_total", &[]),
        Some(37.0)
    );
    replica.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn health_and_ready(db: PgPool) {
    let service = start(&config(&shared_valkey(), &shared_nats()), &db).await;
    let h = get(&service, "/health").await;
    assert_eq!(
        (h.status, h.json()["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let r = get(&service, "/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["postgres"], "ok");
    service.shutdown().await;
}

/// Without Valkey a replica serves from L1 and PostgreSQL; `/ready` says
/// so in the words every service uses.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn ready_without_valkey_says_not_configured(db: PgPool) {
    let service = start(&config("", &shared_nats()), &db).await;
    let r = get(&service, "/ready").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["postgres"], "ok");
    assert_eq!(r.json()["valkey"], "not configured");
    service.shutdown().await;
}

/// Names of the redirect consumers on the test's change stream.
async fn change_consumers(subjects: &Subjects) -> Vec<String> {
    let client = shortline_shared::nats::connect(&shared_nats(), "redirect-test")
        .await
        .expect("nats");
    let js = jetstream::new(client);
    let Ok(stream) = js.get_stream(subjects.changes_stream()).await else {
        return Vec::new();
    };
    let mut names = Vec::new();
    let mut consumers = stream.consumers();
    while let Some(Ok(info)) = consumers.next().await {
        if info
            .name
            .starts_with(shortline_shared::nats::INVALIDATION_CONSUMER_PREFIX)
        {
            names.push(info.name);
        }
    }
    names
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_stopped_replica_removes_its_change_consumer(db: PgPool) {
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while change_consumers(&subjects).await.len() != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "consumer never appeared"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    service.shutdown().await;
    eventually("the consumer deleted", || async {
        change_consumers(&subjects).await.is_empty()
    })
    .await;
}

/// Status and headers of an answer, without `date` (which moves).
fn shape(status: u16, headers: &axum::http::HeaderMap) -> (u16, Vec<(String, String)>) {
    let mut h: Vec<_> = headers
        .iter()
        .filter(|(k, _)| *k != "date")
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    h.sort();
    (status, h)
}

/// A stored URL that cannot be a `Location` value (a control character,
/// written around the API) gets a 502 JSON error, cached or not, and no
/// click.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn an_unusable_stored_url_is_a_json_502_cached_or_not(db: PgPool) {
    insert_link(&db, "bad001", "https://example.com/\r\nx-evil: 1", true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    for _ in 0..2 {
        let reply = http
            .get(format!("{}/bad001", served.base))
            .send()
            .await
            .expect("reply");
        assert_eq!(reply.status().as_u16(), 502);
        assert!(reply.headers().get("x-evil").is_none());
        let body: serde_json::Value = reply.json().await.expect("json");
        assert_eq!(body["error"], "Link target is unusable");
    }
    served.stop().await;
    service.shutdown().await;
    assert_eq!(clicks(&shared_nats(), &subjects, 0).await.len(), 0);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_fast_path_answers_cached_codes_as_the_router_does(db: PgPool) {
    let url = "https://example.com/fast?q=1&r=%2F";
    insert_link(&db, "fast01", url, true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let first = http
        .get(format!("{}/fast01", served.base))
        .send()
        .await
        .expect("first");
    assert_eq!(
        (
            first.status().as_u16(),
            first.headers()["x-cache"].to_str().ok()
        ),
        (302, Some("MISS"))
    );

    for method in [Method::GET, Method::HEAD] {
        // Cached now: the fast path answers.
        let fast = http
            .request(method.clone(), format!("{}/fast01", served.base))
            .header("x-request-id", "req-fast-1")
            .send()
            .await
            .expect("fast");
        let fast_shape = shape(fast.status().as_u16(), fast.headers());
        assert_eq!(fast.bytes().await.expect("body").len(), 0);
        // The router, over a real connection too (hyper adds content-length
        // the same way), via a plain axum server.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = shortline_redirect::router(service.state.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        let plain = tokio::spawn(async move { axum::serve(listener, app).await });
        let routed = http
            .request(method.clone(), format!("http://{addr}/fast01"))
            .header("x-request-id", "req-fast-1")
            .send()
            .await
            .expect("routed");
        plain.abort();
        assert_eq!(
            fast_shape,
            shape(routed.status().as_u16(), routed.headers()),
            "{method}"
        );
        assert_eq!(
            fast_shape.1,
            vec![
                ("cache-control".into(), "private, no-store".into()),
                ("content-length".into(), "0".into()),
                ("location".into(), url.into()),
                ("x-cache".into(), "HIT".into()),
                ("x-request-id".into(), "req-fast-1".into()),
            ]
        );
    }

    // Without a request id, one is made (a ULID), as the router does.
    let made = http
        .get(format!("{}/fast01", served.base))
        .send()
        .await
        .expect("made");
    let id = made.headers()["x-request-id"].to_str().expect("id");
    assert_eq!(id.len(), 26);
    assert!(id.parse::<ulid::Ulid>().is_ok(), "{id}");

    // Everything else goes to the router: 404 JSON, other routes, methods.
    let missing = http
        .get(format!("{}/absent", served.base))
        .header("x-request-id", "req-404")
        .send()
        .await
        .expect("404");
    assert_eq!(missing.status(), reqwest::StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["x-request-id"], "req-404");
    let body: serde_json::Value = missing.json().await.expect("json");
    assert_eq!(body["error"], "Short code not found");
    // A problem document (RFC 9457), as problem+json when asked for.
    assert_eq!(body["status"], 404);
    assert_eq!(body["detail"], "Short code not found");
    let problem = http
        .get(format!("{}/absent", served.base))
        .header("accept", "application/problem+json")
        .send()
        .await
        .expect("404");
    assert_eq!(
        problem.headers()["content-type"],
        "application/problem+json"
    );
    let post = http
        .post(format!("{}/fast01", served.base))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), reqwest::StatusCode::METHOD_NOT_ALLOWED);
    let health = http
        .get(format!("{}/health", served.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    // The fast path's answers are counted like the router's.
    let metrics = http
        .get(format!("{}/metrics", served.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let value = |name: &str, labels: &[&str]| -> f64 {
        sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{metrics}"))
    };
    assert!(
        value(
            "shortline_redirect_lookups_total",
            &["layer=\"l1\"", "result=\"found\""]
        ) >= 3.0
    );
    for method in ["GET", "HEAD"] {
        assert!(
            value(
                "http_server_request_duration_seconds_count",
                &[
                    "http_route=\"/{short_code}\"",
                    &format!("http_request_method=\"{method}\""),
                    "http_response_status_code=\"302\"",
                ]
            ) >= 1.0
        );
    }
    served.stop().await;
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_fast_path_records_one_click_per_get_and_none_per_head(db: PgPool) {
    let id = insert_link(&db, "fastck", "https://example.com/fc", true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    // A HEAD through the router fills L1 and records no click.
    assert_eq!(
        call(&service, Method::HEAD, "/fastck").await.status,
        StatusCode::FOUND
    );
    let served = Served::start(&service).await;
    let http = no_redirects();
    for _ in 0..3 {
        let head = http
            .head(format!("{}/fastck", served.base))
            .send()
            .await
            .expect("head");
        assert_eq!(head.headers()["x-cache"], "HIT");
    }
    let get = http
        .get(format!("{}/fastck", served.base))
        .header("user-agent", "Mozilla/5.0 Fast/1.0")
        .header("referer", "https://ref.example.org/x")
        .header("x-forwarded-for", "10.1.1.1, 203.0.113.99")
        .send()
        .await
        .expect("get");
    assert_eq!(get.headers()["x-cache"], "HIT");

    clicks(&shared_nats(), &subjects, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let got = clicks(&shared_nats(), &subjects, 1).await;
    assert_eq!(
        got.len(),
        1,
        "one click for the GET, none for HEAD: {got:?}"
    );
    let click = &got[0];
    assert_eq!(
        (click.url_id, click.user_id, click.short_code.as_str()),
        (id, 7, "fastck")
    );
    assert_eq!(click.ip.as_deref(), Some("203.0.113.0"));
    assert_eq!(click.user_agent.as_deref(), Some("Mozilla/5.0 Fast/1.0"));
    assert_eq!(click.referrer.as_deref(), Some("https://ref.example.org/x"));
    assert_eq!(click.event_id.to_string().len(), 26);
    served.stop().await;
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_change_event_drops_the_entry_the_fast_path_serves(db: PgPool) {
    let id = insert_link(&db, "fastiv", "https://example.com/old", true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    let location = |base: String| {
        let http = http.clone();
        async move {
            let res = http
                .get(format!("{base}/fastiv"))
                .send()
                .await
                .expect("get");
            (
                res.status().as_u16(),
                res.headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned(),
                res.headers()
                    .get("x-cache")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned(),
            )
        }
    };
    location(served.base.clone()).await;
    assert_eq!(
        location(served.base.clone()).await,
        (302, "https://example.com/old".into(), "HIT".into())
    );

    retarget(&db, &subjects, id, "fastiv", "https://example.com/new").await;
    eventually("the change reaches the fast path", || async {
        location(served.base.clone()).await.1 == "https://example.com/new"
    })
    .await;
    // And deactivation: a 404 from the router, never the stale entry.
    deactivate(&db, &subjects, id, "fastiv", "https://example.com/new").await;
    eventually("the deactivation reaches the fast path", || async {
        location(served.base.clone()).await.0 == 404
    })
    .await;
    served.stop().await;
    service.shutdown().await;
}

/// The service binary, started with `env`; its stdout lines arrive on the
/// channel. Killed when dropped (if still running).
struct Binary {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    base: String,
}

impl Binary {
    fn start(db: &PgPool, env: &[(&str, &str)]) -> Self {
        let o = db.connect_options();
        let database_url = format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("postgres")
        );
        let listen = format!("127.0.0.1:{}", testing::free_port());
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_shortline-redirect"))
            .env("DATABASE_URL", database_url)
            .env("VALKEY_URL", shared_valkey())
            .env("NATS_URL", shared_nats())
            .env("NATS_PREFIX", unique_prefix())
            .env("REDIRECT_LISTEN", &listen)
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("shortline-redirect starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            base: format!("http://{listen}"),
        }
    }

    /// Waits until the server answers `/health`.
    async fn wait_ready(&self, http: &reqwest::Client) {
        eventually("the binary answers /health", || async {
            http.get(format!("{}/health", self.base))
                .send()
                .await
                .is_ok()
        })
        .await;
    }

    /// SIGTERM (by pid), then every line it wrote until it exited.
    fn terminate(mut self) -> Vec<String> {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("exits");
        assert!(exit.success(), "{exit}");
        // Until the reader thread has seen end of file (the last lines may
        // still be on their way when the process is gone).
        self.lines.iter().collect()
    }

    /// Lines written so far (without waiting).
    fn lines_so_far(&self) -> Vec<String> {
        self.lines.try_iter().collect()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn served_line(lines: &[String], request_id: &str) -> Option<serde_json::Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["span"]["request_id"] == request_id && v["message"] == "request served")
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn buffered_log_lines_are_written_at_shutdown(db: PgPool) {
    // A flush interval no test outlasts: only the shutdown writes them.
    let binary = Binary::start(&db, &[("LOG_FLUSH_MS", "3600000")]);
    let http = no_redirects();
    binary.wait_ready(&http).await;
    let res = http
        .get(format!("{}/health", binary.base))
        .header("x-request-id", "buffered-at-exit")
        .send()
        .await
        .expect("health");
    assert_eq!(res.status(), reqwest::StatusCode::OK);
    let lines = binary.terminate();
    let line = served_line(&lines, "buffered-at-exit")
        .unwrap_or_else(|| panic!("no request line in {lines:#?}"));
    assert_eq!(
        (line["span"]["route"].as_str(), line["status"].as_u64()),
        (Some("/health"), Some(200))
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn buffered_log_lines_are_written_every_interval(db: PgPool) {
    let binary = Binary::start(&db, &[("LOG_FLUSH_MS", "20")]);
    let http = no_redirects();
    binary.wait_ready(&http).await;
    http.get(format!("{}/health", binary.base))
        .header("x-request-id", "buffered-on-tick")
        .send()
        .await
        .expect("health");
    let mut seen = Vec::new();
    eventually("the line is written while the server runs", || {
        seen.extend(binary.lines_so_far());
        let found = served_line(&seen, "buffered-on-tick").is_some();
        async move { found }
    })
    .await;
    binary.terminate();
}

/// What Valkey holds is checked like what Postgres holds: a target written
/// into a link's Valkey key that fails the target rule (a `javascript:`
/// URL, a control character, userinfo) is never a redirect. It is the JSON
/// 502, it is not cached in L1, and no click is recorded.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_bad_target_in_valkey_is_a_502_and_is_not_cached(db: PgPool) {
    let mut c = config(&shared_valkey(), &shared_nats());
    // A slow machine must not turn the Valkey read into a Postgres answer.
    c.valkey_timeout_ms = 10_000;
    let subjects = Subjects::new(&c.common.nats_prefix);
    let service = start(&c, &db).await;
    let l2 = shortline_shared::cache::Valkey::connect(&shared_valkey(), &Default::default())
        .expect("valkey client");
    eventually("valkey connected", || async {
        l2.is_connected()
            && service
                .state
                .valkey
                .as_ref()
                .is_some_and(|v| v.is_connected())
    })
    .await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    for (code, poison) in [
        ("pois01", "javascript:alert(1)"),
        ("pois02", "https://example.com/\u{1b}[2J"),
        ("pois03", "https://trusted.com@evil.com/"),
        ("pois04", "data:text/html,<script>alert(1)</script>"),
    ] {
        let id = insert_link(&db, code, "https://example.com/real", true).await;
        let key = format!("{}:link:{code}", c.common.nats_prefix);
        l2.set(
            &key,
            &format!("{id}\t7\t{poison}"),
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .await
        .expect("poison the key");
        for _ in 0..2 {
            let reply = http
                .get(format!("{}/{code}", served.base))
                .send()
                .await
                .expect("reply");
            assert_eq!(reply.status().as_u16(), 502, "{code}");
            assert!(reply.headers().get("location").is_none(), "{code}");
            let body: serde_json::Value = reply.json().await.expect("json");
            assert_eq!(body["error"], "Link target is unusable");
        }
        assert!(
            service.state.links.cached(code).await.is_none(),
            "{code} must not be cached"
        );
        // The key is left as it was (the service never rewrites it as good).
        assert_eq!(
            l2.get(&key).await.expect("get"),
            Some(format!("{id}\t7\t{poison}"))
        );
    }
    served.stop().await;
    service.shutdown().await;
    assert_eq!(clicks(&shared_nats(), &subjects, 0).await.len(), 0);
}

/// A stored target that fails the rule (written around the API) is the 502
/// from Postgres too, is not cached in L1 and is not written to Valkey.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_bad_target_in_postgres_is_a_502_and_is_cached_nowhere(db: PgPool) {
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    let l2 = shortline_shared::cache::Valkey::connect(&shared_valkey(), &Default::default())
        .expect("valkey client");
    eventually("valkey connected", || async { l2.is_connected() }).await;
    for (code, stored) in [
        ("badpg1", "javascript:alert(1)"),
        ("badpg2", "https://example.com/\u{7}"),
        ("badpg3", "https://example.com/\u{7f}"),
        ("badpg4", "https://trusted.com@evil.com/"),
    ] {
        insert_link(&db, code, stored, true).await;
        for _ in 0..2 {
            let reply = get(&service, &format!("/{code}")).await;
            assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{code}");
            assert_eq!(reply.header("location"), "");
            assert_eq!(reply.json()["error"], "Link target is unusable");
        }
        assert!(service.state.links.cached(code).await.is_none(), "{code}");
        // A good link's load writes Valkey off the request path; give a bad
        // one the same chance before checking it was not written.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let key = format!("{}:link:{code}", c.common.nats_prefix);
        assert_eq!(l2.get(&key).await.expect("get"), None, "{code}");
    }
    service.shutdown().await;
}

/// A header cannot carry raw non-ASCII: the `Location` of such a target is
/// its RFC 3986 form (punycode host, percent-encoded UTF-8), from every
/// layer and on both paths; ASCII targets stay exactly as stored.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn non_ascii_targets_redirect_to_their_rfc_3986_form(db: PgPool) {
    let stored = "https://bücher.example/straße?q=ü#é";
    let encoded = "https://xn--bcher-kva.example/stra%C3%9Fe?q=%C3%BC#%C3%A9";
    insert_link(&db, "idn001", stored, true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    let first = get(&service, "/idn001").await;
    assert_eq!(
        (
            first.status,
            first.header("location"),
            first.header("x-cache")
        ),
        (StatusCode::FOUND, encoded, "MISS")
    );
    let served = Served::start(&service).await;
    let fast = no_redirects()
        .get(format!("{}/idn001", served.base))
        .send()
        .await
        .expect("fast");
    assert_eq!(fast.status().as_u16(), 302);
    assert_eq!(fast.headers()["location"].as_bytes(), encoded.as_bytes());
    assert_eq!(fast.headers()["x-cache"], "HIT");
    served.stop().await;

    // A second replica reads it from Valkey.
    let replica = start(&c, &db).await;
    let mut from_l2 = get(&replica, "/idn001").await;
    for _ in 0..50 {
        if from_l2.header("x-cache") == "HIT" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        replica.state.links.invalidate_all_local();
        from_l2 = get(&replica, "/idn001").await;
    }
    assert_eq!(
        (from_l2.header("location"), from_l2.header("x-cache")),
        (encoded, "HIT")
    );
    service.shutdown().await;
    replica.shutdown().await;
}

/// A client's `X-Request-ID` is echoed only when short and plain, on the
/// fast path and through the router alike; otherwise it is replaced.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn client_request_ids_are_capped_on_both_paths(db: PgPool) {
    insert_link(&db, "rqid01", "https://example.com/r", true).await;
    let c = config(&shared_valkey(), &shared_nats());
    let service = start(&c, &db).await;
    let served = Served::start(&service).await;
    let http = no_redirects();
    // Loads it into L1: the next GET is the fast path's.
    let miss = http
        .get(format!("{}/rqid01", served.base))
        .send()
        .await
        .expect("miss");
    assert_eq!(miss.headers()["x-cache"], "MISS");
    let long = "r".repeat(8000);
    for path in ["/rqid01", "/absent", "/health"] {
        for (sent, echoed) in [("ok-1.2_3:4", true), (long.as_str(), false), ("a b", false)] {
            let reply = http
                .get(format!("{}{path}", served.base))
                .header("x-request-id", sent)
                .send()
                .await
                .expect("reply");
            if path == "/rqid01" {
                assert_eq!(reply.headers()["x-cache"], "HIT");
            }
            let got = reply.headers()["x-request-id"].to_str().expect("ascii");
            if echoed {
                assert_eq!(got, sent, "{path}");
            } else {
                assert_eq!(got.len(), 26, "{path}");
                assert!(got.parse::<ulid::Ulid>().is_ok(), "{path}: {got}");
            }
        }
    }
    served.stop().await;
    service.shutdown().await;
}
