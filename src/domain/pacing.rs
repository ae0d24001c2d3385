//! The decisions of a sender number's limiter (ARCHITECTURE.md, "PhoneLimiter"; META.md §2–§3):
//! which queued message of which bulk send may go out now, so that Meta never has to refuse it.
//!
//! Pure rules: no I/O, no async, no clock of its own. Every call takes the time it decides at, so
//! the engine passes the real clock and tests drive a fake one. Two clocks are used on purpose:
//! - throughput works on a monotonic [`Instant`]: sub-millisecond, immune to wall-clock steps, and
//!   meaningless after a restart (which is fine: one second of history is all it needs);
//! - the messaging-limit quota and the pair rate work on **unix milliseconds** (`i64`): they are
//!   persisted (the quota ledger), compared across restarts and instances, and measured in seconds
//!   to hours.
//!
//! # Parts
//! - [`ThroughputGate`]: messages per second of the number (80, 1 000 at HIGH, 20 coexistence).
//! - [`PortfolioQuota`]: unique recipients per moving 24 h, shared by every number of a business
//!   portfolio. The engine keeps one per portfolio (behind a lock when several numbers share it)
//!   and lends it to each number's planner for the duration of a [`DispatchPlanner::plan`].
//! - [`PairRate`]: one message per recipient per 6 s from this number (Meta's `131056`).
//! - [`DispatchPlanner`]: one per number. Owns the gate and the pair rate, holds the candidates the
//!   sends' actors offer, the number's pause ([`PauseReason`]), and hands out [`Grant`]s round
//!   robin between sends.
//!
//! # Guarantees
//! 1. **Throughput.** Let `W` = 1 s + margin. In every half-open window `(t − W, t]` the gate grants
//!    at most its effective cap (≤ the configured cap). With a margin > 0 that also bounds every
//!    *closed* 1 s window, and a grant may reach Meta up to `margin` later than its neighbours
//!    without Meta seeing cap + 1 arrivals in one of its seconds. A `now` earlier than one already
//!    seen is treated as the latest seen, so a stale timestamp cannot break the bound.
//! 2. **Quota.** A recipient not already in the window is granted only while fewer than `limit`
//!    recipients are in it, so the window never holds more than `limit` recipients because of the
//!    planners sharing it (it can hold more if the limit is lowered, or [`PortfolioQuota::load`]
//!    brings more).
//!    A recipient in the window costs nothing and passes even when the window is full. Every grant
//!    counts: this module does not know about customer-service windows, which is conservative.
//! 3. **Pair rate.** Two grants to the same recipient from one planner are at least
//!    [`PAIR_INTERVAL_MS`] apart (by the `now_ms` passed in), and never before a penalty ends.
//! 4. **Fairness.** Sends take turns (round robin, the turn survives between plans). In its turn a
//!    send gets at most one grant, so while two sends both have grantable candidates their grants
//!    alternate; a send whose candidates are all blocked just loses its turn.
//! 5. **Pause.** A paused planner grants nothing.
//! 6. **No panics** on any input: arithmetic on instants and milliseconds saturates, nothing is
//!    indexed or unwrapped.
//!
//! # Throughput: a sliding log plus a GCRA
//! The hard bound (guarantee 1) comes from a log of the grant instants of the last `W`: a grant at
//! `now` is allowed only if fewer than `cap` grants happened in `(now − W, now]`. The log is
//! pruned by time, so it holds at most the largest cap of the last `W` (16 KB at 1 000 mps), and
//! grants made before a cap change keep counting after it.
//!
//! On its own the log would let `cap` grants out at once and then nothing for a second. A GCRA
//! (generic cell rate algorithm, the "virtual scheduling" form of ITU-T I.371) spreads them:
//! emission interval `T = W / cap`, tolerance `τ = (burst − 1) × T`; a grant at `now` needs
//! `now ≥ TAT − τ` and moves the theoretical arrival time to `TAT = max(TAT, now) + T`. This is
//! the algorithm the `governor` crate implements; it is written out here (a dozen lines in
//! [`ThroughputGate::try_acquire`] and [`ThroughputGate::next_allowed`]) because `governor` reads
//! time from its own clock object, and injecting an `Instant` per call would take a shared mutable
//! fake clock, which is harder to read and test than the arithmetic itself.
//!
//! The burst is `max(2, cap / 50)` (2 at 80 mps, 20 at 1 000 mps). The floor of 2 rather than 1
//! matters: a timer never wakes exactly at `TAT`, and with a burst of 1 each late wake-up is lost
//! for good (a 5 ms timer at 80 mps would give about 67 mps). A tolerance of one interval absorbs
//! wake-ups up to `T` late without ever exceeding the log's bound. In steady state the gate grants
//! `cap / W` per second, i.e. 99 % of `cap` with the default 10 ms margin.
//!
//! # Back-off on `130429`
//! Our own pacing never exceeds Meta's rate, so a `130429` means Meta counts something we do not
//! (inbound messages share the budget, META.md §3) or the number's real cap is lower than
//! configured. [`ThroughputGate::throttle`] therefore (a) grants nothing until `now + pause`, and
//! (b) halves the effective cap (down to 1). Each [`THROTTLE_RECOVERY_STEP`] after the pause ends
//! undoes one halving, so 80 mps runs at 40 for 30 s, then at 80 again. Errors that arrive while
//! the pause is still running (the other in-flight messages of the same burst) only extend it:
//! one halving per episode, not one per failed message.
//!
//! # Quota memory
//! Up to ~100 000 entries per portfolio. A recipient that looks like E.164 (`+` optional, 1–15
//! digits, no leading zero) is keyed by its number as a `u64`, so the recipient string is not
//! stored at all; anything else is kept once, as a shared `Arc<str>`. Per entry that is a map slot
//! (key + last-sent time) and a slot in the expiry queue, about 70–100 bytes: ~10 MB for 100 000.
//! `+14155550123` and `14155550123` (Meta's `wa_id` form) are the same recipient.
//!
//! The expiry queue is in time order (a `record` earlier than the latest one is treated as the
//! latest one, which only keeps an entry longer); re-messaging a recipient leaves its old queue
//! slot stale, skipped when it reaches the front. Pruning pops each slot once (amortised O(1));
//! when stale slots outnumber live ones the queue is rebuilt (amortised O(log n) per record).
//!
//! # Scanning cost
//! Each send's candidates live in three places: *fresh* (not examined since they were offered or
//! last released), *waiting for the pair rate* (ordered by the time they become allowed), and
//! *waiting for quota* (new recipients while the window is full). A plan examines fresh candidates
//! only; in its turn a send examines at most [`SCAN_PER_TURN`] of them, moving blocked ones to a
//! waiting place. Waiting candidates come back to the front when their time is due (pair rate) or
//! when the window has room (oldest first, at most as many as there is room, the next batch once
//! those were examined). So a candidate is examined again only when
//! it may have become grantable, and a grant costs at most `SCAN_PER_TURN` examinations of each
//! send, each a hash lookup. A quota-waiting candidate whose recipient enters the window through
//! another send is noticed when the next slot frees, not sooner.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The length of Meta's throughput second.
pub const SECOND: Duration = Duration::from_secs(1);

/// A sensible default safety margin for [`ThroughputGate::new`]: grants are kept ≤ cap in any
/// window of 1 s + 10 ms.
pub const DEFAULT_MARGIN: Duration = Duration::from_millis(10);

/// After a `130429` pause ends, each period this long undoes one halving of the effective cap.
pub const THROTTLE_RECOVERY_STEP: Duration = Duration::from_secs(30);

/// The length of Meta's moving messaging-limit window: 24 hours in milliseconds (the same value as
/// `eta::WINDOW_MS`).
pub const QUOTA_WINDOW_MS: i64 = crate::domain::eta::WINDOW_MS;

/// Meta's pair rate: one message per recipient per 6 s from one number, in milliseconds.
pub const PAIR_INTERVAL_MS: i64 = 6_000;

/// Added to [`PAIR_INTERVAL_MS`] by the engine's pair rate ([`PairRate::with_margin`]): the
/// interval is counted from the later of a message's grant and Meta's answer to it, so Meta's
/// own receipt of the first message (before its answer) and of the next one (after its grant)
/// are always more than 6 s apart; the margin absorbs Meta counting in coarser steps than ours.
pub const PAIR_MARGIN_MS: i64 = 500;

/// The most fresh candidates one send examines in one turn of [`DispatchPlanner::plan`].
pub const SCAN_PER_TURN: usize = 32;

/// `at + by`, saturating at the latest representable instant instead of panicking.
fn later(at: Instant, by: Duration) -> Instant {
    let mut by = by;
    loop {
        if let Some(t) = at.checked_add(by) {
            return t;
        }
        if by.is_zero() {
            return at;
        }
        by /= 2;
    }
}

// ---------------------------------------------------------------------------------------------
// Throughput
// ---------------------------------------------------------------------------------------------

/// The per-number messages-per-second gate: a sliding log for the hard bound and a GCRA to spread
/// grants over the second (see the module doc).
#[derive(Clone, Debug)]
pub struct ThroughputGate {
    /// The configured cap in grants per `window`; 0 = paused. Changed by [`ThroughputGate::set_cap`].
    cap: u32,
    /// The safety margin added to the second.
    margin: Duration,
    /// 1 s + margin: the window in which at most `cap` grants happen.
    window: Duration,
    /// Instants of the grants inside the last `window`, oldest first.
    log: VecDeque<Instant>,
    /// GCRA theoretical arrival time of the next grant; `None` before the first grant.
    tat: Option<Instant>,
    /// The latest `now` seen; earlier `now`s are raised to it.
    floor: Option<Instant>,
    /// No grant before this instant (set by [`ThroughputGate::throttle`]).
    throttled_until: Option<Instant>,
    /// How many halvings of `cap` apply until `throttled_until`; recovery starts after it.
    slow_shift: u32,
}

impl ThroughputGate {
    /// A gate granting at most `cap` per window of 1 s + `margin`. `cap` 0 grants nothing.
    pub fn new(cap: u32, margin: Duration) -> Self {
        ThroughputGate {
            cap,
            margin,
            window: SECOND.saturating_add(margin),
            log: VecDeque::new(),
            tat: None,
            floor: None,
            throttled_until: None,
            slow_shift: 0,
        }
    }

    /// The configured cap (grants per 1 s + margin); 0 = paused.
    pub fn cap(&self) -> u32 {
        self.cap
    }

    /// The safety margin added to the second.
    pub fn margin(&self) -> Duration {
        self.margin
    }

    /// The window of the hard bound: 1 s + margin.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Changes the cap (operator override, throughput upgrade); 0 pauses the gate. Grants already
    /// made still count: lowering the cap waits for the window to drain, raising it applies now.
    pub fn set_cap(&mut self, cap: u32) {
        self.cap = cap;
    }

    /// The instant before which [`ThroughputGate::throttle`] allows nothing, if one was set.
    pub fn throttled_until(&self) -> Option<Instant> {
        self.throttled_until
    }

    /// The cap in force at `now`: the configured cap halved once per unrecovered `130429` episode,
    /// never below 1 unless the configured cap is 0.
    pub fn effective_cap(&self, now: Instant) -> u32 {
        if self.cap == 0 {
            return 0;
        }
        self.cap.checked_shr(self.shift_at(now)).unwrap_or(0).max(1)
    }

    /// Whether a grant at `now` would succeed.
    pub fn is_ready(&self, now: Instant) -> bool {
        let now = self.clamp(now);
        self.next_allowed(now).is_some_and(|at| at <= now)
    }

    /// The earliest instant (≥ `now`) at which a grant could succeed, for a timer; `None` while the
    /// cap is 0 (nothing will be granted until [`ThroughputGate::set_cap`]). Exact for the state at
    /// `now`; later recovery from a throttle can only make it earlier.
    pub fn next_allowed(&self, now: Instant) -> Option<Instant> {
        let now = self.clamp(now);
        let cap = self.effective_cap(now);
        if cap == 0 {
            return None;
        }
        let mut at = now;
        if let Some(until) = self.throttled_until {
            at = at.max(until);
        }
        // GCRA: conforming when at ≥ TAT − τ.
        if let Some(tat) = self.tat {
            let (_, tolerance) = self.gcra(cap);
            if let Some(earliest) = tat.checked_sub(tolerance) {
                at = at.max(earliest);
            }
        }
        // Log: the cap-th newest grant must have left the window (it + W ≤ at).
        let cap = cap as usize;
        if let Some(oldest_counted) = self
            .log
            .len()
            .checked_sub(cap)
            .and_then(|i| self.log.get(i))
        {
            at = at.max(later(*oldest_counted, self.window));
        }
        Some(at)
    }

    /// Takes one slot at `now` if the cap, the window and the GCRA allow it; `false` otherwise.
    pub fn try_acquire(&mut self, now: Instant) -> bool {
        let now = self.observe(now);
        while let Some(&oldest) = self.log.front() {
            if later(oldest, self.window) > now {
                break;
            }
            self.log.pop_front();
        }
        if !self.is_ready(now) {
            return false;
        }
        let (interval, _) = self.gcra(self.effective_cap(now));
        let base = self.tat.map_or(now, |tat| tat.max(now));
        self.tat = Some(later(base, interval));
        self.log.push_back(now);
        true
    }

    /// Backs off after a `130429` from Meta: nothing is granted before `now + pause`, and the
    /// effective cap is halved (see the module doc for the recovery). A throttle while a pause is
    /// still running only extends it.
    pub fn throttle(&mut self, now: Instant, pause: Duration) {
        let now = self.observe(now);
        let running = self.throttled_until.is_some_and(|until| now < until);
        if !running {
            self.slow_shift = self.shift_at(now).saturating_add(1).min(31);
        }
        let until = later(now, pause);
        let until = self.throttled_until.map_or(until, |old| old.max(until));
        self.throttled_until = Some(until);
        self.tat = Some(self.tat.map_or(until, |tat| tat.max(until)));
    }

    /// Halvings in force at `now`: `slow_shift` until the pause ends, then one fewer per recovery
    /// step.
    fn shift_at(&self, now: Instant) -> u32 {
        match self.throttled_until {
            None => 0,
            Some(until) => {
                let elapsed = now.saturating_duration_since(until).as_nanos();
                let steps = elapsed / THROTTLE_RECOVERY_STEP.as_nanos().max(1);
                self.slow_shift
                    .saturating_sub(u32::try_from(steps).unwrap_or(u32::MAX))
            }
        }
    }

    /// GCRA emission interval and tolerance for an effective cap ≥ 1.
    fn gcra(&self, cap: u32) -> (Duration, Duration) {
        let cap = cap.max(1);
        let interval = self.window / cap;
        let burst = (cap / 50).max(2);
        let tolerance = interval.checked_mul(burst - 1).unwrap_or(self.window);
        (interval, tolerance)
    }

    fn clamp(&self, now: Instant) -> Instant {
        self.floor.map_or(now, |floor| floor.max(now))
    }

    fn observe(&mut self, now: Instant) -> Instant {
        let now = self.clamp(now);
        self.floor = Some(now);
        now
    }
}

// ---------------------------------------------------------------------------------------------
// Recipient keys
// ---------------------------------------------------------------------------------------------

/// A recipient as the quota and the pair rate key it: the E.164 number as an integer when it is
/// one (no string stored), the string itself otherwise.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum RecipientKey {
    /// `+` (optional) and 1–15 digits without a leading zero, as a number: injective.
    Phone(u64),
    /// Anything else, verbatim.
    Other(Arc<str>),
}

impl RecipientKey {
    fn new(recipient: &str) -> Self {
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

// ---------------------------------------------------------------------------------------------
// Portfolio quota
// ---------------------------------------------------------------------------------------------

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
    order: VecDeque<(i64, RecipientKey)>,
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

    fn used_now(&self) -> u32 {
        u32::try_from(self.last.len()).unwrap_or(u32::MAX)
    }

    /// Slots left, after a prune.
    fn room(&self) -> Option<u32> {
        self.limit
            .map(|limit| limit.saturating_sub(self.used_now()))
    }

    /// After a prune: `Some(when the next slot frees)` if the window is full.
    fn full_until_now(&self) -> Option<i64> {
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
    fn check_key(&self, key: &RecipientKey, now_ms: i64) -> QuotaCheck {
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
    fn record_key(&mut self, key: RecipientKey, now_ms: i64) -> bool {
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
    fn rebuild_order(&mut self) {
        let mut order: Vec<(i64, RecipientKey)> = self
            .last
            .iter()
            .map(|(key, &at)| (at, key.clone()))
            .collect();
        order.sort_unstable();
        self.order = order.into();
    }
}

// ---------------------------------------------------------------------------------------------
// Pair rate
// ---------------------------------------------------------------------------------------------

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
    expiry: BinaryHeap<Reverse<(i64, RecipientKey)>>,
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

    fn allowed_at_key(&self, key: &RecipientKey, now_ms: i64) -> Option<i64> {
        self.next.get(key).copied().filter(|&at| at > now_ms)
    }

    fn record_key(&mut self, key: RecipientKey, now_ms: i64) {
        self.hold(key, now_ms.saturating_add(self.interval_ms));
    }

    fn hold(&mut self, key: RecipientKey, until_ms: i64) {
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

// ---------------------------------------------------------------------------------------------
// Dispatch planning
// ---------------------------------------------------------------------------------------------

/// A message a send's actor offers for dispatch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The message's id (the `messages` row).
    pub message_id: i64,
    /// The recipient, E.164 (`+` and digits).
    pub recipient: String,
}

/// Permission to dispatch one message now. Quota and pair rate are already recorded for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant<S> {
    /// The send the message belongs to.
    pub send_id: S,
    /// The message's id.
    pub message_id: i64,
    /// The recipient, as offered (handy for the quota ledger row).
    pub recipient: String,
}

/// Why a number grants nothing (operator or Meta).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseReason {
    /// `mindo-bulk number set --paused`.
    Operator,
    /// Meta's `131048` spam rate limit: wait for quality to recover.
    SpamRateLimit,
    /// An account restriction or a quality/limit webhook that stops the number.
    Restricted,
}

/// When the engine should call [`DispatchPlanner::plan`] again (besides after an offer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextPlan {
    /// The number is paused; plan again after [`DispatchPlanner::resume`].
    Paused(PauseReason),
    /// The throughput gate stopped the plan; plan again at this instant. `None`: the gate's cap
    /// is 0, plan again after a `set_cap`.
    Throughput(Option<Instant>),
    /// Nothing queued is grantable now. Plan again at this unix ms (the earliest pair-rate or
    /// quota release), or `None`: nothing is waiting on time (only new offers or a higher limit
    /// help).
    Waiting(Option<i64>),
}

/// The outcome of one [`DispatchPlanner::plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan<S> {
    /// The grants, in the order they were made.
    pub grants: Vec<Grant<S>>,
    /// When to plan again.
    pub next: NextPlan,
    /// Candidates examined (for metrics; bounded as the module doc says).
    pub examined: usize,
}

/// How one send stands in its number's planner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendStatus {
    /// Candidates held, in every state.
    pub queued: usize,
    /// Candidates waiting for the pair rate.
    pub waiting_pair: usize,
    /// New recipients waiting for room in the messaging-limit window.
    pub waiting_quota: usize,
    /// When `waiting_quota > 0`: when the window's next slot frees, as of the last plan (unix ms;
    /// `i64::MAX` if not by time).
    pub quota_blocked_until: Option<i64>,
}

/// A candidate with its recipient key computed once.
#[derive(Clone, Debug)]
struct Queued {
    candidate: Candidate,
    key: RecipientKey,
}

/// One send's candidates in its number's planner.
#[derive(Clone, Debug)]
struct SendQueue<S> {
    id: S,
    /// Not examined since offered or released; front first.
    fresh: VecDeque<Queued>,
    /// Blocked by the pair rate, keyed by (allowed-again unix ms, sequence number).
    pair_wait: BTreeMap<(i64, u64), Queued>,
    /// New recipients blocked by the messaging limit, oldest first.
    quota_wait: VecDeque<Queued>,
    /// Message ids held, to ignore a message offered twice.
    ids: HashSet<i64>,
    /// When the window frees, as of the last time a candidate was quota-blocked.
    quota_blocked_until: Option<i64>,
    /// How many of the first `fresh` candidates came back from `quota_wait` and are not examined
    /// yet; no more are released until they are (keeps the oldest first, avoids churn).
    released: usize,
}

impl<S> SendQueue<S> {
    fn new(id: S) -> Self {
        SendQueue {
            id,
            fresh: VecDeque::new(),
            pair_wait: BTreeMap::new(),
            quota_wait: VecDeque::new(),
            ids: HashSet::new(),
            quota_blocked_until: None,
            released: 0,
        }
    }

    fn len(&self) -> usize {
        self.fresh.len() + self.pair_wait.len() + self.quota_wait.len()
    }

    /// Moves the pair-waiting candidates due at `now_ms` back to the front of `fresh`.
    fn release_pair(&mut self, now_ms: i64) {
        let mut due = Vec::new();
        while let Some(entry) = self.pair_wait.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            due.push(entry.remove());
        }
        for queued in due.into_iter().rev() {
            self.fresh.push_front(queued);
        }
    }

    /// Moves up to `room` quota-waiting candidates to the front of `fresh`.
    fn release_quota(&mut self, room: Option<u32>) {
        let n = room.map_or(self.quota_wait.len(), |room| {
            self.quota_wait.len().min(room as usize)
        });
        let released: Vec<Queued> = self.quota_wait.drain(..n).collect();
        for queued in released.into_iter().rev() {
            self.fresh.push_front(queued);
        }
        self.released = n;
        if self.quota_wait.is_empty() {
            self.quota_blocked_until = None;
        }
    }

    fn drain_all(&mut self) -> Vec<Candidate> {
        let mut all: Vec<Candidate> = Vec::with_capacity(self.len());
        all.extend(self.fresh.drain(..).map(|q| q.candidate));
        all.extend(
            std::mem::take(&mut self.pair_wait)
                .into_values()
                .map(|q| q.candidate),
        );
        all.extend(self.quota_wait.drain(..).map(|q| q.candidate));
        self.ids.clear();
        self.quota_blocked_until = None;
        self.released = 0;
        all
    }
}

/// One number's dispatch planner: round robin between the sends on the number, each grant
/// passing the throughput gate, the portfolio's messaging limit and the pair rate.
///
/// `S` is the send's id (e.g. `u64`, `Arc<str>`); it is cloned into every grant. Sends are few per
/// number, so they are kept in a `Vec` and found by a linear scan.
#[derive(Clone, Debug)]
pub struct DispatchPlanner<S> {
    /// The number's throughput gate.
    gate: ThroughputGate,
    /// The number's pair rate.
    pair: PairRate,
    /// Why the number is paused, if it is.
    paused: Option<PauseReason>,
    /// The sends in round-robin order.
    sends: Vec<SendQueue<S>>,
    /// Index in `sends` of the send whose turn is next.
    cursor: usize,
    /// Tie-breaker for `pair_wait` keys.
    seq: u64,
}

impl<S: Clone + PartialEq> DispatchPlanner<S> {
    /// A planner with no sends, not paused.
    pub fn new(gate: ThroughputGate, pair: PairRate) -> Self {
        DispatchPlanner {
            gate,
            pair,
            paused: None,
            sends: Vec::new(),
            cursor: 0,
            seq: 0,
        }
    }

    /// The throughput gate.
    pub fn gate(&self) -> &ThroughputGate {
        &self.gate
    }

    /// The throughput gate, to `set_cap` or `throttle` it.
    pub fn gate_mut(&mut self) -> &mut ThroughputGate {
        &mut self.gate
    }

    /// The pair rate.
    pub fn pair_rate(&self) -> &PairRate {
        &self.pair
    }

    /// The pair rate, to `penalize` a recipient after a `131056`.
    pub fn pair_rate_mut(&mut self) -> &mut PairRate {
        &mut self.pair
    }

    /// Pauses the number: [`DispatchPlanner::plan`] grants nothing until
    /// [`DispatchPlanner::resume`]. A new reason replaces the previous one. Queued candidates stay.
    pub fn pause(&mut self, reason: PauseReason) {
        self.paused = Some(reason);
    }

    /// Lifts the pause, whatever its reason.
    pub fn resume(&mut self) {
        self.paused = None;
    }

    /// Why the number is paused, if it is.
    pub fn paused(&self) -> Option<PauseReason> {
        self.paused
    }

    /// Registers a send (last in the round-robin order). Returns `false` if it already was.
    pub fn add_send(&mut self, send_id: S) -> bool {
        if self.find(&send_id).is_some() {
            return false;
        }
        self.sends.push(SendQueue::new(send_id));
        true
    }

    /// Unregisters a send, returning the candidates it still held (empty if unknown).
    pub fn remove_send(&mut self, send_id: &S) -> Vec<Candidate> {
        let Some(i) = self.find(send_id) else {
            return Vec::new();
        };
        let mut send = self.sends.remove(i);
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.sends.len() {
            self.cursor = 0;
        }
        send.drain_all()
    }

    /// The registered sends, in round-robin order.
    pub fn send_ids(&self) -> impl Iterator<Item = &S> + '_ {
        self.sends.iter().map(|send| &send.id)
    }

    /// Queues candidates for a send, registering it if needed. A message id the send already holds
    /// is ignored (a second copy could be dispatched twice). Returns how many were queued.
    pub fn offer(&mut self, send_id: &S, candidates: impl IntoIterator<Item = Candidate>) -> usize {
        let i = match self.find(send_id) {
            Some(i) => i,
            None => {
                self.sends.push(SendQueue::new(send_id.clone()));
                self.sends.len() - 1
            }
        };
        let Some(send) = self.sends.get_mut(i) else {
            return 0;
        };
        let mut queued = 0;
        for candidate in candidates {
            if send.ids.insert(candidate.message_id) {
                let key = RecipientKey::new(&candidate.recipient);
                send.fresh.push_back(Queued { candidate, key });
                queued += 1;
            }
        }
        queued
    }

    /// Takes back every candidate a send holds (cancel, pause of the send); the send stays
    /// registered. Order: fresh first, then pair-waiting, then quota-waiting.
    pub fn withdraw(&mut self, send_id: &S) -> Vec<Candidate> {
        match self.find(send_id).and_then(|i| self.sends.get_mut(i)) {
            Some(send) => send.drain_all(),
            None => Vec::new(),
        }
    }

    /// Candidates a send holds (0 if unknown).
    pub fn queued(&self, send_id: &S) -> usize {
        self.find(send_id)
            .and_then(|i| self.sends.get(i))
            .map_or(0, SendQueue::len)
    }

    /// How a send stands (`None` if unknown).
    pub fn status(&self, send_id: &S) -> Option<SendStatus> {
        let send = self.find(send_id).and_then(|i| self.sends.get(i))?;
        Some(SendStatus {
            queued: send.len(),
            waiting_pair: send.pair_wait.len(),
            waiting_quota: send.quota_wait.len(),
            quota_blocked_until: send.quota_blocked_until,
        })
    }

    /// Grants as many candidates as the gate allows at `now` (monotonic) / `now_ms` (unix ms):
    /// sends take turns; in its turn a send gets its first fresh candidate that passes the pair
    /// rate and the `quota` (in the window, or fits), examining at most [`SCAN_PER_TURN`];
    /// blocked candidates wait (they are kept). Each grant takes a gate slot and is recorded in
    /// the quota and the pair rate. Stops when the gate says no or no send has a grantable
    /// candidate.
    pub fn plan(&mut self, now: Instant, now_ms: i64, quota: &mut PortfolioQuota) -> Plan<S> {
        let mut grants = Vec::new();
        let mut examined = 0;
        if let Some(reason) = self.paused {
            return Plan {
                grants,
                next: NextPlan::Paused(reason),
                examined,
            };
        }
        self.pair.prune(now_ms);
        quota.prune(now_ms);
        for send in &mut self.sends {
            send.release_pair(now_ms);
        }
        let next = loop {
            let Some(i) = self.next_turn(quota) else {
                break NextPlan::Waiting(self.earliest_release(quota));
            };
            if !self.gate.is_ready(now) {
                // The turn is not used: it stays this send's for the next plan.
                self.cursor = i;
                break NextPlan::Throughput(self.gate.next_allowed(now));
            }
            let Some(send) = self.sends.get_mut(i) else {
                break NextPlan::Waiting(self.earliest_release(quota));
            };
            let found = take_grantable(
                send,
                &self.pair,
                quota,
                now_ms,
                &mut self.seq,
                &mut examined,
            );
            let Some(queued) = found else {
                continue;
            };
            if !self.gate.try_acquire(now) {
                // Unreachable after `is_ready`, but never lose a candidate: it goes back first.
                send.fresh.push_front(queued);
                self.cursor = i;
                break NextPlan::Throughput(self.gate.next_allowed(now));
            }
            send.ids.remove(&queued.candidate.message_id);
            quota.record_key(queued.key.clone(), now_ms);
            self.pair.record_key(queued.key, now_ms);
            grants.push(Grant {
                send_id: send.id.clone(),
                message_id: queued.candidate.message_id,
                recipient: queued.candidate.recipient,
            });
        };
        Plan {
            grants,
            next,
            examined,
        }
    }

    /// The index of the next send (from the cursor) with fresh candidates; advances the cursor
    /// past it. When the window has room, a send's quota-waiting candidates (up to the room) go
    /// back to the front of its fresh queue first: they are older than what was offered since.
    /// The next ones are released only after those were examined.
    fn next_turn(&mut self, quota: &PortfolioQuota) -> Option<usize> {
        let n = self.sends.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            let Some(send) = self.sends.get_mut(i) else {
                continue;
            };
            if send.released == 0 && !send.quota_wait.is_empty() {
                let room = quota.room();
                if room != Some(0) {
                    send.release_quota(room);
                }
            }
            if !send.fresh.is_empty() {
                self.cursor = (i + 1) % n;
                return Some(i);
            }
        }
        None
    }

    /// The earliest unix ms at which a waiting candidate may become grantable.
    fn earliest_release(&self, quota: &PortfolioQuota) -> Option<i64> {
        let pair = self
            .sends
            .iter()
            .filter_map(|send| send.pair_wait.keys().next().map(|&(at, _)| at))
            .min();
        let quota_waiting = self.sends.iter().any(|send| !send.quota_wait.is_empty());
        let quota = if quota_waiting {
            quota.full_until_now().filter(|&until| until < i64::MAX)
        } else {
            None
        };
        match (pair, quota) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn find(&self, send_id: &S) -> Option<usize> {
        self.sends.iter().position(|send| &send.id == send_id)
    }
}

/// Pops up to [`SCAN_PER_TURN`] fresh candidates of `send`, parking the blocked ones, until one
/// passes the pair rate and the quota.
fn take_grantable<S>(
    send: &mut SendQueue<S>,
    pair: &PairRate,
    quota: &PortfolioQuota,
    now_ms: i64,
    seq: &mut u64,
    examined: &mut usize,
) -> Option<Queued> {
    for _ in 0..SCAN_PER_TURN {
        let queued = send.fresh.pop_front()?;
        send.released = send.released.saturating_sub(1);
        *examined += 1;
        if let Some(at) = pair.allowed_at_key(&queued.key, now_ms) {
            *seq = seq.wrapping_add(1);
            send.pair_wait.insert((at, *seq), queued);
            continue;
        }
        match quota.check_key(&queued.key, now_ms) {
            QuotaCheck::InWindow | QuotaCheck::Fits => return Some(queued),
            QuotaCheck::Blocked { until_ms } => {
                send.quota_blocked_until = Some(until_ms);
                send.quota_wait.push_back(queued);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_750_000_000_000;
    const MS: Duration = Duration::from_millis(1);
    const DAY_MS: i64 = QUOTA_WINDOW_MS;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A deterministic pseudo-random sequence (xorshift), to jitter ticks without a dependency.
    struct Jitter(u64);

    impl Jitter {
        fn next(&mut self, below: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % below
        }
    }

    /// The most grants (offsets from the base, sorted) in any window of length `w`: half-open
    /// `(t − w, t]` or closed `[t − w, t]`.
    fn max_in_window(grants: &[Duration], w: Duration, closed: bool) -> usize {
        let mut first = 0;
        let mut best = 0;
        for (j, &t) in grants.iter().enumerate() {
            while first < j && {
                let g = grants[first];
                if closed {
                    g + w < t
                } else {
                    g + w <= t
                }
            } {
                first += 1;
            }
            best = best.max(j + 1 - first);
        }
        best
    }

    /// Continuous demand on a gate for 30 s: at every tick, acquire until refused. Returns the
    /// grant offsets.
    fn simulate(cap: u32, ticks: impl Iterator<Item = Duration>) -> Vec<Duration> {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(cap, DEFAULT_MARGIN);
        let mut grants = Vec::new();
        for offset in ticks.take_while(|&t| t < Duration::from_secs(30)) {
            while gate.try_acquire(base + offset) {
                grants.push(offset);
            }
        }
        grants
    }

    fn assert_throughput(cap: u32, grants: &[Duration]) {
        let w = SECOND + DEFAULT_MARGIN;
        let in_w = max_in_window(grants, w, false);
        let in_second = max_in_window(grants, SECOND, true);
        let ratio = grants.len() as f64 / (f64::from(cap) * 30.0);
        assert!(
            in_w <= cap as usize,
            "cap {cap}: {in_w} grants in a 1 s + margin window"
        );
        assert!(
            in_second <= cap as usize,
            "cap {cap}: {in_second} in a 1 s window"
        );
        assert!(ratio >= 0.98, "cap {cap}: only {ratio:.4} of the cap used");
    }

    fn even_ticks() -> impl Iterator<Item = Duration> {
        (0..).map(ms)
    }

    /// Ticks about 5 ms apart, each between 1 and 9 ms after the previous one.
    fn jittered_ticks(seed: u64) -> impl Iterator<Item = Duration> {
        let mut jitter = Jitter(seed);
        let mut now = Duration::ZERO;
        std::iter::from_fn(move || {
            let tick = now;
            now += Duration::from_micros(1_000 + jitter.next(8_000));
            Some(tick)
        })
    }

    #[test]
    fn thirty_seconds_at_80_mps_with_1_ms_ticks() {
        assert_throughput(80, &simulate(80, even_ticks()));
    }

    #[test]
    fn thirty_seconds_at_1000_mps_with_1_ms_ticks() {
        assert_throughput(1000, &simulate(1000, even_ticks()));
    }

    #[test]
    fn thirty_seconds_at_80_mps_with_jittered_ticks() {
        assert_throughput(80, &simulate(80, jittered_ticks(0x9e37_79b9_7f4a_7c15)));
    }

    #[test]
    fn thirty_seconds_at_1000_mps_with_jittered_ticks() {
        assert_throughput(1000, &simulate(1000, jittered_ticks(0x2545_f491_4f6c_dd1d)));
    }

    #[test]
    fn thirty_seconds_at_20_mps_coexistence() {
        assert_throughput(20, &simulate(20, jittered_ticks(7)));
    }

    #[test]
    fn grants_are_spread_over_the_second() {
        let grants = simulate(80, even_ticks());
        let first_100ms = grants.iter().filter(|&&t| t < ms(100)).count();
        assert!(
            first_100ms <= 10,
            "{first_100ms} grants in the first 100 ms"
        );
        let grants = simulate(1000, even_ticks());
        let first_ms = grants.iter().filter(|&&t| t < MS).count();
        assert_eq!(first_ms, 20, "the burst at 1000 mps is cap / 50");
    }

    #[test]
    fn next_allowed_is_exact() {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(80, DEFAULT_MARGIN);
        let mut now = base;
        for _ in 0..200 {
            let at = gate.next_allowed(now).unwrap();
            assert!(at >= now);
            if at > now {
                assert!(!gate.is_ready(at - Duration::from_nanos(1)));
                assert!(!gate.try_acquire(at - Duration::from_nanos(1)));
            }
            assert!(gate.try_acquire(at), "granted at the announced instant");
            now = at;
        }
        // 200 grants at 80 per 1.01 s take about 2.5 s (the first two share an instant).
        let took = now - base;
        assert!(took >= ms(2_490) && took <= ms(2_520), "{took:?}");
    }

    #[test]
    fn cap_zero_grants_nothing_and_changes_keep_the_bound() {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(0, DEFAULT_MARGIN);
        assert!(!gate.try_acquire(base));
        assert_eq!(gate.next_allowed(base), None);
        assert_eq!(gate.effective_cap(base), 0);

        // 1000 → 80 at 5 s, 0 at 10 s, 80 at 11 s, 1000 at 15 s; a grant never finds more than
        // the cap then in force in its window.
        let schedule = |t: Duration| match t.as_millis() {
            0..5_000 => 1000,
            5_000..10_000 => 80,
            10_000..11_000 => 0,
            11_000..15_000 => 80,
            _ => 1000,
        };
        gate.set_cap(1000);
        let mut grants: Vec<(Duration, u32)> = Vec::new();
        for t in (0..20_000).map(ms) {
            gate.set_cap(schedule(t));
            assert_eq!(gate.cap(), schedule(t));
            while gate.try_acquire(base + t) {
                grants.push((t, schedule(t)));
            }
        }
        let w = gate.window();
        for (j, &(t, cap)) in grants.iter().enumerate() {
            let in_window = grants[..=j].iter().filter(|(g, _)| *g + w > t).count();
            assert!(in_window <= cap as usize, "{in_window} > {cap} at {t:?}");
        }
        let paused = grants
            .iter()
            .filter(|(t, _)| (ms(10_000)..ms(11_000)).contains(t))
            .count();
        assert_eq!(paused, 0);
    }

    #[test]
    fn a_stale_now_cannot_break_the_bound() {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(10, DEFAULT_MARGIN);
        let mut grants = Vec::new();
        for t in (0..3_000).step_by(7).map(ms) {
            if gate.try_acquire(base + t) {
                grants.push(t);
            }
            // A caller passing an old timestamp is treated as "now", not as the past.
            if gate.try_acquire(base) {
                grants.push(t);
            }
        }
        grants.sort();
        assert!(max_in_window(&grants, gate.window(), false) <= 10);
    }

    #[test]
    fn throttle_pauses_then_halves_then_recovers() {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(80, DEFAULT_MARGIN);
        let count = |gate: &mut ThroughputGate, from: u64, to: u64| {
            (from..to)
                .map(|t| {
                    let mut n = 0;
                    while gate.try_acquire(base + ms(t)) {
                        n += 1;
                    }
                    n
                })
                .sum::<usize>()
        };
        assert!(count(&mut gate, 0, 2_000) >= 150);
        gate.throttle(base + ms(2_000), Duration::from_secs(1));
        assert_eq!(gate.throttled_until(), Some(base + ms(3_000)));
        // More 130429s of the same burst extend the pause but do not halve again.
        gate.throttle(base + ms(2_100), ms(1_500));
        assert_eq!(gate.throttled_until(), Some(base + ms(3_600)));
        assert_eq!(gate.effective_cap(base + ms(3_000)), 40);
        assert_eq!(count(&mut gate, 2_000, 3_600), 0);
        assert_eq!(gate.next_allowed(base + ms(3_000)), Some(base + ms(3_600)));
        // Half rate for one recovery step, then the full rate.
        let halved = count(&mut gate, 3_600, 33_600);
        assert!(
            (1_150..=1_200).contains(&halved),
            "{halved} in 30 s at half rate"
        );
        assert_eq!(gate.effective_cap(base + ms(33_600)), 80);
        let full = count(&mut gate, 33_600, 43_600);
        assert!(
            (780..=800).contains(&full),
            "{full} in 10 s at the full rate"
        );
        // A new episode halves again, and another one after it halves twice.
        gate.throttle(base + ms(43_600), Duration::ZERO);
        assert_eq!(gate.effective_cap(base + ms(43_600)), 40);
        gate.throttle(base + ms(43_601), MS);
        assert_eq!(gate.effective_cap(base + ms(43_601)), 20);
        assert_eq!(
            gate.effective_cap(base + ms(43_602) + THROTTLE_RECOVERY_STEP),
            40
        );
        assert_eq!(
            gate.effective_cap(base + ms(43_602) + 2 * THROTTLE_RECOVERY_STEP),
            80
        );
    }

    #[test]
    fn throttle_never_takes_the_cap_below_one() {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(3, DEFAULT_MARGIN);
        for i in 0..40 {
            gate.throttle(base + ms(i * 10), Duration::ZERO);
        }
        assert_eq!(gate.effective_cap(base + ms(400)), 1);
        assert!(gate.try_acquire(base + ms(400)));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let base = Instant::now();
        let mut gate = ThroughputGate::new(u32::MAX, Duration::MAX);
        for _ in 0..5 {
            assert!(gate.try_acquire(base));
        }
        gate.throttle(base, Duration::MAX);
        assert!(!gate.try_acquire(base + ms(1)));
        assert!(gate.next_allowed(base).is_some_and(|at| at > base));
        let mut gate = ThroughputGate::new(1, Duration::ZERO);
        assert!(gate.try_acquire(base));
        assert!(!gate.try_acquire(base + ms(999)));
        assert!(gate.try_acquire(base + SECOND));

        let mut quota = PortfolioQuota::with_window_ms(Some(1), i64::MIN);
        quota.record("+1", i64::MAX);
        quota.record("+2", i64::MIN);
        let _ = quota.check("+3", i64::MAX);
        let _ = quota.full_until(i64::MIN);
        quota.load([(String::new(), i64::MIN), ("x".into(), i64::MAX)], 0);
        let mut pair = PairRate::with_interval_ms(i64::MAX);
        pair.record("+1", i64::MAX);
        pair.penalize("+1", i64::MIN);
        pair.prune(i64::MAX);
        assert_eq!(pair_penalty_ms(u32::MAX), i64::MAX);
    }

    // --- quota ---------------------------------------------------------------------------

    fn phone(i: usize) -> String {
        format!("+1415555{i:04}")
    }

    #[test]
    fn tier_250_takes_250_new_recipients_then_blocks_until_the_oldest_leaves() {
        let mut quota = PortfolioQuota::new(Some(250));
        for i in 0..250 {
            let now = T0 + i as i64 * 1_000;
            assert_eq!(quota.check(&phone(i), now), QuotaCheck::Fits, "{i}");
            assert!(quota.record(&phone(i), now));
        }
        let later = T0 + 300_000;
        assert_eq!(quota.used(later), 250);
        assert_eq!(quota.available(later), Some(0));
        for i in 250..300 {
            assert_eq!(
                quota.check(&phone(i), later),
                QuotaCheck::Blocked {
                    until_ms: T0 + DAY_MS
                }
            );
        }
        assert_eq!(quota.full_until(later), Some(T0 + DAY_MS));
        // Recipients already in the window pass even when it is full, and cost nothing.
        assert_eq!(quota.check(&phone(7), later), QuotaCheck::InWindow);
        assert!(!quota.record(&phone(7), later));
        assert_eq!(quota.used(later), 250);
        // The first slot frees exactly 24 h after the first send; the next one 1 s later.
        assert!(matches!(
            quota.check(&phone(250), T0 + DAY_MS - 1),
            QuotaCheck::Blocked { .. }
        ));
        assert_eq!(quota.check(&phone(250), T0 + DAY_MS), QuotaCheck::Fits);
        quota.record(&phone(250), T0 + DAY_MS);
        assert_eq!(
            quota.check(&phone(251), T0 + DAY_MS),
            QuotaCheck::Blocked {
                until_ms: T0 + DAY_MS + 1_000
            }
        );
        // 24 h after the last of the first 250 (+1 ms) all of them have left, except the
        // re-messaged recipient 7 and the one sent at T0 + 24 h.
        let after = T0 + 249_000 + DAY_MS + 1;
        assert_eq!(quota.used(after), 2);
        assert_eq!(quota.available(after), Some(248));
    }

    #[test]
    fn messaging_a_recipient_again_keeps_it_in_the_window() {
        let mut quota = PortfolioQuota::new(Some(1));
        quota.record("+14155550100", T0);
        quota.record("+14155550100", T0 + 20 * 3_600_000);
        let t = T0 + 25 * 3_600_000;
        assert_eq!(quota.check("+14155550100", t), QuotaCheck::InWindow);
        assert_eq!(
            quota.check("+14155550101", t),
            QuotaCheck::Blocked {
                until_ms: T0 + 44 * 3_600_000
            }
        );
        assert_eq!(quota.used(T0 + 44 * 3_600_000), 0);
    }

    #[test]
    fn load_after_a_restart_keeps_the_usage() {
        let mut before = PortfolioQuota::new(Some(100));
        let mut ledger = Vec::new();
        for i in 0..100 {
            let at = T0 + i as i64 * 60_000;
            before.record(&phone(i), at);
            ledger.push((phone(i), at));
        }
        // Rows that already left the window, and an older duplicate, are in the ledger too.
        ledger.push((phone(500), T0 - DAY_MS));
        ledger.push((phone(3), T0 - 1));
        let now = T0 + 100 * 60_000;
        let mut after = PortfolioQuota::new(Some(100));
        after.load(ledger.clone(), now);
        assert_eq!(after.used(now), 100);
        assert_eq!(after.check(&phone(3), now), QuotaCheck::InWindow);
        assert_eq!(
            after.check(&phone(200), now),
            QuotaCheck::Blocked {
                until_ms: T0 + DAY_MS
            }
        );
        assert_eq!(
            after.check(&phone(200), now),
            before.check(&phone(200), now)
        );
        // Loading twice changes nothing.
        after.load(ledger, now);
        assert_eq!(after.used(now), 100);
        assert_eq!(after.used(T0 + DAY_MS + 50 * 60_000), 49);
    }

    #[test]
    fn unlimited_never_blocks() {
        let mut quota = PortfolioQuota::new(None);
        for i in 0..5_000 {
            quota.record(&phone(i), T0);
        }
        assert_eq!(quota.check("+5491112345678", T0), QuotaCheck::Fits);
        assert_eq!(quota.available(T0), None);
        assert_eq!(quota.full_until(T0), None);
        assert_eq!(quota.used(T0), 5_000);
    }

    #[test]
    fn changing_the_limit() {
        let mut quota = PortfolioQuota::new(Some(250));
        for i in 0..250 {
            quota.record(&phone(i), T0 + i as i64);
        }
        quota.set_limit(Some(2_000));
        assert_eq!(quota.check(&phone(999), T0 + 300), QuotaCheck::Fits);
        // Lowered under the usage: 151 entries must leave before one slot frees.
        quota.set_limit(Some(100));
        assert_eq!(quota.available(T0 + 300), Some(0));
        assert_eq!(
            quota.check(&phone(999), T0 + 300),
            QuotaCheck::Blocked {
                until_ms: T0 + 150 + DAY_MS
            }
        );
        let mut empty = PortfolioQuota::new(Some(0));
        assert_eq!(
            empty.check("+1", T0),
            QuotaCheck::Blocked { until_ms: i64::MAX }
        );
        assert_eq!(empty.limit(), Some(0));
    }

    #[test]
    fn quota_memory_stays_bounded_when_recipients_are_messaged_again() {
        let mut quota = PortfolioQuota::new(Some(10));
        for i in 0..10_000 {
            quota.record(&phone(i % 3), T0 + i as i64);
        }
        assert_eq!(quota.used(T0 + 10_000), 3);
        assert!(quota.order.len() <= 2 * 3 + 64 + 1, "{}", quota.order.len());
        assert!(quota.check(&phone(5), T0 + 10_000) == QuotaCheck::Fits);
        assert_eq!(quota.used(T0 + 9_997 + DAY_MS), 2);
        assert_eq!(quota.used(T0 + 9_999 + DAY_MS), 0);
        assert!(quota.order.is_empty());
    }

    #[test]
    fn recipient_keys() {
        assert_eq!(
            RecipientKey::new("+14155550123"),
            RecipientKey::Phone(14_155_550_123)
        );
        assert_eq!(
            RecipientKey::new("14155550123"),
            RecipientKey::new("+14155550123")
        );
        assert_ne!(RecipientKey::new("+0123"), RecipientKey::new("+123"));
        assert_eq!(
            RecipientKey::new("+0123"),
            RecipientKey::Other(Arc::from("+0123"))
        );
        assert!(matches!(
            RecipientKey::new("+1234567890123456"),
            RecipientKey::Other(_)
        ));
        assert!(matches!(RecipientKey::new(""), RecipientKey::Other(_)));
        assert!(matches!(RecipientKey::new("+"), RecipientKey::Other(_)));
        assert!(matches!(
            RecipientKey::new("+1 415"),
            RecipientKey::Other(_)
        ));
        let mut quota = PortfolioQuota::new(Some(5));
        quota.record("not a phone", T0);
        quota.record("14155550123", T0);
        assert_eq!(quota.check("not a phone", T0), QuotaCheck::InWindow);
        assert_eq!(quota.check("+14155550123", T0), QuotaCheck::InWindow);
        assert_eq!(quota.used(T0), 2);
    }

    #[test]
    fn a_record_in_the_past_is_kept_in_time_order() {
        let mut quota = PortfolioQuota::new(Some(2));
        quota.record("+1", T0 + 1_000);
        quota.record("+2", T0);
        assert_eq!(
            quota.check("+3", T0 + 1_000),
            QuotaCheck::Blocked {
                until_ms: T0 + 1_000 + DAY_MS
            }
        );
        assert_eq!(quota.used(T0 + 1_000 + DAY_MS), 0);
    }

    // --- pair rate -----------------------------------------------------------------------

    #[test]
    fn pair_rate_is_one_message_per_6_s() {
        let mut pair = PairRate::new();
        assert_eq!(pair.allowed_at("+14155550100", T0), None);
        pair.record("+14155550100", T0);
        assert_eq!(
            pair.allowed_at("+14155550100", T0 + 5_999),
            Some(T0 + 6_000)
        );
        assert_eq!(pair.allowed_at("+14155550100", T0 + 6_000), None);
        assert_eq!(
            pair.allowed_at("+14155550101", T0),
            None,
            "others are unaffected"
        );
    }

    #[test]
    fn pair_penalty_and_prune() {
        let mut pair = PairRate::default();
        for i in 0..1_000 {
            pair.record(&phone(i), T0);
        }
        pair.penalize(&phone(1), T0 + pair_penalty_ms(3));
        pair.penalize(&phone(1), T0 + pair_penalty_ms(1));
        assert_eq!(pair.allowed_at(&phone(1), T0 + 6_000), Some(T0 + 64_000));
        pair.record(&phone(1), T0 + 10_000);
        assert_eq!(pair.allowed_at(&phone(1), T0 + 16_000), Some(T0 + 64_000));
        assert_eq!(pair.len(), 1_000);
        pair.prune(T0 + 5_999);
        assert_eq!(pair.len(), 1_000);
        pair.prune(T0 + 6_000);
        assert_eq!(pair.len(), 1, "only the penalized recipient is left");
        pair.prune(T0 + 64_000);
        assert!(pair.is_empty());
        assert!(pair.expiry.is_empty());
        assert_eq!(pair_penalty_ms(0), 1_000);
        assert_eq!(pair_penalty_ms(2), 16_000);
        assert_eq!(pair_penalty_ms(40), i64::MAX);
    }

    #[test]
    fn pair_memory_stays_bounded_under_repeated_penalties() {
        let mut pair = PairRate::new();
        for i in 0..10_000 {
            pair.penalize("+1", T0 + i);
        }
        assert!(pair.expiry.len() <= 2 + 64 + 1);
        assert_eq!(pair.allowed_at("+1", T0), Some(T0 + 9_999));
    }

    // --- planner -------------------------------------------------------------------------

    type Planner = DispatchPlanner<&'static str>;

    fn planner(cap: u32) -> Planner {
        DispatchPlanner::new(ThroughputGate::new(cap, DEFAULT_MARGIN), PairRate::new())
    }

    fn candidates(first_id: i64, recipients: impl IntoIterator<Item = String>) -> Vec<Candidate> {
        recipients
            .into_iter()
            .zip(first_id..)
            .map(|(recipient, message_id)| Candidate {
                message_id,
                recipient,
            })
            .collect()
    }

    /// Plans every `step` ms from `from` to `to` (offsets from T0 / `base`), collecting grants
    /// with their offset.
    fn run(
        planner: &mut Planner,
        quota: &mut PortfolioQuota,
        base: Instant,
        from: u64,
        to: u64,
        step: u64,
    ) -> Vec<(u64, Grant<&'static str>)> {
        let mut grants = Vec::new();
        for t in (from..to).step_by(step as usize) {
            let plan = planner.plan(base + ms(t), T0 + t as i64, quota);
            grants.extend(plan.grants.into_iter().map(|g| (t, g)));
        }
        grants
    }

    #[test]
    fn two_sends_share_the_number_round_robin() {
        let base = Instant::now();
        let mut p = planner(10);
        let mut quota = PortfolioQuota::new(None);
        p.offer(&"a", candidates(0, (0..100).map(phone)));
        p.offer(&"b", candidates(1_000, (100..200).map(phone)));
        let grants = run(&mut p, &mut quota, base, 0, 30_000, 1);
        assert_eq!(grants.len(), 200);
        let (mut a, mut b) = (0i32, 0i32);
        for (t, g) in &grants {
            match g.send_id {
                "a" => a += 1,
                _ => b += 1,
            }
            assert!((a - b).abs() <= 1, "unfair at {t} ms: a {a}, b {b}");
        }
        // Each send's messages go in the order offered.
        let a_ids: Vec<i64> = grants
            .iter()
            .filter(|(_, g)| g.send_id == "a")
            .map(|(_, g)| g.message_id)
            .collect();
        assert_eq!(a_ids, (0..100).collect::<Vec<_>>());
        let offsets: Vec<Duration> = grants.iter().map(|(t, _)| ms(*t)).collect();
        assert!(max_in_window(&offsets, SECOND + DEFAULT_MARGIN, false) <= 10);
        assert_eq!(p.queued(&"a"), 0);
    }

    #[test]
    fn a_pair_blocked_send_does_not_starve_the_other() {
        let base = Instant::now();
        let mut p = planner(10);
        let mut quota = PortfolioQuota::new(None);
        // "a" is a test list: 100 messages to one recipient. "b" has 100 distinct recipients.
        p.offer(&"a", candidates(0, (0..100).map(|_| phone(9_999))));
        p.offer(&"b", candidates(1_000, (0..100).map(phone)));
        let grants = run(&mut p, &mut quota, base, 0, 10_000, 1);
        let a: Vec<u64> = grants
            .iter()
            .filter(|(_, g)| g.send_id == "a")
            .map(|(t, _)| *t)
            .collect();
        let b = grants.len() - a.len();
        assert_eq!(a.len(), 2, "one message per 6 s to one recipient: {a:?}");
        assert_eq!(a[0], 0);
        // The second waits 6 s, then at most about one gate interval for its turn.
        assert!((6_000..6_200).contains(&a[1]), "{a:?}");
        assert!(b >= 95, "b got only {b} grants in 10 s");
        let status = p.status(&"a").unwrap();
        assert_eq!(status.queued, 98);
        assert_eq!(status.waiting_quota, 0);
        assert!(status.waiting_pair > 0);
    }

    #[test]
    fn the_engines_pair_interval_runs_from_metas_answer_with_a_margin() {
        let base = Instant::now();
        let mut p = DispatchPlanner::new(
            ThroughputGate::new(80, DEFAULT_MARGIN),
            PairRate::with_margin(),
        );
        let mut quota = PortfolioQuota::new(None);
        let same = "+14155550100";
        p.offer(&"a", candidates(1, [same.to_owned()]));
        assert_eq!(p.plan(base, T0, &mut quota).grants.len(), 1);
        // The first send's pipeline was slow: Meta answered 800 ms after the grant.
        p.pair_rate_mut().record(same, T0 + 800);
        p.offer(&"b", candidates(2, [same.to_owned()]));
        let interval = PAIR_INTERVAL_MS + PAIR_MARGIN_MS;
        for t in [6_000, interval, 800 + interval - 1] {
            let plan = p.plan(base + ms(t as u64), T0 + t, &mut quota);
            assert!(
                plan.grants.is_empty(),
                "granted {t} ms after the first grant"
            );
        }
        let t = 800 + interval;
        let plan = p.plan(base + ms(t as u64), T0 + t, &mut quota);
        assert_eq!(plan.grants.len(), 1);
        // An answer never shortens a wait: one from before the grant changes nothing.
        p.pair_rate_mut().record(same, T0 + t - 2_000);
        assert_eq!(
            p.pair_rate().allowed_at(same, T0 + t),
            Some(T0 + t + interval)
        );
    }

    #[test]
    fn a_second_message_to_a_recipient_waits_6_s() {
        let base = Instant::now();
        let mut p = planner(80);
        let mut quota = PortfolioQuota::new(None);
        p.offer(
            &"a",
            candidates(1, ["+14155550100".to_owned(), "+14155550100".to_owned()]),
        );
        let plan = p.plan(base, T0, &mut quota);
        assert_eq!(plan.grants.len(), 1);
        assert_eq!(plan.next, NextPlan::Waiting(Some(T0 + 6_000)));
        assert_eq!(p.status(&"a").unwrap().waiting_pair, 1);
        let plan = p.plan(base + ms(5_999), T0 + 5_999, &mut quota);
        assert!(plan.grants.is_empty());
        assert_eq!(
            plan.examined, 0,
            "a waiting candidate is not examined before its time"
        );
        let plan = p.plan(base + ms(6_000), T0 + 6_000, &mut quota);
        assert_eq!(plan.grants.len(), 1);
        assert_eq!(plan.grants[0].message_id, 2);
        assert_eq!(plan.next, NextPlan::Waiting(None));
    }

    #[test]
    fn a_penalized_recipient_waits_for_its_penalty() {
        let base = Instant::now();
        let mut p = planner(80);
        let mut quota = PortfolioQuota::new(None);
        p.pair_rate_mut()
            .penalize("+14155550100", T0 + pair_penalty_ms(2));
        p.offer(
            &"a",
            candidates(1, ["+14155550100".to_owned(), "+14155550101".to_owned()]),
        );
        let plan = p.plan(base, T0, &mut quota);
        assert_eq!(plan.grants.len(), 1);
        assert_eq!(plan.grants[0].recipient, "+14155550101");
        assert_eq!(plan.next, NextPlan::Waiting(Some(T0 + 16_000)));
        assert_eq!(
            p.plan(base + ms(16_000), T0 + 16_000, &mut quota)
                .grants
                .len(),
            1
        );
    }

    #[test]
    fn tier_250_grants_exactly_250_new_recipients_then_waits_for_the_window() {
        let base = Instant::now();
        let mut p = planner(1000);
        let mut quota = PortfolioQuota::new(Some(250));
        p.offer(&"a", candidates(0, (0..300).map(phone)));
        let grants = run(&mut p, &mut quota, base, 0, 2_000, 1);
        assert_eq!(grants.len(), 250);
        let first = grants[0].0 as i64;
        let last = grants[249].0 as i64;
        let status = p.status(&"a").unwrap();
        assert_eq!(status.queued, 50);
        assert_eq!(status.waiting_quota, 50);
        assert_eq!(status.quota_blocked_until, Some(T0 + first + DAY_MS));
        let plan = p.plan(base + ms(2_000), T0 + 2_000, &mut quota);
        assert!(plan.grants.is_empty());
        assert_eq!(plan.next, NextPlan::Waiting(Some(T0 + first + DAY_MS)));
        assert_eq!(
            plan.examined, 0,
            "quota-waiting candidates are not re-examined while full"
        );

        // Recipients already in the window still go while it is full.
        p.offer(&"b", candidates(10_000, (0..5).map(phone)));
        let plan = p.plan(base + ms(10_000), T0 + 10_000, &mut quota);
        assert_eq!(plan.grants.len(), 5);
        assert!(plan.grants.iter().all(|g| g.send_id == "b"));
        assert_eq!(quota.used(T0 + 10_000), 250);

        // 24 h after the last of the 250 (+1 ms), the other 50 have flowed.
        let day = DAY_MS as u64;
        let grants = run(&mut p, &mut quota, base, day, day + last as u64 + 2, 1);
        assert_eq!(grants.len(), 50);
        assert!(grants.iter().all(|(t, _)| *t as i64 >= first + DAY_MS));
        let status = p.status(&"a").unwrap();
        assert_eq!(status.queued, 0);
        assert_eq!(status.quota_blocked_until, None);
        // The 50 new ones, plus the 5 that "b" messaged again at 10 s.
        assert_eq!(quota.used(T0 + DAY_MS + last + 1), 55);
    }

    #[test]
    fn waiting_new_recipients_get_the_freed_slots_before_newer_offers() {
        let base = Instant::now();
        let mut p = planner(1000);
        let mut quota = PortfolioQuota::new(Some(3));
        p.offer(&"a", candidates(0, (0..5).map(phone)));
        let first = p.plan(base, T0, &mut quota).grants;
        assert_eq!(first.len(), 3);
        // The actor keeps the queue full: recipients in the window, and more new ones.
        p.offer(&"a", candidates(10, (10..13).map(phone)));
        p.offer(&"a", candidates(20, (0..3).map(phone)));
        let plan = p.plan(base + ms(10_000), T0 + 10_000, &mut quota);
        let ids: Vec<i64> = plan.grants.iter().map(|g| g.message_id).collect();
        assert_eq!(ids, vec![20, 21, 22], "only the free ones while full");
        let day = DAY_MS as u64;
        let plan = p.plan(base + ms(day), T0 + DAY_MS, &mut quota);
        assert!(
            plan.grants.is_empty(),
            "the re-messaged recipients hold their slots"
        );
        let plan = p.plan(base + ms(day + 10_000), T0 + DAY_MS + 10_000, &mut quota);
        let ids: Vec<i64> = plan.grants.iter().map(|g| g.message_id).collect();
        assert_eq!(ids, vec![3, 4, 10], "the oldest waiting go first");
    }

    #[test]
    fn raising_the_limit_releases_waiting_candidates() {
        let base = Instant::now();
        let mut p = planner(1000);
        let mut quota = PortfolioQuota::new(Some(10));
        p.offer(&"a", candidates(0, (0..30).map(phone)));
        assert_eq!(run(&mut p, &mut quota, base, 0, 100, 1).len(), 10);
        quota.set_limit(Some(2_000));
        assert_eq!(run(&mut p, &mut quota, base, 100, 200, 1).len(), 20);
    }

    #[test]
    fn withdraw_returns_every_held_candidate() {
        let base = Instant::now();
        let mut p = planner(1000);
        let mut quota = PortfolioQuota::new(Some(5));
        let offered = candidates(0, (0..10).map(phone));
        p.offer(&"a", offered.clone());
        p.offer(&"a", candidates(100, [phone(0)]));
        p.offer(&"a", candidates(200, (20..30).map(phone)));
        assert_eq!(p.queued(&"a"), 21);
        let granted = p.plan(base, T0, &mut quota).grants;
        assert_eq!(
            granted.len(),
            5,
            "5 new recipients; the second message to phone(0) waits for the pair rate"
        );
        let status = p.status(&"a").unwrap();
        assert_eq!(status.waiting_pair, 1);
        assert!(status.waiting_quota > 0);
        let mut back = p.withdraw(&"a");
        assert_eq!(back.len(), 16);
        assert_eq!(p.queued(&"a"), 0);
        back.extend(granted.into_iter().map(|g| Candidate {
            message_id: g.message_id,
            recipient: g.recipient,
        }));
        back.sort_by_key(|c| c.message_id);
        let mut all = offered;
        all.extend(candidates(100, [phone(0)]));
        all.extend(candidates(200, (20..30).map(phone)));
        assert_eq!(back, all, "nothing lost, nothing duplicated");
        assert!(
            p.send_ids().any(|id| *id == "a"),
            "the send stays registered"
        );
        assert!(p.withdraw(&"unknown").is_empty());
    }

    #[test]
    fn offering_a_message_twice_queues_it_once() {
        let mut p = planner(80);
        assert!(p.add_send("a"));
        assert!(!p.add_send("a"));
        assert_eq!(p.offer(&"a", candidates(1, (0..3).map(phone))), 3);
        assert_eq!(p.offer(&"a", candidates(1, (0..4).map(phone))), 1);
        assert_eq!(p.queued(&"a"), 4);
        let granted = p
            .plan(Instant::now(), T0, &mut PortfolioQuota::new(None))
            .grants;
        let mut ids: Vec<i64> = granted.iter().map(|g| g.message_id).collect();
        ids.dedup();
        assert_eq!(ids.len(), granted.len());
        // Once granted, the id may be offered again (a retry after a failed dispatch).
        assert_eq!(p.offer(&"a", candidates(1, [phone(0)])), 1);
    }

    #[test]
    fn pause_stops_grants_and_resume_restarts_them() {
        let base = Instant::now();
        let mut p = planner(80);
        let mut quota = PortfolioQuota::new(None);
        p.offer(&"a", candidates(0, (0..50).map(phone)));
        p.pause(PauseReason::SpamRateLimit);
        assert_eq!(p.paused(), Some(PauseReason::SpamRateLimit));
        let plan = p.plan(base, T0, &mut quota);
        assert!(plan.grants.is_empty());
        assert_eq!(plan.next, NextPlan::Paused(PauseReason::SpamRateLimit));
        assert!(run(&mut p, &mut quota, base, 0, 1_000, 1).is_empty());
        assert_eq!(p.queued(&"a"), 50);
        p.resume();
        assert_eq!(p.paused(), None);
        assert!(!run(&mut p, &mut quota, base, 1_000, 2_000, 1).is_empty());
    }

    #[test]
    fn the_gate_stops_a_plan_and_says_when_to_come_back() {
        let base = Instant::now();
        let mut p = planner(80);
        let mut quota = PortfolioQuota::new(None);
        p.offer(&"a", candidates(0, (0..50).map(phone)));
        let plan = p.plan(base, T0, &mut quota);
        assert_eq!(plan.grants.len(), 2, "the burst at 80 mps");
        let NextPlan::Throughput(Some(at)) = plan.next else {
            panic!("{:?}", plan.next);
        };
        assert_eq!(at, base + (SECOND + DEFAULT_MARGIN) / 80);
        assert_eq!(p.plan(at, T0 + 13, &mut quota).grants.len(), 1);
        p.gate_mut().set_cap(0);
        assert_eq!(
            p.plan(at + SECOND, T0 + 1_013, &mut quota).next,
            NextPlan::Throughput(None)
        );
        assert_eq!(p.gate().cap(), 0);
    }

    #[test]
    fn scanning_is_bounded_per_turn_and_waiting_candidates_are_not_rescanned() {
        let base = Instant::now();
        let mut p = planner(1);
        let mut quota = PortfolioQuota::new(None);
        p.pair_rate_mut().record(&phone(0), T0);
        p.offer(&"a", candidates(0, (0..1_000).map(|_| phone(0))));
        p.offer(&"b", candidates(5_000, (1..10).map(phone)));
        let plan = p.plan(base, T0, &mut quota);
        assert_eq!(plan.grants.len(), 1);
        assert_eq!(plan.grants[0].send_id, "b");
        assert_eq!(
            plan.examined,
            SCAN_PER_TURN + 1,
            "a's turn examined at most SCAN_PER_TURN"
        );
        // Without a gate limit, a's whole queue is examined once, then never before its time.
        p.gate_mut().set_cap(1_000_000);
        let plan = p.plan(base + SECOND, T0 + 1_000, &mut quota);
        assert_eq!(plan.grants.len(), 8);
        assert_eq!(plan.examined, 1_000 - SCAN_PER_TURN + 8);
        assert_eq!(p.plan(base + ms(2_000), T0 + 2_000, &mut quota).examined, 0);
        assert_eq!(p.status(&"a").unwrap().waiting_pair, 1_000);
    }

    #[test]
    fn a_clock_going_backwards_breaks_nothing() {
        let base = Instant::now();
        let mut p = planner(80);
        let mut quota = PortfolioQuota::new(Some(10));
        p.offer(&"a", candidates(0, (0..5).map(|_| phone(1))));
        assert_eq!(
            p.plan(base + SECOND, T0 + 1_000, &mut quota).grants.len(),
            1
        );
        // Both clocks step back: no second grant to the same recipient, no throughput burst.
        let plan = p.plan(base, T0, &mut quota);
        assert!(plan.grants.is_empty());
        assert_eq!(plan.next, NextPlan::Waiting(Some(T0 + 7_000)));
        assert_eq!(quota.used(T0), 1);
    }

    #[test]
    fn removing_sends_keeps_the_turn_order() {
        let base = Instant::now();
        let mut p = planner(1000);
        let mut quota = PortfolioQuota::new(None);
        for (i, id) in ["a", "b", "c"].into_iter().enumerate() {
            p.offer(
                &id,
                candidates(i as i64 * 100, (i * 100..i * 100 + 10).map(phone)),
            );
        }
        // A gate that allows exactly one grant per plan.
        p.gate_mut().set_cap(1);
        let first = p.plan(base, T0, &mut quota).grants;
        assert_eq!(first[0].send_id, "a");
        assert_eq!(p.remove_send(&"a").len(), 9);
        assert!(p.remove_send(&"a").is_empty());
        let next = p.plan(base + 2 * SECOND, T0 + 2_000, &mut quota).grants;
        assert_eq!(next[0].send_id, "b");
        let next = p.plan(base + 4 * SECOND, T0 + 4_000, &mut quota).grants;
        assert_eq!(next[0].send_id, "c");
        assert_eq!(p.send_ids().copied().collect::<Vec<_>>(), vec!["b", "c"]);
        assert_eq!(p.queued(&"zzz"), 0);
        assert_eq!(p.status(&"zzz"), None);
    }

    #[test]
    fn a_portfolio_quota_is_shared_by_the_numbers_that_use_it() {
        let base = Instant::now();
        let mut quota = PortfolioQuota::new(Some(100));
        let mut one = planner(1000);
        let mut two = planner(1000);
        one.offer(&"a", candidates(0, (0..100).map(phone)));
        two.offer(&"b", candidates(1_000, (100..200).map(phone)));
        let mut total = 0;
        for t in 0..1_000 {
            total += one
                .plan(base + ms(t), T0 + t as i64, &mut quota)
                .grants
                .len();
            total += two
                .plan(base + ms(t), T0 + t as i64, &mut quota)
                .grants
                .len();
        }
        assert_eq!(total, 100);
        assert_eq!(quota.used(T0 + 1_000), 100);
    }
}
