//! mindo-bulk: a daemon that sends WhatsApp Business template messages in bulk through
//! Meta's Cloud API, paced to each sender number's limits and followed to delivered, read
//! or failed through Meta's webhooks.
//!
//! # Layout
//! - [`cli`] — the `mindo-bulk` commands (serve, migrate, tenant, api-key, waba, number,
//!   simulator, send, status).
//! - [`client`] — `send` and `status`: CSV → send-bulk request, submission with an
//!   Idempotency-Key and retries, a progress bar until the send finishes.
//! - [`config`] — settings from defaults, a TOML file and `MINDO_*` variables.
//! - [`telemetry`] — logging, and the Prometheus metrics registry (`/metrics`).
//! - [`sandbox`] — `serve --sandbox`: the simulator in-process and a seeded demo tenant.
//! - [`secrets`] — the key that encrypts secrets at rest: from the environment, a file, or
//!   created on first start; checked against the database at every start.
//! - [`startup`] — `Application::build(config)` → a bound server; `run_until_stopped()`.
//! - [`clock`] — time as an injectable dependency.
//! - [`domain`] — pure types and rules (API keys, phones, a send's recipients, templates,
//!   tiers, message states and engine steps, what a send does with Meta's answers, pacing,
//!   ETA, opt-out keywords and the order of stop/resume signals), unit-tested, no I/O.
//! - [`engine`] — the actors (supervisor, bulk sends, phone limiters), the DB writer, webhook
//!   ingestion (what a Meta notification changes, opt-outs included, applied in one write),
//!   and client callback delivery (signed events to a send's `callback_url`, retried, from a
//!   persisted outbox).
//! - [`meta`] — Meta's Cloud API: Graph client, error classification, webhook payloads.
//! - [`http`] — actix-web routes (the suppression list's among them), the handlers' shared
//!   state, the `X-API-Key` extractor, the documented error body (its codes an enum), the
//!   operator endpoints (`/metrics`, `/openapi.json`) and the OpenAPI document; send-bulk's
//!   gate of concurrent creates and its reader of recipients into compact records.
//! - [`live`] — live status for the dashboard: the hub behind the server-sent event streams
//!   (re-reads followed sends, pushes changes, drops slow clients) and dashboard tokens.
//! - [`sync`] — WABA sync: numbers, templates and portfolio read from the Graph API.
//! - [`storage`] — diesel over SQLite or PostgreSQL, migrations, one file per aggregate.
//! - [`simulator`] — the Meta simulator (Graph API endpoints, limits, signed status webhooks,
//!   faults, counters) used by tests, `--sandbox` and benchmarks. It reads templates with its own
//!   code, not `domain::template`, so a misreading of Meta's JSON cannot pass on both sides.

pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod http;
pub mod live;
pub mod meta;
pub mod sandbox;
pub mod secrets;
pub mod simulator;
pub mod startup;
pub mod storage;
pub mod sync;
pub mod telemetry;
