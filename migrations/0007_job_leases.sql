-- netrun schema, version 7: epoch jobs with enforced leases and compare-and-set transitions.
-- Never edit this file once landed.

-- A job moves queued -> claimed -> reported -> done (a main-thread job: claimed -> done).
-- Every transition names the state, worker and attempt it expects, so a late report after
-- a take-back is refused whichever side commits first. `attempt` counts the times the job
-- was (re)queued; `not_before` holds it back until due (rate limits are data, not sleeps).
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE epoch_jobs_v7 (
    epoch_id     TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    node_name    TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'reported', 'done')),
    worker       TEXT,
    lease_until  TEXT,
    enqueued_at  TEXT NOT NULL,
    claimed_at   TEXT,
    done_at      TEXT,
    outcome      TEXT CHECK (outcome IN ('finished', 'cancelled', 'failed')),
    pool         TEXT,
    attempt      INTEGER NOT NULL DEFAULT 0,
    not_before   TEXT
) STRICT, WITHOUT ROWID;
INSERT INTO epoch_jobs_v7 (epoch_id, seq, node_name, priority, state, worker, lease_until, enqueued_at, claimed_at,
                           done_at, outcome, pool)
    SELECT epoch_id, seq, node_name, priority, state, worker, lease_until, enqueued_at, claimed_at, done_at,
           outcome, pool FROM epoch_jobs;
DROP TABLE epoch_jobs;
ALTER TABLE epoch_jobs_v7 RENAME TO epoch_jobs;
CREATE INDEX epoch_jobs_queued ON epoch_jobs (pool, priority DESC, seq) WHERE state = 'queued';
-- The owner's lease sweep reads only claimed jobs.
CREATE INDEX epoch_jobs_claimed ON epoch_jobs (lease_until) WHERE state = 'claimed';
