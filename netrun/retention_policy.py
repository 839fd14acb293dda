"""A running net's `retention` option: a thread of its own prunes while the owner's loop runs.

The pruner works on a connection of its own, in short IMMEDIATE transactions (netrun.retention): the
owner's commits wait for one of them at most, on the file's write lock (netrun.db), and SQLite's work
(the GIL released) runs on another core than the owner's Python. What it deletes ended before the
limit and no run changes it again; what it reads of live state (kept epochs, live packets, pending
dead letters, the actions that mention what stays) is read again in the transaction that deletes
around it, or can only grow by objects too young to prune (see netrun.retention).

The thread also checkpoints the write-ahead log while it runs: deletes write as many pages as the
inserts they undo, so a pruned run fills the log about twice as fast, and each checkpoint made by an
owner's commit cost it ~4 % of its time (py-spy, tools/soak.py). The owner's commits tell the thread
once the log holds half of WAL_PAGES (a WAL hook, in place of the owner's own autocheckpoint); a
passive checkpoint needs no write lock, so the owner's commits go on meanwhile. It backfills only
the pages written before it began: a log that still reaches WAL_PAGES (a writer faster than the
thread) is checkpointed by the owner's commit, as before, so the log keeps its bound.

The owner starts the thread from its loop once a prune is due (`tick`) and joins it when the loop
ends (`stop`: a pause, a blocked run, close), so no thread outlives a run; the owner checkpoints
for itself again from then on. The thread stops after
the transaction it is in. An error of the thread (a full disk, a lost server) is raised by the
owner's next `tick`, and so stops the run as any storage error does.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import apsw

from .db import WAL_PAGES, open_connection
from .durations import parse_duration
from .retention import Pruner


class RetentionPolicy:
    """Prune every EVERY seconds what ended more than `retention` ago, beside the owner rather than in
    its turn: 300,000 values through tools/soak.py took 258 s with retention "1m" and 257 s with "1h"
    (nothing old enough to prune), where the owner pruning for itself took 276 s (one loaded machine,
    one run after the other)."""

    EVERY = 1.0
    LAG = 5.0  # seconds the ID numbers and history are pruned behind the limit (see Pruner)

    def __init__(self, conn: Any, target: str, retention: str, clock: Any) -> None:
        """`conn`: the owner's connection; `target`: the net's file or PostgreSQL URL, which the thread
        opens for itself."""
        self.age = parse_duration(retention, what="retention")
        self.owner_conn = conn
        self.target = target
        self.clock = clock
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by stop() and when the log wants a checkpoint
        self._checkpoint = False
        self._file = getattr(conn, "dialect", None) != "postgres"  # (PostgreSQL has no log to checkpoint)
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
            if self._file:
                self.owner_conn.set_wal_hook(self._log_grew)  # (replaces the owner's autocheckpoint)

    def _log_grew(self, conn: apsw.Connection, name: str, pages: int) -> int:
        """(owner, after each commit) Have the thread checkpoint the log; checkpoint it here if the log
        reached WAL_PAGES all the same."""
        if pages >= WAL_PAGES:
            try:
                conn.wal_checkpoint(name)
            except apsw.Error:
                # (busy: the thread's checkpoint runs.) An error raised here would fail the commit that
                # just succeeded; SQLite's own autocheckpoint ignores it too, and the next commit retries.
                pass
        elif pages >= WAL_PAGES // 2 and not self._checkpoint:
            self._checkpoint = True
            self._wake.set()
        return apsw.SQLITE_OK

    def stop(self) -> None:
        """(owner) Stop the thread after the transaction it is in, and join it. Idempotent."""
        if self._thread is None:
            return
        if self._file:
            self.owner_conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_PAGES}")  # the owner's own again
        self._stop.set()
        self._wake.set()
        self._thread.join()
        self._thread = None
        self._stop.clear()
        self._wake.clear()

    def _run(self) -> None:
        try:
            conn = open_connection(self.target)
        except BaseException as exc:  # handed to the owner, which raises it
            self._error = exc
            return
        self.pruner.conn = conn
        try:
            while not self._stop.is_set():
                if self._checkpoint:
                    self._checkpoint = False
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                wait = self._next - self.clock.monotonic()
                if wait > 0:
                    # at most EVERY at a time: an injected clock may run ahead of the wall clock
                    self._wake.wait(min(wait, self.EVERY))
                    self._wake.clear()
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
