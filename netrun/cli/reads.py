"""Read-only commands: status, history, sql, trace, logs. They never write the database,
so they work on a net another process is running, or on one that crashed."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys

from ..errors import StoredValueUnreadable
from ..inspector import NetInspector
from ..values import json_exact
from ..params import is_int64
from .numbers import count
from ..tabular import write_rows
from ..shortids import short_id
from .output import Output, UsageError, cell, dead_letter_advice, shell, short_time, tracebacks

_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")  # JSON's number syntax
NEXT_STEP = {
    "running": "the run is going on; watch it with: netrun status {path} (or netrun logs {path} --follow)",
    "interrupted": "its process died mid-epoch; continue with: netrun resume {path}",
    "stopped": "work is left; continue with: netrun resume {path}",
    "finished": "nothing more can run",
}


UNPICKLE_HELP = ("show pickled values by unpickling them: code stored in the file runs (never do it with a "
                 "database from someone you do not trust)")


def status(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file, unpickle=args.unpickle) as net:
        report = net.status(recent=args.recent)
        report["packets_left"] = net.packets_left(limit=args.recent * 2)
    if out.json_mode:
        out.json(report)
        return 0
    owner = report["owner"]
    out.line(f"{report['path']}: {report['state']}" + (f" (pid {owner['pid']} on {owner['host']} since "
                                                          f"{owner['since']})" if owner else ""), style="bold")
    out.line(NEXT_STEP[report["state"]].format(path=shell(report["path"])))
    if report["dead_letters_pending"]:
        out.line(dead_letter_advice(report["path"], report["dead_letters_pending"]))
    out.fields([("created", f"{report['created_at']} by netrun {report['netrun_version']}"),
                ("last activity", report["last_activity"]), ("history records", report["history_rows"]),
                ("live packets", report["live_packets"]),
                ("dead letters", f"{report['dead_letters_pending']} pending")])
    rows = [{"node": name, **counts} for name, counts in report["nodes"].items()]
    out.table(rows, ["node", "startable", "queued", "running", "finished", "failed", "cancelled"], title="Epochs")
    waiting = report["waiting"]
    out.table(waiting["edges"], ["from", "to", "packets"], title="Packets on edges")
    out.table(waiting["input_ports"], ["node", "port", "packets"], title="Packets at input ports")
    if waiting["inside_epochs"]:
        out.table(waiting["inside_epochs"], ["node", "packets"], title="Packets inside epochs")
    if waiting["inbox"]:
        out.table(waiting["inbox"], ["kind", "node", "port", "items"], title="Injected, not yet admitted")
    if report["running_epochs"]:
        out.table(report["running_epochs"], ["epoch", "node", "attempt", "started_at"], title="Running epochs")
    out.table(report["recent_failures"], ["finished_at", "node", "epoch", "attempt", "error"], title="Recent failures")
    tracebacks(out, report["recent_failures"], full=args.full)
    if report["workers"]:
        rows = [{**w, "pools": ", ".join(w["pools"]), "state": "stopped" if w["stopped_at"] else "running",
                 "jobs": " ".join(w["jobs"]) or "-"} for w in report["workers"]]
        out.table(rows, ["host", "pid", "pools", "concurrency", "state", "heartbeat_at", "jobs"], title="Workers")
    if report["packets_left"]:
        out.table(report["packets_left"], ["packet", "location", "node", "port", "value"], title="Live packets")
        if len(report["packets_left"]) < report["live_packets"]:
            out.line(f"(the oldest {len(report['packets_left'])} of {report['live_packets']} live packets; all of "
                     f"them: netrun sql {shell(report['path'])} \"SELECT * FROM packets WHERE state = 'live'\")",
                     style="dim")
    return 0


def history(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file) as net:
        epoch = None if args.epoch is None else net.resolve_id(args.epoch, "epoch")  # unknown: NotFoundError
        packet = None if args.packet is None else net.resolve_id(args.packet, "packet")
        rows = net.history(node=args.node, epoch=epoch, packet=packet, kind=args.kind, since=args.since,
                           limit=args.limit or None)
        names = [] if rows or not args.kind else [r["name"] for r in net.query(
            "SELECT DISTINCT name FROM history ORDER BY name")]
    if out.json_mode:
        out.json(rows)
        return 0
    for row in rows:
        out.line(_history_line(row))
    if not rows:
        out.line("(no history records match)", style="dim")
    if names and args.kind.lower() not in ("action", "event") and \
            args.kind.lower() not in (n.lower() for n in names):
        out.note(f"no record of this run is named {args.kind!r}; its record names: {', '.join(names)}")
    return 0


def _history_line(row: dict) -> str:
    parts = [f"{row['seq']:>7}", short_time(row["timestamp"]), f"{row['type']:<6}", row["name"]]
    for label, key in (("node", "node_name"), ("epoch", "epoch_id"), ("packet", "packet_id")):
        if row[key]:
            parts.append(f"{label}={short_id(row[key])}")
    if row["data"]:
        parts.append(cell(row["data"]))
    return "  ".join(parts)


def _param(text: str, index: int) -> int | float | str:
    """A --param: a number when it is written as one (`count(*) > ?` compares numbers; a text column
    still matches, by its affinity), else the text itself.

    Raises UsageError for a number SQL cannot hold (past 64-bit integers, or a float's range)."""
    if not _NUMBER.fullmatch(text):
        return text
    value = float(text) if any(c in text for c in ".eE") else int(text)
    if (isinstance(value, float) and not math.isfinite(value)) or \
            (isinstance(value, int) and not is_int64(value)):
        raise UsageError(f"--param {text} (#{index}) is a number out of SQL's range (integers from -2**63 to "
                         f"2**63-1, floats up to about 1.8e308)")
    return value


SQL_TABLE_ROWS = 1000  # rows per table in the human format: a longer result is printed as several


def sql(args: argparse.Namespace, out: Output) -> int:
    """Rows are printed as they are read (see NetInspector.query_rows): a result of any size costs the
    memory of one batch (a table of the human format: SQL_TABLE_ROWS rows)."""
    fmt = _data_format(args, out)
    params = [_param(text, index) for index, text in enumerate(args.param or (), 1)]
    with NetInspector(args.file) as net, net.query_rows(args.statement, params) as (columns, found):
        rows = iter(found)
        first = next(rows, None)
        if first is None:  # no rows: no header either (SQLite names a statement's columns only while it returns rows)
            columns, rows = [], iter(())
        else:
            rows = itertools.chain([first], rows)
        if fmt or out.json_mode:
            write_rows(out.stdout or sys.stdout, columns, rows, fmt or "json")
            return 0
        batch = list(itertools.islice(rows, SQL_TABLE_ROWS))
        if not batch:
            out.table([], [], empty="(no rows)")
        while batch:  # the data as selected
            out.table([dict(zip(columns, row)) for row in batch], columns, shorten=False)
            batch = list(itertools.islice(rows, SQL_TABLE_ROWS))
    return 0


def _data_format(args: argparse.Namespace, out: Output) -> str | None:
    """`--csv` or `--tsv` (one of them, not with --json), else None."""
    chosen = [name for name in ("csv", "tsv") if getattr(args, name)]
    if len(chosen) + out.json_mode > 1:
        raise UsageError("sql: choose one output format among --json, --csv and --tsv")
    return chosen[0] if chosen else None


def trace(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file, unpickle=args.unpickle) as net:
        lineage = net.trace(net.resolve_id(args.packet), depth=args.depth)
    if out.json_mode:
        out.json(lineage)
        return 0
    out.line(f"packet {lineage['packet']}", style="bold")
    out.line(f"  came from: {_origin(lineage['origin'])}")
    out.line(f"  went to:   {_end(lineage['end'])}")
    out.line("  value:     " + (lineage["value"] if lineage["value"] is not None else
                                "(not stored: consumed values are kept only with consumed_packet_storage)"))
    out.line("path:", style="bold")
    for row in lineage["path"]:
        where = " ".join(f"{k}={short_id(row[k])}" for k in ("node", "epoch") if row[k])
        out.line(f"  {short_time(row['timestamp'])}  {row['name']:<26} {where}  {cell(row['data'])}".rstrip())
    for title, entries in (("made from (ancestors)", lineage["ancestors"]),
                           ("made into (descendants)", lineage["descendants"])):
        out.line(f"{title}:", style="bold")
        if not entries:
            out.line("  (none)", style="dim")
        for entry in entries:
            indent = "  " * abs(entry["depth"])
            out.line(f"{indent}{short_id(entry['packet'])}  from {_origin(entry['origin'])}; {_end(entry['end'])}")
    if lineage["truncated"]:
        out.line("(truncated: too many packets to list; a smaller --depth, or SQL over the history table, "
                 "shows the rest)", style="dim")
    return 0


def _origin(origin: dict | None) -> str:
    if origin is None:
        return "unknown (no history record)"
    if origin["how"] == "created":
        return f"epoch {short_id(origin['epoch'])} of {origin['node']}"
    if origin["how"] == "replayed":
        return f"a replay of dead letter packet {short_id(origin['replay_of'])} at {origin['node']}.{origin['port']}"
    return f"injected at {origin.get('node')}.{origin.get('port')}"


def _end(end: dict | None) -> str:
    if end is None:
        return "unknown"
    if end["state"] == "live":
        place = f"{end['node']}.{end['port']}" if end.get("port") else end.get("node") or ""
        return f"live ({end['location']} {place})".rstrip()
    text = f"{end['state']} in epoch {short_id(end['epoch'])} of {end['node']}"
    letter = end.get("dead_letter")
    if letter:
        text += f" (dead letter #{letter['seq']}, {letter['reason']}, {letter['status']}" + (
            f" as {short_id(letter['replayed_as'])})" if letter["replayed_as"] else ")")
    return text


def value(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file, unpickle=args.unpickle) as net:
        found = net.value(net.resolve_id(args.packet))
    if found["kind"] == "json" or (found["kind"] == "pickle" and args.unpickle):
        out.raw(_value_text(found["packet"], found["value"]))
        return 0
    what = "a value function (netrun never calls it to show it)" if found["kind"] == "func" else \
        "a pickled value (--unpickle shows it: code stored in the file runs)"
    out.note(f"packet {found['packet']} holds {what}; preview: {found['preview']}")
    return 1


def _value_text(packet: str, value: object) -> str:
    """JSON when JSON carries the value exactly (valid UTF-8 text: a lone surrogate is escaped), else
    its repr (a tuple is not a list)."""
    try:
        if not json_exact(value):
            raise TypeError("not a JSON value")
        text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):  # not JSON (a tuple, nan, an int past the str limit...)
        try:
            text = repr(value)
        except Exception as exc:  # noqa: BLE001 - any __repr__ of a stored class may raise (ValueError: an int past the str limit)
            reason = str(exc) if isinstance(exc, ValueError | RecursionError) else f"{type(exc).__name__}: {exc}"
            raise StoredValueUnreadable(f"packet {packet}: its value cannot be shown as text ({reason})",
                                        packet_id=packet) from exc
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(value, indent=2, allow_nan=False)
    return text


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("status", parents=[common], help="the state of a run: per-node counts, what waits, "
                            "what runs, recent failures",
                            description="Show a run's state (running, interrupted, stopped, finished), epochs per "
                            "node, packets waiting on edges and at ports, running epochs and recent failures.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--recent", type=count, default=5, metavar="N", help="how many recent failures to show (5)")
    p.add_argument("--full", action="store_true", help="whole tracebacks of the failures (default: the innermost "
                   "frames)")
    p.add_argument("--unpickle", action="store_true", help=UNPICKLE_HELP)
    p.set_defaults(func=status)

    p = commands.add_parser("history", parents=[common], help="history records, filtered",
                            description="Print history records (actions and events), oldest first.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--node", help="only records of this node")
    p.add_argument("--epoch", help="only records of this epoch ID")
    p.add_argument("--packet", help="only records of this packet ID")
    p.add_argument("--kind", help="'action', 'event', or a record name such as PacketMoved or StartEpoch")
    p.add_argument("--since", help="only records at or after this time: ISO (2026-11-28T09:30, UTC) or an age "
                   "(30s, 10m, 2h, 1d)")
    p.add_argument("--limit", type=count, default=100, metavar="N", help="the newest N matching records (100; 0 = all)")
    p.set_defaults(func=history)

    p = commands.add_parser("sql", parents=[common], help="a read-only SQL query over the run's tables",
                            description="Run one read-only SQL statement; writing statements are refused.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("statement", help='the query, e.g. "SELECT node_name, count(*) FROM epochs GROUP BY 1"')
    p.add_argument("--param", action="append", metavar="VALUE", help="a value for the next ? in the query: a "
                   "number if written as one, else text (repeatable)")
    p.add_argument("--csv", action="store_true", help="print CSV (a header line, then the rows; BLOBs as base64)")
    p.add_argument("--tsv", action="store_true", help="print tab-separated values (as --csv, with tabs)")
    p.set_defaults(func=sql)

    p = commands.add_parser("trace", parents=[common], help="a packet's lineage: where it came from, where it went",
                            description="Show a packet's path through the net, the packets it was made from and "
                            "the packets made from it.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("packet", help="the packet ID")
    p.add_argument("--depth", type=count, default=10, metavar="N", help="how many epochs to follow each way (10)")
    p.add_argument("--unpickle", action="store_true", help=UNPICKLE_HELP)
    p.set_defaults(func=trace)

    p = commands.add_parser("value", parents=[common], help="one packet's whole stored value, as JSON",
                            description="Print a packet's stored value (live, kept after consumption, or in its "
                            "dead letter) as JSON on stdout. A pickled value is printed only with --unpickle (as "
                            "its repr); without it, its preview goes to stderr and the exit code is 1.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("packet", help="the packet ID")
    p.add_argument("--unpickle", action="store_true", help=UNPICKLE_HELP)
    p.set_defaults(func=value)
