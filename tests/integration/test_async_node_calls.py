"""Async node code that awaits async_pause(), async_stop() or async_wait_until_blocked() of the net
running it. Each twin handed its call to another thread (`asyncio.to_thread`), which could not tell
it was node code: async_pause() of a background run joined the runner, which waited for this very
epoch (the whole run hung); in a thread pool's async node async_stop() hung too, and
async_wait_until_blocked() hung (background) or returned at once while the net still ran
(foreground). Found by attacking netrun. Run in a child process, so that a hang fails the test
after a bound instead of hanging the suite."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import asyncio, json, sys
    import netrun
    from netrun.graphs import chain

    name, where, how = sys.argv[2:5]
    got, outcome = [], []

    async def work(ctx, packets):
        value = await ctx.consume_packet(packets["in"][0])
        try:
            await asyncio.wait_for(getattr(ctx._net, name)(), 10)
            outcome.append("returned")
        except asyncio.TimeoutError:
            outcome.append("hung")
        except Exception as exc:
            outcome.append(type(exc).__name__)
        await ctx.load_output_port("out", await ctx.create_packet(value))
        await ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "Work", "Sink"), db=sys.argv[1], thread_pools={"p": {"size": 2}}) as net:
        net.set_node_exec("Work", work)
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        if where == "pool":
            net.set_node_config("Work", pool="p")
        net.inject_packet("Work", "in", 7)
        if how == "threaded":
            net.start(threaded=True)
            net.wait_until_blocked(timeout=20)
        else:
            net.start()
        net.start()  # a pause (async_stop pauses first) is cleared by the next start
        print(json.dumps({"got": got, "outcome": outcome}))
""")


@pytest.mark.parametrize("how", ["foreground", "threaded"])
@pytest.mark.parametrize("where", ["main", "pool"])
@pytest.mark.parametrize("name, expected", [("async_pause", "returned"), ("async_stop", "ContextUsageError"),
                                            ("async_wait_until_blocked", "ContextUsageError")])
def test_async_node_code_awaiting_the_net_that_runs_it_neither_hangs_nor_waits_for_itself(
        tmp_path, name, expected, where, how):
    done = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "run.db"), name, where, how],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"got": [7], "outcome": [expected]}, result
