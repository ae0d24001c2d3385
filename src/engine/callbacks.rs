//! `CallbackDelivery`: posts client callback events (API.md, "Client events") from the
//! outbox (`storage::callbacks`) to each send's `callback_url`.
//!
//! - It runs on an arbiter of its own with its own HTTP client, apart from the send actors:
//!   a slow or dead receiver never delays a dispatch. The only thing sending does for
//!   callbacks is insert an event row in a transaction it makes anyway (status changes).
//! - Every 250 ms it reads the due events, each the oldest undelivered event of its send,
//!   claims each (its due time moves 20 s ahead, so no second attempt starts meanwhile, here
//!   or in another daemon on the same database) and posts up to 16 at once, at most one per
//!   send: a send's events arrive in order, the next one is read only once the outcome of
//!   the previous attempt is written.
//! - Each post carries `X-Mindo-Signature: sha256=<hex HMAC-SHA256(body, tenant secret)>`
//!   and `X-Mindo-Event-Id`. A 2xx answer delivers the event; anything else (another
//!   status, a timeout after 10 s, a refused connection) is retried after 1 s, 2 s, 4 s …
//!   (at most 10 min apart) until 24 h after the event, then it is given up and logged.
//! - Every second it asks for the progress events due (`storage::callbacks::progress_due`)
//!   and inserts them through the writer; every hour it deletes events settled more than 7
//!   days ago.
//! - The events are rows, so a restart loses none: the next start posts what was due. An
//!   attempt cut short by a stop is made again when its claim ends (receivers deduplicate
//!   by the event id).
//!
//! Time decisions (due, backoff, progress rate) use the engine's clock; the polling cadence
//! is real time.

use std::collections::HashSet;
use std::time::Duration;

use actix::prelude::*;

use super::EngineContext;
use crate::domain::callback::{self, AfterFailure};
use crate::storage::callbacks::{self, DueEvent};
use crate::storage::StorageError;

/// How often due events are looked for.
const POLL: Duration = Duration::from_millis(250);
/// How often the progress events due are looked for.
const PROGRESS_CHECK: Duration = Duration::from_secs(1);
/// Attempts under way at once, at most (one per send).
const MAX_IN_FLIGHT: usize = 16;
/// How long a receiver may take to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a receiver may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a claimed event is held for its attempt (longer than an attempt can take);
/// after a stop mid-attempt it is due again then.
const LEASE_MS: i64 = 20_000;
/// Bytes of a receiver's answer read (and ignored), so the connection can be reused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// How often settled events are purged.
const PURGE_EVERY: Duration = Duration::from_secs(60 * 60);
/// How long settled (delivered or given up) events are kept.
const KEEP_SETTLED_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What an attempt's outcome writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

/// The delivery actor.
pub struct CallbackDelivery {
    ctx: EngineContext,
    /// `!Send`: created on this actor's arbiter, shared by its attempts (keep-alive).
    http: awc::Client,
    /// Sends with an attempt under way, until its outcome is written.
    in_flight: HashSet<String>,
    /// A read of due events is under way.
    loading: bool,
    /// A progress check is under way.
    checking_progress: bool,
}

impl CallbackDelivery {
    /// Call on the arbiter the actor runs on (the HTTP client is `!Send`).
    pub fn new(ctx: EngineContext) -> Self {
        let connector = awc::Connector::new()
            .timeout(CONNECT_TIMEOUT)
            .limit(MAX_IN_FLIGHT);
        let http = awc::Client::builder()
            .connector(connector)
            .timeout(REQUEST_TIMEOUT)
            .disable_redirects()
            .add_default_header((awc::http::header::USER_AGENT, "mindo-bulk"))
            .finish();
        CallbackDelivery {
            ctx,
            http,
            in_flight: HashSet::new(),
            loading: false,
            checking_progress: false,
        }
    }

    /// Reads the due events and starts an attempt for each send that has none under way.
    fn poll(&mut self, ctx: &mut Context<Self>) {
        if self.loading || self.in_flight.len() >= MAX_IN_FLIGHT {
            return;
        }
        self.loading = true;
        let now = self.ctx.clock.now_ms();
        // Room for the heads of the sends already in flight, which are skipped.
        let limit = i64::try_from(MAX_IN_FLIGHT + self.in_flight.len()).unwrap_or(i64::MAX);
        let fut = self
            .ctx
            .db
            .run(move |conn| callbacks::due_events(conn, now, limit));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| {
            act.loading = false;
            match result {
                Ok(events) => {
                    for event in events {
                        if act.in_flight.len() >= MAX_IN_FLIGHT {
                            break;
                        }
                        if !act.in_flight.contains(&event.bulk_send_id) {
                            act.claim(event, ctx);
                        }
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "Reading due callback events failed; retrying.");
                }
            }
        }));
    }

    /// Claims an event (see `storage::callbacks::claim`), then posts it. A read made while
    /// an earlier attempt's outcome was being written may offer an event already delivered:
    /// the claim refuses it.
    fn claim(&mut self, event: DueEvent, ctx: &mut Context<Self>) {
        self.in_flight.insert(event.bulk_send_id.clone());
        let lease_until = self.ctx.clock.now_ms().saturating_add(LEASE_MS);
        let (id, seen) = (event.id, event.next_attempt_at);
        let fut = self
            .ctx
            .writer
            .write(move |conn| callbacks::claim(conn, id, seen, lease_until));
        ctx.spawn(fut.into_actor(self).map(move |claimed, act, ctx| match claimed {
            Ok(true) => act.attempt(event, ctx),
            Ok(false) => {
                act.in_flight.remove(&event.bulk_send_id);
            }
            Err(err) => {
                tracing::warn!(bulk_send_id = %event.bulk_send_id, event_id = id, error = %err,
                    "Claiming a callback event failed; retrying.");
                act.in_flight.remove(&event.bulk_send_id);
            }
        }));
    }

    /// Posts one claimed event, signed.
    fn attempt(&mut self, event: DueEvent, ctx: &mut Context<Self>) {
        let Some(url) = event.callback_url.clone() else {
            self.record(event, Err("the send has no callback_url".into()), ctx);
            return;
        };
        let signature = callback::signature(&event.webhook_secret, event.payload.as_bytes());
        let request = self
            .http
            .post(url)
            .insert_header((awc::http::header::CONTENT_TYPE, "application/json"))
            .insert_header((callback::SIGNATURE_HEADER, signature))
            .insert_header((callback::EVENT_ID_HEADER, event.id.to_string()))
            .send_body(event.payload.clone());
        let outcome = async move {
            match request.await {
                Ok(mut answer) => {
                    let status = answer.status();
                    let _ = answer.body().limit(MAX_ANSWER_BYTES).await;
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(format!("the receiver answered {status}"))
                    }
                }
                Err(err) => Err(format!("the request failed: {err}")),
            }
        };
        ctx.spawn(
            outcome
                .into_actor(self)
                .map(move |result, act, ctx| act.record(event, result, ctx)),
        );
    }

    /// Writes an attempt's outcome; the send's next event may go once it is written.
    fn record(&mut self, event: DueEvent, result: Result<(), String>, ctx: &mut Context<Self>) {
        let now = self.ctx.clock.now_ms();
        let attempts = event.attempts.saturating_add(1);
        let verdict = match &result {
            Ok(()) => Verdict::Delivered,
            Err(_) => match callback::after_failure(attempts, event.occurred_at, now) {
                AfterFailure::RetryAt(at) => Verdict::RetryAt(at),
                AfterFailure::GiveUp => Verdict::GiveUp,
            },
        };
        let error = result.err().unwrap_or_default();
        crate::telemetry::callback_attempt(match verdict {
            Verdict::Delivered => "delivered",
            Verdict::RetryAt(_) => "retry",
            Verdict::GiveUp => "given_up",
        });
        match verdict {
            Verdict::Delivered => tracing::debug!(
                bulk_send_id = %event.bulk_send_id, event_id = event.id, event = %event.event,
                attempts, "A callback event was delivered."),
            Verdict::RetryAt(at) => tracing::info!(
                bulk_send_id = %event.bulk_send_id, event_id = event.id, event = %event.event,
                attempts, retry_in_ms = at - now, %error,
                "A callback event was not accepted; it will be retried."),
            Verdict::GiveUp => tracing::warn!(
                bulk_send_id = %event.bulk_send_id, event_id = event.id, event = %event.event,
                attempts, %error,
                "A callback event was given up after 24 hours of failed attempts."),
        }
        let id = event.id;
        let fut = self.ctx.writer.write(move |conn| match verdict {
            Verdict::Delivered => callbacks::mark_delivered(conn, id, now),
            Verdict::RetryAt(at) => callbacks::mark_retry(conn, id, at, &error),
            Verdict::GiveUp => callbacks::mark_given_up(conn, id, now, &error),
        });
        let send_id = event.bulk_send_id;
        ctx.spawn(fut.into_actor(self).map(move |written, act, ctx| {
            if let Err(err) = written {
                // The event stays claimed until its lease ends; then it is posted again.
                tracing::warn!(bulk_send_id = %send_id, event_id = id, error = %err,
                    "Recording a callback attempt failed; the event will be posted again.");
            }
            act.in_flight.remove(&send_id);
            // The send's next event (or another send's) need not wait for the tick.
            act.poll(ctx);
        }));
    }

    /// Inserts the progress events due now.
    fn check_progress(&mut self, ctx: &mut Context<Self>) {
        if self.checking_progress {
            return;
        }
        self.checking_progress = true;
        let now = self.ctx.clock.now_ms();
        let (db, writer) = (self.ctx.db.clone(), self.ctx.writer.clone());
        let work = async move {
            let due = db
                .run(move |conn| callbacks::progress_due(conn, now))
                .await?;
            if due.is_empty() {
                return Ok::<usize, StorageError>(0);
            }
            writer
                .write(move |conn| {
                    let mut inserted = 0;
                    for id in &due {
                        if callbacks::enqueue_progress(conn, id, now)? {
                            inserted += 1;
                        }
                    }
                    Ok(inserted)
                })
                .await
        };
        ctx.spawn(work.into_actor(self).map(|result, act, ctx| {
            act.checking_progress = false;
            match result {
                Ok(0) => {}
                Ok(_) => act.poll(ctx),
                Err(err) => {
                    tracing::warn!(error = %err, "Checking for progress events failed; retrying.");
                }
            }
        }));
    }

    /// Deletes events settled long ago.
    fn purge(&mut self, ctx: &mut Context<Self>) {
        let before = self.ctx.clock.now_ms().saturating_sub(KEEP_SETTLED_MS);
        let fut = self
            .ctx
            .writer
            .write(move |conn| callbacks::purge_settled(conn, before));
        ctx.spawn(fut.into_actor(self).map(|result, _act, _ctx| match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "Purged old callback events."),
            Err(err) => tracing::warn!(error = %err, "Purging old callback events failed."),
        }));
    }
}

impl Actor for CallbackDelivery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.poll(ctx);
        ctx.run_interval(POLL, |act, ctx| act.poll(ctx));
        ctx.run_interval(PROGRESS_CHECK, |act, ctx| act.check_progress(ctx));
        ctx.run_interval(PURGE_EVERY, |act, ctx| act.purge(ctx));
    }
}
