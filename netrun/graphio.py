"""Graph <-> plain data (JSON), so the database can hold the graph it runs.

Salvo condition terms are kept as nested lists, e.g. ["and", [["port", "in", "nonempty"], ...]];
numeric port states as ["port", "in", ["ge", 3]].
"""

from __future__ import annotations

from collections import deque
from typing import Any

import netrun_sim as ns

from .errors import ConfigError

_STATES = {"Empty": "empty", "Full": "full", "NonEmpty": "nonempty", "NonFull": "nonfull"}
_NUMERIC = {"Equals": "eq", "LessThan": "lt", "GreaterThan": "gt", "EqualsOrLessThan": "le",
            "EqualsOrGreaterThan": "ge"}
_STATE_BUILD = {"empty": ns.PortState.empty, "full": ns.PortState.full, "nonempty": ns.PortState.non_empty,
                "nonfull": ns.PortState.non_full}
_NUMERIC_BUILD = {"eq": ns.PortState.equals, "lt": ns.PortState.less_than, "gt": ns.PortState.greater_than,
                  "le": ns.PortState.equals_or_less_than, "ge": ns.PortState.equals_or_greater_than}


def _slots(port: ns.Port) -> int | None:
    spec = port.slots_spec
    return spec.capacity if isinstance(spec, ns.PortSlotSpecFinite) else None


def _state_to_data(state: Any) -> Any:
    if isinstance(state, ns.PortStateNumeric):
        return [_NUMERIC[state.kind], state.value]
    for name, word in _STATES.items():
        if state == getattr(ns.PortState, name):
            return word
    raise ConfigError(f"unsupported port state {state!r}")


def term_to_data(term: ns.SalvoConditionTerm) -> Any:
    kind = term.kind
    if kind == "True":
        return True
    if kind == "False":
        return False
    if kind == "Port":
        return ["port", term.get_port_name(), _state_to_data(term.get_port_state())]
    if kind in ("And", "Or"):
        return [kind.lower(), [term_to_data(t) for t in term.get_terms()]]
    return ["not", term_to_data(term.get_inner())]


def term_from_data(data: Any) -> ns.SalvoConditionTerm:
    if data is True:
        return ns.SalvoConditionTerm.true_()
    if data is False:
        return ns.SalvoConditionTerm.false_()
    head = data[0]
    if head == "port":
        state = data[2]
        built = _STATE_BUILD[state]() if isinstance(state, str) else _NUMERIC_BUILD[state[0]](state[1])
        return ns.SalvoConditionTerm.port(data[1], built)
    if head == "and":
        return ns.SalvoConditionTerm.and_([term_from_data(t) for t in data[1]])
    if head == "or":
        return ns.SalvoConditionTerm.or_([term_from_data(t) for t in data[1]])
    if head == "not":
        return ns.SalvoConditionTerm.not_(term_from_data(data[1]))
    raise ConfigError(f"unknown salvo term {data!r}")


def _condition_to_data(cond: ns.SalvoCondition) -> dict:
    max_salvos = cond.max_salvos
    ports = {}
    for port, count in cond.ports.items():
        ports[port] = count.count if isinstance(count, ns.PacketCountN) else "all"
    return {
        "max_salvos": max_salvos.max if isinstance(max_salvos, ns.MaxSalvosFinite) else "infinite",
        "ports": ports,
        "term": term_to_data(cond.term),
    }


def _condition_from_data(data: dict) -> ns.SalvoCondition:
    max_salvos = ns.MaxSalvos.infinite() if data["max_salvos"] == "infinite" else ns.MaxSalvos.finite(data["max_salvos"])
    ports = {p: (ns.PacketCount.all() if c == "all" else ns.PacketCount.count(c)) for p, c in data["ports"].items()}
    return ns.SalvoCondition(max_salvos, ports, term_from_data(data["term"]))


def _port_from(slots: int | None) -> ns.Port:
    return ns.Port(ns.PortSlotSpec.infinite() if slots is None else ns.PortSlotSpec.finite(slots))


def graph_to_data(graph: ns.Graph) -> dict:
    nodes = []
    for name, node in sorted(graph.nodes().items()):
        nodes.append({
            "name": name,
            "in_ports": {p: _slots(port) for p, port in node.in_ports.items()},
            "out_ports": {p: _slots(port) for p, port in node.out_ports.items()},
            "in_salvo_conditions": {n: _condition_to_data(c) for n, c in node.in_salvo_conditions.items()},
            "out_salvo_conditions": {n: _condition_to_data(c) for n, c in node.out_salvo_conditions.items()},
        })
    edges = [[e.source.node_name, e.source.port_name, e.target.node_name, e.target.port_name] for e in graph.edges()]
    return {"nodes": nodes, "edges": edges}


def graph_from_data(data: dict) -> ns.Graph:
    nodes = [
        ns.Node(
            name=n["name"],
            in_ports={p: _port_from(s) for p, s in n["in_ports"].items()},
            out_ports={p: _port_from(s) for p, s in n["out_ports"].items()},
            in_salvo_conditions={k: _condition_from_data(c) for k, c in n["in_salvo_conditions"].items()},
            out_salvo_conditions={k: _condition_from_data(c) for k, c in n["out_salvo_conditions"].items()},
        )
        for n in data["nodes"]
    ]
    edges = [ns.Edge(ns.PortRef(a, ns.PortType.Output, b), ns.PortRef(c, ns.PortType.Input, d))
             for a, b, c, d in data["edges"]]
    return ns.Graph(nodes, edges)


def node_depths(graph: ns.Graph) -> dict[str, int]:
    """Longest distance from a source for each node (cycles counted once).

    The runtime runs deeper (downstream) epochs first, so backlogs drain instead of
    piling up on edges.
    """
    names = list(graph.nodes())
    succ: dict[str, set[str]] = {n: set() for n in names}
    indeg = {n: 0 for n in names}
    for edge in graph.edges():
        a, b = edge.source.node_name, edge.target.node_name
        if b not in succ[a]:
            succ[a].add(b)
            indeg[b] += 1
    depth = {n: 0 for n in names}
    ready = deque(n for n in names if indeg[n] == 0)
    seen = set()
    while ready:
        n = ready.popleft()
        seen.add(n)
        for m in succ[n]:
            depth[m] = max(depth[m], depth[n] + 1)
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    for n in names:  # nodes on cycles: below their deepest seen predecessor
        if n not in seen:
            depth[n] = max([depth[p] + 1 for p in names if n in succ[p] and p in seen] or [0])
    return depth
