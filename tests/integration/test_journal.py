"""What the journal keeps: consumed values, captured prints, history (table, memory, JSONL), timestamps."""

from __future__ import annotations

import json
import pickle
from datetime import UTC, datetime, timedelta, timezone

import pytest

import netrun
from netrun.graphs import chain

from .helpers import FakeClock, FrozenClock, collect, emit, forward, rows, scalar


def source_sink_net(db, seen: list, **options) -> netrun.Net:
    net = netrun.Net(chain("Source", "Sink"), db=db, **options)
    net.set_node_exec("Sink", collect(seen))
    return net


# -- consumed packet storage ---------------------------------------------------------------------

@pytest.mark.parametrize("deferred", [False, True])
def test_a_value_made_and_consumed_between_two_commits_is_never_written_nor_deleted(tmp_path, deferred):
    """Values injected (committed at once) are deleted when consumed; a value made by A and consumed by
    the Sink before the next commit never reaches the file, and no DELETE is spent on it."""
    seen: list = []
    net = netrun.Net(chain("Source", "A", "Sink"), db=tmp_path / "run.db")
    net.set_node_exec("A", forward())
    net.set_node_exec("Sink", collect(seen))
    for node in ("A", "Sink"):
        net.set_node_config(node, defer_net_actions=deferred)
    for value in range(20):
        net.inject_packet("A", "in", value)
    statements: list = []
    conn = net._rt.journal.conn
    conn.exec_trace = lambda _cursor, sql, bindings: statements.append((sql, bindings)) or True
    net.start()
    conn.exec_trace = None
    assert sorted(seen) == list(range(20))
    deleted = [b for sql, rows in statements if sql.startswith("DELETE FROM packet_values")
               for b in (rows if isinstance(rows, list) else [rows])]
    injected = {row["id"] for row in net.query("SELECT id FROM packets WHERE node_name = 'A' AND state = 'consumed'")}
    made = {row["id"] for row in net.query("SELECT id FROM packets WHERE node_name = 'Sink' AND state = 'consumed'")}
    deleted_ids = {b[0] for b in deleted}
    assert injected <= deleted_ids  # committed at injection: deleted when consumed
    assert len(deleted_ids & made) < len(made) / 2  # most of A's values lived between two commits only
    assert net.query("SELECT count(*) AS n FROM packet_values") == [{"n": 0}]
    net.close()


def test_consumed_packet_storage_keeps_consumed_values(db):
    seen: list = []
    with source_sink_net(db, seen, consumed_packet_storage=True) as net:
        ids = {net.inject_packet("Sink", "in", v): v for v in ("a", ["b"], {"c": 3})}
        net.start()
        assert len(seen) == 3
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'consumed'") == [{"n": 3}]
        for packet_id, value in ids.items():
            assert net.get_packet_value(packet_id) == value


def test_consumed_packet_storage_limit_keeps_only_the_newest(db):
    seen: list = []
    with source_sink_net(db, seen, consumed_packet_storage=True, consumed_packet_storage_limit=2) as net:
        ids = {v: net.inject_packet("Sink", "in", v) for v in range(5)}
        net.start()
        assert len(seen) == 5
        newest, older = seen[-2:], seen[:-2]
        for v in newest:
            assert net.get_packet_value(ids[v]) == v
        for v in older:
            with pytest.raises(netrun.NotFoundError):
                net.get_packet_value(ids[v])
    kept = rows(db, "SELECT packet_id FROM packet_values WHERE consumed_seq IS NOT NULL")
    assert sorted(r["packet_id"] for r in kept) == sorted(ids[v] for v in newest)
    assert scalar(db, "SELECT count(*) FROM packet_values") == 2


def test_consumed_packet_storage_path_writes_one_pickle_per_consumed_value(tmp_path, db):
    folder = tmp_path / "consumed"
    results: list = []
    with netrun.Net(chain("Source", "A", "Sink"), db=db,
                    consumed_packet_storage_path=str(folder)) as net:
        net.set_node_exec("Source", emit(1, 2))
        net.set_node_exec("A", forward(lambda v: {"doubled": v * 2}))
        net.set_node_exec("Sink", collect(results))
        net.inject_source_epoch("Source")
        net.start()
        consumed = [r["id"] for r in net.query("SELECT id FROM packets WHERE state = 'consumed'")]
    assert len(consumed) == 4
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{pid}.pkl" for pid in consumed)
    values = [pickle.loads((folder / f"{pid}.pkl").read_bytes()) for pid in consumed]
    assert sorted(values, key=repr) == sorted([1, 2, {"doubled": 2}, {"doubled": 4}], key=repr)
    # the path is an extra copy: by default the database keeps no consumed value
    assert scalar(db, "SELECT count(*) FROM packet_values") == 0


# -- print capture ----------------------------------------------------------------------------

def shout_a(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    print("A says", value, "in", ctx.epoch_id)
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def shout_b(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    print(f"B got {value}")
    print("B done")


def test_each_node_logs_only_its_own_prints(db):
    with netrun.Net(chain("Source", "A", "B"), db=db) as net:
        net.set_node_exec("Source", emit(1, 2))
        net.set_node_exec("A", shout_a)
        net.set_node_exec("B", shout_b)
        net.inject_source_epoch("Source")
        net.start()
        a_epochs = {r["id"] for r in net.query("SELECT id FROM epochs WHERE node_name = 'A'")}
        a_log = net.get_node_log("A")
        b_log = net.get_node_log("B")
        assert net.get_node_log("Source") == []
        for epoch_id in a_epochs:
            [line] = net.get_epoch_log(epoch_id)
            assert line.startswith("A says ") and line.endswith(f" in {epoch_id}")
        b_epoch = net.query("SELECT id FROM epochs WHERE node_name = 'B' LIMIT 1")[0]["id"]
        assert net.get_epoch_log(b_epoch) in (["B got 1", "B done"], ["B got 2", "B done"])
    assert len(a_log) == 2
    parsed = [line.split() for line in a_log]  # ["A", "says", value, "in", epoch]
    assert sorted(p[2] for p in parsed) == ["1", "2"]
    assert {p[4] for p in parsed} == a_epochs
    assert sorted(b_log) == sorted(["B got 1", "B done", "B got 2", "B done"])


def test_capture_off_prints_to_stdout_and_logs_nothing(db, capsys):
    with netrun.Net(chain("Source", "A", "B"), db=db) as net:
        net.set_node_exec("Source", emit(7))
        net.set_node_exec("A", shout_a)
        net.set_node_exec("B", shout_b)
        net.set_node_config("B", capture_stdout=False)
        net.inject_source_epoch("Source")
        net.start()
        out = capsys.readouterr().out
        assert out.splitlines() == ["B got 7", "B done"]  # A's line is captured, not printed
        assert net.get_node_log("B") == []
        assert len(net.get_node_log("A")) == 1


def test_echo_stdout_logs_and_prints(db, capsys):
    with netrun.Net(chain("Source", "A", "B"), db=db) as net:
        net.set_node_exec("Source", emit(7))
        net.set_node_exec("A", shout_a)
        net.set_node_exec("B", shout_b)
        net.set_node_config("B", echo_stdout=True)
        net.inject_source_epoch("Source")
        net.start()
        assert capsys.readouterr().out.splitlines() == ["B got 7", "B done"]
        assert net.get_node_log("B") == ["B got 7", "B done"]


def test_print_outside_any_epoch_goes_to_stdout(db, capsys):
    with netrun.Net(chain("Source", "A", "B"), db=db) as net:
        net.set_node_exec("Source", emit(7))
        net.set_node_exec("A", shout_a)  # installs netrun's print into this module
        net.set_node_exec("B", shout_b)
        print("before the run")
        net.inject_source_epoch("Source")
        net.start()
        print("after the run", 1, sep="|")
        assert capsys.readouterr().out == "before the run\nafter the run|1\n"
        assert net.query("SELECT count(*) AS n FROM node_logs WHERE text LIKE '%the run%'") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM node_logs") == [{"n": 3}]


# -- history: table, memory, JSONL ----------------------------------------------------------------

def run_chain(net: netrun.Net, values=(1, 2, 3)) -> None:
    net.set_node_exec("Source", emit(*values))
    net.set_node_exec("A", forward())
    net.set_node_exec("Sink", collect([]))
    net.inject_source_epoch("Source")
    net.start()


def jsonl(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_history_file_lines_have_the_spec_keys(tmp_path, db):
    path = tmp_path / "history.jsonl"
    with netrun.Net(chain("Source", "A", "Sink"), db=db, history_file=str(path)) as net:
        run_chain(net)
    records = jsonl(path)
    actions = [r for r in records if r["type"] == "action"]
    events = [r for r in records if r["type"] == "event"]
    assert actions and events and len(actions) + len(events) == len(records)
    for r in actions:
        assert {"type", "action", "id", "timestamp"} <= set(r) and "event" not in r
    for r in events:
        assert {"type", "event", "action_id", "timestamp"} <= set(r) and "action" not in r
    action_ids = [r["id"] for r in actions]
    assert len(set(action_ids)) == len(action_ids)
    assert {r["action_id"] for r in events} <= set(action_ids)
    assert {"StartEpoch", "FinishEpoch", "SendOutputSalvo"} <= {r["action"] for r in actions}
    assert {"EpochStarted", "PacketMoved", "PacketConsumed"} <= {r["event"] for r in events}
    # the file is the history table, in the same order
    table = rows(db, "SELECT type, name, action_id FROM history ORDER BY seq")
    assert [(r["type"], r.get("action") or r.get("event"), r.get("id") or r.get("action_id")) for r in records] == [
        (t["type"], t["name"], t["action_id"]) for t in table]


def test_history_file_is_written_in_whole_chunks_until_close(tmp_path, db):
    path = tmp_path / "history.jsonl"
    net = netrun.Net(chain("Source", "A", "Sink"), db=db, history_file=str(path),
                     history_chunk_size=7, history_flush_on_pause=False)
    net.set_node_exec("Source", emit(1, 2, 3))
    net.set_node_exec("A", forward())
    net.set_node_exec("Sink", collect([]))
    counts = []
    for _ in range(3):
        net.inject_source_epoch("Source")
        net.start()
        counts.append(len(jsonl(path)))
        assert counts[-1] % 7 == 0
    in_table = net.query("SELECT count(*) AS n FROM history")[0]["n"]
    assert counts[-1] > 0 and in_table - counts[-1] < 7
    assert counts == sorted(counts)
    net.close()
    assert len(jsonl(path)) == scalar(db, "SELECT count(*) FROM history") == in_table


@pytest.mark.parametrize("flush_on_pause", [True, False])
def test_history_flush_on_pause_flushes_at_the_end_of_start(tmp_path, db, flush_on_pause):
    path = tmp_path / "history.jsonl"
    with netrun.Net(chain("Source", "A", "Sink"), db=db, history_file=str(path),
                    history_chunk_size=100_000, history_flush_on_pause=flush_on_pause) as net:
        run_chain(net)
        in_table = net.query("SELECT count(*) AS n FROM history")[0]["n"]
        written = len(jsonl(path))
        assert written == (in_table if flush_on_pause else 0)
        net.flush_history()
        assert len(jsonl(path)) == in_table


def test_history_max_size_bounds_memory_not_the_table(db):
    with netrun.Net(chain("Source", "A", "Sink"), db=db, history_max_size=5) as net:
        run_chain(net)
        recent = net.history
        table = net.query("SELECT type, name, action_id FROM history ORDER BY seq")
    assert len(recent) == 5
    assert len(table) > 5
    assert [(r["type"], r.get("action") or r.get("event"), r.get("id") or r.get("action_id")) for r in recent] == [
        (t["type"], t["name"], t["action_id"]) for t in table[-5:]]


# -- timestamps and clocks --------------------------------------------------------------------

TIMESTAMP_COLUMNS = [("history", "timestamp"), ("epochs", "created_at"), ("epochs", "started_at"),
                     ("epochs", "finished_at"), ("packets", "created_at"), ("packets", "finished_at"),
                     ("epoch_attempts", "started_at"), ("epoch_attempts", "finished_at"), ("node_logs", "timestamp")]


def test_timestamps_are_iso_text_that_the_database_understands(db, backend):
    with netrun.Net(chain("Source", "A", "B"), db=db) as net:
        net.set_node_exec("Source", emit(1, 2))
        net.set_node_exec("A", shout_a)
        net.set_node_exec("B", shout_b)
        net.inject_source_epoch("Source")
        net.start()
    # the database's own reading of the text: SQLite's date functions; PostgreSQL's cast (which raises on
    # text it cannot read)
    moment, kind = ("julianday({})", "typeof({}) != 'text'") if backend == "sqlite" else \
        ("extract(epoch FROM CAST({} AS timestamptz))", "pg_typeof({}) != 'text'::regtype")
    for table, column in TIMESTAMP_COLUMNS:
        total = scalar(db, f"SELECT count(*) FROM {table}")
        assert total > 0, table
        assert scalar(db, f"SELECT count(*) FROM {table} WHERE {column} IS NULL") == 0, (table, column)
        assert scalar(db, f"SELECT count(*) FROM {table} WHERE {moment.format(column)} IS NULL "
                          f"OR {kind.format(column)}") == 0, (table, column)
    # started before finished, for every epoch
    assert scalar(db, f"SELECT count(*) FROM epochs WHERE {moment.format('finished_at')} < {moment.format('started_at')} "
                      f"OR {moment.format('started_at')} < {moment.format('created_at')}") == 0


def parse_utc(text: str) -> datetime:
    """A stored timestamp as an aware datetime; it must say it is UTC (`Z` or `+00:00`)."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), text
    return moment


def test_injected_clock_is_what_the_timestamps_show(db):
    # two hours east of UTC: stored as UTC
    moment = datetime(2031, 5, 6, 9, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2)))
    with netrun.Net(chain("Source", "A", "B"), db=db, clock=FrozenClock(moment)) as net:
        net.set_node_exec("Source", emit(1, 2))
        net.set_node_exec("A", shout_a)
        net.set_node_exec("B", shout_b)
        net.inject_source_epoch("Source")
        net.start()
    for table, column in TIMESTAMP_COLUMNS:
        values = [r["v"] for r in rows(db, f"SELECT DISTINCT {column} AS v FROM {table}")]
        assert len(values) == 1, (table, column, values)
        assert parse_utc(values[0]) == moment, (table, column)
        # the database reads the same instant, in UTC
        if str(db).startswith("postgresql"):
            assert str(scalar(db, f"SELECT DISTINCT CAST({column} AS timestamptz) AT TIME ZONE 'UTC' FROM {table}")) \
                == "2031-05-06 07:08:09.123456", (table, column)
        else:
            assert scalar(db, f"SELECT DISTINCT strftime('%Y-%m-%d %H:%M:%f', {column}) FROM {table}") == \
                "2031-05-06 07:08:09.123", (table, column)
    assert parse_utc(scalar(db, "SELECT value FROM net_meta WHERE key = 'created_at'")) == moment


def limited_net(db, clock: FakeClock, **node_options) -> netrun.Net:
    net = netrun.Net(chain("Source", "A", "Sink"), db=db, clock=clock)
    net.set_node_exec("A", forward())
    net.set_node_exec("Sink", collect([]))
    if node_options:
        net.set_node_config("A", **node_options)
    for v in range(5):
        net.inject_packet("A", "in", v)
    return net


def test_rate_limit_spaces_epoch_starts_on_the_injected_clock(db):
    clock = FakeClock()
    with limited_net(db, clock, rate_limit_per_second=2) as net:
        net.start()
        starts = [r["started_at"] for r in net.query(
            "SELECT started_at FROM epochs WHERE node_name = 'A' AND state = 'finished' ORDER BY started_at")]
    assert len(starts) == 5
    assert sum(clock.sleeps) >= 2.0 - 1e-9
    assert clock.elapsed >= 2.0 - 1e-9
    moments = [parse_utc(s) for s in starts]
    gaps = [(b - a).total_seconds() for a, b in zip(moments, moments[1:])]
    assert min(gaps) >= 0.5 - 1e-6
    assert moments[0] == clock.start.astimezone(UTC)


def test_without_rate_limit_nothing_sleeps(db):
    clock = FakeClock()
    with limited_net(db, clock) as net:
        net.start()
        assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [{"n": 10}]
    assert sum(clock.sleeps) == 0


@pytest.fixture
def journal_on(db):
    """A Journal on a netrun connection to an empty net of each store (the `db` fixture)."""
    from netrun.clock import SystemClock
    from netrun.db import open_connection
    from netrun.journal import Journal

    netrun.Net(chain("A", "B"), db=db).close()  # the schema (a PostgreSQL net's is made by its first Net)
    conn = open_connection(db)
    yield Journal(conn, SystemClock())
    conn.close()


@pytest.mark.parametrize("failure", ["oserror", "statement"])
def test_a_failed_commit_rolls_back_and_the_retry_writes_exactly_the_rows_it_had(journal_on, db, failure):
    """`then` moves a packet created in the buffer, then the transaction fails (an OSError, or a statement
    the database refuses: on PostgreSQL that aborts the transaction): the restored buffer must still
    insert the packet (with its newer location), and the connection must be usable."""
    from netrun.sim import Event, Location

    journal, conn = journal_on, journal_on.conn
    history = conn.execute("SELECT count(*) FROM history").fetchone()[0]  # the first Net's
    journal.record("CreatePacket", [Event("PacketCreated", None, "p1", None)], packet_id="p1",
                   created_at=Location("input_port", "A", "in"))
    journal.record("RunNetUntilBlocked", [Event("EpochCreated", "e1", None, "A")])

    def then(c):
        journal.record("Move", [Event("PacketMoved", "e1", "p1", "A", None, Location("node", "A", None, "e1"))])
        journal.record("StartEpoch", [Event("EpochStarted", "e1", None, "A")])
        if failure == "oserror":
            raise OSError("disk full (simulated)")
        c.execute("INSERT INTO net_meta (key, value) VALUES ('config', 'a second row for a primary key')")

    if failure == "oserror":
        with pytest.raises(netrun.StorageError, match="cannot write .*simulated") as info:
            journal.commit(then=then)
        assert db.split("?")[0].split("/")[-1] in str(info.value)  # names the file or the database
    else:
        import apsw

        with pytest.raises(apsw.ConstraintError):
            journal.commit(then=then)
    assert conn.getautocommit()  # rolled back: no transaction left open
    assert conn.execute("SELECT count(*) FROM packets").fetchone()[0] == 0
    journal.commit()
    assert conn.execute("SELECT state, location, node_name, epoch_id FROM packets WHERE id = 'p1'").fetchall() == [
        ("live", "node", "A", "e1")]
    assert conn.execute("SELECT state, attempt FROM epochs WHERE id = 'e1'").fetchall() == [("running", 1)]
    assert conn.execute("SELECT count(*) FROM history").fetchone()[0] - history == 8  # 4 actions + 4 events, once
