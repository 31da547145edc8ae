//! `shortline-redirect`: load config, start logging, serve.

use clap::Parser;
use shortline_redirect::config::RedirectConfig;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = RedirectConfig::parse();
    shortline_shared::telemetry::init_tracing(config.common.log_format);
    shortline_redirect::run(config).await
}
