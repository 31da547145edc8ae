//! Redirect service configuration, from the environment (or flags).

use std::net::SocketAddr;

use shortline_shared::telemetry::LogFormat;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "shortline-redirect",
    version,
    about = "Shortline redirect service"
)]
pub struct RedirectConfig {
    /// PostgreSQL connection string (source of truth for links).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://shortline@127.0.0.1:55432/shortline"
    )]
    pub database_url: String,

    /// Address the HTTP server listens on.
    #[arg(long, env = "REDIRECT_LISTEN", default_value = "127.0.0.1:18081")]
    pub listen: SocketAddr,

    /// Largest connection pool to Postgres.
    #[arg(long, env = "REDIRECT_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Log line format: json or pretty.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}
