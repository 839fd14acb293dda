"""Benchmark: what `netrun logs --search` costs (the run pays nothing: the index is built by searches).

Runs the chain Source -> Work -> Sink over N values, Work printing one log line per value, then
measures: the first search (builds the side-file index over every log line), a second one (nothing
new), a search after M more values ran (adds only those), the size of the index per line, and a
plain `instr()` scan of node_logs for comparison.

    python tools/bench_search.py --values 20000 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import netrun
from netrun.graphs import chain


def _run(db: str, values: range, *, create: bool) -> float:
    def work(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        print(f"value {value} parsed from record {value * 7} of shard {value % 13}")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])

    net = netrun.Net(chain("Source", "Work", "Sink"), db=db) if create else netrun.Net.resume(db)
    with net:
        net.set_node_exec("Work", work)
        net.set_node_exec("Sink", sink)
        for value in values:
            net.inject_packet("Work", "in", value)
        began = time.perf_counter()
        net.start()
        return time.perf_counter() - began


def measure(n: int, more: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = os.path.join(folder, "search.db")
        run_seconds = _run(db, range(n), create=True)
        with netrun.NetInspector(db) as net:
            began = time.perf_counter()
            found, first = net.search("parsed shard 7")
            first_seconds = time.perf_counter() - began
            began = time.perf_counter()
            _, second = net.search("parsed shard 7")
            second_seconds = time.perf_counter() - began
            began = time.perf_counter()
            scanned = net.query("SELECT count(*) AS n FROM node_logs WHERE instr(text, 'shard 7')")[0]["n"]
            scan_seconds = time.perf_counter() - began
        size = os.path.getsize(db + "-search")
        _run(db, range(n, n + more), create=False)
        with netrun.NetInspector(db) as net:
            began = time.perf_counter()
            _, third = net.search("parsed shard 7")
            third_seconds = time.perf_counter() - began
        print(f"{n:>8} log lines (run: {n * 2 / run_seconds:,.0f} epochs/s): first search {first_seconds:.2f} s "
              f"({first['added']} indexed, {first_seconds / max(first['added'], 1) * 1e6:.1f} us each), "
              f"{len(found)} found (an instr() scan: {scanned} in {scan_seconds * 1000:.0f} ms)")
        print(f"{'':>8} again: {second_seconds * 1000:.0f} ms ({second['added']} indexed); after {more} more "
              f"values: {third_seconds * 1000:.0f} ms ({third['added']} indexed); index file "
              f"{size / max(first['added'], 1):.0f} bytes per line")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, nargs="+", default=[20000], help="values (log lines) per run")
    parser.add_argument("--more", type=int, default=1000, help="values run before the third search")
    args = parser.parse_args(argv)
    for n in args.values:
        measure(n, args.more)
    return 0


if __name__ == "__main__":
    sys.exit(main())
