"""The commands that change a stored net without running it: `dlq` (list, show, replay,
discard) and `checkpoint`, over a run of nets/failing.toml whose Check node refused 1, 3 and 5."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

import netrun
from netrun.shortids import short_id

from .conftest import FAILING_TOML, HERE, Cli, copy_db, file_state, read_until, rows, scalar, start_child
from .cli_nodes import ACCEPT_ODD

HOLDER = textwrap.dedent("""
    import sys, time
    import netrun
    net = netrun.Net.resume(sys.argv[1])
    print("ready", flush=True)
    time.sleep(60)
""")


def letters(db: Path) -> list[dict]:
    return rows(db, "SELECT seq, packet_id, node_name, port_name, epoch_id, reason, status, replayed_as, error "
                "FROM dead_letters ORDER BY seq")


def statuses(db: Path) -> list[tuple[int, str]]:
    return [(row["seq"], row["status"]) for row in letters(db)]


def table_cells(text: str, columns: int) -> list[list[str]]:
    """The body rows of the rich tables in `text` that have `columns` columns."""
    found = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if len(cells) == columns:
            found.append(cells)
    return found


# -- list and show --------------------------------------------------------------------------
def test_dlq_list_json_holds_the_refused_values_and_errors(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "list", "--json")
    assert result.code == 0
    listed = result.json()
    stored = letters(failing_db)
    assert [(d["seq"], d["packet"], d["node"], d["port"], d["epoch"], d["reason"], d["status"], d["error"])
            for d in listed] == [(s["seq"], s["packet_id"], s["node_name"], s["port_name"], s["epoch_id"],
                                  s["reason"], s["status"], s["error"]) for s in stored]
    assert [(d["node"], d["port"], d["reason"], d["status"], d["value"]) for d in listed] == [
        ("Check", "in", "failed", "pending", "1"), ("Check", "in", "failed", "pending", "3"),
        ("Check", "in", "failed", "pending", "5")]
    assert [d["error"] for d in listed] == [f"ValueError: odd value {n} refused" for n in (1, 3, 5)]


def test_dlq_list_text_previews_each_value(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "list")
    assert result.code == 0
    assert "Dead letters (pending)" in result.out
    body = table_cells(result.out, 6)  # seq node packet reason error value
    assert body == [[str(s["seq"]), "Check", short_id(s["packet_id"]), "failed", f"ValueError: odd value {value} "
                     "refused", value] for s, value in zip(letters(failing_db), ("1", "3", "5"))]
    every = table_cells(cli("dlq", failing_db, "list", "--all").out, 7)  # with the status
    assert [row[4] for row in every] == ["pending"] * 3


def test_dlq_list_by_node(cli: Cli, failing_db: Path):
    assert [d["seq"] for d in cli("dlq", failing_db, "list", "--node", "Check", "--json").json()] == [1, 2, 3]
    assert cli("dlq", failing_db, "list", "--node", "Sink", "--json").json() == []
    assert "Dead letters (pending): none" in cli("dlq", failing_db, "list", "--node", "Sink").out
    result = cli("dlq", failing_db, "list", "--node", "Nope")
    assert result.code == 1 and "'Nope'" in result.err


def test_dlq_show_prints_the_error_and_the_value(cli: Cli, failing_db: Path):
    stored = letters(failing_db)[1]
    result = cli("dlq", failing_db, "show", "2")
    assert result.code == 0
    lines = result.out.splitlines()
    fields = dict(line.split(":", 1) for line in lines[:lines.index("error:")])
    assert fields["value"].strip() == "3"
    assert fields["packet"].strip() == stored["packet_id"]
    assert fields["epoch"].strip() == stored["epoch_id"]
    assert fields["status"].strip() == "pending"
    assert lines[lines.index("error:") + 1] == "ValueError: odd value 3 refused"
    shown = cli("dlq", failing_db, "show", "2", "--json").json()
    assert (shown["seq"], shown["packet"], shown["value"], shown["error"]) == (
        2, stored["packet_id"], "3", stored["error"])


def test_dlq_show_of_an_unknown_number_is_an_error_naming_it(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "show", "99")
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and "#99" in line


# -- replay and discard ----------------------------------------------------------------------
def test_replay_by_number_puts_a_new_packet_at_the_port_and_resume_runs_it(
        cli: Cli, failing_db: Path, monkeypatch: pytest.MonkeyPatch):
    original = letters(failing_db)[0]
    result = cli("dlq", failing_db, "replay", "1")
    assert result.code == 0
    new = rows(failing_db, "SELECT id, location, node_name, port_name FROM packets WHERE state = 'live'")
    assert len(new) == 1
    packet = new[0]["id"]
    assert (new[0]["location"], new[0]["node_name"], new[0]["port_name"]) == ("input_port", "Check", "in")
    assert f"dead letter #1: replayed as packet {packet}" in result.out
    assert f"netrun resume {failing_db}" in result.out
    assert statuses(failing_db) == [(1, "replayed"), (2, "pending"), (3, "pending")]
    assert letters(failing_db)[0]["replayed_as"] == packet
    assert [d["seq"] for d in cli("dlq", failing_db, "list", "--json").json()] == [2, 3]
    assert [(d["seq"], d["status"], d["replayed_as"]) for d in
            cli("dlq", failing_db, "list", "--all", "--json").json()] == [
        (1, "replayed", packet), (2, "pending", None), (3, "pending", None)]
    assert cli("status", failing_db, "--json").json()["state"] == "stopped"
    lineage = cli("trace", failing_db, packet, "--json").json()
    assert lineage["origin"]["how"] == "replayed"
    assert lineage["origin"]["replay_of"] == original["packet_id"]
    assert original["packet_id"] in {a["packet"] for a in lineage["ancestors"]}
    # and the other way: the dead-lettered packet was made into its replay
    lineage = cli("trace", failing_db, original["packet_id"], "--json").json()
    assert lineage["end"]["dead_letter"]["replayed_as"] == packet
    [made] = lineage["descendants"]
    assert (made["packet"], made["depth"], made["parent_epoch"], made["origin"]["how"]) == (
        packet, 1, None, "replayed")
    assert f"replayed as {short_id(packet)}" in cli("trace", failing_db, original["packet_id"]).out

    monkeypatch.setenv(ACCEPT_ODD, "1")  # the cause is fixed: Check now passes odd numbers
    assert cli("resume", failing_db, "--path", HERE, "--no-progress").code == 0
    assert scalar(failing_db, "SELECT state FROM packets WHERE id = ?", (packet,)) == "consumed"
    assert [r["text"] for r in rows(failing_db, "SELECT text FROM node_logs WHERE node_name = 'Sink' "
                                    "ORDER BY seq")] == ["collected 20", "collected 40", "collected 60",
                                                         "collected 10"]
    assert cli("status", failing_db, "--json").json()["state"] == "finished"
    assert statuses(failing_db) == [(1, "replayed"), (2, "pending"), (3, "pending")]


def test_replay_all_replays_every_pending_dead_letter(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "replay", "--all", "--json")
    assert result.code == 0
    done = result.json()
    assert [entry["seq"] for entry in done] == [1, 2, 3]
    live = rows(failing_db, "SELECT id, node_name, port_name FROM packets WHERE state = 'live' ORDER BY id")
    assert sorted(entry["replayed_as"] for entry in done) == [row["id"] for row in live]
    assert {(row["node_name"], row["port_name"]) for row in live} == {("Check", "in")}
    assert [row["replayed_as"] for row in letters(failing_db)] == [entry["replayed_as"] for entry in done]
    assert statuses(failing_db) == [(1, "replayed"), (2, "replayed"), (3, "replayed")]
    values = sorted(p["value"] for p in cli("status", failing_db, "--json").json()["packets_left"])
    assert values == ["1", "3", "5"]
    again = cli("dlq", failing_db, "replay", "--all")
    assert again.code == 0 and "no pending dead letters matched" in again.out


def test_replay_all_of_a_node_without_dead_letters_changes_nothing(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "replay", "--all", "--node", "Sink", "--json")
    assert result.code == 0 and result.json() == []
    assert statuses(failing_db) == [(1, "pending"), (2, "pending"), (3, "pending")]


def test_discard_marks_the_dead_letter_and_it_cannot_be_replayed(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "discard", "2")
    assert result.code == 0 and "dead letter #2: discarded" in result.out
    assert statuses(failing_db) == [(1, "pending"), (2, "discarded"), (3, "pending")]
    assert scalar(failing_db, "SELECT count(*) FROM packets WHERE state = 'live'") == 0
    assert [d["seq"] for d in cli("dlq", failing_db, "list", "--json").json()] == [1, 3]
    refused = cli("dlq", failing_db, "replay", "2")
    assert refused.code == 1
    [line] = refused.error_lines()
    assert "#2" in line and "discarded" in line
    assert statuses(failing_db) == [(1, "pending"), (2, "discarded"), (3, "pending")]


@pytest.mark.parametrize(("args", "named"), [
    (["replay", "3", "2"], "#2"),  # #2 was discarded: #3, valid, is not replayed either
    (["replay", "1", "99"], "#99"),
    (["discard", "3", "2"], "#2"),
])
def test_a_command_that_fails_for_one_number_resolves_none(cli: Cli, failing_db: Path, args, named):
    assert cli("dlq", failing_db, "discard", "2").code == 0
    result = cli("dlq", failing_db, *args)
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and named in line
    assert statuses(failing_db) == [(1, "pending"), (2, "discarded"), (3, "pending")]
    assert scalar(failing_db, "SELECT count(*) FROM packets WHERE state = 'live'") == 0


@pytest.mark.parametrize("args", [
    ["replay"],
    ["discard"],
    ["replay", "1", "--all"],
    ["discard", "2", "--all"],
    ["replay", "1", "--node", "Check"],  # --node selects only with --all
])
def test_replay_and_discard_need_numbers_or_all_and_change_nothing_otherwise(cli: Cli, failing_db: Path, args):
    before = file_state(failing_db.parent)
    result = cli("dlq", failing_db, *args)
    assert result.code == 2
    assert result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: usage: dlq ")
    assert file_state(failing_db.parent) == before  # not even the owner lock was taken


def test_a_dead_letter_number_that_is_no_number_is_a_usage_error(cli: Cli, failing_db: Path):
    result = cli("dlq", failing_db, "replay", "abc")
    assert result.code == 2
    assert "'abc' is not a whole number" in result.err


def test_commands_that_change_the_net_are_refused_while_another_process_owns_it(
        cli: Cli, failing_db: Path, tmp_path: Path, child_processes: list):
    child = start_child([sys.executable, "-c", HOLDER, str(failing_db)], cwd=tmp_path)
    child_processes.append(child)
    read_until(child, "ready")
    checkpoint = tmp_path / "checkpoint"
    for args in (["dlq", failing_db, "replay", "1"], ["dlq", failing_db, "replay", "--all"],
                 ["dlq", failing_db, "discard", "1"], ["checkpoint", failing_db, checkpoint],
                 ["resume", failing_db, "--no-progress"],
                 ["run", FAILING_TOML, "--db", failing_db, "--overwrite", "--no-progress"]):
        result = cli(*args)
        assert result.code == 1, args
        [line] = result.error_lines()
        assert line.startswith("netrun: error:") and f"in use by pid {child.pid}" in line, args
    assert statuses(failing_db) == [(1, "pending"), (2, "pending"), (3, "pending")]
    assert not checkpoint.exists()
    # reading is fine meanwhile
    assert cli("status", failing_db, "--json").json()["owner"]["pid"] == child.pid
    assert [d["seq"] for d in cli("dlq", failing_db, "list", "--json").json()] == [1, 2, 3]


# -- checkpoint ------------------------------------------------------------------------------
def test_checkpoint_writes_a_folder_that_load_checkpoint_continues_from(cli: Cli, failing_db: Path, tmp_path: Path):
    source = failing_db.read_bytes()
    folder = tmp_path / "backups" / "one"
    result = cli("checkpoint", failing_db, folder, "--json")
    assert result.code == 0
    manifest = result.json()
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "net.db"]
    assert json.loads((folder / "checkpoint.json").read_text()) == manifest
    assert manifest["database"] == "net.db" and manifest["source"] == str(failing_db)
    assert failing_db.read_bytes() == source  # the snapshot only read the net
    saved = file_state(folder)

    loaded = tmp_path / "loaded.db"
    with netrun.Net.load_checkpoint(folder, db=loaded) as net:
        entries = net.dead_letter_queue.get_all()
        assert [(e.node_name, e.value) for e in entries] == [("Check", 1), ("Check", 3), ("Check", 5)]
        assert net.query("SELECT id, node_name, state FROM epochs ORDER BY id") == rows(
            failing_db, "SELECT id, node_name, state FROM epochs ORDER BY id")
    assert file_state(folder) == saved  # loading works on a copy


def test_checkpoint_text_and_a_second_checkpoint_replaces_the_first(cli: Cli, failing_db: Path, tmp_path: Path):
    folder = tmp_path / "checkpoint"
    result = cli("checkpoint", failing_db, folder)
    assert result.code == 0
    assert f"checkpoint of {failing_db} written to {folder}" in result.out
    assert cli("dlq", failing_db, "replay", "1").code == 0
    assert cli("checkpoint", failing_db, folder).code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint.json", "net.db"]
    with netrun.Net.load_checkpoint(folder, db=tmp_path / "loaded.db") as net:
        assert [e.value for e in net.dead_letter_queue.get_all()] == [3, 5]  # #1 was replayed before


def test_checkpoint_into_the_folder_of_its_own_net_db_is_refused(cli: Cli, failing_db: Path, tmp_path: Path):
    folder = tmp_path / "own"
    folder.mkdir()
    db = copy_db(failing_db, folder / "net.db")  # the name a checkpoint writes
    before = file_state(folder, shm=False)
    result = cli("checkpoint", db, folder)
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and "cannot checkpoint into" in line and str(folder) in line
    assert file_state(folder, shm=False) == before  # no checkpoint.json, no owner lock, same bytes


def test_checkpoint_into_a_file_is_refused_by_name(cli: Cli, failing_db: Path, tmp_path: Path):
    target = tmp_path / "backup.db"
    target.write_text("keep me")
    result = cli("checkpoint", failing_db, target)
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and f"{target} is a file" in line
    assert target.read_text() == "keep me"


def test_checkpoint_and_restore_name_the_path_given_when_it_cannot_be_written(cli: Cli, failing_db: Path, tmp_path: Path):
    # a folder where nothing can be created (here /proc): the error once named the hidden staging folder
    # (/proc/.cp.new-XXXX) or copy (x.db.loading) instead of the path on the command line
    folder = "/proc/netrun-no-checkpoint-here"
    result = cli("checkpoint", failing_db, folder)
    assert result.code == 1 and result.error_lines() == [f"netrun: error: {folder}: No such file or directory"]
    good = tmp_path / "cp"
    assert cli("checkpoint", failing_db, good).code == 0
    result = cli("restore", good, "--db", "/proc/netrun-no-restore.db")
    assert result.code == 1
    assert result.error_lines() == ["netrun: error: /proc/netrun-no-restore.db: No such file or directory"]


@pytest.mark.parametrize("manifest", ["[]", "3", "{not json", '"text"'])
def test_restore_of_a_checkpoint_whose_manifest_is_not_an_object(cli: Cli, failing_db: Path, tmp_path: Path, manifest):
    # checkpoint.json holding `[]` once ended the restore in a raw AttributeError after the copy was made
    folder = tmp_path / "cp"
    assert cli("checkpoint", failing_db, folder).code == 0
    (folder / "checkpoint.json").write_text(manifest)
    new = tmp_path / "new.db"
    result = cli("restore", folder, "--db", new)
    assert result.code == 0 and f"netrun resume {new}" in result.out
    assert cli("status", new).code == 0
