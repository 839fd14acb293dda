"""The everyday questions (status, history --packet, trace) read by key, not by scanning the run:
their cost must not grow with the history (tools/bench_questions.py measures it at 5.7M records)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import netrun
from netrun.graphs import chain
from netrun.retention import prune_file

from .helpers import rows


def _forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if value % 5 == 0:
        raise ValueError(f"{value} is refused")
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _run(db) -> None:
    with netrun.Net(chain("A", "B", "Sink"), db=str(db), on_error="continue") as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        for value in range(1, 31):
            net.inject_packet("B", "in", value)
        net.start()


def _scanned(db) -> dict:
    counted = {}
    for row in rows(db, "SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2"):
        counted[(row["node_name"], row["state"])] = row["n"]
    return counted


def test_status_counts_come_from_node_counts_and_match_a_scan(tmp_path):
    db = tmp_path / "net.db"
    _run(db)
    scanned = _scanned(db)
    assert scanned[("B", "failed")] == 6 and scanned[("B", "finished")] == 24
    with netrun.NetInspector(str(db)) as net:
        counts = net.node_counts()
        for (node, state), n in scanned.items():
            assert counts[node][state] == n
        assert net.query("SELECT sum(n) AS n FROM node_counts")[0]["n"] == 54
        assert len(net.status()["recent_failures"]) == 5


def test_status_counts_survive_a_prune(tmp_path):
    db = tmp_path / "net.db"
    _run(db)
    with netrun.NetInspector(str(db)) as net:
        before = net.node_counts()
    prune_file(str(db), "0s", now=datetime.now(UTC) + timedelta(seconds=1))
    assert rows(db, "SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"] == 0
    with netrun.NetInspector(str(db)) as net:
        assert net.node_counts() == before  # every epoch that ever ended, pruned or not


def test_the_questions_use_indexes_only(tmp_path):
    db = tmp_path / "net.db"
    _run(db)
    with netrun.NetInspector(str(db)) as net:
        plans = []
        for sql in ("SELECT node_name, state, count(*) FROM epochs WHERE state IN ('startable', 'running') "
                    "GROUP BY 1, 2",
                    "SELECT epoch_id FROM epoch_attempts WHERE outcome = 'failed' ORDER BY finished_at DESC LIMIT 5",
                    "SELECT seq + coalesce(json_array_length(events), 0), ts FROM history_actions "
                    "ORDER BY seq DESC LIMIT 1",
                    "SELECT DISTINCT r.seq FROM history_ids i JOIN history_refs r ON r.ref = i.n WHERE i.id IN (?)"):
            params = ("x",) if "?" in sql else ()
            plans += [row["detail"] for row in net.query(f"EXPLAIN QUERY PLAN {sql}", params)]
    full_scans = [p for p in plans if p.startswith("SCAN") and "INDEX" not in p and "history_actions" not in p]
    assert full_scans == [], plans
