-- netrun schema, version 4: port types per node, so a resumed net checks them too.
-- Never edit this file once landed.

-- JSON {"in": {port: type}, "out": {port: type}} in the form of port_types.PortType.to_data().
ALTER TABLE node_settings ADD COLUMN port_types TEXT NOT NULL DEFAULT '{}';
