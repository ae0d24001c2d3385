//! Settings: defaults, then a TOML file (`--config`), then `MINDO_*` environment variables
//! (the environment wins). Every key of the file is the lower-case environment name without
//! the `MINDO_` prefix (`MINDO_DATABASE_URL` ↔ `database_url`).
//!
//! Secrets (the Meta app secret, the webhook verify token) are [`SecretString`]s: their
//! `Debug` output is redacted, so printing or logging a `Config` never reveals them.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::egress::{parse_networks, CallbackPolicy, IpNetwork};
pub use crate::domain::message::ReconcilePolicy;
use crate::domain::message::UnknownReconcilePolicy;
use crate::domain::suppression::{DEFAULT_OPT_IN_KEYWORDS, DEFAULT_OPT_OUT_KEYWORDS};

/// Connections one Graph client keeps open at most.
const GRAPH_MAX_CONNECTIONS: usize = 256;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The daemon's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// `MINDO_DATABASE_URL`, default `sqlite://mindo.db`: `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// `MINDO_DB_POOL_SIZE`, default 16: connections in the pool.
    pub db_pool_size: u32,
    /// `MINDO_BIND`, default `127.0.0.1:8080`: the HTTP listen address.
    pub bind: String,
    /// `MINDO_GRAPH_URL`, default `https://graph.facebook.com`: Graph API base URL.
    pub graph_url: String,
    /// `MINDO_GRAPH_VERSION`, default `v24.0`: the pinned Graph API version.
    pub graph_version: String,
    /// `MINDO_GRAPH_TIMEOUT_SECS`, default 15: how long a Graph API call may take. A send
    /// that times out has an unknown outcome and is reconciled (see below).
    pub graph_timeout_secs: u64,
    /// `MINDO_SYNC_INTERVAL_SECS`, default 3600: how often the daemon re-reads every WABA's
    /// numbers and templates from the Graph API; 0 turns the periodic re-sync off.
    pub sync_interval_secs: u64,
    /// `MINDO_THROUGHPUT_MARGIN_MS`, default 10: the limiter grants at most a number's mps in
    /// any window of one second plus this margin, so that delays between our grant and
    /// Meta's clock (commit latency, scheduling, network) cannot put one message too many
    /// in one of Meta's seconds. Larger is safer and slower (rate ≤ 1000/(1000+margin) of
    /// the cap).
    pub throughput_margin_ms: u64,
    /// `MINDO_APP_SECRET`: Meta app secret that signs webhooks; required unless `--sandbox`.
    pub app_secret: Option<SecretString>,
    /// `MINDO_VERIFY_TOKEN`: the token Meta's webhook verification handshake must present.
    pub verify_token: Option<SecretString>,
    /// `MINDO_MAX_RECIPIENTS`, default 100 000: recipients allowed in one request.
    pub max_recipients: u32,
    /// `MINDO_BODY_LIMIT_BYTES`, default 64 MiB: the largest request body accepted.
    pub body_limit_bytes: usize,
    /// `MINDO_MAX_CONCURRENT_CREATES`, default the number of CPUs (at least 2, at most 4):
    /// send-bulk requests that read, validate and store their body at once; more wait in a
    /// short queue, then get 503 with `Retry-After` (`http::create_gate`).
    pub max_concurrent_creates: usize,
    /// `MINDO_RECONCILE_GRACE_SECS`, default 120: how long an unknown-outcome message waits
    /// for a webhook naming it before [`Config::reconcile_policy`] applies.
    pub reconcile_grace_secs: u64,
    /// `MINDO_RECONCILE_POLICY`, default `resend`.
    pub reconcile_policy: ReconcilePolicy,
    /// `MINDO_SHUTDOWN_TIMEOUT_SECS`, default 30: how long a graceful stop waits for
    /// in-flight requests.
    pub shutdown_timeout_secs: u64,
    /// `MINDO_LOG`, default `info`: a tracing filter (`info`, `mindo_bulk=debug,info`, …).
    pub log: String,
    /// `MINDO_LOG_FORMAT`, default `text`: `text` or `json`.
    pub log_format: LogFormat,
    /// `MINDO_CALLBACK_ALLOW_LOOPBACK`, default false: callbacks may go to this machine
    /// (`serve --sandbox` turns it on).
    pub callback_allow_loopback: bool,
    /// `MINDO_CALLBACK_ALLOWED_NETWORKS`, default none: CIDR ranges (comma or space
    /// separated) callbacks may reach although they are not public.
    pub callback_allowed_networks: Vec<IpNetwork>,
    /// `MINDO_TENANT_RPS`, default 50: API requests per second one tenant may make, with a
    /// burst of twice that; over it, 429. 0 turns the limit off.
    pub tenant_rps: u32,
    /// `MINDO_SECRET_KEY`: the key that encrypts secrets at rest (64 hex digits).
    pub secret_key: Option<SecretString>,
    /// `MINDO_SECRET_KEY_FILE`: a file holding that key (systemd `LoadCredential=`). With
    /// neither, `mindo-secret.key` in the working directory, created on first start.
    pub secret_key_file: Option<PathBuf>,
    /// `MINDO_NODE_NAME`, default host name + pid: this daemon's name among the daemons on
    /// one PostgreSQL (logs, metrics, `cluster status`). Must be unique among them.
    pub node_name: String,
    /// `MINDO_OPT_OUT_KEYWORDS` (comma-separated; TOML `opt_out_keywords`, a list), default
    /// STOP, BAJA, PARAR, CANCELAR, UNSUBSCRIBE, SAIR, … (`domain::suppression`): an inbound
    /// text that is exactly one of them (case, accents and surrounding punctuation ignored)
    /// suppresses its sender for marketing. Setting it replaces the defaults.
    pub opt_out_keywords: Vec<String>,
    /// `MINDO_OPT_IN_KEYWORDS` (comma-separated; TOML `opt_in_keywords`), default START,
    /// ALTA, VOLVER, VOLTAR, …: an inbound text that is one of them lifts the suppression.
    pub opt_in_keywords: Vec<String>,
}

/// The default node name: the host's name and this process's id.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{}", std::process::id())
}

impl Default for Config {
    fn default() -> Self {
        Config {
            database_url: "sqlite://mindo.db".into(),
            db_pool_size: 16,
            bind: "127.0.0.1:8080".into(),
            graph_url: "https://graph.facebook.com".into(),
            graph_version: "v24.0".into(),
            graph_timeout_secs: 15,
            sync_interval_secs: 3600,
            throughput_margin_ms: 10,
            app_secret: None,
            verify_token: None,
            max_recipients: 100_000,
            body_limit_bytes: 64 * 1024 * 1024,
            max_concurrent_creates: default_concurrent_creates(),
            reconcile_grace_secs: 120,
            reconcile_policy: ReconcilePolicy::Resend,
            shutdown_timeout_secs: 30,
            log: "info".into(),
            log_format: LogFormat::Text,
            callback_allow_loopback: false,
            callback_allowed_networks: Vec::new(),
            tenant_rps: 50,
            secret_key: None,
            secret_key_file: None,
            node_name: default_node_name(),
            opt_out_keywords: keywords(DEFAULT_OPT_OUT_KEYWORDS),
            opt_in_keywords: keywords(DEFAULT_OPT_IN_KEYWORDS),
        }
    }
}

fn keywords(list: &[&str]) -> Vec<String> {
    list.iter().map(|k| (*k).to_owned()).collect()
}

/// A comma-separated keyword list; blanks dropped.
fn keyword_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The TOML file: every key optional, unknown keys refused (a typo must not pass silently).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    db_pool_size: Option<u32>,
    bind: Option<String>,
    graph_url: Option<String>,
    graph_version: Option<String>,
    graph_timeout_secs: Option<u64>,
    sync_interval_secs: Option<u64>,
    throughput_margin_ms: Option<u64>,
    app_secret: Option<SecretString>,
    verify_token: Option<SecretString>,
    max_recipients: Option<u32>,
    body_limit_bytes: Option<usize>,
    max_concurrent_creates: Option<usize>,
    reconcile_grace_secs: Option<u64>,
    reconcile_policy: Option<ReconcilePolicy>,
    shutdown_timeout_secs: Option<u64>,
    log: Option<String>,
    log_format: Option<LogFormat>,
    callback_allow_loopback: Option<bool>,
    callback_allowed_networks: Option<String>,
    tenant_rps: Option<u32>,
    opt_out_keywords: Option<Vec<String>>,
    opt_in_keywords: Option<Vec<String>>,
    secret_key: Option<SecretString>,
    secret_key_file: Option<PathBuf>,
    node_name: Option<String>,
}

/// A setting that could not be used, with the place it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {message}")]
    File { path: String, message: String },
    #[error("{var}: {message}")]
    Env { var: &'static str, message: String },
}

impl Config {
    /// A Graph API client for this configuration (one per arbiter: it is `!Send`).
    pub fn graph_client(&self) -> crate::meta::client::GraphClient {
        crate::meta::client::GraphClient::new(
            &self.graph_url,
            &self.graph_version,
            std::time::Duration::from_secs(self.graph_timeout_secs),
            GRAPH_MAX_CONNECTIONS,
        )
    }

    /// What client callbacks may reach.
    pub fn callback_policy(&self) -> CallbackPolicy {
        CallbackPolicy {
            allow_loopback: self.callback_allow_loopback,
            allowed_networks: self.callback_allowed_networks.clone(),
        }
    }

    /// Defaults, then the file at `path` (if any), then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = match path {
            Some(path) => Some((
                path.display().to_string(),
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?,
            )),
            None => None,
        };
        Config::from_sources(
            file.as_ref().map(|(p, text)| (p.as_str(), text.as_str())),
            |name| std::env::var(name).ok(),
        )
    }

    /// Builds a config from a file's `(path, text)` and an environment lookup.
    pub fn from_sources(
        file: Option<(&str, &str)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some((path, text)) = file {
            let parsed: FileConfig = toml::from_str(text).map_err(|e| ConfigError::File {
                path: path.to_owned(),
                message: e.message().to_owned(),
            })?;
            config.apply_file(path, parsed)?;
        }
        config.apply_env(env)?;
        config.check()?;
        Ok(config)
    }

    fn apply_file(&mut self, path: &str, f: FileConfig) -> Result<(), ConfigError> {
        if let Some(list) = &f.callback_allowed_networks {
            self.callback_allowed_networks =
                parse_networks(list).map_err(|message| ConfigError::File {
                    path: path.to_owned(),
                    message: format!("callback_allowed_networks: {message}"),
                })?;
        }
        macro_rules! take {
            ($($field:ident),*) => { $( if let Some(v) = f.$field { self.$field = v; } )* };
        }
        take!(
            database_url,
            db_pool_size,
            bind,
            graph_url,
            graph_version,
            graph_timeout_secs,
            sync_interval_secs,
            throughput_margin_ms,
            max_recipients,
            body_limit_bytes,
            max_concurrent_creates,
            reconcile_grace_secs,
            reconcile_policy,
            shutdown_timeout_secs,
            log,
            log_format,
            callback_allow_loopback,
            tenant_rps,
            opt_out_keywords,
            opt_in_keywords
        );
        if f.secret_key.is_some() {
            self.secret_key = f.secret_key;
        }
        if f.secret_key_file.is_some() {
            self.secret_key_file = f.secret_key_file;
        }
        if let Some(name) = f.node_name {
            self.node_name = name;
        }
        if f.app_secret.is_some() {
            self.app_secret = f.app_secret;
        }
        if f.verify_token.is_some() {
            self.verify_token = f.verify_token;
        }
        Ok(())
    }

    fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = env("MINDO_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = env("MINDO_BIND") {
            self.bind = v;
        }
        if let Some(v) = env("MINDO_GRAPH_URL") {
            self.graph_url = v;
        }
        if let Some(v) = env("MINDO_GRAPH_VERSION") {
            self.graph_version = v;
        }
        if let Some(v) = env("MINDO_APP_SECRET") {
            self.app_secret = Some(SecretString::from(v));
        }
        if let Some(v) = env("MINDO_VERIFY_TOKEN") {
            self.verify_token = Some(SecretString::from(v));
        }
        if let Some(v) = env("MINDO_LOG") {
            self.log = v;
        }
        if let Some(v) = env("MINDO_SECRET_KEY") {
            self.secret_key = Some(SecretString::from(v));
        }
        if let Some(v) = env("MINDO_SECRET_KEY_FILE") {
            self.secret_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = env("MINDO_NODE_NAME") {
            let v = v.trim();
            if v.is_empty() {
                return Err(ConfigError::Env {
                    var: "MINDO_NODE_NAME",
                    message: "a node needs a name; leave it unset for host name + pid".into(),
                });
            }
            self.node_name = v.to_owned();
        }
        if let Some(v) = env("MINDO_CALLBACK_ALLOW_LOOPBACK") {
            self.callback_allow_loopback = match v.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => {
                    return Err(ConfigError::Env {
                        var: "MINDO_CALLBACK_ALLOW_LOOPBACK",
                        message: format!("expected `true` or `false`, got `{v}`"),
                    })
                }
            };
        }
        if let Some(v) = env("MINDO_CALLBACK_ALLOWED_NETWORKS") {
            self.callback_allowed_networks =
                parse_networks(&v).map_err(|message| ConfigError::Env {
                    var: "MINDO_CALLBACK_ALLOWED_NETWORKS",
                    message,
                })?;
        }
        if let Some(v) = env("MINDO_OPT_OUT_KEYWORDS") {
            self.opt_out_keywords = keyword_list(&v);
        }
        if let Some(v) = env("MINDO_OPT_IN_KEYWORDS") {
            self.opt_in_keywords = keyword_list(&v);
        }
        self.tenant_rps = number(&env, "MINDO_TENANT_RPS", self.tenant_rps)?;
        self.db_pool_size = number(&env, "MINDO_DB_POOL_SIZE", self.db_pool_size)?;
        self.max_recipients = number(&env, "MINDO_MAX_RECIPIENTS", self.max_recipients)?;
        self.body_limit_bytes = number(&env, "MINDO_BODY_LIMIT_BYTES", self.body_limit_bytes)?;
        self.max_concurrent_creates = number(
            &env,
            "MINDO_MAX_CONCURRENT_CREATES",
            self.max_concurrent_creates,
        )?;
        self.graph_timeout_secs =
            number(&env, "MINDO_GRAPH_TIMEOUT_SECS", self.graph_timeout_secs)?;
        self.sync_interval_secs =
            number(&env, "MINDO_SYNC_INTERVAL_SECS", self.sync_interval_secs)?;
        self.throughput_margin_ms = number(
            &env,
            "MINDO_THROUGHPUT_MARGIN_MS",
            self.throughput_margin_ms,
        )?;
        self.reconcile_grace_secs = number(
            &env,
            "MINDO_RECONCILE_GRACE_SECS",
            self.reconcile_grace_secs,
        )?;
        self.shutdown_timeout_secs = number(
            &env,
            "MINDO_SHUTDOWN_TIMEOUT_SECS",
            self.shutdown_timeout_secs,
        )?;
        if let Some(v) = env("MINDO_RECONCILE_POLICY") {
            self.reconcile_policy =
                v.parse()
                    .map_err(|e: UnknownReconcilePolicy| ConfigError::Env {
                        var: "MINDO_RECONCILE_POLICY",
                        message: e.to_string(),
                    })?;
        }
        if let Some(v) = env("MINDO_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => {
                    return Err(ConfigError::Env {
                        var: "MINDO_LOG_FORMAT",
                        message: format!("expected `text` or `json`, got `{v}`"),
                    })
                }
            };
        }
        Ok(())
    }

    /// Refuses values that cannot work, naming the setting.
    fn check(&self) -> Result<(), ConfigError> {
        let positive = [
            ("MINDO_DB_POOL_SIZE", self.db_pool_size as u64),
            ("MINDO_MAX_RECIPIENTS", self.max_recipients as u64),
            ("MINDO_BODY_LIMIT_BYTES", self.body_limit_bytes as u64),
            (
                "MINDO_MAX_CONCURRENT_CREATES",
                self.max_concurrent_creates as u64,
            ),
            ("MINDO_GRAPH_TIMEOUT_SECS", self.graph_timeout_secs),
        ];
        for (var, value) in positive {
            if value == 0 {
                return Err(ConfigError::Env {
                    var,
                    message: "must be greater than 0".into(),
                });
            }
        }
        crate::storage::DatabaseUrl::parse(&self.database_url).map_err(|message| {
            ConfigError::Env {
                var: "MINDO_DATABASE_URL",
                message,
            }
        })?;
        Ok(())
    }
}

fn number<T: std::str::FromStr + Copy>(
    env: &impl Fn(&str) -> Option<String>,
    var: &'static str,
    current: T,
) -> Result<T, ConfigError> {
    match env(var) {
        None => Ok(current),
        Some(v) => v.trim().parse().map_err(|_| ConfigError::Env {
            var,
            message: format!("expected a non-negative whole number, got `{v}`"),
        }),
    }
}

/// One create per core, at least 2 (a small send need not wait behind a large one) and at
/// most 4: validating recipients is CPU work that a create already spreads over every core
/// (phone parsing), so more at once only adds memory, about 60 MB each at 100 000 recipients
/// (bench/README.md, `burst`).
fn default_concurrent_creates() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_serve_a_first_run() {
        let c = Config::from_sources(None, env_of(&[])).unwrap();
        assert_eq!(c.database_url, "sqlite://mindo.db");
        assert_eq!(c.bind, "127.0.0.1:8080");
        assert_eq!(c.graph_url, "https://graph.facebook.com");
        assert_eq!(c.graph_version, "v24.0");
        assert_eq!(c.max_recipients, 100_000);
        assert_eq!(c.reconcile_grace_secs, 120);
        assert_eq!(c.reconcile_policy, ReconcilePolicy::Resend);
        assert_eq!(c.log, "info");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.app_secret.is_none());
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = r#"
            bind = "0.0.0.0:9000"
            max_recipients = 10
            app_secret = "from-file"
            reconcile_policy = "fail"
        "#;
        let c = Config::from_sources(
            Some(("mindo.toml", file)),
            env_of(&[
                ("MINDO_BIND", "127.0.0.1:1"),
                ("MINDO_APP_SECRET", "from-env"),
            ]),
        )
        .unwrap();
        assert_eq!(c.bind, "127.0.0.1:1");
        assert_eq!(c.max_recipients, 10);
        assert_eq!(c.reconcile_policy, ReconcilePolicy::Fail);
        assert_eq!(c.app_secret.unwrap().expose_secret(), "from-env");
    }

    #[test]
    fn security_settings_from_the_environment() {
        let c = Config::from_sources(None, env_of(&[])).unwrap();
        assert!(!c.callback_allow_loopback);
        assert!(c.callback_allowed_networks.is_empty());
        assert_eq!(c.tenant_rps, 50);
        let c = Config::from_sources(
            Some((
                "m.toml",
                "callback_allowed_networks = \"10.1.0.0/16\"\ntenant_rps = 5",
            )),
            env_of(&[
                ("MINDO_CALLBACK_ALLOW_LOOPBACK", "true"),
                ("MINDO_TENANT_RPS", "7"),
                (
                    "MINDO_SECRET_KEY_FILE",
                    "/run/credentials/mindo-bulk.service/secret-key",
                ),
            ]),
        )
        .unwrap();
        assert!(c.callback_allow_loopback);
        assert_eq!(c.callback_allowed_networks.len(), 1);
        assert_eq!(c.tenant_rps, 7);
        assert!(c
            .callback_policy()
            .check_ip("10.1.2.3".parse().unwrap())
            .is_ok());
        assert_eq!(
            c.secret_key_file.as_deref(),
            Some(Path::new("/run/credentials/mindo-bulk.service/secret-key"))
        );
    }

    #[test]
    fn opt_out_keywords_default_and_come_from_the_file_or_the_environment() {
        let c = Config::from_sources(None, env_of(&[])).unwrap();
        assert!(c.opt_out_keywords.iter().any(|k| k == "STOP"));
        assert!(c.opt_in_keywords.iter().any(|k| k == "ALTA"));
        let c = Config::from_sources(
            Some((
                "m.toml",
                "opt_out_keywords = [\"FIN\"]\nopt_in_keywords = [\"OTRA VEZ\"]",
            )),
            env_of(&[("MINDO_OPT_OUT_KEYWORDS", " basta , chau ,, ")]),
        )
        .unwrap();
        assert_eq!(c.opt_out_keywords, vec!["basta", "chau"]);
        assert_eq!(c.opt_in_keywords, vec!["OTRA VEZ"]);
    }

    #[test]
    fn secrets_are_not_printed() {
        let c = Config::from_sources(
            None,
            env_of(&[
                ("MINDO_APP_SECRET", "s3cr3t-app"),
                ("MINDO_VERIFY_TOKEN", "s3cr3t-verify"),
                ("MINDO_SECRET_KEY", "s3cr3t-key"),
            ]),
        )
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }

    #[test]
    fn concurrent_creates_default_to_the_cores_and_can_be_set() {
        let c = Config::from_sources(None, env_of(&[])).unwrap();
        assert!(
            (2..=4).contains(&c.max_concurrent_creates),
            "{}",
            c.max_concurrent_creates
        );
        let c = Config::from_sources(
            Some(("m.toml", "max_concurrent_creates = 3")),
            env_of(&[("MINDO_MAX_CONCURRENT_CREATES", "7")]),
        )
        .unwrap();
        assert_eq!(c.max_concurrent_creates, 7);
        let err = Config::from_sources(None, env_of(&[("MINDO_MAX_CONCURRENT_CREATES", "0")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MINDO_MAX_CONCURRENT_CREATES:"), "{err}");
    }

    #[test]
    fn bad_values_name_their_setting() {
        let err = Config::from_sources(None, env_of(&[("MINDO_MAX_RECIPIENTS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MINDO_MAX_RECIPIENTS:"), "{err}");
        let err = Config::from_sources(None, env_of(&[("MINDO_RECONCILE_POLICY", "maybe")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MINDO_RECONCILE_POLICY"), "{err}");
        let err = Config::from_sources(None, env_of(&[("MINDO_DATABASE_URL", "mysql://x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MINDO_DATABASE_URL"), "{err}");
        let err = Config::from_sources(
            None,
            env_of(&[("MINDO_CALLBACK_ALLOWED_NETWORKS", "10.0.0.0/99")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("MINDO_CALLBACK_ALLOWED_NETWORKS:"), "{err}");
        let err = Config::from_sources(None, env_of(&[("MINDO_CALLBACK_ALLOW_LOOPBACK", "sure")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("MINDO_CALLBACK_ALLOW_LOOPBACK:"), "{err}");
        let err = Config::from_sources(Some(("m.toml", "bnid = 1")), env_of(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("m.toml") && err.contains("bnid"), "{err}");
    }
}
