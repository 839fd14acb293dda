"""The read commands (status, history, sql, trace, logs) and how every command refuses a file
it cannot use. Answers are checked against the tables, read independently with sqlite3."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import datetime, timedelta, timezone
from functools import partialmethod
from pathlib import Path
from types import SimpleNamespace

import pytest
from freezegun import freeze_time

from netrun.cli import logs as logs_command
from netrun.cli.output import short_time
from netrun.shortids import short_id
from netrun.inspector import NetInspector

from .conftest import (DEADLINE, HERE, Cli, copy_db, file_state, read_until, rows, scalar, start_child, stop_child,
                       wait_for)

NODES = ["Count", "Merge", "Read", "Split", "Tokenize"]
STATES = ["startable", "queued", "running", "finished", "failed", "cancelled"]  # queued: none in these runs

HOLD_TOML = """
[nodes.Hold]
in_ports = ["in"]
exec_node_func = "cli_nodes.hold"
options = { echo_stdout = true }
"""

# Relay logs a line, Wait blocks until the file named by the packet exists, Sink logs the last line.
WAIT_TOML = """
edges = [
    { from = "Relay.out", to = "Wait.in" },
    { from = "Wait.out", to = "Sink.in" },
]

[nodes.Relay]
in_ports = ["in"]
out_ports = ["out"]
exec_node_func = "cli_nodes.relay"

[nodes.Wait]
in_ports = ["in"]
out_ports = ["out"]
exec_node_func = "cli_nodes.wait_for_file"

[nodes.Sink]
in_ports = ["in"]
exec_node_func = "cli_nodes.collect"
"""


def history_rows(db: Path, where: str = "1", params: tuple = ()) -> list[dict]:
    """History rows as `history --json` prints them (data decoded), oldest first."""
    found = rows(db, f"SELECT * FROM history WHERE {where} ORDER BY seq", params)
    for row in found:
        row["data"] = json.loads(row["data"]) if row["data"] else None
    return found


def epoch_table(text: str) -> dict[str, list[int]]:
    """The Epochs table of `status`/`run` text: node -> counts in STATES order."""
    table = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == 1 + len(STATES) and cells[0] not in table and all(c.isdigit() for c in cells[1:]):
            table[cells[0]] = [int(c) for c in cells[1:]]
    return table


def expected_counts(db: Path) -> dict[str, dict[str, int]]:
    counts = {}
    for row in rows(db, "SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2"):
        counts.setdefault(row["node_name"], dict.fromkeys(STATES, 0))[row["state"]] = row["n"]
    return counts


@pytest.fixture
def held_run(tmp_path: Path, child_processes: list) -> tuple[Path, subprocess.Popen]:
    """A child running a net whose only epoch blocks: (db, child), once the epoch runs."""
    toml = tmp_path / "hold.toml"
    toml.write_text(HOLD_TOML)
    db = tmp_path / "hold.db"
    child = start_child([sys.executable, "-m", "netrun", "run", str(toml), "--db", str(db), "--path", str(HERE),
                         "--no-progress", "--packet", "Hold.in=7"], cwd=tmp_path)
    child_processes.append(child)
    read_until(child, "ready 7")
    return db, child


# -- status ---------------------------------------------------------------------------------
def test_status_json_of_a_finished_run_counts_epochs_as_the_table_does(cli: Cli, wordfreq_db: Path):
    result = cli("status", wordfreq_db, "--json")
    assert result.code == 0 and result.err == ""
    report = result.json()
    assert report["state"] == "finished"
    assert report["owner"] is None
    counts = expected_counts(wordfreq_db)
    assert sorted(counts) == NODES
    assert report["nodes"] == counts
    assert report["history_rows"] == scalar(wordfreq_db, "SELECT count(*) FROM history")
    assert report["running_epochs"] == [] and report["dead_letters_pending"] == 0
    total = rows(wordfreq_db, "SELECT id FROM packets WHERE state = 'live'")
    assert len(total) == 1 and report["live_packets"] == 1
    assert report["waiting"]["input_ports"] == [{"node": "Merge", "port": "total", "packets": 1}]
    [left] = report["packets_left"]
    assert (left["packet"], left["location"], left["node"], left["port"]) == (
        total[0]["id"], "input_port", "Merge", "total")
    assert left["value"].startswith('{"about":')  # the word total, a dict, stored as JSON and previewed


def test_status_text_of_a_finished_run_shows_the_counts_and_the_packet_left(cli: Cli, wordfreq_db: Path):
    result = cli("status", wordfreq_db)
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0] == f"{wordfreq_db}: finished"
    counts = expected_counts(wordfreq_db)
    assert epoch_table(result.out) == {node: [counts[node][s] for s in STATES] for node in NODES}
    packet = scalar(wordfreq_db, "SELECT id FROM packets WHERE state = 'live'")
    assert any(short_id(packet) in line and "Merge" in line and "total" in line for line in lines)


def test_status_of_a_net_with_startable_work_left_is_stopped(cli: Cli, stopped_db: Path):
    report = cli("status", stopped_db, "--json").json()
    assert report["state"] == "stopped"
    assert report["nodes"]["Source"]["startable"] == 1
    assert report["nodes"] == expected_counts(stopped_db) | {
        n: dict.fromkeys(STATES, 0) for n in ("Check", "Sink")}
    result = cli("status", stopped_db)
    assert result.out.splitlines()[0] == f"{stopped_db}: stopped"
    assert f"netrun resume {stopped_db}" in result.out


def test_status_of_a_net_a_live_process_runs_is_running_with_its_pid(cli: Cli, held_run):
    db, child = held_run
    report = cli("status", db, "--json").json()
    assert report["state"] == "running"
    assert report["owner"]["pid"] == child.pid
    assert [e["node"] for e in report["running_epochs"]] == ["Hold"]
    result = cli("status", db)
    assert result.code == 0
    assert result.out.splitlines()[0].startswith(f"{db}: running (pid {child.pid} on ")


def test_status_after_the_process_died_mid_epoch_is_interrupted_and_changes_nothing(cli: Cli, held_run):
    db, child = held_run
    stop_child(child)  # SIGKILL while Hold's epoch runs
    report = cli("status", db, "--json").json()
    assert report["state"] == "interrupted"
    assert report["owner"] is None
    [epoch] = report["running_epochs"]
    assert epoch["node"] == "Hold"
    assert scalar(db, "SELECT state FROM epochs WHERE id = ?", (epoch["epoch"],)) == "running"
    result = cli("status", db)
    assert result.out.splitlines()[0] == f"{db}: interrupted"
    assert f"netrun resume {db}" in result.out
    # status applied no crash semantics: a resume does (the packet inside is dead-lettered)
    assert cli("dlq", db, "list", "--json").json() == []
    assert cli("resume", db, "--path", HERE, "--no-progress").code == 0
    [letter] = cli("dlq", db, "list", "--json").json()
    assert (letter["node"], letter["reason"], letter["value"]) == ("Hold", "interrupted", "7")


@pytest.mark.parametrize("action", ["discard", "replay"])
def test_dlq_all_on_an_interrupted_net_leaves_the_interrupted_epochs_packet_pending(cli: Cli, held_run, action):
    db, child = held_run
    stop_child(child)  # SIGKILL while Hold's epoch runs: no dead letter yet
    assert cli("dlq", db, "list", "--json").json() == []
    result = cli("dlq", db, action, "--all", "--json")
    assert result.code == 0 and result.json() == []  # --all meant the pending ones listed: none
    assert "was interrupted with 1 epoch(s) running; opening it applies the crash semantics" in result.err
    # opening the net applied the crash semantics; the packet it dead-lettered waits for a decision
    [letter] = cli("dlq", db, "list", "--json").json()
    assert (letter["node"], letter["reason"], letter["status"], letter["value"]) == (
        "Hold", "interrupted", "pending", "7")


# -- history --------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "where", "params"), [
    (["--node", "Merge"], "node_name = ?", ("Merge",)),
    (["--kind", "action"], "type = ?", ("action",)),
    (["--kind", "event"], "type = ?", ("event",)),
    (["--kind", "packetmoved"], "name = ?", ("PacketMoved",)),  # a record name, any case
    (["--node", "Split", "--kind", "StartEpoch"], "node_name = ? AND name = ?", ("Split", "StartEpoch")),
])
def test_history_filters_select_the_rows_sqlite_selects(cli: Cli, wordfreq_db: Path, args, where, params):
    expected = history_rows(wordfreq_db, where, params)
    assert 0 < len(expected) < scalar(wordfreq_db, "SELECT count(*) FROM history")
    result = cli("history", wordfreq_db, *args, "--limit", "0", "--json")
    assert result.code == 0
    assert result.json() == expected


def test_history_of_a_kind_no_record_has_names_the_kinds_there_are(cli: Cli, wordfreq_db: Path):
    result = cli("history", wordfreq_db, "--kind", "PacketMovd")
    assert result.code == 0
    assert "(no history records match)" in result.out
    assert "no record of this run is named 'PacketMovd'" in result.err
    assert "PacketMoved" in result.err and "StartEpoch" in result.err
    assert cli("history", wordfreq_db, "--kind", "packetmoved").err == ""  # a name it has: no hint


def test_status_through_a_symlink_of_a_running_net_sees_its_wal(cli: Cli, held_run, tmp_path: Path):
    db, child = held_run
    link = tmp_path / "link-to-run.db"
    link.symlink_to(db)
    report = cli("status", link, "--json").json()
    assert report["state"] == "running" and report["owner"]["pid"] == child.pid
    assert [e["node"] for e in report["running_epochs"]] == ["Hold"]


def test_history_by_epoch_and_by_packet(cli: Cli, wordfreq_db: Path):
    epoch = rows(wordfreq_db, "SELECT id FROM epochs WHERE node_name = 'Split' ORDER BY id LIMIT 1")[0]["id"]
    packet = scalar(wordfreq_db, "SELECT id FROM packets WHERE state = 'live'")
    by_epoch = cli("history", wordfreq_db, "--epoch", epoch, "--limit", "0", "--json").json()
    assert by_epoch == history_rows(wordfreq_db, "epoch_id = ?", (epoch,)) and by_epoch
    by_packet = cli("history", wordfreq_db, "--packet", packet, "--limit", "0", "--json").json()
    assert by_packet == history_rows(wordfreq_db, "packet_id = ?", (packet,)) and by_packet
    assert {row["packet_id"] for row in by_packet} == {packet}


def test_history_limit_keeps_the_newest_rows_oldest_first(cli: Cli, wordfreq_db: Path):
    everything = history_rows(wordfreq_db)
    assert cli("history", wordfreq_db, "--limit", "5", "--json").json() == everything[-5:]
    assert cli("history", wordfreq_db, "--json").json() == everything[-100:]  # the default limit
    merge = history_rows(wordfreq_db, "node_name = 'Merge'")
    assert cli("history", wordfreq_db, "--node", "Merge", "--limit", "3", "--json").json() == merge[-3:]


def test_history_text_prints_one_line_per_record(cli: Cli, wordfreq_db: Path):
    expected = history_rows(wordfreq_db, "node_name = 'Merge'")[-3:]
    lines = cli("history", wordfreq_db, "--node", "Merge", "--limit", "3").out.splitlines()
    assert len(lines) == 3
    for line, row in zip(lines, expected):
        assert line.split()[:5] == [str(row["seq"]), *short_time(row["timestamp"]).split(), row["type"], row["name"]]
        assert "node=Merge" in line


def test_history_since_an_age_counts_back_from_now(cli: Cli, wordfreq_db: Path):
    everything = history_rows(wordfreq_db)
    middle = everything[len(everything) // 2]["timestamp"]
    expected = [row for row in everything if row["timestamp"] >= middle]
    assert 0 < len(expected) < len(everything)
    with freeze_time(datetime.fromisoformat(middle) + timedelta(minutes=10)):
        assert cli("history", wordfreq_db, "--since", "10m", "--limit", "0", "--json").json() == expected
        assert cli("history", wordfreq_db, "--since", "600s", "--limit", "0", "--json").json() == expected
        assert cli("history", wordfreq_db, "--since", "1m", "--limit", "0", "--json").json() == []


def test_history_since_an_iso_time(cli: Cli, wordfreq_db: Path):
    everything = history_rows(wordfreq_db)
    middle = everything[len(everything) // 2]["timestamp"]
    expected = [row for row in everything if row["timestamp"] >= middle]
    assert cli("history", wordfreq_db, "--since", middle, "--limit", "0", "--json").json() == expected
    # the same instant in another zone, and naive (read as UTC)
    moment = datetime.fromisoformat(middle)
    other_zone = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    assert cli("history", wordfreq_db, "--since", other_zone, "--limit", "0", "--json").json() == expected
    naive = moment.replace(tzinfo=None).isoformat()
    assert cli("history", wordfreq_db, "--since", naive, "--limit", "0", "--json").json() == expected


def test_history_since_a_time_in_the_future_matches_nothing(cli: Cli, wordfreq_db: Path):
    assert cli("history", wordfreq_db, "--since", "2999-01-01T00:00", "--json").json() == []
    result = cli("history", wordfreq_db, "--since", "2999-01-01T00:00")
    assert result.code == 0
    assert result.out.strip() == "(no history records match)"


def test_history_since_an_age_older_than_any_date_matches_every_record(cli: Cli, wordfreq_db: Path):
    result = cli("history", wordfreq_db, "--since", "99999999999d", "--limit", "0", "--json")
    assert result.code == 0, result.err
    assert len(result.json()) == scalar(wordfreq_db, "SELECT count(*) FROM history")


def test_a_reader_that_leaves_early_gets_no_traceback(wordfreq_db: Path):
    # `netrun history FILE --json | true`: the pipe's reader is gone before the JSON is written
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "netrun", "history", str(wordfreq_db), "--json"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=DEADLINE)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""


@pytest.mark.parametrize(("args", "named"), [
    (["--node", "Nope"], "'Nope'"),
    (["--since", "yesterday"], "'yesterday'"),
])
def test_history_with_a_bad_filter_is_an_error_naming_it(cli: Cli, wordfreq_db: Path, args, named):
    result = cli("history", wordfreq_db, *args)
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and named in line


# -- sql --------------------------------------------------------------------------------------
def test_sql_returns_the_rows_of_the_query(cli: Cli, wordfreq_db: Path):
    query = "SELECT node_name, state, count(*) AS n FROM epochs GROUP BY 1, 2 ORDER BY 1, 2"
    result = cli("sql", wordfreq_db, query, "--json")
    assert result.code == 0
    assert result.json() == rows(wordfreq_db, query)
    text = cli("sql", wordfreq_db, query).out
    assert "node_name" in text and "state" in text
    assert any("Tokenize" in line and "finished" in line and "30" in line for line in text.splitlines())


def test_sql_binds_params_in_order(cli: Cli, wordfreq_db: Path):
    query = "SELECT count(*) AS n FROM epochs WHERE node_name = ? AND state = ?"
    result = cli("sql", wordfreq_db, query, "--param", "Tokenize", "--param", "finished", "--json")
    assert result.json() == [{"n": 30}] == rows(wordfreq_db, query, ("Tokenize", "finished"))
    assert cli("sql", wordfreq_db, query, "--param", "Nope", "--param", "finished", "--json").json() == [{"n": 0}]


def test_sql_binds_a_param_written_as_a_number_as_a_number(cli: Cli, wordfreq_db: Path):
    query = "SELECT node_name, count(*) AS n FROM epochs GROUP BY 1 HAVING count(*) > ? ORDER BY 1"
    result = cli("sql", wordfreq_db, query, "--param", "5", "--json")
    assert result.json() == rows(wordfreq_db, query, (5,))  # bound as 5, not as the text '5'
    assert {"node_name": "Count", "n": 30} in result.json() and {"node_name": "Tokenize", "n": 30} in result.json()
    assert all(r["n"] > 5 for r in result.json())
    assert cli("sql", wordfreq_db, "SELECT ? AS a, ? AS b, ? AS c, ? AS d", "--param", "-2.5", "--param", "007",
               "--param", "1e3", "--param", "Count", "--json").json() == [{"a": -2.5, "b": "007", "c": 1000.0,
                                                                            "d": "Count"}]
    # a number still matches a text column (its affinity): a node named "1" would be found
    query = "SELECT count(*) AS n FROM epochs WHERE attempt = ? AND node_name != ?"
    assert cli("sql", wordfreq_db, query, "--param", "1", "--param", "7", "--json").json() == [
        {"n": scalar(wordfreq_db, "SELECT count(*) FROM epochs WHERE attempt = 1")}]


def test_sql_with_no_rows_says_so(cli: Cli, wordfreq_db: Path):
    assert cli("sql", wordfreq_db, "SELECT * FROM epochs WHERE 0", "--json").json() == []
    assert cli("sql", wordfreq_db, "SELECT * FROM epochs WHERE 0").out.strip() == "(no rows)"


@pytest.mark.parametrize("statement", [
    "DELETE FROM history_actions",
    "UPDATE epochs SET state = 'failed'",
    "INSERT INTO node_logs (node_name, timestamp, text) VALUES ('Read', 'now', 'x')",
    "DROP TABLE history",
    "PRAGMA user_version = 7",
    "WITH gone AS (SELECT 1) DELETE FROM history_actions",
    "SELECT 1; DELETE FROM history_actions",
    # SQLite applies query_only while compiling the pragma, even under EXPLAIN: the guard must refuse it then
    "EXPLAIN PRAGMA query_only = 0; WITH gone AS (SELECT 1) DELETE FROM history_actions",
    "EXPLAIN PRAGMA query_only = 0; DELETE FROM history_actions",
])
def test_sql_refuses_a_statement_that_writes_and_the_file_is_unchanged(cli: Cli, wordfreq_db: Path, statement):
    before = file_state(wordfreq_db.parent, shm=False)
    count = scalar(wordfreq_db, "SELECT count(*) FROM history")
    result = cli("sql", wordfreq_db, statement)
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and "read-only" in line
    assert file_state(wordfreq_db.parent, shm=False) == before
    assert scalar(wordfreq_db, "SELECT count(*) FROM history") == count


def test_sql_reads_a_query_that_starts_with_a_comment(cli: Cli, wordfreq_db: Path):
    for comment in ("/* per node */ ", "-- per node\n"):
        statement = comment + "SELECT count(*) AS n FROM epochs"
        result = cli("sql", wordfreq_db, statement, "--json")
        assert result.code == 0, result.err
        assert result.json() == [{"n": scalar(wordfreq_db, "SELECT count(*) FROM epochs")}]


@pytest.mark.parametrize(("statement", "says"), [
    ("SELECT 1 AS a; SELECT 2 AS b", "one statement"),  # b's rows would be printed as a's
    ("-- only a comment", "no SQL statement"),
    ("SELEC 1", "syntax error"),
    ("SELECT * FROM no_such_table", "no_such_table"),
    ("SELECT ?", "bindings"),  # a ? without --param
])
def test_sql_with_a_bad_statement_is_one_error_message(cli: Cli, wordfreq_db: Path, statement, says):
    result = cli("sql", wordfreq_db, statement)
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and says in line


# -- trace --------------------------------------------------------------------------------------
def test_trace_of_a_tokenize_output_walks_both_ways(cli: Cli, wordfreq_db: Path):
    made = rows(wordfreq_db, "SELECT packet_id, epoch_id FROM history WHERE type = 'action' AND name = "
                "'CreatePacket' AND node_name = 'Tokenize' ORDER BY seq LIMIT 1")[0]
    packet, tokenize_epoch = made["packet_id"], made["epoch_id"]
    # independently: its Tokenize epoch's input (a line), and the Split input that line came from
    [[_, line]] = json.loads(scalar(wordfreq_db, "SELECT salvo FROM epochs WHERE id = ?", (tokenize_epoch,)))
    split_epoch = scalar(wordfreq_db, "SELECT epoch_id FROM history WHERE name = 'CreatePacket' AND type = "
                         "'action' AND packet_id = ?", (line,))
    [[_, document]] = json.loads(scalar(wordfreq_db, "SELECT salvo FROM epochs WHERE id = ?", (split_epoch,)))
    count_epoch = scalar(wordfreq_db, "SELECT epoch_id FROM packets WHERE id = ?", (packet,))
    counted = {r["packet_id"] for r in rows(wordfreq_db, "SELECT packet_id FROM history WHERE type = 'action' "
                                            "AND name = 'CreatePacket' AND epoch_id = ?", (count_epoch,))}

    result = cli("trace", wordfreq_db, packet, "--json")
    assert result.code == 0
    lineage = result.json()
    assert set(lineage) == {"packet", "value", "origin", "end", "path", "ancestors", "descendants", "truncated"}
    assert lineage["packet"] == packet
    assert lineage["value"] is None  # consumed, and the example keeps no consumed values
    assert lineage["origin"]["how"] == "created"
    assert (lineage["origin"]["epoch"], lineage["origin"]["node"]) == (tokenize_epoch, "Tokenize")
    assert lineage["end"]["state"] == "consumed"
    assert (lineage["end"]["epoch"], lineage["end"]["node"]) == (count_epoch, "Count")
    assert [step["seq"] for step in lineage["path"]] == [
        r["seq"] for r in rows(wordfreq_db, "SELECT seq FROM history WHERE packet_id = ? ORDER BY seq", (packet,))]
    ancestors = {a["packet"]: a for a in lineage["ancestors"]}
    assert ancestors[line]["depth"] == -1 and ancestors[line]["origin"]["node"] == "Split"
    assert ancestors[document]["depth"] == -2
    assert ancestors[document]["end"]["node"] == "Split"  # the Split input, made by Read
    assert ancestors[document]["origin"]["node"] == "Read"
    descendants = {d["packet"]: d for d in lineage["descendants"]}
    assert counted and counted <= set(descendants)
    assert all(descendants[p]["depth"] == 1 and descendants[p]["origin"]["node"] == "Count" for p in counted)
    assert lineage["truncated"] is False

    text = cli("trace", wordfreq_db, packet).out
    assert f"came from: epoch {short_id(tokenize_epoch)} of Tokenize" in text
    assert f"went to:   consumed in epoch {short_id(count_epoch)} of Count" in text
    assert short_id(line) in text and short_id(document) in text and all(short_id(p) in text for p in counted)


def test_trace_shows_the_value_of_a_packet_that_has_one_stored(cli: Cli, wordfreq_db: Path):
    packet = scalar(wordfreq_db, "SELECT id FROM packets WHERE state = 'live'")  # the word total
    lineage = cli("trace", wordfreq_db, packet, "--json").json()
    assert lineage["value"].startswith('{"about":3,"all":3')  # JSON text, as stored
    assert len(lineage["value"]) > 200  # the long preview, not the table's
    text = cli("trace", wordfreq_db, packet).out
    assert '  value:     {"about":3,"all":3' in text
    consumed = scalar(wordfreq_db, "SELECT id FROM packets WHERE state = 'consumed' LIMIT 1")
    assert "value:     (not stored: consumed values are kept only with consumed_packet_storage)" in cli(
        "trace", wordfreq_db, consumed).out


def test_trace_depth_bounds_the_walk(cli: Cli, wordfreq_db: Path):
    packet = rows(wordfreq_db, "SELECT packet_id FROM history WHERE type = 'action' AND name = 'CreatePacket' "
                  "AND node_name = 'Tokenize' ORDER BY seq LIMIT 1")[0]["packet_id"]
    lineage = cli("trace", wordfreq_db, packet, "--depth", "1", "--json").json()
    assert {a["depth"] for a in lineage["ancestors"]} == {-1}
    assert {d["depth"] for d in lineage["descendants"]} == {1}


def test_a_truncated_trace_says_how_to_see_the_rest(cli: Cli, wordfreq_db: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(NetInspector, "trace", partialmethod(NetInspector.trace, limit=3))
    packet = scalar(wordfreq_db, "SELECT id FROM packets WHERE state = 'live'")  # made from 30 counts and more
    assert cli("trace", wordfreq_db, packet, "--json").json()["truncated"]
    result = cli("trace", wordfreq_db, packet)
    assert result.code == 0
    [note] = [line for line in result.out.splitlines() if line.startswith("(truncated")]
    assert "--depth" in note and "--limit" not in note  # trace has no --limit


def test_trace_of_an_unknown_packet_is_an_error_naming_it(cli: Cli, wordfreq_db: Path):
    result = cli("trace", wordfreq_db, "01NOSUCHPACKET")
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and "01NOSUCHPACKET" in line


# -- logs -----------------------------------------------------------------------------------------
def log_rows(db: Path, where: str = "1", params: tuple = ()) -> list[dict]:
    return rows(db, f"SELECT seq, timestamp, node_name AS node, epoch_id AS epoch, text FROM node_logs "
                f"WHERE {where} ORDER BY seq", params)


def test_logs_by_node_epoch_and_limit(cli: Cli, failing_db: Path):
    sink = log_rows(failing_db, "node_name = 'Sink'")
    assert [r["text"] for r in sink] == ["collected 20", "collected 40", "collected 60"]
    lines = cli("logs", failing_db, "--node", "Sink").out.splitlines()
    assert [line.split(None, 4)[4] for line in lines] == [r["text"] for r in sink]
    assert all(line.split()[2:4] == ["Sink", short_id(r["epoch"])] for line, r in zip(lines, sink))
    one = sink[1]
    assert cli("logs", failing_db, "--epoch", one["epoch"]).out.splitlines() == [
        f"{short_time(one['timestamp'])}  Sink         {short_id(one['epoch'])}  collected 40"]
    everything = log_rows(failing_db)
    assert {r["node"] for r in everything} == {"Check", "Sink"}
    newest = cli("logs", failing_db, "--limit", "2").out.splitlines()
    assert [line.rsplit("  ", 1)[1] for line in newest] == [r["text"] for r in everything[-2:]]


def test_logs_json_is_one_document(cli: Cli, wordfreq_db: Path):
    result = cli("logs", wordfreq_db, "--node", "Split", "--json")
    assert result.code == 0
    assert result.json() == log_rows(wordfreq_db, "node_name = 'Split'")
    assert len(result.json()) == 5  # one line per document of the corpus


def test_logs_of_an_unknown_node_is_an_error_naming_it(cli: Cli, wordfreq_db: Path):
    result = cli("logs", wordfreq_db, "--node", "Nope")
    assert result.code == 1
    [line] = result.error_lines()
    assert "'Nope'" in line


def test_logs_follow_on_a_finished_run_prints_and_returns_at_once(
        cli: Cli, wordfreq_db: Path, monkeypatch: pytest.MonkeyPatch):
    def no_waiting(seconds: float) -> None:
        raise AssertionError("logs --follow waited for more lines of a run that has ended")

    monkeypatch.setattr(logs_command, "time", SimpleNamespace(sleep=no_waiting))
    result = cli("logs", wordfreq_db, "--follow", "--json")
    assert result.code == 0
    assert [json.loads(line) for line in result.out.splitlines()] == log_rows(wordfreq_db)


def test_logs_follow_prints_lines_written_later_until_the_run_ends(
        cli: Cli, tmp_path: Path, child_processes: list, monkeypatch: pytest.MonkeyPatch):
    toml, db, go = tmp_path / "wait.toml", tmp_path / "wait.db", tmp_path / "go"
    toml.write_text(WAIT_TOML)
    child = start_child([sys.executable, "-m", "netrun", "run", str(toml), "--db", str(db), "--path", str(HERE),
                         "--no-progress", "--packet", f"Relay.in={json.dumps(str(go))}"], cwd=tmp_path)
    child_processes.append(child)

    def relay_logged() -> bool:
        try:
            with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
                return conn.execute("SELECT count(*) FROM node_logs").fetchone()[0] > 0
        except sqlite3.OperationalError:  # not created yet
            return False

    wait_for(relay_logged, "Relay's log line", child)
    # Wait blocks until `go` exists: create it once follow has read what there was
    answers: list[list[str]] = []
    original = NetInspector.logs

    def logs_then_go(self, **filters):
        found = original(self, **filters)
        answers.append([row["text"] for row in found])
        go.touch()
        return found

    monkeypatch.setattr(NetInspector, "logs", logs_then_go)
    monkeypatch.setattr(logs_command, "FOLLOW_INTERVAL", 0.02)
    result = cli("logs", db, "--follow")
    assert result.code == 0
    assert answers[0] == [f"relay {go}"]  # the first read: only what was there
    assert [line.split(None, 4)[4] for line in result.out.splitlines()] == [
        f"relay {go}", "saw go", f"collected {go}"]
    assert child.wait(timeout=10) == 0  # follow ended because the run ended


# -- files that cannot be used ----------------------------------------------------------------
COMMANDS = [
    ["status", "{db}"],
    ["history", "{db}"],
    ["sql", "{db}", "SELECT 1"],
    ["trace", "{db}", "01NOSUCHPACKET"],
    ["logs", "{db}"],
    ["logs", "{db}", "--follow"],
    ["dlq", "{db}", "list"],
    ["dlq", "{db}", "show", "1"],
    ["dlq", "{db}", "replay", "--all"],
    ["dlq", "{db}", "discard", "1"],
    ["checkpoint", "{db}", "{checkpoint}"],
    ["resume", "{db}"],
    ["graph", "{db}"],
    ["stop", "{db}"],
    ["inject", "{db}", "--source", "Emit"],
]
def make_missing(folder: Path, wordfreq: Path) -> Path:
    return folder / "missing.db"


def make_random(folder: Path, wordfreq: Path) -> Path:
    path = folder / "random.db"
    path.write_bytes(random.Random(7).randbytes(8192))
    return path


def make_foreign(folder: Path, wordfreq: Path) -> Path:
    path = folder / "other.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('not a net')")
        conn.commit()
    return path


def make_newer(folder: Path, wordfreq: Path) -> Path:
    path = copy_db(wordfreq, folder / "newer.db")
    with closing(sqlite3.connect(path)) as conn:  # the last connection: folds the WAL in on close
        conn.execute("PRAGMA user_version = 999")
    assert not Path(f"{path}-wal").exists()
    return path


def make_folder(folder: Path, wordfreq: Path) -> Path:
    path = folder / "folder.db"
    path.mkdir()
    return path


KINDS = {"missing": (make_missing, ("does not exist", "holds no netrun net")),  # the latter: checkpoint
         "a folder": (make_folder, ("Is a directory", "is a folder")),
         "random bytes": (make_random, ("not a netrun database",)),
         "another program's SQLite": (make_foreign, ("another program",)),
         "a newer schema": (make_newer, ("newer netrun",))}
CASES = [pytest.param(kind, command, id=f"{kind}-{' '.join(command[:3])}") for kind in KINDS for command in COMMANDS]


@pytest.mark.parametrize(("kind", "command"), CASES)
def test_a_file_that_is_no_usable_net_is_refused_by_name_and_left_alone(
        cli: Cli, tmp_path: Path, wordfreq_db: Path, kind: str, command: list[str]):
    folder = tmp_path / "files"
    folder.mkdir()
    make, says = KINDS[kind]
    db = make(folder, wordfreq_db)
    before = file_state(folder)
    checkpoint = tmp_path / "checkpoint"
    result = cli(*(arg.format(db=db, checkpoint=checkpoint) for arg in command))
    assert result.code == 1
    assert result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:")
    assert str(db) in line
    if (kind, command[0]) != ("random bytes", "graph"):  # graph reads a file that is no database as TOML
        assert any(words in line for words in says), line
    assert file_state(folder) == before  # same files (no -wal, -shm, -lock), same bytes
    assert not checkpoint.exists()


def test_an_error_with_json_is_one_json_object_on_stderr(cli: Cli, tmp_path: Path):
    db = tmp_path / "missing.db"
    result = cli("status", db, "--json")
    assert result.code == 1 and result.out == ""
    error = json.loads(result.err)
    assert error["error"] == "NotANetrunDatabase"
    assert str(db) in error["message"]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("value", ["99999999999999999999999", "-9223372036854775809", "1e999", "-1e400"])
def test_sql_refuses_a_number_param_out_of_range_as_a_usage_error(cli: Cli, wordfreq_db: Path, value):
    """A --param past SQLite's 64-bit integers escaped as an OverflowError traceback, and 1e999 was bound
    as infinity (found by attacking `netrun sql` with odd --param values)."""
    result = cli("sql", wordfreq_db, "SELECT ? AS a", "--param", "1", f"--param={value}")
    assert result.code == 2, (result.out, result.err)
    assert "Traceback" not in result.err and f"--param {value}" in result.err and "#2" in result.err, result.err
    assert cli("sql", wordfreq_db, "SELECT ? AS a", "--param", "9223372036854775807", "--json").json() == [
        {"a": 9223372036854775807}]


def test_query_with_an_integer_param_sqlite_cannot_hold_is_a_query_error_naming_it(wordfreq_db: Path):
    import netrun

    with netrun.NetInspector(wordfreq_db) as net:
        with pytest.raises(netrun.QueryError) as raised:
            net.query("SELECT ? AS a, ? AS b", (1, 2 ** 70))
    assert "64-bit" in str(raised.value) and "SELECT ? AS a" in str(raised.value), raised.value
