//! Who runs what when several daemons share one PostgreSQL (ARCHITECTURE.md, Scale-out).
//!
//! The unit of ownership is a portfolio: its numbers share the 24 h unique-recipient quota,
//! and each number's throughput and pair rate live with it. A node holds a lease row per
//! portfolio (owner, epoch, expiry by the database's clock) and runs the limiters and send
//! actors of what it holds. [`Leases`] is what the engine asks ("do I own this portfolio?",
//! "the fence for a claim on it"); the [`LeaseKeeper`] thread keeps it true: every
//! [`HEARTBEAT_EVERY`] it records the node as alive, renews its leases, takes free or expired
//! ones up to its fair share, and tells the supervisor what it gained and lost.
//!
//! Safety does not rest on the keeper being on time. A message enters `dispatching` only
//! through a claim whose transaction checks the lease and its epoch (`storage::cluster::
//! lease_is_held`, `FOR KEY SHARE`): a node whose lease was taken over claims nothing. And a node
//! stops using a lease [`FENCE_MARGIN`] before it can expire by its own monotonic clock
//! (self-fencing), which also runs while the process is stopped (SIGSTOP): a message claimed
//! before a pause is not handed to Meta after the lease's time is up.
//!
//! On SQLite there is one node ([`Leases::single`]): it owns everything and nothing is
//! checked; a second daemon on the same file is refused at start (`storage::NodeLock`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::supervisor::{JobSupervisor, LeasesChanged};
use crate::storage::{cluster, Db};
use crate::telemetry;

/// How long a lease lasts after each renewal.
pub const LEASE_TTL: Duration = Duration::from_secs(9);
/// How often the keeper renews and balances.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
/// A node stops using a lease this long before it can expire. Larger than a heartbeat's
/// round trip; the time left after it bounds the Graph timeout of a claimed message.
pub const FENCE_MARGIN: Duration = Duration::from_secs(2);
/// How long a node leaves a portfolio it handed over to the others before it may take it
/// back (a few of their heartbeats).
const COOLDOWN: Duration = Duration::from_secs(3);
/// How long a heartbeat waits for a row lock (a claim committing) before it gives up until
/// the next one: a heartbeat must never wait long.
const HEARTBEAT_LOCK_TIMEOUT_MS: u32 = 1_500;
/// Change-feed events kept for nodes that read late.
const EVENTS_KEPT: Duration = Duration::from_secs(600);

/// A lease held now: its epoch and until when it may be used (monotonic, self-fenced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    epoch: i64,
    usable_until: Instant,
}

/// What a claim is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// One node (SQLite): nothing to check.
    Single,
    /// A lease: the claim's transaction checks it is still this node's under this epoch.
    Lease {
        portfolio: String,
        node: String,
        epoch: i64,
        usable_until: Instant,
    },
}

impl Fence {
    /// How long the lease may still be used (`None`: without limit).
    pub fn time_left(&self) -> Option<Duration> {
        match self {
            Fence::Single => None,
            Fence::Lease { usable_until, .. } => {
                Some(usable_until.saturating_duration_since(Instant::now()))
            }
        }
    }

    /// Whether the lease may still be used now.
    pub fn is_usable(&self) -> bool {
        self.time_left().is_none_or(|left| !left.is_zero())
    }
}

#[derive(Debug)]
struct Inner {
    /// `None` on a single node.
    node: Option<String>,
    held: RwLock<HashMap<String, Held>>,
    joined: AtomicBool,
    /// Wakes the keeper before its next heartbeat is due.
    nudge: std::sync::Mutex<Option<mpsc::Sender<()>>>,
}

/// The leases this node holds; cheap to clone, read from any thread.
#[derive(Debug, Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

impl Leases {
    /// One node that owns everything (SQLite).
    pub fn single() -> Leases {
        Leases {
            inner: Arc::new(Inner {
                node: None,
                held: RwLock::default(),
                joined: AtomicBool::new(true),
                nudge: std::sync::Mutex::new(None),
            }),
        }
    }

    /// A node of a cluster, owning nothing until its keeper's first heartbeat.
    pub fn cluster(node: String) -> Leases {
        Leases {
            inner: Arc::new(Inner {
                node: Some(node),
                held: RwLock::default(),
                joined: AtomicBool::new(false),
                nudge: std::sync::Mutex::new(None),
            }),
        }
    }

    /// This node's name in a cluster; `None` on a single node.
    pub fn node(&self) -> Option<&str> {
        self.inner.node.as_deref()
    }

    /// Whether this node shares its database with others.
    pub fn is_cluster(&self) -> bool {
        self.inner.node.is_some()
    }

    /// Whether the node has joined (its first heartbeat went through): ready to serve.
    pub fn is_joined(&self) -> bool {
        self.inner.joined.load(Ordering::Acquire)
    }

    /// Whether this node runs the sends of `portfolio` now.
    pub fn owns(&self, portfolio: &str) -> bool {
        self.fence(portfolio).is_some()
    }

    /// The fence for a claim on `portfolio`; `None` when the node does not hold its lease or
    /// must no longer use it.
    pub fn fence(&self, portfolio: &str) -> Option<Fence> {
        let Some(node) = &self.inner.node else {
            return Some(Fence::Single);
        };
        let held = *self.read().get(portfolio)?;
        let fence = Fence::Lease {
            portfolio: portfolio.to_owned(),
            node: node.clone(),
            epoch: held.epoch,
            usable_until: held.usable_until,
        };
        fence.is_usable().then_some(fence)
    }

    /// Asks the keeper for a heartbeat now (a send was created on a portfolio no node holds
    /// yet); nothing on a single node.
    pub fn nudge(&self) {
        if let Ok(nudge) = self.inner.nudge.lock() {
            if let Some(tx) = nudge.as_ref() {
                let _ = tx.send(());
            }
        }
    }

    /// How many leases the node holds.
    pub fn held_count(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Held>> {
        self.inner
            .held
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn replace(&self, held: HashMap<String, Held>) {
        *self
            .inner
            .held
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = held;
    }
}

/// What the keeper needs.
pub struct LeaseKeeper {
    db: Db,
    leases: Leases,
    node: String,
    /// Drawn at start: the name is this process's only while the row names this instance.
    instance: String,
    /// Whether this process holds its name in `cluster_nodes` (it has joined).
    name_held: bool,
    version: String,
    bind: String,
    supervisor: Addr<JobSupervisor>,
    /// Portfolios being handed over: the supervisor is draining their sends; released in the
    /// database once it has (or after `drain_timeout`).
    handing_over: Vec<(Vec<String>, mpsc::Receiver<()>, Instant)>,
    drain_timeout: Duration,
    stop: Arc<AtomicBool>,
    halt: Arc<AtomicBool>,
    nudged: mpsc::Receiver<()>,
    /// The keeper's own connection (never waiting for the pool), opened again after an error.
    conn: Option<crate::storage::DbConnection>,
    /// Portfolios this node handed over, and when: not taken back for [`COOLDOWN`], so that
    /// another node can take them.
    handed_over: HashMap<String, Instant>,
}

/// Stops the keeper thread; on a clean stop it first hands every lease over.
#[derive(Debug, Clone)]
pub struct KeeperHandle {
    stop: Arc<AtomicBool>,
    halt: Arc<AtomicBool>,
    done: Arc<std::sync::Mutex<Option<mpsc::Receiver<()>>>>,
}

impl KeeperHandle {
    /// Stops renewing, releases every lease and marks the node as left, so that the other
    /// nodes take its portfolios at their next heartbeat instead of after expiry. Called once
    /// the engine has drained; waits at most `timeout`.
    pub fn leave(&self, timeout: Duration) {
        self.stop.store(true, Ordering::Release);
        let done = self
            .done
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(done) = done {
            let _ = done.recv_timeout(timeout);
        }
    }

    /// Stops the keeper at once without handing anything over (the engine stopping the hard
    /// way, as a crash would): the leases expire by themselves.
    pub fn halt(&self) {
        self.halt.store(true, Ordering::Release);
    }
}

impl LeaseKeeper {
    /// Starts the keeper thread of node `node`.
    pub fn start(
        db: Db,
        leases: Leases,
        bind: String,
        supervisor: Addr<JobSupervisor>,
        drain_timeout: Duration,
    ) -> std::io::Result<KeeperHandle> {
        let node = leases.node().unwrap_or_default().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let halt = Arc::new(AtomicBool::new(false));
        let (done_tx, done_rx) = mpsc::channel();
        let (nudge_tx, nudged) = mpsc::channel();
        if let Ok(mut nudge) = leases.inner.nudge.lock() {
            *nudge = Some(nudge_tx);
        }
        let keeper = LeaseKeeper {
            db,
            leases,
            node,
            instance: uuid::Uuid::new_v4().simple().to_string(),
            name_held: false,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            bind,
            supervisor,
            handing_over: Vec::new(),
            drain_timeout,
            stop: stop.clone(),
            halt: halt.clone(),
            nudged,
            conn: None,
            handed_over: HashMap::new(),
        };
        std::thread::Builder::new()
            .name("lease-keeper".into())
            .spawn(move || {
                keeper.run();
                let _ = done_tx.send(());
            })?;
        Ok(KeeperHandle {
            stop,
            halt,
            done: Arc::new(std::sync::Mutex::new(Some(done_rx))),
        })
    }

    /// Runs `f` on the keeper's own connection, opening it when needed; an error drops it
    /// (the next call opens a fresh one).
    fn with_conn<T>(
        &mut self,
        f: impl FnOnce(&mut crate::storage::DbConnection) -> Result<T, crate::storage::StorageError>,
    ) -> Result<T, crate::storage::StorageError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => self.db.dedicated_connection()?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            self.conn = Some(conn);
        }
        result
    }

    fn running(&self) -> bool {
        !self.stop.load(Ordering::Acquire) && !self.halt.load(Ordering::Acquire)
    }

    fn run(mut self) {
        let mut beats: u64 = 0;
        while self.running() {
            let started = Instant::now();
            if !self.name_held {
                self.join(beats);
            }
            if !self.name_held {
                // Another live process goes by this name: nothing is run here meanwhile.
            } else if let Err(err) = self.beat(started) {
                if let crate::storage::StorageError::NameTaken(_) = err {
                    // This process was silent past its lease (stopped, cut off) and another
                    // took its name: whatever it held is another's now.
                    tracing::error!(node = %self.node, error = %err, "This node lost its name to another process; it runs nothing until the name is free.");
                    self.name_held = false;
                    self.publish(HashMap::new());
                } else {
                    // Leases are not renewed: they lapse by themselves (self-fencing).
                    tracing::warn!(node = %self.node, error = %err, "A cluster heartbeat failed.");
                    self.expire_lapsed(started);
                }
            }
            beats += 1;
            if beats.is_multiple_of(60) {
                let keep = i64::try_from(EVENTS_KEPT.as_millis()).unwrap_or(i64::MAX);
                if let Err(err) = self.with_conn(|c| cluster::prune_events(c, keep)) {
                    tracing::debug!(error = %err, "Pruning the cluster's change feed failed.");
                }
            }
            let next = started + HEARTBEAT_EVERY;
            while Instant::now() < next && self.running() {
                let wait = next
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100));
                if self.nudged.recv_timeout(wait).is_ok() {
                    break;
                }
            }
        }
        if !self.halt.load(Ordering::Acquire) && self.name_held {
            self.hand_everything_over();
        }
    }

    /// Takes this node's name in the cluster unless a live process holds it. Then leases left
    /// under the name by an earlier process (a restart under a fixed `MINDO_NODE_NAME`) are
    /// given up, to be acquired again under a new epoch that fences whatever that process may
    /// still claim.
    fn join(&mut self, beats: u64) {
        let ttl_ms = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        let member = self.member();
        match self.with_conn(|c| cluster::join(c, &member, ttl_ms)) {
            Ok(true) => {
                self.name_held = true;
                let node = member.name;
                if let Err(err) = self.with_conn(|c| cluster::release(c, &node, None).map(drop)) {
                    tracing::warn!(node = %self.node, error = %err, "Releasing an earlier process's leases failed; they expire by themselves.");
                }
            }
            Ok(false) => {
                // Said at once, then every half minute while it lasts.
                if beats.is_multiple_of(30) {
                    tracing::error!(node = %self.node, "Another live daemon is named like this one; this node runs nothing until the name is free. Give each daemon its own MINDO_NODE_NAME.");
                }
            }
            Err(err) => {
                tracing::warn!(node = %self.node, error = %err, "Joining the cluster failed; retrying.")
            }
        }
    }

    /// This process as its node row names it.
    fn member(&self) -> cluster::Member {
        cluster::Member {
            name: self.node.clone(),
            instance: self.instance.clone(),
            version: self.version.clone(),
            bind: self.bind.clone(),
        }
    }

    /// One heartbeat: renew, acquire, balance, and tell the supervisor what changed.
    fn beat(&mut self, started: Instant) -> Result<(), crate::storage::StorageError> {
        let ttl_ms = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        self.finish_hand_overs()?;
        let handing: HashSet<String> = self
            .handing_over
            .iter()
            .flat_map(|(p, _, _)| p.iter().cloned())
            .collect();
        self.handed_over.retain(|_, at| at.elapsed() < COOLDOWN);
        let member = self.member();
        let cooling: Vec<String> = self.handed_over.keys().cloned().collect();
        let beat = self.with_conn(|conn| {
            crate::storage::write_transaction(conn, |c| {
                use diesel::connection::SimpleConnection;
                if let crate::storage::DbConnection::Postgres(pg) = c {
                    pg.batch_execute(&format!(
                        "SET LOCAL lock_timeout = {HEARTBEAT_LOCK_TIMEOUT_MS}"
                    ))?;
                }
                cluster::heartbeat(c, &member, ttl_ms, &cooling)
            })
        })?;
        // The lease may be used until its expiry as the database set it, less the margin;
        // measured from before the statement was sent, so never later than the database's.
        let usable_until = started + LEASE_TTL.saturating_sub(FENCE_MARGIN);
        let takeovers = beat
            .acquired
            .iter()
            .filter(|l| l.previous_owner.as_ref().is_some_and(|o| *o != self.node))
            .count();
        for lease in &beat.acquired {
            if let Some(previous) = lease.previous_owner.as_ref().filter(|o| **o != self.node) {
                tracing::info!(node = %self.node, portfolio_id = %lease.portfolio_id,
                    epoch = lease.epoch, %previous, "Took a portfolio over from a lost node.");
            } else {
                tracing::info!(node = %self.node, portfolio_id = %lease.portfolio_id,
                    epoch = lease.epoch, "Acquired a portfolio.");
            }
        }
        telemetry::cluster_takeovers(takeovers);
        let mut now_held: HashMap<String, Held> = beat
            .held
            .iter()
            .filter(|l| !handing.contains(&l.portfolio_id))
            .map(|l| {
                (
                    l.portfolio_id.clone(),
                    Held {
                        epoch: l.epoch,
                        usable_until,
                    },
                )
            })
            .collect();
        // A node joined: hand the surplus over (newest acquisitions last to go is as good as
        // any order; portfolios are equal here).
        if beat.surplus > 0 && self.handing_over.is_empty() {
            let mut give: Vec<String> = now_held.keys().cloned().collect();
            give.sort();
            give.truncate(beat.surplus);
            for portfolio in &give {
                now_held.remove(portfolio);
            }
            tracing::info!(node = %self.node, portfolios = ?give, "Handing portfolios over to balance the cluster.");
            let (tx, rx) = mpsc::channel();
            self.supervisor.do_send(super::supervisor::Relinquish {
                portfolios: give.clone(),
                done: tx,
            });
            self.handing_over.push((give, rx, Instant::now()));
        }
        self.publish(now_held);
        self.leases.inner.joined.store(true, Ordering::Release);
        Ok(())
    }

    /// Releases the portfolios whose sends have drained (or which waited long enough: their
    /// claims are fenced anyway).
    fn finish_hand_overs(&mut self) -> Result<(), crate::storage::StorageError> {
        let timeout = self.drain_timeout;
        let mut ready = Vec::new();
        self.handing_over.retain(|(portfolios, done, since)| {
            let drained = !matches!(done.try_recv(), Err(mpsc::TryRecvError::Empty));
            if drained || since.elapsed() > timeout {
                ready.extend(portfolios.iter().cloned());
                false
            } else {
                true
            }
        });
        if !ready.is_empty() {
            let node = self.node.clone();
            let released = ready.clone();
            self.with_conn(|c| cluster::release(c, &node, Some(&released)))?;
            let now = Instant::now();
            self.handed_over
                .extend(ready.into_iter().map(|portfolio| (portfolio, now)));
        }
        Ok(())
    }

    /// The heartbeat failed: drop the leases whose usable time is up.
    fn expire_lapsed(&mut self, now: Instant) {
        let kept: HashMap<String, Held> = self
            .leases
            .read()
            .iter()
            .filter(|(_, h)| h.usable_until > now)
            .map(|(p, h)| (p.clone(), *h))
            .collect();
        self.publish(kept);
    }

    /// Makes `now_held` what the engine sees, and tells the supervisor the difference.
    fn publish(&mut self, now_held: HashMap<String, Held>) {
        let before = self.leases.read().clone();
        let lost: Vec<String> = before
            .iter()
            .filter(|(p, h)| now_held.get(*p).is_none_or(|n| n.epoch != h.epoch))
            .map(|(p, _)| p.clone())
            .collect();
        let gained: Vec<String> = now_held
            .iter()
            .filter(|(p, h)| before.get(*p).is_none_or(|b| b.epoch != h.epoch))
            .map(|(p, _)| p.clone())
            .collect();
        telemetry::cluster_leases_held(now_held.len());
        self.leases.replace(now_held);
        if !lost.is_empty() || !gained.is_empty() || !self.leases.is_joined() {
            self.supervisor.do_send(LeasesChanged { gained, lost });
        }
    }

    /// A clean stop: release every lease and leave, so others take over at once.
    fn hand_everything_over(&mut self) {
        self.publish(HashMap::new());
        let node = self.node.clone();
        let result = self.with_conn(|c| {
            cluster::release(c, &node, None)?;
            cluster::leave(c, &node)
        });
        match result {
            Ok(()) => {
                tracing::info!(node = %self.node, "Left the cluster; its portfolios are free.")
            }
            Err(err) => {
                tracing::warn!(node = %self.node, error = %err, "Leaving the cluster failed; its leases expire by themselves.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_node_owns_everything_without_a_limit() {
        let leases = Leases::single();
        assert!(leases.is_joined());
        assert!(!leases.is_cluster());
        assert_eq!(leases.fence("any"), Some(Fence::Single));
        assert_eq!(Fence::Single.time_left(), None);
    }

    #[test]
    fn a_cluster_node_owns_only_what_it_holds_and_only_while_usable() {
        let leases = Leases::cluster("a".into());
        assert!(!leases.is_joined());
        assert!(!leases.owns("p1"));
        let now = Instant::now();
        leases.replace(HashMap::from([
            (
                "p1".to_owned(),
                Held {
                    epoch: 3,
                    usable_until: now + Duration::from_secs(5),
                },
            ),
            (
                "p2".to_owned(),
                Held {
                    epoch: 1,
                    usable_until: now,
                },
            ),
        ]));
        match leases.fence("p1") {
            Some(Fence::Lease {
                portfolio,
                epoch,
                node,
                ..
            }) => assert_eq!((portfolio.as_str(), epoch, node.as_str()), ("p1", 3, "a")),
            other => panic!("expected p1's lease, got {other:?}"),
        }
        // Its usable time is up: self-fenced, though the database may not have expired it.
        assert_eq!(leases.fence("p2"), None);
        assert_eq!(leases.fence("p3"), None);
        assert_eq!(leases.held_count(), 2);
    }
}
