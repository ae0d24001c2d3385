//! `mindo-bulk serve --sandbox`, as the README's quick start runs it.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// Kills the daemon when the test ends, whatever happens.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[actix_web::test]
async fn the_sandbox_serves_a_working_demo() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
        .args(["serve", "--sandbox", "--json"])
        .env("MINDO_BIND", "127.0.0.1:0")
        .env(
            "MINDO_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("sandbox.db").display()),
        )
        .env("MINDO_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _daemon = Daemon(child);
    let line = actix_web::rt::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let info: Value = serde_json::from_str(&line).expect("the sandbox prints its details as JSON");
    let key = info["api_key"].as_str().unwrap();
    assert_eq!(info["numbers"].as_array().unwrap().len(), 3);
    let curl = info["curl"].as_str().unwrap();
    let base = curl
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .trim_end_matches("/api/v1/meta-templates/send-bulk/")
        .to_owned();
    // The dashboard is printed, and served there.
    assert_eq!(info["dashboard_url"], format!("{base}/"));
    let page = reqwest::get(format!("{base}/")).await.unwrap();
    assert_eq!(page.status(), 200);

    let client = reqwest::Client::new();
    let accounts: Value = client
        .get(format!("{base}/api/v1/business-accounts/"))
        .header("X-API-Key", key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(accounts["companyName"], "Sandbox demo");
    assert_eq!(accounts["businessAccounts"].as_array().unwrap().len(), 3);

    let res = client
        .post(format!("{base}/api/v1/meta-templates/send-bulk/"))
        .header("X-API-Key", key)
        .json(&json!({
            "phone_number_id": "106540352240002", "template_name": "welcome_message",
            "language": "es",
            "recipients": [{"phone": "+54 9 11 1234-5678", "variables": {"customer_name": "Ana"}}],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["bulk_send_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status: Value = client
            .get(format!("{base}/api/v1/meta-templates/bulk-sends/{id}/"))
            .header("X-API-Key", key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["status"] == "COMPLETED" && status["delivered_count"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status:#}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}
