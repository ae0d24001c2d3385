//! The daemon's HTTP API as the client commands use it: submit a send, read its status.
//! Thin over `awc` (it needs an actix `System`); transient failures are retried with backoff.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;

use super::progress::SendStatus;
use super::request::ServerError;

/// Attempts per request (the first try and the retries).
const ATTEMPTS: u32 = 5;
/// Wait before the first retry; doubled for each next one (0.5, 1, 2, 4 s).
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Submitting validates and stores up to 100 000 recipients in one go: give it time.
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(300);
const STATUS_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Why a request did not give an answer the caller can use.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the daemon at {url}: {reason} (is `mindo-bulk serve` running there? see --url / MINDO_URL)")]
    Unreachable { url: String, reason: String },
    /// The daemon refused: its documented error body.
    #[error("{}", .0.describe(None))]
    Server(ServerError),
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse { url: String, reason: String },
}

/// One try's outcome before the retry decision.
enum Try {
    Answer(u16, Bytes),
    Transport(String),
}

/// Whether an answer is worth another try: the daemon restarting or overloaded (5xx, 429),
/// or the same submission still being processed (409 `idempotency_in_progress`).
pub fn is_transient(status: u16, body: &[u8]) -> bool {
    if status >= 500 || status == 429 {
        return true;
    }
    status == 409
        && serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("code").and_then(Value::as_str).map(str::to_owned))
            .as_deref()
            == Some("idempotency_in_progress")
}

/// The wait before retry number `retry` (0-based).
pub fn backoff(retry: u32) -> Duration {
    FIRST_BACKOFF * 2u32.saturating_pow(retry.min(10))
}

/// Checks `--url`: an absolute http(s) URL; returns it without a trailing `/`.
pub fn base_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("--url {url:?} is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!(
            "--url must be an http:// or https:// URL of the daemon, got {url:?}"
        ));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The daemon at `base` with one tenant's API key.
pub struct ApiClient {
    base: String,
    api_key: String,
    http: awc::Client,
}

impl ApiClient {
    /// `base` as checked by [`base_url`]. Must be called inside an actix `System`.
    pub fn new(base: String, api_key: String) -> ApiClient {
        let http = awc::Client::builder()
            .disable_timeout()
            .add_default_header((
                "User-Agent",
                concat!("mindo-bulk/", env!("CARGO_PKG_VERSION")),
            ))
            .finish();
        ApiClient {
            base,
            api_key,
            http,
        }
    }

    /// `POST /api/v1/meta-templates/send-bulk/` with `Idempotency-Key`; the 202 (or, for a
    /// replayed key, the original) body.
    pub async fn submit(&self, body: Bytes, idempotency_key: &str) -> Result<Value, ClientError> {
        let url = format!("{}/api/v1/meta-templates/send-bulk/", self.base);
        let (status, bytes) = self
            .with_retries(&url, || {
                let request = self
                    .http
                    .post(&url)
                    .timeout(SUBMIT_TIMEOUT)
                    .insert_header(("X-API-Key", self.api_key.as_str()))
                    .insert_header(("Idempotency-Key", idempotency_key))
                    .content_type("application/json");
                let body = body.clone();
                async move { read(request.send_body(body).await).await }
            })
            .await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Server(ServerError::from_response(
                status, &bytes,
            )));
        }
        json_object(&url, &bytes)
    }

    /// `GET /api/v1/meta-templates/bulk-sends/{id}/`: the raw object and its typed view.
    pub async fn status(&self, id: &str) -> Result<(Value, SendStatus), ClientError> {
        let url = format!("{}/api/v1/meta-templates/bulk-sends/{id}/", self.base);
        let (status, bytes) = self
            .with_retries(&url, || {
                let request = self
                    .http
                    .get(&url)
                    .timeout(STATUS_TIMEOUT)
                    .insert_header(("X-API-Key", self.api_key.as_str()));
                async move { read(request.send().await).await }
            })
            .await?;
        if status != 200 {
            return Err(ClientError::Server(ServerError::from_response(
                status, &bytes,
            )));
        }
        let raw = json_object(&url, &bytes)?;
        let typed = serde_json::from_value(raw.clone()).map_err(|e| ClientError::BadResponse {
            url: url.clone(),
            reason: format!("not a bulk send status object: {e}"),
        })?;
        Ok((raw, typed))
    }

    /// Runs `attempt` until it gives a non-transient answer or [`ATTEMPTS`] are spent.
    async fn with_retries<F, Fut>(
        &self,
        url: &str,
        mut attempt: F,
    ) -> Result<(u16, Bytes), ClientError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Try>,
    {
        let mut retry = 0;
        loop {
            let outcome = attempt().await;
            let last = retry + 1 >= ATTEMPTS;
            match outcome {
                Try::Answer(status, body) if last || !is_transient(status, &body) => {
                    return Ok((status, body))
                }
                Try::Transport(reason) if last => {
                    return Err(ClientError::Unreachable {
                        url: url.to_owned(),
                        reason,
                    })
                }
                Try::Answer(status, _) => {
                    tracing::debug!(status, retry, "Transient answer; retrying.");
                }
                Try::Transport(reason) => {
                    tracing::debug!(%reason, retry, "Request failed; retrying.");
                }
            }
            actix_web::rt::time::sleep(backoff(retry)).await;
            retry += 1;
        }
    }
}

/// Reads a whole response (status and body), or says why there is none.
async fn read<S>(response: Result<awc::ClientResponse<S>, awc::error::SendRequestError>) -> Try
where
    S: futures_util::Stream<Item = Result<Bytes, awc::error::PayloadError>> + Unpin,
{
    let mut response = match response {
        Ok(response) => response,
        Err(err) => return Try::Transport(err.to_string()),
    };
    let status = response.status().as_u16();
    match response.body().limit(MAX_RESPONSE_BYTES).await {
        Ok(body) => Try::Answer(status, body),
        Err(err) => Try::Transport(format!("reading the response: {err}")),
    }
}

fn json_object(url: &str, bytes: &[u8]) -> Result<Value, ClientError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if value.is_object() => Ok(value),
        Ok(_) => Err(ClientError::BadResponse {
            url: url.to_owned(),
            reason: "the body is not a JSON object".into(),
        }),
        Err(e) => Err(ClientError::BadResponse {
            url: url.to_owned(),
            reason: format!("the body is not JSON: {e}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_answers_are_retried_and_others_are_not() {
        let in_progress = br#"{"detail": "still processing", "code": "idempotency_in_progress"}"#;
        let reused = br#"{"detail": "other body", "code": "idempotency_key_reused"}"#;
        assert!(is_transient(500, b""));
        assert!(is_transient(502, b"<html>"));
        assert!(is_transient(503, b"{}"));
        assert!(is_transient(429, b"{}"));
        assert!(is_transient(409, in_progress));
        assert!(!is_transient(409, b"{}"));
        assert!(!is_transient(422, reused));
        assert!(!is_transient(400, b"{}"));
        assert!(!is_transient(401, b"{}"));
        assert!(!is_transient(404, b"{}"));
        assert!(!is_transient(202, b"{}"));
    }

    #[test]
    fn backoff_doubles() {
        let waits: Vec<u128> = (0..4).map(|r| backoff(r).as_millis()).collect();
        assert_eq!(waits, vec![500, 1000, 2000, 4000]);
        assert!(backoff(u32::MAX) <= Duration::from_secs(600));
    }

    #[test]
    fn the_url_must_be_http() {
        assert_eq!(
            base_url("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            base_url("https://mindo.example.com/prefix").unwrap(),
            "https://mindo.example.com/prefix"
        );
        assert!(base_url("127.0.0.1:8080").is_err());
        assert!(base_url("ftp://host").is_err());
        assert!(base_url("not a url").is_err());
    }
}
