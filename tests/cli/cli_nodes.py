"""Node functions for the nets of the `netrun` command tests (imported as `cli_nodes`: the
tests pass this folder with `--path`).

`check` fails for odd numbers unless the environment says they are accepted now, so a test
can fail some epochs, then replay their dead letters into a run that succeeds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ACCEPT_ODD = "NETRUN_CLI_TESTS_ACCEPT_ODD"
VALUES = range(1, 7)  # 1..6: three odd ones fail


def emit(ctx, packets):
    """The source: one packet per number of VALUES."""
    for n in VALUES:
        ctx.load_output_port("out", ctx.create_packet(n))
        ctx.send_output_salvo("send_out")


def check(ctx, packets):
    """Pass even numbers on; raise for odd ones (the packet stays in the epoch: deferred node)."""
    n = ctx.consume_packet(packets["in"][0])
    if n % 2 and not os.environ.get(ACCEPT_ODD):
        raise ValueError(f"odd value {n} refused")
    print(f"checked {n}")
    ctx.load_output_port("out", ctx.create_packet(n * 10))
    ctx.send_output_salvo("send_out")


def collect(ctx, packets):
    """The sink: consume and log."""
    print(f"collected {ctx.consume_packet(packets['in'][0])}")


def relay(ctx, packets):
    """Log the value and pass it on."""
    value = ctx.consume_packet(packets["in"][0])
    print(f"relay {value}")
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def hold(ctx, packets):
    """Print (echoed to stdout) that the epoch runs, then block until killed."""
    print(f"ready {ctx.consume_packet(packets['in'][0])}", flush=True)
    time.sleep(60)


def wait_for_file(ctx, packets):
    """Log a line, then wait (at most 30 s) for the file named by the packet before passing it on."""
    path = Path(ctx.consume_packet(packets["in"][0]))
    deadline = time.monotonic() + 30
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    print(f"saw {path.name}")
    ctx.load_output_port("out", ctx.create_packet(str(path)))
    ctx.send_output_salvo("send_out")


def chatty(ctx, packets):
    """Write to stdout every way a node can: print (captured, and echoed with echo_stdout), sys.stdout,
    and the file descriptor itself; then pass the values on."""
    for value in chatty_end(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def chatty_end(ctx, packets):
    """`chatty` for a node without output ports: returns the values (the salvo takes every waiting one)."""
    values = [ctx.consume_packet(packet) for packet in packets["in"]]
    for value in values:
        print(f"print {value}")
        sys.stdout.write(f"sys.stdout {value}\n")
        sys.stdout.flush()
        os.write(1, f"fd 1 {value}\n".encode())
    return values
