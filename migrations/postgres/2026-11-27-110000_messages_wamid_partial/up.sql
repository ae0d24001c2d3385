-- A new message has no wamid yet: leaving NULLs out of the index saves writing one entry per
-- recipient when a send is created (lookups by wamid = ? still use it).
DROP INDEX messages_wamid;
CREATE UNIQUE INDEX messages_wamid ON messages (wamid) WHERE wamid IS NOT NULL;
