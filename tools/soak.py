"""A long run with a retention policy: does the file stay bounded and the pace steady?

Source -> A -> B -> Sink, durability normal, `retention` (default "1m"). Each Source epoch emits
--per-source values, so --values values take values / per-source source epochs (injected up front)
plus 3 epochs per value. Once a second the main thread samples the values that reached Sink and
the size of the database file plus its WAL. Reports:
  - the largest size seen, and the final size after the run;
  - epochs per second over each tenth of the values, and the last tenth's over the first's;
  - the owner thread's CPU time per epoch over each tenth (microseconds, read by Sink, which runs in
    the owner): other processes on the machine barely change it, unlike epochs/s (a lock wait is
    not counted in it, work moved to another thread is not either);
  - bytes per epoch at the end.

    python tools/soak.py --values 1000000
    python tools/soak.py --values 50000 --retention 10s --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)

PER_SOURCE = 100
_reached = [0]
_finished_at = [0.0]  # time.perf_counter() when the last value reached Sink (TOTAL[0] values)
TOTAL = [0]
_cpu_at = [0.0] * 11  # the owner thread's CPU time when the first value and each tenth reached Sink


def source(ctx, packets):
    for i in range(ctx.params.get("per_source", PER_SOURCE)):
        ctx.load_output_port("out", ctx.create_packet(i))
        ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    _reached[0] += 1
    if _reached[0] * 10 % TOTAL[0] < 10 or _reached[0] == 1:
        _cpu_at[_reached[0] * 10 // TOTAL[0]] = time.thread_time()
    if _reached[0] == TOTAL[0]:
        _finished_at[0] = time.perf_counter()


def _size(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def _rate(samples: list[tuple[float, int]], low: int, high: int) -> float:
    """Values per second while the count went from `low` to `high` (interpolated between samples)."""
    def at(count: int) -> float:
        for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
            if c0 <= count <= c1 and c1 > c0:
                return t0 + (t1 - t0) * (count - c0) / (c1 - c0)
        return samples[-1][0]
    return (high - low) / max(at(high) - at(low), 1e-9)


def soak(values: int, per_source: int, retention: str, path: str) -> dict:
    from bench_nodes import forward

    import netrun
    from netrun.graphs import chain

    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=path, retention=retention, history_max_size=0)
    try:
        for name, func in {"Source": source, "A": forward, "B": forward, "Sink": sink}.items():
            net.set_node_exec(name, func)
            net.set_node_config(name, capture_stdout=False)
        net.set_node_config("Source", params={"per_source": per_source})
        for _ in range(values // per_source):
            net.inject_source_epoch("Source")
        total = TOTAL[0] = values // per_source * per_source
        began = time.perf_counter()
        samples = [(0.0, 0)]
        largest = _size(path)
        net.start(threaded=True)
        while True:
            time.sleep(1.0)
            samples.append((time.perf_counter() - began, _reached[0]))
            largest = max(largest, _size(path))
            if _reached[0] >= total or net.poll().state in ("blocked", "paused", "stopped"):
                break
        net.wait_until_blocked(60)
        elapsed = time.perf_counter() - began
        # the last value's own time, not the next sample's (up to a second later)
        samples = [(t, c) for t, c in samples if c < total] + [(_finished_at[0] - began, _reached[0])]
        epochs_per_value = 3 + 1 / per_source
        deciles = [round(_rate(samples, total * i // 10, total * (i + 1) // 10) * epochs_per_value)
                   for i in range(10)]
        first, last = deciles[0], deciles[-1]
        cpu_us = [round(1e6 * (_cpu_at[i + 1] - _cpu_at[i]) / (total / 10 * epochs_per_value)) for i in range(10)]
        stored = net.query("SELECT count(*) AS n FROM epochs")[0]["n"]
    finally:
        net.close()
    final = _size(path)
    return {"values": total, "retention": retention, "reached": _reached[0], "seconds": round(elapsed, 1),
            "largest_mb": round(largest / 1e6, 1), "final_mb": round(final / 1e6, 1),
            "epochs_per_s_first_10pct": round(first), "epochs_per_s_last_10pct": round(last),
            "last_over_first": round(last / first, 3), "epochs_per_s_by_tenth": deciles,
            "owner_cpu_us_per_epoch_by_tenth": cpu_us, "owner_cpu_last_over_first": round(cpu_us[-1] / cpu_us[0], 3),
            "epochs_still_stored": stored}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=1_000_000, help="values through the chain (default 1,000,000)")
    parser.add_argument("--per-source", type=int, default=PER_SOURCE, help="values per Source epoch (default 100)")
    parser.add_argument("--retention", default="1m", help="the net's retention option (default 1m)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        result = soak(args.values, args.per_source, args.retention, os.path.join(tmp, "soak.db"))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
