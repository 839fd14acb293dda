"""A thread pool's result that arrives while the net closes after its loop ended abnormally (a
second Ctrl-C, a KeyboardInterrupt or SystemExit from main-thread node code) is written as
reported, for the next resume to apply (README "Pools"). A thread worker's result stays a dict in
the process (it is never pickled), and parking wrote that dict as the row's payload: close() raised
`TypeError: Bad binding argument type supplied - argument #3: type dict`, its buffered rows were
lost, and the resume dead-lettered the finished epochs as interrupted (found by attacking netrun:
Ctrl-C twice during a foreground run with a thread pool)."""

from __future__ import annotations

import threading

import netrun
from netrun.graphs import edge, simple_node

from .helpers import rows


def test_a_thread_pool_result_arriving_at_close_after_an_interrupt_is_applied_on_resume(tmp_path):
    db = str(tmp_path / "run.db")
    graph = netrun.Graph([simple_node("Slow", ["in"], ["out"]), simple_node("Sink", ["in"]),
                          simple_node("Boom", ["in"])], [edge("Slow", "Sink")])
    started, go = threading.Event(), threading.Event()

    def slow(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        started.set()
        assert go.wait(30)
        ctx.load_output_port("out", ctx.create_packet(value * 10))
        ctx.send_output_salvo("send_out")

    def boom(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        assert started.wait(30)
        raise KeyboardInterrupt("second Ctrl-C")

    net = netrun.Net(graph, db=db, thread_pools={"io": {"size": 1}})
    net.set_node_exec("Slow", slow)
    net.set_node_config("Slow", pool="io")
    net.set_node_exec("Boom", boom)
    net.inject_packet("Slow", "in", 4)
    net.inject_packet("Boom", "in", 0)
    try:
        net.start()
        raise AssertionError("the KeyboardInterrupt did not reach start()")
    except KeyboardInterrupt:
        pass
    go.set()  # the pool's epoch ends now, its loop gone: its result arrives while the net closes
    net.close()
    parked = rows(db, "SELECT e.node_name, j.state FROM epoch_results r JOIN epochs e ON e.id = r.epoch_id "
                      "JOIN epoch_jobs j ON j.epoch_id = r.epoch_id")
    assert parked == [{"node_name": "Slow", "state": "reported"}]

    got = []
    with netrun.Net.resume(db, thread_pools={"io": {"size": 1}}) as again:
        again.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        again.start()
    assert got == [40]
    assert rows(db, "SELECT node_name, reason FROM dead_letters ORDER BY node_name") == [
        {"node_name": "Boom", "reason": "interrupted"}]
    assert rows(db, "SELECT state FROM epochs WHERE node_name = 'Slow'") == [{"state": "finished"}]
