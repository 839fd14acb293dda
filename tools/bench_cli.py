"""Benchmark: the `netrun` command's read commands against run size, and the progress display's cost.

1. For N values through the chain Source -> A -> B -> Sink (4 epochs and ~55 history rows per
   value), builds the database once, then times (best of 3) what the read commands do:
   open (file checks), status, history filtered by node and by packet, trace of a packet in
   the middle of the run, a SQL aggregate, and the whole `netrun status` command.
2. Runs the same chain of M values three ways side by side: no display, the plain progress
   lines (every 0.05 s, 40x the default rate), and the live terminal table (rendered into a
   null terminal at its 4 Hz), and reports epochs per second for each.

    python tools/bench_cli.py                       # N = 1,000 / 10,000 / 100,000; M = 20,000
    python tools/bench_cli.py --sizes 1000 10000 --progress-values 5000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

from rich.console import Console

import netrun
from netrun.cli import main as cli_main
from netrun.cli.progress import LiveProgress, PlainProgress
from netrun.graphs import chain


def _source(ctx, packets):
    ctx.load_output_port("out", ctx.create_packet(ctx.epoch_id))
    ctx.send_output_salvo("send_out")


def _middle(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _net(path: str) -> netrun.Net:
    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=path, history_max_size=0)
    for name, func in (("Source", _source), ("A", _middle), ("B", _middle), ("Sink", _sink)):
        net.set_node_exec(name, func)
        net.set_node_config(name, defer_net_actions=True, capture_stdout=False)
    return net


def build(path: str, values: int) -> float:
    started = time.perf_counter()
    with _net(path) as net:
        for _ in range(values):
            net.inject_source_epoch("Source")
        net.start()
    return time.perf_counter() - started


def best_of(func, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return min(times)


def read_commands(path: str) -> dict[str, float]:
    with netrun.NetInspector(path) as net:
        rows = net.query("SELECT max(seq) AS n FROM history")[0]["n"]
        middle = net.query("SELECT packet_id FROM history WHERE name = 'CreatePacket' AND node_name = 'A' "
                           "AND seq > ? ORDER BY seq LIMIT 1", (rows // 2,))[0]["packet_id"]
        figures = {
            "history rows": rows,
            "open": best_of(lambda: netrun.NetInspector(path).close()),
            "status": best_of(net.status),
            "history --node B --limit 100": best_of(lambda: net.history(node="B", limit=100)),
            "history --packet P": best_of(lambda: net.history(packet=middle)),
            "trace P": best_of(lambda: net.trace(middle)),
            "sql group by": best_of(lambda: net.query("SELECT node_name, state, count(*) FROM epochs GROUP BY 1, 2")),
        }
    with contextlib.redirect_stdout(io.StringIO()):
        figures["netrun status (command)"] = best_of(lambda: cli_main(["status", path]))
    return figures


def run_with_display(path: str, values: int, display: str) -> float:
    """Epochs per second of a chain run with the given display running beside it."""
    with _net(path) as net:
        for _ in range(values):
            net.inject_source_epoch("Source")
        with netrun.NetInspector(path) as inspector:
            shown = None
            if display == "plain":
                shown = PlainProgress(net, inspector, Console(file=io.StringIO()), inspector.node_counts(),
                                      interval=0.05)
            elif display == "live":
                sink = Console(file=io.StringIO(), force_terminal=True, width=120)
                shown = LiveProgress(net, inspector, sink, inspector.node_counts(), interval=0.25)
            started = time.perf_counter()
            if shown:
                shown.start()
            net.start()
            elapsed = time.perf_counter() - started
            if shown:
                shown.stop()
    return values * 4 / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--progress-values", type=int, default=20000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="netrun-bench-cli-") as tmp:
        print("1. read commands (best of 3, seconds)")
        results = {}
        for n in args.sizes:
            path = os.path.join(tmp, f"chain-{n}.db")
            built = build(path, n)
            results[n] = read_commands(path)
            print(f"   N = {n:>7}: built in {built:.1f} s, {results[n]['history rows']} history rows, "
                  f"{os.path.getsize(path) / 1e6:.0f} MB", flush=True)
        names = [k for k in results[args.sizes[0]] if k != "history rows"]
        print(f"   {'':<30}" + "".join(f"{f'N={n}':>12}" for n in args.sizes))
        for name in names:
            print(f"   {name:<30}" + "".join(f"{results[n][name]:>12.4f}" for n in args.sizes))
        print(f"\n2. progress display, {args.progress_values} values x 4 epochs, side by side (epochs/s)")
        for round_ in range(2):
            figures = {}
            for display in ("none", "plain", "live"):
                path = os.path.join(tmp, f"progress-{display}-{round_}.db")
                figures[display] = run_with_display(path, args.progress_values, display)
            print(f"   round {round_ + 1}: " + ", ".join(f"{k} {v:,.0f}" for k, v in figures.items())
                  + f"  (plain/none {figures['plain'] / figures['none']:.2f}, live/none "
                  f"{figures['live'] / figures['none']:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
