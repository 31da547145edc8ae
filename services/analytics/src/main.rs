//! `shortline-analytics`: load config, start logging (and tracing), serve.

use clap::Parser;
use shortline_analytics::config::AnalyticsConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = AnalyticsConfig::parse();
    let _telemetry = config.common.init_telemetry("shortline-analytics")?;
    shortline_analytics::run(config).await
}
