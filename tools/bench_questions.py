"""How fast the everyday questions are on a big run, and how big the run is.

Builds (or reuses) a database holding a finished chain Source -> A -> B -> Sink of N values with
full history (N = 100,000 gives ~400,000 epochs and ~5.7M history records), then times, through
`NetInspector` (what `netrun trace`, `history --packet` and `status` call), the median of 5 runs of:
  trace          the lineage of a packet from the middle of the run
  history        `history --packet` of that packet
  status         the whole-net report
and prints history records, bytes per epoch and the timings.

    python tools/bench_questions.py --values 100000 --db /tmp/big.db
    python tools/bench_questions.py --values 10000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)


def chain_net(path: str, values: int):
    """The chain Source -> A -> B -> Sink in `path` with `values` source epochs injected, not run."""
    import bench_nodes as b

    import netrun
    from netrun.graphs import chain

    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=path, history_max_size=0)
    for name, func in {"Source": b.source, "A": b.forward, "B": b.forward, "Sink": b.sink}.items():
        net.set_node_exec(name, func)
        net.set_node_config(name, capture_stdout=False)
    for _ in range(values):
        net.inject_source_epoch("Source")
    return net


def build(path: str, values: int) -> float:
    """The chain run into `path`; returns epochs per second."""
    net = chain_net(path, values)
    try:
        began = time.perf_counter()
        net.start()
        return 4 * values / (time.perf_counter() - began)
    finally:
        net.close()


def timed(func, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        func()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def measure(path: str) -> dict:
    import netrun

    with netrun.NetInspector(path) as net:
        records = net.query("SELECT seq + coalesce(json_array_length(events), 0) AS n FROM history_actions "
                            "ORDER BY seq DESC LIMIT 1")[0]["n"]
        epochs = net.query("SELECT count(*) AS n FROM epochs")[0]["n"]
        packets = net.query("SELECT id FROM packets ORDER BY id LIMIT 1 OFFSET "
                            "(SELECT count(*) / 2 FROM packets)")
        packet = packets[0]["id"]
        return {
            "history_records": records,
            "epochs": epochs,
            "bytes_per_epoch": round(os.path.getsize(path) / max(epochs, 1)),
            "trace_ms": round(timed(lambda: net.trace(packet)) * 1000, 1),
            "history_packet_ms": round(timed(lambda: net.history(packet=packet)) * 1000, 1),
            "status_ms": round(timed(lambda: net.status()) * 1000, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=100_000, help="values through the chain (default 100,000)")
    parser.add_argument("--db", help="the database to build or reuse (default: a temporary file)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    path = args.db or os.path.join(os.environ.get("TMPDIR", "/tmp"), f"bench-questions-{os.getpid()}.db")
    result: dict = {"values": args.values}
    if not os.path.exists(path):
        result["build_epochs_per_s"] = round(build(path, args.values))
    result.update(measure(path))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    if not args.db:
        for suffix in ("", "-wal", "-shm", "-lock", "-starts"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
