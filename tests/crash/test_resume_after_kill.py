"""A run killed with SIGKILL at a random instant, then resumed by another process, completes.

Like test_kill.py, a child runs a 4-node chain (Source -> A -> B -> Sink, values injected at A)
and the parent kills it once epochs are finishing, after a random extra delay. A second child
resumes the database (`Net.resume`, node functions re-imported from their module) and runs it
to the end. Then, with the stdlib `sqlite3` module on the closed file, DESIGN.md's promise:
- immediate nodes: every value reached Sink at most once, and each one that did not is
  dead-lettered with reason 'interrupted' (the epochs whose start was committed or logged as an
  intent, and whose end was not committed); no node's code ran twice for a value (a side
  effect each node writes to a file of its own is never repeated);
- deferred nodes: every value reached Sink exactly once, nothing dead-lettered;
- A deferred, B and Sink not: as immediate, and B's code never ran twice for a value although A
  may run again (a non-deferred start is committed while a deferred end waits in the buffer).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

from tests.integration.helpers import stored_value

REPO = Path(__file__).resolve().parents[2]
VALUES = 1_500

PRELUDE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn
    db, deferred = {db!r}, {deferred!r}
""")

RUN = PRELUDE + textwrap.dedent("""
    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=db, consumed_packet_storage=True)
    net.set_node_exec("A", rn.effect_identity)
    net.set_node_exec("B", rn.effect_identity)
    net.set_node_exec("Sink", rn.effect_swallow)
    for node in ("A", "B", "Sink"):
        net.set_node_config(node, defer_net_actions=deferred[node], capture_stdout=False)
    for i in range({values}):
        net.inject_packet("A", "in", i)
    print("injected", flush=True)
    net.start()
    print("finished the whole run", flush=True)
    net.close()
""")

RESUME = PRELUDE + textwrap.dedent("""
    net = netrun.Net.resume(db)
    report = {{"unrestored": net.unrestored_functions,
               "configs": {{n: net.get_node_config(n)["defer_net_actions"] for n in ("A", "B", "Sink")}},
               "startable_at_resume": len(net.get_startable_epochs())}}
    net.start()
    report["startable_after"] = len(net.get_startable_epochs())
    net.close()
    print(json.dumps(report), flush=True)
""")


def finished_epochs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with closing(sqlite3.connect(db, timeout=5)) as conn:
            return conn.execute("SELECT count(*) FROM epochs WHERE state = 'finished'").fetchone()[0]
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def kill_at_random_instant(script: Path, db: Path, rng: random.Random) -> None:
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=effects_env(db))
    try:
        deadline = time.monotonic() + 30
        while finished_epochs(db) < 30:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the child never finished an epoch"
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.4))
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


def effects_env(db: Path) -> dict:
    return {**os.environ, "NETRUN_TEST_EFFECTS": str(db) + ".effects"}


def repeated_effects(db: Path) -> dict:
    lines = Counter(Path(str(db) + ".effects").read_text().splitlines())
    return {line: n for line, n in lines.items() if n > 1}


def read_outcome(db: Path) -> dict:
    with closing(sqlite3.connect(db)) as conn:
        delivered = [stored_value(row[0]) for row in conn.execute(
            "SELECT v.data FROM packets p JOIN packet_values v ON v.packet_id = p.id "
            "WHERE p.state = 'consumed' AND p.node_name = 'Sink'")]
        letters = conn.execute("SELECT node_name, reason, value_kind, value FROM dead_letters").fetchall()
        return {
            "integrity": conn.execute("PRAGMA integrity_check").fetchall(),
            "delivered": Counter(delivered),
            "letters": [(node, reason, stored_value(value) if kind != "func" else None)
                        for node, reason, kind, value in letters],
            "live": conn.execute("SELECT count(*) FROM packets WHERE state = 'live'").fetchone()[0],
            "open": conn.execute("SELECT count(*) FROM epochs WHERE state IN ('startable', 'running')").fetchone()[0],
            "running": conn.execute("SELECT id, node_name FROM epochs WHERE state = 'running'").fetchall(),
            "cancelled": conn.execute("SELECT id, node_name, error_type FROM epochs "
                                      "WHERE state = 'cancelled'").fetchall(),
            "sink_finished": conn.execute("SELECT count(*) FROM epochs WHERE node_name = 'Sink' "
                                          "AND state = 'finished'").fetchone()[0],
        }


@pytest.mark.parametrize("mode, seed", [("immediate", 7), ("deferred", 8), ("mixed", 9)])
def test_run_killed_at_a_random_instant_and_resumed_loses_and_duplicates_nothing(tmp_path, mode, seed):
    deferred = {"A": mode != "immediate", "B": mode == "deferred", "Sink": mode == "deferred"}
    db = tmp_path / "net.db"
    run_script, resume_script = tmp_path / "run.py", tmp_path / "resume.py"
    run_script.write_text(RUN.format(root=str(REPO), db=str(db), deferred=deferred, values=VALUES))
    resume_script.write_text(RESUME.format(root=str(REPO), db=str(db), deferred=deferred))

    kill_at_random_instant(run_script, db, random.Random(seed))
    killed = read_outcome(db)  # the child is dead: nothing has the file open
    assert killed["integrity"] == [("ok",)]
    assert killed["sink_finished"] < VALUES  # really cut short
    assert killed["live"] > 0
    assert len(killed["running"]) <= 1
    if mode == "deferred":
        assert killed["running"] == []  # a deferred epoch's start is committed with its end

    done = subprocess.run([sys.executable, str(resume_script)], capture_output=True, text=True, timeout=120,
                          env=effects_env(db))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["unrestored"] == {}
    assert report["configs"] == deferred
    assert report["startable_at_resume"] > 0 and report["startable_after"] == 0

    final = read_outcome(db)
    assert final["integrity"] == [("ok",)]
    assert final["live"] == 0 and final["open"] == 0
    duplicated = {value: n for value, n in final["delivered"].items() if n > 1}
    assert duplicated == {}
    lettered = Counter(value for _, _, value in final["letters"])
    assert set(final["delivered"]) & set(lettered) == set()
    assert set(final["delivered"]) | set(lettered) == set(range(VALUES))  # none lost
    if mode == "deferred":
        assert sum(final["delivered"].values()) == VALUES
        assert final["letters"] == [] and final["cancelled"] == []
    else:
        assert {reason for _, reason, _ in final["letters"]} <= {"interrupted"}
        # only epochs started (committed, or logged as an intent) whose end was not committed lost
        # their packet: a few, never a node's code run twice for a value
        assert {error_type for _, _, error_type in final["cancelled"]} <= {"Interrupted"}
        assert {node for _, node in killed["running"]} <= {node for _, node, _ in final["cancelled"]}
        # (an epoch whose creation was not committed either has no row: its packet is lettered alone)
        assert len(final["cancelled"]) <= 300 and len(final["letters"]) <= 300
        assert sum(final["delivered"].values()) + len(final["letters"]) == VALUES
        assert {line: n for line, n in repeated_effects(db).items() if not deferred[line.split()[0]]} == {}
        assert not Path(str(db) + "-starts").exists()  # recovered, then removed
