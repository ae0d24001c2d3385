//! The command line: `mindo-bulk <command>` (serve, migrate, tenant, api-key, waba, number,
//! simulator, send, status). Every command prints JSON on stdout with `--json`, and fails with a
//! one-line error on stderr and a non-zero exit status.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::json;

use crate::client::{self, SendOptions, Target};
use crate::clock::{Clock, SharedClock, SystemClock};
use crate::config::{Config, LogFormat};
use crate::domain::api_key::{self, KeyScope};
use crate::domain::secret_box::SecretKey;
use crate::simulator::{SimConfig, Simulator};
use crate::startup::Application;
use crate::storage::accounts::{self, NumberOverride};
use crate::storage::secrets as storage_secrets;
use crate::storage::{tenants, Db};
use crate::sync;

#[derive(Debug, Parser)]
#[command(
    name = "mindo-bulk",
    version,
    about = "Bulk WhatsApp template sends through Meta's Cloud API"
)]
pub struct Cli {
    /// A TOML config file; MINDO_* environment variables override it. For `simulator`, the
    /// simulator's world and behaviour instead (see `mindo_bulk::simulator::world`).
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
    Serve {
        /// Also run the Meta simulator in-process, point the daemon at it, seed a demo
        /// tenant with sandbox numbers and templates, and print its API key.
        #[arg(long)]
        sandbox: bool,
    },
    /// Apply database migrations (serve applies them too).
    Migrate,
    /// Manage tenants (companies).
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Manage API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Register WhatsApp Business Accounts and sync them from the Graph API.
    #[command(subcommand)]
    Waba(WabaCommand),
    /// Operator overrides of a sender number.
    #[command(subcommand)]
    Number(NumberCommand),
    /// The key that encrypts access tokens and webhook secrets at rest.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Several daemons on one PostgreSQL: which nodes are alive and who runs what.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// A tenant's suppression list (opt-outs).
    #[command(subcommand)]
    Suppressions(SuppressionsCommand),
    /// Run the Meta simulator on its own (the sandbox world unless --config gives one).
    Simulator(SimulatorArgs),
    /// Submit a CSV of recipients to a running daemon and follow the send with a progress bar
    /// until it finishes (exit status 0 when COMPLETED, 2 when PARTIAL, FAILED or CANCELLED).
    Send(SendArgs),
    /// Show a bulk send's status; --watch follows it to the end like `send` does.
    Status(StatusArgs),
}

/// Where the daemon is, for the client commands (`send`, `status`; they ignore --config).
#[derive(Debug, clap::Args)]
pub struct DaemonArgs {
    /// The daemon's base URL.
    #[arg(
        long,
        env = "MINDO_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    pub url: String,
    /// The tenant's API key (sent as X-API-Key).
    #[arg(
        long = "api-key",
        env = "MINDO_API_KEY",
        hide_env_values = true,
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
}

impl DaemonArgs {
    fn target(self) -> Target {
        Target {
            url: self.url,
            api_key: self.api_key,
        }
    }
}

/// `mindo-bulk send`.
#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Meta's phone-number id of the sending number.
    #[arg(long = "phone-number-id", value_name = "ID")]
    pub phone_number_id: String,
    /// The template's name.
    #[arg(long, value_name = "NAME")]
    pub template: String,
    /// The template's language (Meta's locale: es, en, pt_BR, ...).
    #[arg(long, default_value = "es")]
    pub language: String,
    /// The recipients: a header row with a `phone` column; other columns are template
    /// variables, `button_0`, `button_1`, ... button variables. An empty cell leaves that
    /// variable out (the daemon then reports it missing, with the line).
    #[arg(long, value_name = "FILE")]
    pub csv: PathBuf,
    /// Print the daemon's 202 answer and return without following the send.
    #[arg(long = "no-wait")]
    pub no_wait: bool,
    /// Idempotency-Key to submit with; by default the SHA-256 of the request, so running the
    /// same command again within 24 h follows the first send instead of sending twice.
    #[arg(long = "idempotency-key", value_name = "KEY")]
    pub idempotency_key: Option<String>,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

/// `mindo-bulk status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The bulk send's id (`bulk_send_id`).
    pub id: String,
    /// Follow the send with a progress bar until it finishes.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub daemon: DaemonArgs,
}

#[derive(Debug, Subcommand)]
pub enum WabaCommand {
    /// Register a WABA for a tenant and sync its phone numbers and templates.
    Add {
        /// The tenant's id.
        #[arg(long)]
        tenant: i64,
        /// Meta's WhatsApp Business Account id.
        #[arg(long = "waba-id")]
        waba_id: String,
        /// A system-user access token with whatsapp_business_messaging and
        /// whatsapp_business_management.
        #[arg(long = "access-token")]
        access_token: String,
        /// The business portfolio (messaging limits are shared across it); read from Meta
        /// when omitted, else the WABA is its own portfolio.
        #[arg(long = "portfolio-id")]
        portfolio_id: Option<String>,
    },
    /// Re-read every registered WABA's numbers and templates.
    Sync,
}

#[derive(Debug, Subcommand)]
pub enum NumberCommand {
    /// Cap or lift a number's pacing, or pause it; a running daemon applies it within seconds.
    Set {
        /// Meta's phone-number id.
        #[arg(long = "phone-number-id")]
        phone_number_id: String,
        /// Messages per second to grant (a cap below Meta's, or above it against the
        /// simulator), or `auto` for Meta's level.
        #[arg(long = "throughput-mps", value_parser = parse_mps)]
        throughput_mps: Option<MpsSetting>,
        /// Pause (`true`) or resume (`false`) every send on the number.
        #[arg(long, action = clap::ArgAction::Set)]
        paused: Option<bool>,
    },
}

/// `--throughput-mps N|auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpsSetting {
    Auto,
    Fixed(i32),
}

fn parse_mps(value: &str) -> Result<MpsSetting, String> {
    if value.eq_ignore_ascii_case("auto") {
        return Ok(MpsSetting::Auto);
    }
    match value.parse::<i32>() {
        Ok(n) if n > 0 => Ok(MpsSetting::Fixed(n)),
        _ => Err(format!(
            "expected a positive whole number or `auto`, got `{value}`"
        )),
    }
}

/// `mindo-bulk simulator`.
#[derive(Debug, clap::Args)]
pub struct SimulatorArgs {
    /// Listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8081", value_name = "ADDR")]
    pub bind: String,
    /// Where to POST webhooks (overrides the config file's `webhook_url`).
    #[arg(long, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// The app secret that signs webhooks (overrides the config file's `app_secret`).
    #[arg(long, value_name = "S")]
    pub app_secret: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Re-encrypt every stored secret under a new key (created in FILE if FILE does not
    /// exist). Stop the daemons first, then restart them with MINDO_SECRET_KEY_FILE=FILE.
    Rotate {
        /// The new key's file (64 hex digits); created, mode 0600, if missing.
        #[arg(long = "new-key-file", value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes (name, state, last heartbeat, version) and the portfolio leases (owner,
    /// epoch, expiry), as the database knows them.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// Suppress every phone of a CSV file for a tenant (a `phone` column, or the first column
    /// when no header names one). Any invalid phone refuses the whole file.
    Import {
        /// The tenant's id.
        #[arg(long)]
        tenant: i64,
        /// The CSV file.
        #[arg(long, value_name = "FILE")]
        csv: PathBuf,
        /// Why (shown in the list and on the messages it stops).
        #[arg(long, default_value = "imported by an operator")]
        reason: String,
        /// Suppress for every template category, not only MARKETING.
        #[arg(long = "all-categories")]
        all_categories: bool,
    },
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
        /// `send` (everything) or `read` (no send-bulk, cancel, pause or resume).
        #[arg(long, default_value = "send", value_parser = parse_scope)]
        scope: KeyScope,
        /// How long the key works, e.g. `90d`, `12h`, `30m`; by default it does not expire.
        #[arg(long = "expires-in", value_name = "DURATION", value_parser = api_key::parse_lifetime)]
        expires_in: Option<i64>,
    },
    /// Revoke an API key by id; it stops authenticating at once.
    Revoke {
        /// The key's id.
        id: i64,
    },
}

fn parse_scope(value: &str) -> Result<KeyScope, String> {
    value.parse()
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    // `--config` is the daemon's settings for every command but `simulator`, where it is the
    // simulator's world: load it only where it means the former.
    let load = || Config::load(cli.config.as_deref());
    match cli.command {
        Command::Serve { sandbox } => serve(load()?, sandbox, cli.json),
        Command::Simulator(args) => simulator(cli.config.as_deref(), cli.json, args),
        Command::Send(args) => client::send(
            cli.json,
            &args.daemon.target(),
            &SendOptions {
                phone_number_id: args.phone_number_id,
                template: args.template,
                language: args.language,
                csv: args.csv,
                no_wait: args.no_wait,
                idempotency_key: args.idempotency_key,
            },
        ),
        Command::Status(args) => {
            client::status(cli.json, &args.daemon.target(), &args.id, args.watch)
        }
        Command::Migrate => {
            let config = load()?;
            init_quiet_logging(&config);
            let db = open_db(&config)?;
            let applied = db.migrate()?;
            crate::secrets::prepare(&config, &mut *db.get()?)?;
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
            let config = load()?;
            init_quiet_logging(&config);
            let (db, key) = open_with_key(&config)?;
            let created =
                tenants::create_tenant(&mut *db.get()?, &name, &key, SystemClock.now_ms())?;
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
        Command::ApiKey(ApiKeyCommand::Create {
            tenant,
            name,
            scope,
            expires_in,
        }) => {
            let config = load()?;
            init_quiet_logging(&config);
            let db = open_migrated_db(&config)?;
            let now = SystemClock.now_ms();
            let expires_at = expires_in.map(|ms| now.saturating_add(ms));
            let new = tenants::NewKey {
                name: &name,
                scope,
                expires_at,
            };
            let (id, key) = tenants::create_api_key(&mut *db.get()?, tenant, &new, now)?;
            let expires = expires_at.map(crate::clock::format_api_time);
            print(
                cli.json,
                json!({"api_key_id": id, "api_key": key, "scope": scope.as_str(),
                       "expires_at": expires}),
                &format!(
                    "api_key_id: {id}\napi_key: {key}\nscope: {}\nexpires_at: {}",
                    scope.as_str(),
                    expires.as_deref().unwrap_or("never")
                ),
            );
            Ok(())
        }
        Command::Secrets(SecretsCommand::Rotate { new_key_file }) => {
            let config = load()?;
            init_quiet_logging(&config);
            rotate_secrets(cli.json, &config, &new_key_file)
        }
        Command::Cluster(ClusterCommand::Status) => {
            let config = load()?;
            init_quiet_logging(&config);
            let db = open_migrated_db(&config)?;
            let ttl = i64::try_from(crate::engine::leases::LEASE_TTL.as_millis()).unwrap_or(0);
            let status = crate::storage::cluster::status(&mut *db.get()?, ttl)?;
            print(
                cli.json,
                serde_json::to_value(&status)?,
                &describe_cluster(&status),
            );
            Ok(())
        }
        Command::Waba(command) => waba(cli.json, load()?, command),
        Command::Number(command) => number(cli.json, load()?, command),
        Command::Suppressions(command) => suppressions_command(cli.json, load()?, command),
        Command::ApiKey(ApiKeyCommand::Revoke { id }) => {
            let config = load()?;
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

/// `cluster status` as text: a table of nodes, then one of leases.
fn describe_cluster(status: &crate::storage::cluster::ClusterStatus) -> String {
    use std::fmt::Write as _;
    if status.backend == "sqlite" {
        return "SQLite is one node: a single daemon runs every send (PostgreSQL runs several)."
            .to_owned();
    }
    let mut out = String::new();
    let _ = writeln!(out, "nodes: {}", status.nodes.len());
    let _ = writeln!(
        out,
        "  {:<32} {:<6} {:>6} {:<26} {:>9} {:<9}",
        "NAME", "STATE", "LEASES", "LAST HEARTBEAT", "AGE (s)", "VERSION"
    );
    for n in &status.nodes {
        let _ = writeln!(
            out,
            "  {:<32} {:<6} {:>6} {:<26} {:>9.1} {:<9}",
            n.name, n.state, n.leases, n.last_heartbeat, n.heartbeat_age_secs, n.version
        );
    }
    let _ = writeln!(out, "leases: {}", status.leases.len());
    let _ = writeln!(
        out,
        "  {:<24} {:<32} {:>6} {:<26} {:>10}",
        "PORTFOLIO", "OWNER", "EPOCH", "EXPIRES AT", "IN (s)"
    );
    for l in &status.leases {
        let _ = writeln!(
            out,
            "  {:<24} {:<32} {:>6} {:<26} {:>10.1}",
            l.portfolio_id,
            l.owner.as_deref().unwrap_or("-"),
            l.epoch,
            l.expires_at,
            l.expires_in_secs
        );
    }
    out.trim_end().to_owned()
}

fn waba(json: bool, config: Config, command: WabaCommand) -> anyhow::Result<()> {
    init_quiet_logging(&config);
    let (db, key) = open_with_key(&config)?;
    let clock: SharedClock = Arc::new(SystemClock);
    actix_web::rt::System::new().block_on(async move {
        let graph = config.graph_client();
        match command {
            WabaCommand::Add {
                tenant,
                waba_id,
                access_token,
                portfolio_id,
            } => {
                let report = sync::add_waba(
                    &db,
                    &graph,
                    &clock,
                    &key,
                    tenant,
                    &waba_id,
                    &access_token,
                    portfolio_id.as_deref(),
                )
                .await?;
                print(
                    json,
                    serde_json::to_value(&report)?,
                    &format!(
                        "WABA {} registered (business account {}, portfolio {}): {} phone numbers, {} templates.",
                        report.waba_id,
                        report.business_account_id,
                        report.portfolio_id,
                        report.counts.phone_numbers,
                        report.counts.templates
                    ),
                );
                Ok(())
            }
            WabaCommand::Sync => {
                let results = sync::sync_all(&db, &graph, &clock, &key).await?;
                let mut reports = Vec::new();
                let mut failures = Vec::new();
                for result in results {
                    match result {
                        Ok(report) => reports.push(report),
                        Err(err) => failures.push(err.to_string()),
                    }
                }
                print(
                    json,
                    json!({"synced": reports, "failed": failures}),
                    &format!(
                        "Synced {} WABA(s).{}",
                        reports.len(),
                        failures
                            .iter()
                            .map(|f| format!("\nfailed: {f}"))
                            .collect::<String>()
                    ),
                );
                if failures.is_empty() {
                    Ok(())
                } else {
                    anyhow::bail!("{} WABA(s) could not be synced", failures.len())
                }
            }
        }
    })
}

fn suppressions_command(
    json: bool,
    config: Config,
    command: SuppressionsCommand,
) -> anyhow::Result<()> {
    let SuppressionsCommand::Import {
        tenant,
        csv,
        reason,
        all_categories,
    } = command;
    init_quiet_logging(&config);
    let (lines, phones): (Vec<u64>, Vec<String>) = read_phone_column(&csv)?.into_iter().unzip();
    if phones.is_empty() {
        anyhow::bail!("{} lists no phone", csv.display());
    }
    let reason = crate::http::suppressions::check_reason(Some(&reason))
        .map_err(|e| anyhow::anyhow!("--reason: {}", e.detail))?;
    let now = SystemClock.now_ms();
    let mut signals = Vec::with_capacity(phones.len());
    let mut bad = Vec::new();
    for chunk in phones.chunks(crate::http::suppressions::MAX_PHONES) {
        match crate::http::suppressions::import_signals(chunk, &reason, all_categories, now) {
            Ok(s) => signals.extend(s),
            Err(e) => bad.push(e.detail),
        }
    }
    if !bad.is_empty() {
        let invalid: Vec<String> = phones
            .iter()
            .zip(&lines)
            .filter(|(p, _)| crate::domain::phone::E164::parse(p).is_err())
            .take(5)
            .map(|(p, line)| format!("row {line} ({p:?})"))
            .collect();
        anyhow::bail!(
            "{} has invalid phones, nothing was imported: {}",
            csv.display(),
            invalid.join(", ")
        );
    }
    let db = open_migrated_db(&config)?;
    let mut conn = db.get()?;
    if !tenants::tenant_exists(&mut conn, tenant)? {
        anyhow::bail!("no tenant with id {tenant}");
    }
    let mut seen = std::collections::HashSet::new();
    signals.retain(|s| seen.insert(s.phone.clone()));
    let mut total = crate::storage::suppressions::SignalOutcome::default();
    for chunk in signals.chunks(crate::http::suppressions::MAX_PHONES) {
        let outcome = crate::storage::write_transaction(&mut conn, |c| {
            crate::storage::suppressions::apply_signals(c, tenant, chunk, now)
        })?;
        total.suppressed += outcome.suppressed;
        total.already += outcome.already;
        total.messages_suppressed += outcome.messages_suppressed;
    }
    print(
        json,
        json!({"tenant_id": tenant, "received": signals.len(), "added": total.suppressed,
               "already_suppressed": total.already,
               "messages_suppressed": total.messages_suppressed}),
        &format!(
            "Tenant {tenant}: {} phones read, {} suppressed, {} already were; {} queued messages stopped.",
            signals.len(),
            total.suppressed,
            total.already,
            total.messages_suppressed
        ),
    );
    Ok(())
}

/// The phones of a CSV file with their line numbers: its `phone` column, or its first
/// column when the first row names no `phone` column (then that row is a phone too).
fn read_phone_column(path: &Path) -> anyhow::Result<Vec<(u64, String)>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = reader.records();
    let mut phones = Vec::new();
    let Some(first) = rows.next() else {
        return Ok(phones);
    };
    let first = first.with_context(|| format!("cannot read {}", path.display()))?;
    let column = match first.iter().position(|h| h.eq_ignore_ascii_case("phone")) {
        Some(i) => i,
        None => {
            if let Some(p) = first.get(0).filter(|p| !p.is_empty()) {
                phones.push((line_of(&first), p.to_owned()));
            }
            0
        }
    };
    for row in rows {
        let row = row.with_context(|| format!("cannot read {}", path.display()))?;
        if let Some(p) = row.get(column).filter(|p| !p.is_empty()) {
            phones.push((line_of(&row), p.to_owned()));
        }
    }
    Ok(phones)
}

/// A record's line in its file (1-based).
fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

fn number(json: bool, config: Config, command: NumberCommand) -> anyhow::Result<()> {
    let NumberCommand::Set {
        phone_number_id,
        throughput_mps,
        paused,
    } = command;
    if throughput_mps.is_none() && paused.is_none() {
        anyhow::bail!("nothing to set: give --throughput-mps and/or --paused");
    }
    init_quiet_logging(&config);
    let db = open_migrated_db(&config)?;
    let change = NumberOverride {
        throughput_mps: throughput_mps.map(|m| match m {
            MpsSetting::Auto => None,
            MpsSetting::Fixed(n) => Some(n),
        }),
        paused,
    };
    let number = accounts::set_number_override(
        &mut *db.get()?,
        &phone_number_id,
        &change,
        SystemClock.now_ms(),
    )?;
    print(
        json,
        json!({
            "phone_number_id": number.phone_number_id,
            "throughput_mps": number.effective_mps(),
            "throughput_override": number.override_mps,
            "paused": number.paused,
        }),
        &format!(
            "Number {}: {} mps ({}), {}.",
            number.phone_number_id,
            number.effective_mps(),
            if number.override_mps.is_some() {
                "operator override"
            } else {
                "Meta's level"
            },
            if number.paused {
                "paused"
            } else {
                "not paused"
            }
        ),
    );
    Ok(())
}

fn serve(mut config: Config, sandbox: bool, json: bool) -> anyhow::Result<()> {
    crate::telemetry::init(&config.log, config.log_format);
    actix_web::rt::System::new().block_on(async move {
        let clock = crate::sandbox::system_clock();
        let simulator = match sandbox {
            true => Some(crate::sandbox::start_simulator(&mut config, clock.clone()).await?),
            false => None,
        };
        if config.app_secret.is_none() {
            tracing::warn!(
                "MINDO_APP_SECRET is not set: Meta's webhooks will be refused until it is."
            );
        }
        let bind = config.bind.clone();
        // Held until the daemon exits: a second daemon on the same SQLite file is refused.
        let _node_lock = crate::storage::node_lock::NodeLock::acquire(&config.database_url)?;
        let app = Application::build_with_clock(config, clock.clone()).await?;
        tracing::info!(address = %bind, port = app.port(), "mindo-bulk is listening.");
        if let Some(simulator) = &simulator {
            let info = crate::sandbox::seed(&app, simulator, &clock).await?;
            if json {
                println!("{}", serde_json::to_string(&info)?);
            } else {
                print!("{}", crate::sandbox::describe(&info));
            }
        }
        crate::startup::serve_until_signalled(app).await?;
        tracing::info!("mindo-bulk stopped.");
        Ok(())
    })
}

/// Runs the simulator until SIGINT or SIGTERM, after printing where it listens.
fn simulator(path: Option<&Path>, json: bool, args: SimulatorArgs) -> anyhow::Result<()> {
    let filter = std::env::var("MINDO_LOG").unwrap_or_else(|_| "warn".to_owned());
    crate::telemetry::init(&filter, LogFormat::Text);
    let mut config = match path {
        Some(path) => SimConfig::load(path)?,
        None => SimConfig::sandbox(),
    };
    if let Some(url) = args.webhook_url {
        config.webhook_url = Some(url);
    }
    if let Some(secret) = args.app_secret {
        config.app_secret = secret;
    }
    actix_web::rt::System::new().block_on(async move {
        let sim = Simulator::start(config.clone(), &args.bind, Arc::new(SystemClock)).await?;
        let token = config
            .wabas
            .first()
            .map(|w| w.access_token.clone())
            .unwrap_or_default();
        let wabas: Vec<serde_json::Value> = config
            .wabas
            .iter()
            .map(|w| {
                json!({
                    "id": w.id,
                    "name": w.name,
                    "access_token": w.access_token,
                    "phone_numbers": w.phone_numbers.iter().map(|n| json!({
                        "id": n.id,
                        "display_phone_number": n.display_phone_number,
                        "tier": n.tier.as_meta_str(),
                        "throughput_level": n.throughput_level.as_str(),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let mut human = format!(
            "Meta simulator listening on {}\naccess_token: {token}\napp_secret: {}\nwebhook_url: {}",
            sim.base_url(),
            config.app_secret,
            config.webhook_url.as_deref().unwrap_or("(none: webhooks are dropped)"),
        );
        for w in &config.wabas {
            for n in &w.phone_numbers {
                human.push_str(&format!(
                    "\nWABA {} ({}): phone_number_id {} {} {} {}",
                    w.id,
                    w.name,
                    n.id,
                    n.display_phone_number,
                    n.tier.as_meta_str(),
                    n.throughput_level.as_str()
                ));
            }
        }
        print(
            json,
            json!({
                "base_url": sim.base_url(),
                "access_token": token,
                "app_secret": config.app_secret,
                "webhook_url": config.webhook_url,
                "wabas": wabas,
            }),
            &human,
        );
        wait_for_stop_signal().await;
        sim.stop().await;
        Ok(())
    })
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn wait_for_stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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

/// The migrated database and the key for its secrets (`secrets::prepare`).
fn open_with_key(config: &Config) -> anyhow::Result<(Db, SecretKey)> {
    let db = open_migrated_db(config)?;
    let key = crate::secrets::prepare(config, &mut *db.get()?)?;
    Ok((db, key))
}

/// `secrets rotate`: everything re-encrypted under the key in `new_key_file`.
fn rotate_secrets(json: bool, config: &Config, new_key_file: &Path) -> anyhow::Result<()> {
    let (db, old) = open_with_key(config)?;
    let new = if new_key_file.exists() {
        crate::secrets::read_key_file(new_key_file)?
    } else {
        crate::secrets::create_key_file(new_key_file)?
    };
    if new.id() == old.id() {
        anyhow::bail!(
            "{} holds the key already in use ({}); give a new key file",
            new_key_file.display(),
            old.id()
        );
    }
    let counts = storage_secrets::rotate(&mut *db.get()?, &old, &new)?;
    print(
        json,
        json!({
            "old_key_id": old.id(),
            "new_key_id": new.id(),
            "new_key_file": new_key_file.display().to_string(),
            "access_tokens": counts.access_tokens,
            "webhook_secrets": counts.webhook_secrets,
        }),
        &format!(
            "Re-encrypted {} access token(s) and {} webhook secret(s) under key {} (was {}).\n\
             Start every node with MINDO_SECRET_KEY_FILE={}; the old key opens nothing now.",
            counts.access_tokens,
            counts.webhook_secrets,
            new.id(),
            old.id(),
            new_key_file.display()
        ),
    );
    Ok(())
}

fn print(json: bool, value: serde_json::Value, human: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

/// The error of a command whose result is printed but whose outcome is a failure; `main` exits
/// with its code.
pub use crate::client::Unsuccessful;

/// Whether `--json` was asked for, read before parsing fails (for the error's form).
pub fn wants_json(args: &[String]) -> bool {
    args.iter().any(|a| a == "--json")
}
