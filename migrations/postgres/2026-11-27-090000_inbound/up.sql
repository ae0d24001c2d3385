-- Inbound user messages, minimally: when each user last wrote to each of our numbers, so the
-- 24 h customer-service window is known. Keep migrations/sqlite in step with this file.
CREATE TABLE inbound_contacts (
    phone_number_id TEXT NOT NULL,
    wa_id TEXT NOT NULL,
    last_inbound_at BIGINT NOT NULL,
    PRIMARY KEY (phone_number_id, wa_id)
);
