-- netrun schema, version 4, PostgreSQL (mirrors ../0004_port_types.sql). Never edit this file once landed.
ALTER TABLE node_settings ADD COLUMN port_types text NOT NULL DEFAULT '{}';
