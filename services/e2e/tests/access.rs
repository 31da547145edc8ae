//! Internal traffic is closed: NATS runs with `config/nats/auth.conf` (one
//! user per service, least-privilege subject permissions) and Valkey with
//! `config/valkey/acl.conf` (default user off; the services' user limited to
//! `shortline:*` keys and safe commands), both real servers of this test's
//! own with fresh passwords.
//!
//! The whole pipeline runs with each service logged in as its own user
//! (nothing it does is refused), and each user is refused what is not its
//! business (the server says so, and nothing of it lands).

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::json;
use shortline_e2e::send;
use shortline_redirect::config::RedirectConfig;
use shortline_shared::events::Subjects;
use shortline_shared::nats::{
    changes_stream_config, clicks_stream_config, dead_letter_stream_config, ensure_stream,
};
use shortline_shared::testing::{OwnServer, ServerKind};
use sqlx::PgPool;
use tokio::sync::mpsc;

/// The only prefix `config/nats/auth.conf` knows (these servers are this
/// test's own, so no other test shares its subjects).
const PREFIX: &str = "shortline";

/// Messages a stream holds, asked as the admin user.
async fn stream_messages(admin: &async_nats::Client, stream: &str) -> u64 {
    let js = async_nats::jetstream::new(admin.clone());
    let mut stream = js.get_stream(stream).await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn the_pipeline_runs_with_one_user_per_service(db: PgPool) {
    let nats = OwnServer::start_secured(ServerKind::Nats).await;
    let valkey = OwnServer::start_secured(ServerKind::Valkey).await;
    let subjects = Subjects::new(PREFIX);
    let admin = async_nats::ConnectOptions::with_user_and_password(
        "admin".into(),
        nats.password("admin").into(),
    )
    .connect(nats.url())
    .await
    .expect("admin connects");

    // Redirect first (its consumer must exist before the first change),
    // as the redirect user, with the services' Valkey user.
    let mut redirect_config = RedirectConfig::for_urls(
        "postgres://unused",
        &valkey.url_as("shortline"),
        &nats.url_as("redirect"),
        PREFIX,
    );
    redirect_config.change_stream_wait_ms = 30_000;
    let redirect = shortline_redirect::Service::start_with_pool(&redirect_config, db.clone())
        .await
        .expect("redirect starts");
    let redirect_router = shortline_redirect::router(redirect.state.clone());

    // The API as the api user (its relay, and the propagator that waits
    // for the redirect replica's ack); its rate limiter and link tombstones
    // use the services' Valkey user.
    let api_service = shortline_e2e::api_with_valkey(
        db.clone(),
        PREFIX,
        Some(&nats.url_as("api")),
        Duration::from_secs(30),
        &valkey.url_as("shortline"),
    )
    .await;
    let api = api_service.router();

    // Analytics as the analytics user.
    let analytics = shortline_analytics::Service::start_with_pool(
        &shortline_analytics::config::AnalyticsConfig::for_urls(&nats.url_as("analytics"), PREFIX),
        db.clone(),
    )
    .await
    .expect("analytics starts");

    // The redirect replica reads the change stream.
    shortline_e2e::wait_for_change_readers(
        &admin,
        &subjects,
        1,
        Duration::from_secs(30),
        &format!("; nats log:\n{}", nats.log()),
    )
    .await;

    let (status, user, _) = send(
        &api,
        Method::POST,
        "/users",
        Some(json!({"username": "closed", "email": "closed@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{user}");
    let (status, link, _) = send(
        &api,
        Method::POST,
        "/urls",
        Some(json!({"user_id": user["id"], "original_url": "https://example.com/closed"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    let code = link["short_code"].as_str().expect("code").to_owned();
    let id = link["id"].as_i64().expect("id");

    // Redirects (cached in Valkey as the shortline user), each a click.
    const CLICKS: usize = 5;
    for _ in 0..CLICKS {
        let (status, _, _) = send(&redirect_router, Method::GET, &format!("/{code}"), None).await;
        assert_eq!(status, StatusCode::FOUND);
    }
    let cached = valkey
        .valkey_session(
            Some("admin"),
            &[&["EXISTS", &format!("shortline:link:{code}")]],
        )
        .await;
    assert_eq!(cached, [":1"], "the redirect cached the link in Valkey");

    // A redirect recorded through the API travels to analytics too (the api
    // user relays it to the click stream).
    let (status, event, _) = send(
        &api,
        Method::POST,
        "/events",
        Some(json!({"url_id": id, "user_id": user["id"], "event_type": "redirect", "details": {}})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{event}");

    // Clicks reach analytics.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats, _) = send(&api, Method::GET, &format!("/urls/{id}/stats"), None).await;
        if stats["redirect_count"] == json!(CLICKS + 1) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats: {stats}; nats log:\n{}",
            nats.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A deactivation reaches the redirect before the API answers (the api
    // user lists the redirect's consumer, the redirect user acks the change
    // after tombstoning the Valkey entry).
    let (status, body, _) = send(
        &api,
        Method::PUT,
        &format!("/urls/{id}"),
        Some(json!({"is_active": false})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = send(&redirect_router, Method::GET, &format!("/{code}"), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the change reached the redirect"
    );

    // The relay drained the outbox into the change stream.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while stream_messages(&admin, &subjects.changes_stream()).await < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats log:\n{}",
            nats.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    api_service.shutdown().await;
    redirect.shutdown().await;
    analytics.shutdown().await;

    // Nothing any service did was refused.
    let log = nats.log();
    assert!(
        !log.contains("Violation"),
        "the NATS server refused something:\n{log}"
    );
    let refused = valkey
        .valkey_session(Some("admin"), &[&["ACL", "LOG"]])
        .await;
    assert_eq!(refused, ["[]"], "Valkey refused something");
}

/// A client of `user` that reports every error the server sends it.
async fn client_as(
    nats: &OwnServer,
    user: &str,
) -> (async_nats::Client, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let client =
        async_nats::ConnectOptions::with_user_and_password(user.into(), nats.password(user).into())
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        let _ = tx.send(e.to_string());
                    }
                }
            })
            .connect(nats.url())
            .await
            .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    (client, rx)
}

/// Waits for the server to report a permissions violation for `subject`.
async fn refused(errors: &mut mpsc::UnboundedReceiver<String>, what: &str, subject: &str) {
    let want = format!("{what} to \"{subject}\"").to_lowercase();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let error = tokio::time::timeout_at(deadline, errors.recv())
            .await
            .unwrap_or_else(|_| panic!("no permissions violation for {what} to {subject}"))
            .expect("the client is alive");
        let error = error.to_lowercase();
        if error.contains("permissions violation") && error.contains(&want) {
            return;
        }
    }
}

/// Publishes (core NATS, so nothing waits for an answer) and flushes.
async fn publish(client: &async_nats::Client, subject: &str) {
    client
        .publish(subject.to_owned(), "{}".into())
        .await
        .expect("publish is sent");
    client.flush().await.expect("flush");
}

#[tokio::test]
async fn nats_users_are_refused_what_is_not_theirs() {
    let nats = OwnServer::start_secured(ServerKind::Nats).await;
    let subjects = Subjects::new(PREFIX);

    // No user, a wrong password, a user that does not exist: refused.
    for options in [
        async_nats::ConnectOptions::new(),
        async_nats::ConnectOptions::with_user_and_password("api".into(), "wrong".into()),
        async_nats::ConnectOptions::with_user_and_password(
            "nobody".into(),
            nats.password("api").into(),
        ),
    ] {
        let err = options
            .connect(nats.url())
            .await
            .expect_err("the login is refused");
        assert_eq!(
            err.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{err}"
        );
    }

    let (admin, _) = client_as(&nats, "admin").await;
    let admin_js = async_nats::jetstream::new(admin.clone());
    for config in [
        changes_stream_config(&subjects),
        clicks_stream_config(&subjects),
        dead_letter_stream_config(&subjects),
    ] {
        ensure_stream(&admin_js, config).await.expect("stream");
    }

    // Each user's own business works, through JetStream (acked by the stream).
    let (api, mut api_errors) = client_as(&nats, "api").await;
    let (redirect, mut redirect_errors) = client_as(&nats, "redirect").await;
    let (analytics, mut analytics_errors) = client_as(&nats, "analytics").await;
    for (client, subject) in [
        (&api, "shortline.changes.link.created"),
        // Redirect events recorded through POST /events, for analytics.
        (&api, subjects.clicks().as_str()),
        (&redirect, subjects.clicks().as_str()),
        (&analytics, subjects.dead_letter_clicks().as_str()),
    ] {
        async_nats::jetstream::new(client.clone())
            .publish(subject.to_owned(), "{}".into())
            .await
            .expect("publish")
            .await
            .unwrap_or_else(|e| panic!("{subject} acked: {e}"));
    }

    // What is not theirs: forged events of another service, reading or
    // removing another service's stream or consumers.
    let forbidden_publish: [(
        &async_nats::Client,
        &mut mpsc::UnboundedReceiver<String>,
        &[&str],
    ); 3] = [
        (
            &api,
            &mut api_errors,
            &[
                "shortline.deadletter.clicks",
                "$JS.API.STREAM.DELETE.SHORTLINE_CHANGES",
                "$JS.API.STREAM.PURGE.SHORTLINE_CHANGES",
                "$JS.API.STREAM.DELETE.SHORTLINE_CLICKS",
                "$JS.API.CONSUMER.CREATE.SHORTLINE_CLICKS.snoop",
                "$JS.API.CONSUMER.DELETE.SHORTLINE_CHANGES.redirect-x",
            ],
        ),
        (
            &redirect,
            &mut redirect_errors,
            &[
                "shortline.changes.link.updated",
                "shortline.deadletter.clicks",
                "$JS.API.STREAM.DELETE.SHORTLINE_CHANGES",
                "$JS.API.STREAM.PURGE.SHORTLINE_CLICKS",
                "$JS.API.CONSUMER.CREATE.SHORTLINE_CLICKS.snoop",
                "$JS.API.STREAM.MSG.DELETE.SHORTLINE_CHANGES",
            ],
        ),
        (
            &analytics,
            &mut analytics_errors,
            &[
                "shortline.clicks",
                "shortline.changes.link.deleted",
                "$JS.API.STREAM.DELETE.SHORTLINE_CLICKS",
                "$JS.API.STREAM.PURGE.SHORTLINE_CLICKS",
                "$JS.API.CONSUMER.CREATE.SHORTLINE_CHANGES.snoop",
                "$JS.API.CONSUMER.DELETE.SHORTLINE_CHANGES.redirect-x",
            ],
        ),
    ];
    for (client, errors, subjects_refused) in forbidden_publish {
        for subject in subjects_refused {
            publish(client, subject).await;
            refused(errors, "publish", subject).await;
        }
    }
    // Only redirect replicas read link changes.
    for (client, errors) in [(&api, &mut api_errors), (&analytics, &mut analytics_errors)] {
        let _subscription = client
            .subscribe("shortline.changes.>")
            .await
            .expect("subscribe is sent");
        client.flush().await.expect("flush");
        refused(errors, "subscription", "shortline.changes.>").await;
    }

    // Nothing of it landed: each stream holds exactly the legit messages
    // (the click stream one of the redirect's and one of the api's).
    for (stream, legit) in [
        (subjects.changes_stream(), 1),
        (subjects.clicks_stream(), 2),
        (subjects.dead_letter_stream(), 1),
    ] {
        assert_eq!(stream_messages(&admin, &stream).await, legit, "{stream}");
    }
}

#[tokio::test]
async fn valkey_users_are_refused_what_is_not_theirs() {
    let valkey = OwnServer::start_secured(ServerKind::Valkey).await;

    // No login: nothing at all.
    let anonymous = valkey
        .valkey_session(
            None,
            &[
                &["PING"],
                &["GET", "shortline:link:x"],
                &["AUTH", "default", ""],
            ],
        )
        .await;
    assert!(anonymous[0].starts_with("-NOAUTH"), "{anonymous:?}");
    assert!(anonymous[1].starts_with("-NOAUTH"), "{anonymous:?}");
    assert!(anonymous[2].starts_with("-WRONGPASS"), "{anonymous:?}");
    let wrong = valkey
        .valkey_session(
            None,
            &[
                &["AUTH", "shortline", "wrong"],
                &["AUTH", "admin", valkey.password("shortline")],
            ],
        )
        .await;
    assert!(
        wrong.iter().all(|r| r.starts_with("-WRONGPASS")),
        "{wrong:?}"
    );

    // The services' user, through the same client the services use.
    let cache = shortline_shared::cache::Valkey::connect(
        &valkey.url_as("shortline"),
        &shortline_shared::cache::ValkeySettings {
            command_timeout: Duration::from_secs(5),
            ..Default::default()
        },
    )
    .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cache.ping().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shortline user never got in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cache
            .set_if_absent("shortline:link:abc", "v", Duration::from_secs(60))
            .await
            .expect("SET")
    );
    assert_eq!(
        cache
            .get("shortline:link:abc")
            .await
            .expect("GET")
            .as_deref(),
        Some("v")
    );
    cache.delete("shortline:link:abc").await.expect("DEL");
    assert!(
        cache.get("other:x").await.is_err(),
        "a key outside shortline:* is refused"
    );

    // Lua on its keys, shaped like the api's GCRA limiter (the server clock,
    // GET, SET with PX); admin-only and dangerous commands and other keys are
    // refused.
    let script = "local t = redis.call('TIME') \
        local v = (tonumber(redis.call('GET', KEYS[1])) or 0) + 1 \
        redis.call('SET', KEYS[1], string.format('%d', v), 'PX', 60000 + (t[2] % 2)) \
        return v";
    let replies = valkey
        .valkey_session(
            Some("shortline"),
            &[
                &["EVAL", script, "1", "shortline:ratelimit:k"],
                &["SCRIPT", "LOAD", script],
                &["EVAL", script, "1", "other:ratelimit:k"],
                &["EVAL", "return redis.call('FLUSHALL')", "0"],
                &["SET", "other:x", "1"],
                &["FLUSHALL"],
                &["FLUSHDB"],
                &["CONFIG", "GET", "maxmemory"],
                &["CONFIG", "SET", "maxmemory", "1"],
                &["KEYS", "*"],
                &["MONITOR"],
                &["SCRIPT", "FLUSH"],
                &["CLIENT", "KILL", "TYPE", "normal"],
                &["ACL", "LIST"],
                &["SHUTDOWN"],
            ],
        )
        .await;
    assert_eq!(replies[0], ":1", "EVAL on shortline:*");
    assert_eq!(
        replies[1].len(),
        40,
        "SCRIPT LOAD gives a sha1: {:?}",
        replies[1]
    );
    for (i, reply) in replies.iter().enumerate().skip(2) {
        assert!(
            reply.starts_with("-NOPERM") || reply.starts_with("-ERR ACL failure in script"),
            "command {i}: {reply}"
        );
    }

    // Still all there; and admin may do anything.
    let admin = valkey
        .valkey_session(
            Some("admin"),
            &[
                &["GET", "shortline:ratelimit:k"],
                &["CONFIG", "GET", "protected-mode"],
            ],
        )
        .await;
    assert_eq!(admin, ["1", "[protected-mode, yes]"]);
    cache.quit().await;
}
