//! Quota and estimated-time arithmetic for a bulk send (API.md, `POST …/send-bulk/`).
//!
//! # Quota
//! The messaging limit counts *unique* recipients per business portfolio in a moving 24 h window
//! ([`WINDOW_MS`]). The caller (storage) knows which recipients are already in the window; this
//! module turns those facts into [`QuotaInfo`]:
//! - `quota_total` = the tier's limit, `null` when unlimited;
//! - `quota_available` = limit − unique recipients in the window, never negative (`null` when
//!   unlimited);
//! - `quota_needed` = recipients of this send not already in the window (those cost nothing);
//! - `can_send` = `quota_needed <= quota_available` (always true when unlimited).
//!
//! # Estimated time
//! [`estimate_minutes`] = throughput time + quota wait, in minutes, rounded to one decimal:
//! - **throughput time** = `recipients_to_send / mps` seconds (every recipient is sent, whether it
//!   costs quota or not);
//! - **quota wait** ([`QuotaWindow::wait_ms`]) = how long until the last recipient needing quota can
//!   get a slot. The limit is `L` slots. A slot is free now, or frees when the recipient occupying it
//!   leaves the window (the sorted expiry times). Recipient `j` (0-based, `j < quota_needed`) takes
//!   slot `j mod L` in round `j div L`: it can go at `free_time(j mod L) + (j div L) × 24 h` because
//!   each round's recipients occupy the slots for another 24 h. The wait is that time for the last
//!   recipient (`j = quota_needed − 1`) minus `now`, and 0 when everything fits now.
//!
//! The sum is deliberately simple and slightly pessimistic: in reality the engine keeps sending the
//! recipients that cost nothing (and those that fit) while it waits. A non-empty send never shows less
//! than 0.1 minutes, so a client never sees `0.0` for work that is still to do.
//!
//! A number with no usable throughput (`mps` zero, negative, NaN or infinite: paused) has no
//! estimate: [`estimate_minutes`] returns `None` rather than an infinite or made-up value, and the
//! caller decides what to report.

use std::borrow::Cow;

use serde::Serialize;

use crate::domain::tier::Tier;

/// The length of Meta's moving messaging-limit window: 24 hours, in milliseconds.
pub const WINDOW_MS: i64 = 24 * 60 * 60 * 1000;

/// The smallest estimate shown for a send that still has recipients, in minutes.
pub const MIN_ESTIMATE_MINUTES: f64 = 0.1;

/// The `quota_info` object of the send-bulk response: what this send costs against the sender's
/// messaging limit at creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuotaInfo {
    /// Whether the whole send fits in the quota available now. When false the send is still
    /// accepted; what does not fit waits for the window to free up.
    pub can_send: bool,
    /// Unique recipients of this send not already counted in the 24 h window.
    pub quota_needed: u32,
    /// Limit minus unique recipients already in the window, never negative; `None` (JSON `null`)
    /// for an unlimited tier.
    #[schema(required)]
    pub quota_available: Option<u32>,
    /// The tier's limit; `None` (JSON `null`) for an unlimited tier.
    #[schema(required)]
    pub quota_total: Option<u32>,
    /// The tier the numbers above were computed for (API name, e.g. `TIER_1000`).
    pub tier: Tier,
}

impl QuotaInfo {
    /// Computes the quota info from the tier, the number of unique recipients already in the window
    /// (`used_in_window`) and the number of this send's recipients not among them (`needed`).
    /// Counts beyond `u32` saturate.
    pub fn compute(tier: Tier, used_in_window: u64, needed: u64) -> QuotaInfo {
        let quota_needed = saturate_u32(needed);
        match tier.limit() {
            None => QuotaInfo {
                can_send: true,
                quota_needed,
                quota_available: None,
                quota_total: None,
                tier,
            },
            Some(limit) => {
                let available = u64::from(limit).saturating_sub(used_in_window);
                QuotaInfo {
                    can_send: needed <= available,
                    quota_needed,
                    quota_available: Some(saturate_u32(available)),
                    quota_total: Some(limit),
                    tier,
                }
            }
        }
    }
}

fn saturate_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The state of a portfolio's 24 h window at one instant: the input for quota and wait arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuotaWindow<'a> {
    /// The portfolio's messaging-limit tier.
    pub tier: Tier,
    /// For every unique recipient counted in the window, the instant (unix ms) it leaves it, i.e.
    /// its last outside-CSW send + [`WINDOW_MS`]. Expected sorted ascending (it is sorted on a copy if
    /// not); instants at or before `now_ms` are already out of the window and ignored.
    pub expiries_ms: &'a [i64],
    /// The current instant, unix ms.
    pub now_ms: i64,
}

impl QuotaWindow<'_> {
    /// The expiries still in the window (after `now_ms`), sorted ascending.
    fn active(&self) -> Cow<'_, [i64]> {
        let now = self.now_ms;
        if self.expiries_ms.is_sorted() {
            let first_active = self.expiries_ms.partition_point(|&e| e <= now);
            Cow::Borrowed(self.expiries_ms.get(first_active..).unwrap_or(&[]))
        } else {
            let mut active: Vec<i64> = self
                .expiries_ms
                .iter()
                .copied()
                .filter(|&e| e > now)
                .collect();
            active.sort_unstable();
            Cow::Owned(active)
        }
    }

    /// Unique recipients counted in the window now.
    pub fn used(&self) -> u64 {
        self.active().len() as u64
    }

    /// [`QuotaInfo`] for a send whose `needed` recipients are not already in the window.
    pub fn quota_info(&self, needed: u64) -> QuotaInfo {
        QuotaInfo::compute(self.tier, self.used(), needed)
    }

    /// Milliseconds from `now_ms` until the last of `needed` new recipients can be sent without
    /// crossing the limit (the formula of the module doc); 0 when they all fit now or the tier is
    /// unlimited. Saturates at `i64::MAX`.
    pub fn wait_ms(&self, needed: u64) -> i64 {
        let Some(limit) = self.tier.limit() else {
            return 0;
        };
        if needed == 0 {
            return 0;
        }
        let limit = u64::from(limit.max(1));
        let active = self.active();
        let used = active.len() as u64;
        let free_now = limit.saturating_sub(used);
        if needed <= free_now {
            return 0;
        }
        // Slots beyond the limit (the window can hold more than the limit if the tier shrank) must
        // all expire before any slot frees.
        let excess = used.saturating_sub(limit);
        let last = needed - 1;
        let round = last / limit;
        let slot = last % limit;
        let slot_free_at = if slot < free_now {
            self.now_ms
        } else {
            usize::try_from(excess + (slot - free_now))
                .ok()
                .and_then(|i| active.get(i).copied())
                .unwrap_or(self.now_ms)
        };
        let at = i128::from(slot_free_at) + i128::from(round) * i128::from(WINDOW_MS);
        let wait = (at - i128::from(self.now_ms)).max(0);
        i64::try_from(wait).unwrap_or(i64::MAX)
    }
}

/// Estimated minutes to finish a send of `recipients_to_send` unique recipients, `quota_needed` of
/// which need quota, from a number sending at `mps` messages per second, given the portfolio's
/// window (formula in the module doc). One decimal; at least [`MIN_ESTIMATE_MINUTES`] when there is
/// anything to send; `Some(0.0)` for nothing to send.
///
/// `None` when `mps` is not a positive finite number (a paused number) or the result would not be
/// finite: there is no honest estimate then.
pub fn estimate_minutes(
    recipients_to_send: u64,
    mps: f64,
    window: &QuotaWindow<'_>,
    quota_needed: u64,
) -> Option<f64> {
    if recipients_to_send == 0 {
        return Some(0.0);
    }
    if !(mps.is_finite() && mps > 0.0) {
        return None;
    }
    let send_secs = recipients_to_send as f64 / mps;
    let wait_secs = window.wait_ms(quota_needed) as f64 / 1000.0;
    let minutes = (send_secs + wait_secs) / 60.0;
    let rounded = (minutes * 10.0).round() / 10.0;
    rounded
        .is_finite()
        .then_some(rounded.max(MIN_ESTIMATE_MINUTES))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_750_000_000_000;
    const MIN: i64 = 60_000;

    fn window(tier: Tier, expiries: &[i64]) -> QuotaWindow<'_> {
        QuotaWindow {
            tier,
            expiries_ms: expiries,
            now_ms: NOW,
        }
    }

    #[test]
    fn quota_info_matches_the_api_example() {
        let q = QuotaInfo::compute(Tier::T1000, 0, 3);
        assert_eq!(
            serde_json::to_value(q).unwrap(),
            json!({"can_send": true, "quota_needed": 3, "quota_available": 1000,
                   "quota_total": 1000, "tier": "TIER_1000"})
        );
        let q = QuotaInfo::compute(Tier::T1000, 45, 3);
        assert_eq!(q.quota_available, Some(955));
    }

    #[test]
    fn quota_info_when_it_does_not_fit() {
        let q = QuotaInfo::compute(Tier::T250, 200, 300);
        assert!(!q.can_send);
        assert_eq!(q.quota_available, Some(50));
        assert_eq!(q.quota_needed, 300);
        assert_eq!(q.quota_total, Some(250));
        let exact = QuotaInfo::compute(Tier::T250, 200, 50);
        assert!(exact.can_send);
    }

    #[test]
    fn quota_available_is_never_negative() {
        let q = QuotaInfo::compute(Tier::T50, 80, 1);
        assert_eq!(q.quota_available, Some(0));
        assert!(!q.can_send);
        let zero = QuotaInfo::compute(Tier::T50, 80, 0);
        assert!(
            zero.can_send,
            "a send fully inside the window needs nothing"
        );
    }

    #[test]
    fn quota_info_unlimited_and_not_set() {
        let q = QuotaInfo::compute(Tier::Unlimited, 1_000_000, 5_000_000);
        assert!(q.can_send);
        assert_eq!(q.quota_available, None);
        assert_eq!(q.quota_total, None);
        assert_eq!(
            serde_json::to_value(q).unwrap(),
            json!({"can_send": true, "quota_needed": 5_000_000, "quota_available": null,
                   "quota_total": null, "tier": "TIER_UNLIMITED"})
        );
        let q = QuotaInfo::compute(Tier::NotSet, 0, 10);
        assert_eq!(q.quota_total, Some(250));
        assert_eq!(serde_json::to_value(q).unwrap()["tier"], json!("TIER_250"));
    }

    #[test]
    fn quota_info_saturates_huge_counts() {
        let q = QuotaInfo::compute(Tier::T1000, 0, u64::MAX);
        assert_eq!(q.quota_needed, u32::MAX);
        assert!(!q.can_send);
    }

    #[test]
    fn window_counts_only_unexpired_entries() {
        let expiries = [NOW - 1, NOW, NOW + 1, NOW + 2];
        let w = window(Tier::T250, &expiries);
        assert_eq!(w.used(), 2);
        assert_eq!(w.quota_info(10).quota_available, Some(248));
        let unsorted = [NOW + 2, NOW - 5, NOW + 1];
        assert_eq!(window(Tier::T250, &unsorted).used(), 2);
    }

    #[test]
    fn no_wait_when_it_fits_or_unlimited() {
        let expiries: Vec<i64> = (1..=200).map(|i| NOW + i * MIN).collect();
        let w = window(Tier::T250, &expiries);
        assert_eq!(w.wait_ms(0), 0);
        assert_eq!(w.wait_ms(50), 0);
        assert_eq!(window(Tier::Unlimited, &expiries).wait_ms(1_000_000), 0);
    }

    /// Tier 250 with 200 used, expiring one per minute; 300 new recipients: 50 go now, the other
    /// 250 need the whole window to expire (the 200th expiry, at +200 min) and then 50 of the slots
    /// this send itself fills: the last one waits a full 24 h for its slot.
    #[test]
    fn wait_follows_the_window_expiries() {
        let expiries: Vec<i64> = (1..=200).map(|i| NOW + i * MIN).collect();
        let w = window(Tier::T250, &expiries);
        assert_eq!(w.wait_ms(51), MIN, "the 51st waits for the first expiry");
        assert_eq!(w.wait_ms(60), 10 * MIN);
        assert_eq!(
            w.wait_ms(250),
            200 * MIN,
            "the 250th waits for the 200th expiry"
        );
        assert_eq!(
            w.wait_ms(251),
            WINDOW_MS,
            "the 251st waits for a slot used now"
        );
        assert_eq!(w.wait_ms(300), WINDOW_MS);
        assert_eq!(w.wait_ms(301), WINDOW_MS + MIN);
    }

    #[test]
    fn wait_with_an_empty_window_is_whole_rounds() {
        let w = window(Tier::T50, &[]);
        assert_eq!(w.wait_ms(50), 0);
        assert_eq!(w.wait_ms(51), WINDOW_MS);
        assert_eq!(w.wait_ms(100), WINDOW_MS);
        assert_eq!(w.wait_ms(101), 2 * WINDOW_MS);
    }

    #[test]
    fn wait_when_the_window_is_over_the_limit() {
        // 60 entries for a 50 limit: the first slot frees at the 11th expiry.
        let expiries: Vec<i64> = (1..=60).map(|i| NOW + i * MIN).collect();
        let w = window(Tier::T50, &expiries);
        assert_eq!(w.quota_info(1).quota_available, Some(0));
        assert_eq!(w.wait_ms(1), 11 * MIN);
        assert_eq!(w.wait_ms(50), 60 * MIN);
        assert_eq!(w.wait_ms(51), 11 * MIN + WINDOW_MS);
    }

    #[test]
    fn wait_does_not_trust_unsorted_input() {
        let sorted: Vec<i64> = (1..=200).map(|i| NOW + i * MIN).collect();
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        shuffled.swap(3, 150);
        for needed in [1, 51, 120, 250, 400] {
            assert_eq!(
                window(Tier::T250, &shuffled).wait_ms(needed),
                window(Tier::T250, &sorted).wait_ms(needed)
            );
        }
    }

    #[test]
    fn wait_saturates_instead_of_overflowing() {
        let w = QuotaWindow {
            tier: Tier::T50,
            expiries_ms: &[i64::MAX, i64::MAX],
            now_ms: i64::MIN,
        };
        assert_eq!(w.wait_ms(u64::MAX), i64::MAX);
        let w = QuotaWindow {
            tier: Tier::T50,
            expiries_ms: &[],
            now_ms: i64::MAX,
        };
        assert_eq!(w.wait_ms(u64::MAX), i64::MAX);
    }

    #[test]
    fn estimate_throughput_only() {
        let w = window(Tier::T1000, &[]);
        // 3 recipients at 80 mps: 0.04 s, shown as the 0.1 minimum.
        assert_eq!(estimate_minutes(3, 80.0, &w, 3), Some(0.1));
        // 1000 at 80 mps = 12.5 s = 0.208 min → 0.2.
        assert_eq!(estimate_minutes(1000, 80.0, &w, 1000), Some(0.2));
        // 100 000 at 80 mps on an unlimited tier = 1250 s = 20.83 min → 20.8.
        let unlimited = window(Tier::Unlimited, &[]);
        assert_eq!(
            estimate_minutes(100_000, 80.0, &unlimited, 100_000),
            Some(20.8)
        );
        // Same at 1000 mps = 100 s = 1.67 min → 1.7.
        assert_eq!(
            estimate_minutes(100_000, 1000.0, &unlimited, 100_000),
            Some(1.7)
        );
        // 20 mps coexistence: 6000 recipients = 300 s = 5.0 min.
        let big = window(Tier::T10000, &[]);
        assert_eq!(estimate_minutes(6000, 20.0, &big, 6000), Some(5.0));
    }

    #[test]
    fn estimate_includes_the_quota_wait() {
        let expiries: Vec<i64> = (1..=200).map(|i| NOW + i * MIN).collect();
        let w = window(Tier::T250, &expiries);
        // 250 new recipients: 200 min wait + 250/80 s (3.125 s) → 200.05 → 200.1.
        assert_eq!(estimate_minutes(250, 80.0, &w, 250), Some(200.1));
        // Everything already in the window: no quota needed, no wait.
        assert_eq!(estimate_minutes(250, 80.0, &w, 0), Some(0.1));
        // 300 new: a full day plus 3.75 s.
        assert_eq!(estimate_minutes(300, 80.0, &w, 300), Some(1440.1));
    }

    #[test]
    fn estimate_edge_cases_never_nan_or_infinite() {
        let w = window(Tier::T250, &[]);
        assert_eq!(estimate_minutes(0, 80.0, &w, 0), Some(0.0));
        assert_eq!(estimate_minutes(0, 0.0, &w, 0), Some(0.0));
        for mps in [0.0, -1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert_eq!(estimate_minutes(10, mps, &w, 10), None, "{mps}");
        }
        let tiny = estimate_minutes(u64::MAX, f64::MIN_POSITIVE, &w, u64::MAX);
        assert_eq!(tiny, None);
        let huge = estimate_minutes(u64::MAX, 80.0, &w, u64::MAX).unwrap();
        assert!(huge.is_finite() && huge > 0.0);
    }
}
