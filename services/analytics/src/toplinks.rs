//! The business dashboard's "top links": a gauge per link among the most
//! redirected ones of the last two hourly buckets
//! (`shortline_top_link_redirects{short_code, url_id}`), refreshed from the
//! rollups on a timer. Only the current top links are exported, so the
//! label set stays bounded by the configured count.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::ObservableGauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::repo::{self, TopLink};

/// The latest top links and the gauge that exports them.
pub struct TopLinks {
    db: PgPool,
    limit: i64,
    current: Arc<RwLock<Vec<TopLink>>>,
    _gauge: ObservableGauge<u64>,
}

impl TopLinks {
    pub fn new(db: PgPool, limit: usize) -> Self {
        let current: Arc<RwLock<Vec<TopLink>>> = Arc::default();
        let seen = current.clone();
        let gauge = shortline_shared::telemetry::meter()
            .u64_observable_gauge("shortline.top_link.redirects")
            .with_description(
                "Redirects in the current and previous hour of the most redirected links",
            )
            .with_callback(move |o| {
                let Ok(links) = seen.read() else { return };
                for link in links.iter() {
                    o.observe(
                        u64::try_from(link.redirects).unwrap_or(0),
                        &[
                            KeyValue::new("short_code", link.short_code.clone()),
                            KeyValue::new("url_id", link.url_id),
                        ],
                    );
                }
            })
            .build();
        Self {
            db,
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            current,
            _gauge: gauge,
        }
    }

    /// Reads the top links once.
    pub async fn refresh(&self) -> Result<Vec<TopLink>, sqlx::Error> {
        let links = repo::top_links(&self.db, self.limit).await?;
        if let Ok(mut current) = self.current.write() {
            current.clone_from(&links);
        }
        Ok(links)
    }

    /// Refreshes every `every` until cancelled.
    pub async fn run(self, every: Duration, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.refresh().await {
                tracing::debug!(error = %e, "top links not refreshed");
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {},
            }
        }
    }
}
