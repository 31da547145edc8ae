//! Analytics service configuration, from the environment (or flags).

use std::net::SocketAddr;

use shortline_shared::telemetry::LogFormat;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "shortline-analytics",
    version,
    about = "Shortline analytics consumer"
)]
pub struct AnalyticsConfig {
    /// PostgreSQL connection string (event rows and rollups are written here).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://shortline@127.0.0.1:55432/shortline"
    )]
    pub database_url: String,

    /// Address of the health/readiness/metrics endpoint.
    #[arg(long, env = "ANALYTICS_LISTEN", default_value = "127.0.0.1:18082")]
    pub listen: SocketAddr,

    /// Log line format: json or pretty.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,
}
