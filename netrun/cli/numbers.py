"""Numbers on the command line: counts SQLite can bind, and intervals that are positive."""

from __future__ import annotations

import argparse
import math

_LARGEST = 2**63 - 1  # SQLite's largest integer: a larger count cannot be bound to a query


def count(text: str) -> int:
    """A whole number from 0 up (argparse type): --limit, --recent, --depth, dead letter numbers."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 0 <= value <= _LARGEST:
        raise argparse.ArgumentTypeError(f"{text} is out of range (0 to {_LARGEST})")
    return value


def seconds(text: str) -> float:
    """A positive, finite number of seconds (argparse type): --interval."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return value
