-- The same change as on PostgreSQL (the foreign key from messages to bulk_sends is checked
-- for every message a send is created with, and guards nothing the code does not: messages are
-- inserted only with their send, and nothing deletes a send). SQLite cannot drop a constraint,
-- so the table is made again without it: its rows are kept aside, the table and its indexes
-- are dropped and created anew, and the rows go back with their ids (AUTOINCREMENT carries on
-- from the largest). A table is not renamed, so its stored definition stays as written here.
CREATE TEMP TABLE messages_kept AS SELECT * FROM messages;
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
INSERT INTO messages SELECT * FROM messages_kept;
DROP TABLE messages_kept;
CREATE UNIQUE INDEX messages_wamid ON messages (wamid) WHERE wamid IS NOT NULL;
CREATE INDEX messages_due ON messages (bulk_send_id, next_attempt_at, id);
