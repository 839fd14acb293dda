"""A net whose async Sink consumes value 3 and then holds it (awaiting) until the test kills the
process: `python holding_nodes.py DB`. Prints "holding" once that consume is committed."""

from __future__ import annotations

import asyncio
import os
import sys

import netrun
from netrun.graphs import chain


def forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


async def sink(ctx, packets):
    value = await ctx.consume_packet(packets["in"][0])
    if value == 3:
        await asyncio.sleep(0.3)  # the owner commits meanwhile: the consume is in the file
        os.write(1, b"holding\n")  # (print would go to the node's log)
        await asyncio.sleep(600)


def main(db: str) -> None:
    with netrun.Net(chain("A", "B", "Sink"), db=db) as net:
        net.set_node_exec("B", forward)
        net.set_node_exec("Sink", sink)
        for value in range(6):
            net.inject_packet("B", "in", value)
        net.start()


if __name__ == "__main__":
    main(sys.argv[1])
