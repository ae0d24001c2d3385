//! Where a bulk send stands while its actor runs it, and the pure decisions that depend on it:
//! whether it may dispatch, when it must wake up next, how a control, a webhook effect or a
//! stored row changes it, and when it is worth asking the database whether it has finished.
//! No I/O; the send actor (`engine::bulk_send`) keeps one [`Phase`] and carries the decisions
//! out.
//!
//! # The phases
//! ```text
//!             pause
//!  Running <---------> Paused
//!           resume
//!  Running or Paused --cancel--> Cancelled            (final)
//!  Running or Paused --stop----> Stopped { reason }   (final; FAILED, what is left fails
//!                                                      with the reason)
//! ```
//! Any phase ends in `Retired` once the stored send has settled (or vanished).
//!
//! A cancel is final and wins over a later stop (nothing is left to fail: every pending
//! message is already cancelled). A stop is final and refuses a later pause, resume or
//! cancel (the send is `FAILED`).
//!
//! A drain (the daemon stopping cleanly) is not a phase: it is the process's condition, never
//! stored, and the send restarts in its stored phase at the next start.

/// Where a send stands, as its actor knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Dispatching what is due (a schedule in the future still holds it back).
    Running,
    /// Paused (by the client, its template, or an effect of Meta's answer): nothing is offered
    /// until a resume.
    Paused,
    /// Cancelled by the client: nothing more is handed to Meta; what is left is cancelled.
    Cancelled,
    /// Stopped by a fatal error: nothing more is handed to Meta; what is left fails with
    /// `reason`.
    Stopped { reason: String },
    /// The stored send has settled: the actor has left the supervisor and the limiter and
    /// does nothing more.
    Retired,
}

/// A send's lifecycle as stored in its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPhase {
    pub paused: bool,
    pub cancelled: bool,
    /// The reason a fatal error stopped it.
    pub failure_reason: Option<String>,
}

/// A client's control request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlAction {
    Cancel,
    Pause,
    Resume,
}

/// What a change of phase asks the actor to do besides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing changed.
    None,
    /// Dispatch stopped: take the candidates back from the limiter.
    Withdraw,
    /// Dispatch may go on: look for due messages at once.
    Reload,
}

impl Phase {
    /// Whether the phase lets messages be offered and handed to Meta.
    pub fn may_dispatch(&self) -> bool {
        *self == Phase::Running
    }

    /// Whether no control can change the phase any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            Phase::Cancelled | Phase::Stopped { .. } | Phase::Retired
        )
    }

    /// The reason of a stop, if the send was stopped.
    pub fn stop_reason(&self) -> Option<&str> {
        match self {
            Phase::Stopped { reason } => Some(reason),
            _ => None,
        }
    }

    /// Pauses a running send.
    pub fn pause(&mut self) -> Change {
        self.become_if(Phase::Running, Phase::Paused, Change::Withdraw)
    }

    /// Resumes a paused send.
    pub fn resume(&mut self) -> Change {
        self.become_if(Phase::Paused, Phase::Running, Change::Reload)
    }

    /// Cancels a send that has not been stopped.
    pub fn cancel(&mut self) -> Change {
        match self {
            Phase::Running | Phase::Paused => {
                *self = Phase::Cancelled;
                Change::Withdraw
            }
            _ => Change::None,
        }
    }

    /// Stops a send after a fatal error, unless it was already cancelled or stopped.
    pub fn stop(&mut self, reason: String) -> Change {
        match self {
            Phase::Running | Phase::Paused => {
                *self = Phase::Stopped { reason };
                Change::Withdraw
            }
            _ => Change::None,
        }
    }

    /// A client's control: `None` when the send has already finished (cancelled, stopped or
    /// settled), the change otherwise. A cancel of a paused or running send, a pause of a
    /// paused one and a resume of a running one are all accepted (the last two change
    /// nothing).
    pub fn control(&mut self, action: ControlAction) -> Option<Change> {
        if self.is_final() {
            return None;
        }
        Some(match action {
            ControlAction::Cancel => self.cancel(),
            ControlAction::Pause => self.pause(),
            ControlAction::Resume => self.resume(),
        })
    }

    /// Takes the lifecycle of a stored row. `fresh`: no control or webhook effect was handled,
    /// and none is still being written, since the read began; otherwise the in-memory pause is
    /// newer than the row's and is kept. A stored cancel or stop is final and always taken.
    pub fn adopt(&mut self, stored: &StoredPhase, fresh: bool) -> Change {
        if self.is_final() {
            return Change::None;
        }
        if stored.cancelled {
            return self.cancel();
        }
        if let Some(reason) = &stored.failure_reason {
            return self.stop(reason.clone());
        }
        match (fresh, stored.paused) {
            (false, _) => Change::None,
            (true, true) => self.pause(),
            (true, false) => self.resume(),
        }
    }

    fn become_if(&mut self, from: Phase, to: Phase, change: Change) -> Change {
        if *self == from {
            *self = to;
            change
        } else {
            Change::None
        }
    }
}

/// When a send's actor must look for due messages again, by the clock alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadAt {
    /// Now.
    Now,
    /// At this time (unix ms): the next retry, or a retry after a failed read.
    At(i64),
    /// Never by the clock: nothing pending is left to load until an event puts some back.
    Never,
}

impl LoadAt {
    /// Whether a load is due at `now`.
    pub fn is_due(self, now: i64) -> bool {
        match self {
            LoadAt::Now => true,
            LoadAt::At(at) => at <= now,
            LoadAt::Never => false,
        }
    }

    /// The earlier of the two.
    pub fn earliest(self, other: LoadAt) -> LoadAt {
        match (self, other) {
            (LoadAt::Now, _) | (_, LoadAt::Now) => LoadAt::Now,
            (LoadAt::Never, x) | (x, LoadAt::Never) => x,
            (LoadAt::At(a), LoadAt::At(b)) => LoadAt::At(a.min(b)),
        }
    }
}

/// How the scan of a send's due messages finds a retry, a message put back to pending with a
/// later due time: `ScanRestart::Rewind`, scan again from the beginning, or keep scanning
/// from where it is and look again at `LoadAt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanRestart {
    Rewind,
    Continue(LoadAt),
}

/// Where the scan goes once the retry of message `id` is stored as pending again, due at `due`
/// (unix ms). (A reset, a message another daemon may already have put back at its old time,
/// always rewinds; the engine does not ask this.) The scan reads due messages in `(due, id)`
/// order from `cursor`, the key of the last one it read. A message that sorts at or before the
/// cursor is behind it and would never be read again: the scan rewinds. That happens whenever
/// the write commits late: a retry's time is chosen when Meta answers, and while the write
/// waits (a busy writer, a conflict with another daemon) the scan may read messages due later.
/// A read under way (`loading`) may still move the cursor past it, so it rewinds too (the page
/// it brings then leaves the cursor alone). Otherwise the scan reaches it when it is due.
pub fn after_requeue(cursor: (i64, i64), loading: bool, due: i64, id: i64) -> ScanRestart {
    if loading || (due, id) <= cursor {
        ScanRestart::Rewind
    } else {
        ScanRestart::Continue(LoadAt::At(due))
    }
}

/// What the clock-driven decisions of a send depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The send's `scheduled_at` (unix ms).
    pub scheduled_at: Option<i64>,
    /// When to look for due messages again.
    pub load_at: LoadAt,
    /// A read of due messages is under way (its end is an event).
    pub loading: bool,
    /// The daemon is draining: nothing new is dispatched.
    pub draining: bool,
}

impl Timing {
    /// Whether messages may be offered and handed to Meta at `now`.
    pub fn may_dispatch(&self, phase: &Phase, now: i64) -> bool {
        phase.may_dispatch() && !self.draining && !self.scheduled_after(now)
    }

    fn scheduled_after(&self, now: i64) -> bool {
        self.scheduled_at.is_some_and(|at| at > now)
    }

    /// The earliest time after `now` at which something becomes due by the clock alone: the
    /// schedule, the next load, or one of `deadlines` (reconcile deadlines of unknown
    /// outcomes). `None`: only an event can bring work — a paused, cancelled, stopped,
    /// draining or fully loaded send sleeps without a timer.
    pub fn next_wakeup(
        &self,
        phase: &Phase,
        now: i64,
        deadlines: impl IntoIterator<Item = i64>,
    ) -> Option<i64> {
        let held = !phase.may_dispatch() || self.draining;
        let load = match (self.scheduled_at, self.load_at) {
            _ if held => None,
            (Some(at), _) if at > now => Some(at),
            _ if self.loading => None,
            (_, LoadAt::Never) => None,
            (_, LoadAt::Now) => Some(now),
            (_, LoadAt::At(at)) => Some(at),
        };
        deadlines.into_iter().chain(load).filter(|&t| t > now).min()
    }

    /// Whether an idle actor (nothing offered, marked, in flight or unwritten) should ask the
    /// database whether its send has settled: when nothing may be dispatched (paused, cancelled,
    /// stopped, draining, scheduled later) or no load is due now by the clock.
    pub fn worth_checking_settled(&self, phase: &Phase, now: i64) -> bool {
        !self.may_dispatch(phase, now) || !self.load_at.is_due(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_767_225_600_000;

    fn stopped() -> Phase {
        Phase::Stopped {
            reason: "template_disabled".into(),
        }
    }

    fn stored(paused: bool, cancelled: bool, reason: Option<&str>) -> StoredPhase {
        StoredPhase {
            paused,
            cancelled,
            failure_reason: reason.map(str::to_owned),
        }
    }

    fn timing(scheduled_at: Option<i64>, load_at: LoadAt) -> Timing {
        Timing {
            scheduled_at,
            load_at,
            loading: false,
            draining: false,
        }
    }

    #[test]
    fn only_a_running_send_dispatches() {
        assert!(Phase::Running.may_dispatch());
        for phase in [Phase::Paused, Phase::Cancelled, stopped(), Phase::Retired] {
            assert!(!phase.may_dispatch(), "{phase:?}");
        }
    }

    #[test]
    fn pause_and_resume_toggle_and_say_what_to_do() {
        let mut phase = Phase::Running;
        assert_eq!(phase.pause(), Change::Withdraw);
        assert_eq!(phase, Phase::Paused);
        assert_eq!(
            phase.pause(),
            Change::None,
            "a second pause changes nothing"
        );
        assert_eq!(phase.resume(), Change::Reload);
        assert_eq!(phase, Phase::Running);
        assert_eq!(phase.resume(), Change::None);
    }

    #[test]
    fn cancel_is_final_and_wins_over_a_later_stop() {
        for start in [Phase::Running, Phase::Paused] {
            let mut phase = start;
            assert_eq!(phase.cancel(), Change::Withdraw);
            assert_eq!(phase, Phase::Cancelled);
            assert_eq!(phase.stop("late".into()), Change::None);
            assert_eq!(phase.resume(), Change::None);
            assert_eq!(phase, Phase::Cancelled);
        }
    }

    #[test]
    fn a_stop_is_final_and_keeps_its_first_reason() {
        let mut phase = Phase::Paused;
        assert_eq!(phase.stop("first".into()), Change::Withdraw);
        assert_eq!(phase.stop("second".into()), Change::None);
        assert_eq!(phase.cancel(), Change::None);
        assert_eq!(phase.resume(), Change::None);
        assert_eq!(phase.stop_reason(), Some("first"));
    }

    #[test]
    fn controls_of_a_finished_send_are_refused() {
        for phase in [Phase::Cancelled, stopped(), Phase::Retired] {
            for action in [
                ControlAction::Cancel,
                ControlAction::Pause,
                ControlAction::Resume,
            ] {
                let mut p = phase.clone();
                assert_eq!(p.control(action), None, "{phase:?} {action:?}");
                assert_eq!(p, phase);
            }
        }
        let mut phase = Phase::Running;
        assert_eq!(phase.control(ControlAction::Resume), Some(Change::None));
        assert_eq!(phase.control(ControlAction::Pause), Some(Change::Withdraw));
        assert_eq!(phase.control(ControlAction::Pause), Some(Change::None));
        assert_eq!(phase.control(ControlAction::Cancel), Some(Change::Withdraw));
        assert_eq!(phase, Phase::Cancelled);
    }

    #[test]
    fn a_fresh_row_sets_the_pause_a_stale_one_keeps_the_actors() {
        let mut phase = Phase::Running;
        assert_eq!(
            phase.adopt(&stored(true, false, None), true),
            Change::Withdraw
        );
        assert_eq!(phase, Phase::Paused);
        // A resume was handled while the row was read: the row's pause is older.
        assert_eq!(phase.resume(), Change::Reload);
        assert_eq!(phase.adopt(&stored(true, false, None), false), Change::None);
        assert_eq!(phase, Phase::Running);
        assert_eq!(phase.pause(), Change::Withdraw);
        assert_eq!(
            phase.adopt(&stored(false, false, None), true),
            Change::Reload
        );
        assert_eq!(phase, Phase::Running);
    }

    #[test]
    fn a_stored_cancel_or_stop_is_taken_even_from_a_stale_row() {
        let mut phase = Phase::Running;
        assert_eq!(
            phase.adopt(&stored(false, true, None), false),
            Change::Withdraw
        );
        assert_eq!(phase, Phase::Cancelled);
        let mut phase = Phase::Paused;
        assert_eq!(
            phase.adopt(&stored(false, false, Some("why")), false),
            Change::Withdraw
        );
        assert_eq!(phase.stop_reason(), Some("why"));
        // Cancelled and stopped in the row: the cancel decides (nothing is left to fail).
        let mut phase = Phase::Running;
        phase.adopt(&stored(false, true, Some("why")), true);
        assert_eq!(phase, Phase::Cancelled);
        // Nothing undoes a retirement.
        let mut phase = Phase::Retired;
        assert_eq!(phase.adopt(&stored(false, false, None), true), Change::None);
        assert_eq!(phase, Phase::Retired);
    }

    #[test]
    fn a_schedule_in_the_future_holds_dispatch_and_is_the_wakeup() {
        let t = timing(Some(NOW + 3_600_000), LoadAt::Now);
        assert!(!t.may_dispatch(&Phase::Running, NOW));
        assert!(t.may_dispatch(&Phase::Running, NOW + 3_600_000));
        assert_eq!(
            t.next_wakeup(&Phase::Running, NOW, []),
            Some(NOW + 3_600_000)
        );
    }

    #[test]
    fn a_held_send_sleeps_without_a_timer_except_for_reconcile_deadlines() {
        let t = timing(Some(NOW + 3_600_000), LoadAt::At(NOW + 5_000));
        for phase in [Phase::Paused, Phase::Cancelled, stopped(), Phase::Retired] {
            assert_eq!(t.next_wakeup(&phase, NOW, []), None, "{phase:?}");
            assert_eq!(
                t.next_wakeup(&phase, NOW, [NOW + 30_000]),
                Some(NOW + 30_000),
                "{phase:?}: an unknown outcome's deadline still wakes it"
            );
        }
        let draining = Timing {
            draining: true,
            ..timing(None, LoadAt::At(NOW + 5_000))
        };
        assert_eq!(draining.next_wakeup(&Phase::Running, NOW, []), None);
        assert!(!draining.may_dispatch(&Phase::Running, NOW));
    }

    #[test]
    fn the_next_load_is_the_wakeup_unless_a_read_is_under_way_or_nothing_is_left() {
        let t = timing(None, LoadAt::At(NOW + 5_000));
        assert_eq!(t.next_wakeup(&Phase::Running, NOW, []), Some(NOW + 5_000));
        assert_eq!(
            t.next_wakeup(&Phase::Running, NOW, [NOW + 2_000]),
            Some(NOW + 2_000),
            "the earliest wins"
        );
        let loading = Timing { loading: true, ..t };
        assert_eq!(loading.next_wakeup(&Phase::Running, NOW, []), None);
        let empty = timing(None, LoadAt::Never);
        assert_eq!(empty.next_wakeup(&Phase::Running, NOW, []), None);
        // What is already due is done now, not by a timer.
        let due = timing(None, LoadAt::At(NOW - 1));
        assert_eq!(due.next_wakeup(&Phase::Running, NOW, [NOW]), None);
    }

    #[test]
    fn load_times_order_now_before_a_time_before_never() {
        assert_eq!(LoadAt::At(5).earliest(LoadAt::Now), LoadAt::Now);
        assert_eq!(LoadAt::Never.earliest(LoadAt::At(5)), LoadAt::At(5));
        assert_eq!(LoadAt::At(7).earliest(LoadAt::At(5)), LoadAt::At(5));
        assert_eq!(LoadAt::Never.earliest(LoadAt::Never), LoadAt::Never);
        assert!(LoadAt::Now.is_due(NOW));
        assert!(LoadAt::At(NOW).is_due(NOW));
        assert!(!LoadAt::At(NOW + 1).is_due(NOW));
        assert!(!LoadAt::Never.is_due(NOW));
    }

    #[test]
    fn an_idle_send_checks_whether_it_settled_only_when_nothing_is_due_now() {
        let due_now = timing(None, LoadAt::Now);
        assert!(!due_now.worth_checking_settled(&Phase::Running, NOW));
        assert!(due_now.worth_checking_settled(&Phase::Cancelled, NOW));
        assert!(due_now.worth_checking_settled(&stopped(), NOW));
        assert!(due_now.worth_checking_settled(&Phase::Paused, NOW));
        let later = timing(None, LoadAt::At(NOW + 1_000));
        assert!(later.worth_checking_settled(&Phase::Running, NOW));
        let scheduled = timing(Some(NOW + 1_000), LoadAt::Now);
        assert!(scheduled.worth_checking_settled(&Phase::Running, NOW));
    }

    #[test]
    fn a_message_put_back_behind_the_scan_rewinds_it() {
        let cursor = (1_000, 50);
        // Due earlier than the last message read, or as early with a smaller id: behind.
        assert_eq!(after_requeue(cursor, false, 900, 70), ScanRestart::Rewind);
        assert_eq!(after_requeue(cursor, false, 1_000, 40), ScanRestart::Rewind);
        assert_eq!(after_requeue(cursor, false, 1_000, 50), ScanRestart::Rewind);
        // Ahead of the scan: found when due.
        assert_eq!(
            after_requeue(cursor, false, 1_000, 51),
            ScanRestart::Continue(LoadAt::At(1_000))
        );
        assert_eq!(
            after_requeue(cursor, false, 3_000, 1),
            ScanRestart::Continue(LoadAt::At(3_000))
        );
        // A read under way may carry the cursor past it.
        assert_eq!(after_requeue(cursor, true, 3_000, 1), ScanRestart::Rewind);
        // A scan that has not started yet is at the beginning.
        assert_eq!(
            after_requeue((i64::MIN, 0), false, 0, 1),
            ScanRestart::Continue(LoadAt::At(0))
        );
    }
}
