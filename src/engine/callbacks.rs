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
//! - Every second it asks for the progress events due (`storage::status::progress_due`)
//!   and inserts them through the writer; every hour it deletes events settled more than 7
//!   days ago.
//! - Every attempt first vets where it goes (`domain::egress`): the URL again (the policy
//!   may have changed since the submission), then every address its host resolves to; the
//!   connection goes to the first allowed address (so a DNS answer that changes between
//!   the check and the connection cannot take it elsewhere), redirects are not followed.
//!   A refused target gives the event up at once, with the reason recorded on it: it is not
//!   retried for the rest of its 24 h. A failed lookup is retried like a refused connection.
//! - The tenant's webhook secret is stored encrypted and opened for each attempt; one that
//!   does not open (a wrong key) fails the attempt, and nothing unsigned is posted.
//! - The events are rows, so a restart loses none: the next start posts what was due. An
//!   attempt cut short by a stop is made again when its claim ends (receivers deduplicate
//!   by the event id).
//!
//! Time decisions (due, backoff, progress rate) use the engine's clock; the polling cadence
//! is real time.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use actix::prelude::*;

use super::EngineContext;
use crate::domain::callback::{self, AfterFailure};
use crate::domain::egress::{CallbackHost, CallbackPolicy, TargetRefused};
use crate::storage::callbacks::{self, DueEvent};
use crate::storage::StorageError;
use crate::storage::{secrets, status};

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

/// How long a receiver's name may take to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why an attempt did not deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// Worth another try (a refused connection, a 5xx, a failed lookup, …).
    Retry(String),
    /// The target is not allowed: given up at once.
    Refused(String),
}

/// Where an attempt connects, once vetted.
enum Target {
    Allowed(SocketAddr),
    Refused(TargetRefused),
    LookupFailed(String),
}

/// Vets a callback URL and picks the address to connect to (see the module doc).
async fn vet(policy: &CallbackPolicy, url: &str) -> Target {
    let (url, host) = match policy.check_url(url) {
        Ok(checked) => checked,
        Err(refused) => return Target::Refused(refused),
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let ip = match host {
        CallbackHost::Ip(ip) => ip,
        CallbackHost::Name(name) => {
            let lookup = tokio::net::lookup_host((name.as_str(), port));
            let resolved: Vec<IpAddr> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(err)) => return Target::LookupFailed(format!("{name}: {err}")),
                Err(_) => return Target::LookupFailed(format!("{name}: the lookup timed out")),
            };
            if resolved.is_empty() {
                return Target::LookupFailed(format!("{name} has no address"));
            }
            match policy.pick(&name, &resolved) {
                Ok(ip) => ip,
                Err(refused) => return Target::Refused(refused),
            }
        }
    };
    Target::Allowed(SocketAddr::new(ip, port))
}

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

    /// Vets where a claimed event goes, then posts it there, signed.
    fn attempt(&mut self, event: DueEvent, ctx: &mut Context<Self>) {
        let Some(url) = event.callback_url.clone() else {
            let failure = Failure::Retry("the send has no callback_url".into());
            self.record(event, Err(failure), ctx);
            return;
        };
        let secret = match secrets::open_webhook_secret(
            &self.ctx.secret_key,
            event.webhook_secret_key_id.as_deref(),
            &event.webhook_secret,
        ) {
            Ok(secret) => secret,
            Err(err) => {
                let failure = Failure::Retry(format!("the webhook secret cannot be used: {err}"));
                self.record(event, Err(failure), ctx);
                return;
            }
        };
        let signature = callback::signature(&secret, event.payload.as_bytes());
        let policy = self.ctx.config.callback_policy();
        let vetting = async move { vet(&policy, &url).await };
        ctx.spawn(
            vetting
                .into_actor(self)
                .map(move |target, act, ctx| match target {
                    Target::Allowed(address) => act.post(event, address, signature, ctx),
                    Target::Refused(refused) => {
                        let failure = Failure::Refused(format!("callback_url {refused}"));
                        act.record(event, Err(failure), ctx);
                    }
                    Target::LookupFailed(err) => {
                        let failure = Failure::Retry(format!("the lookup failed: {err}"));
                        act.record(event, Err(failure), ctx);
                    }
                }),
        );
    }

    /// Posts a claimed event to its vetted address.
    fn post(
        &mut self,
        event: DueEvent,
        address: SocketAddr,
        signature: String,
        ctx: &mut Context<Self>,
    ) {
        let url = event.callback_url.clone().unwrap_or_default();
        let request = self
            .http
            .post(url)
            .address(address)
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
                        Err(Failure::Retry(format!("the receiver answered {status}")))
                    }
                }
                Err(err) => Err(Failure::Retry(format!("the request failed: {err}"))),
            }
        };
        ctx.spawn(
            outcome
                .into_actor(self)
                .map(move |result, act, ctx| act.record(event, result, ctx)),
        );
    }

    /// Writes an attempt's outcome; the send's next event may go once it is written.
    fn record(&mut self, event: DueEvent, result: Result<(), Failure>, ctx: &mut Context<Self>) {
        let now = self.ctx.clock.now_ms();
        let attempts = event.attempts.saturating_add(1);
        let verdict = match &result {
            Ok(()) => Verdict::Delivered,
            Err(Failure::Refused(_)) => Verdict::GiveUp,
            Err(Failure::Retry(_)) => {
                match callback::after_failure(attempts, event.occurred_at, now) {
                    AfterFailure::RetryAt(at) => Verdict::RetryAt(at),
                    AfterFailure::GiveUp => Verdict::GiveUp,
                }
            }
        };
        let refused = matches!(result, Err(Failure::Refused(_)));
        let error = match result {
            Ok(()) => String::new(),
            Err(Failure::Retry(e)) => e,
            Err(Failure::Refused(e)) => format!("refused: {e}"),
        };
        crate::telemetry::callback_attempt(match verdict {
            Verdict::Delivered => "delivered",
            Verdict::RetryAt(_) => "retry",
            Verdict::GiveUp if refused => "refused",
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
            Verdict::GiveUp if refused => tracing::warn!(
                bulk_send_id = %event.bulk_send_id, event_id = event.id, event = %event.event,
                %error,
                "A callback event was refused: its target is not on the public internet."),
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
            let due = db.run(move |conn| status::progress_due(conn, now)).await?;
            if due.is_empty() {
                return Ok::<usize, StorageError>(0);
            }
            writer
                .write(move |conn| {
                    let mut inserted = 0;
                    for id in &due {
                        if status::enqueue_progress(conn, id, now)? {
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
