"""Every script in tools/ answers --help with its usage and runs nothing (a benchmark or the crash
harness started by --help would take minutes and write files)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"
SCRIPTS = sorted(p.name for p in TOOLS.glob("*.py") if 'if __name__ == "__main__":' in p.read_text())


def test_the_scripts_are_found():
    assert "bench_pools.py" in SCRIPTS and "crash_harness.py" in SCRIPTS


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_prints_usage_and_runs_nothing(script, tmp_path):
    done = subprocess.run([sys.executable, str(TOOLS / script), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {script}")
    assert list(tmp_path.iterdir()) == []  # nothing written where it ran
