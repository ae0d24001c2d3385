//! What the simulator counted (`GET /__sim/stats`): enough for a test to prove there were no
//! double sends and that no limit was crossed.

use super::*;

impl Shared {
    /// A snapshot of the counters; `per_recipient: false` leaves `accepted_by_recipient` empty
    /// (it can be large).
    pub fn stats(&self, per_recipient: bool) -> SimStats {
        let now_ms = self.clock.now_ms();
        let world = self.world.read();
        let ledger = self.ledger.lock();
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let numbers = world
            .numbers
            .iter()
            .zip(&ledger.numbers)
            .map(|(number, l)| {
                (
                    number.id.clone(),
                    NumberStats {
                        accepted: l.accepted,
                        max_accepted_in_1s: l.max_in_window,
                        mps_limit: number.mps(),
                    },
                )
            })
            .collect();
        let portfolios = world
            .portfolios
            .iter()
            .enumerate()
            .map(|(i, portfolio)| {
                (
                    portfolio.id.clone(),
                    PortfolioStats {
                        tier: portfolio.tier.as_meta_str().to_owned(),
                        limit: portfolio.tier.limit(),
                        unique_recipients_in_window: ledger.unique_in_window(i, now_ms),
                        max_unique_recipients_in_window: ledger.portfolios[i].max_unique,
                    },
                )
            })
            .collect();
        let accepted_by_recipient = if per_recipient {
            ledger
                .accepted_by_recipient
                .iter()
                .map(|(r, n)| (format!("+{r}"), u64::from(*n)))
                .collect()
        } else {
            BTreeMap::new()
        };
        let accepted_total = ledger.accepted_total;
        let scheduled = load(&c.statuses_scheduled);
        let unplanned = accepted_total.saturating_sub(load(&c.messages_planned));
        SimStats {
            requests_total: load(&c.requests_total),
            accepted_total,
            unique_recipients: ledger.accepted_by_recipient.len() as u64,
            recipients_accepted_more_than_once: ledger
                .accepted_by_recipient
                .values()
                .filter(|&&n| n > 1)
                .count() as u64,
            accepted_by_recipient,
            refusals_by_code: self.refusals.lock().clone(),
            accepted_over_mps: ledger.accepted_over_mps,
            accepted_within_pair_window: ledger.accepted_within_pair_window,
            accepted_over_quota: ledger.accepted_over_quota,
            numbers,
            portfolios,
            faults: FaultStats {
                errors_5xx: load(&c.errors_5xx),
                hangs: load(&c.hangs),
                hangs_accepted: load(&c.hangs_accepted),
            },
            webhooks: WebhookStats {
                statuses_scheduled: scheduled,
                duplicates_scheduled: load(&c.duplicates_scheduled),
                delivered_planned: load(&c.delivered_planned),
                read_planned: load(&c.read_planned),
                statuses_posted: load(&c.statuses_posted),
                statuses_dropped: load(&c.statuses_dropped),
                statuses_pending: (scheduled + unplanned)
                    .saturating_sub(load(&c.statuses_posted) + load(&c.statuses_dropped)),
                events_scheduled: load(&c.events_scheduled),
                events_posted: load(&c.events_posted),
                events_dropped: load(&c.events_dropped),
                posts_ok: load(&c.posts_ok),
                posts_failed: load(&c.posts_failed),
            },
        }
    }
}

/// What the simulator counted: enough for a test to prove there were no double sends and that
/// no limit was crossed. Served by `GET /__sim/stats`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SimStats {
    /// Send requests received (valid or not).
    pub requests_total: u64,
    /// Messages accepted (HTTP 200 with a wamid, including hung requests that were accepted).
    pub accepted_total: u64,
    /// Distinct recipients ever accepted.
    pub unique_recipients: u64,
    /// Recipients accepted more than once (double sends, unless the test sent twice on purpose).
    pub recipients_accepted_more_than_once: u64,
    /// Accepted messages per recipient (E.164); empty with `?per_recipient=false`.
    pub accepted_by_recipient: BTreeMap<String, u64>,
    /// Error answers of the send endpoint by Meta code (faults included).
    pub refusals_by_code: BTreeMap<i64, u64>,
    /// Accepted while the number's last second already held its mps (only possible with
    /// `enforce_mps` off).
    pub accepted_over_mps: u64,
    /// Accepted less than 6 s after the previous one to the same recipient from the same number
    /// (only possible with `enforce_pair_rate` off).
    pub accepted_within_pair_window: u64,
    /// New recipients accepted while the portfolio's window was full (only with `enforce_quota`
    /// off).
    pub accepted_over_quota: u64,
    /// Per sender number (phone-number id).
    pub numbers: BTreeMap<String, NumberStats>,
    /// Per portfolio (portfolio id).
    pub portfolios: BTreeMap<String, PortfolioStats>,
    /// Injected faults.
    pub faults: FaultStats,
    /// The webhook sender.
    pub webhooks: WebhookStats,
}

/// One sender number's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NumberStats {
    /// Messages accepted from this number.
    pub accepted: u64,
    /// The most messages accepted within any 1 s window.
    pub max_accepted_in_1s: u32,
    /// The number's current mps limit.
    pub mps_limit: u32,
}

/// One portfolio's messaging-limit usage.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortfolioStats {
    /// Meta's name of the tier (`TIER_250`, `TIER_10K`, …).
    pub tier: String,
    /// Unique recipients allowed per moving 24 h; `None` = unlimited.
    pub limit: Option<u32>,
    /// Unique recipients in the window now.
    pub unique_recipients_in_window: u64,
    /// The most unique recipients the window ever held.
    pub max_unique_recipients_in_window: u64,
}

/// Injected faults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Sends answered with a simulated 5xx.
    pub errors_5xx: u64,
    /// Sends whose answer was held.
    pub hangs: u64,
    /// Hung sends that were accepted before hanging.
    pub hangs_accepted: u64,
}

/// The webhook sender's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookStats {
    /// Statuses planned (duplicates included).
    pub statuses_scheduled: u64,
    /// Of which duplicates.
    pub duplicates_scheduled: u64,
    /// Messages planned to get a `delivered` status (each counted once, however many copies of
    /// the status are sent): what a daemon's `delivered_count` must end at.
    pub delivered_planned: u64,
    /// Messages planned to get a `read` status (each counted once).
    pub read_planned: u64,
    /// Statuses in a POST that got a 2xx (counted once, however many attempts it took).
    pub statuses_posted: u64,
    /// Statuses dropped because no webhook URL was set.
    pub statuses_dropped: u64,
    /// Statuses not yet posted nor dropped (an accepted message not yet planned counts as one):
    /// 0 means the sender is idle.
    pub statuses_pending: u64,
    /// Account-level notifications queued (template status, quality, capability).
    pub events_scheduled: u64,
    /// Of which posted with a 2xx.
    pub events_posted: u64,
    /// Of which dropped (no webhook URL).
    pub events_dropped: u64,
    /// POSTs answered 2xx.
    pub posts_ok: u64,
    /// POSTs that failed (non-2xx or connection error); each is retried.
    pub posts_failed: u64,
}
