//! The key that encrypts secrets at rest: where it comes from, and what a start checks.
//!
//! - From `MINDO_SECRET_KEY` (64 hex digits) or `MINDO_SECRET_KEY_FILE` (a file holding
//!   them; systemd's `LoadCredential=` puts one at `$CREDENTIALS_DIRECTORY/…`).
//! - With neither, [`DEFAULT_KEY_FILE`] in the working directory: read if it exists, else
//!   created (mode 0600, never overwritten: two processes starting at once end up with the
//!   same key) on a database that holds no encrypted secrets yet, and its path logged. The
//!   quick start so stays free of configuration.
//! - Every node of a deployment must use the same key. A start checks the key against
//!   what is stored ([`prepare`]): a key that cannot open it stops the daemon with one line
//!   naming the key id the data needs; a missing key on a database that has encrypted
//!   secrets is refused the same way instead of creating a new one.
//! - [`prepare`] then seals any secret still stored in plain text (rows written before
//!   encryption existed).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::domain::secret_box::SecretKey;
use crate::storage::secrets::{self, SecretsError};
use crate::storage::DbConnection;

/// The key file used when no key is configured, relative to the working directory.
pub const DEFAULT_KEY_FILE: &str = "mindo-secret.key";

/// Where a key came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `MINDO_SECRET_KEY`.
    Env,
    /// `MINDO_SECRET_KEY_FILE` (or the default file).
    File(PathBuf),
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Env => f.write_str("MINDO_SECRET_KEY"),
            KeySource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Reads the configured key, or the default key file if it exists; `None` when there is
/// neither.
pub fn configured_key(config: &Config) -> anyhow::Result<Option<(SecretKey, KeySource)>> {
    if let Some(text) = &config.secret_key {
        let key = SecretKey::parse(text.expose_secret()).context("MINDO_SECRET_KEY")?;
        return Ok(Some((key, KeySource::Env)));
    }
    if let Some(path) = &config.secret_key_file {
        return read_key_file(path).map(|key| Some((key, KeySource::File(path.clone()))));
    }
    let path = Path::new(DEFAULT_KEY_FILE);
    if path.exists() {
        return read_key_file(path).map(|key| Some((key, KeySource::File(path.to_owned()))));
    }
    Ok(None)
}

/// Reads a key file.
pub fn read_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the secret key file {}", path.display()))?;
    SecretKey::parse(&text).with_context(|| format!("the secret key file {}", path.display()))
}

/// Writes a new random key to `path` (mode 0600), refusing to replace an existing file;
/// if another process created it first, that process's key is read and returned.
pub fn create_key_file(path: &Path) -> anyhow::Result<SecretKey> {
    let key = SecretKey::generate();
    // Written whole to a temporary file, then linked into place: the link fails if the
    // file exists, so nobody ever reads a half-written key or loses a race silently.
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}-{:016x}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("mindo-secret.key"),
        std::process::id(),
        rand::random::<u64>()
    ));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("cannot create the secret key file {}", path.display()))?;
        writeln!(file, "{}", key.to_hex())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => read_key_file(path),
        Err(err) => Err(err)
            .with_context(|| format!("cannot create the secret key file {}", path.display())),
    }
}

/// The key for a process that works on `conn`'s database: the configured key (or the
/// default file), checked against what is stored; on a database without encrypted secrets
/// and no key anywhere, a new default key file. Then seals the secrets still in plain text.
/// Blocking (files and database).
pub fn prepare(config: &Config, conn: &mut DbConnection) -> anyhow::Result<SecretKey> {
    let (key, source) = match configured_key(config)? {
        Some(found) => found,
        None => {
            let stored = secrets::stored_key_ids(conn)?;
            if let Some(id) = stored.first() {
                anyhow::bail!(
                    "the database's secrets are encrypted with key {id}, and no key is configured: \
                     set MINDO_SECRET_KEY_FILE to that key's file (every node needs the same key)"
                );
            }
            let path = PathBuf::from(DEFAULT_KEY_FILE);
            let key = create_key_file(&path)?;
            let shown = std::fs::canonicalize(&path).unwrap_or(path);
            tracing::warn!(
                path = %shown.display(), key_id = key.id(),
                "Created the secret key file that encrypts access tokens and webhook secrets \
                 at rest; back it up, and give every node of this deployment the same key \
                 (MINDO_SECRET_KEY_FILE)."
            );
            (key, KeySource::File(shown))
        }
    };
    match secrets::check_key(conn, &key) {
        Ok(()) => {}
        Err(SecretsError::Open(err)) => {
            anyhow::bail!("the secret key from {source} cannot decrypt the stored secrets: {err}")
        }
        Err(other) => return Err(other.into()),
    }
    let sealed = secrets::encrypt_plain_rows(conn, &key)?;
    if sealed != Default::default() {
        tracing::info!(
            access_tokens = sealed.access_tokens,
            webhook_secrets = sealed.webhook_secrets,
            key_id = key.id(),
            "Encrypted the secrets that were stored in plain text."
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let first = create_key_file(&path).unwrap();
        let second = create_key_file(&path).unwrap();
        assert_eq!(
            first.id(),
            second.id(),
            "an existing key file is never replaced"
        );
        assert_eq!(read_key_file(&path).unwrap().id(), first.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn processes_and_threads_racing_to_create_the_file_all_get_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raced.key");
        let ids: Vec<String> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| create_key_file(&path).unwrap().id().to_owned()))
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(read_key_file(&path).unwrap().id(), ids[0]);
    }

    #[test]
    fn a_bad_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        std::fs::write(&path, "not a key").unwrap();
        let err = format!("{:#}", read_key_file(&path).unwrap_err());
        assert!(
            err.contains("bad.key") && err.contains("64 hex digits"),
            "{err}"
        );
        let err = format!("{:#}", read_key_file(&dir.path().join("none")).unwrap_err());
        assert!(err.contains("cannot read the secret key file"), "{err}");
    }
}
