"""Benchmark: time to resume a net, against history length and live state.

Builds databases with H history rows (a chain run to completion) and L live packets
(waiting at a node whose input condition never holds, so they stay in the sim), closes
them, and times `Net.resume(db)` until the net is ready to run. Each database is built
once and resumed 3 times (best of 3 reported).

    python tools/bench_resume.py                        # H = 100k, 1M; L = 1k, 10k
    python tools/bench_resume.py --history 100000 --live 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import netrun
from netrun.graphs import edge, simple_node


def _graph() -> netrun.Graph:
    hold = netrun.Node(
        name="Hold",
        in_ports={"in": netrun.Port(netrun.PortSlotSpec.infinite()),
                  "never": netrun.Port(netrun.PortSlotSpec.infinite())},
        in_salvo_conditions={"both": netrun.SalvoCondition(
            netrun.MaxSalvos.finite(1), ["in", "never"],
            netrun.SalvoConditionTerm.and_([
                netrun.SalvoConditionTerm.port("in", netrun.PortState.non_empty()),
                netrun.SalvoConditionTerm.port("never", netrun.PortState.non_empty())]))},
    )
    return netrun.Graph([simple_node("A", ["in"], ["out"]), simple_node("Sink", ["in"], []), hold],
                        [edge("A", "Sink")])


def _forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def build(path: str, history_rows: int, live: int) -> int:
    net = netrun.Net(_graph(), db=path, history_max_size=0)
    net.set_node_exec("A", _forward)
    net.set_node_exec("Sink", _sink)
    net.set_node_config("A", defer_net_actions=True, capture_stdout=False)
    net.set_node_config("Sink", defer_net_actions=True, capture_stdout=False)
    per_value = 30  # history rows per value through A and Sink (measured below, refined in a loop)
    while True:
        have = net.query("SELECT coalesce(max(seq), 0) AS n FROM history")[0]["n"]
        if have >= history_rows:
            break
        for value in range(max(1, (history_rows - have) // per_value)):
            net.inject_packet("A", "in", value)
        net.start()
    for value in range(live):
        net.inject_packet("Hold", "in", value)
    while net.query("SELECT count(*) AS n FROM inbox")[0]["n"]:
        net.run_step()
    rows = net.query("SELECT count(*) AS n FROM history")[0]["n"]
    net.close()
    return rows


def time_resume(path: str) -> float:
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        net = netrun.Net.resume(path)
        elapsed = time.perf_counter() - began
        live = net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'")[0]["n"]
        net.close()
        best = min(best, elapsed)
    return best, live


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--live", type=int, nargs="+", default=[1_000, 10_000])
    args = parser.parse_args(argv)
    print(f"{'history rows':>12} {'live packets':>12} {'db MB':>7} {'resume s':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for history in args.history:
            for live in args.live:
                path = os.path.join(tmp, f"h{history}-l{live}.db")
                rows = build(path, history, live)
                seconds, live_now = time_resume(path)
                size = os.path.getsize(path) / 1e6
                print(f"{rows:>12} {live_now:>12} {size:>7.1f} {seconds:>9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
