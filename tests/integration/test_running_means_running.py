"""One meaning of "running" everywhere: `Net.poll()` (the live display) and `netrun status` (the
database) count as running the epochs whose code runs; the rest a pool holds are "queued"."""

from __future__ import annotations

import threading
import time

import netrun
from netrun.graphs import chain

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
