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


def test_prune_takes_the_url(cli, failed_run):
    """Both `prune` and a net's `retention` work on PostgreSQL (tests/integration/test_retention.py runs on both)."""
    before = cli("sql", failed_run, "SELECT count(*) AS n FROM epochs", "--json").json()[0]["n"]
    dry = cli("prune", failed_run, "--older-than", "0s", "--dry-run", "--json")
    assert dry.code == 0, dry.err
    assert cli("sql", failed_run, "SELECT count(*) AS n FROM epochs", "--json").json()[0]["n"] == before
    done = cli("prune", failed_run, "--older-than", "0s", "--json")
    assert done.code == 0, done.err
    assert done.json()["removed"] == dry.json()["removed"] and done.json()["removed"]["epochs"] > 0
    left = cli("sql", failed_run, "SELECT count(*) AS n FROM epochs", "--json").json()[0]["n"]
    assert 0 < left < before  # the epochs that hold pending dead letters stay
    assert cli("dlq", failed_run, "list", "--json").json() != []


def test_export_takes_the_url(cli, failed_run, tmp_path):
    letters = cli("export", failed_run, "--table", "dead_letters", "--format", "json")
    assert letters.code == 0, letters.err
    exported = letters.json()
    assert sorted(row["value"] for row in exported) == [1, 3, 5]  # JSON values as JSON, as from a file
    assert all(row["value_kind"] == "json" for row in exported)
    folder = cli("export", failed_run, "--output", tmp_path / "all", "--format", "jsonl")
    assert folder.code == 0, folder.err
    sqlite_net = tmp_path / "same.db"
    assert cli("run", FAILING_TOML, "--db", sqlite_net, "--no-progress", "--path", HERE).code == 0
    assert cli("export", sqlite_net, "--output", tmp_path / "file", "--format", "jsonl").code == 0
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == sorted(p.name for p in (tmp_path / "file").iterdir())
    missing = cli("export", failed_run.replace("postgres@", "postgres:secret@"), "--table", "nope")
    assert missing.code == 1 and "has no table 'nope'" in missing.err and "secret" not in missing.err


def test_logs_search_takes_the_url(cli, failed_run, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    found = cli("logs", failed_run, "--search", "odd value 3", "--json")
    assert found.code == 0, found.err
    assert sorted(f["source"] for f in found.json()) == ["attempt", "attempt", "dead_letter"]
    assert all(f["text"] == "ValueError: odd value 3 refused" for f in found.json())
    [index] = (tmp_path / "cache" / "netrun" / "search").iterdir()  # the index: a cache file of this user's
    assert index.name.endswith("-search")
    again = cli("logs", failed_run, "--search", "collected", "--json")
    assert [f["text"] for f in again.json()] == [f"collected {n}" for n in (20, 40, 60)]


def test_restore_a_checkpoint_into_a_url(cli, failed_run, tmp_path, pg_server):
    from tests.conftest import new_net_url

    assert cli("checkpoint", failed_run, tmp_path / "ckpt").code == 0
    target = new_net_url(pg_server)
    done = cli("restore", tmp_path / "ckpt", "--db", target)
    assert done.code == 0, done.err
    assert cli("dlq", target, "list", "--json").json() == cli("dlq", failed_run, "list", "--json").json()
    again = cli("restore", tmp_path / "ckpt", "--db", target)
    assert again.code == 2 and "already holds a net" in again.err
    assert cli("restore", tmp_path / "ckpt", "--db", target, "--force").code == 0
    assert cli("resume", target, "--no-progress", "--path", HERE).code == 0
