"""SIGINT during a foreground run (SPEC "SIGINT Handling").

A child process runs a chain in its main thread with `net.start()`; the parent sends it
SIGINT. The net pauses once the running epoch finished, then `start()` raises
KeyboardInterrupt; the child closes the net and exits 0. Nothing was cut mid-epoch, so the
parent resumes the database and finishes the run: every value reaches the sink exactly once
and nothing is dead-lettered.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import netrun

from tests.integration.helpers import collect, rows, stored_value

REPO = Path(__file__).resolve().parents[2]
VALUES = 300

CHILD = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    from tests.integration import pool_nodes

    net = netrun.Net(chain("Source", "A", "B", "Sink"), db={db!r}, consumed_packet_storage=True)
    net.set_node_exec("A", pool_nodes.sleepy_forward)
    net.set_node_exec("B", pool_nodes.sleepy_forward)
    net.set_node_exec("Sink", pool_nodes.sleepy_sink)
    for i in range({values}):
        net.inject_packet("A", "in", i)
    print("injected", flush=True)
    try:
        net.start()
        print("finished", len(pool_nodes.SINK), flush=True)
    except KeyboardInterrupt:
        print("interrupted", len(pool_nodes.SINK), flush=True)
    net.close()
""")


def test_sigint_pauses_then_resume_finishes_exactly_once(tmp_path):
    db = str(tmp_path / "net.db")
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(root=str(REPO), db=db, values=VALUES))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "injected", child.stderr.read()
        time.sleep(0.5)
        assert child.poll() is None, "the child finished before the SIGINT: give it more work"
        began = time.monotonic()
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
        stopped_after = time.monotonic() - began
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "Traceback" not in err, err
    words = out.split()
    assert words[0] == "interrupted", out
    delivered_by_child = int(words[1])
    assert 0 <= delivered_by_child < VALUES
    assert stopped_after < 1.5  # it paused after the running epoch, not after the ~4 s left of the run

    states = {r["state"]: r["n"] for r in rows(db, "SELECT state, count(*) AS n FROM epochs GROUP BY 1")}
    assert "running" not in states and "cancelled" not in states and "failed" not in states
    assert states.get("finished", 0) > 0  # the child did part of the work...
    assert states.get("startable", 0) > 0  # ...and paused with the rest left

    got: list = []
    net = netrun.Net.resume(db)
    assert net.unrestored_functions == {}
    net.set_node_exec("Sink", collect(got))
    net.start()
    net.close()

    assert delivered_by_child + len(got) == VALUES
    consumed = rows(db, "SELECT p.id, v.data FROM packets p JOIN packet_values v ON v.packet_id = p.id "
                        "WHERE p.node_name = 'Sink' AND p.state = 'consumed'")
    assert len(consumed) == VALUES
    assert sorted(stored_value(r["data"]) for r in consumed) == list(range(VALUES))
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM packets WHERE state != 'consumed'") == [{"n": 0}]
    assert rows(db, "SELECT state, count(*) AS n FROM epochs GROUP BY 1") == [{"state": "finished", "n": 3 * VALUES}]
    assert rows(db, "PRAGMA integrity_check") == [{"integrity_check": "ok"}]
