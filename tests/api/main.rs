//! Integration tests: the real daemon on port 0, a fresh database per test (SQLite, or
//! PostgreSQL when `MINDO_TEST_POSTGRES_URL` is set).

// A panic in a test is a failed test: unwrapping is how these tests assert.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod auth;
mod bad_input;
mod bulk_sends;
mod callbacks;
mod cli;
mod client;
mod cluster;
mod dashboard;
mod engine;
mod errors;
mod faults;
mod health;
mod helpers;
mod live;
mod meta;
mod metrics;
mod migrations;
mod openapi;
mod outage;
mod reliability;
mod sandbox;
mod security;
mod send_bulk;
mod simulator;
mod storage;
mod suppressions;
mod systemd;
mod webhooks;
