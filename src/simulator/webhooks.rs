//! The webhook sender: turns accepted messages into Meta's status notifications and POSTs them,
//! signed, to the webhook URL.
//!
//! It runs as one local task on the actix System where the simulator was started (`awc::Client`
//! is `!Send`), fed by an unbounded channel from the HTTP workers. For each accepted message it
//! plans, with its own seeded RNG:
//! - undeliverable recipient: `failed` (131026) after `sent_delay_ms`, and nothing else;
//! - marketing to a user who stopped it (`/__sim/user-preferences`): `failed` (131050) after
//!   `sent_delay_ms`, and nothing else;
//! - otherwise `sent` after `sent_delay_ms`; `delivered` (with probability `delivered_ratio`)
//!   `delivered_delay_ms` later, carrying `pricing`; `read` (probability `read_ratio` of the
//!   delivered ones) `read_delay_ms` after that.
//!
//! Payloads have the v24+ shape (META.md §5): no `conversation`, `pricing` (`PMP`, `regular`, the
//! template's category) on `delivered` only, `errors` on `failed` only.
//!
//! Timestamps are the injected clock's time of acceptance plus those delays (unix seconds, as a
//! string); the delays themselves run on real time. Due statuses are grouped per sender number
//! (one `entry`/`change` per POST, `metadata` naming the number) and posted when a group holds
//! `batch_size` statuses or its oldest has waited `batch_interval_ms`.
//!
//! Faults: with `duplicate_ratio` a status is planned twice (the copy a little later, so usually in
//! another POST); with `reorder` every status gets a random extra delay and every batch is shuffled.
//!
//! Delivery: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(body, app_secret)>`; any 2xx is
//! success. Anything else, or a connection error, is retried with the same body after
//! `retry_initial_ms`, doubling up to `retry_max_ms`, forever (Meta keeps trying for 7 days), so a
//! daemon that comes back gets what it missed. At most `max_concurrent_posts` POSTs are in flight;
//! a POST waiting for its retry does not hold a slot. Without a webhook URL, due notifications are
//! dropped and counted.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix_web::rt::time::{sleep, sleep_until, Instant};
use bytes::Bytes;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Serialize, Serializer};

use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::Semaphore;

use super::state::{AcceptedMessage, AccountEvent, SenderCommand, Shared};
use super::world::Behaviour;

/// Timeout of one webhook POST.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Smallest spread of a duplicate status after its original.
const MIN_DUPLICATE_SPREAD_MS: u64 = 50;
/// Commands handled per loop turn before due statuses are looked at again.
const COMMANDS_PER_TURN: usize = 4_096;

/// `sha256=<lowercase hex HMAC-SHA256(body, secret)>`: the `X-Hub-Signature-256` header value.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    crate::domain::callback::sha256_signature(secret, body)
}

/// An `Arc<str>` serialised as a string (serde's `rc` feature is not enabled).
#[derive(Clone, Debug)]
struct SharedStr(Arc<str>);

impl Serialize for SharedStr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// One `statuses[]` item.
#[derive(Clone, Debug, Serialize)]
struct StatusJson {
    id: String,
    status: &'static str,
    timestamp: String,
    recipient_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    biz_opaque_callback_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pricing: Option<Pricing>,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<[StatusErrorJson; 1]>,
}

#[derive(Clone, Debug, Serialize)]
struct Pricing {
    billable: bool,
    pricing_model: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    category: SharedStr,
}

#[derive(Clone, Debug, Serialize)]
struct StatusErrorJson {
    code: i64,
    title: &'static str,
    message: &'static str,
    error_data: ErrorData,
    href: &'static str,
}

#[derive(Clone, Debug, Serialize)]
struct ErrorData {
    details: &'static str,
}

fn undeliverable_error() -> StatusErrorJson {
    StatusErrorJson {
        code: 131_026,
        title: "Message undeliverable",
        message: "Message undeliverable",
        error_data: ErrorData {
            details: "Message Undeliverable.",
        },
        href: "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
}

fn marketing_stopped_error() -> StatusErrorJson {
    StatusErrorJson {
        code: 131_050,
        title: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
        message: "Unable to deliver the message. This recipient has chosen to stop receiving marketing messages on WhatsApp from your business",
        error_data: ErrorData {
            details: "This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
        },
        href: "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
}

/// A status due at `at`.
struct Due {
    at: Instant,
    seq: u64,
    number: usize,
    status: StatusJson,
}

impl PartialEq for Due {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Due statuses of one number waiting for their batch.
#[derive(Default)]
struct Group {
    statuses: Vec<StatusJson>,
    /// When the oldest of them became due.
    since: Option<Instant>,
}

/// Starts the sender on the current actix System (must be called from within it).
pub(crate) fn spawn(shared: Arc<Shared>, commands: UnboundedReceiver<SenderCommand>) {
    let behaviour = shared.behaviour();
    let numbers = shared.world.read().numbers.len();
    let sender = Sender {
        rng: StdRng::seed_from_u64(shared.seed),
        groups: (0..numbers).map(|_| Group::default()).collect(),
        timeline: BinaryHeap::new(),
        seq: 0,
        post: Rc::new(Poster {
            client: awc::Client::builder()
                .timeout(POST_TIMEOUT)
                .disable_redirects()
                .finish(),
            slots: Semaphore::new(behaviour.max_concurrent_posts),
            shared: shared.clone(),
            attempts: std::cell::Cell::new(0),
        }),
        shared,
        commands,
    };
    actix_web::rt::spawn(sender.run());
}

struct Sender {
    shared: Arc<Shared>,
    commands: UnboundedReceiver<SenderCommand>,
    rng: StdRng,
    timeline: BinaryHeap<Reverse<Due>>,
    groups: Vec<Group>,
    seq: u64,
    post: Rc<Poster>,
}

impl Sender {
    async fn run(mut self) {
        loop {
            let behaviour = self.shared.behaviour();
            let wake = self.next_wake(&behaviour);
            tokio::select! {
                command = self.commands.recv() => match command {
                    None | Some(SenderCommand::Shutdown) => break,
                    Some(command) => {
                        if !self.handle(command, &behaviour) {
                            break;
                        }
                        // Take what else is waiting, without starving the timers.
                        for _ in 0..COMMANDS_PER_TURN {
                            match self.commands.try_recv() {
                                Ok(command) => {
                                    if !self.handle(command, &behaviour) {
                                        return;
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                    }
                },
                _ = sleep_until(wake.unwrap_or_else(far_future)), if wake.is_some() => {}
            }
            self.promote_due(Instant::now());
            self.flush(Instant::now(), &behaviour);
        }
    }

    /// Handles one command; `false` to stop.
    fn handle(&mut self, command: SenderCommand, behaviour: &Behaviour) -> bool {
        match command {
            SenderCommand::Accepted(message) => self.plan(message, behaviour),
            SenderCommand::Event(event) => {
                let post = self.post.clone();
                actix_web::rt::spawn(async move { post.deliver_event(event).await });
            }
            SenderCommand::Shutdown => return false,
        }
        true
    }

    /// The earliest moment something has to happen: a status becoming due or a batch's wait
    /// ending.
    fn next_wake(&self, behaviour: &Behaviour) -> Option<Instant> {
        let due = self.timeline.peek().map(|Reverse(d)| d.at);
        let interval = Duration::from_millis(behaviour.batch_interval_ms);
        let batch = self
            .groups
            .iter()
            .filter_map(|g| g.since)
            .min()
            .map(|since| since + interval);
        match (due, batch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Plans the statuses of one accepted message.
    fn plan(&mut self, m: AcceptedMessage, b: &Behaviour) {
        let counters = &self.shared.counters;
        counters.messages_planned.fetch_add(1, Ordering::Relaxed);
        let base = Instant::now();
        let status = |status: &'static str, after_ms: u64| StatusJson {
            id: m.wamid.clone(),
            status,
            timestamp: (m
                .accepted_ms
                .saturating_add(after_ms as i64)
                .div_euclid(1_000))
            .to_string(),
            recipient_id: m.recipient_id.clone(),
            biz_opaque_callback_data: m.opaque.clone(),
            pricing: None,
            errors: None,
        };
        let sent_at = b.sent_delay_ms;
        if m.undeliverable || m.marketing_stopped {
            let error = match m.undeliverable {
                true => undeliverable_error(),
                false => marketing_stopped_error(),
            };
            let failed = StatusJson {
                errors: Some([error]),
                ..status("failed", sent_at)
            };
            self.schedule(base, sent_at, m.number, failed, b);
            return;
        }
        self.schedule(base, sent_at, m.number, status("sent", sent_at), b);
        if b.delivered_ratio > 0.0 && self.rng.random_bool(b.delivered_ratio) {
            let delivered_at = sent_at + b.delivered_delay_ms;
            let delivered = StatusJson {
                pricing: Some(Pricing {
                    billable: true,
                    pricing_model: "PMP",
                    kind: "regular",
                    category: SharedStr(m.pricing_category.clone()),
                }),
                ..status("delivered", delivered_at)
            };
            self.schedule(base, delivered_at, m.number, delivered, b);
            self.shared
                .counters
                .delivered_planned
                .fetch_add(1, Ordering::Relaxed);
            if b.read_ratio > 0.0 && self.rng.random_bool(b.read_ratio) {
                let read_at = delivered_at + b.read_delay_ms;
                self.shared
                    .counters
                    .read_planned
                    .fetch_add(1, Ordering::Relaxed);
                self.schedule(base, read_at, m.number, status("read", read_at), b);
            }
        }
    }

    fn schedule(
        &mut self,
        base: Instant,
        after_ms: u64,
        number: usize,
        status: StatusJson,
        b: &Behaviour,
    ) {
        let mut at = base + Duration::from_millis(after_ms);
        if b.reorder && b.reorder_jitter_ms > 0 {
            at += Duration::from_millis(self.rng.random_range(0..=b.reorder_jitter_ms));
        }
        let shared = self.shared.clone();
        let counters = &shared.counters;
        if b.duplicate_ratio > 0.0 && self.rng.random_bool(b.duplicate_ratio) {
            let spread = b.reorder_jitter_ms.max(MIN_DUPLICATE_SPREAD_MS);
            let copy_at = at + Duration::from_millis(self.rng.random_range(1..=spread));
            self.push(copy_at, number, status.clone());
            counters
                .duplicates_scheduled
                .fetch_add(1, Ordering::Relaxed);
            counters.statuses_scheduled.fetch_add(1, Ordering::Relaxed);
        }
        self.push(at, number, status);
        counters.statuses_scheduled.fetch_add(1, Ordering::Relaxed);
    }

    fn push(&mut self, at: Instant, number: usize, status: StatusJson) {
        self.seq += 1;
        self.timeline.push(Reverse(Due {
            at,
            seq: self.seq,
            number,
            status,
        }));
    }

    /// Moves every status due by `now` into its number's group.
    fn promote_due(&mut self, now: Instant) {
        while self.timeline.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(due)) = self.timeline.pop() else {
                break;
            };
            let group = &mut self.groups[due.number];
            group.since.get_or_insert(now);
            group.statuses.push(due.status);
        }
    }

    /// Posts every group that has waited `batch_interval_ms` (all of it) or holds at least a full
    /// batch (the full batches; a younger remainder keeps waiting).
    fn flush(&mut self, now: Instant, b: &Behaviour) {
        let interval = Duration::from_millis(b.batch_interval_ms);
        for number in 0..self.groups.len() {
            let group = &mut self.groups[number];
            let Some(since) = group.since else {
                continue;
            };
            let mut ready = if now >= since + interval {
                group.since = None;
                std::mem::take(&mut group.statuses)
            } else if group.statuses.len() >= b.batch_size {
                let whole = group.statuses.len() / b.batch_size * b.batch_size;
                let rest = group.statuses.split_off(whole);
                if rest.is_empty() {
                    group.since = None;
                }
                std::mem::replace(&mut group.statuses, rest)
            } else {
                continue;
            };
            for chunk in ready.chunks_mut(b.batch_size) {
                self.send_batch(number, chunk, b);
            }
        }
    }

    fn send_batch(&mut self, number: usize, statuses: &mut [StatusJson], b: &Behaviour) {
        if b.reorder {
            statuses.shuffle(&mut self.rng);
        }
        let body = {
            let world = self.shared.world.read();
            let n = &world.numbers[number];
            status_notification(&world.wabas[n.waba].id, &n.display_digits, &n.id, statuses)
        };
        let count = statuses.len() as u64;
        let post = self.post.clone();
        actix_web::rt::spawn(async move { post.deliver_statuses(body, count).await });
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

/// The body of a status notification for one number.
fn status_notification(
    waba_id: &str,
    display_digits: &str,
    phone_number_id: &str,
    statuses: &[StatusJson],
) -> Bytes {
    #[derive(Serialize)]
    struct Notification<'a> {
        object: &'static str,
        entry: [Entry<'a>; 1],
    }
    #[derive(Serialize)]
    struct Entry<'a> {
        id: &'a str,
        changes: [Change<'a>; 1],
    }
    #[derive(Serialize)]
    struct Change<'a> {
        field: &'static str,
        value: Value<'a>,
    }
    #[derive(Serialize)]
    struct Value<'a> {
        messaging_product: &'static str,
        metadata: Metadata<'a>,
        statuses: &'a [StatusJson],
    }
    #[derive(Serialize)]
    struct Metadata<'a> {
        display_phone_number: &'a str,
        phone_number_id: &'a str,
    }
    let notification = Notification {
        object: "whatsapp_business_account",
        entry: [Entry {
            id: waba_id,
            changes: [Change {
                field: "messages",
                value: Value {
                    messaging_product: "whatsapp",
                    metadata: Metadata {
                        display_phone_number: display_digits,
                        phone_number_id,
                    },
                    statuses,
                },
            }],
        }],
    };
    Bytes::from(serde_json::to_vec(&notification).unwrap_or_default())
}

/// The body of an account-level notification.
fn event_notification(event: &AccountEvent) -> Bytes {
    let body = serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": event.waba_id,
            "time": event.time_s,
            "changes": [{"field": event.field, "value": event.value}],
        }],
    });
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}

/// What a POST attempt needs; shared by the POST tasks of the sender.
struct Poster {
    client: awc::Client,
    slots: Semaphore,
    shared: Arc<Shared>,
    /// Attempts so far: with several webhook URLs, the next attempt goes to the next one.
    attempts: std::cell::Cell<usize>,
}

/// How a delivery ended.
enum Delivered {
    Ok,
    Dropped,
}

impl Poster {
    async fn deliver_statuses(&self, body: Bytes, count: u64) {
        let counters = &self.shared.counters;
        match self.deliver(body).await {
            Delivered::Ok => counters.statuses_posted.fetch_add(count, Ordering::Relaxed),
            Delivered::Dropped => counters
                .statuses_dropped
                .fetch_add(count, Ordering::Relaxed),
        };
    }

    async fn deliver_event(&self, event: AccountEvent) {
        let counters = &self.shared.counters;
        match self.deliver(event_notification(&event)).await {
            Delivered::Ok => counters.events_posted.fetch_add(1, Ordering::Relaxed),
            Delivered::Dropped => counters.events_dropped.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// POSTs `body` until a 2xx, backing off between attempts; drops it when there is no URL.
    async fn deliver(&self, body: Bytes) -> Delivered {
        let signature = signature(self.shared.app_secret.as_bytes(), &body);
        let mut backoff = Duration::from_millis(self.shared.behaviour().retry_initial_ms);
        loop {
            let Some(urls) = self.shared.webhook_url.read().clone() else {
                return Delivered::Dropped;
            };
            let url = self.next_url(&urls);
            let ok = {
                let Ok(_slot) = self.slots.acquire().await else {
                    return Delivered::Dropped;
                };
                self.attempt(&url, &signature, body.clone()).await
            };
            let counters = &self.shared.counters;
            if ok {
                counters.posts_ok.fetch_add(1, Ordering::Relaxed);
                return Delivered::Ok;
            }
            counters.posts_failed.fetch_add(1, Ordering::Relaxed);
            sleep(backoff).await;
            let max = Duration::from_millis(self.shared.behaviour().retry_max_ms);
            backoff = (backoff * 2).min(max);
        }
    }

    /// The URL of the next attempt: the webhook URL, or with several (separated by commas:
    /// nodes behind a load balancer, as Meta sees one URL) each in turn, so that a retry goes
    /// to the next.
    fn next_url(&self, urls: &str) -> String {
        let n = self.attempts.get();
        self.attempts.set(n.wrapping_add(1));
        let count = urls.split(',').count();
        urls.split(',')
            .nth(n % count)
            .unwrap_or(urls)
            .trim()
            .to_owned()
    }

    async fn attempt(&self, url: &str, signature: &str, body: Bytes) -> bool {
        let request = self
            .client
            .post(url)
            .insert_header(("Content-Type", "application/json"))
            .insert_header(("X-Hub-Signature-256", signature))
            .insert_header(("User-Agent", "facebookexternalua"));
        match request.send_body(body).await {
            Ok(mut response) => {
                // Read (a bounded part of) the body so the connection can be reused.
                let _ = response.body().limit(64 * 1024).await;
                let status = response.status();
                if !status.is_success() {
                    tracing::debug!(%url, status = status.as_u16(), "A webhook POST was refused.");
                }
                status.is_success()
            }
            Err(error) => {
                tracing::debug!(%url, %error, "A webhook POST failed.");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_lowercase_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        let sig = signature(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_status_notification_parses_with_our_webhook_parser() {
        let statuses = [
            StatusJson {
                id: "wamid.A".into(),
                status: "sent",
                timestamp: "1767225600".into(),
                recipient_id: "5491112345678".into(),
                biz_opaque_callback_data: Some("msg-1".into()),
                pricing: None,
                errors: None,
            },
            StatusJson {
                id: "wamid.B".into(),
                status: "failed",
                timestamp: "1767225601".into(),
                recipient_id: "14155550100".into(),
                biz_opaque_callback_data: None,
                pricing: None,
                errors: Some([undeliverable_error()]),
            },
        ];
        let body = status_notification("waba", "12025550101", "106", &statuses);
        let parsed = crate::meta::webhook::parse(&body).unwrap();
        assert_eq!(parsed.skipped, 0);
        assert_eq!(parsed.events.len(), 2);
        match &parsed.events[1] {
            crate::meta::webhook::Event::Status(s) => {
                assert_eq!(s.waba_id.as_deref(), Some("waba"));
                assert_eq!(s.phone_number_id.as_deref(), Some("106"));
                assert_eq!(s.timestamp, Some(1_767_225_601));
                assert_eq!(s.errors[0].code, 131_026);
            }
            other => panic!("{other:?}"),
        }
    }
}
