-- netrun schema, version 6: the deferred queue of every attempt is kept, applied or not.
-- Never edit this file once landed.

-- 'applied': the attempt succeeded and its queue was applied to the net (its actions are
-- also in history); 'discarded': the attempt failed and the net never saw the queue.
ALTER TABLE deferred_actions ADD COLUMN status TEXT NOT NULL DEFAULT 'discarded'
    CHECK (status IN ('applied', 'discarded'));
