//! Inbound user messages, kept minimally: when each user (`wa_id`) last wrote to each of our
//! numbers. That is what the 24 h customer-service window needs (sends inside it cost no
//! messaging-limit quota); the messages themselves are not stored.

use diesel::prelude::*;

use super::schema::inbound_contacts;
use super::{DbConnection, StorageError};
use crate::with_backend;

/// One inbound message, reduced to what the window needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundContact {
    /// Our number that received it (Meta's phone-number id).
    pub phone_number_id: String,
    /// The user's WhatsApp id (phone digits).
    pub wa_id: String,
    /// When the user wrote, unix ms.
    pub at_ms: i64,
}

/// Records inbound messages: each (number, user) keeps its latest time, so a late or repeated
/// webhook never moves it back. Returns how many rows were created or moved forward.
pub fn record_inbound(
    conn: &mut DbConnection,
    contacts: &[InboundContact],
) -> Result<usize, StorageError> {
    let mut changed = 0;
    for c in contacts {
        let moved = diesel::update(
            inbound_contacts::table
                .filter(inbound_contacts::phone_number_id.eq(&c.phone_number_id))
                .filter(inbound_contacts::wa_id.eq(&c.wa_id))
                .filter(inbound_contacts::last_inbound_at.lt(c.at_ms)),
        )
        .set(inbound_contacts::last_inbound_at.eq(c.at_ms))
        .execute(conn)?;
        if moved > 0 {
            changed += moved;
            continue;
        }
        let insert = diesel::insert_into(inbound_contacts::table)
            .values((
                inbound_contacts::phone_number_id.eq(&c.phone_number_id),
                inbound_contacts::wa_id.eq(&c.wa_id),
                inbound_contacts::last_inbound_at.eq(c.at_ms),
            ))
            .on_conflict((inbound_contacts::phone_number_id, inbound_contacts::wa_id))
            .do_nothing();
        changed += with_backend!(conn, |c| insert.execute(c))?;
    }
    Ok(changed)
}

/// When `wa_id` last wrote to our number `phone_number_id` (unix ms), if ever.
pub fn last_inbound_at(
    conn: &mut DbConnection,
    phone_number_id: &str,
    wa_id: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(inbound_contacts::table
        .filter(inbound_contacts::phone_number_id.eq(phone_number_id))
        .filter(inbound_contacts::wa_id.eq(wa_id))
        .select(inbound_contacts::last_inbound_at)
        .first(conn)
        .optional()?)
}
