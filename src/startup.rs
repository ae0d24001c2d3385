//! Building and running the daemon: `Application::build(config)` opens the database,
//! applies migrations and binds the listener (port 0 picks a free port, as tests do);
//! `run_until_stopped` serves until SIGTERM/SIGINT, then stops gracefully: no new
//! connections, in-flight requests finish within `MINDO_SHUTDOWN_TIMEOUT_SECS`.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::middleware::{ErrorHandlers, NormalizePath, TrailingSlash};
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Config;
use crate::engine::Engine;
use crate::http;
use crate::storage::Db;

/// What every request handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub db: Db,
    pub config: Arc<Config>,
    pub clock: SharedClock,
    pub engine: Engine,
}

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
        let db = tokio::task::spawn_blocking(move || -> anyhow::Result<Db> {
            let db = Db::connect(&url, pool_size)?;
            let applied = db.migrate()?;
            if !applied.is_empty() {
                tracing::info!(versions = ?applied, "Applied database migrations.");
            }
            Ok(db)
        })
        .await
        .context("the database setup task failed")??;

        let listener = TcpListener::bind(&config.bind)
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        let port = listener.local_addr()?.port();
        let config = Arc::new(config);
        let engine = Engine::start(db.clone(), config.clone(), clock.clone());
        let state = AppState {
            db,
            config,
            clock,
            engine,
        };
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
            .app_data(data.clone())
            .configure(http::configure(body_limit))
    })
    .listen(listener)?
    .shutdown_timeout(shutdown_timeout)
    .run();
    Ok(server)
}
