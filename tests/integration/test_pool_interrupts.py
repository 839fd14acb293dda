"""A BaseException (SystemExit, KeyboardInterrupt) escaping node code in a pool worker.

The worker dies of it, by the crash semantics (a non-deferred epoch is cancelled and its values
dead-lettered 'interrupted'; a deferred one runs again, and fails after `retries + 1` deaths),
as in the main thread. What escaped, and where, is kept: the error's text and the node's traceback
reach the attempt rows and the dead letter, not just "the worker died" (found by attacking netrun
with a node that calls `sys.exit()` in a pool).
"""

from __future__ import annotations

import pytest

import netrun
from netrun.graphs import chain

from tests.integration import pool_nodes
from .helpers import collect, rows


def _run(tmp_path, kind: str, raised: str, **config) -> tuple[str, list]:
    got: list = []
    db = str(tmp_path / "net.db")
    with netrun.Net(chain("Source", "Work", "Sink"), db=db, on_error="continue",
                    **{f"{kind}_pools": {"p": {"size": 1}}}) as net:
        net.set_node_exec("Work", pool_nodes.interrupt_on_two)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", params={"raise": raised}, **config)
        for value in (1, 2, 3):
            net.inject_packet("Work", "in", value)
        net.start()
    return db, got


@pytest.mark.parametrize("kind,raised", [("thread", "SystemExit"), ("thread", "KeyboardInterrupt"),
                                         ("process", "SystemExit")])
def test_an_interrupt_in_a_non_deferred_pool_node_dead_letters_its_value_with_the_cause(tmp_path, kind, raised):
    db, got = _run(tmp_path, kind, raised)
    assert sorted(got) == [1, 3]
    [letter] = rows(db, "SELECT reason, error, traceback, value FROM dead_letters")
    assert (letter["reason"], letter["value"]) == ("interrupted", "2")
    assert f"{raised}: 3" in letter["error"], letter["error"]
    assert "in interrupt_on_two" in (letter["traceback"] or ""), letter["traceback"]
    [epoch] = rows(db, "SELECT state, error, error_type FROM epochs WHERE node_name = 'Work' AND state != 'finished'")
    assert (epoch["state"], epoch["error_type"]) == ("cancelled", raised)
    assert f"{raised}: 3" in epoch["error"]
    [attempt] = rows(db, "SELECT outcome, error_type, traceback FROM epoch_attempts WHERE node_name = 'Work' "
                         "AND outcome != 'finished'")
    assert (attempt["outcome"], attempt["error_type"]) == ("cancelled", raised)
    assert attempt["traceback"] == letter["traceback"]


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_interrupt_in_a_deferred_pool_node_counts_deaths_and_keeps_the_cause(tmp_path, kind):
    db, got = _run(tmp_path, kind, "SystemExit", defer_net_actions=True)
    assert sorted(got) == [1, 3]
    attempts = rows(db, "SELECT outcome, error, error_type, traceback FROM epoch_attempts WHERE node_name = 'Work' "
                        "AND outcome != 'finished' ORDER BY attempt")
    assert [(a["outcome"], a["error_type"]) for a in attempts] == [("failed", "WorkerLost")] * 2  # retries + 1 deaths
    for attempt in attempts:
        assert "SystemExit: 3" in attempt["error"], attempt["error"]
        assert "in interrupt_on_two" in (attempt["traceback"] or ""), attempt["traceback"]
    [letter] = rows(db, "SELECT reason, error, traceback, value FROM dead_letters")
    assert (letter["reason"], letter["value"]) == ("failed", "2")
    assert "SystemExit: 3" in letter["error"] and "in interrupt_on_two" in letter["traceback"]
