"""Durations written as text: `30s`, `10m`, `2h`, `7d` (a number and a unit)."""

from __future__ import annotations

import re
from datetime import timedelta

from .errors import ConfigError

_DURATION = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([smhd])$")  # ASCII digits only
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def find_duration(text: str) -> timedelta | None:
    """The duration `text` spells, or None when it is not one."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        return None
    amount, unit = match.groups()
    try:
        return timedelta(**{_UNITS[unit]: float(amount)})
    except OverflowError:
        return timedelta.max


def parse_duration(text: str, *, what: str) -> timedelta:
    """As `find_duration`; raises ConfigError naming `what` for anything else."""
    found = find_duration(text)
    if found is None:
        raise ConfigError(f"{what} {text!r} is not a duration: a number and a unit, e.g. 30s, 10m, 2h, 7d")
    return found
