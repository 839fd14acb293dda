"""What the runner's parts see of a running net: protocols, so that no part imports the runner.

The owner loop (`runtime.Runtime`) holds the run state and is the one place that changes it.
The parts it drives receive only the collaborators they use (the journal, the value store,
the sim, the graph's nodes, the node configs, and callables for the owner operations they
need), never the runtime itself. What remains here: `EpochHost`, what an epoch's attempts
(`epoch.AttemptLoop`) need, which the owner and a pool worker's `worker.WorkerHost` both
provide; and `NetHandle`, the net as node functions and lifecycle functions receive it. This
module imports only leaves, so the layers keep pointing one way (see `netrun/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import Clock
from .journal import Journal
from .values import ValueStore


@dataclass
class NodeFunctions:
    """A node's functions (any may be None)."""

    exec: Callable[..., Any] | None = None
    start: Callable[..., Any] | None = None
    stop: Callable[..., Any] | None = None
    failed: Callable[..., Any] | None = None


class NetHandle(Protocol):
    """The net as node code sees it (`ctx._net`, `start_node_func(net)`): at least read-only SQL."""

    db_path: str
    db_url: str  # what open_connection takes: the file or the PostgreSQL URL

    def query(self, sql: str, params: Any = ()) -> list[dict]: ...


class EpochHost(Protocol):
    """What running an epoch's attempts needs (the owner, or a pool worker). The owner's also gives
    its `sim`: a non-deferred epoch's operations apply to it as they happen (a pool worker's epochs
    are all deferred)."""

    journal: Journal
    values: ValueStore
    clock: Clock
    graph_nodes: dict[str, Any]
    node_shapes: dict[str, Any]  # graphio.NodeShape of each graph node
    port_types: dict[str, dict[str, dict]]
    net: NetHandle

    def beat(self) -> None: ...
