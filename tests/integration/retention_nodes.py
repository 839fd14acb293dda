"""A net run in its own process while the test prunes its file: `python retention_nodes.py DB N`.

Prints "started", then (at the end) the values that reached the sink as a JSON list."""

from __future__ import annotations

import json
import sys
import time

import netrun
from netrun.graphs import chain

delivered: list[int] = []


def forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    delivered.append(ctx.consume_packet(packets["in"][0]))
    time.sleep(0.005)


def main(db: str, count: int) -> None:
    with netrun.Net(chain("A", "B", "Sink"), db=db) as net:
        net.set_node_exec("B", forward)
        net.set_node_exec("Sink", sink)
        net.set_node_config("Sink", defer_net_actions=True)
        for value in range(count):
            net.inject_packet("B", "in", value)
        print("started", flush=True)
        net.start()
    print(json.dumps(delivered), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
