"""Packet operations of a running epoch, applied to the sim as they happen.

Misuse is reported with netrun errors that name the node, port and packet; the sim's
own errors are translated here, at the one boundary where that context is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import netrun_sim as ns

import inspect
from abc import ABC, abstractmethod

from . import faults
from .context import Packet
from .errors import PacketNotInEpoch, PacketTypeMismatch, PortFull, PortNotFound, SalvoConditionError
from .journal import Journal
from .sim import Location, Sim
from .values import FUNC, ValueStore, resolve_sync


class EpochOps(ABC):
    """What both flavours share: the epoch's identity, its packets, and misuse errors.

    Its collaborators: the value store, the node's graph node and port types (None: untyped), and
    `beat`, called on each operation (a pool worker renews its lease there; the owner does nothing).
    """

    def __init__(self, epoch_id: str, node_name: str, ports: dict[str, str], *, values: ValueStore,
                 node: ns.Node, types: dict[str, dict] | None, beat: Callable[[], None]) -> None:
        self.values = values
        self.node = node
        self.beat = beat
        self.epoch_id = epoch_id
        self.node_name = node_name
        self.ports = ports  # input packet ID -> the input port it came from
        self.inside = set(ports)  # keys of packets inside the epoch (not yet consumed or loaded)
        self.received: dict[str, Any] = {}  # packet key -> value consumed, for the failure context
        # Packets consumed and applied to the sim, with their value as kept (or None): their stored
        # values stay until the epoch ends (then dropped or kept; dead-lettered if it fails).
        self.held: list[tuple[str, bytes | None]] = []
        self.created: dict[str, Any] = {}  # packet key -> value, for packets created by this epoch
        self.in_types = types["in"] if types else {}
        self.out_types = types["out"] if types else {}

    def _check_type(self, side: str, port: str | None, key: str, value: Any) -> None:
        """Raise PacketTypeMismatch if `port` has a type that `value` does not match."""
        ptype = (self.in_types if side == "input" else self.out_types).get(port)
        if ptype is not None and not ptype.accepts(value):
            raise PacketTypeMismatch(
                f"{self._where()} {side} port {port!r}: packet {key} holds a {type(value).__name__}, "
                f"expected {ptype.describe()}", node_name=self.node_name, port_name=port, packet_id=key,
                expected=ptype.describe(), actual=type(value).__name__)

    def _value_for_out_check(self, key: str, port: str) -> tuple[bool, Any]:
        """(known, value) of a packet about to be loaded into a typed output port.

        A value function's value is not known before consumption: not checked here."""
        if port not in self.out_types:
            return False, None
        if key in self.created:
            return True, self.created[key]
        stored = self.values.peek(key)
        if stored is None or stored.kind == FUNC:
            return False, None
        return True, self.values.materialize(key, *stored)

    def _where(self, port: str | None = None) -> str:
        where = f"node {self.node_name!r} epoch {self.epoch_id}"
        return f"{where} port {port!r}" if port else where

    def _packet_key(self, packet: Any, port: str | None) -> str:
        if not isinstance(packet, Packet):
            raise TypeError(f"{self._where(port)}: expected a Packet, got {packet!r}")
        return packet.id

    def _check_inside(self, packet: Any, port: str | None = None) -> str:
        key = self._packet_key(packet, port)
        if key not in self.inside:
            raise PacketNotInEpoch(
                f"{self._where(port)}: packet {key} is not inside this epoch "
                "(already consumed or loaded, or it belongs to another epoch)",
                node_name=self.node_name, epoch_id=self.epoch_id, packet_id=key, port_name=port)
        return key

    def _no_output_port(self, port_name: str, ports: Any) -> PortNotFound:
        return PortNotFound(f"{self._where()}: no output port {port_name!r} (output ports: "
                            f"{', '.join(sorted(ports)) or 'none'})", node_name=self.node_name, port_name=port_name)

    def _no_condition(self, name: str, conditions: Any) -> SalvoConditionError:
        return SalvoConditionError(f"{self._where()}: no output salvo condition {name!r} "
                                   f"(conditions: {', '.join(sorted(conditions)) or 'none'})",
                                   node_name=self.node_name, salvo_condition=name)

    def heartbeat(self) -> None:
        """The epoch is alive: a pool worker renews its lease (see README "Leases")."""
        self.beat()

    # consume = _take (may give an awaitable, for an async value function) + _consumed
    def consume(self, packet: Any) -> Any:
        key, value = self._take(packet)
        return self._consumed(key, resolve_sync(value))

    async def consume_async(self, packet: Any) -> Any:
        key, value = self._take(packet)
        if inspect.isawaitable(value):
            value = await value
        return self._consumed(key, value)

    def _take(self, packet: Any) -> tuple[str, Any]:
        key = self._check_inside(packet)
        return key, self.values.get(key)

    @abstractmethod
    def _consumed(self, key: str, value: Any) -> Any:
        """Record the consumption of `key` (its value now known); returns the value."""


class ImmediateActions(EpochOps):
    """Each operation is one sim action, journaled at once (`defer_net_actions=False`): the owner's
    sim and journal are its collaborators too."""

    def __init__(self, epoch_id: str, node_name: str, ports: dict[str, str], *, values: ValueStore,
                 node: ns.Node, types: dict[str, dict] | None, beat: Callable[[], None], sim: Sim,
                 journal: Journal) -> None:
        super().__init__(epoch_id, node_name, ports, values=values, node=node, types=types, beat=beat)
        self.sim = sim
        self.journal = journal

    def _consumed(self, packet_id: str, value: Any) -> Any:
        self._check_type("input", self.ports.get(packet_id), packet_id, value)
        kept = self.values.kept_data(packet_id, value, where=self._where())
        events = self.sim.consume_packet(packet_id)
        self.journal.record("ConsumePacket", events, epoch_id=self.epoch_id, packet_id=packet_id,
                            node_name=self.node_name)
        self.held.append((packet_id, kept))
        self.inside.discard(packet_id)
        self.received[packet_id] = value
        faults.hit("between_actions")
        return value

    def _new_packet(self) -> str:
        packet_id, events = self.sim.create_packet(self.epoch_id)
        self.journal.record("CreatePacket", events, epoch_id=self.epoch_id, packet_id=packet_id,
                            node_name=self.node_name,
                            created_at=Location("node", self.node_name, None, self.epoch_id))
        self.inside.add(packet_id)
        faults.hit("between_actions")
        return packet_id

    def create(self, value: Any) -> Packet:
        serialized = self.values.serialize(value, where=self._where())
        packet_id = self._new_packet()
        self.values.store(packet_id, serialized)
        if self.out_types:
            self.created[packet_id] = value
        return Packet(packet_id)

    def create_from_value_func(self, func: Callable[[], Any]) -> Packet:
        serialized = self.values.serialize_func(func, where=self._where())
        packet_id = self._new_packet()
        self.values.store(packet_id, serialized)
        return Packet(packet_id)

    def load(self, port_name: str, packet: Packet) -> None:
        node = self.node
        if port_name not in node.out_ports:
            raise self._no_output_port(port_name, node.out_ports)
        packet_id = self._check_inside(packet, port_name)
        known, value = self._value_for_out_check(packet_id, port_name)
        if known:
            self._check_type("output", port_name, packet_id, value)
        try:
            events = self.sim.load_output_port(packet_id, port_name)
        except ns.OutputPortFullError as exc:
            raise PortFull(f"{self._where(port_name)}: output port is full, cannot load packet {packet_id}; "
                           "send a salvo first or give the port more slots",
                           node_name=self.node_name, port_name=port_name, packet_id=packet_id) from exc
        self.journal.record("LoadPacketIntoOutputPort", events, epoch_id=self.epoch_id, packet_id=packet_id,
                            node_name=self.node_name, data={"port": port_name})
        self.inside.discard(packet_id)

    def send(self, salvo_condition_name: str) -> None:
        node = self.node
        if salvo_condition_name not in node.out_salvo_conditions:
            raise self._no_condition(salvo_condition_name, node.out_salvo_conditions)
        try:
            events = self.sim.send_output_salvo(self.epoch_id, salvo_condition_name)
        except (ns.SalvoConditionNotMetError, ns.MaxSalvosExceededError) as exc:
            raise SalvoConditionError(f"{self._where()}: cannot send output salvo {salvo_condition_name!r}: {exc}",
                                      node_name=self.node_name, salvo_condition=salvo_condition_name) from exc
        self.journal.record("SendOutputSalvo", events, epoch_id=self.epoch_id, node_name=self.node_name,
                            data={"salvo_condition": salvo_condition_name})
