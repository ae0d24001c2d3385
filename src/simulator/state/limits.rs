//! The limits ledger: throughput, pair rate and the portfolio's messaging limit.

use super::*;

/// The limits that apply to one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The number's messages per second.
    pub mps: u32,
    /// The portfolio's unique recipients per moving 24 h; `None` = unlimited.
    pub tier_limit: Option<u32>,
    pub enforce_mps: bool,
    pub enforce_pair_rate: bool,
    pub enforce_quota: bool,
}

/// Which limit refused a send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LimitRefusal {
    /// 130429.
    Throughput,
    /// 131056.
    PairRate,
    /// 131048.
    MessagingLimit,
}

impl LimitRefusal {
    pub fn error(self) -> SimError {
        match self {
            LimitRefusal::Throughput => SimError::throughput(),
            LimitRefusal::PairRate => SimError::pair_rate(),
            LimitRefusal::MessagingLimit => SimError::messaging_limit(),
        }
    }
}

/// Per number: accept times of the last second, last accept per recipient.
#[derive(Debug, Default)]
pub(super) struct NumberLedger {
    /// Accept instants within the last second, oldest first.
    pub(super) window: VecDeque<Instant>,
    /// The most accepts ever seen within one second.
    pub(super) max_in_window: u32,
    /// Recipient → clock ms of the last accepted message (pruned past the pair window).
    pub(super) pairs: HashMap<u64, i64>,
    pub(super) pairs_pruned_ms: i64,
    pub(super) accepted: u64,
}

/// Per portfolio: the moving 24 h set of unique recipients.
#[derive(Debug, Default)]
pub(super) struct PortfolioLedger {
    /// Recipient → clock ms of its last accepted message inside the window.
    pub(super) last_sent: HashMap<u64, i64>,
    /// (ms, recipient) in accept order; entries superseded by a later send are skipped on expiry.
    pub(super) order: VecDeque<(i64, u64)>,
    /// The most unique recipients ever held in the window.
    pub(super) max_unique: u64,
}

impl PortfolioLedger {
    pub(super) fn expire(&mut self, now_ms: i64) {
        let cutoff = now_ms - QUOTA_WINDOW_MS;
        while let Some(&(t, recipient)) = self.order.front() {
            if t > cutoff {
                break;
            }
            self.order.pop_front();
            if self.last_sent.get(&recipient) == Some(&t) {
                self.last_sent.remove(&recipient);
            }
        }
    }
}

/// Everything counted about accepted messages, under one short lock.
#[derive(Debug)]
pub(crate) struct Ledger {
    pub(super) numbers: Vec<NumberLedger>,
    pub(super) portfolios: Vec<PortfolioLedger>,
    pub(super) accepted_total: u64,
    pub(super) accepted_by_recipient: HashMap<u64, u32>,
    pub(super) accepted_over_mps: u64,
    pub(super) accepted_within_pair_window: u64,
    pub(super) accepted_over_quota: u64,
}

impl Ledger {
    pub fn new(numbers: usize, portfolios: usize) -> Ledger {
        Ledger {
            numbers: (0..numbers).map(|_| NumberLedger::default()).collect(),
            portfolios: (0..portfolios)
                .map(|_| PortfolioLedger::default())
                .collect(),
            accepted_total: 0,
            accepted_by_recipient: HashMap::new(),
            accepted_over_mps: 0,
            accepted_within_pair_window: 0,
            accepted_over_quota: 0,
        }
    }

    /// Checks the limits for one message and, when it fits, records it as accepted.
    ///
    /// `now` (monotonic) drives the throughput window; `now_ms` (the injected clock) drives the
    /// pair rate and the 24 h window. A refused message records nothing.
    pub fn admit(
        &mut self,
        number: usize,
        portfolio: usize,
        recipient: u64,
        limits: &Limits,
        now: Instant,
        now_ms: i64,
    ) -> Result<(), LimitRefusal> {
        let n = &mut self.numbers[number];
        if let Some(cutoff) = now.checked_sub(MPS_WINDOW) {
            while n.window.front().is_some_and(|&t| t <= cutoff) {
                n.window.pop_front();
            }
        }
        let over_mps = n.window.len() >= limits.mps as usize;
        if limits.enforce_mps && over_mps {
            return Err(LimitRefusal::Throughput);
        }
        let within_pair = n
            .pairs
            .get(&recipient)
            .is_some_and(|&last| now_ms - last < PAIR_WINDOW_MS);
        if limits.enforce_pair_rate && within_pair {
            return Err(LimitRefusal::PairRate);
        }
        let p = &mut self.portfolios[portfolio];
        p.expire(now_ms);
        let new_recipient = !p.last_sent.contains_key(&recipient);
        let over_quota = new_recipient
            && limits
                .tier_limit
                .is_some_and(|limit| p.last_sent.len() >= limit as usize);
        if limits.enforce_quota && over_quota {
            return Err(LimitRefusal::MessagingLimit);
        }

        // Accepted: record.
        let at = n.window.back().map_or(now, |&last| last.max(now));
        n.window.push_back(at);
        n.max_in_window = n.max_in_window.max(n.window.len() as u32);
        n.accepted += 1;
        if n.pairs.len() >= PAIR_PRUNE_MIN && now_ms - n.pairs_pruned_ms >= PAIR_WINDOW_MS {
            n.pairs.retain(|_, last| now_ms - *last < PAIR_WINDOW_MS);
            n.pairs_pruned_ms = now_ms;
        }
        n.pairs.insert(recipient, now_ms);
        p.last_sent.insert(recipient, now_ms);
        p.order.push_back((now_ms, recipient));
        p.max_unique = p.max_unique.max(p.last_sent.len() as u64);
        self.accepted_total += 1;
        *self.accepted_by_recipient.entry(recipient).or_insert(0) += 1;
        self.accepted_over_mps += u64::from(over_mps);
        self.accepted_within_pair_window += u64::from(within_pair);
        self.accepted_over_quota += u64::from(over_quota);
        Ok(())
    }

    /// Unique recipients currently in a portfolio's 24 h window.
    pub(super) fn unique_in_window(&self, portfolio: usize, now_ms: i64) -> u64 {
        let cutoff = now_ms - QUOTA_WINDOW_MS;
        self.portfolios[portfolio]
            .last_sent
            .values()
            .filter(|&&t| t > cutoff)
            .count() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_767_225_600_000;

    fn limits(mps: u32, tier_limit: Option<u32>) -> Limits {
        Limits {
            mps,
            tier_limit,
            enforce_mps: true,
            enforce_pair_rate: true,
            enforce_quota: true,
        }
    }

    #[test]
    fn throughput_is_a_sliding_one_second_window() {
        let mut ledger = Ledger::new(1, 1);
        let l = limits(3, None);
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(ledger.admit(0, 0, 1, &l, at(0), T0), Ok(()));
        assert_eq!(ledger.admit(0, 0, 2, &l, at(300), T0), Ok(()));
        assert_eq!(ledger.admit(0, 0, 3, &l, at(600), T0), Ok(()));
        assert_eq!(
            ledger.admit(0, 0, 4, &l, at(999), T0),
            Err(LimitRefusal::Throughput)
        );
        // The refusal was not recorded: at 1 000 ms the first accept has left the window.
        assert_eq!(ledger.admit(0, 0, 4, &l, at(1_000), T0), Ok(()));
        assert_eq!(
            ledger.admit(0, 0, 5, &l, at(1_200), T0),
            Err(LimitRefusal::Throughput)
        );
        assert_eq!(ledger.admit(0, 0, 5, &l, at(1_300), T0), Ok(()));
        assert_eq!(ledger.numbers[0].max_in_window, 3);
        assert_eq!(ledger.accepted_total, 5);
        assert_eq!(ledger.accepted_over_mps, 0);
    }

    #[test]
    fn throughput_is_per_number() {
        let mut ledger = Ledger::new(2, 1);
        let l = limits(1, None);
        let t = Instant::now();
        assert_eq!(ledger.admit(0, 0, 1, &l, t, T0), Ok(()));
        assert_eq!(ledger.admit(1, 0, 2, &l, t, T0), Ok(()));
        assert_eq!(
            ledger.admit(0, 0, 3, &l, t, T0),
            Err(LimitRefusal::Throughput)
        );
    }

    #[test]
    fn pair_rate_is_one_message_per_six_seconds_per_number_and_recipient() {
        let mut ledger = Ledger::new(2, 1);
        let l = limits(1_000, None);
        let t = Instant::now();
        assert_eq!(ledger.admit(0, 0, 7, &l, t, T0), Ok(()));
        assert_eq!(
            ledger.admit(0, 0, 7, &l, t, T0 + 5_999),
            Err(LimitRefusal::PairRate)
        );
        // Other recipients and other numbers are unaffected.
        assert_eq!(ledger.admit(0, 0, 8, &l, t, T0 + 1), Ok(()));
        assert_eq!(ledger.admit(1, 0, 7, &l, t, T0 + 1), Ok(()));
        assert_eq!(ledger.admit(0, 0, 7, &l, t, T0 + 6_000), Ok(()));
        assert_eq!(ledger.accepted_by_recipient[&7], 3);
    }

    #[test]
    fn the_portfolio_quota_counts_unique_recipients_in_a_moving_day() {
        let mut ledger = Ledger::new(2, 1);
        let l = limits(1_000, Some(2));
        let t = Instant::now();
        assert_eq!(ledger.admit(0, 0, 1, &l, t, T0), Ok(()));
        // Another number of the same portfolio shares the quota.
        assert_eq!(ledger.admit(1, 0, 2, &l, t, T0 + 10_000), Ok(()));
        assert_eq!(
            ledger.admit(0, 0, 3, &l, t, T0 + 20_000),
            Err(LimitRefusal::MessagingLimit)
        );
        // A recipient already in the window costs nothing (and refreshes its time).
        assert_eq!(ledger.admit(0, 0, 1, &l, t, T0 + 20_000), Ok(()));
        assert_eq!(ledger.unique_in_window(0, T0 + 20_000), 2);
        // 24 h after recipient 2's send it leaves the window; 1 stays (refreshed at +20 s).
        let day = QUOTA_WINDOW_MS;
        assert_eq!(
            ledger.admit(0, 0, 3, &l, t, T0 + day + 9_999),
            Err(LimitRefusal::MessagingLimit)
        );
        assert_eq!(ledger.admit(0, 0, 3, &l, t, T0 + day + 10_000), Ok(()));
        assert_eq!(
            ledger.admit(0, 0, 4, &l, t, T0 + day + 10_001),
            Err(LimitRefusal::MessagingLimit)
        );
        assert_eq!(ledger.admit(0, 0, 4, &l, t, T0 + day + 20_000), Ok(()));
        assert_eq!(ledger.portfolios[0].max_unique, 2);
        assert_eq!(ledger.accepted_over_quota, 0);
    }

    #[test]
    fn portfolios_have_separate_quotas_and_unlimited_has_none() {
        let mut ledger = Ledger::new(2, 2);
        let t = Instant::now();
        let one = limits(1_000, Some(1));
        assert_eq!(ledger.admit(0, 0, 1, &one, t, T0), Ok(()));
        assert_eq!(ledger.admit(1, 1, 2, &one, t, T0), Ok(()));
        let unlimited = limits(1_000, None);
        for r in 10..100 {
            assert_eq!(ledger.admit(1, 1, r, &unlimited, t, T0), Ok(()));
        }
    }

    #[test]
    fn lifted_limits_still_count_what_was_crossed() {
        let mut ledger = Ledger::new(1, 1);
        let l = Limits {
            mps: 1,
            tier_limit: Some(1),
            enforce_mps: false,
            enforce_pair_rate: false,
            enforce_quota: false,
        };
        let t = Instant::now();
        for r in [1, 1, 2] {
            assert_eq!(ledger.admit(0, 0, r, &l, t, T0), Ok(()));
        }
        assert_eq!(ledger.accepted_over_mps, 2);
        assert_eq!(ledger.accepted_within_pair_window, 1);
        assert_eq!(ledger.accepted_over_quota, 1);
        assert_eq!(ledger.numbers[0].max_in_window, 3);
    }

    #[test]
    fn old_pair_entries_are_pruned() {
        let mut ledger = Ledger::new(1, 1);
        let l = Limits {
            enforce_quota: false,
            ..limits(u32::MAX, None)
        };
        let t = Instant::now();
        for r in 0..PAIR_PRUNE_MIN as u64 {
            ledger.admit(0, 0, r, &l, t, T0).unwrap();
        }
        ledger
            .admit(0, 0, u64::MAX, &l, t, T0 + PAIR_WINDOW_MS)
            .unwrap();
        assert_eq!(ledger.numbers[0].pairs.len(), 1);
    }
}
