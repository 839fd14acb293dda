"""A PostgreSQL connection behind the part of apsw's API that netrun uses (psycopg 3).

Netrun's SQL is written once, in SQLite's dialect, wherever both dialects accept it. This
connection runs it on PostgreSQL: `execute`, `executemany`, cursors that iterate and fetch,
`changes()`, `getautocommit()`, and transactions opened with `BEGIN IMMEDIATE` (netrun.db's
`transaction()` works on it unchanged). Each statement is translated once and cached:

- `?` and `?N` placeholders become `$N` (server-side binding, prepared after a few runs);
  `:name` placeholders too, when the parameters are a dict;
- `iif(a, b, c)` becomes `CASE WHEN a THEN b ELSE c END`; `CROSS JOIN t ON` becomes `JOIN t ON`;
  `LIMIT ?` given a negative number means no limit, as in SQLite;
- `INSERT OR REPLACE` / `OR IGNORE` become `ON CONFLICT (key) DO UPDATE` / `DO NOTHING`;
- a statement registered in netrun.dialect is replaced by its PostgreSQL text first.

Types follow SQLite's STRICT tables: TEXT is text, INTEGER is bigint, a Python bool binds as 1/0.
The two `ANY` columns (`packet_values.data`, `dead_letters.value`: JSON text or pickled bytes)
are bytea here: JSON text is written as UTF-8 and read back as text (see `_json_columns`).

Errors come out as apsw's exception classes (a unique key broken is `apsw.ConstraintError`, a
lost connection `apsw.IOError`, ...), with PostgreSQL's message: the code that catches them
catches them on both stores. A URL's password never appears in a message (`Target.label`).
"""

from __future__ import annotations

import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import apsw
import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format, TransactionStatus
from psycopg.types.string import TextLoader

from . import dialect
from .errors import StorageError

DEFAULT_NET = "netrun"
_NET_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
MAX_VALUE_BYTES = 1_000_000_000  # PostgreSQL's largest bytea is 1 GB
CONNECT_TIMEOUT = 10  # seconds


@dataclass(frozen=True)
class Target:
    """A net in a PostgreSQL database: where to connect, and the schema that holds its tables."""

    conninfo: str  # the URL psycopg connects with (password included, `net` removed)
    schema: str  # the net's name: one schema per net
    label: str  # the URL without its password, with ?net=: for messages and `Net.db_path`
    url: str  # the URL as given (password included): for worker processes

    @property
    def lock_key(self) -> str:
        return f"netrun:{self.schema}"


def parse_url(url: str) -> Target:
    """Split `postgresql://user[:password]@host:port/dbname[?net=NAME&...]`.

    Raises StorageError for a net name that is not a lowercase SQL identifier."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    nets = [v for k, v in query if k == "net"]
    rest = [(k, v) for k, v in query if k != "net"]
    schema = nets[-1] if nets else DEFAULT_NET
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(":" + parts.password + "@", ":***@", 1)
    label_query = urllib.parse.urlencode(rest + [("net", schema)])
    label = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, label_query, ""))
    if not _NET_NAME.match(schema):
        raise StorageError(f"{label}: the net name {schema!r} must be a lowercase identifier (letters, digits, _; "
                           "at most 63 characters, not starting with a digit)", path=label)
    conninfo = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(rest), ""))
    return Target(conninfo, schema, label, url)


def redact(url: str) -> str:
    """The URL without its password (what messages show)."""
    try:
        return parse_url(url).label
    except (StorageError, ValueError):
        return url.split("@", 1)[-1]


# -- translation -------------------------------------------------------------------------------

_KEYS = {"net_meta": "key", "packet_values": "packet_id", "node_settings": "node_name"}
_BYTES_COLUMNS = {"packet_values": "data", "dead_letters": "value"}
_KIND_OF = {"data": "kind", "value": "value_kind"}
_INSERT_OR = re.compile(r"^\s*INSERT\s+OR\s+(REPLACE|IGNORE)\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.IGNORECASE)
_INSERT_VALUES = re.compile(r"INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)", re.IGNORECASE)
_CROSS_JOIN = re.compile(r"\bCROSS\s+JOIN\s+(\w+(?:\s+(?!ON\b)\w+)?)\s+ON\b", re.IGNORECASE)
_LIMIT = re.compile(r"\bLIMIT\s+(\$\d+)", re.IGNORECASE)
_BEGIN = re.compile(r"^\s*BEGIN(\s+(IMMEDIATE|DEFERRED|EXCLUSIVE))?\s*;?\s*$", re.IGNORECASE)
_END = re.compile(r"^\s*(COMMIT|ROLLBACK)\s*;?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Statement:
    text: str  # PostgreSQL text
    names: tuple[str, ...]  # named parameters, in $N order (dict parameters only)
    to_bytes: tuple[int, ...]  # parameter indexes bound to a bytea column: str is encoded
    begin: bool = False
    end: bool = False  # COMMIT or ROLLBACK


def _scan(sql: str, named: bool) -> tuple[str, tuple[str, ...]]:
    """Placeholders to `$N`, outside string literals, quoted names and comments."""
    out: list[str] = []
    names: list[str] = []
    i, n, counter = 0, len(sql), 0
    while i < n:
        c = sql[i]
        if c in "'\"":
            j = sql.find(c, i + 1)
            while j != -1 and j + 1 < n and sql[j + 1] == c:  # doubled quote inside
                j = sql.find(c, j + 2)
            j = n if j == -1 else j + 1
            out.append(sql[i:j])
            i = j
        elif c == "-" and sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j == -1 else j
            out.append(sql[i:j])
            i = j
        elif c == "/" and sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j == -1 else j + 2
            out.append(sql[i:j])
            i = j
        elif c == "?":
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            if j > i + 1:
                number = int(sql[i + 1:j])
                counter = max(counter, number)
            else:
                counter += 1
                number = counter
            out.append(f"${number}")
            i = j
        elif named and c in ":@$" and i + 1 < n and (sql[i + 1].isalpha() or sql[i + 1] == "_") \
                and not (c == ":" and i > 0 and sql[i - 1] == ":"):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            name = sql[i + 1:j]
            if name not in names:
                names.append(name)
            out.append(f"${names.index(name) + 1}")
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out), tuple(names)


def _split_args(text: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of a call whose '(' is at `start`, and the index after its ')'."""
    depth, args, begin, i = 0, [], start + 1, start
    while i < len(text):
        c = text[i]
        if c in "'\"":
            j = text.find(c, i + 1)
            i = len(text) if j == -1 else j + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                args.append(text[begin:i])
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(text[begin:i])
            begin = i + 1
        i += 1
    raise ValueError(f"unbalanced parentheses in {text!r}")


_IIF = re.compile(r"\biif\s*\(", re.IGNORECASE)


def _rewrite_iif(text: str) -> str:
    while True:
        match = _IIF.search(text)
        if match is None:
            return text
        args, end = _split_args(text, match.end() - 1)
        if len(args) != 3:
            raise ValueError(f"iif() takes 3 arguments: {text!r}")
        cond, yes, no = (_rewrite_iif(a.strip()) for a in args)
        text = f"{text[:match.start()]}CASE WHEN {cond} THEN {yes} ELSE {no} END{text[end:]}"


def translate(sql: str, named: bool = False) -> Statement:
    """The PostgreSQL form of one of netrun's SQLite statements (see the module's docstring)."""
    if _BEGIN.match(sql):
        return Statement("BEGIN", (), (), begin=True)
    if _END.match(sql):
        return Statement(sql.strip().rstrip(";").upper(), (), (), end=True)
    text = dialect.POSTGRES.get(sql, sql)
    text, names = _scan(text, named)
    if "iif" in text.lower():
        text = _rewrite_iif(text)
    text = _CROSS_JOIN.sub(r"JOIN \1 ON", text)
    text = _LIMIT.sub(r"LIMIT CASE WHEN \1::bigint < 0 THEN NULL ELSE \1::bigint END", text)  # SQLite: -1 is none
    match = _INSERT_OR.match(text)
    if match:
        how, table, columns = match.group(1).upper(), match.group(2), match.group(3)
        text = "INSERT INTO " + text[match.start(2):].rstrip().rstrip(";")
        if how == "IGNORE":
            text += " ON CONFLICT DO NOTHING"
        else:
            key = _KEYS[table]
            others = [c.strip() for c in columns.split(",") if c.strip() != key]
            text += f" ON CONFLICT ({key}) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in others)
    to_bytes: list[int] = []
    for match in _INSERT_VALUES.finditer(text):
        column = _BYTES_COLUMNS.get(match.group(1))
        if column is None:
            continue
        columns = [c.strip() for c in match.group(2).split(",")]
        values = [v.strip() for v in match.group(3).split(",")]
        if column in columns and len(values) == len(columns) and values[columns.index(column)].startswith("$"):
            to_bytes.append(int(values[columns.index(column)][1:]) - 1)
    return Statement(text, names, tuple(to_bytes))


_statements: dict[tuple[str, bool], Statement] = {}
# Inside `PgConnection.exclusive()`: a transaction's statements as a savepoint's.
_NESTED = {"BEGIN IMMEDIATE": Statement("SAVEPOINT netrun_nested", (), (), begin=True),
           "COMMIT": Statement("RELEASE SAVEPOINT netrun_nested", (), ()),
           "ROLLBACK": Statement("ROLLBACK TO SAVEPOINT netrun_nested", (), ())}


def statement(sql: str, named: bool) -> Statement:
    found = _statements.get((sql, named))
    if found is None:
        found = translate(sql, named)
        if len(_statements) < 10_000:  # netrun's statements are few; user queries may not be
            _statements[(sql, named)] = found
    return found


def _bind(stmt: Statement, params: Any) -> Sequence[Any] | None:
    if params is None:
        return None
    if isinstance(params, dict):
        try:
            return [params[name] for name in stmt.names]
        except KeyError as exc:
            raise apsw.BindingsError(f"no value given for the parameter :{exc.args[0]}") from None
    if not params:
        return None
    if stmt.to_bytes:
        params = list(params)
        for i in stmt.to_bytes:
            if isinstance(params[i], str):
                params[i] = params[i].encode()
    return params


# -- errors ------------------------------------------------------------------------------------

def _as_apsw(exc: psycopg.Error, label: str) -> apsw.Error:
    """The apsw exception class that netrun's code catches for this kind of failure."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, psycopg.errors.IntegrityError):
        cls: type[apsw.Error] = apsw.ConstraintError
    elif isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        cls = apsw.ReadOnlyError
    elif isinstance(exc, (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
                          psycopg.errors.LockNotAvailable)):
        cls = apsw.BusyError
    elif isinstance(exc, psycopg.errors.ProtocolViolation):  # e.g. fewer bound values than placeholders
        cls = apsw.BindingsError
    elif isinstance(exc, psycopg.errors.QueryCanceled):
        cls = apsw.InterruptError
    elif isinstance(exc, psycopg.errors.ProgramLimitExceeded):
        cls = apsw.TooBigError
    elif isinstance(exc, (psycopg.errors.DiskFull, psycopg.errors.OutOfMemory)):
        cls = apsw.FullError
    elif _lost_connection(exc):
        cls = apsw.IOError
        message = f"the connection to {label} failed: {message}"
    elif (exc.sqlstate or "").startswith("58"):  # the server's own I/O failed (SQLSTATE class 58)
        cls = apsw.IOError
        message = f"the server of {label} failed: {message}"
    elif isinstance(exc, psycopg.DataError):
        cls = apsw.MismatchError
    else:
        cls = apsw.SQLError
    return cls(message)


# SQLSTATEs of a session that the server ended: terminated by an administrator (pg_terminate_backend), by
# a crash or a shutdown of the server, refused while it starts, or idle too long (in a transaction or not).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P03", "57P05", "25P03"})


def _lost_connection(exc: psycopg.Error) -> bool:
    """Whether `exc` says the connection is gone (a worker reconnects, the journal keeps its rows), and
    not that the server refused a statement: psycopg's OperationalError also covers statement errors
    (SQLSTATE classes 53, 55, 57: `lastval()` before `nextval()`, a view that cannot be changed...)."""
    if isinstance(exc, psycopg.InterfaceError):
        return True
    state = exc.sqlstate
    if state in _SESSION_ENDED:
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    # no SQLSTATE: the client's own failure ("server closed the connection unexpectedly", "the connection
    # is closed"); class 08: connection exceptions
    return state is None or state.startswith("08")


# -- the connection ----------------------------------------------------------------------------

class _BoolAsNumber(Dumper):
    """A bool binds as 1 or 0 of no stated type, so it fits a bigint column (as in SQLite) and a
    CASE WHEN condition alike."""

    oid = 0
    format = Format.TEXT

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


def _adapt(conn: psycopg.Connection) -> None:
    conn.adapters.register_dumper(bool, _BoolAsNumber)
    for name in ("json", "jsonb"):  # JSON reads back as its text, as from SQLite
        conn.adapters.register_loader(name, TextLoader)


def open_pg(target: Target, *, autocommit: bool = True) -> psycopg.Connection:
    """A psycopg connection to `target`'s database, its search path on the net's schema.

    Raises StorageError naming the URL (never its password) when the server is down, refuses the
    login, or the database does not exist."""
    try:
        conn = psycopg.connect(target.conninfo, autocommit=autocommit, cursor_factory=psycopg.RawCursor,
                               connect_timeout=CONNECT_TIMEOUT, application_name=f"netrun:{os.getpid()}")
    except psycopg.Error as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        reason = reason.replace(target.conninfo, target.label)
        raise StorageError(f"cannot connect to {target.label}: {reason}; check that the server runs, and the "
                           "user, password and database name", path=target.label) from None
    _adapt(conn)
    conn.execute(f'SET search_path TO "{target.schema}"')
    return conn


class Cursor:
    """The rows of one statement, as an apsw cursor gives them."""

    def __init__(self, cur: psycopg.Cursor, connection: PgConnection, *, streamed: bool = False) -> None:
        self._cur = cur
        self._fix: tuple | None = None  # known once the statement's result is in (see PgConnection.settle)
        self.connection = connection
        self.exectrace: Callable | None = None
        self._streamed = streamed  # a server-side cursor in a read-only transaction of its own

    def _ready(self) -> bool:
        """Whether the statement returns rows (its result fetched first, if it was sent ahead)."""
        if self._fix is None:
            if self._cur.pgresult is None:  # sent ahead, its result not in yet
                self.connection.settle()
            self._fix = _json_columns(self._cur.description)
        return self._cur.description is not None

    def _row(self, row: tuple | None) -> tuple | None:
        if row is None or not self._fix:
            return row
        row = list(row)
        for kind, data in self._fix:
            value = row[data]
            if isinstance(value, bytes) and (row[kind] == "json" if kind is not None else value[:1] != b"\x80"):
                row[data] = value.decode()
        return tuple(row)

    def fetchone(self) -> tuple | None:
        if not self._ready():
            return None
        return self._row(self._cur.fetchone())

    def fetchall(self) -> list[tuple]:
        if not self._ready():
            return []
        return [self._row(r) for r in self._cur.fetchall()] if self._fix else self._cur.fetchall()

    def __iter__(self) -> Iterator[tuple]:
        if not self._ready():
            return iter(())
        rows = map(self._row, self._cur) if self._fix else iter(self._cur)
        return self._fetched(rows) if self._streamed else rows

    def _fetched(self, rows: Iterator[tuple]) -> Iterator[tuple]:
        """A streamed result's rows: an error met fetching a batch (a division by zero in row 5,000, a
        statement timeout) is raised as netrun's connections raise it."""
        deadline = self.connection.deadline  # statement_timeout bounds each fetch; this, the whole read
        try:
            for count, row in enumerate(rows):
                if deadline is not None and not count % 1000 and time.monotonic() > deadline:
                    raise apsw.InterruptError("canceling statement due to statement timeout")
                yield row
        except psycopg.Error as exc:
            raise _as_apsw(exc, self.connection.filename) from exc

    def getdescription(self) -> tuple[tuple[str, str], ...]:
        if not self._ready():
            raise apsw.ExecutionCompleteError("the statement returns no rows")
        return tuple((c.name, str(c.type_code)) for c in self._cur.description)

    def close(self) -> None:
        """Drop the rows not read (as an apsw cursor's close does)."""
        try:
            self._cur.close()
        finally:
            if self._streamed:
                self._streamed = False
                self.connection.end_stream()

    def execute(self, sql: str, params: Any = None) -> Cursor:
        """For read_query: run one statement through the connection, after the exec tracer. A query
        (SELECT, WITH, VALUES, TABLE) outside a transaction is read through a server-side cursor, a
        batch of rows at a time: a huge result never sits whole in this process."""
        if self.exectrace is not None:
            self.exectrace(self, sql, params)
        conn = self.connection
        found = conn.stream(sql, params) if _STREAMED.match(sql) and conn.getautocommit() else conn.execute(sql, params)
        self._cur, self._fix, self._streamed = found._cur, found._fix, found._streamed
        return self


_STREAMED = re.compile(r"\s*(SELECT|WITH|VALUES|TABLE)\b", re.IGNORECASE)
STREAM_ROWS = 2000  # rows fetched at a time from a server-side cursor
_cursor_names = iter(range(1, 1 << 62))


def _json_columns(description: Any) -> tuple[tuple[int | None, int], ...]:
    """(kind column or None, data column) index pairs of a row holding stored values (bytea). Without
    its kind column, a value is JSON unless it starts with byte 0x80, as every pickle netrun writes
    does (protocol 2 and up) and no UTF-8 text can."""
    if not description:
        return ()
    names = [c.name for c in description]
    pairs = []
    for i, column in enumerate(description):
        kind = _KIND_OF.get(column.name)
        if kind is not None and column.type_code == 17:  # 17: bytea
            pairs.append((names.index(kind) if kind in names else None, i))
    return tuple(pairs)


class PgConnection:
    """One connection to a net's schema, used like an apsw.Connection (by one thread at a time).

    Outside a transaction each statement commits on its own (autocommit, as in SQLite). A
    `readonly` connection cannot write (`default_transaction_read_only`). `fence`, when set by
    the owner (netrun.pgstore), runs at the start of every write transaction: an owner that was
    replaced can no longer commit.

    A write transaction's statements are sent ahead (psycopg's pipeline mode): a statement waits
    for the server only when its result is read (a row, `changes()`), and `COMMIT` waits for all
    of them. A transaction of 15 writes costs two round trips instead of 17. An error is raised by
    the call that waited: the read, or the `COMMIT`, which then leaves the transaction to roll back,
    as SQLite's failed COMMIT does."""

    dialect = "postgres"

    def __init__(self, target: Target, *, readonly: bool = False, durability: str = "normal") -> None:
        self.target = target
        self.filename = target.label
        self.readonly = readonly
        self.durability = durability
        self._pg = self._open()
        self._last: psycopg.Cursor | None = None  # the last statement's (for `changes()`)
        self._pipe: psycopg.Pipeline | None = None  # while a transaction's statements are sent ahead
        self._pipe_block: Any = None  # the `pipeline()` block it is in
        self._unsynced = False  # statements were sent ahead since the last wait
        self._held = False  # inside `exclusive()`
        self.fence: Callable[[PgConnection], None] | None = None
        self.regain: Callable[[], None] | None = None  # the owner's: its lock, after a new connection
        self.authorizer: Any = None  # accepted for apsw's API; the server enforces read-only
        self.deadline: float | None = None  # a streamed read stops past it (netrun.readonly's time limit)
        self._lock = threading.Lock()

    def _open(self) -> psycopg.Connection:
        pg = open_pg(self.target)
        if self.readonly:
            pg.execute("SET default_transaction_read_only = on")
        elif self.durability == "normal":
            # As SQLite's synchronous=NORMAL: a killed process loses nothing committed, a crash of the
            # server's machine may lose the last commits (never corrupts). "full" waits for the flush.
            pg.execute("SET synchronous_commit = off")
        return pg

    def _reopen_if_lost(self) -> None:
        """A reader's or the owner's connection, lost (a server restart, pg_terminate_backend): a new one
        before the next read or write transaction. The owner's run stopped with StorageError when it
        was lost; started again, it gets its lock back first (`regain`: NetInUse if another process
        took the net meanwhile), then its fence checks the owner record. Raises StorageError while
        the server cannot be reached (the journal keeps what it did not write)."""
        if (self.readonly or self.fence is not None) and (self._pg.closed or self._pg.broken):
            self._pg.close()
            self._pg = self._open()
            self._pipe = None
            if self.regain is not None:
                self.regain()

    @property
    def pg(self) -> psycopg.Connection:
        return self._pg

    @contextmanager
    def exclusive(self, *tables: str) -> Iterator[None]:
        """One transaction that holds `tables` against other writers (EXCLUSIVE: reads go on) until it
        ends; the transactions opened inside it meanwhile (`BEGIN`...`COMMIT`) become savepoints.
        A standby's resume holds the job tables so: live remote workers wait instead of claiming or
        reporting under it."""
        self._pg.execute("BEGIN")
        try:
            self._pg.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
            self._held = True
            yield
        except BaseException:
            self._held = False
            self._pg.execute("ROLLBACK")
            raise
        self._held = False
        self._pg.execute("COMMIT")

    def execute(self, sql: str, params: Any = None) -> Cursor:
        stmt = statement(sql, isinstance(params, dict))
        if self._held:
            stmt = _NESTED.get(sql.strip().upper(), stmt)
        if self.readonly or (stmt.begin and not self._held):
            self._reopen_if_lost()
        try:
            cur = self._pg.cursor()  # (a closed connection refuses here already)
            if stmt.end and stmt.text == "ROLLBACK":
                self._leave_pipe()
            if stmt.begin and not self._held and self._pipe is None:
                self._pipe_block = self._pg.pipeline()
                self._pipe = self._pipe_block.__enter__()
            cur.execute(stmt.text, _bind(stmt, params))
            self._last, self._unsynced = cur, True
            if stmt.end and self._pipe is not None:
                self._pipe = None
                self._pipe_block.__exit__(None, None, None)  # waits for every statement sent ahead: raises the first error
        except psycopg.Error as exc:
            self._leave_pipe()
            raise _as_apsw(exc, self.filename) from exc
        if stmt.begin and self.fence is not None:
            try:
                self.fence(self)
            except BaseException:
                self._leave_pipe()
                self._pg.execute("ROLLBACK")
                raise
        return Cursor(cur, self)

    def stream(self, sql: str, params: Any = None) -> Cursor:
        """`sql`'s rows through a server-side cursor, in a read-only transaction that the cursor's
        close ends (`end_stream`)."""
        stmt = statement(sql, isinstance(params, dict))
        try:
            return self._open_stream(stmt, params)
        except psycopg.Error as exc:
            if not (self.readonly and _lost_connection(exc)):
                raise _as_apsw(exc, self.filename) from exc
        try:  # a reader's connection was lost (a server restart): once more, on a new one
            return self._open_stream(stmt, params)
        except psycopg.Error as exc:
            raise _as_apsw(exc, self.filename) from exc

    def _open_stream(self, stmt: Statement, params: Any) -> Cursor:
        cur = None
        self._reopen_if_lost()
        try:
            self._pg.execute("BEGIN READ ONLY")
            cur = psycopg.RawServerCursor(self._pg, f"netrun_rows_{next(_cursor_names)}")
            cur.itersize = STREAM_ROWS
            cur.execute(stmt.text, _bind(stmt, params))
        except psycopg.Error:
            if cur is not None:
                try:
                    cur.close()
                except psycopg.Error:
                    pass
            self.end_stream()
            raise
        return Cursor(cur, self, streamed=True)

    def settle(self) -> None:
        """Wait for the statements sent ahead (their results are read, or an error of one is raised)."""
        if self._pipe is None or not self._unsynced:
            return
        try:
            self._unsynced = False
            self._pipe.sync()
        except psycopg.Error as exc:
            self._leave_pipe()
            raise _as_apsw(exc, self.filename) from exc

    def _leave_pipe(self) -> None:
        """Leave pipeline mode whatever the statements sent ahead did: after an error (the one already
        raised is the one that counts), or before a ROLLBACK (an error of one does not matter, all is
        undone), so that the ROLLBACK is an ordinary statement."""
        if self._pipe is not None:
            self._pipe = None
            try:
                self._pipe_block.__exit__(None, None, None)
            except psycopg.Error:
                pass


    def end_stream(self) -> None:
        try:
            if not self.getautocommit():
                self._pg.execute("ROLLBACK")  # it only read
        except psycopg.Error:
            pass  # a broken connection: the next statement says so

    def executemany(self, sql: str, rows: Iterable[Any]) -> None:
        stmt = statement(sql, False)
        batch = [_bind(stmt, params) or () for params in rows]
        if not batch:
            return
        try:
            cur = self._pg.cursor()
            cur.executemany(stmt.text, batch)
        except psycopg.Error as exc:
            self._leave_pipe()
            raise _as_apsw(exc, self.filename) from exc
        self._last, self._unsynced = cur, True

    def cursor(self) -> Cursor:
        cur = self._pg.cursor()
        return Cursor(cur, self)

    def changes(self) -> int:
        self.settle()
        return max(self._last.rowcount, 0) if self._last is not None else 0

    def getautocommit(self) -> bool:
        return self._pipe is None and self._pg.info.transaction_status == TransactionStatus.IDLE

    def limit(self, _which: int, _value: int = -1) -> int:
        return MAX_VALUE_BYTES

    def close(self) -> None:
        self._pg.close()

    def __repr__(self) -> str:
        return f"<PgConnection {self.filename}>"
