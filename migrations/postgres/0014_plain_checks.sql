-- netrun schema, version 14, PostgreSQL (mirrors ../0014_plain_checks.sql). Never edit this file once landed.
-- SQLite's version rewrites `x IN (...)` in CHECK constraints and trigger conditions as comparisons,
-- because SQLite builds a temporary index of such a list for every row written. PostgreSQL evaluates
-- a constant list directly: its schema stays as it is, and this version only keeps the two in step.
SELECT 1;
