"""Per-node print capture.

A node function's `print` is replaced by injecting a dispatcher into the function's
`__globals__` (SPEC "Node-Level Logging"). The dispatcher looks up the capture active
in the current context (a ContextVar set only while a capturing node runs), so two
nodes defined in one module never see each other's output, and a node with
`capture_stdout=False` (or code outside any epoch) prints normally.
"""

from __future__ import annotations

import builtins
import contextvars
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .tracebacks import storable_text


@dataclass
class Capture:
    """Lines printed by one epoch's user code."""

    echo: bool
    lines: list[str] = field(default_factory=list)


_active: contextvars.ContextVar[Capture | None] = contextvars.ContextVar("netrun_capture", default=None)


def _dispatching_print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None,
                       flush: bool = False) -> None:
    capture = _active.get()
    if capture is None or file is not None:
        builtins.print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    buffer = io.StringIO()
    builtins.print(*args, sep=sep, end=end, file=buffer)
    text = storable_text(buffer.getvalue())
    capture.lines.append(text[:-1] if text.endswith("\n") else text)
    if capture.echo:
        builtins.print(*args, sep=sep, end=end, flush=flush)


_dispatching_print.netrun_capture = True  # type: ignore[attr-defined]


def install(func: Callable[..., Any]) -> None:
    """Make `print` inside `func`'s module go through the dispatcher.

    A module that defines its own `print` is left alone.
    """
    namespace = _globals_of(func)
    if namespace is None:
        return
    existing = namespace.get("print")
    if existing is None or getattr(existing, "netrun_capture", False):
        namespace["print"] = _dispatching_print


def _globals_of(func: Any) -> dict | None:
    """The module globals `func` will run with: functions, bound methods, partials, callable objects."""
    for _ in range(8):  # unwrap partials of partials, methods of objects...
        if isinstance(func, functools.partial):
            func = func.func
        elif hasattr(func, "__func__"):
            func = func.__func__
        elif hasattr(func, "__globals__"):
            return func.__globals__
        elif callable(func) and hasattr(type(func), "__call__") and not isinstance(func, type):
            func = type(func).__call__
        else:
            return None
    return None


class capturing:  # noqa: N801 - used as a function: `with capturing(...) as capture`
    """Capture prints of the code run inside the block (when `enabled`); the block gets the
    `Capture` (None when not enabled: prints inside go to stdout, even under an outer capture).
    A class, not a generator: it runs around every epoch."""

    __slots__ = ("_capture", "_token")

    def __init__(self, enabled: bool, echo: bool) -> None:
        self._capture = Capture(echo=echo) if enabled else None

    def __enter__(self) -> Capture | None:
        self._token = _active.set(self._capture)
        return self._capture

    def __exit__(self, *exc_info: Any) -> None:
        _active.reset(self._token)
