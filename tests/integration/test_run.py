"""Running nets end to end on a real database file, and what the file says afterwards."""

from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import closing

import pytest
from ulid import ULID

import netrun
from netrun.graphs import chain

from .helpers import collect, emit, forward, rows, rows_in_other_process, scalar

ACTIONS = {"RunNetUntilBlocked", "StartEpoch", "FinishEpoch", "CreatePacket", "ConsumePacket",
           "LoadPacketIntoOutputPort", "SendOutputSalvo"}
EVENTS = {"EpochCreated", "EpochStarted", "EpochFinished", "PacketCreated", "PacketMoved", "PacketConsumed"}


def chain_net(db, results: list, **options) -> netrun.Net:
    """Source -> A -> Sink: Source emits 1, 2, 3; A doubles; Sink collects into `results` (on `db`: a
    file, or a PostgreSQL net: the `db` fixture runs a test on both stores)."""
    net = netrun.Net(chain("Source", "A", "Sink"), db=db, **options)
    net.set_node_exec("Source", emit(1, 2, 3))
    net.set_node_exec("A", forward(lambda v: v * 2))
    net.set_node_exec("Sink", collect(results))
    return net


# -- a full run ---------------------------------------------------------------------------------

def test_chain_delivers_source_and_injected_values(db):
    results: list = []
    with chain_net(db, results) as net:
        net.inject_source_epoch("Source")
        net.inject_packet("A", "in", 10)
        net.inject_packet("A", "in", 20)
        net.start()
    assert sorted(results) == [2, 4, 6, 20, 40]


def test_finished_run_leaves_every_epoch_finished_and_packet_consumed(db):
    results: list = []
    with chain_net(db, results) as net:
        net.inject_source_epoch("Source")
        net.inject_packet("A", "in", 10)
        net.start()
    by_node = {r["node_name"]: r["n"] for r in rows(db, "SELECT node_name, count(*) AS n FROM epochs GROUP BY 1")}
    assert by_node == {"Source": 1, "A": 4, "Sink": 4}
    assert {r["state"] for r in rows(db, "SELECT state FROM epochs")} == {"finished"}
    # 3 created by Source + 1 injected + 4 created by A
    assert scalar(db, "SELECT count(*) FROM packets") == 8
    assert {r["state"] for r in rows(db, "SELECT state FROM packets")} == {"consumed"}
    assert scalar(db, "SELECT count(*) FROM packet_values") == 0


def test_history_has_every_action_and_event_kind_linked_by_action_id(db):
    with chain_net(db, []) as net:
        net.inject_source_epoch("Source")
        net.inject_packet("A", "in", 10)
        net.start()
    actions = {r["name"] for r in rows(db, "SELECT DISTINCT name FROM history WHERE type = 'action'")}
    events = {r["name"] for r in rows(db, "SELECT DISTINCT name FROM history WHERE type = 'event'")}
    assert ACTIONS <= actions
    assert EVENTS <= events
    assert scalar(db, "SELECT count(*) FROM history WHERE type = 'event'") > 0
    orphans = scalar(db, "SELECT count(*) FROM history e WHERE e.type = 'event' AND NOT EXISTS "
                         "(SELECT 1 FROM history a WHERE a.type = 'action' AND a.action_id = e.action_id)")
    assert orphans == 0
    # action IDs are unique per action row
    assert scalar(db, "SELECT count(*) - count(DISTINCT action_id) FROM history WHERE type = 'action'") == 0
    # one FinishEpoch action and one EpochFinished event per finished epoch
    finished = scalar(db, "SELECT count(*) FROM epochs WHERE state = 'finished'")
    assert scalar(db, "SELECT count(*) FROM history WHERE type = 'action' AND name = 'FinishEpoch'") == finished
    assert scalar(db, "SELECT count(*) FROM history WHERE type = 'event' AND name = 'EpochFinished'") == finished


def test_every_epoch_has_one_attempt_row_and_main_thread_epochs_no_job_row(db):
    with chain_net(db, []) as net:
        net.inject_source_epoch("Source")
        net.inject_packet("A", "in", 10)
        net.start()
    attempts = rows(db, "SELECT e.id, count(a.epoch_id) AS attempts, min(a.outcome) AS outcome, "
                        "min(CASE WHEN a.node_name = e.node_name THEN 1 ELSE 0 END) AS same_node "
                        "FROM epochs e LEFT JOIN epoch_attempts a ON a.epoch_id = e.id GROUP BY e.id")
    assert len(attempts) == 9
    for attempt in attempts:
        assert (attempt["attempts"], attempt["outcome"], attempt["same_node"]) == (1, "finished", 1), attempt
    assert scalar(db, "SELECT count(*) FROM epoch_jobs") == 0


def test_packet_and_epoch_ids_are_ulids(db):
    with chain_net(db, []) as net:
        epoch_id = net.inject_source_epoch("Source")
        packet_id = net.inject_packet("A", "in", 10)
        net.start()
    ids = [r["id"] for r in rows(db, "SELECT id FROM epochs UNION ALL SELECT id FROM packets")]
    assert len(ids) == 17
    assert epoch_id in ids and packet_id in ids
    for value in ids:
        assert len(value) == 26
        assert str(ULID.from_str(value)) == value


# -- stepping ---------------------------------------------------------------------------------

def test_run_step_without_starting_leaves_epochs_startable(db):
    results: list = []
    with chain_net(db, results) as net:
        for v in (1, 2, 3):
            net.inject_packet("A", "in", v)
        net.run_step(start_epochs=False)
        startable = net.get_startable_epochs()
        assert len(startable) == 3
        assert sorted(net.get_startable_epochs_by_node("A")) == sorted(startable)
        epochs = net.query("SELECT id, node_name, state, started_at FROM epochs")
        assert sorted(e["id"] for e in epochs) == sorted(startable)
        assert {(e["node_name"], e["state"], e["started_at"]) for e in epochs} == {("A", "startable", None)}
        assert net.query("SELECT count(*) AS n FROM history WHERE name IN ('StartEpoch', 'EpochStarted')") == [
            {"n": 0}]
        assert net.query("SELECT count(*) AS n FROM epoch_jobs") == [{"n": 0}]
        assert results == []

        net.run_step()
        states = {r["id"]: r["state"] for r in net.query("SELECT id, state FROM epochs")}
        assert {states[e] for e in startable} == {"finished"}
        assert not set(net.get_startable_epochs()) & set(startable)
        net.start()
    assert sorted(results) == [2, 4, 6]


def test_node_without_exec_keeps_its_epochs_startable_while_others_run(db):
    results: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db) as net:
        net.set_node_exec("Source", emit(1, 2))
        net.set_node_exec("Sink", collect(results))
        source_epoch = net.inject_source_epoch("Source")
        net.inject_packet("Sink", "in", "direct")
        net.start()
        waiting = net.get_startable_epochs_by_node("A")
        assert len(waiting) == 2
        assert set(waiting) <= set(net.get_startable_epochs())
        assert results == ["direct"]
        states = {r["id"]: (r["node_name"], r["state"])
                  for r in net.query("SELECT id, node_name, state FROM epochs")}
        assert states[source_epoch] == ("Source", "finished")
        assert all(states[e] == ("A", "startable") for e in waiting)
        assert net.query("SELECT count(*) AS n FROM epoch_jobs WHERE node_name = 'A'") == [{"n": 0}]

        # once it has an exec function, its epochs run
        net.set_node_exec("A", forward(lambda v: v * 10))
        net.start()
        assert net.get_startable_epochs_by_node("A") == []
    assert sorted(results, key=str) == [10, 20, "direct"]


# -- lifecycle -----------------------------------------------------------------------------------

def _announce_start(net):
    print("warming up")


def test_start_function_runs_once_before_first_epoch_and_stop_function_at_close(db):
    calls: list = []

    def source(ctx, packets):
        calls.append("exec")
        emit(1)(ctx, packets)

    net = netrun.Net(chain("Source", "A", "Sink"), db=db)
    # start/stop functions get the net seen from their node (`n.net` is the net itself; `n.node_name`, `n.params`)
    net.set_node_exec("Source", source, start_node_func=lambda n: calls.append(("start", n.net, n.node_name)),
                      stop_node_func=lambda n: calls.append(("stop", n.net, n.node_name)))
    net.set_node_exec("A", forward(), start_func=lambda n: calls.append(("start-short", n.net, n.node_name)),
                      stop_func=lambda n: calls.append(("stop-short", n.net, n.node_name)))
    net.set_node_exec("Sink", collect([]), start_func=_announce_start)
    assert calls == []
    net.inject_source_epoch("Source")
    net.start()
    net.inject_source_epoch("Source")
    net.start()
    assert sorted(calls[:2], key=lambda c: c[0]) == [("start", net, "Source"), ("start-short", net, "A")]
    assert calls[2:] == ["exec", "exec"]
    # a start function's prints are the node's log lines, outside any epoch
    assert net.query("SELECT node_name, epoch_id, text FROM node_logs") == [
        {"node_name": "Sink", "epoch_id": None, "text": "warming up"}]
    net.close()
    assert sorted(calls[4:], key=lambda c: c[0]) == [("stop", net, "Source"), ("stop-short", net, "A")]
    net.close()  # idempotent: stop functions are not called again
    assert len(calls) == 6


# -- temporary database and closing ---------------------------------------------------------------------

def test_temporary_database_is_deleted_by_close(tmp_path):  # SQLite only: db=None is a temporary file
    results: list = []
    net = netrun.Net(chain("Source", "A", "Sink"), db=None)
    path = net.db_path
    assert os.path.exists(path)
    net.set_node_exec("Source", emit(5))
    net.set_node_exec("A", forward())
    net.set_node_exec("Sink", collect(results))
    net.inject_source_epoch("Source")
    net.start()
    assert results == [5]
    assert net.query("SELECT count(*) AS n FROM epochs")[0]["n"] == 3
    net.close()
    assert not os.path.exists(path)
    assert not os.path.exists(os.path.dirname(path))


def test_context_manager_closes_the_net(tmp_path):  # SQLite only: the file's write lock is checked
    with chain_net(tmp_path / "run.db", []) as net:
        net.inject_source_epoch("Source")
    for call in (net.start, lambda: net.run_step(), lambda: net.query("SELECT 1"),
                 lambda: net.inject_packet("A", "in", 1), lambda: net.inject_source_epoch("Source"),
                 net.get_startable_epochs, lambda: net.get_node_log("A"), lambda: net.history):
        with pytest.raises(netrun.NetClosedError):
            call()
    # closed means the file is released and complete: another connection can write to it
    with closing(sqlite3.connect(tmp_path / "run.db", isolation_level=None)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        assert conn.execute("SELECT count(*) FROM epochs").fetchone()[0] == 1
        conn.execute("ROLLBACK")


# -- query ---------------------------------------------------------------------------------

def test_query_returns_dicts_and_sees_everything_done_so_far(db):
    with chain_net(db, []) as net:
        packet_id = net.inject_packet("A", "in", 7)
        assert net.query("SELECT id, state, location, node_name, port_name FROM packets") == [
            {"id": packet_id, "state": "live", "location": "input_port", "node_name": "A", "port_name": "in"}]
        net.run_step(start_epochs=False)
        assert net.query("SELECT node_name, state FROM epochs") == [{"node_name": "A", "state": "startable"}]
        net.start()
        assert net.query("SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1") == [
            {"node_name": "A", "state": "finished", "n": 1}, {"node_name": "Sink", "state": "finished", "n": 1}]
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = ?", ("consumed",)) == [{"n": 2}]
        assert net.query("SELECT id FROM epochs WHERE 1 = 0") == []


def test_a_refused_pragma_leaves_the_query_connection_unable_to_write(tmp_path):  # SQLite only: PRAGMA
    # SQLite applies `query_only` while compiling the pragma, before a tracer could refuse it
    with chain_net(tmp_path / "run.db", []) as net:
        net.inject_packet("A", "in", 7)
        net.start()
        count = net.query("SELECT count(*) AS n FROM epochs")
        for sql in ("PRAGMA query_only = 0", "EXPLAIN PRAGMA query_only = 0"):
            with pytest.raises(netrun.ReadOnlyQueryError):
                net.query(sql)
        with pytest.raises(netrun.ReadOnlyQueryError):
            net.query("WITH doomed AS (SELECT id FROM epochs) DELETE FROM epochs WHERE id IN (SELECT id FROM doomed)")
        assert net.query("SELECT count(*) AS n FROM epochs") == count


@pytest.mark.parametrize("sql", [
    "INSERT INTO node_logs (node_name, timestamp, text) VALUES ('A', '2020-01-01', 'x')",
    "UPDATE epochs SET state = 'failed'",
    "DELETE FROM epochs",
    "DROP TABLE epochs",
    "CREATE TABLE extra (x)",
    "  delete from packets",
    "WITH doomed AS (SELECT id FROM epochs) DELETE FROM epochs WHERE id IN (SELECT id FROM doomed)",
    "PRAGMA user_version = 99",
])
def test_query_refuses_writing_statements(tmp_path, sql):  # SQLite's statements (PostgreSQL: tests/unit)
    with chain_net(tmp_path / "run.db", []) as net:
        net.inject_packet("A", "in", 7)
        net.start()
        before = net.query("SELECT (SELECT count(*) FROM epochs) AS e, (SELECT count(*) FROM packets) AS p, "
                           "(SELECT count(*) FROM node_logs) AS l, (SELECT count(*) FROM sqlite_master) AS m")
        states = net.query("SELECT id, state FROM epochs ORDER BY id")
        with pytest.raises(netrun.ReadOnlyQueryError):
            net.query(sql)
        assert net.query("SELECT (SELECT count(*) FROM epochs) AS e, (SELECT count(*) FROM packets) AS p, "
                         "(SELECT count(*) FROM node_logs) AS l, (SELECT count(*) FROM sqlite_master) AS m") == before
        assert net.query("SELECT id, state FROM epochs ORDER BY id") == states
        # the net keeps working after a refused statement
        net.inject_packet("A", "in", 8)
        net.start()
    db = tmp_path / "run.db"
    assert scalar(db, "PRAGMA user_version") != 99
    assert scalar(db, "SELECT count(*) FROM epochs WHERE state = 'finished'") == 4


# -- inject errors and durability ----------------------------------------------------------------

def test_inject_packet_to_unknown_port_names_node_and_port(db):
    with chain_net(db, []) as net:
        with pytest.raises(netrun.PortNotFound) as info:
            net.inject_packet("A", "nope", 1)
        assert "'A'" in str(info.value) and "'nope'" in str(info.value)
        assert (info.value.node_name, info.value.port_name) == ("A", "nope")
        with pytest.raises(netrun.PortNotFound):
            net.inject_packet("A", "out", 1)  # an output port is not an input port
        assert net.query("SELECT count(*) AS n FROM packets") == [{"n": 0}]


def test_inject_to_unknown_node_raises_not_found(db):
    with chain_net(db, []) as net:
        with pytest.raises(netrun.NotFoundError) as info:
            net.inject_packet("Nowhere", "in", 1)
        assert "Nowhere" in str(info.value)
        with pytest.raises(netrun.NotFoundError):
            net.inject_source_epoch("Nowhere")
        assert net.query("SELECT (SELECT count(*) FROM packets) + (SELECT count(*) FROM epochs) AS n") == [{"n": 0}]


@pytest.mark.parametrize("value", [lambda: 1, threading.Lock()], ids=["lambda", "lock"])
def test_inject_unpicklable_value_is_refused_and_writes_nothing(db, value):
    with chain_net(db, []) as net:
        with pytest.raises(netrun.UnpicklableValue):
            net.inject_packet("A", "in", value)
        assert net.query("SELECT count(*) AS n FROM packets") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM packet_values") == [{"n": 0}]
        net.inject_packet("A", "in", 3)  # the net is still usable
        net.start()
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [{"n": 2}]


def test_injections_are_durable_when_they_return(db):
    with chain_net(db, []) as net:
        epoch_id = net.inject_source_epoch("Source")
        packet_id = net.inject_packet("A", "in", {"answer": 42})
        # another process, another connection (and another SQLite build) sees both
        answer = "convert_from(data, 'UTF8')::json ->> 'answer'" if str(db).startswith("postgresql") \
            else "json_extract(data, '$.answer')"
        seen = rows_in_other_process(
            db, "SELECT 'epoch' AS what, id, node_name, state AS detail FROM epochs "
                "UNION ALL SELECT 'packet', id, node_name, state || ' ' || location || ' ' || port_name FROM packets "
                f"UNION ALL SELECT 'value', packet_id, kind, {answer} FROM packet_values "
                "UNION ALL SELECT 'history', coalesce(epoch_id, packet_id), node_name, name FROM history "
                "WHERE name IN ('EpochCreated', 'PacketCreated')")
        by_kind = {(r["what"], r["id"]): r for r in seen}
        assert by_kind[("epoch", epoch_id)]["detail"] == "startable"
        assert by_kind[("epoch", epoch_id)]["node_name"] == "Source"
        assert by_kind[("packet", packet_id)]["detail"] == "live input_port in"
        assert by_kind[("packet", packet_id)]["node_name"] == "A"
        assert by_kind[("value", packet_id)]["node_name"] == "json"  # the value's format: JSON text
        assert str(by_kind[("value", packet_id)]["detail"]) == "42"
        assert {("history", epoch_id), ("history", packet_id)} <= set(by_kind)
        assert len(seen) == 5
