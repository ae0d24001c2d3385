-- Several daemons on one PostgreSQL: the nodes, one lease per portfolio, and the change feed
-- through which a node tells the owner of a send what it changed (controls, webhook effects,
-- new sends). Times come from the database clock.
CREATE TABLE cluster_nodes (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    bind TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    left_at TIMESTAMPTZ
);

-- The unit of ownership is the portfolio: its numbers share the 24 h unique-recipient quota.
-- `epoch` grows at every acquisition and fences the claims of an older owner.
CREATE TABLE portfolio_leases (
    portfolio_id TEXT PRIMARY KEY,
    owner TEXT,
    epoch BIGINT NOT NULL DEFAULT 0,
    expires_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    acquired_at TIMESTAMPTZ
);

CREATE TABLE cluster_events (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Readers look at a recent window (see storage::cluster::recent_events).
CREATE INDEX cluster_events_created_at ON cluster_events (created_at);
