"""Where a net is stored, behind one interface: an SQLite file, or a schema of a PostgreSQL database.

`store_for(db)` picks the backend from `db`: a `postgresql://` URL is a PostgreSQL net, anything
else a file. Both give connections with the same API (apsw's; netrun.pgconn on PostgreSQL), the
same tables and the same crash semantics; what differs lives here: how a net is checked before it
is opened, how its one owner is decided, what a crash leaves beside it.

| | `FileStore` (SQLite) | `PgStore` (PostgreSQL) |
|---|---|---|
| checked before opening | header, `application_id`, `user_version`, `quick_check` | the schema's comment (version) |
| owner | `flock` on `<db>-lock` | advisory lock + fenced `net_meta` owner record |
| start intents (non-deferred main-thread starts) | `<db>-starts` side file | none: every such start is committed |
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import nullcontext
from typing import Any, Protocol

from .checkpoint import (DB_NAME, checkpoint_file, copy_checkpoint, read_manifest, refuse_checkpoint_db,
                         restore_checkpoint, write_checkpoint)
from .clock import SystemClock, iso
from .db import open_connection
from .dialect import is_url
from .errors import NotANetrunDatabase, StorageError
from .intents import remove_intents
from .migrate import QUICK_CHECK_LIMIT, FileState, check_integrity, crashed, inspect_file, migrate
from .ownership import Owner, OwnerLock
from .ownership import find_owner as find_file_owner
from .version import __version__


class Lock(Protocol):
    def release(self) -> None: ...


class Store(Protocol):
    """What `Net` needs of a backend beyond its connections."""

    label: str  # names the net in messages (a URL never shows its password); `Net.db_path`
    url: str  # what connections open (`open_connection`), password included
    local_files: bool  # whether side files beside the database exist (start intents, history index)

    def exists(self) -> bool: ...
    def inspect(self) -> FileState: ...
    def lock(self, since: str, *, wait: float | None = None) -> Lock: ...
    def migrate(self, conn: Any) -> int: ...
    def claim(self, lock: Lock, conn: Any) -> None: ...
    def find_owner(self) -> Owner | None: ...
    def before_resume(self) -> bool: ...
    def check(self, conn: Any, *, whole: bool) -> None: ...
    def forget_side_files(self) -> None: ...
    def snapshot(self) -> Any: ...
    def restoring(self, conn: Any) -> Any: ...
    def checkpoint(self, directory: str) -> dict: ...


class FileStore:
    """A net in an SQLite file."""

    local_files = True

    def __init__(self, path: str) -> None:
        self.label = self.url = path

    def exists(self) -> bool:
        return os.path.exists(self.label)

    def inspect(self) -> FileState:
        return inspect_file(self.label)

    def lock(self, since: str, *, wait: float | None = None) -> Lock:
        return OwnerLock(self.label, since)

    def migrate(self, conn: Any) -> int:
        return migrate(conn, self.label)

    def claim(self, lock: Lock, conn: Any) -> None:
        """Nothing to write: the lock file is the record."""

    def find_owner(self) -> Owner | None:
        return find_file_owner(self.label)

    def before_resume(self) -> bool:
        """Refuse a checkpoint's database; returns whether the whole file is checked (after a crash)."""
        refuse_checkpoint_db(self.label, "resuming it")
        return crashed(self.label) and os.path.getsize(self.label) <= QUICK_CHECK_LIMIT

    def check(self, conn: Any, *, whole: bool) -> None:
        check_integrity(conn, self.label, whole=whole)

    def forget_side_files(self) -> None:
        remove_intents(self.label)  # left by an earlier file of that name: not this net's

    def snapshot(self) -> Any:
        """How a checkpoint copies the live database: None, SQLite's backup API."""
        return None

    def restoring(self, conn: Any) -> Any:
        """Around a resume's restore: nothing (the owner lock keeps every other writer out)."""
        return nullcontext()

    def checkpoint(self, directory: str) -> dict:
        """Checkpoint the net while no process runs it (`netrun checkpoint`)."""
        return checkpoint_file(self.label, directory)


class PgStore:
    """A net in a schema of a PostgreSQL database (netrun.pgstore)."""

    local_files = False

    def __init__(self, url: str) -> None:
        from .pgconn import parse_url

        self.target = parse_url(url)
        self.label = self.target.label
        self.url = url

    def exists(self) -> bool:
        return self.inspect().exists

    def inspect(self) -> FileState:
        from .pgstore import inspect_schema

        return inspect_schema(self.target)

    def lock(self, since: str, *, wait: float | None = None) -> Lock:
        from .pgstore import PgOwnerLock

        return PgOwnerLock(self.target, since, wait=wait)

    def migrate(self, conn: Any) -> int:
        from .pgstore import migrate

        return migrate(conn)

    def claim(self, lock: Lock, conn: Any) -> None:
        lock.claim(conn)  # type: ignore[attr-defined]

    def find_owner(self) -> Owner | None:
        from .pgstore import find_owner

        return find_owner(self.target)

    def before_resume(self) -> bool:
        return False

    def check(self, conn: Any, *, whole: bool) -> None:
        """PostgreSQL checks its own pages (and reports damage on the query that meets it)."""

    def forget_side_files(self) -> None:
        """None are kept."""

    def restoring(self, conn: Any) -> Any:
        """Around a resume's restore: remote workers of the net may still be claiming and reporting;
        the job tables are held until the restored state is committed."""
        return conn.exclusive("epoch_jobs", "epoch_results")

    def snapshot(self) -> Any:
        from .pgstore import export_to_sqlite

        return export_to_sqlite

    def checkpoint(self, directory: str) -> dict:
        """Checkpoint the net while no process runs it: an SQLite file that either store loads. Holds the
        owner lock meanwhile. Raises NetInUse while a process runs it."""
        if not self.exists():
            raise NotANetrunDatabase(f"{self.label} holds no netrun net to checkpoint", path=self.label)
        now = iso(SystemClock().now())
        lock = self.lock(now)
        try:
            conn = open_connection(self.url, readonly=True)
            try:
                config = json.loads(dict(conn.execute("SELECT key, value FROM net_meta").fetchall())["config"])
                manifest = {"netrun_version": __version__, "database": DB_NAME, "created_at": now,
                            "source": self.label}
                write_checkpoint(conn, directory, history_file=config.get("history_file"), manifest=manifest,
                                 snapshot=self.snapshot())
            finally:
                conn.close()
        finally:
            lock.release()
        return manifest

    def drop(self) -> None:
        """Remove the net's schema and all in it (the caller holds the owner lock)."""
        from .pgstore import drop_net

        drop_net(self.url)

    def load(self, path: str) -> None:
        """Make this net (a new schema) from the SQLite database `path` (a checkpoint's copy, migrated
        to this netrun's version). Raises StorageError when the schema holds a net already."""
        from .pgstore import import_from_sqlite

        if self.inspect().exists:
            raise StorageError(f"{self.label} already holds a net; a checkpoint is loaded into a new net "
                               "(another ?net=NAME)", path=self.label)
        lock = self.lock(iso(SystemClock().now()))
        try:
            conn = open_connection(self.url)
            try:
                self.migrate(conn)
                import_from_sqlite(path, conn)
            finally:
                conn.close()
        finally:
            lock.release()


def restore_into(directory: str, db: str) -> dict:
    """Make the new net `db` from a checkpoint folder, which is only read (`netrun restore`): a new file,
    or a new PostgreSQL net (the checkpoint's database, copied to a temporary file and migrated to this
    netrun's version, has its rows copied into the net's new schema). Returns the manifest.

    Raises StorageError: `directory` is not a checkpoint, or `db` holds a net already."""
    if not is_url(db):
        return restore_checkpoint(directory, db)
    tmpdir = tempfile.mkdtemp(prefix="netrun-")
    try:
        path = os.path.join(tmpdir, DB_NAME)
        copy_checkpoint(directory, path)
        conn = open_connection(path)
        try:
            FileStore(path).migrate(conn)
        finally:
            conn.close()
        store_for(db).load(path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return read_manifest(directory)


def store_for(db: str | os.PathLike) -> FileStore | PgStore:
    """The store `db` names: a PostgreSQL URL, or a file path."""
    if is_url(db):
        return PgStore(str(db))
    return FileStore(os.fspath(db))


def require_net(store: FileStore | PgStore) -> FileState:
    """Raises NotANetrunDatabase unless `store` holds a net (checked without writing)."""
    if not store.exists():
        raise NotANetrunDatabase(f"{store.label} does not exist; nothing to resume", path=store.label)
    state = store.inspect()
    if not state.exists:
        raise NotANetrunDatabase(f"{store.label} holds no netrun net", path=store.label)
    return state
