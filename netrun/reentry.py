"""Calls that re-enter netrun half-way through its own code, from the thread that owns the net.

A call from another thread is handed to the owner, which answers it between two of its steps
(netrun.owner). A call made in the owning thread itself runs at once; that is right when it comes
from user code netrun called (a node function in the main thread, a start function, a callback):
netrun is then between two steps. But a signal handler runs between any two bytecodes of the
thread it interrupts, so one that calls the net's methods while netrun's own code runs in that
thread (a row half-built, a commit under way) would change the run state half-way through a
step: it is refused.

The functions through which netrun calls user code, and the owner's wait (the run state at rest),
are marked `@reentrant_point`. A call in the owning thread is allowed when, below the first caller
outside netrun, the nearest netrun frame is one of them (or there is none: the caller's own script,
between runs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

F = TypeVar("F", bound=Callable)

_USER_ENTRIES: set = set()  # code objects of the functions marked @reentrant_point
# Modules of the package that use netrun's public API as any user would (their frames are callers).
_USER_SIDE = ("netrun.cli", "netrun.examples", "netrun.ui")


def reentrant_point(func: F) -> F:
    """Mark a function during which the net's methods may be called again in this thread: it calls user
    code (node functions, callbacks), or waits with the run state at rest."""
    _USER_ENTRIES.add(func.__code__)
    return func


def _is_netrun(frame: FrameType) -> bool:
    name = frame.f_globals.get("__name__", "")
    return (name == "netrun" or name.startswith("netrun.")) and not name.startswith(_USER_SIDE)


def interrupted_step(depth: int = 1) -> tuple[str, str] | None:
    """For a call made in the owning thread (`depth` frames above this one): None if it comes from user
    code netrun called, or from outside any netrun code; else (the public method called, where netrun
    was interrupted: "function (module:line)")."""
    frame: FrameType | None = sys._getframe(depth + 1)
    method = "?"
    while frame is not None and _is_netrun(frame):  # the public method, and netrun code calling it
        method = frame.f_code.co_name
        frame = frame.f_back
    if frame is None:
        return None
    frame = frame.f_back  # what the first caller outside netrun interrupted or was called by
    while frame is not None and not _is_netrun(frame):
        frame = frame.f_back
    if frame is None or frame.f_code in _USER_ENTRIES:
        return None
    return method, f"{frame.f_code.co_name} ({frame.f_globals.get('__name__')}:{frame.f_lineno})"
