"""Callbacks and lifecycle functions that misbehave, print capture for non-function callables,
read-only queries, and pausing with claimed jobs."""

from __future__ import annotations

import functools
import json

import pytest

import netrun
from netrun.graphs import chain

from . import capture_targets
from .helpers import collect, rows


def fail_on(bad):
    def node(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if value == bad:
            raise ValueError(f"boom on {value}")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
    return node


# -- error_callback ---------------------------------------------------------------------------------

def test_error_callback_that_raises_does_not_stall_the_net(tmp_path):
    seen: list = []
    db = tmp_path / "run.db"
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue",
                    error_callback=lambda failure: 1 / 0) as net:
        net.set_node_exec("A", fail_on(2))
        net.set_node_exec("Sink", collect(seen))
        for value in (1, 2, 3, 4):
            net.inject_packet("A", "in", value)
        net.start()
        jobs = net.query("SELECT state, count(*) AS n FROM epoch_jobs GROUP BY 1")
        log = net.get_node_log("A")
    assert sorted(seen) == [1, 3, 4]
    assert jobs == [{"state": "done", "n": 7}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_jobs WHERE state IN ('claimed', 'queued')") == [{"n": 0}]
    assert sum("error_callback raised ZeroDivisionError" in line for line in log) == 1
    assert rows(db, "SELECT state, count(*) AS n FROM epochs WHERE node_name = 'A' GROUP BY 1 ORDER BY 1") == [
        {"state": "failed", "n": 1}, {"state": "finished", "n": 3}]


# -- stop functions ---------------------------------------------------------------------------------

def test_stop_function_that_raises_still_lets_the_others_stop_and_history_flush(tmp_path):
    graph = chain("Source", "A", "B", "Sink")
    order = list(graph.nodes())
    raiser = order[0]  # the first stop function called: every other one comes after it
    stopped: list = []

    def make_stop(name):
        def stop(net):
            print(f"stopping {name}")
            stopped.append(name)
            if name == raiser:
                raise OSError(f"cannot stop {name}")
        return stop

    db = tmp_path / "run.db"
    history_file = tmp_path / "history.jsonl"
    net = netrun.Net(graph, db=db, history_file=str(history_file), history_flush_on_pause=False,
                     history_chunk_size=1_000_000)
    net.set_node_exec("Source", None, stop_node_func=make_stop("Source"))
    for name in ("A", "B"):
        net.set_node_exec(name, lambda ctx, packets: (ctx.load_output_port(
            "out", ctx.create_packet(ctx.consume_packet(packets["in"][0]))), ctx.send_output_salvo("send_out")),
            stop_node_func=make_stop(name))
    net.set_node_exec("Sink", collect([]), stop_node_func=make_stop("Sink"))
    for value in range(3):
        net.inject_packet("A", "in", value)
    net.start()
    with pytest.raises(netrun.NodeExecutionFailed) as info:
        net.close()
    assert info.value.node_name == raiser
    assert repr(raiser) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    assert sorted(stopped) == sorted(order)
    with pytest.raises(netrun.NetClosedError):
        net.start()
    logs = rows(db, "SELECT node_name, text FROM node_logs WHERE text LIKE 'stopping %' ORDER BY seq")
    assert sorted((r["node_name"], r["text"]) for r in logs) == sorted((n, f"stopping {n}") for n in order)
    lines = history_file.read_text().splitlines()
    count = rows(db, "SELECT count(*) AS n FROM history")[0]["n"]
    assert count > 0 and len(lines) == count
    assert [json.loads(line).get("action") or json.loads(line).get("event") for line in lines] == [
        r["name"] for r in rows(db, "SELECT name FROM history ORDER BY seq")]


# -- print capture for callables that are not functions -------------------------------------------

@pytest.fixture
def fresh_capture_targets():
    """Undo any capturing `print` a previous test installed into the helper module."""
    capture_targets.__dict__.pop("print", None)
    yield capture_targets
    capture_targets.__dict__.pop("print", None)


@pytest.mark.parametrize("kind", ["callable-object", "partial"])
def test_print_is_captured_for_callable_objects_and_partials(tmp_path, capsys, fresh_capture_targets, kind):
    assert "print" not in vars(fresh_capture_targets)
    if kind == "callable-object":
        func = fresh_capture_targets.PrintingCallable("obj")
        label = "obj"
    else:
        func = functools.partial(fresh_capture_targets.printing_sink, "part")
        label = "part"
    with netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db", on_error="raise") as net:
        net.set_node_exec("Sink", func)
        net.inject_packet("Sink", "in", 1)
        net.inject_packet("Sink", "in", 2)
        net.start()
        log = net.get_node_log("Sink")
        epochs = net.query("SELECT state FROM epochs")
    assert epochs == [{"state": "finished"}] * 2
    assert sorted(log) == [f"{label} got 1", f"{label} got 2"]
    assert f"{label} got" not in capsys.readouterr().out


# -- read-only queries --------------------------------------------------------------------------------

@pytest.mark.parametrize("sql", ["PRAGMA journal_mode = DELETE", "PRAGMA wal_checkpoint(TRUNCATE)",
                                 "PRAGMA user_version = 7"])
def test_query_refuses_writing_pragmas(tmp_path, sql):
    db = tmp_path / "run.db"
    with netrun.Net(chain("Source", "Sink"), db=db) as net:
        version = net.query("PRAGMA user_version")[0]["user_version"]
        with pytest.raises(netrun.ReadOnlyQueryError):
            net.query(sql)
        assert net.query("PRAGMA user_version") == [{"user_version": version}]
        assert net.query("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    assert rows(db, "PRAGMA user_version") == [{"user_version": version}]


def test_query_allows_reading_pragmas(tmp_path):
    with netrun.Net(chain("Source", "Sink"), db=tmp_path / "run.db") as net:
        columns = net.query("PRAGMA table_info(epochs)")
        version = net.query("PRAGMA user_version")
    assert "state" in {c["name"] for c in columns}
    migrations = sorted(p.name for p in (netrun_root() / "migrations").glob("[0-9]*.sql"))
    assert version == [{"user_version": int(migrations[-1].split("_", 1)[0])}]
    assert version[0]["user_version"] >= 1


def netrun_root():
    from pathlib import Path
    return Path(netrun.__file__).resolve().parent.parent


# -- pause with claimed jobs -----------------------------------------------------------------------------

def test_pause_inside_a_node_releases_the_claimed_jobs_it_did_not_start(tmp_path):
    seen: list = []
    db = tmp_path / "run.db"
    with netrun.Net(chain("Source", "Sink"), db=db) as net:
        def sink(ctx, packets):
            seen.append(ctx.consume_packet(packets["in"][0]))
            if len(seen) == 3:
                net.pause()

        net.set_node_exec("Sink", sink)
        for value in range(20):
            net.inject_packet("Sink", "in", value)
        net.start()
        assert len(seen) == 3
        first = net.query("SELECT state, count(*) AS n FROM epoch_jobs GROUP BY 1 ORDER BY 1")
        assert first == [{"state": "done", "n": 3}, {"state": "queued", "n": 17}]
        net.start()
        second = net.query("SELECT state, count(*) AS n FROM epoch_jobs GROUP BY 1")
    assert sorted(seen) == list(range(20))
    assert second == [{"state": "done", "n": 20}]
    assert rows(db, "SELECT state, count(*) AS n FROM epochs GROUP BY 1") == [{"state": "finished", "n": 20}]

