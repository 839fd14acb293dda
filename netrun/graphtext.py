"""A net's graph as text: Mermaid, Graphviz DOT or JSON, for `netrun graph`.

Pure string building, with no Graphviz or Mermaid install needed: paste the Mermaid text into
a Markdown file, pipe the DOT text to `dot -Tsvg`, or read the JSON from a script. Everything
comes from `graphio.graph_to_data` (nodes, ports, salvo conditions, edges), and everything is
sorted by name, so two renders of the same graph are equal and can be diffed.

Names may hold any character, so each format escapes them its own way: Mermaid node ids are
generated (`n0`, `n1`... in sorted-name order) and labels use `#NN;` character codes; DOT node
ids are quoted names and record labels backslash-escape `\\ " { } | < >` (and write `&` as `&amp;`);
JSON needs nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

import netrun_sim as ns

from .errors import ConfigError, ExpressionError
from .expressions import to_text
from .graphio import graph_to_data, term_from_data

FORMATS = ("mermaid", "dot", "json")

EdgeKey = tuple[str, str, str, str]  # from node, from port, to node, to port (as `definition.EdgeKey`)

_SAFE_PORT = re.compile(r"[A-Za-z0-9_]+")
# Mermaid reads `"`, `#`, `&`, `<`, `>`, `|` and a backtick specially even inside a quoted label.
_MERMAID_SPECIAL = re.compile(r"[\"#&<>|`\x00-\x1f\x7f]")
_DOT_RECORD_SPECIAL = re.compile(r"[\\\"{}|<>]")


def render_graph(graph: ns.Graph, fmt: str, *, edge_meta: dict[EdgeKey, dict] | None = None,
                 node_meta: dict[str, dict] | None = None) -> str:
    """`graph` as text in format `fmt` (one of `FORMATS`), ending with a newline.

    The output depends only on the graph (and, for JSON, the metadata), never on the order
    nodes or edges were built in. `node_meta` (node name -> table) and `edge_meta`
    ((from node, from port, to node, to port) -> table, as `definition.Notes.edge_meta`) are
    written into the JSON only; entries naming no node or edge of the graph are ignored.

    Raises:
        ConfigError: `fmt` is not one of `FORMATS`.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown graph format {fmt!r}; use one of: {', '.join(FORMATS)}",
                          format=fmt, allowed=FORMATS)
    data = graph_to_data(graph)
    if fmt == "mermaid":
        return _mermaid(data)
    if fmt == "dot":
        return _dot(data)
    return _json(data, edge_meta or {}, node_meta or {})


def _condition_text(term_data: Any) -> str:
    """A salvo condition term (graphio's data form) as DSL expression text, e.g. `nonempty(in)`.

    A port name holding both kinds of quote cannot be spelled in the DSL; that term is
    written as its JSON data form instead, so rendering never fails.
    """
    try:
        return to_text(term_from_data(term_data))
    except ExpressionError:
        return json.dumps(term_data, ensure_ascii=False)


def _port_list(ports: dict[str, int | None]) -> list[str]:
    """Sorted port names, a finite port followed by its slot count: `a`, `b[3]`."""
    return [p if ports[p] is None else f"{p}[{ports[p]}]" for p in sorted(ports)]


# -- mermaid -------------------------------------------------------------------------------
def _mermaid_text(text: str) -> str:
    """`text` for a double-quoted Mermaid label: special characters as `#<code point>;`."""
    return _MERMAID_SPECIAL.sub(lambda m: f"#{ord(m.group())};", text)


def _mermaid(data: dict) -> str:
    ids = {node["name"]: f"n{i}" for i, node in enumerate(data["nodes"])}  # nodes come sorted by name
    lines = ["flowchart LR"]
    for node in data["nodes"]:
        label = [node["name"]]
        for side in ("in", "out"):
            if node[f"{side}_ports"]:
                label.append(f"{side}: {', '.join(_port_list(node[f'{side}_ports']))}")
        lines.append(f'    {ids[node["name"]]}["{"<br/>".join(_mermaid_text(part) for part in label)}"]')
    for src, out_port, dst, in_port in data["edges"]:
        lines.append(f'    {ids[src]} -->|"{_mermaid_text(f"{out_port} → {in_port}")}"| {ids[dst]}')
    return "\n".join(lines) + "\n"


# -- dot -----------------------------------------------------------------------------------
def _dot_id(name: str) -> str:
    """`name` as a quoted DOT id (the same text in node and edge statements)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _dot_record_text(text: str) -> str:
    """`text` as literal text inside a quoted record label (Graphviz decodes `&amp;`-style entities in labels)."""
    return _DOT_RECORD_SPECIAL.sub(lambda m: "\\" + m.group(), text.replace("&", "&amp;")).replace("\n", "\\n")


def _dot_port_ids(side: str, ports: dict[str, int | None]) -> dict[str, str]:
    """Port name -> record field id: `in_<name>` for plain names, else `in<index>` (never `in_...`)."""
    return {p: f"{side}_{p}" if _SAFE_PORT.fullmatch(p) else f"{side}{i}" for i, p in enumerate(sorted(ports))}


def _dot(data: dict) -> str:
    lines = ["digraph net {", "    rankdir=LR;", "    node [shape=record];"]
    port_ids: dict[tuple[str, str], dict[str, str]] = {}
    for node in data["nodes"]:
        fields = []
        for side in ("in", "out"):
            ports = node[f"{side}_ports"]
            ids = port_ids[node["name"], side] = _dot_port_ids(side, ports)
            cells = [f"<{ids[p]}> {_dot_record_text(text)}" for p, text in zip(sorted(ports), _port_list(ports))]
            fields.append("{" + "|".join(cells) + "}" if cells else "")
        # rankdir=LR lays top-level fields out left to right: inputs | name | outputs.
        label = "|".join(f for f in (fields[0], _dot_record_text(node["name"]), fields[1]) if f)
        lines.append(f'    {_dot_id(node["name"])} [label="{label}"];')
    for src, out_port, dst, in_port in data["edges"]:
        lines.append(f"    {_dot_id(src)}:{port_ids[src, 'out'][out_port]} -> "
                     f"{_dot_id(dst)}:{port_ids[dst, 'in'][in_port]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- json ----------------------------------------------------------------------------------
def _conditions_json(conditions: dict[str, dict]) -> dict[str, dict]:
    """Salvo conditions in the definition's keys: `when` (expression text), `ports`, `max_salvos`."""
    return {name: {"when": _condition_text(c["term"]), "ports": c["ports"], "max_salvos": c["max_salvos"]}
            for name, c in conditions.items()}


def _json(data: dict, edge_meta: dict[EdgeKey, dict], node_meta: dict[str, dict]) -> str:
    nodes = []
    for node in data["nodes"]:
        entry: dict[str, Any] = {
            "name": node["name"],
            "in_ports": node["in_ports"],
            "out_ports": node["out_ports"],
            "in_salvo_conditions": _conditions_json(node["in_salvo_conditions"]),
            "out_salvo_conditions": _conditions_json(node["out_salvo_conditions"]),
        }
        if node["name"] in node_meta:
            entry["meta"] = node_meta[node["name"]]
        nodes.append(entry)
    edges = []
    for key in data["edges"]:
        src, out_port, dst, in_port = key
        # "Node.port", as a definition spells it (node names may contain dots).
        entry = {"from": f"{src}.{out_port}", "to": f"{dst}.{in_port}"}
        if tuple(key) in edge_meta:
            entry["meta"] = edge_meta[tuple(key)]
        edges.append(entry)
    # TOML metadata may hold dates and times, which JSON spells as text.
    return json.dumps({"nodes": nodes, "edges": edges}, indent=2, sort_keys=True, ensure_ascii=False,
                      default=str) + "\n"
