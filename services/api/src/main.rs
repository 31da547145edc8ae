//! `shortline-api`: serve the write API, migrate the database, or load CSV
//! seed files.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use shortline_api::config::ApiConfig;

#[derive(Parser)]
#[command(name = "shortline-api", version, about = "Shortline write API")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ApiConfig,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and the outbox relay (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Load users.csv, urls.csv and events.csv from a directory (safe to re-run).
    Seed {
        /// Directory holding the CSV files.
        dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let _telemetry = cli.config.common.init_telemetry("shortline-api")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => shortline_api::run(cli.config).await,
        Command::Migrate => shortline_api::migrate(&cli.config.common.database_url).await,
        Command::Seed { dir } => {
            let pool =
                shortline_shared::db::pool(&cli.config.common.database_url, &Default::default())?;
            let targets = std::sync::Arc::new(cli.config.target_policy()?);
            let report = shortline_api::import::seed_dir(&pool, &dir, targets).await?;
            tracing::info!(?report, "seed finished");
            Ok(())
        }
    }
}
