"""A net stored in PostgreSQL: its schema, migrations, owner and checkpoints.

Each net is one schema of the database (`?net=NAME`, default `netrun`), holding the same tables,
columns and `history` view as an SQLite file. The schema's comment, `netrun schema version N`,
plays the part of SQLite's `application_id` and `user_version`: a schema without it that holds
tables belongs to another program and is refused; a newer version is refused.

One owner at a time, as with the file's `flock` (netrun.ownership): the owner holds a session
advisory lock on a connection of its own (PostgreSQL drops it when that connection or the process
dies, however it dies) and writes a fenced owner record, `net_meta` key `owner`, with a token of
its own. Every write transaction of the owner first reads that record (`FOR SHARE`): an owner whose
lock was lost (its lock connection terminated) and that was replaced meanwhile can no longer
commit, and a standby's takeover waits for the transaction of the old owner that is under way.

A checkpoint of a Postgres net is an SQLite file (`export_to_sqlite`): either store loads it
(`import_from_sqlite` copies one into a new schema).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

import apsw
import psycopg

from .errors import DatabaseVersionError, NetInUse, NotANetrunDatabase, StorageError
from .migrate import FileState, latest_version, list_migrations
from .ownership import Owner
from .pgconn import PgConnection, Target, open_pg, parse_url

_COMMENT = "netrun schema version "
_LOCK_CLASS = 1852142706  # b"netr", as the SQLite files' application_id
_ACQUIRE_WAIT = 0.5  # seconds, as for the lock file
# Tables copied into and out of a checkpoint (every table of the schema; `history` is a view).
_NO_COPY = {"history"}


def schema_version(pg: psycopg.Connection, schema: str) -> int | None:
    """The schema's netrun version; 0 for a schema without netrun's comment; None when it does not exist."""
    row = pg.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1",
                     (schema,)).fetchone()
    if row is None:
        return None
    comment = row[0] or ""
    return int(comment[len(_COMMENT):]) if comment.startswith(_COMMENT) else 0


def _tables(pg: psycopg.Connection, schema: str) -> list[str]:
    return [r[0] for r in pg.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
                                     "AND table_type = 'BASE TABLE' ORDER BY table_name", (schema,))]


def inspect_schema(target: Target) -> FileState:
    """Decide, without writing, whether netrun may use the net's schema (the file checks' counterpart).

    Raises:
        StorageError: the server cannot be reached (the URL without its password in the message).
        NotANetrunDatabase: the schema holds another program's tables.
        DatabaseVersionError: written by a newer netrun.
    """
    pg = open_pg(target)
    try:
        version = schema_version(pg, target.schema)
        if version is None:
            return FileState(exists=False, version=0)
        if version == 0:
            if _tables(pg, target.schema):
                raise NotANetrunDatabase(f"{target.label}: the schema {target.schema!r} holds tables of another "
                                         "program, not a netrun net; choose another net name (?net=NAME)",
                                         path=target.label)
            return FileState(exists=False, version=0)
        latest = latest_version()
        if version > latest:
            raise DatabaseVersionError(f"{target.label} was written by a newer netrun (schema version {version}, this "
                                       f"netrun knows up to {latest}); upgrade netrun to open it",
                                       path=target.label, version=version)
        has_net = pg.execute(f'SELECT 1 FROM "{target.schema}".net_meta WHERE key = \'graph\'').fetchone()
        return FileState(exists=has_net is not None, version=version)
    finally:
        pg.close()


def migrate(conn: PgConnection) -> int:
    """Create the net's schema if missing and apply every newer migration, each in one transaction
    with its version comment. Returns the version reached."""
    schema = conn.target.schema
    pg = conn.pg
    current = schema_version(pg, schema)
    if current is None:
        pg.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        current = 0
    for migration in list_migrations("postgres"):
        if migration.version <= current:
            continue
        try:
            with pg.transaction():
                pg.execute(migration.sql)
                pg.execute(f"COMMENT ON SCHEMA \"{schema}\" IS '{_COMMENT}{migration.version}'")
        except psycopg.Error as exc:
            raise StorageError(f"{conn.filename}: migration postgres/{migration.name} failed: {exc}",
                               path=conn.filename) from exc
        current = migration.version
    return current


def _owner_record(pg: psycopg.Connection, schema: str) -> Owner | None:
    try:
        row = pg.execute(f'SELECT value FROM "{schema}".net_meta WHERE key = \'owner\'').fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    if row is None:
        return None
    data = json.loads(row[0])
    return Owner(int(data["pid"]), str(data["host"]), str(data["since"]))


def _try_lock(pg: psycopg.Connection, target: Target) -> bool:
    return bool(pg.execute("SELECT pg_try_advisory_lock($1, hashtext($2))",
                           (_LOCK_CLASS, target.lock_key)).fetchone()[0])


class PgOwnerLock:
    """The exclusive right to run the net in `target`'s schema (held until `release()`): the
    counterpart of netrun.ownership.OwnerLock."""

    def __init__(self, target: Target, since: str, *, wait: float | None = None) -> None:
        """Take the lock; `wait`: seconds to wait for it (None: briefly; as a standby, long).

        Raises:
            NetInUse: another live process holds it (the message names its host and pid).
            StorageError: the server cannot be reached.
        """
        self.target = target
        self.since = since
        self.token = uuid.uuid4().hex
        self._pg: psycopg.Connection | None = open_pg(target)
        deadline = time.monotonic() + (_ACQUIRE_WAIT if wait is None else wait)
        while not _try_lock(self._pg, target):
            if time.monotonic() < deadline:
                time.sleep(0.01 if wait is None else 0.05)
                continue
            owner = _owner_record(self._pg, target.schema)
            self._pg.close()
            self._pg = None
            who = owner.describe() if owner else "another process"
            raise NetInUse(f"{target.label} is in use by {who}; stop that run first (Ctrl-C or Net.stop()). "
                           "Read-only commands (netrun status, history, sql) work meanwhile",
                           path=target.label, pid=owner.pid if owner else None)

    def claim(self, conn: PgConnection) -> None:
        """Write the owner record (the schema is migrated by now) and fence `conn`'s write transactions
        with it."""
        record = json.dumps({"token": self.token, "pid": os.getpid(), "host": socket.gethostname(),
                             "since": self.since})
        conn.execute("INSERT INTO net_meta (key, value) VALUES ('owner', ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (record,))
        token = self.token
        label = self.target.label

        def fence(c: PgConnection) -> None:
            row = c.pg.execute("SELECT value FROM net_meta WHERE key = 'owner' FOR SHARE").fetchone()
            data = json.loads(row[0]) if row else {}
            if data.get("token") != token:
                raise NetInUse(f"{label}: this process no longer owns the net: pid {data.get('pid')} on "
                               f"{data.get('host')} took it over (this one lost its connection); nothing more is "
                               "written from here", path=label, pid=data.get("pid"))

        conn.fence = fence
        conn.regain = self.regain

    def regain(self) -> None:
        """After the owner's connection was lost: hold the lock again if its connection was lost too (a
        server restart). Raises NetInUse when another process holds it now (a standby took over)."""
        try:
            if self._pg is not None:
                self._pg.execute("SELECT 1")
                return  # still held
        except psycopg.Error:
            pass
        if self._pg is not None:
            self._pg.close()
        self._pg = open_pg(self.target)
        if not _try_lock(self._pg, self.target):
            owner = _owner_record(self._pg, self.target.schema)
            self._pg.close()
            self._pg = None
            who = owner.describe() if owner else "another process"
            raise NetInUse(f"{self.target.label}: this process lost its connection and {who} runs the net now; "
                           "nothing more is written from here", path=self.target.label,
                           pid=owner.pid if owner else None)

    def release(self) -> None:
        """Give the lock up (closing its connection drops it). Idempotent."""
        if self._pg is None:
            return
        try:
            self._pg.close()
        finally:
            self._pg = None


def find_owner(target: Target) -> Owner | None:
    """The live process running the net, or None. Never writes."""
    pg = open_pg(target)
    try:
        if _try_lock(pg, target):
            pg.execute("SELECT pg_advisory_unlock($1, hashtext($2))", (_LOCK_CLASS, target.lock_key))
            return None
        return _owner_record(pg, target.schema) or Owner(0, "unknown", "unknown")
    finally:
        pg.close()


def export_to_sqlite(conn: PgConnection, dest: apsw.Connection) -> None:
    """Copy every table of the net into `dest`, a new SQLite database migrated to the same version,
    from one consistent snapshot (REPEATABLE READ). The owner record is the run's, not the net's: not copied."""
    from .migrate import migrate as migrate_sqlite

    migrate_sqlite(dest, "checkpoint")
    src = PgConnection(conn.target, readonly=True)
    try:
        src.pg.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        tables = [t for t in _tables(src.pg, conn.target.schema) if t not in _NO_COPY]
        dest.execute("BEGIN IMMEDIATE")
        for table in tables:
            cur = src.execute(f"SELECT * FROM {table}" + (" WHERE key <> 'owner'" if table == "net_meta" else ""))
            columns = [name for name, _ in cur.getdescription()]
            dest.execute(f"DELETE FROM {table}")  # node_counts: filled by the triggers on epochs, copied as is
            dest.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                             cur.fetchall())
        dest.execute("COMMIT")
        src.pg.execute("COMMIT")
    finally:
        src.close()


def import_from_sqlite(path: str, conn: PgConnection) -> None:
    """Copy the net of the SQLite file `path` (a checkpoint's copy) into `conn`'s new, migrated schema,
    in one transaction; identities continue after the copied rows."""
    src = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        tables = [r[0] for r in src.execute("SELECT name FROM sqlite_schema WHERE type = 'table' "
                                            "AND name NOT LIKE 'sqlite_%' ORDER BY name")]
        with conn.pg.transaction():
            for table in tables:
                cur = src.execute(f"SELECT * FROM {table}")
                try:
                    columns = [d[0] for d in cur.getdescription()]
                except apsw.ExecutionCompleteError:
                    continue
                rows = cur.fetchall()
                conn.execute(f"DELETE FROM {table}")  # node_counts: filled by the triggers on epochs, copied as is
                if rows:
                    conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) "
                                     f"VALUES ({', '.join('?' * len(columns))})", rows)
            for table, column in conn.pg.execute(
                    "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = $1 "
                    "AND is_identity = 'YES'", (conn.target.schema,)).fetchall():
                conn.pg.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                                f"(SELECT max({column}) FROM {table})) WHERE EXISTS (SELECT 1 FROM {table})")
    finally:
        src.close()


def drop_net(url: str) -> None:
    """Remove a net's schema and everything in it (tests and `--overwrite`)."""
    target = parse_url(url)
    pg = open_pg(target)
    try:
        pg.execute(f'DROP SCHEMA IF EXISTS "{target.schema}" CASCADE')
    finally:
        pg.close()
