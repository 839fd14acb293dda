"""A rate-limited node gives each epoch the next start slot as it is dispatched (ahead of its start:
up to 64 main-thread epochs, or five jobs per pool worker). pause() withdrew the epochs that had
not started, but not their slots: the next start() waited for starts that never happened, about
(epochs withdrawn) / rate seconds (1.5 s at 20/s with a thread pool of 8, over 3 s in the main
thread at 10/s), then ran at the rate. Found by attacking netrun (pause/start cycles under a rate
limit ran twice as long)."""

from __future__ import annotations

import threading
import time

import pytest

import netrun
from netrun.graphs import chain

RATE = 10.0


@pytest.mark.parametrize("pool", [None, "io"])
def test_start_after_pause_resumes_at_the_rate_without_waiting_for_withdrawn_slots(tmp_path, pool):
    starts: list[float] = []
    enough = threading.Event()

    def work(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        starts.append(time.monotonic())
        if len(starts) >= 3:
            enough.set()
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "run.db"),
                    thread_pools={"io": {"size": 8}}) as net:
        net.set_node_exec("Work", work)
        net.set_node_exec("Sink", lambda ctx, packets: ctx.consume_packet(packets["in"][0]))
        net.set_node_config("Work", rate_limit_per_second=RATE, pool=pool)
        for value in range(60):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        assert enough.wait(20)
        net.pause()
        before = len(starts)
        last = starts[-1]
        idle_until = last + 2 / RATE  # the next slot is due by now: the restart should start at once
        while time.monotonic() < idle_until:
            time.sleep(0.01)
        restarted = time.monotonic()
        net.start(threaded=True)
        deadline = restarted + 10
        while len(starts) <= before and time.monotonic() < deadline:
            time.sleep(0.005)
        net.pause()
    assert len(starts) > before, "nothing started after the restart"
    waited = starts[before] - restarted
    assert waited < 0.5, f"the first start after the restart waited {waited:.2f} s"
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps[:before - 1] + gaps[before:], default=1.0) > 0.5 / RATE  # the rate still holds
