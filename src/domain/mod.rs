//! Pure types and rules, no I/O: what the engine and the HTTP layer decide with. Time is
//! always passed in.
//!
//! - `api_key`: the key format, generation, hashing and constant-time verification.
//! - `phone`: recipients' numbers, normalised to E.164 with a numbering-plan library.
//! - `recipients`: a send's recipients checked (phones in parallel, values against the
//!   template) and deduplicated, the first occurrence winning.
//! - `template`: a Meta template's expected parameters, validation and rendering.
//! - `tier`: Meta's messaging-limit tiers and throughput levels.
//! - `message`: the per-message state machine, counters and the bulk-send status.
//! - `dispatch`: what a send does with a dispatch attempt's result (Meta's answer by error
//!   class, retries and their limit, an unknown outcome's reconciliation).
//! - `pacing`: the limiter's decisions: throughput gate, portfolio quota, pair rate, fair
//!   round robin between the sends of a number.
//! - `eta`: quota (`quota_info`) and estimated-time arithmetic.
//! - `callback`: client callback events: envelope, signature, progress rate, retry schedule.
//! - `egress`: what a callback may reach: the address classifier and the callback URL policy.
//! - `secret_box`: secrets encrypted at rest (XChaCha20-Poly1305), the key and its id.
//! - `suppression`: opt-outs: keyword matching, scopes, and the ordering of stop/resume signals.

pub mod api_key;
pub mod callback;
pub mod dispatch;
pub mod egress;
pub mod eta;
pub mod lifecycle;
pub mod message;
pub mod pacing;
pub mod phone;
pub mod recipients;
pub mod secret_box;
pub mod suppression;
pub mod template;
pub mod tier;
