CREATE TEMP TABLE messages_kept AS
    SELECT m.*, b.id AS kept_send_id
    FROM messages AS m JOIN bulk_sends AS b ON b.send_key = m.send_key;
DROP TABLE messages;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bulk_send_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    variables TEXT NOT NULL,
    button_variables TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    dispatched_at BIGINT,
    wamid TEXT,
    sent_at BIGINT,
    delivered_at BIGINT,
    read_at BIGINT,
    failed_at BIGINT,
    error_code BIGINT,
    error_message TEXT,
    UNIQUE (bulk_send_id, seq)
);
INSERT INTO messages (id, bulk_send_id, seq, recipient, variables, button_variables, state,
        attempts, next_attempt_at, dispatched_at, wamid, sent_at, delivered_at, read_at,
        failed_at, error_code, error_message)
    SELECT id, kept_send_id, seq, recipient, variables, button_variables, state,
        attempts, next_attempt_at, dispatched_at, wamid, sent_at, delivered_at, read_at,
        failed_at, error_code, error_message
    FROM messages_kept;
DROP TABLE messages_kept;
CREATE UNIQUE INDEX messages_wamid ON messages (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_due ON messages (bulk_send_id, next_attempt_at, id);
DROP INDEX bulk_sends_send_key;
ALTER TABLE bulk_sends DROP COLUMN send_key;
