//! Pure types and rules, no I/O: what the engine and the HTTP layer decide with.
//!
//! - `api_key`: the key format, generation, hashing and constant-time verification.

pub mod api_key;
