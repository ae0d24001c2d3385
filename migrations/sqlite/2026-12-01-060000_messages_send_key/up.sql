-- The same change as on PostgreSQL: messages name their send by a number (`send_key`), not
-- by the send's 36-character id, so the two indexes that begin with the send hold 8 bytes
-- instead of 36 for it. A new send's key is the largest so far plus one (SQLite has one
-- writer); the sends stored already take their rowid. The messages' table is made again as
-- in 2026-11-30-220000, rows and ids kept; a message whose send is missing would stop the
-- migration (send_key NOT NULL) rather than be dropped.
ALTER TABLE bulk_sends ADD COLUMN send_key BIGINT NOT NULL DEFAULT 0;
UPDATE bulk_sends SET send_key = rowid;
CREATE UNIQUE INDEX bulk_sends_send_key ON bulk_sends (send_key);
CREATE TEMP TABLE messages_kept AS
    SELECT m.*, b.send_key AS kept_send_key
    FROM messages AS m LEFT JOIN bulk_sends AS b ON b.id = m.bulk_send_id;
DROP TABLE messages;
CREATE TABLE messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    send_key BIGINT NOT NULL,
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
    UNIQUE (send_key, seq)
);
INSERT INTO messages (id, send_key, seq, recipient, variables, button_variables, state,
        attempts, next_attempt_at, dispatched_at, wamid, sent_at, delivered_at, read_at,
        failed_at, error_code, error_message)
    SELECT id, kept_send_key, seq, recipient, variables, button_variables, state,
        attempts, next_attempt_at, dispatched_at, wamid, sent_at, delivered_at, read_at,
        failed_at, error_code, error_message
    FROM messages_kept;
DROP TABLE messages_kept;
CREATE UNIQUE INDEX messages_wamid ON messages (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_due ON messages (send_key, next_attempt_at, id);
