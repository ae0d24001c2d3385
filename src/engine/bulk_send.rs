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

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use serde_json::Value;

use super::ingest::SendEffect;
use super::limiter::{Feedback, Grants, LimiterCall, PhoneLimiter};
use super::supervisor::{JobSupervisor, SendSettled};
use super::EngineContext;
use crate::domain::dispatch::{self, LimiterFeedback, SendEffect as DispatchEffect, SendFlags};
use crate::domain::message::BulkStatus;
use crate::domain::template::TemplateSpec;
use crate::meta::client::{GraphClient, TemplateMessage};
use crate::meta::error::SendFailure;
use crate::storage::accounts;
use crate::storage::sends::{self, DispatchMarks, Outcome, PendingCursor, PendingMessage};
use crate::storage::StorageError;
use crate::telemetry;

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
    /// Not before this time (unix ms) look for due messages again: `i64::MIN` to look now,
    /// the next retry's time once everything due was loaded, `i64::MAX` when nothing pending
    /// is left to load (until an event puts some back).
    next_load_at: i64,
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
    paused: bool,
    cancelled: bool,
    stopped: bool,
    /// Why the send was stopped, for the messages it stops.
    stop_reason: Option<String>,
    settling: bool,
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
    /// Set by a drain (a clean stop): nothing new is dispatched; the waiters are answered
    /// once nothing is in flight and every outcome is written.
    draining: bool,
    drain_waiters: Vec<tokio::sync::oneshot::Sender<()>>,
    /// Bumped by every control request and webhook effect, and again when a control's write
    /// commits: a read of the row that overlapped one keeps the in-memory pause and cancel
    /// flags ([`BulkSendActor::stored_flags_apply`]).
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
            next_load_at: i64::MIN,
            loading: false,
            offered: HashMap::new(),
            marking: 0,
            in_flight: HashMap::new(),
            outcomes: Vec::new(),
            answered: Vec::new(),
            flushing: false,
            unknown: Vec::new(),
            paused: false,
            cancelled: false,
            stopped: false,
            stop_reason: None,
            settling: false,
            restarts: 0,
            wake: None,
            flush_timer: None,
            maybe_settled: true,
            clock_moves: None,
            draining: false,
            drain_waiters: Vec::new(),
            control_generation: 0,
            control_writes: 0,
        }
    }

    fn now(&self) -> i64 {
        self.ctx.clock.now_ms()
    }

    /// Loads the send, its number and template, and the messages left in `dispatching` by a
    /// previous run (their outcome is unknown: they wait for a webhook for the grace period,
    /// counted from when they were dispatched).
    fn load(&mut self, ctx: &mut Context<Self>) {
        let id = self.id.clone();
        let grace_ms = self.grace_ms();
        let generation = self.control_generation;
        let fut = self.ctx.db.run(move |conn| {
            let Some(send) = sends::load_send(conn, &id)? else {
                return Ok(None);
            };
            let Some((number, account)) = accounts::number_by_id(conn, send.phone_number_id)?
            else {
                return Ok(None);
            };
            let Some(template) = accounts::template_by_id(conn, send.template_id)? else {
                return Ok(None);
            };
            let dispatching = sends::dispatching_messages(conn, &id)?;
            Ok::<_, StorageError>(Some((send, number, account, template, dispatching)))
        });
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Some((send, number, account, template, dispatching))) => {
                let components: Value = serde_json::from_str(&template.components).unwrap_or(Value::Null);
                let spec = match TemplateSpec::from_meta(Some(&template.parameter_format), &components) {
                    Ok(spec) => spec,
                    Err(err) => {
                        let reason = format!("template_unusable: {err}");
                        act.stop_send(reason, ctx);
                        return;
                    }
                };
                // A token that does not open is never sent to Meta (see storage::secrets).
                let opened =
                    crate::storage::secrets::open_access_token(&act.ctx.secret_key, &account);
                let access_token = match opened {
                    Ok(token) => token,
                    Err(err) => {
                        act.stop_send(format!("secret_unavailable: {err}"), ctx);
                        return;
                    }
                };
                act.adopt_stored_flags(&send, generation);
                act.unknown = dispatching
                    .into_iter()
                    .map(|m| (m.id, m.dispatched_at.unwrap_or(0) + grace_ms))
                    .collect();
                act.setup = Some(Arc::new(SendSetup {
                    phone_row_id: number.id,
                    phone_number_id: number.phone_number_id,
                    portfolio_id: account.portfolio_id,
                    access_token,
                    template_name: template.name,
                    language: template.language,
                    spec,
                    scheduled_at: send.scheduled_at,
                }));
                tracing::debug!(bulk_send_id = %act.id, "A bulk send actor is running.");
                act.poke(ctx);
            }
            Ok(None) => {
                tracing::warn!(bulk_send_id = %act.id, "A bulk send vanished from the database; its actor stops.");
                act.retire(ctx);
            }
            Err(err) => {
                tracing::warn!(bulk_send_id = %act.id, error = %err, "Loading a bulk send failed; its actor restarts.");
                ctx.stop();
            }
        }));
    }

    /// Takes the stored pause, cancel and stop flags (the database refused to mark messages of
    /// this send). A control handled while the row is read is fresher and wins.
    fn follow_stored_flags(&mut self, ctx: &mut Context<Self>) {
        self.withdraw();
        let id = self.id.clone();
        let generation = self.control_generation;
        let fut = self.ctx.db.run(move |conn| sends::load_send(conn, &id));
        ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Some(send)) => {
                        act.adopt_stored_flags(&send, generation);
                        act.maybe_settled = true;
                        act.poke(ctx);
                    }
                    Ok(None) => act.retire(ctx),
                    Err(err) => {
                        tracing::warn!(bulk_send_id = %act.id, error = %err,
                    "Reading a send's flags failed; the actor restarts from the database.");
                        ctx.stop();
                    }
                }),
        );
    }

    /// Takes the pause, cancel and stop flags of a row read that began at `generation`. A
    /// control handled meanwhile is fresher than the row and keeps the in-memory pause and
    /// cancel flags; a stop is final either way.
    fn adopt_stored_flags(&mut self, send: &sends::BulkSendRow, generation: u64) {
        if self.stored_flags_apply(generation) {
            self.paused = send.paused;
            self.cancelled = send.status() == BulkStatus::Cancelled;
        }
        if let Some(reason) = &send.failure_reason {
            self.stopped = true;
            self.stop_reason = Some(reason.clone());
        }
    }

    /// Whether a read of the send's row that began at `generation` may replace the in-memory
    /// pause and cancel flags: no control or webhook effect was handled since, and no control's
    /// write is still committing (the row read may predate it even when nothing was handled
    /// in between: the write was queued before the read began).
    fn stored_flags_apply(&self, generation: u64) -> bool {
        self.control_generation == generation && self.control_writes == 0
    }

    /// A control's write begins.
    fn control_write_started(&mut self) {
        self.control_generation += 1;
        self.control_writes += 1;
    }

    /// A control's write has committed (or failed).
    fn control_write_done(&mut self) {
        self.control_generation += 1;
        self.control_writes = self.control_writes.saturating_sub(1);
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
            self.answer_drain();
            return;
        }
        if self.setup.is_none() || self.settling {
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
        let Some(at) = self.next_wakeup(now) else {
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

    /// The earliest time after `now` (unix ms) at which something becomes due by the clock
    /// alone: a reconcile deadline, the schedule, the next retry. `None`: only an event can
    /// bring work (a paused or quota-blocked send sleeps until one).
    fn next_wakeup(&self, now: i64) -> Option<i64> {
        let deadlines = self.unknown.iter().map(|&(_, deadline)| deadline);
        let scheduled = self.setup.as_ref().and_then(|s| s.scheduled_at);
        let held = self.paused || self.cancelled || self.stopped || self.draining;
        let load = match scheduled {
            _ if held => None,
            Some(at) if at > now => Some(at),
            _ if self.loading || self.next_load_at == i64::MAX => None,
            _ => Some(self.next_load_at),
        };
        deadlines.chain(load).filter(|&t| t > now).min()
    }

    /// Answers drain waiters once nothing is in flight and every outcome is written.
    fn answer_drain(&mut self) {
        let quiet = self.in_flight.is_empty()
            && self.marking == 0
            && self.outcomes.is_empty()
            && !self.flushing;
        if quiet {
            for waiter in self.drain_waiters.drain(..) {
                let _ = waiter.send(());
            }
        }
    }

    fn may_dispatch(&self, now: i64) -> bool {
        let scheduled = self
            .setup
            .as_ref()
            .and_then(|s| s.scheduled_at)
            .is_some_and(|at| at > now);
        !(self.paused || self.cancelled || self.stopped || self.draining || scheduled)
    }

    /// Loads the next page of due messages when the offer runs low.
    fn refill(&mut self, now: i64, ctx: &mut Context<Self>) {
        if self.loading
            || !self.may_dispatch(now)
            || now < self.next_load_at
            || self.offered.len() >= OFFER_TARGET / 2
        {
            return;
        }
        let outstanding = self.offered.len() + self.marking + self.in_flight.len();
        let room =
            (OFFER_TARGET - self.offered.len()).min(MAX_OUTSTANDING.saturating_sub(outstanding));
        if room < MAX_OUTSTANDING / 10 {
            // Loaded again once answers have freed a useful share.
            return;
        }
        self.loading = true;
        let (id, cursor, epoch) = (self.id.clone(), self.cursor, self.cursor_epoch);
        let limit = PAGE.min(room as i64);
        let fut = self.ctx.db.run(move |conn| {
            let page = sends::due_pending(conn, &id, cursor, now, limit)?;
            // Everything due now is loaded: when is the next retry due?
            let next_due = match (page.len() as i64) < limit {
                true => Some(sends::next_due_after(conn, &id, now)?),
                false => None,
            };
            Ok::<_, StorageError>((page, next_due))
        });
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.loading = false;
            match result {
                Ok((page, next_due)) => {
                    // After a rewind during this load, look again at once.
                    let current = act.cursor_epoch == epoch;
                    if let (true, Some(next_due)) = (current, next_due) {
                        act.next_load_at = next_due.unwrap_or(i64::MAX);
                        // Nothing pending left to load: the send may be finished.
                        act.maybe_settled |= next_due.is_none() && page.is_empty();
                    }
                    if page.is_empty() {
                        act.poke(ctx);
                        return;
                    }
                    if let (true, Some(last)) = (current, page.last()) {
                        act.cursor = (last.next_attempt_at, last.id);
                    }
                    if !act.may_dispatch(act.now()) {
                        // Paused or cancelled while loading: forget the page, the cursor
                        // rewinds so a resume finds it again.
                        act.rewind();
                        return;
                    }
                    let candidates: Vec<(i64, String)> =
                        page.iter().map(|m| (m.id, m.recipient.clone())).collect();
                    for m in page {
                        act.offered.insert(m.id, m);
                    }
                    act.limiter.do_send(LimiterCall::Offer {
                        send_id: act.id.clone(),
                        candidates,
                    });
                    act.poke(ctx);
                }
                Err(err) => {
                    tracing::warn!(bulk_send_id = %act.id, error = %err, "Loading due messages failed; retrying.");
                    act.next_load_at = act.now().saturating_add(LOAD_RETRY_MS);
                    act.poke(ctx);
                }
            }
        }));
    }

    /// Restarts the scan of due messages from the beginning.
    fn rewind(&mut self) {
        self.cursor = (i64::MIN, 0);
        self.cursor_epoch += 1;
        self.next_load_at = i64::MIN;
    }

    /// Granted messages: mark them `dispatching` durably, then send them.
    fn dispatch(&mut self, ids: Vec<i64>, ctx: &mut Context<Self>) {
        let Some(setup) = self.setup.clone() else {
            return;
        };
        let granted: Vec<PendingMessage> = ids
            .iter()
            .filter_map(|id| self.offered.remove(id))
            .collect();
        if granted.is_empty() {
            return;
        }
        let now = self.now();
        let marks: Vec<(i64, String)> = granted
            .iter()
            .map(|m| (m.id, m.recipient.clone()))
            .collect();
        let (id, portfolio) = (self.id.clone(), setup.portfolio_id.clone());
        self.marking += granted.len();
        let granted_at = Instant::now();
        let fut = self
            .ctx
            .writer
            .write(move |conn| sends::mark_dispatching(conn, &id, &portfolio, &marks, now));
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(DispatchMarks::Held) => {
                // The stored send is paused, cancelled or stopped by a change this actor has
                // not followed yet: nothing was marked; take the stored flags.
                act.marking -= granted.len();
                act.follow_stored_flags(ctx);
            }
            Ok(DispatchMarks::Marked(marked)) => {
                let marked: std::collections::HashSet<i64> = marked.into_iter().collect();
                let count = granted.len();
                let batch: Vec<PendingMessage> = granted
                    .into_iter()
                    .filter(|m| marked.contains(&m.id))
                    .collect();
                // Sent a fixed delay after the grant, not whenever the commit happened to
                // finish: the spacing the limiter chose survives commit-latency jitter.
                let wait = (granted_at + PIPELINE_DELAY).saturating_duration_since(Instant::now());
                if wait.is_zero() {
                    act.release(batch, count, now, setup, ctx);
                } else {
                    ctx.run_later(wait, move |act, ctx| {
                        act.release(batch, count, now, setup, ctx)
                    });
                }
            }
            Err(err) => {
                act.marking -= granted.len();
                tracing::warn!(bulk_send_id = %act.id, error = %err,
                    "Marking messages as dispatching failed; the actor restarts from the database.");
                ctx.stop();
            }
        }));
    }

    /// Sends marked messages, unless the send was cancelled or stopped meanwhile.
    fn release(
        &mut self,
        batch: Vec<PendingMessage>,
        granted: usize,
        dispatched_at: i64,
        setup: Arc<SendSetup>,
        ctx: &mut Context<Self>,
    ) {
        self.marking -= granted;
        for message in batch {
            // Cancelled or stopped after the grant: never sent.
            match dispatch::after_grant(self.flags(), self.stop_reason.as_deref()) {
                Some(outcome) => self.outcomes.push((message.id, outcome)),
                None => self.send_one(message, dispatched_at, setup.clone(), ctx),
            }
        }
        self.poke(ctx);
    }

    fn send_one(
        &mut self,
        message: PendingMessage,
        dispatched_at: i64,
        setup: Arc<SendSetup>,
        ctx: &mut Context<Self>,
    ) {
        let variables: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&message.variables).unwrap_or_default();
        let buttons: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&message.button_variables).unwrap_or_default();
        let components = setup.spec.render(&variables, &buttons);
        let opaque = format!("{}/{}", self.id, message.id);
        let body = serde_json::to_vec(&TemplateMessage::new(
            &message.recipient,
            &opaque,
            &setup.template_name,
            &setup.language,
            &components,
        ));
        let attempts = message.attempts + 1;
        self.in_flight.insert(
            message.id,
            InFlight {
                recipient: message.recipient,
                attempts,
                dispatched_at,
            },
        );
        let graph = self.graph.clone();
        let id = message.id;
        telemetry::messages_dispatched(1);
        let fut = async move {
            match body {
                Ok(body) => {
                    graph
                        .send_raw(&setup.access_token, &setup.phone_number_id, body)
                        .await
                }
                Err(e) => Err(SendFailure::Connect(format!(
                    "cannot encode the message: {e}"
                ))),
            }
        };
        // A task of its own, not a future of this actor's context: the context polls every
        // future it holds whenever any of them wakes, which costs quadratic time with
        // thousands of calls in flight (most waiting for a pooled connection).
        let addr = ctx.address();
        actix_web::rt::spawn(async move {
            let result = fut.await;
            addr.do_send(Answer { id, result });
        });
    }

    /// Meta's answer to one message: the decision is `domain::dispatch`'s; the actor records
    /// the outcome, tells the limiter, and pauses or stops what the decision says.
    fn on_answer(
        &mut self,
        id: i64,
        result: Result<crate::meta::client::Accepted, SendFailure>,
        ctx: &mut Context<Self>,
    ) {
        let Some(flight) = self.in_flight.remove(&id) else {
            return;
        };
        self.answered.push(flight.recipient.clone());
        let now = self.now();
        let decision = match result {
            Ok(accepted) => {
                telemetry::message_accepted();
                dispatch::on_accepted(accepted.wamid)
            }
            Err(failure) => {
                let attempt = u32::try_from(flight.attempts.max(1) - 1).unwrap_or(0);
                let action = failure.action(attempt);
                telemetry::message_failed(action.as_ref());
                let (code, message) = match &failure {
                    SendFailure::Meta(e) => (e.has_meta_code().then_some(e.code), e.to_string()),
                    other => (None, other.to_string()),
                };
                dispatch::on_failure(
                    action.as_ref(),
                    code,
                    &message,
                    flight.attempts,
                    self.flags(),
                    now,
                )
            }
        };
        match decision.feedback {
            Some(LimiterFeedback::Throttled { after }) => self
                .limiter
                .do_send(LimiterCall::Feedback(Feedback::Throttled { after })),
            Some(LimiterFeedback::PairRate { until_ms }) => {
                self.limiter
                    .do_send(LimiterCall::Feedback(Feedback::PairRate {
                        recipient: flight.recipient.clone(),
                        until_ms,
                    }))
            }
            None => {}
        }
        for effect in decision.effects {
            match effect {
                DispatchEffect::PauseNumber(reason) => self.pause_number(reason, ctx),
                DispatchEffect::PauseSend(reason) => self.pause_self(reason, ctx),
                DispatchEffect::StopSend(reason) => self.stop_send(reason, ctx),
            }
        }
        match decision.outcome {
            Some(outcome) => {
                self.outcomes.push((id, outcome));
                self.flush_if_full(ctx);
            }
            None => {
                // Meta may have taken it: wait for a webhook naming it.
                tracing::debug!(bulk_send_id = %self.id, message_id = id,
                    "A dispatch has an unknown outcome; waiting for a webhook.");
                self.unknown
                    .push((id, flight.dispatched_at + self.grace_ms()));
            }
        }
    }

    /// The flags the dispatch decisions depend on.
    fn flags(&self) -> SendFlags {
        SendFlags {
            cancelled: self.cancelled,
            stopped: self.stopped,
        }
    }

    fn flush_if_full(&mut self, ctx: &mut Context<Self>) {
        if self.outcomes.len() >= FLUSH_MAX {
            self.flush(ctx);
        }
    }

    /// Writes the outcomes gathered so far in one job.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if !self.answered.is_empty() {
            // The pair rate counts from Meta's answer when it came after the grant.
            self.limiter.do_send(LimiterCall::Answered {
                recipients: std::mem::take(&mut self.answered),
                at_ms: self.now(),
            });
        }
        if self.flushing || self.outcomes.is_empty() {
            return;
        }
        let take = self.outcomes.len().min(FLUSH_MAX);
        let batch: Vec<(i64, Outcome)> = self.outcomes.drain(..take).collect();
        self.flushing = true;
        let id = self.id.clone();
        let now = self.now();
        let fut = self
            .ctx
            .writer
            .write(move |conn| sends::record_outcomes(conn, &id, &batch, now).map(|s| (s, batch)));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.flushing = false;
            match result {
                Ok((_, batch)) => {
                    for (_, outcome) in &batch {
                        match outcome {
                            // Messages put back to pending may sort before the scan's
                            // position: scan again from the start. Messages already offered
                            // are not offered twice, and marking is conditional, so none can
                            // go out twice.
                            Outcome::Reset { .. } => act.rewind(),
                            // A retry is due later: look for due messages again then.
                            Outcome::Retry {
                                next_attempt_at, ..
                            } => act.next_load_at = act.next_load_at.min(*next_attempt_at),
                            _ => {}
                        }
                    }
                    act.maybe_settled = true;
                    // What came in during this write goes at once: it has waited as long.
                    act.flush(ctx);
                    act.poke(ctx);
                }
                Err(err) => {
                    // The messages stay `dispatching` in the database; a restart reconciles
                    // them. Restarting now is the honest way to not lose track.
                    tracing::warn!(bulk_send_id = %act.id, error = %err,
                        "Recording outcomes failed; the actor restarts from the database.");
                    ctx.stop();
                }
            }
        }));
    }

    /// Unknown outcomes whose grace period is over: resend or fail, by policy.
    fn reconcile_due(&mut self, now: i64) {
        if self.unknown.is_empty() {
            return;
        }
        let (policy, flags) = (self.ctx.config.reconcile_policy, self.flags());
        let (due, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unknown)
            .into_iter()
            .partition(|&(_, deadline)| deadline <= now);
        self.unknown = still;
        for (id, _) in due {
            self.outcomes
                .push((id, dispatch::reconcile(policy, flags, now)));
        }
    }

    /// Pauses this send on its own (a paused template). A pause already stored (the client's)
    /// keeps its reason, so the template's approval does not resume it.
    fn pause_self(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.paused {
            return;
        }
        self.paused = true;
        self.control_write_started();
        self.withdraw();
        let id = self.id.clone();
        let fut = self
            .ctx
            .writer
            .write(move |conn| sends::pause_unless_paused(conn, &id, &reason));
        ctx.spawn(fut.into_actor(self).map(|result, act, _| {
            act.control_write_done();
            if let Err(err) = result {
                tracing::warn!(bulk_send_id = %act.id, error = %err, "Recording a pause failed.");
            }
        }));
    }

    /// Pauses every send of this number (spam limit, account problems): persisted on the
    /// number, applied by its limiter.
    fn pause_number(&mut self, reason: String, ctx: &mut Context<Self>) {
        let Some(setup) = self.setup.clone() else {
            return;
        };
        self.limiter
            .do_send(LimiterCall::Feedback(Feedback::PauseNumber {
                reason: reason.clone(),
            }));
        let now = self.now();
        let phone_row_id = setup.phone_row_id;
        let pause = accounts::NumberReport {
            pause: Some(accounts::NumberPause::Pause(reason.clone())),
            ..accounts::NumberReport::default()
        };
        // Inside the writer's transaction: the same change a webhook's pause makes, keeping the
        // reason (an operator's `number set --paused false` resumes it).
        let fut = self.ctx.writer.write(move |conn| {
            if let Some((number, _)) = accounts::number_by_id(conn, phone_row_id)? {
                accounts::apply_number_report(conn, &number, &pause, now)?;
            }
            Ok(())
        });
        ctx.spawn(fut.into_actor(self).map(|result, act, _| {
            if let Err(err) = result {
                tracing::warn!(bulk_send_id = %act.id, error = %err, "Pausing the number failed.");
            }
        }));
        tracing::warn!(bulk_send_id = %self.id, phone_number_id = %setup.phone_number_id, %reason,
            "The number is paused; its sends wait for an operator.");
    }

    /// A fatal error: the send stops, FAILED, pending messages fail with the reason.
    fn stop_send(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.stop_reason = Some(reason.clone());
        self.withdraw();
        tracing::warn!(bulk_send_id = %self.id, %reason, "The bulk send is stopped.");
        let id = self.id.clone();
        let now = self.now();
        let fut = self
            .ctx
            .writer
            .write(move |conn| sends::stop_send(conn, &id, &reason, now));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(()) => {
                act.maybe_settled = true;
                act.poke(ctx);
            }
            Err(err) => {
                tracing::warn!(bulk_send_id = %act.id, error = %err, "Stopping the send failed; restarting.");
                act.stopped = false;
                ctx.stop();
            }
        }));
    }

    /// Takes this send's candidates back from the limiter.
    fn withdraw(&mut self) {
        self.limiter.do_send(LimiterCall::Withdraw {
            send_id: self.id.clone(),
        });
        self.offered.clear();
        self.rewind();
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
        if !idle || self.settling {
            return;
        }
        let now = self.now();
        let nothing_due_soon = !self.may_dispatch(now) || now < self.next_load_at;
        if !nothing_due_soon && !self.cancelled && !self.stopped {
            return;
        }
        let id = self.id.clone();
        self.settling = true;
        self.maybe_settled = false;
        let fut = self.ctx.db.run(move |conn| sends::load_send(conn, &id));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.settling = false;
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
        });
        self.settling = true;
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
        if self.settling {
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

/// A clean stop: dispatch nothing new, answer once every call in flight has its outcome
/// written.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain(pub tokio::sync::oneshot::Sender<()>);

impl Handler<Drain> for BulkSendActor {
    type Result = ();

    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) {
        if !self.draining {
            self.draining = true;
            self.withdraw();
        }
        self.drain_waiters.push(msg.0);
        self.flush(ctx);
        self.answer_drain();
    }
}

/// A client's control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    Cancel,
    Pause,
    Resume,
}

/// What a control request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlOutcome {
    Done,
    AlreadyFinished,
}

/// Cancel, pause or resume, answered once durable.
#[derive(Message)]
#[rtype(result = "Result<ControlOutcome, StorageError>")]
pub struct Control(pub ControlAction);

impl Handler<Control> for BulkSendActor {
    type Result = ResponseActFuture<Self, Result<ControlOutcome, StorageError>>;

    fn handle(&mut self, msg: Control, ctx: &mut Context<Self>) -> Self::Result {
        self.control_generation += 1;
        let id = self.id.clone();
        let now = self.now();
        match msg.0 {
            ControlAction::Cancel => {
                // From here on nothing more is handed to Meta.
                self.cancelled = true;
                self.withdraw();
                self.control_write_started();
                let fut = self
                    .ctx
                    .writer
                    .write(move |conn| sends::cancel_send(conn, &id, now));
                Box::pin(fut.into_actor(self).map(|result, act, ctx| {
                    act.control_write_done();
                    let done = result?;
                    act.maybe_settled = true;
                    act.poke(ctx);
                    Ok(if done {
                        ControlOutcome::Done
                    } else {
                        ControlOutcome::AlreadyFinished
                    })
                }))
            }
            ControlAction::Pause | ControlAction::Resume => {
                let pause = msg.0 == ControlAction::Pause;
                if self.cancelled || self.stopped {
                    return Box::pin(fut::ready(Ok(ControlOutcome::AlreadyFinished)));
                }
                if pause {
                    self.paused = true;
                    self.withdraw();
                } else {
                    self.paused = false;
                    self.next_load_at = i64::MIN;
                }
                self.poke(ctx);
                self.control_write_started();
                let fut = self.ctx.writer.write(move |conn| {
                    sends::set_paused(conn, &id, pause, pause.then_some("paused by the client"))
                });
                Box::pin(fut.into_actor(self).map(|result, act, _| {
                    act.control_write_done();
                    result?;
                    Ok(ControlOutcome::Done)
                }))
            }
        }
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

/// A change the webhook ingestion already made durable to this send (its template paused,
/// approved again, or disabled): the actor follows it in memory at once, so nothing more is
/// dispatched after a pause or stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WebhookEffect(pub SendEffect);

impl Handler<WebhookEffect> for BulkSendActor {
    type Result = ();

    fn handle(&mut self, msg: WebhookEffect, ctx: &mut Context<Self>) {
        // Fresher than a load that may be reading the row right now.
        self.control_generation += 1;
        match msg.0 {
            SendEffect::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.withdraw();
                }
            }
            SendEffect::Resume => {
                if self.paused {
                    self.paused = false;
                    self.next_load_at = i64::MIN;
                }
            }
            SendEffect::Stop => {
                if !self.stopped {
                    self.stopped = true;
                    self.withdraw();
                    tracing::warn!(bulk_send_id = %self.id, "The bulk send is stopped by a template status update.");
                }
                self.maybe_settled = true;
            }
        }
        self.poke(ctx);
    }
}
