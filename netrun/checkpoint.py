"""Checkpoints: consistent snapshots of the net's database file.

`save_checkpoint(dir)` copies the live database with SQLite's backup API in one step
into a temporary file inside `dir`, fsyncs it, renames it to `dir/net.db` and fsyncs the
folder, so `dir` holds either the previous checkpoint or the new one, never half of one.
The history JSONL file, when the net has one, is copied beside it as `history.jsonl`, and
`checkpoint.json` says what the folder holds. Loading copies `net.db` to a new database
file and resumes that copy: the checkpoint itself is never modified.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import apsw

from . import faults
from .version import __version__
from .clock import SystemClock, iso
from .db import open_connection
from .errors import CheckpointError, NotANetrunDatabase, StorageError
from .migrate import inspect_file
from .ownership import OwnerLock

DB_NAME = "net.db"
MANIFEST = "checkpoint.json"
HISTORY = "history.jsonl"


def _fsync_path(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(conn: apsw.Connection, directory: str, *, history_file: str | None, manifest: dict) -> None:
    """Snapshot `conn`'s database into `directory` atomically (see module docstring)."""
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):  # left by a checkpoint that was killed before its rename
        if name.startswith(".net-") and name.endswith(".db.tmp"):
            os.remove(os.path.join(directory, name))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".net-", suffix=".db.tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a checkpoint gets a new file's usual mode
    try:
        dest = apsw.Connection(tmp)
        try:
            with dest.backup("main", conn, "main") as backup:
                backup.step(-1)  # one step: consistent even with a concurrent writer
            dest.execute("PRAGMA journal_mode = DELETE")
        finally:
            dest.close()
        _fsync_path(tmp)
        faults.hit("checkpoint_before_rename")
        if history_file and os.path.exists(history_file):
            shutil.copyfile(history_file, os.path.join(directory, HISTORY + ".tmp"))
            _fsync_path(os.path.join(directory, HISTORY + ".tmp"))
            os.replace(os.path.join(directory, HISTORY + ".tmp"), os.path.join(directory, HISTORY))
        os.replace(tmp, os.path.join(directory, DB_NAME))
        with open(os.path.join(directory, MANIFEST + ".tmp"), "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(os.path.join(directory, MANIFEST + ".tmp"), os.path.join(directory, MANIFEST))
        _fsync_path(directory, directory=True)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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


def copy_checkpoint(directory: str, db: str) -> None:
    """Copy the checkpoint's database to `db` (which must not exist yet)."""
    source = os.path.join(directory, DB_NAME)
    if not os.path.isfile(source):
        raise StorageError(f"{directory} is not a netrun checkpoint (no {DB_NAME} in it)", path=directory)
    if os.path.exists(db) and os.path.getsize(db) > 0:
        raise StorageError(f"{db} already exists; load_checkpoint writes a new database file", path=db)
    tmp = db + ".loading"
    shutil.copyfile(source, tmp)
    _fsync_path(tmp)
    os.replace(tmp, db)


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
            write_checkpoint(conn, directory, history_file=config.get("history_file"), manifest=manifest)
        finally:
            conn.close()
    finally:
        lock.release()
    return manifest
