-- netrun schema, version 14: the same CHECK constraints, written as comparisons.
-- `x IN ('a', 'b', 'c')` in a CHECK makes SQLite build a temporary index of the list for every row
-- written (measured: ~15 % of the instructions of a chain epoch); `x = 'a' OR x = 'b' OR ...` accepts
-- exactly the same values (NULL included) with plain comparisons. Only the text of each table's
-- definition changes, not a byte of its data: SQLite's documented way for such a change is to edit
-- sqlite_schema (https://sqlite.org/lang_altertable.html, "otheralter"). The RESET reloads the
-- schema on this connection. Never edit this file once landed.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (value_kind IN (''json'', ''pickle'', ''func''))',
    'CHECK (value_kind = ''json'' OR value_kind = ''pickle'' OR value_kind = ''func'')')
    WHERE type = 'table' AND name = 'dead_letters';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (status IN (''pending'', ''replayed'', ''discarded''))',
    'CHECK (status = ''pending'' OR status = ''replayed'' OR status = ''discarded'')')
    WHERE type = 'table' AND name = 'dead_letters';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (action IN (''create'', ''consume'', ''load'', ''send''))',
    'CHECK (action = ''create'' OR action = ''consume'' OR action = ''load'' OR action = ''send'')')
    WHERE type = 'table' AND name = 'deferred_actions';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (status IN (''applied'', ''discarded''))',
    'CHECK (status = ''applied'' OR status = ''discarded'')')
    WHERE type = 'table' AND name = 'deferred_actions';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (outcome IN (''finished'', ''failed'', ''cancelled''))',
    'CHECK (outcome = ''finished'' OR outcome = ''failed'' OR outcome = ''cancelled'')')
    WHERE type = 'table' AND name = 'epoch_attempts';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''queued'', ''claimed'', ''reported'', ''done''))',
    'CHECK (state = ''queued'' OR state = ''claimed'' OR state = ''reported'' OR state = ''done'')')
    WHERE type = 'table' AND name = 'epoch_jobs';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (outcome IN (''finished'', ''cancelled'', ''failed''))',
    'CHECK (outcome = ''finished'' OR outcome = ''cancelled'' OR outcome = ''failed'')')
    WHERE type = 'table' AND name = 'epoch_jobs';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''startable'', ''running'', ''finished'', ''cancelled'', ''failed''))',
    'CHECK (state = ''startable'' OR state = ''running'' OR state = ''finished'' OR state = ''cancelled'' OR state = ''failed'')')
    WHERE type = 'table' AND name = 'epochs';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (type IN (''action'', ''event''))',
    'CHECK (type = ''action'' OR type = ''event'')')
    WHERE type = 'table' AND name = 'history_legacy';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (kind IN (''epoch'', ''packet''))',
    'CHECK (kind = ''epoch'' OR kind = ''packet'')')
    WHERE type = 'table' AND name = 'inbox';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''finished'', ''cancelled'', ''failed''))',
    'CHECK (state = ''finished'' OR state = ''cancelled'' OR state = ''failed'')')
    WHERE type = 'table' AND name = 'node_counts';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (kind IN (''stop'', ''inject''))',
    'CHECK (kind = ''stop'' OR kind = ''inject'')')
    WHERE type = 'table' AND name = 'operator_requests';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''pending'', ''taken'', ''done'', ''rejected'', ''withdrawn''))',
    'CHECK (state = ''pending'' OR state = ''taken'' OR state = ''done'' OR state = ''rejected'' OR state = ''withdrawn'')')
    WHERE type = 'table' AND name = 'operator_requests';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (kind IN (''json'', ''pickle'', ''func''))',
    'CHECK (kind = ''json'' OR kind = ''pickle'' OR kind = ''func'')')
    WHERE type = 'table' AND name = 'packet_values';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (state IN (''live'', ''consumed'', ''destroyed''))',
    'CHECK (state = ''live'' OR state = ''consumed'' OR state = ''destroyed'')')
    WHERE type = 'table' AND name = 'packets';
UPDATE sqlite_schema SET sql = replace(sql, 'CHECK (location IN (''outside'', ''edge'', ''input_port'', ''node'', ''output_port''))',
    'CHECK (location = ''outside'' OR location = ''edge'' OR location = ''input_port'' OR location = ''node'' OR location = ''output_port'')')
    WHERE type = 'table' AND name = 'packets';
PRAGMA writable_schema = RESET;

-- The triggers of 0012, with the same condition written as comparisons.
DROP TRIGGER node_counts_insert;
CREATE TRIGGER node_counts_insert AFTER INSERT ON epochs
WHEN NEW.state = 'finished' OR NEW.state = 'cancelled' OR NEW.state = 'failed'
BEGIN
    INSERT INTO node_counts (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
    ON CONFLICT (node_name, state) DO UPDATE SET n = n + 1;
END;

DROP TRIGGER node_counts_update;
CREATE TRIGGER node_counts_update AFTER UPDATE OF state ON epochs
WHEN NEW.state IS NOT OLD.state AND (NEW.state = 'finished' OR NEW.state = 'cancelled' OR NEW.state = 'failed')
BEGIN
    INSERT INTO node_counts (node_name, state, n) VALUES (NEW.node_name, NEW.state, 1)
    ON CONFLICT (node_name, state) DO UPDATE SET n = n + 1;
    UPDATE node_counts SET n = n - 1 WHERE node_name = OLD.node_name AND state = OLD.state;
END;
