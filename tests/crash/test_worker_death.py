"""A pool worker that dies or overruns its node's timeout (DESIGN "Crash semantics", decision 11).

A process worker killed mid-epoch is noticed by the main process, which applies the crash
semantics to the epoch it held (deferred: it runs again; otherwise it is cancelled and its
input dead-lettered as 'interrupted') and starts a replacement worker. A pool epoch past its
timeout fails with EpochTimeout: a process worker is killed at the deadline; a thread cannot
be stopped, so its late result is discarded and recorded in the node log.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

import netrun
from netrun.graphs import chain

from tests.integration import pool_nodes
from tests.integration.helpers import collect, pool_net_to_kill, rows

VALUES = list(range(10))  # pool_nodes.SLOW_VALUE (7) is the one whose worker gets killed


def wait_for_file(path: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    with open(path) as handle:
        return handle.read()


def live_workers(net: netrun.Net, pool: str = "p") -> dict:
    """worker ID -> pid of the pool's workers that are alive."""
    workers = net._rt.pools.pools[pool].workers
    return {wid: w.pid for wid, w in list(workers.items()) if w.is_alive()}


@pytest.mark.parametrize("deferred", [False, True], ids=["immediate", "deferred"])
def test_killed_process_worker(tmp_path, monkeypatch, deferred):
    pid_file = str(tmp_path / "slow.pid")
    monkeypatch.setenv(pool_nodes.PID_ENV, pid_file)
    got: list = []
    net, ids = pool_net_to_kill(tmp_path, got, pool_nodes.slow_on_seven, deferred=deferred, size=2, values=VALUES)
    db = net.db_path
    with net:
        pid = int(wait_for_file(pid_file))
        workers_before = live_workers(net)
        killed = next(wid for wid, p in workers_before.items() if p == pid)
        assert pid != os.getpid()
        os.kill(pid, signal.SIGKILL)
        status = net.wait_until_blocked(timeout=60)
        assert status.state == "blocked"
        workers_after = live_workers(net)
        assert len(workers_after) == 2, workers_after  # replaced
        assert killed not in workers_after and pid not in workers_after.values()
        assert len(net._rt.pools.pools["p"].workers) == 2
        entries = [(e.packet_id, e.node_name, e.reason, e.value) for e in net.dead_letter_queue.get_all()]
        slow_epoch = net.query("SELECT e.id, e.state, e.error, e.error_type, j.worker, j.outcome FROM epochs e "
                               "JOIN epoch_jobs j ON j.epoch_id = e.id WHERE e.node_name = 'Work' AND e.salvo LIKE ?",
                               (f"%{ids[pool_nodes.SLOW_VALUE]}%",))
        recovered = net.query("SELECT count(*) AS n FROM history WHERE name = 'RecoverEpoch'")

    others = [v for v in VALUES if v != pool_nodes.SLOW_VALUE]
    assert len(slow_epoch) == 1
    slow = slow_epoch[0]
    if deferred:
        assert sorted(got) == VALUES  # the killed epoch ran again elsewhere, and delivered once
        assert (slow["state"], slow["outcome"]) == ("finished", "finished")
        assert slow["worker"] != killed
        assert entries == []
        assert recovered == [{"n": 1}]
        sink_values = rows(db, "SELECT count(*) AS n FROM packets WHERE node_name = 'Sink' AND state = 'consumed'")
        assert sink_values == [{"n": len(VALUES)}]
    else:
        assert sorted(got) == others
        assert (slow["state"], slow["outcome"]) == ("cancelled", "cancelled")
        assert "interrupted" in slow["error"] and killed in slow["error"]
        assert entries == [(ids[pool_nodes.SLOW_VALUE], "Work", "interrupted", pool_nodes.SLOW_VALUE)]
        assert recovered == [{"n": 0}]
    others_done = rows(db, "SELECT count(*) AS n FROM epochs WHERE node_name = 'Work' AND state = 'finished'")
    assert others_done == [{"n": len(VALUES) if deferred else len(others)}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_results") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]


def test_process_pool_timeout_kills_the_worker(tmp_path, monkeypatch):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv(pool_nodes.LOG_ENV, log)
    got: list = []
    failures: list = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "t.db"), on_error="continue",
                    error_callback=failures.append, process_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", pool_nodes.sleep_five_on_zero)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", timeout=0.3)
        net.inject_packet("Work", "in", 1)
        net.start()  # the pool's workers are spawned and warm before the clock starts (a loaded machine)
        zero = net.inject_packet("Work", "in", 0)
        for value in (2, 3):
            net.inject_packet("Work", "in", value)
        began = time.monotonic()
        net.start()
        elapsed = time.monotonic() - began
        sleeper = [pid for what, pid, _ in pool_nodes.read_log(log) if what == "sleeping"]
        assert len(sleeper) == 1
        workers = list(net._rt.pools.pools["p"].workers.values())
        assert sleeper[0] != os.getpid()
        # killed at the deadline (long before its 5 s sleep) and replaced: the pool keeps its size
        assert sleeper[0] not in {w.pid for w in workers}
        assert len(workers) == 2 and all(w.is_alive() for w in workers)
        with pytest.raises(ProcessLookupError):
            os.kill(sleeper[0], 0)
        jobs = net.query("SELECT worker, outcome FROM epoch_jobs WHERE node_name = 'Work' AND outcome != 'finished'")
        entries = [(e.packet_id, e.reason) for e in net.dead_letter_queue.get_all()]
        # the pool keeps working after the kill: more values go through it
        for value in (4, 5):
            net.inject_packet("Work", "in", value)
        net.start()
        epochs = net.query("SELECT error_type, count(*) AS n FROM epochs WHERE node_name = 'Work' GROUP BY 1 ORDER BY 1")
    assert elapsed < 3.0, f"the 0.3 s timeout ended a 5 s epoch only after {elapsed:.2f} s"
    assert len(failures) == 1 and isinstance(failures[0].__cause__, netrun.EpochTimeout)
    assert "killed" in str(failures[0].__cause__)
    assert len(jobs) == 1 and jobs[0]["outcome"] == "failed" and jobs[0]["worker"].startswith("process:p:")
    assert entries == [(zero, "failed")]
    assert sorted(got) == [1, 2, 3, 4, 5]
    assert epochs == [{"error_type": None, "n": 5}, {"error_type": "EpochTimeout", "n": 1}]


def test_thread_pool_timeout_discards_the_late_result(tmp_path):
    got: list = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "t.db"), on_error="raise",
                    thread_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", pool_nodes.sleep_long_on_zero)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", timeout=0.1)
        zero = net.inject_packet("Work", "in", 0)
        began = time.monotonic()
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
        elapsed = time.monotonic() - began
        assert isinstance(raised.value.__cause__, netrun.EpochTimeout)
        assert elapsed < 2.5, f"the timeout was noticed after {elapsed:.2f} s, not at its 0.1 s deadline (the epoch sleeps 4 s)"
        assert net.query("SELECT state, error_type FROM epochs WHERE node_name = 'Work'") == \
            [{"state": "failed", "error_type": "EpochTimeout"}]
        # the thread runs on; its late result must be dropped, and said so in the node log
        deadline = time.monotonic() + 10
        while not (late := [t for t in net.get_node_log("Work") if t.startswith("late result of worker")]):
            assert time.monotonic() < deadline, "the late result was never recorded"
            time.sleep(0.02)
        assert "thread:p:" in late[0] and "discarded" in late[0]
        net.start()
        assert got == []  # the late "0" never reaches the sink
        assert [(e.packet_id, e.reason) for e in net.dead_letter_queue.get_all()] == [(zero, "failed")]
        assert net.query("SELECT count(*) AS n FROM epoch_results") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]
        net.inject_packet("Work", "in", 1)
        net.start()
    assert got == [1]


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_pool_timeout_calls_the_failure_function_after_each_attempt(tmp_path, monkeypatch, kind):
    """A timed-out attempt is a failed one: `exec_failed_node_func` runs (in the owner: the worker was
    killed, or its thread runs on) after each, as it does in the main thread."""
    monkeypatch.setenv(pool_nodes.LOG_ENV, str(tmp_path / "calls.log"))
    calls: list = []

    def failed(ctx):
        calls.append((ctx.retry_count, type(ctx.retry_exceptions[-1]).__name__, sorted(ctx.input_salvo),
                      ctx.epoch_id))
        print(f"failure function: attempt {ctx.retry_count}")

    sleeper = pool_nodes.sleep_long_on_zero if kind == "thread" else pool_nodes.sleep_five_on_zero
    failures: list = []
    pools = {f"{kind}_pools": {"p": {"size": 2}}}
    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "t.db"), on_error="continue",
                    error_callback=failures.append, **pools) as net:
        net.set_node_exec("Work", sleeper, exec_failed_node_func=failed)
        net.set_node_exec("Sink", collect([]))
        net.set_node_config("Work", pool="p", timeout=0.3, retries=1, defer_net_actions=True)
        net.inject_packet("Work", "in", 1)
        net.start()  # warm: the workers are up before the timed value
        zero = net.inject_packet("Work", "in", 0)
        net.start()
        epoch = net.query("SELECT id, state, error_type FROM epochs WHERE node_name = 'Work' AND state != 'finished'")
        logs = [t for t in net.get_node_log("Work") if t.startswith("failure function")]
        dead = [(e.packet_id, e.reason) for e in net.dead_letter_queue.get_all()]
    assert [c[:3] for c in calls] == [(0, "EpochTimeout", ["in"]), (1, "EpochTimeout", ["in"])]
    assert epoch == [{"id": calls[0][3], "state": "failed", "error_type": "EpochTimeout"}]
    assert logs == ["failure function: attempt 0", "failure function: attempt 1"]
    assert len(failures) == 1 and dead == [(zero, "failed")]


UNGUARDED = """
import sys
sys.path.insert(0, {root!r})
import netrun
from netrun.graphs import chain
from tests.integration import pool_nodes

# no `if __name__ == "__main__":` guard: every spawned worker runs this again, and fails
net = netrun.Net(chain("Source", "Work", "Sink"), db={db!r}, process_pools={{"p": {{"size": 2}}}})
net.set_node_exec("Work", pool_nodes.times_ten)
net.set_node_exec("Sink", pool_nodes.times_ten)
net.set_node_config("Work", pool="p")
net.inject_packet("Work", "in", 1)
net.start()
"""


def test_process_workers_that_die_before_running_anything_stop_the_pool_with_a_clear_error(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED.format(root=str(Path(__file__).resolve().parents[2]), db=str(tmp_path / "run.db")))
    began = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode != 0
    assert time.monotonic() - began < 60  # not workers started forever
    assert "WorkerLost" in done.stderr and "died before running anything, 3 times in a row" in done.stderr
    assert 'if __name__ == "__main__":' in done.stderr


def test_a_timeout_counts_from_the_start_of_the_epoch_not_from_a_worker_still_starting(tmp_path):
    """A process worker whose start function takes 1 s is handed its first job at once; the node's
    0.5 s timeout runs from when the job starts, not from the hand-over (the slow start used to be
    counted: every first epoch timed out and each replacement worker started slowly again)."""
    got: list = []
    failures: list = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "t.db"), on_error="continue",
                    error_callback=failures.append, process_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", pool_nodes.times_ten, start_node_func=pool_nodes.slow_start)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", timeout=0.5)
        for value in range(6):
            net.inject_packet("Work", "in", value)
        net.start()
        timed_out = net.query("SELECT count(*) AS n FROM epochs WHERE error_type = 'EpochTimeout'")
    assert failures == [] and timed_out == [{"n": 0}]
    assert sorted(got) == [v * 10 for v in range(6)]
