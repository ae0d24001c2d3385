//! The engine: actix actors as thin shells over `domain/`, doing the I/O.
//!
//! - `supervisor`: `JobSupervisor`, which starts, restarts and routes to the actors below.
//! - `bulk_send`: `BulkSendActor`, one per unfinished send: pages, dispatches, records.
//! - `limiter`: `PhoneLimiter`, one per sender number: grants send slots by throughput,
//!   portfolio quota and pair rate, fairly between the number's sends.
//! - `writer`: the one database writer, with group commit.
//! - `ingest`: what a Meta webhook notification changes, applied in one write; the webhook
//!   counters.
//! - `leases`: which portfolios this node runs when several daemons share one PostgreSQL:
//!   `Leases` (asked before every claim) and the `LeaseKeeper` thread that renews them.
//! - `callbacks`: `CallbackDelivery`, which posts client callback events from the outbox,
//!   signed, retried, in order per send.
//!
//! The actors live on one arbiter of their own (a thread with its own event loop), apart from
//! the HTTP workers; the Graph client (`awc`, `!Send`) is created there. Callback delivery
//! has a second arbiter and HTTP client of its own, so receivers never slow the sends.

pub mod bulk_send;
pub mod callbacks;
pub mod ingest;
pub mod leases;
pub mod limiter;
pub mod supervisor;
pub mod writer;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::domain::secret_box::SecretKey;
use crate::storage::{Db, StorageError};
use bulk_send::{Control, ControlAction, ControlOutcome};
use callbacks::CallbackDelivery;
use ingest::{IngestCounters, IngestOutcome, WebhookChanges};
use leases::{KeeperHandle, LeaseKeeper, Leases};
use supervisor::{ApplyWebhook, DrainAll, IsResumed, JobSupervisor, RouteControl, StartSend};
use writer::StoreWriter;

/// What every actor of the engine shares.
#[derive(Clone, Debug)]
pub struct EngineContext {
    pub db: Db,
    pub writer: StoreWriter,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    /// Opens the stored access tokens and webhook secrets.
    pub secret_key: SecretKey,
    /// Send actors running now (started and not yet stopped), for [`Engine::live_send_actors`].
    pub live_send_actors: Arc<AtomicUsize>,
    /// The portfolios this node runs (all of them on a single node).
    pub leases: Leases,
}

/// Why the engine could not do something.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the engine is not running")]
    Stopped,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A handle to the running engine; cheap to clone, usable from any thread.
#[derive(Clone, Debug)]
pub struct Engine {
    supervisor: Addr<JobSupervisor>,
    arbiter: ArbiterHandle,
    /// Where `CallbackDelivery` runs.
    callbacks_arbiter: ArbiterHandle,
    /// Webhook counters, for the life of the process.
    ingest_counters: Arc<IngestCounters>,
    live_send_actors: Arc<AtomicUsize>,
    leases: Leases,
    /// The lease keeper's thread (cluster only).
    keeper: Option<KeeperHandle>,
}

impl Engine {
    /// Starts the writer thread, the engine's arbiter and the supervisor on it (the
    /// supervisor resumes every unfinished send), and callback delivery on an arbiter of its
    /// own. On PostgreSQL the node joins the cluster of every daemon on that database: its
    /// lease keeper starts, and the supervisor runs the sends of the portfolios it holds.
    pub fn start(db: Db, config: Arc<Config>, clock: SharedClock, secret_key: SecretKey) -> Engine {
        let writer = StoreWriter::start(db.clone());
        let live_send_actors = Arc::new(AtomicUsize::new(0));
        let leases = if db.is_sqlite() {
            Leases::single()
        } else {
            Leases::cluster(config.node_name.clone())
        };
        let context = EngineContext {
            db: db.clone(),
            writer,
            config: config.clone(),
            clock,
            secret_key,
            live_send_actors: live_send_actors.clone(),
            leases: leases.clone(),
        };
        let callbacks_arbiter = Arbiter::new().handle();
        let callbacks_context = context.clone();
        CallbackDelivery::start_in_arbiter(&callbacks_arbiter, move |_| {
            CallbackDelivery::new(callbacks_context)
        });
        let arbiter = Arbiter::new().handle();
        let supervisor =
            JobSupervisor::start_in_arbiter(&arbiter, move |_| JobSupervisor::new(context));
        let keeper = if leases.is_cluster() {
            let drain = std::time::Duration::from_secs(config.graph_timeout_secs);
            let bind = config.bind.clone();
            match LeaseKeeper::start(db, leases.clone(), bind, supervisor.clone(), drain) {
                Ok(keeper) => Some(keeper),
                Err(err) => {
                    // The node never joins: /readyz stays 503 and it runs no send.
                    tracing::error!(error = %err, "The lease keeper thread did not start.");
                    None
                }
            }
        } else {
            None
        };
        Engine {
            supervisor,
            arbiter,
            callbacks_arbiter,
            ingest_counters: Arc::default(),
            live_send_actors,
            leases,
            keeper,
        }
    }

    /// The portfolios this node runs.
    pub fn leases(&self) -> &Leases {
        &self.leases
    }

    /// A clean stop on a cluster, after [`Engine::drain`]: the node hands every lease over
    /// and leaves, so other nodes take its portfolios at once.
    pub fn leave_cluster(&self, timeout: std::time::Duration) {
        if let Some(keeper) = &self.keeper {
            keeper.leave(timeout);
        }
    }

    /// A send was stored: start dispatching it.
    pub fn send_created(&self, id: String) {
        self.supervisor.do_send(StartSend { id });
    }

    /// Cancels, pauses or resumes a send; `AlreadyFinished` when nothing owns it any more.
    pub async fn control(
        &self,
        id: String,
        action: ControlAction,
    ) -> Result<ControlOutcome, EngineError> {
        let routed = self
            .supervisor
            .send(RouteControl {
                id,
                control: Control(action),
            })
            .await
            .map_err(|_| EngineError::Stopped)?;
        match routed {
            Some(result) => Ok(result?),
            None => Ok(ControlOutcome::AlreadyFinished),
        }
    }

    /// Applies what a webhook notification changes; answers once all of it is durable and the
    /// live actors and limiters concerned follow it.
    pub async fn apply_webhook(
        &self,
        changes: WebhookChanges,
    ) -> Result<IngestOutcome, EngineError> {
        let outcome = self
            .supervisor
            .send(ApplyWebhook { changes })
            .await
            .map_err(|_| EngineError::Stopped)??;
        self.ingest_counters.record(&outcome);
        Ok(outcome)
    }

    /// The webhook counters.
    pub fn ingest_counters(&self) -> &IngestCounters {
        &self.ingest_counters
    }

    /// How many send actors are running: one per unsettled send, none once a send has
    /// settled.
    pub fn live_send_actors(&self) -> usize {
        self.live_send_actors.load(Ordering::Relaxed)
    }

    /// Whether every unfinished send found at boot has been resumed.
    pub async fn is_resumed(&self) -> bool {
        self.supervisor.send(IsResumed).await.unwrap_or(false)
    }

    /// A clean stop: nothing new is dispatched, every call in flight finishes and its outcome
    /// is written. Returns `false` if that took longer than `timeout` (what is still in
    /// flight then is reconciled at the next start).
    pub async fn drain(&self, timeout: std::time::Duration) -> bool {
        let drained = self.supervisor.send(DrainAll);
        matches!(
            actix_web::rt::time::timeout(timeout, drained).await,
            Ok(Ok(()))
        )
    }

    /// Stops the engine's arbiters (their actors stop with them) and the lease keeper, the
    /// hard way: leases this node held stay until they expire.
    pub fn stop(&self) {
        if let Some(keeper) = &self.keeper {
            keeper.halt();
        }
        self.arbiter.stop();
        self.callbacks_arbiter.stop();
    }
}

/// The clock was moved by hand (tests): actors whose timers were computed from it look again.
pub struct ClockMoved;

/// The moves of a hand-moved clock as a stream for an actor (`ctx.add_stream`); `None` for the
/// wall clock, whose timers fire by themselves.
pub fn clock_moves(
    clock: &crate::clock::SharedClock,
) -> Option<impl futures_util::Stream<Item = ClockMoved>> {
    let moves = clock.moves()?;
    Some(futures_util::stream::unfold(
        moves,
        |mut moves| async move {
            moves.changed().await.ok()?;
            Some((ClockMoved, moves))
        },
    ))
}
