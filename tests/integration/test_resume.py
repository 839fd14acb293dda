"""`Net.resume()`: reopening a net from its database file after a stop or a crash.

What a resumed net must give back: the same epochs and packets (same IDs, same places),
node functions re-imported from their import paths, node options, injected work not yet
admitted, value functions, and DESIGN.md's crash semantics for epochs that were running
when the process died. A file that cannot be resumed is refused with a StorageError
naming it, and is left byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

import netrun
from netrun.graphs import chain, edge, simple_node
from netrun.inbox import ADMIT_LIMIT
from tests.integration import resume_nodes as rn
from tests.integration.helpers import collect, forward, rows, stored_value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clear_results():
    rn.RESULTS.clear()
    yield
    rn.RESULTS.clear()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# -- a net stopped with work everywhere --------------------------------------------------------

def fan_graph() -> netrun.Graph:
    """Src(l, r) -> A -> Unzip.l ; Src.r -> B -> Unzip.r ; Unzip -> Sink.

    Unzip needs a packet on both `l` and `r`: packets wait at its input ports for the other side.
    """
    term = netrun.SalvoConditionTerm
    unzip = netrun.Node(
        name="Unzip",
        in_ports={p: netrun.Port(netrun.PortSlotSpec.infinite()) for p in ("l", "r")},
        out_ports={"out": netrun.Port(netrun.PortSlotSpec.infinite())},
        in_salvo_conditions={"both": netrun.SalvoCondition(
            netrun.MaxSalvos.finite(1), {"l": netrun.PacketCount.count(1), "r": netrun.PacketCount.count(1)},
            term.and_([term.port("l", netrun.PortState.non_empty()), term.port("r", netrun.PortState.non_empty())]))},
        out_salvo_conditions={"send_out": netrun.SalvoCondition(
            netrun.MaxSalvos.infinite(), "out", term.port("out", netrun.PortState.non_empty()))},
    )
    nodes = [simple_node("Src", ["in"], ["l", "r"]), simple_node("A", ["in"], ["out"]),
             simple_node("B", ["in"], ["out"]), unzip, simple_node("Sink", ["in"], [])]
    edges = [edge("Src", "A", "l", "in"), edge("Src", "B", "r", "in"), edge("A", "Unzip", "out", "l"),
             edge("B", "Unzip", "out", "r"), edge("Unzip", "Sink")]
    return netrun.Graph(nodes, edges)


FAN_FUNCS = {"Src": rn.source_from_input, "A": rn.tag_a, "B": rn.tag_b, "Unzip": rn.unzip, "Sink": rn.record}
LIVE = "SELECT id, location, node_name, port_name, epoch_id, from_node, from_port FROM packets " \
       "WHERE state = 'live' ORDER BY id"


def uninterrupted_fan_result(tmp_path: Path) -> list:
    rn.RESULTS.clear()
    with netrun.Net(fan_graph(), db=tmp_path / "straight.db") as net:
        for node, func in FAN_FUNCS.items():
            net.set_node_exec(node, func)
        for base in (10, 20, 30):
            net.inject_packet("Src", "in", base)
        net.start()
    result = sorted(rn.RESULTS)
    rn.RESULTS.clear()
    return result


def test_resume_keeps_epoch_and_packet_identity_and_delivers_everything_once(tmp_path, db):
    expected = uninterrupted_fan_result(tmp_path)
    assert len(expected) == 18
    net = netrun.Net(fan_graph(), db=db)
    for node, func in FAN_FUNCS.items():
        if node != "B":  # B has no exec function yet: its epochs stay startable
            net.set_node_exec(node, func)
    net.inject_packet("Src", "in", 10)
    net.run_step()                      # Src runs: 3 + 3 packets on edges
    net.run_step()                      # A's 3 epochs run (outputs on an edge); B's 3 wait, startable
    net.run_step(start_epochs=False)    # A's outputs move to Unzip.l and wait there for Unzip.r
    net.inject_packet("Src", "in", 20)
    net.run_step()                      # Src runs again: 3 + 3 more packets on edges
    net.inject_packet("Src", "in", 30)  # not admitted yet: in the inbox
    startable = net.get_startable_epochs()
    live = net.query(LIVE)
    places = Counter((p["location"], p["node_name"], p["port_name"]) for p in live)
    assert places == {("node", "B", None): 3, ("input_port", "Unzip", "l"): 3, ("edge", "A", "in"): 3,
                      ("edge", "B", "in"): 3, ("input_port", "Src", "in"): 1}
    assert len(startable) == 3 and set(startable) == set(net.get_startable_epochs_by_node("B"))
    b_epochs = net.query("SELECT id, salvo FROM epochs WHERE node_name = 'B' ORDER BY id")
    net.close()
    assert rn.RESULTS == []

    net = netrun.Net.resume(db)
    try:
        assert sorted(net.get_startable_epochs()) == sorted(startable)
        assert sorted(net.get_startable_epochs_by_node("B")) == sorted(startable)
        assert net.query(LIVE) == live
        assert net.query("SELECT id, salvo FROM epochs WHERE node_name = 'B' ORDER BY id") == b_epochs
        assert net.unrestored_functions == {}
        net.set_node_exec("B", rn.tag_b)
        net.start()
        assert sorted(rn.RESULTS) == expected
        assert not net.get_startable_epochs()
        # the epochs that were startable are the ones that ran, under their own IDs
        for epoch_id in startable:
            assert net.query("SELECT state FROM epochs WHERE id = ?", (epoch_id,)) == [{"state": "finished"}]
        started = {r["epoch_id"] for r in net.query(
            "SELECT epoch_id FROM history WHERE type = 'action' AND name = 'StartEpoch' AND node_name = 'B'")}
        assert set(startable) <= started and len(started) == 9
        # every packet that was live before the stop was consumed, under its own ID
        for packet in live:
            assert net.query("SELECT state FROM packets WHERE id = ?", (packet["id"],)) == [{"state": "consumed"}]
        assert net.query("SELECT state, count(*) AS n FROM packets GROUP BY state") == [
            {"state": "consumed", "n": 3 + 18 + 18 + 18}]
        counts = {r["node_name"]: r["n"] for r in net.query(
            "SELECT node_name, count(*) AS n FROM epochs WHERE state = 'finished' GROUP BY node_name")}
        assert counts == {"Src": 3, "A": 9, "B": 9, "Unzip": 9, "Sink": 18}
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state != 'finished'") == [{"n": 0}]
    finally:
        net.close()


def test_resume_twice_in_a_row_changes_nothing(tmp_path, db):
    with netrun.Net(fan_graph(), db=db) as net:
        net.set_node_exec("Src", rn.source_from_input)
        net.inject_packet("Src", "in", 10)
        net.run_step()
        net.run_step(start_epochs=False)
        startable = sorted(net.get_startable_epochs())
        live = net.query(LIVE)
    for _ in range(2):
        with netrun.Net.resume(db) as net:
            assert sorted(net.get_startable_epochs()) == startable
            assert net.query(LIVE) == live
    assert len(startable) == 6


# -- node functions and options --------------------------------------------------------------

def test_module_level_functions_are_restored_and_run(tmp_path, db):
    with netrun.Net(chain("Src", "Mid", "Sink"), db=db) as net:
        net.set_node_exec("Src", rn.emit_three)
        net.set_node_exec("Mid", rn.times_ten)
        net.set_node_exec("Sink", rn.record)
        epoch = net.inject_source_epoch("Src")
    with netrun.Net.resume(db) as net:
        assert net.unrestored_functions == {}
        assert net.get_startable_epochs() == [epoch]
        net.start()
        assert sorted(rn.RESULTS) == [10, 20, 30]
        assert net.query("SELECT state FROM epochs WHERE id = ?", (epoch,)) == [{"state": "finished"}]


@pytest.mark.parametrize("kind", ["lambda", "closure"])
def test_lambda_or_closure_is_not_restored_and_its_epochs_wait_for_set_node_exec(tmp_path, db, kind):
    func = (lambda ctx, packets: rn.times_ten(ctx, packets)) if kind == "lambda" else forward(lambda v: v * 10)
    with netrun.Net(chain("Src", "Mid", "Sink"), db=db) as net:
        net.set_node_exec("Src", rn.emit_three)
        net.set_node_exec("Mid", func)
        net.set_node_exec("Sink", rn.record)
        net.inject_source_epoch("Src")
        net.run_step()
        net.run_step(start_epochs=False)
        waiting = sorted(net.get_startable_epochs_by_node("Mid"))
    assert len(waiting) == 3
    with netrun.Net.resume(db) as net:
        assert net.unrestored_functions == {"Mid": ["exec"]}
        net.start()
        assert rn.RESULTS == []
        assert sorted(net.get_startable_epochs_by_node("Mid")) == waiting
        assert sorted(net.get_startable_epochs()) == waiting
        net.set_node_exec("Mid", func)
        net.start()
        assert sorted(rn.RESULTS) == [10, 20, 30]
        assert net.get_startable_epochs() == []


def test_node_config_survives_resume_and_applies(tmp_path, db, capsys):
    options = {"capture_stdout": False, "echo_stdout": True, "dead_letter_queue": False, "timeout": 30.0,
               "rate_limit_per_second": 5000.0, "max_parallel_epochs": 3, "defer_net_actions": True,
               "retries": 2, "retry_wait": 0.25}
    with netrun.Net(chain("Src", "Mid", "Sink"), db=db) as net:
        net.set_node_exec("Mid", rn.printing_identity)
        net.set_node_exec("Sink", rn.record)
        net.set_node_config("Mid", **options)
        net.set_node_config("Sink", timeout=7.5)
        before = {node: net.get_node_config(node) for node in ("Src", "Mid", "Sink")}
        net.inject_packet("Mid", "in", "hello")
    for key, value in options.items():
        assert before["Mid"][key] == value
    with netrun.Net.resume(db) as net:
        assert {node: net.get_node_config(node) for node in ("Src", "Mid", "Sink")} == before
        net.start()
        assert rn.RESULTS == ["hello"]
        assert net.get_node_log("Mid") == []  # capture_stdout=False still holds: printed, not captured
    assert "saw hello" in capsys.readouterr().out


# -- injected work ---------------------------------------------------------------------------------

@pytest.mark.parametrize("admitted_before_stop", [False, True])
def test_injected_work_not_yet_admitted_survives_resume(tmp_path, db, admitted_before_stop):
    with netrun.Net(chain("Src", "Mid", "Sink"), db=db) as net:
        net.set_node_exec("Src", rn.emit_epoch_id)
        net.set_node_exec("Mid", rn.identity)
        net.set_node_exec("Sink", rn.record)
        epochs = [net.inject_source_epoch("Src") for _ in range(7)]
        packets = [net.inject_packet("Mid", "in", i) for i in range(1_200)]
        if admitted_before_stop:
            net.run_step(start_epochs=False)  # admits up to ADMIT_LIMIT items; the rest stays in the inbox
        inbox = net.query("SELECT count(*) AS n FROM inbox")[0]["n"]
        startable = sorted(net.get_startable_epochs())
        live = net.query("SELECT id FROM packets WHERE state = 'live' ORDER BY id")
    assert rn.RESULTS == []
    assert inbox == (1_207 - ADMIT_LIMIT if admitted_before_stop else 1_207)
    assert set(epochs) <= set(startable)
    assert {r["id"] for r in live} == set(packets)
    with netrun.Net.resume(db) as net:
        assert sorted(net.get_startable_epochs()) == startable
        assert net.query("SELECT id FROM packets WHERE state = 'live' ORDER BY id") == live
        net.start()
        assert net.query("SELECT count(*) AS n FROM inbox") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]
    counts = Counter(rn.RESULTS)
    assert counts == Counter([*epochs, *range(1_200)])  # every value once, source epochs under their IDs
    assert rows(db, "SELECT node_name, count(*) AS n FROM epochs WHERE state = 'finished' GROUP BY 1 ORDER BY 1") == [
        {"node_name": "Mid", "n": 1_207}, {"node_name": "Sink", "n": 1_207}, {"node_name": "Src", "n": 7}]


# -- value functions ---------------------------------------------------------------------------------

def test_value_function_is_persisted_and_called_after_resume(tmp_path, db):
    marker = tmp_path / "called.txt"

    def make_lazy(ctx, packets):
        base = ctx.consume_packet(packets["in"][0])
        target = str(marker)

        def value():
            with open(target, "a") as handle:
                handle.write("called\n")
            return {"lazy": base * 2}

        ctx.load_output_port("out", ctx.create_packet_from_value_func(value))
        ctx.load_output_port("out", ctx.create_packet_from_value_func(lambda: ("plain lambda", base)))
        ctx.send_output_salvo("send_out")

    with netrun.Net(chain("Src", "Make", "Use"), db=db) as net:
        net.set_node_exec("Make", make_lazy)
        net.inject_packet("Make", "in", 21)
        net.run_step()  # Make runs; its two packets wait on the edge to Use (no exec function yet)
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live' AND location = 'edge'") == [{"n": 2}]
    assert not marker.exists()
    assert rows(db, "SELECT kind, count(*) AS n FROM packet_values GROUP BY kind") == [{"kind": "func", "n": 2}]
    seen: list = []
    with netrun.Net.resume(db) as net:
        assert net.unrestored_functions == {"Make": ["exec"]}
        net.set_node_exec("Use", collect(seen))
        net.start()
    assert sorted(seen, key=repr) == [("plain lambda", 21), {"lazy": 42}]
    assert marker.read_text() == "called\n"


# -- crash semantics, with a fault point in a child process ------------------------------------------

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun import faults
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    net = netrun.Net(chain("Src", "Mid", "Sink"), db={db!r}, consumed_packet_storage=True)
    net.set_node_exec("Src", rn.emit_three)
    net.set_node_exec("Mid", rn.{mid})
    net.set_node_exec("Sink", rn.swallow)
    if {deferred!r}:
        net.set_node_config("Mid", defer_net_actions=True)
    net.inject_source_epoch("Src")
    net.run_step()  # Src runs; its three packets are on the edge to Mid
    faults.arm("between_actions", 1)
    net.start()     # Mid's first epoch dies after its consume_packet
    print("the process survived the fault point", flush=True)
""")


def run_faulty_child(tmp_path: Path, db: str, *, mid: str, deferred: bool) -> str:
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(REPO), db=str(db), mid=mid, deferred=deferred))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert "survived" not in done.stdout
    return db


def sink_values(net: netrun.Net) -> list:
    return [stored_value(r["data"]) for r in net.query(
        "SELECT v.data FROM packets p JOIN packet_values v ON v.packet_id = p.id "
        "WHERE p.state = 'consumed' AND p.node_name = 'Sink'")]


def test_non_deferred_epoch_killed_mid_epoch_is_cancelled_and_its_input_dead_lettered(tmp_path, db):
    run_faulty_child(tmp_path, db, mid="times_ten", deferred=False)
    running = rows(db, "SELECT id, salvo FROM epochs WHERE state = 'running'")
    assert len(running) == 1
    interrupted = running[0]["id"]
    [(port, in_packet)] = json.loads(running[0]["salvo"])
    in_value = stored_value(rows(db, "SELECT data FROM packet_values WHERE packet_id = ?", (in_packet,))[0]["data"])

    with netrun.Net.resume(db) as net:
        assert net.unrestored_functions == {}
        epoch = net.query("SELECT node_name, state, error, error_type FROM epochs WHERE id = ?", (interrupted,))[0]
        assert epoch["node_name"] == "Mid" and epoch["state"] == "cancelled"
        assert "interrupted" in epoch["error"]
        [letter] = net.dead_letter_queue.get_all()
        assert (letter.packet_id, letter.node_name, letter.port_name, letter.epoch_id, letter.reason) == (
            in_packet, "Mid", port, interrupted, "interrupted")
        assert letter.value == in_value
        cancels = net.query("SELECT epoch_id FROM history WHERE type = 'action' AND name = 'CancelInterruptedEpoch'")
        assert cancels == [{"epoch_id": interrupted}]
        assert net.query("SELECT name FROM history WHERE type = 'event' AND epoch_id = ? AND packet_id = ? "
                         "AND name = 'PacketDestroyed'", (interrupted, in_packet)) == [{"name": "PacketDestroyed"}]
        assert net.query("SELECT state FROM packets WHERE id = ?", (in_packet,)) == [{"state": "destroyed"}]
        net.start()
        delivered = sink_values(net)
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state IN ('startable', 'running')") == [{"n": 0}]
        assert len(net.dead_letter_queue.get_all()) == 1
    assert in_value in (1, 2, 3)
    assert sorted(delivered) == sorted(10 * v for v in (1, 2, 3) if v != in_value)


@pytest.mark.parametrize("mid", ["times_ten", "identity_after_query"])
def test_deferred_epoch_killed_mid_epoch_runs_again_and_delivers_exactly_once(tmp_path, db, mid):
    # identity_after_query commits the epoch's start before dying: the file then says 'running'
    run_faulty_child(tmp_path, db, mid=mid, deferred=True)
    was_running = rows(db, "SELECT id FROM epochs WHERE state = 'running'")
    assert len(was_running) == (1 if mid == "identity_after_query" else 0)
    with netrun.Net.resume(db) as net:
        recovered = net.query("SELECT epoch_id FROM history WHERE type = 'action' AND name = 'RecoverEpoch'")
        deaths = net.query("SELECT epoch_id, error_type FROM epoch_attempts WHERE error_type = 'WorkerLost'")
        # the epoch that was killed, whether its start was committed ('running') or only marked (in
        # <db>-starts, or on PostgreSQL in net_meta): its death is counted, and it runs again
        assert len(recovered) == 1
        if was_running:
            assert recovered == [{"epoch_id": r["id"]} for r in was_running]
        assert deaths == [{"epoch_id": recovered[0]["epoch_id"], "error_type": "WorkerLost"}]
        assert sorted(net.get_startable_epochs_by_node("Mid")) == sorted(
            r["id"] for r in net.query("SELECT id FROM epochs WHERE node_name = 'Mid'"))
        net.start()
        delivered = sink_values(net)
        assert net.dead_letter_queue.get_all() == []
        assert net.query("SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM packets WHERE state != 'consumed'") == [{"n": 0}]
        assert net.query("SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1") == [
            {"node_name": "Mid", "state": "finished", "n": 3}, {"node_name": "Sink", "state": "finished", "n": 3},
            {"node_name": "Src", "state": "finished", "n": 1}]
    factor = 10 if mid == "times_ten" else 1
    assert sorted(delivered) == [factor * v for v in (1, 2, 3)]



KILLED_WITH_OUTPUT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    net = netrun.Net(chain("Src", "Mid", "Sink"), db={db!r})
    net.set_node_exec("Mid", rn.send_one_then_die)
    net.inject_packet("Mid", "in", 7)
    net.start()
    print("the process survived", flush=True)
""")


def test_interrupted_epoch_dead_letters_its_loaded_and_inside_packets_and_keeps_what_it_sent(tmp_path, db):
    script = tmp_path / "child.py"
    script.write_text(KILLED_WITH_OUTPUT.format(root=str(REPO), db=str(db)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    [interrupted] = rows(db, "SELECT id FROM epochs WHERE state = 'running' AND node_name = 'Mid'")
    inside = rows(db, "SELECT id, location FROM packets WHERE state = 'live' AND epoch_id = ? "
                      "AND location IN ('node', 'output_port') ORDER BY location", (interrupted["id"],))
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state = 'live' AND location = 'edge'") == [{"n": 1}]
    assert [p["location"] for p in inside] == ["node", "output_port"]

    [consumed] = rows(db, "SELECT id FROM packets WHERE state = 'consumed' AND epoch_id = ?", (interrupted["id"],))
    with netrun.Net.resume(db) as net:
        letters = net.dead_letter_queue.get_all()
        # the input it consumed is kept until the epoch ends: dead-lettered too, at its port, replayable
        assert sorted((d.packet_id, d.value_kind, d.reason, d.epoch_id) for d in letters) == sorted(
            [(p["id"], "func" if p["location"] == "node" else "pickle", "interrupted", interrupted["id"])
             for p in inside] + [(consumed["id"], "json", "interrupted", interrupted["id"])])
        assert sorted(map(repr, (d.value for d in letters))) == sorted(map(repr, [("inside", 7), ("loaded", 7), 7]))
        assert [d.port_name for d in letters if d.packet_id == consumed["id"]] == ["in"]
        assert net.query("SELECT count(*) AS n FROM packet_values WHERE packet_id = ?", (consumed["id"],)) == [{"n": 0}]
        net.set_node_exec("Sink", rn.record)
        net.start()
        assert rn.RESULTS == [("sent", 7)]  # output sent before the kill stays sent
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 0}]
        assert net.query("SELECT state FROM epochs WHERE id = ?", (interrupted["id"],)) == [{"state": "cancelled"}]

# -- files that cannot be resumed ------------------------------------------------------------------

def small_net(path: Path) -> None:
    with netrun.Net(chain("Src", "Mid", "Sink"), db=path) as net:
        net.set_node_exec("Mid", rn.identity)
        for i in range(300):
            net.inject_packet("Mid", "in", "x" * 200 + str(i))
        net.run_step()


def make_foreign(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('not a net')")
        conn.commit()


def make_newer(path: Path) -> None:
    small_net(path)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 999")


def make_truncated(path: Path) -> None:
    small_net(path)
    data = path.read_bytes()
    assert len(data) > 3 * 4096
    path.write_bytes(data[:len(data) // 2])


def make_scribbled(path: Path) -> None:
    """A netrun file whose pages past the header are overwritten with garbage."""
    small_net(path)
    data = bytearray(path.read_bytes())
    for offset in range(4096, len(data) - 4096, 4096 * 3):
        data[offset:offset + 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make, error", [
    (lambda p: p.write_bytes(b"just some text, not a database\n" * 100), netrun.NotANetrunDatabase),
    (make_foreign, netrun.NotANetrunDatabase),
    (make_newer, netrun.DatabaseVersionError),
    (make_truncated, netrun.CorruptDatabase),
    (make_scribbled, netrun.CorruptDatabase),
], ids=["text", "foreign", "newer", "truncated", "scribbled"])
def test_unresumable_files_are_refused_by_name_and_left_unchanged(tmp_path, make, error):
    path = tmp_path / "target.db"
    make(path)
    before = sha256(path)
    files = sorted(os.listdir(tmp_path))
    with pytest.raises(error) as raised:
        netrun.Net.resume(path)
    assert str(path) in str(raised.value)
    assert raised.value.path == str(path)
    assert sha256(path) == before
    assert sorted(os.listdir(tmp_path)) == files  # no -wal/-shm created next to a refused file


def test_missing_file_is_refused_and_not_created(tmp_path):
    path = tmp_path / "nothing.db"
    with pytest.raises(netrun.StorageError) as raised:
        netrun.Net.resume(path)
    assert isinstance(raised.value, netrun.NotANetrunDatabase)
    assert str(path) in str(raised.value)
    assert os.listdir(tmp_path) == []


def test_stored_graph_that_fails_validation_is_refused(tmp_path):
    path = tmp_path / "run.db"
    small_net(path)
    with closing(sqlite3.connect(path)) as conn:
        graph = json.loads(conn.execute("SELECT value FROM net_meta WHERE key = 'graph'").fetchone()[0])
        assert ["Mid", "out", "Sink", "in"] in graph["edges"]
        graph["edges"] = [["Mid", "out", "Ghost", "in"] if e == ["Mid", "out", "Sink", "in"] else e
                          for e in graph["edges"]]
        conn.execute("UPDATE net_meta SET value = ? WHERE key = 'graph'", (json.dumps(graph),))
        conn.commit()
    before = sha256(path)
    with pytest.raises(netrun.StorageError) as raised:
        netrun.Net.resume(path)
    message = str(raised.value)
    assert "stored graph" in message and str(path) in message and "Ghost" in message
    assert sha256(path) == before
