-- A name is held by one live daemon process: each process draws an instance id at start, and
-- the node row names the server backend of its lease keeper's connection. A process that dies
-- (kill -9, power loss) loses that backend at once, so a restart under the same
-- MINDO_NODE_NAME takes the name over without waiting for its heartbeat to go stale; two
-- daemons given the same name by mistake cannot renew each other's leases.
ALTER TABLE cluster_nodes ADD COLUMN instance TEXT NOT NULL DEFAULT '';
ALTER TABLE cluster_nodes ADD COLUMN backend_pid INTEGER;
