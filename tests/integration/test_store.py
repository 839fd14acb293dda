"""Opening database files: foreign, newer, corrupt or taken files are refused untouched;
connections get netrun's pragmas; write transactions lock up front and roll back on error."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
from pathlib import Path

import apsw
import pytest

import netrun
from netrun.db import BUSY_TIMEOUT_MS, open_connection, transaction
from netrun.graphs import chain
from netrun.migrate import latest_version

PAGE = 4096


def graph() -> netrun.Graph:
    return chain("S", "A")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_net_db(path: Path | str) -> Path | str:
    """A real netrun database with a little history, closed (a file, or a PostgreSQL net's URL)."""
    with netrun.Net(graph(), db=path) as net:
        net.set_node_exec("S", lambda ctx, packets: None)
        net.inject_source_epoch("S")
        net.start()
    return path


def assert_refused_untouched(path: Path, error: type[BaseException]) -> BaseException:
    """Open `path` with Net, expect `error` naming the file, and the file byte for byte unchanged."""
    before = sha256(path)
    siblings = sorted(p.name for p in path.parent.iterdir())
    with pytest.raises(error) as caught:
        netrun.Net(graph(), db=path)
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)
    assert sha256(path) == before
    assert not path.with_name(path.name + "-journal").exists()
    # No new file, except the -wal/-shm that SQLite leaves next to a WAL database it opened
    # read-only (netrun's own files are WAL databases).
    assert set(p.name for p in path.parent.iterdir()) - set(siblings) <= {path.name + "-wal", path.name + "-shm"}
    return caught.value


# -- (a) not SQLite -------------------------------------------------------------------------------

@pytest.mark.parametrize("content", [
    random.Random(1).randbytes(3 * PAGE),
    b"name,value\nalpha,1\nbeta,2\n",
    b"SQLite format 2\x00" + bytes(200),
], ids=["random-bytes", "csv-text", "almost-a-header"])
def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path, content):
    path = tmp_path / "data.db"
    path.write_bytes(content)
    error = assert_refused_untouched(path, netrun.NotANetrunDatabase)
    assert isinstance(error, netrun.StorageError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.db"]  # no -wal / -shm created


# -- (b) another program's SQLite database -------------------------------------------------------

def test_another_programs_sqlite_database_is_refused_untouched(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
        conn.execute("INSERT INTO contacts VALUES ('Ada', '555')")
    conn.close()
    assert_refused_untouched(path, netrun.NotANetrunDatabase)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT * FROM contacts").fetchall() == [("Ada", "555")]
    conn.close()


def test_an_empty_sqlite_database_becomes_a_net(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    with netrun.Net(graph(), db=path) as net:
        assert net.query("SELECT count(*) AS n FROM net_meta WHERE key = 'graph'") == [{"n": 1}]


def test_an_empty_file_becomes_a_net(tmp_path):
    path = tmp_path / "empty.db"
    path.write_bytes(b"")
    with netrun.Net(graph(), db=path) as net:
        assert net.query("SELECT count(*) AS n FROM net_meta WHERE key = 'graph'") == [{"n": 1}]


# -- (c) written by a newer netrun ------------------------------------------------------------------

def test_a_database_from_a_newer_netrun_is_refused_untouched(tmp_path):
    path = make_net_db(tmp_path / "newer.db")
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {latest_version() + 1}")
    conn.close()
    error = assert_refused_untouched(path, netrun.DatabaseVersionError)
    assert error.version == latest_version() + 1
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == latest_version() + 1
    conn.close()


# -- (d) corrupt ---------------------------------------------------------------------------------

def _garbage_after_first_page(data: bytes) -> bytes:
    return data[:PAGE] + random.Random(2).randbytes(len(data) - PAGE)


def _one_page_of_ff(data: bytes) -> bytes:
    return data[:2 * PAGE] + b"\xff" * PAGE + data[3 * PAGE:]


def _truncated_to_half(data: bytes) -> bytes:
    return data[:len(data) // 2]


def _zeroed_schema_page(data: bytes) -> bytes:
    return data[:100] + bytes(PAGE - 100) + data[PAGE:]


@pytest.mark.parametrize("damage", [_garbage_after_first_page, _one_page_of_ff, _truncated_to_half,
                                    _zeroed_schema_page])
def test_a_corrupt_database_is_refused_untouched(tmp_path, damage):
    path = make_net_db(tmp_path / "corrupt.db")
    data = path.read_bytes()
    assert len(data) >= 4 * PAGE
    path.write_bytes(damage(data))
    error = assert_refused_untouched(path, netrun.StorageError)
    assert not isinstance(error, (netrun.NotANetrunDatabase, netrun.DatabaseVersionError))


def test_a_damaged_database_is_reported_as_corrupt(tmp_path):
    path = make_net_db(tmp_path / "corrupt.db")
    path.write_bytes(_garbage_after_first_page(path.read_bytes()))
    assert_refused_untouched(path, netrun.CorruptDatabase)


# -- (e) a file that already holds a net --------------------------------------------------------

def test_a_file_that_already_holds_a_net_is_refused_untouched(tmp_path):
    path = make_net_db(tmp_path / "taken.db")
    before = sha256(path)
    with pytest.raises(netrun.StorageError, match="already holds a net") as caught:
        netrun.Net(graph(), db=path)
    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, netrun.NotANetrunDatabase)
    assert sha256(path) == before


def test_an_older_file_that_already_holds_a_net_is_refused_unmigrated(tmp_path, monkeypatch):
    import netrun.migrate

    real = netrun.migrate.list_migrations()
    monkeypatch.setattr(netrun.migrate, "list_migrations", lambda *args: real[:-1])
    path = tmp_path / "older.db"
    conn = open_connection(str(path))
    netrun.migrate.migrate(conn, str(path))
    conn.execute("INSERT INTO net_meta (key, value) VALUES ('graph', '{}')")
    conn.close()
    monkeypatch.undo()
    before = sha256(path)
    with pytest.raises(netrun.StorageError, match="already holds a net; choose another file"):
        netrun.Net(graph(), db=path)
    assert sha256(path) == before  # not migrated to the latest version first
    with sqlite3.connect(path) as reader:
        assert reader.execute("PRAGMA user_version").fetchone()[0] == latest_version() - 1
    reader.close()


def test_a_refused_net_does_not_keep_the_file_open(tmp_path):
    path = make_net_db(tmp_path / "taken.db")
    with pytest.raises(netrun.StorageError):
        netrun.Net(graph(), db=path)
    conn = apsw.Connection(str(path))
    conn.setbusytimeout(0)
    conn.execute("BEGIN EXCLUSIVE")  # would raise BusyError if a connection were still open in a transaction
    conn.execute("ROLLBACK")
    conn.close()


# -- (f) pragmas ---------------------------------------------------------------------------------

def test_the_database_is_in_wal_mode(tmp_path):
    path = tmp_path / "run.db"
    with netrun.Net(graph(), db=path):
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()


@pytest.mark.parametrize(("durability", "level"), [("full", 2), ("normal", 1)])
def test_durability_sets_synchronous(tmp_path, durability, level):
    with netrun.Net(graph(), db=tmp_path / "run.db", durability=durability) as net:
        assert net._rt.journal.conn.execute("PRAGMA synchronous").fetchone()[0] == level


def test_default_durability_is_normal(tmp_path):
    with netrun.Net(graph(), db=tmp_path / "run.db") as net:
        assert net._rt.journal.conn.execute("PRAGMA synchronous").fetchone()[0] == 1


def test_the_net_connection_has_netruns_pragmas(tmp_path):
    with netrun.Net(graph(), db=tmp_path / "run.db") as net:
        conn = net._rt.journal.conn
        assert BUSY_TIMEOUT_MS >= 1000
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_open_connection_turns_off_double_quoted_string_literals(tmp_path):
    conn = open_connection(str(tmp_path / "x.db"))
    try:
        with pytest.raises(apsw.SQLError, match="no such column"):
            conn.execute('SELECT "not a string"').fetchall()
    finally:
        conn.close()


def test_a_read_only_connection_refuses_writes(tmp_path):
    path = str(tmp_path / "x.db")
    open_connection(path).close()
    conn = open_connection(path, readonly=True)
    try:
        with pytest.raises(apsw.ReadOnlyError):
            conn.execute("CREATE TABLE t (a)")
    finally:
        conn.close()


# -- (g) transactions ----------------------------------------------------------------------------

@pytest.fixture
def conns(tmp_path):
    path = str(tmp_path / "tx.db")
    first = open_connection(path)
    first.execute("CREATE TABLE t (a INTEGER)")
    second = apsw.Connection(path)
    second.setbusytimeout(0)
    yield first, second
    second.close()
    first.close()


def _rows(conn: apsw.Connection) -> list[tuple]:
    return conn.execute("SELECT a FROM t ORDER BY a").fetchall()


def test_transaction_takes_the_write_lock_before_the_body_runs(conns):
    first, second = conns
    with transaction(first):
        with pytest.raises(apsw.BusyError):
            second.execute("BEGIN IMMEDIATE")
    second.execute("BEGIN IMMEDIATE")  # free again once committed
    second.execute("ROLLBACK")


@pytest.fixture
def writer(db):
    """A netrun connection with a table `t`, on each store (the `db` fixture)."""
    netrun.Net(chain("A", "B"), db=db).close()  # a PostgreSQL net's schema is made by its first Net
    conn = open_connection(db)
    conn.execute("CREATE TABLE t (a INTEGER)")
    yield conn
    conn.close()


def test_transaction_commits_on_success(writer, db):
    with transaction(writer) as conn:
        assert conn is writer
        writer.execute("INSERT INTO t VALUES (1)")
        assert not writer.getautocommit()
    assert writer.getautocommit()
    other = open_connection(db)
    try:
        assert other.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,)]
    finally:
        other.close()


def test_transaction_rolls_back_when_the_body_raises(writer):
    with pytest.raises(ValueError, match="boom"):
        with transaction(writer):
            writer.execute("INSERT INTO t VALUES (1)")
            raise ValueError("boom")
    assert writer.getautocommit()
    assert writer.execute("SELECT a FROM t").fetchall() == []
    with transaction(writer):  # the write lock was released
        writer.execute("INSERT INTO t VALUES (2)")
    assert writer.execute("SELECT a FROM t").fetchall() == [(2,)]


def test_transaction_rolls_back_on_base_exception(writer):
    with pytest.raises(KeyboardInterrupt):
        with transaction(writer):
            writer.execute("INSERT INTO t VALUES (1)")
            raise KeyboardInterrupt
    assert writer.getautocommit()
    assert writer.execute("SELECT a FROM t").fetchall() == []


def test_transaction_rolls_back_on_a_failing_statement(writer):
    with pytest.raises(apsw.SQLError):
        with transaction(writer):
            writer.execute("INSERT INTO t VALUES (1)")
            writer.execute("INSERT INTO missing VALUES (1)")
    assert writer.execute("SELECT a FROM t").fetchall() == []


def test_a_failing_write_among_many_rolls_the_whole_transaction_back(writer):
    """On PostgreSQL a transaction's writes are sent ahead without waiting for each: the error of one
    in the middle is still raised (by the COMMIT at the latest), nothing of it is written, and the
    connection goes on."""
    writer.execute("CREATE TABLE u (a INTEGER PRIMARY KEY)")
    with pytest.raises(apsw.ConstraintError):
        with transaction(writer):
            writer.execute("INSERT INTO u VALUES (1)")
            writer.executemany("INSERT INTO u VALUES (?)", [(2,), (1,)])  # the second is a duplicate
            writer.execute("INSERT INTO u VALUES (3)")
    assert writer.getautocommit()
    assert writer.execute("SELECT a FROM u").fetchall() == []
    with transaction(writer):
        writer.execute("INSERT INTO u VALUES (4)")
    assert writer.execute("SELECT a FROM u").fetchall() == [(4,)]


def test_reads_inside_a_transaction_see_the_writes_before_them(writer):
    with transaction(writer):
        writer.executemany("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
        writer.execute("UPDATE t SET a = a + 10 WHERE a > 1")
        assert writer.changes() == 2
        assert writer.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,), (12,), (13,)]
        writer.execute("DELETE FROM t WHERE a = 1")
        assert writer.execute("SELECT count(*) FROM t").fetchone() == (2,)
    assert _rows(writer) == [(12,), (13,)]


def test_files_are_created_with_the_path_given(tmp_path):
    path = tmp_path / "sub" / "run.db"
    path.parent.mkdir()
    with netrun.Net(graph(), db=path) as net:
        assert net.db_path == str(path)
    assert path.exists() and os.path.getsize(path) > 0


def test_a_write_waits_for_another_writer_instead_of_failing(tmp_path):
    """The busy handler retries while another connection holds the write lock."""
    import threading
    import time

    from netrun.db import open_connection, transaction

    path = str(tmp_path / "busy.db")
    first = open_connection(path)
    first.execute("CREATE TABLE t (x INTEGER)")
    second = open_connection(path)
    released = threading.Event()

    def hold_lock() -> None:
        with transaction(first):
            first.execute("INSERT INTO t VALUES (1)")
            time.sleep(0.2)
        released.set()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    time.sleep(0.05)
    began = time.monotonic()
    with transaction(second):  # would raise apsw.BusyError at once without a busy handler
        second.execute("INSERT INTO t VALUES (2)")
    waited = time.monotonic() - began
    holder.join()
    assert released.is_set()
    assert waited >= 0.1
    assert [r[0] for r in second.execute("SELECT x FROM t ORDER BY x")] == [1, 2]
    first.close()
    second.close()


@pytest.mark.parametrize("sql, params, reason", [
    ("SELEC 1", (), {"sqlite": "syntax error", "postgres": "syntax error"}),
    ("SELECT * FROM no_such_table", (), {"sqlite": "no such table: no_such_table",
                                         "postgres": 'relation "no_such_table" does not exist'}),
    ("SELECT ?", (), {"sqlite": "bindings", "postgres": "bind|parameter"}),
    # PostgreSQL's class 55 (psycopg's OperationalError): a refused statement, not a lost connection
    ("SELECT lastval()", (), {"sqlite": "no such function", "postgres": "lastval is not yet defined"}),
])
def test_a_query_that_the_database_rejects_raises_query_error_naming_the_statement(db, backend, sql, params, reason):
    with netrun.Net(chain("A", "B"), db=db) as net:
        with pytest.raises(netrun.QueryError, match=reason[backend]) as info:
            net.query(sql, params)
        assert sql in str(info.value)
        assert not isinstance(info.value, netrun.ReadOnlyQueryError)
        assert net.query("SELECT 1 AS one") == [{"one": 1}]  # the reader still works


# -- (h) the same refusals on PostgreSQL (a schema per net: sections a-f are about files) --------------

def schema_state(url: str) -> list:
    """The net's schema as it stands: its comment (netrun's version), tables, and every table's rows."""
    import psycopg

    from netrun.pgconn import parse_url

    target = parse_url(url)
    with psycopg.connect(target.conninfo, autocommit=True) as pg:
        found = [pg.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                            (target.schema,)).fetchall()]
        for (table,) in pg.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                                   (target.schema,)).fetchall():
            found.append((table, pg.execute(f'SELECT * FROM "{target.schema}"."{table}" ORDER BY 1').fetchall()))
    return found


def admin(url: str, sql: str) -> None:
    import psycopg

    from netrun.pgconn import parse_url

    target = parse_url(url)
    with psycopg.connect(target.conninfo, autocommit=True) as pg:
        pg.execute(sql.format(schema=f'"{target.schema}"'))


def assert_pg_refused_untouched(url: str, error: type[BaseException], *, resume: bool = False) -> BaseException:
    before = schema_state(url)
    with pytest.raises(error) as caught:
        netrun.Net.resume(url) if resume else netrun.Net(graph(), db=url)
    label = url.split("?")[0]
    assert label in str(caught.value) and caught.value.path.startswith(label)
    assert schema_state(url) == before
    return caught.value


def test_another_programs_schema_is_refused_untouched(pg_url):
    admin(pg_url, "CREATE SCHEMA {schema}; CREATE TABLE {schema}.people (name text); "
                  "INSERT INTO {schema}.people VALUES ('ada')")
    for resume in (False, True):
        error = assert_pg_refused_untouched(pg_url, netrun.NotANetrunDatabase, resume=resume)
        assert "another program" in str(error)


def test_a_schema_from_a_newer_netrun_is_refused_untouched(pg_url):
    make_net_db(pg_url)
    admin(pg_url, f"COMMENT ON SCHEMA {{schema}} IS 'netrun schema version {latest_version() + 1}'")
    for resume in (False, True):
        error = assert_pg_refused_untouched(pg_url, netrun.DatabaseVersionError, resume=resume)
        assert error.version == latest_version() + 1


def test_a_schema_that_already_holds_a_net_is_refused_untouched(pg_url):
    make_net_db(pg_url)
    error = assert_pg_refused_untouched(pg_url, netrun.StorageError)
    assert "already holds a net; choose another net name, ?net=NAME" in str(error)
    assert not isinstance(error, netrun.NotANetrunDatabase)


def test_a_body_that_raises_after_a_failing_write_sent_ahead_raises_its_own_error(pg_url):
    """PostgreSQL: the body's exception is the one raised (not the error of a write still in flight),
    and the connection is usable afterwards."""
    netrun.Net(chain("A", "B"), db=pg_url).close()
    conn = open_connection(pg_url)
    try:
        conn.execute("CREATE TABLE u (a INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO u VALUES (1)")
        with pytest.raises(KeyboardInterrupt):
            with transaction(conn):
                conn.execute("INSERT INTO u VALUES (1)")  # a duplicate, not waited for yet
                raise KeyboardInterrupt
        assert conn.getautocommit()
        assert conn.execute("SELECT a FROM u").fetchall() == [(1,)]
    finally:
        conn.close()


def test_a_reader_whose_connection_was_cut_reads_again_on_a_new_one(pg_url, pg_server):
    """A server restart or pg_terminate_backend between two reads: the next read opens a new connection."""
    import os

    import psycopg

    with netrun.Net(chain("A", "B"), db=pg_url) as net:
        net.inject_packet("B", "in", 1)
    with netrun.NetInspector(pg_url) as inspector:
        assert inspector.query("SELECT count(*) AS n FROM packets") == [{"n": 1}]
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name = %s", (f"netrun:{os.getpid()}",)).fetchone()[0]
        assert cut >= 1
        assert inspector.query("SELECT count(*) AS n FROM packets") == [{"n": 1}]
        assert set(inspector.status()["nodes"]) == {"A", "B"}  # a status too
