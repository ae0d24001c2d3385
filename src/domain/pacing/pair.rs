//! Meta's pair rate: one message per recipient per 6 s from one number.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::*;

/// The `131056` penalty of Meta's pair rate: 4^`failures` seconds, in ms (saturating).
pub fn pair_penalty_ms(failures: u32) -> i64 {
    4_i64.saturating_pow(failures).saturating_mul(1_000)
}

/// One number's pair rate: when each recipient may be messaged again (META.md §3). Holds only the
/// recipients still waiting: those messaged in the last interval and the penalized ones.
#[derive(Clone, Debug)]
pub struct PairRate {
    /// Minimum time between two messages to one recipient, ms.
    interval_ms: i64,
    /// Recipient → unix ms from which it may be messaged again.
    next: HashMap<RecipientKey, i64>,
    /// `(allowed-again time, recipient)`, earliest first; stale when `next` holds another time.
    pub(super) expiry: BinaryHeap<Reverse<(i64, RecipientKey)>>,
}

impl Default for PairRate {
    fn default() -> Self {
        PairRate::new()
    }
}

impl PairRate {
    /// Meta's pair rate: one message per recipient per [`PAIR_INTERVAL_MS`].
    pub fn new() -> Self {
        PairRate::with_interval_ms(PAIR_INTERVAL_MS)
    }

    /// Meta's pair rate with [`PAIR_MARGIN_MS`] of slack: what the engine runs. Each message is
    /// recorded at its grant and again at Meta's answer ([`PairRate::record`] never shortens a
    /// wait), so the interval runs from the later of the two.
    pub fn with_margin() -> Self {
        PairRate::with_interval_ms(PAIR_INTERVAL_MS + PAIR_MARGIN_MS)
    }

    /// A pair rate of one message per `interval_ms` (at least 0) per recipient.
    pub fn with_interval_ms(interval_ms: i64) -> Self {
        PairRate {
            interval_ms: interval_ms.max(0),
            next: HashMap::new(),
            expiry: BinaryHeap::new(),
        }
    }

    /// The interval between two messages to one recipient, ms.
    pub fn interval_ms(&self) -> i64 {
        self.interval_ms
    }

    /// When `recipient` may be messaged again (unix ms), or `None` if it may be at `now_ms`.
    pub fn allowed_at(&self, recipient: &str, now_ms: i64) -> Option<i64> {
        self.allowed_at_key(&RecipientKey::new(recipient), now_ms)
    }

    /// Records a message to `recipient` at `now_ms`: the next one waits the interval (or the
    /// penalty, if later).
    pub fn record(&mut self, recipient: &str, now_ms: i64) {
        self.record_key(RecipientKey::new(recipient), now_ms);
    }

    /// After a `131056`: `recipient` waits until `until_ms` (the caller adds
    /// [`pair_penalty_ms`]`(X)` to now). Never shortens an existing wait.
    pub fn penalize(&mut self, recipient: &str, until_ms: i64) {
        self.hold(RecipientKey::new(recipient), until_ms);
    }

    /// Forgets the recipients allowed again by `now_ms`. Amortised O(log n).
    pub fn prune(&mut self, now_ms: i64) {
        while let Some(Reverse((at, key))) = self.expiry.peek() {
            if *at > now_ms {
                break;
            }
            if self.next.get(key) == Some(at) {
                self.next.remove(key);
            }
            self.expiry.pop();
        }
    }

    /// Recipients currently held (until the next prune).
    pub fn len(&self) -> usize {
        self.next.len()
    }

    /// Whether no recipient is held.
    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    pub(super) fn allowed_at_key(&self, key: &RecipientKey, now_ms: i64) -> Option<i64> {
        self.next.get(key).copied().filter(|&at| at > now_ms)
    }

    pub(super) fn record_key(&mut self, key: RecipientKey, now_ms: i64) {
        self.hold(key, now_ms.saturating_add(self.interval_ms));
    }

    pub(super) fn hold(&mut self, key: RecipientKey, until_ms: i64) {
        let until = self
            .next
            .get(&key)
            .map_or(until_ms, |&old| old.max(until_ms));
        if self.next.get(&key) == Some(&until) {
            return;
        }
        self.next.insert(key.clone(), until);
        self.expiry.push(Reverse((until, key)));
        if self.expiry.len() > self.next.len().saturating_mul(2).saturating_add(64) {
            self.expiry = self
                .next
                .iter()
                .map(|(key, &at)| Reverse((at, key.clone())))
                .collect();
        }
    }
}
