"""Fixtures for the `netrun` command tests: stored runs to question, and a way to call the command.

Every test calls `netrun.cli.main(argv)` in this process and reads what it printed through
`capsys`. Databases are prepared once per session (running a net takes a few tenths of a
second) and each test gets its own copy in its `tmp_path`: the file, and its `-wal` if one is
left (a run's connections fold the WAL back into the file when the last one closes).

Reads that check the command's answers go through the stdlib `sqlite3` module, read-only,
on files no connection of this process has open (see tests/integration/helpers.py for why).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import netrun
from netrun.cli import main

HERE = Path(__file__).resolve().parent  # holds cli_nodes.py: passed to the command with --path
NETS = HERE / "nets"
FAILING_TOML = NETS / "failing.toml"
WORDFREQ_TOML = Path(netrun.__file__).resolve().parent / "examples" / "wordfreq.toml"
DEADLINE = 20.0  # seconds: the longest any poll for a child process waits


@dataclass(frozen=True)
class Result:
    """What one `main(argv)` call returned and printed."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`cli("status", db, "--json")`: run the command, return its exit code and output.

    The run commands add folders to sys.path: it is restored after the test.
    """
    monkeypatch.setattr(sys, "path", list(sys.path))

    def call(*argv: Any) -> Result:
        capsys.readouterr()  # drop what came before
        code = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def rows(db: Path | str, sql: str, params: tuple | list = ()) -> list[dict]:
    """`sql` over a closed database file, read-only, via the stdlib sqlite3 module."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]


def scalar(db: Path | str, sql: str, params: tuple | list = ()) -> Any:
    return next(iter(rows(db, sql, params)[0].values()))


def copy_db(source: Path, target: Path) -> Path:
    """Copy a closed database file with its WAL (never the -shm or the owner's -lock)."""
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{target}{suffix}")
    return target


def file_state(folder: Path, *, shm: bool = True) -> dict[str, bytes]:
    """Every file of `folder` with its bytes: to show that a command wrote nothing. `shm=False`
    leaves out `-shm` files: a reader of a netrun database with a WAL may create one (the WAL
    index, no data)."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())
            if path.is_file() and (shm or not path.name.endswith("-shm"))}


def run_quietly(argv: list[str]) -> None:
    """Run a command outside any test (session fixtures), restoring sys.path; it must succeed."""
    saved = list(sys.path)
    try:
        code = main(argv)
    finally:
        sys.path[:] = saved
    assert code == 0, f"netrun {' '.join(argv)} exited with {code}"


def wait_for(condition: Callable[[], Any], what: str, child: subprocess.Popen | None = None) -> Any:
    """Poll `condition` until it returns something true (returned), for at most DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while True:
        value = condition()
        if value:
            return value
        if child is not None:
            assert child.poll() is None, f"the child process exited ({child.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def start_child(argv: list[str], cwd: Path) -> subprocess.Popen:
    """A child process with stdout and stderr on one text pipe (closed by `stop_child`)."""
    return subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until(child: subprocess.Popen, expected: str) -> list[str]:
    """The child's output lines up to and including `expected` (fails if it ends first)."""
    seen = []
    while True:
        line = child.stdout.readline()
        assert line, f"the child ended before printing {expected!r}: {seen}"
        seen.append(line.rstrip("\n"))
        if seen[-1] == expected:
            return seen


def stop_child(child: subprocess.Popen) -> None:
    """SIGKILL the child if it still runs, reap it and close its pipe."""
    if child.poll() is None:
        child.kill()
    child.wait(timeout=DEADLINE)
    if child.stdout is not None:
        child.stdout.close()


@pytest.fixture(scope="session")
def _prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One finished run of each net, made once; tests get copies."""
    folder = tmp_path_factory.mktemp("prepared")
    wordfreq, failing = folder / "wf.db", folder / "failing.db"
    run_quietly(["run", str(WORDFREQ_TOML), "--db", str(wordfreq), "--no-progress"])
    run_quietly(["run", str(FAILING_TOML), "--db", str(failing), "--path", str(HERE), "--no-progress"])
    return {"wordfreq": wordfreq, "failing": failing}


@pytest.fixture
def wordfreq_db(_prepared: dict[str, Path], tmp_path: Path) -> Path:
    """A finished run of netrun/examples/wordfreq.toml (the final total live at Merge.total)."""
    return copy_db(_prepared["wordfreq"], tmp_path / "wf.db")


@pytest.fixture
def failing_db(_prepared: dict[str, Path], tmp_path: Path) -> Path:
    """A finished run of nets/failing.toml: Check failed (after a retry) for 1, 3 and 5, whose
    packets are pending dead letters #1, #2 and #3; 2, 4 and 6 reached Sink as 20, 40, 60."""
    return copy_db(_prepared["failing"], tmp_path / "failing.db")


@pytest.fixture
def stopped_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A net of nets/failing.toml with a source epoch injected and never run: work is left."""
    monkeypatch.syspath_prepend(str(HERE))
    db = tmp_path / "stopped.db"
    with netrun.Net.load_definition(FAILING_TOML, db=db) as net:
        net.inject_source_epoch("Source")
    return db


@pytest.fixture
def child_processes() -> Iterator[list[subprocess.Popen]]:
    """Children a test starts; each is killed (if still running), reaped and its pipe closed."""
    children: list[subprocess.Popen] = []
    yield children
    for child in children:
        stop_child(child)
