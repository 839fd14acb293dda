"""tools/pg_server.py: a real, throw-away PostgreSQL server for the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def test_the_session_server_is_a_real_postgresql(pg_server):
    with psycopg.connect(pg_server.url) as conn:
        assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 150000
        assert conn.execute("SHOW listen_addresses").fetchone()[0] == "127.0.0.1"


def test_the_script_starts_and_stops_a_server_of_its_own():
    # not in tmp_path: the server's user (postgres, when the tests run as root) cannot enter it
    folder = Path(tempfile.mkdtemp(prefix="netrun-pg-test-")) / "pg"
    os.chmod(folder.parent, 0o755)
    started = subprocess.run([sys.executable, str(TOOLS / "pg_server.py"), "start", "--dir", str(folder)],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        stopped = subprocess.run([sys.executable, str(TOOLS / "pg_server.py"), "stop", "--dir", str(folder)],
                                 capture_output=True, text=True, timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    assert not folder.exists()
    os.rmdir(folder.parent)
