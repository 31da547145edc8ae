//! `shortline-redirect`: load config, start logging (and tracing), serve.

use clap::Parser;
use shortline_redirect::config::RedirectConfig;
use shortline_shared::telemetry::TelemetrySettings;

/// mimalloc, not glibc's malloc: an earlier run with 100k links cached held
/// 193 MiB, put down to glibc's per-thread arenas fragmenting. Later runs did
/// not reproduce that (77-90 MiB with either allocator; docs/benchmarks.md,
/// "Redirect"), so this is a choice to re-measure, not a proven saving.
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
