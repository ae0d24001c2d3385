DROP INDEX bulk_sends_callback_status;
DROP TABLE callback_events;
