"""Small builders for common graph shapes (used by the examples, benchmarks and tests).

`netrun.Graph` and friends are netrun-sim's types; these helpers only save typing for
nodes with one input salvo condition ("default": any input port non-empty, one packet
each) and one output salvo condition per output port ("send_<port>").
"""

from __future__ import annotations

import netrun_sim as ns


def simple_node(name: str, in_ports: list[str] = (), out_ports: list[str] = (), *,
                in_slots: int | None = None) -> ns.Node:
    """A node whose epoch starts when its first input port holds a packet, taking one packet."""
    def port(slots: int | None) -> ns.Port:
        return ns.Port(ns.PortSlotSpec.infinite() if slots is None else ns.PortSlotSpec.finite(slots))

    in_conditions = {}
    if in_ports:
        first = in_ports[0]
        in_conditions["default"] = ns.SalvoCondition(
            ns.MaxSalvos.finite(1), {first: ns.PacketCount.count(1)},
            ns.SalvoConditionTerm.port(first, ns.PortState.non_empty()))
    out_conditions = {
        f"send_{p}": ns.SalvoCondition(ns.MaxSalvos.infinite(), p, ns.SalvoConditionTerm.port(p, ns.PortState.non_empty()))
        for p in out_ports
    }
    return ns.Node(name=name, in_ports={p: port(in_slots) for p in in_ports},
                   out_ports={p: port(None) for p in out_ports},
                   in_salvo_conditions=in_conditions, out_salvo_conditions=out_conditions)


def edge(source: str, target: str, source_port: str = "out", target_port: str = "in") -> ns.Edge:
    """An edge from `source.source_port` to `target.target_port`."""
    return ns.Edge(ns.PortRef(source, ns.PortType.Output, source_port),
                   ns.PortRef(target, ns.PortType.Input, target_port))


def chain(*names: str) -> ns.Graph:
    """Source -> ... -> Sink, each node with ports `in` and `out`."""
    nodes = []
    for i, name in enumerate(names):
        nodes.append(simple_node(name, ["in"] if i > 0 else [], ["out"] if i < len(names) - 1 else []))
    return ns.Graph(nodes, [edge(a, b) for a, b in zip(names, names[1:])])
