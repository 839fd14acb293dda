-- netrun schema, version 10: compact history.
--
-- History was one row per action and one per event, each with its IDs, names and timestamp
-- as text (~1,900 bytes per epoch). It is now one row per action, its events in a small JSON
-- array, and every repeated string replaced by an integer code:
--   history_words   node, port, salvo-condition, location and record names
--   history_ids     epoch and packet IDs (ULIDs)
--   history_actions one row per action; `seq` is the history seq of the action itself, and its
--                   events take the next seqs (seq + 1 + index in `events`), so seqs stay
--                   consecutive and every record keeps the number it had
--   history_refs    which actions mention an epoch or a packet (in their columns or events):
--                   the key lookups behind `history --packet`, `--epoch` and `trace`
-- The view `history` reads them back as the contract's columns (plus `data`), so plain SQL over
-- `history` works as before. Rows written before this version stay in `history_legacy` and are
-- part of the view.
--
-- An event is a JSON array [name, epoch, packet, node, x1, x2, x3] (trailing nulls dropped):
-- name and node are word codes, epoch and packet ID numbers. PacketMoved's x1..x3 are the word
-- codes of where it moved (location kind, node, port); a salvo event's x1 is its condition.
-- An event without a node of its own takes its action's node.
-- `ts` is the action's time in microseconds since 1970-01-01 UTC; its events share it.

ALTER TABLE history RENAME TO history_legacy;

CREATE TABLE history_words (
    code INTEGER PRIMARY KEY,
    word TEXT NOT NULL UNIQUE
) STRICT;

CREATE TABLE history_ids (
    n  INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE
) STRICT;

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

CREATE TABLE history_refs (
    ref INTEGER NOT NULL,        -- history_ids.n of an epoch or a packet
    seq INTEGER NOT NULL,        -- history_actions.seq of an action that mentions it
    PRIMARY KEY (ref, seq)
) STRICT, WITHOUT ROWID;

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
