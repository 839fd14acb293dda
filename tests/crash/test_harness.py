"""tools/crash_harness.py, small: SIGKILL the pipeline several times, resume it, nothing is lost.

The harness prints a JSON report on stdout and exits 0 only when its own checks pass; the
assertions below read the report so that a failure says which promise broke.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from netrun.runtime import INTENT_LIMIT

REPO = Path(__file__).resolve().parents[2]
VALUES = 1_500


def run_harness(tmp_path: Path, mode: str, seed: int) -> dict:
    db = tmp_path / f"crash-{mode}.db"
    done = subprocess.run(
        [sys.executable, "tools/crash_harness.py", "--values", str(VALUES), "--kills", "6", "--mode", mode,
         "--max-delay", "0.4", "--seed", str(seed), "--db", str(db)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr[-3000:]}"
    report = json.loads(done.stdout)
    assert report["mode"] == mode and report["values"] == VALUES
    return report


def test_deferred_pipeline_killed_six_times_delivers_every_value_exactly_once(tmp_path):
    report = run_harness(tmp_path, "deferred", seed=3)
    assert report["ok"] is True
    assert report["integrity"] == "ok"
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["delivered"] == VALUES
    assert report["dead_lettered"] == 0 and report["dead_letter_reasons"] == []
    assert report["live_packets_left"] == 0 and report["open_epochs_left"] == 0
    assert report["total_kills"] >= 1
    assert sum(report["kills"].values()) == report["total_kills"]


def test_immediate_pipeline_killed_six_times_loses_nothing_and_dead_letters_only_interrupted(tmp_path):
    report = run_harness(tmp_path, "immediate", seed=5)
    assert report["ok"] is True
    assert report["integrity"] == "ok"
    assert report["lost"] == 0
    assert report["duplicated"] == 0
    assert report["delivered"] + report["dead_lettered"] >= VALUES
    assert report["delivered"] <= VALUES
    assert set(report["dead_letter_reasons"]) <= {"interrupted"}
    # The casualties of a kill: the epoch running when it lands, and the non-deferred epochs of the
    # open commit group (their starts logged in <db>-starts, their ends not yet committed; README
    # "Group commit": at most INTENT_LIMIT). Each epoch of this graph holds one packet.
    assert report["dead_lettered"] <= report["total_kills"] * (INTENT_LIMIT + 1)
    assert report["live_packets_left"] == 0 and report["open_epochs_left"] == 0
    assert report["total_kills"] >= 1

