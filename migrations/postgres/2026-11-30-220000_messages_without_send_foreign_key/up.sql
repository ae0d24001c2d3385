-- A send's messages are inserted only with the send itself, in the transaction that stores the
-- send, and nothing deletes a send, so the foreign key from messages to bulk_sends guards
-- nothing the code does not already. It cost about half of the server's time in creating a
-- send: PostgreSQL checks it row by row, with a `FOR KEY SHARE` lock on the send's row for
-- each of its (up to 100 000) messages (bench/README.md, issue 13).
ALTER TABLE messages DROP CONSTRAINT messages_bulk_send_id_fkey;
