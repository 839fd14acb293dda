"""What the runner's parts see of a running net: protocols, so that no part imports the runner.

The owner loop (`runtime.Runtime`) holds the run state; the parts it drives (epoch ends,
actions, pools, the dead-letter queue, the inbox, restore, control) receive it typed as
`RunHost`, and a pool worker's `worker.WorkerHost` passes for the smaller `EpochHost`. Node
functions and lifecycle functions receive the net as a `NetHandle`. This module imports
only leaves, so the layers keep pointing one way (see `netrun/__init__.py`).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .clock import Clock
from .config import NetConfig, NodeConfig
from .journal import Journal
from .sim import Sim
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

    def query(self, sql: str, params: Any = ()) -> list[dict]: ...


class EpochHost(Protocol):
    """What running an epoch's attempts needs (the owner, or a pool worker)."""

    journal: Journal
    values: ValueStore
    clock: Clock
    graph_nodes: dict[str, Any]
    port_types: dict[str, dict[str, dict]]
    net: NetHandle

    def beat(self) -> None: ...


class RunHost(EpochHost, Protocol):
    """The owner's run state, as the runner's parts use it."""

    config: NetConfig
    sim: Sim
    configs: dict[str, NodeConfig]
    functions: dict[str, NodeFunctions]
    waiting: dict[str, OrderedDict[str, None]]
    ready_count: Counter[str]
    running_count: Counter[str]
    inflight: Counter[str]
    attempt_base: dict[str, int]
    paused: bool
    owner: Any  # owner.Owner
    pools: Any  # pools.PoolManager
    inbox: Any  # inbox.Inbox
    dead_letters: Any  # deadletters.DeadLetterQueue
    control: Any  # control.Controller
    history: Any  # history.HistoryLog
    ends: Any  # epoch.EpochEnds

    def do(self, action: str, events: list, **fields: Any) -> None: ...
    def track(self, events: list) -> None: ...
    def node(self, name: str) -> Any: ...
    def set_functions(self, node: str, funcs: NodeFunctions) -> None: ...
    def startable_in_sim(self) -> int: ...
    def commit(self) -> None: ...
