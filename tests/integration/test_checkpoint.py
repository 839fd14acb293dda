"""Checkpoints: `save_checkpoint(dir)` snapshots the net's database; `load_checkpoint(dir, db=...)`
continues from a copy of it, never touching the checkpoint itself.
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
from netrun.graphs import chain
from tests.integration import resume_nodes as rn
from tests.integration.helpers import net_with_history_and_checkpoint, rows, run_more, stored_value

REPO = Path(__file__).resolve().parents[2]
VALUES = 60
LIVE = "SELECT id, location, node_name, port_name, epoch_id FROM packets WHERE state = 'live' ORDER BY id"


@pytest.fixture(autouse=True)
def clear_results():
    rn.RESULTS.clear()
    yield
    rn.RESULTS.clear()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def folder_hashes(directory: Path) -> dict[str, str]:
    return {name: sha256(directory / name) for name in sorted(os.listdir(directory))}


def pipeline(db: Path, **options) -> netrun.Net:
    """Src -> A -> B -> Sink with VALUES values injected at A; Sink's values kept in the database."""
    net = netrun.Net(chain("Src", "A", "B", "Sink"), db=db, consumed_packet_storage=True, **options)
    net.set_node_exec("A", rn.times_ten)
    net.set_node_exec("B", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    for value in range(VALUES):
        net.inject_packet("A", "in", value)
    return net


def outcome(db: Path) -> tuple[Counter, dict]:
    """(multiset of values consumed by Sink, finished epochs per node) of a closed database."""
    delivered = Counter(stored_value(r["data"]) for r in rows(
        db, "SELECT v.data FROM packets p JOIN packet_values v ON v.packet_id = p.id "
            "WHERE p.state = 'consumed' AND p.node_name = 'Sink'"))
    finished = {r["node_name"]: r["n"] for r in rows(
        db, "SELECT node_name, count(*) AS n FROM epochs WHERE state = 'finished' GROUP BY node_name")}
    return delivered, finished


# -- when a checkpoint may be written ---------------------------------------------------------------

def test_checkpoint_from_inside_a_node_function_is_refused(tmp_path):
    target = tmp_path / "ckpt"

    def checkpointing(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        ctx._net.save_checkpoint(target)

    with netrun.Net(chain("Src", "A"), db=tmp_path / "run.db", on_error="raise") as net:
        net.set_node_exec("A", checkpointing)
        net.inject_packet("A", "in", 1)
        with pytest.raises(netrun.NodeExecutionFailed) as raised:
            net.run_step()
        assert isinstance(raised.value.__cause__, netrun.CheckpointError)
        assert isinstance(raised.value.__cause__, netrun.StorageError)
        assert raised.value.node_name == "A"
        state = net.query("SELECT state, error_type FROM epochs WHERE node_name = 'A'")
        assert state == [{"state": "failed", "error_type": "CheckpointError"}]
    assert not (target / "net.db").exists()


@pytest.mark.parametrize("run", ["run_step", "start"])
def test_checkpoint_after_a_run_is_refused_until_the_net_is_paused(tmp_path, run):
    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "run.db") as net:
        getattr(net, run)()
        assert net.poll().state == "blocked"
        with pytest.raises(netrun.CheckpointError, match="while it is blocked.*call pause\\(\\) first"):
            net.save_checkpoint(target)
        assert not target.exists()
        net.pause()
        assert net.poll().state == "paused"
        net.save_checkpoint(target)
        assert sorted(os.listdir(target)) == ["checkpoint.json", "net.db"]
        net.run_step()  # running again: refused again
        with pytest.raises(netrun.CheckpointError, match="call pause"):
            net.save_checkpoint(tmp_path / "again")


def test_checkpoint_while_a_background_run_goes_on_is_refused(tmp_path):
    import threading

    release = threading.Event()

    def slow(ctx, packets):
        release.wait(10)
        rn.identity(ctx, packets)

    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "run.db") as net:
        net.set_node_exec("A", slow)
        net.start(threaded=True)
        threading.Timer(0.2, release.set).start()  # the call is answered between two epochs
        with pytest.raises(netrun.CheckpointError, match="while it is running"):
            net.save_checkpoint(target)
        net.pause()
        net.save_checkpoint(target)
    assert (target / "net.db").exists()


def test_checkpoint_before_the_first_run_after_a_resume_and_after_a_stop(tmp_path):
    db = tmp_path / "run.db"
    with pipeline(db) as net:
        net.save_checkpoint(tmp_path / "never-ran")  # never ran
        net.run_step()
    with netrun.Net.resume(db) as net:
        net.save_checkpoint(tmp_path / "resumed")  # has not run since it was opened
        net.set_node_exec("A", rn.times_ten)
        net.set_node_exec("B", rn.identity)
        net.set_node_exec("Sink", rn.swallow)
        net.start()
        net.stop()
        assert net.poll().state == "stopped"
        net.save_checkpoint(tmp_path / "stopped")  # stopped: the file is checkpointed as it is
    finished = "SELECT count(*) AS n FROM epochs WHERE state = 'finished'"
    assert rows(tmp_path / "never-ran" / "net.db", finished)[0]["n"] == 0
    assert 0 < rows(tmp_path / "resumed" / "net.db", finished)[0]["n"] < 3 * VALUES
    assert rows(tmp_path / "stopped" / "net.db", finished)[0]["n"] == 3 * VALUES


def test_checkpoint_from_outside_writes_database_manifest_and_history(tmp_path):
    history = tmp_path / "history.jsonl"
    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "run.db", history_file=str(history), history_chunk_size=7) as net:
        net.run_step()
        net.run_step()
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)
        history_then = history.read_bytes()
        finished_then = net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"]
        history_rows_then = net.query("SELECT count(*) AS n FROM history")[0]["n"]
        net.start()  # the net goes on; the checkpoint does not follow it
    assert sorted(os.listdir(target)) == ["checkpoint.json", "history.jsonl", "net.db"]
    manifest = json.loads((target / "checkpoint.json").read_text())
    assert manifest["database"] == "net.db"
    assert manifest["netrun_version"] == netrun.__version__
    assert (target / "history.jsonl").read_bytes() == history_then
    lines = history_then.decode().splitlines()
    assert len(lines) == history_rows_then  # every record so far was flushed before the copy
    assert all(json.loads(line)["type"] in ("action", "event") for line in lines)
    assert history.read_bytes() != history_then
    assert rows(target / "net.db", "SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [
        {"n": finished_then}]
    assert rows(target / "net.db", "SELECT count(*) AS n FROM history") == [{"n": history_rows_then}]
    assert 0 < finished_then < 3 * VALUES


def test_checkpoint_without_history_file_has_no_history_copy(tmp_path):
    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "run.db") as net:
        net.run_step()
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)
    assert sorted(os.listdir(target)) == ["checkpoint.json", "net.db"]


def test_checkpoint_database_passes_integrity_check(tmp_path):
    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "run.db") as net:
        net.run_step()
        net.run_step()
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)
        with closing(sqlite3.connect(target / "net.db")) as conn:  # a separate file: safe while the net is open
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
            assert conn.execute("SELECT count(*) FROM packets WHERE state = 'live'").fetchone()[0] > 0
    assert not Path(str(target / "net.db") + "-wal").exists()


# -- continuing from a checkpoint -------------------------------------------------------------------

def test_run_continued_from_a_checkpoint_matches_an_uninterrupted_run(tmp_path):
    with pipeline(tmp_path / "straight.db") as net:
        net.start()
    expected = outcome(tmp_path / "straight.db")
    assert expected[0] == Counter(10 * v for v in range(VALUES))
    assert expected[1] == {"A": VALUES, "B": VALUES, "Sink": VALUES}

    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "first.db") as net:
        net.run_step()                    # A's epochs run; their outputs wait on the edge to B
        net.run_step(start_epochs=False)  # B's epochs are created, not started
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)
        live = net.query(LIVE)
        halfway = net.query("SELECT node_name, count(*) AS n FROM epochs WHERE state = 'finished' GROUP BY 1")
        startable = sorted(net.get_startable_epochs())
    assert halfway == [{"node_name": "A", "n": VALUES}]  # the checkpoint is really halfway
    assert len(startable) == VALUES and len(live) == VALUES
    saved = folder_hashes(target)

    loaded_db = tmp_path / "loaded.db"
    with netrun.Net.load_checkpoint(target, db=loaded_db) as net:
        assert net.unrestored_functions == {}
        assert sorted(net.get_startable_epochs()) == startable
        assert net.query(LIVE) == live
        net.start()
    assert outcome(loaded_db) == expected
    assert folder_hashes(target) == saved  # load + run never touched the checkpoint

    with netrun.Net.load_checkpoint(target, db=tmp_path / "again.db") as net:  # still loadable, same state
        assert sorted(net.get_startable_epochs()) == startable
    assert folder_hashes(target) == saved


def test_load_checkpoint_refuses_a_non_empty_target_and_a_folder_without_database(tmp_path):
    target = tmp_path / "ckpt"
    with pipeline(tmp_path / "run.db") as net:
        net.run_step()
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)
    saved = folder_hashes(target)

    occupied = tmp_path / "occupied.db"
    occupied.write_bytes(b"something precious")
    with pytest.raises(netrun.StorageError) as raised:
        netrun.Net.load_checkpoint(target, db=occupied)
    assert str(occupied) in str(raised.value)
    assert occupied.read_bytes() == b"something precious"

    existing_net = tmp_path / "run.db"
    before = sha256(existing_net)
    with pytest.raises(netrun.StorageError):
        netrun.Net.load_checkpoint(target, db=existing_net)
    assert sha256(existing_net) == before

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(netrun.StorageError) as raised:
        netrun.Net.load_checkpoint(empty, db=tmp_path / "new.db")
    assert str(empty) in str(raised.value)
    assert not (tmp_path / "new.db").exists()
    assert folder_hashes(target) == saved


# -- a checkpoint killed half-way ------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import hashlib, json, sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun import faults
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    target = {target!r}
    net = netrun.Net(chain("Src", "A", "Sink"), db={db!r}, history_file={history!r})
    net.set_node_exec("A", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    for value in range(40):
        net.inject_packet("A", "in", value)
    net.run_step()
    net.run_step(start_epochs=False)
    net.pause()  # a checkpoint is taken while the net is paused
    net.save_checkpoint(target)
    finished = net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"]
    print(json.dumps({{"finished": finished,
                       "startable": sorted(net.get_startable_epochs())}}), flush=True)
    sys.stdin.readline()  # the parent has hashed the first checkpoint
    net.run_step()
    net.run_step()
    faults.arm("checkpoint_before_rename", 1)
    net.pause()  # a checkpoint is taken while the net is paused
    net.save_checkpoint(target)
    print("the process survived the fault point", flush=True)
""")


def test_checkpoint_killed_before_its_rename_leaves_the_old_one_intact(tmp_path):
    target = tmp_path / "ckpt"
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(REPO), target=str(target), db=str(tmp_path / "run.db"),
                                   history=str(tmp_path / "history.jsonl")))
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        old = json.loads(child.stdout.readline())
        old_files = folder_hashes(target)  # the first checkpoint, complete; the child waits meanwhile
        out, err = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL, err
    assert "survived" not in out
    assert old["finished"] > 0 and old["startable"]

    # the new checkpoint was built whole in a folder beside the old one, and never replaced it
    assert sorted(os.listdir(target)) == sorted(old_files)
    [staging] = [p for p in tmp_path.iterdir() if p.name.startswith(".ckpt.new-")]
    assert sorted(os.listdir(staging)) == ["checkpoint.json", "history.jsonl", "net.db"]
    assert {name: sha256(target / name) for name in old_files} == old_files
    with closing(sqlite3.connect(target / "net.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    with netrun.Net.load_checkpoint(target, db=tmp_path / "loaded.db") as net:
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [{"n": old["finished"]}]
        assert sorted(net.get_startable_epochs()) == old["startable"]
        net.start()
        assert net.query("SELECT node_name, count(*) AS n FROM epochs WHERE state = 'finished' GROUP BY 1 "
                         "ORDER BY 1") == [{"node_name": "A", "n": 40}, {"node_name": "Sink", "n": 40}]
    assert {name: sha256(target / name) for name in old_files} == old_files


def test_checkpoint_into_the_folder_of_the_live_database_is_refused(tmp_path):
    folder = tmp_path / "x"
    folder.mkdir()
    with netrun.Net(chain("Src", "A", "Sink"), db=folder / "net.db") as net:
        net.set_node_exec("A", rn.identity)
        net.set_node_exec("Sink", rn.swallow)
        for i in range(5):
            net.inject_packet("A", "in", i)
        net.run_step()
        with pytest.raises(netrun.CheckpointError, match="own"):
            net.pause()  # a checkpoint is taken while the net is paused
            net.save_checkpoint(folder)
        net.start()
        assert net.query("PRAGMA integrity_check")[0]["integrity_check"] == "ok"
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'")[0]["n"] == 10


def test_a_loaded_checkpoint_writes_its_own_history_file(tmp_path):
    history = net_with_history_and_checkpoint(tmp_path)
    original = history.read_text()
    loaded = netrun.Net.load_checkpoint(tmp_path / "ckpt", db=str(tmp_path / "copy.db"))
    loaded.set_node_exec("A", rn.identity)
    loaded.set_node_exec("Sink", rn.swallow)
    loaded.start()
    loaded.close()
    assert history.read_text() == original
    copy_history = tmp_path / "copy.db.history.jsonl"
    lines = copy_history.read_text().splitlines()
    assert len(lines) == rows(tmp_path / "copy.db", "SELECT count(*) AS n FROM history")[0]["n"]
    assert (tmp_path / "ckpt" / "history.jsonl").read_text().splitlines() == lines[:len(
        (tmp_path / "ckpt" / "history.jsonl").read_text().splitlines())]


def test_a_checkpoint_file_gets_the_usual_mode_of_a_new_file(tmp_path):
    with netrun.Net(chain("A", "B"), db=tmp_path / "run.db") as net:
        net.save_checkpoint(tmp_path / "cp")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "cp" / "net.db").stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_failed_load_into_a_temporary_database_leaves_no_temporary_folder(tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    folder = tmp_path / "not-a-checkpoint"
    folder.mkdir()
    with closing(sqlite3.connect(folder / "net.db")) as conn:  # an SQLite file of another program
        conn.execute("CREATE TABLE t (x)")
        conn.commit()
    with pytest.raises(netrun.NotANetrunDatabase, match="another program"):
        netrun.Net.load_checkpoint(folder)
    assert list(scratch.iterdir()) == []
    # a checkpoint whose database cannot be resumed (its graph is damaged): refused after the copy
    with netrun.Net(chain("A", "B"), db=tmp_path / "run.db") as net:
        net.save_checkpoint(tmp_path / "cp")
    with closing(sqlite3.connect(tmp_path / "cp" / "net.db")) as conn:
        conn.execute("UPDATE net_meta SET value = '{' WHERE key = 'graph'")
        conn.commit()
    with pytest.raises(netrun.StorageError, match="stored graph"):
        netrun.Net.load_checkpoint(tmp_path / "cp")
    assert list(scratch.iterdir()) == []


def test_a_checkpoint_replaces_its_folder_as_a_whole_and_refuses_a_folder_of_other_files(tmp_path):
    target = tmp_path / "ckpt"
    history = tmp_path / "history.jsonl"
    with pipeline(tmp_path / "run.db", history_file=str(history)) as net:
        net.run_step()
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)
        first = folder_hashes(target)
        net.run_step()
        net.pause()  # a checkpoint is taken while the net is paused
        net.save_checkpoint(target)  # the second replaces the first: every file is the new one's
        second = folder_hashes(target)
        assert sorted(second) == ["checkpoint.json", "history.jsonl", "net.db"]
        assert all(second[name] != first[name] for name in second)
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ckpt.")] == []  # nothing left beside
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "notes.txt").write_text("mine")
        with pytest.raises(netrun.CheckpointError, match="notes.txt"):
            net.save_checkpoint(mine)
        assert (mine / "notes.txt").read_text() == "mine"


def test_a_checkpoint_into_a_file_or_a_symbolic_link_is_refused(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    folder = tmp_path / "real"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(folder)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    with pipeline(tmp_path / "run.db") as net:
        net.run_step()
        net.pause()
        for target, why in ((afile, "is a file"), (link, "symbolic link"), (dangling, "symbolic link")):
            with pytest.raises(netrun.CheckpointError, match=why):
                net.save_checkpoint(target)
    assert afile.read_text() == "x" and link.is_symlink() and os.listdir(folder) == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_loaded_checkpoint_resumed_later_still_writes_its_own_history_file(tmp_path):
    history = net_with_history_and_checkpoint(tmp_path)
    original = history.read_text()
    netrun.Net.load_checkpoint(tmp_path / "ckpt", db=str(tmp_path / "copy.db")).close()
    run_more(netrun.Net.resume(str(tmp_path / "copy.db")))  # a later session of the loaded net
    assert history.read_text() == original
    lines = (tmp_path / "copy.db.history.jsonl").read_text().splitlines()
    assert len(lines) == rows(tmp_path / "copy.db", "SELECT count(*) AS n FROM history")[0]["n"]


def test_a_load_that_failed_after_the_copy_leaves_a_net_with_its_own_history_file(tmp_path):
    """The copy is made, then resuming it fails (here a bad option; a kill lands there too): the copy
    left behind, resumed, must not append to the original run's history file."""
    history = net_with_history_and_checkpoint(tmp_path)
    original = history.read_text()
    with pytest.raises(netrun.ConfigError):
        netrun.Net.load_checkpoint(tmp_path / "ckpt", db=str(tmp_path / "copy.db"), on_error="bogus")
    run_more(netrun.Net.resume(str(tmp_path / "copy.db")))
    assert history.read_text() == original
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "copy.db.history.jsonl").read_text().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
