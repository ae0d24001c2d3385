DROP INDEX cluster_events_created_at;
DROP TABLE cluster_events;
DROP TABLE portfolio_leases;
DROP TABLE cluster_nodes;
