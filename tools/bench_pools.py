"""Benchmark: thread and process pools against the main thread, measured side by side.

1. I/O-bound: a node that sleeps 10 ms, 200 values: main thread vs a thread pool of 16.
2. CPU-bound: ~20 ms of CPU per value, 100 values: main thread vs a process pool of 2.
3. Queue overhead: the chain Source -> A -> B -> Sink (one value in, one out) through a
   thread pool of 1, against the main thread: epochs per second.

Pools are started (a warm-up value runs through them) before the clock starts; the cold
figure (pool start included) is printed too.

    python tools/bench_pools.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import netrun
from netrun.graphs import chain

SLEEP = 0.010
CPU_SECONDS = 0.020


def sleepy(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(SLEEP)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _burn(seconds: float) -> int:
    end = time.process_time() + seconds
    n = 0
    while time.process_time() < end:
        n += sum(i * i for i in range(200))
    return n


def busy(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    _burn(CPU_SECONDS)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def forward(ctx, packets):
    ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packets["in"][0])))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def timed_run(func, values: int, *, pool: dict | None, pool_kind: str | None, nodes=("A",)) -> tuple[float, float]:
    """(cold seconds including pool start, warm seconds) for `values` values through node A."""
    with tempfile.TemporaryDirectory() as tmp:
        options = {}
        if pool_kind == "thread":
            options["thread_pools"] = pool
        elif pool_kind == "process":
            options["process_pools"] = pool
        names = ("Src", *nodes, "Sink")
        net = netrun.Net(chain(*names), db=os.path.join(tmp, "b.db"), history_max_size=0, **options)
        for name in nodes:
            net.set_node_exec(name, func)
            net.set_node_config(name, capture_stdout=False, **({"pool": next(iter(pool))} if pool else {}))
        net.set_node_exec("Sink", sink)
        net.set_node_config("Sink", capture_stdout=False)
        began = time.perf_counter()
        net.inject_packet(nodes[0], "in", -1)  # warm-up: starts the pools
        net.start()
        cold_start = time.perf_counter() - began
        for value in range(values):
            net.inject_packet(nodes[0], "in", value)
        began = time.perf_counter()
        net.start()
        warm = time.perf_counter() - began
        finished = net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"]
        expected = (values + 1) * (len(nodes) + 1)
        if finished != expected:
            raise SystemExit(f"benchmark run lost epochs: {finished} finished, expected {expected}")
        net.close()
        return cold_start + warm, warm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)  # no options: --help prints the description and exits, before any run
    print("1. sleep 10 ms per value, 200 values")
    _, main_io = timed_run(sleepy, 200, pool=None, pool_kind=None)
    cold, warm = timed_run(sleepy, 200, pool={"io": {"size": 16}}, pool_kind="thread")
    print(f"   main thread        {main_io:7.3f} s")
    print(f"   thread pool of 16  {warm:7.3f} s  ({main_io / warm:5.1f}x; cold with pool start {cold:.3f} s, "
          f"{main_io / cold:.1f}x)")
    print("2. ~20 ms CPU per value, 100 values")
    _, main_cpu = timed_run(busy, 100, pool=None, pool_kind=None)
    cold, warm = timed_run(busy, 100, pool={"cpu": {"size": 2}}, pool_kind="process")
    print(f"   main thread        {main_cpu:7.3f} s")
    print(f"   process pool of 2  {warm:7.3f} s  ({main_cpu / warm:5.2f}x; cold with pool start {cold:.3f} s, "
          f"{main_cpu / cold:.2f}x)")
    print("3. queue overhead: chain Src -> A -> B -> Sink, 2,000 values")
    values = 2000
    _, main_chain = timed_run(forward, values, pool=None, pool_kind=None, nodes=("A", "B"))
    _, pool_chain = timed_run(forward, values, pool={"one": {"size": 1}}, pool_kind="thread", nodes=("A", "B"))
    epochs = values * 3
    print(f"   main thread          {epochs / main_chain:8.0f} epochs/s")
    print(f"   thread pool of 1     {epochs / pool_chain:8.0f} epochs/s  "
          f"({pool_chain / main_chain:.1f}x the time per epoch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
