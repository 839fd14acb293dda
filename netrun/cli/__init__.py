"""The `netrun` command: run, resume, watch, query and repair nets from the shell.

A thin layer over the library: each subcommand is one small function that parses nothing
itself and calls `Net`, `NetInspector` or the checkpoint and graph helpers. `main()` is the
one place that turns an error into a message and an exit code:

    0  success
    1  a netrun error (bad definition, unusable file, failed run...), printed as one message
    2  a usage error (unknown option, missing argument, a command line that cannot work)
    130  `run`/`resume` paused by Ctrl-C or `netrun stop` (resume continues the run)
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys

import apsw
from netrun_sim import NetrunError as NetActionError

from .. import db as database
from ..dialect import is_url
from ..version import __version__
from ..errors import NetrunError
from . import definitions, export, logs, operate, reads, repair, running, ui, worker
from .output import Output, UsageError, console

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON (for scripts) instead of text")
    parser = argparse.ArgumentParser(
        prog="netrun", description="Run flow-based nets durably in SQLite, and inspect and repair their runs.",
        epilog="Every command has --help. Exit codes: 0 ok, 1 error, 2 usage, 130 paused (Ctrl-C, netrun stop).")
    parser.add_argument("--version", action="version", version=f"netrun {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    running.register(commands, common)
    reads.register(commands, common)
    logs.register(commands, common)
    export.register(commands, common)
    repair.register(commands, common)
    operate.register(commands, common)
    definitions.register(commands, common)
    ui.register(commands, common)
    worker.register(commands, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `netrun` command; returns its exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and usage errors (2), already printed by argparse
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out = Output(json_mode=getattr(args, "json", False))
    try:
        return args.func(args, out)
    except UsageError as exc:
        _report(out, "usage", str(exc))
        return EXIT_USAGE
    except (NetrunError, NetActionError) as exc:
        _report(out, type(exc).__name__, _message(exc))
        return EXIT_ERROR
    except BrokenPipeError:  # the reader left (`| head`): stop quietly, as rich does for text output
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return EXIT_ERROR
    except OSError as exc:  # a file or folder the command cannot use (a folder given as FILE, no permission...)
        _report(out, type(exc).__name__, f"{exc.filename}: {exc.strerror}" if exc.filename else str(exc))
        return EXIT_ERROR
    except apsw.BusyError as exc:  # the write lock stayed taken past the busy timeout (SQLite: another process)
        where = _database(args)
        if is_url(where):
            _report(out, "BusyError", f"{where} is busy ({exc}); try again")
        else:
            _report(out, "BusyError", f"{where} stayed locked ({exc}): another process held its write lock for "
                    f"over {database.BUSY_TIMEOUT_MS / 1000:g} s (a transaction left open, in a sqlite3 shell say); "
                    "try again once it ends")
        return EXIT_ERROR
    except (apsw.Error, sqlite3.Error) as exc:  # the database failed under the command (disk full, I/O error...;
        # `export` reads through the stdlib's sqlite3): no traceback
        _report(out, type(exc).__name__, f"{_database(args)}: {exc}")
        return EXIT_ERROR
    except UnicodeDecodeError as exc:  # a text cell that is not UTF-8 (written by another program): apsw refuses it
        _report(out, "UnicodeDecodeError", f"{_database(args)}: the database holds text that is not valid UTF-8 "
                f"({exc.reason} at byte {exc.start} of {exc.object[:40]!r}); read such a column as a BLOB: "
                "netrun sql FILE \"SELECT CAST(column AS BLOB) ...\"")
        return EXIT_ERROR
    except KeyboardInterrupt as exc:  # its notes say what became of a request in flight (netrun.ask_owner)
        _report(out, "interrupted", "; ".join(["interrupted", *getattr(exc, "__notes__", ())]))
        return running.EXIT_INTERRUPTED


def _database(args: argparse.Namespace) -> str:
    """The database the command was given (a URL without its password), for an error from SQLite."""
    where = str(getattr(args, "file", None) or getattr(args, "db", None) or "the database")
    if is_url(where):
        from ..pgconn import redact  # psycopg is imported only for a PostgreSQL net

        where = redact(where)
    return where


def _message(exc: BaseException) -> str:
    """The error's message, with the user-code failure it wraps (`__cause__`) when there is one."""
    text = str(exc)
    cause = exc.__cause__
    if cause is not None and str(cause) not in text:
        text += f"\n  caused by {type(cause).__name__}: {cause}"
    return text


def _report(out: Output, kind: str, message: str) -> None:
    if out.json_mode:
        sys.stderr.write(json.dumps({"error": kind, "message": message}) + "\n")
    else:
        console(stderr=True).print(f"netrun: {'error' if kind != 'usage' else 'usage'}: {message}", style="red")


__all__ = ["build_parser", "main"]
