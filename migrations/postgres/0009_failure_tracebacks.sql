-- netrun schema, version 9, PostgreSQL (mirrors ../0009_failure_tracebacks.sql). Never edit this file once landed.
ALTER TABLE epoch_attempts ADD COLUMN traceback text;
ALTER TABLE dead_letters ADD COLUMN traceback text;
