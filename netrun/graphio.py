"""Graph <-> plain data (JSON), so the database can hold the graph it runs.

Salvo condition terms are kept as nested lists, e.g. ["and", [["port", "in", "nonempty"], ...]];
numeric port states as ["port", "in", ["ge", 3]].
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import netrun_sim as ns

from .errors import ConfigError, NotFoundError

_STATES = {"Empty": "empty", "Full": "full", "NonEmpty": "nonempty", "NonFull": "nonfull"}
_NUMERIC = {"equals": "eq", "less_than": "lt", "greater_than": "gt", "equals_or_less_than": "le",
            "equals_or_greater_than": "ge"}
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


@dataclass(frozen=True, slots=True)
class NodeShape:
    """What a running epoch reads of its graph node, as plain data, read once per net (netrun-sim
    builds its objects anew at every attribute read): the input port names, each output port's
    capacity (None: unbounded), and each output salvo condition as `graph_to_data` writes it
    ({"max_salvos": n or "infinite", "ports": {port: n or "all"}, "term": [...]})."""

    in_ports: tuple[str, ...]
    out_capacity: dict[str, int | None]
    out_conditions: dict[str, dict]


def node_shape(node: ns.Node) -> NodeShape:
    return NodeShape(tuple(node.in_ports), {p: _slots(port) for p, port in node.out_ports.items()},
                     {n: _condition_to_data(c) for n, c in node.out_salvo_conditions.items()})


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
    edges = sorted([e.source.node_name, e.source.port_name, e.target.node_name, e.target.port_name]
                   for e in graph.edges())  # netrun-sim lists edges in no fixed order
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


def get_node(nodes: dict[str, ns.Node], name: str) -> ns.Node:
    """The graph's node `name`.

    Raises:
        NotFoundError: the graph has no such node (the message lists the nodes).
    """
    try:
        return nodes[name]
    except KeyError:
        raise NotFoundError(f"the graph has no node {name!r} (nodes: {', '.join(sorted(nodes))})",
                            node_name=name) from None


def node_depths(graph: ns.Graph) -> dict[str, int]:
    """Longest distance from a source for each node, a cycle counting as one step.

    The runtime runs deeper (downstream) epochs first, so backlogs drain instead of
    piling up on edges. Nodes on one cycle share a depth.
    """
    names = sorted(graph.nodes())
    succ: dict[str, set[str]] = {n: set() for n in names}
    for edge in graph.edges():
        succ[edge.source.node_name].add(edge.target.node_name)
    component = _strongly_connected(names, succ)
    # Longest path over the condensation (a DAG), in topological order.
    comp_succ: dict[int, set[int]] = {}
    indeg: dict[int, int] = {c: 0 for c in set(component.values())}
    for a in names:
        for b in succ[a]:
            ca, cb = component[a], component[b]
            if ca != cb and cb not in comp_succ.setdefault(ca, set()):
                comp_succ[ca].add(cb)
                indeg[cb] += 1
    depth = {c: 0 for c in indeg}
    ready = deque(sorted(c for c, d in indeg.items() if d == 0))
    while ready:
        c = ready.popleft()
        for d in sorted(comp_succ.get(c, ())):
            depth[d] = max(depth[d], depth[c] + 1)
            indeg[d] -= 1
            if indeg[d] == 0:
                ready.append(d)
    return {n: depth[component[n]] for n in names}


def _strongly_connected(names: list[str], succ: dict[str, set[str]]) -> dict[str, int]:
    """Tarjan's algorithm, iterative: node -> component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = 0
    for root in names:
        if root in index:
            continue
        work = [(root, iter(sorted(succ[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(succ[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                number = len(set(component.values()))
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = number
                    if member == node:
                        break
    return component
