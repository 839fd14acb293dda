"""close() racing a start() of another thread: a start(threaded=True) (or a foreground start())
that came in after close() had ended the run began a new run on the closing net; its loop restarted
the pool workers close() had just stopped, and close() waited for ever for the owner that loop held
(or the run went on over a deleted temporary database: "disk I/O error"). A run that has not begun
when close() starts now refuses with NetClosedError. Found by attacking netrun; run in a child
process, so that a hang fails the test after a bound instead of hanging the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

CHILD = textwrap.dedent("""
    import json, threading
    import netrun
    from netrun.graphs import chain

    def forward(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    outcome = []
    for trial in range(12):
        net = netrun.Net(chain("Source", "Work", "Sink"), db=None, thread_pools={"io": {"size": 2}})
        net.set_node_exec("Work", forward)
        net.set_node_config("Work", pool="io")
        net.set_node_exec("Sink", lambda ctx, packets: ctx.consume_packet(packets["in"][0]))
        for value in range(300):
            net.inject_packet("Work", "in", value)
        net.start(threaded=True)
        stop, unexpected = threading.Event(), []

        def restart():
            while not stop.is_set():
                try:
                    net.pause()
                    net.start(threaded=True)
                except (netrun.NetClosedError, RuntimeError):
                    pass
                except Exception as exc:
                    unexpected.append(repr(exc))

        starters = [threading.Thread(target=restart, daemon=True) for _ in range(2)]
        for thread in starters:
            thread.start()
        closer = threading.Thread(target=net.close, daemon=True)
        closer.start()
        closer.join(20)
        stop.set()
        for thread in starters:
            thread.join(20)
        leftover = [t.name for t in threading.enumerate() if t.name.startswith("netrun-thread") and t.is_alive()]
        outcome.append({"closed": not closer.is_alive(), "unexpected": unexpected, "workers": leftover})
        if closer.is_alive():
            break
    print(json.dumps(outcome))
""")


def test_close_while_other_threads_start_the_net_returns_and_leaves_no_run():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert all(o == {"closed": True, "unexpected": [], "workers": []} for o in outcome), outcome
