DROP INDEX messages_wamid;
CREATE UNIQUE INDEX messages_wamid ON messages (wamid);
