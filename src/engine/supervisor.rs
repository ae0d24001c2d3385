//! `JobSupervisor`: starts a `BulkSendActor` for every unsettled send at boot and for each
//! new one, keeps one `PhoneLimiter` per sender number, and routes control requests to the
//! actor that owns the send. Webhook notifications are made durable in one write (see
//! `ingest`), then the actors and limiters they concern are told to follow at once.
//!
//! Send actors run under actix's `Supervisor`, which restarts a stopped actor (with its
//! state rebuilt from the database) for as long as someone holds its address. The
//! supervisor drops the address when the actor reports its send settled.
//!
//! On a cluster (several daemons on one PostgreSQL, see `leases`) the supervisor runs only
//! the sends of the portfolios this node holds: it starts them when the lease keeper reports
//! a lease gained and disowns them when one is lost. What other nodes change (a new send, a
//! control, a webhook's effect on a send or a number) reaches it through the change feed
//! (`storage::cluster`), read every [`FEED_EVERY`]; what this node changes is followed at
//! once, as on a single node, and also written to the feed for the others.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;

use super::bulk_send::{
    BulkSendActor, Control, ControlAction, ControlOutcome, Disown, Drain, Reload, WebhookEffect,
};
use super::ingest::{self, IngestOutcome, WebhookChanges};
use super::limiter::{LimiterCall, PhoneLimiter, QuotaRegistry};
use super::EngineContext;
use crate::meta::client::GraphClient;
use crate::storage::cluster::{self, ClusterEvent, SendOwner};
use crate::storage::sends;
use crate::storage::{DbConnection, StorageError};
use crate::telemetry;

/// How often a cluster node reads the change feed.
pub const FEED_EVERY: Duration = Duration::from_millis(500);
/// How far back each read of the feed looks (see `storage::cluster::recent_events`).
const FEED_WINDOW: Duration = Duration::from_secs(30);
/// How often a cluster node looks for unsettled sends of its portfolios that it does not run
/// (a safety net: the feed announces new sends).
const RESCAN_EVERY: Duration = Duration::from_secs(30);

/// A running send actor and the portfolio whose lease it runs under.
struct SendEntry {
    addr: Addr<BulkSendActor>,
    portfolio: String,
}

/// The supervisor actor.
pub struct JobSupervisor {
    ctx: EngineContext,
    graph: GraphClient,
    sends: HashMap<String, SendEntry>,
    /// Limiters by phone-number row id, with their portfolio.
    limiters: HashMap<i64, (Addr<PhoneLimiter>, String)>,
    /// Portfolio quotas, shared by the limiters of a portfolio's numbers.
    quotas: QuotaRegistry,
    /// Whether the boot scan finished (readiness).
    resumed: bool,
    /// A clean stop is under way: no new actor starts.
    draining: bool,
    /// The feed events already followed, by sequence number, with when they were first seen
    /// (cluster only); `None` until the first read, whose events are only noted (what they
    /// announce predates this node's start, whose scan covers it).
    feed_seen: Option<HashMap<i64, std::time::Instant>>,
    /// A read of the feed is under way.
    reading_feed: bool,
}

impl JobSupervisor {
    pub fn new(ctx: EngineContext) -> Self {
        let graph = ctx.config.graph_client();
        JobSupervisor {
            ctx,
            graph,
            sends: HashMap::new(),
            limiters: HashMap::new(),
            quotas: QuotaRegistry::default(),
            resumed: false,
            draining: false,
            feed_seen: None,
            reading_feed: false,
        }
    }

    /// Starts the actor of an unsettled send (once), with the limiter of its number, if this
    /// node runs its portfolio. Returns whether it runs here.
    fn start_send(&mut self, owner: SendOwner, ctx: &mut Context<Self>) -> bool {
        if self.sends.contains_key(&owner.send_id) {
            return true;
        }
        if self.draining || owner.settled || !self.ctx.leases.owns(&owner.portfolio_id) {
            // While draining, a new send stays stored; the next start (or another node)
            // resumes it. A portfolio this node does not hold is another node's.
            return false;
        }
        let phone_row_id = owner.phone_row_id;
        let limiter = self
            .limiters
            .entry(phone_row_id)
            .or_insert_with(|| {
                let limiter =
                    PhoneLimiter::new(phone_row_id, self.ctx.clone(), self.quotas.clone()).start();
                (limiter, owner.portfolio_id.clone())
            })
            .0
            .clone();
        let (engine, graph, me) = (self.ctx.clone(), self.graph.clone(), ctx.address());
        let actor_id = owner.send_id.clone();
        let addr = actix::Supervisor::start(move |_| {
            BulkSendActor::new(actor_id, engine, graph, me, limiter)
        });
        let entry = SendEntry {
            addr,
            portfolio: owner.portfolio_id,
        };
        if self.sends.insert(owner.send_id, entry).is_none() {
            telemetry::active_sends_changed(1.0);
        }
        true
    }

    /// Stops running the sends and limiters of `portfolios` (their lease is lost or handed
    /// over): each send actor stops dispatching, writes what is in flight and goes. Returns
    /// the waiters of those drains.
    fn disown(&mut self, portfolios: &[String]) -> Vec<tokio::sync::oneshot::Receiver<()>> {
        if portfolios.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = self
            .sends
            .iter()
            .filter(|(_, e)| portfolios.contains(&e.portfolio))
            .map(|(id, _)| id.clone())
            .collect();
        let mut waits = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(entry) = self.sends.remove(&id) {
                telemetry::active_sends_changed(-1.0);
                let (done, wait) = tokio::sync::oneshot::channel();
                entry.addr.do_send(Disown(done));
                waits.push(wait);
            }
        }
        // A new owner starts from the database: the quota is read again there, and a limiter
        // started here again later holds its first second, as after a restart.
        self.limiters.retain(|_, (_, p)| !portfolios.contains(p));
        let mut quotas = self.quotas.lock();
        for portfolio in portfolios {
            quotas.remove(portfolio);
        }
        drop(quotas);
        tracing::info!(portfolios = ?portfolios, sends = waits.len(), "This node no longer runs these portfolios.");
        waits
    }

    /// Starts the unsettled sends of `portfolios` (leases gained). Marks the engine resumed
    /// once done.
    fn adopt(&mut self, portfolios: Vec<String>, ctx: &mut Context<Self>) {
        let fut = self.ctx.db.run(cluster::unsettled_send_owners);
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(owners) => {
                let mut started = 0;
                for owner in owners {
                    if portfolios.contains(&owner.portfolio_id) && act.start_send(owner, ctx) {
                        started += 1;
                    }
                }
                if !act.resumed {
                    tracing::info!(sends = started, "The engine resumed the unfinished sends of its portfolios.");
                }
                act.resumed = true;
            }
            Err(err) => {
                tracing::warn!(error = %err, "Reading the sends of gained portfolios failed; retrying.");
                ctx.run_later(Duration::from_secs(1), move |act, ctx| act.adopt(portfolios, ctx));
            }
        }));
    }

    /// Reads what other nodes changed since the last read and follows what concerns this
    /// node.
    fn read_feed(&mut self, ctx: &mut Context<Self>) {
        if self.reading_feed {
            return;
        }
        self.reading_feed = true;
        let window = i64::try_from(FEED_WINDOW.as_millis()).unwrap_or(i64::MAX);
        let fut = self
            .ctx
            .db
            .run(move |conn| cluster::recent_events(conn, window));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.reading_feed = false;
            let events = match result {
                Ok(events) => events,
                Err(err) => {
                    tracing::debug!(error = %err, "Reading the cluster's change feed failed.");
                    return;
                }
            };
            let now = std::time::Instant::now();
            let first = act.feed_seen.is_none();
            let seen = act.feed_seen.get_or_insert_with(HashMap::new);
            seen.retain(|_, at| now.duration_since(*at) < 2 * FEED_WINDOW);
            let new: Vec<ClusterEvent> = events
                .into_iter()
                .filter(|(seq, _)| seen.insert(*seq, now).is_none())
                .map(|(_, event)| event)
                .collect();
            if !first {
                for event in new {
                    act.follow(event, ctx);
                }
            }
        }));
    }

    /// Starts the unsettled sends of this node's portfolios that it does not run yet.
    fn rescan(&mut self, ctx: &mut Context<Self>) {
        if !self.resumed {
            return;
        }
        let fut = self.ctx.db.run(cluster::unsettled_send_owners);
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            if let Ok(owners) = result {
                for owner in owners {
                    act.start_send(owner, ctx);
                }
            }
        }));
    }

    /// One change from the feed: the actor of a send re-reads its stored phase (or is
    /// started, if this node runs its portfolio); a number's limiter reads its settings back.
    fn follow(&mut self, event: ClusterEvent, ctx: &mut Context<Self>) {
        match event {
            ClusterEvent::Send(id) => {
                if let Some(entry) = self.sends.get(&id) {
                    entry.addr.do_send(Reload);
                    return;
                }
                let fut = self.ctx.db.run(move |conn| cluster::send_owner(conn, &id));
                ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
                    if let Ok(Some(owner)) = result {
                        act.start_send(owner, ctx);
                    }
                }));
            }
            ClusterEvent::Number(row_id) => {
                if let Some((limiter, _)) = self.limiters.get(&row_id) {
                    limiter.do_send(LimiterCall::Refresh);
                }
            }
        }
    }
}

impl Drop for JobSupervisor {
    /// The engine stopped: its sends leave the active-sends gauge.
    fn drop(&mut self) {
        telemetry::active_sends_changed(-(self.sends.len() as f64));
    }
}

impl Actor for JobSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.ctx.leases.is_cluster() {
            // The lease keeper's first heartbeat says which portfolios are this node's; until
            // then nothing runs (and the node is not ready).
            self.read_feed(ctx);
            ctx.run_interval(FEED_EVERY, |act, ctx| act.read_feed(ctx));
            ctx.run_interval(RESCAN_EVERY, |act, ctx| act.rescan(ctx));
            return;
        }
        let fut = self.ctx.db.run(cluster::unsettled_send_owners);
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(unsettled) => {
                let n = unsettled.len();
                for owner in unsettled {
                    act.start_send(owner, ctx);
                }
                act.resumed = true;
                tracing::info!(sends = n, "The engine resumed every unfinished send.");
            }
            Err(err) => {
                tracing::error!(error = %err, "The engine cannot read unfinished sends; retrying.");
                ctx.run_later(std::time::Duration::from_secs(1), |act, ctx| {
                    act.started(ctx)
                });
            }
        }));
    }
}

/// A new send was stored: start its actor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartSend {
    pub id: String,
}

impl Handler<StartSend> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: StartSend, ctx: &mut Context<Self>) {
        let id = msg.id;
        let fut = self.ctx.db.run({
            let id = id.clone();
            move |conn| cluster::send_owner(conn, &id)
        });
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Some(owner)) => {
                let send_id = owner.send_id.clone();
                if !act.start_send(owner, ctx) && act.ctx.leases.is_cluster() {
                    // Another node's portfolio, or one no node holds yet: the feed tells its
                    // owner, and the keeper looks for free leases now rather than in a second.
                    act.ctx.leases.nudge();
                    let write = act.ctx.writer.write(move |conn| {
                        cluster::append_events(conn, &[ClusterEvent::Send(send_id.clone())])
                    });
                    ctx.spawn(write.into_actor(act).map(|result, _, _| {
                        if let Err(err) = result {
                            tracing::warn!(error = %err, "Announcing a new send to the cluster failed; its owner finds it at its next lease change.");
                        }
                    }));
                }
            }
            Ok(None) => tracing::warn!(bulk_send_id = %id, "A new send is not in the database."),
            Err(err) => {
                // It is stored: the next boot resumes it; try again shortly meanwhile.
                tracing::warn!(bulk_send_id = %id, error = %err, "Starting a send failed; retrying.");
                ctx.notify_later(StartSend { id }, std::time::Duration::from_secs(1));
            }
        }));
    }
}

/// A send actor's send settled (or it left a portfolio this node no longer holds): forget
/// its address so it can stop for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendSettled {
    pub id: String,
    pub addr: Addr<BulkSendActor>,
}

impl Handler<SendSettled> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SendSettled, _ctx: &mut Context<Self>) {
        // Only the actor that reports: a newer one may run the send here since.
        if self.sends.get(&msg.id).is_some_and(|e| e.addr == msg.addr) {
            self.sends.remove(&msg.id);
            telemetry::active_sends_changed(-1.0);
        }
    }
}

/// A send actor found its claim fenced out (the lease is gone or no longer usable): it stops
/// dispatching; the supervisor disowns it and, if the portfolio is (still or again) this
/// node's a moment later, starts it afresh under the current lease.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ClaimFenced {
    pub id: String,
    pub addr: Addr<BulkSendActor>,
}

impl Handler<ClaimFenced> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ClaimFenced, ctx: &mut Context<Self>) {
        if !self.sends.get(&msg.id).is_some_and(|e| e.addr == msg.addr) {
            return;
        }
        if let Some(entry) = self.sends.remove(&msg.id) {
            telemetry::active_sends_changed(-1.0);
            let (done, _wait) = tokio::sync::oneshot::channel();
            entry.addr.do_send(Disown(done));
        }
        let id = msg.id;
        ctx.run_later(Duration::from_secs(1), move |act, ctx| {
            act.follow(ClusterEvent::Send(id), ctx);
        });
    }
}

/// The lease keeper's news: leases gained (start their sends) and lost (disown them). The
/// first one, even empty, means the node has joined.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LeasesChanged {
    pub gained: Vec<String>,
    pub lost: Vec<String>,
}

impl Handler<LeasesChanged> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: LeasesChanged, ctx: &mut Context<Self>) {
        drop(self.disown(&msg.lost));
        self.adopt(msg.gained, ctx);
    }
}

/// The lease keeper hands `portfolios` over to balance the cluster: their sends stop here;
/// `done` is answered once what they had in flight is written, and the keeper releases the
/// leases then.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Relinquish {
    pub portfolios: Vec<String>,
    pub done: std::sync::mpsc::Sender<()>,
}

impl Handler<Relinquish> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Relinquish, ctx: &mut Context<Self>) {
        let waits = self.disown(&msg.portfolios);
        let done = msg.done;
        ctx.spawn(
            async move {
                for wait in waits {
                    let _ = wait.await;
                }
                let _ = done.send(());
            }
            .into_actor(self),
        );
    }
}

/// A control request for a send, routed to its actor. `None` when no actor owns the send
/// because it has settled.
#[derive(Message)]
#[rtype(result = "Option<Result<ControlOutcome, StorageError>>")]
pub struct RouteControl {
    pub id: String,
    pub control: Control,
}

impl Handler<RouteControl> for JobSupervisor {
    type Result = ResponseActFuture<Self, Option<Result<ControlOutcome, StorageError>>>;

    fn handle(&mut self, msg: RouteControl, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(addr) = self.sends.get(&msg.id).map(|e| e.addr.clone()) {
            // An actor that stopped meanwhile (settled) owns nothing any more.
            return Box::pin(async move { addr.send(msg.control).await.ok() }.into_actor(self));
        }
        // No actor yet (the boot scan or a start still loading) or any more (settled): the
        // database tells which, and an unsettled send gets its actor now.
        // On a cluster, a send another node runs is controlled in the database: its owner
        // follows the stored phase within a feed read.
        let id = msg.id.clone();
        let lookup = self.ctx.db.run(move |conn| cluster::send_owner(conn, &id));
        Box::pin(lookup.into_actor(self).then(move |found, act, ctx| {
            enum Target {
                Actor(Addr<BulkSendActor>),
                Stored,
                Settled,
            }
            let target = match found {
                Ok(Some(owner)) if !owner.settled => {
                    let id = owner.send_id.clone();
                    if act.start_send(owner, ctx) {
                        Ok(act
                            .sends
                            .get(&id)
                            .map_or(Target::Settled, |e| Target::Actor(e.addr.clone())))
                    } else if act.ctx.leases.is_cluster() {
                        Ok(Target::Stored)
                    } else {
                        Ok(Target::Settled)
                    }
                }
                Ok(_) => Ok(Target::Settled),
                Err(err) => Err(err),
            };
            let (writer, db) = (act.ctx.writer.clone(), act.ctx.db.clone());
            let now = act.ctx.clock.now_ms();
            async move {
                match target {
                    Ok(Target::Actor(addr)) => addr.send(msg.control).await.ok(),
                    Ok(Target::Stored) => {
                        let (id, action) = (msg.id, msg.control.0);
                        let write =
                            move |conn: &mut DbConnection| control_stored(conn, &id, action, now);
                        // A pause or resume changes only the send's row and appends to the
                        // feed: a transaction of its own on a pooled connection, as the
                        // owner's actor does it, not a job queued behind this node's writer.
                        // A cancel moves the send's messages: a writer job, like the owner's.
                        Some(if action == ControlAction::Cancel {
                            writer.write(write).await
                        } else {
                            db.write(write).await
                        })
                    }
                    Ok(Target::Settled) => None,
                    Err(err) => Some(Err(err)),
                }
            }
            .into_actor(act)
        }))
    }
}

/// How many times a webhook's write undone by a deadlock is made again before the
/// notification is answered 500 (and Meta retries it).
const WEBHOOK_CONFLICT_RETRIES: u32 = 3;

/// A control of a send another node runs, applied to the stored send (the same writes its
/// actor makes) and announced on the feed, in one transaction.
fn control_stored(
    conn: &mut DbConnection,
    id: &str,
    action: ControlAction,
    now: i64,
) -> Result<ControlOutcome, StorageError> {
    let Some(send) = sends::load_send(conn, id)? else {
        return Ok(ControlOutcome::AlreadyFinished);
    };
    if send.is_settled() || send.status().is_finished() {
        return Ok(ControlOutcome::AlreadyFinished);
    }
    let outcome = match action {
        ControlAction::Cancel => {
            if sends::cancel_send(conn, id, now)? {
                ControlOutcome::Done
            } else {
                ControlOutcome::AlreadyFinished
            }
        }
        ControlAction::Pause => {
            sends::set_paused(conn, id, true, Some("paused by the client"))?;
            ControlOutcome::Done
        }
        ControlAction::Resume => {
            sends::set_paused(conn, id, false, None)?;
            ControlOutcome::Done
        }
    };
    cluster::append_events(conn, &[ClusterEvent::Send(id.to_owned())])?;
    Ok(outcome)
}

/// What a webhook notification changes: made durable in one write, then followed at once by
/// the live actors of the sends it paused, resumed or stopped (so they dispatch nothing more)
/// and by the limiters of the numbers it changed. Answered after both.
#[derive(Message)]
#[rtype(result = "Result<IngestOutcome, StorageError>")]
pub struct ApplyWebhook {
    pub changes: WebhookChanges,
}

impl Handler<ApplyWebhook> for JobSupervisor {
    type Result = ResponseActFuture<Self, Result<IngestOutcome, StorageError>>;

    fn handle(&mut self, msg: ApplyWebhook, _ctx: &mut Context<Self>) -> Self::Result {
        let now = self.ctx.clock.now_ms();
        let (writer, changes) = (self.ctx.writer.clone(), std::sync::Arc::new(msg.changes));
        let write = async move {
            let mut conflicts = 0;
            loop {
                let changes = changes.clone();
                let result = writer
                    .write(move |conn| {
                        let outcome = ingest::apply(conn, &changes, now)?;
                        // The other nodes (the owners of these sends and numbers) follow from
                        // the feed.
                        let events: Vec<ClusterEvent> = outcome
                            .sends
                            .iter()
                            .map(|(id, _)| ClusterEvent::Send(id.clone()))
                            .chain(outcome.numbers.iter().map(|n| ClusterEvent::Number(*n)))
                            .collect();
                        cluster::append_events(conn, &events)?;
                        Ok(outcome)
                    })
                    .await;
                // A deadlock with another daemon's write undid this one: make it again (Meta
                // would retry the whole notification after a 500 otherwise).
                match result {
                    Err(err) if err.is_conflict() && conflicts < WEBHOOK_CONFLICT_RETRIES => {
                        conflicts += 1;
                    }
                    result => return result,
                }
            }
        };
        Box::pin(write.into_actor(self).then(|result, act, _ctx| {
            let mut told = Vec::new();
            if let Ok(outcome) = &result {
                // A send without a live actor has settled (or its actor is still being
                // started, and loads the stored flags).
                for (send_id, effect) in &outcome.sends {
                    if let Some(entry) = act.sends.get(send_id) {
                        told.push(entry.addr.send(WebhookEffect(effect.clone())));
                    }
                }
                for row_id in &outcome.numbers {
                    if let Some((limiter, _)) = act.limiters.get(row_id) {
                        limiter.do_send(LimiterCall::Refresh);
                    }
                }
            }
            async move {
                // An actor that stopped meanwhile has nothing left to dispatch.
                let _ = futures_util::future::join_all(told).await;
                result
            }
            .into_actor(act)
        }))
    }
}

/// A clean stop: every send actor stops dispatching and writes its outcomes; answered when
/// all have.
#[derive(Message)]
#[rtype(result = "()")]
pub struct DrainAll;

impl Handler<DrainAll> for JobSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: DrainAll, _ctx: &mut Context<Self>) -> Self::Result {
        self.draining = true;
        let waits: Vec<_> = self
            .sends
            .values()
            .map(|entry| {
                let (done, wait) = tokio::sync::oneshot::channel();
                entry.addr.do_send(Drain(done));
                wait
            })
            .collect();
        Box::pin(async move {
            for wait in waits {
                // A stopped actor drops its waiter: nothing of its own is in flight then.
                let _ = wait.await;
            }
        })
    }
}

/// Whether the boot scan has resumed every unfinished send.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsResumed;

impl Handler<IsResumed> for JobSupervisor {
    type Result = bool;

    fn handle(&mut self, _msg: IsResumed, _ctx: &mut Context<Self>) -> bool {
        self.resumed
    }
}
