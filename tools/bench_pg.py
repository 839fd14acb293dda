"""Benchmark: the PostgreSQL store and remote workers, with the same work through SQLite in the same run.

Starts its own throw-away PostgreSQL (tools/pg_server.py) with durable settings (fsync on), and
reports, with durable commits (`durability="full"`: synchronous_commit=on, SQLite synchronous=FULL):

- chain: Source -> A -> B -> Sink in the main thread, deferred, N values: epochs/s, SQLite vs PostgreSQL;
- remote: Source -> Work -> Sink with Work in a pool of 2 workers (`netrun worker` processes on
  PostgreSQL; a process pool of 2 on SQLite), N values: epochs/s;
- latency: one value at a time through Work, in the pool vs in the main thread (PostgreSQL): the
  added latency per epoch;
- requeue: a worker killed mid-epoch (lease 1 s): seconds until its job is queued again;
- failover: the owner killed with a standby (`netrun resume URL --wait`) waiting: seconds until the
  standby owns the net.

    python tools/bench_pg.py                 # N = 2,000
    python tools/bench_pg.py --n 4000 --workers 4
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent


def _source(ctx, packets):
    for i in range(int(os.environ.get("BENCH_PG_N", "1"))):
        ctx.load_output_port("out", ctx.create_packet(i))
    ctx.send_output_salvo("send_out")


def _middle(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if os.environ.get("BENCH_PG_HOLD") and not os.path.exists(os.environ["BENCH_PG_HOLD"]):
        Path(os.environ["BENCH_PG_HOLD"]).write_text(str(os.getpid()))
        time.sleep(600)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _net(me, db: str, *, pool: str | None, remote: bool, workers: int, lease: float = 60.0):
    import netrun
    from netrun.graphs import chain

    options: dict = {"durability": "full", "history_max_size": 0, "lease_seconds": lease}
    if pool and remote:
        options["remote_pools"] = {pool: {}}  # size 8: up to 40 jobs in flight
    elif pool:
        options["process_pools"] = {pool: {"size": max(workers, 2)}}
    net = netrun.Net(chain("Source", "Work", "Sink"), db=db, **options)
    for node, func in (("Source", me._source), ("Work", me._middle), ("Sink", me._sink)):
        net.set_node_exec(node, func)
        net.set_node_config(node, capture_stdout=False, defer_net_actions=True)
    if pool:
        net.set_node_config("Work", pool=pool)
    return net


def _workers(url: str, n: int, env: dict | None = None) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "netrun", "worker", "--db", url, "--pool", "cpu", "--path",
                              str(TOOLS)], env=env or os.environ.copy(), stdout=subprocess.DEVNULL, cwd=str(REPO))
            for _ in range(n)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        proc.wait()


def _wait_registered(net, n: int) -> None:
    deadline = time.monotonic() + 30
    while net.query("SELECT count(*) AS n FROM workers WHERE stopped_at IS NULL")[0]["n"] < n:
        assert time.monotonic() < deadline, "the workers did not register"
        time.sleep(0.02)


def throughput(me, db: str, n: int, *, pool: str | None, remote: bool, workers: int) -> float:
    os.environ["BENCH_PG_N"] = str(n)
    net = _net(me, db, pool=pool, remote=remote, workers=workers)
    procs = _workers(db, workers) if remote else []
    try:
        if remote:
            _wait_registered(net, workers)
        net.inject_source_epoch("Source")
        t0 = time.perf_counter()
        net.start()
        elapsed = time.perf_counter() - t0
        epochs = net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"]
        assert epochs == 2 * n + 1, epochs
    finally:
        net.close()
        _stop(procs)
    return epochs / elapsed


def latency(me, db: str, n: int, *, remote: bool) -> float:
    """Seconds per value through Source -> Work -> Sink, one value at a time."""
    os.environ["BENCH_PG_N"] = "1"
    net = _net(me, db, pool="cpu" if remote else None, remote=remote, workers=1)
    procs = _workers(db, 1) if remote else []
    try:
        if remote:
            _wait_registered(net, 1)
        times = []
        for _ in range(n):
            net.inject_source_epoch("Source")
            t0 = time.perf_counter()
            net.start()
            times.append(time.perf_counter() - t0)
    finally:
        net.close()
        _stop(procs)
    times.sort()
    return times[len(times) // 2]


def requeue_seconds(me, url: str, folder: str) -> float:
    """A worker killed mid-epoch (lease 1 s): seconds until the owner queued its job again."""
    import threading

    os.environ["BENCH_PG_N"] = "4"
    hold = os.path.join(folder, "hold")
    net = _net(me, url, pool="cpu", remote=True, workers=1, lease=1.0)
    [victim] = _workers(url, 1, dict(os.environ, BENCH_PG_HOLD=hold))
    try:
        _wait_registered(net, 1)
        net.inject_source_epoch("Source")
        thread = threading.Thread(target=net.start, daemon=True)
        thread.start()
        while not os.path.exists(hold):
            time.sleep(0.005)
        time.sleep(0.05)
        victim.kill()
        killed = time.perf_counter()
        from netrun.db import open_connection

        conn = open_connection(url, readonly=True)
        try:
            while not conn.execute("SELECT 1 FROM epoch_jobs WHERE attempt = 1 AND state IN ('queued', 'claimed', "
                                   "'reported', 'done')").fetchone():
                time.sleep(0.005)
        finally:
            conn.close()
        seconds = time.perf_counter() - killed
        helpers = _workers(url, 1)
        thread.join(60)
        _stop(helpers)
    finally:
        net.close()
        _stop([victim])
    return seconds


OWNER = """
import os, sys
sys.path.insert(0, {tools!r})
import bench_pg as me
net = me._net(me, {url!r}, pool="cpu", remote=True, workers=1, lease=2.0)
net.inject_source_epoch("Source")
print("ready", flush=True)
net.start()
"""


def failover_seconds(url: str) -> float:
    import psycopg

    from netrun.pgconn import parse_url

    os.environ["BENCH_PG_N"] = "2000"
    target = parse_url(url)
    owner = subprocess.Popen([sys.executable, "-c", OWNER.format(tools=str(TOOLS), url=url)], stdout=subprocess.PIPE,
                             text=True, cwd=str(REPO))
    owner.stdout.readline()
    procs = _workers(url, 1)
    standby = subprocess.Popen([sys.executable, "-m", "netrun", "resume", url, "--wait", "60", "--no-progress",
                                "--path", str(TOOLS)], stdout=subprocess.DEVNULL, cwd=str(REPO))
    try:
        time.sleep(1.0)
        owner.kill()
        killed = time.perf_counter()
        with psycopg.connect(target.conninfo, autocommit=True) as conn:
            while True:
                row = conn.execute(f'SELECT value FROM "{target.schema}".net_meta WHERE key = \'owner\'').fetchone()
                if row and json.loads(row[0])["pid"] == standby.pid:
                    break
                time.sleep(0.002)
        seconds = time.perf_counter() - killed
        standby.wait(120)
    finally:
        owner.wait()
        owner.stdout.close()
        _stop(procs + [standby])
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_pg.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="values per throughput case (2000)")
    parser.add_argument("--workers", type=int, default=2, help="remote workers / process-pool size (2)")
    parser.add_argument("--latency-n", type=int, default=100, help="values of the latency case (100)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(TOOLS))
    sys.path.insert(0, str(REPO))
    me = importlib.import_module("bench_pg")  # node functions by an import path the workers can follow
    pg_server = importlib.import_module("pg_server")
    folder = tempfile.mkdtemp(prefix="netrun-bench-pg-")
    os.chmod(folder, 0o755)
    server = pg_server.start(os.path.join(folder, "pg"), durable=True)
    nets = iter(range(1000))

    def url() -> str:
        return f"{server.url}?net=b{next(nets)}"

    def sqlite() -> str:
        return os.path.join(folder, f"s{next(nets)}.db")

    out: dict = {"n": args.n, "workers": args.workers}
    try:
        out["chain_main_thread_epochs_per_s"] = {
            "sqlite": round(throughput(me, sqlite(), args.n, pool=None, remote=False, workers=0)),
            "postgres": round(throughput(me, url(), args.n, pool=None, remote=False, workers=0))}
        out["pool_epochs_per_s"] = {
            "sqlite_process_pool": round(throughput(me, sqlite(), args.n, pool="cpu", remote=False,
                                                    workers=args.workers)),
            "postgres_remote_workers": round(throughput(me, url(), args.n, pool="cpu", remote=True,
                                                        workers=args.workers))}
        main_ms = latency(me, url(), args.latency_n, remote=False) * 1000
        remote_ms = latency(me, url(), args.latency_n, remote=True) * 1000
        out["latency_ms_per_value_median"] = {"postgres_main_thread": round(main_ms, 2),
                                              "postgres_remote": round(remote_ms, 2),
                                              "added": round(remote_ms - main_ms, 2)}
        out["requeue_after_kill_s_lease_1s"] = round(requeue_seconds(me, url(), folder), 2)
        out["owner_failover_s"] = round(failover_seconds(url()), 3)
    finally:
        server.stop()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
