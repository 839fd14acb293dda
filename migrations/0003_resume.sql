-- netrun schema, version 3: what resuming a net needs beyond version 2.
-- Never edit this file once landed.

-- The epoch's input salvo as JSON [[port, packet_id], ...], written when the epoch is
-- created, so a resumed net rebuilds each epoch with exactly its salvo.
ALTER TABLE epochs ADD COLUMN salvo TEXT;
