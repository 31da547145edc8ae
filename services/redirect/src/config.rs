//! Redirect service configuration, from the environment (or flags).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;
use shortline_shared::config::CommonConfig;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "shortline-redirect",
    version,
    about = "Shortline redirect service"
)]
pub struct RedirectConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Valkey URL for the shared (L2) cache; empty disables it.
    #[arg(long, env = "VALKEY_URL", default_value = "redis://127.0.0.1:56379")]
    pub valkey_url: String,

    /// Address the HTTP server listens on.
    #[arg(long, env = "REDIRECT_LISTEN", default_value = "127.0.0.1:18081")]
    pub listen: SocketAddr,

    /// Largest connection pool to Postgres.
    #[arg(long, env = "REDIRECT_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// In-process (L1) cache size in links; 0 disables it.
    #[arg(long, env = "REDIRECT_L1_CAPACITY", default_value_t = 100_000)]
    pub l1_capacity: u64,

    /// How long L1 keeps a link at most (each entry between 3/4 of this and
    /// all of it, spread). A backstop: change events drop an entry within
    /// milliseconds; each expiry costs a Valkey round trip.
    #[arg(long, env = "REDIRECT_L1_TTL_SECS", default_value_t = 300)]
    pub l1_ttl_secs: u64,

    /// How long L1 remembers that a code is unknown or inactive.
    #[arg(long, env = "REDIRECT_NEGATIVE_TTL_SECS", default_value_t = 5)]
    pub negative_ttl_secs: u64,

    /// How long Valkey keeps a link (change events drop it sooner).
    #[arg(long, env = "REDIRECT_L2_TTL_SECS", default_value_t = 600)]
    pub l2_ttl_secs: u64,

    /// Connections to Valkey.
    #[arg(long, env = "VALKEY_POOL_SIZE", default_value_t = 4)]
    pub valkey_pool_size: usize,

    /// Longest wait for one Valkey reply before falling through to Postgres.
    #[arg(long, env = "VALKEY_TIMEOUT_MS", default_value_t = 50)]
    pub valkey_timeout_ms: u64,

    /// How long start-up waits for this replica to read the link-change
    /// stream before it serves anyway (NATS away; L1 is then dropped once
    /// the stream is read).
    #[arg(long, env = "REDIRECT_CHANGE_STREAM_WAIT_MS", default_value_t = 2000)]
    pub change_stream_wait_ms: u64,

    /// While this replica does not read the link-change stream (NATS away),
    /// L1 entries older than this are re-read from Valkey or Postgres, so
    /// that a takedown (which the API writes to Valkey itself) is served
    /// within this time.
    #[arg(long, env = "REDIRECT_DEGRADED_L1_TTL_MS", default_value_t = 1000)]
    pub degraded_l1_ttl_ms: u64,

    /// Clicks held in memory waiting for NATS; what overflows is dropped and
    /// counted.
    #[arg(long, env = "CLICK_BUFFER", default_value_t = 100_000)]
    pub click_buffer: usize,

    /// Most clicks per published batch.
    #[arg(long, env = "CLICK_BATCH_MAX", default_value_t = 500)]
    pub click_batch_max: usize,

    /// How long a batch waits to fill before it is sent anyway.
    #[arg(long, env = "CLICK_LINGER_MS", default_value_t = 5)]
    pub click_linger_ms: u64,

    /// How long a stopping service keeps trying to publish buffered clicks
    /// before it writes the rest to a spill file (stop grace periods must
    /// leave room for this: scripts/services.sh, compose, k8s, Helm).
    #[arg(long, env = "CLICK_FLUSH_TIMEOUT_SECS", default_value_t = 5)]
    pub click_flush_timeout_secs: u64,

    /// Where a stopping service writes the clicks it could not publish (one
    /// fsync'ed file per shutdown), and where every replica looks for such
    /// files to publish and delete. Share it between replicas (a volume) so
    /// that any of them replays; empty disables spilling (unpublished
    /// clicks are then dropped at shutdown).
    #[arg(long, env = "CLICK_SPILL_DIR", default_value = ".local/spill")]
    pub click_spill_dir: String,

    /// How often a running replica looks for spill files to replay (also
    /// once at start).
    #[arg(long, env = "CLICK_SPILL_REPLAY_SECS", default_value_t = 30)]
    pub click_spill_replay_secs: u64,

    /// Log lines (one per request) gather in memory and are written to
    /// stdout together this often, at shutdown, and whenever 64 KiB have
    /// gathered; 0 writes each line as it is logged.
    #[arg(long, env = "LOG_FLUSH_MS", default_value_t = 100)]
    pub log_flush_ms: u64,

    /// `Cache-Control: public, max-age=N` of a 301 or 308 redirect of a link
    /// without rules (302, 307 and links with rules are never cacheable).
    #[arg(long, env = "REDIRECT_PERMANENT_MAX_AGE_SECS", default_value_t = 3600)]
    pub permanent_max_age_secs: u64,

    /// Wrong passwords allowed per link and client address within
    /// `LINK_PASSWORD_WINDOW_SECS`; more answer 429 until the window ends.
    #[arg(long, env = "LINK_PASSWORD_ATTEMPTS", default_value_t = 5)]
    pub password_attempts: u32,

    /// The window of `LINK_PASSWORD_ATTEMPTS`.
    #[arg(long, env = "LINK_PASSWORD_WINDOW_SECS", default_value_t = 300)]
    pub password_window_secs: u64,

    /// Longest wait for Valkey to count a click-limited link's click or a
    /// password attempt (longer than cache reads may wait: a count has no
    /// fallback, and a reply given up on may have counted).
    #[arg(long, env = "LINK_LIMIT_TIMEOUT_MS", default_value_t = 1000)]
    pub limit_timeout_ms: u64,

    /// A directory whose `not_found.html`, `gone.html` and `password.html`
    /// replace the built-in pages for browsers (each file optional; read at
    /// start). Empty: the built-in pages.
    #[arg(long, env = "REDIRECT_TEMPLATE_DIR", default_value = "")]
    pub template_dir: String,

    /// The public address of the default domain: its host (and any of
    /// `REDIRECT_DEFAULT_HOSTS`, and requests by address) serves links
    /// without a custom domain; other hosts are custom domains.
    /// `GET /{code}/qr` encodes `<PUBLIC_BASE_URL>/<code>` on the default
    /// domain (never the request's `Host`, which the client chooses).
    #[arg(long, env = "PUBLIC_BASE_URL", default_value = "http://127.0.0.1:8000")]
    pub public_base_url: String,

    /// More hosts of the default domain (comma-separated).
    #[arg(
        long,
        env = "REDIRECT_DEFAULT_HOSTS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub default_hosts: Vec<String>,

    /// Proxies whose `X-Forwarded-For` is believed (comma-separated CIDRs).
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1/32,::1/128"
    )]
    pub trusted_proxies: Vec<IpNet>,
}

impl RedirectConfig {
    /// The defaults, pointed at the given servers (for tests and tools).
    pub fn for_urls(database_url: &str, valkey_url: &str, nats_url: &str, prefix: &str) -> Self {
        use clap::Parser;
        Self::parse_from([
            "shortline-redirect",
            "--database-url",
            database_url,
            "--valkey-url",
            valkey_url,
            "--nats-url",
            nats_url,
            "--nats-prefix",
            prefix,
        ])
    }

    pub fn l1_ttl(&self) -> Duration {
        Duration::from_secs(self.l1_ttl_secs)
    }

    pub fn negative_ttl(&self) -> Duration {
        Duration::from_secs(self.negative_ttl_secs)
    }

    pub fn l2_ttl(&self) -> Duration {
        Duration::from_secs(self.l2_ttl_secs)
    }

    pub fn valkey_timeout(&self) -> Duration {
        Duration::from_millis(self.valkey_timeout_ms)
    }

    pub fn click_linger(&self) -> Duration {
        Duration::from_millis(self.click_linger_ms)
    }

    /// `None` when log lines are written as they come.
    pub fn log_flush(&self) -> Option<Duration> {
        (self.log_flush_ms > 0).then(|| Duration::from_millis(self.log_flush_ms))
    }

    pub fn click_flush_timeout(&self) -> Duration {
        Duration::from_secs(self.click_flush_timeout_secs)
    }

    /// `None` when spilling is disabled.
    pub fn click_spill_dir(&self) -> Option<std::path::PathBuf> {
        optional_dir(&self.click_spill_dir)
    }

    pub fn password_window(&self) -> Duration {
        Duration::from_secs(self.password_window_secs.max(1))
    }

    /// `None`: the built-in pages.
    pub fn template_dir(&self) -> Option<std::path::PathBuf> {
        optional_dir(&self.template_dir)
    }

    pub fn click_spill_replay(&self) -> Duration {
        Duration::from_secs(self.click_spill_replay_secs.max(1))
    }
}

/// A directory setting: `None` when empty.
fn optional_dir(setting: &str) -> Option<std::path::PathBuf> {
    let dir = setting.trim();
    (!dir.is_empty()).then(|| std::path::PathBuf::from(dir))
}
