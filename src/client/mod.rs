//! The client commands: `mindo-bulk send` (a CSV of recipients → a bulk send, followed to its
//! end) and `mindo-bulk status ID [--watch]`. They talk to a running daemon over its HTTP API
//! like any other client; they never open the database.
//!
//! # Layout
//! - [`recipients`] — CSV → recipients, with local validation and line numbers (pure).
//! - [`request`] — the send-bulk body, its `Idempotency-Key` (SHA-256 of the body), and server
//!   error bodies turned into one line naming CSV lines (pure).
//! - [`progress`] — the status object: finished or not, exit status, summary, ETA, and the live
//!   view (an `indicatif` bar on a terminal, plain lines otherwise).
//! - [`api`] — the HTTP calls over `awc`, with retries.
//!
//! # Behaviour worth knowing
//! - A submission's `Idempotency-Key` is derived from the request body, so re-running the same
//!   command (or a retry after a lost answer) within the daemon's 24 h window follows the
//!   original send instead of creating a second one. `--idempotency-key` overrides it (e.g. to
//!   send the same file again on purpose).
//! - Connection failures, 5xx, 429 and 409 `idempotency_in_progress` are retried 4 times
//!   (0.5, 1, 2, 4 s apart); anything else is reported at once.
//! - Exit status: 0 when the send finished `COMPLETED`, [`progress::EXIT_UNSUCCESSFUL`] (2)
//!   when it finished `PARTIAL`, `FAILED` or `CANCELLED`, 130 when watching was interrupted
//!   (Ctrl-C stops watching, never the send), 1 for any error. `status` without `--watch`
//!   exits 0 whatever the send's state. The outcome is the state when the send finished: a
//!   failure Meta reports later by webhook can still turn `COMPLETED` into `PARTIAL`.
//! - Duplicate phones (after normalisation) are left to the daemon, which keeps the first.
//! - `--url` (default `http://127.0.0.1:8080`, env `MINDO_URL`) and `--api-key` (env
//!   `MINDO_API_KEY`) say where and who; these commands do not read `--config`.
//! - Output: results on stdout (JSON with `--json`), progress on stderr: a live bar on a
//!   terminal, else a plain line every 10 s and on state changes; nothing with `--json`.

pub mod api;
pub mod progress;
pub mod recipients;
pub mod request;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use serde_json::Value;

use self::api::{ApiClient, ClientError};
use self::progress::{ProgressView, SendStatus};
use self::recipients::RecipientsCsv;
use self::request::SendBulkBody;

/// How often a watched send's status is read.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Exit status when watching is interrupted (128 + SIGINT).
const EXIT_INTERRUPTED: i32 = 130;

/// A failure with an exit status of its own (not 1): a send that finished `PARTIAL`, `FAILED`
/// or `CANCELLED`, or an interrupted watch. `main` prints the message as the one-line error and
/// exits with `code`; with `--json` it adds the JSON error on stdout only when no result was
/// printed there (`result_printed`).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Unsuccessful {
    pub code: i32,
    pub message: String,
    pub result_printed: bool,
}

/// Where the daemon is and who is asking.
#[derive(Debug, Clone)]
pub struct Target {
    /// The daemon's base URL (`--url`, `MINDO_URL`).
    pub url: String,
    /// `--api-key`, `MINDO_API_KEY`.
    pub api_key: Option<String>,
}

impl Target {
    fn client(&self) -> anyhow::Result<ApiClient> {
        let base = api::base_url(&self.url).map_err(|e| anyhow!(e))?;
        let key = self
            .api_key
            .as_deref()
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| anyhow!("no API key: pass --api-key or set MINDO_API_KEY"))?;
        Ok(ApiClient::new(base, key.to_owned()))
    }
}

/// What `mindo-bulk send` submits.
#[derive(Debug, Clone)]
pub struct SendOptions {
    pub phone_number_id: String,
    pub template: String,
    pub language: String,
    pub csv: PathBuf,
    /// Print the 202 answer and return without watching.
    pub no_wait: bool,
    /// Replaces the key derived from the body.
    pub idempotency_key: Option<String>,
}

/// `mindo-bulk send`: read and check the CSV, submit it, follow the send to its end.
pub fn send(json: bool, target: &Target, options: &SendOptions) -> anyhow::Result<()> {
    let csv = recipients::read_file(&options.csv)
        .map_err(|e| anyhow!("{}: {e}", options.csv.display()))?;
    let body = SendBulkBody {
        phone_number_id: &options.phone_number_id,
        template_name: &options.template,
        language: &options.language,
        recipients: &csv.recipients,
    }
    .to_bytes();
    let key = options
        .idempotency_key
        .clone()
        .unwrap_or_else(|| request::idempotency_key(&body));
    actix_web::rt::System::new().block_on(async move {
        let client = target.client()?;
        let created = client
            .submit(body.into(), &key)
            .await
            .map_err(|e| submit_error(e, &csv))?;
        let id = created
            .get("bulk_send_id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("the daemon's answer has no bulk_send_id: {created}"))?
            .to_owned();
        if options.no_wait {
            if json {
                println!("{created}");
            } else {
                println!("{}", describe_created(&id, &created));
            }
            return Ok(());
        }
        if !json {
            eprintln!(
                "{} Ctrl-C stops watching, not the send: `mindo-bulk status {id} --watch` follows it again.",
                describe_created(&id, &created)
            );
        }
        follow(json, &client, &id, fitting_quota(&created)).await
    })
}

/// `mindo-bulk status ID [--watch]`.
pub fn status(json: bool, target: &Target, id: &str, watch: bool) -> anyhow::Result<()> {
    let id = uuid::Uuid::parse_str(id.trim())
        .map_err(|_| anyhow!("{id:?} is not a bulk send id (a UUID such as a3f2b8c9-4d5e-6f7a-8b9c-0d1e2f3a4b5c)"))?
        .to_string();
    actix_web::rt::System::new().block_on(async move {
        let client = target.client()?;
        if watch {
            return follow(json, &client, &id, None).await;
        }
        let (raw, status) = client.status(&id).await?;
        if json {
            println!("{raw}");
        } else {
            println!("{}", status.describe());
        }
        Ok(())
    })
}

/// Watches until the send finishes (or Ctrl-C), then prints the outcome.
async fn follow(
    json: bool,
    client: &ApiClient,
    id: &str,
    fitting: Option<u64>,
) -> anyhow::Result<()> {
    let mut view = ProgressView::new(json);
    let outcome = tokio::select! {
        outcome = watch(client, id, &mut view, fitting) => outcome,
        _ = tokio::signal::ctrl_c() => {
            view.finish();
            return Err(Unsuccessful {
                code: EXIT_INTERRUPTED,
                message: format!("stopped watching; bulk send {id} goes on (`mindo-bulk status {id} --watch` follows it again)"),
                result_printed: false,
            }
            .into());
        }
    };
    view.finish();
    let (raw, status) = outcome?;
    if json {
        println!("{raw}");
    } else {
        println!("{}", status.summary());
    }
    match status.exit_code() {
        0 => Ok(()),
        code => Err(Unsuccessful {
            code,
            message: format!("bulk send {id} finished {}, not COMPLETED", status.status),
            result_printed: true,
        }
        .into()),
    }
}

/// Polls the status every [`POLL_INTERVAL`] until the send is finished.
/// `fitting`: when the create answer said the send does not fit the 24 h quota, how many of
/// its recipients did (see [`SendStatus::outlook`]).
async fn watch(
    client: &ApiClient,
    id: &str,
    view: &mut ProgressView,
    fitting: Option<u64>,
) -> Result<(Value, SendStatus), ClientError> {
    loop {
        let (raw, status) = client.status(id).await?;
        view.update(
            &status,
            status.outlook(fitting, chrono::Utc::now()).as_ref(),
        );
        if status.is_finished() {
            return Ok((raw, status));
        }
        actix_web::rt::time::sleep(POLL_INTERVAL).await;
    }
}

/// How many recipients fitted the 24 h quota when the send was created, if not all did.
fn fitting_quota(created: &Value) -> Option<u64> {
    let quota = &created["quota_info"];
    if quota["can_send"].as_bool() != Some(false) {
        return None;
    }
    quota["quota_available"].as_u64()
}

/// A refused submission: the server's detail, its per-recipient errors on their CSV lines.
fn submit_error(err: ClientError, csv: &RecipientsCsv) -> anyhow::Error {
    match err {
        ClientError::Server(server) => anyhow!(
            "the daemon refused the send: {}",
            server.describe(Some(csv))
        ),
        other => other.into(),
    }
}

/// `Bulk send ID queued: 3 recipients (3 unique), template T, estimated 0.4 min.` plus the
/// quota and schedule when they matter.
fn describe_created(id: &str, created: &Value) -> String {
    let n = |key: &str| created.get(key).and_then(Value::as_u64).unwrap_or(0);
    let mut out = format!(
        "Bulk send {id} queued: {} recipients ({} unique), template {}, estimated {} min.",
        n("total_recipients"),
        n("unique_recipients"),
        created
            .get("template_name")
            .and_then(Value::as_str)
            .unwrap_or("?"),
        created
            .get("estimated_time_minutes")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
    );
    if let Some(at) = created.get("scheduled_at").and_then(Value::as_str) {
        out.push_str(&format!(" Scheduled for {at}."));
    }
    let quota = &created["quota_info"];
    if quota.get("can_send").and_then(Value::as_bool) == Some(false) {
        out.push_str(&format!(
            " Quota: {} needed, {} available; the rest waits for the 24 h window to free up.",
            quota["quota_needed"], quota["quota_available"]
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_created_answer_reads_well() {
        let created = json!({
            "bulk_send_id": "a3f2", "status": "queued", "template_name": "welcome_message",
            "total_recipients": 3, "unique_recipients": 2, "estimated_time_minutes": 0.4,
            "quota_info": {"can_send": true, "quota_needed": 2, "quota_available": 997},
            "scheduled_at": null,
        });
        assert_eq!(
            describe_created("a3f2", &created),
            "Bulk send a3f2 queued: 3 recipients (2 unique), template welcome_message, estimated 0.4 min."
        );
        let mut later = created.clone();
        later["scheduled_at"] = json!("2026-01-02T00:00:00Z");
        later["quota_info"] =
            json!({"can_send": false, "quota_needed": 300, "quota_available": 250});
        assert_eq!(
            describe_created("a3f2", &later),
            "Bulk send a3f2 queued: 3 recipients (2 unique), template welcome_message, estimated 0.4 min. \
             Scheduled for 2026-01-02T00:00:00Z. Quota: 300 needed, 250 available; the rest waits for the 24 h window to free up."
        );
    }
}
