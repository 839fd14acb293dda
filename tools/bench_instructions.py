"""Instructions per chain epoch, counted by valgrind: a figure that machine load hardly moves.

Wall-clock figures on a shared 2-core machine swing by 10-15 % between two runs of the same code,
which hides any change smaller than that. This runs the chain Source -> A -> B -> Sink
(`durability="normal"`, as tools/bench_runtime.py's chain) under `valgrind --tool=cachegrind`
twice, with a small and a large number of values, and reports the difference divided by the
extra epochs: the instructions one more epoch costs, start-up and imports excluded. The runtime's
time thresholds are stretched by the valgrind slowdown (see SLOWDOWN), so that it groups commits as it
does natively; two runs of the same code then agree within ~0.2 %, also with two run side by side.

Instructions are a proxy for time, not time: they show a change that load hides, and its sign,
but not always its size. Work done by wide, fast instructions (SQLite zeroing a page with memset)
weighs more in instructions than in seconds.

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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# Under valgrind the work runs ~50x slower than the clock: the runtime's time thresholds are stretched as
# much, so that it groups its commits as it does natively (unstretched, every epoch counts as slow and
# commits before it starts, and the count follows the jitter around the 2 ms threshold).
SLOWDOWN = 50
_TIMED = ("GROUP_SECONDS", "LINGER", "FRESH_WAIT", "QUICK_EPOCH")


def _case(values: int, defer: bool) -> None:
    """Run tools/bench_runtime.py's chain case in this process (under valgrind, from the parent)."""
    sys.path.insert(0, HERE)
    import bench_runtime
    from netrun import runtime

    for name in _TIMED:
        setattr(runtime, name, getattr(runtime, name) * SLOWDOWN)
    bench_runtime.case_chain(values, "normal", defer, False, timeout=0)


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
