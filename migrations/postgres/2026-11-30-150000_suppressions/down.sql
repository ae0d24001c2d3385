ALTER TABLE bulk_sends DROP COLUMN suppressed_count;
DROP TABLE suppressions;
