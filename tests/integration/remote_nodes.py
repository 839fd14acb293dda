"""Node functions for the remote-worker tests, imported by `netrun worker` processes by their import
paths (`tests.integration.remote_nodes:<name>`, the repository root given with --path).

The test's folder is `REMOTE_TEST_DIR` in the workers' environment: the first epoch to run writes
`started-<pid>` there (the worker process running it) and then waits as `REMOTE_TEST_HOLD` says
("" : not at all; a number: that many seconds), so a test can kill, freeze or cut that worker in
the middle of an epoch. Every other epoch runs at once.
"""

from __future__ import annotations

import os
import time

RESULTS: list = []


def _first() -> bool:
    folder = os.environ.get("REMOTE_TEST_DIR")
    if not folder:
        return False
    try:
        os.close(os.open(os.path.join(folder, "first"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    with open(os.path.join(folder, f"started-{os.getpid()}"), "w") as handle:
        handle.write("started\n")
    return True


def times_ten(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if _first() and os.environ.get("REMOTE_TEST_HOLD"):
        time.sleep(float(os.environ["REMOTE_TEST_HOLD"]))
    ctx.load_output_port("out", ctx.create_packet(value * 10))
    ctx.send_output_salvo("send_out")


def big_or_small(ctx, packets):
    """An odd value comes out as a string of 20,000 characters (its result is too big to ride in the
    owner's notification: the owner reads its row), an even one as itself times ten."""
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet("x" * 20_000 + str(value) if value % 2 else value * 10))
    ctx.send_output_salvo("send_out")


def record(ctx, packets):
    RESULTS.append(ctx.consume_packet(packets["in"][0]))


def start_raises(net):
    raise RuntimeError("cannot open resource\x00 (a NUL in its text)")


def exits_first(ctx, packets):
    """times_ten, except that the first epoch to run raises SystemExit out of the node's code."""
    value = ctx.consume_packet(packets["in"][0])
    if _first():
        raise SystemExit(3)
    ctx.load_output_port("out", ctx.create_packet(value * 10))
    ctx.send_output_salvo("send_out")
