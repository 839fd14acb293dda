"""After failures the commands show the traceback (the innermost frames; `--full` for all) and say
what the user can do with the dead letters, with the exact commands."""

from __future__ import annotations

import shlex
from pathlib import Path

from netrun.cli import main

from .conftest import NETS, Cli


def test_status_shows_the_failures_tracebacks_short_and_full(cli: Cli, failing_db: Path):
    short = cli("status", failing_db)
    assert short.code == 0
    assert "Traceback (most recent call last):" in short.out
    assert "cli_nodes.py" in short.out and "in check" in short.out and "ValueError: odd value" in short.out
    full = cli("status", failing_db, "--full")
    assert full.code == 0 and "cli_nodes.py" in full.out
    assert len(full.out) >= len(short.out)
    report = cli("status", failing_db, "--json").json()
    assert all("in check" in f["traceback"] for f in report["recent_failures"])


def test_status_with_pending_dead_letters_gives_the_replay_and_discard_commands(cli: Cli, failing_db: Path):
    out = cli("status", failing_db).out
    word = shlex.quote(str(failing_db))
    assert "3 dead letters pending" in out
    assert f"netrun dlq {word} replay --all" in out and f"netrun resume {word}" in out
    assert f"netrun dlq {word} discard --all" in out


def test_dlq_show_prints_the_traceback(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "show", "1")
    assert result.code == 0
    assert "traceback:" in result.out and "in check" in result.out and "raise ValueError" in result.out
    assert "in check" in cli("dlq", failing_db, "show", "1", "--full").out
    assert "in check" in cli("dlq", failing_db, "show", "1", "--json").json()["traceback"]


def test_resume_with_pending_dead_letters_says_resume_does_not_run_them(cli: Cli, failing_db: Path):
    result = cli("resume", str(failing_db), "--no-progress", "--path", str(NETS.parent))
    assert result.code == 0
    word = shlex.quote(str(failing_db))
    assert "3 dead letters pending (resume does not run them)" in result.err
    assert f"netrun dlq {word} replay --all" in result.err


def test_a_paused_run_shows_the_traceback_and_says_to_replay_the_dead_letters(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_VALUES", "6")
    db = tmp_path / "pause.db"
    assert main(["run", str(NETS / "pausing.toml"), "--db", str(db), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "Traceback (most recent call last):" in captured.out and "in fail_on_odd" in captured.out
    assert f"netrun dlq {db} replay --all" in captured.err and f"netrun resume {db}" in captured.err
    assert main(["run", str(NETS / "pausing.toml"), "--db", str(tmp_path / "full.db"), "--no-progress",
                 "--full"]) == 1
    assert "in fail_on_odd" in capsys.readouterr().out


def test_a_run_that_continues_past_failures_says_what_to_do_with_its_dead_letters(tmp_path, capsys, monkeypatch):
    db = tmp_path / "failing.db"
    assert main(["run", str(NETS / "failing.toml"), "--db", str(db), "--no-progress", "--path",
                 str(NETS.parent)]) == 0
    err = capsys.readouterr().err
    assert "3 dead letters pending" in err and f"netrun dlq {db} replay --all" in err
