-- netrun schema, version 10, PostgreSQL (mirrors ../0010_compact_history.sql; read that file for the
-- layout). `events` is json here, so that json_array_length() and ->> read it as SQLite's do.
-- Never edit this file once landed.

ALTER TABLE history RENAME TO history_legacy;

CREATE TABLE history_words (
    code bigint PRIMARY KEY,
    word text NOT NULL UNIQUE
);

CREATE TABLE history_ids (
    n  bigint PRIMARY KEY,
    id text NOT NULL UNIQUE
);

CREATE TABLE history_actions (
    seq    bigint PRIMARY KEY,
    name   bigint NOT NULL,
    epoch  bigint,
    packet bigint,
    node   bigint,
    ts     bigint NOT NULL,
    data   text,
    events json
);

CREATE TABLE history_refs (
    ref bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (ref, seq)
);

-- Timestamps as the SQLite view writes them: 2024-01-02T03:04:05.123456+00:00.
CREATE VIEW history (seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data) AS
SELECT seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data FROM history_legacy
UNION ALL
SELECT a.seq, 'action',
       (SELECT word FROM history_words WHERE code = a.name),
       CAST(a.seq AS text),
       (SELECT id FROM history_ids WHERE n = a.epoch),
       (SELECT id FROM history_ids WHERE n = a.packet),
       (SELECT word FROM history_words WHERE code = a.node),
       to_char(to_timestamp(a.ts / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '.' || lpad((a.ts % 1000000)::text, 6, '0') || '+00:00',
       a.data
FROM history_actions a
UNION ALL
SELECT a.seq + e.ord, 'event', w.word,
       CAST(a.seq AS text),
       (SELECT id FROM history_ids WHERE n = (e.value ->> 1)::bigint),
       (SELECT id FROM history_ids WHERE n = (e.value ->> 2)::bigint),
       (SELECT word FROM history_words WHERE code = coalesce((e.value ->> 3)::bigint, a.node)),
       to_char(to_timestamp(a.ts / 1000000) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
           || '.' || lpad((a.ts % 1000000)::text, 6, '0') || '+00:00',
       CASE
           WHEN w.word = 'PacketMoved' THEN json_build_object(
               'to', (SELECT word FROM history_words WHERE code = (e.value ->> 4)::bigint),
               'node', (SELECT word FROM history_words WHERE code = (e.value ->> 5)::bigint),
               'port', (SELECT word FROM history_words WHERE code = (e.value ->> 6)::bigint))::text
           WHEN e.value ->> 4 IS NOT NULL THEN json_build_object(
               'salvo_condition', (SELECT word FROM history_words WHERE code = (e.value ->> 4)::bigint))::text
       END
FROM history_actions a
CROSS JOIN LATERAL json_array_elements(a.events) WITH ORDINALITY AS e(value, ord)
JOIN history_words w ON w.code = (e.value ->> 0)::bigint;
