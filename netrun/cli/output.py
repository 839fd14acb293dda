"""How the `netrun` command prints: rich tables for people, `--json` for scripts.

Text that comes from a run (log lines, errors, values) is never read as rich markup.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..shortids import short_id
from ..tracebacks import shorten


class UsageError(Exception):
    """A command line that cannot work as given (exit code 2, like argparse's own errors)."""


def console(*, stderr: bool = False) -> Console:
    """A console on the current sys.stdout/sys.stderr (tests swap them), without markup or
    highlighting; plain text, never ANSI codes, when the stream is not a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(file=stream, markup=False, highlight=False, emoji=False, soft_wrap=True,
                   width=None if stream.isatty() else _pipe_width())


def _pipe_width() -> int:
    """Columns when the output is not a terminal: `COLUMNS` if set (shells do not export it: set it
    to see what a narrow terminal shows), else 200, so that lines in logs and pipes seldom wrap."""
    try:
        return max(20, int(os.environ["COLUMNS"]))
    except (KeyError, ValueError):
        return 200


class Output:
    """Where a command's results go: `json=True` prints one JSON document and nothing else."""

    def __init__(self, *, json_mode: bool = False) -> None:
        self.json_mode = json_mode
        self.console = console()
        self.stdout: TextIO | None = None  # where the document goes while `json_only_stdout` holds stdout

    def json(self, document: Any) -> None:
        (self.stdout or sys.stdout).write(json.dumps(document, indent=2, default=str, ensure_ascii=False) + "\n")

    def raw(self, text: str) -> None:
        """Text on stdout as it is (no wrapping or styling): data for other programs."""
        (self.stdout or sys.stdout).write(text + "\n")

    def note(self, text: str, *, style: str = "yellow") -> None:
        """A message about the command itself (warnings, what to do next): on stderr."""
        sys.stdout.flush()  # after what was printed before it, when both go to one terminal
        console(stderr=True).print(Text(f"netrun: {text}", style=style))

    def line(self, text: str = "", *, style: str | None = None) -> None:
        self.console.print(Text(text, style=style or ""))

    def table(self, rows: Sequence[dict], columns: Sequence[str], *, title: str | None = None,
              headers: Sequence[str] | None = None, empty: str = "(none)", shorten: bool = True) -> None:
        """Rows as a table that fits the terminal (80 columns too): with `shorten`, IDs in the short
        form (never folded: they are copied into other commands) and timestamps to the second."""
        if not rows:
            self.line(f"{title}: {empty}" if title else empty, style="dim")
            return
        table = Table(title=title, title_justify="left", header_style="bold")
        texts = [[_shown(row.get(c), c if shorten else "") for c in columns] for row in rows]
        for i, (header, column) in enumerate(zip(headers or columns, columns)):
            numeric = all(isinstance(r.get(column), int | float) or r.get(column) is None for r in rows)
            whole = shorten and column in ID_COLUMNS | TIME_COLUMNS  # IDs are copied: never folded
            table.add_column(header, justify="right" if numeric else "left", overflow="fold", no_wrap=whole,
                             min_width=max(len(t[i]) for t in texts) if whole else None)
        for row in texts:
            table.add_row(*(Text(text) for text in row))
        self.console.print(table)

    def fields(self, pairs: Iterable[tuple[str, Any]]) -> None:
        """`name: value` lines, names aligned."""
        pairs = list(pairs)
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            self.line(f"{key + ':':<{width + 1}} {cell(value)}")


ID_COLUMNS = frozenset({"packet", "epoch", "replayed_as", "id", "packet_id", "epoch_id"})
TIME_COLUMNS = frozenset({"timestamp", "since", "created_at", "started_at", "finished_at", "resolved_at"})


def _shown(value: Any, column: str) -> str:
    if column in ID_COLUMNS and isinstance(value, str):
        return short_id(value)
    if column in TIME_COLUMNS:
        return short_time(value)
    return cell(value)


@contextmanager
def json_only_stdout(out: Output) -> Iterator[None]:
    """With --json: everything else written to stdout inside the block goes to stderr (node `print`s,
    echoed or not captured, `sys.stdout` writes, C code and pool processes writing to file descriptor
    1), so that stdout holds exactly the one JSON document `out.json` writes. Without --json: nothing."""
    if not out.json_mode:
        yield
        return
    with stdout_to_stderr(out):
        yield


@contextmanager
def stdout_to_stderr(out: Output) -> Iterator[None]:
    """Everything written to stdout inside the block goes to stderr, file descriptor 1 included (what
    `json_only_stdout` does with --json; `validate` and `graph` always, around the import of node
    functions, whose modules may print): `out.stdout` is the real stdout meanwhile."""
    original = sys.stdout
    original.flush()
    try:
        fd = original.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture): Python-level only
        fd = None
    kept = None
    if fd is not None:
        sys.stderr.flush()
        kept = os.dup(fd)
        os.dup2(sys.stderr.fileno(), fd)  # inherited by spawned pool processes too
        out.stdout = open(os.dup(kept), "w", encoding="utf-8", closefd=True)
    else:
        out.stdout = original
    try:
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if kept is not None:
            original.flush()  # what Python buffered for fd 1 meanwhile belongs to stderr too
            out.stdout.flush()
            os.dup2(kept, fd)
            os.close(kept)
            out.stdout.close()
        out.stdout = None


def tracebacks(out: Output, failures: Sequence[dict], *, full: bool, limit: int | None = None) -> None:
    """The tracebacks of failures (rows with `epoch`, `node`, `attempt`, `traceback`), newest first as
    given, each once: the innermost frames, or all of them with `full`."""
    shown: set[str] = set()
    for row in failures:
        text = row.get("traceback")
        if not text or text in shown or (limit is not None and len(shown) >= limit):
            continue
        shown.add(text)
        attempt = f" attempt {row['attempt']}" if row.get("attempt") is not None else ""
        out.line(f"traceback of epoch {row['epoch']}{attempt} of {row['node']}:", style="bold")
        out.line(text.rstrip("\n") if full else shorten(text))


def dead_letter_advice(path: str, pending: int) -> str:
    """What to do with pending dead letters, with the exact commands."""
    word = shell(path)
    return (f"{pending} dead letter{'s' if pending != 1 else ''} pending (resume does not run them): see them with "
            f"netrun dlq {word} list; once the cause is fixed, put them back with netrun dlq {word} replay --all "
            f"and continue with netrun resume {word} (or drop them: netrun dlq {word} discard --all)")


def cell(value: Any) -> str:
    """A value as table text: dicts and lists as compact JSON, None as empty."""
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def short_time(stamp: str | None) -> str:
    """A stored ISO timestamp (UTC) as `2026-11-28 03:41:56`, for tables and lines people read;
    anything else as it is. `--json` keeps the stored text."""
    if isinstance(stamp, str) and len(stamp) >= 19 and stamp[10] == "T" and stamp.endswith("+00:00"):
        return f"{stamp[:10]} {stamp[11:19]}"
    return cell(stamp)


def shell(path: str) -> str:
    """`path` as a shell word, for the commands we suggest (a path may hold spaces or quotes)."""
    return shlex.quote(str(path))
