"""Damaged files are reported, never half-read: an index missing rows passes `quick_check` but not
the full check of the live-state tables that every resume runs (and the whole-file check after a
crash); the resume raises CorruptDatabase naming the file and the damage, and changes nothing."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from contextlib import closing
from pathlib import Path

import apsw
import pytest

import netrun
from netrun.graphs import chain


def _damage_index(db: Path) -> None:
    """The index of live packets now claims another column: its entries no longer match the table
    rows (a `quick_check` does not compare index content with the table; an `integrity_check` does)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA writable_schema = ON")
        conn.execute("UPDATE sqlite_schema SET sql = replace(sql, ?, ?) WHERE name = 'packets_live'",
                     ("(location, epoch_id)", "(location, node_name)"))
        conn.commit()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA quick_check").fetchall() == [("ok",)]


def _digest(db: Path) -> str:
    return hashlib.sha256(db.read_bytes()).hexdigest()


@pytest.mark.parametrize("after_crash", [False, True])
def test_a_resume_refuses_a_file_whose_index_misses_rows(tmp_path, after_crash):
    db = tmp_path / "damaged.db"
    net = netrun.Net(chain("Src", "Sink"), db=str(db))
    for value in range(5):
        net.inject_packet("Sink", "in", value)
    net.close()
    _damage_index(db)
    if after_crash:  # as a killed run leaves it: start intents beside the file (the whole file is checked)
        Path(str(db) + "-starts").write_text("")
    before = _digest(db)
    with pytest.raises(netrun.CorruptDatabase, match="damaged.db is damaged and cannot be resumed: .*packets_live"):
        netrun.Net.resume(str(db))
    assert _digest(db) == before
    with pytest.raises(netrun.CorruptDatabase):  # refused again: nothing was half-applied
        netrun.Net.resume(str(db))


@pytest.mark.parametrize("deferred", [True, False])
def test_a_full_disk_is_a_storage_error_and_a_resume_after_making_room_loses_nothing(tmp_path, deferred):
    from tests.integration.helpers import collect

    db = tmp_path / "full.db"
    values = list(range(300))
    net = netrun.Net(chain("Src", "A", "Sink"), db=str(db))
    for node in ("A", "Sink"):
        net.set_node_config(node, defer_net_actions=deferred)
    net.set_node_exec("A", lambda ctx, packets: (ctx.load_output_port("out", ctx.create_packet(
        ["payload" * 50, ctx.consume_packet(packets["in"][0])])), ctx.send_output_salvo("send_out")))
    net.set_node_exec("Sink", collect([]))
    for value in values:
        net.inject_packet("A", "in", value)  # acknowledged: committed when it returns
    conn = net._rt.journal.conn  # SQLite's own cap on the file: its writes then fail as on a full disk
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 3}")
    with pytest.raises(netrun.StorageError, match=r"full\.db: cannot write \(FullError"):
        net.start()
    with pytest.raises(netrun.StorageError):
        net.close()  # still full: what it holds stays unwritten, the file as the last commit left it
    got: list = []
    with netrun.Net.resume(str(db)) as resumed:  # room again (the cap was the closed connection's)
        resumed.set_node_exec("A", lambda ctx, packets: (ctx.load_output_port("out", ctx.create_packet(
            ["payload" * 50, ctx.consume_packet(packets["in"][0])])), ctx.send_output_salvo("send_out")))
        resumed.set_node_exec("Sink", collect(got))
        resumed.start()
        letters = resumed.dead_letter_queue.get_all()
    delivered = sorted(v[1] for v in got)
    lettered = sorted(v if isinstance(v, int) else v[1] for v in (d.value for d in letters))
    assert len(delivered) == len(set(delivered))  # nothing twice
    assert sorted(delivered + lettered) == values if not deferred else delivered == values


def test_a_tampered_user_version_is_a_damaged_file_not_an_upgrade(tmp_path, capsys):
    from netrun.cli import main

    db = tmp_path / "tampered.db"
    netrun.Net(chain("Src", "Sink"), db=str(db)).close()
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA user_version = 5")  # the schema is the latest one: migrating from 5 would fail
        conn.commit()
    before = _digest(db)
    with pytest.raises(netrun.CorruptDatabase, match="not the one of the version it claims"):
        netrun.Net.resume(str(db))
    with pytest.raises(netrun.CorruptDatabase, match="user_version 5"):
        netrun.NetInspector(str(db))
    capsys.readouterr()
    assert main(["status", str(db)]) != 0
    err = capsys.readouterr().err
    assert "not the one of the version it claims" in err and "netrun resume" not in err  # no advice to resume
    assert _digest(db) == before


def test_a_genuinely_older_file_still_migrates(tmp_path, monkeypatch):
    import netrun.migrate
    from netrun.db import open_connection
    from netrun.migrate import inspect_file, list_migrations, migrate

    real = list_migrations()
    db = str(tmp_path / "old.db")
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real[:7])
    conn = open_connection(db)
    migrate(conn, db)
    conn.close()
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real)
    assert inspect_file(db).version == 7  # its schema is version 7's: accepted, to be migrated


@pytest.mark.parametrize("version", [0, -3])
def test_a_user_version_of_zero_or_below_on_a_netrun_file_is_damage(tmp_path, version):
    db = tmp_path / "v.db"
    netrun.Net(chain("Src", "Sink"), db=str(db)).close()
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
        conn.commit()
    with pytest.raises(netrun.CorruptDatabase, match="not the one of the version it claims"):
        netrun.Net.resume(str(db))


def test_a_missing_folder_and_a_read_only_file_are_storage_errors_naming_the_file(tmp_path):
    import subprocess

    with pytest.raises(netrun.StorageError, match=r"nowhere/net\.db.*does not exist"):
        netrun.Net(chain("Src", "Sink"), db=str(tmp_path / "nowhere" / "net.db"))
    db = tmp_path / "ro.db"
    netrun.Net(chain("Src", "Sink"), db=str(db)).close()
    before = _digest(db)
    subprocess.run(["chattr", "+i", str(db)], check=True)  # read-only even for root
    try:
        with pytest.raises(netrun.StorageError, match=r"ro\.db: cannot write \(ReadOnlyError"):
            netrun.Net.resume(str(db))
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=True)
    assert _digest(db) == before
    netrun.Net.resume(str(db)).close()  # writable again: it resumes


def test_a_file_locked_for_a_moment_is_waited_for_not_called_damaged(tmp_path):
    """The last connection of a run that ends holds the file exclusively while it folds its WAL back:
    a command opening the file then waits for it, and reads it; it never reports the file damaged."""
    db = tmp_path / "busy.db"
    with netrun.Net(chain("Src", "Sink"), db=str(db)) as net:
        net.inject_packet("Sink", "in", 1)
    holder = apsw.Connection(str(db))
    holder.execute("PRAGMA locking_mode = EXCLUSIVE")
    holder.execute("BEGIN IMMEDIATE; UPDATE net_meta SET value = value; COMMIT")  # leaves a -wal, holds the lock
    assert (tmp_path / "busy.db-wal").exists()

    def release() -> None:
        time.sleep(0.3)
        holder.close()  # checkpoints, removes the -wal, lets go

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        with netrun.NetInspector(str(db)) as inspector:
            assert inspector.query("SELECT count(*) AS n FROM packets") == [{"n": 1}]
    finally:
        releaser.join()


def _times_ten(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value * 10))
    ctx.send_output_salvo("send_out")


async def _times_ten_async(ctx, packets):
    value = await ctx.consume_packet(packets["in"][0])
    await ctx.load_output_port("out", await ctx.create_packet(value * 10))
    await ctx.send_output_salvo("send_out")


@pytest.mark.parametrize("fail_at", [1, 2, 3])
@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "not-deferred"])
@pytest.mark.parametrize("pool", [None, "thread", "async"])
def test_a_run_stopped_by_a_failed_commit_goes_on_when_started_again(tmp_path, monkeypatch, pool, deferred, fail_at):
    """A commit fails mid-run (the disk was full; made room since): `start()` again goes on with what
    the run held, and every value arrives once. An epoch taken in line for the failed commit, or
    started by it, is neither lost nor run twice."""
    from netrun.journal import Journal

    write, calls = Journal._write, {"n": None}

    def failing_write(self, taken):
        if calls["n"] is not None:
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise OSError("disk full (simulated)")
        return write(self, taken)

    monkeypatch.setattr(Journal, "_write", failing_write)
    got = []
    options = {"thread_pools": {"p": {"size": 4}}} if pool == "thread" else {}
    with netrun.Net(chain("Src", "Work", "Sink"), db=tmp_path / "run.db", **options) as net:
        # async: the main thread's event loop starts every due async epoch with one commit
        net.set_node_exec("Work", _times_ten_async if pool == "async" else _times_ten)
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        for node in ("Work", "Sink"):
            net.set_node_config(node, defer_net_actions=deferred, pool="p" if pool == "thread" and node == "Work" else None)
        for value in range(200):
            net.inject_packet("Work", "in", value)
        calls["n"] = 0
        with pytest.raises(netrun.StorageError, match="simulated"):
            net.start()
        net.start()
        assert sorted(got) == [v * 10 for v in range(200)]
        assert net.query("SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1, 2") == [
            {"node_name": "Sink", "state": "finished", "n": 200}, {"node_name": "Work", "state": "finished", "n": 200}]
        assert all(s.startable == 0 and s.running == 0 for s in net.poll().nodes.values())
