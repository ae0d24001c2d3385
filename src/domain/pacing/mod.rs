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
pub(super) fn later(at: Instant, by: Duration) -> Instant {
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

// The parts, one file each: the throughput gate, the portfolio quota (and the recipient key it
// shares with the pair rate), the pair rate, and the planner that combines them.
mod pair;
mod planner;
mod quota;
mod throughput;

pub use pair::*;
pub use planner::*;
pub use quota::*;
pub use throughput::*;

#[cfg(test)]
mod tests;
