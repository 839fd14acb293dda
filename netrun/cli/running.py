"""`netrun run` and `netrun resume`: run a net to completion with a progress display.

The net runs in the foreground (the main thread), so the library's SIGINT handling
applies: the first Ctrl-C pauses the net once its running epochs finish, then the command
says how to resume; a second Ctrl-C interrupts at once (the file is left as after a crash,
which a resume handles). The display reads `Net.poll()` (no lock) and the tables through
its own read-only connection, from its own thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from ..errors import NetrunError
from ..inspector import NetInspector
from ..net import Net
from ..store import is_url, store_for
from .files import add_import_paths, existing_file, remove_old_net
from .numbers import seconds
from .output import Output, UsageError, dead_letter_advice, json_only_stdout, shell, tracebacks
from .progress import LiveProgress, PlainProgress, Progress

EXIT_INTERRUPTED = 130  # the shell's code for "stopped by Ctrl-C"; also a pause asked by `netrun stop`


def _parse_packet(spec: str) -> tuple[str, str, Any]:
    target, sep, text = spec.partition("=")
    node, dot, port = target.rpartition(".")
    if not sep or not dot or not node or not port:
        raise UsageError(f"--packet {spec!r}: expected NODE.PORT=VALUE, e.g. --packet 'Split.in=\"some text\"'")
    try:
        value = json.loads(text)
    except ValueError:
        value = text  # not JSON: the text itself
    except RecursionError:
        raise UsageError(f"--packet {node}.{port}: the value is nested too deeply to be read") from None
    return node, port, value


def _inject(net: Net, args: argparse.Namespace, packets: list[tuple[str, str, Any]]) -> list[str]:
    """Inject the run's work; returns the nodes given a source epoch."""
    sources = args.inject
    if not sources and not packets:
        sources = sorted(name for name, node in net.graph.nodes().items() if not node.in_ports)
        if not sources:
            raise UsageError(f"{args.net} has no source node (one without input ports): say what to inject "
                             "with --inject NODE or --packet NODE.PORT=VALUE")
    for name in sources or []:
        net.inject_source_epoch(name)
    for node, port, value in packets:
        net.inject_packet(node, port, value)
    return sources or []


def run(args: argparse.Namespace, out: Output) -> int:
    with json_only_stdout(out):  # --json: one document on stdout, whatever the nodes print
        return _run(args, out)


def _run(args: argparse.Namespace, out: Output) -> int:
    existing_file(args.net, "a TOML definition")
    add_import_paths(args.path, os.path.dirname(os.path.abspath(args.net)))
    packets = [_parse_packet(spec) for spec in args.packet or []]
    if os.path.isdir(args.db):
        raise UsageError(f"--db {args.db} is a folder; give the path of the database file to create")
    if args.overwrite:
        remove_old_net(args.db)
    elif is_url(args.db) and store_for(args.db).exists():
        raise UsageError(f"{store_for(args.db).label} already holds a net; continue it with: netrun resume URL "
                         "(or add --overwrite to start over)")
    elif os.path.exists(args.db) and os.path.getsize(args.db) > 0:
        raise UsageError(f"{args.db} already exists; continue it with: netrun resume {shell(args.db)} "
                         "(or add --overwrite to start over)")
    net = Net.load_definition(args.net, db=args.db)
    with net:
        try:
            sources = _inject(net, args, packets)
        except BaseException:
            net.close()
            remove_old_net(args.db)  # created above, nothing ran in it: the corrected command may use the name
            raise
        if not out.json_mode:
            what = [f"a source epoch at {n}" for n in sources] + [f"a packet at {n}.{p}" for n, p, _ in packets]
            out.line(f"netrun: running {args.net} on {args.db}; injected {', '.join(what)}")
        return _drive(net, args, out)


def resume(args: argparse.Namespace, out: Output) -> int:
    with json_only_stdout(out):
        return _resume(args, out)


def _resume(args: argparse.Namespace, out: Output) -> int:
    add_import_paths(args.path)
    net = Net.resume(args.file, wait=args.wait)
    with net:
        if net.unrestored_functions:
            missing = "; ".join(f"{node}: {', '.join(roles)}" for node, roles in sorted(net.unrestored_functions.items()))
            out.note(f"warning: functions not importable ({missing}); those nodes' epochs stay startable. "
                     "Add --path DIR for the folder of their modules.")
        if not out.json_mode:
            out.line(f"netrun: resuming {args.file}")
        pending = net.query("SELECT count(*) AS n FROM dead_letters WHERE status = 'pending'")[0]["n"]
        if pending:
            out.note(dead_letter_advice(net.db_path, pending))
        return _drive(net, args, out)


def _drive(net: Net, args: argparse.Namespace, out: Output) -> int:
    path = net.db_path
    word = shell(path)  # the path in the commands suggested below
    with NetInspector(net.db_url) as inspector:
        earlier = inspector.node_counts()  # what runs before this one did
        display: Progress | None = None
        if not (out.json_mode or args.no_progress):
            kind = LiveProgress if out.console.is_terminal else PlainProgress
            display = kind(net, inspector, out.console, earlier, interval=args.interval)
        started = time.monotonic()
        before = sum(c["finished"] + c["failed"] + c["cancelled"] for c in earlier.values())
        interrupted_query = "SELECT count(*) AS n FROM dead_letters WHERE reason = 'interrupted'"
        letters_before = inspector.query(interrupted_query)[0]["n"]
        stops_query = "SELECT count(*) AS n FROM operator_requests WHERE kind = 'stop' AND state = 'done' AND id > ?"
        requests_before = inspector.query("SELECT coalesce(max(id), 0) AS n FROM operator_requests")[0]["n"]
        interrupted = False
        if display:
            display.start()
        try:
            net.start()
        except KeyboardInterrupt:
            interrupted = True
        except NetrunError:
            if net.poll().state != "paused":
                raise
            # on_error = "raise": the net paused at the failed epoch; reported as a pause is, with the failure
        finally:
            if display:
                display.stop()
        paused = net.poll().state == "paused"
        net.close()
        stopped = paused and inspector.query(stops_query, (requests_before,))[0]["n"] > 0  # by `netrun stop`
        elapsed = time.monotonic() - started
        report = inspector.status()
        report["packets_left"] = inspector.packets_left()
        # a second Ctrl-C ends the epochs it interrupts as a crash would: their packets are dead letters
        cut_short = inspector.query(interrupted_query)[0]["n"] - letters_before
    done = sum(c["finished"] + c["failed"] + c["cancelled"] for c in report["nodes"].values()) - before
    report["run"] = {"seconds": round(elapsed, 3), "epochs_ended": done,
                     "epochs_per_second": round(done / elapsed, 1) if elapsed > 0 else None,
                     "interrupted": interrupted, "stopped": stopped,
                     "paused_by_failure": paused and not interrupted and not stopped}
    if out.json_mode:
        out.json(report)
    else:
        _summary(report, out, full=args.full)
    pending = report["dead_letters_pending"]
    if interrupted and (report["state"] == "interrupted" or cut_short > 0):  # a second Ctrl-C: stopped at once
        out.note(f"stopped by a second Ctrl-C while epochs ran (as a crash would): deferred epochs run again on "
                 f"resume; the packets of the others are dead letters (reason 'interrupted'); continue with: "
                 f"netrun resume {word}" + (f". {dead_letter_advice(path, pending)}" if pending else ""))
        return EXIT_INTERRUPTED
    if interrupted:
        out.note(f"paused by Ctrl-C after the running epochs finished; continue with: netrun resume {word}")
        return EXIT_INTERRUPTED
    if stopped:
        out.note(f"paused by netrun stop after the running epochs finished; continue with: netrun resume {word}")
        return EXIT_INTERRUPTED
    if paused:
        then = (f"put its dead letters back with netrun dlq {word} replay --all and continue with netrun resume "
                f"{word} (or drop them: netrun dlq {word} discard --all)" if pending else f"netrun resume {word}")
        out.note(f"the net paused after a failed epoch; see the failure above, fix the cause, then: {then}",
                 style="red")
        return 1
    if pending:
        out.note(dead_letter_advice(path, pending))
    stuck = sorted(name for name, counts in report["nodes"].items() if counts["startable"])
    if stuck:  # blocked with startable epochs: their nodes have no function to run them
        out.note(f"epochs of {', '.join(stuck)} stay startable: no exec function could be imported for them; "
                 f"make their module importable (--path DIR), then: netrun resume {word}", style="red")
        return 1
    return 0


def _summary(report: dict, out: Output, *, full: bool = False) -> None:
    run = report["run"]
    path = shell(report["path"])
    out.line(f"{report['path']}: {report['state']} — {run['epochs_ended']} epochs in {run['seconds']:.2f} s"
             + (f" ({run['epochs_per_second']:.0f}/s)" if run["epochs_per_second"] else ""), style="bold")
    rows = [{"node": name, **counts} for name, counts in report["nodes"].items()]
    out.table(rows, ["node", "startable", "queued", "running", "finished", "failed", "cancelled"], title="Epochs")
    if report["recent_failures"]:
        out.table(report["recent_failures"], ["node", "epoch", "attempt", "error_type", "error"],
                  title="Recent failures")
        tracebacks(out, report["recent_failures"], full=full, limit=None if full else 1)
    if report["dead_letters_pending"]:
        out.line(f"dead letters: {report['dead_letters_pending']} pending (netrun dlq {path} list)")
    if report["packets_left"]:
        out.table(report["packets_left"], ["packet", "location", "node", "port", "value"],
                  title="Packets left in the net")
        if len(report["packets_left"]) < report["live_packets"]:
            out.line(f"(the oldest {len(report['packets_left'])} of {report['live_packets']} live packets)",
                     style="dim")
    out.line(f"explore it: netrun status {path} · netrun history {path} · netrun sql {path} \"SELECT ...\"",
             style="dim")


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--path", action="append", metavar="DIR", help="a folder to import node functions from "
                         "(repeatable; the current folder is always searched)")
    running.add_argument("--no-progress", action="store_true", help="no progress display, only the summary")
    running.add_argument("--interval", type=seconds, default=2.0, metavar="SECONDS",
                         help="seconds between progress lines when the output is not a terminal (2)")
    running.add_argument("--full", action="store_true", help="whole tracebacks of the failures at the end "
                         "(default: the innermost frames of the latest)")

    p = commands.add_parser("run", parents=[common, running], help="run a net defined in TOML to completion",
                            description="Create the net from NET.toml in a new database file, inject its work and "
                            "run it to completion with a live progress display. Ctrl-C pauses gracefully.")
    p.add_argument("net", help="the net's TOML definition")
    p.add_argument("--db", required=True, metavar="FILE", help="the database file to create")
    p.add_argument("--overwrite", action="store_true", help="replace FILE if it holds an earlier netrun run")
    p.add_argument("--inject", action="append", metavar="NODE", help="inject a source epoch at NODE (repeatable; "
                   "default: one at every node without input ports)")
    p.add_argument("--packet", action="append", metavar="NODE.PORT=VALUE", help="inject a packet (VALUE is JSON, "
                   "or else the text itself; repeatable)")
    p.set_defaults(func=run)

    p = commands.add_parser("resume", parents=[common, running], help="continue a stopped or crashed run",
                            description="Reopen the net stored in FILE (after Ctrl-C, a failure or a crash) and run "
                            "it to completion. Epochs that were running when a process died follow the crash "
                            "semantics (deferred ones run again).")
    p.add_argument("file", help="the net's database file, or a postgresql:// URL")
    p.add_argument("--wait", type=seconds, default=None, metavar="SECONDS",
                   help="PostgreSQL: while another process runs the net, wait as a standby (up to SECONDS) and "
                   "take over when it stops or dies")
    p.set_defaults(func=resume)

