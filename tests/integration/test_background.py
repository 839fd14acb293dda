"""Background runs (SPEC "Running the Net"; DESIGN decision 8).

`start(threaded=True)` / `run_step(threaded=True)` run the net in a thread of its own;
`poll()` reports its state and per-node counts, `wait_until_blocked()` waits for the run
to end (re-raising what stopped it), `pause()` returns once the running epoch finished,
`stop()` pauses, joins and closes. Async variants wrap the same calls.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import netrun
from netrun.graphs import chain

from tests.integration import pool_nodes
from .helpers import collect, forward, rows

EPOCHS = 20


def slow_net(tmp_path, got: list, name: str = "bg.db", values: int = EPOCHS, **options) -> netrun.Net:
    """Work sleeps 20 ms per epoch, in the thread that runs the net."""
    net = netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / name), **options)
    net.set_node_exec("Work", pool_nodes.sleep_then_forward)
    net.set_node_exec("Sink", collect(got))
    for value in range(values):
        net.inject_packet("Work", "in", value)
    return net


def test_start_threaded_returns_at_once_and_poll_follows_the_run(tmp_path):
    got: list = []
    with slow_net(tmp_path, got) as net:
        began = time.monotonic()
        net.start(threaded=True)
        returned_after = time.monotonic() - began
        samples = []
        while True:
            status = net.poll()
            samples.append(status)
            if status.state != "running":
                break
            time.sleep(0.005)
        final = net.wait_until_blocked()
    assert returned_after < 0.1, f"start(threaded=True) took {returned_after:.3f} s"
    running = [s for s in samples if s.state == "running"]
    assert len(running) >= 5  # ~0.4 s of work, sampled every 5 ms
    work = [s.nodes["Work"] for s in running]
    finished = [n.finished for n in work]
    assert finished == sorted(finished)  # counts only move forward
    assert finished[0] < EPOCHS // 2 and any(0 < f < EPOCHS for f in finished)
    assert any(n.running == 1 for n in work)
    assert all(n.running <= 1 for n in work)  # the runner thread runs one epoch at a time
    assert any(n.startable > 0 for n in work)
    assert final.state == "blocked"
    assert final.nodes["Work"].finished == EPOCHS and final.nodes["Sink"].finished == EPOCHS
    assert final.nodes["Work"].startable == 0 and final.running == 0
    assert sorted(got) == list(range(EPOCHS))


def test_wait_until_blocked_returns_blocked_with_everything_delivered(tmp_path):
    got: list = []
    with slow_net(tmp_path, got, values=5) as net:
        net.start(threaded=True)
        status = net.wait_until_blocked(timeout=30)
        assert status.state == "blocked"
        assert net.poll().state == "blocked"
        assert sorted(got) == [0, 1, 2, 3, 4]
        assert status.nodes["Sink"].finished == 5 and status.startable == 0


def test_pause_from_another_thread_waits_for_the_running_epoch(tmp_path):
    got: list = []
    inside = threading.Event()
    ends: list = []

    def slow_first(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if value == 0:
            inside.set()
            time.sleep(0.3)
        ends.append(time.monotonic())
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with slow_net(tmp_path, got) as net:
        net.set_node_exec("Work", slow_first)
        net.start(threaded=True)
        assert inside.wait(10)
        net.pause()
        returned = time.monotonic()
        status = net.poll()
        assert ends and returned >= ends[0]  # the epoch running at the call finished first
        assert status.state == "paused"
        assert status.running == 0
        assert status.nodes["Work"].startable > 0  # the rest waits
        states = net.query("SELECT state, count(*) AS n FROM epochs WHERE node_name = 'Work' GROUP BY 1 ORDER BY 1")
        assert {r["state"] for r in states} <= {"finished", "startable"}
        assert len(got) < EPOCHS

        net.start(threaded=True)  # continues after the pause
        status = net.wait_until_blocked(timeout=30)
        assert status.state == "blocked"
    assert sorted(got) == list(range(EPOCHS))


def test_stop_joins_and_closes(tmp_path):
    got: list = []
    net = slow_net(tmp_path, got)
    db = net.db_path
    net.start(threaded=True)
    deadline = time.monotonic() + 10
    while net.poll().nodes["Work"].finished < 2:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    net.stop()
    assert net.poll().state == "stopped"
    with pytest.raises(netrun.NetClosedError):
        net.start()
    with pytest.raises(netrun.NetClosedError):
        net.start(threaded=True)
    with pytest.raises(netrun.NetClosedError):
        net.query("SELECT 1")
    with pytest.raises(netrun.NetClosedError):
        net.inject_packet("Work", "in", 99)
    with pytest.raises(netrun.NetClosedError):
        net.pause()
    net.stop()  # idempotent
    states = rows(db, "SELECT state, count(*) AS n FROM epochs WHERE node_name = 'Work' GROUP BY 1")
    by_state = {r["state"]: r["n"] for r in states}
    assert "running" not in by_state  # stopped between epochs, nothing half-done
    assert 2 <= by_state["finished"] < EPOCHS
    # the file keeps the rest: a resumed net finishes it
    resumed = netrun.Net.resume(db)
    with resumed:
        resumed.set_node_exec("Work", pool_nodes.sleep_then_forward)
        resumed.set_node_exec("Sink", collect(got))
        resumed.start()
    assert sorted(got) == list(range(EPOCHS))


def test_run_step_threaded_runs_one_step(tmp_path):
    got: list = []
    with slow_net(tmp_path, got, values=3) as net:
        net.run_step(threaded=True)
        status = net.wait_until_blocked(timeout=30)
        assert status.nodes["Work"].finished == 3
        assert status.nodes["Sink"].finished == 0 and got == []  # Sink's epochs come in the next step
        net.run_step(threaded=True)
        status = net.wait_until_blocked(timeout=30)
        assert status.nodes["Sink"].finished == 3
    assert sorted(got) == [0, 1, 2]


def test_on_error_raise_in_a_background_run(tmp_path):
    got: list = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "raise.db"), on_error="raise") as net:
        net.set_node_exec("Work", pool_nodes.fail_on_two)
        net.set_node_exec("Sink", collect(got))
        for value in (1, 2, 3):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.wait_until_blocked(timeout=30)
        assert raised.value.node_name == "Work"
        assert isinstance(raised.value.__cause__, ValueError)
        status = net.poll()
        assert status.state == "paused"
        assert status.nodes["Work"].failed == 1
        net.start(threaded=True)
        assert net.wait_until_blocked(timeout=30).state == "blocked"  # the error was raised once
    assert sorted(got) == [10, 30]


def test_async_control_methods(tmp_path):
    got: list = []

    async def main() -> dict:
        net = slow_net(tmp_path, got)
        net.start(threaded=True)
        await asyncio.sleep(0.05)
        await net.async_pause()
        paused = net.poll()
        net.start(threaded=True)
        blocked = await net.async_wait_until_blocked(timeout=30)
        net.inject_packet("Work", "in", 100)
        net.start(threaded=True)
        await net.async_stop()
        return {"paused": paused, "blocked": blocked, "stopped": net.poll()}

    seen = asyncio.run(main())
    assert seen["paused"].state == "paused" and seen["paused"].running == 0
    assert seen["paused"].nodes["Work"].startable > 0
    assert seen["blocked"].state == "blocked"
    assert seen["blocked"].nodes["Sink"].finished == EPOCHS
    assert seen["stopped"].state == "stopped"
    assert sorted(got)[:EPOCHS] == list(range(EPOCHS))


def test_pause_stops_a_thread_pool_from_starting_queued_epochs_and_start_goes_on(tmp_path):
    import time as _time

    def slow(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        _time.sleep(0.05)

    with netrun.Net(chain("Src", "Work"), db=tmp_path / "run.db", thread_pools={"p": {"size": 1}}) as net:
        net.set_node_exec("Work", slow)
        net.set_node_config("Work", pool="p")
        for value in range(40):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        _time.sleep(0.3)
        began = _time.monotonic()
        net.pause()
        assert _time.monotonic() - began < 1.0  # not the ~1.5 s the remaining queue would take
        status = net.poll()
        assert status.state == "paused"
        assert status.nodes["Work"].finished < 40
        assert status.nodes["Work"].startable == 40 - status.nodes["Work"].finished
        assert net.query("SELECT count(*) AS n FROM epoch_jobs WHERE state != 'done'")[0]["n"] == 0
        net.start()
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished' AND node_name = 'Work'")[0][
            "n"] == 40


def test_dead_letters_and_port_types_can_be_used_from_another_thread_during_a_background_run(tmp_path):
    """The runner commits all the time (fast epochs); the main thread reads and writes through the
    dead-letter queue and the port-type setters meanwhile: each waits for the runner's step."""
    got: list = []
    values = 3000  # a run of ~1 s: each call may wait a GIL switch interval (5 ms) to be handed over
    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "bg.db"), on_error="continue") as net:
        net.set_node_exec("Work", forward())
        net.set_node_exec("Sink", collect(got))
        net.set_input_port_type("Sink", "in", "int")
        net.inject_packet("Sink", "in", "not an int")  # fails its type check: a dead letter
        for value in range(values):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        calls = 0
        while net.poll().state == "running":
            net.dead_letter_queue.get_all()
            net.set_input_port_type("Work", "in", "int")
            calls += 1
            time.sleep(0.001)
        net.wait_until_blocked(timeout=60)
        assert calls > 10  # they really ran alongside the run
        [entry] = net.dead_letter_queue.get_all()
        net.set_input_port_type("Sink", "in", None)
        net.dead_letter_queue.replay_many([entry.seq])
        net.start()
        assert net.dead_letter_queue.get_all() == []
        assert net.get_port_types("Work") == {"in": {"in": "int"}, "out": {}}
    assert sorted(v for v in got if isinstance(v, int)) == list(range(values))
    assert got.count("not an int") == 1


def test_a_query_from_another_thread_waits_for_one_epoch_not_for_the_whole_run(tmp_path):
    got: list = []
    with slow_net(tmp_path, got, values=100) as net:  # 100 epochs of 20 ms in one step: ~2 s
        net.start(threaded=True)
        while net.poll().nodes["Work"].finished < 3:
            time.sleep(0.005)
        started = time.monotonic()
        finished = net.query("SELECT count(*) AS n FROM epochs WHERE node_name = 'Work' AND state = 'finished'")
        waited = time.monotonic() - started
        assert net.poll().state == "running"  # answered while the run goes on
        assert 0 < finished[0]["n"] < 100
        assert waited < 0.5
        net.wait_until_blocked(timeout=30)
    assert sorted(got) == list(range(100))


def test_node_code_cannot_close_or_restart_the_net_that_runs_it(tmp_path):
    errors: list = []
    with netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db") as net:
        def sink(ctx, packets):
            ctx.consume_packet(packets["in"][0])
            for call in (net.close, net.start, net.run_step):
                try:
                    call()
                except netrun.ContextUsageError as exc:
                    errors.append(str(exc))

        net.set_node_exec("Sink", sink)
        net.inject_packet("Sink", "in", 1)
        net.inject_packet("Sink", "in", 2)
        net.start()
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [{"n": 2}]
    assert len(errors) == 6
    assert "call net.pause() there" in errors[0] and "already running in this thread" in errors[1]


def test_close_from_several_threads_at_once_during_a_background_run(tmp_path):
    got: list = []
    net = slow_net(tmp_path, got, values=200)
    net.start(threaded=True)
    time.sleep(0.1)
    outcomes: list = []

    def close() -> None:
        try:
            net.stop()
            outcomes.append("ok")
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            outcomes.append(repr(exc))

    threads = [threading.Thread(target=close) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes == ["ok"] * 4
    assert not [t for t in threading.enumerate() if t.name.startswith("netrun-")]


def test_close_from_another_thread_during_a_foreground_run_waits_for_the_loop(tmp_path):
    got: list = []
    net = slow_net(tmp_path, got, values=200)
    timer = threading.Timer(0.2, net.close)
    timer.start()
    net.start()  # ends paused: close() asked it to stop, then closed the net once it had
    timer.join(30)
    assert net.poll().state == "stopped"
    with netrun.Net.resume(net.db_path) as again:
        done = again.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"]
        running = again.query("SELECT count(*) AS n FROM epochs WHERE state = 'running'")[0]["n"]
    assert 0 < done and running == 0


def test_epochs_of_a_node_without_exec_function_do_not_stop_admission(tmp_path):
    with netrun.Net(chain("Source", "A", "C"), db=tmp_path / "run.db") as net:
        net.set_node_exec("A", forward())  # C has no exec function: its epochs stay startable
        for value in range(1_500):
            net.inject_packet("A", "in", value)
        net.start()
        assert net.query("SELECT count(*) AS n FROM inbox") == [{"n": 0}]
        assert len(net.get_startable_epochs_by_node("C")) == 1_500


def pause_from_the_pool(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if value == 3:
        ctx._net.pause()  # returns at once: waiting for the run to end would wait for this very epoch
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def test_pause_from_a_thread_pool_node_during_a_background_run_returns(tmp_path):
    got: list = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=tmp_path / "run.db", thread_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", pause_from_the_pool)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p")
        for value in range(10):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        status = net.wait_until_blocked(timeout=20)  # not the 60 s lease
        assert status.state == "paused"
        assert len(got) < 10
        net.start()
    assert sorted(got) == list(range(10))


@pytest.mark.parametrize("threaded", [False, True])
def test_a_pause_is_not_lost_to_a_start_from_another_thread_during_the_run(tmp_path, threaded):
    """pause() from one thread, then start() from another while the run goes on: the running loop
    still pauses (a start used to clear the flag before it could run, and pause() waited for the
    whole backlog). A threaded start is refused (the net is running); a foreground one waits for the
    paused run to end."""
    entered, release = threading.Event(), threading.Event()
    got: list = []

    def work(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if value == 0:
            entered.set()
            assert release.wait(30)
        got.append(value)

    with netrun.Net(chain("Source", "Work"), db=tmp_path / "run.db") as net:
        net.set_node_exec("Work", work)
        for value in range(200):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        assert entered.wait(30)
        deadline = time.monotonic() + 30
        pauser = threading.Thread(target=net.pause)
        pauser.start()
        while net.poll().state != "pausing":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        errors: list = []
        if threaded:
            with pytest.raises(RuntimeError, match="already running"):
                net.start(threaded=True)
        else:
            starter = threading.Thread(target=lambda: errors.append(net.start()))
            starter.start()
            time.sleep(0.2)  # the start waits for the run to end (it used to clear the pause meanwhile)
        release.set()
        pauser.join(30)
        assert not pauser.is_alive()
        assert len(got) < 200  # the run paused
        if not threaded:
            starter.join(30)
            assert errors == [None]  # it ran, and ended (paused too if the pause reached it: either order is fair)
        net.start()
    assert sorted(got) == list(range(200))


SLOW_QUERY = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) "
              "SELECT count(*) AS n FROM n")


def test_close_waits_for_a_query_of_another_thread_and_releases_the_net(tmp_path):
    """close() while another thread's query runs: the query ends with its rows, close() does not fail
    (an apsw connection busy in another thread cannot be closed), and the owner lock is released."""
    got: list = []
    net = slow_net(tmp_path, got, values=50)
    net.start(threaded=True)
    answers: list = []

    def ask() -> None:
        try:
            answers.append(net.query(SLOW_QUERY)[0]["n"])
        except BaseException as exc:  # noqa: BLE001 - what the test looks at
            answers.append(exc)

    asker = threading.Thread(target=ask)
    asker.start()
    time.sleep(0.3)  # the query runs (a few hundred ms on this machine)
    net.close()
    asker.join(30)
    assert answers == [3_000_000]
    with pytest.raises(netrun.NetClosedError):
        net.query("SELECT 1")
    assert net.poll().state == "stopped"
    with netrun.Net.resume(net.db_path) as again:  # the owner lock was released
        assert again.query("SELECT count(*) AS n FROM epochs WHERE state = 'running'") == [{"n": 0}]


def test_calls_after_close_raise_net_closed_error_not_an_apsw_error(tmp_path):
    """Objects taken from a net before close() (its dead-letter queue), and calls of other threads that
    got past the closed check as the net closed, raise NetClosedError: never apsw's ConnectionClosedError."""
    def fails(ctx, packets):
        raise ValueError("boom")

    net = netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db")
    net.set_node_exec("Sink", fails)
    net.inject_packet("Sink", "in", 1)
    net.start()
    queue = net.dead_letter_queue
    [entry] = queue.get_all()
    net.close()
    for call in (queue.get_all, lambda: queue.get_by_node("Sink"), lambda: queue.replay(entry),
                 lambda: queue.discard(entry)):
        with pytest.raises(netrun.NetClosedError, match="is closed"):
            call()
