"""Every `netrun` command that takes a database file takes a PostgreSQL URL instead."""

from __future__ import annotations

import pytest

from tests.cli.conftest import FAILING_TOML, HERE


@pytest.fixture
def failed_run(cli, pg_url):
    """The failing net (three failures, three dead letters) run to its end on PostgreSQL."""
    done = cli("run", FAILING_TOML, "--db", pg_url, "--no-progress", "--path", HERE)
    assert done.code == 0, done.err
    return pg_url


def test_run_prints_its_summary_and_status_reads_the_run(cli, failed_run):
    status = cli("status", failed_run, "--json")
    assert status.code == 0, status.err
    nodes = status.json()["nodes"]
    assert nodes["Check"]["failed"] >= 1 and nodes["Sink"]["finished"] >= 1


@pytest.mark.parametrize("argv", [
    ("status",), ("history", "--limit", "5"), ("sql", "SELECT node_name, count(*) AS n FROM epochs GROUP BY 1"),
    ("logs",), ("dlq", "list"), ("graph",), ("history", "--json"), ("dlq", "list", "--json"),
], ids=lambda a: " ".join(a))
def test_read_commands_take_the_url(cli, failed_run, argv):
    done = cli(argv[0], failed_run, *argv[1:])
    assert done.code == 0, done.err
    assert done.out.strip()


def test_trace_and_value_of_a_dead_letter(cli, failed_run):
    letters = cli("dlq", failed_run, "list", "--json").json()
    packet = letters[0]["packet"]
    value = cli("value", failed_run, packet)
    assert value.code == 0, value.err
    trace = cli("trace", failed_run, packet)
    assert trace.code == 0, trace.err


def test_dlq_replay_then_resume_and_checkpoint_restore(cli, failed_run, tmp_path):
    assert cli("dlq", failed_run, "discard", "--all").code == 0
    assert cli("resume", failed_run, "--no-progress").code == 0
    assert cli("checkpoint", failed_run, tmp_path / "ckpt").code == 0
    restored = cli("restore", tmp_path / "ckpt", "--db", tmp_path / "copy.db")
    assert restored.code == 0, restored.err
    assert cli("status", tmp_path / "copy.db").code == 0


def test_run_with_overwrite_replaces_a_net_in_a_schema(cli, failed_run):
    again = cli("run", FAILING_TOML, "--db", failed_run, "--no-progress", "--path", HERE)
    assert again.code == 2 and "already" in again.err
    replaced = cli("run", FAILING_TOML, "--db", failed_run, "--no-progress", "--path", HERE, "--overwrite")
    assert replaced.code == 0, replaced.err


def test_inject_into_a_stopped_net_then_resume_takes_it_and_stop_finds_no_owner(cli, failed_run):
    before = cli("status", failed_run, "--json").json()["nodes"]["Source"]["finished"]
    injected = cli("inject", failed_run, "--source", "Source")
    assert injected.code == 0, injected.err
    stopped = cli("stop", failed_run)
    assert stopped.code == 0, stopped.err
    assert cli("resume", failed_run, "--no-progress").code == 0
    assert cli("status", failed_run, "--json").json()["nodes"]["Source"]["finished"] == before + 1


def test_sql_refused_by_the_server_is_one_query_error(cli, pg_url):
    # lastval() before any nextval(): SQLSTATE 55000, one of psycopg's OperationalErrors, yet no lost connection
    import netrun
    from netrun.graphs import chain

    netrun.Net(chain("A", "B"), db=pg_url).close()
    done = cli("sql", pg_url, "SELECT lastval()")
    assert done.code == 1
    assert "lastval is not yet defined" in done.err and "Traceback" not in done.err
    assert "connection" not in done.err
