"""Checking a definition whole (`netrun validate`): every error, then warnings about a valid one.

`read_definition` stops at the first error (a net cannot be made from a bad definition); this
reads on through the other nodes and edges and reports each error with its line. A definition
without errors gets warnings for what is allowed but likely a mistake:

- an input port no edge leads to (only packets injected there reach it), an output port with
  no edge out of it;
- a node without an exec function (its epochs stay startable until one is set);
- a node that no source node (one without input ports) reaches (only injected packets start it),
  or, with no source node at all, one warning that work enters only by injection.

Warnings are not computed while there are errors: a graph with parts left out would show
problems that are not there.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from .definition import Definition, Reader, parse_toml, read_source
from .errors import DefinitionError
from .tomlpos import KeyPath, Locator


@dataclass(frozen=True)
class DefinitionWarning:
    """Something allowed that is likely a mistake, at `line` of `source` (None: the whole file)."""

    source: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.source}{'' if self.line is None else f':{self.line}'}: warning: {self.message}"


@dataclass
class Checked:
    """What checking a definition found: `definition` is None when there are errors."""

    source: str
    definition: Definition | None
    errors: list[DefinitionError] = field(default_factory=list)
    warnings: list[DefinitionWarning] = field(default_factory=list)


def check_definition(path_or_text: str | os.PathLike) -> Checked:
    """Every error of a definition (each a DefinitionError naming its file and line), or its warnings.
    Nothing is written; functions are imported and factories run, as when it is loaded.

    Raises nothing for a bad definition (an unreadable file is one of its errors)."""
    try:
        text, source = read_source(path_or_text)
        doc = parse_toml(text, source)
    except DefinitionError as exc:
        return Checked(getattr(exc, "path", None) or str(path_or_text), None, [exc])
    reader = Reader(source, text, collect=True)
    definition = reader.read(doc)
    if reader.errors:
        return Checked(source, None, sorted(reader.errors, key=lambda e: (e.line or 0, e.column or 0)))
    return Checked(source, definition, [], _warnings(definition, Locator(text)))


def _warnings(definition: Definition, locator: Locator) -> list[DefinitionWarning]:
    found: list[tuple[KeyPath, str]] = []
    nodes = {name: d.node for name, d in definition.nodes.items()}
    edges = definition.graph.edges()
    into = {(e.target.node_name, e.target.port_name) for e in edges}
    out_of = {(e.source.node_name, e.source.port_name) for e in edges}
    for name, node in sorted(nodes.items()):
        for port in sorted(node.in_ports):
            if (name, port) not in into:
                found.append((("nodes", name, "in_ports", port), f"node {name!r} input port {port!r} has no edge "
                              "into it: only packets injected there reach it"))
        for port in sorted(node.out_ports):
            if (name, port) not in out_of:
                found.append((("nodes", name, "out_ports", port), f"node {name!r} output port {port!r} has no edge "
                              "out of it"))
        if "exec_node_func" not in definition.nodes[name].functions:
            found.append((("nodes", name), f"node {name!r} has no exec function (exec_node_func): its epochs stay "
                          "startable until one is set (Net.set_node_exec)"))
    sources = sorted(name for name, node in nodes.items() if not node.in_ports)
    if nodes and not sources:
        found.append((("nodes",), "no source node (a node without input ports): work enters only as injected "
                      "packets"))
    elif sources:
        reached = _reachable(sources, [(e.source.node_name, e.target.node_name) for e in edges])
        for name in sorted(set(nodes) - reached):
            found.append((("nodes", name), f"node {name!r} is not reachable from any source node "
                          f"({', '.join(sources)}): only packets injected into it start it"))
    return [DefinitionWarning(definition.source, locator.position(at)[0], message) for at, message in found]


def _reachable(sources: list[str], links: list[tuple[str, str]]) -> set[str]:
    following: dict[str, list[str]] = {}
    for a, b in links:
        following.setdefault(a, []).append(b)
    reached, todo = set(sources), deque(sources)
    while todo:
        for nxt in following.get(todo.popleft(), []):
            if nxt not in reached:
                reached.add(nxt)
                todo.append(nxt)
    return reached
