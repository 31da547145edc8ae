//! Settings every service reads, flattened into each service's own config
//! struct (`#[command(flatten)] pub common: CommonConfig`), so the three
//! agree on names, defaults and meaning.

use anyhow::Context;

use crate::events::Subjects;
use crate::telemetry::LogFormat;

#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// PostgreSQL connection string.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://shortline@127.0.0.1:55432/shortline"
    )]
    pub database_url: String,

    /// NATS URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:54222")]
    pub nats_url: String,

    /// Prefix of every NATS subject and stream (and of the redirect's Valkey
    /// keys).
    #[arg(long, env = "NATS_PREFIX", default_value = "shortline")]
    pub nats_prefix: String,

    /// Copies each JetStream stream keeps (1 on a single NATS server, 3 on a
    /// three-node JetStream cluster); every service applies it at start.
    #[arg(long, env = "NATS_STREAM_REPLICAS", default_value_t = 1)]
    pub nats_stream_replicas: usize,

    /// Log line format: json or pretty.
    #[arg(long, env = "LOG_FORMAT", default_value = "json")]
    pub log_format: LogFormat,

    /// Base URL of an OTLP/HTTP trace receiver (e.g. http://otel-collector:4318);
    /// spans are sent to <url>/v1/traces. Empty: tracing off.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}

impl CommonConfig {
    /// A lazy pool to `DATABASE_URL` (nothing connects until first use).
    pub fn pool(&self, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
        crate::db::pool(
            &self.database_url,
            &crate::db::PoolSettings {
                max_connections,
                ..Default::default()
            },
        )
        .context("invalid DATABASE_URL")
    }

    /// A NATS client for `NATS_URL` that connects in the background.
    pub async fn connect_nats(&self, client_name: &str) -> anyhow::Result<async_nats::Client> {
        crate::nats::connect(&self.nats_url, client_name)
            .await
            .context("invalid NATS_URL")
    }

    /// Installs logging and, when configured, trace export (keep the guard
    /// until the service has stopped).
    pub fn init_telemetry(
        &self,
        service_name: &'static str,
    ) -> anyhow::Result<crate::telemetry::TelemetryGuard> {
        crate::telemetry::init(&self.telemetry_settings(service_name))
    }

    /// What [`CommonConfig::init_telemetry`] installs (log lines written as
    /// they come), for a service that adds settings of its own.
    pub fn telemetry_settings(
        &self,
        service_name: &'static str,
    ) -> crate::telemetry::TelemetrySettings {
        crate::telemetry::TelemetrySettings {
            service_name,
            log_format: self.log_format,
            otlp_endpoint: self.otlp_endpoint.clone(),
            log_flush: None,
        }
    }

    /// The subject and stream layout these settings describe.
    pub fn subjects(&self) -> Subjects {
        Subjects::new(&self.nats_prefix).with_stream_replicas(self.nats_stream_replicas)
    }
}
