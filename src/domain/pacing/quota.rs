//! The portfolio's messaging limit: unique recipients in a moving 24 h window (see the
//! parent module's doc); and how the quota and the pair rate key a recipient.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::*;

/// A recipient as the quota and the pair rate key it: the E.164 number as an integer when it is
/// one (no string stored), the string itself otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum RecipientKey {
    /// `+` (optional) and 1–15 digits without a leading zero, as a number: injective.
    Phone(u64),
    /// Anything else, verbatim.
    Other(Arc<str>),
}

impl RecipientKey {
    pub(super) fn new(recipient: &str) -> Self {
        let digits = recipient.strip_prefix('+').unwrap_or(recipient);
        let e164_shape = (1..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit());
        if e164_shape {
            if let Ok(n) = digits.parse::<u64>() {
                return RecipientKey::Phone(n);
            }
        }
        RecipientKey::Other(Arc::from(recipient))
    }
}

/// What the messaging limit says about sending to one recipient now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaCheck {
    /// The recipient was messaged inside the window: sending costs nothing.
    InWindow,
    /// A new recipient, and the window has room for it.
    Fits,
    /// A new recipient, and the window is full. `until_ms` (unix ms) is when the next slot frees
    /// (the oldest counted recipient leaves); `i64::MAX` when no slot frees by time (limit 0), only
    /// a higher limit helps.
    Blocked {
        /// When the next slot frees, unix ms.
        until_ms: i64,
    },
}

/// The messaging limit of one business portfolio: unique recipients per moving window (24 h),
/// shared by every number of the portfolio (META.md §2).
///
/// A recipient is in the window from the time it was last messaged (`t`) until `t + window`
/// (exclusive). Methods that take `now_ms` first drop the entries that left the window.
#[derive(Clone, Debug)]
pub struct PortfolioQuota {
    /// Unique recipients allowed in the window; `None` = unlimited. Set by the tier.
    limit: Option<u32>,
    /// The window length in ms ([`QUOTA_WINDOW_MS`] unless built with a margin).
    window_ms: i64,
    /// Every recipient in the window → when it was last messaged (unix ms).
    last: HashMap<RecipientKey, i64>,
    /// `(last-messaged time, recipient)` in time order; a slot whose time differs from `last` is
    /// stale (the recipient was messaged again) and skipped.
    pub(super) order: VecDeque<(i64, RecipientKey)>,
    /// The latest time recorded; earlier records are raised to it to keep `order` sorted.
    latest_ms: i64,
}

impl PortfolioQuota {
    /// An empty quota with Meta's 24 h window; `limit` `None` = unlimited.
    pub fn new(limit: Option<u32>) -> Self {
        PortfolioQuota::with_window_ms(limit, QUOTA_WINDOW_MS)
    }

    /// An empty quota with a window of `window_ms` (at least 1 ms), e.g. 24 h plus a safety margin
    /// for the delay between our grant and Meta's count.
    pub fn with_window_ms(limit: Option<u32>, window_ms: i64) -> Self {
        PortfolioQuota {
            limit,
            window_ms: window_ms.max(1),
            last: HashMap::new(),
            order: VecDeque::new(),
            latest_ms: i64::MIN,
        }
    }

    /// Unique recipients allowed per window; `None` = unlimited.
    pub fn limit(&self) -> Option<u32> {
        self.limit
    }

    /// Changes the limit (tier change, `business_capability_update`). Recipients already in the
    /// window stay counted; a lower limit can leave the window over it until entries expire.
    pub fn set_limit(&mut self, limit: Option<u32>) {
        self.limit = limit;
    }

    /// The window length in ms.
    pub fn window_ms(&self) -> i64 {
        self.window_ms
    }

    /// Adds persisted ledger entries `(recipient, last sent unix ms)` after a restart. Entries
    /// already out of the window at `now_ms` are skipped; a recipient seen twice keeps its latest
    /// time. Merges with what is already recorded, so loading twice is harmless.
    pub fn load(&mut self, entries: impl IntoIterator<Item = (String, i64)>, now_ms: i64) {
        for (recipient, at_ms) in entries {
            if at_ms.saturating_add(self.window_ms) <= now_ms {
                continue;
            }
            let key = RecipientKey::new(&recipient);
            let at = self.last.get(&key).map_or(at_ms, |&old| old.max(at_ms));
            self.last.insert(key, at);
            self.latest_ms = self.latest_ms.max(at);
        }
        self.rebuild_order();
        self.prune(now_ms);
    }

    /// Whether sending to `recipient` at `now_ms` is free, fits, or must wait.
    pub fn check(&mut self, recipient: &str, now_ms: i64) -> QuotaCheck {
        self.prune(now_ms);
        self.check_key(&RecipientKey::new(recipient), now_ms)
    }

    /// Records a send to `recipient` at `now_ms` (always: it happened). Returns whether it used a
    /// slot, i.e. the recipient was not in the window. A recipient messaged again stays in the
    /// window for another full window from now.
    pub fn record(&mut self, recipient: &str, now_ms: i64) -> bool {
        self.prune(now_ms);
        self.record_key(RecipientKey::new(recipient), now_ms)
    }

    /// Unique recipients in the window at `now_ms` (saturates at `u32::MAX`).
    pub fn used(&mut self, now_ms: i64) -> u32 {
        self.prune(now_ms);
        self.used_now()
    }

    /// Slots left at `now_ms`, never negative; `None` = unlimited.
    pub fn available(&mut self, now_ms: i64) -> Option<u32> {
        self.prune(now_ms);
        self.room()
    }

    /// When the window is full at `now_ms`: when the next slot frees (unix ms, `i64::MAX` for
    /// never by time). `None` when there is room or no limit.
    pub fn full_until(&mut self, now_ms: i64) -> Option<i64> {
        self.prune(now_ms);
        self.full_until_now()
    }

    /// Drops the entries that left the window by `now_ms`. Amortised O(1).
    pub fn prune(&mut self, now_ms: i64) {
        while let Some((at, key)) = self.order.front() {
            let live = self.last.get(key) == Some(at);
            if live {
                if at.saturating_add(self.window_ms) > now_ms {
                    break;
                }
                self.last.remove(key);
            }
            self.order.pop_front();
        }
    }

    pub(super) fn used_now(&self) -> u32 {
        u32::try_from(self.last.len()).unwrap_or(u32::MAX)
    }

    /// Slots left, after a prune.
    pub(super) fn room(&self) -> Option<u32> {
        self.limit
            .map(|limit| limit.saturating_sub(self.used_now()))
    }

    /// After a prune: `Some(when the next slot frees)` if the window is full.
    pub(super) fn full_until_now(&self) -> Option<i64> {
        let limit = self.limit?;
        let used = self.last.len();
        let excess = used.checked_sub(limit as usize)?;
        // Slots free one per live entry leaving; `excess + 1` must leave for one slot.
        let frees_at = self
            .order
            .iter()
            .filter(|(at, key)| self.last.get(key) == Some(at))
            .nth(excess)
            .map_or(i64::MAX, |(at, _)| at.saturating_add(self.window_ms));
        Some(frees_at)
    }

    /// The check, after a prune.
    pub(super) fn check_key(&self, key: &RecipientKey, now_ms: i64) -> QuotaCheck {
        let in_window = self
            .last
            .get(key)
            .is_some_and(|at| at.saturating_add(self.window_ms) > now_ms);
        if in_window {
            return QuotaCheck::InWindow;
        }
        match self.full_until_now() {
            None => QuotaCheck::Fits,
            Some(until_ms) => QuotaCheck::Blocked { until_ms },
        }
    }

    /// The record, after a prune.
    pub(super) fn record_key(&mut self, key: RecipientKey, now_ms: i64) -> bool {
        let at = now_ms.max(self.latest_ms);
        self.latest_ms = at;
        let previous = self.last.insert(key.clone(), at);
        let was_new = previous.is_none_or(|old| old.saturating_add(self.window_ms) <= now_ms);
        if previous != Some(at) {
            self.order.push_back((at, key));
        }
        if self.order.len() > self.last.len().saturating_mul(2).saturating_add(64) {
            self.rebuild_order();
        }
        was_new
    }

    /// Rebuilds `order` from `last` (sorted by time), dropping stale slots.
    pub(super) fn rebuild_order(&mut self) {
        let mut order: Vec<(i64, RecipientKey)> = self
            .last
            .iter()
            .map(|(key, &at)| (at, key.clone()))
            .collect();
        order.sort_unstable();
        self.order = order.into();
    }
}
