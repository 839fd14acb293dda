"""SQLite connections and transactions (apsw).

One `open_connection()` sets every pragma: WAL, busy timeout, foreign keys, no
double-quoted string literals, and the synchronous level that `durability` asks for.
Write transactions are IMMEDIATE: in WAL mode a DEFERRED transaction that reads, loses
a race and then writes fails at once with BusyError, ignoring the busy timeout.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import threading
import time

import apsw

from .dialect import is_url

Durability = Literal["normal", "full"]

BUSY_TIMEOUT_MS = 30_000
WAL_PAGES = 4000  # ~16 MB of 4 KiB pages
WAL_LIMIT = 16 * 1024 * 1024
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


def open_connection(path: str, *, durability: Durability = "normal", readonly: bool = False) -> apsw.Connection:
    """Open `path` with netrun's pragmas. The caller has already checked the file.

    `readonly`: a connection that cannot change the data (`PRAGMA query_only`). It is opened
    read-write when the file allows, because SQLite removes a WAL database's `-wal` and
    `-shm` files only when the last connection to close can write: a truly read-only
    connection leaves them behind after every read. A file without write permission gets a
    read-only connection.

    A `postgresql://` URL gives a netrun.pgconn.PgConnection instead (the same API, on PostgreSQL).
    """
    if is_url(path):
        from .pgconn import PgConnection, parse_url  # psycopg is imported only by nets that use it

        return PgConnection(parse_url(path), readonly=readonly, durability=durability)
    if readonly:
        try:
            conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
        except (apsw.CantOpenError, apsw.ReadOnlyError, apsw.PermissionsError):
            conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        conn.execute("PRAGMA query_only = ON")
    else:
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
    conn.setbusyhandler(_BusyWait(BUSY_TIMEOUT_MS / 1000))
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DML, 0)
    conn.config(apsw.SQLITE_DBCONFIG_DQS_DDL, 0)
    if not readonly:
        if conn.execute("PRAGMA page_count").fetchone()[0] == 0:
            # a new file: pages freed by `netrun prune` go back to the file system (PRAGMA incremental_vacuum)
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[durability]}")
        conn.execute("PRAGMA foreign_keys = ON")
        # The WAL is checkpointed every WAL_PAGES pages and cut back to WAL_LIMIT bytes once reset; a
        # reader that stays in one transaction for long stops the reset, and the WAL grows until it ends.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
    return conn


class _BusyWait:
    """Busy handler: retry a locked database after 0.1-2 ms (backing off) for up to `limit` seconds.

    SQLite's own busy timeout sleeps 1, 2, 5, 10... ms between tries, which starves
    pool workers that each hold the write lock for well under a millisecond.
    """

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self._since = 0.0

    def __call__(self, count: int) -> bool:
        now = time.monotonic()
        if count == 0:
            self._since = now
        if now - self._since > self.limit:
            return False
        # Back off 0.1, 0.2, 0.4 ... up to 2 ms: each retry takes the GIL, so many threads
        # polling fast would slow the very transaction they wait for.
        time.sleep(min(0.002, 0.0001 * (1 << min(count, 5))))
        return True


_write_locks: dict[str, threading.RLock] = {}
_write_locks_guard = threading.Lock()


def _write_lock(conn: apsw.Connection) -> threading.RLock:
    """The lock that the write transactions of this process on `conn`'s file take first.

    Threads of one process (the owner and thread-pool workers) then queue for the file's write
    lock in Python, and the one that gets it never finds SQLite's lock taken by a neighbour:
    SQLite's busy handler polls (sleeps) instead, which cost a thread pool of 32 more than half
    of its time. Other processes still meet at SQLite's lock (the busy handler below)."""
    path = conn.filename
    lock = _write_locks.get(path)
    if lock is None:
        with _write_locks_guard:
            lock = _write_locks.setdefault(path, threading.RLock())
    return lock


@contextmanager
def transaction(conn: apsw.Connection) -> Iterator[apsw.Connection]:
    """One IMMEDIATE write transaction: committed on success, rolled back on any error.

    Raises:
        apsw.BusyError: another thread of this process held the file's write lock for longer
            than the busy timeout (no transaction body waits on anything but SQL)."""
    lock = _write_lock(conn)
    if not lock.acquire(timeout=BUSY_TIMEOUT_MS / 1000):
        raise apsw.BusyError(f"database is locked: another thread held the write lock of {conn.filename} "
                             f"for over {BUSY_TIMEOUT_MS / 1000:.0f}s")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if not conn.getautocommit():  # a failed COMMIT (busy, disk full) leaves the transaction open
                conn.execute("ROLLBACK")
            raise
    finally:
        lock.release()


def rows_as_dicts(cursor: apsw.Cursor) -> list[dict]:
    """Materialize a cursor as a list of dicts keyed by column name."""
    try:
        names = [d[0] for d in cursor.getdescription()]
    except apsw.ExecutionCompleteError:  # a statement that returns no rows at all
        return []
    return [dict(zip(names, row)) for row in cursor]
