"""`netrun run` and `netrun resume`: progress, injections, Ctrl-C, crashes, exit codes."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netrun.cli import main

NETS = Path(__file__).parent / "nets"


def scalar(db: Path, sql: str):
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


def sink_values(db: Path) -> list[int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        lines = [r[0] for r in conn.execute("SELECT text FROM node_logs WHERE node_name = 'Sink' ORDER BY seq")]
    finally:
        conn.close()
    return sorted(int(line.split()[1]) for line in lines)


def test_run_injects_the_source_runs_to_completion_and_summarizes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_DELAY", "0.01")
    db = tmp_path / "run.db"
    assert main(["run", str(NETS / "slow.toml"), "--db", str(db), "--interval", "0.05"]) == 0
    out = capsys.readouterr().out
    assert "injected a source epoch at Emit" in out
    # not a terminal: plain progress lines, no ANSI codes
    assert re.search(r"^\s+[\d.]+ s\s+\d+ epochs ended \(\d+/s\)\s+running \d+.*started/finished/failed: "
                     r"Emit 1/1/0, Sink \d+/\d+/0, Work \d+/\d+/0$", out, re.MULTILINE)
    assert "\x1b[" not in out
    assert re.search(rf"{re.escape(str(db))}: finished — 61 epochs in", out)
    assert re.search(r"│ Sink\s+│\s+0 │\s+0 │\s+0 │\s+30 │", out)  # startable, queued, running, finished
    assert sink_values(db) == [i * 10 for i in range(30)]


def test_run_json_prints_one_document_matching_the_database(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_DELAY", "0")
    db = tmp_path / "run.db"
    assert main(["run", str(NETS / "slow.toml"), "--db", str(db), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["state"] == "finished"
    assert report["run"]["epochs_ended"] == scalar(db, "SELECT count(*) FROM epochs") == 61
    assert report["nodes"]["Work"]["finished"] == 30
    assert report["packets_left"] == []


def test_run_refuses_an_existing_database_unless_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_DELAY", "0")
    db = tmp_path / "run.db"
    assert main(["run", str(NETS / "slow.toml"), "--db", str(db), "--no-progress"]) == 0
    before = db.read_bytes()
    capsys.readouterr()
    assert main(["run", str(NETS / "slow.toml"), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "already exists" in err and f"netrun resume {db}" in err
    assert db.read_bytes() == before
    assert main(["run", str(NETS / "slow.toml"), "--db", str(db), "--no-progress", "--overwrite"]) == 0
    assert scalar(db, "SELECT count(*) FROM epochs") == 61  # a new run, not two


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_a_folder_as_db_is_a_usage_error_naming_it(tmp_path, capsys, overwrite):
    folder = tmp_path / "runs"
    folder.mkdir()
    assert main(["run", str(NETS / "slow.toml"), "--db", str(folder), *overwrite]) == 2
    err = capsys.readouterr().err
    assert f"{folder} is a folder" in err and "resume" not in err
    assert list(folder.iterdir()) == []


def test_a_db_in_a_folder_that_does_not_exist_is_one_error_line_naming_the_folder(tmp_path, capsys):
    db = tmp_path / "missing" / "run.db"
    assert main(["run", str(NETS / "slow.toml"), "--db", str(db)]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("netrun: error:") and f"{tmp_path / 'missing'} does not exist" in line


@pytest.mark.parametrize("command", ["run", "worker"])
def test_a_path_that_is_not_a_folder_is_a_usage_error_naming_it(tmp_path, capsys, command):
    """--path names where node functions are imported from: a typo there is said at once, not as a
    function that cannot be imported."""
    (tmp_path / "a-file").write_text("")
    for path, problem in ((tmp_path / "nope", "no such folder"), (tmp_path / "a-file", "not a folder")):
        argv = ["run", str(NETS / "slow.toml"), "--db", str(tmp_path / "run.db")] if command == "run" else \
            ["worker", "--db", str(tmp_path / "run.db"), "--pool", "cpu"]
        assert main([*argv, "--path", str(path)]) == 2
        assert f"--path {path}: {problem}" in capsys.readouterr().err
    assert not (tmp_path / "run.db").exists()


def test_overwrite_never_replaces_a_file_that_is_not_a_netrun_database(tmp_path, capsys):
    other = tmp_path / "notes.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE notes (text)")
    conn.commit()
    conn.close()
    before = other.read_bytes()
    assert main(["run", str(NETS / "slow.toml"), "--db", str(other), "--overwrite"]) == 1
    assert "not of netrun" in capsys.readouterr().err
    assert other.read_bytes() == before


def test_packets_from_the_command_line_are_json_or_text(tmp_path, capsys):
    db = tmp_path / "echo.db"
    argv = ["run", str(NETS / "echo.toml"), "--db", str(db), "--no-progress",
            "--packet", 'Echo.in={"a": [1, 2]}', "--packet", "Echo.in=hello world", "--packet", "Echo.in=42"]
    assert main(argv) == 0
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    logs = sorted(r[0] for r in conn.execute("SELECT text FROM node_logs"))
    conn.close()
    assert logs == ["echo 'hello world'", "echo 42", "echo {'a': [1, 2]}"]


@pytest.mark.parametrize("argv, message", [
    (["--packet", "Echo"], "expected NODE.PORT=VALUE"),
    (["--packet", "Echo.in"], "expected NODE.PORT=VALUE"),
    (["--packet", "Echo.in=" + "[" * 5000 + "]" * 5000], "nested too deeply"),
    ([], "has no source node"),
])
def test_a_run_with_nothing_or_a_malformed_injection_is_a_usage_error(tmp_path, capsys, argv, message):
    db = tmp_path / "echo.db"
    assert main(["run", str(NETS / "echo.toml"), "--db", str(db), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not db.exists()


@pytest.mark.parametrize("argv", [["--inject", "Nope"], ["--packet", "Echo.nope=1"], ["--packet", "Nope.in=1"]])
def test_a_run_whose_injection_fails_leaves_no_database_so_the_corrected_command_works(tmp_path, capsys, argv):
    db = tmp_path / "echo.db"
    assert main(["run", str(NETS / "echo.toml"), "--db", str(db), *argv]) == 1
    assert not db.exists() and not Path(f"{db}-wal").exists()
    assert main(["run", str(NETS / "echo.toml"), "--db", str(db), "--no-progress", "--packet", "Echo.in=1"]) == 0


def test_a_packet_for_an_unknown_port_is_an_error_naming_it(tmp_path, capsys):
    db = tmp_path / "echo.db"
    assert main(["run", str(NETS / "echo.toml"), "--db", str(db), "--packet", "Echo.nope=1"]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and err.count("\n") <= 3


def test_a_failure_with_on_error_pause_ends_the_run_with_exit_code_1(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_VALUES", "6")
    db = tmp_path / "pause.db"
    assert main(["run", str(NETS / "pausing.toml"), "--db", str(db), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "ValueError" in captured.out and "odd value" in captured.out  # the failures table
    assert "paused after a failed epoch" in captured.err and f"netrun resume {db}" in captured.err
    assert scalar(db, "SELECT count(*) FROM epochs WHERE node_name = 'Check' AND state = 'failed'") >= 1


def test_a_failure_with_on_error_raise_is_summarized_like_a_pause(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_VALUES", "6")
    toml = tmp_path / "raising.toml"
    toml.write_text((NETS / "pausing.toml").read_text().replace('on_error = "pause"', 'on_error = "raise"'))
    db = tmp_path / "raise.db"
    assert main(["run", str(toml), "--db", str(db), "--path", str(NETS), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "ValueError" in captured.out and "odd value" in captured.out  # the failures table
    assert "paused after a failed epoch" in captured.err and f"netrun resume {db}" in captured.err
    assert "Traceback" not in captured.err


def test_the_commands_it_suggests_quote_a_path_with_spaces(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_VALUES", "6")
    folder = tmp_path / "my runs"
    folder.mkdir()
    db = folder / "pause.db"
    word = shlex.quote(str(db))
    assert word != str(db)
    assert main(["run", str(NETS / "pausing.toml"), "--db", str(db), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert f"netrun resume {word}" in captured.err and f"netrun status {word}" in captured.out
    assert main(["status", str(db)]) == 0
    assert f"netrun resume {word}" in capsys.readouterr().out
    assert main(["run", str(NETS / "pausing.toml"), "--db", str(db)]) == 2
    assert f"netrun resume {word}" in capsys.readouterr().err


def test_resume_names_functions_it_cannot_import_and_exits_1_with_work_left(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_DELAY", "0")
    module_dir = tmp_path / "mods"
    module_dir.mkdir()
    (module_dir / "gone_nodes.py").write_text(
        "def emit(ctx, packets):\n    ctx.load_output_port('out', ctx.create_packet(1))\n"
        "    ctx.send_output_salvo('send_out')\n\n"
        "def sink(ctx, packets):\n    print(ctx.consume_packet(packets['in'][0]))\n")
    toml = module_dir / "net.toml"
    toml.write_text('edges = [{ from = "Emit.out", to = "Sink.in" }]\n'
                    '[nodes.Emit]\nout_ports = ["out"]\nexec_node_func = "gone_nodes.emit"\n'
                    '[nodes.Sink]\nin_ports = ["in"]\nexec_node_func = "gone_nodes.sink"\n')
    db = tmp_path / "run.db"
    assert main(["run", str(toml), "--db", str(db), "--no-progress"]) == 0
    sys.modules.pop("gone_nodes", None)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(module_dir)])
    monkeypatch.chdir(tmp_path)
    # put work back: a new source epoch needs the net (a resume) to inject; use the library directly
    import netrun
    with netrun.Net.resume(db) as net:
        net.inject_source_epoch("Emit")
    sys.modules.pop("gone_nodes", None)
    capsys.readouterr()
    assert main(["resume", str(db), "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "functions not importable" in captured.err and "Emit: exec" in captured.err
    assert "epochs of Emit stay startable" in captured.err
    assert main(["resume", str(db), "--no-progress", "--path", str(module_dir)]) == 0
    assert scalar(db, "SELECT count(*) FROM epochs WHERE node_name = 'Sink' AND state = 'finished'") == 2


def _start_run(db: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, "-m", "netrun", "run", str(NETS / "slow.toml"), "--db", str(db),
                             "--interval", "0.05"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_work(db: Path, at_least: int, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if db.exists():
            try:
                if scalar(db, "SELECT count(*) FROM epochs WHERE node_name = 'Work' AND state = 'finished'") >= at_least:
                    return
            except sqlite3.OperationalError:
                pass  # the schema is not there yet
        time.sleep(0.02)
    raise AssertionError(f"the run never finished {at_least} Work epochs")


def _interrupt_run(db: Path, signum: int, *, after_work: int) -> tuple[int, str]:
    """Run slow.toml (200 values) in a child, send `signum` once Work finished some epochs;
    the child's exit code and stderr."""
    child = _start_run(db, {"NETRUN_TEST_VALUES": "200", "NETRUN_TEST_DELAY": "0.02"})
    try:
        _wait_for_work(db, after_work)
        child.send_signal(signum)
        _out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    return child.returncode, err


def _resume_fast(db: Path) -> int:
    os.environ["NETRUN_TEST_DELAY"] = "0"
    try:
        return main(["resume", str(db), "--no-progress", "--path", str(NETS)])
    finally:
        del os.environ["NETRUN_TEST_DELAY"]


def test_ctrl_c_pauses_gracefully_says_how_to_resume_and_resume_finishes(tmp_path, capsys):
    db = tmp_path / "run.db"
    code, err = _interrupt_run(db, signal.SIGINT, after_work=3)
    assert code == 130, err
    assert f"netrun resume {db}" in err and "paused by Ctrl-C" in err
    assert "Traceback" not in err
    done = scalar(db, "SELECT count(*) FROM epochs WHERE node_name = 'Work' AND state = 'finished'")
    assert 0 < done < 200
    assert scalar(db, "SELECT count(*) FROM epochs WHERE state = 'running'") == 0  # graceful: nothing mid-epoch
    assert main(["status", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"
    assert _resume_fast(db) == 0
    assert sink_values(db) == [i * 10 for i in range(200)]


def test_a_second_ctrl_c_stops_at_once_and_says_so(tmp_path, capsys):
    toml = tmp_path / "hold.toml"
    toml.write_text('[nodes.Hold]\nin_ports = ["in"]\nexec_node_func = "cli_nodes.hold"\n'
                    'options = { echo_stdout = true }\n')
    db = tmp_path / "hold.db"
    child = subprocess.Popen([sys.executable, "-m", "netrun", "run", str(toml), "--db", str(db), "--path",
                              str(NETS.parent), "--no-progress", "--packet", "Hold.in=7"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while child.stdout.readline().strip() != "ready 7":  # Hold's epoch runs (for 60 s)
            assert child.poll() is None
        child.send_signal(signal.SIGINT)  # pause: waits for the running epoch
        time.sleep(0.3)
        child.send_signal(signal.SIGINT)  # at once
        _out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 130, err
    assert "second Ctrl-C" in err and f"netrun resume {db}" in err
    assert "after the running epochs finished" not in err
    # Hold is not deferred: its epoch ended by the crash semantics before the interrupt went on, its
    # value a dead letter to replay (it used to stay `running` for a resume to cancel)
    assert scalar(db, "SELECT count(*) FROM epochs WHERE state = 'running'") == 0
    assert scalar(db, "SELECT reason FROM dead_letters") == "interrupted"
    assert f"netrun dlq {db} replay --all" in err


def test_resume_after_sigkill_delivers_every_value_exactly_once(tmp_path, capsys):
    db = tmp_path / "run.db"
    code, _err = _interrupt_run(db, signal.SIGKILL, after_work=5)
    assert code == -signal.SIGKILL
    assert _resume_fast(db) == 0
    assert "resuming" in capsys.readouterr().out
    # Work and Sink are deferred: an epoch killed mid-run ran again; Sink got every value once
    assert sink_values(db) == [i * 10 for i in range(200)]
