"""Schema migrations: a fresh migrate gives the committed schema, atomically, once.

When a new migration lands, regenerate the snapshot with

    python tests/migrations/test_migrations.py

and review the diff of tests/migrations/expected_schema.sql.
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path

import apsw
import pytest

import netrun
import netrun.migrate
from netrun.db import open_connection
from netrun.migrate import APPLICATION_ID, Migration, latest_version, list_migrations, migrate, migrations_dir

EXPECTED_SCHEMA = Path(__file__).with_name("expected_schema.sql")
REGENERATE = "python tests/migrations/test_migrations.py"


def dump_schema(conn: apsw.Connection) -> str:
    """The schema as text: one block per object of sqlite_schema, by name."""
    blocks = []
    for type_, name, tbl_name, sql in conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY name"):
        blocks.append(f"-- {type_} {name} on {tbl_name}\n{sql if sql is not None else '-- (no sql)'};\n")
    return "\n".join(blocks)


def migrated(path: Path) -> apsw.Connection:
    conn = open_connection(str(path))
    migrate(conn, str(path))
    return conn


def _pragma(conn: apsw.Connection, name: str) -> int:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _tables(conn: apsw.Connection) -> set[str]:
    """Tables and views (the contract's `history` is a view since version 10)."""
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')")}


@pytest.fixture
def conn(tmp_path):
    conn = migrated(tmp_path / "fresh.db")
    yield conn
    conn.close()


def test_fresh_migrate_sets_user_version_and_application_id(tmp_path):
    path = tmp_path / "fresh.db"
    conn = open_connection(str(path))
    try:
        assert (_pragma(conn, "user_version"), _pragma(conn, "application_id")) == (0, 0)
        assert migrate(conn, str(path)) == latest_version()
        assert _pragma(conn, "user_version") == latest_version()
        assert _pragma(conn, "application_id") == APPLICATION_ID
    finally:
        conn.close()


def test_application_id_spells_netr():
    assert APPLICATION_ID.to_bytes(4, "big") == b"netr"


def test_fresh_schema_matches_the_committed_snapshot(conn):
    assert EXPECTED_SCHEMA.exists(), f"{EXPECTED_SCHEMA} is missing; create it with: {REGENERATE}"
    assert dump_schema(conn) == EXPECTED_SCHEMA.read_text(), (
        f"the migrated schema differs from {EXPECTED_SCHEMA.name}; if the change is intended, "
        f"regenerate it with: {REGENERATE}")


def test_schema_has_the_documented_tables(conn):
    assert {"net_meta", "node_settings", "history", "epochs", "packets", "packet_values", "epoch_jobs",
            "node_logs", "dead_letters"} <= _tables(conn)


def test_migrations_are_numbered_one_to_n_without_gaps():
    migrations = list_migrations()
    assert migrations, "no migrations found"
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert latest_version() == len(migrations)
    for m in migrations:
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", m.name), m.name
        assert int(m.name[:4]) == m.version
        assert m.sql == (migrations_dir() / m.name).read_text()


def test_every_sql_file_in_the_migrations_folder_is_a_migration():
    files = sorted(p.name for p in migrations_dir().iterdir() if p.suffix == ".sql")
    assert files == [m.name for m in list_migrations()]


def test_a_gap_in_the_migration_numbers_is_refused(tmp_path, monkeypatch):
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE a (x);")
    (tmp_path / "0003_third.sql").write_text("CREATE TABLE c (x);")
    monkeypatch.setattr(netrun.migrate, "migrations_dir", lambda: tmp_path)
    with pytest.raises(netrun.StorageError, match="0003_third.sql"):
        list_migrations()


def test_migrating_twice_is_a_no_op(tmp_path):
    path = tmp_path / "twice.db"
    conn = migrated(path)
    try:
        conn.execute("INSERT INTO net_meta (key, value) VALUES ('k', 'v')")
        before = dump_schema(conn)
        changes = conn.total_changes()
        assert migrate(conn, str(path)) == latest_version()
        assert conn.total_changes() == changes
        assert dump_schema(conn) == before
        assert _pragma(conn, "user_version") == latest_version()
        assert conn.execute("SELECT value FROM net_meta WHERE key = 'k'").fetchall() == [("v",)]
    finally:
        conn.close()


def test_a_failing_migration_rolls_back_entirely(tmp_path, monkeypatch):
    first = list_migrations()[0]
    bad = Migration(2, "0002_bad.sql", "CREATE TABLE x (a); SELECT nonsense_function();")
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: [first, bad])
    path = tmp_path / "bad.db"
    conn = open_connection(str(path))
    try:
        with pytest.raises(netrun.StorageError, match="0002_bad.sql") as caught:
            migrate(conn, str(path))
        assert str(path) in str(caught.value)
        assert isinstance(caught.value.__cause__, apsw.Error)
        assert _pragma(conn, "user_version") == 1
        assert "x" not in _tables(conn)
        assert "net_meta" in _tables(conn)  # the good first migration stays applied
        assert not conn.in_transaction
    finally:
        conn.close()


def test_a_failing_first_migration_leaves_the_file_unmarked(tmp_path, monkeypatch):
    bad = Migration(1, "0001_bad.sql", "PRAGMA application_id = 1852142706; CREATE TABLE x (a); SELECT nope();")
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: [bad])
    path = tmp_path / "bad.db"
    conn = open_connection(str(path))
    try:
        with pytest.raises(netrun.StorageError, match="0001_bad.sql"):
            migrate(conn, str(path))
        assert (_pragma(conn, "user_version"), _pragma(conn, "application_id")) == (0, 0)
        assert _tables(conn) == set()
    finally:
        conn.close()


def test_an_older_database_is_migrated_forward(tmp_path, monkeypatch):
    real = list_migrations()
    path = tmp_path / "old.db"
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real)
    conn = migrated(path)
    conn.execute("INSERT INTO net_meta (key, value) VALUES ('k', 'v')")
    newer = Migration(len(real) + 1, f"{len(real) + 1:04d}_add_y.sql", "CREATE TABLE y (a);")
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: [*real, newer])
    try:
        assert migrate(conn, str(path)) == len(real) + 1
        assert "y" in _tables(conn)
        assert conn.execute("SELECT value FROM net_meta WHERE key = 'k'").fetchall() == [("v",)]
    finally:
        conn.close()


def _ephemeral_ops(conn: apsw.Connection, sql: str, bindings: tuple) -> list[str]:
    return [row[1] for row in conn.execute("EXPLAIN " + sql, bindings) if "Ephemeral" in row[1]]


def test_version_14_writes_rows_without_a_temporary_index_per_row_and_checks_the_same(tmp_path, monkeypatch):
    """A file of version 13 (its CHECKs and triggers test `x IN (...)`, which SQLite evaluates by building
    a temporary index per row) is migrated on a connection in SQLite's defensive mode: the definitions
    become comparisons, the rows stay, and what was refused is still refused."""
    real = list_migrations()
    path = tmp_path / "v13.db"
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real[:13])
    conn = migrated(path)
    insert_epoch = ("INSERT INTO epochs (id, node_name, state, created_at) VALUES (?, 'A', ?, '2026-01-01')")
    conn.execute(insert_epoch, ("e1", "finished"))
    assert _ephemeral_ops(conn, insert_epoch, ("e2", "startable"))
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real)
    conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
    try:
        assert migrate(conn, str(path)) == 14
        assert _ephemeral_ops(conn, insert_epoch, ("e2", "startable")) == []  # this connection sees it at once
        conn.execute(insert_epoch, ("e2", "cancelled"))
        with pytest.raises(apsw.ConstraintError, match="CHECK"):
            conn.execute(insert_epoch, ("e3", "sleeping"))
        with pytest.raises(apsw.ConstraintError, match="CHECK"):
            conn.execute("INSERT INTO inbox (kind, item_id, node_name) VALUES ('other', 'x', 'A')")
        conn.execute("UPDATE epochs SET state = 'failed' WHERE id = 'e1'")  # the triggers still count
        assert conn.execute("SELECT state, n FROM node_counts ORDER BY state").fetchall() == [
            ("cancelled", 1), ("failed", 1), ("finished", 0)]
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert " IN (" not in "".join(sql for (sql,) in conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type IN ('table', 'trigger')"))
    finally:
        conn.close()


@pytest.mark.parametrize("version, readable", [(12, False), (13, True)])
def test_a_file_of_version_13_is_read_as_it_is_and_an_older_one_is_refused(tmp_path, monkeypatch, version, readable):
    """Version 14 changed no table: a net written at 13 (by the netrun before, say, still running it) is
    read without being migrated; one of 12 must be resumed first."""
    from netrun.graphs import chain

    real = list_migrations()
    path = tmp_path / "old.db"
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda dialect="sqlite": real[:version])
    net = netrun.Net(chain("A", "B"), db=path)
    net.inject_packet("B", "in", "waiting")
    net.close()
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda dialect="sqlite": real)
    if readable:
        inspector = netrun.NetInspector(path)
        try:
            assert [p["node_name"] for p in inspector.query("SELECT node_name FROM packets")] == ["B"]
        finally:
            inspector.close()
    else:
        with pytest.raises(netrun.DatabaseVersionError, match="resume it once"):
            netrun.NetInspector(path)
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    assert _pragma(conn, "user_version") == version  # untouched either way
    conn.close()


def test_the_stdlib_sqlite3_can_read_every_table(tmp_path):
    """Tools use the stdlib sqlite3 (an older SQLite): the schema must stay readable by it."""
    path = tmp_path / "fresh.db"
    migrated(path).close()
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type IN ('table', 'view')")]
        for table in tables:
            conn.execute(f'SELECT * FROM "{table}" LIMIT 1').fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def _regenerate() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        conn = migrated(Path(tmp) / "schema.db")
        try:
            EXPECTED_SCHEMA.write_text(dump_schema(conn))
        finally:
            conn.close()
    print(f"wrote {EXPECTED_SCHEMA}", file=sys.stderr)


if __name__ == "__main__":
    _regenerate()


def test_values_stored_before_version_8_are_tagged_pickle_and_keep_their_bytes(tmp_path, monkeypatch):
    import pickle

    real = list_migrations()
    path = tmp_path / "v7.db"
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real[:7])
    conn = migrated(path)
    old = pickle.dumps({"city": "Lyon"})
    conn.execute("INSERT INTO packet_values (packet_id, kind, data) VALUES ('p1', 'value', ?), ('p2', 'func', x'00')",
                 (old,))
    conn.execute("INSERT INTO dead_letters (seq, packet_id, reason, value, value_kind, created_at) "
                 "VALUES (1, 'p3', 'failed', ?, 'value', '2026-01-01T00:00:00+00:00')", (old,))
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda: real)
    try:
        assert migrate(conn, str(path)) == len(real)
        assert conn.execute("SELECT packet_id, kind, data, preview FROM packet_values ORDER BY 1").fetchall() == [
            ("p1", "pickle", old, None), ("p2", "func", b"\x00", None)]
        assert conn.execute("SELECT value_kind, value, value_preview, status FROM dead_letters").fetchall() == [
            ("pickle", old, None, "pending")]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    from netrun.inspector import NOT_SHOWN, preview

    assert preview("pickle", old, None) == NOT_SHOWN  # no preview stored: never unpickled to make one
