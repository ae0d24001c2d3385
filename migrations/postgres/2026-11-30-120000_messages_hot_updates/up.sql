-- Cheap updates of messages. A message changes state four or five times (pending, dispatching,
-- sent, delivered, read); an index that names `state` (even in a partial index's predicate)
-- makes every one of those changes write a new entry into every index of the table. The
-- due-message lookup indexes the send and the due time only and checks the state on the row,
-- so a change of state (and of the times beside it) is a HOT update: no index is touched, and
-- the new row version goes on the same page, which `fillfactor` leaves room for: a page's rows
-- are all written four or five times within a second or two, before pruning can reclaim the
-- old versions, so half of each page is left free (80 % full gave 20 % HOT updates in
-- `mindo-bench`'s engine run, 50 % gives 63 %). Accepting a message still writes the
-- `messages_wamid` entry it needs, so about three updates in four can be HOT.
DROP INDEX messages_due;
CREATE INDEX messages_due ON messages (bulk_send_id, next_attempt_at, id);
ALTER TABLE messages SET (fillfactor = 50);
