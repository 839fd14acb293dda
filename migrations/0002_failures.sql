-- netrun schema, version 2: failure handling.
-- Never edit this file once landed.

-- One row per attempt of an epoch (retries add rows): when, how it ended, and why.
CREATE TABLE epoch_attempts (
    epoch_id    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,          -- 0 for the first attempt
    node_name   TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT CHECK (outcome IN ('finished', 'failed', 'cancelled')),
    error       TEXT,
    error_type  TEXT,
    PRIMARY KEY (epoch_id, attempt)
) STRICT, WITHOUT ROWID;

-- The deferred action queue of every failed attempt of a deferred node, kept for
-- inspection (a successful attempt's actions are in `history`).
CREATE TABLE deferred_actions (
    epoch_id        TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    action          TEXT NOT NULL CHECK (action IN ('create', 'consume', 'load', 'send')),
    packet          TEXT,                  -- packet ID, or 'deferred:N' for a packet never created
    port_name       TEXT,
    salvo_condition TEXT,
    PRIMARY KEY (epoch_id, attempt, seq)
) STRICT, WITHOUT ROWID;

-- Dead letters can be replayed (the value goes back in as a new packet) or discarded.
ALTER TABLE dead_letters ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'replayed', 'discarded'));
ALTER TABLE dead_letters ADD COLUMN resolved_at TEXT;
ALTER TABLE dead_letters ADD COLUMN replayed_as TEXT;   -- the new packet's ID
