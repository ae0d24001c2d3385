-- The time (unix ms) of the Meta event behind a template's stored status, so that a late or reordered
-- message_template_status_update older than what is stored is ignored instead of applied.
ALTER TABLE templates ADD COLUMN status_event_at BIGINT;
