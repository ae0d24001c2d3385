//! Live status for the dashboard and other stream clients: the hub behind
//! `GET …/bulk-sends/{id}/events/` and `GET /api/v1/events/` (server-sent events).
//!
//! One hub per daemon. It learns of changes by reading, not by hooking the engine: every
//! [`TICK`] it re-reads the status object of each send somebody follows (one query per
//! send, plus one per followed tenant to find its live sends) and pushes an event only to
//! subscribers whose last event differs. Nobody listening costs no query at all: the hub
//! waits for the first subscriber. Reading keeps the engine's code paths untouched, sees
//! what every node of a cluster writes (webhooks may land on any of them), and coalesces by
//! construction: a send is shown at most `1 s / TICK` = 4 times a second however fast it
//! moves.
//!
//! An event's id is a digest of its status object ([`event_id`]), not a counter: it needs
//! no state that a restart or another node would not share. A client that reconnects with
//! `Last-Event-ID` is sent the current state at once unless it already has it.
//!
//! Slow clients never slow anything else: each subscriber has a channel of
//! [`SUBSCRIBER_CAPACITY`] events, the hub only ever `try_send`s, and a subscriber whose
//! channel is full is dropped (its stream ends after what it holds; the browser's
//! `EventSource` reconnects and gets the current state at once).

pub mod store;
pub mod token;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Notify};

use crate::clock::SharedClock;
use crate::storage::sends::{self, SendDetail};
use crate::storage::status_object::status_body;
use crate::storage::{Db, StorageError};
use token::TokenKey;

/// How often followed sends are re-read: at most four events per send and second.
pub const TICK: Duration = Duration::from_millis(250);
/// Events a subscriber may have waiting before it is dropped.
pub const SUBSCRIBER_CAPACITY: usize = 16;
/// How long a tenant stream keeps following a send after it settled (late read receipts
/// still move its funnel).
pub const RECENT_MS: i64 = 60_000;

/// What an event says about its send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The send's status object changed.
    Status,
    /// The send finished and settled; nothing more is sent on a send's own stream.
    Finished,
}

impl EventKind {
    /// The SSE `event:` name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Status => "status",
            EventKind::Finished => "finished",
        }
    }
}

/// One server-sent event: a status object.
#[derive(Debug, Clone)]
pub struct LiveEvent {
    pub kind: EventKind,
    /// The SSE `id:` ([`event_id`] on a send's stream; `{send id}/{digest}` on a tenant's).
    pub id: String,
    /// The status object as JSON.
    pub data: Arc<str>,
}

/// A send as an event would show it now.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub send_id: String,
    /// The status object as JSON.
    pub data: Arc<str>,
    /// [`event_id`] of `data`.
    pub id: String,
    /// Finished and settled: the last event of its own stream.
    pub finished: bool,
}

impl Snapshot {
    /// Renders a send's status object (the full one, as `GET …/bulk-sends/{id}/` answers).
    pub fn of(detail: SendDetail) -> Snapshot {
        let finished = detail.send.status().is_finished() && detail.send.is_settled();
        let send_id = detail.send.id.clone();
        let data: Arc<str> = serde_json::to_string(&status_body(detail, true))
            .unwrap_or_default()
            .into();
        Snapshot {
            send_id,
            id: event_id(&data),
            data,
            finished,
        }
    }

    /// The event of this snapshot on the send's own stream.
    pub fn send_event(&self) -> LiveEvent {
        LiveEvent {
            kind: match self.finished {
                true => EventKind::Finished,
                false => EventKind::Status,
            },
            id: self.id.clone(),
            data: self.data.clone(),
        }
    }

    /// The event of this snapshot on its tenant's stream (which never ends, so every event
    /// there is a `status`).
    pub fn tenant_event(&self) -> LiveEvent {
        LiveEvent {
            kind: EventKind::Status,
            id: format!("{}/{}", self.send_id, self.id),
            data: self.data.clone(),
        }
    }
}

/// The id of an event carrying this status object: 16 hex digits of its SHA-256.
pub fn event_id(data: &str) -> String {
    hex::encode(&Sha256::digest(data.as_bytes())[..8])
}

/// A subscriber's end: its events, in order; `None` once the hub let it go (the send
/// finished, the subscriber was too slow, or the daemon is stopping).
pub type Subscription = mpsc::Receiver<LiveEvent>;

/// The hub (cheap to clone: a handle).
#[derive(Clone, Debug)]
pub struct LiveHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    clock: SharedClock,
    token_key: TokenKey,
    followers: Mutex<Followers>,
    /// Wakes the hub when the first subscriber comes.
    wake: Notify,
    stopped: AtomicBool,
    /// Subscribers dropped because their channel was full.
    dropped: AtomicU64,
}

/// Who follows what.
#[derive(Debug, Default)]
struct Followers {
    /// Send id → its stream's subscribers.
    sends: HashMap<String, SendFollowers>,
    /// Tenant id → its stream's subscribers.
    tenants: HashMap<i64, Vec<TenantSubscriber>>,
}

#[derive(Debug)]
struct SendFollowers {
    tenant_id: i64,
    subscribers: Vec<SendSubscriber>,
}

#[derive(Debug)]
struct SendSubscriber {
    tx: mpsc::Sender<LiveEvent>,
    /// The id of the last event it was sent (or it said it had).
    last: Option<String>,
}

#[derive(Debug)]
struct TenantSubscriber {
    tx: mpsc::Sender<LiveEvent>,
    /// Send id → the id of the last status object it was sent for that send.
    last: HashMap<String, String>,
}

/// What a subscriber's channel said to an event.
enum Delivery {
    Sent,
    /// Gone or too slow: let it go.
    Dropped,
}

fn deliver(tx: &mpsc::Sender<LiveEvent>, event: LiveEvent, dropped: &AtomicU64) -> Delivery {
    match tx.try_send(event) {
        Ok(()) => Delivery::Sent,
        Err(mpsc::error::TrySendError::Full(_)) => {
            dropped.fetch_add(1, Ordering::Relaxed);
            tracing::info!("A live event stream fell behind and was closed.");
            Delivery::Dropped
        }
        Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Dropped,
    }
}

impl LiveHub {
    /// Starts the hub's task on the current runtime.
    pub fn start(db: Db, clock: SharedClock) -> LiveHub {
        let hub = LiveHub {
            inner: Arc::new(Inner {
                db,
                clock,
                token_key: TokenKey::random(),
                followers: Mutex::new(Followers::default()),
                wake: Notify::new(),
                stopped: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
            }),
        };
        let task = hub.clone();
        tokio::spawn(async move { task.run().await });
        hub
    }

    /// The key that signs dashboard tokens.
    pub fn token_key(&self) -> &TokenKey {
        &self.inner.token_key
    }

    /// The daemon's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// Follows one send whose current state the caller has already sent (`last`, or what
    /// the client said it had): later changes arrive on the subscription.
    pub fn follow_send(
        &self,
        tenant_id: i64,
        send_id: String,
        last: Option<String>,
    ) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        if !self.inner.stopped.load(Ordering::SeqCst) {
            self.inner
                .followers
                .lock()
                .sends
                .entry(send_id)
                .or_insert_with(|| SendFollowers {
                    tenant_id,
                    subscribers: Vec::new(),
                })
                .subscribers
                .push(SendSubscriber { tx, last });
            self.inner.wake.notify_one();
        }
        rx
    }

    /// Follows every send of a tenant; `sent` are the snapshots the caller has already sent.
    pub fn follow_tenant(&self, tenant_id: i64, sent: &[Snapshot]) -> Subscription {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        if !self.inner.stopped.load(Ordering::SeqCst) {
            let last = sent
                .iter()
                .map(|s| (s.send_id.clone(), s.id.clone()))
                .collect();
            self.inner
                .followers
                .lock()
                .tenants
                .entry(tenant_id)
                .or_default()
                .push(TenantSubscriber { tx, last });
            self.inner.wake.notify_one();
        }
        rx
    }

    /// The snapshots of a tenant's live sends (see [`store::live_send_ids`]): those not
    /// settled, and those settled at `since` or later.
    pub async fn tenant_snapshots(
        &self,
        tenant_id: i64,
        since: i64,
    ) -> Result<Vec<Snapshot>, StorageError> {
        self.inner
            .db
            .run(move |conn| {
                let ids = store::live_send_ids(conn, tenant_id, since)?;
                let mut out = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(detail) = sends::load_detail(conn, tenant_id, &id)? {
                        out.push(Snapshot::of(detail));
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Subscribers currently followed (sends' and tenants' streams together).
    pub fn subscribers(&self) -> usize {
        let followers = self.inner.followers.lock();
        followers
            .sends
            .values()
            .map(|f| f.subscribers.len())
            .sum::<usize>()
            + followers.tenants.values().map(Vec::len).sum::<usize>()
    }

    /// Subscribers dropped so far because they fell [`SUBSCRIBER_CAPACITY`] events behind.
    pub fn dropped_slow(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Ends every stream and takes no new subscriber (a clean stop must not wait for them).
    pub fn stop(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let mut followers = self.inner.followers.lock();
        followers.sends.clear();
        followers.tenants.clear();
        drop(followers);
        self.inner.wake.notify_one();
    }

    async fn run(self) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if self.inner.stopped.load(Ordering::SeqCst) {
                return;
            }
            if self.is_idle() {
                self.inner.wake.notified().await;
                continue;
            }
            ticker.tick().await;
            if let Err(err) = self.tick().await {
                tracing::warn!(error = %err, "Could not read the followed sends.");
            }
        }
    }

    fn is_idle(&self) -> bool {
        let mut followers = self.inner.followers.lock();
        followers.sends.retain(|_, f| {
            f.subscribers.retain(|s| !s.tx.is_closed());
            !f.subscribers.is_empty()
        });
        followers.tenants.retain(|_, subs| {
            subs.retain(|s| !s.tx.is_closed());
            !subs.is_empty()
        });
        followers.sends.is_empty() && followers.tenants.is_empty()
    }

    /// One round: read what is followed, push what changed.
    async fn tick(&self) -> Result<(), StorageError> {
        let (sends_followed, tenants_followed): (Vec<(String, i64)>, Vec<i64>) = {
            let followers = self.inner.followers.lock();
            (
                followers
                    .sends
                    .iter()
                    .map(|(id, f)| (id.clone(), f.tenant_id))
                    .collect(),
                followers.tenants.keys().copied().collect(),
            )
        };
        let since = self.now_ms() - RECENT_MS;
        let (snapshots, tenant_sends) = self
            .inner
            .db
            .run(move |conn| {
                let mut wanted: HashMap<String, i64> = sends_followed.into_iter().collect();
                let mut tenant_sends: HashMap<i64, Vec<String>> = HashMap::new();
                for tenant_id in tenants_followed {
                    let ids = store::live_send_ids(conn, tenant_id, since)?;
                    for id in &ids {
                        wanted.insert(id.clone(), tenant_id);
                    }
                    tenant_sends.insert(tenant_id, ids);
                }
                let mut snapshots = HashMap::with_capacity(wanted.len());
                for (id, tenant_id) in wanted {
                    if let Some(detail) = sends::load_detail(conn, tenant_id, &id)? {
                        snapshots.insert(id, Snapshot::of(detail));
                    }
                }
                Ok::<_, StorageError>((snapshots, tenant_sends))
            })
            .await?;
        self.push(&snapshots, &tenant_sends);
        Ok(())
    }

    fn push(
        &self,
        snapshots: &HashMap<String, Snapshot>,
        tenant_sends: &HashMap<i64, Vec<String>>,
    ) {
        let dropped = &self.inner.dropped;
        let mut followers = self.inner.followers.lock();
        followers.sends.retain(|send_id, f| {
            let Some(snapshot) = snapshots.get(send_id) else {
                // Deleted under us (or never readable): nothing will ever come.
                return false;
            };
            f.subscribers.retain_mut(|s| {
                if s.last.as_deref() == Some(snapshot.id.as_str()) {
                    return !s.tx.is_closed();
                }
                s.last = Some(snapshot.id.clone());
                matches!(
                    deliver(&s.tx, snapshot.send_event(), dropped),
                    Delivery::Sent
                )
            });
            // After the final event the stream ends (its senders are dropped here).
            !snapshot.finished && !f.subscribers.is_empty()
        });
        for (tenant_id, subscribers) in followers.tenants.iter_mut() {
            let ids = tenant_sends
                .get(tenant_id)
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let live: HashSet<&str> = ids.iter().map(String::as_str).collect();
            subscribers.retain_mut(|s| {
                // Sends no longer live are forgotten; they cannot change any more.
                s.last.retain(|id, _| live.contains(id.as_str()));
                // Oldest first, so a page that adds new sends at the top sees them in order.
                for id in ids.iter().rev() {
                    let Some(snapshot) = snapshots.get(id) else {
                        continue;
                    };
                    if s.last.get(id) == Some(&snapshot.id) {
                        continue;
                    }
                    s.last.insert(id.clone(), snapshot.id.clone());
                    if let Delivery::Dropped = deliver(&s.tx, snapshot.tenant_event(), dropped) {
                        return false;
                    }
                }
                true
            });
        }
        followers.tenants.retain(|_, subs| !subs.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_names_its_content() {
        assert_eq!(event_id("{}"), event_id("{}"));
        assert_ne!(event_id("{\"a\":1}"), event_id("{\"a\":2}"));
        assert_eq!(event_id("{}").len(), 16);
    }

    #[test]
    fn a_full_channel_drops_its_subscriber_and_a_closed_one_is_forgotten() {
        let dropped = AtomicU64::new(0);
        let event = LiveEvent {
            kind: EventKind::Status,
            id: "1".into(),
            data: "{}".into(),
        };
        let (tx, mut rx) = mpsc::channel(2);
        assert!(matches!(
            deliver(&tx, event.clone(), &dropped),
            Delivery::Sent
        ));
        assert!(matches!(
            deliver(&tx, event.clone(), &dropped),
            Delivery::Sent
        ));
        assert!(matches!(
            deliver(&tx, event.clone(), &dropped),
            Delivery::Dropped
        ));
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        assert!(rx.try_recv().is_ok());
        rx.close();
        assert!(matches!(deliver(&tx, event, &dropped), Delivery::Dropped));
        // A client that went away is not counted as slow.
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
    }
}
