//! Running under systemd: the notify protocol (against a fake `NOTIFY_SOCKET`) and the drain
//! on SIGTERM.

use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads notify datagrams until one contains `want` (or panics after 20 s).
fn expect_notify(socket: &UnixDatagram, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut buf = [0u8; 1024];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.lines().any(|l| l == want) {
                return text;
            }
        }
    }
    panic!("no {want} from the daemon");
}

#[actix_web::test]
async fn notify_ready_watchdog_and_a_clean_drain_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let db_path = dir.path().join("sandbox.db");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
        .args(["serve", "--sandbox", "--json"])
        .env("MINDO_BIND", "127.0.0.1:0")
        .env(
            "MINDO_DATABASE_URL",
            format!("sqlite://{}", db_path.display()),
        )
        .env("MINDO_LOG", "warn")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stdout = child.stdout.take().unwrap();
    let mut daemon = Daemon(child);
    let (socket, ready) = actix_web::rt::task::spawn_blocking(move || {
        let ready = expect_notify(&socket, "READY=1");
        expect_notify(&socket, "WATCHDOG=1");
        (socket, ready)
    })
    .await
    .unwrap();
    assert!(ready.contains("READY=1"));

    let line = actix_web::rt::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let info: Value = serde_json::from_str(&line).unwrap();
    let key = info["api_key"].as_str().unwrap().to_owned();
    let base = info["curl"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .trim_end_matches("/api/v1/meta-templates/send-bulk/")
        .to_owned();

    // A send that takes a few seconds at 80 mps, stopped in the middle.
    let recipients: Vec<Value> = (0..400)
        .map(|i| json!({"phone": format!("+54911{:08}", 40_000_000 + i), "variables": {"customer_name": "Ana"}}))
        .collect();
    let client = reqwest::Client::new();
    let res = client
        .post(format!("{base}/api/v1/meta-templates/send-bulk/"))
        .header("X-API-Key", &key)
        .json(
            &json!({"phone_number_id": "106540352240002", "template_name": "welcome_message",
                      "language": "es", "recipients": recipients}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.unwrap()["bulk_send_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s: Value = client
            .get(format!("{base}/api/v1/meta-templates/bulk-sends/{id}/"))
            .header("X-API-Key", &key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["sent_count"].as_u64().unwrap() >= 50 {
            break;
        }
        assert!(Instant::now() < deadline, "{s:#}");
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = actix_web::rt::task::spawn_blocking(move || {
        let stopping = expect_notify(&socket, "STOPPING=1");
        // A clean stop is bounded (Graph timeout + 5 s, then the HTTP shutdown timeout).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut buf = [0u8; 1024];
        let exit = loop {
            if let Some(status) = daemon.0.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "the daemon did not stop after SIGTERM"
            );
            // Keep reading, as systemd does: a full notify queue would block the daemon.
            let _ = socket.recv(&mut buf);
        };
        (stopping, exit)
    })
    .await
    .unwrap();
    assert!(exit.1.success(), "a clean stop exits 0: {:?}", exit.1);

    // Nothing was left in flight, and the rest is still to be sent.
    let db =
        mindo_bulk::storage::Db::connect_for_command(&format!("sqlite://{}", db_path.display()))
            .unwrap();
    let mut conn = db.get().unwrap();
    let dispatching = mindo_bulk::storage::sends::dispatching_messages(&mut conn, &id).unwrap();
    assert!(
        dispatching.is_empty(),
        "{} messages left dispatching",
        dispatching.len()
    );
    let send = mindo_bulk::storage::sends::load_send(&mut conn, &id)
        .unwrap()
        .unwrap();
    assert!(send.pending_count > 0, "stopped mid-send");
    assert_eq!(
        send.pending_count
            + send.sent_count
            + send.delivered_count
            + send.read_count
            + send.failed_count,
        400
    );
}
