"""What a node function sees: `Packet`, `NodeExecutionContext`, `NodeFailureContext`.

The context is a thin facade; the work is done by an `EpochActions` object owned by
the runtime (`netrun.actions`), which applies each operation to the sim and journals it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, Protocol

from .errors import ContextUsageError, EpochCancelled
from .params import Params

EMPTY = Params()


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet handle: its netrun ID (a ULID string, stable across restarts)."""

    id: str


class EpochActions(Protocol):
    def consume(self, packet: Packet) -> Any: ...
    async def consume_async(self, packet: Packet) -> Any: ...
    def create(self, value: Any) -> Packet: ...
    def create_from_value_func(self, func: Callable[[], Any]) -> Packet: ...
    def load(self, port_name: str, packet: Packet) -> None: ...
    def send(self, salvo_condition_name: str) -> None: ...


def _current_task() -> asyncio.Task | None:
    loop = asyncio._get_running_loop()  # None outside a loop (a sync run): no exception raised per call
    return None if loop is None else asyncio.current_task(loop)


class NodeExecutionContext:
    """Passed to a sync `exec_node_func(ctx, packets)`: every method is a plain call."""

    def __init__(self, *, epoch_id: str, node_name: str, net: Any, actions: EpochActions,
                 retry_count: int = 0, retry_timestamps: list[datetime] | None = None,
                 retry_exceptions: list[BaseException] | None = None,
                 check_deadline: Callable[[], None] | None = None, params: Params = EMPTY) -> None:
        self.epoch_id = epoch_id
        self.node_name = node_name
        self.params = params  # the node's params: read-only, nested values frozen
        self.retry_count = retry_count
        self.retry_timestamps = list(retry_timestamps or [])
        self.retry_exceptions = list(retry_exceptions or [])
        self._net = net
        self._actions = actions
        self._task = _current_task()
        self._check_deadline = check_deadline  # raises EpochTimeout once the epoch's timeout has passed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} node={self.node_name!r} epoch={self.epoch_id}>"

    def _guard(self, method: str) -> None:
        """Past the epoch's timeout every call raises EpochTimeout (nothing more reaches the net); a sync
        context used from inside a coroutine its exec function started is a mix-up."""
        if self._check_deadline is not None:
            self._check_deadline()
        if _current_task() is not self._task:
            raise ContextUsageError(
                f"node {self.node_name!r}: ctx.{method}() of a sync exec function was called from async code; "
                "a sync exec function's ctx methods are plain calls (make the exec function async to await them)",
                node_name=self.node_name)

    def consume_packet(self, packet: Packet) -> Any:
        """Return the packet's value (calling its value function) and consume it."""
        self._guard("consume_packet")
        return self._actions.consume(packet)

    def create_packet(self, value: Any) -> Packet:
        """Create a packet holding `value` inside this epoch."""
        self._guard("create_packet")
        return self._actions.create(value)

    def create_packet_from_value_func(self, func: Callable[[], Any]) -> Packet:
        """Create a packet whose value is computed by `func()` when it is consumed."""
        self._guard("create_packet_from_value_func")
        return self._actions.create_from_value_func(func)

    def load_output_port(self, port_name: str, packet: Packet) -> None:
        """Move a packet from inside this epoch into one of the node's output ports."""
        self._guard("load_output_port")
        self._actions.load(port_name, packet)

    def send_output_salvo(self, salvo_condition_name: str) -> None:
        """Send the loaded output ports' packets onto their edges."""
        self._guard("send_output_salvo")
        self._actions.send(salvo_condition_name)

    def heartbeat(self) -> None:
        """Tell netrun this epoch is alive. A thread-pool epoch renews its lease on every context
        call; one that computes longer than the net's `lease_seconds` without any should call this."""
        if self._check_deadline is not None:
            self._check_deadline()
        self._actions.heartbeat()

    def cancel_epoch(self) -> NoReturn:
        """Cancel this epoch: its packets are destroyed. Raises EpochCancelled."""
        raise EpochCancelled(f"node {self.node_name!r} cancelled epoch {self.epoch_id}",
                             node_name=self.node_name, epoch_id=self.epoch_id)


class _Pending:
    """What an async context's method returns: the operation runs when awaited.

    Used without `await` (as a value, in a condition, or never awaited at all) it raises
    ContextUsageError instead of silently doing nothing.
    """

    __slots__ = ("_ctx", "_method", "_run", "_awaited")

    def __init__(self, ctx: AsyncNodeExecutionContext, method: str, run: Callable[[], Any]) -> None:
        self._ctx, self._method, self._run, self._awaited = ctx, method, run, False
        ctx._pending.add(self)

    def __await__(self):
        self._awaited = True
        self._ctx._pending.discard(self)
        result = self._run()
        if inspect.isawaitable(result):
            result = yield from result.__await__()
        return result

    def _misuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        self._ctx._pending.discard(self)
        raise self._ctx.not_awaited(self._method)

    __bool__ = __iter__ = __len__ = __getattr__ = __getitem__ = __call__ = _misuse  # type: ignore[assignment]
    __add__ = __radd__ = __int__ = __str__ = _misuse  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<pending ctx.{self._method}(): await it>"


class AsyncNodeExecutionContext(NodeExecutionContext):
    """Passed to an async `exec_node_func(ctx, packets)`: every method must be awaited."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pending: set[_Pending] = set()

    def _guard(self, method: str) -> None:  # an async context may be awaited from any task
        return None

    def not_awaited(self, method: str) -> ContextUsageError:
        return ContextUsageError(
            f"node {self.node_name!r}: ctx.{method}() of an async exec function must be awaited "
            f"(`await ctx.{method}(...)`); was it passed to sync code?", node_name=self.node_name)

    def check_all_awaited(self) -> None:
        """Raise if an operation was started but never awaited (it did not happen)."""
        if self._pending:
            method = next(iter(self._pending))._method
            self._pending.clear()
            raise self.not_awaited(method)

    def consume_packet(self, packet: Packet) -> Any:
        return _Pending(self, "consume_packet", lambda: self._actions.consume_async(packet))

    def create_packet(self, value: Any) -> Any:
        return _Pending(self, "create_packet", lambda: self._actions.create(value))

    def create_packet_from_value_func(self, func: Callable[[], Any]) -> Any:
        return _Pending(self, "create_packet_from_value_func", lambda: self._actions.create_from_value_func(func))

    def load_output_port(self, port_name: str, packet: Packet) -> Any:
        return _Pending(self, "load_output_port", lambda: self._actions.load(port_name, packet))

    def send_output_salvo(self, salvo_condition_name: str) -> Any:
        return _Pending(self, "send_output_salvo", lambda: self._actions.send(salvo_condition_name))


@dataclass
class NodeFailureContext:
    """Passed to `exec_failed_node_func(ctx)` after a failed attempt."""

    epoch_id: str
    node_name: str
    retry_count: int
    retry_timestamps: list[datetime]
    retry_exceptions: list[BaseException]
    input_salvo: dict[str, list[Packet]]
    packet_values: dict[str, Any] = field(default_factory=dict)
    _net: Any = None
    params: Params = EMPTY  # the node's params, as `ctx.params` of the exec function


class NodeNet:
    """What `start_node_func(net)` and `stop_node_func(net)` receive: the net seen from one node.

    `net.params` and `net.node_name` are the node's, `net.net` the net itself; everything else
    is the net's own (`query`, `db_path`, ..., looked up on the net it wraps).
    """

    def __init__(self, net: Any, node_name: str, params: Params) -> None:
        self.net = net
        self.node_name = node_name
        self.params = params

    def __getattr__(self, name: str) -> Any:  # only for names the view itself lacks
        if name == "net":  # (not set yet, as in a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.net, name)

    def __repr__(self) -> str:
        return f"<NodeNet node={self.node_name!r} of {self.net!r}>"
