-- netrun schema, version 3, PostgreSQL (mirrors ../0003_resume.sql). Never edit this file once landed.
ALTER TABLE epochs ADD COLUMN salvo text;
