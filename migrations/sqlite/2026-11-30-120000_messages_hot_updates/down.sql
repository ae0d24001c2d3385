DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (bulk_send_id, state, next_attempt_at, id);
