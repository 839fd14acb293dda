-- netrun schema, version 1.
-- Applied by netrun/migrate.py inside one IMMEDIATE transaction together with
-- `PRAGMA user_version = 1`. Never edit this file once landed: add 0002_*.sql.

-- Marks the file as a netrun database ('netr'); foreign SQLite files are refused.
PRAGMA application_id = 1852142706;

-- Key/value facts about the net: graph, net config, netrun version, creation time.
CREATE TABLE net_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- Per-node configuration and the import paths of its functions (for resume).
CREATE TABLE node_settings (
    node_name  TEXT PRIMARY KEY,
    config     TEXT NOT NULL,          -- JSON of the node options
    functions  TEXT NOT NULL DEFAULT '{}'  -- JSON: role -> "module.qualname"
) STRICT;

-- Every NetAction and NetEvent, in order.
CREATE TABLE history (
    seq        INTEGER PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type IN ('action', 'event')),
    name       TEXT NOT NULL,
    action_id  TEXT NOT NULL,          -- the action's `id`; its events carry the same
    epoch_id   TEXT,
    packet_id  TEXT,
    node_name  TEXT,
    timestamp  TEXT NOT NULL,
    data       TEXT                    -- JSON with the remaining fields, or NULL
) STRICT;
-- No secondary indexes: each one costs page writes on every commit (see README
-- "How it runs"); the epochs and packets tables answer per-epoch questions.

CREATE TABLE epochs (
    id              TEXT PRIMARY KEY,
    node_name       TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('startable', 'running', 'finished', 'cancelled', 'failed')),
    attempt         INTEGER NOT NULL DEFAULT 0,
    salvo_condition TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    error           TEXT,
    error_type      TEXT
) STRICT, WITHOUT ROWID;
-- Open epochs only: small, and all that resuming a net needs.
CREATE INDEX epochs_open ON epochs (node_name) WHERE state IN ('startable', 'running');

-- location: where a live packet is ('outside', 'edge', 'input_port', 'node', 'output_port').
-- For 'edge' node_name/port_name name the edge's target input port.
CREATE TABLE packets (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state IN ('live', 'consumed', 'destroyed')),
    location    TEXT NOT NULL CHECK (location IN ('outside', 'edge', 'input_port', 'node', 'output_port')),
    node_name   TEXT,
    port_name   TEXT,
    epoch_id    TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    -- for location 'edge': the source port, so the exact edge is known
    from_node   TEXT,
    from_port   TEXT
) STRICT, WITHOUT ROWID;
CREATE INDEX packets_live ON packets (location, epoch_id) WHERE state = 'live';

-- Pickled packet values (kind 'value') or cloudpickled value functions (kind 'func').
-- A consumed value is kept only while consumed_packet_storage says so (consumed_seq set).
CREATE TABLE packet_values (
    packet_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('value', 'func')),
    data         BLOB NOT NULL,
    consumed_seq INTEGER
) STRICT, WITHOUT ROWID;
CREATE INDEX packet_values_consumed ON packet_values (consumed_seq) WHERE consumed_seq IS NOT NULL;

-- The epoch job queue: every epoch that is started goes through it, in the main
-- thread too. A job is claimed with a lease and never deleted on read.
-- Queue order: priority (downstream nodes first), then seq (enqueue order).
CREATE TABLE epoch_jobs (
    epoch_id     TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    node_name    TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state IN ('queued', 'claimed', 'done')),
    worker       TEXT,
    lease_until  TEXT,
    enqueued_at  TEXT NOT NULL,
    claimed_at   TEXT,
    done_at      TEXT,
    outcome      TEXT CHECK (outcome IN ('finished', 'cancelled', 'failed'))
) STRICT, WITHOUT ROWID;
CREATE INDEX epoch_jobs_queued ON epoch_jobs (priority DESC, seq) WHERE state = 'queued';

-- Work injected by the user and not yet handed to netrun-sim: netrun-sim's steps cost
-- grows with its backlog, so injected epochs and packets enter it in bounded batches.
-- The epochs/packets/history rows exist from injection on; a row here means "not yet
-- admitted into the sim".
CREATE TABLE inbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: admission tracks the last seq
    kind       TEXT NOT NULL CHECK (kind IN ('epoch', 'packet')),
    item_id    TEXT NOT NULL UNIQUE,
    node_name  TEXT NOT NULL,
    port_name  TEXT
) STRICT;

CREATE TABLE node_logs (
    seq       INTEGER PRIMARY KEY,
    epoch_id  TEXT,
    node_name TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    text      TEXT NOT NULL
) STRICT;
CREATE INDEX node_logs_node ON node_logs (node_name);
CREATE INDEX node_logs_epoch ON node_logs (epoch_id);

CREATE TABLE dead_letters (
    seq        INTEGER PRIMARY KEY,
    packet_id  TEXT NOT NULL,
    node_name  TEXT,
    port_name  TEXT,
    epoch_id   TEXT,
    reason     TEXT NOT NULL,
    error      TEXT,
    value      BLOB,
    value_kind TEXT,
    created_at TEXT NOT NULL
) STRICT;
CREATE INDEX dead_letters_node ON dead_letters (node_name);
