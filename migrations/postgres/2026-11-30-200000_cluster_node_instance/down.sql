ALTER TABLE cluster_nodes DROP COLUMN backend_pid;
ALTER TABLE cluster_nodes DROP COLUMN instance;
