"""Benchmark: the chain Source -> A -> B -> Sink and a fan-out 1 -> 8 -> 1.

For each N and durability, reports epochs per second, peak RSS of a fresh child
process, and database bytes per epoch. Each case runs in its own subprocess so RSS is
not shared between cases.

    python tools/bench_chain.py                 # N = 1,000 / 10,000 / 100,000
    python tools/bench_chain.py --sizes 1000 5000 --durability normal --defer yes

N is the number of values injected; the chain runs 4 epochs per value, the fan-out 18
(Source, Split, 8 workers, 8 Join epochs: each value is split to all 8 workers).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import netrun
from netrun.graphs import chain, edge, simple_node


def _source(ctx, packets):
    p = ctx.create_packet(ctx.epoch_id)
    ctx.load_output_port("out", p)
    ctx.send_output_salvo("send_out")


def _middle(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    p = ctx.create_packet(value)
    ctx.load_output_port("out", p)
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _fan_graph(width: int) -> netrun.Graph:
    outs = [f"o{i}" for i in range(width)]
    ins = [f"i{i}" for i in range(width)]
    split = simple_node("Split", ["in"], outs)
    workers = [simple_node(f"W{i}", ["in"], ["out"]) for i in range(width)]
    # Join: one epoch per arriving packet on any input port.
    join = netrun.Node(
        name="Join",
        in_ports={p: netrun.Port(netrun.PortSlotSpec.infinite()) for p in ins},
        in_salvo_conditions={
            f"c{i}": netrun.SalvoCondition(netrun.MaxSalvos.finite(1), {p: netrun.PacketCount.count(1)},
                                           netrun.SalvoConditionTerm.port(p, netrun.PortState.non_empty()))
            for i, p in enumerate(ins)
        },
    )
    source = simple_node("Source", [], ["out"])
    edges = [edge("Source", "Split")]
    edges += [edge("Split", f"W{i}", f"o{i}", "in") for i in range(width)]
    edges += [edge(f"W{i}", "Join", "out", f"i{i}") for i in range(width)]
    return netrun.Graph([source, split, *workers, join], edges)


def _split(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    for port in range(8):
        p = ctx.create_packet(value)
        ctx.load_output_port(f"o{port}", p)
        ctx.send_output_salvo(f"send_o{port}")


def _join(ctx, packets):
    for plist in packets.values():
        for p in plist:
            ctx.consume_packet(p)


def run_case(shape: str, n: int, durability: str, defer: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "bench.db")
        if shape == "chain":
            graph = chain("Source", "A", "B", "Sink")
            funcs = {"Source": _source, "A": _middle, "B": _middle, "Sink": _sink}
        else:
            graph = _fan_graph(8)
            funcs = {"Source": _source, "Split": _split, "Join": _join, **{f"W{i}": _middle for i in range(8)}}
        net = netrun.Net(graph, db=db, durability=durability, history_max_size=0)
        for name, func in funcs.items():
            net.set_node_exec(name, func, )
        for name in funcs:
            net.set_node_config(name, capture_stdout=False, defer_net_actions=defer)
        t0 = time.perf_counter()
        for _ in range(n):
            net.inject_source_epoch("Source")
        inject_s = time.perf_counter() - t0
        t1 = time.perf_counter()
        net.start()
        run_s = time.perf_counter() - t1
        epochs = net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"]
        net.close()
        size = sum(os.path.getsize(os.path.join(tmp, f)) for f in os.listdir(tmp))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"shape": shape, "n": n, "durability": durability, "defer": defer, "epochs": epochs,
            "epochs_per_s": round(epochs / run_s), "inject_per_s": round(n / inject_s),
            "peak_rss_mb": round(rss_mb, 1), "db_bytes_per_epoch": round(size / max(epochs, 1))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--durability", nargs="+", default=["normal", "full"], choices=["normal", "full"])
    parser.add_argument("--shapes", nargs="+", default=["chain", "fan"], choices=["chain", "fan"])
    parser.add_argument("--defer", nargs="+", default=["no", "yes"], choices=["no", "yes"],
                        help="run the nodes with defer_net_actions off and/or on")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        shape, n, durability, defer = args.case.split(":")
        print(json.dumps(run_case(shape, int(n), durability, defer == "yes")))
        return 0
    print(f"{'shape':6} {'N':>7} {'durability':10} {'defer':5} {'epochs':>8} {'epochs/s':>9} {'RSS MB':>7} "
          f"{'DB B/epoch':>10}")
    for shape in args.shapes:
        for durability in args.durability:
            for defer in args.defer:
                for n in args.sizes:
                    case = f"{shape}:{n}:{durability}:{defer}"
                    out = subprocess.run([sys.executable, __file__, "--case", case],
                                         capture_output=True, text=True, check=True)
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    print(f"{r['shape']:6} {r['n']:>7} {r['durability']:10} {defer:5} {r['epochs']:>8} "
                          f"{r['epochs_per_s']:>9} {r['peak_rss_mb']:>7} {r['db_bytes_per_epoch']:>10}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
