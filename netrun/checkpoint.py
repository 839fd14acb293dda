"""Checkpoints: consistent snapshots of the net's database file.

`save_checkpoint(dir)` builds the whole checkpoint in a new folder beside `dir` (the database
copied with SQLite's backup API in one step, the history JSONL copy when the net has one, and
`checkpoint.json`), fsyncs every file and the folder, then puts it in place of `dir` at once: on
Linux an atomic exchange of the two folders (renameat2 RENAME_EXCHANGE), elsewhere two renames
(a kill between them leaves both folders whole beside each other, and `dir` briefly absent).
So a kill at any moment leaves `dir` holding the previous checkpoint or the new one, never a mix
of their files. `dir` holds a checkpoint's files only: a folder with anything else is refused.
Loading copies `net.db` to a new database file and resumes that copy: the checkpoint itself is
never modified.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import apsw

from . import faults
from .version import __version__
from .clock import SystemClock, iso
from .db import open_connection
from .errors import CheckpointError, NetInUse, NotANetrunDatabase, StorageError
from .intents import intents_path, remove_intents
from .migrate import inspect_file
from .ownership import OwnerLock, find_owner

DB_NAME = "net.db"
MANIFEST = "checkpoint.json"
HISTORY = "history.jsonl"
STARTS = DB_NAME + "-starts"  # the start intents of a crashed net checkpointed as a file (`checkpoint_file`)


def _fsync_path(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(conn: apsw.Connection, directory: str, *, history_file: str | None, manifest: dict,
                     snapshot: Callable[[Any, apsw.Connection], None] | None = None,
                     intents: str | None = None) -> None:
    """Snapshot `conn`'s database into `directory` as a whole (see module docstring). `snapshot(conn,
    dest)` fills the new SQLite database `dest` instead of SQLite's backup API (a PostgreSQL net's).
    `intents`: the `<db>-starts` file of a crashed net, kept beside the snapshot as `net.db-starts`
    (loading the checkpoint applies the crash semantics to the epochs it lists, as a resume would).

    Raises CheckpointError: `directory` holds files that are not a checkpoint's."""
    directory = os.path.abspath(directory)
    parent, name = os.path.split(directory)
    if os.path.islink(directory):
        raise CheckpointError(f"{directory} is a symbolic link: a checkpoint replaces its folder as a whole; give "
                              "the folder itself", path=directory)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f"{directory} is a file; a checkpoint is written into a folder", path=directory)
    if os.path.isdir(directory):
        foreign = sorted(set(os.listdir(directory)) - {DB_NAME, MANIFEST, HISTORY, STARTS})
        if foreign:
            raise CheckpointError(f"{directory} holds files that are not a checkpoint's ({', '.join(foreign[:5])}); "
                                  "a checkpoint replaces its folder as a whole: choose a new or checkpoint folder",
                                  path=directory)
    os.makedirs(parent, exist_ok=True)
    for leftover in os.listdir(parent):  # left by a checkpoint that was killed half-way
        if leftover.startswith(f".{name}.new-") or leftover.startswith(f".{name}.old-"):
            shutil.rmtree(os.path.join(parent, leftover), ignore_errors=True)
    try:
        staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.new-")
    except OSError as exc:  # name the folder the user gave (a read-only or special parent), not the hidden one
        raise OSError(exc.errno, exc.strerror, directory) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)  # mkdtemp makes it private; a checkpoint gets a new folder's usual mode
        dest = apsw.Connection(os.path.join(staging, DB_NAME))
        try:
            if snapshot is not None:
                snapshot(conn, dest)
            else:
                with dest.backup("main", conn, "main") as backup:
                    backup.step(-1)  # one step: consistent even with a concurrent writer
            dest.execute("PRAGMA journal_mode = DELETE")
        finally:
            dest.close()
        if history_file and os.path.exists(history_file):
            shutil.copyfile(history_file, os.path.join(staging, HISTORY))
        if intents and os.path.exists(intents):
            shutil.copyfile(intents, os.path.join(staging, STARTS))
        with open(os.path.join(staging, MANIFEST), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
        for entry in os.listdir(staging):
            _fsync_path(os.path.join(staging, entry))
        _fsync_path(staging, directory=True)
        faults.hit("checkpoint_before_rename")
        _put_in_place(staging, directory)
        _fsync_path(parent, directory=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # after an exchange: the previous checkpoint


def _put_in_place(staging: str, directory: str) -> None:
    """`staging` becomes `directory`; the previous `directory`, if any, ends up at `staging`."""
    if not os.path.exists(directory):
        os.rename(staging, directory)
        return
    if _exchange(staging, directory):
        return
    parent, name = os.path.split(directory)
    old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.old-")
    os.rmdir(old)
    os.rename(directory, old)
    os.rename(staging, directory)
    os.rename(old, staging)


def _exchange(a: str, b: str) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno_ = ctypes.get_errno()
    if errno_ in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # a file system without the exchange
        return False
    raise OSError(errno_, os.strerror(errno_), b)


def refuse_own_folder(directory: str, db_path: str) -> None:
    """A checkpoint must never overwrite the live database it snapshots."""
    if os.path.realpath(os.path.join(directory, DB_NAME)) == os.path.realpath(db_path):
        raise CheckpointError(f"cannot checkpoint into {directory}: its {DB_NAME} is this net's own database; "
                              "choose another folder", path=directory)


def copy_history(directory: str, db: str) -> str:
    """The history file of a net loaded from a checkpoint: a copy of the checkpoint's, beside `db`.

    The original run's history file is not the loaded net's to append to.
    """
    target = db + ".history.jsonl"
    saved = os.path.join(directory, HISTORY)
    if os.path.exists(saved):
        shutil.copyfile(saved, target)
    return target


def copy_checkpoint(directory: str, db: str, *, own_history: bool = False) -> None:
    """Copy the checkpoint's database to `db` (which must not exist yet), reading the checkpoint only.

    A checkpoint's `net.db` has no WAL, unless someone ran it in place: then its `-wal` (and start
    intents) hold committed work, and are copied too; the WAL is folded into the copy, never into
    the checkpoint. The copy is checked before it takes the name `db`.

    `own_history`: a net that keeps a history file gets a copy of the checkpoint's beside `db`, and
    the copy's stored options name it before the copy takes the name `db` (see `_own_history`).

    Raises:
        StorageError: not a checkpoint, or `db` exists. NetInUse: a process runs the checkpoint's
        database in place. NotANetrunDatabase, CorruptDatabase...: its database is not a net's.
    """
    source = os.path.join(directory, DB_NAME)
    if not os.path.isfile(source):
        raise StorageError(f"{directory} is not a netrun checkpoint (no {DB_NAME} in it)", path=directory)
    if os.path.exists(db) and os.path.getsize(db) > 0:
        raise StorageError(f"{db} already exists; a checkpoint is restored into a new database file", path=db)
    if os.path.realpath(db) == os.path.realpath(source):
        raise CheckpointError(f"{db} is the checkpoint's own database; restore it into another file", path=db)
    owner = find_owner(source)
    if owner is not None:
        raise NetInUse(f"{source} is being run in place by {owner.describe()}: the checkpoint is changing; stop "
                       "that run first", path=source, pid=owner.pid)
    tmp = db + ".loading"
    _remove_files(tmp)
    try:
        try:
            shutil.copyfile(source, tmp)
        except OSError as exc:  # name the file the user gave (its folder missing, read-only), not the copy
            if exc.filename == tmp:
                raise OSError(exc.errno, exc.strerror, db) from None
            raise
        wal = os.path.realpath(source) + "-wal"
        if os.path.exists(wal):
            shutil.copyfile(wal, tmp + "-wal")
            conn = apsw.Connection(tmp)  # reads the copied WAL; closing folds it into the copy
            try:
                conn.execute("PRAGMA journal_mode = DELETE")
            finally:
                conn.close()
        try:
            if not inspect_file(tmp).exists:
                raise NotANetrunDatabase(f"{source} holds no netrun net; {directory} is not a netrun checkpoint",
                                         path=source)
        except StorageError as exc:  # the message names the checkpoint's file, not the copy
            raise type(exc)(str(exc).replace(tmp, source), path=source) from None
        if own_history:
            _own_history(tmp, directory, db)
        _fsync_path(tmp)
        os.replace(tmp, db)
    finally:
        _remove_files(tmp)
    starts = intents_path(source)
    if os.path.exists(starts):  # its start intents: what a crash of that run in place left to recover
        shutil.copyfile(starts, intents_path(db))
    else:
        remove_intents(db)  # left by an earlier file of that name: not this net's


def _own_history(copy: str, directory: str, db: str) -> None:
    """Point the options stored in `copy` (the database that becomes `db`) at a history file of its own.

    The original run's history file is not the restored net's to append to. Written into the copy
    before it takes the name `db`, so every later `Net.resume(db)` (after a kill mid-load, after a
    load that failed, or any time later) appends to `db`'s own copy, never to the original's."""
    conn = apsw.Connection(copy)
    try:
        with conn:
            row = conn.execute("SELECT value FROM net_meta WHERE key = 'config'").fetchone()
            config = json.loads(row[0]) if row else {}
            if config.get("history_file"):
                config["history_file"] = copy_history(directory, db)
                conn.execute("UPDATE net_meta SET value = ? WHERE key = 'config'", (json.dumps(config),))
    finally:
        conn.close()


def _remove_files(db: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)


def checkpoint_of(db_path: str) -> str | None:
    """The checkpoint folder whose database `db_path` is (a `net.db` beside a `checkpoint.json` naming
    it), or None."""
    real = os.path.realpath(db_path)
    folder = os.path.dirname(real)
    if os.path.basename(real) != DB_NAME:
        return None
    try:
        with open(os.path.join(folder, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError):
        return None
    return folder if isinstance(manifest, dict) and manifest.get("database") == DB_NAME else None


def refuse_checkpoint_db(db_path: str, doing: str) -> None:
    """A checkpoint is never changed: refuse to open its database for writing.

    Raises CheckpointError naming the checkpoint and the command that restores it."""
    folder = checkpoint_of(db_path)
    if folder is not None:
        raise CheckpointError(f"{db_path} is the database of the checkpoint {folder}; {doing} would change the "
                              f"checkpoint. Restore it into a new file and use that: netrun restore {folder} --db "
                              "NEW.db", path=db_path)


def restore_checkpoint(directory: str, db: str) -> dict:
    """Make the new database file `db` from a checkpoint folder, which is only read (the `netrun restore`
    command); `Net.resume(db)` continues it. Returns the checkpoint's manifest.

    The history file of a net that keeps one is copied beside `db` (`<db>.history.jsonl`), as
    `Net.load_checkpoint` does; the restored net's options name it.

    Raises:
        StorageError: `directory` is not a checkpoint, or `db` exists. NetInUse: a process runs the
        checkpoint's database in place.
    """
    copy_checkpoint(directory, db, own_history=True)
    return read_manifest(directory)


def read_manifest(directory: str) -> dict:
    """A checkpoint's manifest ({} if it has none that can be read)."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError, RecursionError):
        return {}
    return manifest if isinstance(manifest, dict) else {}  # `[]`, a number: no manifest that can be read


def checkpoint_file(db: str, directory: str) -> dict:
    """Checkpoint a net's database file that no process is running (the `netrun checkpoint` command).

    Holds the net's owner lock meanwhile, so no run can start during the copy. A net
    whose process died mid-epoch can be checkpointed: loading the checkpoint applies the
    crash semantics, as a resume of the file would. Returns the manifest.

    Raises:
        NetInUse: a process is running the net (pause or stop it first).
        NotANetrunDatabase, DatabaseVersionError, CorruptDatabase: the file cannot be read.
        CheckpointError: `directory` is the folder of the database itself, or a file.
    """
    if not os.path.exists(db) or not inspect_file(db).exists:
        raise NotANetrunDatabase(f"{db} holds no netrun net to checkpoint", path=db)
    refuse_own_folder(directory, db)
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise CheckpointError(f"{directory} is a file; a checkpoint is written into a folder", path=directory)
    now = iso(SystemClock().now())
    lock = OwnerLock(db, now)
    try:
        conn = open_connection(db, readonly=True)
        try:
            config = json.loads(dict(conn.execute("SELECT key, value FROM net_meta").fetchall())["config"])
            manifest = {"netrun_version": __version__, "database": DB_NAME, "created_at": now, "source": db}
            # (the start intents of a crashed run: without them, its epochs that started without a committed
            # start would run again from the checkpoint)
            write_checkpoint(conn, directory, history_file=config.get("history_file"), manifest=manifest,
                             intents=intents_path(db))
        finally:
            conn.close()
    finally:
        lock.release()
    return manifest
