//! Integration tests: the real daemon on port 0, a fresh database per test (SQLite, or
//! PostgreSQL when `MINDO_TEST_POSTGRES_URL` is set).

mod accounts;
mod auth;
mod bulk_sends;
mod callbacks;
mod cli;
mod client;
mod engine;
mod errors;
mod health;
mod helpers;
mod meta;
mod metrics;
mod migrations;
mod openapi;
mod reliability;
mod sandbox;
mod send_bulk;
mod simulator;
mod systemd;
mod webhooks;
