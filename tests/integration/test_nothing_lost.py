"""Failures that must lose nothing and deliver nothing twice.

- A deferred epoch's end (its queue applied, values stored, consumed values kept, finish) is all
  or nothing: an error inside it fails the attempt, and nothing of it reaches the net.
- The values an epoch consumed stay stored until it ends; an epoch that fails for good puts
  them in the dead letters (with the packets still inside it), in every mode.
- A BaseException (KeyboardInterrupt, SystemExit) escaping node code ends the epoch by the crash
  semantics, inputs kept, before it propagates.
"""

from __future__ import annotations

import threading

import pytest

import netrun
from netrun.graphs import chain
from tests.integration.helpers import collect, rows


def lock_source(ctx, packets):
    """A packet whose value (from a value function) is a lock: it cannot be pickled."""
    ctx.load_output_port("out", ctx.create_packet_from_value_func(threading.Lock))
    ctx.send_output_salvo("send_out")


def send_then_consume(ctx, packets):
    """Create and send output first, consume the input last."""
    ctx.load_output_port("out", ctx.create_packet("derived"))
    ctx.send_output_salvo("send_out")
    ctx.consume_packet(packets["in"][0])


# -- 1. a deferred epoch's end is all or nothing ------------------------------------------------------

@pytest.mark.parametrize("retries", [0, 1])
def test_a_deferred_end_that_cannot_store_a_consumed_value_fails_whole_and_delivers_nothing(tmp_path, retries):
    seen: list = []
    db = tmp_path / "run.db"
    net = netrun.Net(chain("Source", "A", "Sink"), db=db, consumed_packet_storage=True, on_error="continue")
    net.set_node_exec("Source", lock_source)
    net.set_node_exec("A", send_then_consume)
    net.set_node_exec("Sink", collect(seen))
    net.set_node_config("A", defer_net_actions=True, retries=retries)
    net.inject_source_epoch("Source")
    net.start()
    net.close()
    assert seen == []
    attempts = rows(db, "SELECT outcome, error_type, error FROM epoch_attempts WHERE node_name = 'A' ORDER BY attempt")
    assert [a["outcome"] for a in attempts] == ["failed"] * (retries + 1)
    assert {a["error_type"] for a in attempts} == {"UnpicklableValue"}
    assert "lock" in attempts[0]["error"]
    [letter] = rows(db, "SELECT node_name, port_name, reason, value_kind FROM dead_letters")
    assert letter == {"node_name": "A", "port_name": "in", "reason": "failed", "value_kind": "func"}
    # nothing of the failed end reached the file: no 'derived' packet, A's epoch failed
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE node_name = 'Sink'") == [{"n": 0}]
    assert rows(db, "SELECT state FROM epochs WHERE node_name = 'A'") == [{"state": "failed"}]
    with netrun.Net.resume(db) as net:
        net.set_node_exec("A", send_then_consume)
        net.set_node_exec("Sink", collect(seen))
        net.start()
    assert seen == []


def test_a_deferred_end_that_fails_leaves_earlier_epochs_of_its_commit_group_whole(tmp_path):
    """Epochs before it in the same group commit are delivered exactly once, and so is the rest."""
    seen: list = []
    db = tmp_path / "run.db"

    def source(ctx, packets):
        for i in range(5):
            if i == 2:
                ctx.load_output_port("out", ctx.create_packet_from_value_func(threading.Lock))
            else:
                ctx.load_output_port("out", ctx.create_packet(i))
        ctx.send_output_salvo("send_out")

    def forward_any(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value if isinstance(value, int) else "lock"))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, consumed_packet_storage=True, on_error="continue") as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("A", forward_any)
        net.set_node_exec("Sink", collect(seen))
        net.set_node_config("A", defer_net_actions=True)
        net.set_node_config("Sink", defer_net_actions=True)
        net.inject_source_epoch("Source")
        net.start()
    assert sorted(seen) == [0, 1, 3, 4]
    assert rows(db, "SELECT node_name, reason FROM dead_letters") == [{"node_name": "A", "reason": "failed"}]


# -- 2. inputs are never lost ----------------------------------------------------------------------------

def consume_then_raise(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    raise KeyError("missing_key")


@pytest.mark.parametrize("mode", ["main", "deferred", "thread", "process", "async"])
def test_a_failed_epoch_dead_letters_the_value_it_consumed_and_replay_brings_it_back(tmp_path, mode):
    from tests.integration import pool_nodes

    seen: list = []
    db = tmp_path / "run.db"
    options = {"thread": {"thread_pools": {"t": {"size": 1}}}, "process": {"process_pools": {"p": {"size": 1}}}}
    func = pool_nodes.consume_then_raise if mode in ("thread", "process") else consume_then_raise
    if mode == "async":
        func = async_consume_then_raise
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", **options.get(mode, {})) as net:
        net.set_node_exec("A", func)
        net.set_node_exec("Sink", collect(seen))
        if mode == "deferred":
            net.set_node_config("A", defer_net_actions=True)
        if mode in ("thread", "process"):
            net.set_node_config("A", pool=mode[0])
        packet = net.inject_packet("A", "in", {"city": "Lyon"})
        net.start()
        [entry] = net.dead_letter_queue.get_all()
        assert (entry.packet_id, entry.node_name, entry.port_name, entry.reason) == (packet, "A", "in", "failed")
        assert entry.error == "KeyError: 'missing_key'"
        assert entry.value == {"city": "Lyon"}
        [epoch] = net.query("SELECT id FROM epochs WHERE node_name = 'A'")
        assert entry.epoch_id == epoch["id"]
        net.set_node_exec("A", pool_nodes.forward_value if mode in ("thread", "process") else _forward)
        net.dead_letter_queue.replay(entry)
        net.start()
    assert seen == [{"city": "Lyon"}]
    # the value was kept until the epoch ended, then moved to the dead letter: no value row is left behind
    assert rows(db, "SELECT count(*) AS n FROM packet_values") == [{"n": 0}]


async def async_consume_then_raise(ctx, packets):
    await ctx.consume_packet(packets["in"][0])
    raise KeyError("missing_key")


def _forward(ctx, packets):
    ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packets["in"][0])))
    ctx.send_output_salvo("send_out")


def test_a_cancelled_epoch_dead_letters_what_it_consumed(tmp_path):
    def consume_then_cancel(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        ctx.cancel_epoch()

    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="continue") as net:
        net.set_node_exec("A", consume_then_cancel)
        net.inject_packet("A", "in", 7)
        net.start()
        [entry] = net.dead_letter_queue.get_all()
    assert (entry.reason, entry.value, entry.port_name) == ("cancelled", 7, "in")


def test_an_epoch_that_finishes_still_drops_what_it_consumed(tmp_path):
    seen: list = []
    db = tmp_path / "run.db"
    with netrun.Net(chain("Source", "A", "Sink"), db=db) as net:
        net.set_node_exec("A", _forward)
        net.set_node_exec("Sink", collect(seen))
        net.inject_packet("A", "in", 1)
        net.start()
    assert seen == [1]
    assert rows(db, "SELECT count(*) AS n FROM packet_values") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]


# -- 8. interrupts ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_in_a_main_thread_node_dead_letters_its_value_before_propagating(tmp_path, interrupt):
    db = tmp_path / "run.db"

    def interrupted(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        raise interrupt()

    net = netrun.Net(chain("Source", "A", "Sink"), db=db)
    net.set_node_exec("A", interrupted)
    packet = net.inject_packet("A", "in", "precious")
    with pytest.raises(interrupt):
        net.start()
    # already in the dead letters when the exception arrives here
    [entry] = net.dead_letter_queue.get_all()
    net.close()
    assert (entry.packet_id, entry.reason, entry.node_name, entry.port_name, entry.value) == (
        packet, "interrupted", "A", "in", "precious")
    assert interrupt.__name__ in entry.error
    assert rows(db, "SELECT state FROM epochs WHERE node_name = 'A'") == [{"state": "cancelled"}]


def test_an_interrupt_from_run_step_keeps_the_value_too(tmp_path):
    db = tmp_path / "run.db"

    def interrupted(ctx, packets):
        raise KeyboardInterrupt

    with netrun.Net(chain("Source", "A", "Sink"), db=db) as net:
        net.set_node_exec("A", interrupted)
        net.inject_packet("A", "in", "precious")
        with pytest.raises(KeyboardInterrupt):
            net.run_step()
        [entry] = net.dead_letter_queue.get_all()
    assert (entry.reason, entry.value) == ("interrupted", "precious")


def test_an_interrupt_in_a_deferred_node_runs_it_again_on_resume_and_delivers_once(tmp_path):
    seen: list = []
    db = tmp_path / "run.db"
    calls = []

    def interrupted_once(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
        calls.append(value)
        if len(calls) == 1:
            raise KeyboardInterrupt

    net = netrun.Net(chain("Source", "A", "Sink"), db=db)
    net.set_node_exec("A", interrupted_once)
    net.set_node_exec("Sink", collect(seen))
    net.set_node_config("A", defer_net_actions=True)
    net.inject_packet("A", "in", "once")
    with pytest.raises(KeyboardInterrupt):
        net.start()
    net.close()
    assert seen == []
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
    with netrun.Net.resume(db) as net:
        net.set_node_exec("A", interrupted_once)
        net.set_node_exec("Sink", collect(seen))
        net.start()
    assert seen == ["once"]
    assert calls == ["once", "once"]


def test_an_end_that_breaks_half_way_writes_nothing_and_the_net_resumes_exactly_once(tmp_path, monkeypatch):
    """Everything that can fail is checked before a deferred queue is applied; should applying it
    still break half-way (a bug), nothing of the epoch is written and the net must be resumed."""
    from netrun.sim import Sim

    seen: list = []
    db = tmp_path / "run.db"
    real = Sim.consume_packet
    broken = {"on": True}

    def consume_packet(self, packet_id):
        if broken["on"]:
            raise RuntimeError("the sim refused")
        return real(self, packet_id)

    monkeypatch.setattr(Sim, "consume_packet", consume_packet)
    net = netrun.Net(chain("Source", "A", "Sink"), db=db)
    net.set_node_exec("A", send_then_consume)
    net.set_node_exec("Sink", collect(seen))
    net.set_node_config("A", defer_net_actions=True)
    net.inject_packet("A", "in", "input")
    with pytest.raises(RuntimeError, match="bug in netrun.*resume"):
        net.start()
    with pytest.raises(RuntimeError, match="bug in netrun"):
        net.start()  # memory no longer matches the file: it refuses to run on
    net.close()
    broken["on"] = False
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE node_name = 'Sink'") == [{"n": 0}]
    with netrun.Net.resume(db) as net:
        net.set_node_exec("A", send_then_consume)
        net.set_node_exec("Sink", collect(seen))
        net.start()
    assert seen == ["derived"]


def test_after_an_interrupt_in_a_deferred_node_the_same_net_runs_it_again(tmp_path):
    """The Ctrl-C was caught and the run started again in the same process: the epoch, startable
    again with the same ID and salvo, runs once more and delivers once."""
    seen: list = []
    calls = []
    db = tmp_path / "run.db"

    def interrupted_once(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
        calls.append((ctx.epoch_id, value))
        if len(calls) == 1:
            raise KeyboardInterrupt

    with netrun.Net(chain("Source", "A", "Sink"), db=db) as net:
        net.set_node_exec("A", interrupted_once)
        net.set_node_exec("Sink", collect(seen))
        net.set_node_config("A", defer_net_actions=True)
        net.inject_packet("A", "in", "once")
        with pytest.raises(KeyboardInterrupt):
            net.start()
        [epoch] = net.get_startable_epochs_by_node("A")
        assert net.poll().nodes["A"].startable == 1
        net.start()
    assert seen == ["once"]
    assert calls == [(epoch, "once"), (epoch, "once")]
    assert rows(db, "SELECT state FROM epochs WHERE node_name = 'A'") == [{"state": "finished"}]
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
