-- netrun schema, version 5: thread and process pools.
-- Never edit this file once landed.

-- Which pool runs the job (NULL: the main thread). Workers claim only their pool's jobs.
ALTER TABLE epoch_jobs ADD COLUMN pool TEXT;
DROP INDEX epoch_jobs_queued;
CREATE INDEX epoch_jobs_queued ON epoch_jobs (pool, priority DESC, seq) WHERE state = 'queued';

-- A pool worker's finished epoch, waiting for the main process to apply it to the net.
-- Written in the worker's transaction together with the epoch's attempts and log lines;
-- deleted in the main process's transaction that applies it. A result found at resume
-- is applied then: work done by a worker is never lost nor done twice.
CREATE TABLE epoch_results (
    epoch_id   TEXT PRIMARY KEY,
    worker     TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;
