"""Deferred epochs (`defer_net_actions=True`): queued operations, checks at the call, retries,
the failure context, cancellation and timeouts."""

from __future__ import annotations

import pickle
from datetime import datetime

import pytest

import netrun
from netrun.deferred import DeferredPacket
from netrun.graphs import chain, edge, simple_node

from .helpers import collect, emit, FakeClock, forward, rows, stored_value

KINDS = {"ConsumePacket", "CreatePacket", "LoadPacketIntoOutputPort", "SendOutputSalvo", "FinishEpoch"}


def _count_call(path) -> None:
    """Append one mark to `path` (a call counter that survives the value function being cloudpickled)."""
    with open(path, "a") as handle:
        handle.write("x")


def deferred(net: netrun.Net, *nodes: str, **options) -> None:
    for node in nodes:
        net.set_node_config(node, defer_net_actions=True, **options)


def action_kinds(db) -> set[str]:
    return {r["name"] for r in rows(db, "SELECT DISTINCT name FROM history WHERE type = 'action'")} & KINDS


def created_packets(db) -> list[str]:
    return [r["packet_id"] for r in rows(db, "SELECT packet_id FROM history WHERE name = 'PacketCreated'")]


# -- a deferred chain behaves like an immediate one ---------------------------------------------------

@pytest.mark.parametrize("defer", [False, True], ids=["immediate", "deferred"])
def test_chain_delivers_every_value_with_the_same_action_kinds(tmp_path, db, defer):
    seen: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("Source", emit(1, 2, 3))
        net.set_node_exec("A", forward(lambda v: v * 10))
        net.set_node_exec("Sink", collect(seen))
        if defer:
            deferred(net, "Source", "A", "Sink")
        net.inject_source_epoch("Source")
        net.inject_packet("A", "in", 4)
        net.start()
    assert sorted(seen) == [10, 20, 30, 40]
    epochs = rows(db, "SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1")
    assert epochs == [{"node_name": "A", "state": "finished", "n": 4},
                      {"node_name": "Sink", "state": "finished", "n": 4},
                      {"node_name": "Source", "state": "finished", "n": 1}]
    assert action_kinds(db) == KINDS
    counts = {r["name"]: r["n"] for r in rows(
        db, "SELECT name, count(*) AS n FROM history WHERE type = 'action' GROUP BY name")}
    # 3 created by Source + 4 by A (+1 injected); 4 consumed by A + 4 by Sink; 5 epochs with output...
    assert counts["CreatePacket"] == 8 and counts["ConsumePacket"] == 8
    assert counts["LoadPacketIntoOutputPort"] == 7 and counts["SendOutputSalvo"] == 5
    assert counts["FinishEpoch"] == 9
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state != 'consumed'") == [{"n": 0}]


def test_deferred_and_immediate_history_have_the_same_action_kinds(tmp_path):
    kinds = []
    for defer in (False, True):
        db = tmp_path / f"run-{defer}.db"
        with netrun.Net(chain("Source", "A", "Sink"), db=db) as net:
            net.set_node_exec("Source", emit("a", "b"))
            net.set_node_exec("A", forward())
            net.set_node_exec("Sink", collect([]))
            if defer:
                deferred(net, "Source", "A", "Sink")
            net.inject_source_epoch("Source")
            net.start()
        kinds.append(rows(db, "SELECT name, count(*) AS n FROM history WHERE type = 'action' GROUP BY name "
                              "ORDER BY name"))
    assert kinds[0] == kinds[1]


# -- DeferredPacket ---------------------------------------------------------------------------------

def test_create_packet_returns_a_deferred_packet_whose_id_exists_only_after_commit(tmp_path, db):
    made: list = []
    id_errors: list = []
    seen: list = []

    def source(ctx, packets):
        packet = ctx.create_packet("payload")
        made.append(packet)
        try:
            packet.id
        except netrun.ContextUsageError as exc:
            id_errors.append(exc)
        ctx.load_output_port("out", packet)
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "Source")
        net.inject_source_epoch("Source")
        net.start()
    [packet] = made
    assert isinstance(packet, DeferredPacket)
    assert len(id_errors) == 1 and type(id_errors[0]) is netrun.ContextUsageError
    assert packet.resolved
    packet_id = packet.id
    assert isinstance(packet_id, str) and not packet_id.startswith("deferred:")
    assert rows(db, "SELECT id, state, node_name FROM packets WHERE id = ?", (packet_id,)) == [
        {"id": packet_id, "state": "consumed", "node_name": "Sink"}]
    assert created_packets(db) == [packet_id]
    assert seen == ["payload"]


def test_deferred_packet_consumed_in_its_own_epoch_returns_its_value(tmp_path, db):
    got: list = []
    seen: list = []

    def node(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        scratch = ctx.create_packet({"scratch": value})
        func_made = ctx.create_packet_from_value_func(lambda: ("lazy", value))
        got.append(ctx.consume_packet(scratch))
        got.append(ctx.consume_packet(func_made))
        out = ctx.create_packet([value, "sent"])
        ctx.load_output_port("out", out)
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("A", node)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A")
        net.inject_packet("A", "in", 7)
        net.start()
    assert got == [{"scratch": 7}, ("lazy", 7)]
    assert seen == [[7, "sent"]]
    assert rows(db, "SELECT state, count(*) AS n FROM packets GROUP BY 1") == [{"state": "consumed", "n": 4}]
    assert rows(db, "SELECT count(*) AS n FROM packet_values") == [{"n": 0}]


# -- misuse raises at the call ------------------------------------------------------------------------

def _narrow_graph() -> netrun.Graph:
    """A -> Sink, where A's output port has a single slot."""
    wide = simple_node("A", ["in"], ["out"])
    narrow = netrun.Node(name="A", in_ports=wide.in_ports,
                         out_ports={"out": netrun.Port(netrun.PortSlotSpec.finite(1))},
                         in_salvo_conditions=wide.in_salvo_conditions,
                         out_salvo_conditions=wide.out_salvo_conditions)
    return netrun.Graph([narrow, simple_node("Sink", ["in"])], [edge("A", "Sink")])


def _unknown_port(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("nope", ctx.create_packet(value))


def _unknown_condition(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_nope")


def _condition_not_met(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    ctx.send_output_salvo("send_out")  # nonempty(out) with nothing loaded


def _two_into_one_slot(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.load_output_port("out", ctx.create_packet(value))


def _consume_twice(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    ctx.consume_packet(packets["in"][0])


@pytest.mark.parametrize(("func", "error"), [
    (_unknown_port, netrun.PortNotFound),
    (_unknown_condition, netrun.SalvoConditionError),
    (_condition_not_met, netrun.SalvoConditionError),
    (_two_into_one_slot, netrun.PortFull),
    (_consume_twice, netrun.PacketNotInEpoch),
], ids=["unknown-port", "unknown-condition", "condition-not-met", "port-full", "consume-twice"])
def test_misuse_raises_at_the_call_in_a_deferred_epoch(tmp_path, db, func, error):
    raised_at_call: list = []
    seen: list = []

    def node(ctx, packets):
        try:
            func(ctx, packets)
        except netrun.ContextUsageError as exc:
            raised_at_call.append(type(exc))
            raise
        raised_at_call.append(None)  # the misuse did not raise: reached only if the check is missing

    graph = _narrow_graph() if func is _two_into_one_slot else chain("Source", "A", "Sink")
    with netrun.Net(graph, db=db, on_error="raise") as net:
        net.set_node_exec("A", node)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A")
        injected = net.inject_packet("A", "in", "payload")
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
    assert raised_at_call == [error]
    assert type(info.value.__cause__) is error
    assert info.value.node_name == "A"
    assert seen == []
    [epoch] = rows(db, "SELECT state, error_type FROM epochs")
    assert epoch == {"state": "failed", "error_type": error.__name__}
    assert created_packets(db) == [injected]


def test_a_correct_one_slot_load_is_not_refused(tmp_path, db):
    """Control for the PortFull case: one packet into the one slot is fine when deferred."""
    seen: list = []
    with netrun.Net(_narrow_graph(), db=db, on_error="raise") as net:
        net.set_node_exec("A", forward())
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A")
        net.inject_packet("A", "in", "one")
        net.inject_packet("A", "in", "two")
        net.start()
    assert sorted(seen) == ["one", "two"]


# -- a failing deferred epoch leaves nothing --------------------------------------------------------

def test_failing_deferred_epoch_leaves_nothing_in_the_net(tmp_path, db):
    seen: list = []

    def node(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        extra = ctx.create_packet("extra")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
        ctx.consume_packet(extra)
        raise RuntimeError("after everything")

    original = {"payload": [1, 2, 3]}
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", node)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A")
        injected = net.inject_packet("A", "in", original)
        net.start()
    assert seen == []
    assert created_packets(db) == [injected]
    assert rows(db, "SELECT id, state FROM packets") == [{"id": injected, "state": "destroyed"}]
    assert rows(db, "SELECT node_name, state, error_type FROM epochs") == [
        {"node_name": "A", "state": "failed", "error_type": "RuntimeError"}]
    assert rows(db, "SELECT count(*) AS n FROM history WHERE name IN "
                    "('ConsumePacket', 'CreatePacket', 'LoadPacketIntoOutputPort', 'SendOutputSalvo') "
                    "AND epoch_id IS NOT NULL") == [{"n": 0}]
    [letter] = rows(db, "SELECT packet_id, node_name, port_name, reason, error, value FROM dead_letters")
    assert (letter["packet_id"], letter["node_name"], letter["port_name"], letter["reason"]) == (
        injected, "A", "in", "failed")
    assert "after everything" in letter["error"]
    assert stored_value(letter["value"]) == original
    assert rows(db, "SELECT count(*) AS n FROM packet_values") == [{"n": 0}]


# -- retries ---------------------------------------------------------------------------------------

def test_retries_run_again_until_success_and_deliver_once(tmp_path, db):
    calls = tmp_path / "value-func-calls.txt"
    attempts: list = []
    seen: list = []

    def source(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet_from_value_func(lambda: (_count_call(calls), 21)[1]))
        ctx.send_output_salvo("send_out")

    def flaky(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        attempts.append({"retry_count": ctx.retry_count, "value": value,
                         "exceptions": [(type(e), str(e)) for e in ctx.retry_exceptions],
                         "timestamps": list(ctx.retry_timestamps)})
        ctx.load_output_port("out", ctx.create_packet(value * 2))
        ctx.send_output_salvo("send_out")
        if ctx.retry_count < 2:
            raise ValueError(f"attempt {ctx.retry_count} failed")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("A", flaky)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=2)
        net.inject_source_epoch("Source")
        net.start()
    assert seen == [42]
    assert [a["retry_count"] for a in attempts] == [0, 1, 2]
    assert [a["value"] for a in attempts] == [21, 21, 21]
    assert calls.read_text() == "xxx"  # the value function ran again on each attempt
    assert attempts[0]["exceptions"] == [] and attempts[0]["timestamps"] == []
    assert attempts[1]["exceptions"] == [(ValueError, "attempt 0 failed")]
    assert attempts[2]["exceptions"] == [(ValueError, "attempt 0 failed"), (ValueError, "attempt 1 failed")]
    stamps = attempts[2]["timestamps"]
    assert len(stamps) == 2 and all(isinstance(t, datetime) for t in stamps) and stamps[0] <= stamps[1]
    assert rows(db, "SELECT state, attempt FROM epochs WHERE node_name = 'A'") == [
        {"state": "finished", "attempt": 3}]
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
    # Only the successful attempt reached the net: one packet created by A.
    assert rows(db, "SELECT count(*) AS n FROM history WHERE name = 'CreatePacket' AND node_name = 'A'") == [
        {"n": 1}]


def test_retry_wait_sleeps_on_the_injected_clock(tmp_path, db):
    clock = FakeClock()
    attempts: list = []
    seen: list = []

    def flaky(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        attempts.append((ctx.retry_count, list(ctx.retry_timestamps)))
        if ctx.retry_count < 2:
            raise ValueError("not yet")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, clock=clock, on_error="raise") as net:
        net.set_node_exec("A", flaky)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=2, retry_wait=0.5)
        net.inject_packet("A", "in", "v")
        net.start()
    assert seen == ["v"]
    assert clock.sleeps == [0.5, 0.5]
    assert clock.elapsed == pytest.approx(1.0)
    assert attempts[2][0] == 2
    assert [(t - clock.start).total_seconds() for t in attempts[2][1]] == [0.0, 0.5]


def test_always_failing_function_is_tried_retries_plus_one_times_then_dead_letters(tmp_path, db):
    tries: list = []

    def broken(ctx, packets):
        tries.append(ctx.consume_packet(packets["in"][0]))
        raise KeyError("never works")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", broken)
        net.set_node_exec("Sink", collect([]))
        deferred(net, "A", retries=2)
        injected = net.inject_packet("A", "in", ("keep", 1))
        net.start()
    assert tries == [("keep", 1)] * 3
    assert rows(db, "SELECT state, attempt, error_type FROM epochs") == [
        {"state": "failed", "attempt": 3, "error_type": "KeyError"}]
    [letter] = rows(db, "SELECT packet_id, reason, value FROM dead_letters")
    assert (letter["packet_id"], letter["reason"]) == (injected, "failed")
    assert stored_value(letter["value"]) == ("keep", 1)


# -- exec_failed_node_func ---------------------------------------------------------------------------

def test_exec_failed_node_func_is_called_after_every_failed_attempt(tmp_path, db):
    failures: list = []

    def broken(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        raise ValueError(f"attempt {ctx.retry_count}")

    def on_failure(fctx):
        failures.append({
            "type": type(fctx),
            "node_name": fctx.node_name,
            "epoch_id": fctx.epoch_id,
            "retry_count": fctx.retry_count,
            "input_salvo": {port: [p.id for p in ps] for port, ps in fctx.input_salvo.items()},
            "packet_types": {port: [type(p) for p in ps] for port, ps in fctx.input_salvo.items()},
            "packet_values": dict(fctx.packet_values),
            "exceptions": [str(e) for e in fctx.retry_exceptions],
        })

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", broken, exec_failed_node_func=on_failure)
        deferred(net, "A", retries=2)
        injected = net.inject_packet("A", "in", {"v": 5})
        net.start()
    [epoch] = rows(db, "SELECT id, state FROM epochs")
    assert epoch["state"] == "failed"
    assert len(failures) == 3
    assert [f["retry_count"] for f in failures] == [0, 1, 2]
    for failure in failures:
        assert failure["type"] is netrun.NodeFailureContext
        assert failure["node_name"] == "A" and failure["epoch_id"] == epoch["id"]
        assert failure["input_salvo"] == {"in": [injected]}
        assert failure["packet_types"] == {"in": [netrun.Packet]}
        assert failure["packet_values"] == {injected: {"v": 5}}
    assert failures[2]["exceptions"] == ["attempt 0", "attempt 1", "attempt 2"]


def test_exec_failed_node_func_that_raises_does_not_stop_the_failure_flow(tmp_path, db):
    tries: list = []
    failed_calls: list = []
    seen: list = []

    def node(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        tries.append(value)
        if value == "bad":
            raise ValueError("bad value")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    def on_failure(fctx):
        failed_calls.append(fctx.retry_count)
        raise RuntimeError("handler broke")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", node, exec_failed_node_func=on_failure)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=1)
        net.inject_packet("A", "in", "bad")
        net.inject_packet("A", "in", "good")
        net.start()
        log = net.get_node_log("A")
    assert failed_calls == [0, 1]  # retried after the handler raised, then failed
    assert tries.count("bad") == 2 and tries.count("good") == 1
    assert seen == ["good"]
    assert sum("exec_failed_node_func raised" in line for line in log) == 2
    assert any("RuntimeError" in line and "handler broke" in line for line in log)
    states = rows(db, "SELECT state, error, error_type FROM epochs WHERE node_name = 'A' ORDER BY state")
    assert [s["state"] for s in states] == ["failed", "finished"]
    assert states[0]["error_type"] == "ValueError"
    assert "bad value" in states[0]["error"]
    assert "exec_failed_node_func raised" in states[0]["error"]
    assert [r["reason"] for r in rows(db, "SELECT reason FROM dead_letters")] == ["failed"]


# -- cancellation -----------------------------------------------------------------------------------

def test_cancel_epoch_in_a_deferred_node_is_not_retried(tmp_path, db):
    calls: list = []
    failures: list = []

    def node(ctx, packets):
        calls.append(ctx.retry_count)
        ctx.load_output_port("out", ctx.create_packet("half"))
        ctx.cancel_epoch()

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue",
                    error_callback=failures.append) as net:
        net.set_node_exec("A", node)
        net.set_node_exec("Sink", collect([]))
        deferred(net, "A", retries=3)
        injected = net.inject_packet("A", "in", "cancel me")
        net.start()
    assert calls == [0]
    assert failures == []
    assert rows(db, "SELECT state, attempt, error FROM epochs") == [
        {"state": "cancelled", "attempt": 1, "error": None}]
    [letter] = rows(db, "SELECT packet_id, reason, value FROM dead_letters")
    assert (letter["packet_id"], letter["reason"]) == (injected, "cancelled")
    assert stored_value(letter["value"]) == "cancel me"
    assert created_packets(db) == [injected]


# -- timeouts ---------------------------------------------------------------------------------------

def test_deferred_epoch_over_its_timeout_fails_and_sends_nothing(tmp_path, db):
    clock = FakeClock()
    seen: list = []
    ran: list = []

    def slow(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
        clock.sleep(5)
        ran.append(value)

    with netrun.Net(chain("Source", "A", "Sink"), db=db, clock=clock, on_error="continue") as net:
        net.set_node_exec("A", slow)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", timeout=1)
        injected = net.inject_packet("A", "in", "late")
        net.start()
    assert ran == ["late"]
    assert seen == []
    [epoch] = rows(db, "SELECT state, error, error_type FROM epochs")
    assert (epoch["state"], epoch["error_type"]) == ("failed", "EpochTimeout")
    assert "deferred actions are discarded" in epoch["error"]
    assert created_packets(db) == [injected]
    [letter] = rows(db, "SELECT packet_id, reason, value FROM dead_letters")
    assert (letter["packet_id"], letter["reason"]) == (injected, "failed")
    assert stored_value(letter["value"]) == "late"


def test_deferred_epoch_within_its_timeout_is_delivered(tmp_path, db):
    """Control for the timeout case: the same node under its timeout sends its output."""
    clock = FakeClock()
    seen: list = []

    def quick(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        clock.sleep(0.5)
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, clock=clock, on_error="raise") as net:
        net.set_node_exec("A", quick)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", timeout=1)
        net.inject_packet("A", "in", "on time")
        net.start()
    assert seen == ["on time"]
