"""Crash harness: SIGKILL a running pipeline again and again, resume it, check nothing is lost.

A fan-out/fan-in pipeline (Split -> W0..W7 -> Join -> Sink) gets N values. A child process
resumes the database and runs it; the parent kills it with SIGKILL at a random instant, or
arms a named fault point (`after_commit`, `between_actions`, `checkpoint_before_rename`)
so the child kills itself there. This repeats until a child finishes. Then, with the stdlib
sqlite3 module on the closed file:
- deferred mode (every node `defer_net_actions=True`, with retries enough for every kill: a deferred
  epoch that dies more than `retries + 1` times fails by design): each value reached Sink exactly once,
  and the deaths counted (`epoch_attempts` rows of error type WorkerLost) are reported;
- immediate mode: each value reached Sink at most once, and every value that did not is
  dead-lettered with reason 'interrupted': none vanished;
- `PRAGMA integrity_check` is ok, no packet is left live, no epoch left open.

    python tools/crash_harness.py --values 10000 --kills 60 --mode deferred --max-delay 0.03
    python tools/crash_harness.py --values 10000 --kills 60 --mode immediate --max-delay 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing

WIDTH = 8
FAULT_POINTS = ("after_commit", "between_actions", "checkpoint_before_rename")


# -- the pipeline (run in the child) -------------------------------------------------------
def build_graph():
    import netrun
    from netrun.graphs import edge, simple_node

    join = netrun.Node(
        name="Join",
        in_ports={f"i{k}": netrun.Port(netrun.PortSlotSpec.infinite()) for k in range(WIDTH)},
        out_ports={"out": netrun.Port(netrun.PortSlotSpec.infinite())},
        in_salvo_conditions={
            f"c{k}": netrun.SalvoCondition(netrun.MaxSalvos.finite(1), {f"i{k}": netrun.PacketCount.count(1)},
                                           netrun.SalvoConditionTerm.port(f"i{k}", netrun.PortState.non_empty()))
            for k in range(WIDTH)},
        out_salvo_conditions={"send_out": netrun.SalvoCondition(
            netrun.MaxSalvos.infinite(), "out", netrun.SalvoConditionTerm.port("out", netrun.PortState.non_empty()))},
    )
    nodes = [simple_node("Split", ["in"], [f"o{k}" for k in range(WIDTH)]),
             *[simple_node(f"W{k}", ["in"], ["out"]) for k in range(WIDTH)], join,
             simple_node("Sink", ["in"], [])]
    edges = [edge("Split", f"W{k}", f"o{k}", "in") for k in range(WIDTH)]
    edges += [edge(f"W{k}", "Join", "out", f"i{k}") for k in range(WIDTH)]
    edges.append(edge("Join", "Sink"))
    return netrun.Graph(nodes, edges)


def split(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    port = f"o{value % WIDTH}"
    ctx.load_output_port(port, ctx.create_packet(value))
    ctx.send_output_salvo(f"send_{port}")


def work(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def join(ctx, packets):
    for plist in packets.values():
        for packet in plist:
            ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packet)))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


# A deferred epoch's death is counted, and one that died more than `retries + 1` times fails (README "Crashes
# and resuming": a value that kills its process is not run forever). The harness kills the same epoch again
# often (the one a kill interrupted runs first after the resume), so its deferred nodes get retries enough
# for every kill: what it checks is that nothing is lost or run twice, whatever the number of kills.
DEFERRED_RETRIES = 1_000


def configure(net, deferred: bool) -> None:
    funcs = {"Split": split, "Join": join, "Sink": sink, **{f"W{k}": work for k in range(WIDTH)}}
    for name, func in funcs.items():
        net.set_node_exec(name, func)
        net.set_node_config(name, defer_net_actions=deferred, capture_stdout=False,
                            retries=DEFERRED_RETRIES if deferred else 0)


def child(args: argparse.Namespace) -> int:
    import netrun
    from netrun import faults

    began = time.perf_counter()
    if args.setup:
        net = netrun.Net(build_graph(), db=args.db, consumed_packet_storage=True, on_error="continue")
        configure(net, args.mode == "deferred")
        for value in range(args.values):
            net.inject_packet("Split", "in", value)
        net.close()
        return 0
    net = netrun.Net.resume(args.db)
    configure(net, args.mode == "deferred")
    print(json.dumps({"ready_s": time.perf_counter() - began}), flush=True)
    if args.fault:
        point, after = args.fault.split(":")
        faults.arm(point, int(after))
    steps = 0
    while True:
        net.run_step()
        steps += 1
        if steps % 2 == 0:  # exercise the checkpoint fault point now and then
            net.pause()  # a checkpoint is taken while the net is paused; the next run_step() goes on
            net.save_checkpoint(args.db + ".ckpt")
        if not net.get_startable_epochs() and not net.query(
                "SELECT 1 FROM packets WHERE state = 'live' AND location IN ('edge', 'input_port') LIMIT 1"):
            break
    net.close()
    print(json.dumps({"done": True}), flush=True)
    return 0


# -- the parent ------------------------------------------------------------------------------
def run_child(db: str, mode: str, values: int, fault: str | None, kill_after: float | None) -> tuple[str, float | None]:
    cmd = [sys.executable, __file__, "--child", "--db", db, "--mode", mode, "--values", str(values)]
    if fault:
        cmd += ["--fault", fault]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the child says when the net is resumed and ready
    if kill_after is not None and first:
        try:
            proc.wait(timeout=kill_after)  # counted from "ready": the kill lands mid-run
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    out = first + out
    ready = None
    done = False
    for line in out.splitlines():
        record = json.loads(line)
        ready = record.get("ready_s", ready)
        done = done or record.get("done", False)
    if proc.returncode == -signal.SIGKILL:
        return "killed", ready
    if proc.returncode != 0 or not done:
        raise RuntimeError(f"child failed (exit {proc.returncode}):\n{err[-3000:]}")
    return "done", ready


def _stored(data: str | bytes) -> object:
    """A stored value: JSON text, or a pickle (values JSON cannot carry exactly)."""
    return json.loads(data) if isinstance(data, str) else pickle.loads(data)


def check(db: str, mode: str, values: int) -> dict:
    with closing(sqlite3.connect(db)) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        delivered = [_stored(row[0]) for row in conn.execute(
            "SELECT v.data FROM packets p JOIN packet_values v ON v.packet_id = p.id "
            "WHERE p.state = 'consumed' AND p.node_name = 'Sink'")]
        lettered = [_stored(row[0]) for row in conn.execute(
            "SELECT value FROM dead_letters WHERE value IS NOT NULL")]
        reasons = sorted({row[0] for row in conn.execute("SELECT reason FROM dead_letters")})
        live = conn.execute("SELECT count(*) FROM packets WHERE state = 'live'").fetchone()[0]
        open_epochs = conn.execute(
            "SELECT count(*) FROM epochs WHERE state IN ('startable', 'running')").fetchone()[0]
        deaths, most = conn.execute(
            "SELECT count(*), coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM epoch_attempts "
            "WHERE error_type = 'WorkerLost' GROUP BY epoch_id)").fetchone()
    expected = set(range(values))
    seen = set(delivered)
    duplicated = len(delivered) - len(seen)
    lost = expected - seen - set(lettered)
    return {"integrity": integrity, "delivered": len(delivered), "duplicated": duplicated,
            "dead_lettered": len(lettered), "dead_letter_reasons": reasons, "lost": len(lost),
            "live_packets_left": live, "open_epochs_left": open_epochs,
            "epochs_with_deaths_counted": deaths, "most_deaths_of_one_epoch": most,
            "ok": integrity == "ok" and duplicated == 0 and not lost and live == 0 and open_epochs == 0
            and (mode != "deferred" or (len(delivered) == values and not lettered))
            and set(reasons) <= {"interrupted"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--values", type=int, default=10_000)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--mode", choices=["deferred", "immediate"], default="deferred")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-delay", type=float, default=0.3,
                        help="random kills happen within this many seconds of the child being ready")
    parser.add_argument("--db")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--fault", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    rng = random.Random(args.seed)
    db = args.db or os.path.join(tempfile.mkdtemp(prefix="netrun-crash-"), "crash.db")
    subprocess.run([sys.executable, __file__, "--child", "--setup", "--db", db, "--mode", args.mode,
                    "--values", str(args.values)], check=True)
    kills = {"random": 0, **{p: 0 for p in FAULT_POINTS}}
    ready_times: list[float] = []
    rounds = 0
    began = time.perf_counter()
    while True:
        rounds += 1
        total_kills = sum(kills.values())
        fault = kill_after = None
        if total_kills < args.kills:
            if rng.random() < 0.5:
                kill_after = rng.uniform(0.01, args.max_delay)
            else:
                point = rng.choice(FAULT_POINTS)
                # A commit can hold a batch of deferred epochs: a few commits are already much work.
                limit = {"checkpoint_before_rename": 2, "after_commit": 5, "between_actions": 60}[point]
                fault = f"{point}:{rng.randint(1, limit)}"
        outcome, ready = run_child(db, args.mode, args.values, fault, kill_after)
        if ready is not None:
            ready_times.append(ready)
        if outcome == "done":
            break
        kills["random" if fault is None else fault.split(":")[0]] += 1
    result = check(db, args.mode, args.values)
    ready_sorted = sorted(ready_times)
    report = {
        "mode": args.mode, "values": args.values, "kills": kills, "total_kills": sum(kills.values()),
        "rounds": rounds, "seconds": round(time.perf_counter() - began, 1),
        "resume_p50_s": round(statistics.median(ready_sorted), 4) if ready_sorted else None,
        "resume_p99_s": round(ready_sorted[min(len(ready_sorted) - 1, int(len(ready_sorted) * 0.99))], 4)
        if ready_sorted else None,
        **result,
    }
    if report["total_kills"] < args.kills:
        report["note"] = (f"the pipeline finished after {report['total_kills']} of the {args.kills} kills asked "
                          f"(a kill that comes after the last value is not one): give more --values")
    print(json.dumps(report, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
