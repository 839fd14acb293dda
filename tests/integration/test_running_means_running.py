"""One meaning of "running" everywhere: `Net.poll()` (the live display) and `netrun status` (the
database) count as running the epochs whose code runs; the rest a pool holds are "queued"."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

import netrun
from netrun.graphs import chain

from tests.integration import pool_nodes

VALUES = 12
POOL = 2


def _wait(condition, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_poll_and_status_agree_on_running_and_queued(tmp_path):
    release = threading.Event()

    def work(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        release.wait(30)

    db = tmp_path / "pool.db"
    with netrun.Net(chain("Source", "Work"), db=str(db), thread_pools={"io": {"size": POOL}}) as net:
        net.set_node_exec("Work", work)
        net.set_node_config("Work", pool="io")
        for value in range(VALUES):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        try:
            # both workers hold an epoch: the pool has more dispatched, waiting for them
            polled = _wait(lambda: (s := net.poll().nodes["Work"]).running == POOL and s.queued > 0 and s,
                           "both workers to run an epoch")
            assert polled.running == POOL  # not the epochs dispatched to the pool
            assert polled.startable + polled.queued + polled.running == VALUES

            def agreed():
                with netrun.NetInspector(db) as inspector:
                    stored = inspector.status()["nodes"]["Work"]
                now = net.poll().nodes["Work"]
                same = (stored["running"], stored["queued"], stored["startable"]) == \
                    (now.running, now.queued, now.startable)
                return same and stored

            stored = _wait(agreed, "the status of the file to show what poll() shows")
            assert stored["running"] == POOL and stored["queued"] == polled.queued
        finally:
            release.set()
        final = net.wait_until_blocked(timeout=30)
    assert final.nodes["Work"].finished == VALUES
    assert (final.nodes["Work"].running, final.nodes["Work"].queued) == (0, 0)


class PollingClock:
    """The system clock, but every `now()` asks `poll()` first: the owner reads the clock all along an
    epoch's life (its start, its attempt rows, its end), so the counts are seen between every step."""

    def __init__(self) -> None:
        self.net: netrun.Net | None = None
        self.totals: list[int] = []

    def now(self) -> datetime:
        if self.net is not None:
            work = self.net.poll().nodes["Work"]
            self.totals.append(work.startable + work.queued + work.running + work.finished + work.failed
                               + work.cancelled)
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.mark.parametrize("deferred", [False, True])
def test_poll_counts_a_main_thread_epoch_once_while_it_starts_and_ends(tmp_path, deferred):
    """poll() counts each epoch in exactly one state: one the main thread starts is no longer startable
    and not yet running while its start is journaled, and one that ended was both running and finished."""
    clock = PollingClock()
    with netrun.Net(chain("Source", "Work", "Sink"), db=tmp_path / "run.db", clock=clock, on_error="continue") as net:
        net.set_node_exec("Work", pool_nodes.fail_on_two)
        net.set_node_exec("Sink", lambda ctx, packets: ctx.consume_packet(packets["in"][0]))
        net.set_node_config("Work", defer_net_actions=deferred)
        for value in range(6):
            net.inject_packet("Work", "in", value)
        clock.net = net
        net.start()
        clock.net = None
        assert net.poll().nodes["Work"].finished == 5
    counted = clock.totals[clock.totals.index(6):]  # from the moment the sim created the six epochs
    assert counted and set(counted) == {6}, sorted(set(counted))
