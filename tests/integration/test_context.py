"""What a node function can do with its context, and what misuse, cancellation and failure leave behind."""

from __future__ import annotations

import pickle
import threading
import time

import pytest

import netrun
from netrun.graphs import chain, edge, simple_node

from .helpers import collect, emit, FakeClock, forward, rows, stored_value


def consume_and_forget(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _count_call(path) -> None:
    """Append one mark to `path` (a call counter that survives the value function being pickled)."""
    with open(path, "a") as handle:
        handle.write("x")


# -- consuming values -------------------------------------------------------------------------

def test_consume_returns_the_value_and_removes_it_from_storage(tmp_path):
    seen: list = []
    value = {"words": ["a", "b"], "n": (1, 2.5)}
    with netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db") as net:
        net.set_node_exec("Sink", collect(seen))
        packet_id = net.inject_packet("Sink", "in", value)
        assert net.query("SELECT packet_id FROM packet_values") == [{"packet_id": packet_id}]
        assert net.get_packet_value(packet_id) == value  # a live packet's value can be read
        net.start()
        assert seen == [value]
        assert net.query("SELECT count(*) AS n FROM packet_values") == [{"n": 0}]
        with pytest.raises(netrun.NotFoundError):
            net.get_packet_value(packet_id)


def test_value_function_is_called_once_at_consumption_not_at_creation(tmp_path):
    calls = tmp_path / "calls.txt"

    def source(ctx, packets):
        # a lambda closing over a local: only cloudpickle can store it
        ctx.load_output_port("out", ctx.create_packet_from_value_func(
            lambda: (_count_call(calls), {"computed": 42})[1]))
        ctx.send_output_salvo("send_out")

    seen: list = []
    with netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db") as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("Sink", collect(seen))
        net.inject_source_epoch("Source")
        net.run_step()  # Source ran; the packet waits on its edge
        assert net.query("SELECT state FROM epochs") == [{"state": "finished"}]
        assert net.query("SELECT kind FROM packet_values") == [{"kind": "func"}]
        assert not calls.exists()
        net.start()
        assert seen == [{"computed": 42}]
        assert calls.read_text() == "x"
        assert net.query("SELECT count(*) AS n FROM packet_values") == [{"n": 0}]


# -- misuse fails the epoch -----------------------------------------------------------------------

def consume_twice(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    ctx.consume_packet(packets["in"][0])


def load_unknown_port(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("nope", ctx.create_packet(value))


def send_unknown_condition(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_nope")


def return_unconsumed(ctx, packets):
    pass


def narrow_graph() -> netrun.Graph:
    """A -> Sink, where A's output port has a single slot."""
    wide = simple_node("A", ["in"], ["out"])
    narrow = netrun.Node(name="A", in_ports=wide.in_ports,
                         out_ports={"out": netrun.Port(netrun.PortSlotSpec.finite(1))},
                         in_salvo_conditions=wide.in_salvo_conditions,
                         out_salvo_conditions=wide.out_salvo_conditions)
    return netrun.Graph([narrow, simple_node("Sink", ["in"])], [edge("A", "Sink")])


def load_two_into_one_slot(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.load_output_port("out", ctx.create_packet(value))


@pytest.mark.parametrize(("func", "error", "words"), [
    (consume_twice, netrun.PacketNotInEpoch, ["'A'"]),
    (load_unknown_port, netrun.PortNotFound, ["'A'", "'nope'"]),
    (send_unknown_condition, netrun.SalvoConditionError, ["'A'", "'send_nope'"]),
    (load_two_into_one_slot, netrun.PortFull, ["'A'", "'out'"]),
    (return_unconsumed, netrun.UnfinishedEpochError, ["'A'"]),
], ids=["consume-twice", "unknown-port", "unknown-condition", "port-full", "unconsumed-input"])
def test_context_misuse_fails_the_epoch_with_a_specific_error(tmp_path, func, error, words):
    graph = narrow_graph() if func is load_two_into_one_slot else chain("Source", "A", "Sink")
    seen: list = []
    net = netrun.Net(graph, db=tmp_path / "run.db", on_error="raise")
    with net:
        net.set_node_exec("A", func)
        net.set_node_exec("Sink", collect(seen))
        net.inject_packet("A", "in", "payload")
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        failure, cause = info.value, info.value.__cause__
        assert type(cause) is error
        assert isinstance(cause, netrun.ContextUsageError)
        for word in words:
            assert word in str(cause)
        [epoch] = net.query("SELECT id, node_name, state, error, error_type FROM epochs")
        assert (epoch["node_name"], epoch["state"], epoch["error_type"]) == ("A", "failed", error.__name__)
        assert failure.node_name == "A" and failure.epoch_id == epoch["id"]
        assert "'A'" in str(failure) and epoch["id"] in str(failure)
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]
        assert net.query("SELECT outcome FROM epoch_attempts") == [{"outcome": "failed"}]
    assert seen == []


def test_port_with_one_slot_accepts_one_packet(tmp_path):
    """The control for the PortFull case: one packet in the one slot is fine."""
    seen: list = []
    with netrun.Net(narrow_graph(), db=tmp_path / "run.db", on_error="raise") as net:
        net.set_node_exec("A", forward())
        net.set_node_exec("Sink", collect(seen))
        net.inject_packet("A", "in", "payload")
        net.start()
    assert seen == ["payload"]


# -- cancellation ---------------------------------------------------------------------------

def test_cancelled_epoch_destroys_its_packets_into_dead_letters_without_failing(tmp_path):
    failures: list = []
    seen: list = []
    made_inside: list = []

    def picky(ctx, packets):
        packet = packets["in"][0]
        if ctx._net.get_packet_value(packet.id) == "reject":
            made_inside.append(ctx.create_packet({"half": "done"}).id)
            ctx.cancel_epoch()
        forward()(ctx, packets)

    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", error_callback=failures.append) as net:
        net.set_node_exec("Source", emit("reject", "keep-1", "keep-2"))
        net.set_node_exec("A", picky)
        net.set_node_exec("Sink", collect(seen))
        net.inject_source_epoch("Source")
        net.start()
        states = net.query("SELECT state, count(*) AS n FROM epochs WHERE node_name = 'A' GROUP BY 1 ORDER BY 1")
    db = tmp_path / "run.db"
    assert failures == []
    assert sorted(seen) == ["keep-1", "keep-2"]  # the net did not pause
    assert states == [{"state": "cancelled", "n": 1}, {"state": "finished", "n": 2}]
    [cancelled] = rows(db, "SELECT id, error, error_type FROM epochs WHERE state = 'cancelled'")
    assert cancelled["error"] is None and cancelled["error_type"] is None
    assert rows(db, "SELECT outcome FROM epoch_attempts WHERE epoch_id = ?", (cancelled["id"],)) == [
        {"outcome": "cancelled"}]
    packets = rows(db, "SELECT id, state FROM packets WHERE epoch_id = ?", (cancelled["id"],))
    assert len(packets) == 2 and {p["state"] for p in packets} == {"destroyed"}
    assert made_inside[0] in {p["id"] for p in packets}
    letters = rows(db, "SELECT packet_id, node_name, port_name, epoch_id, reason, value FROM dead_letters")
    assert len(letters) == 2
    assert {(d["node_name"], d["epoch_id"], d["reason"]) for d in letters} == {("A", cancelled["id"], "cancelled")}
    values = {d["packet_id"]: stored_value(d["value"]) for d in letters}
    assert values[made_inside[0]] == {"half": "done"}
    [injected] = [pid for pid in values if pid != made_inside[0]]
    assert values[injected] == "reject"
    assert [d["port_name"] for d in letters if d["packet_id"] == injected] == ["in"]
    assert rows(db, "SELECT count(*) AS n FROM packet_values") == [{"n": 0}]


# -- failing exec functions -------------------------------------------------------------------

def fail_on(bad):
    def node(ctx, packets):
        if ctx._net.get_packet_value(packets["in"][0].id) == bad:
            raise ValueError(f"boom on {bad}")
        forward()(ctx, packets)
    return node


def always_fail(ctx, packets):
    raise ValueError("boom")


def test_failed_epoch_records_error_and_dead_letters_its_input(tmp_path):
    failures: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="continue",
                    error_callback=failures.append) as net:
        net.set_node_exec("A", always_fail)
        net.set_node_exec("Sink", consume_and_forget)
        packet_id = net.inject_packet("A", "in", ("precious", 1))
        net.start()
    db = tmp_path / "run.db"
    [epoch] = rows(db, "SELECT id, state, error, error_type FROM epochs")
    assert epoch["state"] == "failed"
    assert epoch["error_type"] == "ValueError"
    assert "boom" in epoch["error"]
    assert rows(db, "SELECT state FROM packets WHERE id = ?", (packet_id,)) == [{"state": "destroyed"}]
    [letter] = rows(db, "SELECT packet_id, node_name, port_name, epoch_id, reason, error, value FROM dead_letters")
    assert (letter["packet_id"], letter["node_name"], letter["port_name"], letter["epoch_id"], letter["reason"]) == (
        packet_id, "A", "in", epoch["id"], "failed")
    assert "boom" in letter["error"]
    assert stored_value(letter["value"]) == ("precious", 1)
    assert rows(db, "SELECT outcome FROM epoch_attempts") == [{"outcome": "failed"}]
    [failure] = failures
    assert isinstance(failure, netrun.NodeExecutionFailed)
    assert (failure.node_name, failure.epoch_id) == ("A", epoch["id"])
    assert "'A'" in str(failure) and epoch["id"] in str(failure)
    assert isinstance(failure.__cause__, ValueError) and str(failure.__cause__) == "boom"


def test_on_error_pause_starts_no_new_epoch(tmp_path):
    failures: list = []
    seen: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="pause",
                    error_callback=failures.append) as net:
        net.set_node_exec("A", always_fail)
        net.set_node_exec("Sink", collect(seen))
        for v in (1, 2, 3):
            net.inject_packet("A", "in", v)
        net.start()  # returns: paused, no exception
        assert len(failures) == 1
        states = net.query("SELECT state, count(*) AS n FROM epochs GROUP BY 1 ORDER BY 1")
        assert states == [{"state": "failed", "n": 1}, {"state": "startable", "n": 2}]
        remaining = net.get_startable_epochs_by_node("A")
        assert len(remaining) == 2
        assert net.query("SELECT count(*) AS n FROM epoch_jobs WHERE state = 'claimed'") == [{"n": 0}]
        assert {r["id"] for r in net.query("SELECT id FROM epochs WHERE state = 'startable'")} == set(remaining)
        # start() continues with the remaining epochs
        net.set_node_exec("A", forward())
        net.start()
        assert net.get_startable_epochs() == []
    assert len(failures) == 1
    assert sorted(seen) == [2, 3]


def test_on_error_continue_runs_everything_else(tmp_path):
    failures: list = []
    seen: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="continue",
                    error_callback=failures.append) as net:
        net.set_node_exec("A", fail_on(2))
        net.set_node_exec("Sink", collect(seen))
        for v in (1, 2, 3, 4):
            net.inject_packet("A", "in", v)
        net.start()
        assert net.get_startable_epochs() == []
    assert sorted(seen) == [1, 3, 4]
    assert [str(f.__cause__) for f in failures] == ["boom on 2"]
    db = tmp_path / "run.db"
    assert rows(db, "SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1, 2") == [
        {"node_name": "A", "state": "failed", "n": 1}, {"node_name": "A", "state": "finished", "n": 3},
        {"node_name": "Sink", "state": "finished", "n": 3}]


def test_on_error_raise_raises_from_start_after_pausing(tmp_path):
    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="raise") as net:
        net.set_node_exec("A", always_fail)
        net.set_node_exec("Sink", consume_and_forget)
        net.inject_packet("A", "in", 1)
        net.inject_packet("A", "in", 2)
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        assert isinstance(info.value.__cause__, ValueError)
        assert len(net.get_startable_epochs_by_node("A")) == 1
        assert net.query("SELECT state, count(*) AS n FROM epochs GROUP BY 1 ORDER BY 1") == [
            {"state": "failed", "n": 1}, {"state": "startable", "n": 1}]


# -- more ways an epoch ends ------------------------------------------------------------------

def test_timeout_fails_an_epoch_that_ran_too_long_on_the_injected_clock(tmp_path):
    clock = FakeClock()
    failures: list = []

    def slow(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.create_packet(value)  # still inside when the function returns
        if value == "slow":
            clock.elapsed += 5.0  # "runs" for five seconds

    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", clock=clock, on_error="continue",
                    error_callback=failures.append) as net:
        net.set_node_exec("A", slow)
        net.set_node_config("A", timeout=2)
        net.inject_packet("A", "in", "slow")
        net.start()
        [epoch] = net.query("SELECT id, state, error_type FROM epochs")
        assert (epoch["state"], epoch["error_type"]) == ("failed", "EpochTimeout")
        assert isinstance(failures[0].__cause__, netrun.EpochTimeout)
        # the packet it created is destroyed into the dead letters
        assert net.query("SELECT state FROM packets WHERE epoch_id = ? AND state != 'consumed'", (epoch["id"],)) == [
            {"state": "destroyed"}]
        # ...and so is the input it consumed (kept until the epoch ended): both carry the value
        assert [(r["port_name"], stored_value(r["value"]))
                for r in net.query("SELECT port_name, value FROM dead_letters ORDER BY seq")] == [
            ("in", "slow"), (None, "slow")]


def test_an_output_made_after_the_timeout_never_reaches_downstream(tmp_path):
    received: list = []
    failures: list = []

    def late(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        time.sleep(0.2)  # past the 0.05 s timeout: a sync function cannot be interrupted...
        ctx.load_output_port("out", ctx.create_packet(value))  # ...but its ctx calls now raise EpochTimeout
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        received.append(ctx.consume_packet(packets["in"][0]))

    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="continue",
                    error_callback=failures.append) as net:
        net.set_node_exec("A", late)
        net.set_node_exec("Sink", sink)
        net.set_node_config("A", timeout=0.05)
        net.inject_packet("A", "in", "late")
        net.start()
        assert received == []
        assert net.query("SELECT node_name, state, error_type FROM epochs") == [
            {"node_name": "A", "state": "failed", "error_type": "EpochTimeout"}]
        assert isinstance(failures[0].__cause__, netrun.EpochTimeout)
        assert net.query("SELECT count(*) AS n FROM packets WHERE node_name = 'Sink'")[0]["n"] == 0
        # the consumed input goes to the dead letters, so nothing is lost
        assert [stored_value(r["value"]) for r in net.query("SELECT value FROM dead_letters")] == ["late"]


def test_a_late_ctx_call_raises_even_when_the_node_swallows_the_first_timeout(tmp_path):
    clock = FakeClock()
    seen: list = []

    def stubborn(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        clock.elapsed += 5.0
        for call in (lambda: ctx.create_packet(value), ctx.heartbeat, lambda: ctx.send_output_salvo("send_out")):
            try:
                call()
            except netrun.EpochTimeout as exc:
                seen.append(str(exc))

    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", clock=clock, on_error="continue") as net:
        net.set_node_exec("A", stubborn)
        net.set_node_config("A", timeout=2)
        net.inject_packet("A", "in", 1)
        net.start()
        assert len(seen) == 3 and all("over its timeout of 2s" in text for text in seen)
        assert net.query("SELECT state, error_type FROM epochs") == [{"state": "failed", "error_type": "EpochTimeout"}]
        assert net.query("SELECT count(*) AS n FROM packets")[0]["n"] == 1  # only the input: nothing was created


def test_failing_value_function_fails_the_consuming_epoch(tmp_path):
    def source(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet_from_value_func(lambda: 1 / 0))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db", on_error="raise") as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("Sink", consume_and_forget)
        net.inject_source_epoch("Source")
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        cause = info.value.__cause__
        assert isinstance(cause, netrun.ValueFunctionFailed)
        assert isinstance(cause.__cause__, ZeroDivisionError)
        assert info.value.node_name == "Sink"
        [letter] = net.query("SELECT reason, value_kind FROM dead_letters")
        assert letter == {"reason": "failed", "value_kind": "func"}


@pytest.mark.parametrize("make", [lambda ctx: ctx.create_packet(threading.Lock()),
                                  lambda ctx: ctx.create_packet(lambda: 1)], ids=["lock", "lambda"])
def test_unpicklable_value_created_in_a_node_fails_the_epoch(tmp_path, make):
    def node(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        make(ctx)

    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="raise") as net:
        net.set_node_exec("A", node)
        net.inject_packet("A", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        assert isinstance(info.value.__cause__, netrun.UnpicklableValue)
        assert net.query("SELECT state, error_type FROM epochs") == [
            {"state": "failed", "error_type": "UnpicklableValue"}]
        assert net.query("SELECT count(*) AS n FROM packets") == [{"n": 1}]  # nothing was created


def test_dead_letter_queue_off_destroys_without_dead_letters(tmp_path):
    with netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db", on_error="continue") as net:
        net.set_node_exec("A", always_fail)
        net.set_node_config("A", dead_letter_queue=False)
        packet_id = net.inject_packet("A", "in", 1)
        net.start()
        assert net.query("SELECT state FROM packets WHERE id = ?", (packet_id,)) == [{"state": "destroyed"}]
        assert net.query("SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM packet_values") == [{"n": 0}]


def test_pause_from_a_node_finishes_its_epoch_and_starts_no_other(tmp_path):
    seen: list = []

    def pausing(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        seen.append(value)
        if value == 1:
            ctx._net.pause()

    with netrun.Net(chain("Source", "A"), db=tmp_path / "run.db") as net:
        net.set_node_exec("A", pausing)
        for v in (1, 2, 3):
            net.inject_packet("A", "in", v)
        net.start()
        assert seen == [1]
        assert net.query("SELECT state, count(*) AS n FROM epochs GROUP BY 1 ORDER BY 1") == [
            {"state": "finished", "n": 1}, {"state": "startable", "n": 2}]
        # nothing is left claimed by a worker that is not running it
        assert net.query("SELECT count(*) AS n FROM epoch_jobs WHERE state = 'claimed'") == [{"n": 0}]
        net.start()
        assert seen == [1, 2, 3]
        assert net.query("SELECT outcome, count(*) AS n FROM epoch_attempts GROUP BY 1") == [
            {"outcome": "finished", "n": 3}]
