"""`netrun logs --search`: full-text search over log lines, failed attempts and dead letters, through
an index in a side file that each search brings up to date (the database is never written)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from netrun import search
from netrun.inspector import NetInspector
from netrun.shortids import short_id

from .conftest import Cli, rows


def _write(db: Path, sql: str) -> None:
    """Change a closed database behind netrun's back (what a prune or another writer would do)."""
    with closing(sqlite3.connect(db)) as conn:
        conn.execute(sql)
        conn.commit()


def test_search_finds_log_lines_failed_attempts_and_dead_letters(cli: Cli, failing_db: Path):
    before = failing_db.read_bytes()
    found = cli("logs", failing_db, "--search", "odd value 3", "--json").json()
    epoch = rows(failing_db, "SELECT epoch_id FROM dead_letters WHERE seq = 2")[0]["epoch_id"]
    assert sorted((f["source"], f.get("attempt"), f.get("seq")) for f in found) == [
        ("attempt", 0, None), ("attempt", 1, None), ("dead_letter", None, 2)]
    assert {f["epoch"] for f in found} == {epoch}
    assert all(f["text"] == "ValueError: odd value 3 refused" and "raise ValueError" in f["traceback"] for f in found)
    logs = cli("logs", failing_db, "--search", "collected", "--json").json()
    assert [(f["source"], f["text"]) for f in logs] == [("log", f"collected {n}") for n in (20, 40, 60)]
    assert failing_db.read_bytes() == before  # the database is never written
    assert Path(f"{failing_db}-search").exists()


def test_search_text_lines_name_the_source_with_short_ids(cli: Cli, failing_db: Path):
    result = cli("logs", failing_db, "--search", "refused", "--node", "Check")
    assert result.code == 0
    lines = result.out.splitlines()
    assert len(lines) == 9  # 3 values x (2 failed attempts + 1 dead letter)
    letter = rows(failing_db, "SELECT epoch_id FROM dead_letters WHERE seq = 1")[0]["epoch_id"]
    assert any(short_id(letter) in line and "dead letter #1: ValueError: odd value 1 refused" in line
               for line in lines)
    assert sum("failed attempt 1: ValueError" in line for line in lines) == 3


def test_search_matches_every_word_in_any_form_and_takes_operators_as_words(cli: Cli, failing_db: Path):
    assert len(cli("logs", failing_db, "--search", "refuse", "--json").json()) == 9  # stemmed
    assert len(cli("logs", failing_db, "--search", "odd 5", "--json").json()) == 3  # every word
    assert cli("logs", failing_db, "--search", "odd NOT", "--json").json() == []  # NOT is a word here
    assert cli("logs", failing_db, "--search", 'collected "20', "--json").code == 0  # an open quote too


def test_search_filters_by_node_epoch_and_limit(cli: Cli, failing_db: Path):
    assert cli("logs", failing_db, "--search", "collected", "--node", "Check", "--json").json() == []
    sink = rows(failing_db, "SELECT epoch_id, text FROM node_logs WHERE node_name = 'Sink' ORDER BY seq")
    one = cli("logs", failing_db, "--search", "collected", "--epoch", short_id(sink[1]["epoch_id"]), "--json").json()
    assert [f["text"] for f in one] == [sink[1]["text"]]
    newest = cli("logs", failing_db, "--search", "collected", "--limit", "2", "--json").json()
    assert [f["text"] for f in newest] == [r["text"] for r in sink[1:]]
    result = cli("logs", failing_db, "--search", "x", "--node", "Nope")
    assert result.code == 1 and "'Nope'" in result.err


def test_each_search_adds_only_what_is_new(failing_db: Path):
    with NetInspector(failing_db) as net:
        _, first = net.search("collected")
        _, second = net.search("collected")
    assert first["rebuilt"] and first["added"] == 6 + 3 + 6  # log lines, dead letters, failed attempts
    assert not second["rebuilt"] and second["added"] == 0
    _write(failing_db, "INSERT INTO node_logs (epoch_id, node_name, timestamp, text) "
                       "VALUES (NULL, 'Sink', '2099-01-01T00:00:00+00:00', 'collected 80')")
    with NetInspector(failing_db) as net:
        found, third = net.search("collected")
    assert third["added"] == 1
    assert [f["text"] for f in found][-1] == "collected 80"


def test_a_row_removed_from_the_database_is_not_shown(cli: Cli, failing_db: Path):
    assert len(cli("logs", failing_db, "--search", "collected", "--json").json()) == 3
    _write(failing_db, "DELETE FROM node_logs WHERE text = 'collected 40'")
    found = cli("logs", failing_db, "--search", "collected", "--json").json()
    assert [f["text"] for f in found] == ["collected 20", "collected 60"]


def test_an_index_left_by_another_net_is_rebuilt(cli: Cli, failing_db: Path, wordfreq_db: Path):
    cli("logs", failing_db, "--search", "collected")
    Path(f"{wordfreq_db}-search").write_bytes(Path(f"{failing_db}-search").read_bytes())
    assert cli("logs", wordfreq_db, "--search", "collected", "--json").json() == []
    with NetInspector(wordfreq_db) as net:
        assert not net.search("collected")[1]["rebuilt"]  # it was rebuilt for this net, once


def test_without_a_writable_folder_the_index_is_built_in_memory(
        cli: Cli, failing_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(search, "index_path", lambda db: str(tmp_path / "no such folder" / "x-search"))
    with NetInspector(failing_db) as net:
        found, figures = net.search("collected")
    assert figures["in_memory"] and len(found) == 3
    assert not (tmp_path / "no such folder").exists()


def test_search_does_not_follow(cli: Cli, failing_db: Path):
    result = cli("logs", failing_db, "--search", "x", "--follow")
    assert result.code == 2 and "--follow" in result.err


@pytest.mark.parametrize("text", ["", "   "])
def test_a_search_for_nothing_is_a_usage_error(cli: Cli, failing_db: Path, text: str):
    result = cli("logs", failing_db, "--search", text)
    assert result.code == 2 and "--search needs the words to find" in result.err
