-- Client callbacks: an outbox of events for sends with a callback_url. Status-change events
-- are inserted in the transaction that changes the status; the delivery actor posts each
-- send's events in id order and records the outcome here. Keep migrations/postgres in step
-- with this file.
CREATE TABLE callback_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bulk_send_id TEXT NOT NULL REFERENCES bulk_sends (id) ON DELETE CASCADE,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    -- The exact JSON body posted (and signed) on every attempt.
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    -- Set when the event is given up (24 h of failed attempts).
    failed_at BIGINT,
    last_error TEXT
);
-- Events still to deliver, by due time.
CREATE INDEX callback_events_due ON callback_events (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
-- A send's events in order (its next event, its latest event).
CREATE INDEX callback_events_send ON callback_events (bulk_send_id, id);
-- The sends that may owe a progress event.
CREATE INDEX bulk_sends_callback_status ON bulk_sends (status)
    WHERE callback_url IS NOT NULL;
