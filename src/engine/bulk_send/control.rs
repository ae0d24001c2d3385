//! How a send's phase changes: a client's control (cancel, pause, resume), a webhook effect
//! (its template paused, approved again or disabled), a pause or stop decided from Meta's
//! answer, and a drain. `domain::lifecycle` decides; the actor withdraws its candidates, looks
//! for due messages again, and writes what must be stored.

use actix::prelude::*;
use futures_util::future::Either;

use super::BulkSendActor;
use crate::domain::lifecycle::{Change, ControlAction};
use crate::engine::ingest::SendEffect;
use crate::engine::limiter::{Feedback, LimiterCall};
use crate::storage::sends;
use crate::storage::{accounts, DbConnection, StorageError};

impl BulkSendActor {
    /// Pauses this send on its own (a paused template). A pause already stored (the client's)
    /// keeps its reason, so the template's approval does not resume it.
    pub(super) fn pause_self(&mut self, reason: String, ctx: &mut Context<Self>) {
        let change = self.phase.pause();
        if change == Change::None {
            return;
        }
        self.apply(change);
        self.control_write_started();
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
    pub(super) fn pause_number(&mut self, reason: String, ctx: &mut Context<Self>) {
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
    pub(super) fn stop_send(&mut self, reason: String, ctx: &mut Context<Self>) {
        let change = self.phase.stop(reason.clone());
        if change == Change::None {
            return;
        }
        self.apply(change);
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
                // The restarted actor reads the stored phase and meets the error again.
                tracing::warn!(bulk_send_id = %act.id, error = %err, "Stopping the send failed; restarting.");
                ctx.stop();
            }
        }));
    }

    /// Takes this send's candidates back from the limiter.
    pub(super) fn withdraw(&mut self) {
        self.limiter.do_send(LimiterCall::Withdraw {
            send_id: self.id.clone(),
        });
        self.offered.clear();
        self.rewind();
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

/// This node no longer runs the send's portfolio (its lease was lost or handed over): the
/// actor dispatches nothing more, writes what is in flight, answers, and retires.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disown(pub tokio::sync::oneshot::Sender<()>);

impl Handler<Disown> for BulkSendActor {
    type Result = ();

    fn handle(&mut self, msg: Disown, ctx: &mut Context<Self>) {
        self.disowned = true;
        if !self.draining {
            self.draining = true;
            self.withdraw();
        }
        self.drain_waiters.push(msg.0);
        self.poke(ctx);
    }
}

/// Another node changed the stored send (a control, a webhook's effect): follow its stored
/// phase.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reload;

impl Handler<Reload> for BulkSendActor {
    type Result = ();

    fn handle(&mut self, _msg: Reload, ctx: &mut Context<Self>) {
        if self.phase == crate::domain::lifecycle::Phase::Retired || self.draining {
            return;
        }
        self.follow_stored_phase(ctx);
    }
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
        let action = msg.0;
        let Some(change) = self.phase.control(action) else {
            return Box::pin(fut::ready(Ok(ControlOutcome::AlreadyFinished)));
        };
        // From here on nothing more is handed to Meta after a cancel or pause.
        self.apply(change);
        self.control_write_started();
        let id = self.id.clone();
        let now = self.now();
        match action {
            ControlAction::Cancel => {
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
                // Written even when the phase did not change: a client's pause of a send its
                // template paused takes the pause over (the template's approval no longer
                // resumes it), and a resume lifts any pause.
                let pause = action == ControlAction::Pause;
                let write = move |conn: &mut DbConnection| {
                    sends::set_paused(conn, &id, pause, pause.then_some("paused by the client"))
                };
                // On PostgreSQL the flag is one autocommitted statement on a pooled
                // connection, not a job queued behind the writer's group in flight (which
                // takes up to a few hundred ms while other sends dispatch). It changes only
                // this send's row and waits for no other lock, so it cannot deadlock with
                // the writer; a dispatch mark that commits first was granted before the
                // pause, and one that comes after reads the new flag. On SQLite a second
                // writer would wait for the writer's lock: there the job is queued.
                let fut = if self.ctx.db.is_sqlite() {
                    Either::Left(self.ctx.writer.write(write))
                } else {
                    Either::Right(self.ctx.db.run(write))
                };
                if pause {
                    self.poke(ctx);
                }
                Box::pin(fut.into_actor(self).map(move |result, act, ctx| {
                    act.control_write_done();
                    result?;
                    // A resumed send looks for due messages once the flag is stored: a
                    // dispatch mark checks it, and would find the send still paused.
                    if !pause {
                        act.poke(ctx);
                    }
                    Ok(ControlOutcome::Done)
                }))
            }
        }
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
        let change = match msg.0 {
            SendEffect::Pause => self.phase.pause(),
            SendEffect::Resume => self.phase.resume(),
            SendEffect::Stop(reason) => {
                let change = self.phase.stop(reason);
                if change != Change::None {
                    tracing::warn!(bulk_send_id = %self.id, "The bulk send is stopped by a template status update.");
                }
                self.maybe_settled = true;
                change
            }
        };
        self.apply(change);
        self.poke(ctx);
    }
}
