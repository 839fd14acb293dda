"""The sim's events, read field by field only where netrun-sim sets them (netrun.sim `_events`), say
exactly what reading every field of every event says, through runs that create, move, consume,
cancel, fail and resume (where netrun's IDs differ from the sim's)."""

from __future__ import annotations

from collections import Counter

import pytest

import netrun
from netrun.graphs import chain
from netrun.sim import OUTSIDE, Event, Sim

from .helpers import collect


def every_field(sim: Sim, raw: list) -> list[Event]:
    """Each event with every field read, in order (what netrun did before it read fields by kind)."""
    out = []
    for ev in raw:
        epoch, packet = ev.epoch_id, ev.packet_id
        epoch = sim._from_sim.get(epoch, epoch) if epoch is not None else None
        packet = sim._from_sim.get(packet, packet) if packet is not None else None
        if ev.kind == "EpochCreated":
            node = sim._epoch_node[epoch] = sim._net.get_epoch(ev.epoch_id).node_name
        else:
            node = sim._epoch_node.get(epoch) if epoch is not None else ev.node_name
        location = sim._location(ev.to_location) if ev.kind == "PacketMoved" else \
            OUTSIDE if ev.kind == "PacketOrphaned" else None
        out.append(Event(ev.kind, epoch, packet, node, ev.salvo_condition, location))
        if ev.kind in ("PacketConsumed", "PacketDestroyed") and packet in sim._to_sim:
            del sim._from_sim[sim._to_sim.pop(packet)]
    return out


@pytest.fixture
def checked(monkeypatch):
    """Every event list the sim gives is also read field by field (on a copy of the sim's maps); the
    kinds seen are counted."""
    kinds: Counter = Counter()
    fast = Sim._events

    def both(self, raw):
        maps = (self._epoch_node, self._from_sim, self._to_sim)
        saved = [dict(m) for m in maps]
        slow = every_field(self, raw)
        for live, before in zip(maps, saved):
            live.clear()
            live.update(before)
        events = fast(self, raw)
        assert events == slow
        kinds.update(ev.kind for ev in events)
        return events

    monkeypatch.setattr(Sim, "_events", both)
    return kinds


def forward(ctx, packets):
    for packet in packets["in"]:
        value = ctx.consume_packet(packet)
        ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def picky(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if value == "bad":
        ctx.create_packet("left inside")  # destroyed with the failed epoch (when not deferred)
        raise ValueError("bad value")
    if value == "skip":
        ctx.cancel_epoch()
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


@pytest.mark.parametrize("deferred", [False, True])
def test_events_read_by_kind_match_every_field_read(tmp_path, checked, deferred):
    seen: list = []
    db = tmp_path / "run.db"
    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=db, on_error="continue")
    net.set_node_exec("A", forward)
    net.set_node_exec("B", picky)
    net.set_node_exec("Sink", collect(seen))
    for name in ("A", "B"):
        net.set_node_config(name, defer_net_actions=deferred)
    for value in ("one", "bad", "skip", "two"):
        net.inject_packet("A", "in", value)
    net.start()
    # left waiting at B's input for the resume: its sim IDs will differ from netrun's
    net.set_node_exec("B", None)
    net.inject_packet("A", "in", "after")
    net.start()
    net.close()
    with netrun.Net.resume(db) as net:
        net.set_node_exec("A", forward)
        net.set_node_exec("B", picky)
        net.set_node_exec("Sink", collect(seen))
        net.start()
    assert sorted(seen) == ["after", "one", "two"]
    for kind in ("EpochCreated", "EpochStarted", "EpochFinished", "EpochCancelled", "PacketCreated", "PacketMoved",
                 "PacketConsumed", "PacketDestroyed", "InputSalvoTriggered", "OutputSalvoTriggered"):
        assert checked[kind] > 0, kind
