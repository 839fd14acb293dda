"""A deferred epoch whose code kills its process (`os._exit`) is not run again forever: each death
is counted across resumes (an `epoch_attempts` row, error type WorkerLost), and once it died more
than `retries + 1` times it fails, its value dead-lettered; the other values are delivered once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.integration.helpers import rows

REPO = Path(__file__).resolve().parents[2]

SETUP = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn
    net = netrun.Net(chain("Src", "Work", "Sink"), db={db!r}, durability={durability!r})
    net.set_node_exec("Work", rn.exit_on_three)
    net.set_node_exec("Sink", rn.swallow)
    net.set_node_config("Work", defer_net_actions=True, retries={retries})
    for value in range(6):
        net.inject_packet("Work", "in", value)
    net.close()
""")

RESUME = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import netrun
    net = netrun.Net.resume({db!r}, on_error="continue")
    net.start()
    print(json.dumps([(d.node_name, d.reason, d.value, d.error) for d in net.dead_letter_queue.get_all()]))
    net.close()
""")


@pytest.mark.parametrize("retries, durability", [(0, "normal"), (1, "full")])
def test_a_deferred_epoch_that_kills_its_process_fails_after_retries_plus_one_deaths(db, retries, durability):
    # on a file the running deferred epoch is in <db>-starts; on PostgreSQL in net_meta (netrun.intents)
    subprocess.run([sys.executable, "-c", SETUP.format(root=str(REPO), db=db, durability=durability,
                                                        retries=retries)], check=True, timeout=60)
    exits = []
    for _ in range(retries + 4):
        done = subprocess.run([sys.executable, "-c", RESUME.format(root=str(REPO), db=db)], capture_output=True,
                              text=True, timeout=60)
        exits.append(done.returncode)
        if done.returncode == 0:
            break
    assert exits == [17] * (retries + 2) + [0]  # it died retries + 2 times, then it was failed
    letters = json.loads(done.stdout)
    [letter] = [entry for entry in letters if entry[0] == "Work"]
    assert letter[:3] == ["Work", "failed", 3] and "WorkerLost" in letter[3]
    # Sink epochs logged as started and not committed when a death struck are dead-lettered (crash semantics)
    assert {(node, reason) for node, reason, _value, _error in letters if node != "Work"} <= {("Sink", "interrupted")}
    deaths = rows(db, "SELECT attempt, outcome, error_type FROM epoch_attempts WHERE node_name = 'Work' "
                      "AND error_type IS NOT NULL ORDER BY attempt")
    assert deaths == [{"attempt": n, "outcome": "failed", "error_type": "WorkerLost"} for n in range(retries + 2)]
    assert rows(db, "SELECT state, error_type FROM epochs WHERE node_name = 'Work' AND state != 'finished'") == [
        {"state": "failed", "error_type": "WorkerLost"}]
    sunk = rows(db, "SELECT count(*) AS n FROM epochs WHERE node_name = 'Sink' AND state = 'finished'")[0]["n"]
    assert sunk + len(letters) - 1 == 5  # every other value reached Sink once, or its dead letter


ASYNC_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn
    import os
    if sys.argv[1] == "new":
        net = netrun.Net(chain("Src", "Work", "Sink"), db={db!r})
        net.set_node_exec("Work", rn.slow_async_forward)
        net.set_node_exec("Sink", rn.swallow)
        net.set_node_config("Work", defer_net_actions=True)
        for value in range(20):
            net.inject_packet("Work", "in", value)
    else:
        net = netrun.Net.resume({db!r})
    net.start()
    net.close()
""")


def test_a_whole_process_killed_twice_counts_no_death_for_the_async_epochs_it_ran(tmp_path):
    """Many async epochs run at once: a kill of the whole process is none of theirs. Killed twice
    (more than retries + 1 = 1 times), every value still arrives once."""
    import os
    import signal
    import time

    db = str(tmp_path / "async.db")
    script = ASYNC_RUN.format(root=str(REPO), db=db)
    for run in range(2):
        child = subprocess.Popen([sys.executable, "-c", script, "new" if run == 0 else "resume"])
        deadline = time.monotonic() + 30
        while True:
            assert child.poll() is None and time.monotonic() < deadline
            try:
                if os.path.exists(db) and rows(db, "SELECT count(*) AS n FROM epochs "
                                                   "WHERE state = 'running'")[0]["n"] >= 20:
                    break
            except Exception:  # noqa: BLE001 - not created yet
                pass
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    done = subprocess.run([sys.executable, "-c", script, "resume"], env={**os.environ, "NETRUN_TEST_FAST": "1"}, timeout=60)
    assert done.returncode == 0
    assert rows(db, "SELECT count(*) AS n FROM epoch_attempts WHERE error_type = 'WorkerLost'") == [{"n": 0}]
    assert rows(db, "SELECT count(*) AS n FROM epochs WHERE node_name = 'Sink' AND state = 'finished'") == [
        {"n": 20}]
    assert rows(db, "SELECT count(*) AS n FROM dead_letters") == [{"n": 0}]
