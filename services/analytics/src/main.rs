//! `shortline-analytics`: load config, start logging, serve.

use clap::Parser;
use shortline_analytics::config::AnalyticsConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = AnalyticsConfig::parse();
    shortline_shared::telemetry::init_tracing(config.common.log_format);
    shortline_analytics::run(config).await
}
