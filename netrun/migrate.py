"""Schema migrations and the checks that run before netrun touches a file.

Migrations are `NNNN_name.sql` files, applied in order, each with its
`PRAGMA user_version = NNNN` bump in one IMMEDIATE transaction (apsw runs a whole
script in one `execute`, and the pragma rolls back with its transaction).

`inspect_file()` looks at an existing file through a read-only connection first, so a
foreign, newer or corrupt file is refused without a single byte of it being changed.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import apsw

from .db import BUSY_TIMEOUT_MS, transaction
from .errors import CorruptDatabase, DatabaseVersionError, NotANetrunDatabase, StorageError

APPLICATION_ID = 1852142706  # b"netr"
QUICK_CHECK_LIMIT = 64 * 1024 * 1024  # bytes: files up to this size get PRAGMA quick_check on open
_SQLITE_HEADER = b"SQLite format 3\x00"
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir() -> Path:
    """The shipped migrations: inside the wheel, or the checkout's folder (editable install)."""
    packaged = resources.files("netrun") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    checkout = Path(__file__).resolve().parent.parent / "migrations"
    if checkout.is_dir():
        return checkout
    raise StorageError("netrun's migrations folder is missing from the installation; reinstall netrun")


def list_migrations(dialect: str = "sqlite") -> list[Migration]:
    """Every migration of `dialect` ("sqlite", or "postgres": the `postgres/` folder, whose versions
    mirror SQLite's one for one), in version order; versions must be 1, 2, 3... without gaps."""
    found = []
    folder = migrations_dir() if dialect == "sqlite" else migrations_dir() / dialect
    for path in sorted(folder.iterdir()):
        match = _NAME.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), path.name, path.read_text()))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise StorageError(f"migration {migration.name} is out of sequence (expected version {expected})")
    return found


def latest_version() -> int:
    return len(list_migrations())


# The oldest schema version whose tables are read and written exactly as the latest's: version 14
# changed only the text of CHECK constraints and trigger conditions (the same values allowed).
# Readers, operator requests, prune and remote workers take a file of this version or later as it
# is (a net run by the netrun before is read while it runs); opening a net to run it migrates it.
SAME_TABLES_SINCE = 13


@dataclass(frozen=True)
class FileState:
    exists: bool
    version: int  # 0 for a new or empty file


def inspect_file(path: str) -> FileState:
    """Decide, read-only, whether netrun may open `path`.

    Raises:
        NotANetrunDatabase: not SQLite, or another program's SQLite database.
        DatabaseVersionError: written by a newer netrun.
        CorruptDatabase: the file is damaged or truncated.
    """
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return FileState(exists=False, version=0)
    with open(path, "rb") as handle:
        header = handle.read(100)
    if header[:len(_SQLITE_HEADER)] != _SQLITE_HEADER:
        raise NotANetrunDatabase(f"{path} is not a netrun database (not an SQLite file)", path=path)
    _check_size(path, header)
    try:
        # Without a WAL file the check opens the file immutable: no -wal/-shm is created
        # next to a file we may refuse. With one (a crashed run), its content counts.
        if os.path.exists(os.path.realpath(path) + "-wal"):  # SQLite keeps it beside the real file
            conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
            conn.setbusytimeout(BUSY_TIMEOUT_MS)  # a run that ends holds the file while it folds its WAL back
        else:
            uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?immutable=1"
            conn = apsw.Connection(uri, flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            objects = conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
            # A full check reads the whole file; above QUICK_CHECK_LIMIT the header and size
            # checks stand, and damage elsewhere is reported when a query meets it.
            small = os.path.getsize(path) <= QUICK_CHECK_LIMIT
            check = conn.execute("PRAGMA quick_check(1)").fetchone()[0] if objects and small else "ok"
            if check == "ok" and app_id == APPLICATION_ID and objects and version < latest_version():
                _check_schema_version(conn, path, version)  # it is about to be migrated from there
        finally:
            conn.close()
    except apsw.Error as exc:
        raise CorruptDatabase(f"{path} is damaged and cannot be read: {exc}", path=path) from exc
    if check != "ok":
        raise CorruptDatabase(f"{path} is damaged: integrity check says {check!r}", path=path)
    if app_id != APPLICATION_ID:
        if app_id == 0 and objects == 0:
            return FileState(exists=False, version=0)
        raise NotANetrunDatabase(f"{path} is an SQLite database of another program, not of netrun", path=path)
    latest = latest_version()
    if version > latest:
        raise DatabaseVersionError(
            f"{path} was written by a newer netrun (schema version {version}, this netrun knows up to {latest}); "
            "upgrade netrun to open it",
            path=path,
            version=version,
        )
    return FileState(exists=True, version=version)


# The tables a resume rebuilds the net from: checked fully (rows and every index) before a resume.
LIVE_TABLES = ("net_meta", "node_settings", "epochs", "packets", "packet_values", "epoch_jobs", "epoch_results",
               "inbox", "dead_letters")


def check_integrity(conn: apsw.Connection, path: str, *, whole: bool) -> None:
    """Check the live-state tables and their indexes fully (`PRAGMA integrity_check(TABLE)`: an
    index missing a row is found, which `quick_check` misses), or, with `whole`, the whole file
    (after a crash, for a file up to QUICK_CHECK_LIMIT). History may be large: not checked here.

    Raises CorruptDatabase naming the file and what is wrong."""
    try:
        if whole:
            problems = [row[0] for row in conn.execute("PRAGMA integrity_check(20)")]
        else:
            present = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            problems = [row[0] for table in LIVE_TABLES if table in present
                        for row in conn.execute(f"PRAGMA integrity_check({table})")]
    except apsw.Error as exc:
        raise CorruptDatabase(f"{path} is damaged and cannot be resumed: {exc}", path=path) from exc
    problems = [p for p in problems if p != "ok"]
    if problems:
        raise CorruptDatabase(f"{path} is damaged and cannot be resumed: " + "; ".join(problems[:5])
                              + ("; ..." if len(problems) > 5 else "") + " (restore a checkpoint or a copy)",
                              path=path)


def _schema(conn: apsw.Connection) -> set[tuple[str, str]]:
    return {(name, sql) for name, sql in conn.execute("SELECT name, sql FROM sqlite_schema WHERE sql IS NOT NULL")}


def _check_schema_version(conn: apsw.Connection, path: str, version: int) -> None:
    """An older file's schema must be the one its `user_version` claims, or migrating it would fail
    half-way (a column added twice): compared with the migrations up to that version, applied to an
    empty in-memory database. Raises CorruptDatabase."""
    expected = apsw.Connection(":memory:")
    try:
        for migration in list_migrations()[:max(version, 0)]:
            expected.execute(migration.sql)
        if _schema(conn) != _schema(expected):
            raise CorruptDatabase(f"{path}: its schema is not the one of the version it claims (user_version "
                                  f"{version}): the file was changed by hand or damaged; restore a checkpoint "
                                  "or a copy", path=path)
    finally:
        expected.close()


def crashed(path: str) -> bool:
    """Whether the last process that ran the net did not close it (its write-ahead log or start
    intents are still there): checked before opening it, which creates a write-ahead log."""
    real = os.path.realpath(path)
    return os.path.exists(real + "-wal") or os.path.exists(real + "-starts")


def _check_size(path: str, header: bytes) -> None:
    """A file shorter than its header's page count is truncated (checked when no WAL can extend it)."""
    if len(header) < 100 or os.path.exists(os.path.realpath(path) + "-wal"):
        return
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    change_counter = int.from_bytes(header[24:28], "big")
    page_count = int.from_bytes(header[28:32], "big")
    valid_for = int.from_bytes(header[92:96], "big")
    if valid_for == change_counter and page_count and os.path.getsize(path) < page_size * page_count:
        raise CorruptDatabase(f"{path} is truncated: {os.path.getsize(path)} bytes, its header says "
                              f"{page_count} pages of {page_size} bytes", path=path)


def migrate(conn: apsw.Connection, path: str) -> int:
    """Apply every migration newer than the file's `user_version`; returns the new version."""
    current = conn.execute("PRAGMA user_version").fetchone()[0]
    if hasattr(conn, "config"):  # SQLite: 0014 edits definitions, which defensive mode (off by default) refuses
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 0)
    for migration in list_migrations():
        if migration.version <= current:
            continue
        try:
            with transaction(conn):
                conn.execute(migration.sql)
                conn.execute(f"PRAGMA user_version = {migration.version}")
        except apsw.Error as exc:
            raise StorageError(f"{path}: migration {migration.name} failed: {exc}", path=path) from exc
        current = migration.version
    return current
