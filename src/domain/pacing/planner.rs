//! The dispatch planner: which send's candidates a number grants next, in fair turns.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::time::Instant;

use super::*;

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
pub(super) struct Queued {
    candidate: Candidate,
    key: RecipientKey,
}

/// One send's candidates in its number's planner.
#[derive(Clone, Debug)]
pub(super) struct SendQueue<S> {
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
    pub(super) fn new(id: S) -> Self {
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

    pub(super) fn len(&self) -> usize {
        self.fresh.len() + self.pair_wait.len() + self.quota_wait.len()
    }

    /// Moves the pair-waiting candidates due at `now_ms` back to the front of `fresh`.
    pub(super) fn release_pair(&mut self, now_ms: i64) {
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
    pub(super) fn release_quota(&mut self, room: Option<u32>) {
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

    pub(super) fn drain_all(&mut self) -> Vec<Candidate> {
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
    pub(super) fn next_turn(&mut self, quota: &PortfolioQuota) -> Option<usize> {
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
    pub(super) fn earliest_release(&self, quota: &PortfolioQuota) -> Option<i64> {
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

    pub(super) fn find(&self, send_id: &S) -> Option<usize> {
        self.sends.iter().position(|send| &send.id == send_id)
    }
}

/// Pops up to [`SCAN_PER_TURN`] fresh candidates of `send`, parking the blocked ones, until one
/// passes the pair rate and the quota.
pub(super) fn take_grantable<S>(
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
