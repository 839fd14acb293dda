-- netrun schema, version 8: values readable outside Python.
-- Never edit this file once landed.
--
-- A value that JSON carries exactly (None, bool, int, finite float, str, and lists / str-keyed
-- dicts of those) is stored as JSON text, kind 'json', so that json_extract(data, '$.city'),
-- sqlite-utils and datasette read it; any other value is pickled, kind 'pickle' (was 'value');
-- a value function is cloudpickled, kind 'func'. Each value gets a short text preview when it is
-- written, so that readers never unpickle (NULL for values written before this version).
-- STRICT tables cannot widen a column's type in place: both tables are rebuilt.

CREATE TABLE packet_values_v8 (
    packet_id    TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('json', 'pickle', 'func')),
    data         ANY NOT NULL,          -- JSON text (json), or bytes (pickle, func)
    preview      TEXT,
    consumed_seq INTEGER
) STRICT, WITHOUT ROWID;
INSERT INTO packet_values_v8 (packet_id, kind, data, preview, consumed_seq)
    SELECT packet_id, iif(kind = 'value', 'pickle', kind), data, NULL, consumed_seq FROM packet_values;
DROP TABLE packet_values;
ALTER TABLE packet_values_v8 RENAME TO packet_values;
CREATE INDEX packet_values_consumed ON packet_values (consumed_seq) WHERE consumed_seq IS NOT NULL;

CREATE TABLE dead_letters_v8 (
    seq           INTEGER PRIMARY KEY,
    packet_id     TEXT NOT NULL,
    node_name     TEXT,
    port_name     TEXT,
    epoch_id      TEXT,
    reason        TEXT NOT NULL,
    error         TEXT,
    value         ANY,                  -- as packet_values.data, in the format value_kind says
    value_kind    TEXT CHECK (value_kind IN ('json', 'pickle', 'func')),
    created_at    TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replayed', 'discarded')),
    resolved_at   TEXT,
    replayed_as   TEXT,
    value_preview TEXT
) STRICT;
INSERT INTO dead_letters_v8 (seq, packet_id, node_name, port_name, epoch_id, reason, error, value, value_kind,
                             created_at, status, resolved_at, replayed_as, value_preview)
    SELECT seq, packet_id, node_name, port_name, epoch_id, reason, error, value,
           iif(value_kind = 'value', 'pickle', value_kind), created_at, status, resolved_at, replayed_as, NULL
    FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_v8 RENAME TO dead_letters;
CREATE INDEX dead_letters_node ON dead_letters (node_name);
