"""`describe(net)`: what a definition determines about a net, as plain data, to compare two nets."""

from __future__ import annotations

import json

import netrun


def describe(net: netrun.Net) -> dict:
    """The stored graph and options, and per node its options, function paths and port types."""
    meta = {r["key"]: r["value"] for r in net.query("SELECT key, value FROM net_meta WHERE key IN ('graph', 'config')")}
    settings = net.query("SELECT node_name, config, functions, port_types FROM node_settings ORDER BY node_name")
    return {
        "graph": json.loads(meta["graph"]),
        "config": json.loads(meta["config"]),
        "nodes": {r["node_name"]: {"config": net.get_node_config(r["node_name"]),
                                   "functions": json.loads(r["functions"]),
                                   "port_types": net.get_port_types(r["node_name"])} for r in settings},
    }
