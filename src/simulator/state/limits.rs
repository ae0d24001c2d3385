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
