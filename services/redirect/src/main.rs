//! `shortline-redirect`: load config, start logging (and tracing), serve.

use clap::Parser;
use shortline_redirect::config::RedirectConfig;

/// mimalloc, not glibc's malloc: with 100k links cached and requests on
/// every worker thread, glibc's per-thread arenas fragmented and kept about
/// twice the memory mimalloc needs (docs/benchmarks.md, "Redirect").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = RedirectConfig::parse();
    let _telemetry = config.common.init_telemetry("shortline-redirect")?;
    shortline_redirect::run(config).await
}
