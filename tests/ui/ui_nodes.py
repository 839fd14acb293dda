"""Node functions of the nets the `netrun ui` tests run (imported as `ui_nodes`: the tests pass
this folder with `--path`). `emit` sends VALUES numbers; `step` takes STEP_SECONDS per value, so a
background run lasts long enough for the page to show its counts moving."""

from __future__ import annotations

import os
import time

VALUES = int(os.environ.get("NETRUN_UI_TEST_VALUES", "12"))
STEP_SECONDS = float(os.environ.get("NETRUN_UI_TEST_STEP", "0"))


def emit(ctx, packets):
    for n in range(1, VALUES + 1):
        ctx.load_output_port("out", ctx.create_packet(n))
        ctx.send_output_salvo("send_out")


def step(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    time.sleep(STEP_SECONDS)
    print(f"step {value}")
    ctx.load_output_port("out", ctx.create_packet({"value": value, "double": value * 2}))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])
