"""`netrun stop`, `netrun inject` and `netrun restore`: acting on a net from another terminal.

`stop` and `inject` ask the process that runs the net through the database (`ask_owner`):
only that process writes run state. `restore` makes a new database from a checkpoint
folder, which it only reads.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from typing import Any

from ..ask_owner import Outcome, request_injection, request_stop
from ..dialect import is_url
from ..store import restore_into, store_for
from .files import remove_old_net
from .numbers import seconds
from .output import Output, UsageError, shell

EXIT_ERROR = 1


def stop(args: argparse.Namespace, out: Output) -> int:
    outcome = request_stop(args.file, timeout=args.timeout)
    word = shell(args.file)
    who = outcome.owner.describe() if outcome.owner else None
    messages = {
        "not running": f"no process is running {args.file}: nothing to stop",
        "paused": f"{who} paused {args.file} (its running epochs finished); continue with: netrun resume {word}",
        "exited": f"{who} exited before it answered: {args.file} is not running now; see netrun status {word}",
        "pausing": f"{who} is pausing {args.file} but its running epochs have not finished within {args.timeout:g} s; "
                   "it pauses once they do (wait longer: --timeout SECONDS)",
        "unanswered": f"{who} did not take the request within {args.timeout:g} s (it takes requests while it runs "
                      "the net, about every 0.1 s: a process that holds the net open without running it answers "
                      "when it runs again); the request is withdrawn",
    }
    if out.json_mode:
        out.json(_document(args.file, outcome))
    elif outcome.state in ("pausing", "unanswered"):
        out.note(messages[outcome.state], style="red")
    else:
        out.line(f"netrun: {messages[outcome.state]}")
    return 0 if outcome.state in ("not running", "paused", "exited") else EXIT_ERROR


def inject(args: argparse.Namespace, out: Output) -> int:
    if not args.items:
        raise UsageError("say what to inject: --packet NODE.PORT=JSON or --source NODE (each repeatable)")
    outcome = request_injection(args.file, args.items, timeout=args.timeout)
    if out.json_mode:
        out.json(_document(args.file, outcome))
        return 0
    if outcome.state == "injected":
        out.line(f"netrun: {outcome.owner.describe()} injected into {args.file}:")
        for item in outcome.items:
            if "packet" in item:
                out.line(f"  packet {item['packet']} at {item['node']}.{item['port']}")
            else:
                out.line(f"  source epoch {item['epoch']} at {item['node']}")
        return 0
    if outcome.owner is None:
        out.line(f"netrun: no process is running {args.file}: the injection waits for the next run "
                 f"(request {outcome.request_id}); run it with: netrun resume {shell(args.file)}")
    else:
        out.line(f"netrun: {outcome.owner.describe()} has not taken the injection within {args.timeout:g} s "
                 f"(request {outcome.request_id}): it is injected when that process runs the net again, or by "
                 "the next netrun resume")
    return 0


def restore(args: argparse.Namespace, out: Output) -> int:
    label = args.db
    if is_url(args.db):
        from ..pgconn import redact  # psycopg is imported only for a PostgreSQL net

        label = redact(args.db)
        if store_for(args.db).exists():
            if not args.force:
                raise UsageError(f"{label} already holds a net; restore makes a new one (another ?net=NAME, or add "
                                 "--force to replace that net)")
            remove_old_net(args.db, "--force")
    elif os.path.isdir(args.db):
        raise UsageError(f"--db {args.db} is a folder; give the path of the database file to create")
    elif os.path.exists(args.db) and os.path.getsize(args.db) > 0:
        if not args.force:
            raise UsageError(f"{args.db} already exists; restore writes a new database file (add --force to "
                             "replace an earlier netrun database)")
        remove_old_net(args.db, "--force")
    manifest = restore_into(args.checkpoint, args.db)
    if out.json_mode:
        out.json({"checkpoint": args.checkpoint, "db": label, "manifest": manifest})
    else:
        made = f" (made {manifest['created_at']})" if manifest.get("created_at") else ""
        out.line(f"netrun: restored the checkpoint {args.checkpoint}{made} into {label}, leaving the checkpoint "
                 f"as it was; continue with: netrun resume {shell(label)}")
    return 0


def _document(path: str, outcome: Outcome) -> dict[str, Any]:
    owner = outcome.owner
    return {"file": path, "state": outcome.state, "request": outcome.request_id,
            "owner": {"pid": owner.pid, "host": owner.host, "since": owner.since} if owner else None,
            "items": outcome.items}


def _packet(spec: str) -> dict[str, Any]:
    """--packet NODE.PORT=JSON (argparse type): the value must be JSON (a text is written '"text"')."""
    target, sep, text = spec.partition("=")
    node, dot, port = target.rpartition(".")
    if not sep or not dot or not node or not port:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NODE.PORT=JSON, e.g. --packet 'Split.in=\"some text\"'")
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{spec!r}: the value for {node}.{port} is not JSON ({exc}); a text is "
                                         f"written in quotes: {node}.{port}='\"{text}\"'") from None
    except RecursionError:
        raise argparse.ArgumentTypeError(f"the value for {node}.{port} is nested too deeply to be read") from None
    return {"node": node, "port": port, "value": value}


def _not_json(word: str) -> float:
    """json.loads takes NaN, Infinity and -Infinity, which JSON has not (a request could not hold them)."""
    raise ValueError(f"{word} is not a JSON value")


def _finite(text: str) -> float:
    """A JSON number too large for a float (1e999) would be read as infinity: refused as NaN is."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a number")
    return value


def _source(node: str) -> dict[str, Any]:
    return {"node": node}


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("stop", parents=[common], help="ask the process running a net to pause",
                            description="Ask the process that runs the net in FILE (netrun run/resume, or a Python "
                            "program) to pause gracefully: its running epochs finish and nothing new starts. Exits "
                            "0 once it has paused (or when no process runs the net); netrun resume continues.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--timeout", type=seconds, default=60.0, metavar="SECONDS",
                   help="how long to wait for the pause (60); then exit 1")
    p.set_defaults(func=stop)

    p = commands.add_parser("inject", parents=[common], help="add work to a running or stopped net",
                            description="Inject packets and source epochs into the net in FILE, all or nothing: the "
                            "process running it takes them within a moment; a net no process runs takes them when "
                            "it next runs (netrun resume).")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--packet", action="append", dest="items", type=_packet, metavar="NODE.PORT=JSON",
                   help="a packet with this JSON value at an input port (repeatable)")
    p.add_argument("--source", action="append", dest="items", type=_source, metavar="NODE",
                   help="a source epoch (with an empty salvo) at NODE (repeatable)")
    p.add_argument("--timeout", type=seconds, default=10.0, metavar="SECONDS",
                   help="how long to wait for a running net to take the injection (10)")
    p.set_defaults(func=inject)

    p = commands.add_parser("restore", parents=[common], help="a new database from a checkpoint",
                            description="Make the new database file NEW from a checkpoint folder (netrun checkpoint, "
                            "Net.save_checkpoint), never changing the checkpoint; netrun resume NEW continues it.")
    p.add_argument("checkpoint", help="the checkpoint folder")
    p.add_argument("--db", required=True, metavar="NEW", help="the database file to create")
    p.add_argument("--force", action="store_true", help="replace NEW if it holds an earlier netrun database")
    p.set_defaults(func=restore)
