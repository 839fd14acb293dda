"""`net.dead_letter_queue`: reading, replaying and discarding dead letters, and its homes
(`"memory"`, `"file"`, `"callback"`, a callable)."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from datetime import datetime

import pytest

import netrun
from netrun.graphs import chain
from tests.integration.helpers import collect, forward, rows, rows_in_other_process


def refusing(refused) -> Callable:
    """Forward every value, but fail (before consuming) on the values currently in `refused`."""
    def node(ctx, packets):
        value = ctx._net.get_packet_value(packets["in"][0].id)
        if any(value == r for r in refused):
            raise ValueError(f"refused {value!r}")
        forward()(ctx, packets)
    return node


# -- reading -----------------------------------------------------------------------------------------

def test_get_all_returns_dead_letter_entries_with_their_values(tmp_path, db):
    values = {"a": {"nested": [1, 2]}, "b": ("tuple", 2)}
    with netrun.Net(chain("Source", "A", "B", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", refusing([values["a"]]))
        net.set_node_exec("B", refusing([values["b"]]))
        net.set_node_exec("Sink", collect([]))
        ids = {name: net.inject_packet("A", "in", v) for name, v in values.items()}
        net.inject_packet("A", "in", "fine")
        net.start()
        failed = {r["node_name"]: r["id"] for r in net.query("SELECT node_name, id FROM epochs WHERE state = 'failed'")}
        dlq = net.dead_letter_queue
        entries = dlq.get_all()
        by_a, by_b = dlq.get_by_node("A"), dlq.get_by_node("B")
        assert dlq.get_by_node("Sink") == []
        with pytest.raises(netrun.NotFoundError):
            dlq.get_by_node("Nope")
    assert isinstance(dlq, netrun.DeadLetterQueue)
    assert len(entries) == 2 and all(isinstance(e, netrun.DeadLetter) for e in entries)
    assert by_a == [e for e in entries if e.node_name == "A"] and len(by_a) == 1
    assert by_b == [e for e in entries if e.node_name == "B"] and len(by_b) == 1
    [a], [b] = by_a, by_b
    assert (a.packet_id, a.node_name, a.port_name, a.epoch_id, a.reason, a.status, a.replayed_as) == (
        ids["a"], "A", "in", failed["A"], "failed", "pending", None)
    assert a.error == "ValueError: refused {'nested': [1, 2]}"
    assert a.value == values["a"]
    # B's input was created by A's epoch: a new packet ID, still the value that went in
    assert (b.node_name, b.port_name, b.epoch_id, b.reason) == ("B", "in", failed["B"], "failed")
    assert b.packet_id != ids["b"]
    assert b.value == values["b"]
    assert b.error == "ValueError: refused ('tuple', 2)"
    assert datetime.fromisoformat(a.created_at).tzinfo is not None
    assert entries == sorted(entries, key=lambda e: e.seq)


# -- replay --------------------------------------------------------------------------------------------

def test_replay_puts_the_value_back_as_a_new_packet_delivered_once_the_node_is_fixed(tmp_path, db):
    refused = {"v"}
    seen: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", refusing(refused))
        net.set_node_exec("Sink", collect(seen))
        old_id = net.inject_packet("A", "in", "v")
        net.start()
        assert seen == []
        [entry] = net.dead_letter_queue.get_all()
        assert entry.packet_id == old_id
        refused.clear()  # the node is fixed
        new_id = net.dead_letter_queue.replay(entry)
        assert isinstance(new_id, str) and new_id != old_id
        assert net.dead_letter_queue.get_all() == []
        assert net.dead_letter_queue.get_by_node("A") == []
        [resolved] = net.dead_letter_queue.get_all(include_resolved=True)
        assert (resolved.seq, resolved.packet_id, resolved.status, resolved.replayed_as) == (
            entry.seq, old_id, "replayed", new_id)
        assert net.dead_letter_queue.get_by_node("A", include_resolved=True) == [resolved]
        # durable at once, before the net runs again
        [row] = rows_in_other_process(db, "SELECT status, replayed_as, resolved_at FROM dead_letters")
        assert (row["status"], row["replayed_as"]) == ("replayed", new_id) and row["resolved_at"]
        with pytest.raises(netrun.ConfigError):
            net.dead_letter_queue.replay(entry)
        with pytest.raises(netrun.ConfigError):
            net.dead_letter_queue.discard(entry.seq)
        net.start()
        assert seen == ["v"]
        moves = net.query("SELECT data FROM history WHERE name = 'TransportPacketToLocation' AND packet_id = ?",
                          (new_id,))
        assert [json.loads(m["data"])["replay_of"] for m in moves] == [old_id]
        assert [r["state"] for r in net.query("SELECT state FROM packets WHERE id = ?", (new_id,))] == ["consumed"]
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 1}]  # the replay did not fail again
    assert rows(db, "SELECT state, count(*) AS n FROM epochs WHERE node_name = 'A' GROUP BY 1 ORDER BY 1") == [
        {"state": "failed", "n": 1}, {"state": "finished", "n": 1}]


def test_replay_by_seq_number_and_unknown_seq(tmp_path, db):
    seen: list = []
    refused = {1}
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", refusing(refused))
        net.set_node_exec("Sink", collect(seen))
        net.inject_packet("A", "in", 1)
        net.start()
        [entry] = net.dead_letter_queue.get_all()
        with pytest.raises(netrun.NotFoundError):
            net.dead_letter_queue.replay(entry.seq + 100)
        refused.clear()
        net.dead_letter_queue.replay(entry.seq)
        net.start()
    assert seen == [1]


def test_a_packet_created_inside_the_failed_epoch_cannot_be_replayed(tmp_path, db):
    def half_done(ctx, packets):  # non-deferred: the created packet exists in the net, inside the epoch
        ctx.create_packet({"made": "inside"})
        raise RuntimeError("gave up")

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", half_done)
        injected = net.inject_packet("A", "in", "input")
        net.start()
        entries = net.dead_letter_queue.get_all()
        assert len(entries) == 2
        [inside] = [e for e in entries if e.packet_id != injected]
        [outer] = [e for e in entries if e.packet_id == injected]
        assert (inside.port_name, inside.node_name, inside.reason, inside.value) == (
            None, "A", "failed", {"made": "inside"})
        assert net.query("SELECT state FROM packets WHERE id = ?", (inside.packet_id,)) == [{"state": "destroyed"}]
        with pytest.raises(netrun.ConfigError) as info:
            net.dead_letter_queue.replay(inside)
        assert inside.packet_id in str(info.value)
        assert [e.packet_id for e in net.dead_letter_queue.get_all()] == [e.packet_id for e in entries]
        assert net.query("SELECT status FROM dead_letters WHERE packet_id = ?", (inside.packet_id,)) == [
            {"status": "pending"}]
        # the input packet, which came from port `in`, can
        assert outer.port_name == "in"
        assert isinstance(net.dead_letter_queue.replay(outer), str)
        assert [e.packet_id for e in net.dead_letter_queue.get_all()] == [inside.packet_id]


# -- discard -------------------------------------------------------------------------------------------

def test_discard_removes_the_entry_from_the_queue_and_keeps_its_row(tmp_path, db):
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", refusing({"x", "y"}))
        net.inject_packet("A", "in", "x")
        net.inject_packet("A", "in", "y")
        net.start()
        first, second = net.dead_letter_queue.get_all()
        net.dead_letter_queue.discard(first)
        assert net.dead_letter_queue.get_all() == [second]
        assert net.query("SELECT packet_id, status, replayed_as FROM dead_letters ORDER BY seq") == [
            {"packet_id": first.packet_id, "status": "discarded", "replayed_as": None},
            {"packet_id": second.packet_id, "status": "pending", "replayed_as": None}]
        with pytest.raises(netrun.ConfigError):
            net.dead_letter_queue.replay(first)
        with pytest.raises(netrun.ConfigError):
            net.dead_letter_queue.discard(first)
        assert [(e.packet_id, e.status) for e in net.dead_letter_queue.get_all(include_resolved=True)] == [
            (first.packet_id, "discarded"), (second.packet_id, "pending")]
        before = net.query("SELECT count(*) AS n FROM packets")
        net.start()
        assert net.query("SELECT count(*) AS n FROM packets") == before  # nothing came back


# -- the queue's homes -----------------------------------------------------------------------------------

def test_file_mode_writes_one_pickle_per_entry(tmp_path, db):
    path = tmp_path / "dlq"
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", dead_letter_queue="file",
                    dead_letter_path=str(path)) as net:
        net.set_node_exec("A", refusing({"p", ("q", 1)}))
        net.set_node_exec("Sink", collect([]))
        ids = {net.inject_packet("A", "in", v): v for v in ("p", ("q", 1), "fine")}
        net.start()
        files = sorted(path.glob("*.pkl"))
        entries = net.dead_letter_queue.get_all()
    assert len(files) == 2 and len(entries) == 2
    loaded = [pickle.loads(f.read_bytes()) for f in files]
    assert all(isinstance(e, netrun.DeadLetter) for e in loaded)
    assert {e.packet_id: e.value for e in loaded} == {pid: v for pid, v in ids.items() if v != "fine"}
    assert all(e.packet_id in f.name for e, f in zip(loaded, files))
    assert [(e.seq, e.packet_id, e.node_name, e.port_name, e.reason) for e in loaded] == [
        (e.seq, e.packet_id, e.node_name, e.port_name, e.reason) for e in entries]
    assert {r["packet_id"] for r in rows(db, "SELECT packet_id FROM dead_letters")} == {e.packet_id for e in loaded}
    assert not list(path.glob("*.tmp"))


def test_callable_queue_is_called_once_per_entry_after_commit(tmp_path, db):
    calls: list = []

    def on_dead_letter(entry):
        # read by another process: only what is committed is visible
        found = rows_in_other_process(db, "SELECT packet_id, status FROM dead_letters WHERE seq = ?", (entry.seq,))
        calls.append((entry, found))

    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", dead_letter_queue=on_dead_letter) as net:
        net.set_node_exec("A", refusing({"bad"}))
        net.set_node_exec("Sink", collect([]))
        injected = net.inject_packet("A", "in", "bad")
        net.inject_packet("A", "in", "good")
        net.start()
        entries = net.dead_letter_queue.get_all()
    [(entry, found)] = calls
    assert isinstance(entry, netrun.DeadLetter)
    assert (entry.packet_id, entry.node_name, entry.port_name, entry.reason, entry.value) == (
        injected, "A", "in", "failed", "bad")
    assert found == [{"packet_id": injected, "status": "pending"}]
    assert [e.seq for e in entries] == [entry.seq]


def test_callback_mode_calls_dead_letter_callback_and_needs_it(tmp_path, db):
    calls: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue",
                    dead_letter_queue="callback", dead_letter_callback=calls.append) as net:
        net.set_node_exec("A", refusing({1, 2}))
        net.set_node_exec("Sink", collect([]))
        ids = [net.inject_packet("A", "in", v) for v in (1, 2, 3)]
        net.start()
        table = net.query("SELECT seq, packet_id FROM dead_letters ORDER BY seq")
    assert sorted((c.packet_id, c.value) for c in calls) == sorted([(ids[0], 1), (ids[1], 2)])
    assert all(isinstance(c, netrun.DeadLetter) for c in calls)
    assert sorted((c.seq, c.packet_id) for c in calls) == [(r["seq"], r["packet_id"]) for r in table]

    with pytest.raises(netrun.ConfigError) as info:
        netrun.Net(chain("Source", "A"), db=tmp_path / "other.db", dead_letter_queue="callback")
    assert "dead_letter_callback" in str(info.value)


def test_node_without_dead_letter_queue_reaches_neither_table_nor_callback(tmp_path, db):
    calls: list = []
    with netrun.Net(chain("Source", "A", "B", "Sink"), db=db, on_error="continue",
                    dead_letter_queue=calls.append) as net:
        net.set_node_exec("A", refusing({"at-a"}))
        net.set_node_exec("B", refusing({"at-b"}))
        net.set_node_exec("Sink", collect([]))
        net.set_node_config("A", dead_letter_queue=False)
        at_a = net.inject_packet("A", "in", "at-a")
        net.inject_packet("A", "in", "at-b")
        net.start()
        assert net.query("SELECT node_name, state FROM epochs WHERE state = 'failed' ORDER BY 1") == [
            {"node_name": "A", "state": "failed"}, {"node_name": "B", "state": "failed"}]
        assert net.query("SELECT state FROM packets WHERE id = ?", (at_a,)) == [{"state": "destroyed"}]
        assert net.query("SELECT node_name, reason FROM dead_letters") == [{"node_name": "B", "reason": "failed"}]
        assert [e.node_name for e in net.dead_letter_queue.get_all()] == ["B"]
    assert [(c.node_name, c.value) for c in calls] == [("B", "at-b")]


def test_a_raising_dead_letter_callback_loses_no_entry_and_no_history(tmp_path, db):
    calls = []

    def callback(entry):
        calls.append(entry.packet_id)
        raise RuntimeError("dlq sink down")

    history_file = tmp_path / "history.jsonl"
    net = netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue", dead_letter_queue=callback,
                     history_file=str(history_file))
    net.set_node_exec("A", refusing(["x", "y"]))
    net.set_node_config("A", defer_net_actions=True)
    net.set_node_exec("Sink", collect([]))
    ids = [net.inject_packet("A", "in", v) for v in ("x", "y")]
    net.start()
    net.close()
    assert sorted(calls) == sorted(ids)
    logged = [r["text"] for r in rows(db, "SELECT text FROM node_logs WHERE node_name = 'A'")]
    assert sum("dead_letter_callback raised RuntimeError: dlq sink down" in t for t in logged) == 2
    lines = history_file.read_text().splitlines()
    assert len(lines) == rows(db, "SELECT count(*) AS n FROM history")[0]["n"]


def test_replay_many_and_discard_many_are_all_or_nothing(tmp_path, db):
    with netrun.Net(chain("Source", "A", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("A", refusing([1, 2, 3]))
        net.set_node_exec("Sink", collect([]))
        for value in (1, 2, 3):
            net.inject_packet("A", "in", value)
        net.start()
        dlq = net.dead_letter_queue
        first, second, third = (e.seq for e in dlq.get_all())
        dlq.discard(second)
        with pytest.raises(netrun.ConfigError, match=f"#{second} .*already discarded"):
            dlq.replay_many([first, second])
        with pytest.raises(netrun.NotFoundError, match="#999"):
            dlq.discard_many([first, 999])
        with pytest.raises(netrun.ConfigError, match="more than once"):
            dlq.replay_many([first, first])
        # nothing of the refused batches happened
        assert [e.seq for e in dlq.get_all()] == [first, third]
        assert net.query("SELECT count(*) AS n FROM inbox")[0]["n"] == 0
        new_ids = dlq.replay_many([third, first])
        assert dlq.get_all() == []
        replayed = {r["seq"]: r["replayed_as"] for r in net.query(
            "SELECT seq, replayed_as FROM dead_letters WHERE status = 'replayed'")}
        assert replayed == {third: new_ids[0], first: new_ids[1]}
        assert [net.get_packet_value(i) for i in new_ids] == [3, 1]
