"""What a node function sees: `Packet`, `NodeExecutionContext`, `NodeFailureContext`.

The context is a thin facade; the work is done by an `EpochActions` object owned by
the runtime (`netrun.actions`), which applies each operation to the sim and journals it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from .errors import EpochCancelled

if TYPE_CHECKING:
    from .net import Net


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet handle: its netrun ID (a ULID string, stable across restarts)."""

    id: str


class EpochActions(Protocol):
    def consume(self, packet: Packet) -> Any: ...
    def create(self, value: Any) -> Packet: ...
    def create_from_value_func(self, func: Callable[[], Any]) -> Packet: ...
    def load(self, port_name: str, packet: Packet) -> None: ...
    def send(self, salvo_condition_name: str) -> None: ...


class NodeExecutionContext:
    """Passed to `exec_node_func(ctx, packets)`; sync flavour."""

    def __init__(self, *, epoch_id: str, node_name: str, net: Net, actions: EpochActions,
                 retry_count: int = 0, retry_timestamps: list[datetime] | None = None,
                 retry_exceptions: list[BaseException] | None = None) -> None:
        self.epoch_id = epoch_id
        self.node_name = node_name
        self.retry_count = retry_count
        self.retry_timestamps = list(retry_timestamps or [])
        self.retry_exceptions = list(retry_exceptions or [])
        self._net = net
        self._actions = actions

    def __repr__(self) -> str:
        return f"<NodeExecutionContext node={self.node_name!r} epoch={self.epoch_id}>"

    def consume_packet(self, packet: Packet) -> Any:
        """Return the packet's value (calling its value function) and consume it."""
        return self._actions.consume(packet)

    def create_packet(self, value: Any) -> Packet:
        """Create a packet holding `value` inside this epoch."""
        return self._actions.create(value)

    def create_packet_from_value_func(self, func: Callable[[], Any]) -> Packet:
        """Create a packet whose value is computed by `func()` when it is consumed."""
        return self._actions.create_from_value_func(func)

    def load_output_port(self, port_name: str, packet: Packet) -> None:
        """Move a packet from inside this epoch into one of the node's output ports."""
        self._actions.load(port_name, packet)

    def send_output_salvo(self, salvo_condition_name: str) -> None:
        """Send the loaded output ports' packets onto their edges."""
        self._actions.send(salvo_condition_name)

    def cancel_epoch(self) -> NoReturn:
        """Cancel this epoch: its packets are destroyed. Raises EpochCancelled."""
        raise EpochCancelled(f"node {self.node_name!r} cancelled epoch {self.epoch_id}",
                             node_name=self.node_name, epoch_id=self.epoch_id)


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
