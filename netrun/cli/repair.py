"""Commands that change a stored net without running it: the dead-letter queue and checkpoints."""

from __future__ import annotations

import argparse

from ..store import store_for
from ..inspector import NetInspector
from ..repairs import resolve_dead_letters
from ..retention import describe, prune_file
from .numbers import count
from .output import Output, UsageError, shell
from .reads import UNPICKLE_HELP
from ..tracebacks import shorten


def dlq_list(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file, unpickle=args.unpickle) as net:
        rows = net.dead_letters(node=args.node, include_resolved=args.all)
    if out.json_mode:
        out.json(rows)
    else:
        columns = ["seq", "node", "packet", "reason", *(["status"] if args.all else []), "error", "value"]
        for row in rows:
            row["error"] = (row["error"] or "").strip().split("\n")[0]  # its first line (all of it: dlq show)
        out.table(rows, columns, title="Dead letters" + ("" if args.all else " (pending)"), empty="none")
    return 0


def dlq_show(args: argparse.Namespace, out: Output) -> int:
    with NetInspector(args.file, unpickle=args.unpickle) as net:
        row = net.dead_letter(args.seq)
    if out.json_mode:
        out.json(row)
    else:
        out.fields((key, value) for key, value in row.items() if key not in ("error", "traceback"))
        out.line("error:")
        out.line(row["error"] or "(none)")
        if row["traceback"]:
            out.line("traceback:")
            out.line(row["traceback"].rstrip("\n") if args.full else shorten(row["traceback"]))
    return 0


def _resolve(args: argparse.Namespace, out: Output, *, replay: bool) -> int:
    if bool(args.seq) == args.all:
        raise UsageError(f"dlq {args.action}: give dead letter numbers, or --all (every pending one, or those of "
                         "--node), not both")
    if args.node and not args.all:
        raise UsageError(f"dlq {args.action}: --node selects with --all")
    result = resolve_dead_letters(args.file, args.seq or None, replay=replay, node=args.node)
    if result.interrupted:
        out.note(f"{args.file} was interrupted with {result.interrupted} epoch(s) running; opening it applies the "
                 "crash semantics first, as netrun resume does (deferred epochs will run again, others are "
                 "cancelled and their packets dead-lettered as 'interrupted')")
    done = result.done
    if out.json_mode:
        out.json(done)
    elif not done:
        out.line("no pending dead letters matched", style="dim")
    else:
        for entry in done:
            out.line(f"dead letter #{entry['seq']}: " + (f"replayed as packet {entry['replayed_as']}" if replay
                                                         else "discarded"))
        if replay:
            out.line(f"the packets wait at their input ports; run them with: netrun resume {shell(args.file)}")
    return 0


def dlq_replay(args: argparse.Namespace, out: Output) -> int:
    return _resolve(args, out, replay=True)


def dlq_discard(args: argparse.Namespace, out: Output) -> int:
    return _resolve(args, out, replay=False)


def checkpoint(args: argparse.Namespace, out: Output) -> int:
    manifest = store_for(args.file).checkpoint(args.directory)
    if out.json_mode:
        out.json(manifest)
    else:
        out.line(f"checkpoint of {args.file} written to {args.directory}; continue from it with: netrun restore "
                 f"{shell(args.directory)} --db NEW.db (in Python: Net.load_checkpoint({args.directory!r}, db=...))")
    return 0


def prune(args: argparse.Namespace, out: Output) -> int:
    report = prune_file(args.file, args.older_than, dry_run=args.dry_run)
    if out.json_mode:
        out.json({"cutoff": report.cutoff, "dry_run": report.dry_run, "removed": report.removed})
    else:
        out.line(describe(report))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("dlq", help="the dead-letter queue: list, show, replay, discard",
                            description="Read and repair the dead-letter queue of a stored net. replay and discard "
                            "open the net as `netrun resume` does (not while a process runs it) without running it.")
    p.add_argument("file", help="the net's database file")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", parents=[common], help="pending dead letters (with --all, resolved ones too)",
                           description="List dead letters, oldest first, with a preview of each value.")
    a.add_argument("--node", help="only this node's dead letters")
    a.add_argument("--all", action="store_true", help="include replayed and discarded ones")
    a.add_argument("--unpickle", action="store_true", help=UNPICKLE_HELP)
    a.set_defaults(func=dlq_list)
    a = actions.add_parser("show", parents=[common], help="one dead letter with its error and value",
                           description="Show one dead letter: where it was, why, the error and its value.")
    a.add_argument("seq", type=count, help="the dead letter's number (from list)")
    a.add_argument("--full", action="store_true", help="the whole traceback (default: the innermost frames)")
    a.add_argument("--unpickle", action="store_true", help=UNPICKLE_HELP)
    a.set_defaults(func=dlq_show)
    for name, func, verb in (("replay", dlq_replay, "put back at the input port it came from"),
                             ("discard", dlq_discard, "mark as discarded (the row stays, for the record)")):
        a = actions.add_parser(name, parents=[common], help=f"dead letters to {verb}",
                               description=f"Dead letters to {verb}: the numbers given, or --all pending ones "
                               "(of --node).")
        a.add_argument("seq", type=count, nargs="*", help="dead letter numbers (see list)")
        a.add_argument("--all", action="store_true", help="every pending dead letter (of --node)")
        a.add_argument("--node", help="with --all: only this node's pending dead letters")
        a.set_defaults(func=func)

    p = commands.add_parser("checkpoint", parents=[common], help="a consistent snapshot of a stored net",
                            description="Copy the net's database (and history file) into DIRECTORY as a checkpoint, "
                            "atomically. Not while a process runs the net: pause it first.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("directory", help="the checkpoint folder (created; a previous checkpoint in it is replaced)")
    p.set_defaults(func=checkpoint)

    p = commands.add_parser("prune", parents=[common], help="remove what ended epochs left behind, past an age",
                            description="Remove what epochs that ended more than DURATION ago left behind (history, "
                            "attempts, logs, job rows, consumed values, resolved dead letters), in short batches: "
                            "safe while a process runs the net. Live packets, open epochs and pending dead letters "
                            "are never touched.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--older-than", required=True, metavar="DURATION", help="an age: 30s, 10m, 12h, 7d")
    p.add_argument("--dry-run", action="store_true", help="only count what would be removed")
    p.set_defaults(func=prune)
