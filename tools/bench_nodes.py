"""Module-level node functions for tools/bench_runtime.py.

Process-pool workers are spawned and unpickle node functions with cloudpickle, which stores
a module-level function by reference: the functions must live in an importable module (this
one), not in the benchmark script. bench_runtime.py puts this folder on `sys.path` and on
`PYTHONPATH` so the spawned workers can import `bench_nodes` too.

Only the public context API is used (`consume_packet`, `create_packet`, `load_output_port`,
`send_output_salvo`, `epoch_id`).
"""

from __future__ import annotations

import time

# Seconds a `sleepy` epoch sleeps; set by the benchmark before the net starts (thread pools
# share this module with the main thread; process workers use the default).
SLEEP_S = 0.010

# time.monotonic() of every value consumed by `timed_sink` / returned by `timed_fetch`, in
# order (main process only: these nodes never run in a process pool).
SINK_TIMES: list[float] = []
FETCH_DONE_TIMES: list[float] = []


def source(ctx, packets):
    """A source epoch: one packet holding the epoch id."""
    ctx.load_output_port("out", ctx.create_packet(ctx.epoch_id))
    ctx.send_output_salvo("send_out")


def forward(ctx, packets):
    """in -> out, the same value in a new packet."""
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def consume(ctx, packets):
    """Consume the input packet and emit nothing (a trivial epoch)."""
    ctx.consume_packet(packets["in"][0])


def sleepy(ctx, packets):
    """in -> out after sleeping SLEEP_S seconds (an I/O-bound epoch)."""
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(SLEEP_S)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def timed_fetch(ctx, packets):
    """`sleepy`, recording when the sleep ended."""
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(SLEEP_S)
    FETCH_DONE_TIMES.append(time.monotonic())
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def timed_sink(ctx, packets):
    """Consume the input packet and record when."""
    ctx.consume_packet(packets["in"][0])
    SINK_TIMES.append(time.monotonic())
