"""Named fault points, for crash tests: the process kills itself (SIGKILL) at a point.

Nothing is armed unless a test or the crash harness calls `arm()` in the process that
should die; `hit()` is then one dict lookup. Points:
- `after_commit`: right after a journal transaction is committed;
- `between_actions`: between two packet operations of a running epoch;
- `checkpoint_before_rename`: a checkpoint's snapshot is written but not yet in place.
"""

from __future__ import annotations

import os
import signal

_armed: dict[str, int] = {}


def arm(point: str, after: int = 1) -> None:
    """Kill this process the `after`-th time `point` is hit."""
    _armed[point] = after


def hit(point: str) -> None:
    if not _armed or point not in _armed:
        return
    _armed[point] -= 1
    if _armed[point] <= 0:
        os.kill(os.getpid(), signal.SIGKILL)
