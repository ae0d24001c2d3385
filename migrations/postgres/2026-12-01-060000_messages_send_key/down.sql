ALTER TABLE messages ADD COLUMN bulk_send_id TEXT;
UPDATE messages AS m SET bulk_send_id = b.id FROM bulk_sends AS b WHERE b.send_key = m.send_key;
ALTER TABLE messages ALTER COLUMN bulk_send_id SET NOT NULL;
ALTER TABLE messages DROP COLUMN send_key;
ALTER TABLE messages ADD CONSTRAINT messages_bulk_send_id_seq_key UNIQUE (bulk_send_id, seq);
CREATE INDEX messages_due ON messages (bulk_send_id, next_attempt_at, id);
ALTER TABLE bulk_sends DROP COLUMN send_key;
