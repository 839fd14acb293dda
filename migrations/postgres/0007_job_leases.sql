-- netrun schema, version 7, PostgreSQL (mirrors ../0007_job_leases.sql, which rebuilds the table
-- because SQLite cannot change a CHECK constraint: here it changes in place, with the same columns
-- in the same order). Never edit this file once landed.
ALTER TABLE epoch_jobs DROP CONSTRAINT epoch_jobs_state_check;
ALTER TABLE epoch_jobs ADD CONSTRAINT epoch_jobs_state_check
    CHECK (state IN ('queued', 'claimed', 'reported', 'done'));
ALTER TABLE epoch_jobs ADD COLUMN attempt bigint NOT NULL DEFAULT 0;
ALTER TABLE epoch_jobs ADD COLUMN not_before text;
CREATE INDEX epoch_jobs_claimed ON epoch_jobs (lease_until) WHERE state = 'claimed';
