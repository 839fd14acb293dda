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

    def now(self) -> datetime:
        return datetime.now(UTC)

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
