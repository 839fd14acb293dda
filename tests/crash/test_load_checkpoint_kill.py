"""A process killed while `Net.load_checkpoint` resumes its copy leaves a copy that, resumed later,
appends to its own history file, never to the original run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import netrun
from tests.integration.helpers import net_with_history_and_checkpoint, run_more

# The copy is in place; the kill lands as `Net.resume` starts on it (the rest of the load).
CHILD = textwrap.dedent("""
    import os, signal, sys
    import netrun
    def killed(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    netrun.Net.resume = classmethod(killed)
    netrun.Net.load_checkpoint(sys.argv[1], db=sys.argv[2])
""")


def test_a_copy_left_by_a_killed_load_writes_its_own_history_file(tmp_path):
    history = net_with_history_and_checkpoint(tmp_path)
    original = history.read_text()
    copy = tmp_path / "copy.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path / "ckpt"), str(copy)], env=env,
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert copy.exists()
    run_more(netrun.Net.resume(str(copy)))
    assert history.read_text() == original
    seqs = [json.loads(line)["seq"] for line in (tmp_path / "copy.db.history.jsonl").read_text().splitlines()]
    assert seqs == list(range(1, len(seqs) + 1))
