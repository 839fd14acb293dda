"""Time, injected: netrun never reads the wall clock directly.

Timestamps written to the database are ISO-8601 UTC text (`2026-01-02T03:04:05.678901+00:00`),
which SQLite's date functions accept. Tests pass their own `Clock` (or freeze Python's
clock with freezegun: SQLite's own clock is never used, values are bound as parameters).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (for rate limits and timeouts)."""

    def sleep(self, seconds: float) -> None:
        """Wait; a test clock may just advance."""


class SystemClock:
    """The real clock."""

    def __init__(self) -> None:
        self._second = -1  # the second whose ISO text (up to the seconds) `_prefix` holds
        self._prefix = ""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def stamp(self) -> tuple[str, int]:
        """The time as `iso()` text and as microseconds since 1970, both from one reading (the journal
        stamps every record: the text up to the seconds is made once a second)."""
        moment = datetime.now(UTC)
        second = int(moment.timestamp())
        micro = moment.microsecond
        if second != self._second:
            self._prefix = moment.strftime("%Y-%m-%dT%H:%M:%S.")
            self._second = second
        return f"{self._prefix}{micro:06d}+00:00", second * 1_000_000 + micro

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def iso(moment: datetime) -> str:
    """ISO-8601 UTC text with microseconds, e.g. `2026-01-02T03:04:05.678901+00:00`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds")
