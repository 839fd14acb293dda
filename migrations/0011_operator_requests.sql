-- netrun schema, version 11: requests from operators to the process that runs the net.
-- Never edit this file once landed.

-- Only the owner (the process holding `<db>-lock`) writes run state. Other processes
-- (`netrun stop`, `netrun inject`) leave it a request here; the owner's loop reads the
-- pending ones at most every ~0.1 s, applies each in its own transaction and records the
-- answer; a net that no process runs takes its pending injections when a run next starts.
-- A request moves pending -> taken -> done (a stop: taken while the running epochs finish),
-- pending -> done | rejected (an injection, all of it or nothing), or pending -> withdrawn
-- (the asker gave up waiting, or a stop outlived the owner it was meant for).
CREATE TABLE operator_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: askers poll their own row by it
    kind          TEXT NOT NULL CHECK (kind IN ('stop', 'inject')),
    -- inject: [{"node": N, "port": P, "value": V} (a packet) | {"node": N} (a source epoch), ...]
    payload       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(payload)),
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'taken', 'done', 'rejected', 'withdrawn')),
    requested_at  TEXT NOT NULL,
    requested_by  TEXT NOT NULL,  -- "pid N on HOST"
    answered_at   TEXT,
    answer        TEXT  -- done: what was done (JSON: the new IDs); rejected, withdrawn: why
) STRICT;
-- The owner's poll reads only the requests not yet taken (its query repeats this WHERE, so that
-- SQLite uses the index however many answered requests the table keeps).
CREATE INDEX operator_requests_pending ON operator_requests (id) WHERE state = 'pending';
