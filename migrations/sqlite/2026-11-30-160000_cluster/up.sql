-- SQLite is one node: these tables stay empty here (the daemon holds a lock on the database
-- file instead). They exist so that both backends have the same tables.
CREATE TABLE cluster_nodes (
    name TEXT PRIMARY KEY NOT NULL,
    version TEXT NOT NULL,
    bind TEXT NOT NULL,
    started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    heartbeat_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    left_at TEXT
);

CREATE TABLE portfolio_leases (
    portfolio_id TEXT PRIMARY KEY NOT NULL,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    acquired_at TEXT
);

CREATE TABLE cluster_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE INDEX cluster_events_created_at ON cluster_events (created_at);
