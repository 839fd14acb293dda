-- netrun schema, version 2, PostgreSQL (mirrors ../0002_failures.sql). Never edit this file once landed.

CREATE TABLE epoch_attempts (
    epoch_id    text NOT NULL,
    attempt     bigint NOT NULL,
    node_name   text NOT NULL,
    started_at  text NOT NULL,
    finished_at text,
    outcome     text CHECK (outcome IN ('finished', 'failed', 'cancelled')),
    error       text,
    error_type  text,
    PRIMARY KEY (epoch_id, attempt)
);

CREATE TABLE deferred_actions (
    epoch_id        text NOT NULL,
    attempt         bigint NOT NULL,
    seq             bigint NOT NULL,
    action          text NOT NULL CHECK (action IN ('create', 'consume', 'load', 'send')),
    packet          text,
    port_name       text,
    salvo_condition text,
    PRIMARY KEY (epoch_id, attempt, seq)
);

ALTER TABLE dead_letters ADD COLUMN status text NOT NULL DEFAULT 'pending'
    CHECK (status IN ('pending', 'replayed', 'discarded'));
ALTER TABLE dead_letters ADD COLUMN resolved_at text;
ALTER TABLE dead_letters ADD COLUMN replayed_as text;
