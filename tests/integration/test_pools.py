"""Thread and process pools: one contract, run for both kinds (SPEC "Pools").

A pool node's epochs are claimed from `epoch_jobs` by the pool's workers, run there, and
their results (`epoch_results`) applied by the main process. Node functions live in
`tests.integration.pool_nodes` so spawned process workers can load them; workers report
back through files named by environment variables (inherited when the pool starts).
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter

import pytest

import netrun
from netrun.graphs import chain, edge, simple_node

from tests.integration import pool_nodes
from .helpers import collect, rows

KINDS = ["thread", "process"]


def pools(kind: str, **sizes: int) -> dict:
    return {f"{kind}_pools": {name: {"size": size} for name, size in sizes.items()}}


@pytest.fixture
def log_path(tmp_path, monkeypatch) -> str:
    """A file the workers append to ($NETRUN_TEST_LOG, set before any pool starts)."""
    path = str(tmp_path / "calls.log")
    monkeypatch.setenv(pool_nodes.LOG_ENV, path)
    return path


def pool_net(tmp_path, kind: str, name: str = "net.db", **options) -> netrun.Net:
    options = {**pools(kind, p=2), **options}
    return netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / name), **options)


@pytest.mark.parametrize("kind", KINDS)
def test_values_go_through_a_pool_node_and_its_jobs_are_recorded(tmp_path, kind):
    got: list = []
    net = pool_net(tmp_path, kind)
    db = net.db_path
    with net:
        net.set_node_exec("Work", pool_nodes.times_ten)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p")
        for value in range(6):
            net.inject_packet("Work", "in", value)
        net.start()
        assert net.poll().state == "blocked"
    assert sorted(got) == [0, 10, 20, 30, 40, 50]
    jobs = rows(db, "SELECT j.pool, j.worker, j.outcome, j.state, e.state AS epoch_state FROM epoch_jobs j "
                    "JOIN epochs e ON e.id = j.epoch_id WHERE j.node_name = 'Work'")
    assert len(jobs) == 6
    for job in jobs:
        assert job["pool"] == "p"
        assert re.fullmatch(rf"{kind}:p:[12](@[0-9a-f]{{8}})?", job["worker"]), job
        assert (job["outcome"], job["state"], job["epoch_state"]) == ("finished", "done", "finished")
    # main-thread epochs have no job row: their attempt rows are their record
    assert rows(db, "SELECT count(*) AS n FROM epoch_jobs WHERE node_name = 'Sink'") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_attempts WHERE node_name = 'Sink' AND outcome = 'finished'") == [
        {"n": 6}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_results") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]


@pytest.mark.parametrize("kind", KINDS)
def test_failing_pool_node_dead_letters_its_input_and_on_error_applies(tmp_path, kind):
    got: list = []
    with pool_net(tmp_path, kind, on_error="raise") as net:
        net.set_node_exec("Work", pool_nodes.fail_on_two)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", defer_net_actions=True)
        ids = {value: net.inject_packet("Work", "in", value) for value in (1, 2, 3, 4)}
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
        assert raised.value.node_name == "Work"
        assert isinstance(raised.value.__cause__, ValueError)
        assert "two is not welcome" in str(raised.value.__cause__)
        # continuous flow: values done before the failure may have reached the sink; after it,
        # "raise" paused the net and nothing more started
        assert set(got) <= {10, 30, 40}
        assert net.poll().state == "paused"
        entries = net.dead_letter_queue.get_all()
        assert [(e.packet_id, e.node_name, e.port_name, e.reason, e.value) for e in entries] == \
            [(ids[2], "Work", "in", "failed", 2)]
        assert "ValueError" in entries[0].error
        # (epochs not yet claimed when the net paused went back to startable)
        failed = net.query("SELECT state, error_type FROM epochs WHERE node_name = 'Work' "
                           "AND state NOT IN ('finished', 'startable')")
        assert failed == [{"state": "failed", "error_type": "ValueError"}]
        net.start()  # continues after the pause
    assert sorted(got) == [10, 30, 40]


@pytest.mark.parametrize("kind", KINDS)
def test_retry_in_a_deferred_pool_node_delivers_once(tmp_path, kind):
    got: list = []
    net = pool_net(tmp_path, kind)
    db = net.db_path
    with net:
        net.set_node_exec("Work", pool_nodes.fail_first_attempt)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", defer_net_actions=True, retries=1)
        for value in (1, 2):
            net.inject_packet("Work", "in", value)
        net.start()
    assert sorted(got) == [(1, 1), (2, 1)]  # each value once, from the second attempt
    attempts = rows(db, "SELECT epoch_id, attempt, outcome, error_type FROM epoch_attempts "
                        "WHERE node_name = 'Work' ORDER BY epoch_id, attempt")
    assert len(attempts) == 4
    by_epoch: dict = {}
    for row in attempts:
        by_epoch.setdefault(row["epoch_id"], []).append((row["attempt"], row["outcome"], row["error_type"]))
    assert list(by_epoch.values()) == [[(0, "failed", "RuntimeError"), (1, "finished", None)]] * 2
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE node_name = 'Sink' AND state = 'consumed'") == [{"n": 2}]


@pytest.mark.parametrize("kind", KINDS)
def test_non_deferred_pool_node_keeps_what_it_did_before_raising(tmp_path, kind):
    """As in the main thread: output sent before the error stays sent; an unconsumed input is
    destroyed, a consumed one stays consumed (epoch.EpochEnds.remote), and both values are
    dead-lettered ('failed'): the value a failed epoch consumed is never lost."""
    got_a: list = []
    got_b: list = []
    graph = netrun.Graph(
        [simple_node("A", ["in"], ["out"]), simple_node("SinkA", ["in"]),
         simple_node("B", ["in"], ["out"]), simple_node("SinkB", ["in"])],
        [edge("A", "SinkA"), edge("B", "SinkB")])
    net = netrun.Net(graph, db=str(tmp_path / "partial.db"), on_error="continue", **pools(kind, p=2))
    db = net.db_path
    with net:
        net.set_node_exec("A", pool_nodes.send_then_raise)
        net.set_node_exec("B", pool_nodes.consume_send_then_raise)
        net.set_node_exec("SinkA", collect(got_a))
        net.set_node_exec("SinkB", collect(got_b))
        net.set_node_config("A", pool="p")
        net.set_node_config("B", pool="p")
        in_a = net.inject_packet("A", "in", "input-a")
        in_b = net.inject_packet("B", "in", "input-b")
        net.start()
        entries = net.dead_letter_queue.get_all()
    assert got_a == ["partial"]
    assert got_b == [("sent", "input-b")]
    assert sorted((e.packet_id, e.node_name, e.reason, e.value) for e in entries) == sorted(
        [(in_a, "A", "failed", "input-a"), (in_b, "B", "failed", "input-b")])
    packets = {r["id"]: r["state"] for r in rows(db, "SELECT id, state FROM packets WHERE id IN (?, ?)", (in_a, in_b))}
    assert packets == {in_a: "destroyed", in_b: "consumed"}
    epochs = rows(db, "SELECT node_name, state, error_type FROM epochs WHERE node_name IN ('A', 'B') ORDER BY 1")
    assert epochs == [{"node_name": "A", "state": "failed", "error_type": "RuntimeError"},
                      {"node_name": "B", "state": "failed", "error_type": "RuntimeError"}]


@pytest.mark.parametrize("kind", KINDS)
def test_start_and_stop_functions_run_once_per_worker(tmp_path, kind, log_path):
    got: list = []
    with pool_net(tmp_path, kind) as net:
        net.set_node_exec("Work", pool_nodes.times_ten_recorded, start_node_func=pool_nodes.start_recorded,
                          stop_node_func=pool_nodes.stop_recorded)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p")
        for value in range(6):
            net.inject_packet("Work", "in", value)
        net.start()
        running = pool_nodes.read_log(log_path)
        net.inject_packet("Work", "in", 6)
        net.start()  # a second run starts nothing again
        before_close = pool_nodes.read_log(log_path)
    after_close = pool_nodes.read_log(log_path)
    assert sorted(got) == [v * 10 for v in range(7)]

    # A worker calls the start functions when it comes up (a spawned one may come up after the
    # other ran every job): all of them are in the log once close() joined the workers.
    starts = [(pid, thread) for what, pid, thread in after_close if what == "start"]
    assert len(starts) == 2 and len(set(starts)) == 2, starts  # one per worker, in two workers
    assert {(pid, thread) for what, pid, thread in before_close if what == "start"} <= set(starts)
    assert not any(what == "stop" for what, _, _ in before_close)
    stops = [(pid, thread) for what, pid, thread in after_close if what == "stop"]
    assert sorted(stops) == sorted(starts)  # at close, in the same workers
    execs = {(pid, thread) for what, pid, thread in after_close if what.startswith("exec:")}
    assert execs <= set(starts)
    assert sorted(what for what, _, _ in running if what.startswith("exec:")) == [f"exec:{v}" for v in range(6)]
    if kind == "thread":
        assert {pid for pid, _ in starts} == {os.getpid()}
        assert all(thread.startswith("netrun-thread:p:") for _, thread in starts)
    else:
        pids = {pid for pid, _ in starts}
        assert len(pids) == 2 and os.getpid() not in pids


def test_global_init_mode_runs_start_once_in_the_main_thread(tmp_path, log_path):
    got: list = []
    with pool_net(tmp_path, "thread") as net:
        net.set_node_exec("Work", pool_nodes.times_ten_recorded, start_node_func=pool_nodes.start_recorded,
                          stop_node_func=pool_nodes.stop_recorded)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", pool_init_mode="global")
        for value in range(4):
            net.inject_packet("Work", "in", value)
        net.start()
        before_close = pool_nodes.read_log(log_path)
    after_close = pool_nodes.read_log(log_path)
    assert sorted(got) == [0, 10, 20, 30]
    main = (os.getpid(), threading.main_thread().name)
    assert [(pid, thread) for what, pid, thread in before_close if what == "start"] == [main]
    assert [(pid, thread) for what, pid, thread in after_close if what == "stop"] == [main]
    exec_threads = {thread for what, _, thread in after_close if what.startswith("exec:")}
    assert exec_threads and all(t.startswith("netrun-thread:p:") for t in exec_threads)


@pytest.mark.parametrize("kind", KINDS)
def test_pool_selection(tmp_path, kind):
    """round_robin alternates over a node's pools; least_busy (default) picks the pool with the
    most free workers first."""
    graph = chain("Source", "Work", "Sink")
    results: dict[str, list] = {}
    jobs: dict[str, list] = {}
    for selection in ("round_robin", "least_busy"):
        got: list = []
        options = pools(kind, a=1, b=2)
        if selection == "round_robin":
            options["pool_selection"] = selection
        net = netrun.Net(graph, db=str(tmp_path / f"{selection}.db"), **options)
        with net:
            net.set_node_exec("Work", pool_nodes.times_ten)
            net.set_node_exec("Sink", collect(got))
            net.set_node_config("Work", pool=["a", "b"])
            for value in range(6):
                net.inject_packet("Work", "in", value)
            net.start()
        results[selection] = sorted(got)
        jobs[selection] = [r["pool"] for r in rows(net.db_path, "SELECT pool FROM epoch_jobs WHERE node_name = 'Work' "
                                                                "ORDER BY seq")]
    assert results == {"round_robin": [0, 10, 20, 30, 40, 50], "least_busy": [0, 10, 20, 30, 40, 50]}
    assert jobs["round_robin"] == ["a", "b"] * 3
    assert Counter(jobs["least_busy"]).keys() == {"a", "b"}
    assert jobs["least_busy"][0] == "b"  # b has two free workers, a one


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_pool_is_refused(tmp_path, kind):
    with pool_net(tmp_path, kind) as net:
        with pytest.raises(netrun.ConfigError, match="nope"):
            net.set_node_config("Work", pool="nope")
        with pytest.raises(netrun.ConfigError, match="nope"):
            net.set_node_config("Work", pool=["p", "nope"])
        assert net.get_node_config("Work")["pool"] is None
        net.set_node_config("Work", pool="p")
        assert net.get_node_config("Work")["pool"] == "p"


def test_max_parallel_epochs_in_a_thread_pool(tmp_path):
    """A pool of 4 runs a node's epochs side by side, unless its max_parallel_epochs is 1."""
    maxima = {}
    for limit in (None, 1):
        pool_nodes.reset_running()
        got: list = []
        with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / f"mp{limit}.db"),
                        **pools("thread", p=4)) as net:
            net.set_node_exec("Work", pool_nodes.tracked_sleep)
            net.set_node_exec("Sink", collect(got))
            net.set_node_config("Work", pool="p", max_parallel_epochs=limit)
            for value in range(8):
                net.inject_packet("Work", "in", value)
            net.start()
        assert sorted(got) == list(range(8))
        maxima[limit] = pool_nodes.RUNNING["max"]
    assert maxima[1] == 1
    assert maxima[None] > 1  # the tracking does see overlap when it is allowed


@pytest.mark.parametrize("kind", KINDS)
def test_async_exec_function_in_a_pool(tmp_path, kind):
    got: list = []
    with pool_net(tmp_path, kind) as net:
        net.set_node_exec("Work", pool_nodes.async_times_ten)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p")
        for value in (1, 2, 3):
            net.inject_packet("Work", "in", value)
        net.start()
        finished = net.query("SELECT count(*) AS n FROM epoch_jobs WHERE pool = 'p' AND outcome = 'finished'")
    assert sorted(v for v, _, _ in got) == [10, 20, 30]
    assert finished == [{"n": 3}]
    pids = {pid for _, pid, _ in got}
    if kind == "process":
        assert os.getpid() not in pids
    else:
        assert pids == {os.getpid()}


@pytest.mark.parametrize("kind", KINDS)
def test_unpicklable_value_fails_the_epoch(tmp_path, kind):
    with pool_net(tmp_path, kind, on_error="raise") as net:
        net.set_node_exec("Work", pool_nodes.make_lock)
        net.set_node_config("Work", pool="p")
        net.inject_packet("Work", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
        epochs = net.query("SELECT state, error_type, error FROM epochs WHERE node_name = 'Work'")
    cause = raised.value.__cause__
    assert isinstance(cause, netrun.UnpicklableValue)
    assert "'Work'" in str(cause) and "lock" in str(cause).lower()
    assert [(e["state"], e["error_type"]) for e in epochs] == [("failed", "UnpicklableValue")]


def test_changing_a_pool_nodes_function_after_the_pools_started_reaches_the_workers(tmp_path):
    """set_node_exec after a run restarts the node's pool workers: they run the new function."""
    seen: list = []

    def first(ctx, packets):
        seen.append(("first", ctx.consume_packet(packets["in"][0])))

    def second(ctx, packets):
        seen.append(("second", ctx.consume_packet(packets["in"][0])))

    with netrun.Net(chain("Src", "Work"), db=tmp_path / "run.db", thread_pools={"p": {"size": 1}}) as net:
        net.set_node_exec("Work", first)
        net.set_node_config("Work", pool="p")
        net.inject_packet("Work", "in", 1)
        net.start()
        net.set_node_exec("Work", second)
        net.inject_packet("Work", "in", 2)
        net.start()
        assert seen == [("first", 1), ("second", 2)]
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"] == 2


def _start_raises(net):
    raise RuntimeError("cannot open resource")


def test_a_pool_start_function_that_raises_stops_the_pool_and_reaches_the_caller(tmp_path):
    with netrun.Net(chain("Src", "Work"), db=tmp_path / "run.db", thread_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", _consume_only, start_node_func=_start_raises)
        net.set_node_config("Work", pool="p")
        net.inject_packet("Work", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed, match="start_node_func of node 'Work'.*cannot open resource"):
            net.start()
        pool = net._rt.pools.pools["p"]
        assert pool.workers == {}  # stopped, not respawned again and again
        # the job no worker could claim was withdrawn: its epoch is startable again, nothing lost
        assert net.query("SELECT state FROM epoch_jobs WHERE node_name = 'Work'") == []
        assert net.query("SELECT state FROM epochs WHERE node_name = 'Work'") == [{"state": "startable"}]
        assert len(net.get_startable_epochs_by_node("Work")) == 1


def _consume_only(ctx, packets):
    ctx.consume_packet(packets["in"][0])
