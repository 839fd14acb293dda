"""`netrun ui` as a command: what it needs installed, what it refuses before serving, where it
listens, and that the rest of netrun never imports the web stack."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.cli.conftest import Cli, cli  # noqa: F401 - the fixture

from .conftest import WAIT, child_env


def test_without_the_extra_it_says_how_to_install_it(cli: Cli, failing_db: Path, monkeypatch):  # noqa: F811
    monkeypatch.setitem(sys.modules, "starlette", None)  # `import starlette` now fails, as when not installed
    result = cli("ui", failing_db)
    assert result.code == 1
    assert 'pip install "netrun[ui]"' in result.err and "starlette" in result.err


def test_the_core_and_the_command_line_never_import_the_web_stack():
    code = ("import sys, netrun, netrun.cli, netrun.inspector; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn', 'anyio') "
            "or m.startswith('netrun.ui')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=child_env(), check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("what", ["missing", "folder", "text", "sqlite"])
def test_a_file_that_is_no_net_is_refused_before_serving(cli: Cli, tmp_path: Path, what: str):  # noqa: F811
    path = tmp_path / "x.db"
    if what == "folder":
        path.mkdir()
    elif what == "text":
        path.write_text("hello, not a database\n" * 100)
    elif what == "sqlite":
        import sqlite3
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (a)")
        conn.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    result = cli("ui", path, "--port", "0")
    assert result.code == 1
    assert "netrun: error:" in result.err and str(path) in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written beside it


def test_a_port_in_use_is_a_clear_error(cli: Cli, failing_db: Path):  # noqa: F811
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("ui", failing_db, "--port", port)
    assert result.code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.err and "--port" in result.err


def test_a_bad_port_or_host_is_refused(cli: Cli, failing_db: Path):  # noqa: F811
    assert cli("ui", failing_db, "--port", "70000").code == 2
    assert cli("ui", failing_db, "--port", "-1").code == 2
    result = cli("ui", failing_db, "--host", "no-such-host.invalid", "--port", "0")
    assert result.code == 1 and "cannot listen on no-such-host.invalid" in result.err


def test_it_listens_on_loopback_by_default_and_warns_for_another_address(serve, failing_db: Path):
    server = serve(failing_db)
    assert server.url.startswith("http://127.0.0.1:")
    assert "read-only" in server.first_line
    with urllib.request.urlopen(server.url + "api/live", timeout=WAIT) as answer:
        assert answer.status == 200
    assert server.stop() == 0  # SIGTERM: a clean stop
    assert "warning" not in server.log.read_text()

    anywhere = serve(failing_db, "--host", "0.0.0.0", "--allow-writes")
    port = anywhere.url.rsplit(":", 1)[1].strip("/")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/live", timeout=WAIT) as answer:
        assert answer.status == 200
    anywhere.process.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop too
    assert anywhere.process.wait(timeout=WAIT) == 0
    anywhere.stop()
    warning = anywhere.log.read_text()
    assert "warning: listening on 0.0.0.0, not on a loopback address" in warning
    assert "replay or discard its dead letters" in warning
