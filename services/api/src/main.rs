//! `shortline-api`: serve the write API, migrate the database, load CSV
//! seed files, import another shortener's export, or manage API keys.

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
    /// Import links exported from another shortener (safe to re-run).
    Import {
        /// The tool that wrote the export.
        #[arg(long, value_enum)]
        from: shortline_api::import::foreign::Source,
        /// The user who will own the links.
        #[arg(long)]
        user_id: i64,
        /// Print only the summary, not one JSON line per row.
        #[arg(long)]
        quiet: bool,
        /// The export file (CSV or JSON, as the tool writes it).
        file: PathBuf,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// An admin key (may do everything).
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        admin: bool,
        /// A key that acts as this user only.
        #[arg(long)]
        user: Option<i64>,
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Expiry (RFC 3339, or YYYY-MM-DDTHH:MM:SS in UTC).
        #[arg(long)]
        expires_at: Option<String>,
        /// Requests per minute for this key (default: RATE_LIMIT_PER_MINUTE).
        #[arg(long)]
        rate_limit: Option<i32>,
        /// Print only the key (for scripts), not the JSON record.
        #[arg(long)]
        key_only: bool,
    },
    /// List every key (without secrets), as JSON lines.
    List,
    /// Revoke a key by id.
    Revoke { id: i64 },
    /// Exit 0 when the key in SHORTLINE_API_KEY is valid now, 1 otherwise.
    Verify,
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
            let rules = shortline_api::import::UrlRules::from_config(&cli.config)?;
            let report = shortline_api::import::seed_dir_with(&pool, &dir, rules).await?;
            tracing::info!(?report, "seed finished");
            Ok(())
        }
        Command::Import {
            from,
            user_id,
            quiet,
            file,
        } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let db: shortline_shared::db::Db =
                shortline_shared::db::pool(&cli.config.common.database_url, &Default::default())?
                    .into();
            let report = shortline_api::import::adopt::import_links(
                &db,
                from,
                &bytes,
                shortline_api::ids::UserId::new(user_id),
                &shortline_api::import::UrlRules::from_config(&cli.config)?,
            )
            .await?;
            if !quiet {
                for outcome in &report.outcomes {
                    println!("{}", serde_json::to_string(outcome)?);
                }
            }
            println!(
                "import: {} rows, {} created, {} already there, {} conflicts, {} errors",
                report.rows, report.created, report.exists, report.conflicts, report.errors
            );
            Ok(())
        }
        Command::Keys(command) => keys(&cli.config, command).await,
    }
}

async fn keys(config: &ApiConfig, command: KeysCommand) -> anyhow::Result<()> {
    use shortline_api::keys::{self, KeyVerifier, model::NewKey};
    let pool: shortline_shared::db::Db =
        shortline_shared::db::pool(&config.common.database_url, &Default::default())?.into();
    match command {
        KeysCommand::Create {
            admin: _,
            user,
            name,
            expires_at,
            rate_limit,
            key_only,
        } => {
            let expires_at = expires_at
                .map(|s| keys::model::parse_expiry(&s, chrono::Utc::now()))
                .transpose()
                .map_err(|e| anyhow::anyhow!("--expires-at {e}"))?;
            anyhow::ensure!(
                rate_limit.is_none_or(|r| r > 0),
                "--rate-limit must be positive"
            );
            let created = keys::create(
                &pool,
                NewKey {
                    user_id: user,
                    name,
                    expires_at,
                    rate_limit_per_minute: rate_limit,
                },
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            if key_only {
                println!("{}", created.secret);
            } else {
                println!("{}", serde_json::to_string_pretty(&created)?);
            }
        }
        KeysCommand::List => {
            for key in keys::list(&pool)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
            {
                println!("{}", serde_json::to_string(&key)?);
            }
        }
        KeysCommand::Revoke { id } => {
            let key = keys::revoke(&pool, id)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string(&key)?);
        }
        KeysCommand::Verify => {
            let text = std::env::var("SHORTLINE_API_KEY").unwrap_or_default();
            let verifier = KeyVerifier::new(pool, std::time::Duration::from_millis(1));
            if let Err(e) = verifier.verify(text.trim()).await {
                eprintln!("{e}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
