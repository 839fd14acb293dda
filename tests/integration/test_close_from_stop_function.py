"""A main-thread stop function that calls close() (or stop()) of the net being closed: close() held
its one-closer lock while it called the stop functions, so the second close() waited for the first,
which waited for the stop function: the process hung for ever (found by attacking netrun). A
close() inside close() now returns at once and the close under way finishes. Run in a child
process, so that a hang fails the test after a bound instead of hanging the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, sys
    import netrun
    from netrun.graphs import chain

    log = []

    def stop(net):
        log.append("stop function")
        getattr(net, sys.argv[2])()
        log.append(sys.argv[2] + " returned")

    net = netrun.Net(chain("Source", "Sink"), db=sys.argv[1])
    net.set_node_exec("Sink", lambda ctx, packets: log.append(ctx.consume_packet(packets["in"][0])),
                      stop_func=stop)
    net.inject_packet("Sink", "in", 7)
    net.start()
    net.close()
    log.append(net.poll().state)
    print(json.dumps(log))
""")


@pytest.mark.parametrize("call", ["close", "stop"])
def test_close_called_by_a_stop_function_returns_and_the_net_closes(tmp_path, call):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "run.db"), call], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [7, "stop function", f"{call} returned", "stopped"]
