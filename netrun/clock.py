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


_EPOCH_DAY = datetime(1970, 1, 1, tzinfo=UTC).toordinal()


class Stamps:
    """ISO text (as `iso` writes it) and microseconds since 1970 of UTC times, made cheaply for times
    close together: the text up to the second is kept for the second it names (`iso` and the
    subtraction of two datetimes cost ~2 us per time; this, ~0.5 us)."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def of(self, moment: datetime) -> tuple[str, int]:
        if moment.tzinfo is not UTC:
            moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        second = (moment.toordinal() - _EPOCH_DAY) * 86400 + moment.hour * 3600 + moment.minute * 60 + moment.second
        if second != self._second:
            self._prefix = moment.isoformat(timespec="seconds")[:-6] + "."  # without "+00:00"
            self._second = second
        micro = moment.microsecond
        return f"{self._prefix}{micro:06d}+00:00", second * 1_000_000 + micro

    def of_micros(self, us: int) -> tuple[str, int]:
        """As `of`, for a time given as microseconds since 1970 (the system clock's `time_ns() // 1000`:
        no datetime made but once a second)."""
        second, micro = divmod(us, 1_000_000)
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6] + "."
            self._second = second
        return f"{self._prefix}{micro:06d}+00:00", us


def iso(moment: datetime) -> str:
    """ISO-8601 UTC text with microseconds, e.g. `2026-01-02T03:04:05.678901+00:00`."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds")
