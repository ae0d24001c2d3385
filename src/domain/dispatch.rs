//! What a send does with one dispatch attempt's result: Meta's answer (accepted, or an error
//! of some class), or no answer at all. Pure decisions, no I/O; the send actor carries them
//! out (writes the outcome, tells the limiter, pauses or stops) and storage applies the
//! outcome (`storage::sends::record_outcomes`).
//!
//! # The rules
//! - Accepted: the message is `sent` (its wamid stored).
//! - No answer, or one that does not say whether Meta took the message (a timeout, a broken
//!   connection after the request went out): the outcome is unknown. The message stays
//!   `dispatching` until a webhook naming it arrives or the reconcile grace ends; then
//!   [`reconcile`] decides by policy.
//! - A transient error (5xx, throttling, pair rate, app rate limit): retried after the wait
//!   Meta's error class asks for, at most [`MAX_ATTEMPTS`] attempts in all, then failed.
//!   130429 also slows the number down, 131056 holds the recipient back.
//! - A permanent error for the recipient: the message fails, the send goes on.
//! - 131048 (spam rate limit): the number pauses; the message goes back to `pending`.
//! - A paused template: the send pauses (until the template's approval), the message goes back
//!   to `pending`. Any other template problem stops the send (`FAILED`), and the message fails.
//! - A token or account problem: the number pauses, the send stops, the message fails.
//! - A retry of a send cancelled meanwhile is cancelled; of a send stopped meanwhile, failed
//!   (nothing of a stopped send is dispatched again, so a retry would stay pending for ever).

use std::time::Duration;

use crate::config::ReconcilePolicy;
use crate::domain::lifecycle::Phase;
use crate::domain::message::EngineStep;
use crate::meta::error::ErrorAction;

/// Attempts after which a transient failure becomes final.
pub const MAX_ATTEMPTS: i32 = 8;

/// How a dispatch attempt ended, as storage records it.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Meta accepted it.
    Accepted { wamid: String },
    /// Not sent; try again at `next_attempt_at`.
    Retry {
        next_attempt_at: i64,
        error_code: Option<i64>,
        error_message: String,
    },
    /// Not sent and never will be. `error_code` is Meta's code when Meta refused it.
    Failed {
        error_code: Option<i64>,
        error_message: String,
    },
    /// Not sent, and the send was cancelled meanwhile.
    Cancelled,
    /// The outcome is unknown after the grace period: resend.
    Reset { next_attempt_at: i64 },
}

impl Outcome {
    /// The step that records this outcome for a message in `dispatching`.
    pub fn step(&self) -> EngineStep {
        match self {
            Outcome::Accepted { .. } => EngineStep::Accepted,
            Outcome::Retry { .. } | Outcome::Reset { .. } => EngineStep::BackToPending,
            Outcome::Failed { .. } => EngineStep::DispatchFailed,
            Outcome::Cancelled => EngineStep::CancelDispatched,
        }
    }
}

/// What the number's limiter is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimiterFeedback {
    /// 130429: grant nothing for `after`, then slower.
    Throttled { after: Duration },
    /// 131056: this recipient waits until `until_ms`.
    PairRate { until_ms: i64 },
}

/// What happens to the send or its number beyond this message. Each carries the reason shown
/// (`pause_reason`, the failure reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendEffect {
    /// The number stops granting until an operator resumes it.
    PauseNumber(String),
    /// This send pauses until its template is approved again.
    PauseSend(String),
    /// This send stops: FAILED, its pending messages failed.
    StopSend(String),
}

/// The decision about one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerDecision {
    /// What to record for the message; `None`: unknown, wait for a webhook naming it.
    pub outcome: Option<Outcome>,
    pub feedback: Option<LimiterFeedback>,
    pub effects: Vec<SendEffect>,
}

/// Meta accepted the message as `wamid`.
pub fn on_accepted(wamid: String) -> AnswerDecision {
    AnswerDecision {
        outcome: Some(Outcome::Accepted { wamid }),
        feedback: None,
        effects: Vec::new(),
    }
}

/// An attempt that failed. `action` is the failure's class (`None`: Meta may have taken the
/// message), `code` Meta's error code when it gave one, `message` the error as shown,
/// `attempts` the attempts made so far including this one, `now_ms` the decision's time.
pub fn on_failure(
    action: Option<&ErrorAction>,
    code: Option<i64>,
    message: &str,
    attempts: i32,
    phase: &Phase,
    now_ms: i64,
) -> AnswerDecision {
    let Some(action) = action else {
        return AnswerDecision {
            outcome: None,
            feedback: None,
            effects: Vec::new(),
        };
    };
    let after_ms = |after: &Duration| i64::try_from(after.as_millis()).unwrap_or(i64::MAX / 4);
    let failed = || Outcome::Failed {
        error_code: code,
        error_message: message.to_owned(),
    };
    let exhausted = attempts >= MAX_ATTEMPTS;
    let retry_after = |after: &Duration| match exhausted {
        true => failed(),
        false => Outcome::Retry {
            next_attempt_at: now_ms.saturating_add(after_ms(after)),
            error_code: code,
            error_message: message.to_owned(),
        },
    };
    // Not sent, and sent again as soon as what holds it back is lifted.
    let held = || Outcome::Retry {
        next_attempt_at: now_ms.saturating_add(1_000),
        error_code: code,
        error_message: message.to_owned(),
    };
    let (outcome, feedback, effects) = match action {
        ErrorAction::RetryLater { after } | ErrorAction::AppRateLimited { after } => {
            (retry_after(after), None, Vec::new())
        }
        ErrorAction::Throttled { after } => (
            retry_after(after),
            Some(LimiterFeedback::Throttled { after: *after }),
            Vec::new(),
        ),
        ErrorAction::PairRateLimited { after } => (
            retry_after(after),
            Some(LimiterFeedback::PairRate {
                until_ms: now_ms.saturating_add(after_ms(after)),
            }),
            Vec::new(),
        ),
        ErrorAction::FailMessage => (failed(), None, Vec::new()),
        ErrorAction::PauseNumber => (
            held(),
            None,
            vec![SendEffect::PauseNumber(format!(
                "Meta restricted the number: {message}"
            ))],
        ),
        ErrorAction::StopSend { reason } if reason.is_temporary() => (
            held(),
            None,
            vec![SendEffect::PauseSend(format!(
                "{}: {message}",
                reason.as_str()
            ))],
        ),
        ErrorAction::StopSend { reason } => (
            failed(),
            None,
            vec![SendEffect::StopSend(format!(
                "{}: {message}",
                reason.as_str()
            ))],
        ),
        ErrorAction::StopAccount { reason } => {
            let why = format!("{}: {message}", reason.as_str());
            (
                failed(),
                None,
                vec![
                    SendEffect::PauseNumber(why.clone()),
                    SendEffect::StopSend(why),
                ],
            )
        }
    };
    AnswerDecision {
        outcome: Some(settle_retry(outcome, phase)),
        feedback,
        effects,
    }
}

/// A retry of a send cancelled or stopped meanwhile is never sent.
fn settle_retry(outcome: Outcome, phase: &Phase) -> Outcome {
    match (outcome, phase) {
        (Outcome::Retry { .. }, Phase::Cancelled) => Outcome::Cancelled,
        (
            Outcome::Retry {
                error_code,
                error_message,
                ..
            },
            Phase::Stopped { .. },
        ) => Outcome::Failed {
            error_code,
            error_message,
        },
        (other, _) => other,
    }
}

/// A message whose outcome stayed unknown through the reconcile grace (no answer, no webhook
/// naming it): resent or failed by `policy`; cancelled with its send; failed with a stopped
/// send (nothing of it is resent, though a late webhook may still say it was sent).
pub fn reconcile(policy: ReconcilePolicy, phase: &Phase, now_ms: i64) -> Outcome {
    match phase {
        Phase::Cancelled => return Outcome::Cancelled,
        Phase::Stopped { .. } => {
            return Outcome::Failed {
                error_code: None,
                error_message: "unknown_outcome: the send was stopped before Meta answered".into(),
            }
        }
        Phase::Running | Phase::Paused | Phase::Retired => {}
    }
    match policy {
        ReconcilePolicy::Resend => Outcome::Reset {
            next_attempt_at: now_ms,
        },
        ReconcilePolicy::Fail => Outcome::Failed {
            error_code: None,
            error_message:
                "unknown_outcome: no answer or webhook from Meta within the grace period".into(),
        },
    }
}

/// What a message granted by the limiter becomes when the send was cancelled or stopped after
/// the grant (it is never handed to Meta); `None`: send it.
pub fn after_grant(phase: &Phase) -> Option<Outcome> {
    match phase {
        Phase::Cancelled => Some(Outcome::Cancelled),
        Phase::Stopped { reason } => Some(Outcome::Failed {
            error_code: None,
            error_message: reason.clone(),
        }),
        Phase::Running | Phase::Paused | Phase::Retired => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::error::{StopAccountReason, StopSendReason};

    const NOW: i64 = 1_767_225_600_000;
    const RUNNING: &Phase = &Phase::Running;

    fn stopped() -> Phase {
        Phase::Stopped {
            reason: "template_disabled: …".into(),
        }
    }

    fn fail(action: &ErrorAction, attempts: i32, phase: &Phase) -> AnswerDecision {
        on_failure(Some(action), Some(131_000), "boom", attempts, phase, NOW)
    }

    fn retry_at(at: i64) -> Outcome {
        Outcome::Retry {
            next_attempt_at: at,
            error_code: Some(131_000),
            error_message: "boom".into(),
        }
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            error_code: Some(131_000),
            error_message: "boom".into(),
        }
    }

    #[test]
    fn accepted_is_sent() {
        let d = on_accepted("wamid.A".into());
        assert_eq!(
            d.outcome,
            Some(Outcome::Accepted {
                wamid: "wamid.A".into()
            })
        );
        assert!(d.feedback.is_none() && d.effects.is_empty());
    }

    #[test]
    fn an_answer_that_may_have_been_taken_waits_for_a_webhook() {
        let d = on_failure(None, None, "timed out", 1, RUNNING, NOW);
        assert_eq!(d.outcome, None);
        assert!(d.feedback.is_none() && d.effects.is_empty());
    }

    #[test]
    fn transient_errors_retry_after_their_wait_until_the_attempts_run_out() {
        let after = Duration::from_secs(30);
        for action in [
            ErrorAction::RetryLater { after },
            ErrorAction::AppRateLimited { after },
        ] {
            let d = fail(&action, 1, RUNNING);
            assert_eq!(d.outcome, Some(retry_at(NOW + 30_000)));
            assert!(d.feedback.is_none() && d.effects.is_empty());
            assert_eq!(
                fail(&action, MAX_ATTEMPTS - 1, RUNNING).outcome,
                Some(retry_at(NOW + 30_000))
            );
            assert_eq!(fail(&action, MAX_ATTEMPTS, RUNNING).outcome, Some(failed()));
        }
    }

    #[test]
    fn throttling_slows_the_number_and_retries() {
        let after = Duration::from_secs(2);
        let d = fail(&ErrorAction::Throttled { after }, 1, RUNNING);
        assert_eq!(d.outcome, Some(retry_at(NOW + 2_000)));
        assert_eq!(d.feedback, Some(LimiterFeedback::Throttled { after }));
        let d = fail(&ErrorAction::Throttled { after }, MAX_ATTEMPTS, RUNNING);
        assert_eq!(d.outcome, Some(failed()));
        assert_eq!(
            d.feedback,
            Some(LimiterFeedback::Throttled { after }),
            "still slows down"
        );
    }

    #[test]
    fn the_pair_rate_holds_the_recipient_and_retries() {
        let after = Duration::from_secs(16);
        let d = fail(&ErrorAction::PairRateLimited { after }, 2, RUNNING);
        assert_eq!(d.outcome, Some(retry_at(NOW + 16_000)));
        assert_eq!(
            d.feedback,
            Some(LimiterFeedback::PairRate {
                until_ms: NOW + 16_000
            })
        );
    }

    #[test]
    fn a_permanent_error_fails_only_the_message() {
        let d = fail(&ErrorAction::FailMessage, 1, RUNNING);
        assert_eq!(d.outcome, Some(failed()));
        assert!(d.feedback.is_none() && d.effects.is_empty());
    }

    #[test]
    fn a_spam_rate_limit_pauses_the_number_and_keeps_the_message() {
        let d = fail(&ErrorAction::PauseNumber, MAX_ATTEMPTS, RUNNING);
        assert_eq!(
            d.outcome,
            Some(retry_at(NOW + 1_000)),
            "not counted as a failure"
        );
        assert_eq!(
            d.effects,
            vec![SendEffect::PauseNumber(
                "Meta restricted the number: boom".into()
            )]
        );
    }

    #[test]
    fn a_paused_template_pauses_the_send_and_other_template_problems_stop_it() {
        let paused = ErrorAction::StopSend {
            reason: StopSendReason::TemplatePaused,
        };
        let d = fail(&paused, 1, RUNNING);
        assert_eq!(d.outcome, Some(retry_at(NOW + 1_000)));
        assert_eq!(
            d.effects,
            vec![SendEffect::PauseSend("template_paused: boom".into())]
        );
        for reason in [
            StopSendReason::TemplateNotApproved,
            StopSendReason::TemplateDisabled,
            StopSendReason::TemplateLimitCut,
        ] {
            let d = fail(&ErrorAction::StopSend { reason }, 1, RUNNING);
            assert_eq!(d.outcome, Some(failed()));
            assert_eq!(
                d.effects,
                vec![SendEffect::StopSend(format!("{}: boom", reason.as_str()))]
            );
        }
    }

    #[test]
    fn an_account_problem_pauses_the_number_and_stops_the_send() {
        let d = fail(
            &ErrorAction::StopAccount {
                reason: StopAccountReason::TokenInvalid,
            },
            1,
            RUNNING,
        );
        assert_eq!(d.outcome, Some(failed()));
        let why = format!("{}: boom", StopAccountReason::TokenInvalid.as_str());
        assert_eq!(
            d.effects,
            vec![
                SendEffect::PauseNumber(why.clone()),
                SendEffect::StopSend(why)
            ]
        );
    }

    #[test]
    fn a_retry_of_a_cancelled_or_stopped_send_is_never_sent() {
        let after = Duration::from_secs(1);
        let action = ErrorAction::RetryLater { after };
        assert_eq!(
            fail(&action, 1, &Phase::Cancelled).outcome,
            Some(Outcome::Cancelled)
        );
        assert_eq!(fail(&action, 1, &stopped()).outcome, Some(failed()));
        // A paused send retries later, like a running one.
        assert_eq!(
            fail(&action, 1, &Phase::Paused).outcome,
            Some(retry_at(NOW + 1_000))
        );
        // A final outcome stays what it is.
        assert_eq!(
            fail(&ErrorAction::FailMessage, 1, &Phase::Cancelled).outcome,
            Some(failed())
        );
    }

    #[test]
    fn unknown_outcomes_are_resent_or_failed_by_policy_after_the_grace() {
        assert_eq!(
            reconcile(ReconcilePolicy::Resend, RUNNING, NOW),
            Outcome::Reset {
                next_attempt_at: NOW
            }
        );
        assert!(matches!(
            reconcile(ReconcilePolicy::Fail, RUNNING, NOW),
            Outcome::Failed { error_code: None, error_message } if error_message.starts_with("unknown_outcome:")
        ));
        assert_eq!(
            reconcile(ReconcilePolicy::Resend, &Phase::Cancelled, NOW),
            Outcome::Cancelled
        );
        assert!(matches!(
            reconcile(ReconcilePolicy::Resend, &stopped(), NOW),
            Outcome::Failed { .. }
        ));
        assert_eq!(
            reconcile(ReconcilePolicy::Resend, &Phase::Paused, NOW),
            Outcome::Reset {
                next_attempt_at: NOW
            }
        );
    }

    #[test]
    fn a_grant_of_a_cancelled_or_stopped_send_is_never_sent() {
        assert_eq!(after_grant(RUNNING), None);
        assert_eq!(after_grant(&Phase::Paused), None);
        assert_eq!(after_grant(&Phase::Cancelled), Some(Outcome::Cancelled));
        assert_eq!(
            after_grant(&stopped()),
            Some(Outcome::Failed {
                error_code: None,
                error_message: "template_disabled: …".into()
            })
        );
    }
}
