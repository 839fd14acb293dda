"""A process killed after a deferred main-thread epoch's code returned, but before its end was
committed (netrun applying its queue, advancing the sim), charges that epoch no death: it runs
again, and a value that passes only through deferred nodes arrives exactly once, however often
that happens (with retries=0, two deaths fail an epoch and dead-letter its value)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.integration.helpers import rows

REPO = Path(__file__).resolve().parents[2]

NODES = textwrap.dedent("""
    import os

    def fan(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        for i in range(3000):  # applying 3,000 packets and advancing the sim take a while after the return
            ctx.load_output_port("out", ctx.create_packet(i))
        ctx.send_output_salvo("send_out")
        with open(os.environ["RETURNED"], "a") as handle:
            handle.write("returned\\n")
""")

CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = [{root!r}, {here!r}]
    import netrun
    from netrun.graphs import chain
    import fan_nodes
    if sys.argv[1] == "setup":
        net = netrun.Net(chain("Src", "A", "B"), db={db!r})
        net.set_node_exec("A", fan_nodes.fan)
        net.set_node_config("A", defer_net_actions=True)  # retries=0: a second death would fail it
        net.inject_packet("A", "in", "the value")
        net.close()
    else:
        net = netrun.Net.resume({db!r})
        net.start()
        net.close()
""")


def test_kills_after_a_deferred_epoch_returned_are_no_deaths_of_it(tmp_path):
    (tmp_path / "fan_nodes.py").write_text(NODES)
    db = str(tmp_path / "net.db")
    returned = tmp_path / "returned"
    script = CHILD.format(root=str(REPO), here=str(tmp_path), db=db)
    env = {**os.environ, "RETURNED": str(returned)}
    subprocess.run([sys.executable, "-c", script, "setup"], check=True, env=env, timeout=60)
    for _ in range(2):
        returned.unlink(missing_ok=True)
        child = subprocess.Popen([sys.executable, "-c", script, "run"], env=env)
        deadline = time.monotonic() + 60
        while not returned.exists():
            assert child.poll() is None, "the child ended before A returned"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        assert rows(db, "SELECT state FROM epochs WHERE node_name = 'A'") == [{"state": "startable"}], \
            "the kill landed after A's end was committed: give it more to apply"
    subprocess.run([sys.executable, "-c", script, "run"], check=True, env=env, timeout=120)
    assert rows(db, "SELECT state FROM epochs WHERE node_name = 'A'") == [{"state": "finished"}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_attempts WHERE error_type = 'WorkerLost'") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'live' AND node_name = 'B'") == [{"n": 3000}]
