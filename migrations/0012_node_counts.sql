-- netrun schema, version 12: fast questions on big runs.
-- Never edit this file once landed.

-- Ended epochs per node and final state, kept by triggers on `epochs` so that `netrun status` reads
-- a handful of rows instead of counting every epoch (startable and running ones are counted through
-- the `epochs_open` index). The counts are of every epoch that ever ended: `netrun prune` removes
-- old epochs' rows but not their counts.
CREATE TABLE node_counts (
    node_name TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state IN ('finished', 'cancelled', 'failed')),
    n         INTEGER NOT NULL,
    PRIMARY KEY (node_name, state)
) STRICT, WITHOUT ROWID;

INSERT INTO node_counts (node_name, state, n)
SELECT node_name, state, count(*) FROM epochs WHERE state IN ('finished', 'cancelled', 'failed') GROUP BY 1, 2;

CREATE TRIGGER node_counts_insert AFTER INSERT ON epochs
WHEN NEW.state IN ('finished', 'cancelled', 'failed')
BEGIN
    INSERT INTO node_counts (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
    ON CONFLICT (node_name, state) DO UPDATE SET n = n + 1;
END;

CREATE TRIGGER node_counts_update AFTER UPDATE OF state ON epochs
WHEN NEW.state IS NOT OLD.state AND NEW.state IN ('finished', 'cancelled', 'failed')
BEGIN
    INSERT INTO node_counts (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
    ON CONFLICT (node_name, state) DO UPDATE SET n = n + 1;
    UPDATE node_counts SET n = n - 1 WHERE node_name = OLD.node_name AND state = OLD.state;
END;

-- The recent failures `netrun status` lists, without reading every attempt.
CREATE INDEX epoch_attempts_failed ON epoch_attempts (finished_at) WHERE outcome = 'failed';
