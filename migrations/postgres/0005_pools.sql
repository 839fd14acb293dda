-- netrun schema, version 5, PostgreSQL (mirrors ../0005_pools.sql). Never edit this file once landed.
ALTER TABLE epoch_jobs ADD COLUMN pool text;
DROP INDEX epoch_jobs_queued;
CREATE INDEX epoch_jobs_queued ON epoch_jobs (pool, priority DESC, seq) WHERE state = 'queued';

CREATE TABLE epoch_results (
    epoch_id   text PRIMARY KEY,
    worker     text NOT NULL,
    payload    bytea NOT NULL,
    created_at text NOT NULL
);
