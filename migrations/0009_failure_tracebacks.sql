-- netrun schema, version 9: every failure keeps its formatted traceback.
-- Never edit this file once landed.

-- The traceback of a failed attempt (NULL for a finished or cancelled one, or for a worker that
-- died: it left none), and of the failure that dead-lettered a packet (NULL for a cancel).
ALTER TABLE epoch_attempts ADD COLUMN traceback TEXT;
ALTER TABLE dead_letters ADD COLUMN traceback TEXT;
