//! Meta's WhatsApp Cloud API as seen from here: the Graph API client, Meta's error body and
//! what the engine does about each code, and the webhook payloads.
//!
//! - `client`: `GraphClient` (awc): send a template, read numbers, list templates.
//! - `error`: `MetaError`, `ErrorAction`, `SendFailure`.
//! - `webhook`: lenient parsing of webhook notifications into events.

pub mod client;
pub mod error;
pub mod webhook;
