-- netrun schema, version 13: workers that run a net's pool jobs from other processes or machines.
-- Never edit this file once landed.

-- `netrun worker --db URL --pool NAME` registers here when it starts, beats every few seconds while
-- it runs, and marks itself stopped when it ends (a killed one just stops beating). Its threads
-- claim jobs as `<id>/<n>` (epoch_jobs.worker), so `netrun status` lists each worker with its jobs.
-- A worker's jobs are taken back by their leases, never by this table: it is for people to read.
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
