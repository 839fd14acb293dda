"""Job transitions on PostgreSQL, where writers are not serialized: a worker's report and the owner's
take-back (its sweep) race on the job row, and exactly one of them wins, in either order."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

import netrun
from netrun import jobs
from netrun.db import open_connection, transaction
from netrun.graphs import chain
from netrun.jobs import INSERT_JOB, NewJob, job_params

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def conns(pg_url):
    netrun.Net(chain("A", "B"), db=pg_url).close()  # a migrated schema
    worker, owner = open_connection(pg_url), open_connection(pg_url)
    with transaction(owner):
        owner.execute(INSERT_JOB, job_params(NewJob("e1", 1, "B", 0, "cpu", "queued", None, "t", None)))
    with transaction(worker):
        claim = jobs.claim(worker, "w1", "cpu", NOW, timedelta(seconds=1))
    assert claim is not None and claim.epoch_id == "e1"
    yield worker, owner, claim
    worker.close()
    owner.close()


def _in_thread(func):
    result: list = []
    thread = threading.Thread(target=lambda: result.append(func()))
    thread.start()
    return thread, result


def test_the_report_committed_first_wins_and_the_sweep_loses(conns):
    worker, owner, claim = conns
    worker.execute("BEGIN IMMEDIATE")
    assert jobs.report(worker, claim, "w1")  # holds the row until its commit

    def sweep() -> bool:
        with transaction(owner):
            return jobs.take_back(owner, claim, "w1", requeue=True, now="t")

    thread, result = _in_thread(sweep)
    thread.join(0.3)
    assert thread.is_alive()  # the take-back waits for the report's transaction
    worker.execute("COMMIT")
    thread.join(10)
    assert result == [False]
    assert owner.execute("SELECT state, attempt FROM epoch_jobs").fetchall() == [("reported", 0)]


def test_the_sweep_committed_first_wins_and_the_report_is_refused(conns):
    worker, owner, claim = conns
    owner.execute("BEGIN IMMEDIATE")
    assert jobs.take_back(owner, claim, "w1", requeue=True, now="t")

    def report() -> bool:
        with transaction(worker):
            return jobs.report(worker, claim, "w1")

    thread, result = _in_thread(report)
    thread.join(0.3)
    assert thread.is_alive()
    owner.execute("COMMIT")
    thread.join(10)
    assert result == [False]
    assert owner.execute("SELECT state, attempt, worker FROM epoch_jobs").fetchall() == [("queued", 1, None)]


def test_two_workers_claiming_at_once_skip_each_others_job(conns, pg_url):
    worker, owner, _claim = conns
    with transaction(owner):
        owner.executemany(INSERT_JOB, [job_params(NewJob(f"e{i}", i, "B", 0, "cpu", "queued", None, "t", None))
                                       for i in (2, 3)])
    other = open_connection(pg_url)
    try:
        worker.execute("BEGIN IMMEDIATE")
        first = jobs.claim(worker, "w1", "cpu", NOW, timedelta(seconds=1))
        with transaction(other):  # not blocked by the row the first claim holds: it takes the next one
            second = jobs.claim(other, "w2", "cpu", NOW, timedelta(seconds=1))
        worker.execute("COMMIT")
    finally:
        other.close()
    assert {first.epoch_id, second.epoch_id} == {"e2", "e3"}


@pytest.mark.parametrize("limit", [1, 3])
def test_a_claim_takes_no_more_jobs_than_asked_on_postgres(pg_url, limit):
    """`IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` may be run again for each row and claim more
    than n: one worker thread once held 8 jobs. The claim picks its rows once (a materialized CTE)."""
    netrun.Net(chain("A", "B"), db=pg_url).close()
    conn = open_connection(pg_url)
    try:
        with transaction(conn):
            conn.execute("DELETE FROM epoch_jobs")
            conn.executemany(INSERT_JOB, [job_params(NewJob(f"e{i}", i, "B", 0, "cpu", "queued", None, "t", None))
                                          for i in range(1, 11)])
        with transaction(conn):
            claimed = jobs.claim_many(conn, "w1", "cpu", NOW, timedelta(seconds=1), limit)
        assert [c.epoch_id for c in claimed] == [f"e{i}" for i in range(1, limit + 1)]
        assert conn.execute("SELECT count(*) FROM epoch_jobs WHERE state = 'claimed'").fetchone()[0] == limit
    finally:
        conn.close()


@pytest.mark.parametrize("node, waits", [("B", "on"), ("A", "off")], ids=["non-deferred", "deferred"])
def test_a_claim_waits_for_the_disk_only_for_a_non_deferred_epoch(pg_url, node, waits):
    """A worker's transaction commits without waiting for the disk unless it claimed a job of a node
    listed as non-deferred (its epoch is durably `running` before its code runs)."""
    netrun.Net(chain("A", "B"), db=pg_url, durability="full").close()
    owner = open_connection(pg_url, durability="full")
    worker = open_connection(pg_url, durability="full")
    worker.pg.execute("SET synchronous_commit = on")  # as on a durable server (the tests' server is not)
    try:
        with transaction(owner):
            owner.execute(INSERT_JOB, job_params(NewJob("e1", 1, node, 0, "cpu", "queued", None, "t", None)))
        with transaction(worker):
            jobs.send_claim(worker, "w1", "cpu", NOW, timedelta(seconds=1), 1)
            worker.execute(jobs.NO_WAIT_UNLESS, (["w1"], jobs.iso(NOW), ["B"]))
            assert worker.execute("SELECT current_setting('synchronous_commit')").fetchone() == (waits,)
        assert worker.execute("SELECT current_setting('synchronous_commit')").fetchone() == ("on",)  # one transaction's
        assert owner.execute("SELECT state, worker FROM epoch_jobs").fetchall() == [("claimed", "w1")]
    finally:
        worker.close()
        owner.close()
