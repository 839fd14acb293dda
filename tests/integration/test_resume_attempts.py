"""A deferred epoch stopped between two attempts goes on counting attempts after resume."""

from __future__ import annotations

import netrun
from netrun.graphs import chain
from tests.integration.helpers import collect, rows


def test_attempt_numbers_and_retry_budget_continue_after_resume(tmp_path):
    db = tmp_path / "run.db"

    def node(ctx, packets):
        if ctx.retry_count == 1:
            raise KeyboardInterrupt  # the process is stopped during the retry
        ctx.consume_packet(packets["in"][0])
        raise ValueError("attempt 0 fails")

    try:
        with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
            net.set_node_exec("A", node)
            net.set_node_config("A", defer_net_actions=True, retries=2)
            net.inject_packet("A", "in", "v")
            net.start()
    except KeyboardInterrupt:
        pass
    seen: list = []
    counts: list = []

    def forward_after_resume(ctx, packets):
        counts.append(ctx.retry_count)
        ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packets["in"][0])))
        ctx.send_output_salvo("send_out")

    with netrun.Net.resume(db) as net:
        net.set_node_exec("A", forward_after_resume)
        net.set_node_exec("Sink", collect(seen))
        net.start()
    assert seen == ["v"]
    assert counts == [1]
    attempts = rows(db, "SELECT attempt, outcome FROM epoch_attempts WHERE node_name = 'A' ORDER BY attempt")
    assert attempts == [{"attempt": 0, "outcome": "failed"}, {"attempt": 1, "outcome": "finished"}]
