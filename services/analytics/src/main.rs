//! `shortline-analytics`: load config, start logging (and tracing), then
//! serve (the consumer and the rollup job) or rebuild the rollups.

use clap::{Parser, Subcommand};
use shortline_analytics::config::AnalyticsConfig;

#[derive(Parser)]
#[command(
    name = "shortline-analytics",
    version,
    about = "Shortline analytics consumer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: AnalyticsConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Consume clicks and fold the breakdowns (the default).
    Serve,
    /// Recompute link_stats, link_stats_hourly and the referrer and
    /// user-agent breakdowns from the event rows, then exit (after a seed
    /// load or a restore; safe to re-run, and while the service runs).
    RebuildRollups,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = cli.config.common.init_telemetry("shortline-analytics")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => shortline_analytics::run(cli.config).await,
        Command::RebuildRollups => shortline_analytics::rebuild_rollups(&cli.config).await,
    }
}
