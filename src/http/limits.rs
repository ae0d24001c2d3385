//! Per-tenant request limits: a token bucket per tenant (GCRA, `governor`), refilled at
//! `MINDO_TENANT_RPS` requests per second with a burst of twice that. A request over it is
//! answered 429 `rate_limited` with `Retry-After` (whole seconds, rounded up) before its
//! handler runs.
//!
//! The bucket is taken in the `X-API-Key` extractor, after the key is known: every
//! endpoint under `/api/v1/` counts, for the key's tenant (all its keys share one budget);
//! Meta's webhooks, `/healthz`, `/readyz` and `/metrics` carry no key and are never
//! limited. The budget is per daemon: N daemons on one database allow N times the rate.
//!
//! Time comes from the daemon's clock, so tests drive the refill by hand.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::clock::SharedClock;

/// The daemon's clock as `governor` reads it: time since the Unix epoch.
#[derive(Clone, Debug)]
struct DaemonClock(SharedClock);

impl GovernorClock for DaemonClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0))
    }
}

type Buckets = RateLimiter<i64, DefaultKeyedStateStore<i64>, DaemonClock, NoOpMiddleware<Duration>>;

/// The request budgets of every tenant.
pub struct TenantLimits {
    /// `None` when `MINDO_TENANT_RPS` is 0 (no limit).
    buckets: Option<Buckets>,
    clock: DaemonClock,
}

impl std::fmt::Debug for TenantLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLimits")
            .field("enabled", &self.buckets.is_some())
            .finish()
    }
}

impl TenantLimits {
    /// `rps` requests per second per tenant, with a burst of `2 × rps`; 0: unlimited.
    pub fn new(rps: u32, clock: SharedClock) -> TenantLimits {
        let buckets = NonZeroU32::new(rps).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::MIN.saturating_add(1));
            let quota = Quota::per_second(rate).allow_burst(burst);
            RateLimiter::new(
                quota,
                DefaultKeyedStateStore::default(),
                DaemonClock(clock.clone()),
            )
        });
        TenantLimits {
            buckets,
            clock: DaemonClock(clock),
        }
    }

    /// Takes one request from the tenant's bucket; `Err(seconds to wait)` when it is empty.
    pub fn check(&self, tenant_id: i64) -> Result<(), u64> {
        let Some(buckets) = &self.buckets else {
            return Ok(());
        };
        buckets.check_key(&tenant_id).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            u64::try_from(wait.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;

    #[test]
    fn a_tenant_gets_its_burst_then_waits_for_the_refill() {
        let clock = ManualClock::new(1_000_000);
        let limits = TenantLimits::new(2, Arc::new(clock.clone()));
        for _ in 0..4 {
            assert_eq!(limits.check(1), Ok(()));
        }
        assert_eq!(limits.check(1), Err(1));
        // Another tenant has a bucket of its own.
        assert_eq!(limits.check(2), Ok(()));
        // Half a second refills one request at 2/s.
        clock.advance_ms(500);
        assert_eq!(limits.check(1), Ok(()));
        assert_eq!(limits.check(1), Err(1));
        clock.advance_ms(10_000);
        for _ in 0..4 {
            assert_eq!(limits.check(1), Ok(()));
        }
    }

    #[test]
    fn the_wait_is_rounded_up_to_whole_seconds() {
        let clock = ManualClock::new(0);
        let limits = TenantLimits::new(1, Arc::new(clock.clone()));
        assert_eq!(limits.check(7), Ok(()));
        assert_eq!(limits.check(7), Ok(()));
        assert_eq!(limits.check(7), Err(1));
        clock.advance_ms(300);
        assert_eq!(limits.check(7), Err(1));
        clock.advance_ms(700);
        assert_eq!(limits.check(7), Ok(()));
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = TenantLimits::new(0, Arc::new(ManualClock::new(0)));
        for _ in 0..10_000 {
            assert_eq!(limits.check(1), Ok(()));
        }
    }
}
