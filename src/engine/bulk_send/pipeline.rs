//! The dispatch pipeline of a send: pages of due messages offered to the limiter, grants
//! marked `dispatching` and handed to Meta, Meta's answers decided by `domain::dispatch` and
//! written in batches, unknown outcomes reconciled after their grace period.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use super::{
    Answer, BulkSendActor, InFlight, SendSetup, FLUSH_MAX, LOAD_RETRY_MS, MAX_OUTSTANDING,
    OFFER_TARGET, PAGE, PIPELINE_DELAY,
};
use crate::domain::dispatch::{self, LimiterFeedback, SendEffect as DispatchEffect};
use crate::domain::lifecycle::{after_requeue, LoadAt, ScanRestart};
use crate::engine::leases::Fence;
use crate::engine::limiter::{Feedback, LimiterCall};
use crate::engine::supervisor::ClaimFenced;
use crate::meta::client::TemplateMessage;
use crate::meta::error::SendFailure;
use crate::storage::sends::{self, DispatchMarks, Outcome, PendingMessage};
use crate::storage::StorageError;
use crate::telemetry;

/// How long after a write lost to a deadlock it is made again.
const CONFLICT_RETRY: std::time::Duration = std::time::Duration::from_millis(20);

impl BulkSendActor {
    /// Loads the next page of due messages when the offer runs low.
    pub(super) fn refill(&mut self, now: i64, ctx: &mut Context<Self>) {
        if self.loading
            || !self.may_dispatch(now)
            || !self.load_at.is_due(now)
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
                    tracing::debug!(bulk_send_id = %act.id, loaded = page.len(), ?next_due,
                        ?cursor, current, offered = act.offered.len(),
                        in_flight = act.in_flight.len(), "Loaded due messages.");
                    if let (true, Some(next_due)) = (current, next_due) {
                        act.load_at = next_due.map_or(LoadAt::Never, LoadAt::At);
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
                    act.load_at = LoadAt::At(act.now().saturating_add(LOAD_RETRY_MS));
                    act.poke(ctx);
                }
            }
        }));
    }

    /// Restarts the scan of due messages from the beginning.
    pub(super) fn rewind(&mut self) {
        self.cursor = (i64::MIN, 0);
        self.cursor_epoch += 1;
        self.load_at = LoadAt::Now;
    }

    /// Granted messages: mark them `dispatching` durably, then send them.
    pub(super) fn dispatch(&mut self, ids: Vec<i64>, ctx: &mut Context<Self>) {
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
        // On a cluster, claims are made under this node's lease on the portfolio; without a
        // usable one nothing is claimed.
        let Some(fence) = self.ctx.leases.fence(&portfolio) else {
            self.fenced_out(ctx);
            return;
        };
        let lease = match &fence {
            Fence::Single => None,
            Fence::Lease { node, epoch, .. } => Some((node.clone(), *epoch)),
        };
        self.marking += granted.len();
        let granted_at = Instant::now();
        let fut = self.ctx.writer.write(move |conn| {
            let lease = lease.as_ref().map(|(node, epoch)| sends::ClaimLease {
                node,
                epoch: *epoch,
            });
            sends::mark_dispatching(conn, &id, &portfolio, &marks, now, lease)
        });
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(DispatchMarks::Fenced) => {
                act.marking -= granted.len();
                act.fenced_out(ctx);
            }
            Ok(DispatchMarks::Held) => {
                tracing::debug!(bulk_send_id = %act.id, granted = granted.len(),
                    "Nothing marked: the stored send is held.");
                // The stored send is paused, cancelled or stopped by a change this actor has
                // not followed yet: nothing was marked; take the stored flags.
                act.marking -= granted.len();
                act.follow_stored_phase(ctx);
            }
            Ok(DispatchMarks::Marked(marked)) => {
                let marked: HashSet<i64> = marked.into_iter().collect();
                let count = granted.len();
                if marked.len() < count {
                    tracing::debug!(bulk_send_id = %act.id, granted = count, marked = marked.len(),
                        "Some granted messages were no longer pending.");
                }
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
            Err(err) if err.is_conflict() => {
                tracing::debug!(bulk_send_id = %act.id, error = %err,
                    "Marking messages met a conflict; they are offered again.");
                // Undone by the database (a deadlock with another daemon's write): nothing was
                // marked. The messages are offered again.
                act.marking -= granted.len();
                act.withdraw();
                act.poke(ctx);
            }
            Err(err) => {
                act.marking -= granted.len();
                tracing::warn!(bulk_send_id = %act.id, error = %err,
                    "Marking messages as dispatching failed; the actor restarts from the database.");
                ctx.stop();
            }
        }));
    }

    /// This node may no longer claim for the send's portfolio (its lease was taken over, or
    /// its usable time is up): nothing more is dispatched here; what is in flight finishes.
    /// The supervisor starts the send afresh if the portfolio is still, or again, this node's.
    fn fenced_out(&mut self, ctx: &mut Context<Self>) {
        telemetry::cluster_fenced_claim();
        if self.draining {
            return;
        }
        tracing::warn!(bulk_send_id = %self.id, "A claim was fenced out: this node no longer holds the portfolio's lease.");
        self.draining = true;
        self.disowned = true;
        self.withdraw();
        self.supervisor.do_send(ClaimFenced {
            id: self.id.clone(),
            addr: ctx.address(),
        });
    }

    /// Sends marked messages, unless the send was cancelled or stopped meanwhile.
    pub(super) fn release(
        &mut self,
        batch: Vec<PendingMessage>,
        granted: usize,
        dispatched_at: i64,
        setup: Arc<SendSetup>,
        ctx: &mut Context<Self>,
    ) {
        self.marking -= granted;
        // The lease is checked again right before the calls (self-fencing): a node that was
        // stopped (SIGSTOP, a long pause) between its claim and now hands nothing to Meta once
        // its lease's usable time is up. Those messages were never sent: back to pending, for
        // whoever holds the lease now.
        let fence = self.ctx.leases.fence(&setup.portfolio_id);
        for message in batch {
            // Cancelled or stopped after the grant: never sent.
            match (dispatch::after_grant(&self.phase), &fence) {
                (Some(outcome), _) => self.outcomes.push((message.id, outcome)),
                (None, None) => self.outcomes.push((
                    message.id,
                    Outcome::Reset {
                        next_attempt_at: dispatched_at,
                    },
                )),
                (None, Some(fence)) => {
                    self.send_one(message, dispatched_at, setup.clone(), fence, ctx)
                }
            }
        }
        if fence.is_none() {
            self.fenced_out(ctx);
        }
        self.poke(ctx);
    }

    pub(super) fn send_one(
        &mut self,
        message: PendingMessage,
        dispatched_at: i64,
        setup: Arc<SendSetup>,
        fence: &Fence,
        ctx: &mut Context<Self>,
    ) {
        let variables: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&message.variables).unwrap_or_default();
        let buttons: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&message.button_variables).unwrap_or_default();
        let components = setup.spec.render(&variables, &buttons);
        // Our message id, echoed by Meta's webhooks; on a cluster also the lease epoch it was
        // claimed under, so a takeover's reconciliation can tell whose attempt a status is.
        let opaque = match fence {
            Fence::Single => format!("{}/{}", self.id, message.id),
            Fence::Lease { epoch, .. } => format!("{}/{}/{epoch}", self.id, message.id),
        };
        // The call must end before the lease's usable time does (the Graph timeout is the
        // longer bound otherwise): an answer that comes later is an unknown outcome, left
        // `dispatching` for the webhooks and the reconciliation.
        let deadline = fence.time_left();
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
        let lease = fence.clone();
        let fut = async move {
            // Checked again when the call is about to be made (this task may have waited for
            // a connection, or the process been stopped): past the lease's usable time nothing
            // goes out, and the message is definitely not sent.
            if !lease.is_usable() {
                return Err(SendFailure::Connect(
                    "not sent: this node's lease on the portfolio ended first".into(),
                ));
            }
            match body {
                Ok(body) => {
                    let call = graph.send_raw(&setup.access_token, &setup.phone_number_id, body);
                    match deadline {
                        None => call.await,
                        Some(left) => tokio::time::timeout(left, call)
                            .await
                            .unwrap_or(Err(SendFailure::Timeout)),
                    }
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
    pub(super) fn on_answer(
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
                    &self.phase,
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

    pub(super) fn flush_if_full(&mut self, ctx: &mut Context<Self>) {
        if self.outcomes.len() >= FLUSH_MAX {
            self.flush(ctx);
        }
    }

    /// Writes the outcomes gathered so far in one job.
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
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
        // Kept to follow once written, or to write again if another daemon's transaction
        // deadlocks with this one.
        let written = batch.clone();
        let fut = self
            .ctx
            .writer
            .write(move |conn| sends::record_outcomes(conn, &id, &batch, now));
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| {
            act.flushing = false;
            match result {
                Err(err) if err.is_conflict() => {
                    // Several daemons write the same rows (webhooks land on any of them): the
                    // database chose this write as a deadlock's victim and undid it. The
                    // answers are still known here: write them again shortly.
                    tracing::debug!(bulk_send_id = %act.id, error = %err, "Recording outcomes met a conflict; writing them again.");
                    act.outcomes.splice(0..0, written);
                    ctx.run_later(CONFLICT_RETRY, |act, ctx| act.flush(ctx));
                }
                Ok(_) => {
                    for (id, outcome) in &written {
                        // Messages put back to pending: the scan reaches them when due, or
                        // starts again from the beginning if they sort behind it. Messages
                        // already offered are not offered twice, and marking is conditional,
                        // so none can go out twice.
                        let due = match outcome {
                            // A reset may find the message already put back by another node
                            // (a fenced owner's own reset, due at its old time): always rescan.
                            Outcome::Reset { .. } => {
                                act.rewind();
                                continue;
                            }
                            Outcome::Retry {
                                next_attempt_at, ..
                            } => *next_attempt_at,
                            _ => continue,
                        };
                        match after_requeue(act.cursor, act.loading, due, *id) {
                            ScanRestart::Rewind => act.rewind(),
                            ScanRestart::Continue(at) => act.load_at = act.load_at.earliest(at),
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
    pub(super) fn reconcile_due(&mut self, now: i64) {
        if self.unknown.is_empty() {
            return;
        }
        let policy = self.ctx.config.reconcile_policy;
        let (due, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unknown)
            .into_iter()
            .partition(|&(_, deadline)| deadline <= now);
        self.unknown = still;
        if !due.is_empty() {
            tracing::debug!(bulk_send_id = %self.id, messages = due.len(), ?policy,
                "Unknown outcomes past their grace are reconciled.");
        }
        for (id, _) in due {
            self.outcomes
                .push((id, dispatch::reconcile(policy, &self.phase, now)));
        }
    }
}
