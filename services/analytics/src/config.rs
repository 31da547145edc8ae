//! Analytics service configuration, from the environment (or flags).

use std::net::SocketAddr;
use std::time::Duration;

use shortline_shared::config::CommonConfig;

/// Settings of the analytics service (`shortline-analytics serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the health/readiness/metrics endpoint.
    #[arg(long, env = "ANALYTICS_LISTEN", default_value = "127.0.0.1:18082")]
    pub listen: SocketAddr,

    /// Largest connection pool to Postgres.
    #[arg(long, env = "ANALYTICS_DB_MAX_CONNECTIONS", default_value_t = 4)]
    pub db_max_connections: u32,

    /// Durable consumer name, shared by every replica.
    #[arg(long, env = "ANALYTICS_CONSUMER", default_value = "analytics")]
    pub consumer: String,

    /// Most click batches (messages) written in one transaction.
    #[arg(long, env = "ANALYTICS_BATCH_MESSAGES", default_value_t = 64)]
    pub batch_messages: usize,

    /// Most clicks written in one transaction.
    #[arg(long, env = "ANALYTICS_BATCH_CLICKS", default_value_t = 10_000)]
    pub batch_clicks: usize,

    /// How long a batch waits for more messages once one has arrived
    /// (light traffic: a lone click is written after at most this long).
    #[arg(long, env = "ANALYTICS_BATCH_WAIT_MS", default_value_t = 5)]
    pub batch_wait_ms: u64,

    /// Batches written concurrently, each on its own Postgres connection
    /// (keep below ANALYTICS_DB_MAX_CONNECTIONS).
    #[arg(long, env = "ANALYTICS_WRITERS", default_value_t = 2)]
    pub writers: usize,

    /// Deliveries of an undecodable message before it is dead-lettered.
    #[arg(long, env = "ANALYTICS_MAX_DELIVER", default_value_t = 5)]
    pub max_deliver: i64,

    /// How long the server waits for an ack before redelivering.
    #[arg(long, env = "ANALYTICS_ACK_WAIT_SECS", default_value_t = 30)]
    pub ack_wait_secs: u64,

    /// How often the rollup job folds `rollup_backlog` into the referrer and
    /// user-agent breakdowns (they trail the event rows by about this much).
    #[arg(long, env = "ANALYTICS_ROLLUP_INTERVAL_MS", default_value_t = 1000)]
    pub rollup_interval_ms: u64,

    /// Most backlog rows folded in one rollup transaction.
    #[arg(long, env = "ANALYTICS_ROLLUP_MAX_EVENTS", default_value_t = 500_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub rollup_max_events: i64,

    /// While the consumer is behind, the rollup job waits (leaving Postgres to
    /// the event rows), but never longer than this since the oldest backlog row.
    #[arg(long, env = "ANALYTICS_ROLLUP_MAX_DEFER_SECS", default_value_t = 30)]
    pub rollup_max_defer_secs: u64,

    /// Links exported by the top-links gauge (0: off).
    #[arg(long, env = "ANALYTICS_TOP_LINKS", default_value_t = 10)]
    pub top_links: usize,

    /// How often the top-links gauge is refreshed from the rollups.
    #[arg(long, env = "ANALYTICS_TOP_LINKS_REFRESH_SECS", default_value_t = 30)]
    pub top_links_refresh_secs: u64,
}

impl AnalyticsConfig {
    /// The defaults, pointed at the given servers (for tests and tools).
    pub fn for_urls(nats_url: &str, prefix: &str) -> Self {
        #[derive(clap::Parser)]
        struct Flags {
            #[command(flatten)]
            config: AnalyticsConfig,
        }
        use clap::Parser;
        Flags::parse_from([
            "shortline-analytics",
            "--nats-url",
            nats_url,
            "--nats-prefix",
            prefix,
        ])
        .config
    }

    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }

    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.ack_wait_secs)
    }

    pub fn rollup_interval(&self) -> Duration {
        Duration::from_millis(self.rollup_interval_ms.max(1))
    }

    pub fn rollup_max_defer(&self) -> Duration {
        Duration::from_secs(self.rollup_max_defer_secs)
    }

    pub fn top_links_refresh(&self) -> Duration {
        Duration::from_secs(self.top_links_refresh_secs.max(1))
    }
}
