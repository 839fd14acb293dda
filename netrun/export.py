"""Export a net's tables as CSV, TSV, JSON or JSON lines (`netrun export`), with sqlite-utils.

sqlite-utils cannot wrap apsw, so the export reads through its own stdlib `sqlite3` connection,
which cannot write (see `open_readonly`): it never writes the database and works while a process
runs the net (it sees what was committed when it began). A PostgreSQL net is read through a
read-only connection of netrun's, in one read-only snapshot, a batch of rows at a time. Nothing is unpickled: a pickled value (or a
value function) is exported as its stored preview, with its kind in the kind column; a JSON
value, a history record's data and the JSON settings are exported as JSON by the JSON formats
(as their text in CSV/TSV). A file is written to a temporary name beside it and renamed when
complete, so an error never leaves half a file; a folder of tables likewise.

Do not call this in a process that holds the net open through apsw (see README "The database":
two SQLite libraries in one process do not share file locks); the `netrun` command never does.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import secrets
import urllib.parse
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from typing import Any, TextIO

import sqlite_utils

from .dialect import is_url
from .errors import ConfigError, NotFoundError
from .tabular import EXTENSIONS, Json, write_rows

# The tables of "The database" (README), exported when no table is named, in this order.
CONTRACT_TABLES = ("history", "epochs", "epoch_attempts", "packets", "packet_values", "dead_letters", "node_logs",
                   "deferred_actions", "epoch_jobs", "inbox", "net_meta", "node_settings")
# table -> (value column, kind column, preview column): values that may be pickles
VALUE_COLUMNS = {"packet_values": ("data", "kind", "preview"), "dead_letters": ("value", "value_kind", "value_preview")}
JSON_COLUMNS = {"history": ("data",), "epochs": ("salvo",), "node_settings": ("config", "functions", "port_types")}

def open_readonly(path: str) -> sqlite_utils.Database:
    """A sqlite-utils Database over a stdlib connection to `path` (which must exist) that cannot write.

    As `db.open_connection(readonly=True)` does for apsw, and for the same reason, it is opened
    `mode=rw` with `PRAGMA query_only` when the file can be written: a `mode=ro` connection to a WAL
    database leaves `-wal` and `-shm` files behind (SQLite removes them only when the last connection
    to close can write). A file that cannot be written is opened `mode=ro`."""
    uri = "file:" + urllib.parse.quote(os.path.abspath(path))
    try:
        conn = sqlite3.connect(uri + "?mode=rw", uri=True)
    except sqlite3.OperationalError:  # no write permission: truly read-only
        conn = sqlite3.connect(uri + "?mode=ro", uri=True)
    conn.execute("PRAGMA query_only = ON")
    return sqlite_utils.Database(conn)


def table_names(db: sqlite_utils.Database) -> list[str]:
    """Every table and view that may be exported: the contract tables first, then the others
    (SQLite's own and FTS shadow tables left out)."""
    return _in_order([n for n in [*db.table_names(), *db.view_names()] if not n.startswith("sqlite_")])


def _in_order(present: list[str]) -> list[str]:
    return [t for t in CONTRACT_TABLES if t in present] + sorted(t for t in present if t not in CONTRACT_TABLES)


class _SqliteSource:
    """The tables of a net's file, through sqlite-utils (`open_readonly`)."""

    def __init__(self, path: str) -> None:
        self.db = open_readonly(path)

    def names(self) -> list[str]:
        return table_names(self.db)

    def select(self, table: str) -> tuple[list[str], Iterator[Any]]:
        return [c.name for c in self.db[table].columns], self.db.execute(f"SELECT * FROM [{table}]")

    def snapshot(self) -> None:
        self.db.conn.execute("BEGIN")  # every table read next from the same state

    def close(self) -> None:
        self.db.conn.close()


class _PostgresSource:
    """The tables of a PostgreSQL net, in one read-only snapshot, each read through a server-side cursor."""

    def __init__(self, url: str) -> None:
        from .db import open_connection

        self.conn = open_connection(url, readonly=True)
        self.conn.pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        self._cursors: list = []

    def names(self) -> list[str]:
        return _in_order([row[0] for row in self.conn.pg.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")])

    def select(self, table: str) -> tuple[list[str], Iterator[Any]]:
        import psycopg

        from .pgconn import Cursor

        found = psycopg.ServerCursor(self.conn.pg, f"netrun_export_{len(self._cursors)}")
        self._cursors.append(found)
        found.itersize = 2000
        found.execute(f'SELECT * FROM "{table}"')
        rows = Cursor(found, self.conn)  # as netrun reads them (a JSON value as text)
        return [name for name, _ in rows.getdescription()], iter(rows)

    def snapshot(self) -> None:
        pass  # one already

    def close(self) -> None:
        import psycopg

        for found in self._cursors:
            try:
                found.close()
            except psycopg.Error:  # the connection is gone: closing it ends them all
                break
        self.conn.close()


def _source(path: str) -> _SqliteSource | _PostgresSource:
    return _PostgresSource(path) if is_url(path) else _SqliteSource(path)


def _rows(source: _SqliteSource | _PostgresSource, table: str) -> tuple[list[str], Iterator[list[Any]]]:
    """The table's columns and its rows as exported: no pickle, JSON marked as JSON."""
    columns, found = source.select(table)
    value = VALUE_COLUMNS.get(table)
    json_columns = set(JSON_COLUMNS.get(table, ())) & set(columns)
    positions = {c: i for i, c in enumerate(columns)}

    def rows() -> Iterator[list[Any]]:
        for row in found:
            row = list(row)
            for column in json_columns:
                if isinstance(row[positions[column]], str):
                    row[positions[column]] = Json(row[positions[column]])
            if value and all(c in positions for c in value):
                data, kind, preview = (positions[c] for c in value)
                if row[kind] == "json" and isinstance(row[data], str):
                    row[data] = Json(row[data])
                elif row[data] is not None:  # a pickle or a value function: never unpickled, never shown
                    row[data] = row[preview]
            yield row

    return columns, rows()


def _check_table(source: _SqliteSource | _PostgresSource, table: str, path: str) -> None:
    names = source.names()
    if is_url(path):
        from .pgconn import redact

        path = redact(path)  # never a password in a message
    if table not in names:
        raise NotFoundError(f"{path} has no table {table!r}; its tables: {', '.join(names)}", table=table)


def export_table(path: str, table: str, fmt: str, stream: TextIO | None = None, *, output: str | None = None) -> int:
    """Write `table` of the net at `path` in `fmt` to `output` (a file, replaced atomically) or `stream`
    (stdout by default). Returns the number of rows. Raises NotFoundError for an unknown table."""
    if output is not None:
        _refuse_own_files(path, output)
    with closing(_source(path)) as source:
        _check_table(source, table, path)
        columns, rows = _rows(source, table)
        if output is None:
            return write_rows(stream or sys.stdout, columns, rows, fmt)
        with _atomic_file(output) as handle:
            return write_rows(handle, columns, rows, fmt)


# the files beside a net's database that belong to it (WAL, lock, start log, search index...)
_OWN_SUFFIXES = ("", "-wal", "-shm", "-journal", "-lock", "-starts", "-search")


def _refuse_own_files(path: str, output: str) -> None:
    """An export never replaces the database it reads, nor a file of that net beside it: `-o run.db`
    once renamed the exported table over the net itself."""
    if is_url(path):
        return
    real = os.path.realpath(path)
    target = os.path.realpath(output)
    what = None
    if target == real:
        what = "the database the export reads"
    elif target in {real + suffix for suffix in _OWN_SUFFIXES}:
        what = f"a file of the net beside its database ({os.path.basename(target)})"
    elif os.path.exists(output):
        with suppress(OSError):
            if os.path.samefile(output, path):  # a hard link to the database
                what = "the database the export reads"
    if what is not None:
        raise ConfigError(f"cannot export into {output}: it is {what}, {path}; name another file", path=output)


def export_folder(path: str, folder: str, fmt: str, tables: list[str] | None = None) -> dict[str, int]:
    """Write every table (or `tables`) of the net at `path` into a new `folder`, one `<table>.<ext>` file each,
    all read in one transaction (one consistent state of the net). The folder appears complete, or not at
    all. Returns {table: rows}. Raises ConfigError if `folder` exists and is not empty."""
    if os.path.exists(folder) and (not os.path.isdir(folder) or os.listdir(folder)):
        raise ConfigError(f"{folder} already exists and is not an empty folder; name a new folder for the export",
                          path=folder)
    work = _temporary_name(folder)
    with _naming(folder):
        os.mkdir(work)  # the usual permissions (mkdtemp's would be private)
    try:
        counts = {}
        with closing(_source(path)) as source:
            source.snapshot()  # every table from the same state of the net
            for table in tables or source.names():
                _check_table(source, table, path)
                columns, rows = _rows(source, table)
                with open(os.path.join(work, f"{table}.{EXTENSIONS[fmt]}"), "w", encoding="utf-8", newline="") as f:
                    counts[table] = write_rows(f, columns, rows, fmt)
        os.replace(work, folder)  # an empty folder of that name is replaced too
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return counts


def _temporary_name(target: str) -> str:
    """A new hidden name beside `target` (same folder, so the final rename is atomic). What an earlier
    export to `target` killed mid-way (SIGKILL, a power cut) left under such a name is removed first."""
    folder, name = os.path.split(os.path.abspath(target))
    _remove_leftovers(folder, name)
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _remove_leftovers(folder: str, name: str) -> None:
    """Remove `.<name>.<pid>.<hex>.tmp` files and folders whose process is gone (a live pid's are its own,
    or another export's running now: they are left alone)."""
    prefix = f".{name}."
    try:
        entries = [entry for entry in os.listdir(folder) if entry.startswith(prefix) and entry.endswith(".tmp")]
    except OSError:
        return  # an unreadable or missing folder: creating the temporary name says so
    for entry in entries:
        pid, _, rest = entry[len(prefix):-len(".tmp")].partition(".")
        if not pid.isascii() or not pid.isdigit() or len(rest) != 8 or _alive(int(pid)):
            continue
        path = os.path.join(folder, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with suppress(OSError):
                os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or a number no process has): not ours to judge
    return True


@contextmanager
def _naming(target: str) -> Iterator[None]:
    """An OSError met creating the temporary name beside `target` names `target`, the path the user gave
    (a missing folder, no permission), not the hidden name."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, target) from None


@contextmanager
def _atomic_file(target: str) -> Iterator[TextIO]:
    """A file written under a temporary name beside `target`, renamed to it once complete (removed on error)."""
    if os.path.isdir(target):
        raise ConfigError(f"{target} is a folder; name a file for the table (or leave out --table to export "
                          "every table into a new folder)", path=target)
    temporary = _temporary_name(target)
    try:
        with _naming(target):
            handle = open(temporary, "x", encoding="utf-8", newline="")  # the usual permissions
        with handle:
            yield handle
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise

