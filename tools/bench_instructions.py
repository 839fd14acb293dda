"""Instructions per chain epoch, counted by valgrind: a figure that machine load moves little.

Wall-clock figures on a shared 2-core machine swing by 10-15 % between two runs of the same code,
which hides any change smaller than that. This runs the chain Source -> A -> B -> Sink
(`durability="normal"`, as tools/bench_runtime.py's chain) under `valgrind --tool=cachegrind`
twice, with a small and a large number of values, and reports the difference divided by the
extra epochs: the instructions one more epoch costs, start-up and imports excluded. On a quiet
machine two runs of the same code agree within ~0.5 %; on a busy one within ~3 %: under valgrind an
epoch takes ~30x longer, and the runtime's choices made by the clock (when a group of epochs is
committed) then shift with the load.

Instructions are a proxy for time, not time: they show a change that load hides, and its sign,
but not always its size. Work done by wide, fast instructions (SQLite zeroing a page with memset)
weighs more in instructions than in seconds: removing a temporary index per row cut 17 % of the
instructions of a chain epoch and 8-12 % of its CPU time (medians of 8 alternating runs).

    python tools/bench_instructions.py                       # deferred and non-deferred
    python tools/bench_instructions.py --defer yes --json
    PYTHONPATH=<another checkout> python tools/bench_instructions.py   # that version, the same way

It needs valgrind (Debian: `apt-get install valgrind`) and takes about a minute per case.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _case(values: int, defer: bool) -> None:
    """Run the chain in this process (under valgrind, from the parent)."""
    sys.path.insert(0, HERE)
    import netrun
    from netrun.graphs import chain

    import bench_nodes as b

    with tempfile.TemporaryDirectory() as tmp:
        net = netrun.Net(chain("Source", "A", "B", "Sink"), db=os.path.join(tmp, "chain.db"), history_max_size=0)
        for name, func in {"Source": b.source, "A": b.forward, "B": b.forward, "Sink": b.sink}.items():
            net.set_node_exec(name, func)
            net.set_node_config(name, capture_stdout=False, defer_net_actions=defer)
        for _ in range(values):
            net.inject_source_epoch("Source")
        net.start()
        net.close()


def _instructions(values: int, defer: bool) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), ROOT) if p)
    proc = subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
                           sys.executable, os.path.abspath(__file__), "_case", str(values), "1" if defer else "0"],
                          capture_output=True, text=True, env=env)
    found = re.search(r"I\s+refs:\s+([\d,]+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"bench_instructions: the case failed under valgrind (exit {proc.returncode}):\n"
                         f"{proc.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_case"]:
        _case(int(argv[1]), argv[2] == "1")
        return 0
    parser = argparse.ArgumentParser(description="Instructions per chain epoch (valgrind), start-up excluded.")
    parser.add_argument("--defer", choices=["yes", "no", "both"], default="both",
                        help="defer_net_actions of the chain's nodes (default: both, one after the other)")
    parser.add_argument("--small", type=int, default=300, help="values of the small run (default 300)")
    parser.add_argument("--large", type=int, default=1300, help="values of the large run (default 1300)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    if not 0 < args.small < args.large:
        parser.error("--small must be positive and below --large")
    import netrun

    for defer in {"yes": [True], "no": [False], "both": [False, True]}[args.defer]:
        began = time.perf_counter()
        small, large = _instructions(args.small, defer), _instructions(args.large, defer)
        per_epoch = (large - small) / (4 * (args.large - args.small))
        result = {"case": "chain", "defer": defer, "instructions_per_epoch": round(per_epoch),
                  "small": args.small, "large": args.large, "seconds": round(time.perf_counter() - began, 1),
                  "netrun": os.path.dirname(netrun.__file__)}
        print(json.dumps(result) if args.json else
              f"chain, {'deferred' if defer else 'non-deferred'}: {per_epoch:,.0f} instructions per epoch "
              f"({args.small} and {args.large} values; {result['netrun']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
