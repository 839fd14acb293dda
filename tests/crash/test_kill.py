"""A net killed with SIGKILL in the middle of a run leaves a consistent database.

The child process runs a long chain; the parent kills it once epochs are finishing, then
checks with the stdlib `sqlite3` module (another SQLite build, another process) that every
commit was atomic: no half-written epoch, no event without its state row, or the reverse.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing

import pytest

CHILD = textwrap.dedent("""
    import sys
    import netrun
    from netrun.graphs import chain

    def forward(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(value + 1))
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])

    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=sys.argv[1])
    net.set_node_exec("A", forward)
    net.set_node_exec("B", forward)
    net.set_node_exec("Sink", sink)
    for i in range({values}):
        net.inject_packet("A", "in", i)
    print("injected", flush=True)
    net.start()
    print("finished the whole run", flush=True)
    net.close()
""")

# 5,000 values make 15,000 epochs (~7 s of work). 20,000 would keep netrun-sim busy for ~5 s
# before the first epoch: its run_until_blocked grows quadratically with an input port's backlog.
VALUES = 5_000


def scalar(conn: sqlite3.Connection, sql: str) -> int:
    return conn.execute(sql).fetchone()[0]


def finished_epochs(db: str) -> int:
    if not os.path.exists(db):
        return 0
    try:
        with closing(sqlite3.connect(db, timeout=5)) as conn:
            return scalar(conn, "SELECT count(*) FROM epochs WHERE state = 'finished'")
    except sqlite3.OperationalError:  # schema not created yet
        return 0


@pytest.fixture
def killed_run(tmp_path):
    """Run the child, SIGKILL it while epochs are finishing; return the database path."""
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(values=VALUES))
    db = str(tmp_path / "net.db")
    child = subprocess.Popen([sys.executable, str(script), db], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while finished_epochs(db) < 50:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never finished an epoch"
            time.sleep(0.05)
        time.sleep(0.5)  # let it run on: the kill lands mid-epoch, mid-commit or between commits
        assert child.poll() is None, "the child finished before it could be killed; give it more work"
        os.kill(child.pid, signal.SIGKILL)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert b"finished the whole run" not in out
    assert err == b""
    return db


def test_killed_run_leaves_a_consistent_database(killed_run):
    with closing(sqlite3.connect(killed_run)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finished = scalar(conn, "SELECT count(*) FROM epochs WHERE state = 'finished'")
        assert finished >= 50
        # the run was really cut short
        assert scalar(conn, "SELECT count(*) FROM epochs WHERE node_name = 'Sink' AND state = 'finished'") < VALUES
        assert scalar(conn, "SELECT count(*) FROM packets WHERE state = 'live'") > 0
        # every injected packet was committed before the run started
        assert scalar(conn, "SELECT count(DISTINCT packet_id) FROM history "
                            "WHERE type = 'action' AND name = 'TransportPacketToLocation'") == VALUES
        assert scalar(conn, "SELECT count(*) FROM packets WHERE id IN (SELECT packet_id FROM history "
                            "WHERE type = 'action' AND name = 'TransportPacketToLocation')") == VALUES

        # state rows and history were committed together
        assert scalar(conn, "SELECT count(*) FROM history WHERE type = 'action' AND name = 'FinishEpoch'") == finished
        assert scalar(conn, "SELECT count(*) FROM history WHERE type = 'event' AND name = 'EpochFinished'") == finished
        # (IN subqueries: SQLite indexes them on the fly; history has no index on epoch_id)
        assert scalar(conn, "SELECT count(*) FROM epochs WHERE state = 'finished' AND id NOT IN ("
                            "SELECT epoch_id FROM history WHERE type = 'event' AND name = 'EpochFinished' "
                            "AND epoch_id IS NOT NULL)") == 0
        assert scalar(conn, "SELECT count(*) FROM epochs WHERE state IN ('running', 'finished') AND id NOT IN ("
                            "SELECT epoch_id FROM history WHERE type = 'action' AND name = 'StartEpoch' "
                            "AND epoch_id IS NOT NULL)") == 0
        assert scalar(conn, "SELECT count(*) FROM history WHERE type = 'event' AND action_id NOT IN ("
                            "SELECT action_id FROM history WHERE type = 'action')") == 0

        # no packet is left inside an epoch that finished
        assert scalar(conn, "SELECT count(*) FROM packets p JOIN epochs e ON e.id = p.epoch_id "
                            "WHERE p.state = 'live' AND p.location IN ('node', 'output_port') "
                            "AND e.state = 'finished'") == 0
        # the main thread runs one epoch at a time
        assert scalar(conn, "SELECT count(*) FROM epochs WHERE state = 'running'") <= 1
        # every finished epoch has its finished attempt (main-thread epochs have no job row)
        assert scalar(conn, "SELECT count(*) FROM epochs WHERE state = 'finished' AND id NOT IN ("
                            "SELECT epoch_id FROM epoch_attempts WHERE outcome = 'finished')") == 0
        # values: every live packet still has its value, no consumed one kept (storage is off)
        assert scalar(conn, "SELECT count(*) FROM packets WHERE state = 'live' AND id NOT IN ("
                            "SELECT packet_id FROM packet_values)") == 0
        assert scalar(conn, "SELECT count(*) FROM packet_values v JOIN packets p ON p.id = v.packet_id "
                            "WHERE p.state != 'live'") == 0
