"""Deferred packet operations (`defer_net_actions=True`).

Every operation of the epoch is checked at once against a local view of the epoch
(which packets are inside, how many are loaded in each output port, how often each
output salvo condition was sent), so misuse raises at the call, as in immediate mode;
but nothing reaches the sim until the exec function returns successfully. Then the
queue is applied in order and journaled with the epoch's other rows, in one
transaction. On failure the queue is simply dropped: the sim never saw it, and the
epoch's input packets are still whole (their values too, so a retry can consume them
again).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import netrun_sim as ns

from . import faults
from .actions import EpochOps
from .context import Packet
from .errors import ContextUsageError, PortFull, SalvoConditionError
from .graphio import NodeShape
from .journal import Journal
from .sim import Location, Sim
from .values import ValueStore

_keys = itertools.count(1)


class DeferredPacket:
    """A packet created by a deferred epoch. Usable in every context operation;
    its `id` exists only once the epoch's actions are committed."""

    __slots__ = ("_key", "_resolved", "_node")

    def __init__(self, node_name: str) -> None:
        self._key = f"deferred:{next(_keys)}"
        self._resolved: str | None = None
        self._node = node_name

    @property
    def id(self) -> str:
        if self._resolved is None:
            raise ContextUsageError(
                f"node {self._node!r}: a DeferredPacket has no ID until its epoch's deferred actions are committed "
                "(after the exec function returns successfully)", node_name=self._node)
        return self._resolved

    @property
    def resolved(self) -> bool:
        return self._resolved is not None

    def __repr__(self) -> str:
        return f"DeferredPacket({self._resolved or 'uncommitted'})"


def _count_ok(state: Any, count: int, capacity: int | None) -> bool:
    if isinstance(state, str):
        if state == "empty":
            return count == 0
        if state == "nonempty":
            return count > 0
        if state == "full":
            return capacity is not None and count >= capacity
        return capacity is None or count < capacity  # nonfull
    op, n = state
    return {"eq": count == n, "lt": count < n, "gt": count > n, "le": count <= n, "ge": count >= n}[op]


def _term_ok(term: Any, counts: dict[str, int], capacities: dict[str, int | None]) -> bool:
    if term is True or term is False:
        return term
    head = term[0]
    if head == "port":
        return _count_ok(term[2], counts.get(term[1], 0), capacities.get(term[1]))
    if head == "and":
        return all(_term_ok(t, counts, capacities) for t in term[1])
    if head == "or":
        return any(_term_ok(t, counts, capacities) for t in term[1])
    return not _term_ok(term[1], counts, capacities)


class DeferredActions(EpochOps):
    """Queues an epoch's operations; `apply()` hands them to the sim at success."""

    def __init__(self, epoch_id: str, node_name: str, ports: dict[str, str], *, values: ValueStore,
                 node: ns.Node, shape: NodeShape, types: dict[str, dict] | None, beat: Callable[[], None]) -> None:
        super().__init__(epoch_id, node_name, ports, values=values, node=node, types=types, beat=beat)
        self.queue: list[tuple] = []
        self._conditions = shape.out_conditions
        self._capacity = shape.out_capacity
        self._loaded: dict[str, int] = dict.fromkeys(shape.out_capacity, 0)
        self._sent: dict[str, int] = {}
        self._created: dict[str, DeferredPacket] = {}
        self._serialized: dict[str, tuple[str, bytes]] = {}
        self.kept: dict[str, bytes] = {}  # packet key -> its consumed value as kept (consumed_packet_storage)

    def _packet_key(self, packet: Any, port: str | None) -> str:
        if isinstance(packet, DeferredPacket):
            return packet._key
        return super()._packet_key(packet, port)

    # -- the context operations ------------------------------------------------------------
    def _take(self, packet: Packet | DeferredPacket) -> tuple[str, Any]:
        self.beat()
        key = self._check_inside(packet)
        if key in self._created:
            return key, self.values.materialize(key, *self._serialized[key])
        return key, self.values.get(key)

    def _consumed(self, key: str, value: Any) -> Any:
        if key not in self._created:
            self._check_type("input", self.ports.get(key), key, value)
        kept = self.values.kept_data(key, value, where=self._where())  # fails now, never in apply()
        if kept is not None:
            self.kept[key] = kept
        self.inside.discard(key)
        self.received[key] = value
        self.queue.append(("consume", key))
        faults.hit("between_actions")
        return value

    def _create(self, serialized: tuple[str, bytes]) -> DeferredPacket:
        self.beat()
        packet = DeferredPacket(self.node_name)
        self._created[packet._key] = packet
        self._serialized[packet._key] = serialized
        self.inside.add(packet._key)
        self.queue.append(("create", packet._key, serialized))
        return packet

    def create(self, value: Any) -> DeferredPacket:
        packet = self._create(self.values.serialize(value, where=self._where()))
        if self.out_types:
            self.created[packet._key] = value
        return packet

    def create_from_value_func(self, func: Callable[[], Any]) -> DeferredPacket:
        return self._create(self.values.serialize_func(func, where=self._where()))

    def load(self, port_name: str, packet: Packet | DeferredPacket) -> None:
        self.beat()
        if port_name not in self._loaded:
            raise self._no_output_port(port_name, self._loaded)
        key = self._check_inside(packet, port_name)
        known, value = self._value_for_out_check(key, port_name)
        if known:
            self._check_type("output", port_name, key, value)
        capacity = self._capacity[port_name]
        if capacity is not None and self._loaded[port_name] >= capacity:
            raise PortFull(f"{self._where(port_name)}: output port is full ({capacity} slots), cannot load "
                           f"packet {key}; send a salvo first or give the port more slots",
                           node_name=self.node_name, port_name=port_name, packet_id=key)
        self._loaded[port_name] += 1
        self.inside.discard(key)
        self.queue.append(("load", port_name, key))

    def send(self, salvo_condition_name: str) -> None:
        self.beat()
        condition = self._conditions.get(salvo_condition_name)
        if condition is None:
            raise self._no_condition(salvo_condition_name, self._conditions)
        sent = self._sent.get(salvo_condition_name, 0)
        max_salvos = condition["max_salvos"]
        if max_salvos != "infinite" and sent >= max_salvos:
            raise SalvoConditionError(f"{self._where()}: output salvo {salvo_condition_name!r} was already sent "
                                      f"{sent} time(s), its maximum", node_name=self.node_name,
                                      salvo_condition=salvo_condition_name)
        if not _term_ok(condition["term"], self._loaded, self._capacity):
            raise SalvoConditionError(f"{self._where()}: output salvo condition {salvo_condition_name!r} is not met "
                                      f"(loaded: {self._loaded})", node_name=self.node_name,
                                      salvo_condition=salvo_condition_name)
        for port, count in condition["ports"].items():
            taken = self._loaded.get(port, 0) if count == "all" else min(count, self._loaded.get(port, 0))
            self._loaded[port] = self._loaded.get(port, 0) - taken
        self._sent[salvo_condition_name] = sent + 1
        self.queue.append(("send", salvo_condition_name))

    # -- commit ----------------------------------------------------------------------------------
    def apply(self, sim: Sim, journal: Journal) -> None:
        """Hand the queue to the owner's sim in order and journal it (the caller commits). Everything that
        can fail was done at the calls (checks, serialization): applying only replays them."""
        resolved = apply_queue(sim, journal, self.values, self.epoch_id, self.node_name, self.queue, self.kept,
                               self.held)
        for key, packet in self._created.items():
            packet._resolved = resolved.get(key)


def apply_queue(sim: Sim, journal: Journal, values: ValueStore, epoch_id: str, node: str, queue: list[tuple],
                kept: dict[str, bytes], held: list[tuple[str, bytes | None]]) -> dict:
    """Apply a deferred queue to the sim, journaling each action; returns deferred key -> packet ID.

    Queue entries: ("consume", key), ("create", key, (kind, data)), ("load", port, key),
    ("send", condition). Used at a deferred epoch's success, and by the main process for
    epochs that ran in a pool. Consumed packets are appended to `held` (packet ID, value as
    kept): their values stay stored until the epoch ends.
    """
    resolved: dict[str, str] = {}
    for op in queue:
        kind = op[0]
        if kind == "consume":
            key = op[1]
            packet_id = resolved.get(key, key)
            journal.record("ConsumePacket", sim.consume_packet(packet_id), epoch_id=epoch_id,
                           packet_id=packet_id, node_name=node)
            held.append((packet_id, kept.get(key)))
        elif kind == "create":
            key, serialized = op[1], op[2]
            packet_id, events = sim.create_packet(epoch_id)
            journal.record("CreatePacket", events, epoch_id=epoch_id, packet_id=packet_id, node_name=node,
                           created_at=Location("node", node, None, epoch_id))
            values.store(packet_id, serialized)
            resolved[key] = packet_id
        elif kind == "load":
            port, key = op[1], op[2]
            packet_id = resolved.get(key, key)
            journal.record("LoadPacketIntoOutputPort", sim.load_output_port(packet_id, port),
                           epoch_id=epoch_id, packet_id=packet_id, node_name=node, data={"port": port})
        else:
            journal.record("SendOutputSalvo", sim.send_output_salvo(epoch_id, op[1]), epoch_id=epoch_id,
                           node_name=node, data={"salvo_condition": op[1]})
    return resolved
