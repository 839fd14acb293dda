"""Batches of pool jobs: a process worker whose epochs are quick claims several jobs in one
statement and reports them in one transaction; the workers of a thread pool report and claim
at a shared desk (group commit). Each job stays its own compare-and-set row, and a worker that
dies holding a batch loses only the epochs it started: the others simply run again."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

import netrun
from netrun import jobs
from netrun.clock import SystemClock, iso
from netrun.db import transaction
from netrun.graphs import chain
from netrun.worker import BATCH, WorkerHost, WorkerSpec, read_marks

from tests.integration import pool_nodes
from tests.crash.test_worker_death import wait_for_file
from .helpers import pool_net_to_kill, rows

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
LEASE = timedelta(seconds=1)


def _queue(conn, epoch_id: str, seq: int, priority: int = 0, not_before: datetime | None = None) -> None:
    job = jobs.NewJob(epoch_id, seq, "Work", priority, "p", "queued", None, iso(T0),
                      iso(not_before) if not_before else None)
    with transaction(conn):
        conn.execute(jobs.INSERT_JOB, jobs.job_params(job))


def _states(conn) -> dict:
    return {e: (state, worker, attempt) for e, state, worker, attempt in
            conn.execute("SELECT epoch_id, state, worker, attempt FROM epoch_jobs ORDER BY seq")}


def test_a_batch_claim_takes_the_due_jobs_in_queue_order_up_to_its_limit(job_db):
    _path, conn = job_db
    for seq, epoch in enumerate(["E1", "E2", "E3", "E4", "E5"], start=1):
        _queue(conn, epoch, seq, not_before=T0 + timedelta(seconds=5) if epoch == "E2" else None)
    _queue(conn, "E6", 6, priority=1)  # a downstream node's job goes first
    with transaction(conn):
        claimed = jobs.claim_many(conn, "w1", "p", T0, LEASE, 3)
    assert [c.epoch_id for c in claimed] == ["E6", "E1", "E3"]  # E2 is not due yet
    with transaction(conn):
        more = jobs.claim_many(conn, "w2", "p", T0, LEASE, 3)
    assert [c.epoch_id for c in more] == ["E4", "E5"]
    states = _states(conn)
    assert states["E2"] == ("queued", None, 0)
    assert {e for e, (state, worker, _) in states.items() if worker == "w1" and state == "claimed"} == \
        {"E6", "E1", "E3"}


def test_a_batch_report_where_one_job_was_taken_back_writes_only_the_others(job_db):
    _path, conn = job_db
    for seq, epoch in enumerate(["E1", "E2", "E3"], start=1):
        _queue(conn, epoch, seq)
    with transaction(conn):
        batch = jobs.claim_many(conn, "w1", "p", T0, LEASE, 3)
    taken = batch[1]
    with transaction(conn):  # the owner takes E2 back (its lease ran out), and w2 claims it again
        assert jobs.take_back(conn, taken, "w1", requeue=True, now=iso(T0 + 2 * LEASE))
        [again] = jobs.claim_many(conn, "w2", "p", T0 + 2 * LEASE, LEASE, 3)
    assert (again.epoch_id, again.attempt) == ("E2", 1)
    with transaction(conn):
        won = jobs.report_many(conn, [(job, "w1") for job in batch])
    assert won == {"E1", "E3"}
    assert _states(conn) == {"E1": ("reported", "w1", 0), "E2": ("claimed", "w2", 1), "E3": ("reported", "w1", 0)}
    with transaction(conn):  # a report lands once
        assert jobs.report_many(conn, [(job, "w1") for job in batch]) == set()


def test_a_worker_marks_the_jobs_it_starts_until_it_reports_them(tmp_path):
    db = str(tmp_path / "w.db")
    netrun.Net(chain("Src", "Work"), db=db).close()
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = WorkerSpec(db_path=db, pool="p", nodes={}, functions={}, batch=4, marks_dir=str(marks))
    host = WorkerHost(spec, "process:p:1@ab", SystemClock(), None)
    try:
        held = [jobs.Claim("E1", "Work", 0), jobs.Claim("E2", "Work", 3), jobs.Claim("E3", "Work", 0)]
        host.claimed(held)
        assert read_marks(str(marks), "process:p:1@ab") == set()
        host.starting(held[0])
        host.starting(held[1])
        assert read_marks(str(marks), "process:p:1@ab") == {("E1", 0), ("E2", 3)}
        host.claimed([])  # reported: nothing is held, nothing marked
        assert read_marks(str(marks), "process:p:1@ab") == set()
    finally:
        host.close()
    assert read_marks(None, "process:p:1@ab") is None  # no marks: every held job counts as started
    assert read_marks(str(marks), "process:p:2@ab") is None


@pytest.mark.parametrize("deferred", [False, True], ids=["immediate", "deferred"])
def test_a_killed_worker_holding_a_batch_loses_only_the_epoch_it_started(tmp_path, monkeypatch, deferred):
    """Quick epochs make the worker claim several jobs at once; it is killed in value 7's epoch.
    The epochs of its batch that started (value 7, and those that ended before it but were not
    reported yet: a batch is reported at once) follow the crash semantics; the jobs it held and
    never started run again, uncounted. Nothing is lost or delivered twice."""
    pid_file = str(tmp_path / "slow.pid")
    monkeypatch.setenv(pool_nodes.PID_ENV, pid_file)
    values = list(range(20))
    got: list = []
    net, ids = pool_net_to_kill(tmp_path, got, pool_nodes.quick_but_slow_on_seven, deferred=deferred, size=1,
                                values=values)
    db = net.db_path
    with net:
        wait_for_file(pid_file)
        time.sleep(0.05)
        with open(pid_file) as handle:
            os.kill(int(handle.read()), signal.SIGKILL)
        assert net.wait_until_blocked(timeout=60).state == "blocked"
        entries = [(e.packet_id, e.reason) for e in net.dead_letter_queue.get_all()]
        recovered = net.query("SELECT count(*) AS n FROM history WHERE name = 'RecoverEpoch'")
        lost = net.query("SELECT count(*) AS n FROM epoch_attempts WHERE error_type = 'WorkerLost'")
    dead = {packet for packet, _reason in entries}
    assert sorted(got + [v for v in values if ids[v] in dead]) == values  # each value once, either way
    if deferred:
        assert sorted(got) == values and entries == []
        assert recovered == lost  # each death counted, and the epoch ran again
        assert 1 <= lost[0]["n"] <= BATCH  # value 7's, and at most the rest of its batch
    else:
        assert ids[pool_nodes.SLOW_VALUE] in dead
        assert {reason for _packet, reason in entries} == {"interrupted"}
        assert 1 <= len(entries) <= BATCH
        assert recovered == lost == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_results") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]


def test_a_full_batch_of_jobs_with_piped_values_fits_in_a_pipe():
    """The owner writes a process worker's jobs into a pipe the worker reads only between its jobs: a
    write that filled the pipe (64 KiB on Linux) would wait for the worker. A worker holds BATCH jobs at
    most, whose values travel with them only up to PIPE_BUDGET in all (larger ones are read from the
    database by the worker)."""
    import pickle

    from netrun.pools import PIPE_BUDGET, PIPED_VALUE
    from netrun.values import Stored

    limit = min(PIPED_VALUE, PIPE_BUDGET // BATCH)
    packet = "01JPACKET0000000000000000000"
    job = (jobs.Claim("01JEPOCH00000000000000000000", "Work", 0), [("in", packet)], 0, True,
           {packet: Stored("pickle", b"x" * limit, "x" * 60)})
    assert BATCH * len(pickle.dumps([job], protocol=pickle.HIGHEST_PROTOCOL)) < 64 * 1024


@pytest.mark.parametrize("size", [10, 300, 1_000, 3_000])
def test_values_under_and_over_the_piped_size_reach_a_process_pool_whole(tmp_path, size):
    """Values small enough travel with their jobs; larger ones are read by the worker: both arrive."""
    got: list = []
    net = netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "n.db"), process_pools={"p": {"size": 2}})
    with net:
        net.set_node_exec("Work", pool_nodes.times_ten)
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        net.set_node_config("Work", pool="p")
        values = [f"{n:05d}" + "v" * size for n in range(100)]
        for value in values:
            net.inject_packet("Work", "in", value)
        net.start()
    assert sorted(got) == sorted(value * 10 for value in values)
