//! SQLite is one node: a second daemon on the same database file would run every send twice.
//! The daemon holds an exclusive `flock` on the database file for its whole life (SQLite's own
//! locks are POSIX record locks, which `flock` does not touch on Linux); a second `serve` on
//! the same file finds it taken and refuses to start. The kernel drops the lock with the
//! process, however it ends. CLI commands do not take it: they may run beside the daemon.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;

use super::DatabaseUrl;

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct NodeLock {
    _file: File,
}

impl NodeLock {
    /// Takes the lock of the database at `url`: `Ok(None)` on PostgreSQL (several daemons are
    /// welcome there), an error naming the file when another daemon holds it.
    pub fn acquire(url: &str) -> anyhow::Result<Option<NodeLock>> {
        let DatabaseUrl::Sqlite(path) = DatabaseUrl::parse(url).map_err(anyhow::Error::msg)? else {
            return Ok(None);
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("cannot open the database {}: {e}", path.display()))?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked == 0 {
            return Ok(Some(NodeLock { _file: file }));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() == std::io::ErrorKind::WouldBlock {
            Err(anyhow::anyhow!(
                "another mindo-bulk daemon is already serving the SQLite database {}; SQLite is \
                 one node (stop the other daemon, or use PostgreSQL to run several)",
                path.display()
            ))
        } else {
            Err(anyhow::anyhow!(
                "cannot lock the database {}: {err}",
                path.display()
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_on_one_sqlite_file_is_refused_until_the_first_is_gone() {
        let dir = std::env::temp_dir().join(format!("mindo-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("one.db").display());
        let first = NodeLock::acquire(&url).unwrap();
        assert!(first.is_some());
        let second = NodeLock::acquire(&url).unwrap_err().to_string();
        assert!(second.contains("another mindo-bulk daemon"), "{second}");
        drop(first);
        assert!(NodeLock::acquire(&url).unwrap().is_some());
        assert!(NodeLock::acquire("postgres://localhost/x")
            .unwrap()
            .is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
