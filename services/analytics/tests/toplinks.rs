//! The top-links gauge reads the hourly rollups of a real database: the
//! most redirected links of the current and previous hour, in order,
//! bounded by the configured count, and exported with their short codes.

use chrono::{Duration, Utc};
use shortline_analytics::repo;
use shortline_analytics::toplinks::TopLinks;
use shortline_shared::events::Click;
use sqlx::PgPool;
use ulid::Ulid;

fn click(url_id: i64, code: &str, hours_ago: i64) -> Click {
    Click {
        event_id: Ulid::generate(),
        url_id,
        user_id: 1,
        short_code: code.to_owned(),
        occurred_at: Utc::now() - Duration::hours(hours_ago),
        user_agent: None,
        referrer: None,
        ip: None,
        outcome: None,
    }
}

#[sqlx::test(migrator = "shortline_shared::db::MIGRATOR")]
async fn top_links_are_the_most_redirected_of_the_last_two_hours(db: PgPool) {
    sqlx::query("INSERT INTO users (id, username, email) VALUES (1, 'top', 'top@example.com')")
        .execute(&db)
        .await
        .expect("user");
    for (id, code) in [(1, "tlAAA1"), (2, "tlBBB2"), (3, "tlCCC3"), (4, "tlDDD4")] {
        sqlx::query(
            "INSERT INTO urls (id, user_id, short_code, original_url) VALUES ($1, 1, $2, 'https://example.com/')",
        )
        .bind(id)
        .bind(code)
        .execute(&db)
        .await
        .expect("url");
    }
    // The window is "this hour and the last": keep the clicks and the query
    // in the same hour.
    let left_in_hour = 3600 - Utc::now().timestamp().rem_euclid(3600);
    if left_in_hour < 30 {
        tokio::time::sleep(std::time::Duration::from_secs(
            u64::try_from(left_in_hour).unwrap_or(30) + 1,
        ))
        .await;
    }
    let mut clicks = Vec::new();
    // Link 2: 5 now. Link 1: 3 now + 1 last hour = 4. Link 3: 2 now.
    // Link 4: 9, but three hours ago: outside the window.
    clicks.extend((0..5).map(|_| click(2, "tlBBB2", 0)));
    clicks.extend((0..3).map(|_| click(1, "tlAAA1", 0)));
    clicks.push(click(1, "tlAAA1", 1));
    clicks.extend((0..2).map(|_| click(3, "tlCCC3", 0)));
    clicks.extend((0..9).map(|_| click(4, "tlDDD4", 3)));
    repo::store_clicks(&db, &clicks).await.expect("store");

    let top = TopLinks::new(db.clone(), 2);
    let links = top.refresh().await.expect("refresh");
    let got: Vec<(i64, &str, i64)> = links
        .iter()
        .map(|l| (l.url_id, l.short_code.as_str(), l.redirects))
        .collect();
    assert_eq!(got, vec![(2, "tlBBB2", 5), (1, "tlAAA1", 4)]);

    let text = shortline_shared::telemetry::render_metrics().expect("metrics");
    for line in [
        r#"shortline_top_link_redirects{short_code="tlBBB2",url_id="2"} 5"#,
        r#"shortline_top_link_redirects{short_code="tlAAA1",url_id="1"} 4"#,
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "{line} missing in:\n{text}"
        );
    }
    assert!(!text.contains("tlCCC3"), "only the top 2 are exported");
    assert!(
        !text.contains("tlDDD4"),
        "old clicks are outside the window"
    );

    // The window moves on: once link 2 is no longer among them, it is gone.
    sqlx::query("DELETE FROM link_stats_hourly WHERE url_id = 2")
        .execute(&db)
        .await
        .expect("delete");
    top.refresh().await.expect("refresh");
    let text = shortline_shared::telemetry::render_metrics().expect("metrics");
    assert!(
        !text.contains("tlBBB2"),
        "a link that left the top is not exported"
    );
    assert!(text.contains(r#"short_code="tlCCC3""#));
}
