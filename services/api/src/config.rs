//! API configuration: one struct, read from the environment (or flags), with
//! defaults that work against the local servers `make up` starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use shortline_shared::config::CommonConfig;

/// Settings of the write API (`shortline-api serve`).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the HTTP server listens on.
    #[arg(long, env = "API_LISTEN", default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,

    /// Largest connection pool to Postgres.
    #[arg(long, env = "API_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Length of generated short codes (base62).
    #[arg(long, env = "SHORT_CODE_LENGTH", default_value_t = 6, value_parser = clap::value_parser!(u8).range(6..=32))]
    pub short_code_length: u8,

    /// Largest accepted CSV upload in bytes (`POST /users/bulk`); larger is 413.
    #[arg(long, env = "CSV_MAX_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub csv_max_bytes: usize,

    /// Largest accepted JSON body in bytes; larger is 413.
    #[arg(long, env = "JSON_MAX_BYTES", default_value_t = 64 * 1024)]
    pub json_max_bytes: usize,

    /// Requests running longer are answered 408.
    #[arg(long, env = "REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,

    /// How often the outbox relay polls when no NOTIFY woke it.
    #[arg(long, env = "OUTBOX_POLL_MS", default_value_t = 2000)]
    pub outbox_poll_ms: u64,

    /// How long a link change waits, before the API answers, for every
    /// redirect replica to drop the link from its caches; 0 leaves
    /// propagation to the outbox relay alone.
    #[arg(long, env = "INVALIDATION_WAIT_MS", default_value_t = 500)]
    pub invalidation_wait_ms: u64,

    /// The redirect status of links created without a `redirect_type`:
    /// 301, 302, 307 or 308 (anything else is refused at start).
    #[arg(long, env = "DEFAULT_REDIRECT_TYPE", default_value_t = 302, value_parser = parse_redirect_type)]
    pub default_redirect_type: i16,

    /// Hosts this service is reached at (comma-separated `host` or
    /// `host:port`): links may not point at them, as such a redirect would
    /// loop. Empty: none.
    #[arg(
        long,
        env = "PUBLIC_HOSTS",
        value_delimiter = ',',
        default_value = crate::links::targets::DEFAULT_PUBLIC_HOSTS
    )]
    pub public_hosts: Vec<String>,

    /// The public base URL short links live under (`short_url` of every
    /// link): absolute `http(s)`, a host, no path, query or fragment.
    #[arg(
        long,
        env = "PUBLIC_BASE_URL",
        default_value = crate::links::short_url::DEFAULT_PUBLIC_BASE_URL,
        value_parser = crate::links::short_url::PublicBase::parse
    )]
    pub public_base_url: crate::links::short_url::PublicBase,

    /// A file of domains links may not point at (one per line, `#`
    /// comments; a domain covers its subdomains), re-read when it changes.
    #[arg(long, env = "TARGET_BLOCKLIST_FILE")]
    pub target_blocklist_file: Option<PathBuf>,

    /// `required`: every route but /health, /ready and the docs needs an
    /// API key. `off`: no key, no rate limits (only for running the
    /// contract's test suites on a trusted network).
    #[arg(long, env = "API_AUTH", value_enum, default_value_t = AuthMode::Required)]
    pub api_auth: AuthMode,

    /// How long a replica remembers a verified key; revocation and expiry
    /// reach every replica within this time.
    #[arg(long, env = "API_KEY_CACHE_MS", default_value_t = 500)]
    pub api_key_cache_ms: u64,

    /// Requests per minute per API key, unless the key has its own limit
    /// (0: unlimited).
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value_t = 1200)]
    pub rate_limit_per_minute: u32,

    /// Requests per minute per client address for requests without a valid
    /// key (0: unlimited).
    #[arg(long, env = "RATE_LIMIT_ANONYMOUS_PER_MINUTE", default_value_t = 60)]
    pub rate_limit_anonymous_per_minute: u32,

    /// Valkey, where the rate limits of every replica are counted (empty:
    /// no rate limits).
    #[arg(long, env = "VALKEY_URL", default_value = "redis://127.0.0.1:56379")]
    pub valkey_url: String,

    /// Longest wait for the rate limiter's Valkey call before the request
    /// is let through unchecked.
    #[arg(long, env = "VALKEY_TIMEOUT_MS", default_value_t = 50)]
    pub valkey_timeout_ms: u64,

    /// Networks whose `X-Forwarded-For` is believed when limiting by client
    /// address (the edge's).
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1/32,::1/128"
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// A redirect status links may have ([`shortline_shared::link_rules::REDIRECT_TYPES`]).
fn parse_redirect_type(s: &str) -> Result<i16, String> {
    s.trim()
        .parse::<u64>()
        .ok()
        .and_then(crate::links::rules::redirect_type)
        .ok_or_else(|| {
            format!(
                "{} (got {s:?})",
                crate::links::rules::redirect_type_problem()
            )
        })
}

/// Whether the API asks for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    Required,
    Off,
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::Required => "required",
            AuthMode::Off => "off",
        }
    }
}

impl ApiConfig {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    pub fn outbox_poll(&self) -> Duration {
        Duration::from_millis(self.outbox_poll_ms)
    }

    pub fn api_key_cache(&self) -> Duration {
        Duration::from_millis(self.api_key_cache_ms)
    }

    pub fn invalidation_wait(&self) -> Duration {
        Duration::from_millis(self.invalidation_wait_ms)
    }

    /// The target policy these settings describe (reads the blocklist file).
    pub fn target_policy(&self) -> anyhow::Result<crate::links::targets::TargetPolicy> {
        crate::links::targets::TargetPolicy::new(
            &self.public_hosts,
            self.target_blocklist_file.as_deref(),
        )
    }

    /// Defaults for a given database and NATS server (used by tests and tools).
    pub fn for_urls(database_url: &str, nats_url: &str) -> Self {
        let mut config = <Self as clap::FromArgMatches>::from_arg_matches(
            &<Self as clap::Args>::augment_args(clap::Command::new("api"))
                .get_matches_from(["api"]),
        )
        .unwrap_or_else(|e| panic!("default config must parse: {e}"));
        config.common.database_url = database_url.to_owned();
        config.common.nats_url = nats_url.to_owned();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ApiConfig, clap::Error> {
        let cmd = <ApiConfig as clap::Args>::augment_args(clap::Command::new("api"));
        let matches = cmd.try_get_matches_from(args)?;
        <ApiConfig as clap::FromArgMatches>::from_arg_matches(&matches)
    }

    #[test]
    fn the_public_base_url_is_checked_at_start() {
        let config = parse(&["api"]).expect("defaults");
        assert_eq!(config.public_base_url.as_str(), "http://127.0.0.1:8000");
        let config = parse(&["api", "--public-base-url", "https://sho.rt/"]).expect("sho.rt");
        assert_eq!(config.public_base_url.as_str(), "https://sho.rt");
        for bad in ["sho.rt", "https://sho.rt/x", "ftp://sho.rt", ""] {
            assert!(parse(&["api", "--public-base-url", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_redirect_type_is_checked_at_start() {
        assert_eq!(
            parse(&["api"]).expect("defaults").default_redirect_type,
            302
        );
        let config = parse(&["api", "--default-redirect-type", "308"]).expect("308");
        assert_eq!(config.default_redirect_type, 308);
        for bad in ["303", "200", "x", ""] {
            assert!(
                parse(&["api", "--default-redirect-type", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
