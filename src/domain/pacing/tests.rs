//! The pacing's tests, on an injected clock.

use std::sync::Arc;

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
