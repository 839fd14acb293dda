"""The progress display of `netrun run` / `netrun resume`.

On a terminal, a rich `Live` table redrawn four times a second: epochs started, finished
and failed per node, packets waiting per edge, the rate and the time elapsed. Elsewhere
(a pipe, a log file, CI), one plain line every `interval` seconds. Both read the net's
in-memory status (`Net.poll()`, which takes no lock) and the waiting packets through the
inspector's own read-only connection, so the display never slows the run's transactions.
Counts include what earlier runs of the same file did.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ..inspector import NetInspector
    from ..net import Net

# "running": epochs whose code runs (a worker claimed them, or the main thread started them): the
# meaning `netrun status` has. "queued": handed to a pool, waiting for a worker of it.
_COLUMNS = ("startable", "queued", "running", "finished", "failed", "cancelled")


class Progress(ABC):
    """Counts for the display: this run's live status added to what the file held before it."""

    def __init__(self, net: Net, inspector: NetInspector, console: Console, before: dict[str, dict[str, int]], *,
                 interval: float) -> None:
        self.net = net
        self.inspector = inspector
        self.console = console
        self.interval = interval
        self.before = before  # inspector.node_counts() when the run began
        self.started = time.monotonic()

    def counts(self) -> dict[str, dict[str, int]]:
        status = self.net.poll()
        counts = {}
        for name, earlier in self.before.items():
            now = status.nodes.get(name)
            row = {key: earlier[key] + (getattr(now, key) if now else 0) for key in ("finished", "failed", "cancelled")}
            row["startable"] = now.startable if now else earlier["startable"]
            row["queued"] = now.queued if now else earlier.get("queued", 0)
            row["running"] = now.running if now else 0
            row["started"] = row["running"] + row["finished"] + row["failed"] + row["cancelled"]
            counts[name] = row
        return counts

    def ended(self, counts: dict[str, dict[str, int]]) -> int:
        """Epochs that ended during this run."""
        return sum(counts[n][k] - self.before[n][k] for n in counts for k in ("finished", "failed", "cancelled"))

    def headline(self, counts: dict[str, dict[str, int]]) -> str:
        elapsed = time.monotonic() - self.started
        ended = self.ended(counts)
        total = {k: sum(c[k] for c in counts.values()) for k in _COLUMNS}
        return (f"{elapsed:7.1f} s  {ended} epochs ended ({ended / elapsed if elapsed > 0 else 0:.0f}/s)  "
                f"running {total['running']}  queued {total['queued']}  startable {total['startable']}  "
                f"failed {total['failed']}")

    @abstractmethod
    def start(self) -> None:
        """Begin showing progress (from a thread of the display's own)."""

    @abstractmethod
    def stop(self) -> None:
        """Stop showing progress; returns once the display's thread is done."""


class LiveProgress(Progress):
    def render(self) -> Group:
        counts = self.counts()
        table = Table(header_style="bold", title_justify="left")
        table.add_column("node")
        for column in _COLUMNS:
            table.add_column(column, justify="right")
        for name, row in counts.items():
            table.add_row(Text(name), *(str(row[c]) for c in _COLUMNS))
        parts: list = [Text(self.headline(counts), style="bold"), table]
        waiting = self.inspector.waiting()
        edges = Table(header_style="bold", title="packets waiting", title_justify="left")
        for column in ("from", "to", "packets"):
            edges.add_column(column, justify="right" if column == "packets" else "left")
        for edge in waiting["edges"]:
            edges.add_row(Text(edge["from"]), Text(edge["to"]), str(edge["packets"]))
        for port in waiting["input_ports"]:
            edges.add_row(Text("(at port)"), Text(f"{port['node']}.{port['port']}"), str(port["packets"]))
        if edges.row_count:
            parts.append(edges)
        return Group(*parts)

    def start(self) -> None:
        self._live = Live(get_renderable=self.render, console=self.console, refresh_per_second=4, transient=True)
        self._live.start()

    def stop(self) -> None:
        self._live.stop()


class PlainProgress(Progress):
    """One line per interval, for logs."""

    def start(self) -> None:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="netrun-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            counts = self.counts()
            waiting = self.inspector.waiting()
            queued = sum(e["packets"] for e in waiting["edges"]) + sum(p["packets"] for p in waiting["input_ports"])
            per_node = ", ".join(f"{n} {c['started']}/{c['finished']}/{c['failed']}" for n, c in counts.items())
            self.console.print(Text(f"{self.headline(counts)}  waiting {queued}  started/finished/failed: {per_node}"))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()
