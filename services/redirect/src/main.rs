//! `shortline-redirect`: load config, start logging (and tracing), serve.

use clap::Parser;
use shortline_redirect::config::RedirectConfig;
use shortline_shared::telemetry::TelemetrySettings;

/// mimalloc, not glibc's malloc: with 100k links cached and requests on
/// every worker thread, glibc's per-thread arenas fragmented and kept about
/// twice the memory mimalloc needs (docs/benchmarks.md, "Redirect").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = RedirectConfig::parse();
    // Buffered log lines: one write per many requests on the hot path.
    let _telemetry = shortline_shared::telemetry::init(&TelemetrySettings {
        log_flush: config.log_flush(),
        ..config.common.telemetry_settings("shortline-redirect")
    })?;
    shortline_redirect::run(config).await
}
