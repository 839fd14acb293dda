"""Remote workers (`netrun worker` processes given only the URL and --path) under the crash
semantics, across processes: killed, frozen past their lease, cut from the database, with a clock an
hour off. Every test checks that no value is lost or delivered twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest

import netrun
from netrun.graphs import chain
from tests.integration import remote_nodes as rn

REPO = Path(__file__).resolve().parents[2]
VALUES = list(range(1, 9))
DEADLINE = 60.0


@pytest.fixture(autouse=True)
def clear_results():
    rn.RESULTS.clear()
    yield
    rn.RESULTS.clear()


class Workers:
    """`netrun worker` subprocesses of one test, stopped (SIGTERM, then SIGKILL) at its end."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.procs: list[subprocess.Popen] = []
        self.errors: dict[int, str] = {}  # pid -> what the worker wrote to stderr (once stopped)

    def start(self, n: int = 1, *, hold: str = "", skew_hours: float = 0.0) -> list[subprocess.Popen]:
        env = dict(os.environ, REMOTE_TEST_DIR=str(self.folder), REMOTE_TEST_HOLD=hold)
        argv = ["worker", "--db", self.url, "--pool", "cpu", "--path", str(REPO)]
        if skew_hours:
            code = SKEWED.format(root=str(REPO), hours=skew_hours, argv=argv)
        else:
            code = f"import sys; sys.path.insert(0, {str(REPO)!r}); from netrun.cli import main; sys.exit(main({argv!r}))"
        started = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True) for _ in range(n)]
        self.procs += started
        return started

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if not proc.stderr.closed:
                self.errors[proc.pid] = proc.stderr.read()
                proc.stderr.close()


SKEWED = textwrap.dedent("""
    import sys, datetime
    sys.path.insert(0, {root!r})
    from netrun import clock
    real_now = clock.SystemClock.now
    clock.SystemClock.now = lambda self: real_now(self) + datetime.timedelta(hours={hours})
    from netrun.cli import main
    sys.exit(main({argv!r}))
""")


@pytest.fixture
def workers(pg_url, tmp_path):
    found = Workers(pg_url, tmp_path)
    yield found
    found.stop()


def remote_net(url: str, *, deferred: bool, lease: float = 1.0) -> netrun.Net:
    net = netrun.Net(chain("Src", "Work", "Sink"), db=url, remote_pools={"cpu": {}}, lease_seconds=lease,
                     on_error="continue")
    net.set_node_exec("Work", rn.times_ten)
    net.set_node_exec("Sink", rn.record)
    net.set_node_config("Work", pool="cpu", defer_net_actions=deferred, retries=1 if deferred else 0)
    for value in VALUES:
        net.inject_packet("Work", "in", value)
    return net


def started_pid(folder: Path) -> int:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        found = list(folder.glob("started-*"))
        if found:
            return int(found[0].name.split("-", 1)[1])
        time.sleep(0.01)
    raise AssertionError("no worker started the first epoch")


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def run_in_background(net: netrun.Net) -> threading.Thread:
    thread = threading.Thread(target=net.start, daemon=True)
    thread.start()
    return thread


def finish(net: netrun.Net, thread: threading.Thread) -> None:
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the run did not finish"


def test_workers_given_only_the_url_run_every_epoch_once(pg_url, workers):
    net = remote_net(pg_url, deferred=True)
    with net:
        workers.start(3)
        wait_for(lambda: net.query("SELECT count(*) AS n FROM workers")[0]["n"] == 3, "3 workers registered")
        net.start()
        assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]
        ran = net.query("SELECT worker, count(*) AS n FROM epoch_jobs WHERE state = 'done' GROUP BY worker")
        assert sum(r["n"] for r in ran) == len(VALUES) and all(r["worker"].startswith("remote:cpu:") for r in ran)
        registered = net.query("SELECT id, pid, pools, concurrency FROM workers ORDER BY id")
        assert len(registered) == 3 and {r["pid"] for r in registered} == {p.pid for p in workers.procs}
    with netrun.NetInspector(pg_url) as inspector:
        listed = inspector.status()["workers"]
        assert {w["pid"] for w in listed} == {p.pid for p in workers.procs}


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "not-deferred"])
def test_results_big_and_small_reach_the_owner_once_each(pg_url, workers, deferred):
    """A small result rides in the notification that announces it; a big one is read from its row."""
    net = remote_net(pg_url, deferred=deferred)
    net.set_node_exec("Work", rn.big_or_small)
    with net:
        workers.start(2)
        net.start()
        expected = sorted(("x" * 20_000 + str(v) if v % 2 else v * 10 for v in VALUES), key=str)
        assert sorted(rn.RESULTS, key=str) == expected
        assert net.query("SELECT count(*) AS n FROM epoch_results") == [{"n": 0}]
        assert net.query("SELECT count(*) AS n FROM epoch_jobs WHERE state = 'done' AND outcome = 'finished'") == \
            [{"n": len(VALUES)}]


@pytest.fixture
def file_workers(tmp_path):
    """Workers of a net in an SQLite file (on one machine: no notifications there, they poll the tables)."""
    found = Workers(str(tmp_path / "remote.db"), tmp_path)
    yield found
    found.stop()


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "not-deferred"])
def test_workers_of_a_net_in_an_sqlite_file_run_every_epoch_once(file_workers, deferred):
    net = remote_net(file_workers.url, deferred=deferred)
    net.set_node_exec("Work", rn.big_or_small)
    with net:
        file_workers.start(2)
        net.start()
        expected = sorted(("x" * 20_000 + str(v) if v % 2 else v * 10 for v in VALUES), key=str)
        assert sorted(rn.RESULTS, key=str) == expected
        assert net.query("SELECT state, count(*) AS n FROM epoch_jobs GROUP BY state") == \
            [{"state": "done", "n": len(VALUES)}]
        assert net.query("SELECT count(*) AS n FROM epochs WHERE node_name = 'Work' AND state = 'finished'") == \
            [{"n": len(VALUES)}]


def test_node_code_that_raises_system_exit_stops_its_worker_with_the_cause(file_workers):
    """SystemExit out of node code ends a `netrun worker` as it would end a process running the node in
    its main thread: exit status 1, the node, the epoch and the traceback on stderr (before, the thread
    serving the job died and the worker went on with less capacity, saying nothing). The epoch goes
    back to the owner when its lease ends and runs again on another worker (deferred)."""
    net = remote_net(file_workers.url, deferred=True)
    net.set_node_exec("Work", rn.exits_first)
    with net:
        [first] = file_workers.start(1)
        thread = run_in_background(net)
        assert first.wait(DEADLINE) == 1
        file_workers.start(1)
        finish(net, thread)
        file_workers.stop()
        err = file_workers.errors[first.pid]
        [interrupted] = net.query("SELECT epoch_id FROM epoch_attempts WHERE outcome = 'failed'")
        assert "SystemExit: 3 escaped the node's code in node 'Work'" in err
        assert interrupted["epoch_id"] in err and "raise SystemExit(3)" in err  # the node's traceback
        assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]  # every value once


def test_a_start_function_that_raises_in_a_worker_stops_the_run_and_the_worker(pg_url, workers):
    """The owner hears of it (a notification: no NUL may travel in one, and the error has one) and
    raises it to the caller; the worker exits with status 1 naming the node. Nothing ran."""
    net = remote_net(pg_url, deferred=True)
    net.set_node_exec("Work", rn.times_ten, start_node_func=rn.start_raises)
    with net:
        [proc] = workers.start(1)
        with pytest.raises(netrun.NodeExecutionFailed, match="start_node_func of node 'Work'.*cannot open resource"):
            net.start()
        assert proc.wait(DEADLINE) == 1
        workers.stop()
        assert "start_node_func of node 'Work' raised" in workers.errors[proc.pid]
        assert rn.RESULTS == []
        assert net.query("SELECT state, count(*) AS n FROM epochs WHERE node_name = 'Work' GROUP BY state") == \
            [{"state": "startable", "n": len(VALUES)}]  # none ran: a resume with a fixed start function runs them


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "not-deferred"])
def test_an_owner_whose_connections_are_cut_goes_on_when_started_again(pg_url, pg_server, workers, deferred):
    """Every connection of the owner's process is cut mid-run (a server restart would do the same): the
    run stops with StorageError; started again, the owner reconnects, takes its lock back and goes on.
    Every value arrives once."""
    net = remote_net(pg_url, deferred=deferred)
    with net:
        [worker] = workers.start(1, hold="1")  # the first epoch waits a second: the cut comes meanwhile
        thread_errors: list = []
        thread = threading.Thread(target=lambda: _record_error(net.start, thread_errors), daemon=True)
        thread.start()
        started_pid(Path(os.environ.get("REMOTE_TEST_DIR", workers.folder)))
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            cut = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                "WHERE application_name = %s", (f"netrun:{os.getpid()}",)).fetchone()[0]
        assert cut >= 2  # its write connection and its lock's at least
        finish(net, thread)
        assert len(thread_errors) == 1 and isinstance(thread_errors[0], netrun.StorageError)
        net.start()
        assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]
        assert net.query("SELECT count(*) AS n FROM epoch_jobs WHERE state = 'done'") == [{"n": len(VALUES)}]
        with netrun.NetInspector(pg_url) as inspector:
            assert inspector.status()["owner"]["pid"] == os.getpid()


def _record_error(call, errors: list) -> None:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        errors.append(exc)


@pytest.mark.parametrize("deferred", [True, False], ids=["deferred", "not-deferred"])
def test_a_worker_killed_mid_epoch(pg_url, workers, tmp_path, deferred):
    net = remote_net(pg_url, deferred=deferred)
    with net:
        workers.start(1, hold="600")
        thread = run_in_background(net)
        victim = started_pid(tmp_path)
        workers.start(1)  # the survivor
        os.kill(victim, signal.SIGKILL)
        finish(net, thread)
        lost = net.query("SELECT epoch_id, error_type FROM epoch_attempts WHERE error_type = 'WorkerLost'")
        letters = net.dead_letter_queue.get_all()
        if deferred:  # its lease ran out: it runs again, the death counted
            assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]
            assert len(lost) == 1 and letters == []
        else:  # cancelled, its input dead-lettered 'interrupted'
            assert [d.reason for d in letters] == ["interrupted"]
            assert sorted(rn.RESULTS + [letters[0].value * 10]) == [v * 10 for v in VALUES]
            assert lost == []


def test_a_worker_frozen_past_its_lease_has_its_report_refused(pg_url, workers, tmp_path):
    net = remote_net(pg_url, deferred=True)
    with net:
        [frozen] = workers.start(1, hold="0.5")
        thread = run_in_background(net)
        assert started_pid(tmp_path) == frozen.pid
        frozen.send_signal(signal.SIGSTOP)
        workers.start(1)
        finish(net, thread)  # the owner took the job back when the lease ran out; the other worker ran it
        frozen.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + DEADLINE
        refused: list = []
        while not refused and time.monotonic() < deadline:
            refused = net.query("SELECT text FROM node_logs WHERE text LIKE 'late result of worker%'")
            time.sleep(0.05)
        assert refused and "discarded" in refused[0]["text"]
        net.start()
        assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]  # once each: the late report added nothing
        assert net.query("SELECT count(*) AS n FROM epoch_results") == [{"n": 0}]


def test_a_worker_whose_connections_are_terminated_reconnects_and_goes_on(pg_url, pg_server, workers, tmp_path):
    net = remote_net(pg_url, deferred=True)
    with net:
        [cut] = workers.start(1, hold="2")  # the only worker: the run can end only if it comes back
        thread = run_in_background(net)
        assert started_pid(tmp_path) == cut.pid
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                                  "WHERE application_name = %s", (f"netrun:{cut.pid}",)).fetchone()[0]
        assert ended >= 2  # its work and heartbeat connections at least
        finish(net, thread)
        assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]  # once each
        assert cut.poll() is None  # still at work
        # the epoch it was in when cut: its report was lost, the lease ran out, it ran again (counted)
        assert net.query("SELECT count(*) AS n FROM epoch_attempts WHERE error_type = 'WorkerLost'") == [{"n": 1}]
        ran = net.query("SELECT DISTINCT worker FROM epoch_jobs WHERE state = 'done'")
        assert [r["worker"].split(":")[3] for r in ran] == [str(cut.pid)]  # all by the worker that was cut
        # its row lost (a failover to a server that had not seen it): it registers again at its next beat
        [row] = net.query("SELECT id, started_at FROM workers")
        with psycopg.connect(pg_server.url, autocommit=True) as admin:
            admin.execute(f"DELETE FROM {pg_url.rsplit('net=', 1)[1]}.workers")
        wait_for(lambda: net.query("SELECT id, pid FROM workers") == [{"id": row["id"], "pid": cut.pid}],
                 "the worker's row written again")
    workers.stop()
    assert "lost the database" in workers.errors[cut.pid] and "reconnecting" in workers.errors[cut.pid]
    assert "registering again" in workers.errors[cut.pid]


def test_a_worker_gives_up_with_one_clear_error_when_the_database_stays_away(tmp_path):
    from tests.conftest import pg_server_module

    server = pg_server_module().start()  # its own: this test stops it
    url = f"{server.url.replace('postgresql://postgres@', 'postgresql://postgres:s3cret@', 1)}?net=away"
    try:
        netrun.Net(chain("Src", "Work", "Sink"), db=url, remote_pools={"cpu": {}}).close()
        code = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from netrun.cli import main; "
                f"sys.exit(main(['worker', '--db', {url!r}, '--pool', 'cpu', '--reconnect-for', '1']))")
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
        time.sleep(1.5)
        assert proc.poll() is None
    finally:
        server.stop()
    try:
        assert proc.wait(DEADLINE) == 1
        err = proc.stderr.read()
    finally:
        proc.kill()
        proc.stderr.close()
    assert "stayed out of reach for 1 s" in err and "s3cret" not in err
    assert server.url.split("@")[-1].split("/")[0] in err  # the server's host:port, named


def test_a_worker_with_a_clock_an_hour_off_behaves_the_same(pg_url, workers):
    net = remote_net(pg_url, deferred=True, lease=2.0)
    with net:
        workers.start(1, skew_hours=-1)  # without the database's clock, every lease would have run out
        net.start()
        assert sorted(rn.RESULTS) == [v * 10 for v in VALUES]
        assert net.query("SELECT count(*) AS n FROM epoch_attempts WHERE error_type = 'WorkerLost'") == [{"n": 0}]
        [worker] = net.query("SELECT heartbeat_at FROM workers")
        skew = net.query("SELECT max(abs(extract(epoch FROM (claimed_at::timestamptz - now())))) AS s "
                         "FROM epoch_jobs")[0]["s"]
        assert float(skew) < 600 and worker["heartbeat_at"]


OWNER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun.graphs import chain
    from tests.integration import remote_nodes as rn
    net = netrun.Net(chain("Src", "Work", "Sink"), db={url!r}, remote_pools={{"cpu": {{}}}}, lease_seconds=2.0,
                     consumed_packet_storage=True)
    net.set_node_exec("Work", rn.times_ten)
    net.set_node_exec("Sink", rn.record)
    net.set_node_config("Work", pool="cpu", defer_net_actions=True)
    net.set_node_config("Sink", defer_net_actions=True)
    for value in {values!r}:
        net.inject_packet("Work", "in", value)
    print("ready", flush=True)
    net.start()
    print("the owner finished", flush=True)
""")


def owner_pid(url_base: str, schema: str) -> int | None:
    import json

    with psycopg.connect(url_base, autocommit=True) as conn:
        row = conn.execute(f'SELECT value FROM "{schema}".net_meta WHERE key = \'owner\'').fetchone()
    return json.loads(row[0])["pid"] if row else None


def test_the_owner_killed_with_a_standby_waiting(pg_url, pg_server, workers, tmp_path):
    schema = pg_url.rsplit("net=", 1)[1]
    owner = subprocess.Popen([sys.executable, "-c", OWNER.format(root=str(REPO), url=pg_url, values=VALUES)],
                             stdout=subprocess.PIPE, text=True)
    standby = None
    try:
        assert owner.stdout.readline().strip() == "ready"
        workers.start(2, hold="1.0")
        standby = subprocess.Popen([sys.executable, "-m", "netrun", "resume", pg_url, "--wait", "60",
                                    "--no-progress", "--path", str(REPO)], cwd=str(REPO),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        started_pid(tmp_path)  # the owner is mid-run: a worker holds an epoch
        time.sleep(0.3)  # the standby is waiting for the lock by now
        assert standby.poll() is None
        os.kill(owner.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: owner_pid(pg_server.url, schema) == standby.pid, "the standby to take over")
        failover = time.monotonic() - killed_at
        assert standby.wait(DEADLINE) == 0, standby.stderr.read()
    finally:
        for proc in (owner, standby):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        owner.stdout.close()
        if standby is not None:
            standby.stderr.close()
    assert failover < 1.0, f"failover took {failover:.2f}s"
    with netrun.NetInspector(pg_url) as inspector:
        sunk = inspector.query("SELECT v.data FROM packets p JOIN packet_values v ON v.packet_id = p.id "
                               "WHERE p.state = 'consumed' AND p.node_name = 'Sink'")
        assert sorted(int(r["data"]) for r in sunk) == [v * 10 for v in VALUES]  # each value once
        assert inspector.status()["state"] == "finished"
