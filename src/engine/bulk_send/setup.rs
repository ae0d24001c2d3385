//! Starting a send's actor: its setup (number, token, template) and its stored phase, read
//! from the database; and following the stored phase when a write finds it moved on.

use std::sync::Arc;

use actix::prelude::*;
use serde_json::Value;

use super::{BulkSendActor, SendSetup};
use crate::domain::lifecycle::Change;
use crate::domain::template::TemplateSpec;
use crate::storage::accounts::{self, BusinessAccount, PhoneNumber, Template};
use crate::storage::sends::{self, BulkSendRow, DispatchingMessage};
use crate::storage::StorageError;

/// What an actor reads when it starts.
struct Loaded {
    send: BulkSendRow,
    number: PhoneNumber,
    account: BusinessAccount,
    template: Template,
    /// Messages a previous run left `dispatching`: their outcome is unknown.
    dispatching: Vec<DispatchingMessage>,
}

impl BulkSendActor {
    /// Loads the send, its number and template, and the messages left in `dispatching` by a
    /// previous run (their outcome is unknown: they wait for a webhook for the grace period,
    /// counted from when they were dispatched).
    ///
    /// The reads wait for every write queued before them (an empty write through the writer,
    /// which commits in order): a restarted actor's previous instance may have left a claim
    /// in the queue, and messages it marks `dispatching` after this read would be tracked by
    /// nobody.
    pub(super) fn load(&mut self, ctx: &mut Context<Self>) {
        let id = self.id.clone();
        let grace_ms = self.grace_ms();
        let generation = self.control_generation;
        let barrier = self.ctx.writer.write(|_| Ok(()));
        let db = self.ctx.db.clone();
        let fut = async move {
            barrier.await?;
            db.run(move |conn| {
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
                Ok::<_, StorageError>(Some(Loaded {
                    send,
                    number,
                    account,
                    template,
                    dispatching,
                }))
            })
            .await
        };
        ctx.spawn(fut.into_actor(self).map(move |result, act, ctx| match result {
            Ok(Some(loaded)) => act.start(loaded, generation, grace_ms, ctx),
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

    /// Runs the send that `load` read: a template that cannot be read or a token that does
    /// not open stops it (never sent to Meta).
    fn start(&mut self, loaded: Loaded, generation: u64, grace_ms: i64, ctx: &mut Context<Self>) {
        let Loaded {
            send,
            number,
            account,
            template,
            dispatching,
        } = loaded;
        let components: Value = serde_json::from_str(&template.components).unwrap_or(Value::Null);
        let spec = match TemplateSpec::from_meta(Some(&template.parameter_format), &components) {
            Ok(spec) => spec,
            Err(err) => {
                self.stop_send(format!("template_unusable: {err}"), ctx);
                return;
            }
        };
        // A token that does not open is never sent to Meta (see storage::secrets).
        let access_token =
            match crate::storage::secrets::open_access_token(&self.ctx.secret_key, &account) {
                Ok(token) => token,
                Err(err) => {
                    self.stop_send(format!("secret_unavailable: {err}"), ctx);
                    return;
                }
            };
        self.adopt_stored_phase(&send, generation);
        self.unknown = dispatching
            .into_iter()
            .map(|m| (m.id, m.dispatched_at.unwrap_or(0) + grace_ms))
            .collect();
        self.setup = Some(Arc::new(SendSetup {
            phone_row_id: number.id,
            phone_number_id: number.phone_number_id,
            portfolio_id: account.portfolio_id,
            access_token,
            template_name: template.name,
            language: template.language,
            spec,
            scheduled_at: send.scheduled_at,
        }));
        tracing::debug!(bulk_send_id = %self.id, "A bulk send actor is running.");
        self.poke(ctx);
    }

    /// Takes the stored phase (the database refused to mark messages of this send: it is
    /// paused, cancelled or stopped by a change this actor has not followed yet). A control
    /// handled while the row is read is fresher and wins.
    pub(super) fn follow_stored_phase(&mut self, ctx: &mut Context<Self>) {
        self.withdraw();
        let id = self.id.clone();
        let generation = self.control_generation;
        let fut = self.ctx.db.run(move |conn| sends::load_send(conn, &id));
        ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(Some(send)) => {
                        act.adopt_stored_phase(&send, generation);
                        act.maybe_settled = true;
                        act.poke(ctx);
                    }
                    Ok(None) => act.retire(ctx),
                    Err(err) => {
                        tracing::warn!(bulk_send_id = %act.id, error = %err,
                    "Reading a send's phase failed; the actor restarts from the database.");
                        ctx.stop();
                    }
                }),
        );
    }

    /// Takes the phase of a row read that began at `generation` (`Phase::adopt` says how a
    /// stale row is taken).
    fn adopt_stored_phase(&mut self, send: &BulkSendRow, generation: u64) {
        let fresh = self.stored_row_is_fresh(generation);
        let change = self.phase.adopt(&send.stored_phase(), fresh);
        self.apply(change);
    }

    /// Whether a read of the send's row that began at `generation` is as new as the in-memory
    /// phase: no control or webhook effect was handled since, and no control's write is still
    /// committing (the row read may predate it even when nothing was handled in between: the
    /// write was queued before the read began).
    fn stored_row_is_fresh(&self, generation: u64) -> bool {
        self.control_generation == generation && self.control_writes == 0
    }

    /// A control's write begins.
    pub(super) fn control_write_started(&mut self) {
        self.control_generation += 1;
        self.control_writes += 1;
    }

    /// A control's write has committed (or failed).
    pub(super) fn control_write_done(&mut self) {
        self.control_generation += 1;
        self.control_writes = self.control_writes.saturating_sub(1);
    }

    /// Carries out what a change of phase asks: take the candidates back, or look for due
    /// messages at once.
    pub(super) fn apply(&mut self, change: Change) {
        match change {
            Change::None => {}
            Change::Withdraw => self.withdraw(),
            Change::Reload => self.load_at = crate::domain::lifecycle::LoadAt::Now,
        }
    }
}
