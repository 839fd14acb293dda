"""Files named on the command line: definitions that must exist, and where node functions import from."""

from __future__ import annotations

import os
import sys
import zipfile

from ..checkpoint import refuse_checkpoint_db
from ..errors import NotANetrunDatabase, NotFoundError
from ..migrate import inspect_file
from ..ownership import OwnerLock
from ..store import is_url, store_for
from .output import UsageError


def add_import_paths(extra: list[str] | None, *also: str) -> None:
    """Make node functions importable: --path folders, the definition's folder, the current one.
    Raises UsageError for a --path that is neither a folder nor a zip archive (Python imports from
    both; from anything else its functions would not be found)."""
    for folder in extra or []:
        if not os.path.isdir(folder) and not (os.path.isfile(folder) and zipfile.is_zipfile(folder)):
            raise UsageError(f"--path {folder}: {'not a folder' if os.path.exists(folder) else 'no such folder'}")
    for folder in [*(extra or []), *also, os.getcwd()]:
        folder = os.path.abspath(folder)
        if folder not in sys.path:
            sys.path.insert(0, folder)


def existing_file(path: str, what: str) -> str:
    """`path`, if it is a file (a definition path is never taken for TOML text here)."""
    if not os.path.isfile(path):
        problem = "is a folder" if os.path.isdir(path) else "does not exist"
        raise NotFoundError(f"{path} {problem} (expected {what})", path=path)
    return path


def remove_old_net(path: str, option: str = "--overwrite") -> None:
    """--overwrite, --force: delete a previous netrun database (never another program's file, never a live run's);
    on PostgreSQL, the net's schema."""
    if is_url(path):
        store = store_for(path)
        if store.exists():  # refuses a schema of another program's tables
            lock = store.lock("overwrite")  # raises NetInUse while a process runs it
            try:
                store.drop()
            finally:
                lock.release()
        return
    if not os.path.exists(path):
        return
    refuse_checkpoint_db(path, f"replacing it ({option})")  # a checkpoint is never changed, let alone deleted
    if not inspect_file(path).exists and os.path.getsize(path) > 0:
        raise NotANetrunDatabase(f"{path} is not a netrun database; {option} only replaces netrun databases",
                                 path=path)
    lock = OwnerLock(path, "overwrite")  # raises NetInUse while a process runs it; none can start meanwhile
    try:
        for suffix in ("-wal", "-shm", "-search", ""):  # -search: the index of `logs --search`
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    finally:
        lock.release()
