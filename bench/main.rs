//! `mindo-bench`: measures what mindo-bulk exists for, against the Meta simulator on
//! loopback, and prints the figures (it asserts nothing: figures go into bench/README.md).
//!
//! ```sh
//! cargo run --release --bin mindo-bench                 # everything, on SQLite
//! # everything on SQLite, then creation, engine and webhooks on PostgreSQL (a scratch
//! # database is created through this URL and dropped after):
//! cargo run --release --bin mindo-bench -- --postgres postgres://postgres@127.0.0.1/test
//! cargo run --release --bin mindo-bench -- --only create,limiter
//! # several daemons on one PostgreSQL: one node against two, and failover after kill -9
//! cargo run --release --bin mindo-bench -- --only cluster --postgres postgres://postgres@127.0.0.1/test
//! # every benchmark at a tenth of its size: a smoke run (CI), not figures to record
//! cargo run --release --bin mindo-bench -- --quick --postgres postgres://postgres@127.0.0.1/test
//! ```
//!
//! Each benchmark gets a fresh database and a fresh in-process simulator and daemon (the same
//! code as `serve`, on the wall clock). CPU time is the whole process's (daemon and simulator
//! together), from `getrusage`. Each benchmark stops its daemon (HTTP server, engine, the
//! simulator's webhooks) and waits for it before its scratch database is dropped, so a run prints
//! no errors of its own teardown.

mod cluster;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use diesel::connection::SimpleConnection;
use diesel::Connection;
use mindo_bulk::clock::{Clock, SharedClock, SystemClock};
use mindo_bulk::config::Config;
use mindo_bulk::domain::tier::{ThroughputLevel, Tier};
use mindo_bulk::http::state::AppState;
use mindo_bulk::simulator::{SimConfig, Simulator};
use mindo_bulk::startup::Application;
use mindo_bulk::storage::accounts::{set_number_override, NumberOverride};
use mindo_bulk::storage::{tenants, StorageError};
use serde_json::{json, Value};

/// mimalloc: the daemon allocates many small, short-lived values (JSON, rows, messages) from
/// several threads, where it is markedly faster than the system allocator (bench/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The sandbox's 80 mps TIER_10K number and its 1 000 mps unlimited one.
const NUMBER_80: &str = "106540352240002";
const NUMBER_1000: &str = "106540352240003";

struct Args {
    postgres: Option<String>,
    only: Option<Vec<String>>,
    limiter_secs: u64,
    /// Sizes divided by 10 (limiter runs 3 s): a smoke run, not figures.
    quick: bool,
}

impl Args {
    /// `n`, or a tenth of it in a quick run.
    fn size(&self, n: u64) -> u64 {
        if self.quick {
            (n / 10).max(1)
        } else {
            n
        }
    }
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        postgres: None,
        only: None,
        limiter_secs: 30,
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--postgres" => args.postgres = Some(it.next().context("--postgres needs a URL")?),
            "--only" => {
                args.only = Some(
                    it.next()
                        .context("--only needs names")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                )
            }
            "--quick" => {
                args.quick = true;
                args.limiter_secs = 3;
            }
            "--limiter-secs" => {
                args.limiter_secs = it
                    .next()
                    .context("--limiter-secs needs a number")?
                    .parse()?
            }
            // `mindo-bench idle` is `mindo-bench --only idle`, and so on.
            name if !name.starts_with('-') => {
                args.only.get_or_insert_with(Vec::new).push(name.to_owned())
            }
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    mindo_bulk::telemetry::init(&filter, mindo_bulk::config::LogFormat::Text);
    actix_web::rt::System::new().block_on(run(args))
}

/// Everything on SQLite, then (with `--postgres`) the database-bound figures again on
/// PostgreSQL: creation, engine, webhooks, idle cost, and several daemons (`cluster`).
async fn run(mut args: Args) -> anyhow::Result<()> {
    println!(
        "mindo-bench on {} ({} cores)",
        std::env::consts::ARCH,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    );
    let postgres = args.postgres.take();
    println!("== SQLite");
    run_on(
        &args,
        &[
            "create", "limiter", "engine", "webhooks", "memory", "idle", "pair", "burst", "cluster",
        ],
    )
    .await?;
    if postgres.is_some() {
        args.postgres = postgres;
        println!("== PostgreSQL");
        run_on(&args, &["create", "engine", "webhooks", "idle", "cluster"]).await?;
    }
    Ok(())
}

/// The benchmarks among `names` that `--only` selects, on the database `args` names.
async fn run_on(args: &Args, names: &[&str]) -> anyhow::Result<()> {
    let wants = |name: &str| {
        names.contains(&name)
            && args
                .only
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == name))
    };
    if wants("create") {
        bench_create(args).await?;
    }
    if wants("limiter") {
        bench_limiter(args, NUMBER_80, 80).await?;
        bench_limiter(args, NUMBER_1000, 1000).await?;
    }
    if wants("engine") {
        bench_engine(args).await?;
    }
    if wants("webhooks") {
        bench_webhooks(args).await?;
    }
    if wants("memory") {
        bench_memory(args).await?;
    }
    if wants("idle") {
        bench_idle(args).await?;
    }
    if wants("pair") {
        bench_pair(args).await?;
    }
    if wants("cluster") {
        cluster::bench_cluster(args).await?;
    }
    if wants("burst") {
        // The daemon's default gate of concurrent creates; one at a time (what one create
        // costs); then a gate wide enough to let all sixteen in at once (what the daemon did
        // before it had one).
        bench_burst(args, None).await?;
        bench_burst(args, Some(1)).await?;
        bench_burst(args, Some(BURST_CLIENTS)).await?;
    }
    Ok(())
}

/// A fresh database for one benchmark.
struct Database {
    url: String,
    drop_pg: Option<(String, String)>,
    dir: Option<std::path::PathBuf>,
}

impl Database {
    fn create(args: &Args) -> anyhow::Result<Database> {
        match &args.postgres {
            Some(admin) => {
                let name = format!("mindo_bench_{}", uuid::Uuid::new_v4().simple());
                let mut conn = diesel::PgConnection::establish(admin)?;
                conn.batch_execute(&format!("CREATE DATABASE {name}"))?;
                let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(admin);
                Ok(Database {
                    url: format!("{base}/{name}"),
                    drop_pg: Some((admin.clone(), name)),
                    dir: None,
                })
            }
            None => {
                let dir = scratch_dir()?;
                Ok(Database {
                    url: format!("sqlite://{}", dir.join("bench.db").display()),
                    drop_pg: None,
                    dir: Some(dir),
                })
            }
        }
    }
}

/// A new directory under the system's temporary directory.
fn scratch_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("mindo-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin, name)) = &self.drop_pg {
            if let Ok(mut conn) = diesel::PgConnection::establish(admin) {
                let _ = conn.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
    }
}

/// A simulator and a daemon using it, with a tenant owning the world's WABAs.
struct Env {
    sim: Simulator,
    state: AppState,
    server: actix_web::dev::ServerHandle,
    base: String,
    key: String,
    http: awc::Client,
    _db: Database,
}

async fn setup(
    args: &Args,
    world: SimConfig,
    tweak: impl FnOnce(&mut Config),
) -> anyhow::Result<Env> {
    let db = Database::create(args)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let sim = Simulator::start(world.clone(), "127.0.0.1:0", clock.clone()).await?;
    let mut config = Config {
        database_url: db.url.clone(),
        bind: "127.0.0.1:0".into(),
        graph_url: sim.base_url().to_owned(),
        app_secret: Some(sim.app_secret().to_owned().into()),
        sync_interval_secs: 0,
        log: "warn".into(),
        // The benchmark measures the engine, not the per-tenant request budget.
        tenant_rps: 0,
        ..Config::default()
    };
    tweak(&mut config);
    let app = Application::build_with_clock(config, clock.clone()).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    sim.set_webhook_url(Some(format!("{base}/webhooks/meta/")));
    let state = app.state().clone();
    let server = app.server_handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let now = clock.now_ms();
    let key = state.secret_key.clone();
    let created = state
        .db
        .run(move |conn| tenants::create_tenant(conn, "Bench", &key, now))
        .await?;
    let graph = state.config.graph_client();
    for waba in &world.wabas {
        mindo_bulk::sync::add_waba(
            &state.db,
            &graph,
            &clock,
            &state.secret_key,
            created.tenant_id,
            &waba.id,
            &waba.access_token,
            None,
        )
        .await?;
    }
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(120))
        .finish();
    Ok(Env {
        sim,
        state,
        server,
        base,
        key: created.api_key,
        http,
        _db: db,
    })
}

impl Drop for Env {
    fn drop(&mut self) {
        // A benchmark that failed half-way: stop what is left without waiting (its scratch
        // database may go before the last of it, which only a failed run can show).
        self.sim.set_webhook_url(None);
        drop(self.server.stop(false));
        self.state.engine.stop();
    }
}

/// A row of `pg_stat_user_tables`.
#[derive(diesel::QueryableByName)]
struct TableUpdates {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n_tup_upd: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n_tup_hot_upd: i64,
}

impl Env {
    /// On PostgreSQL: the updates of `messages` so far and how many were HOT (read after the
    /// statistics' next flush, which waits for at most a second).
    async fn message_updates(&self) -> Option<(i64, i64)> {
        if !self.state.config.database_url.starts_with("postgres") {
            return None;
        }
        actix_web::rt::time::sleep(Duration::from_millis(1_500)).await;
        let read = self.state.db.run(|conn| {
            use diesel::RunQueryDsl as _;
            let query = diesel::sql_query(
                "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = 'messages'",
            );
            let rows: Vec<TableUpdates> = match conn {
                mindo_bulk::storage::DbConnection::Postgres(pg) => query.load(pg)?,
                mindo_bulk::storage::DbConnection::Sqlite(_) => Vec::new(),
            };
            Ok::<_, mindo_bulk::storage::StorageError>(rows)
        });
        let rows = read.await.ok()?;
        rows.first().map(|r| (r.n_tup_upd, r.n_tup_hot_upd))
    }

    /// Stops the daemon and waits for it, then drops the scratch database: the simulator posts
    /// no more webhooks, the HTTP server closes, the engine drains (calls in flight finish)
    /// and its actors stop. Dropping the database under a running daemon filled the log with
    /// "database … does not exist" errors.
    async fn finish(self) {
        self.sim.set_webhook_url(None);
        self.server.stop(true).await;
        self.state.engine.drain(Duration::from_secs(20)).await;
        self.state.engine.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.state.engine.live_send_actors() > 0 && Instant::now() < deadline {
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        // The engine's arbiters end their last tasks after the actors stop.
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    }

    async fn status(&self, id: &str) -> anyhow::Result<Value> {
        let mut res = self
            .http
            .get(format!(
                "{}/api/v1/meta-templates/bulk-sends/{id}/",
                self.base
            ))
            .insert_header(("X-API-Key", self.key.as_str()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(res.json::<Value>().await?)
    }

    /// Submits a send and returns its id.
    async fn send(
        &self,
        number: &str,
        recipients: &[String],
        extra: Value,
    ) -> anyhow::Result<String> {
        self.send_bytes(send_body(number, recipients, extra)).await
    }

    /// Submits a send whose body is already serialised and returns its id.
    async fn send_bytes(&self, body: Vec<u8>) -> anyhow::Result<String> {
        post_send(&self.http, &self.base, &self.key, body).await
    }

    /// Adds phones (at most 10 000) to the tenant's suppression list.
    async fn suppress(&self, phones: &[String]) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!("{}/api/v1/suppressions/", self.base))
            .insert_header(("X-API-Key", self.key.as_str()))
            .send_json(&json!({"phones": phones, "reason": "benchmark"}))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if res.status().as_u16() != 200 {
            bail!("adding suppressions answered {}", res.status());
        }
        Ok(())
    }

    /// Cancels, pauses or resumes a send (`action` is the path's last part).
    async fn control(&self, id: &str, action: &str) -> anyhow::Result<()> {
        let res = self
            .http
            .post(format!(
                "{}/api/v1/meta-templates/bulk-sends/{id}/{action}/",
                self.base
            ))
            .insert_header(("X-API-Key", self.key.as_str()))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        if res.status().as_u16() != 200 {
            bail!("{action} answered {}", res.status());
        }
        Ok(())
    }

    /// Sets a number's operator throughput override.
    async fn set_mps(&self, number: &str, mps: i32) -> anyhow::Result<()> {
        let (number, now) = (number.to_owned(), SystemClock.now_ms());
        let overrides = NumberOverride {
            throughput_mps: Some(Some(mps)),
            paused: None,
        };
        self.state
            .db
            .run(move |conn| set_number_override(conn, &number, &overrides, now))
            .await?;
        Ok(())
    }
}

/// Benchmark 6: what waiting sends cost. 1 000 sends of 100 recipients wait in a running daemon
/// (500 scheduled an hour ahead, 500 paused by the client): the process's CPU time over 30 s as a
/// share of one core, and its threads; then the paused ones are resumed, and the time from the
/// first resume request to the first message Meta accepts, and to every resumed send having
/// started.
async fn bench_idle(args: &Args) -> anyhow::Result<()> {
    let sends = args.size(1_000).max(2);
    let per = args.size(100);
    let window = Duration::from_secs(if args.quick { 5 } else { 30 });
    let env = setup(args, SimConfig::sandbox(), |_| {}).await?;
    // While the paused sends are created and paused, the number grants nothing.
    env.set_mps(NUMBER_1000, 0).await?;
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let scheduled = json!({"scheduled_at": later.format("%Y-%m-%dT%H:%M:%SZ").to_string()});
    for i in 0..sends / 2 {
        env.send(NUMBER_1000, &phones(i * per, per), scheduled.clone())
            .await?;
    }
    let mut paused = Vec::new();
    for i in sends / 2..sends {
        let id = env
            .send(NUMBER_1000, &phones(i * per, per), json!({}))
            .await?;
        env.control(&id, "pause").await?;
        paused.push(id);
    }
    env.set_mps(NUMBER_1000, 1_000).await?;
    // Let the creations' work finish before measuring.
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    let cpu0 = cpu_seconds();
    let started = Instant::now();
    actix_web::rt::time::sleep(window).await;
    let share = (cpu_seconds() - cpu0) / started.elapsed().as_secs_f64();
    println!(
        "idle    {} scheduled + {} paused sends × {per} recipients waiting: CPU {:.2} % of one core over {} s (daemon + simulator), {} threads, {} send actors",
        sends / 2,
        sends - sends / 2,
        share * 100.0,
        window.as_secs(),
        thread_count(),
        env.state.engine.live_send_actors(),
    );
    // The resume requests go one after another while Meta's side is watched.
    let resumed = Instant::now();
    let resume_all = async {
        for id in &paused {
            env.control(id, "resume").await?;
        }
        Ok::<f64, anyhow::Error>(resumed.elapsed().as_secs_f64())
    };
    let watch = async {
        let mut first = None;
        while resumed.elapsed() < Duration::from_secs(120) {
            let stats = env.sim.stats();
            if first.is_none() && stats.accepted_total > 0 {
                first = Some(resumed.elapsed().as_secs_f64());
            }
            // Every resumed send has had a first message accepted.
            if stats.accepted_total >= paused.len() as u64 {
                let mut started_all = true;
                for id in &paused {
                    let sent = env
                        .status(id)
                        .await
                        .ok()
                        .and_then(|s| s["sent_count"].as_u64());
                    if sent.unwrap_or(0) == 0 {
                        started_all = false;
                        break;
                    }
                }
                if started_all {
                    return (first, Some(resumed.elapsed().as_secs_f64()));
                }
            }
            actix_web::rt::time::sleep(Duration::from_millis(2)).await;
        }
        (first, None)
    };
    let (requests, (first, all)) = futures_util::future::join(resume_all, watch).await;
    let requests = requests?;
    let secs = |t: Option<f64>| t.map_or("not within 120 s".to_owned(), |t| format!("{t:.3} s"));
    println!(
        "resume  {} paused sends, resumed one after another ({requests:.2} s of requests): first message accepted by Meta {} after the first request, every send started after {}",
        paused.len(),
        secs(first),
        secs(all)
    );
    env.finish().await;
    Ok(())
}

/// Benchmark 7: the pair rate on the wall clock and under load. 20 recipients each get two
/// one-recipient sends created back to back on one 80 mps number, while a 1 000-recipient send
/// keeps that number busy; Meta (the simulator, which refuses a second message to a recipient
/// within 6 s with 131056) must refuse none.
async fn bench_pair(args: &Args) -> anyhow::Result<()> {
    let pairs = args.size(20).max(2);
    let env = setup(args, SimConfig::sandbox(), |_| {}).await?;
    env.send(NUMBER_80, &phones(1_000_000, args.size(1_000)), json!({}))
        .await?;
    let recipients = phones(0, pairs);
    let started = Instant::now();
    let mut seconds = Vec::new();
    for recipient in &recipients {
        let one = std::slice::from_ref(recipient);
        env.send(NUMBER_80, one, json!({})).await?;
        seconds.push(env.send(NUMBER_80, one, json!({})).await?);
    }
    loop {
        let mut pending = 0;
        for id in &seconds {
            pending += env.status(id).await?["pending_count"].as_u64().unwrap_or(0);
        }
        if pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("the pair-rate benchmark did not finish ({pending} pending)");
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = env.sim.stats();
    let twice = recipients
        .iter()
        .filter(|r| stats.accepted_by_recipient.get(r.as_str()) == Some(&2))
        .count();
    println!(
        "pair    {pairs} recipients × 2 sends back to back on an 80 mps number under load: {twice} received both ({:.1} s); 131056 refusals {}, all refusals {:?}",
        started.elapsed().as_secs_f64(),
        stats.refusals_by_code.get(&131_056).copied().unwrap_or(0),
        stats.refusals_by_code
    );
    env.finish().await;
    Ok(())
}

/// The process's threads, from /proc (0 where there is none).
fn thread_count() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A `send-bulk` body for the sandbox's `welcome_message` template, `extra` fields added.
fn send_body(number: &str, recipients: &[String], extra: Value) -> Vec<u8> {
    let mut body = json!({
        "phone_number_id": number, "template_name": "welcome_message", "language": "es",
        "recipients": recipients.iter().map(|p| json!({"phone": p, "variables": {"customer_name": "Ana"}})).collect::<Vec<_>>(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    serde_json::to_vec(&body).unwrap_or_default()
}

/// Posts a serialised send-bulk body to the daemon at `base`; returns the send's id.
async fn post_send(
    http: &awc::Client,
    base: &str,
    key: &str,
    body: Vec<u8>,
) -> anyhow::Result<String> {
    let mut res = http
        .post(format!("{base}/api/v1/meta-templates/send-bulk/"))
        .insert_header(("X-API-Key", key))
        .content_type("application/json")
        .send_body(body)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let status = res.status().as_u16();
    let res = res.json::<Value>().await.unwrap_or(Value::Null);
    if status != 202 {
        bail!("send-bulk answered {status}: {res}");
    }
    Ok(res["bulk_send_id"].as_str().unwrap_or_default().to_owned())
}

/// One send-bulk body per number of `world` (its first), `per` recipients each, none shared.
fn one_send_per_number(world: &SimConfig, per: u64) -> Vec<Vec<u8>> {
    world
        .wabas
        .iter()
        .enumerate()
        .map(|(i, waba)| {
            send_body(
                &waba.phone_numbers[0].id,
                &phones(i as u64 * per, per),
                json!({}),
            )
        })
        .collect()
}

/// `n` distinct valid mobile numbers from `from`.
fn phones(from: u64, n: u64) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("+54911{:08}", 10_000_000 + i))
        .collect()
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| {
            s.split_whitespace()
                .nth(1)
                .and_then(|p| p.parse::<u64>().ok())
        })
        .map(|pages| pages * 4096)
        .unwrap_or(0)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// Benchmark 3: Create latency: recipients → 202, median of 5, for 10 000 and 100 000 recipients.
async fn bench_create(args: &Args) -> anyhow::Result<()> {
    let env = setup(args, SimConfig::sandbox(), |_| {}).await?;
    // Scheduled far ahead: the engine does not dispatch, only creation is measured.
    let later = chrono::Utc::now() + chrono::Duration::days(20);
    let extra = json!({"scheduled_at": later.format("%Y-%m-%dT%H:%M:%SZ").to_string()});
    for n in [args.size(10_000), args.size(100_000)] {
        let mut times = Vec::new();
        for run in 0..5 {
            // The body is built before the clock starts: only the daemon's work is timed.
            let body = send_body(NUMBER_1000, &phones(run * 1_000_000, n), extra.clone());
            let started = Instant::now();
            env.send_bytes(body).await?;
            times.push(started.elapsed().as_secs_f64());
        }
        println!(
            "create  {n:>7} recipients → 202: median {:.3} s (runs: {})",
            median(times.clone()),
            times
                .iter()
                .map(|t| format!("{t:.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    // The same 100 000-recipient creates against a suppression list of 100 000 phones, a
    // tenth of each send's recipients among them (the rest of the list is other people):
    // one set-based lookup per create, the suppressed stored as `suppressed`.
    let n = args.size(100_000);
    let mut list: Vec<String> = (5..10)
        .flat_map(|run| phones(run * 1_000_000, n).into_iter().step_by(10))
        .collect();
    list.extend(phones(20_000_000, n.saturating_sub(list.len() as u64)));
    for chunk in list.chunks(10_000) {
        env.suppress(chunk).await?;
    }
    let mut times = Vec::new();
    let mut suppressed = 0;
    for run in 5..10 {
        let body = send_body(NUMBER_1000, &phones(run * 1_000_000, n), extra.clone());
        let started = Instant::now();
        let id = env.send_bytes(body).await?;
        times.push(started.elapsed().as_secs_f64());
        suppressed = env.status(&id).await?["suppressed_count"]
            .as_u64()
            .unwrap_or(0);
    }
    println!(
        "create  {n:>7} recipients, {} suppressions listed, {suppressed} of them among the recipients → 202: median {:.3} s (runs: {})",
        list.len(),
        median(times.clone()),
        times
            .iter()
            .map(|t| format!("{t:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    env.finish().await;
    Ok(())
}

/// Benchmark 2: Limiter precision: a number at its Meta rate for `limiter_secs`: achieved / cap, the
/// most accepted in any 1 s window, refusals.
async fn bench_limiter(args: &Args, number: &str, cap: u64) -> anyhow::Result<()> {
    let env = setup(args, SimConfig::sandbox(), |_| {}).await?;
    let n = cap * args.limiter_secs;
    let id = env.send(number, &phones(0, n), json!({})).await?;
    let mut first: Option<(Instant, u64)> = None;
    let started = Instant::now();
    loop {
        let s = env.status(&id).await?;
        let sent = s["sent_count"].as_u64().unwrap_or(0) + s["failed_count"].as_u64().unwrap_or(0);
        if first.is_none() && sent > 0 {
            first = Some((Instant::now(), sent));
        }
        if s["pending_count"] == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(args.limiter_secs * 3 + 60) {
            bail!("the limiter benchmark did not finish: {s}");
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (t0, sent0) = first.unwrap_or((started, 0));
    let elapsed = t0.elapsed().as_secs_f64();
    let rate = (n - sent0) as f64 / elapsed;
    let stats = env.sim.stats();
    let numbers = &stats.numbers[number];
    println!(
        "limiter {cap:>4} mps over {n} messages: achieved {rate:.1} mps = {:.3} of the cap, max in any 1 s window {}, refusals {:?}",
        rate / cap as f64,
        numbers.max_accepted_in_1s,
        stats.refusals_by_code
    );
    env.finish().await;
    Ok(())
}

/// A world of `n` WABAs, each its own unlimited portfolio with one HIGH number.
fn unlimited_world(n: usize) -> SimConfig {
    let mut world = SimConfig::sandbox();
    let template = world.wabas[2].clone();
    world.wabas = (0..n)
        .map(|i| {
            let mut waba = template.clone();
            waba.id = format!("77{i:08}");
            waba.name = format!("Bench {i}");
            waba.phone_numbers[0].id = format!("88{i:08}");
            waba.phone_numbers[0].display_phone_number = format!("+1 202-555-{:04}", 200 + i);
            waba.phone_numbers[0].tier = Tier::Unlimited;
            waba.phone_numbers[0].throughput_level = ThroughputLevel::High;
            for (j, t) in waba.templates.iter_mut().enumerate() {
                t.id = format!("66{i:04}{j:04}");
            }
            waba
        })
        .collect();
    world.behaviour.enforce_mps = false;
    world.behaviour.enforce_pair_rate = false;
    world.behaviour.enforce_quota = false;
    world.behaviour.sent_delay_ms = 0;
    world.behaviour.delivered_delay_ms = 0;
    world.behaviour.read_delay_ms = 0;
    world.workers = 1;
    world
}

/// Benchmark 1: Engine throughput: limits lifted, 50 000 recipients across 4 numbers, from the 202s to
/// the last message accepted and durable; plus the raw HTTP ceiling of the same simulator
/// endpoint with wrk, and CPU time per message.
async fn bench_engine(args: &Args) -> anyhow::Result<()> {
    const NUMBERS: usize = 4;
    let total = args.size(50_000);
    let world = unlimited_world(NUMBERS);
    let env = setup(args, world.clone(), |_| {}).await?;
    for waba in &world.wabas {
        env.set_mps(&waba.phone_numbers[0].id, 1_000_000).await?;
    }
    // Let the limiters read the override (they refresh every 2 s).
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    let per = total / NUMBERS as u64;
    let bodies = one_send_per_number(&world, per);
    let cpu0 = cpu_seconds();
    let submitted = Instant::now();
    // The clock starts at the first 202: from then on the engine is at work.
    let mut started = None;
    let mut ids = Vec::new();
    for body in bodies {
        ids.push(env.send_bytes(body).await?);
        started.get_or_insert_with(Instant::now);
    }
    let started = started.unwrap_or(submitted);
    let created = submitted.elapsed().as_secs_f64();
    loop {
        let mut pending = 0;
        for id in &ids {
            pending += env.status(id).await?["pending_count"].as_u64().unwrap_or(0);
        }
        if pending == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the engine benchmark did not finish ({pending} pending)");
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let stats = env.sim.stats();
    println!(
        "engine  {total} recipients on {NUMBERS} numbers: {:.0} msg/s from the first 202 to the last message accepted by Meta and recorded ({elapsed:.2} s; the {NUMBERS} requests took {created:.2} s); accepted {}, double sends {}; CPU {:.1} µs/message (daemon + simulator + webhooks)",
        total as f64 / elapsed,
        stats.accepted_total,
        stats.recipients_accepted_more_than_once,
        cpu / total as f64 * 1e6
    );
    if let Some((updates, hot)) = env.message_updates().await {
        println!(
            "hot     PostgreSQL updates of messages so far: {updates}, of which HOT (no index touched) {hot} ({:.0} %)",
            hot as f64 * 100.0 / updates.max(1) as f64
        );
    }
    if let Some(raw) = raw_ceiling(&env, &world).await {
        println!(
            "ratio   engine / raw HTTP ceiling: {:.2}",
            total as f64 / elapsed / raw
        );
    }
    env.finish().await;
    Ok(())
}

/// The simulator's send endpoint driven by wrk with keep-alive, for the raw HTTP ceiling:
/// requests per second, `None` without wrk.
async fn raw_ceiling(env: &Env, world: &SimConfig) -> Option<f64> {
    let number = &world.wabas[0].phone_numbers[0].id;
    let body = json!({"messaging_product": "whatsapp", "recipient_type": "individual",
        "to": "+5491199999999", "type": "template",
        "template": {"name": "welcome_message", "language": {"code": "es"},
            "components": [{"type": "body", "parameters": [{"type": "text", "parameter_name": "customer_name", "text": "Ana"}]}]}});
    let script = format!(
        "wrk.method = \"POST\"\nwrk.body = '{}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer sandbox-token\"\n",
        body
    );
    let dir = scratch_dir().ok()?;
    let path = dir.join("post.lua");
    std::fs::write(&path, script).ok()?;
    let url = format!("{}/v24.0/{number}/messages", env.sim.base_url());
    let out = actix_web::rt::task::spawn_blocking(move || {
        std::process::Command::new("wrk")
            .args(["-t1", "-c64", "-d10s", "-s"])
            .arg(&path)
            .arg(&url)
            .output()
    })
    .await;
    let _ = std::fs::remove_dir_all(dir);
    match out {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let rps = text
                .lines()
                .find_map(|l| l.strip_prefix("Requests/sec:"))
                .and_then(|v| v.trim().parse::<f64>().ok());
            match rps {
                Some(rps) => println!("raw     wrk -t1 -c64 -d10s POST to the simulator's send endpoint: {rps:.0} requests/s"),
                None => println!("raw     wrk printed no rate: {text}"),
            }
            rps
        }
        _ => {
            println!("raw     wrk is not installed (apt-get install wrk): no raw ceiling");
            None
        }
    }
}

/// Benchmark 4: Webhook ingestion: `delivered` updates applied durably per second, 100 per POST,
/// concurrent posters.
async fn bench_webhooks(args: &Args) -> anyhow::Result<()> {
    let n_updates = args.size(100_000);
    const POSTERS: usize = 8;
    let env = setup(args, SimConfig::sandbox(), |_| {}).await?;
    let later = chrono::Utc::now() + chrono::Duration::days(20);
    let id = env
        .send(
            NUMBER_1000,
            &phones(0, n_updates),
            json!({"scheduled_at": later.format("%Y-%m-%dT%H:%M:%SZ").to_string()}),
        )
        .await?;
    // As if every message had been sent: wamid = "wamid.bench.<id>".
    let ids: Vec<i64> = {
        use diesel::prelude::*;
        use mindo_bulk::storage::schema::messages;
        let id = id.clone();
        env.state
            .db
            .write(move |conn| {
                diesel::sql_query(format!(
                    "UPDATE messages SET state = 'sent', wamid = 'wamid.bench.' || id WHERE send_key = (SELECT send_key FROM bulk_sends WHERE id = '{id}')"
                ))
                .execute(conn)?;
                diesel::sql_query(format!(
                    "UPDATE bulk_sends SET pending_count = 0, sent_count = {n_updates}, started_at = 1 WHERE id = '{id}'"
                ))
                .execute(conn)?;
                mindo_bulk::with_backend!(conn, |c| messages::table
                    .filter(mindo_bulk::storage::sends::of_send(&id))
                    .select(messages::id)
                    .load::<i64>(c))
                .map_err(StorageError::from)
            })
            .await?
    };
    let secret = env.sim.app_secret().to_owned();
    let batches: Vec<Vec<u8>> = ids
        .chunks(100)
        .map(|chunk| {
            let statuses: Vec<Value> = chunk
                .iter()
                .map(|m| json!({"id": format!("wamid.bench.{m}"), "status": "delivered",
                    "timestamp": "1767225600", "recipient_id": "5491100000000",
                    "biz_opaque_callback_data": format!("{id}/{m}")}))
                .collect();
            serde_json::to_vec(&json!({"object": "whatsapp_business_account", "entry": [{"id": "102938475610003",
                "changes": [{"field": "messages", "value": {"messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": "12025550103", "phone_number_id": NUMBER_1000},
                    "statuses": statuses}}]}]}))
            .unwrap_or_default()
        })
        .collect();
    let batches = Arc::new(batches);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let cpu0 = cpu_seconds();
    let mut posters = Vec::new();
    for _ in 0..POSTERS {
        let (batches, next, secret) = (batches.clone(), next.clone(), secret.clone());
        let url = format!("{}/webhooks/meta/", env.base);
        posters.push(actix_web::rt::spawn(async move {
            let client = awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish();
            let mut failures = 0u64;
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(body) = batches.get(i) else { break };
                let signature = mindo_bulk::simulator::signature(secret.as_bytes(), body);
                let res = client
                    .post(&url)
                    .insert_header(("X-Hub-Signature-256", signature))
                    .content_type("application/json")
                    .send_body(body.clone())
                    .await;
                if !matches!(res, Ok(r) if r.status().is_success()) {
                    failures += 1;
                }
            }
            failures
        }));
    }
    let mut failures = 0;
    for p in posters {
        failures += p.await.unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let s = env.status(&id).await?;
    println!(
        "webhook {n_updates} delivered updates, 100 per POST, {POSTERS} posters: {:.0} updates/s applied durably ({elapsed:.2} s); failed POSTs {failures}; delivered_count {}; CPU {:.1} µs/update",
        n_updates as f64 / elapsed,
        s["delivered_count"],
        cpu / n_updates as f64 * 1e6
    );
    env.finish().await;
    Ok(())
}

/// Benchmark 5: Memory: RSS growth per in-flight recipient with 10 sends of 100 000 running.
async fn bench_memory(args: &Args) -> anyhow::Result<()> {
    const SENDS: u64 = 10;
    let per = args.size(100_000);
    let env = setup(args, SimConfig::sandbox(), |_| {}).await?;
    // A slow number keeps all of them in flight: the actors run, page and offer.
    env.set_mps(NUMBER_1000, 5).await?;
    actix_web::rt::time::sleep(Duration::from_millis(2_500)).await;
    let before = rss_bytes();
    let mut ids = Vec::new();
    for i in 0..SENDS {
        ids.push(
            env.send(NUMBER_1000, &phones(i * per, per), json!({}))
                .await?,
        );
    }
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    let after = rss_bytes();
    let mut pending = 0;
    for id in &ids {
        pending += env.status(id).await?["pending_count"].as_u64().unwrap_or(0);
    }
    println!(
        "memory  {SENDS} sends × {per} recipients in flight ({pending} pending): RSS {:.1} MiB → {:.1} MiB, {:.0} B per in-flight recipient",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / (SENDS * per) as f64
    );
    env.finish().await;
    Ok(())
}

/// Concurrent clients of the burst benchmark, and recipients in each one's send.
const BURST_CLIENTS: usize = 16;
const BURST_RECIPIENTS: u64 = 100_000;

/// A `mindo-bulk serve --sandbox` child process (the binary next to this one), so that its
/// memory is measured apart from the clients'.
struct Daemon {
    child: std::process::Child,
    base: String,
    key: String,
    _dir: ScratchDir,
}

impl Daemon {
    fn start(concurrent_creates: Option<usize>) -> anyhow::Result<Daemon> {
        use std::io::BufRead;
        let dir = ScratchDir(scratch_dir()?);
        let binary = std::env::current_exe()?
            .parent()
            .context("the benchmark's directory")?
            .join("mindo-bulk");
        let mut command = std::process::Command::new(&binary);
        command
            .args(["serve", "--sandbox"])
            .env("MINDO_BIND", "127.0.0.1:0")
            .env(
                "MINDO_DATABASE_URL",
                format!("sqlite://{}", dir.0.join("burst.db").display()),
            )
            .env("MINDO_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        if let Some(n) = concurrent_creates {
            command.env("MINDO_MAX_CONCURRENT_CREATES", n.to_string());
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("the daemon's stdout")?;
        let (mut base, mut key) = (None, None);
        let mut lines = std::io::BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let line = line?;
            if let Some(k) = line.split("API key: ").nth(1) {
                key = Some(k.trim().to_owned());
            }
            if let Some(url) = line.split_whitespace().find(|w| w.contains("/send-bulk/")) {
                base = url.split("/api/").next().map(str::to_owned);
                break;
            }
        }
        // Whatever it prints later is read and dropped: a closed pipe would fail its writes.
        std::thread::spawn(move || lines.for_each(drop));
        Ok(Daemon {
            child,
            base: base.context("the daemon printed no URL")?,
            key: key.context("the daemon printed no API key")?,
            _dir: dir,
        })
    }

    /// `VmRSS` and `VmHWM` (the peak) of the daemon, in bytes.
    fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .map_or(0, |kib| kib * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill only sends a signal to our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A scratch directory removed on drop.
struct ScratchDir(std::path::PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Benchmark 7: a burst of creates: [`BURST_CLIENTS`] clients each post a send of
/// [`BURST_RECIPIENTS`] (a tenth with `--quick`) at the same moment to a daemon in its own
/// process; its peak RSS, and whether every send was created (a 503 is retried after its `Retry-After`, as the `send`
/// command does). Sends are scheduled ahead: only creation is measured.
async fn bench_burst(args: &Args, concurrent_creates: Option<usize>) -> anyhow::Result<()> {
    let per = args.size(BURST_RECIPIENTS);
    let daemon = Daemon::start(concurrent_creates)?;
    let later = chrono::Utc::now() + chrono::Duration::days(20);
    let extra = json!({"scheduled_at": later.format("%Y-%m-%dT%H:%M:%SZ").to_string()});
    let bodies: Vec<bytes::Bytes> = (0..BURST_CLIENTS as u64)
        .map(|i| {
            let phones = phones(i * per, per);
            send_body(NUMBER_1000, &phones, extra.clone()).into()
        })
        .collect();
    let body_mib = bodies[0].len() as f64 / 1048576.0;
    let (rss_before, _) = daemon.memory();
    let http = awc::Client::builder()
        .timeout(Duration::from_secs(600))
        .finish();
    let url = format!("{}/api/v1/meta-templates/send-bulk/", daemon.base);
    let started = Instant::now();
    let posts = bodies.into_iter().map(|body| {
        let (http, url, key) = (http.clone(), url.clone(), daemon.key.clone());
        async move {
            let (mut refusals, mut dropped) = (0u32, 0u32);
            loop {
                let res = http
                    .post(&url)
                    .insert_header(("X-API-Key", key.as_str()))
                    .content_type("application/json")
                    .send_body(body.clone())
                    .await;
                // A connection lost is tried again, as the `send` command does, and counted.
                let Ok(res) = res else {
                    dropped += 1;
                    if dropped > 3 {
                        return (None, refusals, dropped);
                    }
                    continue;
                };
                let status = res.status().as_u16();
                if status != 503 {
                    return (Some(status), refusals, dropped);
                }
                refusals += 1;
                let wait = res
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1);
                actix_web::rt::time::sleep(Duration::from_secs(wait)).await;
            }
        }
    });
    let outcomes = futures_util::future::join_all(posts).await;
    let elapsed = started.elapsed().as_secs_f64();
    let (_, peak) = daemon.memory();
    let created = outcomes.iter().filter(|(s, _, _)| *s == Some(202)).count();
    let refused: u32 = outcomes.iter().map(|(_, r, _)| r).sum();
    let dropped: u32 = outcomes.iter().map(|(_, _, d)| d).sum();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|(s, _, _)| *s != Some(202))
        .map(|(s, _, _)| s.map_or("no answer".into(), |s| s.to_string()))
        .collect();
    println!(
        "burst   {BURST_CLIENTS} × {per} recipients ({body_mib:.1} MiB each) at once, concurrent creates {}: peak RSS {:.0} MiB (idle {:.0} MiB), {created}/{BURST_CLIENTS} created in {elapsed:.1} s, {refused} 503s and {dropped} lost connections retried{}",
        concurrent_creates.map_or("default".into(), |n| n.to_string()),
        peak as f64 / 1048576.0,
        rss_before as f64 / 1048576.0,
        if failed.is_empty() { String::new() } else { format!(", failed: {}", failed.join(", ")) },
    );
    Ok(())
}
