"""Module-level node functions and classes, referenced from TOML by import path."""

from __future__ import annotations

RESULTS: list = []  # what `sink` received; tests clear it
CALLS: list[str] = []  # start/stop/failed calls, in order; tests clear it


def source(ctx, packets):
    for i in range(3):
        ctx.load_output_port("out", ctx.create_packet(i))
    ctx.send_output_salvo("send_out")


def double(ctx, packets):
    for packet in packets["in"]:
        ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packet) * 2))
    ctx.send_output_salvo("send_out")


def sink(ctx, packets):
    for port in sorted(packets):
        for packet in packets[port]:
            RESULTS.append(ctx.consume_packet(packet))


def my_exec_func(ctx, packets):
    for port in packets:
        for packet in packets[port]:
            ctx.consume_packet(packet)


def my_start_func(net):
    CALLS.append("start")


def my_stop_func(net):
    CALLS.append("stop")


def my_failed_func(ctx):
    CALLS.append("failed")


def my_processor(x, y):
    return x + y


class Point:
    def __init__(self, x: int = 0) -> None:
        self.x = x


class SpecialPoint(Point):
    pass


NOT_A_FUNCTION = 42


class Stages:
    """Node functions as static methods: their import path has a nested qualname (module.Class.method)."""

    @staticmethod
    def triple(ctx, packets):
        for packet in packets["in"]:
            ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packet) * 3))
        ctx.send_output_salvo("send_out")
