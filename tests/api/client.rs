//! The client commands, `mindo-bulk send` and `mindo-bulk status`, run as the real binary
//! against a daemon talking to the simulator. The binary runs on the blocking pool so the
//! in-process daemon keeps serving meanwhile.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::meta::{phones, spawn_with_meta, MetaApp, NUMBER_10K};

/// Runs `mindo-bulk` with `args` and extra environment; returns (status, stdout, stderr).
async fn mindo(args: Vec<String>, env: Vec<(&'static str, String)>) -> (i32, String, String) {
    actix_web::rt::task::spawn_blocking(move || {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
            .args(&args)
            .env_remove("MINDO_URL")
            .env_remove("MINDO_API_KEY")
            .env_remove("MINDO_CONFIG")
            .envs(env)
            .output()
            .expect("the binary runs");
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .expect("the blocking task runs")
}

/// A CSV file in a temporary directory (kept alive by the returned guard).
fn csv_file(content: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recipients.csv");
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

/// `n` welcome_message recipients, starting at phone `from`.
fn welcome_csv(from: u32, n: u32) -> String {
    let mut csv = String::from("phone,customer_name\n");
    for (i, phone) in phones(from, n).into_iter().enumerate() {
        csv.push_str(&format!("{phone},Cliente {i}\n"));
    }
    csv
}

fn send_args(meta: &MetaApp, template: &str, csv: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "send",
        "--url",
        &meta.app.address,
        "--api-key",
        &meta.api_key,
        "--phone-number-id",
        NUMBER_10K,
        "--template",
        template,
        "--csv",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.push(csv.display().to_string());
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

async fn send_count(meta: &MetaApp) -> i64 {
    let res = meta
        .app
        .get("/api/v1/meta-templates/bulk-sends/", Some(&meta.api_key))
        .await;
    let body: Value = res.json().await.unwrap();
    body["count"].as_i64().expect("count")
}

fn one_line(stderr: &str) -> &str {
    let trimmed = stderr.trim_end();
    assert_eq!(trimmed.lines().count(), 1, "one line expected: {stderr}");
    trimmed
}

#[actix_web::test]
async fn send_follows_a_csv_to_completed_and_prints_the_final_status() {
    let meta = spawn_with_meta().await;
    let (_dir, csv) = csv_file(&welcome_csv(0, 5));
    let (code, out, err) = mindo(
        send_args(&meta, "welcome_message", &csv, &["--json"]),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(err.is_empty(), "--json shows no progress: {err}");
    let status: Value = serde_json::from_str(out.trim()).expect("stdout is one JSON object");
    assert_eq!(status["status"], "COMPLETED", "{status:#}");
    assert_eq!(status["total_recipients"], 5);
    assert_eq!(status["sent_count"], 5);
    assert_eq!(status["failed_count"], 0);
    assert_eq!(status["pending_count"], 0);
    assert_eq!(status["progress_percentage"], 100.0);
    assert_eq!(status["template"]["template_name"], "welcome_message");
    // What Meta received: the CSV's variables.
    let id = status["id"].as_str().unwrap();
    let messages: Value = meta
        .app
        .get(
            &format!("/api/v1/meta-templates/bulk-sends/{id}/messages/"),
            Some(&meta.api_key),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        messages["results"][0]["variables_used"]["customer_name"],
        "Cliente 0"
    );
    assert_eq!(messages["results"][0]["recipient_phone"], phones(0, 1)[0]);
}

#[actix_web::test]
async fn running_the_same_command_twice_creates_one_send() {
    let meta = spawn_with_meta().await;
    let (_dir, csv) = csv_file(&welcome_csv(0, 3));
    let args = send_args(&meta, "welcome_message", &csv, &["--json"]);
    let (code, first, err) = mindo(args.clone(), vec![]).await;
    assert_eq!(code, 0, "{err}");
    let (code, second, err) = mindo(args, vec![]).await;
    assert_eq!(code, 0, "{err}");
    let first: Value = serde_json::from_str(&first).unwrap();
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_eq!(first["id"], second["id"]);
    assert_eq!(send_count(&meta).await, 1);
    assert_eq!(meta.stats().accepted_total, 3, "nothing was sent twice");

    // Another key on purpose: a second send.
    let (code, _, err) = mindo(
        send_args(
            &meta,
            "welcome_message",
            &csv,
            &["--json", "--no-wait", "--idempotency-key", "again-1"],
        ),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(send_count(&meta).await, 2);
}

#[actix_web::test]
async fn no_wait_prints_the_accepted_answer() {
    let meta = spawn_with_meta().await;
    let (_dir, csv) = csv_file(&welcome_csv(0, 2));
    let (code, out, err) = mindo(
        send_args(&meta, "welcome_message", &csv, &["--json", "--no-wait"]),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(created["status"], "queued");
    assert_eq!(created["total_recipients"], 2);
    assert!(created["bulk_send_id"].is_string());

    // Without --json: one readable line.
    let (_dir, csv) = csv_file(&welcome_csv(10, 2));
    let (code, out, err) = mindo(
        send_args(&meta, "welcome_message", &csv, &["--no-wait"]),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Bulk send ") && out.contains("queued: 2 recipients (2 unique)"),
        "{out}"
    );
}

#[actix_web::test]
async fn without_json_the_outcome_is_a_summary_line_and_progress_goes_to_stderr() {
    let meta = spawn_with_meta().await;
    let (_dir, csv) = csv_file(&welcome_csv(0, 3));
    let (code, out, err) = mindo(send_args(&meta, "welcome_message", &csv, &[]), vec![]).await;
    assert_eq!(code, 0, "{err}");
    let out = out.trim_end();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains("COMPLETED: 3 of 3 sent"), "{out}");
    // No terminal here: plain progress lines, ending with the finished state.
    assert!(err.contains("queued: 3 recipients"), "{err}");
    assert!(err.contains("3/3 (100.0%) COMPLETED"), "{err}");
}

#[actix_web::test]
async fn a_partial_send_exits_with_2() {
    let meta = spawn_with_meta().await;
    // The sending number itself: Meta refuses it (131021), so that message fails.
    let csv_text = format!(
        "phone,customer_name\n{},Ana\n+12025550102,Yo\n",
        phones(0, 1)[0]
    );
    let (_dir, csv) = csv_file(&csv_text);
    let (code, out, err) = mindo(
        send_args(&meta, "welcome_message", &csv, &["--json"]),
        vec![],
    )
    .await;
    assert_eq!(code, 2, "stdout: {out}\nstderr: {err}");
    let status: Value = serde_json::from_str(&out).expect("the final status, no error JSON");
    assert_eq!(status["status"], "PARTIAL");
    assert_eq!(status["failed_count"], 1);
    assert!(one_line(&err).contains("finished PARTIAL"), "{err}");
}

#[actix_web::test]
async fn a_bad_csv_fails_with_its_line_and_sends_nothing() {
    let meta = spawn_with_meta().await;
    let cases = [
        (
            "phone,customer_name\n+5491130000001,Ana\n+5491130000002,Juan,extra\n",
            "line 3: 3 fields, but the header row has 2",
        ),
        (
            "telefono,customer_name\n+5491130000001,Ana\n",
            "line 1: the header row has no `phone` column",
        ),
        (
            "phone,customer_name\n+5491130000001,Ana\n,Juan\n",
            "line 3: phone is empty",
        ),
        ("", "the file is empty"),
    ];
    for (content, expected) in cases {
        let (_dir, csv) = csv_file(content);
        let (code, out, err) = mindo(send_args(&meta, "welcome_message", &csv, &[]), vec![]).await;
        assert_eq!(code, 1, "{content:?}: {out} {err}");
        let line = one_line(&err);
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains("recipients.csv: "), "{line}");
        assert!(line.contains(expected), "{content:?}: {line}");
    }
    // With --json the error is JSON on stdout too.
    let (_dir, csv) = csv_file("phone\n+12\n");
    let (code, out, _) = mindo(
        send_args(&meta, "welcome_message", &csv, &["--json"]),
        vec![],
    )
    .await;
    assert_eq!(code, 1);
    let error: Value = serde_json::from_str(&out).unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("line 2: phone \"+12\""),
        "{error}"
    );
    assert_eq!(send_count(&meta).await, 0);
}

#[actix_web::test]
async fn server_validation_errors_are_clear() {
    let meta = spawn_with_meta().await;
    let (_dir, csv) = csv_file(&welcome_csv(0, 2));
    let (code, _, err) = mindo(send_args(&meta, "nope", &csv, &[]), vec![]).await;
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(
        line.contains("template_not_found") && line.contains("template nope does not exist"),
        "{line}"
    );

    // A missing variable (an empty cell) is reported on its CSV line.
    let csv_text = format!(
        "phone,customer_name\n{},Ana\n\n{},\n",
        phones(0, 1)[0],
        phones(1, 1)[0]
    );
    let (_dir, csv) = csv_file(&csv_text);
    let (code, _, err) = mindo(send_args(&meta, "welcome_message", &csv, &[]), vec![]).await;
    assert_eq!(code, 1);
    let line = one_line(&err);
    assert!(line.contains("invalid_recipients"), "{line}");
    assert!(line.contains("line 4: variables.customer_name"), "{line}");

    // A wrong key.
    let mut args = send_args(&meta, "welcome_message", &csv, &[]);
    let key_at = args.iter().position(|a| a == "--api-key").unwrap() + 1;
    args[key_at] = "mindo_000000000000000000000000".into();
    let (code, _, err) = mindo(args, vec![]).await;
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("invalid_api_key"), "{err}");
    assert_eq!(send_count(&meta).await, 0);
}

#[actix_web::test]
async fn buttons_come_from_button_columns() {
    let meta = spawn_with_meta().await;
    let p = phones(0, 2);
    let csv_text = format!(
        "phone,1,2,button_0\n{},A-1,en camino,A-1\n{},B-2,entregado,B-2\n",
        p[0], p[1]
    );
    let (_dir, csv) = csv_file(&csv_text);
    let (code, out, err) = mindo(send_args(&meta, "order_update", &csv, &["--json"]), vec![]).await;
    assert_eq!(code, 0, "{out} {err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["status"], "COMPLETED");
    assert_eq!(status["sent_count"], 2);
}

#[actix_web::test]
async fn status_prints_and_watches_a_send() {
    let meta = spawn_with_meta().await;
    let (_dir, csv) = csv_file(&welcome_csv(0, 3));
    let (code, out, err) = mindo(
        send_args(&meta, "welcome_message", &csv, &["--json", "--no-wait"]),
        vec![],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["bulk_send_id"].as_str().unwrap().to_owned();
    // The URL and key from the environment this time.
    let env = vec![
        ("MINDO_URL", meta.app.address.clone()),
        ("MINDO_API_KEY", meta.api_key.clone()),
    ];

    let (code, out, err) = mindo(
        vec![
            "status".into(),
            id.clone(),
            "--watch".into(),
            "--json".into(),
        ],
        env.clone(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let watched: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(watched["status"], "COMPLETED");
    assert_eq!(watched["id"], id.as_str());

    let (code, out, err) = mindo(
        vec!["status".into(), id.clone(), "--json".into()],
        env.clone(),
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["sent_count"], 3);

    let (code, out, err) = mindo(vec!["status".into(), id.clone()], env.clone()).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("Bulk send {id}: COMPLETED\n")),
        "{out}"
    );
    assert!(out.contains("welcome_message (es)"), "{out}");

    // Unknown and malformed ids.
    let (code, _, err) = mindo(
        vec![
            "status".into(),
            "00000000-0000-4000-8000-000000000000".into(),
        ],
        env.clone(),
    )
    .await;
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("HTTP 404"), "{err}");
    let (code, _, err) = mindo(vec!["status".into(), "../x".into()], env).await;
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("not a bulk send id"), "{err}");
}

#[actix_web::test]
async fn a_missing_key_or_daemon_is_a_clear_error() {
    let (_dir, csv) = csv_file(&welcome_csv(0, 1));
    let base = vec![
        "send".to_owned(),
        "--phone-number-id".into(),
        NUMBER_10K.into(),
        "--template".into(),
        "welcome_message".into(),
        "--csv".into(),
        csv.display().to_string(),
        "--url".into(),
        "http://127.0.0.1:9".into(),
    ];
    let (code, _, err) = mindo(base.clone(), vec![]).await;
    assert_eq!(code, 1);
    assert!(one_line(&err).contains("no API key"), "{err}");

    let mut with_key = base.clone();
    with_key.extend(["--api-key".into(), "mindo_000000000000000000000000".into()]);
    let (code, _, err) = mindo(with_key, vec![]).await;
    assert_eq!(code, 1);
    assert!(
        one_line(&err).contains("cannot reach the daemon at http://127.0.0.1:9"),
        "{err}"
    );
}
