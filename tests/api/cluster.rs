//! Several daemons on one PostgreSQL: the work is shared by portfolio lease, a node killed
//! with SIGKILL is taken over, a rolling restart of every node and a node stopped (SIGSTOP)
//! past its lease lose nothing and send nothing twice. Meta's webhooks reach the nodes round
//! robin through a small proxy, as behind a load balancer.
//!
//! The cluster tests run only on PostgreSQL (`MINDO_TEST_POSTGRES_URL`); on SQLite, one node,
//! a second daemon on the same file must refuse to start. Takeover and stall times are printed
//! (the benchmark, `mindo-bench cluster`, reports them), never asserted.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mindo_bulk::clock::SystemClock;
use mindo_bulk::simulator::{SimConfig, Simulator};
use serde_json::{json, Value};

use crate::helpers::{run_cli, TestDatabase};

/// The sender numbers the sends use: 80 mps each, each in a portfolio of its own.
const NUMBERS: [&str; 3] = ["106540352240002", "106540352240004", "106540352240005"];

/// A daemon process of the cluster.
struct Node {
    name: String,
    port: u16,
    child: Option<Child>,
    log: std::path::PathBuf,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the node runs").id()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGKILL: the node dies holding its leases.
    fn kill_9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for the clean exit.
    fn stop(&mut self) {
        self.signal("TERM");
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("{} did not stop on SIGTERM", self.name);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            // A stopped process must be continued to die of SIGKILL promptly.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Cluster {
    database: TestDatabase,
    sim: Simulator,
    nodes: Vec<Node>,
    key: String,
    client: reqwest::Client,
    logs: tempfile::TempDir,
    /// The webhook proxy's targets (one per node, by index).
    targets: Targets,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // The simulator outlives this test on its thread for a moment: it must not post
        // anything more to ports that the next test may be using.
        self.sim.set_webhook_url(None);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The sandbox world with two more portfolios like "Mindo Demo Growth" (TIER_10K, 80 mps).
fn world() -> SimConfig {
    let mut world = SimConfig::sandbox();
    for n in [4, 5] {
        let mut waba = world.wabas[1].clone();
        waba.id = format!("10293847561000{n}");
        waba.name = format!("Mindo Demo Growth {n}");
        waba.phone_numbers[0].id = format!("10654035224000{n}");
        waba.phone_numbers[0].display_phone_number = format!("+1 202-555-010{n}");
        for template in &mut waba.templates {
            template.id = format!("{n}{}", &template.id[1..]);
        }
        world.wabas.push(waba);
    }
    world.behaviour.sent_delay_ms = 0;
    world.behaviour.delivered_delay_ms = 0;
    world.behaviour.read_delay_ms = 0;
    world.behaviour.retry_initial_ms = 50;
    world.behaviour.retry_max_ms = 500;
    world
}

/// The proxy's HTTP client, the nodes it forwards to, and the next one's index.
type ProxyState = (reqwest::Client, Targets, AtomicUsize);
/// The base URLs of the nodes, by index.
type Targets = Arc<std::sync::RwLock<Vec<String>>>;

/// Forwards each webhook POST to the next node, round robin; a node that does not answer is
/// skipped (a load balancer's health check), and when none answers Meta retries later.
async fn forward(req: HttpRequest, body: web::Bytes, state: web::Data<ProxyState>) -> HttpResponse {
    let (client, targets, next) = state.get_ref();
    let targets = targets.read().unwrap().clone();
    for _ in 0..targets.len() {
        let target = &targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
        let mut forwarded = client
            .post(format!("{target}{}", req.path()))
            // A node that does not answer soon is skipped, as a load balancer's health check
            // would take it out (a node stopped with SIGSTOP accepts connections).
            .timeout(Duration::from_millis(500))
            .body(body.clone());
        for name in ["content-type", "x-hub-signature-256"] {
            if let Some(value) = req.headers().get(name) {
                forwarded = forwarded.header(name, value.as_bytes());
            }
        }
        if let Ok(res) = forwarded.send().await {
            return HttpResponse::build(
                actix_web::http::StatusCode::from_u16(res.status().as_u16()).unwrap(),
            )
            .finish();
        }
    }
    HttpResponse::BadGateway().finish()
}

fn start_proxy(targets: Targets) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = web::Data::new((reqwest::Client::new(), targets, AtomicUsize::new(0)));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .default_service(web::to(forward))
    })
    .listen(listener)
    .unwrap()
    .workers(2)
    .disable_signals()
    .run();
    actix_web::rt::spawn(server);
    port
}

impl Cluster {
    /// The simulator, the tenant and five WABAs (five portfolios), and `n` nodes, ready.
    async fn start(n: usize) -> Cluster {
        let sim = Simulator::start(world(), "127.0.0.1:0", Arc::new(SystemClock))
            .await
            .unwrap();
        let database = TestDatabase::create();
        let db = database.url().to_owned();
        let (code, out, err) = run_cli(&db, &["tenant", "create", "--name", "Fleet", "--json"]);
        assert_eq!(code, 0, "{err}");
        let tenant: Value = serde_json::from_str(&out).unwrap();
        let key = tenant["api_key"].as_str().unwrap().to_owned();
        let tenant_id = tenant["tenant_id"].to_string();
        // Through the CLI as an operator would; off the test's thread, which serves the
        // simulator the CLI calls.
        let (db2, graph) = (db.clone(), sim.base_url().to_owned());
        actix_web::rt::task::spawn_blocking(move || {
            for waba in 1..=5 {
                let out = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
                    .args(["waba", "add", "--tenant", &tenant_id, "--waba-id"])
                    .arg(format!("10293847561000{waba}"))
                    .args(["--access-token", "sandbox-token"])
                    .env("MINDO_DATABASE_URL", &db2)
                    .env("MINDO_GRAPH_URL", &graph)
                    .env_remove("MINDO_CONFIG")
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        })
        .await
        .unwrap();
        let targets = Arc::new(std::sync::RwLock::new(Vec::new()));
        let proxy = start_proxy(targets.clone());
        sim.set_webhook_url(Some(format!("http://127.0.0.1:{proxy}/webhooks/meta/")));
        let mut cluster = Cluster {
            database,
            sim,
            nodes: Vec::new(),
            key,
            client: reqwest::Client::new(),
            logs: tempfile::tempdir().unwrap(),
            targets,
        };
        for i in 0..n {
            let name = format!("node-{}", i + 1);
            let port = free_port();
            let log = cluster.logs.path().join(format!("{name}.log"));
            cluster.nodes.push(Node {
                name,
                port,
                child: None,
                log,
            });
            cluster.launch(i);
        }
        for i in 0..n {
            cluster.wait_ready(i).await;
        }
        cluster
    }

    /// Starts node `i`'s process (again).
    fn launch(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
            .arg("serve")
            .env("MINDO_DATABASE_URL", self.database.url())
            .env("MINDO_BIND", format!("127.0.0.1:{}", node.port))
            .env("MINDO_NODE_NAME", &node.name)
            .env("MINDO_GRAPH_URL", self.sim.base_url())
            .env("MINDO_APP_SECRET", self.sim.app_secret())
            .env("MINDO_RECONCILE_GRACE_SECS", "5")
            .env("MINDO_SYNC_INTERVAL_SECS", "0")
            .env("MINDO_GRAPH_TIMEOUT_SECS", "2")
            .env("MINDO_TENANT_RPS", "0")
            // More of the nodes' logs on a failure: MINDO_TEST_CLUSTER_LOG=debug.
            .env(
                "MINDO_LOG",
                std::env::var("MINDO_TEST_CLUSTER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env_remove("MINDO_CONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        node.child = Some(child);
        let mut targets = self.targets.write().unwrap();
        let base = node.base();
        if !targets.contains(&base) {
            targets.push(base);
        }
    }

    async fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = format!("{}/readyz", self.nodes[i].base());
        loop {
            if let Ok(res) = self.client.get(&url).send().await {
                if res.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{} did not become ready: {}",
                self.nodes[i].name,
                self.log_of(i)
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(&self.nodes[i].log).unwrap_or_default()
    }

    /// `cluster status --json`, through the CLI as an operator would run it.
    async fn status(&self) -> Value {
        let db = self.database.url().to_owned();
        let (code, out, err) = actix_web::rt::task::spawn_blocking(move || {
            run_cli(&db, &["cluster", "status", "--json"])
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    }

    /// The owner of each live lease, by portfolio.
    async fn owners(&self) -> std::collections::BTreeMap<String, String> {
        let status = self.status().await;
        status["leases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["expires_in_secs"].as_f64().unwrap() > 0.0 && !l["owner"].is_null())
            .map(|l| {
                (
                    l["portfolio_id"].as_str().unwrap().to_owned(),
                    l["owner"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    /// Waits until every portfolio is held and every running node holds at least one.
    async fn wait_balanced(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let owners = self.owners().await;
            let running: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| n.child.is_some())
                .map(|n| n.name.as_str())
                .collect();
            let all_held = owners.len() == 5;
            if all_held && running.iter().all(|n| owners.values().any(|o| o == n)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the leases never spread: {owners:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every portfolio is held again, none by node `name` (stopped or dead).
    async fn wait_taken_over(&self, name: &str) {
        let since = Instant::now();
        loop {
            let owners = self.owners().await;
            if owners.len() == 5 && owners.values().all(|o| o != name) {
                return;
            }
            assert!(
                since.elapsed() < Duration::from_secs(60),
                "{name}'s leases were never taken over: {owners:?}"
            );
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Creates one send per number, each through a different node; returns their ids.
    async fn create_sends(&self, recipients: u64) -> Vec<String> {
        let mut ids = Vec::new();
        for (i, number) in NUMBERS.iter().enumerate() {
            let phones: Vec<Value> = (0..recipients)
                .map(|r| {
                    json!({"phone": format!("+54911{}{:07}", 5 + i, r),
                           "variables": {"customer_name": "Ana"}})
                })
                .collect();
            let node = &self.nodes[i % self.nodes.len()];
            let res = self
                .client
                .post(format!("{}/api/v1/meta-templates/send-bulk/", node.base()))
                .header("X-API-Key", &self.key)
                .json(
                    &json!({"phone_number_id": number, "template_name": "welcome_message",
                              "language": "es", "recipients": phones}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
            let body: Value = res.json().await.unwrap();
            ids.push(body["bulk_send_id"].as_str().unwrap().to_owned());
        }
        ids
    }

    /// A send's status, asked of any running node (round robin from `ask`; a node that
    /// does not answer, e.g. one just resumed from SIGSTOP, is skipped as a load balancer
    /// would).
    async fn send_status(&self, id: &str, ask: usize) -> Value {
        let running: Vec<&Node> = self.nodes.iter().filter(|n| n.child.is_some()).collect();
        for attempt in 0..running.len() * 3 {
            let node = running[(ask + attempt) % running.len()];
            let res = self
                .client
                .get(format!(
                    "{}/api/v1/meta-templates/bulk-sends/{id}/",
                    node.base()
                ))
                .header("X-API-Key", &self.key)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            if let Ok(res) = res {
                if let Ok(body) = res.json().await {
                    return body;
                }
            }
        }
        panic!("no node answered for the send {id}");
    }

    /// Waits until the sends have finished and every status is in; returns the longest time
    /// any unfinished send went without a message sent.
    async fn wait_finished(&self, ids: &[String]) -> (Vec<Value>, Duration) {
        let deadline = Instant::now() + Duration::from_secs(240);
        let mut last: Vec<(u64, Instant)> = vec![(0, Instant::now()); ids.len()];
        let mut longest_stall = Duration::ZERO;
        let mut ask = 0;
        loop {
            let mut statuses = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                ask += 1;
                let s = self.send_status(id, ask).await;
                let progress =
                    s["sent_count"].as_u64().unwrap_or(0) + s["failed_count"].as_u64().unwrap_or(0);
                if progress > last[i].0 {
                    last[i] = (progress, Instant::now());
                } else if s["pending_count"] != 0 {
                    longest_stall = longest_stall.max(last[i].1.elapsed());
                }
                statuses.push(s);
            }
            if statuses
                .iter()
                .all(|s| s["pending_count"] == 0 && s["delivered_count"] == s["sent_count"])
            {
                return (statuses, longest_stall);
            }
            assert!(
                Instant::now() < deadline,
                "the sends never finished: {statuses:#?}\n{}\n{}",
                self.unfinished_in_the_database(),
                (0..self.nodes.len())
                    .map(|i| self.log_of(i))
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
            actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// What the database holds of unfinished messages and of the leases (for a failure's
    /// message: where a stuck send's messages are).
    fn unfinished_in_the_database(&self) -> String {
        use diesel::{Connection, QueryableByName, RunQueryDsl};
        #[derive(QueryableByName)]
        struct Line {
            #[diesel(sql_type = diesel::sql_types::Text)]
            line: String,
        }
        let Ok(mut conn) = diesel::PgConnection::establish(self.database.url()) else {
            return "(the database could not be read)".into();
        };
        let queries = [
            "SELECT concat_ws(' ', 'now', (extract(epoch FROM now()) * 1000)::bigint) AS line",
            "SELECT concat_ws(' ', 'lease', portfolio_id, owner, epoch, expires_at) AS line \
             FROM portfolio_leases ORDER BY portfolio_id",
            "SELECT concat_ws(' ', 'unfinished', send_key, state, count(*), \
             min(next_attempt_at), max(next_attempt_at), max(attempts), min(dispatched_at), \
             max(dispatched_at), count(wamid)) AS line \
             FROM messages WHERE state IN ('pending', 'dispatching') \
             GROUP BY send_key, state ORDER BY 1",
            "SELECT concat_ws(' ', 'send', send_key, id, status, paused, pending_count) AS line \
             FROM bulk_sends WHERE pending_count > 0 ORDER BY send_key",
            "SELECT concat_ws(' ', 'message', id, send_key, seq, state, attempts, \
             next_attempt_at, dispatched_at, wamid, error_code, error_message) AS line \
             FROM messages WHERE state IN ('pending', 'dispatching') ORDER BY id LIMIT 20",
        ];
        let mut out = String::from("unfinished in the database:\n");
        for query in queries {
            match diesel::sql_query(query).load::<Line>(&mut conn) {
                Ok(lines) => lines.into_iter().for_each(|l| {
                    out.push_str(&l.line);
                    out.push('\n');
                }),
                Err(err) => out.push_str(&format!("{query}: {err}\n")),
            }
        }
        out
    }

    /// Every recipient reached Meta exactly once and every counter is exact.
    fn assert_exactly_once(&self, statuses: &[Value], recipients: u64) {
        let stats = self.sim.stats();
        for s in statuses {
            assert_eq!(s["status"], "COMPLETED", "{s:#}");
            assert_eq!(s["sent_count"], recipients, "{s:#}");
            assert_eq!(s["failed_count"], 0, "{s:#}");
        }
        let total = recipients * statuses.len() as u64;
        assert_eq!(
            stats.recipients_accepted_more_than_once, 0,
            "recipients sent twice"
        );
        assert_eq!(stats.unique_recipients, total);
        assert_eq!(stats.accepted_total, total);
    }

    /// The node (index) holding the lease of the first send's number, waiting for one.
    async fn owner_of_a_send(&self) -> usize {
        // The portfolio of a WABA is the WABA's id here (registered without --portfolio-id).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let owners = self.owners().await;
            for portfolio in ["102938475610002", "102938475610004", "102938475610005"] {
                if let Some(owner) = owners.get(portfolio) {
                    if let Some(i) = self
                        .nodes
                        .iter()
                        .position(|n| &n.name == owner && n.child.is_some())
                    {
                        return i;
                    }
                }
            }
            assert!(Instant::now() < deadline, "no node runs the sends");
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the simulator has accepted at least `n` messages.
    async fn wait_accepted(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.sim.stats().accepted_total < n {
            assert!(Instant::now() < deadline, "the sends do not progress");
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A counter of a node's `/metrics`.
    async fn metric(&self, i: usize, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.nodes[i].base()))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// The cluster tests run one at a time: each runs several daemons, and a machine of two cores
/// shared with the rest of the suite would starve their lease heartbeats.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn on_postgres() -> bool {
    std::env::var("MINDO_TEST_POSTGRES_URL").is_ok_and(|u| !u.is_empty())
}

#[actix_web::test]
async fn three_daemons_share_the_work_and_a_kill_9_is_taken_over_without_double_sends() {
    if !on_postgres() {
        return;
    }
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.wait_balanced().await;
    let status = cluster.status().await;
    assert_eq!(status["backend"], "postgres");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 3);
    let recipients = 600;
    let ids = cluster.create_sends(recipients).await;
    cluster.wait_accepted(300).await;

    let victim = cluster.owner_of_a_send().await;
    let name = cluster.nodes[victim].name.clone();
    let killed_at = Instant::now();
    cluster.nodes[victim].kill_9();
    cluster.wait_taken_over(&name).await;
    let takeover = killed_at.elapsed();
    let (statuses, stall) = cluster.wait_finished(&ids).await;
    println!(
        "kill -9 of {name}: taken over after {:.1} s; longest stall of a send {:.1} s",
        takeover.as_secs_f64(),
        stall.as_secs_f64()
    );
    cluster.assert_exactly_once(&statuses, recipients);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != victim).collect();
    let mut takeovers = 0.0;
    for i in survivors {
        takeovers += cluster.metric(i, "mindo_cluster_takeovers_total").await;
    }
    assert!(takeovers >= 1.0, "the survivors report no takeover");
}

#[actix_web::test]
async fn a_rolling_restart_of_every_node_sends_everything_once() {
    if !on_postgres() {
        return;
    }
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(3).await;
    cluster.wait_balanced().await;
    let recipients = 600;
    let ids = cluster.create_sends(recipients).await;
    cluster.wait_accepted(200).await;
    for i in 0..3 {
        cluster.nodes[i].stop();
        cluster.launch(i);
        cluster.wait_ready(i).await;
    }
    let (statuses, stall) = cluster.wait_finished(&ids).await;
    println!(
        "rolling restart of 3 nodes: longest stall of a send {:.1} s",
        stall.as_secs_f64()
    );
    cluster.assert_exactly_once(&statuses, recipients);
}

#[actix_web::test]
async fn a_node_stopped_past_its_lease_sends_nothing_when_it_resumes() {
    if !on_postgres() {
        return;
    }
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(3).await;
    cluster.wait_balanced().await;
    let recipients = 800;
    let ids = cluster.create_sends(recipients).await;
    cluster.wait_accepted(300).await;
    let paused = cluster.owner_of_a_send().await;
    let name = cluster.nodes[paused].name.clone();
    cluster.nodes[paused].signal("STOP");
    // Its leases expire and are taken over; the new owners resend what it had claimed but
    // maybe not sent, once the reconcile grace (5 s here) has passed.
    cluster.wait_taken_over(&name).await;
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    cluster.nodes[paused].signal("CONT");
    let (statuses, _) = cluster.wait_finished(&ids).await;
    let fenced = cluster
        .metric(paused, "mindo_cluster_fenced_claims_total")
        .await;
    println!("{name} resumed after SIGSTOP: {fenced} claims fenced out");
    cluster.assert_exactly_once(&statuses, recipients);
}

#[actix_web::test]
async fn any_node_controls_a_send_another_node_runs() {
    if !on_postgres() {
        return;
    }
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = Cluster::start(2).await;
    cluster.wait_balanced().await;
    let ids = cluster.create_sends(2_000).await;
    let id = &ids[0];
    let owner = cluster.owner_of_a_send().await;
    let other = 1 - owner;
    let control = |i: usize, action: &'static str| {
        let url = format!(
            "{}/api/v1/meta-templates/bulk-sends/{id}/{action}/",
            cluster.nodes[i].base()
        );
        let request = cluster.client.post(url).header("X-API-Key", &cluster.key);
        async move { request.send().await.unwrap().status() }
    };
    cluster.wait_accepted(100).await;
    // Paused through each node in turn: the owner stops within a feed read.
    assert_eq!(control(other, "pause").await, 200);
    assert_eq!(control(owner, "pause").await, 200);
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let before = cluster.send_status(id, 0).await;
    assert_eq!(before["paused"], true, "{before:#}");
    actix_web::rt::time::sleep(Duration::from_secs(1)).await;
    let after = cluster.send_status(id, 1).await;
    assert_eq!(
        before["sent_count"], after["sent_count"],
        "sent while paused"
    );
    assert_eq!(control(other, "resume").await, 200);
    assert_eq!(control(other, "cancel").await, 200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = cluster.send_status(id, 0).await;
        if s["status"] == "CANCELLED" && s["pending_count"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the cancel was not followed: {s:#}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster.sim.stats().recipients_accepted_more_than_once, 0);
}

#[actix_web::test]
async fn a_second_daemon_on_one_sqlite_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("one.db").display());
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "ab".repeat(32)).unwrap();
    let spawn = move |port: u16| {
        Command::new(env!("CARGO_BIN_EXE_mindo-bulk"))
            .arg("serve")
            .env("MINDO_DATABASE_URL", &db)
            .env("MINDO_BIND", format!("127.0.0.1:{port}"))
            .env("MINDO_SECRET_KEY_FILE", &key_file)
            .env("MINDO_LOG", "warn")
            .env_remove("MINDO_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first_port = free_port();
    let mut first = Node {
        name: "first".into(),
        port: first_port,
        child: Some(spawn(first_port)),
        log: dir.path().join("unused"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(res) = client.get(format!("{}/readyz", first.base())).send().await {
            if res.status() == 200 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the first daemon never got ready"
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let second_spawn = spawn.clone();
    let second =
        actix_web::rt::task::spawn_blocking(move || second_spawn(free_port()).wait_with_output())
            .await
            .unwrap()
            .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains("another mindo-bulk daemon is already serving"),
        "{stderr}"
    );
    // The first is unharmed.
    let res = client
        .get(format!("{}/readyz", first.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    first.stop();
}

/// The epoch of each live lease, by portfolio.
async fn epochs(cluster: &Cluster) -> std::collections::BTreeMap<String, i64> {
    let status = cluster.status().await;
    status["leases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["portfolio_id"].as_str().unwrap().to_owned(),
                l["epoch"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[actix_web::test]
async fn a_second_daemon_under_a_live_nodes_name_runs_nothing_until_that_node_dies() {
    if !on_postgres() {
        return;
    }
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::start(1).await;
    cluster.wait_balanced().await;
    let before = epochs(&cluster).await;
    // A second process given the same MINDO_NODE_NAME by mistake.
    cluster.nodes.push(Node {
        name: "node-1".into(),
        port: free_port(),
        child: None,
        log: cluster.logs.path().join("node-1-twin.log"),
    });
    cluster.launch(1);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cluster
        .log_of(1)
        .contains("Another live daemon is named like this one")
    {
        assert!(
            Instant::now() < deadline,
            "the twin never noticed the live node: {}",
            cluster.log_of(1)
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    // It stays out: not ready, and the live node's leases are untouched a few heartbeats on.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let res = cluster
        .client
        .get(format!("{}/readyz", cluster.nodes[1].base()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(epochs(&cluster).await, before);
    assert!(cluster.owners().await.values().all(|o| o == "node-1"));
    // The first dies: its server backend goes with it, and the twin takes the name and the
    // portfolios at once, under new epochs (well before the 9 s lease would lapse).
    cluster.nodes[0].kill_9();
    cluster.wait_ready(1).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let after = epochs(&cluster).await;
        if cluster.owners().await.len() == 5 && before.iter().all(|(p, e)| after[p] > *e) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the twin never took the portfolios over: {after:?}"
        );
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.nodes[1].stop();
}
