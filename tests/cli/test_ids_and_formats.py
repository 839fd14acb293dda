"""Short IDs in tables (full ones in --json), IDs accepted in short form, unknown IDs refused by
name, and `sql --csv/--tsv`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from netrun.shortids import short_id

from .conftest import Cli, rows, scalar

# -- short IDs -----------------------------------------------------------------------------------


def test_short_id_is_the_first_8_and_last_4_characters_of_a_ulid():
    assert short_id("01J9ZK3M4X7Q2B8C9D0E1FWXYZ") == "01J9ZK3M~WXYZ"
    assert short_id("not-an-id") == "not-an-id"


def test_status_and_dlq_tables_show_short_ids_and_json_full_ones(cli: Cli, failing_db: Path):
    packets = [r["packet_id"] for r in rows(failing_db, "SELECT packet_id FROM dead_letters ORDER BY seq")]
    text = cli("dlq", failing_db, "list").out
    for packet in packets:
        assert short_id(packet) in text and packet not in text
    assert [d["packet"] for d in cli("dlq", failing_db, "list", "--json").json()] == packets
    epochs = {r["epoch_id"] for r in rows(failing_db, "SELECT epoch_id FROM epoch_attempts WHERE outcome = 'failed'")}
    status = cli("status", failing_db).out
    assert all(short_id(e) in status for e in epochs)
    assert {f["epoch"] for f in cli("status", failing_db, "--json").json()["recent_failures"]} <= epochs


@pytest.mark.parametrize("command", [["status"], ["dlq", "list"], ["dlq", "list", "--all"]])
def test_tables_fit_80_columns(cli: Cli, failing_db: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]):
    monkeypatch.setenv("COLUMNS", "80")
    argv = [command[0], failing_db, *command[1:]]
    result = cli(*argv)
    assert result.code == 0
    table_lines = [line for line in result.out.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines and max(len(line) for line in table_lines) <= 80
    ids = [r["packet_id"] for r in rows(failing_db, "SELECT packet_id FROM dead_letters")]
    if command[0] == "dlq":
        assert all(short_id(i) in result.out for i in ids)  # whole, on one line: it can be copied


def test_a_packet_is_found_by_its_short_form_a_prefix_or_its_full_id(cli: Cli, wordfreq_db: Path):
    packet = scalar(wordfreq_db, "SELECT id FROM packets WHERE state = 'live'")
    full = cli("trace", wordfreq_db, packet, "--json").json()
    assert full["packet"] == packet
    for given in (short_id(packet), packet[:8] + ".." + packet[-4:], packet[:20], packet.lower()):
        assert cli("trace", wordfreq_db, given, "--json").json() == full, given
    value = cli("value", wordfreq_db, short_id(packet))
    assert value.code == 0 and value.out == cli("value", wordfreq_db, packet).out
    history = cli("history", wordfreq_db, "--packet", short_id(packet), "--json").json()
    assert history and {r["packet_id"] for r in history} == {packet}


def test_an_ambiguous_short_id_is_an_error_listing_the_candidates(cli: Cli, wordfreq_db: Path):
    first = scalar(wordfreq_db, "SELECT id FROM packets ORDER BY id LIMIT 1")
    result = cli("trace", wordfreq_db, first[:4])
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert "ambiguous" in line and first in line and repr(first[:4]) in line


@pytest.mark.parametrize("argv", [["trace", "{db}", "01ZZZZZZZZZZZZZZZZZZZZZZZZ"],
                                  ["value", "{db}", "01ZZZZZZ~ZZZZ"],
                                  ["history", "{db}", "--packet", "01ZZZZZZZZZZZZZZZZZZZZZZZZ"],
                                  ["history", "{db}", "--epoch", "01ZZZZZZ"],
                                  ["logs", "{db}", "--epoch", "01ZZZZZZZZZZZZZZZZZZZZZZZZ"]])
def test_an_unknown_id_is_an_error_naming_it(cli: Cli, wordfreq_db: Path, argv: list[str]):
    result = cli(*(a.replace("{db}", str(wordfreq_db)) for a in argv))
    assert result.code == 1 and result.out == ""
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and repr(argv[-1]) in line


def test_history_of_an_unknown_packet_is_an_error_not_an_empty_list(cli: Cli, wordfreq_db: Path):
    result = cli("history", wordfreq_db, "--packet", "01ZZZZZZZZZZZZZZZZZZZZZZZZ", "--json")
    assert result.code == 1 and result.out == ""
    assert "01ZZZZZZZZZZZZZZZZZZZZZZZZ" in result.err


def test_an_id_too_short_to_look_up_says_so(cli: Cli, wordfreq_db: Path):
    result = cli("trace", wordfreq_db, "01")
    assert result.code == 1 and "too short" in result.err


# -- sql --csv / --tsv ------------------------------------------------------------------------------
QUERY = "SELECT node_name, state, count(*) AS n, NULL AS empty FROM epochs GROUP BY 1, 2 ORDER BY 1, 2"


@pytest.mark.parametrize(("option", "delimiter"), [("--csv", ","), ("--tsv", "\t")])
def test_sql_prints_csv_and_tsv(cli: Cli, wordfreq_db: Path, option: str, delimiter: str):
    result = cli("sql", wordfreq_db, QUERY, option)
    assert result.code == 0
    got = list(csv.reader(io.StringIO(result.out), delimiter=delimiter))
    expected = rows(wordfreq_db, QUERY)
    assert got[0] == ["node_name", "state", "n", "empty"]
    assert got[1:] == [[r["node_name"], r["state"], str(r["n"]), ""] for r in expected]


def test_sql_csv_quotes_what_needs_quoting_and_writes_blobs_as_base64(cli: Cli, wordfreq_db: Path):
    result = cli("sql", wordfreq_db, "SELECT 'a,b' AS t, 'say \"hi\"' AS q, X'00FF' AS b, 'x' || char(10) || 'y' AS nl",
                 "--csv")
    assert list(csv.reader(io.StringIO(result.out))) == [["t", "q", "b", "nl"], ["a,b", 'say "hi"', "AP8=", "x\ny"]]


def test_sql_csv_keeps_the_read_only_guards(cli: Cli, wordfreq_db: Path):
    before = wordfreq_db.read_bytes()
    result = cli("sql", wordfreq_db, "DELETE FROM history_actions", "--csv")
    assert result.code == 1 and result.out == ""
    assert "ReadOnlyQueryError" in result.err or "read-only" in result.err
    assert wordfreq_db.read_bytes() == before


@pytest.mark.parametrize("options", [["--csv", "--tsv"], ["--csv", "--json"]])
def test_sql_takes_one_output_format(cli: Cli, wordfreq_db: Path, options: list[str]):
    result = cli("sql", wordfreq_db, "SELECT 1", *options)
    assert result.code == 2 and "one output format" in result.err
