"""Callbacks and lifecycle functions that misbehave, print capture for non-function callables,
read-only queries, and pausing with claimed jobs."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

import netrun
from netrun.graphs import chain

from . import capture_targets
from .helpers import collect, forward, rows


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
        jobs = net.query("SELECT count(*) AS n FROM epoch_attempts WHERE outcome IS NOT NULL")
        log = net.get_node_log("A")
    assert sorted(seen) == [1, 3, 4]
    assert jobs == [{"n": 7}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_jobs WHERE state IN ('claimed', 'queued')") == [{"n": 0}]
    assert sum("error_callback raised ZeroDivisionError" in line for line in log) == 1
    assert rows(db, "SELECT state, count(*) AS n FROM epochs WHERE node_name = 'A' GROUP BY 1 ORDER BY 1") == [
        {"state": "failed", "n": 1}, {"state": "finished", "n": 3}]


# -- stop functions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("raisers", [{"A"}, {"Source", "A", "B"}], ids=["one-raises", "three-raise"])
def test_stop_function_that_raises_still_lets_the_others_stop_and_history_flush(tmp_path, raisers):
    # netrun-sim's node order is arbitrary: with three of four stop functions raising, one of
    # them is called first, so every later one depends on stop_nodes going on after an error.
    graph = chain("Source", "A", "B", "Sink")
    nodes = {"Source", "A", "B", "Sink"}
    stopped: list = []

    def make_stop(name):
        def stop(net):
            print(f"stopping {name}")
            stopped.append(name)
            if name in raisers:
                raise OSError(f"cannot stop {name}")
        return stop

    def relay(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet(ctx.consume_packet(packets["in"][0])))
        ctx.send_output_salvo("send_out")

    db = tmp_path / "run.db"
    history_file = tmp_path / "history.jsonl"
    net = netrun.Net(graph, db=db, history_file=str(history_file), history_flush_on_pause=False,
                     history_chunk_size=1_000_000)
    net.set_node_exec("Source", None, stop_node_func=make_stop("Source"))
    net.set_node_exec("A", relay, stop_node_func=make_stop("A"))
    net.set_node_exec("B", relay, stop_node_func=make_stop("B"))
    net.set_node_exec("Sink", collect([]), stop_node_func=make_stop("Sink"))
    for value in range(3):
        net.inject_packet("A", "in", value)
    net.start()
    assert stopped == []
    with pytest.raises(netrun.NodeExecutionFailed) as info:
        net.close()
    assert sorted(stopped) == sorted(nodes)  # every stop function was called, once
    first_raiser = next(name for name in stopped if name in raisers)
    assert info.value.node_name == first_raiser
    assert repr(first_raiser) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)
    with pytest.raises(netrun.NetClosedError):
        net.start()
    logs = rows(db, "SELECT node_name, text FROM node_logs WHERE text LIKE 'stopping %'")
    assert sorted((r["node_name"], r["text"]) for r in logs) == sorted((n, f"stopping {n}") for n in nodes)
    lines = history_file.read_text().splitlines()
    names = [r["name"] for r in rows(db, "SELECT name FROM history ORDER BY seq")]
    assert len(names) > 0 and len(lines) == len(names) == rows(db, "SELECT count(*) AS n FROM history")[0]["n"]
    assert [json.loads(line).get("action") or json.loads(line).get("event") for line in lines] == names


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

@pytest.mark.parametrize("sql", ["PRAGMA journal_mode = DELETE", "PRAGMA journal_mode(DELETE)", "PRAGMA wal_checkpoint(TRUNCATE)",
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


def netrun_root() -> Path:
    return Path(netrun.__file__).resolve().parent.parent


# -- pause with claimed jobs -----------------------------------------------------------------------------

@pytest.mark.parametrize("defer", [False, True], ids=["immediate", "deferred"])
def test_pause_inside_a_node_releases_the_claimed_jobs_it_did_not_start(tmp_path, defer):
    seen: list = []
    db = tmp_path / "run.db"
    with netrun.Net(chain("Source", "Sink"), db=db) as net:
        net.set_node_config("Sink", defer_net_actions=defer)

        def sink(ctx, packets):
            seen.append(ctx.consume_packet(packets["in"][0]))
            if len(seen) == 3:
                net.pause()

        net.set_node_exec("Sink", sink)
        for value in range(20):
            net.inject_packet("Sink", "in", value)
        net.start()
        assert len(seen) == 3
        first = net.query("SELECT outcome, count(*) AS n FROM epoch_attempts GROUP BY 1 ORDER BY 1")
        # main-thread epochs have no job row; 3 ran, the 17 others are simply startable
        assert first == [{"outcome": "finished", "n": 3}]
        assert net.query("SELECT count(*) AS n FROM epoch_jobs") == [{"n": 0}]
        assert len(net.get_startable_epochs()) == 17
        net.start()
        second = net.query("SELECT outcome, count(*) AS n FROM epoch_attempts GROUP BY 1")
    assert sorted(seen) == list(range(20))
    assert second == [{"outcome": "finished", "n": 20}]
    assert rows(db, "SELECT state, count(*) AS n FROM epochs GROUP BY 1") == [{"state": "finished", "n": 20}]



def test_a_history_file_torn_by_a_kill_is_caught_up_by_seq_never_spliced(tmp_path):
    """A kill mid-write leaves half a line: resume cuts it off and appends every committed record
    after the last whole line, so the file equals the table, line for line."""
    db, history = str(tmp_path / "h.db"), tmp_path / "history.jsonl"
    with netrun.Net(chain("Src", "A", "Sink"), db=db, history_file=str(history), history_chunk_size=5) as net:
        net.set_node_exec("A", forward())
        net.set_node_exec("Sink", collect([]))
        for value in range(10):
            net.inject_packet("A", "in", value)
        net.start()
    lines = history.read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))
    with open(history, "r+b") as handle:  # as a kill in the middle of a write leaves it
        handle.truncate(len("\n".join(lines[:20]).encode()) + 1 + 17)
    with netrun.Net.resume(db) as net:
        table = net.query("SELECT seq, name FROM history ORDER BY seq")
    again = [json.loads(line) for line in history.read_text().splitlines()]
    assert [(r["seq"], r.get("action") or r.get("event")) for r in again] == [(r["seq"], r["name"]) for r in table]
