"""Compact history (migration 0010): one row per action, codes for strings and IDs, a view that
reads it back as the contract's `history` records.

The view (SQL), the Python expansion (the in-memory window, the JSONL file, the inspector's key
lookups) must describe the same records, numbered 1, 2, 3... as before.
"""

from __future__ import annotations

import json
from pathlib import Path

import apsw
import pytest

import netrun
import netrun.historyrows
import netrun.migrate
from netrun.graphs import chain
from netrun.migrate import list_migrations, migrate

from .helpers import rows

COLUMNS = ("seq", "type", "name", "action_id", "epoch_id", "packet_id", "node_name", "timestamp", "data")


def _forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    if value == 3:
        raise ValueError("three is refused")
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _run(path: Path, **config) -> None:
    with netrun.Net(chain("A", "B", "Sink"), db=str(path), **config) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        net.set_node_config("Sink", defer_net_actions=True)
        for value in range(6):
            net.inject_packet("B", "in", value)
        net.start()


def test_the_view_the_file_and_the_window_show_the_same_records(tmp_path):
    db, jsonl = tmp_path / "net.db", tmp_path / "history.jsonl"
    with netrun.Net(chain("A", "B", "Sink"), db=str(db), history_file=str(jsonl), history_chunk_size=7) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        for value in range(6):
            net.inject_packet("B", "in", value)
        net.start()
        window = net.history
        net.flush_history()
    table = rows(db, "SELECT * FROM history ORDER BY seq")
    assert [r["seq"] for r in table] == list(range(1, len(table) + 1))  # consecutive, from 1
    assert {r["name"] for r in table} >= {"CreatePacket", "PacketMoved", "EpochCreated", "EpochStarted",
                                          "ConsumePacket", "EpochFinished", "EpochCancelled"}
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [r["seq"] for r in table]
    assert window == lines  # the in-memory window holds them all here
    for row, line in zip(table, lines):
        name_key, id_key = ("action", "id") if row["type"] == "action" else ("event", "action_id")
        assert (line[name_key], line[id_key], line["timestamp"]) == (row["name"], row["action_id"], row["timestamp"])
        for column in ("epoch_id", "packet_id", "node_name"):
            assert line.get(column) == row[column], (row, line)
        data = json.loads(row["data"]) if row["data"] else {}
        assert {k: v for k, v in line.items() if k in data} == data
    # events carry their action's id and time; timestamps are the ISO text SQLite's functions read
    by_seq = {r["seq"]: r for r in table}
    for row in table:
        if row["type"] == "event":
            action = by_seq[int(row["action_id"])]
            assert action["type"] == "action" and action["timestamp"] == row["timestamp"]
    assert rows(db, "SELECT count(*) AS n FROM history WHERE julianday(timestamp) IS NULL")[0]["n"] == 0


def test_an_epochs_and_a_packets_records_come_from_key_lookups_and_match_a_scan(tmp_path):
    db = tmp_path / "net.db"
    _run(db)
    packets = [r["id"] for r in rows(db, "SELECT id FROM packets")]
    epochs = [r["id"] for r in rows(db, "SELECT id FROM epochs")]
    with netrun.NetInspector(str(db)) as net:
        for packet in packets:
            scanned = rows(db, "SELECT * FROM history WHERE packet_id = ? ORDER BY seq", (packet,))
            assert [r["seq"] for r in net.history(packet=packet)] == [r["seq"] for r in scanned] != []
        for epoch in epochs:
            scanned = rows(db, "SELECT * FROM history WHERE epoch_id = ? ORDER BY seq", (epoch,))
            found = net.history(epoch=epoch)
            assert [r["seq"] for r in found] == [r["seq"] for r in scanned] != []
            assert [r["data"] for r in found] == [json.loads(r["data"]) if r["data"] else None for r in scanned]
        plan = " ".join(str(r) for r in net.query(
            "EXPLAIN QUERY PLAN SELECT r.seq FROM history_ids i JOIN history_refs r ON r.ref = i.n WHERE i.id = ?",
            (packets[0],)))
        assert "SCAN" not in plan  # both tables by key


def test_history_is_small(tmp_path):
    """The point of the layout: a few hundred bytes of history per epoch (it was ~1,900)."""
    db = tmp_path / "net.db"
    with netrun.Net(chain("A", "B", "Sink"), db=str(db)) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        for value in range(500):
            net.inject_packet("B", "in", value + 10)
        net.start()
        epochs = net.query("SELECT count(*) AS n FROM epochs")[0]["n"]
        used = net.query("SELECT sum(pgsize) AS n FROM dbstat WHERE name LIKE 'history%' "
                         "OR name LIKE 'sqlite_autoindex_history%'")[0]["n"]
    assert epochs == 1000
    assert used / epochs < 800


def test_a_commit_that_fails_half_way_numbers_its_ids_again(tmp_path, monkeypatch):
    """IDs numbered in a rolled-back transaction are forgotten, so the retry writes them: every
    number in the history resolves to an ID."""
    db = tmp_path / "net.db"
    real = netrun.historyrows.Encoder.write
    failures = iter([True])

    def flaky(self, actions):
        real(self, actions)
        if next(failures, False):
            raise apsw.FullError("database or disk is full")

    monkeypatch.setattr(netrun.historyrows.Encoder, "write", flaky)
    with netrun.Net(chain("A", "B", "Sink"), db=str(db)) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        with pytest.raises(netrun.StorageError):
            net.inject_packet("B", "in", 1)
        net.inject_packet("B", "in", 2)
        net.start()
    assert rows(db, "SELECT count(*) AS n FROM history_actions a WHERE (a.epoch IS NOT NULL AND a.epoch NOT IN "
                    "(SELECT n FROM history_ids)) OR (a.packet IS NOT NULL AND a.packet NOT IN "
                    "(SELECT n FROM history_ids))")[0]["n"] == 0
    assert rows(db, "SELECT count(*) AS n FROM history WHERE type = 'event' AND name = 'PacketCreated' "
                    "AND packet_id IS NULL")[0]["n"] == 0
    consumed = rows(db, "SELECT count(*) AS n FROM history WHERE name = 'PacketConsumed' AND node_name = 'Sink'")
    assert consumed[0]["n"] == 2  # both values went through; the first one's rows were written by the retry


def test_history_written_before_version_10_stays_readable_and_numbering_goes_on(tmp_path, monkeypatch):
    db = tmp_path / "old.db"
    real = list_migrations()
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real[:9])
    conn = apsw.Connection(str(db))
    migrate(conn, str(db))
    conn.execute("INSERT INTO history (seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data) "
                 "VALUES (1, 'action', 'CreatePacket', 'old-1', NULL, 'P-OLD', NULL, "
                 "'2026-01-01T00:00:00.000000+00:00', NULL), (2, 'event', 'PacketCreated', 'old-1', NULL, 'P-OLD', "
                 "NULL, '2026-01-01T00:00:00.000000+00:00', NULL)")
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real)
    migrate(conn, str(db))
    conn.close()
    conn = apsw.Connection(str(db))
    from netrun.historyrows import Decoder, next_seq
    assert next_seq(conn) == 3
    assert [r[-1] for r in Decoder(conn).mentioning(["P-OLD"])] == [1, 2]
    assert [tuple(r) for r in conn.execute("SELECT seq, name, action_id FROM history ORDER BY seq")] == [
        (1, "CreatePacket", "old-1"), (2, "PacketCreated", "old-1")]
    conn.close()
