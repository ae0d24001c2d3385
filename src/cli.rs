//! The command line: `mindo-bulk <command>`. Every command prints JSON on stdout with
//! `--json`, and fails with a one-line error on stderr and a non-zero exit status.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::startup::Application;
use crate::storage::{tenants, Db};

#[derive(Debug, Parser)]
#[command(
    name = "mindo-bulk",
    version,
    about = "Bulk WhatsApp template sends through Meta's Cloud API"
)]
pub struct Cli {
    /// A TOML config file; MINDO_* environment variables override it.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon.
    Serve,
    /// Apply database migrations (serve applies them too).
    Migrate,
    /// Manage tenants (companies).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant with a first API key and a webhook secret.
    Create {
        /// The company's name.
        #[arg(long)]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create another API key for a tenant.
    Create {
        /// The tenant's id.
        #[arg(long)]
        tenant: i64,
        /// A name for the key (shown as `created_by` on the sends it creates).
        #[arg(long, default_value = "API key")]
        name: String,
    },
    /// Revoke an API key by id; it stops authenticating at once.
    Revoke {
        /// The key's id.
        id: i64,
    },
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config),
        Command::Migrate => {
            init_quiet_logging(&config);
            let db = open_db(&config)?;
            let applied = db.migrate()?;
            print(
                cli.json,
                json!({"applied": applied}),
                &if applied.is_empty() {
                    "The database is up to date.".to_owned()
                } else {
                    format!("Applied migrations: {}", applied.join(", "))
                },
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { name }) => {
            init_quiet_logging(&config);
            let db = open_migrated_db(&config)?;
            let created = tenants::create_tenant(&mut *db.get()?, &name, SystemClock.now_ms())?;
            print(
                cli.json,
                json!({
                    "tenant_id": created.tenant_id,
                    "api_key": created.api_key,
                    "webhook_secret": created.webhook_secret,
                }),
                &format!(
                    "tenant_id: {}\napi_key: {}\nwebhook_secret: {}",
                    created.tenant_id, created.api_key, created.webhook_secret
                ),
            );
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Create { tenant, name }) => {
            init_quiet_logging(&config);
            let db = open_migrated_db(&config)?;
            let (id, key) =
                tenants::create_api_key(&mut *db.get()?, tenant, &name, SystemClock.now_ms())?;
            print(
                cli.json,
                json!({"api_key_id": id, "api_key": key}),
                &format!("api_key_id: {id}\napi_key: {key}"),
            );
            Ok(())
        }
        Command::ApiKey(ApiKeyCommand::Revoke { id }) => {
            init_quiet_logging(&config);
            let db = open_migrated_db(&config)?;
            tenants::revoke_api_key(&mut *db.get()?, id, SystemClock.now_ms())?;
            print(
                cli.json,
                json!({"api_key_id": id, "revoked": true}),
                &format!("API key {id} revoked."),
            );
            Ok(())
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log, config.log_format);
    actix_web::rt::System::new().block_on(async move {
        let bind = config.bind.clone();
        let app = Application::build(config).await?;
        tracing::info!(address = %bind, port = app.port(), "mindo-bulk is listening.");
        app.run_until_stopped().await?;
        tracing::info!("mindo-bulk stopped.");
        Ok(())
    })
}

/// Commands other than `serve` log only warnings, to stderr.
fn init_quiet_logging(config: &Config) {
    crate::telemetry::init("warn", config.log_format);
}

fn open_db(config: &Config) -> anyhow::Result<Db> {
    Db::connect_for_command(&config.database_url).context("cannot open the database")
}

fn open_migrated_db(config: &Config) -> anyhow::Result<Db> {
    let db = open_db(config)?;
    db.migrate()?;
    Ok(db)
}

fn print(json: bool, value: serde_json::Value, human: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

/// Whether `--json` was asked for, read before parsing fails (for the error's form).
pub fn wants_json(args: &[String]) -> bool {
    args.iter().any(|a| a == "--json")
}
