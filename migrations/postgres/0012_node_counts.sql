-- netrun schema, version 12, PostgreSQL (mirrors ../0012_node_counts.sql). Never edit this file once landed.
CREATE TABLE node_counts (
    node_name text NOT NULL,
    state     text NOT NULL CHECK (state IN ('finished', 'cancelled', 'failed')),
    n         bigint NOT NULL,
    PRIMARY KEY (node_name, state)
);

INSERT INTO node_counts (node_name, state, n)
SELECT node_name, state, count(*) FROM epochs WHERE state IN ('finished', 'cancelled', 'failed') GROUP BY 1, 2;

-- The function resolves node_counts in the net's own schema, whatever the session's search path.
CREATE FUNCTION node_counts_count() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.state IN ('finished', 'cancelled', 'failed')
       AND (TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state) THEN
        INSERT INTO node_counts AS c (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
        ON CONFLICT (node_name, state) DO UPDATE SET n = c.n + 1;
        IF TG_OP = 'UPDATE' THEN
            UPDATE node_counts SET n = n - 1 WHERE node_name = OLD.node_name AND state = OLD.state;
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER node_counts_insert AFTER INSERT ON epochs
FOR EACH ROW EXECUTE FUNCTION node_counts_count();

CREATE TRIGGER node_counts_update AFTER UPDATE OF state ON epochs
FOR EACH ROW EXECUTE FUNCTION node_counts_count();

CREATE INDEX epoch_attempts_failed ON epoch_attempts (finished_at) WHERE outcome = 'failed';
