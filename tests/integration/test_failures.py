"""Failure records: epoch attempts, kept deferred queues, SQL over failures, error policies.

Complements test_deferred.py (retry semantics), test_context.py (epoch states, dead letters of
a single failure) and test_callbacks.py: here the `epoch_attempts` and `deferred_actions`
tables, the questions they answer in one SQL query, and a run fed bad input at volume.
"""

from __future__ import annotations

import asyncio

import pytest

import netrun
from netrun.graphs import chain, edge, simple_node
from tests.integration.helpers import collect, emit, FakeClock, forward, rows, stored_value


def seconds(db, column: str) -> str:
    """SQL for an ISO timestamp column in seconds, in the dialect of `db` (a file or a PostgreSQL URL)."""
    if str(db).startswith("postgresql"):
        return f"extract(epoch FROM CAST({column} AS timestamptz))"
    return f"(julianday({column}) * 86400.0)"


def deferred(net: netrun.Net, node: str, **options) -> None:
    net.set_node_config(node, defer_net_actions=True, **options)


# -- epoch_attempts --------------------------------------------------------------------------------

def test_epoch_attempts_has_one_row_per_attempt_with_outcome_and_error(db):
    clock = FakeClock()
    seen: list = []

    def flaky(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        clock.elapsed += 0.25  # each attempt "runs" a quarter of a second
        if ctx.retry_count < 2:
            raise ValueError("boom")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, clock=clock, on_error="raise") as net:
        net.set_node_exec("A", flaky)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=2, retry_wait=1)
        net.inject_packet("A", "in", "v")
        net.start()
    assert seen == ["v"]
    [epoch] = rows(db, "SELECT id FROM epochs WHERE node_name = 'A'")
    started, finished = seconds(db, "started_at"), seconds(db, "finished_at")
    attempts = rows(db, f"SELECT epoch_id, attempt, node_name, outcome, error, error_type, "
                        f"{finished} - {started} AS ran, "
                        f"CASE WHEN {started} <= {finished} THEN 1 ELSE 0 END AS ordered "
                        f"FROM epoch_attempts WHERE node_name = 'A' ORDER BY attempt")
    assert [(a["epoch_id"], a["attempt"], a["node_name"], a["outcome"], a["error"], a["error_type"], a["ordered"])
            for a in attempts] == [
        (epoch["id"], 0, "A", "failed", "ValueError: boom", "ValueError", 1),
        (epoch["id"], 1, "A", "failed", "ValueError: boom", "ValueError", 1),
        (epoch["id"], 2, "A", "finished", None, None, 1),
    ]
    # started_at is taken before the exec function runs, finished_at after it
    assert [a["ran"] for a in attempts] == pytest.approx([0.25, 0.25, 0.25], abs=1e-3)
    # attempts follow each other, retry_wait apart
    gaps = rows(db, f"SELECT {seconds(db, 'b.started_at')} - {seconds(db, 'a.finished_at')} AS gap "
                    f"FROM epoch_attempts a JOIN epoch_attempts b ON b.epoch_id = a.epoch_id "
                    f"AND b.attempt = a.attempt + 1 ORDER BY a.attempt")
    assert [g["gap"] for g in gaps] == pytest.approx([1.0, 1.0], abs=1e-3)


def test_epoch_attempts_of_finished_cancelled_and_failed_non_deferred_epochs(db):
    seen: list = []
    epochs: dict = {}

    def picky(ctx, packets):
        value = ctx._net.get_packet_value(packets["in"][0].id)
        epochs[ctx.epoch_id] = value
        if value == "cancel":
            ctx.cancel_epoch()
        if value == "fail":
            raise RuntimeError("no good")
        forward()(ctx, packets)

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", picky)
        net.set_node_exec("Sink", collect(seen))
        for v in ("ok", "cancel", "fail"):
            net.inject_packet("A", "in", v)
        net.start()
    assert seen == ["ok"]
    got = rows(db, f"SELECT e.id, e.state, a.attempt, a.outcome, a.error, a.error_type, "
                   f"CASE WHEN {seconds(db, 'a.started_at')} <= {seconds(db, 'a.finished_at')} THEN 1 ELSE 0 END "
                   f"AS ordered FROM epochs e JOIN epoch_attempts a ON a.epoch_id = e.id WHERE e.node_name = 'A'")
    assert sorted((epochs[g.pop("id")], g) for g in got) == [
        ("cancel", {"state": "cancelled", "attempt": 0, "outcome": "cancelled", "error": None, "error_type": None,
                    "ordered": 1}),
        ("fail", {"state": "failed", "attempt": 0, "outcome": "failed", "error": "RuntimeError: no good",
                  "error_type": "RuntimeError", "ordered": 1}),
        ("ok", {"state": "finished", "attempt": 0, "outcome": "finished", "error": None, "error_type": None,
                "ordered": 1}),
    ]
    # exactly one attempt row per epoch, for every node (Sink included), matching the epoch's state
    assert rows(db, "SELECT count(*) AS n FROM epochs") == [{"n": 4}]
    assert rows(db, "SELECT count(*) AS n, count(DISTINCT epoch_id) AS d FROM epoch_attempts") == [{"n": 4, "d": 4}]
    assert rows(db, "SELECT count(*) AS n FROM epochs e JOIN epoch_attempts a ON a.epoch_id = e.id "
                    "WHERE a.outcome = e.state") == [{"n": 4}]
    # a non-deferred node keeps no deferred queue
    assert rows(db, "SELECT count(*) AS n FROM deferred_actions") == [{"n": 0}]


# -- deferred_actions ------------------------------------------------------------------------------

def test_every_deferred_attempt_keeps_its_queue_applied_or_discarded(db):
    seen: list = []

    def node(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value + "!"))
        ctx.send_output_salvo("send_out")
        if ctx.retry_count < 2:
            raise ValueError(f"attempt {ctx.retry_count}")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("A", node)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=2)
        injected = net.inject_packet("A", "in", "v")
        net.start()
    assert seen == ["v!"]
    [epoch] = rows(db, "SELECT id FROM epochs WHERE node_name = 'A'")
    kept = rows(db, "SELECT epoch_id, attempt, seq, action, packet, port_name, salvo_condition "
                    "FROM deferred_actions WHERE status = 'discarded' ORDER BY attempt, seq")
    assert [(r["epoch_id"], r["attempt"], r["seq"], r["action"]) for r in kept] == [
        (epoch["id"], attempt, seq, action) for attempt in (0, 1)
        for seq, action in enumerate(("consume", "create", "load", "send"))]
    for attempt in (0, 1):
        consume, create, load, send = [r for r in kept if r["attempt"] == attempt]
        assert (consume["packet"], consume["port_name"], consume["salvo_condition"]) == (injected, None, None)
        assert create["packet"].startswith("deferred:")
        assert (create["port_name"], create["salvo_condition"]) == (None, None)
        # the load names the packet the attempt created, never created in the net
        assert (load["packet"], load["port_name"], load["salvo_condition"]) == (create["packet"], "out", None)
        assert (send["packet"], send["port_name"], send["salvo_condition"]) == (None, None, "send_out")
    assert kept[1]["packet"] != kept[5]["packet"]  # each attempt's packet is its own
    # the successful attempt (2) kept its queue as applied; its actions are in history too
    applied = rows(db, "SELECT attempt, action FROM deferred_actions WHERE status = 'applied' ORDER BY seq")
    assert applied == [{"attempt": 2, "action": a} for a in ("consume", "create", "load", "send")]
    assert rows(db, "SELECT count(*) AS n FROM history WHERE name = 'CreatePacket' AND epoch_id = ?",
                (epoch["id"],)) == [{"n": 1}]


def test_a_deferred_epoch_that_succeeds_first_time_keeps_its_queue_as_applied(db):
    seen: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("A", forward(lambda v: v * 3))
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=2)
        net.inject_packet("A", "in", 2)
        net.start()
    assert seen == [6]
    assert rows(db, "SELECT action, status FROM deferred_actions ORDER BY seq") == [
        {"action": a, "status": "applied"} for a in ("consume", "create", "load", "send")]
    assert rows(db, "SELECT node_name, attempt, outcome FROM epoch_attempts ORDER BY node_name") == [
        {"node_name": "A", "attempt": 0, "outcome": "finished"},
        {"node_name": "Sink", "attempt": 0, "outcome": "finished"}]


# -- the two questions, one query each -----------------------------------------------------

def test_which_epochs_failed_and_which_values_are_dead_lettered_are_single_queries(db):
    failures: list = []
    seen: list = []

    def a(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if value == "bad-a" or (value == "flaky" and ctx.retry_count == 0):
            raise ValueError(f"A refuses {value} (try {ctx.retry_count})")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    def b(ctx, packets):  # non-deferred: looks at the value before consuming it, so a refused one stays inside
        if ctx._net.get_packet_value(packets["in"][0].id) == "bad-b":
            raise KeyError("bad-b")
        forward()(ctx, packets)

    with netrun.Net(chain("Source", "A", "B", "Sink"), db=db, on_error="continue",
                    error_callback=failures.append) as net:
        net.set_node_exec("Source", emit("ok", "bad-a", "flaky", "bad-b"))
        net.set_node_exec("A", a)
        net.set_node_exec("B", b)
        net.set_node_exec("Sink", collect(seen))
        deferred(net, "A", retries=1)
        net.inject_source_epoch("Source")
        net.start()
    assert sorted(seen) == ["flaky", "ok"]
    failed = {f.node_name: f.epoch_id for f in failures}
    assert set(failed) == {"A", "B"}
    [flaky_epoch] = [e for e in rows(db, "SELECT epoch_id AS e FROM epoch_attempts WHERE attempt = 1")
                     if e["e"] != failed["A"]]

    # "Which epochs failed, on which attempt, with what error?"
    answer = rows(db, """
        SELECT e.node_name, e.id AS epoch_id, e.state, a.attempt, a.error_type, a.error
        FROM epochs e JOIN epoch_attempts a ON a.epoch_id = e.id
        WHERE a.outcome = 'failed'
        ORDER BY e.node_name, e.state, a.attempt""")
    assert answer == [
        {"node_name": "A", "epoch_id": failed["A"], "state": "failed", "attempt": 0, "error_type": "ValueError",
         "error": "ValueError: A refuses bad-a (try 0)"},
        {"node_name": "A", "epoch_id": failed["A"], "state": "failed", "attempt": 1, "error_type": "ValueError",
         "error": "ValueError: A refuses bad-a (try 1)"},
        {"node_name": "A", "epoch_id": flaky_epoch["e"], "state": "finished", "attempt": 0,
         "error_type": "ValueError", "error": "ValueError: A refuses flaky (try 0)"},
        {"node_name": "B", "epoch_id": failed["B"], "state": "failed", "attempt": 0, "error_type": "KeyError",
         "error": "KeyError: 'bad-b'"},
    ]

    # "Which values are dead-lettered, from which node?"
    letters = rows(db, "SELECT node_name, port_name, epoch_id, reason, value FROM dead_letters ORDER BY node_name")
    assert [(d["node_name"], d["port_name"], d["epoch_id"], d["reason"], stored_value(d["value"]))
            for d in letters] == [
        ("A", "in", failed["A"], "failed", "bad-a"),
        ("B", "in", failed["B"], "failed", "bad-b"),
    ]


# -- ValueFunctionFailed ---------------------------------------------------------------------------

def test_value_function_failure_is_a_value_function_failed_chained_to_the_original(db):
    seen_errors: list = []
    delivered: list = []

    def lookup():
        raise KeyError("missing-key")

    def source(ctx, packets):
        ctx.load_output_port("out", ctx.create_packet_from_value_func(lookup))
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        packet = packets["in"][0]
        try:
            ctx.consume_packet(packet)
        except Exception as exc:
            seen_errors.append((packet.id, exc))
            raise

    with netrun.Net(chain("Source", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("Source", source)
        net.set_node_exec("Sink", sink)
        net.inject_source_epoch("Source")
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        assert delivered == []
        [(packet_id, error)] = seen_errors
        assert type(error) is netrun.ValueFunctionFailed
        assert isinstance(error, netrun.NetrunError)
        assert isinstance(error.__cause__, KeyError) and error.__cause__.args == ("missing-key",)
        assert packet_id in str(error) and "KeyError" in str(error)
        assert error.packet_id == packet_id
        assert info.value.__cause__ is error
        assert info.value.node_name == "Sink"
        [epoch] = net.query("SELECT id, error_type FROM epochs WHERE node_name = 'Sink'")
        assert epoch["error_type"] == "ValueFunctionFailed"
        assert info.value.epoch_id == epoch["id"]


# -- on_error="raise" ------------------------------------------------------------------------------

def test_on_error_raise_names_node_and_epoch_pauses_and_start_continues(db):
    raised: list = []
    seen: list = []

    def first_fails(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if not raised:
            raised.append((value, OSError("disk on fire")))
            raise raised[-1][1]
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="raise") as net:
        net.set_node_exec("A", first_fails)
        net.set_node_exec("Sink", collect(seen))
        for v in (1, 2, 3):
            net.inject_packet("A", "in", v)
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        failure = info.value
        [(bad_value, original)] = raised
        [failed] = net.query("SELECT id FROM epochs WHERE state = 'failed'")
        assert failure.node_name == "A" and failure.epoch_id == failed["id"]
        assert "'A'" in str(failure) and failed["id"] in str(failure) and "disk on fire" in str(failure)
        assert failure.__cause__ is original
        # paused: the two other epochs of A were not run
        assert len(net.get_startable_epochs()) == 2
        assert net.query("SELECT state, count(*) AS n FROM epochs GROUP BY 1 ORDER BY 1") == [
            {"state": "failed", "n": 1}, {"state": "startable", "n": 2}]
        assert seen == []
        net.start()  # continues
        assert net.get_startable_epochs() == []
        assert net.query("SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1, 2") == [
            {"node_name": "A", "state": "failed", "n": 1}, {"node_name": "A", "state": "finished", "n": 2},
            {"node_name": "Sink", "state": "finished", "n": 2}]
    assert sorted(seen) == sorted({1, 2, 3} - {bad_value})


# -- async exec_failed_node_func -------------------------------------------------------------------

def test_async_exec_failed_node_func_is_awaited(db):
    calls: list = []

    def broken(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        raise ValueError(f"try {ctx.retry_count}")

    async def on_failure(fctx):
        await asyncio.sleep(0)
        calls.append((fctx.node_name, fctx.epoch_id, fctx.retry_count, [str(e) for e in fctx.retry_exceptions],
                      list(fctx.packet_values.values())))

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", broken, exec_failed_node_func=on_failure)
        deferred(net, "A", retries=1)
        net.inject_packet("A", "in", "x")
        net.start()
    [epoch] = rows(db, "SELECT id, state, error FROM epochs")
    assert epoch["state"] == "failed"
    assert calls == [("A", epoch["id"], 0, ["try 0"], ["x"]), ("A", epoch["id"], 1, ["try 0", "try 1"], ["x"])]
    assert epoch["error"] == "ValueError: try 1"  # the handler did not raise: nothing added


# -- bad input at volume ---------------------------------------------------------------------------

def test_poison_values_among_a_thousand_are_retried_then_dead_lettered_and_the_rest_delivered(db):
    poison = {v for v in range(1000) if v % 100 == 37}
    assert len(poison) == 10
    tries: dict = {}
    delivered: list = []

    def work(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if value in poison:
            tries[value] = tries.get(value, 0) + 1
            raise ValueError(f"poison {value}")
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    graph = netrun.Graph([simple_node("Work", ["in"], ["out"]), simple_node("Sink", ["in"], [])],
                         [edge("Work", "Sink")])
    with netrun.Net(graph, db=db, on_error="continue") as net:
        net.set_node_exec("Work", work)
        net.set_node_exec("Sink", collect(delivered))
        deferred(net, "Work", retries=2)
        for v in range(1000):
            net.inject_packet("Work", "in", v)
        net.start()
    assert len(delivered) == 990
    assert sorted(delivered) == sorted(set(range(1000)) - poison)
    assert tries == {v: 3 for v in poison}
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'consumed' AND node_name = 'Sink'") == [
        {"n": 990}]
    letters = rows(db, "SELECT node_name, port_name, reason, epoch_id, value FROM dead_letters")
    assert len(letters) == 10
    assert {(d["node_name"], d["port_name"], d["reason"]) for d in letters} == {("Work", "in", "failed")}
    assert sorted(stored_value(d["value"]) for d in letters) == sorted(poison)
    # each poison epoch was tried retries + 1 times, every other epoch once
    concat = "string_agg(outcome, ',' ORDER BY attempt)" if str(db).startswith("postgresql") else "group_concat(outcome)"
    attempts = rows(db, f"SELECT epoch_id, count(*) AS n, {concat} AS outcomes FROM epoch_attempts "
                        f"WHERE node_name = 'Work' GROUP BY epoch_id HAVING count(*) > 1")
    assert {a["epoch_id"] for a in attempts} == {d["epoch_id"] for d in letters}
    assert {(a["n"], a["outcomes"]) for a in attempts} == {(3, "failed,failed,failed")}
    assert rows(db, "SELECT count(*) AS n FROM epoch_attempts") == [{"n": 990 + 30 + 990}]
    assert rows(db, "SELECT state, count(*) AS n FROM epochs WHERE node_name = 'Work' GROUP BY 1 ORDER BY 1") == [
        {"state": "failed", "n": 10}, {"state": "finished", "n": 990}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM epoch_jobs WHERE state != 'done'") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM inbox") == [{"n": 0}]
