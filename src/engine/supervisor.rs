//! `JobSupervisor`: starts a `BulkSendActor` for every unsettled send at boot and for each
//! new one, keeps one `PhoneLimiter` per sender number, and routes control requests to the
//! actor that owns the send. Webhook notifications are made durable in one write (see
//! `ingest`), then the actors and limiters they concern are told to follow at once.
//!
//! Send actors run under actix's `Supervisor`, which restarts a stopped actor (with its
//! state rebuilt from the database) for as long as someone holds its address. The
//! supervisor drops the address when the actor reports its send settled.

use std::collections::HashMap;

use actix::prelude::*;

use super::bulk_send::{BulkSendActor, Control, ControlOutcome, Drain, WebhookEffect};
use super::ingest::{self, IngestOutcome, WebhookChanges};
use super::limiter::{LimiterCall, PhoneLimiter, QuotaRegistry};
use super::EngineContext;
use crate::meta::client::GraphClient;
use crate::storage::sends;
use crate::storage::StorageError;
use crate::telemetry;

/// The supervisor actor.
pub struct JobSupervisor {
    ctx: EngineContext,
    graph: GraphClient,
    sends: HashMap<String, Addr<BulkSendActor>>,
    /// Limiters by phone-number row id.
    limiters: HashMap<i64, Addr<PhoneLimiter>>,
    /// Portfolio quotas, shared by the limiters of a portfolio's numbers.
    quotas: QuotaRegistry,
    /// Whether the boot scan finished (readiness).
    resumed: bool,
    /// A clean stop is under way: no new actor starts.
    draining: bool,
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
        }
    }

    /// Starts the actor of a send (once), with the limiter of its number.
    fn start_send(&mut self, id: String, phone_row_id: i64, ctx: &mut Context<Self>) {
        if self.draining || self.sends.contains_key(&id) {
            // While draining, a new send stays stored; the next start resumes it.
            return;
        }
        let limiter = self
            .limiters
            .entry(phone_row_id)
            .or_insert_with(|| {
                PhoneLimiter::new(phone_row_id, self.ctx.clone(), self.quotas.clone()).start()
            })
            .clone();
        let (engine, graph, me) = (self.ctx.clone(), self.graph.clone(), ctx.address());
        let actor_id = id.clone();
        let addr = actix::Supervisor::start(move |_| {
            BulkSendActor::new(actor_id, engine, graph, me, limiter)
        });
        if self.sends.insert(id, addr).is_none() {
            telemetry::active_sends_changed(1.0);
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
        let fut = self.ctx.db.run(sends::unsettled_sends);
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(unsettled) => {
                let n = unsettled.len();
                for send in unsettled {
                    act.start_send(send.id, send.phone_number_id, ctx);
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
            move |conn| sends::load_send(conn, &id)
        });
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Some(send)) => act.start_send(send.id, send.phone_number_id, ctx),
            Ok(None) => tracing::warn!(bulk_send_id = %id, "A new send is not in the database."),
            Err(err) => {
                // It is stored: the next boot resumes it; try again shortly meanwhile.
                tracing::warn!(bulk_send_id = %id, error = %err, "Starting a send failed; retrying.");
                ctx.notify_later(StartSend { id }, std::time::Duration::from_secs(1));
            }
        }));
    }
}

/// A send actor's send settled: forget its address so it can stop for good.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SendSettled {
    pub id: String,
}

impl Handler<SendSettled> for JobSupervisor {
    type Result = ();

    fn handle(&mut self, msg: SendSettled, _ctx: &mut Context<Self>) {
        if self.sends.remove(&msg.id).is_some() {
            telemetry::active_sends_changed(-1.0);
        }
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
        if let Some(addr) = self.sends.get(&msg.id).cloned() {
            // An actor that stopped meanwhile (settled) owns nothing any more.
            return Box::pin(async move { addr.send(msg.control).await.ok() }.into_actor(self));
        }
        // No actor yet (the boot scan or a start still loading) or any more (settled): the
        // database tells which, and an unsettled send gets its actor now.
        let id = msg.id.clone();
        let lookup = self.ctx.db.run(move |conn| sends::load_send(conn, &id));
        Box::pin(lookup.into_actor(self).then(move |found, act, ctx| {
            let target = match found {
                Ok(Some(send)) if !send.is_settled() => {
                    act.start_send(send.id.clone(), send.phone_number_id, ctx);
                    Ok(act.sends.get(&send.id).cloned())
                }
                Ok(_) => Ok(None),
                Err(err) => Err(err),
            };
            async move {
                match target {
                    Ok(Some(addr)) => addr.send(msg.control).await.ok(),
                    Ok(None) => None,
                    Err(err) => Some(Err(err)),
                }
            }
            .into_actor(act)
        }))
    }
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
        let write = self
            .ctx
            .writer
            .write(move |conn| ingest::apply(conn, &msg.changes, now));
        Box::pin(write.into_actor(self).then(|result, act, _ctx| {
            let mut told = Vec::new();
            if let Ok(outcome) = &result {
                // A send without a live actor has settled (or its actor is still being
                // started, and loads the stored flags).
                for (send_id, effect) in &outcome.sends {
                    if let Some(addr) = act.sends.get(send_id) {
                        told.push(addr.send(WebhookEffect(effect.clone())));
                    }
                }
                for row_id in &outcome.numbers {
                    if let Some(limiter) = act.limiters.get(row_id) {
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
            .map(|addr| {
                let (done, wait) = tokio::sync::oneshot::channel();
                addr.do_send(Drain(done));
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
