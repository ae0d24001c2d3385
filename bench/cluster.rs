//! Benchmark 9 (`cluster`, PostgreSQL only): several daemons on one PostgreSQL, each a
//! `mindo-bulk serve` process of its own beside the in-process simulator, which posts its
//! webhooks to the nodes in turn (as a load balancer would).
//!
//! - throughput: one node, then two, 4 portfolios with limits lifted: aggregate msg/s from
//!   the first 202 to the last message accepted and recorded, and statuses/s until every
//!   message is delivered (both nodes share this machine's cores: the figure says what one machine
//!   gains, not what two machines would);
//! - failover: two nodes, 4 paced sends; node 1 is killed with SIGKILL: the time until node 2
//!   holds every lease, and the longest time a send made no progress.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use mindo_bulk::clock::{Clock, SharedClock, SystemClock};
use mindo_bulk::config::Config;
use mindo_bulk::simulator::{SimConfig, Simulator};
use mindo_bulk::storage::accounts::{set_number_override, NumberOverride};
use mindo_bulk::storage::{cluster, tenants, Db};
use serde_json::{json, Value};

use super::{one_send_per_number, phones, post_send, send_body, unlimited_world, Args, Database};

/// The key every node and the benchmark itself use to seal secrets.
const SECRET_KEY: &str = "6d696e646f2d62656e63682d6b65792d6d696e646f2d62656e63682d6b657921";

/// A node process.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    /// CPU seconds the process has used (user + system), from /proc.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the command name (which may hold spaces) start after ") ".
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        match (ticks(11), ticks(12)) {
            (Some(u), Some(s)) if hz > 0.0 => (u + s) / hz,
            _ => 0.0,
        }
    }

    fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// The simulator, a database with a tenant and the world's WABAs, and the nodes.
struct Fleet {
    sim: Simulator,
    db: Db,
    key: String,
    nodes: Vec<Node>,
    http: awc::Client,
    // Dropped last: the nodes stop before their database goes.
    _database: Database,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Fleet {
    async fn start(args: &Args, world: SimConfig, nodes: usize) -> anyhow::Result<Fleet> {
        let database = Database::create(args)?;
        let clock: SharedClock = Arc::new(SystemClock);
        let sim = Simulator::start(world.clone(), "127.0.0.1:0", clock.clone()).await?;
        let config = Config {
            database_url: database.url.clone(),
            secret_key: Some(SECRET_KEY.to_owned().into()),
            ..Config::default()
        };
        let url = database.url.clone();
        let (db, secret) = actix_web::rt::task::spawn_blocking(move || -> anyhow::Result<_> {
            let db = Db::connect(&url, 4)?;
            db.migrate()?;
            let key = mindo_bulk::secrets::prepare(&config, &mut *db.get()?)?;
            Ok((db, key))
        })
        .await??;
        let now = clock.now_ms();
        let sealing = secret.clone();
        let created = db
            .run(move |conn| tenants::create_tenant(conn, "Bench", &sealing, now))
            .await?;
        let graph = mindo_bulk::meta::client::GraphClient::new(
            sim.base_url(),
            "v24.0",
            Duration::from_secs(10),
            8,
        );
        for waba in &world.wabas {
            mindo_bulk::sync::add_waba(
                &db,
                &graph,
                &clock,
                &secret,
                created.tenant_id,
                &waba.id,
                &waba.access_token,
                None,
            )
            .await?;
        }
        let mut fleet = Fleet {
            sim,
            db,
            key: created.api_key,
            nodes: Vec::new(),
            http: awc::Client::builder()
                .timeout(Duration::from_secs(120))
                .finish(),
            _database: database,
        };
        for i in 0..nodes {
            fleet.launch(i)?;
        }
        for i in 0..nodes {
            fleet.wait_ready(i).await?;
        }
        let urls: Vec<String> = fleet
            .nodes
            .iter()
            .map(|n| format!("{}/webhooks/meta/", n.base))
            .collect();
        fleet.sim.set_webhook_url(Some(urls.join(",")));
        Ok(fleet)
    }

    fn launch(&mut self, i: usize) -> anyhow::Result<()> {
        let binary = std::env::current_exe()?
            .parent()
            .context("the benchmark's directory")?
            .join("mindo-bulk");
        let port = free_port()?;
        let child = Command::new(&binary)
            .arg("serve")
            .env("MINDO_DATABASE_URL", &self._database.url)
            .env("MINDO_BIND", format!("127.0.0.1:{port}"))
            .env("MINDO_NODE_NAME", format!("bench-{}", i + 1))
            .env("MINDO_GRAPH_URL", self.sim.base_url())
            .env("MINDO_APP_SECRET", self.sim.app_secret())
            .env("MINDO_SECRET_KEY", SECRET_KEY)
            .env("MINDO_SYNC_INTERVAL_SECS", "0")
            .env("MINDO_TENANT_RPS", "0")
            .env("MINDO_RECONCILE_GRACE_SECS", "5")
            .env("MINDO_GRAPH_TIMEOUT_SECS", "5")
            .env("MINDO_LOG", "error")
            .env_remove("MINDO_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        self.nodes.push(Node {
            child,
            base: format!("http://127.0.0.1:{port}"),
        });
        Ok(())
    }

    async fn wait_ready(&self, i: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.nodes[i].base))
                .send()
                .await
                .is_ok_and(|r| r.status().as_u16() == 200);
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("node {} did not become ready", i + 1);
            }
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Live leases by owner.
    async fn owners(&self) -> anyhow::Result<BTreeMap<String, String>> {
        let ttl = i64::try_from(mindo_bulk::engine::leases::LEASE_TTL.as_millis())?;
        let status = self.db.run(move |c| cluster::status(c, ttl)).await?;
        Ok(status
            .leases
            .into_iter()
            .filter(|l| l.expires_in_secs > 0.0)
            .filter_map(|l| Some((l.portfolio_id, l.owner?)))
            .collect())
    }

    /// Waits until all `portfolios` are held and each node holds one at least.
    async fn wait_spread(&self, portfolios: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let owners = self.owners().await?;
            let holders: std::collections::BTreeSet<&String> = owners.values().collect();
            if owners.len() == portfolios && holders.len() == self.nodes.len() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the leases never spread: {owners:?}");
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn set_mps(&self, number: &str, mps: i32) -> anyhow::Result<()> {
        let (number, now) = (number.to_owned(), SystemClock.now_ms());
        let overrides = NumberOverride {
            throughput_mps: Some(Some(mps)),
            paused: None,
        };
        self.db
            .run(move |conn| set_number_override(conn, &number, &overrides, now))
            .await?;
        Ok(())
    }

    async fn create(&self, node: usize, body: Vec<u8>) -> anyhow::Result<String> {
        post_send(&self.http, &self.nodes[node].base, &self.key, body).await
    }

    async fn status(&self, node: usize, id: &str) -> anyhow::Result<Value> {
        let mut res = self
            .http
            .get(format!(
                "{}/api/v1/meta-templates/bulk-sends/{id}/",
                self.nodes[node].base
            ))
            .insert_header(("X-API-Key", self.key.as_str()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(res.json::<Value>().await?)
    }

    /// The sum of a count over the sends, asked of `node`.
    async fn total(&self, node: usize, ids: &[String], field: &str) -> anyhow::Result<u64> {
        let mut total = 0;
        for id in ids {
            total += self.status(node, id).await?[field].as_u64().unwrap_or(0);
        }
        Ok(total)
    }
}

pub(super) async fn bench_cluster(args: &Args) -> anyhow::Result<()> {
    if args.postgres.is_none() {
        println!("cluster (several daemons share one PostgreSQL: run with --postgres URL)");
        return Ok(());
    }
    let one = throughput(args, 1).await?;
    let two = throughput(args, 2).await?;
    println!(
        "cluster two nodes / one node on this machine: {:.2} × the messages/s, {:.2} × the statuses/s",
        two.0 / one.0,
        two.1 / one.1
    );
    failover(args).await
}

/// `nodes` daemons, 4 portfolios with limits lifted: (msg/s, statuses/s).
async fn throughput(args: &Args, nodes: usize) -> anyhow::Result<(f64, f64)> {
    const PORTFOLIOS: usize = 4;
    let total = args.size(40_000);
    let world = unlimited_world(PORTFOLIOS);
    let fleet = Fleet::start(args, world.clone(), nodes).await?;
    for waba in &world.wabas {
        fleet.set_mps(&waba.phone_numbers[0].id, 1_000_000).await?;
    }
    fleet.wait_spread(PORTFOLIOS).await?;
    // Let the limiters read the override (they refresh every 2 s).
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    let per = total / PORTFOLIOS as u64;
    let bodies = one_send_per_number(&world, per);
    let cpu0: f64 = fleet.nodes.iter().map(Node::cpu_seconds).sum();
    let mut started = None;
    let mut ids = Vec::new();
    for (i, body) in bodies.into_iter().enumerate() {
        ids.push(fleet.create(i % nodes, body).await?);
        started.get_or_insert_with(Instant::now);
    }
    let started = started.context("no send was created")?;
    let mut sent_at = None;
    loop {
        let pending = fleet.total(0, &ids, "pending_count").await?;
        if pending == 0 && sent_at.is_none() {
            sent_at = Some(started.elapsed());
        }
        // Every message delivered (not every user reads): all statuses but late reads are in.
        if pending == 0 && fleet.total(0, &ids, "delivered_count").await? == total {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the cluster benchmark did not finish ({pending} pending)");
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let all = started.elapsed().as_secs_f64();
    let sent = sent_at.map_or(all, |d| d.as_secs_f64());
    let cpu: f64 = fleet.nodes.iter().map(Node::cpu_seconds).sum::<f64>() - cpu0;
    let stats = fleet.sim.stats();
    let msgs = total as f64 / sent;
    // Statuses recorded by then: sent and delivered for every message, read for some.
    let read = fleet.total(0, &ids, "read_count").await?;
    let statuses = (2 * total + read) as f64 / all;
    println!(
        "cluster {nodes} node(s), {total} recipients on {PORTFOLIOS} portfolios: {msgs:.0} msg/s to the last message accepted and recorded ({sent:.2} s); {statuses:.0} statuses/s until every message is delivered ({all:.2} s); accepted {}, double sends {}; daemons' CPU {:.0} µs/message",
        stats.accepted_total,
        stats.recipients_accepted_more_than_once,
        cpu / total as f64 * 1e6
    );
    Ok((msgs, statuses))
}

/// Two nodes, 4 paced sends; SIGKILL to node 1: the takeover time and the longest stall.
async fn failover(args: &Args) -> anyhow::Result<()> {
    const PORTFOLIOS: usize = 4;
    const MPS: i32 = 200;
    let per = args.size(6_000);
    let world = unlimited_world(PORTFOLIOS);
    let mut fleet = Fleet::start(args, world.clone(), 2).await?;
    for waba in &world.wabas {
        fleet.set_mps(&waba.phone_numbers[0].id, MPS).await?;
    }
    fleet.wait_spread(PORTFOLIOS).await?;
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    let mut ids = Vec::new();
    for (i, waba) in world.wabas.iter().enumerate() {
        let body = send_body(
            &waba.phone_numbers[0].id,
            &phones(i as u64 * per, per),
            json!({}),
        );
        ids.push(fleet.create(i % 2, body).await?);
    }
    // Sends under way for a while, then node 1 dies.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let victim = "bench-1".to_owned();
    let killed = Instant::now();
    fleet.nodes[0].kill_9();
    let mut takeover = None;
    let mut last: Vec<(u64, Instant)> = vec![(0, Instant::now()); ids.len()];
    let mut longest_stall = Duration::ZERO;
    loop {
        if takeover.is_none() {
            let owners = fleet.owners().await?;
            if owners.len() == PORTFOLIOS && owners.values().all(|o| *o != victim) {
                takeover = Some(killed.elapsed());
            }
        }
        let mut pending = 0;
        for (i, id) in ids.iter().enumerate() {
            let s = fleet.status(1, id).await?;
            let sent = s["sent_count"].as_u64().unwrap_or(0);
            let left = s["pending_count"].as_u64().unwrap_or(0);
            if sent > last[i].0 {
                last[i] = (sent, Instant::now());
            } else if left > 0 {
                longest_stall = longest_stall.max(last[i].1.elapsed());
            }
            pending += left;
        }
        if pending == 0 && takeover.is_some() {
            break;
        }
        if killed.elapsed() > Duration::from_secs(600) {
            bail!("the failover benchmark did not finish ({pending} pending)");
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    let stats = fleet.sim.stats();
    println!(
        "failover kill -9 of one of 2 nodes ({PORTFOLIOS} sends of {per} at {MPS} mps): every lease held by the survivor after {:.1} s; longest stall of a send {:.1} s; accepted {}, unique recipients {}, double sends {}",
        takeover.map_or(f64::NAN, |d| d.as_secs_f64()),
        longest_stall.as_secs_f64(),
        stats.accepted_total,
        stats.unique_recipients,
        stats.recipients_accepted_more_than_once
    );
    Ok(())
}
