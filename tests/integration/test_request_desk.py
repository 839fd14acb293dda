"""The owner loop's look for operator requests costs a clock read per turn, and reads the
database at most every POLL_SECONDS, however fast the loop turns."""

from __future__ import annotations

import time

import netrun
from netrun import request_desk
from netrun.graphs import simple_node


def test_the_loop_reads_the_requests_table_at_most_every_poll_interval(tmp_path, monkeypatch):
    statements: list[str] = []
    seen: list[int] = []

    def quick(ctx, packets):
        seen.append(ctx.consume_packet(packets["in"][0]))

    with netrun.Net(netrun.Graph([simple_node("Quick", ["in"])], []), db=tmp_path / "net.db") as net:
        net.set_node_exec("Quick", quick)
        for i in range(3000):
            net.inject_packet("Quick", "in", i)
        conn = net._rt.journal.conn  # the owner's connection: what the desk reads through

        def trace(_cursor, sql, _bindings):
            if "data_version" in sql or "operator_requests" in sql:
                statements.append(sql)
            return True

        conn.exec_trace = trace
        began = time.monotonic()
        net.start()
        elapsed = time.monotonic() - began
        conn.exec_trace = None
    assert len(seen) == 3000
    looks = [s for s in statements if "data_version" in s]
    assert 1 <= len(looks) <= elapsed / request_desk.POLL_SECONDS + 2, (len(looks), elapsed)
    # a look per loop turn (per epoch) would be ~3,000: the desk must read far less often than that
    assert len(looks) < len(seen) / 20, (len(looks), len(seen))
    # the table itself is read only when another connection committed (none did here)
    assert len([s for s in statements if s.startswith("SELECT") and "operator_requests" in s]) <= 1
