"""`netrun logs`: lines printed by node functions, followed while a run goes on, or searched
(with failed attempts' errors and dead letters' errors) through a full-text index."""

from __future__ import annotations

import argparse
import time

from ..inspector import NetInspector
from ..shortids import short_id
from .numbers import count
from .output import Output, UsageError, cell, short_time

FOLLOW_INTERVAL = 0.5  # seconds between polls of `logs --follow`
SOURCES = {"log": "", "attempt": "failed attempt {attempt}: ", "dead_letter": "dead letter #{seq}: "}


def logs(args: argparse.Namespace, out: Output) -> int:
    if args.search is not None:
        if args.follow:
            raise UsageError("logs: --search reads what is there; it does not take --follow")
        if not args.search.strip():
            raise UsageError("logs: --search needs the words to find")
        return search(args, out)
    with NetInspector(args.file) as net:
        epoch = None if args.epoch is None else net.resolve_id(args.epoch, "epoch")
        rows = net.logs(node=args.node, epoch=epoch, limit=args.limit or None)
        if not args.follow:
            if out.json_mode:
                out.json(rows)  # one document, as every read command's --json
            else:
                _print(rows, out)
            return 0
        _print(rows, out, stream=True)
        last = max((r["seq"] for r in rows), default=0)
        try:
            while True:  # until the run ends (no process owns the net) or Ctrl-C
                running = net.owner() is not None
                rows = net.logs(node=args.node, epoch=epoch, after_seq=last)
                _print(rows, out, stream=True)
                last = max((r["seq"] for r in rows), default=last)
                if not running:
                    return 0
                time.sleep(FOLLOW_INTERVAL)
        except KeyboardInterrupt:
            return 0


def _print(rows: list[dict], out: Output, *, stream: bool = False) -> None:
    for row in rows:
        if stream and out.json_mode:
            out.line(cell(row))  # --follow --json: one JSON object per line, printed as it comes
        else:
            out.line(f"{short_time(row['timestamp'])}  {row['node']:<12} {short_id(row['epoch'] or '-')}  "
                     f"{SOURCES[row.get('source', 'log')].format(**row)}{row['text']}")


def search(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file) as net:
        if args.node is not None:
            net.check_node(args.node)
        epoch = None if args.epoch is None else net.resolve_id(args.epoch, "epoch")
        rows, figures = net.search(args.search, node=args.node, epoch=epoch, limit=args.limit or None)
    if out.json_mode:
        out.json(rows)
        return 0
    _print(rows, out)
    if not rows:
        out.line(f"(nothing matches {args.search!r})", style="dim")
    if figures["added"] > 1000:  # the first search of a long run builds the index: say what it cost
        out.note(f"indexed {figures['added']} new lines and errors in {figures['seconds']:.1f} s"
                 + (" (in memory: the folder cannot be written)" if figures["in_memory"] else ""), style="dim")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("logs", parents=[common], help="lines printed by node functions; --search: with errors",
                            description="Print captured output of node functions, oldest first; or search it, "
                            "with the errors of failed attempts and dead letters.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--node", help="only this node's lines")
    p.add_argument("--epoch", help="only this epoch's lines (its ID, or the short form tables show)")
    p.add_argument("--limit", type=count, default=0, metavar="N", help="only the newest N lines (0 = all)")
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new lines while a process runs the "
                   "net; ends when that run ends (or on Ctrl-C); with --json, one JSON object per line")
    p.add_argument("--search", metavar="TEXT", help="only log lines, failed attempts' errors and tracebacks, and "
                   "dead letters' errors that hold every word of TEXT (any form: 'fail' finds 'failed'); the index "
                   "is kept in FILE-search, beside the database (a PostgreSQL net's in ~/.cache/netrun/search)")
    p.set_defaults(func=logs)
