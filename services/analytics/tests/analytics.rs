//! The click consumer against real NATS JetStream and a real per-test
//! Postgres database: exactly-once counting under duplicates, redelivery and
//! a consumer killed mid-stream, dead-lettering of poison messages, and the
//! rollup job folding the backlog into the breakdowns exactly once (run
//! twice, two at once, deferred while the consumer is behind, on shutdown).

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use shortline_analytics::Service;
use shortline_analytics::backlog::{RollupJob, RollupMetrics, RollupSettings, Tick};
use shortline_analytics::config::AnalyticsConfig;
use shortline_analytics::consumer::{ClickConsumer, ConsumerMetrics, ConsumerSettings};
use shortline_shared::events::{Click, ClickBatch, Subjects};
use shortline_shared::nats::{clicks_stream_config, ensure_stream};
use shortline_shared::testing::{self, unique_prefix};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use ulid::Ulid;

fn nats_url() -> String {
    std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:54222".into())
}

fn config(prefix: &str) -> AnalyticsConfig {
    let mut c = AnalyticsConfig::for_urls(&nats_url(), prefix);
    c.max_deliver = 3;
    c.ack_wait_secs = 1;
    c.rollup_interval_ms = 50;
    c
}

/// A rollup job that never defers (no consumer to ask).
fn rollup_job(db: &PgPool, max_events: i64) -> RollupJob {
    RollupJob::new(
        db.clone(),
        None,
        RollupSettings {
            interval: Duration::from_millis(50),
            max_events,
            max_defer: Duration::from_secs(30),
        },
        RollupMetrics::new(),
    )
}

/// Totals of the hourly rollup (written with the event rows) and of the two
/// breakdowns (folded by the rollup job), and the backlog's row count.
async fn breakdown_totals(db: &PgPool) -> [i64; 4] {
    [
        count(
            db,
            "SELECT coalesce(sum(redirect_count), 0)::bigint FROM link_stats_hourly",
        )
        .await,
        count(
            db,
            "SELECT coalesce(sum(redirect_count), 0)::bigint FROM link_stats_referrers",
        )
        .await,
        count(
            db,
            "SELECT coalesce(sum(redirect_count), 0)::bigint FROM link_stats_agents",
        )
        .await,
        count(db, "SELECT count(*) FROM rollup_backlog").await,
    ]
}

fn click(url_id: i64, ua: &str, referrer: Option<&str>) -> Click {
    Click {
        event_id: Ulid::generate(),
        url_id,
        user_id: 9,
        short_code: format!("code{url_id}"),
        occurred_at: chrono::Utc::now(),
        user_agent: Some(ua.into()),
        referrer: referrer.map(str::to_owned),
        ip: Some("198.51.100.0".into()),
        outcome: None,
    }
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0";
const BOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

struct Stream {
    js: jetstream::Context,
    subjects: Subjects,
}

impl Stream {
    async fn new(prefix: &str) -> Self {
        let client = shortline_shared::nats::connect(&nats_url(), "analytics-test")
            .await
            .expect("nats");
        let js = jetstream::new(client);
        let subjects = Subjects::new(prefix);
        ensure_stream(&js, clicks_stream_config(&subjects))
            .await
            .expect("click stream");
        Self { js, subjects }
    }

    /// Publishes a batch (a fresh batch id, so never deduplicated by the
    /// stream: only the consumer can keep it from counting twice).
    async fn publish(&self, clicks: Vec<Click>) {
        let batch = ClickBatch::new(clicks);
        self.publish_raw(serde_json::to_vec(&batch).expect("json"))
            .await;
    }

    async fn publish_raw(&self, payload: Vec<u8>) {
        self.js
            .publish(self.subjects.clicks(), payload.into())
            .await
            .expect("publish")
            .await
            .expect("ack");
    }
}

async fn count(db: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect("count")
}

/// Waits until `sql` returns `want` (and stays there for a moment).
async fn settle(db: &PgPool, sql: &'static str, want: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = count(db, sql).await;
        if got == want {
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(count(db, sql).await, want, "{sql} moved past {want}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn every_click_becomes_one_row_and_counts_once(db: PgPool) {
    let prefix = unique_prefix();
    let stream = Stream::new(&prefix).await;
    let service = Service::start_with_pool(&config(&prefix), db.clone())
        .await
        .expect("starts");

    // 300 clicks on two links in 30 batches; then the same 300 again, in
    // other batches (a publisher retry after a lost ack looks like this).
    let mut all = Vec::new();
    for i in 0..300 {
        let url_id = if i % 3 == 0 { 2 } else { 1 };
        let ua = if i % 10 == 0 { BOT } else { FIREFOX };
        let referrer = (i % 2 == 0).then_some("https://news.example.org/item?id=1");
        all.push(click(url_id, ua, referrer));
    }
    for chunk in all.chunks(10) {
        stream.publish(chunk.to_vec()).await;
    }
    for chunk in all.chunks(7) {
        stream.publish(chunk.to_vec()).await;
    }

    settle(
        &db,
        "SELECT count(*) FROM events WHERE event_type = 'redirect'",
        300,
    )
    .await;
    assert_eq!(
        count(
            &db,
            "SELECT redirect_count FROM link_stats WHERE url_id = 1"
        )
        .await,
        200
    );
    assert_eq!(
        count(
            &db,
            "SELECT redirect_count FROM link_stats WHERE url_id = 2"
        )
        .await,
        100
    );
    // The breakdowns follow within the rollup interval.
    settle(&db, "SELECT count(*) FROM rollup_backlog", 0).await;
    assert_eq!(breakdown_totals(&db).await, [300, 300, 300, 0]);
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats_referrers WHERE referrer = 'news.example.org'").await,
        150
    );
    assert_eq!(
        count(
            &db,
            "SELECT sum(redirect_count)::bigint FROM link_stats_agents WHERE is_bot"
        )
        .await,
        30
    );
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats_agents WHERE browser = 'Firefox' AND os = 'Linux' AND device = 'desktop'").await,
        270
    );
    let details: serde_json::Value = sqlx::query_scalar(
        "SELECT details FROM events WHERE event_type = 'redirect' ORDER BY id LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .expect("details");
    assert_eq!(details["ip"], "198.51.100.0");
    assert!(details["user_agent"].is_string());
    assert!(details.get("referrer").is_some());

    let ready = testing::call(
        shortline_analytics::router(service.state.clone()),
        Request::get("/ready").body(Body::empty()).expect("request"),
    )
    .await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.json());
    service.shutdown().await;
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_consumer_killed_mid_stream_loses_nothing_and_counts_nothing_twice(db: PgPool) {
    let prefix = unique_prefix();
    let stream = Stream::new(&prefix).await;
    let c = config(&prefix);
    let settings = ConsumerSettings {
        durable: c.consumer.clone(),
        batch_messages: 4,
        batch_clicks: 10_000,
        batch_wait: Duration::from_millis(1),
        max_deliver: c.max_deliver,
        ack_wait: Duration::from_secs(1),
        writers: 2,
    };
    let client = shortline_shared::nats::connect(&nats_url(), "analytics-test")
        .await
        .expect("nats");
    let start = || {
        let consumer = ClickConsumer::new(
            db.clone(),
            client.clone(),
            Subjects::new(&prefix),
            settings.clone(),
            ConsumerMetrics::new(),
        );
        tokio::spawn(consumer.run(CancellationToken::new()))
    };

    // A previous incarnation committed some clicks and died before acking.
    let clicks: Vec<Click> = (0..2000).map(|i| click(1 + i % 5, FIREFOX, None)).collect();
    shortline_analytics::repo::store_clicks(&db, &clicks[..150])
        .await
        .expect("pre-stored");

    for chunk in clicks.chunks(20) {
        stream.publish(chunk.to_vec()).await;
    }
    // Kill consumers abruptly, mid-stream, several times.
    for wait_ms in [20, 35, 50] {
        let task = start();
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        task.abort();
        let _ = task.await;
    }
    let last = start();
    settle(
        &db,
        "SELECT count(*) FROM events WHERE event_type = 'redirect'",
        2000,
    )
    .await;
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats").await,
        2000
    );
    assert_eq!(
        count(&db, "SELECT count(DISTINCT event_id) FROM events").await,
        2000
    );
    last.abort();
    let _ = last.await;
    assert_eq!(
        rollup_job(&db, 500).fold().await.expect("fold"),
        Tick::Folded(2000)
    );
    assert_eq!(breakdown_totals(&db).await, [2000, 2000, 2000, 0]);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn a_poison_message_is_dead_lettered_and_the_stream_keeps_flowing(db: PgPool) {
    let prefix = unique_prefix();
    let stream = Stream::new(&prefix).await;
    let service = Service::start_with_pool(&config(&prefix), db.clone())
        .await
        .expect("starts");
    stream.publish(vec![click(1, FIREFOX, None)]).await;
    stream
        .publish_raw(b"{\"this is\": \"not a click batch\"}".to_vec())
        .await;
    let mut future_version =
        serde_json::to_value(ClickBatch::new(vec![click(1, FIREFOX, None)])).expect("json");
    future_version["version"] = 2.into();
    stream
        .publish_raw(future_version.to_string().into_bytes())
        .await;
    stream
        .publish(vec![click(1, FIREFOX, None), click(1, FIREFOX, None)])
        .await;

    settle(&db, "SELECT count(*) FROM events", 3).await;

    // Both bad messages end in the dead-letter stream, with the reason.
    let dead = stream
        .js
        .get_stream(stream.subjects.dead_letter_stream())
        .await
        .expect("dead-letter stream");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut letters = Vec::new();
    while letters.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dead letters: {}",
            letters.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        letters.clear();
        let reader = dead
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .expect("reader");
        let mut batch = reader
            .fetch()
            .max_messages(10)
            .messages()
            .await
            .expect("fetch");
        while let Some(Ok(m)) = batch.next().await {
            letters.push(m);
        }
    }
    assert_eq!(letters.len(), 2);
    for letter in &letters {
        let headers = letter.headers.as_ref().expect("headers");
        assert!(headers.get("Shortline-Dead-Letter-Reason").is_some());
        assert_eq!(
            headers
                .get("Shortline-Original-Subject")
                .map(|v| v.as_str().to_owned()),
            Some(stream.subjects.clicks())
        );
    }
    // After the poison, the consumer is still consuming.
    stream.publish(vec![click(1, FIREFOX, None)]).await;
    settle(&db, "SELECT count(*) FROM events", 4).await;
    service.shutdown().await;
}

/// `n` clicks over five links, a mix of agents and referrers.
fn clicks(n: i64) -> Vec<Click> {
    (0..n)
        .map(|i| {
            let ua = if i % 4 == 0 { BOT } else { FIREFOX };
            let referrer = (i % 2 == 0).then_some("https://news.example.org/a");
            click(1 + i % 5, ua, referrer)
        })
        .collect()
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_rollup_job_folds_each_backlog_row_exactly_once(db: PgPool) {
    let all = clicks(1000);
    for chunk in all.chunks(250) {
        shortline_analytics::repo::store_clicks(&db, chunk)
            .await
            .expect("stored");
    }
    // Totals are immediate; the breakdowns wait for the job.
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats").await,
        1000
    );
    assert_eq!(breakdown_totals(&db).await, [1000, 0, 0, 1000]);

    // 300 rows per transaction: four of them.
    let job = rollup_job(&db, 300);
    assert_eq!(job.fold().await.expect("fold"), Tick::Folded(1000));
    assert_eq!(breakdown_totals(&db).await, [1000, 1000, 1000, 0]);
    // Again: nothing left to add.
    assert_eq!(job.fold().await.expect("fold"), Tick::Empty);
    assert_eq!(job.tick().await.expect("tick"), Tick::Empty);
    // The same clicks redelivered: no event rows, no backlog rows.
    let stored = shortline_analytics::repo::store_clicks(&db, &all[..500])
        .await
        .expect("stored");
    assert_eq!(stored.inserted, 0);
    assert_eq!(job.fold().await.expect("fold"), Tick::Empty);
    assert_eq!(breakdown_totals(&db).await, [1000, 1000, 1000, 0]);
    assert_eq!(
        count(
            &db,
            "SELECT sum(redirect_count)::bigint FROM link_stats_agents WHERE is_bot"
        )
        .await,
        250
    );
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats_referrers WHERE referrer = 'news.example.org'").await,
        500
    );
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn two_rollup_jobs_at_once_count_each_row_once(db: PgPool) {
    let all = clicks(20_000);
    for chunk in all.chunks(2_000) {
        shortline_analytics::repo::store_clicks(&db, chunk)
            .await
            .expect("stored");
    }
    // Two replicas' jobs, small transactions, racing until the backlog is empty.
    let race = |job: RollupJob| async move {
        let mut folded = 0;
        let mut empty = 0;
        while empty < 3 {
            match job.fold().await.expect("fold") {
                Tick::Folded(n) => folded += n,
                Tick::Empty => empty += 1,
                Tick::Locked | Tick::Deferred => tokio::task::yield_now().await,
            }
        }
        folded
    };
    let (a, b) = tokio::join!(
        tokio::spawn(race(rollup_job(&db, 500))),
        tokio::spawn(race(rollup_job(&db, 500)))
    );
    let (a, b) = (a.expect("job a"), b.expect("job b"));
    assert_eq!(a + b, 20_000, "job a folded {a}, job b {b}");
    assert_eq!(breakdown_totals(&db).await, [20_000, 20_000, 20_000, 0]);
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_rollup_defers_while_the_consumer_is_behind_then_catches_up(db: PgPool) {
    let prefix = unique_prefix();
    let stream = Stream::new(&prefix).await;
    let c = config(&prefix);
    let settings = ConsumerSettings {
        durable: c.consumer.clone(),
        batch_messages: 2,
        batch_clicks: 10_000,
        batch_wait: Duration::from_millis(1),
        max_deliver: c.max_deliver,
        ack_wait: Duration::from_secs(5),
        writers: 1,
    };
    let client = shortline_shared::nats::connect(&nats_url(), "analytics-test")
        .await
        .expect("nats");
    let consumer = ClickConsumer::new(
        db.clone(),
        client,
        Subjects::new(&prefix),
        settings,
        ConsumerMetrics::new(),
    );
    let job = RollupJob::new(
        db.clone(),
        Some(consumer.clone()),
        RollupSettings {
            interval: Duration::from_millis(50),
            max_events: 500_000,
            max_defer: Duration::from_secs(30),
        },
        RollupMetrics::new(),
    );

    // 100 clicks already written; 20 messages of 10 more wait in the stream
    // for a consumer that is not running yet.
    shortline_analytics::repo::store_clicks(&db, &clicks(100))
        .await
        .expect("stored");
    for _ in 0..20 {
        stream.publish(clicks(10)).await;
    }
    stream
        .js
        .get_stream(stream.subjects.clicks_stream())
        .await
        .expect("stream")
        .create_consumer(consumer::pull::Config {
            durable_name: Some(c.consumer.clone()),
            ack_policy: consumer::AckPolicy::Explicit,
            filter_subject: stream.subjects.clicks(),
            ..Default::default()
        })
        .await
        .expect("durable consumer");
    assert!(consumer.is_behind().await.expect("lag"));

    // Behind, and the oldest backlog row is fresh: deferred.
    assert_eq!(job.tick().await.expect("tick"), Tick::Deferred);
    assert_eq!(breakdown_totals(&db).await, [100, 0, 0, 100]);
    // Behind for longer than the limit allows: folded anyway.
    sqlx::query("UPDATE rollup_backlog SET created_at = created_at - interval '31 seconds'")
        .execute(&db)
        .await
        .expect("age the backlog");
    assert_eq!(job.tick().await.expect("tick"), Tick::Folded(100));
    assert_eq!(breakdown_totals(&db).await, [100, 100, 100, 0]);

    // The consumer drains the stream; once caught up, the job folds the rest.
    let stop = CancellationToken::new();
    let running = tokio::spawn(consumer.clone().run(stop.clone()));
    settle(
        &db,
        "SELECT count(*) FROM events WHERE event_type = 'redirect'",
        300,
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        match job.tick().await.expect("tick") {
            Tick::Folded(200) => break,
            Tick::Deferred => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(breakdown_totals(&db).await, [300, 300, 300, 0]);
    stop.cancel();
    running.await.expect("consumer stopped");
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn shutdown_folds_what_the_consumer_wrote(db: PgPool) {
    let prefix = unique_prefix();
    let stream = Stream::new(&prefix).await;
    let mut c = config(&prefix);
    // Never on schedule during this test: only the run at shutdown.
    c.rollup_interval_ms = 3_600_000;
    let service = Service::start_with_pool(&c, db.clone())
        .await
        .expect("starts");
    for _ in 0..5 {
        stream.publish(clicks(20)).await;
    }
    settle(
        &db,
        "SELECT count(*) FROM events WHERE event_type = 'redirect'",
        100,
    )
    .await;
    assert_eq!(breakdown_totals(&db).await, [100, 0, 0, 100]);
    service.shutdown().await;
    assert_eq!(breakdown_totals(&db).await, [100, 100, 100, 0]);
}

/// A client's `X-Request-ID` is echoed only when short and plain; an
/// 8,000-character one is replaced with a fresh ULID.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn client_request_ids_are_capped(db: PgPool) {
    let prefix = unique_prefix();
    let service = Service::start_with_pool(&config(&prefix), db.clone())
        .await
        .expect("starts");
    let long = "a".repeat(8000);
    for (sent, echoed) in [("req-7", true), (long.as_str(), false)] {
        let reply = testing::call(
            shortline_analytics::router(service.state.clone()),
            Request::get("/health")
                .header("x-request-id", sent)
                .body(Body::empty())
                .expect("request"),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let got = reply.header("x-request-id");
        if echoed {
            assert_eq!(got, sent);
        } else {
            assert_eq!(got.len(), 26);
            assert!(got.parse::<Ulid>().is_ok(), "{got}");
        }
    }
    service.shutdown().await;
}

/// Every rollup table as text, ordered, to compare two states.
async fn rollup_tables(db: &PgPool) -> [String; 4] {
    let text = |sql: &'static str| async move {
        sqlx::query_scalar::<_, String>(sql)
            .fetch_one(db)
            .await
            .expect("rollup rows")
    };
    [
        text("SELECT coalesce(string_agg(format('%s|%s|%s', url_id, redirect_count, last_redirect_at), ',' ORDER BY url_id), '') FROM link_stats").await,
        text("SELECT coalesce(string_agg(format('%s|%s|%s', url_id, hour, redirect_count), ',' ORDER BY url_id, hour), '') FROM link_stats_hourly").await,
        text("SELECT coalesce(string_agg(format('%s|%s|%s|%s', url_id, day, referrer, redirect_count), ',' ORDER BY url_id, day, referrer), '') FROM link_stats_referrers").await,
        text("SELECT coalesce(string_agg(format('%s|%s|%s|%s|%s|%s|%s', url_id, day, browser, os, device, is_bot, redirect_count), ',' ORDER BY url_id, day, browser, os, device, is_bot), '') FROM link_stats_agents").await,
    ]
}

/// A `redirect` event row the write API recorded through `POST /events`
/// (with its `rollup_pending` mark, in one transaction as the API does), and
/// the click the API puts in its outbox for it.
async fn recorded_event(db: &PgPool, url_id: i64, details: serde_json::Value) -> Click {
    let id = Ulid::generate();
    let at = chrono::Utc::now();
    let mut tx = db.begin().await.expect("tx");
    sqlx::query(
        "INSERT INTO events (event_id, url_id, user_id, event_type, occurred_at, details)
         VALUES ($1, $2, 9, 'redirect', $3, $4)",
    )
    .bind(id.to_string())
    .bind(url_id)
    .bind(at)
    .bind(&details)
    .execute(&mut *tx)
    .await
    .expect("event row");
    sqlx::query("INSERT INTO rollup_pending (event_id) VALUES ($1)")
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .expect("pending mark");
    tx.commit().await.expect("commit");
    let text = |key: &str| details.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    Click {
        event_id: id,
        url_id,
        user_id: 9,
        short_code: format!("code{url_id}"),
        occurred_at: at,
        user_agent: text("user_agent"),
        referrer: text("referrer"),
        ip: None,
        outcome: None,
    }
}

/// `redirect` events recorded by the API arrive as `recorded` batches: the
/// consumer adds them to the rollups without a second event row, and a
/// redelivered batch (here: re-published under another id, past the
/// stream's duplicate window) adds nothing.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn recorded_redirects_count_once_and_add_no_row(db: PgPool) {
    let prefix = unique_prefix();
    let stream = Stream::new(&prefix).await;
    let service = Service::start_with_pool(&config(&prefix), db.clone())
        .await
        .expect("starts");
    let first = recorded_event(
        &db,
        1,
        serde_json::json!({"user_agent": BOT, "referrer": "https://news.example.org/a"}),
    )
    .await;
    let second = recorded_event(&db, 1, serde_json::json!({"user_agent": FIREFOX})).await;
    let publish_recorded = |click: Click| {
        let mut batch = ClickBatch::recorded(click);
        batch.batch_id = Ulid::generate();
        serde_json::to_vec(&batch).expect("json")
    };
    for click in [&first, &second] {
        stream.publish_raw(publish_recorded(click.clone())).await;
    }
    settle(
        &db,
        "SELECT coalesce(sum(redirect_count), 0)::bigint FROM link_stats",
        2,
    )
    .await;
    settle(&db, "SELECT count(*) FROM rollup_pending", 0).await;
    // Redelivered: nothing more, and never a second event row.
    stream.publish_raw(publish_recorded(first.clone())).await;
    stream.publish(vec![click(2, FIREFOX, None)]).await;
    settle(&db, "SELECT count(*) FROM events", 3).await;
    assert_eq!(
        count(
            &db,
            "SELECT sum(redirect_count)::bigint FROM link_stats WHERE url_id = 1"
        )
        .await,
        2
    );
    settle(&db, "SELECT count(*) FROM rollup_backlog", 0).await;
    assert_eq!(
        count(
            &db,
            "SELECT sum(redirect_count)::bigint FROM link_stats_agents WHERE url_id = 1 AND is_bot"
        )
        .await,
        1
    );
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats_referrers WHERE url_id = 1 AND referrer = 'news.example.org'").await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT sum(redirect_count)::bigint FROM link_stats_hourly WHERE url_id = 1"
        )
        .await,
        2
    );
    service.shutdown().await;
}

/// `rebuild-rollups` recomputes from the event rows exactly what the
/// consumer and the rollup job wrote (clicks and recorded events over two
/// links, several hours and days), repairs rollups that were lost or wrong,
/// empties the backlog and the pending marks (so a recorded event it
/// counted is not counted again when its message arrives), and writes the
/// same rows when run again.
#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn rebuild_recomputes_what_the_pipeline_wrote(db: PgPool) {
    let mut clicks = Vec::new();
    for (i, (ua, referrer)) in [
        (FIREFOX, Some("https://news.example.org/a")),
        (BOT, None),
        ("", Some("not a url")),
        ("curl/8.5.0", Some("https://T.co/x")),
    ]
    .into_iter()
    .enumerate()
    {
        for hours_ago in [0, 1, 30] {
            let mut c = click(1 + (i as i64 % 2), ua, referrer);
            c.occurred_at -= chrono::TimeDelta::hours(hours_ago);
            clicks.push(c);
        }
    }
    let mut no_agent = click(2, FIREFOX, None);
    no_agent.user_agent = None;
    clicks.push(no_agent);
    shortline_analytics::repo::store_clicks(&db, &clicks)
        .await
        .expect("stored");
    let recorded = recorded_event(
        &db,
        2,
        serde_json::json!({"user_agent": FIREFOX, "referrer": "https://news.example.org/b"}),
    )
    .await;
    shortline_analytics::repo::fold_recorded(&db, std::slice::from_ref(&recorded))
        .await
        .expect("folded");
    // An event row whose details hold no strings: an unknown agent, direct.
    let odd = click(1, FIREFOX, None);
    let mut stand_in = odd.clone();
    stand_in.user_agent = None;
    shortline_analytics::repo::store_clicks(&db, &[stand_in])
        .await
        .expect("stored");
    sqlx::query(
        "UPDATE events SET details = '{\"user_agent\": 7, \"referrer\": [1]}' WHERE event_id = $1",
    )
    .bind(odd.event_id.to_string())
    .execute(&db)
    .await
    .expect("odd details");
    rollup_job(&db, 500_000).fold().await.expect("folded");
    let written = rollup_tables(&db).await;
    assert!(written.iter().all(|t| !t.is_empty()), "{written:?}");

    // Lost and wrong rollups, a backlog row and a pending mark left over.
    sqlx::query("DELETE FROM link_stats WHERE url_id = 1")
        .execute(&db)
        .await
        .expect("lose");
    sqlx::query("UPDATE link_stats_agents SET redirect_count = redirect_count + 5")
        .execute(&db)
        .await
        .expect("skew");
    let pending = recorded_event(&db, 2, serde_json::json!({})).await;
    let rebuilt = shortline_analytics::repo::rebuild_rollups(&db)
        .await
        .expect("rebuilt");
    assert_eq!((rebuilt.events, rebuilt.links), (16, 2));
    assert_eq!(count(&db, "SELECT count(*) FROM rollup_backlog").await, 0);
    assert_eq!(count(&db, "SELECT count(*) FROM rollup_pending").await, 0);
    // The pending event is counted now, and its message adds nothing later.
    let stored = shortline_analytics::repo::fold_recorded(&db, &[pending])
        .await
        .expect("redelivered");
    assert_eq!(stored.inserted, 0);
    assert_eq!(
        count(&db, "SELECT sum(redirect_count)::bigint FROM link_stats").await,
        16
    );
    // Without that event, exactly what the pipeline wrote.
    sqlx::query("DELETE FROM events WHERE details = '{}'::jsonb")
        .execute(&db)
        .await
        .expect("drop it");
    shortline_analytics::repo::rebuild_rollups(&db)
        .await
        .expect("rebuilt");
    assert_eq!(rollup_tables(&db).await, written);
    shortline_analytics::repo::rebuild_rollups(&db)
        .await
        .expect("rebuilt again");
    assert_eq!(rollup_tables(&db).await, written);
}
