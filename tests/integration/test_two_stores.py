"""One store interface, two backends: what a net on PostgreSQL does as a net in an SQLite file does.

Every test runs on both stores (the `db` fixture: a file, or a new schema on the session's
PostgreSQL server). Tests of PostgreSQL alone (an unreachable server, a login refused) use
`pg_url`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import netrun
from netrun.graphs import chain
from netrun.pgconn import parse_url
from tests.integration import resume_nodes as rn
from tests.integration.helpers import rows

REPO = Path(__file__).resolve().parents[2]


def three_through(db: str, **config) -> list:
    rn.RESULTS.clear()
    with netrun.Net(chain("Src", "Mid", "Sink"), db=db, **config) as net:
        net.set_node_exec("Src", rn.emit_three)
        net.set_node_exec("Mid", rn.times_ten)
        net.set_node_exec("Sink", rn.record)
        net.inject_source_epoch("Src")
        net.start()
        return net.query("SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1")


def test_a_chain_runs_with_the_same_tables_and_history(db):
    counts = three_through(db)
    assert counts == [{"node_name": "Mid", "state": "finished", "n": 3},
                      {"node_name": "Sink", "state": "finished", "n": 3},
                      {"node_name": "Src", "state": "finished", "n": 1}]
    assert sorted(rn.RESULTS) == [10, 20, 30]
    history = rows(db, "SELECT seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data "
                       "FROM history ORDER BY seq")
    assert [r["seq"] for r in history] == list(range(1, len(history) + 1))
    assert {r["name"] for r in history} >= {"CreateEpoch", "EpochCreated", "StartEpoch", "PacketCreated",
                                            "PacketMoved", "PacketConsumed", "EpochFinished"}
    assert all(r["timestamp"].endswith("+00:00") and len(r["timestamp"]) == 32 for r in history)
    assert rows(db, "SELECT count(*) AS n FROM node_counts WHERE state = 'finished'") == [{"n": 3}]


def test_values_of_every_kind_round_trip_and_stay_readable(db):
    values = [None, True, 3, 2.5, "text with \\ and \u00e9", [1, {"a": None}], {"k": [1, 2]}, (1, 2), b"\x00\x80",
              {1: "int key"}]
    with netrun.Net(chain("A", "B"), db=db, consumed_packet_storage=True) as net:
        ids = [net.inject_packet("B", "in", v) for v in values]
        assert [net.get_packet_value(i) for i in ids] == values
    with netrun.Net.resume(db) as net:
        assert [net.get_packet_value(i) for i in ids] == values
        kinds = {r["packet_id"]: r["kind"] for r in net.query("SELECT packet_id, kind FROM packet_values")}
        assert [kinds[i] for i in ids] == ["json"] * 7 + ["pickle"] * 3


def test_a_failed_epoch_dead_letters_its_input_and_a_replay_runs_it_again(db):
    with netrun.Net(chain("A", "B"), db=db, on_error="continue") as net:
        calls = []

        def flaky(ctx, packets):
            value = ctx.consume_packet(packets["in"][0])
            calls.append(value)
            if len(calls) == 1:
                raise ValueError("first time fails")

        net.set_node_exec("B", flaky)
        net.inject_packet("B", "in", {"x": 1})
        net.start()
        [letter] = net.dead_letter_queue.get_all()
        assert (letter.reason, letter.value, letter.node_name) == ("failed", {"x": 1}, "B")
        net.dead_letter_queue.replay(letter)
        net.start()
        assert calls == [{"x": 1}, {"x": 1}]
        assert net.query("SELECT status FROM dead_letters") == [{"status": "replayed"}]
        assert net.query("SELECT count(*) AS n FROM epoch_attempts WHERE traceback LIKE '%first time fails%'") == [
            {"n": 1}]


@pytest.mark.parametrize("into", ["sqlite", "postgres"])
def test_a_checkpoint_is_an_sqlite_file_that_either_store_loads(db, into, tmp_path, pg_server):
    rn.RESULTS.clear()
    with netrun.Net(chain("Src", "Mid", "Sink"), db=db) as net:
        for node, func in (("Src", rn.emit_three), ("Mid", rn.times_ten), ("Sink", rn.record)):
            net.set_node_exec(node, func)
        net.inject_source_epoch("Src")
        net.run_step()  # three packets wait on the edge to Mid
        net.pause()
        net.save_checkpoint(tmp_path / "ckpt")
        live = net.query("SELECT id, location, node_name, port_name FROM packets WHERE state = 'live' ORDER BY id")
        epochs = net.query("SELECT id, state FROM epochs ORDER BY id")
    assert (tmp_path / "ckpt" / "net.db").read_bytes()[:16] == b"SQLite format 3\x00"
    target = str(tmp_path / "loaded.db") if into == "sqlite" else f"{pg_server.url}?net=l_{os.urandom(6).hex()}"
    with netrun.Net.load_checkpoint(tmp_path / "ckpt", db=target) as net:
        assert net.query("SELECT id, location, node_name, port_name FROM packets WHERE state = 'live' "
                         "ORDER BY id") == live
        assert net.query("SELECT id, state FROM epochs ORDER BY id") == epochs
        net.start()  # Mid and Sink run, from the stored import paths
        assert sorted(rn.RESULTS) == [10, 20, 30]
        history = net.query("SELECT seq FROM history ORDER BY seq")
        assert [r["seq"] for r in history] == list(range(1, len(history) + 1))
        net.inject_packet("Mid", "in", 4)  # identities continue after the copied rows
        net.start()
        assert sorted(rn.RESULTS) == [10, 20, 30, 40]


def test_a_stopped_net_is_checkpointed_and_inspected_without_running_it(db, tmp_path):
    three_through(db)
    with netrun.Net.resume(db) as net:
        pass
    net.save_checkpoint(tmp_path / "ckpt")  # closed: checkpointed as `netrun checkpoint` does
    with netrun.NetInspector(db) as inspector:
        assert inspector.owner() is None
        assert set(inspector.graph.nodes()) == {"Src", "Mid", "Sink"}
        status = inspector.status()
        assert status["nodes"]["Mid"]["finished"] == 3
    with netrun.NetInspector(tmp_path / "ckpt" / "net.db") as inspector:
        assert inspector.status()["nodes"]["Sink"]["finished"] == 3


def test_net_query_is_read_only(db):
    with netrun.Net(chain("A", "B"), db=db) as net:
        with pytest.raises(netrun.ReadOnlyQueryError):
            net.query("DELETE FROM epochs")
        with pytest.raises(netrun.ReadOnlyQueryError):
            net.query("INSERT INTO net_meta (key, value) VALUES ('x', 'y')")
        assert net.query("SELECT value FROM net_meta WHERE key = :key", {"key": "netrun_version"})


OWNER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    net = netrun.Net(chain("A", "B"), db={db!r})
    print("open", flush=True)
    time.sleep(60)
""")


def test_a_second_owner_gets_net_in_use_naming_host_and_pid(db, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", OWNER.format(root=str(REPO), db=db)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "open"
        with pytest.raises(netrun.NetInUse) as caught:
            netrun.Net.resume(db)
        assert caught.value.pid == child.pid
        assert f"pid {child.pid} on {socket.gethostname()}" in str(caught.value)
    finally:
        child.kill()
        child.wait()
        child.stdout.close()
    with netrun.Net.resume(db) as net:  # the kernel or the server dropped the dead owner's lock
        assert net.query("SELECT count(*) AS n FROM epochs") == [{"n": 0}]


def test_an_unreachable_server_is_one_clear_error_without_the_password(pg_server):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there
    url = f"postgresql://alice:s3cret@127.0.0.1:{port}/postgres?net=x"
    with pytest.raises(netrun.StorageError) as caught:
        netrun.Net(chain("A", "B"), db=url)
    message = str(caught.value)
    assert "s3cret" not in message and caught.value.__cause__ is None
    assert message.startswith(f"cannot connect to postgresql://alice:***@127.0.0.1:{port}/postgres?net=x")


def test_a_refused_login_is_one_clear_error_without_the_password(pg_server):
    target = parse_url(pg_server.url)
    netloc = target.conninfo.split("@", 1)[1]
    url = f"postgresql://nobody:s3cret@{netloc}?net=x"
    with pytest.raises(netrun.StorageError) as caught:
        netrun.Net.resume(url)
    message = str(caught.value)
    assert "s3cret" not in message and "nobody" in message and 'role "nobody" does not exist' in message
