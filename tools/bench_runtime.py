"""Benchmarks of netrun's runtime through the public API only (they run unchanged across
runtime rewrites).

Subcommands (each case runs in its own subprocess, killed after --timeout seconds):

  chain       Source -> A -> B -> Sink, N values (4 epochs per value), durability normal and
              full, with and without defer_net_actions: epochs/s. --count-statements adds a
              separate run per (durability, defer) that counts, with an apsw exec tracer on the
              net's main connection (private: net._rt.journal.conn, skipped when absent), SQL
              statement executions per epoch (each executemany row counts), how many of those
              are history rows (`history_actions`: one per action, its events inside), and COMMITs per epoch.
  pipeline    Fetch (thread pool of 8, sleeps 20 ms) -> Transform -> Sink, 400 values injected
              at Fetch.in: time from start() to the first value consumed at Sink, total time,
              and total / ideal (ideal = 400 * 0.02 / 8 = 1.0 s).
  pool-sleep  1,000 epochs sleeping 10 ms through a thread pool of 32, against the main thread
              (which runs --main-epochs values, scaled to --epochs): the speedup.
  process     trivial epochs through a process pool of 2, N = 2,000: epochs/s.
  all         every subcommand above with its defaults.

Pool cases start their pool with one warm-up value before the clock starts (the cold time,
pool start included, is reported too).

    python tools/bench_runtime.py chain --sizes 1000 10000 --count-statements
    python tools/bench_runtime.py pipeline
    python tools/bench_runtime.py all --json      # one JSON object per case, one per line
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)

_HISTORY_INSERT = re.compile(r"^\s*INSERT\s+(?:OR\s+\w+\s+)?INTO\s+[\"'`\[]?history(?:_actions)?[\"'`\]]?[\s(]", re.I)
_COMMIT = re.compile(r"^\s*(COMMIT|END)\b", re.I)


# --------------------------------------------------------------------------------------------
# helpers (run inside a case subprocess)
# --------------------------------------------------------------------------------------------

def _finished(net, node: str | None = None) -> int:
    sql = "SELECT count(*) AS n FROM epochs WHERE state = 'finished'"
    params: tuple = ()
    if node is not None:
        sql += " AND node_name = ?"
        params = (node,)
    return net.query(sql, params)[0]["n"]


def _configure(net, nodes: dict, **options) -> None:
    """set_node_exec + set_node_config(capture_stdout=False, **options[node]) for each node."""
    for name, func in nodes.items():
        net.set_node_exec(name, func)
        net.set_node_config(name, capture_stdout=False, **options.get(name, {}))


def _run(net, timeout: float) -> None:
    """start() in the background and wait for the net to block, at most `timeout` seconds."""
    net.start(threaded=True)
    net.wait_until_blocked(timeout)


class StatementCounter:
    """Counts statement executions on an apsw connection through its exec tracer."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.total = 0
        self.history = 0
        self.commits = 0
        self.kinds: Counter = Counter()

    def _trace(self, cursor, sql, bindings) -> bool:
        self.total += 1
        if _HISTORY_INSERT.match(sql):
            self.history += 1
        elif _COMMIT.match(sql):
            self.commits += 1
        self.kinds[" ".join(sql.split())[:70]] += 1
        return True

    def install(self) -> None:
        if hasattr(type(self.conn), "exec_trace"):
            self.conn.exec_trace = self._trace
        else:  # apsw < 3.43
            self.conn.setexectrace(self._trace)

    def remove(self) -> None:
        if hasattr(type(self.conn), "exec_trace"):
            self.conn.exec_trace = None
        else:
            self.conn.setexectrace(None)

    def snapshot(self) -> dict:
        return {"total": self.total, "history": self.history, "commits": self.commits}


def _main_connection(net):
    """The net's main apsw connection, if this netrun version exposes it where we look."""
    rt = getattr(net, "_rt", None)
    journal = getattr(rt, "journal", None)
    conn = getattr(journal, "conn", None)
    if conn is None:
        conn = getattr(net, "_conn", None)
    if conn is None or not hasattr(conn, "execute"):
        return None
    return conn


# --------------------------------------------------------------------------------------------
# cases (each runs in a subprocess: `python bench_runtime.py _case '<json>'`)
# --------------------------------------------------------------------------------------------

def case_chain(n: int, durability: str, defer: bool, count: bool, timeout: float) -> dict:
    import netrun
    from netrun.graphs import chain

    import bench_nodes as b

    with tempfile.TemporaryDirectory() as tmp:
        net = netrun.Net(chain("Source", "A", "B", "Sink"), db=os.path.join(tmp, "bench.db"),
                         durability=durability, history_max_size=0)
        nodes = {"Source": b.source, "A": b.forward, "B": b.forward, "Sink": b.sink}
        _configure(net, nodes, **{name: {"defer_net_actions": defer} for name in nodes})
        counter = None
        if count:
            conn = _main_connection(net)
            if conn is not None:
                counter = StatementCounter(conn)
                counter.install()
        t0 = time.perf_counter()
        for _ in range(n):
            net.inject_source_epoch("Source")
        inject_s = time.perf_counter() - t0
        at_inject = counter.snapshot() if counter else None
        if counter:
            counter.kinds.clear()  # top_statements: the run only
        t1 = time.perf_counter()
        net.start()
        run_s = time.perf_counter() - t1
        at_end = counter.snapshot() if counter else None
        if counter:
            counter.remove()
        epochs = _finished(net)
        net.close()
    result = {"case": "chain", "n": n, "durability": durability, "defer": defer, "epochs": epochs,
              "expected_epochs": 4 * n, "run_s": round(run_s, 3), "epochs_per_s": round(epochs / run_s),
              "inject_per_s": round(n / inject_s)}
    if count:
        if counter is None:
            result["counts"] = None  # no main connection found: not measurable on this version
        else:
            run = {k: at_end[k] - at_inject[k] for k in at_end}
            result["counts"] = {
                "stmts_per_epoch": round(run["total"] / max(epochs, 1), 2),
                "history_rows_per_epoch": round(run["history"] / max(epochs, 1), 2),
                "commits_per_epoch": round(run["commits"] / max(epochs, 1), 3),
                "inject_stmts_per_value": round(at_inject["total"] / n, 2),
                "inject_commits_per_value": round(at_inject["commits"] / n, 3),
                "run_totals": run,
                "top_statements_run": counter.kinds.most_common(12),
            }
    return result


def case_pipeline(values: int, sleep_s: float, pool_size: int, timeout: float) -> dict:
    import netrun
    from netrun.graphs import chain

    import bench_nodes as b

    b.SLEEP_S = sleep_s
    with tempfile.TemporaryDirectory() as tmp:
        net = netrun.Net(chain("Src", "Fetch", "Transform", "Sink"), db=os.path.join(tmp, "bench.db"),
                         history_max_size=0, thread_pools={"fetch": {"size": pool_size}})
        _configure(net, {"Fetch": b.timed_fetch, "Transform": b.forward, "Sink": b.timed_sink},
                   Fetch={"pool": "fetch"})
        began = time.monotonic()
        net.inject_packet("Fetch", "in", -1)  # warm-up: starts the pool
        _run(net, timeout)
        cold_s = time.monotonic() - began
        b.SINK_TIMES.clear()
        b.FETCH_DONE_TIMES.clear()
        for value in range(values):
            net.inject_packet("Fetch", "in", value)
        t0 = time.monotonic()
        _run(net, timeout)
        total_s = time.monotonic() - t0
        sinks = list(b.SINK_TIMES)
        fetches = list(b.FETCH_DONE_TIMES)
        finished_sink = _finished(net, "Sink")
        net.close()
    ideal = values * sleep_s / pool_size
    return {"case": "pipeline", "values": values, "sleep_s": sleep_s, "pool_size": pool_size,
            "sink_values": len(sinks), "sink_epochs_finished": finished_sink - 1,
            "first_sink_s": round(sinks[0] - t0, 3) if sinks else None,
            "last_fetch_s": round(fetches[-1] - t0, 3) if fetches else None,
            "median_sink_s": round(sorted(sinks)[len(sinks) // 2] - t0, 3) if sinks else None,
            "total_s": round(total_s, 3), "ideal_s": round(ideal, 3), "total_over_ideal": round(total_s / ideal, 2),
            "cold_warmup_s": round(cold_s, 3)}


def _sleep_run(epochs: int, sleep_s: float, pool_size: int | None, timeout: float) -> tuple[float, float, int]:
    """(warm seconds, cold warm-up seconds, Sleep epochs finished) for `epochs` values through Sleep."""
    import netrun
    from netrun.graphs import chain

    import bench_nodes as b

    b.SLEEP_S = sleep_s
    with tempfile.TemporaryDirectory() as tmp:
        options = {"thread_pools": {"io": {"size": pool_size}}} if pool_size else {}
        net = netrun.Net(chain("Src", "Sleep", "Sink"), db=os.path.join(tmp, "bench.db"), history_max_size=0,
                         **options)
        _configure(net, {"Sleep": b.sleepy, "Sink": b.sink}, Sleep={"pool": "io"} if pool_size else {})
        began = time.perf_counter()
        net.inject_packet("Sleep", "in", -1)  # warm-up (starts the pool)
        _run(net, timeout)
        cold = time.perf_counter() - began
        for value in range(epochs):
            net.inject_packet("Sleep", "in", value)
        began = time.perf_counter()
        _run(net, timeout)
        warm = time.perf_counter() - began
        done = _finished(net, "Sleep") - 1
        net.close()
    return warm, cold, done


def case_pool_sleep(epochs: int, main_epochs: int, sleep_s: float, pool_size: int, timeout: float) -> dict:
    pool_s, pool_cold, pool_done = _sleep_run(epochs, sleep_s, pool_size, timeout)
    main_s, _, main_done = _sleep_run(main_epochs, sleep_s, None, timeout)
    main_scaled = main_s * epochs / main_epochs
    ideal = epochs * sleep_s / pool_size
    return {"case": "pool-sleep", "epochs": epochs, "sleep_s": sleep_s, "pool_size": pool_size,
            "pool_s": round(pool_s, 3), "pool_epochs_finished": pool_done, "pool_cold_warmup_s": round(pool_cold, 3),
            "main_epochs": main_epochs, "main_s": round(main_s, 3), "main_epochs_finished": main_done,
            "main_s_scaled": round(main_scaled, 3), "speedup": round(main_scaled / pool_s, 2),
            "ideal_pool_s": round(ideal, 3), "pool_over_ideal": round(pool_s / ideal, 2),
            "ideal_speedup": round(main_scaled / ideal, 1)}


def case_process(epochs: int, pool_size: int, timeout: float) -> dict:
    import netrun
    from netrun.graphs import chain

    import bench_nodes as b

    with tempfile.TemporaryDirectory() as tmp:
        net = netrun.Net(chain("Src", "Work", "Sink"), db=os.path.join(tmp, "bench.db"), history_max_size=0,
                         process_pools={"p": {"size": pool_size}})
        _configure(net, {"Work": b.forward, "Sink": b.sink}, Work={"pool": "p"})
        began = time.perf_counter()
        net.inject_packet("Work", "in", -1)  # warm-up: spawns the workers
        _run(net, timeout)
        cold = time.perf_counter() - began
        for value in range(epochs):
            net.inject_packet("Work", "in", value)
        began = time.perf_counter()
        _run(net, timeout)
        warm = time.perf_counter() - began
        done = _finished(net, "Work") - 1
        sinks = _finished(net, "Sink") - 1
        net.close()
    return {"case": "process", "epochs": epochs, "pool_size": pool_size, "work_epochs_finished": done,
            "sink_epochs_finished": sinks, "run_s": round(warm, 3), "pool_epochs_per_s": round(done / warm),
            "all_epochs_per_s": round((done + sinks) / warm), "cold_warmup_s": round(cold, 3)}


CASES = {"chain": case_chain, "pipeline": case_pipeline, "pool-sleep": case_pool_sleep, "process": case_process}


def _run_case_here(spec: dict) -> int:
    kind = spec.pop("kind")
    import netrun
    result = CASES[kind](**spec)
    result["netrun"] = os.path.dirname(os.path.abspath(netrun.__file__))
    print(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------------
# the parent: one subprocess per case, with a timeout
# --------------------------------------------------------------------------------------------

def _spawn_case(spec: dict, timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (TOOLS_DIR, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_case", json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the case's own process group (and its pool workers)
        proc.communicate()
        return {"error": f"TIMEOUT after {timeout:.0f} s (killed)"}
    if proc.returncode != 0:
        tail = [line for line in err.strip().splitlines() if line.strip()][-1:] or [f"exit code {proc.returncode}"]
        return {"error": f"FAILED (exit {proc.returncode}): {tail[0]}", "stderr": err[-4000:]}
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"error": f"FAILED: no result printed; stderr: {err[-500:]}"}


def _emit(args, spec: dict, result: dict, text: str) -> None:
    if args.json:
        print(json.dumps({**{k: v for k, v in spec.items() if k != "timeout"}, **result}), flush=True)
    elif "error" in result:
        label = " ".join(f"{k}={v}" for k, v in spec.items() if k != "timeout")
        print(f"{label}: {result['error']}", flush=True)
    else:
        print(text, flush=True)


def cmd_chain(args) -> None:
    counts: dict = {}
    for durability in args.durability:
        for defer in args.defer:
            if args.count_statements:
                spec = {"kind": "chain", "n": args.count_size, "durability": durability, "defer": defer == "yes",
                        "count": True, "timeout": args.timeout}
                r = _spawn_case(spec, args.timeout)
                counts[durability, defer] = r.get("counts") if "error" not in r else {"error": r["error"]}
            for n in args.sizes:
                spec = {"kind": "chain", "n": n, "durability": durability, "defer": defer == "yes", "count": False,
                        "timeout": args.timeout}
                r = _spawn_case(spec, args.timeout)
                text = ""
                if "error" not in r:
                    text = (f"chain  N={n:<7} durability={durability:6} defer={defer:3}  {r['epochs_per_s']:>6} epochs/s"
                            f"  ({r['epochs']}/{r['expected_epochs']} epochs in {r['run_s']:.2f} s;"
                            f" inject {r['inject_per_s']}/s)")
                if args.count_statements:
                    c = counts[durability, defer]
                    r = {**r, "counts": c, "counts_n": args.count_size}
                    if c is None:
                        text += "  [statement counts: no main connection found]"
                    elif "error" in c:
                        text += f"  [statement counts: {c['error']}]"
                    else:
                        text += (f"  [N={args.count_size} traced run: {c['stmts_per_epoch']} stmt executions/epoch, of which"
                                 f" {c['history_rows_per_epoch']} history rows; {c['commits_per_epoch']} commits/epoch;"
                                 f" inject {c['inject_stmts_per_value']} stmts/value]")
                _emit(args, spec, r, text)


def cmd_pipeline(args) -> None:
    spec = {"kind": "pipeline", "values": args.values, "sleep_s": args.sleep, "pool_size": args.pool_size,
            "timeout": args.timeout}
    r = _spawn_case(spec, args.timeout + 30)
    text = ""
    if "error" not in r:
        text = (f"pipeline  {r['values']} values, Fetch {r['sleep_s'] * 1000:.0f} ms in a thread pool of {r['pool_size']}:"
                f"  first Sink value after {r['first_sink_s']} s, total {r['total_s']} s, ideal {r['ideal_s']} s,"
                f" total/ideal {r['total_over_ideal']}  (last Fetch done at {r['last_fetch_s']} s, median Sink value at"
                f" {r['median_sink_s']} s; {r['sink_values']} values at Sink)")
    _emit(args, spec, r, text)


def cmd_pool_sleep(args) -> None:
    spec = {"kind": "pool-sleep", "epochs": args.epochs, "main_epochs": args.main_epochs, "sleep_s": args.sleep,
            "pool_size": args.pool_size, "timeout": args.timeout}
    r = _spawn_case(spec, 2 * args.timeout + 30)
    text = ""
    if "error" not in r:
        text = (f"pool-sleep  {r['epochs']} x {r['sleep_s'] * 1000:.0f} ms: thread pool of {r['pool_size']} {r['pool_s']} s"
                f" (ideal {r['ideal_pool_s']} s, {r['pool_over_ideal']}x ideal); main thread {r['main_s']} s for"
                f" {r['main_epochs']} epochs, scaled to {r['main_s_scaled']} s;  speedup {r['speedup']}x"
                f" (ideal {r['ideal_speedup']}x)")
    _emit(args, spec, r, text)


def cmd_process(args) -> None:
    spec = {"kind": "process", "epochs": args.epochs, "pool_size": args.pool_size, "timeout": args.timeout}
    r = _spawn_case(spec, args.timeout + 30)
    text = ""
    if "error" not in r:
        text = (f"process  {r['epochs']} trivial epochs in a process pool of {r['pool_size']}:"
                f"  {r['pool_epochs_per_s']} pool epochs/s ({r['all_epochs_per_s']} epochs/s with the main-thread Sink;"
                f" {r['run_s']} s; cold warm-up {r['cold_warmup_s']} s)")
    _emit(args, spec, r, text)


def _add_common(p: argparse.ArgumentParser, timeout: float) -> None:
    p.add_argument("--json", action="store_true", help="print one JSON object per case (one per line)")
    p.add_argument("--timeout", type=float, default=timeout, help=f"seconds before a case is killed ({timeout:.0f})")


def _add_chain(p):
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000], help="values injected (1000 10000)")
    p.add_argument("--durability", nargs="+", default=["normal", "full"], choices=["normal", "full"])
    p.add_argument("--defer", nargs="+", default=["no", "yes"], choices=["no", "yes"],
                   help="defer_net_actions off and/or on, on every node")
    p.add_argument("--count-statements", action="store_true",
                   help="also a separate traced run per (durability, defer) counting SQL statements and commits")
    p.add_argument("--count-size", type=int, default=1_000, help="values in the traced run (1000)")


def _add_pipeline(p):
    p.add_argument("--values", type=int, default=400)
    p.add_argument("--sleep", type=float, default=0.020, help="seconds per Fetch epoch (0.02)")
    p.add_argument("--pool-size", type=int, default=8)


def _add_pool_sleep(p):
    p.add_argument("--epochs", type=int, default=1_000, help="epochs through the thread pool (1000)")
    p.add_argument("--main-epochs", type=int, default=200,
                   help="epochs in the main thread, scaled to --epochs (200)")
    p.add_argument("--sleep", type=float, default=0.010, help="seconds per epoch (0.01)")
    p.add_argument("--pool-size", type=int, default=32)


def _add_process(p):
    p.add_argument("--epochs", type=int, default=2_000)
    p.add_argument("--pool-size", type=int, default=2)


SUBCOMMANDS = {
    "chain": (_add_chain, cmd_chain, 300.0, "Source -> A -> B -> Sink: epochs/s (and statements per epoch)"),
    "pipeline": (_add_pipeline, cmd_pipeline, 120.0, "thread-pool Fetch -> Transform -> Sink: latency and total"),
    "pool-sleep": (_add_pool_sleep, cmd_pool_sleep, 120.0, "10 ms sleeps: thread pool of 32 vs main thread"),
    "process": (_add_process, cmd_process, 120.0, "trivial epochs through a process pool of 2: epochs/s"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_case"]:  # internal: run one case in this process, print its JSON
        return _run_case_here(json.loads(argv[1]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add, _, timeout, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add(p)
        _add_common(p, timeout)
    p = sub.add_parser("all", help="every subcommand with its defaults (chain with --count-statements)",
                       description="every subcommand with its defaults (chain with --count-statements)")
    p.add_argument("--json", action="store_true", help="print one JSON object per case (one per line)")
    p.add_argument("--no-count-statements", action="store_true", help="skip the traced chain runs")
    args = parser.parse_args(argv)
    if args.command == "all":
        for name, (add, cmd, timeout, _) in SUBCOMMANDS.items():
            p = argparse.ArgumentParser()
            add(p)
            _add_common(p, timeout)
            extra = ["--json"] if args.json else []
            if name == "chain" and not args.no_count_statements:
                extra.append("--count-statements")
            cmd(p.parse_args(extra))
        return 0
    SUBCOMMANDS[args.command][1](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
