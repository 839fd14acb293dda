-- netrun schema, version 8, PostgreSQL (mirrors ../0008_value_formats.sql). Never edit this file once landed.
-- `data` stays bytea (SQLite's column is ANY): JSON text is stored as its UTF-8 bytes.
CREATE TABLE packet_values_v8 (
    packet_id    text PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('json', 'pickle', 'func')),
    data         bytea NOT NULL,
    preview      text,
    consumed_seq bigint
);
INSERT INTO packet_values_v8 (packet_id, kind, data, preview, consumed_seq)
    SELECT packet_id, CASE WHEN kind = 'value' THEN 'pickle' ELSE kind END, data, NULL, consumed_seq
    FROM packet_values;
DROP TABLE packet_values;
ALTER TABLE packet_values_v8 RENAME TO packet_values;
CREATE INDEX packet_values_consumed ON packet_values (consumed_seq) WHERE consumed_seq IS NOT NULL;

UPDATE dead_letters SET value_kind = 'pickle' WHERE value_kind = 'value';
ALTER TABLE dead_letters ADD CONSTRAINT dead_letters_value_kind_check
    CHECK (value_kind IN ('json', 'pickle', 'func'));
ALTER TABLE dead_letters ADD COLUMN value_preview text;
