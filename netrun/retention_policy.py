"""A running net's `retention` option: a thread of its own prunes while the owner's loop runs.

The pruner works on a connection of its own, in short IMMEDIATE transactions (netrun.retention): the
owner's commits wait for one of them at most, on the file's write lock (netrun.db), and SQLite's work
(the GIL released) runs on another core than the owner's Python. What it deletes ended before the
limit and no run changes it again; what it reads of live state (kept epochs, live packets, pending
dead letters, the actions that mention what stays) is read again in the transaction that deletes
around it, or can only grow by objects too young to prune (see netrun.retention).

The owner starts the thread from its loop once a prune is due (`tick`) and joins it when the loop
ends (`stop`: a pause, a blocked run, close), so no thread outlives a run. The thread stops after
the transaction it is in. An error of the thread (a full disk, a lost server) is raised by the
owner's next `tick`, and so stops the run as any storage error does.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

from .db import open_connection
from .durations import parse_duration
from .retention import Pruner


class RetentionPolicy:
    """Prune every EVERY seconds what ended more than `retention` ago. Pruning costs ~20-30 us of
    SQLite's time per epoch in a running soak (tools/soak.py), against ~200 us to run a trivial one,
    and it runs beside the owner, not in its turn."""

    EVERY = 1.0
    LAG = 5.0  # seconds the ID numbers and history are pruned behind the limit (see Pruner)

    def __init__(self, target: str, retention: str, clock: Any) -> None:
        """`target`: the net's file or PostgreSQL URL, which the thread opens for itself."""
        self.age = parse_duration(retention, what="retention")
        self.target = target
        self.clock = clock
        self._stop = threading.Event()
        # kept across runs: its pass over the ID numbers goes on (see Pruner); its connection is the thread's
        self.pruner = Pruner(None, lag=min(self.age, timedelta(seconds=self.LAG)), stop=self._stop)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._next = clock.monotonic() + self.EVERY

    def tick(self) -> None:
        """(owner) Raise what the thread met; start it once a prune is due.

        Raises: whatever the thread's last prune raised (apsw.Error, StorageError)."""
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        if self._thread is None and self.clock.monotonic() >= self._next:
            self._thread = threading.Thread(target=self._run, name="netrun-retention", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """(owner) Stop the thread after the transaction it is in, and join it. Idempotent."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._stop.clear()

    def _run(self) -> None:
        try:
            conn = open_connection(self.target)
        except BaseException as exc:  # handed to the owner, which raises it
            self._error = exc
            return
        self.pruner.conn = conn
        try:
            while not self._stop.is_set():
                wait = self._next - self.clock.monotonic()
                if wait > 0:
                    # at most EVERY at a time: an injected clock may run ahead of the wall clock
                    self._stop.wait(min(wait, self.EVERY))
                    continue
                # no vacuum: a running net reuses the pages it frees (giving them back to the file system
                # only to grow the file again costs the run); `netrun prune` gives them back
                self.pruner.prune(self.age, self.clock.now(), vacuum=False)
                self._next = self.clock.monotonic() + self.EVERY
        except BaseException as exc:  # handed to the owner, which raises it
            self._error = exc
        finally:
            self.pruner.conn = None
            conn.close()
