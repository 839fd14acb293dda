"""Async node functions (SPEC "Sync vs Async", "Running the Net"; DESIGN decision 11).

An async exec function gets a context whose methods must be awaited; its epochs in one step
overlap in one event loop (`net.start()` runs each step in a loop of its own, `async_start()`
in the caller's). Async start/stop/failure functions and async value functions work too.
Misuse (an operation not awaited, a sync context used from async code, `run_step()` inside a
running loop) is refused with a clear error; an async epoch past its timeout is cancelled.
"""

from __future__ import annotations

import asyncio
import time

import pytest

import netrun
from netrun.graphs import chain

from .helpers import collect, rows


async def async_double(ctx, packets):
    """Consume `in`, wait a little, send the value doubled on `out` (every ctx call awaited)."""
    value = await ctx.consume_packet(packets["in"][0])
    await asyncio.sleep(0)
    packet = await ctx.create_packet(value * 2)
    await ctx.load_output_port("out", packet)
    await ctx.send_output_salvo("send_out")


async def async_sleep_forward(ctx, packets):
    value = await ctx.consume_packet(packets["in"][0])
    await asyncio.sleep(0.4)
    await ctx.load_output_port("out", await ctx.create_packet(value))
    await ctx.send_output_salvo("send_out")


def make_net(tmp_path, name: str = "net.db", **options) -> netrun.Net:
    return netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / name), **options)


def test_async_exec_function_delivers_values(tmp_path):
    got: list = []
    with make_net(tmp_path) as net:
        net.set_node_exec("Work", async_double)
        net.set_node_exec("Sink", collect(got))
        for value in range(4):
            net.inject_packet("Work", "in", value)
        net.start()
        states = net.query("SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1")
    assert sorted(got) == [0, 2, 4, 6]
    assert states == [{"node_name": "Sink", "state": "finished", "n": 4},
                      {"node_name": "Work", "state": "finished", "n": 4}]


def test_async_sink_and_async_source(tmp_path):
    """Async functions at both ends of a chain: a source with no input, a sink that only consumes."""
    got: list = []

    async def source(ctx, packets):
        for value in ("a", "b", "c"):
            await ctx.load_output_port("out", await ctx.create_packet(value))
        await ctx.send_output_salvo("send_out")

    async def sink(ctx, packets):
        got.append(await ctx.consume_packet(packets["in"][0]))

    with make_net(tmp_path) as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("Work", async_double)
        net.set_node_exec("Sink", sink)
        net.inject_source_epoch("Source")
        net.start()
    assert sorted(got) == ["aa", "bb", "cc"]


def test_async_start_stop_and_failed_functions(tmp_path):
    calls: list = []
    failures: list = []

    async def start(net):
        await asyncio.sleep(0)
        calls.append(("start", net.db_path))

    async def stop(net):
        await asyncio.sleep(0)
        calls.append(("stop", net.db_path))

    async def work(ctx, packets):
        value = await ctx.consume_packet(packets["in"][0])
        if value == 2:
            raise ValueError("two is bad")
        await ctx.load_output_port("out", await ctx.create_packet(value))
        await ctx.send_output_salvo("send_out")

    async def failed(fctx):
        await asyncio.sleep(0)
        failures.append((fctx.node_name, fctx.retry_count, dict(fctx.packet_values),
                         type(fctx.retry_exceptions[-1]).__name__))

    got: list = []
    net = make_net(tmp_path, on_error="continue")
    db = net.db_path
    net.set_node_exec("Work", work, start_node_func=start, stop_node_func=stop, exec_failed_node_func=failed)
    net.set_node_exec("Sink", collect(got))
    ids = {net.inject_packet("Work", "in", value): value for value in (1, 2, 3)}
    net.start()
    assert calls == [("start", db)]
    net.close()
    assert calls == [("start", db), ("stop", db)]
    assert sorted(got) == [1, 3]
    bad = next(pid for pid, v in ids.items() if v == 2)
    assert failures == [("Work", 0, {bad: 2}, "ValueError")]
    failed_epochs = rows(db, "SELECT state, error_type FROM epochs WHERE node_name = 'Work' AND state != 'finished'")
    assert failed_epochs == [{"state": "failed", "error_type": "ValueError"}]


def test_sync_failed_function_of_async_exec_and_async_failed_of_sync_exec(tmp_path):
    seen: list = []

    async def async_fails(ctx, packets):
        await ctx.consume_packet(packets["in"][0])
        raise RuntimeError("async boom")

    def sync_failed(fctx):
        seen.append(("sync-failed", type(fctx.retry_exceptions[-1]).__name__))

    def sync_fails(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        raise KeyError("sync boom")

    async def async_failed(fctx):
        await asyncio.sleep(0)
        seen.append(("async-failed", type(fctx.retry_exceptions[-1]).__name__))

    graph = netrun.Graph([netrun.graphs.simple_node("A", ["in"], []), netrun.graphs.simple_node("B", ["in"], [])], [])
    with netrun.Net(graph, db=str(tmp_path / "n.db"), on_error="continue") as net:
        net.set_node_exec("A", async_fails, exec_failed_node_func=sync_failed)
        net.set_node_exec("B", sync_fails, exec_failed_node_func=async_failed)
        net.inject_packet("A", "in", 1)
        net.inject_packet("B", "in", 2)
        net.start()
    assert sorted(seen) == [("async-failed", "KeyError"), ("sync-failed", "RuntimeError")]


def test_async_value_functions(tmp_path):
    """A packet made from an async value function holds its result when consumed (async or sync consumer)."""
    got: list = []

    async def make(ctx, packets):
        value = await ctx.consume_packet(packets["in"][0])

        async def compute(v=value):
            await asyncio.sleep(0)
            return {"value": v, "square": v * v}

        await ctx.load_output_port("out", await ctx.create_packet_from_value_func(compute))
        await ctx.send_output_salvo("send_out")

    async def async_pass(ctx, packets):  # consumes the value-function packet in async code
        value = await ctx.consume_packet(packets["in"][0])

        async def again(v=value):
            return ("again", v["square"])

        await ctx.load_output_port("out", await ctx.create_packet_from_value_func(again))
        await ctx.send_output_salvo("send_out")

    graph = chain("Source", "Make", "Pass", "Sink")
    with netrun.Net(graph, db=str(tmp_path / "v.db")) as net:
        net.set_node_exec("Make", make)
        net.set_node_exec("Pass", async_pass)
        net.set_node_exec("Sink", collect(got))  # a sync consumer of an async value function
        for value in (2, 3):
            net.inject_packet("Make", "in", value)
        net.start()
        kinds = net.query("SELECT kind, count(*) AS n FROM packet_values GROUP BY 1")
    assert sorted(got) == [("again", 4), ("again", 9)]
    assert kinds == []  # every value consumed


def test_async_start_and_async_run_step_inside_asyncio_run(tmp_path):
    got: list = []

    async def main() -> tuple[list, list]:
        with make_net(tmp_path) as net:
            net.set_node_exec("Work", async_double)
            net.set_node_exec("Sink", collect(got))
            net.inject_packet("Work", "in", 5)
            await net.async_run_step()  # Work's epoch runs; Sink's epoch is not started yet
            after_step = list(got)
            state_after_step = net.query("SELECT node_name, state FROM epochs ORDER BY node_name")
            net.inject_packet("Work", "in", 6)
            await net.async_start()
            return after_step, state_after_step

    after_step, state_after_step = asyncio.run(main())
    assert after_step == []
    assert state_after_step == [{"node_name": "Work", "state": "finished"}]
    assert sorted(got) == [10, 12]


@pytest.mark.parametrize("how", ["start", "async_start"])
def test_async_epochs_overlap(tmp_path, how):
    """Five epochs that each sleep 0.4 s run together: well under the 2 s they take one by one."""
    got: list = []
    with make_net(tmp_path) as net:
        net.set_node_exec("Work", async_sleep_forward)
        net.set_node_exec("Sink", collect(got))
        for value in range(5):
            net.inject_packet("Work", "in", value)
        began = time.monotonic()
        if how == "start":
            net.start()
        else:
            asyncio.run(net.async_start())
        elapsed = time.monotonic() - began
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert elapsed < 1.5, f"5 x 0.4 s async epochs took {elapsed:.3f} s: they did not overlap"


def test_async_ctx_method_not_awaited_fails_the_epoch(tmp_path):
    async def forgets(ctx, packets):
        ctx.consume_packet(packets["in"][0])  # not awaited: nothing happened

    with make_net(tmp_path, on_error="raise") as net:
        net.set_node_exec("Work", forgets)
        net.inject_packet("Work", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
        epochs = net.query("SELECT state, error_type FROM epochs WHERE node_name = 'Work'")
        dead = net.query("SELECT reason FROM dead_letters")
    cause = raised.value.__cause__
    assert isinstance(cause, netrun.ContextUsageError)
    assert "consume_packet" in str(cause) and "await" in str(cause)
    assert raised.value.node_name == "Work"
    assert epochs == [{"state": "failed", "error_type": "ContextUsageError"}]
    assert dead == [{"reason": "failed"}]


def test_async_ctx_result_used_as_a_value_fails_at_once(tmp_path):
    """A pending operation used as a value (here passed on as a packet) is refused, not ignored."""
    async def misuses(ctx, packets):
        value = await ctx.consume_packet(packets["in"][0])
        packet = ctx.create_packet(value)  # forgot await: a pending operation, not a Packet
        if packet:
            pass

    with make_net(tmp_path, on_error="raise") as net:
        net.set_node_exec("Work", misuses)
        net.inject_packet("Work", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
    assert isinstance(raised.value.__cause__, netrun.ContextUsageError)
    assert "create_packet" in str(raised.value.__cause__)


def test_sync_ctx_used_from_async_helper_is_refused(tmp_path):
    errors: list = []

    def work(ctx, packets):
        async def helper():
            return ctx.consume_packet(packets["in"][0])  # a sync context inside a coroutine

        try:
            asyncio.run(helper())
        except netrun.ContextUsageError as exc:
            errors.append(exc)
            raise

    with make_net(tmp_path, on_error="raise") as net:
        net.set_node_exec("Work", work)
        net.inject_packet("Work", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
        live = net.query("SELECT count(*) AS n FROM packets WHERE state = 'consumed'")
    assert isinstance(raised.value.__cause__, netrun.ContextUsageError)
    assert len(errors) == 1 and "consume_packet" in str(errors[0])
    assert live == [{"n": 0}]  # the refused call consumed nothing


def test_async_timeout_cancels_the_epoch(tmp_path):
    async def slow(ctx, packets):
        await ctx.consume_packet(packets["in"][0])
        await asyncio.sleep(10.0)

    with make_net(tmp_path, on_error="raise") as net:
        net.set_node_exec("Work", slow)
        net.set_node_config("Work", timeout=0.05)
        net.inject_packet("Work", "in", 1)
        began = time.monotonic()
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.start()
        elapsed = time.monotonic() - began
        epochs = net.query("SELECT state, error_type FROM epochs WHERE node_name = 'Work'")
    assert isinstance(raised.value.__cause__, netrun.EpochTimeout)
    assert elapsed < 5.0, f"the timed-out async epoch took {elapsed:.3f} s (it sleeps 10 s: it was not cancelled)"
    assert epochs == [{"state": "failed", "error_type": "EpochTimeout"}]


def test_run_step_inside_a_running_loop_is_refused(tmp_path):
    got: list = []

    async def main() -> list:
        with make_net(tmp_path) as net:
            net.set_node_exec("Work", async_double)
            net.set_node_exec("Sink", collect(got))
            net.inject_packet("Work", "in", 1)
            with pytest.raises(netrun.ConfigError, match="async_run_step"):
                net.run_step()
            with pytest.raises(netrun.ConfigError):
                net.start()
            before = net.query("SELECT state FROM epochs")
            await net.async_start()  # the refused calls left the net usable
            return before

    assert asyncio.run(main()) == []  # the refused calls started no epoch
    assert got == [2]


@pytest.mark.parametrize("deferred", [True, False])
def test_an_interrupt_in_one_async_epoch_interrupts_its_neighbours_by_the_crash_semantics(deferred):
    """KeyboardInterrupt in one async epoch cancels the others running beside it: that is not their
    failure (deferred: they run again; non-deferred: dead-lettered 'interrupted', never 'failed')."""
    async def work(ctx, packets):
        value = await ctx.consume_packet(packets["in"][0])
        await asyncio.sleep(0.01)
        if value == 2:
            raise KeyboardInterrupt

    net = netrun.Net(chain("Src", "W"), db=None, on_error="continue")
    net.set_node_exec("W", work)
    net.set_node_config("W", defer_net_actions=deferred)
    for value in range(5):
        net.inject_packet("W", "in", value)
    with pytest.raises(KeyboardInterrupt):
        net.start()
    assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'failed'") == [{"n": 0}]
    letters = net.query("SELECT value, reason FROM dead_letters ORDER BY value")
    if deferred:
        assert letters == []
        assert len(net.get_startable_epochs()) == 3  # 2 and the two cancelled beside it run again
    else:
        assert [r["reason"] for r in letters] == ["interrupted"] * 3
    net.close()
