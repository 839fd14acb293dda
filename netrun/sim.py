"""The only module that touches `netrun_sim.NetSim`.

It applies actions, turns the sim's events into plain `Event` records, and maps the
netrun-owned packet and epoch IDs to the sim's IDs. On a fresh net the two are the
same ULIDs; once a sim is rebuilt from the database it issues new IDs, and the maps
(`_to_sim`, `_from_sim`) keep netrun's IDs stable.
"""

from __future__ import annotations

from typing import NamedTuple

import netrun_sim as ns


class Location(NamedTuple):
    """Where a packet is: kind in outside, edge, input_port, node, output_port."""

    kind: str
    node_name: str | None = None
    port_name: str | None = None
    epoch_id: str | None = None
    from_node: str | None = None
    from_port: str | None = None


OUTSIDE = Location("outside")


class Event(NamedTuple):
    kind: str
    epoch_id: str | None = None
    packet_id: str | None = None
    node_name: str | None = None
    salvo_condition: str | None = None
    location: Location | None = None  # the destination, for PacketMoved / PacketCreated / PacketOrphaned


# Events and locations are made by the thousand per second: built from a tuple directly (a NamedTuple's
# own constructor is a Python function, called each time).
_new = tuple.__new__


class Sim:
    """A NetSim plus the bookkeeping netrun needs around it (epoch -> node, ID maps)."""

    def __init__(self, graph: ns.Graph) -> None:
        self.graph = graph
        self._net = ns.NetSim(graph)
        self._epoch_node: dict[str, str] = {}
        self._salvos: dict[str, tuple] = {}  # epoch -> its input salvo, read once (it never changes)
        self._to_sim: dict[str, str] = {}
        self._from_sim: dict[str, str] = {}
        # Locations without an epoch, made once (a graph has few ports and edges).
        self._input_ports: dict[tuple, Location] = {}
        self._edges: dict[tuple, Location] = {}
        # Whether an action since the last `run_until_blocked` may let the sim move on.
        self.changed = True

    # -- ID mapping -------------------------------------------------------------
    def _sim_id(self, netrun_id: str) -> str:
        return self._to_sim.get(netrun_id, netrun_id)

    def _netrun_id(self, sim_id: str | None) -> str | None:
        if sim_id is None:
            return None
        sim_id = str(sim_id)
        return self._from_sim.get(sim_id, sim_id)

    def node_of_epoch(self, epoch_id: str) -> str:
        return self._epoch_node[epoch_id]

    # -- events -------------------------------------------------------------------
    def _location(self, loc: ns.PacketLocation | None) -> Location | None:
        if loc is None:
            return None
        kind = loc.kind
        if kind == "InputPort":
            key = (loc.node_name, loc.port_name)
            found = self._input_ports.get(key)
            if found is None:
                found = self._input_ports[key] = Location("input_port", *key)
            return found
        if kind == "Node":
            epoch = self._netrun_id(loc.epoch_id)
            return _new(Location, ("node", self._epoch_node.get(epoch), None, epoch, None, None))
        if kind == "OutputPort":
            epoch = self._netrun_id(loc.epoch_id)
            return _new(Location, ("output_port", self._epoch_node.get(epoch), loc.port_name, epoch, None, None))
        if kind == "Edge":
            edge = loc.get_edge()
            source, target = edge.source, edge.target
            key = (source.node_name, source.port_name, target.node_name, target.port_name)
            found = self._edges.get(key)
            if found is None:
                found = self._edges[key] = Location("edge", key[2], key[3], None, key[0], key[1])
            return found
        return OUTSIDE

    def _events(self, raw: list) -> list[Event]:
        """The sim's events as `Event`s with netrun's IDs. Reading a field of a sim event costs ~0.1 us (it
        is converted each time): the frequent kinds read only the fields netrun-sim 0.2 sets for them."""
        out = []
        append = out.append
        from_sim, epoch_node = self._from_sim, self._epoch_node
        for ev in raw:
            kind = ev.kind
            if kind == "PacketMoved":
                packet = ev.packet_id
                if from_sim:
                    packet = from_sim.get(packet, packet)
                append(_new(Event, (kind, None, packet, None, None, self._location(ev.to_location))))
            elif kind == "EpochStarted" or kind == "EpochFinished":
                epoch = ev.epoch_id
                if from_sim:
                    epoch = from_sim.get(epoch, epoch)
                append(_new(Event, (kind, epoch, None, epoch_node.get(epoch), None, None)))
            elif kind == "InputSalvoTriggered" or kind == "OutputSalvoTriggered":
                epoch = ev.epoch_id
                if from_sim:
                    epoch = from_sim.get(epoch, epoch)
                append(_new(Event, (kind, epoch, None, epoch_node.get(epoch), ev.salvo_condition, None)))
            elif kind == "PacketCreated" or kind == "PacketConsumed":
                packet = ev.packet_id
                if from_sim:
                    packet = from_sim.get(packet, packet)
                append(_new(Event, (kind, None, packet, None, None, None)))
                if kind == "PacketConsumed":
                    self._forget_packet(packet)
            elif kind == "EpochCreated":
                sim_epoch = ev.epoch_id
                epoch = from_sim.get(sim_epoch, sim_epoch) if from_sim else sim_epoch
                created = self._net.get_epoch(sim_epoch)
                node = epoch_node[epoch] = created.node_name
                self._salvos[epoch] = self._salvo(created)  # read now: the owner asks for it next
                append(_new(Event, (kind, epoch, None, node, None, None)))
            else:
                append(self._event(ev, kind))
        return out

    def _event(self, ev: ns.NetEvent, kind: str) -> Event:
        """Any event, every field read (the rare kinds: cancellations, orphans, destroyed packets)."""
        from_sim = self._from_sim
        epoch = ev.epoch_id
        if epoch is not None and from_sim:
            epoch = from_sim.get(epoch, epoch)
        packet = ev.packet_id
        if packet is not None and from_sim:
            packet = from_sim.get(packet, packet)
        node = self._epoch_node.get(epoch) if epoch is not None else ev.node_name
        if kind == "PacketMoved":
            location = self._location(ev.to_location)
        elif kind == "PacketOrphaned":
            location = OUTSIDE
        else:
            location = None
            if kind == "PacketDestroyed":
                self._forget_packet(packet)
        return _new(Event, (kind, epoch, packet, node, ev.salvo_condition, location))

    def _forget_packet(self, packet: str) -> None:
        """A consumed or destroyed packet's sim ID is no longer mapped (its netrun ID was adopted)."""
        sim_id = self._to_sim.pop(packet, None)
        if sim_id is not None:
            del self._from_sim[sim_id]

    def _do(self, action: ns.NetAction, *, moves: bool = True) -> tuple[object, list[Event]]:
        """Do `action`. `moves`: whether it may give `run_until_blocked` work (a packet on an edge or at an
        input port). An action inside an epoch (start, consume, create there, load, finish) cannot: the
        sim moves packets from edges to input ports and triggers input salvos only, so after an epoch
        in the main thread there is nothing to advance, and no step is taken (each costs time per
        epoch the sim holds)."""
        if moves:
            self.changed = True
        response, raw = self._net.do_action(action)
        return response, self._events(raw)

    # -- actions (each returns the events it caused) ---------------------------------
    def run_until_blocked(self) -> list[Event]:
        self.changed = False
        return self._events(self._net.run_until_blocked())

    def _adopt(self, netrun_id: str | None, sim_id: str) -> None:
        """Map a sim ID to the netrun ID chosen for it earlier (injected or restored work)."""
        if netrun_id is not None and netrun_id != sim_id:
            self._to_sim[netrun_id] = sim_id
            self._from_sim[sim_id] = netrun_id

    def create_epoch(self, node_name: str, salvo_condition: str, packets: list[tuple[str, str]], *,
                     netrun_id: str | None = None) -> tuple[str, list[Event]]:
        salvo = ns.Salvo(salvo_condition, [(port, self._sim_id(p)) for port, p in packets])
        self.changed = True
        response, raw = self._net.do_action(ns.NetAction.create_epoch(node_name, salvo))
        self._adopt(netrun_id, str(response.epoch.id))
        return self._netrun_id(response.epoch.id), self._events(raw)

    def start_epoch(self, epoch_id: str) -> list[Event]:
        return self._do(ns.NetAction.start_epoch(self._sim_id(epoch_id)), moves=False)[1]

    def finish_epoch(self, epoch_id: str) -> list[Event]:
        events = self._do(ns.NetAction.finish_epoch(self._sim_id(epoch_id)), moves=False)[1]
        self._forget_epoch(epoch_id)
        return events

    def cancel_epoch(self, epoch_id: str) -> list[Event]:
        events = self._do(ns.NetAction.cancel_epoch(self._sim_id(epoch_id)))[1]
        self._forget_epoch(epoch_id)
        return events

    def restart_epoch(self, epoch_id: str) -> list[Event]:
        """Make a started epoch that took no action startable again, with the same IDs and salvo (the
        sim cannot un-start one: it is cancelled and rebuilt as a resume would). Returns only the
        EpochCreated event: the file never saw the rest (nothing of it is to be journaled)."""
        node = self._epoch_node[epoch_id]
        condition, packets = self.epoch_salvo(epoch_id)
        self.cancel_epoch(epoch_id)
        for port, packet in packets:
            self.create_packet(None, netrun_id=packet)
            self.move_to_input_port(packet, node, port)
        _, events = self.create_epoch(node, condition, packets, netrun_id=epoch_id)
        return [ev for ev in events if ev.kind == "EpochCreated"]

    def _forget_epoch(self, epoch_id: str) -> None:
        self._epoch_node.pop(epoch_id, None)
        self._salvos.pop(epoch_id, None)
        sim_id = self._to_sim.pop(epoch_id, None)
        if sim_id is not None:
            self._from_sim.pop(sim_id, None)

    def create_packet(self, epoch_id: str | None, *, netrun_id: str | None = None) -> tuple[str, list[Event]]:
        action = ns.NetAction.create_packet(self._sim_id(epoch_id) if epoch_id else None)
        if epoch_id is None:  # (inside an epoch it cannot move: see `_do`)
            self.changed = True
        response, raw = self._net.do_action(action)
        self._adopt(netrun_id, str(response.packet_id))
        return self._netrun_id(response.packet_id), self._events(raw)

    def consume_packet(self, packet_id: str) -> list[Event]:
        return self._do(ns.NetAction.consume_packet(self._sim_id(packet_id)), moves=False)[1]

    def destroy_packet(self, packet_id: str) -> list[Event]:
        return self._do(ns.NetAction.destroy_packet(self._sim_id(packet_id)))[1]

    def load_output_port(self, packet_id: str, port_name: str) -> list[Event]:
        return self._do(ns.NetAction.load_packet_into_output_port(self._sim_id(packet_id), port_name),
                        moves=False)[1]

    def send_output_salvo(self, epoch_id: str, salvo_condition: str) -> list[Event]:
        return self._do(ns.NetAction.send_output_salvo(self._sim_id(epoch_id), salvo_condition))[1]

    def move_to_edge(self, packet_id: str, edge: ns.Edge) -> list[Event]:
        loc = ns.PacketLocation.edge(edge)
        return self._do(ns.NetAction.transport_packet_to_location(self._sim_id(packet_id), loc))[1]

    def move_to_input_port(self, packet_id: str, node_name: str, port_name: str) -> list[Event]:
        loc = ns.PacketLocation.input_port(node_name, port_name)
        return self._do(ns.NetAction.transport_packet_to_location(self._sim_id(packet_id), loc))[1]

    # -- queries ------------------------------------------------------------------------
    def epoch_salvo(self, epoch_id: str) -> tuple[str, list[tuple[str, str]]]:
        """The input salvo of an epoch: (condition name, [(port, packet_id)]); the list is shared: read it only."""
        found = self._salvos.get(epoch_id)
        if found is None:
            found = self._salvos[epoch_id] = self._salvo(self._net.get_epoch(self._sim_id(epoch_id)))
        return found

    def _salvo(self, epoch: ns.Epoch) -> tuple[str, list[tuple[str, str]]]:
        salvo = epoch.in_salvo
        return salvo.salvo_condition, [(port, self._netrun_id(p)) for port, p in salvo.packets]

    def packets_in_epoch(self, epoch_id: str) -> list[str]:
        loc = ns.PacketLocation.node(self._sim_id(epoch_id))
        return [self._netrun_id(p) for p in self._net.get_packets_at_location(loc)]

    def packets_at_output_port(self, epoch_id: str, port_name: str) -> list[str]:
        loc = ns.PacketLocation.output_port(self._sim_id(epoch_id), port_name)
        return [self._netrun_id(p) for p in self._net.get_packets_at_location(loc)]

    def input_port_count(self, node_name: str, port_name: str) -> int:
        """How many packets wait at an input port (a finite port's room is its capacity less these)."""
        return self._net.packet_count_at(ns.PacketLocation.input_port(node_name, port_name))

    def is_blocked(self) -> bool:
        return self._net.is_blocked()
