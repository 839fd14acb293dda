"""Retention: `netrun prune` and `Net(retention=...)` remove what ended epochs left behind, and
never what a run still needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import netrun
import netrun.retention_policy
from netrun.graphs import chain
from netrun.retention import gaps, prune_file

from .helpers import rows, scalar

NODES = os.path.join(os.path.dirname(__file__), "retention_nodes.py")


def _forward(ctx, packets):
    value = ctx.consume_packet(packets["in"][0])
    ctx.load_output_port("out", ctx.create_packet(value))
    ctx.send_output_salvo("send_out")


def _sink(ctx, packets):
    ctx.consume_packet(packets["in"][0])


def _failing(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    raise ValueError("refused")


def _counts(db: str) -> dict[str, int]:
    return {table: scalar(db, f"SELECT count(*) FROM {table}")
            for table in ("epochs", "packets", "history_actions", "epoch_attempts", "dead_letters")}


def _chain(db: str, values, sink=_sink, **options) -> netrun.Net:
    """A chain A -> B -> Sink with `values` injected at B, not started."""
    net = netrun.Net(chain("A", "B", "Sink"), db=str(db), **options)
    net.set_node_exec("B", _forward)
    net.set_node_exec("Sink", sink)
    for value in values:
        net.inject_packet("B", "in", value)
    return net


def _run_chain(db: str, values, **options) -> None:
    """A chain A -> B -> Sink run to the end with `values` injected at B."""
    with _chain(db, values, **options) as net:
        net.start()


def _net_with_leftovers(db: str) -> dict[str, str]:
    """A finished chain, a packet left live at a node without exec, and a pending dead letter."""
    with netrun.Net(chain("A", "B", "C", "Sink"), db=str(db)) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("C", _failing)
        net.set_node_exec("Sink", _sink)
        for value in range(20):
            net.inject_packet("B", "in", value)
        net.start()
        failed = net.query("SELECT packet_id FROM dead_letters WHERE status = 'pending' LIMIT 1")[0]["packet_id"]
    # a live packet: made by B, waiting at C whose exec is gone (a fresh resume without C)
    with netrun.Net.resume(str(db)) as net:
        net.set_node_exec("B", _forward)
        net.inject_packet("B", "in", 99)
        net.run_step()  # B runs once: its output waits on the edge to C, which does not start here
        live = net.query("SELECT id FROM packets WHERE state = 'live'")
    return {"dead_letter": failed, "live": [r["id"] for r in live]}


def test_prune_removes_what_ended_and_keeps_what_a_run_needs(db):
    kept = _net_with_leftovers(db)
    assert kept["live"], "the setup leaves a live packet"
    before = _counts(db)
    open_epochs = "SELECT id FROM epochs WHERE state IN ('startable', 'running') ORDER BY id"
    open_before = rows(db, open_epochs)
    pending = "SELECT seq FROM dead_letters WHERE status = 'pending' ORDER BY seq"
    pending_before = rows(db, pending)
    with netrun.NetInspector(str(db)) as net:
        origins = {packet: net.trace(packet)["origin"] for packet in kept["live"]}
    assert any(origin["how"] == "created" for origin in origins.values())
    report = prune_file(str(db), "0s", now=datetime.now(UTC) + timedelta(seconds=1))
    after = _counts(db)
    assert report.removed["epochs"] > 0 and report.removed["history_actions"] > 0
    assert after["epochs"] < before["epochs"] and after["history_actions"] < before["history_actions"]
    # never touched: live packets, open epochs, pending dead letters (and their packets)
    assert {r["id"] for r in rows(db, "SELECT id FROM packets WHERE state = 'live'")} == set(kept["live"])
    assert rows(db, open_epochs) == open_before != []
    assert rows(db, pending) == pending_before != []
    assert scalar(db, "SELECT count(*) FROM packets WHERE id = ?", (kept["dead_letter"],)) == 1
    # a live packet's lineage still starts at the epoch that made it
    with netrun.NetInspector(str(db)) as net:
        for packet, origin in origins.items():
            assert net.trace(packet)["origin"] == origin
            if origin["how"] == "created":
                assert scalar(db, "SELECT count(*) FROM epochs WHERE id = ?", (origin["epoch"],)) == 1
    # every number the remaining history uses still resolves
    assert scalar(db, "SELECT count(*) FROM history_refs WHERE ref NOT IN (SELECT n FROM history_ids)") == 0
    assert scalar(db, "SELECT count(*) FROM history WHERE type = 'event' AND name = 'PacketCreated' "
                      "AND packet_id IS NULL") == 0


def test_a_dry_run_counts_and_changes_nothing(db):
    _net_with_leftovers(db)
    before = _counts(db)
    dry = prune_file(str(db), "0s", dry_run=True, now=datetime.now(UTC) + timedelta(seconds=1))
    assert _counts(db) == before
    real = prune_file(str(db), "0s", now=datetime.now(UTC) + timedelta(seconds=1))
    assert dry.removed == real.removed and dry.dry_run and not real.dry_run


def test_nothing_newer_than_the_limit_is_removed(db):
    _net_with_leftovers(db)
    before = _counts(db)
    report = prune_file(str(db), "1h")
    assert report.removed == {} and _counts(db) == before


def test_numbering_goes_on_after_everything_was_pruned(db):
    with netrun.Net(chain("A", "B", "Sink"), db=str(db)) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        net.inject_packet("B", "in", 1)
        net.start()
    last = scalar(db, "SELECT max(seq) FROM history")
    prune_file(str(db), "0s", now=datetime.now(UTC) + timedelta(seconds=1))
    with netrun.Net.resume(str(db)) as net:
        net.set_node_exec("B", _forward)
        net.set_node_exec("Sink", _sink)
        net.inject_packet("B", "in", 2)
        net.start()
    seqs = [r["seq"] for r in rows(db, "SELECT seq FROM history ORDER BY seq")]
    assert seqs[0] <= last < seqs[-1] and len(seqs) == len(set(seqs))
    assert min(s for s in seqs if s > last) == last + 1


def test_the_retention_option_keeps_a_running_net_small(db):
    delivered = []

    def sink(ctx, packets):
        delivered.append(ctx.consume_packet(packets["in"][0]))
        time.sleep(0.002)

    with _chain(db, range(600), sink, retention="0s") as net:
        net.start()
        left = net.query("SELECT count(*) AS n FROM epochs")[0]["n"]
    assert sorted(delivered) == list(range(600))
    assert left < 1200  # pruned while running (1,200 epochs ran)


def test_pruned_pages_go_back_to_the_file_system(tmp_path):
    db = tmp_path / "net.db"
    _run_chain(db, range(2000))
    before = db.stat().st_size
    prune_file(str(db), "0s", now=datetime.now(UTC) + timedelta(seconds=1))
    assert scalar(db, "PRAGMA auto_vacuum") == 2  # incremental: a new file's
    assert scalar(db, "PRAGMA freelist_count") == 0
    assert db.stat().st_size < before / 4


def test_a_limit_further_back_than_the_calendar_removes_nothing(tmp_path, monkeypatch):
    """1000000d reaches back before year 1: nothing is that old, and neither prune nor a run fails."""
    db = tmp_path / "net.db"
    _net_with_leftovers(db)
    before = _counts(db)
    assert prune_file(str(db), "1000000d").removed == {} and _counts(db) == before
    monkeypatch.setattr(netrun.retention_policy.RetentionPolicy, "EVERY", 0.0)  # prune without a pause
    run = tmp_path / "run.db"
    _run_chain(run, range(5), retention="1000000d")
    assert scalar(run, "SELECT count(*) FROM epochs WHERE state = 'finished'") == 10


@pytest.mark.parametrize("retention", ["a week", "\u0663d", "3 days", "-1d"])
def test_a_bad_retention_is_refused(retention):
    """Anything but ASCII digits and one unit letter: "\u0663" is an Arabic-Indic 3, which `\\d` took."""
    with pytest.raises(netrun.ConfigError, match="retention"):
        netrun.Net(chain("A", "B"), retention=retention)


def test_prune_while_another_process_runs_the_net(tmp_path):
    db = tmp_path / "net.db"
    with subprocess.Popen([sys.executable, NODES, str(db), "400"], stdout=subprocess.PIPE, text=True) as runner:
        _prune_meanwhile(db, runner)
        delivered = json.loads(runner.stdout.read())
    assert sorted(delivered) == list(range(400))  # each value once, none lost


def _prune_meanwhile(db: Path, runner: subprocess.Popen) -> None:
    try:
        assert runner.stdout.readline().strip() == "started"
        pruned = 0
        deadline = time.monotonic() + 60
        while runner.poll() is None and time.monotonic() < deadline:
            done = subprocess.run([sys.executable, "-m", "netrun", "prune", str(db), "--older-than", "0s", "--json"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            pruned += json.loads(done.stdout)["removed"].get("epochs", 0)
        assert runner.wait(timeout=60) == 0
    except BaseException:
        runner.kill()
        raise
    assert pruned > 0


def test_retention_from_a_definition(tmp_path):
    toml = tmp_path / "net.toml"
    toml.write_text('[net]\nretention = "12h"\n\n[nodes.A]\nout_ports = ["out"]\n\n[nodes.B]\nin_ports = ["in"]\n\n'
                    '[[edges]]\nfrom = "A.out"\nto = "B.in"\n')
    net = netrun.Net.load_definition(str(toml), db=str(tmp_path / "net.db"))
    try:
        assert net._config.retention == "12h"
        assert net._rt.retention is not None and net._rt.retention.age == timedelta(hours=12)
    finally:
        net.close()


def _origins(db) -> dict[str, dict]:
    """Where each live packet came from (`trace`), after _net_with_leftovers."""
    kept = _net_with_leftovers(db)
    with netrun.NetInspector(str(db)) as net:
        return {packet: net.trace(packet)["origin"] for packet in kept["live"]}


def _same_origins(db, origins: dict[str, dict]) -> None:
    with netrun.NetInspector(str(db)) as net:
        for packet, origin in origins.items():
            assert net.trace(packet)["origin"] == origin


def test_a_pruner_that_runs_again_keeps_what_became_old_since(tmp_path):
    """The owner's pruner reuses what it found to keep across calls: a live packet that was new at
    one call and is old at the next still keeps its history."""
    from netrun.db import open_connection
    from netrun.retention import Pruner

    db = tmp_path / "net.db"
    origins = _origins(db)
    conn = open_connection(str(db))
    try:
        pruner = Pruner(conn)
        now = datetime.now(UTC)
        first = pruner.prune(timedelta(hours=1), now)  # nothing is that old yet
        assert first.removed == {}
        second = pruner.prune(timedelta(0), now + timedelta(seconds=1))
        assert second.removed["history_actions"] > 0
    finally:
        conn.close()
    _same_origins(db, origins)


def test_the_write_ahead_log_stays_bounded(tmp_path):
    """~40 MB of values committed one by one: the WAL is checkpointed and cut back, never growing with
    the data (netrun.db: WAL_PAGES, WAL_LIMIT)."""
    from netrun.db import WAL_LIMIT

    db = tmp_path / "net.db"
    largest = 0
    with netrun.Net(chain("A", "B"), db=str(db)) as net:
        for i in range(400):
            net.inject_packet("B", "in", "x" * 100_000 + str(i))
            if os.path.exists(f"{db}-wal"):
                largest = max(largest, os.path.getsize(f"{db}-wal"))
    assert os.path.getsize(db) > 35_000_000  # the data went into the file
    assert 0 < largest <= WAL_LIMIT + 2_000_000


def test_the_numbers_of_what_went_go_and_those_of_what_stays_stay(db):
    """ID numbers go by ranges around the objects still stored: what remains numbered is stored."""
    kept = _net_with_leftovers(db)
    prune_file(str(db), "0s", now=datetime.now(UTC) + timedelta(seconds=1))
    assert scalar(db, "SELECT count(*) FROM history_ids WHERE id NOT IN (SELECT id FROM epochs) "
                      "AND id NOT IN (SELECT id FROM packets)") == 0
    assert scalar(db, "SELECT count(*) FROM history_refs WHERE ref NOT IN (SELECT n FROM history_ids)") == 0
    for packet in kept["live"]:
        assert scalar(db, "SELECT count(*) FROM history_ids WHERE id = ?", (packet,)) == 1


def test_a_pruner_with_a_lag_keeps_the_history_of_that_last_stretch(tmp_path):
    """The owner's pruner sweeps ID numbers and history `lag` behind the limit: epochs and packets go at
    the limit, their numbers and history only once the lag passed, and a live packet's lineage holds.
    (Counted on the pruner's own connection: a second SQLite library in this process, closing its
    connection to the file, would drop the process's locks under apsw's.)"""
    from netrun.db import open_connection
    from netrun.retention import Pruner

    db = tmp_path / "net.db"
    origins = _origins(db)
    conn = open_connection(str(db))
    try:
        def numbers() -> int:
            return conn.execute("SELECT count(*) FROM history_ids").fetchone()[0]

        before = numbers()
        now = datetime.now(UTC) + timedelta(seconds=1)
        lagging = Pruner(conn, lag=timedelta(hours=1)).prune(timedelta(0), now)
        assert lagging.removed["epochs"] > 0 and "history_actions" not in lagging.removed
        assert numbers() == before
        caught_up = Pruner(conn, lag=timedelta(hours=1)).prune(timedelta(0), now + timedelta(hours=2))
        assert caught_up.removed["history_actions"] > 0 and numbers() < before
    finally:
        conn.close()
    _same_origins(db, origins)


@pytest.mark.parametrize(("lo", "hi", "holes", "expected"), [
    (1, 10, [3, 4, 8], [(1, 2), (5, 7), (9, 10)]),
    (1, 3, [1, 2, 3], []),
    (5, 5, [], [(5, 5)]),
    (1, 4, [1, 4], [(2, 3)]),
    (5, 9, [2, 7, 12], [(5, 6), (8, 9)]),
])
def test_gaps_cover_a_range_but_its_holes(lo, hi, holes, expected):
    assert gaps(lo, hi, holes) == expected


def _mention(conn, packet: str, moment: datetime) -> int:
    """Commit an action at `moment` that mentions `packet` (as a running net does when an old live packet
    moves), on `conn`, the "owner's" connection; returns its seq."""
    from netrun.db import transaction
    from netrun.historyrows import micros, next_seq

    with transaction(conn):
        seq = next_seq(conn)
        n = conn.execute("SELECT n FROM history_ids WHERE id = ?", (packet,)).fetchone()[0]
        name = conn.execute("SELECT name FROM history_actions LIMIT 1").fetchone()[0]
        conn.execute("INSERT INTO history_actions (seq, name, packet, ts) VALUES (?, ?, ?, ?)",
                     (seq, name, n, micros(moment)))
        conn.execute("INSERT INTO history_refs (ref, seq) VALUES (?, ?)", (n, seq))
    return seq


@pytest.mark.parametrize(("when", "hook"), [("between two calls", None), ("between a call's sweep and its delete",
                                                                          "_history"),
                                            ("as a call reads what mentions what stays", "_mentioning")])
def test_an_old_stored_packet_mentioned_again_keeps_that_history(tmp_path, monkeypatch, when, hook):
    """A live packet made before the limit is swept once (its number stays, its history too). An action
    that mentions it afterwards, committed by the owner while the pruner works, stays while the packet
    is stored: the pruner reads what mentions the packets it keeps at each call, after it read the last
    action it may delete (a pruner that only remembered what it read at the sweep deleted it once old,
    until its 30 s recount)."""
    from netrun.db import open_connection
    from netrun.retention import Pruner

    db = tmp_path / "net.db"
    origins = _origins(db)
    live = next(iter(origins))
    pruner_conn, owner_conn = open_connection(str(db)), open_connection(str(db))
    try:
        pruner = Pruner(pruner_conn)
        start = datetime.now(UTC) + timedelta(seconds=1)
        mentioned: list[int] = []
        if when == "between two calls":
            assert pruner.prune(timedelta(0), start).removed["history_actions"] > 0  # `live` swept: kept
            mentioned.append(_mention(owner_conn, live, start + timedelta(seconds=1)))
            _mention(owner_conn, live, start + timedelta(hours=1))  # newer than the limit: the last action stays
        else:
            original = getattr(Pruner, hook)

            def mention_first(self, *args):
                if not mentioned:
                    mentioned.append(_mention(owner_conn, live, start + timedelta(seconds=1)))
                    _mention(owner_conn, live, start + timedelta(hours=1))
                return original(self, *args)

            monkeypatch.setattr(Pruner, hook, mention_first)
        report = pruner.prune(timedelta(0), start + timedelta(seconds=2))  # the first mention is old by now
        assert mentioned and (when == "between two calls" or report.removed["history_actions"] > 0)
        assert owner_conn.execute("SELECT count(*) FROM history_actions WHERE seq = ?", mentioned).fetchone()[0] == 1
    finally:
        pruner_conn.close()
        owner_conn.close()
    assert mentioned[0] in {r["seq"] for r in rows(db, "SELECT seq FROM history WHERE packet_id = ?", (live,))}
    _same_origins(db, origins)


def _retention_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "netrun-retention"]


def test_the_pruning_thread_runs_beside_the_owner_and_ends_with_each_run(tmp_path, monkeypatch):
    """The owner starts the pruning thread once a prune is due and joins it when its loop ends: a
    finished run, a paused background run, close(). It prunes what the run ended meanwhile."""
    monkeypatch.setattr(netrun.retention_policy.RetentionPolicy, "EVERY", 0.0)
    seen_running = threading.Event()
    pruned = threading.Event()
    prune = netrun.retention.Pruner.prune

    def counting_prune(self, *args, **kwargs):
        report = prune(self, *args, **kwargs)
        if report.removed.get("epochs"):
            pruned.set()
        return report

    monkeypatch.setattr(netrun.retention.Pruner, "prune", counting_prune)

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        if _retention_threads():
            seen_running.set()
        pruned.wait(0.01)  # the run goes on until the thread pruned at least once

    db = tmp_path / "net.db"
    with _chain(db, range(300), sink, retention="0s") as net:
        net.start()
        assert seen_running.is_set() and pruned.is_set()
        assert _retention_threads() == []  # joined once the run ended
        for value in range(300):
            net.inject_packet("B", "in", value)
        net.start(threaded=True)
        assert pruned.wait(10)
        net.pause()
        assert _retention_threads() == []  # joined at the pause
        net.start(threaded=True)
    assert _retention_threads() == []  # joined at close()


def test_an_error_of_the_pruning_thread_stops_the_run(tmp_path, monkeypatch):
    """A prune that fails in the thread (a full disk) is raised by the owner, as its own would be; the
    next run goes on."""
    import apsw

    monkeypatch.setattr(netrun.retention_policy.RetentionPolicy, "EVERY", 0.0)
    failed = threading.Event()

    def failing_prune(self, *args, **kwargs):
        failed.set()
        raise apsw.FullError("database or disk is full")

    monkeypatch.setattr(netrun.retention.Pruner, "prune", failing_prune)

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        failed.wait(10)

    with _chain(tmp_path / "net.db", range(50), sink, retention="1h") as net:
        with pytest.raises(apsw.FullError):
            net.start()
        assert _retention_threads() == []
        monkeypatch.undo()
        net.start()
        assert net.query("SELECT count(*) AS n FROM epochs WHERE node_name = 'Sink' AND state = 'finished'")[0]["n"] == 50


def test_the_pruning_thread_keeps_the_write_ahead_log_bounded(tmp_path, monkeypatch):
    """While the thread runs, the owner's commits leave checkpoints to it (netrun.retention_policy): the
    log is still checkpointed and cut back, ~60 MB of values going through the run."""
    from netrun.db import WAL_LIMIT

    monkeypatch.setattr(netrun.retention_policy.RetentionPolicy, "EVERY", 0.0)
    db = tmp_path / "net.db"
    largest = [0]

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        if os.path.exists(f"{db}-wal"):
            largest[0] = max(largest[0], os.path.getsize(f"{db}-wal"))

    with _chain(db, ("x" * 100_000 + str(i) for i in range(300)), sink, retention="1h") as net:
        net.start()
        assert net.query("SELECT count(*) AS n FROM epochs WHERE node_name = 'Sink'")[0]["n"] == 300
        for i in range(300):  # the run ended: the owner's commits checkpoint for themselves again
            net.inject_packet("B", "in", "y" * 100_000 + str(i))
            largest[0] = max(largest[0], os.path.getsize(f"{db}-wal"))
    assert 0 < largest[0] <= WAL_LIMIT + 2_000_000


def test_a_checkpoint_that_fails_after_a_commit_leaves_it_committed():
    """The owner's WAL hook runs inside its COMMIT: a checkpoint it cannot make (the thread's runs:
    busy) must not raise, or the owner would take its committed transaction for a failed one."""
    import apsw

    from netrun.clock import SystemClock
    from netrun.db import WAL_PAGES
    from netrun.retention_policy import RetentionPolicy

    class Busy:
        def wal_checkpoint(self, name):
            raise apsw.BusyError("database is locked")

    policy = RetentionPolicy(Busy(), "unused.db", "1h", SystemClock())
    assert policy._log_grew(Busy(), "main", WAL_PAGES) == apsw.SQLITE_OK



def test_a_value_an_open_epoch_consumed_is_kept_for_the_dead_letters(tmp_path):
    """An epoch that consumed a packet and still runs keeps its value from `prune`, however old: when
    the process then dies, the resume dead-letters that value ('interrupted'). The consume is in the
    file (an async Sink awaits after it, the owner commits meanwhile) and the packet is 'consumed'."""
    db = tmp_path / "net.db"
    holder = os.path.join(os.path.dirname(__file__), "holding_nodes.py")
    with subprocess.Popen([sys.executable, holder, str(db)], stdout=subprocess.PIPE, text=True) as runner:
        try:
            assert runner.stdout.readline().strip() == "holding"
            [held] = rows(str(db), "SELECT p.id, p.state FROM packets p JOIN epochs e ON e.id = p.epoch_id "
                                   "WHERE e.node_name = 'Sink' AND e.state = 'running'")
            assert held["state"] == "consumed"
            done = subprocess.run([sys.executable, "-m", "netrun", "prune", str(db), "--older-than", "0s", "--json"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            assert json.loads(done.stdout)["removed"].get("packets", 0) > 0  # the others' packets went
        finally:
            runner.kill()
    with netrun.Net.resume(str(db)) as net:
        letters = net.query("SELECT packet_id, reason, node_name, value FROM dead_letters")
    assert letters == [{"packet_id": held["id"], "reason": "interrupted", "node_name": "Sink", "value": "3"}]
