"""The owner's side of `operator_requests`: stops and injections asked by other processes.

Only the owner writes run state (see `owner.py`), so `netrun stop` and `netrun inject` leave
a row in the `operator_requests` table (the asking side is `ask_owner.py`) and the owner
loop applies it. The loop calls `poll()` on every turn; it costs one clock read, except at
most every `POLL_SECONDS`, when it reads `PRAGMA data_version` (no I/O: it changes only when
another connection committed) and, if that moved, the open requests (a partial index keeps
the read to them). The loop never waits longer than `POLL_SECONDS` (`wait_bound()`), so a
request is seen within about that long even while pool epochs run.

- An injection is applied in full or not at all: every item is checked first (node, input
  port, a finite port's room), then all are injected and the row answered in one commit.
  A net that no process runs takes its pending injections when a run next starts.
- A stop pauses the run (running epochs finish, nothing new starts) and is answered `done`
  once the loop has ended. A stop still open when a net is opened was meant for an owner
  that is gone: it is withdrawn then, so that it never pauses a later run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import netrun_sim as ns

from . import dialect
from .errors import NetrunError, PortFull, PortNotFound
from .graphio import get_node
from .inbox import Inbox
from .journal import Journal
from .sim import Sim
from .values import ValueStore

POLL_SECONDS = 0.1  # how often the loop looks for requests (a request waits at most about this long)


@dataclass(frozen=True)
class Item:
    """One thing to inject: a packet (`port` set) or a source epoch (`port` None)."""

    node: str
    port: str | None = None
    stored: tuple | None = None  # the packet's serialized value


def check_target(nodes: dict[str, ns.Node], node: str, port: str | None) -> None:
    """An injection's target exists: the node, and the input port when a packet is injected.

    Raises:
        NotFoundError: no such node. PortNotFound: the node has no such input port.
    """
    found = get_node(nodes, node)
    if port is not None and port not in found.in_ports:
        raise PortNotFound(f"node {node!r} has no input port {port!r} "
                           f"(input ports: {', '.join(sorted(found.in_ports)) or 'none'})",
                           node_name=node, port_name=port)


# Changes when another connection commits (SQLite: no I/O); on PostgreSQL, when a request arrives.
_CHANGED = dialect.register("PRAGMA data_version", "SELECT coalesce(max(id), 0) FROM operator_requests")


class RequestDesk:
    """Reads the open requests for the owner loop and applies them, as the owner.

    Its collaborators: the owner's journal, value store and sim, the graph's nodes, the inbox
    (an injection goes through it), and two of the owner's operations: `request_pause` (a stop)
    and `commit` (an answer is committed at once).
    """

    def __init__(self, journal: Journal, values: ValueStore, sim: Sim, graph_nodes: dict[str, ns.Node],
                 inbox: Inbox, *, request_pause: Callable[[], None], commit: Callable[[], None]) -> None:
        self.journal = journal
        self.values = values
        self.sim = sim
        self.graph_nodes = graph_nodes
        self.inbox = inbox
        self._request_pause = request_pause
        self._commit = commit
        self._conn = journal.conn
        self._next = 0.0  # monotonic time of the next look (0: at the loop's first turn)
        self._version: int | None = None
        self._stops: list[int] = []  # stops taken; answered when the loop ends
        stale = "kind = 'stop' AND state IN ('pending', 'taken')"
        if self._conn.execute(f"SELECT 1 FROM operator_requests WHERE {stale} LIMIT 1").fetchone():
            self._answer_sql("withdrawn", "the owner it was meant for is gone", where=stale)

    # -- the loop's calls -------------------------------------------------------------------
    def poll(self) -> None:
        """From the owner loop: apply the requests that arrived (a clock read between looks)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + POLL_SECONDS
        version = self._conn.execute(_CHANGED).fetchone()[0]
        if version == self._version:
            return
        self._version = version
        rows = self._conn.execute("SELECT id, kind, payload FROM operator_requests WHERE state = 'pending' "
                                  "ORDER BY id").fetchall()
        for request_id, kind, payload in rows:
            if kind == "stop":
                self._stop(request_id)
            else:
                self._inject(request_id, payload)

    def wait_bound(self, timeout: float | None) -> float:
        """The loop's wait, shortened so that the next look for requests is on time."""
        due = max(0.0, self._next - time.monotonic())
        return due if timeout is None else min(timeout, due)

    def loop_ended(self) -> None:
        """From the owner, when its loop ends: the stops it took are done (the caller commits)."""
        for request_id in self._stops:
            self._answer(request_id, "done", "paused")
        self._stops.clear()

    # -- applying -----------------------------------------------------------------------------
    def _stop(self, request_id: int) -> None:
        self._request_pause()
        self._stops.append(request_id)
        self._answer(request_id, "taken", None)
        self._commit()  # the asker learns at once that the pause has begun

    def _inject(self, request_id: int, payload: str) -> None:
        try:
            items = self._checked(payload)
        except NetrunError as exc:
            self._answer(request_id, "rejected", json.dumps({"error": type(exc).__name__, "message": str(exc)}))
            self._commit()
            return
        done: list[dict[str, Any]] = []
        for item in items:
            if item.port is None:
                done.append({"node": item.node, "epoch": self.inbox.inject_epoch(item.node, commit=False)})
            else:
                packet = self.inbox.inject_serialized(item.node, item.port, item.stored, commit=False)
                done.append({"node": item.node, "port": item.port, "packet": packet})
        self._answer(request_id, "done", json.dumps(done))
        self._commit()

    def _checked(self, payload: str) -> list[Item]:
        """Every item of an injection, checked before any is applied (an injection is all or nothing).

        Raises:
            NotFoundError / PortNotFound: an unknown node or input port. PortFull: a finite port
            lacks room for the packets the request brings it. NetrunError: a malformed payload.
        """
        try:
            raw = json.loads(payload)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's decoder goes
            raw = None
        if not isinstance(raw, list) or not raw or not all(
                isinstance(i, dict) and isinstance(i.get("node"), str) and isinstance(i.get("port"), (str, type(None)))
                for i in raw):
            raise NetrunError(f"malformed injection request {payload[:200]!r}: expected a list of "
                              '{"node": N, "port": P, "value": V} or {"node": N}')
        items = []
        arriving: dict[tuple[str, str], int] = {}
        for entry in raw:
            port = entry.get("port")
            check_target(self.graph_nodes, entry["node"], port)
            if port is None:
                items.append(Item(entry["node"]))
                continue
            where = f"injection into {entry['node']}.{port}"
            items.append(Item(entry["node"], port, self.values.serialize(entry.get("value"), where=where)))
            arriving[(entry["node"], port)] = arriving.get((entry["node"], port), 0) + 1
        for (node_name, port_name), count in arriving.items():
            spec = self.graph_nodes[node_name].in_ports[port_name].slots_spec  # (checked above)
            if isinstance(spec, ns.PortSlotSpecFinite) and \
                    self.sim.input_port_count(node_name, port_name) + count > spec.capacity:
                raise PortFull(f"node {node_name!r} input port {port_name!r} has no room for {count} more "
                               f"packet(s) (capacity {spec.capacity}); nothing injected",
                               node_name=node_name, port_name=port_name)
        return items

    def _answer(self, request_id: int, state: str, answer: str | None) -> None:
        self._answer_sql(state, answer, where="id = ?", params=(request_id,))

    def _answer_sql(self, state: str, answer: str | None, *, where: str, params: tuple = ()) -> None:
        journal = self.journal
        journal.add(f"UPDATE operator_requests SET state = ?, answered_at = ?, answer = ? WHERE {where}",
                    (state, journal.now(), answer, *params))


__all__ = ["POLL_SECONDS", "RequestDesk", "check_target"]
