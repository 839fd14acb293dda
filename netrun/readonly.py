"""Read-only SQL over a net's database (`Net.query`).

Three guards: the connection cannot write (`PRAGMA query_only`, or opened read-only); an
authorizer refuses, while SQLite compiles a statement, anything but reading tables and
pragmas that only read; and an exec tracer refuses any statement that is not a query (or a
pragma that only reads) before it runs, with a clear `ReadOnlyQueryError`. The authorizer is
the guard that counts: SQLite applies some pragmas (`query_only`, `foreign_keys`...) while
compiling them, before any tracer sees them, even under `EXPLAIN`.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import apsw

from .db import open_connection
from .errors import NetClosedError, QueryError, ReadOnlyQueryError

READ_ONLY = "queries are read-only (net.query, NetInspector, netrun sql):"

# Pragmas that only read. Those in _LOOKUP_PRAGMAS take an argument (a table, an index);
# for every other pragma an argument, `name(value)` or `name = value`, sets something.
_LOOKUP_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
    "integrity_check", "quick_check",
})
_READ_PRAGMAS = _LOOKUP_PRAGMAS | {
    "user_version", "application_id", "page_count", "page_size", "freelist_count", "schema_version",
    "compile_options", "database_list", "function_list", "pragma_list", "collation_list", "module_list",
    "encoding", "journal_mode", "data_version",
}
_READ_ACTIONS = frozenset({apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE})
_LEADING_COMMENTS = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?(?:\*/|$))*", re.DOTALL)


def _authorize(action: int, name: str | None, argument: str | None, _database: str | None,
               _trigger: str | None) -> int:
    """Authorizer, called as SQLite compiles each statement: reads only."""
    if action in _READ_ACTIONS:
        return apsw.SQLITE_OK
    if action == apsw.SQLITE_PRAGMA and name is not None:
        name = name.lower()
        if name in _LOOKUP_PRAGMAS or (argument is None and name in _READ_PRAGMAS):
            return apsw.SQLITE_OK
    return apsw.SQLITE_DENY


def _refuse_writes(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
    """Exec tracer: let only read-only statements run (the authorizer has already refused
    anything that writes; this gives the clear message)."""
    text = sql.strip()
    words = _LEADING_COMMENTS.sub("", text, count=1).split(None, 1)
    if not words or words[0] == ";":
        raise QueryError(f"no SQL statement to run in {text!r}", sql=sql)
    statement = words[0].upper()
    allowed = statement in ("SELECT", "WITH", "EXPLAIN", "VALUES")
    if statement == "PRAGMA" and len(words) > 1 and "=" not in words[1]:
        name = words[1].split("(", 1)[0].strip().rstrip(";").split(".")[-1].lower()
        has_argument = "(" in words[1]
        allowed = name in (_LOOKUP_PRAGMAS if has_argument else _READ_PRAGMAS)
    postgres = getattr(getattr(cursor, "connection", None), "dialect", "sqlite") == "postgres"
    # SQLite compiles a statement before this tracer sees it (a typo is its syntax error); PostgreSQL's is
    # compiled by the server: a first word that begins no statement at all goes there to be refused as one
    # (inside the read-only transaction, where nothing could write anyway).
    if not allowed and not (postgres and statement.isalpha() and statement not in _COMMANDS):
        raise ReadOnlyQueryError(f"{READ_ONLY} refused statement: {text[:200]}", sql=sql)
    if postgres:
        found = _PG_ADMIN_CALL.search(text.replace('"', ""))
        if found:  # a read-only transaction still lets these act on the server (end a session, read a file)
            raise ReadOnlyQueryError(f"{READ_ONLY} refused the server function {found.group(1)}(): "
                                     f"{text[:200]}", sql=sql)
    return True


# Words that begin an SQL statement other than a read (PostgreSQL's and SQLite's).
_COMMANDS = frozenset("""
ABORT ALTER ANALYZE ATTACH BEGIN CALL CHECKPOINT CLOSE CLUSTER COMMENT COMMIT COPY CREATE DEALLOCATE DECLARE
DELETE DETACH DISCARD DO DROP END EXECUTE FETCH GRANT IMPORT INSERT LISTEN LOAD LOCK MERGE MOVE NOTIFY PRAGMA
PREPARE REASSIGN REFRESH REINDEX RELEASE REPLACE RESET REVOKE ROLLBACK SAVEPOINT SECURITY SET SHOW START TABLE
TRUNCATE UNLISTEN UPDATE UPSERT VACUUM""".split())

# PostgreSQL functions that act on the server or its sessions even inside a read-only transaction
# (terminate the owner's connection, take its advisory lock, read the server's files, change settings).
_PG_ADMIN_CALL = re.compile(r"\b((?:pg_|lo_|dblink)\w*|set_config|query_to_xml\w*|cursor_to_xml)\s*\(",
                            re.IGNORECASE)


def read_query(reader: apsw.Connection, sql: str, params: tuple | list | dict = ()) -> list[dict]:
    """Run `sql` on the read-only connection; rows as dicts. Raises ReadOnlyQueryError for a write."""
    with guarded_query(reader, sql, params) as (columns, rows):
        return [dict(zip(columns, row)) for row in rows]


@contextmanager
def guarded_query(reader: apsw.Connection, sql: str, params: tuple | list | dict = (), *,
                  seconds: float | None = None) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """`with guarded_query(conn, sql) as (columns, rows):` one read-only statement whose rows are read
    as they come (a large result is never held whole), with the three guards in place for the whole
    block. `seconds`: the query is interrupted once it has run that long (QueryError says so).

    Raises ReadOnlyQueryError (a statement that would write), QueryError (SQLite refused it, more than
    one statement, or the time ran out)."""
    reader.authorizer = _authorize
    if seconds is not None:
        _time_limit(reader, seconds)
    elif getattr(reader, "dialect", "sqlite") == "sqlite":
        # SQLite runs a statement without returning to Python, which runs its signal handlers only then:
        # Ctrl-C would wait for the statement to end (a runaway recursive query: forever). A progress
        # handler calls into Python every 10,000 instructions, where a KeyboardInterrupt ends it.
        reader.set_progress_handler(_let_signals_in, 10_000)
    try:
        cursor = reader.cursor()
        statements = 0

        def one_statement(cursor: apsw.Cursor, text: str, bindings: Any) -> bool:
            nonlocal statements
            statements += 1
            if statements > 1:  # its rows would be listed under the first statement's columns
                raise QueryError(f"a query is one statement; this one follows another: {text.strip()[:200]}",
                                 sql=sql)
            return _refuse_writes(cursor, text, bindings)

        cursor.exectrace = one_statement
        try:
            cursor.execute(sql, params)
            try:
                columns = [d[0] for d in cursor.getdescription()]
            except apsw.ExecutionCompleteError:  # a statement that returns no rows at all
                columns = []
            yield columns, (cursor if columns else iter(()))
        finally:
            cursor.close()
    except (apsw.ReadOnlyError, apsw.AuthError):
        raise ReadOnlyQueryError(f"{READ_ONLY} this statement would write: {sql.strip()[:200]}",
                                 sql=sql) from None  # SQLite's reason ("not authorized") adds nothing
    except apsw.InterruptError:
        raise QueryError(f"the query was stopped after {seconds:g} s; statement: {sql.strip()[:200]}",
                         sql=sql) from None
    except OverflowError as exc:  # apsw binds a Python int only within SQLite's 64 bits
        raise QueryError(f"the query failed: a parameter is an integer SQLite cannot hold (64-bit: -2**63 to "
                         f"2**63-1; bind it as text or a float): {exc}; statement: {sql.strip()[:200]}",
                         sql=sql) from exc
    except (apsw.SQLError, apsw.BindingsError, apsw.ExecutionCompleteError, apsw.MismatchError,
            apsw.RangeError, apsw.TooBigError, apsw.ConstraintError, TypeError) as exc:
        raise QueryError(f"the query failed: {exc}; statement: {sql.strip()[:200]}", sql=sql) from exc
    finally:
        reader.authorizer = None
        if seconds is not None or getattr(reader, "dialect", "sqlite") == "sqlite":
            _time_limit(reader, None)


def _time_limit(reader: Any, seconds: float | None) -> None:
    """Interrupt the reader's statements after `seconds` (None: no limit). SQLite: a progress handler;
    PostgreSQL: the server's statement_timeout (its cancel comes back as apsw.InterruptError)."""
    if getattr(reader, "dialect", "sqlite") == "postgres":
        reader.execute(f"SET statement_timeout = {0 if seconds is None else max(1, int(seconds * 1000))}")
        reader.deadline = None if seconds is None else time.monotonic() + seconds  # for a streamed result
    elif seconds is None:
        reader.set_progress_handler(None)
    else:
        deadline = time.monotonic() + seconds
        reader.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)


def _let_signals_in() -> bool:
    """Progress handler that lets the statement go on: calling it lets Python run pending signal
    handlers (a KeyboardInterrupt raised there ends the statement and propagates)."""
    return False


class Readers:
    """One read-only connection per thread that queries a net (an apsw connection must not be used
    by two threads at once); all are closed together. A subclass may hand out another reader of
    the file (`_open`), anything with a `close()`.

    `using()` lends this thread's reader for one read: `close()` waits for the reads going on in
    other threads (an apsw connection cannot be closed while another thread runs a statement on
    it), and once closed, every `get()`/`using()` raises NetClosedError."""

    def __init__(self, path: str, *, label: str | None = None) -> None:
        self.path = path
        self.label = label or path
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._users = 0  # reads going on (`using`)
        self._closed = False

    def _open(self) -> Any:
        return open_connection(self.path, readonly=True)

    def _get(self) -> Any:
        """This thread's reader; from a caller holding `_lock`."""
        if self._closed:
            raise NetClosedError(f"the net on {self.label} is closed")
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._open()
            self._all.append(conn)
        return conn

    def get(self) -> Any:
        with self._lock:
            return self._get()

    @contextmanager
    def using(self) -> Iterator[Any]:
        """`with readers.using() as conn:` this thread's reader, kept open until the block ends."""
        with self._lock:
            conn = self._get()
            self._users += 1
        try:
            yield conn
        finally:
            with self._lock:
                self._users -= 1
                if not self._users:
                    self._idle.notify_all()

    def close(self) -> None:
        """Close every reader once the reads going on in other threads ended. Idempotent."""
        with self._lock:
            self._closed = True
            self._idle.wait_for(lambda: not self._users)
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
