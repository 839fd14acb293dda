"""`netrun stop`, `netrun inject` and `netrun restore`: acting on a net from another process.

The running owner is a real `netrun run` child process (or, where the test needs to hold
the net open without running it, a `Net` in this process); the commands run in this process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

import netrun
from netrun.ask_owner import request_injection
from netrun.graphs import simple_node

from .conftest import DEADLINE, WORDFREQ_TOML, Cli, file_state, rows, scalar, wait_for

NETS = Path(__file__).parent / "nets"
SLOW = NETS / "slow.toml"  # Emit -> Work (NETRUN_TEST_DELAY per value, deferred) -> Sink (logs "got N")
ECHO = NETS / "echo.toml"  # Echo logs "echo <repr>" for every packet at Echo.in


def _run_slow(db: Path, values: int, delay: float) -> subprocess.Popen:
    env = {**os.environ, "NETRUN_TEST_VALUES": str(values), "NETRUN_TEST_DELAY": str(delay)}
    return subprocess.Popen([sys.executable, "-m", "netrun", "run", str(SLOW), "--db", str(db), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _work_done(db: Path) -> int:
    try:
        return scalar(db, "SELECT count(*) FROM epochs WHERE node_name = 'Work' AND state = 'finished'")
    except Exception:  # noqa: BLE001 - the file or its schema is not there yet
        return 0


def _sink_values(db: Path) -> list[int]:
    return sorted(int(r["text"].split()[1]) for r in rows(db, "SELECT text FROM node_logs WHERE node_name = 'Sink'"))


def _resume_fast(cli: Cli, db: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("NETRUN_TEST_DELAY", "0")
    return cli("resume", db, "--no-progress", "--path", NETS).code


@pytest.fixture
def running(tmp_path: Path, child_processes: list[subprocess.Popen]):
    """A `netrun run` child of slow.toml (200 values, 20 ms each) that has finished some Work epochs."""
    db = tmp_path / "run.db"
    child = _run_slow(db, 200, 0.02)
    child_processes.append(child)
    wait_for(lambda: _work_done(db) >= 3, "the run to finish some Work epochs", child)
    return db, child


def _echoed(db: Path) -> list[str]:
    return [r["text"] for r in rows(db, "SELECT text FROM node_logs WHERE node_name = 'Echo' ORDER BY seq")]


@pytest.fixture
def echo_db(cli: Cli, tmp_path: Path) -> Path:
    """A finished run of echo.toml (it echoed 1): no process runs it."""
    db = tmp_path / "echo.db"
    assert cli("run", ECHO, "--db", db, "--path", NETS, "--no-progress", "--packet", "Echo.in=1").code == 0
    return db


# -- stop ---------------------------------------------------------------------------------------------
def test_stop_pauses_a_running_netrun_run_and_resume_delivers_every_value_once(cli: Cli, running, monkeypatch):
    db, child = running
    result = cli("stop", db)
    assert result.code == 0, result.err
    assert f"pid {child.pid}" in result.out and "paused" in result.out and f"netrun resume {db}" in result.out
    _out, err = child.communicate(timeout=DEADLINE)
    assert child.returncode == 130, err  # paused, not finished: resume continues
    assert "paused by netrun stop" in err and f"netrun resume {db}" in err
    assert 0 < _work_done(db) < 200  # it really stopped mid-run
    assert scalar(db, "SELECT count(*) FROM epochs WHERE state = 'running'") == 0  # gracefully: nothing mid-epoch
    assert scalar(db, "SELECT state FROM operator_requests") == "done"
    assert _resume_fast(cli, db, monkeypatch) == 0
    assert _sink_values(db) == [i * 10 for i in range(200)]  # each value once
    assert scalar(db, "SELECT count(*) FROM dead_letters") == 0


def test_stop_json_names_the_owner_that_paused(cli: Cli, running):
    db, child = running
    result = cli("stop", db, "--json")
    assert result.code == 0
    document = result.json()
    assert document["state"] == "paused" and document["owner"]["pid"] == child.pid
    child.communicate(timeout=DEADLINE)


def test_stop_without_a_running_process_says_so_exits_0_and_writes_nothing(cli: Cli, echo_db: Path):
    before = file_state(echo_db.parent)
    result = cli("stop", echo_db)
    assert result.code == 0
    assert "no process is running" in result.out
    assert file_state(echo_db.parent) == before


def test_stop_pauses_a_python_background_run_and_start_continues(cli: Cli, tmp_path: Path):
    seen: list[int] = []

    def slow(ctx, packets):
        seen.append(ctx.consume_packet(packets["in"][0]))
        time.sleep(0.01)

    db = tmp_path / "py.db"
    with netrun.Net(netrun.Graph([simple_node("Slow", ["in"])], []), db=db) as net:
        net.set_node_exec("Slow", slow)
        for i in range(300):
            net.inject_packet("Slow", "in", i)
        net.start(threaded=True)
        wait_for(lambda: len(seen) >= 3, "the run to start")
        result = cli("stop", db, "--timeout", str(DEADLINE))
        assert result.code == 0, result.err
        assert net.wait_until_blocked(DEADLINE).state == "paused"
        assert 3 <= len(seen) < 300
        net.start()  # the stop was for that run only
        assert sorted(seen) == list(range(300))


def test_a_stop_the_owner_never_takes_times_out_is_withdrawn_and_never_pauses_a_later_run(cli: Cli, tmp_path: Path):
    db = tmp_path / "idle.db"
    got: list[int] = []
    with netrun.Net(netrun.Graph([simple_node("Sink", ["in"])], []), db=db) as net:  # open, not running
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        net.inject_packet("Sink", "in", 1)
        result = cli("stop", db, "--timeout", "0.3")
        assert result.code == 1
        assert "did not take the request" in result.err and "withdrawn" in result.err
        assert net.query("SELECT state FROM operator_requests") == [{"state": "withdrawn"}]
        net.start()
        assert got == [1] and net.poll().state == "blocked"


@pytest.mark.parametrize("command", [["stop"], ["inject", "--packet", "Sink.in=5"]])
def test_ctrl_c_on_a_request_the_owner_has_not_taken_withdraws_it(tmp_path: Path, command: list[str]):
    db = tmp_path / "idle.db"
    got: list[int] = []
    with netrun.Net(netrun.Graph([simple_node("Sink", ["in"])], []), db=db) as net:  # open, not running
        net.set_node_exec("Sink", lambda ctx, packets: got.append(ctx.consume_packet(packets["in"][0])))
        net.inject_packet("Sink", "in", 1)
        child = subprocess.Popen([sys.executable, "-m", "netrun", command[0], str(db), *command[1:], "--timeout", "60"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: net.query("SELECT state FROM operator_requests") == [{"state": "pending"}],
                     "the request written", child)
            child.send_signal(signal.SIGINT)
            _out, err = child.communicate(timeout=DEADLINE)
        finally:
            child.kill()
        assert child.returncode == 130, err
        assert "interrupted" in err and "withdrawn before the running process took it" in err, err
        assert "Traceback" not in err
        assert net.query("SELECT state FROM operator_requests") == [{"state": "withdrawn"}]
        net.start()  # neither paused by the stop nor given the injection
        assert got == [1] and net.poll().state == "blocked"


def test_a_stop_left_open_by_a_gone_owner_is_withdrawn_when_the_net_is_next_opened(tmp_path: Path):
    db = tmp_path / "net.db"
    with netrun.Net(netrun.Graph([simple_node("Sink", ["in"])], []), db=db) as net:
        net.set_node_exec("Sink", lambda ctx, packets: ctx.consume_packet(packets["in"][0]))
        net.query("SELECT 1")
    with closing(sqlite3.connect(db)) as conn:  # a stop written for an earlier owner, never answered
        conn.execute("INSERT INTO operator_requests (kind, requested_at, requested_by) VALUES ('stop', 'x', 'y')")
        conn.commit()
    with netrun.Net.resume(db) as net:
        net.set_node_exec("Sink", lambda ctx, packets: ctx.consume_packet(packets["in"][0]))
        net.inject_packet("Sink", "in", 1)
        net.start()
        assert net.poll().state == "blocked"  # not paused by it
        assert net.query("SELECT state FROM operator_requests") == [{"state": "withdrawn"}]


# -- inject -------------------------------------------------------------------------------------------
def test_inject_into_a_running_net_is_taken_by_its_owner_at_once(cli: Cli, running):
    db, child = running
    result = cli("inject", db, "--packet", "Work.in=1000", "--source", "Emit", "--json")
    assert result.code == 0, result.err
    document = result.json()
    assert document["state"] == "injected" and document["owner"]["pid"] == child.pid
    [packet, epoch] = document["items"]
    assert (packet["node"], packet["port"], epoch["node"]) == ("Work", "in", "Emit")
    _out, err = child.communicate(timeout=DEADLINE)
    assert child.returncode == 0, err
    assert _sink_values(db) == sorted([i * 10 for i in range(200)] * 2 + [10000])  # Emit ran twice
    assert rows(db, "SELECT packet_id FROM history WHERE name = 'CreatePacket' AND packet_id = ?",
                (packet["packet"],))  # the IDs it printed are the ones the run made
    assert scalar(db, "SELECT count(*) FROM epochs WHERE id = ? AND state = 'finished'", (epoch["epoch"],)) == 1


def test_inject_text_output_lists_what_the_owner_injected(cli: Cli, running):
    db, child = running
    result = cli("inject", db, "--source", "Emit")
    assert result.code == 0, result.err
    assert f"pid {child.pid}" in result.out and "source epoch" in result.out and "at Emit" in result.out
    cli("stop", db)
    child.communicate(timeout=DEADLINE)


def test_inject_into_a_stopped_net_is_applied_by_the_next_resume(cli: Cli, echo_db: Path):
    result = cli("inject", echo_db, "--packet", 'Echo.in={"a": [1, 2]}', "--packet", 'Echo.in="some text"')
    assert result.code == 0, result.err
    assert "no process is running" in result.out and f"netrun resume {echo_db}" in result.out
    assert _echoed(echo_db) == ["echo 1"]  # nothing runs until a resume
    assert cli("resume", echo_db, "--path", NETS, "--no-progress").code == 0
    echoed = _echoed(echo_db)
    assert echoed[0] == "echo 1" and sorted(echoed[1:]) == sorted(["echo {'a': [1, 2]}", "echo 'some text'"])
    assert scalar(echo_db, "SELECT state FROM operator_requests") == "done"


@pytest.mark.parametrize(("argv", "code", "says"), [
    (["--packet", "Nope.in=1"], 1, ["no node 'Nope'", "Echo"]),
    (["--source", "Nope"], 1, ["no node 'Nope'"]),
    (["--packet", "Echo.out=1"], 1, ["no input port 'out'", "in"]),
    (["--packet", "Echo.in=1", "--packet", "Echo.bad=2"], 1, ["no input port 'bad'"]),  # nothing of it written
    (["--packet", "Echo.in={bad"], 2, ["Echo.in", "not JSON"]),
    (["--packet", "Echo.in=some text"], 2, ["Echo.in", "not JSON", '"some text"']),
    (["--packet", "Echo=1"], 2, ["NODE.PORT=JSON"]),
    (["--packet", "Echo.in=" + "[" * 5000 + "]" * 5000], 2, ["Echo.in", "nested too deeply"]),
    # parses, but deeper than the running net can store: refused now, not dropped at the next resume
    (["--packet", "Echo.in=" + "[" * 900 + "]" * 900], 1, ["Echo.in", "nested more than 200 levels"]),
    ([], 2, ["--packet NODE.PORT=JSON or --source NODE"]),
    # Python's json reads these, JSON has none of them: a traceback (the request's CHECK json_valid) before
    (["--packet", "Echo.in=NaN"], 2, ["Echo.in", "NaN is not a JSON value"]),
    (["--packet", 'Echo.in={"a": [1, -Infinity]}'], 2, ["Echo.in", "-Infinity is not a JSON value"]),
    (["--packet", "Echo.in=1e999"], 2, ["Echo.in", "1e999 is too large for a number"]),
])
def test_inject_refuses_bad_names_and_json_naming_them_and_writes_nothing(cli: Cli, echo_db: Path, argv, code, says):
    before = file_state(echo_db.parent, shm=False)
    result = cli("inject", echo_db, *argv)
    assert result.code == code
    for words in says:
        assert words in result.err, result.err
    assert file_state(echo_db.parent, shm=False) == before
    assert scalar(echo_db, "SELECT count(*) FROM operator_requests") == 0


@pytest.mark.parametrize("value", [float("nan"), [1, float("inf")], (1, 2), {"a": {1: 2}}, b"bytes"])
def test_request_injection_refuses_a_value_json_would_not_carry_as_it_is(echo_db: Path, value):
    # NaN failed the request's CHECK constraint (apsw.ConstraintError); a tuple arrived as a list, {1: 2} as {"1": 2}
    before = file_state(echo_db.parent, shm=False)
    with pytest.raises(netrun.ConfigError, match=r"the value for Echo\.in is not a JSON value .*nothing was injected"):
        request_injection(str(echo_db), [{"node": "Echo", "port": "in", "value": value}], timeout=1)
    assert file_state(echo_db.parent, shm=False) == before


def test_an_injection_the_owner_cannot_apply_whole_is_rejected_and_applies_nothing(tmp_path: Path):
    db = tmp_path / "finite.db"
    netrun.Net(netrun.Graph([simple_node("Hold", ["in"], in_slots=2)], []), db=db).close()  # no exec: packets stay
    three = [{"node": "Hold", "port": "in", "value": i} for i in range(3)]
    assert request_injection(str(db), three, timeout=1).state == "queued"
    assert request_injection(str(db), three[:2], timeout=1).state == "queued"
    with netrun.Net.resume(db) as net:
        net.run_step()  # the loop takes pending requests when it starts
        answers = net.query("SELECT state, answer FROM operator_requests ORDER BY id")
        assert [a["state"] for a in answers] == ["rejected", "done"]
        assert json.loads(answers[0]["answer"])["error"] == "PortFull"
        assert "capacity 2" in json.loads(answers[0]["answer"])["message"]
        assert net.query("SELECT count(*) AS n FROM packets")[0]["n"] == 2  # the second request's only


@pytest.mark.parametrize("payload", [
    # as deep as SQLite's json_valid() (the table's CHECK) takes, deeper than Python's decoder goes
    json.dumps([{"node": "Echo", "port": "in", "value": 1}])[:-1] + ", " + "[" * 999 + "]" * 999 + "]",
    json.dumps([{"node": "Echo", "port": ["in"], "value": 1}]),  # a port that is no name
    json.dumps([{"node": "Echo", "port": {"in": 1}, "value": 1}]),
])
def test_a_pending_injection_the_owner_cannot_read_is_rejected_and_the_net_still_resumes(echo_db: Path, payload):
    """The mailbox is an ordinary table: a row nobody can read is refused, it never stops the owner."""
    with closing(sqlite3.connect(echo_db)) as conn:
        conn.execute("INSERT INTO operator_requests (kind, payload, requested_at, requested_by) VALUES "
                     "('inject', ?, '2026-01-01T00:00:00+00:00', 'a test')", (payload,))
        conn.commit()
    with netrun.Net.resume(echo_db) as net:
        net.run_step()
        answers = net.query("SELECT state, answer FROM operator_requests")
    assert [a["state"] for a in answers] == ["rejected"] and "malformed" in answers[0]["answer"]


def test_a_refused_injection_is_an_error_naming_the_reason(cli: Cli, tmp_path: Path):
    db = tmp_path / "finite.db"
    net = netrun.Net(netrun.Graph([simple_node("Hold", ["in"], in_slots=1)], []), db=db)
    stop = threading.Event()

    def owner() -> None:  # runs the net again and again, as a service would
        while not stop.is_set():
            net.run_step()
            time.sleep(0.01)

    thread = threading.Thread(target=owner)
    thread.start()
    try:
        result = cli("inject", db, "--packet", "Hold.in=1", "--packet", "Hold.in=2")
    finally:
        stop.set()
        thread.join(DEADLINE)
        net.close()
    assert result.code == 1
    assert "refused the injection, nothing was injected" in result.err and "capacity 1" in result.err
    assert scalar(db, "SELECT count(*) FROM packets") == 0


# -- restore ------------------------------------------------------------------------------------------
def _stamps(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def checkpoint(cli: Cli, tmp_path: Path, running) -> Path:
    """A checkpoint of slow.toml stopped mid-run (work left)."""
    db, child = running
    assert cli("stop", db).code == 0
    child.communicate(timeout=DEADLINE)
    folder = tmp_path / "backups" / "x"
    assert cli("checkpoint", db, folder).code == 0
    return folder


def test_restore_makes_a_new_database_that_resumes_and_never_touches_the_checkpoint(
        cli: Cli, checkpoint: Path, tmp_path: Path, monkeypatch):
    before = _stamps(checkpoint)
    new = tmp_path / "restored.db"
    result = cli("restore", checkpoint, "--db", new)
    assert result.code == 0, result.err
    assert f"netrun resume {new}" in result.out
    assert _stamps(checkpoint) == before
    assert _resume_fast(cli, new, monkeypatch) == 0
    assert _sink_values(new) == [i * 10 for i in range(200)]
    assert _stamps(checkpoint) == before  # bytes and times: same files, no -wal, -shm or -lock


def test_restore_carries_the_wal_of_a_checkpoint_run_in_place_without_changing_it(
        cli: Cli, checkpoint: Path, tmp_path: Path):
    db = checkpoint / "net.db"
    # someone ran the checkpoint in place and died: a -wal with a committed line, and its -shm
    script = ("import sqlite3, sys, os\nc = sqlite3.connect(sys.argv[1])\nc.execute('PRAGMA journal_mode = WAL')\n"
              "c.execute(\"INSERT INTO node_logs (node_name, timestamp, text) VALUES ('Sink', 'now', 'got 99999')\")\n"
              "c.commit()\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", script, str(db)], check=True, timeout=DEADLINE)
    assert Path(f"{db}-wal").exists() and Path(f"{db}-shm").exists()
    before = _stamps(checkpoint)
    new = tmp_path / "restored.db"
    assert cli("restore", checkpoint, "--db", new).code == 0
    assert _stamps(checkpoint) == before
    assert not Path(f"{new}-wal").exists()  # folded into the copy
    assert 99999 in _sink_values(new)  # what the WAL held


def test_restore_refuses_an_existing_file_unless_force(cli: Cli, checkpoint: Path, echo_db: Path, tmp_path: Path):
    before = file_state(echo_db.parent, shm=False)
    result = cli("restore", checkpoint, "--db", echo_db)
    assert result.code == 2 and "already exists" in result.err and "--force" in result.err
    assert file_state(echo_db.parent, shm=False) == before
    foreign = tmp_path / "notes.txt"
    foreign.write_text("mine")
    assert cli("restore", checkpoint, "--db", foreign, "--force").code == 1
    assert foreign.read_text() == "mine"
    assert cli("restore", checkpoint, "--db", echo_db, "--force").code == 0
    assert scalar(echo_db, "SELECT count(*) FROM epochs WHERE node_name = 'Work'") > 0  # the checkpoint's net


def test_restore_of_a_folder_that_is_no_checkpoint_is_an_error(cli: Cli, tmp_path: Path):
    (tmp_path / "empty").mkdir()
    result = cli("restore", tmp_path / "empty", "--db", tmp_path / "new.db")
    assert result.code == 1 and "not a netrun checkpoint" in result.err
    assert not (tmp_path / "new.db").exists()


@pytest.mark.parametrize("command", [["restore", "{checkpoint}", "--db", "{db}", "--force"],
                                     ["restore", "{checkpoint}", "--db", "{link}", "--force"],
                                     ["run", str(WORDFREQ_TOML), "--db", "{db}", "--overwrite", "--no-progress"]])
def test_replacing_a_checkpoints_database_is_refused(cli: Cli, checkpoint: Path, tmp_path: Path, command):
    # --force and --overwrite deleted the checkpoint's net.db (restore then found no checkpoint to copy)
    link = tmp_path / "link.db"
    link.symlink_to(checkpoint / "net.db")
    before = _stamps(checkpoint)
    result = cli(*(arg.format(checkpoint=checkpoint, db=checkpoint / "net.db", link=link) for arg in command))
    assert result.code == 1
    assert "would change the checkpoint" in result.err and f"netrun restore {checkpoint} --db" in result.err
    assert _stamps(checkpoint) == before  # no file replaced, removed or added (no -lock)
    assert link.is_symlink()


@pytest.mark.parametrize("command", [["resume", "{db}"], ["inject", "{db}", "--source", "Emit"],
                                     ["prune", "{db}", "--older-than", "0s"]])
def test_commands_that_would_change_a_checkpoints_database_refuse_and_name_restore(cli: Cli, checkpoint: Path,
                                                                                   command):
    before = _stamps(checkpoint)
    result = cli(*(arg.format(db=checkpoint / "net.db") for arg in command))
    assert result.code == 1
    assert f"netrun restore {checkpoint} --db" in result.err
    assert _stamps(checkpoint) == before


LOCK_HOLDER = ("import sqlite3, sys\nc = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
               "c.execute('BEGIN IMMEDIATE')\nprint('locked', flush=True)\nsys.stdin.read()\n")


@pytest.mark.parametrize("command", [["inject", "{db}", "--source", "Echo"], ["prune", "{db}", "--older-than", "0s"],
                                     ["dlq", "{db}", "replay", "--all"]])
def test_a_write_lock_another_process_keeps_is_one_error_naming_the_file(cli: Cli, echo_db: Path, monkeypatch,
                                                                         command):
    # past the busy timeout these printed apsw.BusyError's traceback
    monkeypatch.setattr(netrun.db, "BUSY_TIMEOUT_MS", 300)
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(echo_db)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = cli(*(arg.format(db=echo_db) for arg in command))
    finally:
        holder.communicate("", timeout=DEADLINE)
    assert result.code == 1
    assert result.error_lines() == [f"netrun: error: {echo_db} stayed locked (database is locked): another process "
                                    "held its write lock for over 0.3 s (a transaction left open, in a sqlite3 shell "
                                    "say); try again once it ends"]
