"""Wake-ups between the owner and remote workers: LISTEN/NOTIFY on PostgreSQL, polling everywhere.

The tables are the truth; a notification only saves a wait. The owner notifies a remote pool's
workers when it queued jobs for it (`WAKE_REMOTE`), and a worker notifies the owner when it reported
a result (`RESULT_READY`). Each side also looks on its own every fraction of a second (a worker's
`IDLE_WAIT`, the owner's sweep), so a lost notification, or an SQLite net (where both statements
do nothing), only costs that wait.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Callable
from typing import Any

from . import dialect

JOBS_CHANNEL = "netrun_jobs_"  # + the net's schema: jobs were queued (payload: the pool)
RESULTS_CHANNEL = "netrun_results_"  # + the net's schema: a result was reported (payload: the epoch)

WAKE_REMOTE = dialect.register("SELECT ?1 WHERE 0", "SELECT pg_notify('netrun_jobs_' || current_schema(), ?1)")
RESULT_READY = dialect.register("SELECT ?1 WHERE 0 AND 1",
                                "SELECT pg_notify('netrun_results_' || current_schema(), ?1)")


RESULT_IN_NOTICE = 5000  # bytes of a pickled result carried in its notification (PostgreSQL's limit: 8,000)


def result_notice(epoch_id: str, blob: bytes) -> str:
    """The payload announcing a reported result: its epoch, and the result itself when it is small
    (the owner then applies it without reading its row; the row is there: a notification is
    delivered only once its transaction committed)."""
    if len(blob) > RESULT_IN_NOTICE:
        return epoch_id
    return f"{epoch_id} {base64.b64encode(blob).decode()}"


def read_result_notice(text: str) -> tuple[str, bytes | None]:
    """(epoch, the result or None: read its row) from a `result_notice`."""
    epoch_id, _, data = text.partition(" ")
    try:
        return epoch_id, base64.b64decode(data, validate=True) if data else None
    except (binascii.Error, ValueError):
        return epoch_id, None


class Listener:
    """A thread that LISTENs on one channel of a PostgreSQL net (a connection of its own) and hands each
    payload to `callback`. A lost connection ends it quietly: polling goes on."""

    def __init__(self, target: Any, channel: str, callback: Callable[[str], None]) -> None:
        import psycopg

        from .pgconn import open_pg

        self._errors = psycopg.Error
        self._pg = open_pg(target)
        self._pg.execute(f'LISTEN "{channel}"')
        self._callback = callback
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"netrun-listen-{channel}")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for note in self._pg.notifies(timeout=0.2):
                    self._callback(note.payload)
            except self._errors:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pg.close()


def listen_for_results(conn: Any, notify: Callable[[str], None]) -> Listener | None:
    """The owner's listener for its remote workers' reports (None on SQLite: the sweep finds them)."""
    if getattr(conn, "dialect", None) != "postgres":
        return None
    return Listener(conn.target, RESULTS_CHANNEL + conn.target.schema, notify)


def listen_for_jobs(conn: Any, wake: Callable[[str], None]) -> Listener | None:
    """A worker's listener for new jobs of any pool (None on SQLite)."""
    if getattr(conn, "dialect", None) != "postgres":
        return None
    return Listener(conn.target, JOBS_CHANNEL + conn.target.schema, wake)
