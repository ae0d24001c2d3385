//! Meta webhook bodies: `meta::webhook::parse` (after the signature check, any bytes can reach
//! it), then what ingestion derives from the events (`WebhookChanges::from_notification`, no
//! I/O). Neither may panic; a parsed notification serialises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mindo_bulk::engine::ingest::WebhookChanges;
use mindo_bulk::meta::webhook;

fuzz_target!(|body: &[u8]| {
    if let Ok(notification) = webhook::parse(body) {
        let changes = WebhookChanges::from_notification(&notification, 1_767_225_600_000);
        let _ = changes.is_empty();
        serde_json::to_vec(&notification).expect("a notification serialises");
    }
});
