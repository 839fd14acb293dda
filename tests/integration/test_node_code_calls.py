"""Node code that calls close(), stop(), start(), run_step() or wait_until_blocked() (or their async
twins) of the net running it: in the main thread each raised ContextUsageError (but
wait_until_blocked, which returned at once), from a thread pool's worker each waited for the run,
which waited for that worker, for ever, and so did async_stop() from an async node (found by
attacking netrun: the whole process hung).
Run in a child process, so that a hang fails the test after a bound instead of hanging the suite."""

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
    from tests.integration import pool_nodes

    got = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=sys.argv[1], thread_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", pool_nodes.call_the_net_from_the_pool)
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        net.set_node_config("Work", pool="p")
        net.inject_packet("Work", "in", 7)
        if sys.argv[2] == "threaded":
            net.start(threaded=True)
            net.wait_until_blocked(timeout=20)
        else:
            net.start()
        net.start()  # stop() paused the net before it refused to close it, as in the main thread
        print(json.dumps({"got": got, "log": net.get_node_log("Work")}))
""")


@pytest.mark.parametrize("how", ["foreground", "threaded"])
def test_node_code_in_a_thread_pool_cannot_close_or_restart_the_net_that_runs_it(tmp_path, how):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "run.db"), how], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["got"] == [7]
    log = result["log"]
    assert [line.split(" ")[:2] for line in log] == [[name, "ContextUsageError:"] for name in
                                                     ("wait_until_blocked", "close", "stop", "start", "run_step")], log
    assert all("pause()" in line for line in log), log
    assert all("thread pool" in line for line in log if not line.startswith("wait")), log


@pytest.mark.parametrize("threaded", [False, True])
def test_wait_until_blocked_from_main_thread_node_code_is_refused_instead_of_returning_running(tmp_path, threaded):
    import netrun
    from netrun.graphs import chain

    errors: list = []
    with netrun.Net(chain("Source", "Sink"), db=str(tmp_path / "run.db")) as net:
        def sink(ctx, packets):
            ctx.consume_packet(packets["in"][0])
            try:
                errors.append(net.wait_until_blocked(timeout=5).state)
            except netrun.ContextUsageError as exc:
                errors.append(str(exc))

        net.set_node_exec("Sink", sink)
        net.inject_packet("Sink", "in", 1)
        net.start(threaded=threaded)
        assert net.wait_until_blocked(timeout=20).state == "blocked"
    [error] = errors
    assert "wait_until_blocked()" in error and "node code" in error, error


ASYNC_CHILD = textwrap.dedent("""
    import asyncio, json, sys
    import netrun
    from netrun.graphs import chain
    from tests.integration import pool_nodes

    got = []
    with netrun.Net(chain("Source", "Work", "Sink"), db=sys.argv[1]) as net:
        net.set_node_exec("Work", pool_nodes.await_the_net_from_async_node_code)
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        net.inject_packet("Work", "in", 7)
        if sys.argv[2] == "async":
            asyncio.run(net.async_start())
        else:
            net.start()
        net.start()  # async_stop() paused the net before it refused to close it
        print(json.dumps({"got": got, "log": net.get_node_log("Work")}))
""")


@pytest.mark.parametrize("how", ["async", "sync"])
def test_async_node_code_cannot_stop_or_wait_for_the_net_that_runs_it(tmp_path, how):
    """async_stop() from an async node hung (its thread waited for the loop that awaited it), and
    async_wait_until_blocked() returned at once while the net still ran."""
    done = subprocess.run([sys.executable, "-c", ASYNC_CHILD, str(tmp_path / "run.db"), how], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["got"] == [7]
    assert [line.split(" ")[:2] for line in result["log"]] == [
        ["async_wait_until_blocked", "ContextUsageError:"], ["async_stop", "ContextUsageError:"]], result["log"]
