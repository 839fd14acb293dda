"""pause() from another thread while a foreground start() runs in a third thread (README: "a
foreground start() from another thread"): pause() waited only for a background runner, so with
pool epochs in flight it returned at once, poll() said "paused" while they ran, and
save_checkpoint() right after it was refused (an epoch was running). It now waits for that run's
loop to end, as it joins a background runner. Found by attacking netrun."""

from __future__ import annotations

import threading

import netrun
from netrun.graphs import chain


def test_pause_from_another_thread_waits_for_the_pool_epochs_of_a_foreground_run(tmp_path):
    inside, release = threading.Event(), threading.Event()
    running: list[int] = []
    got: list = []

    def work(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        running.append(value)
        inside.set()
        assert release.wait(30)
        running.remove(value)
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "run.db"),
                    thread_pools={"io": {"size": 2}}) as net:
        net.set_node_exec("Work", work)
        net.set_node_config("Work", pool="io")
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        for value in range(6):
            net.inject_packet("Work", "in", value)
        runner = threading.Thread(target=net.start, daemon=True)
        runner.start()
        assert inside.wait(20)
        pauser = threading.Thread(target=net.pause, daemon=True)
        pauser.start()
        pauser.join(0.3)
        assert pauser.is_alive(), "pause() returned while pool epochs of the run were still running"
        release.set()
        pauser.join(20)
        assert not pauser.is_alive()
        assert running == [] and net.poll().state == "paused" and net.poll().running == 0
        net.save_checkpoint(str(tmp_path / "ckpt"))  # refused while an epoch ran
        runner.join(20)
        assert not runner.is_alive()
        net.start()
    assert sorted(got) == list(range(6))
