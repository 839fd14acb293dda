"""Injected work, admitted into netrun-sim in bounded batches.

netrun-sim's `run_until_blocked` costs time in proportion to the epochs and packets it
holds, for every step it takes. A user who injects 100,000 source epochs or packets at
once would make every later step slow. So `inject_source_epoch`/`inject_packet` write the
work to the database at once (the epoch or packet exists, with its netrun ID, its rows and
its history), but hand it to the sim only when the sim's backlog has room: the `inbox`
table holds what is not yet admitted.

Ports with a finite capacity skip the inbox, so that a full port is reported at injection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import netrun_sim as ns
from ulid import ULID

from .errors import PortFull, PortNotFound
from .graphio import get_node
from .journal import Journal
from .sim import Event, Location, Sim
from .values import ValueStore

# Startable epochs the sim may hold before admission waits (more where the pools may hold more in flight,
# so that admission never starves a pool). Its steps cost time per epoch held: with 256 rather than 1,000,
# the owner spent ~5% less CPU per value through a pool (process pool of 2, thread pool of 32).
ADMIT_LIMIT = 256
ADMIT_CHUNK = 64  # admission waits for room for this many (or for all that is pending): each costs a commit and a read


class Inbox:
    """Injected work, written at once and admitted into the owner's sim when its backlog has room.

    Its collaborators: the owner's journal, value store and sim, the graph's nodes, and two of the
    owner's operations: `track` (the epochs admitted join the run state), `startable_in_sim`
    (the backlog that bounds admission) and `most_in_flight` (the most pool epochs that may be
    handed to workers at once: the bound keeps room for them).
    """

    def __init__(self, journal: Journal, values: ValueStore, sim: Sim, graph_nodes: dict[str, ns.Node], *,
                 track: Callable[[list[Event]], None], startable_in_sim: Callable[[], int],
                 most_in_flight: Callable[[], int]) -> None:
        self.journal = journal
        self.values = values
        self.sim = sim
        self.graph_nodes = graph_nodes
        self._track = track
        self._startable_in_sim = startable_in_sim
        self._most_in_flight = most_in_flight
        conn = journal.conn
        # Items with seq <= _seen are admitted (their DELETE may still be buffered).
        self._seen = 0
        self._buffered = False  # inbox rows added since the last commit of this inbox (read back by admit)
        self.pending = conn.execute("SELECT count(*) FROM inbox").fetchone()[0]

    def inject_epoch(self, node_name: str, *, commit: bool = True) -> str:
        get_node(self.graph_nodes, node_name)
        epoch_id = str(ULID())
        self.journal.record("CreateEpoch", [Event("EpochCreated", epoch_id, None, node_name)],
                            epoch_id=epoch_id, node_name=node_name, data={"salvo_condition": "inject"})
        self.journal.set_epoch_salvo(epoch_id, "inject", [])
        self.journal.add("INSERT INTO inbox (kind, item_id, node_name) VALUES ('epoch', ?, ?)", (epoch_id, node_name))
        self._buffered = True
        if commit:
            self.journal.commit()
            self._buffered = False
        self.pending += 1
        return epoch_id

    def inject_packet(self, node_name: str, port_name: str, value: Any) -> str:
        node = get_node(self.graph_nodes, node_name)
        port = node.in_ports.get(port_name)
        if port is None:
            raise PortNotFound(f"node {node_name!r} has no input port {port_name!r} "
                               f"(input ports: {', '.join(sorted(node.in_ports)) or 'none'})",
                               node_name=node_name, port_name=port_name)
        serialized = self.values.serialize(value, where=f"inject_packet({node_name!r}, {port_name!r})")
        return self.inject_serialized(node_name, port_name, serialized)

    def inject_serialized(self, node_name: str, port_name: str, serialized: tuple[str, bytes], *,
                          replay_of: str | None = None, commit: bool = True) -> str:
        """Inject an already serialized value (also how dead letters are replayed)."""
        port = get_node(self.graph_nodes, node_name).in_ports[port_name]
        data = {"to": "input_port", "port": port_name}
        if replay_of is not None:
            data["replay_of"] = replay_of
        if isinstance(port.slots_spec, ns.PortSlotSpecFinite):
            # Straight into the sim: a full finite port is reported now.
            packet_id, _ = self.sim.create_packet(None)
            try:
                moved = self.sim.move_to_input_port(packet_id, node_name, port_name)
            except ns.InputPortFullError as exc:
                self.sim.destroy_packet(packet_id)
                raise PortFull(f"node {node_name!r} input port {port_name!r} is full; packet not injected",
                               node_name=node_name, port_name=port_name) from exc
        else:
            packet_id = str(ULID())
            moved = [Event("PacketMoved", None, packet_id, node_name, None,
                           Location("input_port", node_name, port_name))]
            self.journal.add("INSERT INTO inbox (kind, item_id, node_name, port_name) VALUES ('packet', ?, ?, ?)",
                             (packet_id, node_name, port_name))
            self._buffered = True
            self.pending += 1
        self.journal.record("CreatePacket", [Event("PacketCreated", None, packet_id)], packet_id=packet_id,
                            created_at=Location("outside"))
        self.values.store(packet_id, serialized)
        self.journal.record("TransportPacketToLocation", moved, packet_id=packet_id, node_name=node_name, data=data)
        if commit:
            self.journal.commit()
            self._buffered = False
        return packet_id

    def admit(self) -> None:
        """Hand injected work to the sim while its backlog of startable epochs has room."""
        if self.pending <= 0:
            return
        room = max(ADMIT_LIMIT, self._most_in_flight() + ADMIT_CHUNK) - self._startable_in_sim()
        if room <= 0 or room < min(self.pending, ADMIT_CHUNK):
            return
        if self._buffered:  # injected rows are committed before they are read back
            self.journal.commit()
            self._buffered = False
        rows = self.journal.conn.execute(
            "SELECT seq, kind, item_id, node_name, port_name FROM inbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._seen, room)).fetchall()
        for seq, kind, item_id, node_name, port_name in rows:
            if kind == "epoch":
                _, events = self.sim.create_epoch(node_name, "inject", [], netrun_id=item_id)
                self._track(events)  # journaled at injection
            else:
                self.sim.create_packet(None, netrun_id=item_id)
                self.sim.move_to_input_port(item_id, node_name, port_name)
            self.journal.add("DELETE FROM inbox WHERE seq = ?", (seq,))
            self._seen = seq
            self.pending -= 1

    def epochs(self, node_name: str | None = None) -> list[str]:
        """Injected epochs not yet admitted (startable, from the user's point of view)."""
        self.journal.commit()
        sql = "SELECT item_id FROM inbox WHERE kind = 'epoch' AND seq > ?"
        params: tuple = (self._seen,)
        if node_name is not None:
            sql += " AND node_name = ?"
            params += (node_name,)
        return [row[0] for row in self.journal.conn.execute(sql + " ORDER BY seq", params)]
