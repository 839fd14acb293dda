-- netrun schema, version 6, PostgreSQL (mirrors ../0006_deferred_status.sql). Never edit this file once landed.
ALTER TABLE deferred_actions ADD COLUMN status text NOT NULL DEFAULT 'discarded'
    CHECK (status IN ('applied', 'discarded'));
