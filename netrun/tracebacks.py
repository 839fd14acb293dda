"""Failure text: an error's one-line summary and its formatted traceback, full or shortened.

Tracebacks are formatted only when an attempt fails (never on the hot path) and stored as
text (`epoch_attempts.traceback`, `dead_letters.traceback`), so they survive the process,
a pickle across a process pool, and an exception that cannot be pickled at all.
"""

from __future__ import annotations

import traceback as _traceback

SHORT_FRAMES = 3  # frames per exception that `shorten()` keeps (the innermost ones)


def storable_text(text: str) -> str:
    """`text` as SQLite stores it (valid UTF-8): a lone surrogate, such as a file name decoded
    with `surrogateescape` puts in a message or a printed line, becomes its `\\udcXX` escape
    rather than failing the commit that writes it."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def error_text(error: BaseException) -> str:
    """`Type: message`, with any notes (e.g. a failure callback that raised) appended. An error
    carried as text from a pool worker (`RemoteError`) keeps its original type's name."""
    try:
        message = str(error)
    except Exception as exc:  # noqa: BLE001 - a broken __str__ must not hide the failure
        message = f"<str() raised {type(exc).__name__}>"
    if getattr(error, "remote", False):
        return storable_text(message)
    text = f"{type(error).__name__}: {message}"
    notes = getattr(error, "__notes__", None)
    if notes:
        text += " [" + "; ".join(str(n) for n in notes) + "]"
    return storable_text(text)


def error_type(error: BaseException) -> str:
    """The error's class name (the original's, for an error carried as text from a worker)."""
    return getattr(error, "type_name", None) if getattr(error, "remote", False) else type(error).__name__


def format_traceback(error: BaseException) -> str:
    """The whole formatted traceback, chained causes included (text kept with the failure).
    An error carried from a pool worker gives the worker's text."""
    carried = getattr(error, "traceback", None) if getattr(error, "remote", False) else None
    if isinstance(carried, str) and carried:
        return storable_text(carried)
    try:
        return storable_text("".join(_traceback.format_exception(type(error), error, error.__traceback__)))
    except Exception:  # noqa: BLE001 - an exception whose formatting fails still leaves its summary
        return error_text(error) + "\n"


def skip_first_frame(error: BaseException) -> BaseException:
    """Drop netrun's own calling frame, so a node's traceback starts in the node's code."""
    tb = error.__traceback__
    if tb is not None and tb.tb_next is not None:
        error.__traceback__ = tb.tb_next
    return error


def shorten(text: str | None, frames: int = SHORT_FRAMES) -> str | None:
    """A traceback with only the innermost `frames` frames of each exception in its chain
    ("... N frames hidden (--full shows them)" says what was left out)."""
    if not text:
        return text
    out: list[str] = []
    entries: list[list[str]] = []  # the current exception's frames, each its lines
    in_frames = False

    def flush() -> None:
        hidden = len(entries) - frames
        if hidden > 0:
            out.append(f"  ... {hidden} frame{'s' if hidden > 1 else ''} hidden (--full shows them)")
        for entry in entries[max(hidden, 0):]:
            out.extend(entry)
        entries.clear()

    for line in text.rstrip("\n").split("\n"):
        if line.startswith("Traceback (most recent call last):"):
            out.append(line)
            in_frames = True
        elif in_frames and line.startswith("  File "):
            entries.append([line])
        elif in_frames and line.startswith("  ") and entries:  # its code, markers, "[Previous line repeated]"
            entries[-1].append(line)
        else:
            if in_frames:
                flush()
                in_frames = False
            out.append(line)
    if in_frames:
        flush()
    return "\n".join(out)
