//! `shortline-redirect`: load config, start logging (and tracing), serve.

use clap::Parser;
use shortline_redirect::config::RedirectConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = RedirectConfig::parse();
    let _telemetry = config.common.init_telemetry("shortline-redirect")?;
    shortline_redirect::run(config).await
}
