-- The same columns as on PostgreSQL (unused here: SQLite is one node).
ALTER TABLE cluster_nodes ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE cluster_nodes ADD COLUMN backend_pid INTEGER;
