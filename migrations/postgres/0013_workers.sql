-- netrun schema, version 13, PostgreSQL (mirrors ../0013_workers.sql). Never edit this file once landed.
CREATE TABLE workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    pid          bigint NOT NULL,
    pools        text NOT NULL,
    concurrency  bigint NOT NULL,
    started_at   text NOT NULL,
    heartbeat_at text NOT NULL,
    stopped_at   text
);
