"""Module-level node functions for the resume, checkpoint and crash tests.

They live in an importable module on purpose: `set_node_exec` stores their import paths
(`tests.integration.resume_nodes:<name>`), so `Net.resume()` can re-import them, in this
process or in another one (the crash tests' children put the repository root on
`sys.path` and import this module under the same name).

Sinks append to `RESULTS` (this process only); tests clear it before use.
"""

from __future__ import annotations

RESULTS: list = []


def source_from_input(ctx, packets):
    """`in` holds a base number b; sends b, b+1, b+2 on both `l` and `r`."""
    base = ctx.consume_packet(packets["in"][0])
    for offset in range(3):
        ctx.load_output_port("l", ctx.create_packet(base + offset))
        ctx.load_output_port("r", ctx.create_packet(base + offset))
    ctx.send_output_salvo("send_l")
    ctx.send_output_salvo("send_r")


def tag_a(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(("A", value)))
    ctx.send_output_salvo("send_out")


def tag_b(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(("B", value)))
    ctx.send_output_salvo("send_out")


def unzip(ctx, packets):
    """Takes one packet from `l` and one from `r`, sends both values on `out`."""
    for port in ("l", "r"):
        value = ctx.consume_packet(packets[port][0])
        ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def emit_three(ctx, packets):
    for value in (1, 2, 3):
        ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def emit_epoch_id(ctx, packets):
    """A source: sends its own epoch ID (so a sink can tell which epochs ran)."""
    ctx.load_output_port("out", ctx.create_packet(ctx.epoch_id))
    ctx.send_output_salvo("send_out")


def times_ten(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value * 10))
    ctx.send_output_salvo("send_out")


def identity(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def identity_after_query(ctx, packets):
    """Like `identity`, but first reads the database through the net (which commits everything
    buffered so far, the epoch's own start included)."""
    ctx._net.query("SELECT 1")
    identity(ctx, packets)


def printing_identity(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    print("saw", value)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def record(ctx, packets):
    """A sink: appends every value it receives (one input port, any number of packets) to RESULTS."""
    for plist in packets.values():
        for packet in plist:
            RESULTS.append(ctx.consume_packet(packet))


def swallow(ctx, packets):
    """A sink that only consumes (its values are kept by consumed_packet_storage)."""
    ctx.consume_packet(packets["in"][0])


def send_one_then_die(ctx, packets):
    """Sends one packet, leaves one loaded and one (a value function) inside, commits, then SIGKILLs
    its own process: a non-deferred epoch interrupted with committed work in every place."""
    import os
    import signal

    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(("sent", value)))
    ctx.send_output_salvo("send_out")
    ctx.load_output_port("out", ctx.create_packet(("loaded", value)))
    ctx.create_packet_from_value_func(lambda: ("inside", value))
    ctx._net.query("SELECT 1")  # commits everything the epoch did so far
    os.kill(os.getpid(), signal.SIGKILL)


def _effect(node: str, value) -> None:
    """A side effect outside the net (a line appended to $NETRUN_TEST_EFFECTS): crash tests count
    how often a node's code ran for a value."""
    import os

    path = os.environ.get("NETRUN_TEST_EFFECTS")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, f"{node} {value!r}\n".encode())
        finally:
            os.close(fd)


def effect_identity(ctx, packets):
    """identity, with a side effect logged before it sends."""
    value = ctx.consume_packet(packets["in"][0])
    _effect(ctx.node_name, value)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def effect_swallow(ctx, packets):
    _effect(ctx.node_name, ctx.consume_packet(packets["in"][0]))


def exit_on_three(ctx, packets):
    """Kills its own process (as a crash of the interpreter would) on the value 3; forwards the rest."""
    import os

    value = ctx.consume_packet(packets["in"][0])
    if value == 3:
        os._exit(17)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


async def slow_async_forward(ctx, packets):
    """Sleeps 30 s unless $NETRUN_TEST_FAST is set, then forwards its value (async)."""
    import asyncio
    import os

    value = await ctx.consume_packet(packets["in"][0])
    if not os.environ.get("NETRUN_TEST_FAST"):
        await asyncio.sleep(30)
    await ctx.load_output_port("out", await ctx.create_packet(value))
    await ctx.send_output_salvo("send_out")
