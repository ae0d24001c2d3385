//! `BulkSendActor`: owns one bulk send from its first dispatch to its last outcome.
//!
//! It pages the send's due pending messages out of the database (never all of them at
//! once), offers them to its number's [`PhoneLimiter`](super::limiter::PhoneLimiter), and
//! for every grant: marks the messages `dispatching` durably (one group commit), then calls
//! the Graph API with bounded concurrency, and records the outcomes in batches. Messages
//! whose outcome is unknown (a timeout, a crash) wait for a webhook naming them for the
//! reconcile grace period, then are resent or failed by policy.
//!
//! The actor runs under actix's `Supervisor`: on an error it cannot handle (the database
//! unreachable while loading) it stops and is restarted with a fresh state rebuilt from the
//! database. When the send settles it tells the supervisor and the limiter, which drop their
//! addresses, and it stops for good.

mod control;
mod pipeline;
mod setup;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::limiter::{Grants, LimiterCall, PhoneLimiter};
use super::supervisor::{JobSupervisor, SendSettled};
use super::EngineContext;
use crate::domain::lifecycle::{LoadAt, Phase, Timing};
use crate::domain::template::TemplateSpec;
use crate::meta::client::GraphClient;
use crate::meta::error::SendFailure;
use crate::storage::sends::{self, Outcome, PendingCursor, PendingMessage};

pub use self::control::{Control, ControlOutcome, Disown, Drain, Reload, WebhookEffect};
pub use crate::domain::lifecycle::ControlAction;

/// How long Meta's answers wait to be written together: one write per batch, not per answer.
const FLUSH_DELAY: Duration = Duration::from_millis(10);
/// Messages loaded per page.
const PAGE: i64 = 1_000;
/// Messages kept offered to the limiter at once.
const OFFER_TARGET: usize = 1_000;
/// Most messages a send has offered, being marked or in flight at once: without a bound, a
/// number whose pacing is lifted would queue every recipient on the HTTP connection pool
/// at once (memory, and latency for everything behind them).
const MAX_OUTSTANDING: usize = 1_000;
/// How long after a failed read of due messages it is tried again (clock ms).
const LOAD_RETRY_MS: i64 = 1_000;
/// Outcomes written in one batch at most.
const FLUSH_MAX: usize = 1_000;
/// How long after its grant a message is handed to Meta. Marking it `dispatching` must be
/// committed first; waiting a fixed time (rather than "as soon as committed") keeps the
/// grants' spacing intact when commits take longer at one moment than another.
const PIPELINE_DELAY: Duration = Duration::from_millis(25);

/// What a send needs to dispatch, loaded when the actor starts.
struct SendSetup {
    phone_row_id: i64,
    phone_number_id: String,
    portfolio_id: String,
    access_token: String,
    template_name: String,
    language: String,
    spec: TemplateSpec,
    scheduled_at: Option<i64>,
}

/// A message handed to Meta and not yet answered.
struct InFlight {
    recipient: String,
    attempts: i32,
    dispatched_at: i64,
}

/// The actor.
pub struct BulkSendActor {
    id: String,
    ctx: EngineContext,
    graph: GraphClient,
    supervisor: Addr<JobSupervisor>,
    limiter: Addr<PhoneLimiter>,
    /// Set once the send's details are loaded.
    setup: Option<Arc<SendSetup>>,
    /// Where the scan of due pending messages stands.
    cursor: PendingCursor,
    /// Bumped at every rewind of the scan, so that a page read before a rewind does not
    /// move the cursor past messages the rewind was for.
    cursor_epoch: u64,
    /// Where the send stands: running, paused, cancelled, stopped or retired. Every decision
    /// that depends on it is `domain::lifecycle`'s or `domain::dispatch`'s.
    phase: Phase,
    /// When to look for due messages again: now, at the next retry's time once everything due
    /// was loaded, or never while nothing pending is left to load (until an event puts some
    /// back).
    load_at: LoadAt,
    /// A read of due messages is under way.
    loading: bool,
    /// Loaded messages offered to the limiter, by id.
    offered: HashMap<i64, PendingMessage>,
    /// Granted, being marked `dispatching`.
    marking: usize,
    in_flight: HashMap<i64, InFlight>,
    /// Outcomes not yet written.
    outcomes: Vec<(i64, Outcome)>,
    /// Recipients whose message Meta answered since the limiter was last told.
    answered: Vec<String>,
    flushing: bool,
    /// Messages with an unknown outcome: (id, when the grace period ends).
    unknown: Vec<(i64, i64)>,
    /// A read of the send's row, to see whether it has settled, is under way.
    checking_settled: bool,
    /// Restarts so far (for backoff).
    restarts: u32,
    /// The timer set for the next thing due by the clock (a schedule, a retry, a reconcile
    /// deadline): its time (unix ms) and handle. There is no periodic tick: the actor runs on
    /// events (grants, answers, controls, webhook effects, finished reads and writes) and on
    /// this timer, so a waiting send costs nothing.
    wake: Option<(i64, SpawnHandle)>,
    /// The timer that writes the answers gathered so far.
    flush_timer: Option<SpawnHandle>,
    /// Something may have finished the send (an outcome written, a cancel or stop, nothing
    /// left to load): the stored counters are checked once the actor is idle.
    maybe_settled: bool,
    /// The moves of a hand-moved clock (tests), followed until the actor retires.
    clock_moves: Option<SpawnHandle>,
    /// Set by a drain (the daemon stopping cleanly; not a phase of the send, which is never
    /// stored as draining): nothing new is dispatched; the waiters are answered once nothing
    /// is in flight and every outcome is written.
    draining: bool,
    drain_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// This node no longer runs the send's portfolio (cluster): once drained, the actor
    /// retires, leaving the send to the lease's new owner.
    disowned: bool,
    /// Bumped by every control request and webhook effect, and again when a control's write
    /// commits: a read of the row that overlapped one keeps the in-memory pause and cancel
    /// phase ([`BulkSendActor::stored_row_is_fresh`]).
    control_generation: u64,
    /// Control writes (pause, resume, cancel) not yet committed. While one is, the stored
    /// flags are older than the in-memory ones.
    control_writes: usize,
}

impl BulkSendActor {
    pub fn new(
        id: String,
        ctx: EngineContext,
        graph: GraphClient,
        supervisor: Addr<JobSupervisor>,
        limiter: Addr<PhoneLimiter>,
    ) -> Self {
        BulkSendActor {
            id,
            ctx,
            graph,
            supervisor,
            limiter,
            setup: None,
            cursor: (i64::MIN, 0),
            cursor_epoch: 0,
            phase: Phase::Running,
            load_at: LoadAt::Now,
            loading: false,
            offered: HashMap::new(),
            marking: 0,
            in_flight: HashMap::new(),
            outcomes: Vec::new(),
            answered: Vec::new(),
            flushing: false,
            unknown: Vec::new(),
            checking_settled: false,
            restarts: 0,
            wake: None,
            flush_timer: None,
            maybe_settled: true,
            clock_moves: None,
            draining: false,
            drain_waiters: Vec::new(),
            disowned: false,
            control_generation: 0,
            control_writes: 0,
        }
    }

    fn now(&self) -> i64 {
        self.ctx.clock.now_ms()
    }

    fn grace_ms(&self) -> i64 {
        i64::try_from(self.ctx.config.reconcile_grace_secs)
            .unwrap_or(i64::MAX / 2)
            .saturating_mul(1000)
    }

    /// Does what is due now, then sets the timers for what comes next. Runs after every event
    /// (a grant, an answer, a control, a webhook effect, a finished read or write, the clock
    /// moving) and when a timer fires; never on a fixed period.
    fn poke(&mut self, ctx: &mut Context<Self>) {
        if self.draining {
            self.flush(ctx);
            if self.answer_drain() && self.disowned && self.phase != Phase::Retired {
                self.retire(ctx);
            }
            return;
        }
        if self.checking_settled || self.phase == Phase::Retired {
            return;
        }
        // Until its setup is loaded a send does nothing, unless it was stopped while starting
        // (an unreadable template, a token that does not open): then it only settles.
        if self.setup.is_none() && self.phase.stop_reason().is_none() {
            return;
        }
        let now = self.now();
        self.reconcile_due(now);
        self.refill(now, ctx);
        self.settle_if_done(ctx);
        self.arm_timers(now, ctx);
    }

    /// Sets the flush timer when answers wait to be written or reported to the limiter, and the
    /// wake-up timer for the earliest thing due by the clock (re-armed only when that is earlier
    /// than the armed one).
    fn arm_timers(&mut self, now: i64, ctx: &mut Context<Self>) {
        let waiting = !self.outcomes.is_empty() || !self.answered.is_empty();
        if waiting && !self.flushing && self.flush_timer.is_none() {
            self.flush_timer = Some(ctx.run_later(FLUSH_DELAY, |act, ctx| {
                act.flush_timer = None;
                act.flush(ctx);
            }));
        }
        let deadlines = self.unknown.iter().map(|&(_, deadline)| deadline);
        let Some(at) = self.timing().next_wakeup(&self.phase, now, deadlines) else {
            return;
        };
        if self.wake.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let delay = Duration::from_millis(u64::try_from(at.saturating_sub(now)).unwrap_or(0));
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.poke(ctx);
        });
        self.wake = Some((at, handle));
    }

    /// What the clock-driven decisions (`domain::lifecycle::Timing`) depend on, now.
    fn timing(&self) -> Timing {
        Timing {
            scheduled_at: self.setup.as_ref().and_then(|s| s.scheduled_at),
            load_at: self.load_at,
            loading: self.loading,
            draining: self.draining,
        }
    }

    /// Answers drain waiters once nothing is in flight and every outcome is written; returns
    /// whether that is so.
    fn answer_drain(&mut self) -> bool {
        let quiet = self.in_flight.is_empty()
            && self.marking == 0
            && self.outcomes.is_empty()
            && !self.flushing;
        if quiet {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
        quiet
    }

    fn may_dispatch(&self, now: i64) -> bool {
        self.timing().may_dispatch(&self.phase, now)
    }

    /// Finishes when something may have finished the send, nothing is left here and the
    /// database agrees nothing is pending (one read per such moment, not per poke).
    fn settle_if_done(&mut self, ctx: &mut Context<Self>) {
        if !self.maybe_settled {
            return;
        }
        let idle = self.offered.is_empty()
            && self.marking == 0
            && self.in_flight.is_empty()
            && self.outcomes.is_empty()
            && !self.flushing
            && !self.loading
            && self.unknown.is_empty();
        if !idle || self.checking_settled {
            return;
        }
        if !self
            .timing()
            .worth_checking_settled(&self.phase, self.now())
        {
            return;
        }
        let id = self.id.clone();
        self.checking_settled = true;
        self.maybe_settled = false;
        let fut = self.ctx.db.run(move |conn| sends::load_send(conn, &id));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.checking_settled = false;
            match result {
                Ok(Some(send)) if send.is_settled() => {
                    tracing::info!(bulk_send_id = %act.id, status = %send.status, "The bulk send finished.");
                    act.retire(ctx);
                }
                Ok(None) => act.retire(ctx),
                // Something is still pending (paused, scheduled, waiting for a retry): an
                // event or the wake-up timer brings it.
                Ok(Some(_)) => act.poke(ctx),
                Err(err) => {
                    tracing::warn!(bulk_send_id = %act.id, error = %err, "Checking whether a send finished failed; checking again shortly.");
                    act.maybe_settled = true;
                    ctx.run_later(Duration::from_secs(1), |act, ctx| act.poke(ctx));
                }
            }
        }));
    }

    /// Leaves for good: the supervisor and the limiter drop their addresses, and the actor,
    /// with nothing left to run, stops once the last of them is gone. It must not stop
    /// itself: actix's `Supervisor` restarts an actor that stops while its address is still
    /// held, and the restarted one would register with the limiter again, find the send
    /// settled, retire and be restarted again, for as long as the process lives.
    fn retire(&mut self, ctx: &mut Context<Self>) {
        self.limiter.do_send(LimiterCall::Unregister {
            send_id: self.id.clone(),
        });
        self.supervisor.do_send(SendSettled {
            id: self.id.clone(),
            addr: ctx.address(),
        });
        self.phase = Phase::Retired;
        if let Some((_, wake)) = self.wake.take() {
            ctx.cancel_future(wake);
        }
        if let Some(flush) = self.flush_timer.take() {
            ctx.cancel_future(flush);
        }
        if let Some(moves) = self.clock_moves.take() {
            ctx.cancel_future(moves);
        }
    }
}

impl Actor for BulkSendActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let delay = Duration::from_millis(u64::from(self.restarts.min(10)) * 500);
        ctx.run_later(delay, |act, ctx| {
            act.load(ctx);
            act.limiter.do_send(LimiterCall::Register {
                send_id: act.id.clone(),
                grants: ctx.address().recipient(),
            });
        });
        if let Some(moves) = super::clock_moves(&self.ctx.clock) {
            self.clock_moves = Some(ctx.add_stream(moves));
        }
        self.ctx.live_send_actors.fetch_add(1, Ordering::Relaxed);
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.ctx.live_send_actors.fetch_sub(1, Ordering::Relaxed);
    }
}

impl actix::Supervised for BulkSendActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::info!(bulk_send_id = %self.id, "Restarting a bulk send actor from the database.");
        self.limiter.do_send(LimiterCall::Withdraw {
            send_id: self.id.clone(),
        });
        let restarts = self.restarts + 1;
        *self = BulkSendActor::new(
            self.id.clone(),
            self.ctx.clone(),
            self.graph.clone(),
            self.supervisor.clone(),
            self.limiter.clone(),
        );
        self.restarts = restarts;
    }
}

impl Handler<Grants> for BulkSendActor {
    type Result = ();

    fn handle(&mut self, msg: Grants, ctx: &mut Context<Self>) {
        if self.phase == Phase::Retired {
            return;
        }
        self.dispatch(msg.ids, ctx);
        self.poke(ctx);
    }
}

/// A hand-moved clock (tests) moved: what is due by it is looked at again.
impl StreamHandler<super::ClockMoved> for BulkSendActor {
    fn handle(&mut self, _: super::ClockMoved, ctx: &mut Context<Self>) {
        self.poke(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The clock is gone with its test; the actor keeps running.
    }
}

/// Meta's answer to one message handed to it by [`BulkSendActor::send_one`]. An actor that
/// stopped meanwhile leaves the message `dispatching`, for the reconciliation.
#[derive(Message)]
#[rtype(result = "()")]
struct Answer {
    id: i64,
    result: Result<crate::meta::client::Accepted, SendFailure>,
}

impl Handler<Answer> for BulkSendActor {
    type Result = ();

    fn handle(&mut self, msg: Answer, ctx: &mut Context<Self>) {
        self.on_answer(msg.id, msg.result, ctx);
        self.poke(ctx);
    }
}
