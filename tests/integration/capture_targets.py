"""Node functions that are not plain functions, alone in their module on purpose.

No plain node function lives here, so nothing else installs netrun's capturing `print`
into this module: only registering these objects themselves can make their prints captured.
"""

from __future__ import annotations


class PrintingCallable:
    """An exec function as a callable object: prints, then consumes its packet."""

    def __init__(self, label: str) -> None:
        self.label = label

    def __call__(self, ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        print(self.label, "got", value)


def printing_sink(label, ctx, packets):
    """Registered through functools.partial(printing_sink, label)."""
    value = ctx.consume_packet(packets["in"][0])
    print(label, "got", value)
