"""Node functions of the nets that tests/cli/test_run_command.py runs through `netrun run`."""

import os
import time

def _setting(name: str, default: str) -> float:
    """Read at call time, so tests can change it between runs in one process."""
    return float(os.environ.get(name, default))


def emit(ctx, packets):
    for i in range(int(_setting("NETRUN_TEST_VALUES", "30"))):
        ctx.load_output_port("out", ctx.create_packet(i))
    ctx.send_output_salvo("send_out")


def work(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(_setting("NETRUN_TEST_DELAY", "0.02"))
    ctx.load_output_port("out", ctx.create_packet(value * 10))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    print("got", ctx.consume_packet(packets["in"][0]))


def echo(ctx, packets):
    for packet in packets["in"]:  # the default salvo takes every waiting packet
        print("echo", repr(ctx.consume_packet(packet)))


def fail_on_odd(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if value % 2:
        raise ValueError(f"odd value {value}")
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")
