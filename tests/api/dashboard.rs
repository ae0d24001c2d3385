//! The dashboard in a real browser: headless Debian chromium, driven by playwright-core from
//! `tests/browser/dashboard.cjs` (a small node script; `.ci/browser-deps.sh` installs both).
//! The page is opened, the key entered, a send submitted through the API followed to
//! COMPLETED with its counts without a reload, paused and resumed from the page, a failed
//! message shown with Meta's error and a suppressed recipient counted apart; the screenshot
//! is `target/dashboard.png`.
//!
//! Without `/usr/bin/chromium` the test is skipped with a message, unless `CI` is set: in CI
//! it must run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::meta::{spawn_with_meta, NUMBER_10K};

/// The target directory (`CARGO_TARGET_DIR`, or `target`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_owned()
}

#[actix_web::test]
async fn the_dashboard_follows_a_send_live_in_a_browser() {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test, but /usr/bin/chromium is missing (bash .ci/browser-deps.sh installs it)"
        );
        eprintln!("skipped: /usr/bin/chromium is missing (bash .ci/browser-deps.sh installs it)");
        return;
    }
    let target = target_dir();
    let modules = target.join("browser/node_modules");
    assert!(
        modules.join("playwright-core").is_dir(),
        "playwright-core is missing in {}: run bash .ci/browser-deps.sh",
        modules.display()
    );
    let meta = spawn_with_meta().await;
    // Retries (Meta's 130429 at the edge of the number's rate) wait on the injected clock:
    // let it run, a second per 200 ms.
    let clock = meta.app.clock.clone();
    let ticking = actix_web::rt::spawn(async move {
        loop {
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
            clock.advance_ms(1_000);
        }
    });
    let screenshot = target.join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.cjs");
    let mut command = std::process::Command::new("node");
    command
        .arg(&script)
        .env("NODE_PATH", &modules)
        .env("BASE_URL", &meta.app.address)
        .env("API_KEY", &meta.api_key)
        .env("NUMBER", NUMBER_10K)
        .env("SCREENSHOT", &screenshot)
        .env("CHROMIUM", chromium);
    // The node script talks to this daemon, which runs on this thread: wait elsewhere.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("node runs");
    ticking.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
}

/// The page and its assets come from the binary, with a policy that allows nothing from
/// elsewhere.
#[actix_web::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let app = crate::helpers::spawn_app().await;
    for (path, content_type, needle) in [
        (
            "/",
            "text/html; charset=utf-8",
            "<label for=\"api-key\">API key</label>",
        ),
        (
            "/dashboard/dashboard.js",
            "application/javascript; charset=utf-8",
            "EventSource",
        ),
        (
            "/dashboard/dashboard.css",
            "text/css; charset=utf-8",
            ":root",
        ),
    ] {
        let res = app.get(path, None).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], content_type, "{path}");
        let csp = res.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
        assert!(res.text().await.unwrap().contains(needle), "{path}");
    }
    let res = app.get("/dashboard/other.js", None).await;
    assert_eq!(res.status(), 404);
    assert_eq!(crate::helpers::json(res).await["code"], "not_found");
    // Nothing the page loads comes from another origin.
    let page = app.get("/", None).await.text().await.unwrap();
    assert!(!page.contains("http://") && !page.contains("https://"));
}
