"""`netrun export`: tables as CSV, TSV, JSON or JSON lines, read-only, never unpickling, never
leaving half a file."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import netrun
from netrun import export as export_module
from netrun.export import CONTRACT_TABLES
from netrun.graphs import chain

from .conftest import Cli, rows


class Trap:
    """A value whose unpickling creates a file (what a hostile pickle could do)."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))

    def __repr__(self) -> str:
        return "Trap()"


@pytest.fixture
def values_db(tmp_path: Path) -> tuple[Path, Path]:
    """A net with three live packets: a JSON value, a pickled tuple and a pickle that must not be loaded."""
    db, marker = tmp_path / "values.db", tmp_path / "unpickled"
    trap = Trap()
    trap.marker = str(marker)
    with netrun.Net(chain("A", "B"), db=str(db)) as net:
        net.inject_packet("B", "in", {"city": "Oslo", "n": [1, 2]})
        net.inject_packet("B", "in", (1, "two"))
        net.inject_packet("B", "in", trap)
    return db, marker


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_one_table_as_csv_on_stdout(cli: Cli, wordfreq_db: Path):
    result = cli("export", wordfreq_db, "--table", "epochs")
    assert result.code == 0
    got = list(csv.DictReader(io.StringIO(result.out)))
    expected = rows(wordfreq_db, "SELECT * FROM epochs")
    assert len(got) == len(expected) and got[0].keys() == expected[0].keys()
    assert [r["id"] for r in got] == [r["id"] for r in expected]


@pytest.mark.parametrize("fmt", ["json", "jsonl", "tsv"])
def test_every_format_holds_the_rows(cli: Cli, wordfreq_db: Path, tmp_path: Path, fmt: str):
    out = tmp_path / f"logs.{fmt}"
    assert cli("export", wordfreq_db, "--table", "node_logs", "--format", fmt, "-o", out).code == 0
    text = out.read_text()
    expected = rows(wordfreq_db, "SELECT * FROM node_logs")
    if fmt == "json":
        got = json.loads(text)
    elif fmt == "jsonl":
        got = [json.loads(line) for line in text.splitlines()]
    else:
        got = [{k: int(v) if k == "seq" else v for k, v in r.items()} for r in
               csv.DictReader(io.StringIO(text), delimiter="\t")]
    assert got == expected


def test_json_flag_is_format_json(cli: Cli, wordfreq_db: Path):
    assert cli("export", wordfreq_db, "--table", "net_meta", "--json").json() == \
        json.loads(cli("export", wordfreq_db, "--table", "net_meta", "--format", "json").out)


def test_values_export_as_json_or_their_preview_and_are_never_unpickled(cli: Cli, values_db, tmp_path: Path):
    db, marker = values_db
    for fmt in ("json", "csv"):
        out = tmp_path / f"values.{fmt}"
        assert cli("export", db, "--table", "packet_values", "--format", fmt, "-o", out).code == 0
    assert not marker.exists()  # nothing was unpickled
    exported = {r["kind"] + ":" + str(r["preview"]): r["data"] for r in json.loads((tmp_path / "values.json").read_text())}
    assert exported == {'json:{"city":"Oslo","n":[1,2]}': {"city": "Oslo", "n": [1, 2]},
                        "pickle:(1, 'two')": "(1, 'two')", "pickle:Trap()": "Trap()"}
    text = list(csv.DictReader(io.StringIO((tmp_path / "values.csv").read_text())))
    assert sorted(r["data"] for r in text) == sorted(['{"city":"Oslo","n":[1,2]}', "(1, 'two')", "Trap()"])


def test_without_a_table_every_table_goes_into_a_new_folder(cli: Cli, wordfreq_db: Path, tmp_path: Path):
    before = _files(wordfreq_db.parent)
    folder = tmp_path / "exported"
    result = cli("export", wordfreq_db, "--format", "jsonl", "-o", folder)
    assert result.code == 0, result.err
    names = {p.name for p in folder.iterdir()}
    assert {f"{t}.jsonl" for t in CONTRACT_TABLES} <= names
    assert _files(wordfreq_db.parent) == before  # the database is unchanged, no -wal or -shm left
    history = (folder / "history.jsonl").read_text().splitlines()
    assert len(history) == len(rows(wordfreq_db, "SELECT seq FROM history"))
    assert json.loads(history[0])["seq"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_an_export_cut_short_leaves_no_file(cli: Cli, wordfreq_db: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch):
    real = export_module.write_rows

    def fail_after_some(stream, columns, rows_, fmt):
        real(stream, columns, (row for _, row in zip(range(3), rows_)), fmt)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export_module, "write_rows", fail_after_some)
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.csv").write_text("kept\n")
    assert cli("export", wordfreq_db, "--table", "history", "-o", target / "old.csv").code == 1
    assert cli("export", wordfreq_db, "-o", tmp_path / "folder").code == 1
    assert _files(target) == {"old.csv": b"kept\n"}  # the old file stays whole; no temporary file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "wf.db"]


KILLED_MID_EXPORT = """
import sys, time
from netrun import export
real = export.write_rows
def stuck(stream, columns, rows, fmt):
    real(stream, columns, (row for _, row in zip(range(3), rows)), fmt)
    stream.flush()
    print("writing", flush=True)
    time.sleep(600)
export.write_rows = stuck
from netrun.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("table", [["--table", "history"], []])  # one file; a folder of every table
def test_what_an_export_killed_mid_way_left_is_removed_by_the_next_one(cli: Cli, wordfreq_db: Path,
                                                                      tmp_path: Path, table: list[str]):
    target = tmp_path / "out"
    child = subprocess.Popen([sys.executable, "-c", KILLED_MID_EXPORT, "export", str(wordfreq_db), *table,
                              "-o", str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing", child.stderr.read()
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.communicate()
    [left] = [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")]
    assert left.startswith(f".out.{child.pid}.") and not target.exists()
    mine = tmp_path / f".out.{os.getpid()}.0123abcd.tmp"  # a live process's (an export running now)
    mine.write_text("in use\n")
    assert cli("export", wordfreq_db, *table, "-o", target).code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [mine.name]
    assert target.is_dir() if not table else target.read_text().startswith("seq,")


def test_refusals(cli: Cli, wordfreq_db: Path, tmp_path: Path):
    result = cli("export", wordfreq_db, "--table", "nope")
    assert result.code == 1 and "'nope'" in result.err and "history" in result.err
    assert cli("export", wordfreq_db).code == 2  # every table needs a folder
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("")
    result = cli("export", wordfreq_db, "-o", full)
    assert result.code == 1 and str(full) in result.err
    assert os.listdir(full) == ["x"]
    assert cli("export", tmp_path / "missing.db", "--table", "history").code == 1


def test_an_output_that_cannot_be_written_is_named_as_given(cli: Cli, wordfreq_db: Path, tmp_path: Path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    result = cli("export", wordfreq_db, "--table", "epochs", "-o", folder)
    assert result.code == 1
    assert result.error_lines() == [f"netrun: error: {folder} is a folder; name a file for the table "
                                    "(or leave out --table to export every table into a new folder)"]
    for argv in (["--table", "epochs", "-o", tmp_path / "missing" / "epochs.csv"],
                 ["-o", tmp_path / "missing" / "tables"]):
        result = cli("export", wordfreq_db, *argv)
        assert result.code == 1
        assert result.error_lines() == [f"netrun: error: {argv[-1]}: No such file or directory"]  # not a hidden name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-folder", "wf.db"] and not os.listdir(folder)


def test_an_export_never_replaces_the_database_it_reads(cli: Cli, values_db, tmp_path: Path):
    # `export run.db --table packets -o run.db` once renamed the CSV over the net itself: the net was gone
    db, _ = values_db
    before = db.read_bytes()
    (tmp_path / "link.db").symlink_to(db)
    os.link(db, tmp_path / "hard.db")
    for target in (db, tmp_path / "link.db", tmp_path / "hard.db", Path(f"{db}-wal"), Path(f"{db}-lock")):
        result = cli("export", db, "--table", "packets", "-o", target)
        assert result.code == 1 and f"cannot export into {target}" in result.err and str(db) in result.err
    assert db.read_bytes() == before
    assert cli("status", db).code == 0
    assert cli("export", db, "--table", "packets", "-o", tmp_path / "packets.csv").code == 0
