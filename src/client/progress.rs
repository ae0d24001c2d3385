//! A bulk send's status object as the client reads it, and how its progress is shown: when a
//! send is finished, the exit status and one-line summary of an outcome, the ETA, and the live
//! view (an `indicatif` bar on a terminal, plain lines otherwise).
//!
//! The ETA is the server's: `estimated_time_minutes` counted from the moment the send could
//! start (its creation, or its schedule). The server knows the number's throughput and the
//! quota windows the send must wait for; the bar does not, and a rate extrapolated from it
//! would say "4 s" for a send that cannot move for hours.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;

/// The exit status of a send that finished `PARTIAL`, `FAILED` or `CANCELLED`.
pub const EXIT_UNSUCCESSFUL: i32 = 2;

/// Without a terminal, a plain progress line at most this often.
const PLAIN_LINE_INTERVAL: Duration = Duration::from_secs(10);

/// The fields of the status object (API.md, `GET bulk-sends/{id}/`) the client uses.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct SendStatus {
    pub id: String,
    pub status: String,
    pub template: Option<TemplateRef>,
    pub phone_number: Option<NumberRef>,
    pub total_recipients: u64,
    pub sent_count: u64,
    pub delivered_count: u64,
    pub read_count: u64,
    pub failed_count: u64,
    pub pending_count: u64,
    pub cancelled_count: u64,
    /// Recipients not sent because they opted out.
    pub suppressed_count: u64,
    pub progress_percentage: f64,
    /// The server's estimate at creation, from the moment the send could start.
    pub estimated_time_minutes: Option<f64>,
    pub paused: bool,
    pub pause_reason: Option<String>,
    pub scheduled_at: Option<String>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TemplateRef {
    pub template_name: String,
    pub language: String,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct NumberRef {
    pub display_phone_number: String,
    pub verified_name: String,
}

impl SendStatus {
    /// Settled: a final status and nothing pending (a cancelled send may still be settling
    /// messages that were in flight).
    pub fn is_finished(&self) -> bool {
        matches!(
            self.status.as_str(),
            "COMPLETED" | "PARTIAL" | "FAILED" | "CANCELLED"
        ) && self.pending_count == 0
    }

    /// Messages no longer pending: the bar's position.
    pub fn done(&self) -> u64 {
        self.total_recipients.saturating_sub(self.pending_count)
    }

    /// 0 for `COMPLETED`, [`EXIT_UNSUCCESSFUL`] for any other outcome.
    pub fn exit_code(&self) -> i32 {
        if self.status == "COMPLETED" {
            0
        } else {
            EXIT_UNSUCCESSFUL
        }
    }

    /// `sent 3 · delivered 2 · read 1 · failed 0` (and cancelled, when any).
    pub fn counts(&self) -> String {
        let mut out = format!(
            "sent {} · delivered {} · read {} · failed {}",
            self.sent_count, self.delivered_count, self.read_count, self.failed_count
        );
        if self.cancelled_count > 0 {
            out.push_str(&format!(" · cancelled {}", self.cancelled_count));
        }
        if self.suppressed_count > 0 {
            out.push_str(&format!(" · suppressed {}", self.suppressed_count));
        }
        out
    }

    /// The state word shown next to the bar: `PROCESSING`, `PAUSED (reason)`,
    /// `QUEUED until …`.
    pub fn state(&self) -> String {
        if self.paused && !self.is_finished() {
            return match &self.pause_reason {
                Some(reason) => format!("PAUSED ({reason})"),
                None => "PAUSED".to_owned(),
            };
        }
        match (&self.scheduled_at, self.status.as_str()) {
            (Some(at), "QUEUED") => format!("QUEUED until {at}"),
            _ => self.status.clone(),
        }
    }

    /// The one-line outcome: `Bulk send ID COMPLETED: 3 of 3 sent (2 delivered, 1 read), 0 failed.`
    pub fn summary(&self) -> String {
        let mut out = format!(
            "Bulk send {} {}: {} of {} sent ({} delivered, {} read), {} failed",
            self.id,
            self.status,
            self.sent_count,
            self.total_recipients,
            self.delivered_count,
            self.read_count,
            self.failed_count
        );
        if self.cancelled_count > 0 {
            out.push_str(&format!(", {} cancelled", self.cancelled_count));
        }
        if self.suppressed_count > 0 {
            out.push_str(&format!(
                ", {} suppressed (opted out)",
                self.suppressed_count
            ));
        }
        if self.pending_count > 0 {
            out.push_str(&format!(", {} pending", self.pending_count));
        }
        out.push('.');
        out
    }

    /// A readable multi-line description (`mindo-bulk status` without `--json`).
    pub fn describe(&self) -> String {
        let mut lines = vec![format!("Bulk send {}: {}", self.id, self.state())];
        if let Some(t) = &self.template {
            let mut line = format!("template:  {} ({})", t.template_name, t.language);
            if let Some(n) = &self.phone_number {
                line.push_str(&format!(
                    " from {} ({})",
                    n.display_phone_number, n.verified_name
                ));
            }
            lines.push(line);
        }
        lines.push(format!(
            "progress:  {:.1}% ({} of {} done, {} pending)",
            self.progress_percentage,
            self.done(),
            self.total_recipients,
            self.pending_count
        ));
        lines.push(format!("messages:  {}", self.counts()));
        let times: Vec<String> = [
            ("created", &self.created_at),
            ("scheduled", &self.scheduled_at),
            ("started", &self.started_at),
            ("completed", &self.completed_at),
        ]
        .into_iter()
        .filter_map(|(what, at)| at.as_ref().map(|at| format!("{what} {at}")))
        .collect();
        if !times.is_empty() {
            lines.push(format!("times:     {}", times.join(", ")));
        }
        lines.join("\n")
    }

    /// The text next to the bar: state, counts and the outlook.
    pub fn progress_message(&self, outlook: Option<&Outlook>) -> String {
        let mut out = format!("{} · {}", self.state(), self.counts());
        if !self.is_finished() && !self.paused {
            match outlook {
                Some(Outlook::Eta(eta)) if eta.is_zero() => {
                    out.push_str(" · past the estimated time")
                }
                Some(Outlook::Eta(eta)) => {
                    out.push_str(&format!(" · ETA {}", format_duration(*eta)))
                }
                Some(Outlook::QuotaUntil(at)) => out.push_str(&format!(
                    " · waiting for the 24 h quota until {} UTC",
                    at.format("%H:%M")
                )),
                None => {}
            }
        }
        out
    }

    /// A plain progress line (no terminal): `1200/5000 (24.0%) PROCESSING · sent … · ETA 3m 10s`.
    pub fn progress_line(&self, outlook: Option<&Outlook>) -> String {
        format!(
            "{}/{} ({:.1}%) {}",
            self.done(),
            self.total_recipients,
            self.progress_percentage,
            self.progress_message(outlook)
        )
    }

    /// When the server expects the send to be over: its estimate counted from the moment the
    /// send could start (created, or scheduled later); `None` without an estimate.
    pub fn expected_finish(&self) -> Option<DateTime<Utc>> {
        let parse = |at: &Option<String>| {
            at.as_deref()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let start = match (parse(&self.created_at), parse(&self.scheduled_at)) {
            (Some(created), Some(scheduled)) => created.max(scheduled),
            (created, scheduled) => created.or(scheduled)?,
        };
        let minutes = self
            .estimated_time_minutes
            .filter(|m| m.is_finite() && *m >= 0.0)?;
        let millis = (minutes * 60_000.0).min(1e15) as i64;
        Some(start + chrono::Duration::milliseconds(millis))
    }

    /// What to tell about the time left at `now`. `fitting` is, when the create answer said
    /// the send does not fit the 24 h quota, how many of its recipients did: once those are
    /// done and others are pending, the rest waits for the window, until the server's
    /// expected finish.
    pub fn outlook(&self, fitting: Option<u64>, now: DateTime<Utc>) -> Option<Outlook> {
        if self.is_finished() || self.paused {
            return None;
        }
        let finish = self.expected_finish()?;
        if fitting.is_some_and(|n| self.done() >= n) && self.pending_count > 0 && finish > now {
            return Some(Outlook::QuotaUntil(finish));
        }
        let left = (finish - now).to_std().unwrap_or(Duration::ZERO);
        Some(Outlook::Eta(left))
    }
}

/// What a running send is waiting for, next to its bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outlook {
    /// Time left by the server's estimate (0 once that moment has passed).
    Eta(Duration),
    /// The recipients that fitted the 24 h quota are done; the rest waits until then.
    QuotaUntil(DateTime<Utc>),
}

/// `42s`, `3m 05s`, `2h 07m`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h {:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// How a watched send is shown while it runs (the final result goes to stdout separately).
pub enum ProgressView {
    /// A live bar on stderr (a terminal): the bar on one line, state, counts and ETA below.
    Bar { bar: ProgressBar, ticking: bool },
    /// No terminal: a plain line on stderr every [`PLAIN_LINE_INTERVAL`] and on state changes.
    Lines {
        last: Option<Instant>,
        last_state: String,
    },
    /// `--json`: nothing.
    Quiet,
}

impl ProgressView {
    /// A bar when stderr is a terminal, else plain lines; nothing with `quiet`.
    pub fn new(quiet: bool) -> ProgressView {
        if quiet {
            return ProgressView::Quiet;
        }
        let bar = ProgressBar::new(0);
        if bar.is_hidden() {
            return ProgressView::Lines {
                last: None,
                last_state: String::new(),
            };
        }
        let style = ProgressStyle::with_template(
            "{spinner:.green} [{elapsed_precise}] [{wide_bar:.cyan/blue}] {pos}/{len} ({percent}%)\n  {wide_msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        ProgressView::Bar {
            bar,
            ticking: false,
        }
    }

    /// Shows the latest status.
    pub fn update(&mut self, status: &SendStatus, outlook: Option<&Outlook>) {
        match self {
            ProgressView::Bar { bar, ticking } => {
                bar.set_length(status.total_recipients);
                bar.set_position(status.done());
                bar.set_message(status.progress_message(outlook));
                if !*ticking {
                    // Only now: before the first status the bar has no length to show.
                    bar.enable_steady_tick(Duration::from_millis(120));
                    *ticking = true;
                }
            }
            ProgressView::Lines { last, last_state } => {
                let state = status.state();
                let due = last.is_none_or(|t| t.elapsed() >= PLAIN_LINE_INTERVAL);
                if due || state != *last_state || status.is_finished() {
                    eprintln!("{}", status.progress_line(outlook));
                    *last = Some(Instant::now());
                    *last_state = state;
                }
            }
            ProgressView::Quiet => {}
        }
    }

    /// Removes the bar; the caller prints the outcome in its place.
    pub fn finish(&self) {
        if let ProgressView::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(value: serde_json::Value) -> SendStatus {
        serde_json::from_value(value).unwrap()
    }

    fn documented() -> SendStatus {
        status(json!({
            "id": "a3f2b8c9", "status": "COMPLETED",
            "template": {"id": 45, "template_name": "welcome_message", "language": "es", "status": "APPROVED"},
            "phone_number": {"id": 123, "display_phone_number": "+54 9 223 675-0780", "verified_name": "Mindo Software"},
            "total_recipients": 3, "sent_count": 3, "delivered_count": 2, "read_count": 1,
            "failed_count": 0, "pending_count": 0, "progress_percentage": 100.0,
            "estimated_time_minutes": 0.4,
            "started_at": "2025-11-16T21:30:05Z", "completed_at": "2025-11-16T21:30:28Z",
            "created_at": "2025-11-16T21:30:00Z",
            "created_by": {"id": 1, "name": "Production API Key"},
            "task_id": "7f8e", "unique_recipients": 3, "cancelled_count": 0,
            "paused": false, "pause_reason": null, "scheduled_at": null
        }))
    }

    #[test]
    fn finished_means_a_final_status_and_nothing_pending() {
        let mut s = documented();
        assert!(s.is_finished());
        for (st, pending, finished) in [
            ("QUEUED", 3, false),
            ("PROCESSING", 1, false),
            ("PROCESSING", 0, false),
            ("COMPLETED", 0, true),
            ("PARTIAL", 0, true),
            ("FAILED", 0, true),
            ("CANCELLED", 0, true),
            ("CANCELLED", 2, false),
            ("SOMETHING_NEW", 0, false),
        ] {
            s.status = st.into();
            s.pending_count = pending;
            assert_eq!(s.is_finished(), finished, "{st} {pending}");
        }
    }

    #[test]
    fn only_completed_exits_zero() {
        let mut s = documented();
        assert_eq!(s.exit_code(), 0);
        for st in ["PARTIAL", "FAILED", "CANCELLED"] {
            s.status = st.into();
            assert_eq!(s.exit_code(), EXIT_UNSUCCESSFUL, "{st}");
        }
    }

    #[test]
    fn the_summary_is_one_line_with_the_counters() {
        let mut s = documented();
        assert_eq!(
            s.summary(),
            "Bulk send a3f2b8c9 COMPLETED: 3 of 3 sent (2 delivered, 1 read), 0 failed."
        );
        s.status = "CANCELLED".into();
        s.sent_count = 1;
        s.cancelled_count = 2;
        assert_eq!(
            s.summary(),
            "Bulk send a3f2b8c9 CANCELLED: 1 of 3 sent (2 delivered, 1 read), 0 failed, 2 cancelled."
        );
    }

    #[test]
    fn the_position_is_total_minus_pending() {
        let mut s = documented();
        s.total_recipients = 10;
        s.pending_count = 4;
        assert_eq!(s.done(), 6);
        s.pending_count = 11;
        assert_eq!(s.done(), 0);
    }

    #[test]
    fn the_progress_message_shows_state_counts_and_eta() {
        let mut s = documented();
        s.status = "PROCESSING".into();
        s.pending_count = 1;
        assert_eq!(
            s.progress_message(Some(&Outlook::Eta(Duration::from_secs(75)))),
            "PROCESSING · sent 3 · delivered 2 · read 1 · failed 0 · ETA 1m 15s"
        );
        assert_eq!(
            s.progress_message(None),
            "PROCESSING · sent 3 · delivered 2 · read 1 · failed 0"
        );
        s.paused = true;
        s.pause_reason = Some("quality_red".into());
        assert_eq!(
            s.progress_message(Some(&Outlook::Eta(Duration::from_secs(5)))),
            "PAUSED (quality_red) · sent 3 · delivered 2 · read 1 · failed 0"
        );
        s.paused = false;
        s.status = "QUEUED".into();
        s.scheduled_at = Some("2026-01-02T00:00:00Z".into());
        assert!(s
            .progress_line(None)
            .starts_with("2/3 (100.0%) QUEUED until 2026-01-02T00:00:00Z · sent"));
    }

    #[test]
    fn the_description_is_readable() {
        let text = documented().describe();
        assert_eq!(
            text,
            "Bulk send a3f2b8c9: COMPLETED\n\
             template:  welcome_message (es) from +54 9 223 675-0780 (Mindo Software)\n\
             progress:  100.0% (3 of 3 done, 0 pending)\n\
             messages:  sent 3 · delivered 2 · read 1 · failed 0\n\
             times:     created 2025-11-16T21:30:00Z, started 2025-11-16T21:30:05Z, completed 2025-11-16T21:30:28Z"
        );
    }

    fn running(created_at: &str, minutes: f64, total: u64, pending: u64) -> SendStatus {
        let mut s = documented();
        s.status = "PROCESSING".into();
        s.created_at = Some(created_at.into());
        s.estimated_time_minutes = Some(minutes);
        s.total_recipients = total;
        s.pending_count = pending;
        s
    }

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn the_eta_is_the_servers_estimate_whatever_the_bar_does() {
        // 1.5 min from creation; 30 s later 60 s are left, however fast the first ones went.
        let s = running("2026-01-01T10:00:00Z", 1.5, 400, 100);
        assert_eq!(
            s.outlook(None, at("2026-01-01T10:00:30Z")),
            Some(Outlook::Eta(Duration::from_secs(60)))
        );
        // Past the estimate: nothing left by it, never a negative time, and said so.
        let late = s.outlook(None, at("2026-01-01T10:05:00Z"));
        assert_eq!(late, Some(Outlook::Eta(Duration::ZERO)));
        assert!(s
            .progress_message(late.as_ref())
            .ends_with(" · past the estimated time"));
        // A scheduled send counts from its schedule.
        let mut later = s.clone();
        later.scheduled_at = Some("2026-01-01T12:00:00Z".into());
        assert_eq!(
            later.outlook(None, at("2026-01-01T11:00:00Z")),
            Some(Outlook::Eta(Duration::from_secs(3_690)))
        );
        // No estimate, paused or finished: nothing is claimed.
        let mut none = s.clone();
        none.estimated_time_minutes = None;
        assert_eq!(none.outlook(None, at("2026-01-01T10:00:30Z")), None);
        let mut paused = s.clone();
        paused.paused = true;
        assert_eq!(paused.outlook(None, at("2026-01-01T10:00:30Z")), None);
    }

    #[test]
    fn a_send_beyond_the_quota_says_it_waits_for_the_window() {
        // TIER_250, 400 recipients: 250 fit, 150 wait a day (the server says 1 440 min).
        let mut s = running("2026-01-01T10:00:00Z", 1_440.0, 400, 300);
        let now = at("2026-01-01T10:00:02Z");
        assert_eq!(
            s.outlook(Some(250), now),
            Some(Outlook::Eta(Duration::from_secs(86_398))),
            "those that fit are still going out"
        );
        s.pending_count = 150;
        let outlook = s.outlook(Some(250), now);
        assert_eq!(
            outlook,
            Some(Outlook::QuotaUntil(at("2026-01-02T10:00:00Z")))
        );
        assert_eq!(
            s.progress_message(outlook.as_ref()),
            "PROCESSING · sent 3 · delivered 2 · read 1 · failed 0 · waiting for the 24 h quota until 10:00 UTC"
        );
    }

    #[test]
    fn durations_are_short() {
        assert_eq!(format_duration(Duration::from_millis(400)), "0s");
        assert_eq!(format_duration(Duration::from_millis(41_600)), "42s");
        assert_eq!(format_duration(Duration::from_secs(185)), "3m 05s");
        assert_eq!(format_duration(Duration::from_secs(7620)), "2h 07m");
    }
}
