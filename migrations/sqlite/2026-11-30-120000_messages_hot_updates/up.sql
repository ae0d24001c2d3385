-- The due-message lookup indexes the send and the due time only and checks the state on the
-- row, so a message's changes of state (four or five in its life) do not rewrite an index
-- entry each (the same index as on PostgreSQL, where it makes those updates HOT).
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (bulk_send_id, next_attempt_at, id);
