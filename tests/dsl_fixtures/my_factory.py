"""A node factory (SPEC "Node Factories"): `num_inputs` input ports summed into `out`.

The exec function is a closure, so only the factory can make it again on resume.
"""

from __future__ import annotations

import netrun_sim as ns


def _port() -> ns.Port:
    return ns.Port(ns.PortSlotSpec.infinite())


def get_node_spec(num_inputs: int = 2, timeout: int = 30) -> dict:
    ports = [f"in{i}" for i in range(num_inputs)]
    nonempty = [ns.SalvoConditionTerm.port(p, ns.PortState.non_empty()) for p in ports]
    term = nonempty[0] if len(nonempty) == 1 else ns.SalvoConditionTerm.and_(nonempty)
    return {
        "name": "Sum",
        "in_ports": {p: _port() for p in ports},
        "out_ports": {"out": _port()},
        "in_salvo_conditions": {
            "default": ns.SalvoCondition(ns.MaxSalvos.finite(1), {p: ns.PacketCount.count(1) for p in ports}, term)},
        "out_salvo_conditions": {
            "send": ns.SalvoCondition(ns.MaxSalvos.infinite(), ["out"],
                                      ns.SalvoConditionTerm.port("out", ns.PortState.non_empty()))},
    }


def get_node_funcs(num_inputs: int = 2, timeout: int = 30) -> tuple:
    def add(ctx, packets):
        total = sum(ctx.consume_packet(packets[f"in{i}"][0]) for i in range(num_inputs))
        ctx.load_output_port("out", ctx.create_packet(total))
        ctx.send_output_salvo("send")

    def failed(ctx):
        print(f"sum failed (timeout {timeout})")

    return (add, None, None, failed)
