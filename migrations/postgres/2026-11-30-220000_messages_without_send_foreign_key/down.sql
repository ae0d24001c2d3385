ALTER TABLE messages ADD CONSTRAINT messages_bulk_send_id_fkey
    FOREIGN KEY (bulk_send_id) REFERENCES bulk_sends (id) ON DELETE CASCADE;
