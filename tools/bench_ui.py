"""What `netrun ui` costs: every endpoint's answer time on a big run, and what the live view's
polling costs a running net.

  endpoints   builds (or reuses) the run of tools/bench_questions.py (100,000 values: ~400,000
              epochs, ~5.7M history records), serves it with `netrun ui` in a child process and
              times each API route over HTTP: median and max of --repeat requests (the first
              request of each route is a warm-up and not counted).
  overhead    runs the chain Source -> A -> B -> Sink of --chain-values values, alternately
              without and with a `netrun ui` server on its file whose /api/live is polled every
              --interval seconds (as the page does) from this process, --rounds times each, and
              compares epochs per second (medians; the modes interleave, so drift hits both).

    python tools/bench_ui.py endpoints --db /tmp/big.db
    python tools/bench_ui.py overhead --chain-values 20000 --rounds 5
    python tools/bench_ui.py all --json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import quote, urlencode

TOOLS_DIR = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TOOLS_DIR)
if TOOLS_DIR not in sys.path:
    sys.path.insert(0, TOOLS_DIR)


class Served:
    """`netrun ui FILE --port 0` in a child process, asked over one keep-alive HTTP connection."""

    def __init__(self, path: str) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        self.process = subprocess.Popen([sys.executable, "-m", "netrun", "ui", path, "--port", "0"],
                                        stdout=subprocess.PIPE, text=True, env=env)
        found = re.search(r"http://([\d.]+):(\d+)/", self.process.stdout.readline())
        if not found:
            self.process.kill()
            raise SystemExit(f"netrun ui did not start on {path}")
        self.host, self.port = found.group(1), int(found.group(2))
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)

    def get(self, path: str) -> tuple[int, bytes]:
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()
        self.process.terminate()
        self.process.wait(timeout=30)
        self.process.stdout.close()


def routes(path: str) -> dict[str, str]:
    """The routes to time, with IDs from the middle of the run."""
    import netrun

    with netrun.NetInspector(path) as net:
        packet = net.query("SELECT id FROM packets ORDER BY id LIMIT 1 OFFSET (SELECT count(*) / 2 FROM packets)")[0]["id"]
        epoch = net.query("SELECT id FROM epochs ORDER BY id LIMIT 1 OFFSET (SELECT count(*) / 2 FROM epochs)")[0]["id"]
        node = sorted(net.graph.nodes())[0]
    sql = quote("SELECT node_name, state, n FROM node_counts ORDER BY 1, 2")
    return {
        "page /": "/",
        "overview (graph, layout)": "/api/overview",
        "live (polled each second)": "/api/live",
        "epochs, newest": "/api/epochs",
        f"epochs of {node}": f"/api/epochs?node={node}",
        "epochs failed (none: budget)": "/api/epochs?state=failed",
        "epoch page": f"/api/epoch/{epoch}",
        "packet page (value, lineage)": f"/api/packet/{packet}",
        "history, newest": "/api/history",
        f"history of {node}": f"/api/history?node={node}",
        "history kind none has (budget)": "/api/history?kind=NoSuchRecord",
        "history of a packet": f"/api/history?packet={packet}",
        "logs": "/api/logs",
        f"logs of {node}": f"/api/logs?node={node}",
        "dead letters": "/api/dlq",
        "sql box (node_counts)": f"/api/sql?q={sql}",
        "sql csv (node_counts)": f"/api/sql.csv?q={sql}",
        "find a short id": "/api/find?" + urlencode({"id": f"{packet[:8]}~{packet[-4:]}"}),
    }


def endpoints(path: str, values: int, repeat: int) -> dict:
    import bench_questions

    if not os.path.exists(path):
        print(f"building {path} ({values:,} values)...", file=sys.stderr)
        bench_questions.build(path, values)
    server = Served(path)
    out = {}
    try:
        for name, route in routes(path).items():
            status, _ = server.get(route)  # warm-up
            if status != 200:
                raise SystemExit(f"{route}: HTTP {status}")
            times = []
            for _ in range(repeat):
                began = time.perf_counter()
                server.get(route)
                times.append((time.perf_counter() - began) * 1000)
            out[name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
    finally:
        server.close()
    return out


def _poll(url: str, interval: float) -> int:
    """The browser's part, in its own process: GET /api/live every `interval` seconds until stdin
    closes, then print the number of polls and their median time (ms) as JSON."""
    found = re.search(r"http://([\d.]+):(\d+)/", url)
    conn = http.client.HTTPConnection(found.group(1), int(found.group(2)), timeout=60)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    times = []
    while not stop.is_set():
        began = time.perf_counter()
        conn.request("GET", "/api/live")
        conn.getresponse().read()
        times.append((time.perf_counter() - began) * 1000)
        stop.wait(max(interval - (time.perf_counter() - began), 0))
    print(json.dumps({"polls": len(times), "median_ms": statistics.median(times) if times else None}))
    return 0


def _chain_run(path: str, values: int, poll_every: float | None) -> dict:
    """One run of the chain into `path`; with `poll_every`, a `netrun ui` server on it whose live
    state another process polls meanwhile (as the page does)."""
    from bench_questions import chain_net

    net = chain_net(path, values)
    server = poller = None
    try:
        if poll_every is not None:
            server = Served(path)
            poller = subprocess.Popen([sys.executable, __file__, "_poll", f"http://{server.host}:{server.port}/",
                                       str(poll_every)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            time.sleep(0.5)  # the server's start-up is over before the run begins
        server_cpu = _cpu_seconds(server.process.pid) if server is not None else 0.0
        began, cpu = time.perf_counter(), time.process_time()
        net.start()
        elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
        server_cpu = _cpu_seconds(server.process.pid) - server_cpu if server is not None else 0.0
    finally:
        net.close()
        polls = {"polls": 0, "median_ms": None}
        if poller is not None:
            polls = json.loads(poller.communicate("", timeout=60)[0])
        if server is not None:
            server.close()
    return {"epochs_per_s": 4 * values / elapsed, "cpu_us_per_epoch": cpu / (4 * values) * 1e6,
            "server_cpu_per_s": server_cpu / elapsed, "polls": polls["polls"], "poll_median_ms": polls["median_ms"]}


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def overhead(values: int, rounds: int, interval: float) -> dict:
    folder = tempfile.mkdtemp(prefix="bench-ui-")
    runs: dict[str, list[dict]] = {"without ui": [], "with ui polling": []}
    for i in range(rounds):
        for mode in (("without ui", None), ("with ui polling", interval))[:: 1 if i % 2 == 0 else -1]:
            path = os.path.join(folder, f"chain-{i}-{len(runs[mode[0]])}-{mode[1] is not None}.db")
            runs[mode[0]].append(_chain_run(path, values, mode[1]))
            for suffix in ("", "-wal", "-shm", "-lock", "-starts"):
                if os.path.exists(path + suffix):
                    os.remove(path + suffix)
    os.rmdir(folder)
    off = statistics.median(r["epochs_per_s"] for r in runs["without ui"])
    on = statistics.median(r["epochs_per_s"] for r in runs["with ui polling"])
    polls = [r["poll_median_ms"] for r in runs["with ui polling"] if r["poll_median_ms"] is not None]
    return {"values": values, "rounds": rounds, "poll_interval_s": interval,
            "without_ui_epochs_per_s": [round(r["epochs_per_s"]) for r in runs["without ui"]],
            "with_ui_epochs_per_s": [round(r["epochs_per_s"]) for r in runs["with ui polling"]],
            "without_ui_net_cpu_us_per_epoch": [round(r["cpu_us_per_epoch"]) for r in runs["without ui"]],
            "with_ui_net_cpu_us_per_epoch": [round(r["cpu_us_per_epoch"]) for r in runs["with ui polling"]],
            "net_cpu_overhead_percent": round((statistics.median(r["cpu_us_per_epoch"] for r in runs["with ui polling"])
                                               / statistics.median(r["cpu_us_per_epoch"] for r in runs["without ui"])
                                               - 1) * 100, 1),
            "ui_server_cpu_percent_of_a_core": round(statistics.median(
                r["server_cpu_per_s"] for r in runs["with ui polling"]) * 100, 1),
            "polls_per_run": [r["polls"] for r in runs["with ui polling"]],
            "live_poll_median_ms": round(statistics.median(polls), 1) if polls else None,
            "overhead_percent": round((off - on) / off * 100, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["endpoints", "overhead", "all"])
    parser.add_argument("--db", help="the big run to build or reuse (default: a temporary file, removed after)")
    parser.add_argument("--values", type=int, default=100_000, help="values of the big run (100,000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per route (7)")
    parser.add_argument("--chain-values", type=int, default=20_000, help="values per overhead run (20,000)")
    parser.add_argument("--rounds", type=int, default=5, help="overhead runs per mode (5)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between live polls (1, as the page)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_poll"]:  # the poller process of `overhead`
        return _poll(argv[1], float(argv[2]))
    args = parser.parse_args(argv)
    result: dict = {}
    if args.what in ("endpoints", "all"):
        path = args.db or os.path.join(tempfile.gettempdir(), f"bench-ui-{os.getpid()}.db")
        try:
            result["endpoints"] = endpoints(path, args.values, args.repeat)
        finally:
            if not args.db:
                for suffix in ("", "-wal", "-shm", "-lock", "-starts"):
                    if os.path.exists(path + suffix):
                        os.remove(path + suffix)
    if args.what in ("overhead", "all"):
        result["overhead"] = overhead(args.chain_values, args.rounds, args.interval)
    if args.json:
        print(json.dumps(result))
        return 0
    for name, timing in result.get("endpoints", {}).items():
        print(f"{name:>32}: {timing['median_ms']:7.1f} ms median, {timing['max_ms']:7.1f} ms max")
    for key, value in result.get("overhead", {}).items():
        print(f"{key:>32}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
