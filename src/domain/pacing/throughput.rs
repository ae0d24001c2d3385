//! The per-number messages-per-second gate (see the parent module's doc).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::*;

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
    pub(super) fn shift_at(&self, now: Instant) -> u32 {
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
    pub(super) fn gcra(&self, cap: u32) -> (Duration, Duration) {
        let cap = cap.max(1);
        let interval = self.window / cap;
        let burst = (cap / 50).max(2);
        let tolerance = interval.checked_mul(burst - 1).unwrap_or(self.window);
        (interval, tolerance)
    }

    pub(super) fn clamp(&self, now: Instant) -> Instant {
        self.floor.map_or(now, |floor| floor.max(now))
    }

    pub(super) fn observe(&mut self, now: Instant) -> Instant {
        let now = self.clamp(now);
        self.floor = Some(now);
        now
    }
}
