//! `PhoneLimiter`: one per sender number. Grants send slots so that Meta never has to say
//! no — throughput (≤ the number's mps in any second), the portfolio's unique-recipient quota
//! per moving 24 h (shared by every number of the portfolio, rebuilt from the quota ledger
//! after a restart), one message per recipient per 6 s — fairly between the sends sharing
//! the number. All of that is decided by `domain::pacing::DispatchPlanner`; this actor feeds
//! it offers and feedback, applies the number's settings, and delivers the grants.
//!
//! Operator overrides (`mindo-bulk number set`) and tier or quality changes stored by a sync
//! are read back from the database every [`SETTINGS_REFRESH`], so a running daemon applies
//! them within seconds; a webhook's change is applied at once ([`LimiterCall::Refresh`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::Mutex;

use super::EngineContext;
use crate::domain::eta::WINDOW_MS;
use crate::domain::pacing::{
    Candidate, DispatchPlanner, NextPlan, PairRate, PauseReason, PortfolioQuota, ThroughputGate,
    PAIR_INTERVAL_MS, PAIR_MARGIN_MS,
};
use crate::storage::accounts;
use crate::telemetry::{self, LimiterWait, QueuedGauge};

/// The shortest wait between two plans held back by the throughput gate: grants then go out
/// a few at a time (the gate's burst absorbs it) rather than one timer per message.
const MIN_PLAN_INTERVAL: Duration = Duration::from_millis(5);
/// How often the number's settings are read back from the database, while messages wait.
const SETTINGS_REFRESH: Duration = Duration::from_secs(2);
/// How soon to plan again when the portfolio's quota is still being read by another limiter.
const QUOTA_LOAD_RECHECK: Duration = Duration::from_millis(50);

/// A portfolio's quota, shared by the limiters of its numbers.
#[derive(Debug)]
pub struct SharedQuota {
    inner: Mutex<QuotaState>,
}

#[derive(Debug)]
struct QuotaState {
    quota: PortfolioQuota,
    /// Whether the ledger has been read into `quota` (no grants before).
    loaded: bool,
    /// Whether some limiter is reading it.
    loading: bool,
}

/// Portfolio quotas by portfolio id.
pub type QuotaRegistry = Arc<Mutex<HashMap<String, Arc<SharedQuota>>>>;

/// Slots granted to a send: dispatch these messages now.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Grants {
    pub ids: Vec<i64>,
}

/// What Meta told a send about the number's limits.
#[derive(Debug, Clone)]
pub enum Feedback {
    /// 130429: too fast; grant nothing for a while.
    Throttled { after: Duration },
    /// 131056: this recipient waits.
    PairRate { recipient: String, until_ms: i64 },
    /// 131048 or an account problem: the number stops until an operator resumes it.
    PauseNumber { reason: String },
}

/// Calls from send actors.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub enum LimiterCall {
    /// A send starts using the number.
    Register {
        send_id: String,
        grants: Recipient<Grants>,
    },
    /// Messages ready to go: `(message id, recipient)`.
    Offer {
        send_id: String,
        candidates: Vec<(i64, String)>,
    },
    /// The send takes back what it offered (paused, cancelled, stopped).
    Withdraw {
        send_id: String,
    },
    /// The send is done with the number.
    Unregister {
        send_id: String,
    },
    Feedback(Feedback),
    /// Meta answered messages to these recipients by `at_ms`: their pair interval runs from
    /// then (it already runs from their grant; the later of the two counts).
    Answered {
        recipients: Vec<String>,
        at_ms: i64,
    },
    /// The number's row changed (a webhook): read it back now rather than at the next
    /// periodic refresh.
    Refresh,
}

/// The actor.
pub struct PhoneLimiter {
    phone_row_id: i64,
    ctx: EngineContext,
    quotas: QuotaRegistry,
    planner: DispatchPlanner<Arc<str>>,
    quota: Option<Arc<SharedQuota>>,
    grants_to: HashMap<Arc<str>, Recipient<Grants>>,
    /// Whether the number is paused in the database (operator or engine).
    paused_in_db: bool,
    /// No grant before this: a previous process (before a crash or restart) may have used
    /// the number's last second, which this one cannot see.
    hold_until: Instant,
    /// This limiter's share of the queued-messages gauge.
    queued_gauge: QueuedGauge,
    /// The timer for the next plan (when the gate, the pair rate or the quota lets the next
    /// message go) and when it fires. The limiter plans on offers, on settings read back and
    /// on this timer; with nothing queued it sleeps.
    wake: Option<(Instant, SpawnHandle)>,
    /// When the number's settings were last read back (`None`: never).
    refreshed_at: Option<Instant>,
}

impl PhoneLimiter {
    pub fn new(phone_row_id: i64, ctx: EngineContext, quotas: QuotaRegistry) -> Self {
        // Slack between our second and Meta's: ≤ cap grants in any (1 s + margin) window.
        let margin = Duration::from_millis(ctx.config.throughput_margin_ms);
        PhoneLimiter {
            phone_row_id,
            ctx,
            quotas,
            planner: DispatchPlanner::new(ThroughputGate::new(0, margin), PairRate::with_margin()),
            quota: None,
            grants_to: HashMap::new(),
            paused_in_db: false,
            hold_until: Instant::now() + Duration::from_secs(1) + margin,
            queued_gauge: QueuedGauge::default(),
            wake: None,
            refreshed_at: None,
        }
    }

    /// Reads the number's settings and applies them; the first time, also joins (and if need
    /// be loads) the portfolio's quota and the recent pair-rate history.
    fn refresh_settings(&mut self, ctx: &mut Context<Self>) {
        let id = self.phone_row_id;
        let fut = self
            .ctx
            .db
            .run(move |conn| accounts::number_by_id(conn, id));
        ctx.spawn(fut.into_actor(self).map(|result, act, ctx| match result {
            Ok(Some((number, account))) => {
                act.refreshed_at = Some(Instant::now());
                let cap = number.effective_mps();
                if act.planner.gate().cap() != cap {
                    tracing::info!(phone_number_id = %number.phone_number_id, mps = cap,
                        "The number's throughput is set.");
                    act.planner.gate_mut().set_cap(cap);
                }
                if number.paused != act.paused_in_db {
                    act.paused_in_db = number.paused;
                    if number.paused {
                        act.planner.pause(PauseReason::Operator);
                    } else {
                        act.planner.resume();
                    }
                }
                let limit = number.tier().limit();
                match &act.quota {
                    Some(shared) => {
                        {
                            let mut state = shared.inner.lock();
                            if state.quota.limit() != limit {
                                state.quota.set_limit(limit);
                            }
                        }
                        // A higher cap or limit, or a resume, may let messages go now.
                        act.plan(ctx);
                    }
                    None => act.join_quota(account.portfolio_id, limit, ctx),
                }
            }
            Ok(None) => tracing::warn!(phone_row_id = act.phone_row_id, "A limiter's number is gone."),
            Err(err) => tracing::warn!(error = %err, "Reading a number's settings failed; keeping the last ones."),
        }));
    }

    fn join_quota(&mut self, portfolio_id: String, limit: Option<u32>, ctx: &mut Context<Self>) {
        let shared = self
            .quotas
            .lock()
            .entry(portfolio_id.clone())
            .or_insert_with(|| {
                Arc::new(SharedQuota {
                    inner: Mutex::new(QuotaState {
                        quota: PortfolioQuota::new(limit),
                        loaded: false,
                        loading: false,
                    }),
                })
            })
            .clone();
        let must_load = {
            let mut state = shared.inner.lock();
            let must = !state.loaded && !state.loading;
            state.loading |= must;
            must
        };
        self.quota = Some(shared.clone());
        let now = self.ctx.clock.now_ms();
        let pair_interval = PAIR_INTERVAL_MS + PAIR_MARGIN_MS;
        let since = if must_load {
            now - WINDOW_MS
        } else {
            now - pair_interval
        };
        let fut = self
            .ctx
            .db
            .run(move |conn| crate::storage::quota::quota_window(conn, &portfolio_id, since));
        ctx.spawn(
            fut.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(entries) => {
                        for (recipient, at) in &entries {
                            if *at > now - pair_interval {
                                act.planner.pair_rate_mut().record(recipient, *at);
                            }
                        }
                        if must_load {
                            let mut state = shared.inner.lock();
                            state.quota.load(entries, now);
                            state.loaded = true;
                            state.loading = false;
                        }
                        act.plan(ctx);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "Reading the quota ledger failed; retrying.");
                        if must_load {
                            shared.inner.lock().loading = false;
                        }
                        act.quota = None;
                        ctx.run_later(Duration::from_secs(1), |act, ctx| act.refresh_settings(ctx));
                    }
                }),
        );
    }

    /// Plans grants and delivers them, one message per send, then sets the timer for the next
    /// plan from what held the rest back.
    fn plan(&mut self, ctx: &mut Context<Self>) {
        let Some(shared) = self.quota.clone() else {
            // Joining the portfolio's quota plans when it is done.
            return;
        };
        let now = Instant::now();
        if now < self.hold_until {
            self.wake_in(self.hold_until - now, ctx);
            return;
        }
        let plan = {
            let mut state = shared.inner.lock();
            if !state.loaded {
                drop(state);
                self.wake_in(QUOTA_LOAD_RECHECK, ctx);
                return;
            }
            self.planner
                .plan(now, self.ctx.clock.now_ms(), &mut state.quota)
        };
        self.report(plan.grants.len(), plan.next);
        match plan.next {
            NextPlan::Throughput(Some(at)) => {
                let wait = at.saturating_duration_since(Instant::now());
                self.wake_in(wait.max(MIN_PLAN_INTERVAL), ctx);
            }
            NextPlan::Waiting(Some(at_ms)) => {
                let wait = at_ms.saturating_sub(self.ctx.clock.now_ms());
                self.wake_in(Duration::from_millis(u64::try_from(wait).unwrap_or(0)), ctx);
            }
            // A cap of 0, a pause, or nothing waiting on time: a refresh or an offer plans.
            NextPlan::Throughput(None) | NextPlan::Waiting(None) | NextPlan::Paused(_) => {}
        }
        if plan.grants.is_empty() {
            return;
        }
        let mut by_send: HashMap<Arc<str>, Vec<i64>> = HashMap::new();
        for grant in plan.grants {
            by_send
                .entry(grant.send_id)
                .or_default()
                .push(grant.message_id);
        }
        for (send_id, ids) in by_send {
            if let Some(to) = self.grants_to.get(&send_id) {
                to.do_send(Grants { ids });
            }
        }
    }

    /// Plans again after `delay`, unless a plan is already due sooner.
    fn wake_in(&mut self, delay: Duration, ctx: &mut Context<Self>) {
        let at = Instant::now() + delay;
        if self.wake.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        if let Some((_, handle)) = self.wake.take() {
            ctx.cancel_future(handle);
        }
        let handle = ctx.run_later(delay, |act, ctx| {
            act.wake = None;
            act.plan(ctx);
        });
        self.wake = Some((at, handle));
    }

    /// Whether messages wait here (the settings are read back only then).
    fn has_queued(&self) -> bool {
        self.grants_to
            .keys()
            .any(|send_id| self.planner.queued(send_id) > 0)
    }

    /// Metrics of a planning round: the grants, what held messages back, what is queued.
    fn report(&mut self, granted: usize, next: NextPlan) {
        let (mut ready, mut pair, mut quota) = (0, 0, 0);
        for send_id in self.grants_to.keys() {
            if let Some(status) = self.planner.status(send_id) {
                ready += status
                    .queued
                    .saturating_sub(status.waiting_pair + status.waiting_quota);
                pair += status.waiting_pair;
                quota += status.waiting_quota;
            }
        }
        self.queued_gauge.set(ready, pair, quota);
        let held_back = match next {
            _ if ready + pair + quota == 0 => None,
            NextPlan::Paused(_) => Some(LimiterWait::Paused),
            NextPlan::Throughput(_) => Some(LimiterWait::Throughput),
            NextPlan::Waiting(_) if quota > 0 => Some(LimiterWait::Quota),
            NextPlan::Waiting(_) if pair > 0 => Some(LimiterWait::PairRate),
            NextPlan::Waiting(_) => None,
        };
        telemetry::limiter_round(granted, held_back);
    }
}

impl Actor for PhoneLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.refresh_settings(ctx);
        // An operator's `number set` (another process) is read back within 2 s while messages
        // wait here; with nothing queued the limiter reads nothing (an offer after a quiet
        // spell reads the settings first, then plans).
        ctx.run_interval(SETTINGS_REFRESH, |act, ctx| {
            if act.quota.is_none() || act.has_queued() {
                act.refresh_settings(ctx);
            }
        });
        if let Some(moves) = super::clock_moves(&self.ctx.clock) {
            ctx.add_stream(moves);
        }
    }
}

impl Handler<LimiterCall> for PhoneLimiter {
    type Result = ();

    fn handle(&mut self, msg: LimiterCall, ctx: &mut Context<Self>) {
        match msg {
            LimiterCall::Register { send_id, grants } => {
                let key: Arc<str> = send_id.into();
                self.planner.add_send(key.clone());
                self.grants_to.insert(key, grants);
            }
            LimiterCall::Offer {
                send_id,
                candidates,
            } => {
                let key: Arc<str> = send_id.into();
                self.planner.add_send(key.clone());
                self.planner.offer(
                    &key,
                    candidates
                        .into_iter()
                        .map(|(message_id, recipient)| Candidate {
                            message_id,
                            recipient,
                        }),
                );
                // Settings older than the refresh period (nothing was queued, so none were
                // read) are read back first; that read plans.
                let stale = self
                    .refreshed_at
                    .is_none_or(|at| at.elapsed() >= SETTINGS_REFRESH);
                if stale && self.quota.is_some() {
                    self.refresh_settings(ctx);
                } else {
                    self.plan(ctx);
                }
            }
            LimiterCall::Withdraw { send_id } => {
                self.planner.withdraw(&Arc::from(send_id));
            }
            LimiterCall::Unregister { send_id } => {
                let key: Arc<str> = send_id.into();
                self.planner.remove_send(&key);
                self.grants_to.remove(&key);
            }
            LimiterCall::Feedback(Feedback::Throttled { after }) => {
                self.planner.gate_mut().throttle(Instant::now(), after);
            }
            LimiterCall::Feedback(Feedback::PairRate {
                recipient,
                until_ms,
            }) => {
                self.planner.pair_rate_mut().penalize(&recipient, until_ms);
            }
            LimiterCall::Answered { recipients, at_ms } => {
                let pair = self.planner.pair_rate_mut();
                for recipient in &recipients {
                    pair.record(recipient, at_ms);
                }
            }
            LimiterCall::Feedback(Feedback::PauseNumber { reason }) => {
                tracing::warn!(phone_row_id = self.phone_row_id, %reason, "The number is paused.");
                self.planner.pause(PauseReason::SpamRateLimit);
                self.paused_in_db = true;
            }
            LimiterCall::Refresh => {
                // Before the first refresh has joined the quota, that refresh (or the next
                // periodic one) reads the row.
                if self.quota.is_some() {
                    self.refresh_settings(ctx);
                }
            }
        }
    }
}

/// A hand-moved clock (tests) moved: pair-rate and quota waits are looked at again.
impl StreamHandler<super::ClockMoved> for PhoneLimiter {
    fn handle(&mut self, _: super::ClockMoved, ctx: &mut Context<Self>) {
        self.plan(ctx);
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {}
}
