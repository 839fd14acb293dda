"""What pool workers are given of the database: the net's durability for their writes, and a
read-only connection, really read-only, for node code (`ctx._net`, start/stop functions)."""

from __future__ import annotations

import pytest

import netrun
from netrun.graphs import chain
from netrun.clock import SystemClock
from netrun.worker import WorkerHost, WorkerSpec

from . import pool_nodes as pn
from .helpers import collect, rows


@pytest.mark.parametrize("durability, level", [("normal", 1), ("full", 2)])
def test_a_worker_writes_with_the_nets_durability(tmp_path, durability, level):
    db = str(tmp_path / "w.db")
    netrun.Net(chain("Src", "Work"), db=db, durability=durability).close()
    host = WorkerHost(WorkerSpec(db_path=db, pool="p", nodes={}, functions={}, durability=durability), "w1",
                      SystemClock(), None)
    try:
        assert host.conn.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        host.close()


def test_node_code_in_a_process_worker_cannot_write_through_its_read_only_net(tmp_path):
    db = str(tmp_path / "w.db")
    got: list = []
    with netrun.Net(chain("Src", "Work", "Sink"), db=db, process_pools={"p": {"size": 1}}) as net:
        net.set_node_exec("Work", pn.write_through_worker_net)
        net.set_node_config("Work", pool="p")
        net.set_node_exec("Sink", collect(got))
        net.inject_packet("Work", "in", 5)
        net.start()
    assert got == [[5, ["ReadOnlyQueryError", "ReadOnlyError"]]]
    assert rows(db, "SELECT count(*) AS n FROM net_meta WHERE key = 'w'") == [{"n": 0}]
