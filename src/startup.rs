//! Building and running the daemon: `Application::build(config)` opens the database,
//! applies migrations, starts the engine (which resumes every unfinished send) and binds the
//! listener (port 0 picks a free port, as tests do). `serve_until_signalled` runs it under
//! systemd's eyes: `READY=1` once the engine has resumed, watchdog pings while the engine
//! answers, and on SIGTERM/SIGINT a drain: new sends are refused, nothing new is dispatched,
//! calls in flight to Meta finish and their outcomes are written, webhooks keep being
//! answered until the listener closes, then the process exits 0.

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::{from_fn, ErrorHandlers, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::domain::suppression::KeywordMatcher;
use crate::engine::Engine;
use crate::http;
use crate::http::limits::TenantLimits;
use crate::http::state::AppState;
use crate::storage::Db;

/// A bound, not yet running, daemon.
pub struct Application {
    port: u16,
    server: Server,
    state: AppState,
}

impl Application {
    /// Builds the daemon on the wall clock.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Builds the daemon with an injected clock (tests drive time by hand).
    pub async fn build_with_clock(
        config: Config,
        clock: SharedClock,
    ) -> anyhow::Result<Application> {
        let url = config.database_url.clone();
        let pool_size = config.db_pool_size;
        let key_config = config.clone();
        let (db, secret_key) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let db = Db::connect(&url, pool_size)?;
            let applied = db.migrate()?;
            if !applied.is_empty() {
                tracing::info!(versions = ?applied, "Applied database migrations.");
            }
            let secret_key = crate::secrets::prepare(&key_config, &mut *db.get()?)?;
            Ok((db, secret_key))
        })
        .await
        .context("the database setup task failed")??;

        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let config = Arc::new(config);
        crate::telemetry::metrics_handle();
        let engine = Engine::start(
            db.clone(),
            config.clone(),
            clock.clone(),
            secret_key.clone(),
        );
        let create_gate = http::create_gate::CreateGate::new(config.max_concurrent_creates);
        let live = crate::live::LiveHub::start(db.clone(), clock.clone());
        let config_keywords = (
            config.opt_out_keywords.clone(),
            config.opt_in_keywords.clone(),
        );
        let state = AppState {
            live,
            db,
            tenant_limits: Arc::new(TenantLimits::new(config.tenant_rps, clock.clone())),
            config,
            clock,
            engine,
            secret_key,
            draining: Arc::new(AtomicBool::new(false)),
            create_gate,
            keywords: Arc::new(KeywordMatcher::new(&config_keywords.0, &config_keywords.1)),
        };
        if state.config.sync_interval_secs > 0 {
            crate::sync::spawn_periodic(
                state.db.clone(),
                state.config.graph_client(),
                state.clock.clone(),
                state.secret_key.clone(),
                Duration::from_secs(state.config.sync_interval_secs),
            );
        }
        let server = serve(listener, state.clone())?;
        Ok(Application {
            port,
            server,
            state,
        })
    }

    /// The port the listener is bound to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle that stops the HTTP server.
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// The shared state (database, config, clock).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until the server is stopped by a signal (graceful) or fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn serve(listener: TcpListener, state: AppState) -> anyhow::Result<Server> {
    let body_limit = state.config.body_limit_bytes;
    let shutdown_timeout = state.config.shutdown_timeout_secs;
    let data = web::Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .wrap(ErrorHandlers::new().default_handler(http::error::json_error_bodies))
            .wrap(NormalizePath::new(TrailingSlash::Trim))
            .wrap(tracing_actix_web::TracingLogger::default())
            .wrap(from_fn(http::operations::record_request))
            .wrap(from_fn(http::events::token_out_of_url))
            .app_data(data.clone())
            .configure(http::configure(body_limit))
    })
    .listen(listener)?
    .shutdown_timeout(shutdown_timeout)
    // Signals are handled by `serve_until_signalled`, which drains the engine first.
    .disable_signals()
    .run();
    Ok(server)
}

/// How long a clean stop waits for calls in flight to Meta (beyond their own timeout).
const DRAIN_SLACK: Duration = Duration::from_secs(5);

/// Runs the daemon until SIGTERM or SIGINT, then drains and stops (see the module doc).
pub async fn serve_until_signalled(app: Application) -> anyhow::Result<()> {
    let state = app.state().clone();
    let handle = app.server_handle();
    let server = actix_web::rt::spawn(app.run_until_stopped());

    // Ready once the engine has resumed every unfinished send.
    while !state.engine.is_resumed().await {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    notify(&[sd_notify::NotifyState::Ready]);
    if let Some(interval) = sd_notify::watchdog_enabled() {
        spawn_watchdog(state.clone(), interval / 2);
    }

    wait_for_signal().await;
    tracing::info!("Stopping: new sends are refused, sends in flight finish.");
    notify(&[sd_notify::NotifyState::Stopping]);
    state.draining.store(true, Ordering::SeqCst);
    state.live.stop();
    let timeout = Duration::from_secs(state.config.graph_timeout_secs) + DRAIN_SLACK;
    if !state.engine.drain(timeout).await {
        tracing::warn!(
            "Some calls to Meta did not finish in time; they are reconciled at the next start."
        );
    }
    // On a cluster, the other nodes take this node's portfolios at their next heartbeat.
    let engine = state.engine.clone();
    let _ = tokio::task::spawn_blocking(move || engine.leave_cluster(Duration::from_secs(5))).await;
    handle.stop(true).await;
    server.await??;
    state.engine.stop();
    Ok(())
}

/// Pings systemd's watchdog while the engine answers within the interval.
fn spawn_watchdog(state: AppState, every: Duration) {
    actix_web::rt::spawn(async move {
        let mut ticker = actix_web::rt::time::interval(every.max(Duration::from_millis(100)));
        loop {
            ticker.tick().await;
            // Once stopping, systemd's stop timeout governs; a ping could even block the
            // event loop on a notify socket nobody reads any more.
            if state.draining.load(Ordering::SeqCst) {
                return;
            }
            let alive = actix_web::rt::time::timeout(every, state.engine.is_resumed()).await;
            if matches!(alive, Ok(true)) {
                notify(&[sd_notify::NotifyState::Watchdog]);
            } else {
                tracing::warn!("The engine did not answer the watchdog check.");
            }
        }
    });
}

fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        tracing::debug!(error = %err, "Could not notify systemd.");
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
