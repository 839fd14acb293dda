"""A factory with a callable argument (SPEC "Node Factories", "Serialization"): one input port per
parameter of `func` (given as an import path or a function), its result on `out`."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import netrun_sim as ns

from netrun.factories import import_from_path


def _resolve(func: str | Callable) -> Callable:
    return import_from_path(func) if isinstance(func, str) else func


def get_node_spec(func: str | Callable, timeout: int = 30) -> dict:
    params = list(inspect.signature(_resolve(func)).parameters)
    port = ns.Port(ns.PortSlotSpec.infinite())
    nonempty = [ns.SalvoConditionTerm.port(p, ns.PortState.non_empty()) for p in params]
    return {
        "name": _resolve(func).__name__,
        "in_ports": {p: port for p in params},
        "out_ports": {"out": port},
        "in_salvo_conditions": {"default": ns.SalvoCondition(
            ns.MaxSalvos.finite(1), {p: ns.PacketCount.count(1) for p in params},
            ns.SalvoConditionTerm.and_(nonempty))},
        "out_salvo_conditions": {"send": ns.SalvoCondition(
            ns.MaxSalvos.infinite(), ["out"], ns.SalvoConditionTerm.port("out", ns.PortState.non_empty()))},
    }


def get_node_funcs(func: str | Callable, timeout: int = 30) -> tuple:
    target = _resolve(func)
    params = list(inspect.signature(target).parameters)

    def run(ctx, packets):
        result = target(*(ctx.consume_packet(packets[p][0]) for p in params))
        ctx.load_output_port("out", ctx.create_packet(result))
        ctx.send_output_salvo("send")

    return (run, None, None, None)
