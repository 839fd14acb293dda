"""Module-level node functions for the node-parameter tests (process workers import them).

They report through the file named by their node's `log` param: one line per call."""

from __future__ import annotations

import os


def _log(params, line: str) -> None:
    with open(params["log"], "a") as handle:
        handle.write(f"{line} {os.getpid()}\n")


def _refuses(change) -> bool:
    try:
        change()
    except (TypeError, AttributeError):
        return True
    return False


def scaled(ctx, packets):
    """Sends value * params["factor"]; fails on 2 (so the failure function runs), after checking that
    nothing in ctx.params can be changed."""
    value = ctx.consume_packet(packets["in"][0])
    params = ctx.params
    frozen = all(_refuses(change) for change in (
        lambda: params.__setitem__("factor", 0), lambda: params.pop("factor"), lambda: params["tags"].append("x"),
        lambda: params["nested"].__setitem__("k", 0), lambda: setattr(params, "_data", {})))
    _log(params, f"exec {ctx.node_name} {params['factor']}")
    if value == 2:
        raise ValueError("two fails")
    ctx.load_output_port("out", ctx.create_packet((value * params["factor"], frozen, os.getpid())))
    ctx.send_output_salvo("send_out")


async def async_scaled(ctx, packets):
    value = await ctx.consume_packet(packets["in"][0])
    await ctx.load_output_port("out", await ctx.create_packet((value * ctx.params["factor"], True, os.getpid())))
    await ctx.send_output_salvo("send_out")


def failed(ctx):
    _log(ctx.params, f"failed {ctx.node_name} {ctx.params['factor']}")


def start(net):
    _log(net.params, f"start {net.node_name} {net.params['factor']}")


def stop(net):
    _log(net.params, f"stop {net.node_name} {net.params['factor']}")


def read_log(path) -> list[tuple[str, int]]:
    """(line without the pid, pid) for each line written."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in handle.read().splitlines()]
