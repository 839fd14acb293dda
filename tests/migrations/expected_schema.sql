-- table dead_letters on dead_letters
CREATE TABLE "dead_letters" (
    seq           INTEGER PRIMARY KEY,
    packet_id     TEXT NOT NULL,
    node_name     TEXT,
    port_name     TEXT,
    epoch_id      TEXT,
    reason        TEXT NOT NULL,
    error         TEXT,
    value         ANY,                  -- as packet_values.data, in the format value_kind says
    value_kind    TEXT CHECK (value_kind = 'json' OR value_kind = 'pickle' OR value_kind = 'func'),
    created_at    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status = 'pending' OR status = 'replayed' OR status = 'discarded'),
    resolved_at   TEXT,
    replayed_as   TEXT,
    value_preview TEXT
, traceback TEXT) STRICT;

-- index dead_letters_node on dead_letters
CREATE INDEX dead_letters_node ON dead_letters (node_name);

-- table deferred_actions on deferred_actions
CREATE TABLE deferred_actions (
    epoch_id        TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    action          TEXT NOT NULL CHECK (action = 'create' OR action = 'consume' OR action = 'load' OR action = 'send'),
    packet          TEXT,                  -- packet ID, or 'deferred:N' for a packet never created
    port_name       TEXT,
    salvo_condition TEXT, status TEXT NOT NULL DEFAULT 'discarded'
    CHECK (status = 'applied' OR status = 'discarded'),
    PRIMARY KEY (epoch_id, attempt, seq)
) STRICT, WITHOUT ROWID;

-- table epoch_attempts on epoch_attempts
CREATE TABLE epoch_attempts (
    epoch_id    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,          -- 0 for the first attempt
    node_name   TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT CHECK (outcome = 'finished' OR outcome = 'failed' OR outcome = 'cancelled'),
    error       TEXT,
    error_type  TEXT, traceback TEXT,
    PRIMARY KEY (epoch_id, attempt)
) STRICT, WITHOUT ROWID;

-- index epoch_attempts_failed on epoch_attempts
CREATE INDEX epoch_attempts_failed ON epoch_attempts (finished_at) WHERE outcome = 'failed';

-- table epoch_jobs on epoch_jobs
CREATE TABLE "epoch_jobs" (
    epoch_id     TEXT PRIMARY KEY,
    seq          INTEGER NOT NULL UNIQUE,
    node_name    TEXT NOT NULL,
    priority     INTEGER NOT NULL DEFAULT 0,
    state        TEXT NOT NULL CHECK (state = 'queued' OR state = 'claimed' OR state = 'reported' OR state = 'done'),
    worker       TEXT,
    lease_until  TEXT,
    enqueued_at  TEXT NOT NULL,
    claimed_at   TEXT,
    done_at      TEXT,
    outcome      TEXT CHECK (outcome = 'finished' OR outcome = 'cancelled' OR outcome = 'failed'),
    pool         TEXT,
    attempt      INTEGER NOT NULL DEFAULT 0,
    not_before   TEXT
) STRICT, WITHOUT ROWID;

-- index epoch_jobs_claimed on epoch_jobs
CREATE INDEX epoch_jobs_claimed ON epoch_jobs (lease_until) WHERE state = 'claimed';

-- index epoch_jobs_queued on epoch_jobs
CREATE INDEX epoch_jobs_queued ON epoch_jobs (pool, priority DESC, seq) WHERE state = 'queued';

-- table epoch_results on epoch_results
CREATE TABLE epoch_results (
    epoch_id   TEXT PRIMARY KEY,
    worker     TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- table epochs on epochs
CREATE TABLE epochs (
    id              TEXT PRIMARY KEY,
    node_name       TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state = 'startable' OR state = 'running' OR state = 'finished' OR state = 'cancelled' OR state = 'failed'),
    attempt         INTEGER NOT NULL DEFAULT 0,
    salvo_condition TEXT,
    created_at      TEXT NOT NULL,
    started_at      TEXT,
    finished_at     TEXT,
    error           TEXT,
    error_type      TEXT
, salvo TEXT) STRICT, WITHOUT ROWID;

-- index epochs_open on epochs
CREATE INDEX epochs_open ON epochs (node_name) WHERE state IN ('startable', 'running');

-- view history on history
CREATE VIEW history (seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data) AS
SELECT seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data FROM history_legacy
UNION ALL
SELECT a.seq, 'action',
       (SELECT word FROM history_words WHERE code = a.name),
       CAST(a.seq AS TEXT),
       (SELECT id FROM history_ids WHERE n = a.epoch),
       (SELECT id FROM history_ids WHERE n = a.packet),
       (SELECT word FROM history_words WHERE code = a.node),
       strftime('%Y-%m-%dT%H:%M:%S', a.ts / 1000000, 'unixepoch') || printf('.%06d+00:00', a.ts % 1000000),
       a.data
FROM history_actions a
UNION ALL
SELECT a.seq + 1 + e.key, 'event', w.word,
       CAST(a.seq AS TEXT),
       (SELECT id FROM history_ids WHERE n = e.value ->> 1),
       (SELECT id FROM history_ids WHERE n = e.value ->> 2),
       (SELECT word FROM history_words WHERE code = coalesce(e.value ->> 3, a.node)),
       strftime('%Y-%m-%dT%H:%M:%S', a.ts / 1000000, 'unixepoch') || printf('.%06d+00:00', a.ts % 1000000),
       CASE
           WHEN w.word = 'PacketMoved' THEN json_object(
               'to', (SELECT word FROM history_words WHERE code = e.value ->> 4),
               'node', (SELECT word FROM history_words WHERE code = e.value ->> 5),
               'port', (SELECT word FROM history_words WHERE code = e.value ->> 6))
           WHEN e.value ->> 4 IS NOT NULL THEN json_object(
               'salvo_condition', (SELECT word FROM history_words WHERE code = e.value ->> 4))
       END
FROM history_actions a, json_each(a.events) e
JOIN history_words w ON w.code = e.value ->> 0;

-- table history_actions on history_actions
CREATE TABLE history_actions (
    seq    INTEGER PRIMARY KEY,
    name   INTEGER NOT NULL,     -- word code of the NetAction kind
    epoch  INTEGER,              -- history_ids.n
    packet INTEGER,              -- history_ids.n
    node   INTEGER,              -- word code
    ts     INTEGER NOT NULL,     -- microseconds since 1970-01-01 UTC
    data   TEXT,                 -- JSON of the action's other fields, or NULL
    events TEXT                  -- JSON array of events (see above), or NULL
) STRICT;

-- table history_ids on history_ids
CREATE TABLE history_ids (
    n  INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE
) STRICT;

-- table history_legacy on history_legacy
CREATE TABLE "history_legacy" (
    seq        INTEGER PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type = 'action' OR type = 'event'),
    name       TEXT NOT NULL,
    action_id  TEXT NOT NULL,          -- the action's `id`; its events carry the same
    epoch_id   TEXT,
    packet_id  TEXT,
    node_name  TEXT,
    timestamp  TEXT NOT NULL,
    data       TEXT                    -- JSON with the remaining fields, or NULL
) STRICT;

-- table history_refs on history_refs
CREATE TABLE history_refs (
    ref INTEGER NOT NULL,        -- history_ids.n of an epoch or a packet
    seq INTEGER NOT NULL,        -- history_actions.seq of an action that mentions it
    PRIMARY KEY (ref, seq)
) STRICT, WITHOUT ROWID;

-- table history_words on history_words
CREATE TABLE history_words (
    code INTEGER PRIMARY KEY,
    word TEXT NOT NULL UNIQUE
) STRICT;

-- table inbox on inbox
CREATE TABLE inbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: admission tracks the last seq
    kind       TEXT NOT NULL CHECK (kind = 'epoch' OR kind = 'packet'),
    item_id    TEXT NOT NULL UNIQUE,
    node_name  TEXT NOT NULL,
    port_name  TEXT
) STRICT;

-- table net_meta on net_meta
CREATE TABLE net_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

-- table node_counts on node_counts
CREATE TABLE node_counts (
    node_name TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state = 'finished' OR state = 'cancelled' OR state = 'failed'),
    n         INTEGER NOT NULL,
    PRIMARY KEY (node_name, state)
) STRICT, WITHOUT ROWID;

-- trigger node_counts_insert on epochs
CREATE TRIGGER node_counts_insert AFTER INSERT ON epochs
WHEN NEW.state = 'finished' OR NEW.state = 'cancelled' OR NEW.state = 'failed'
BEGIN
    INSERT INTO node_counts (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
    ON CONFLICT (node_name, state) DO UPDATE SET n = n + 1;
END;

-- trigger node_counts_update on epochs
CREATE TRIGGER node_counts_update AFTER UPDATE OF state ON epochs
WHEN NEW.state IS NOT OLD.state AND (NEW.state = 'finished' OR NEW.state = 'cancelled' OR NEW.state = 'failed')
BEGIN
    INSERT INTO node_counts (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
    ON CONFLICT (node_name, state) DO UPDATE SET n = n + 1;
    UPDATE node_counts SET n = n - 1 WHERE node_name = OLD.node_name AND state = OLD.state;
END;

-- table node_logs on node_logs
CREATE TABLE node_logs (
    seq       INTEGER PRIMARY KEY,
    epoch_id  TEXT,
    node_name TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    text      TEXT NOT NULL
) STRICT;

-- index node_logs_epoch on node_logs
CREATE INDEX node_logs_epoch ON node_logs (epoch_id);

-- index node_logs_node on node_logs
CREATE INDEX node_logs_node ON node_logs (node_name);

-- table node_settings on node_settings
CREATE TABLE node_settings (
    node_name  TEXT PRIMARY KEY,
    config     TEXT NOT NULL,          -- JSON of the node options
    functions  TEXT NOT NULL DEFAULT '{}'  -- JSON: role -> "module.qualname"
, port_types TEXT NOT NULL DEFAULT '{}') STRICT;

-- table operator_requests on operator_requests
CREATE TABLE operator_requests (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: askers poll their own row by it
    kind          TEXT NOT NULL CHECK (kind = 'stop' OR kind = 'inject'),
    -- inject: [{"node": N, "port": P, "value": V} (a packet) | {"node": N} (a source epoch), ...]
    payload       TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(payload)),
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state = 'pending' OR state = 'taken' OR state = 'done' OR state = 'rejected' OR state = 'withdrawn'),
    requested_at  TEXT NOT NULL,
    requested_by  TEXT NOT NULL,  -- "pid N on HOST"
    answered_at   TEXT,
    answer        TEXT  -- done: what was done (JSON: the new IDs); rejected, withdrawn: why
) STRICT;

-- index operator_requests_pending on operator_requests
CREATE INDEX operator_requests_pending ON operator_requests (id) WHERE state = 'pending';

-- table packet_values on packet_values
CREATE TABLE "packet_values" (
    packet_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind = 'json' OR kind = 'pickle' OR kind = 'func'),
    data         ANY NOT NULL,          -- JSON text (json), or bytes (pickle, func)
    preview      TEXT,
    consumed_seq INTEGER
) STRICT, WITHOUT ROWID;

-- index packet_values_consumed on packet_values
CREATE INDEX packet_values_consumed ON packet_values (consumed_seq) WHERE consumed_seq IS NOT NULL;

-- table packets on packets
CREATE TABLE packets (
    id          TEXT PRIMARY KEY,
    state       TEXT NOT NULL CHECK (state = 'live' OR state = 'consumed' OR state = 'destroyed'),
    location    TEXT NOT NULL CHECK (location = 'outside' OR location = 'edge' OR location = 'input_port' OR location = 'node' OR location = 'output_port'),
    node_name   TEXT,
    port_name   TEXT,
    epoch_id    TEXT,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    -- for location 'edge': the source port, so the exact edge is known
    from_node   TEXT,
    from_port   TEXT
) STRICT, WITHOUT ROWID;

-- index packets_live on packets
CREATE INDEX packets_live ON packets (location, epoch_id) WHERE state = 'live';

-- index sqlite_autoindex_epoch_jobs_2 on epoch_jobs
-- (no sql);

-- index sqlite_autoindex_history_ids_1 on history_ids
-- (no sql);

-- index sqlite_autoindex_history_words_1 on history_words
-- (no sql);

-- index sqlite_autoindex_inbox_1 on inbox
-- (no sql);

-- index sqlite_autoindex_net_meta_1 on net_meta
-- (no sql);

-- index sqlite_autoindex_node_settings_1 on node_settings
-- (no sql);

-- index sqlite_autoindex_workers_1 on workers
-- (no sql);

-- table sqlite_sequence on sqlite_sequence
CREATE TABLE sqlite_sequence(name,seq);

-- table workers on workers
CREATE TABLE workers (
    id           TEXT PRIMARY KEY,      -- "remote:<pool>:<host>:<pid>:<random>"
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    pools        TEXT NOT NULL,         -- JSON list of pool names
    concurrency  INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    stopped_at   TEXT
) STRICT;
