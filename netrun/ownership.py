"""Which process owns a net's database file.

A net is run by one process at a time: two processes running (or resuming) the same file
would both believe they own its running epochs. The owner holds an exclusive `flock` on
`<db>-lock`, a small file beside the database that records its pid, host and start time.
The kernel drops the lock when the process dies, however it dies (SIGKILL included), so
a crashed owner never blocks a resume, and `find_owner()` tells a live run from a
stopped or crashed one without touching the database.

The lock file is never deleted: removing it could let a second process lock a new file
while the first still holds the old one.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass

from .errors import NetInUse, StorageError

SUFFIX = "-lock"
_ACQUIRE_WAIT = 0.5  # seconds: a reader probing the lock holds it (shared) for a moment


@dataclass(frozen=True)
class Owner:
    """The process that has a net's database open for running."""

    pid: int
    host: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since}"


def lock_path(db_path: str) -> str:
    """The lock file of the database at `db_path`: beside the file itself, whatever symlink names it
    (as SQLite keeps its -wal beside the file), so every name of one database shares one lock."""
    return os.path.realpath(db_path) + SUFFIX


def _read_owner(fd: int) -> Owner | None:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
        return Owner(int(data["pid"]), str(data["host"]), str(data["since"]))
    except (ValueError, TypeError, KeyError, OSError):
        return None


class OwnerLock:
    """The exclusive right to run the net stored in `db_path` (held until `release()`)."""

    def __init__(self, db_path: str, since: str) -> None:
        """Take the lock.

        Raises:
            NetInUse: another live process holds it.
            StorageError: the lock file cannot be created (the folder is missing or read-only).
        """
        self.path = lock_path(db_path)
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            folder = os.path.dirname(self.path)
            if not os.path.isdir(folder):  # the whole story: no "caused by" errno text after it
                raise StorageError(f"cannot create {db_path}: the folder {folder} does not exist",
                                   path=db_path) from None
            raise StorageError(f"cannot create the lock file {self.path}: {exc.strerror}; netrun needs a writable "
                               "folder beside the database", path=db_path) from exc
        deadline = time.monotonic() + _ACQUIRE_WAIT
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.01)
                    continue
                owner = _read_owner(self._fd)
                os.close(self._fd)
                self._fd = None
                who = owner.describe() if owner else "another process"
                raise NetInUse(f"{db_path} is in use by {who}; stop that run first (Ctrl-C or Net.stop()). "
                               "Read-only commands (netrun status, history, sql) work meanwhile",
                               path=db_path, pid=owner.pid if owner else None) from None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, record, 0)

    def release(self) -> None:
        """Give the lock up. Idempotent."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass  # the lock itself is what matters, and closing drops it
        os.close(self._fd)
        self._fd = None


def find_owner(db_path: str) -> Owner | None:
    """The live process running the net in `db_path`, or None. Never blocks, never writes the database."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_owner(fd) or Owner(0, "unknown", "unknown")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
