"""Files named on the command line: definitions that must exist, and where node functions import from."""

from __future__ import annotations

import os
import sys

from ..errors import NotFoundError


def add_import_paths(extra: list[str] | None, *also: str) -> None:
    """Make node functions importable: --path folders, the definition's folder, the current one."""
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
