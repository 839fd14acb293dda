"""`netrun sql` prints rows as it reads them, on both stores: a result of any size costs the memory of
one batch (on PostgreSQL a server-side cursor's; in the human format a table of SQL_TABLE_ROWS rows)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import netrun
from netrun.cli.reads import SQL_TABLE_ROWS
from netrun.graphs import chain

REPO = Path(__file__).resolve().parents[2]
ROWS = 500_000
# a recursive CTE: both stores run it as written
MANY = (f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {ROWS}) "
        "SELECT g, g * 2 AS twice, 'a line of text' AS words FROM s")

MEASURED = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, {root!r})
    from netrun.cli import main
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code = main(["sql", {db!r}, {sql!r}, {fmt!r}])
    sys.stdout.flush()
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    print(code, grew, file=sys.stderr)
""")


@pytest.fixture
def net_db(db) -> str:
    netrun.Net(chain("A", "B"), db=db).close()
    return db


@pytest.mark.parametrize("fmt", ["--csv", "--json"])
def test_a_huge_result_is_printed_in_bounded_memory(net_db, tmp_path, fmt):
    printed = tmp_path / "rows.out"
    with printed.open("w") as stdout:
        done = subprocess.run([sys.executable, "-c", MEASURED.format(root=str(REPO), db=net_db, sql=MANY, fmt=fmt)],
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=180)
    code, grew_mb = map(int, done.stderr.split()[-2:])
    assert code == 0, done.stderr
    if fmt == "--csv":
        lines = printed.read_text().splitlines()
        assert lines[0] == "g,twice,words" and len(lines) == ROWS + 1
        assert lines[-1] == f"{ROWS},{ROWS * 2},a line of text"
    else:
        rows = json.loads(printed.read_text())
        assert len(rows) == ROWS and rows[-1] == {"g": ROWS, "twice": ROWS * 2, "words": "a line of text"}
    # read whole, as before: ~140 MB (CSV) and ~520 MB (JSON) more for these rows
    assert grew_mb < 40, f"printing {ROWS} rows grew the process by {grew_mb} MB"


def test_the_human_format_prints_a_long_result_as_tables_of_a_batch_each(cli, net_db):
    total = 2 * SQL_TABLE_ROWS + 5
    done = cli("sql", net_db, f"WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < {total}) "
                              "SELECT g AS numbered FROM s")
    assert done.code == 0, done.err
    assert done.out.count("numbered") == 3  # one header per table
    shown = [int(word) for word in done.out.split() if word.isdigit()]
    assert shown == list(range(1, total + 1))


RUNAWAY = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s) SELECT count(*) FROM s"
STARTED = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from netrun.cli import main
    print("started", file=sys.stderr, flush=True)
    sys.exit(main(["sql", {db!r}, {sql!r}]))
""")


def test_ctrl_c_stops_a_statement_that_would_run_forever(tmp_path):
    db = str(tmp_path / "net.db")
    netrun.Net(chain("A", "B"), db=db).close()
    child = subprocess.Popen([sys.executable, "-c", STARTED.format(root=str(REPO), db=db, sql=RUNAWAY)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stderr.readline().strip() == "started"
        time.sleep(0.5)  # inside SQLite's loop by now
        assert child.poll() is None
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=10)  # it never returned from SQLite before
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out == ""


def test_a_write_is_refused_in_words_that_name_the_command(cli, net_db):
    done = cli("sql", net_db, "DELETE FROM epochs")
    assert done.code == 1 and "queries are read-only (net.query, NetInspector, netrun sql)" in done.err
    assert "Net.query is" not in done.err


def test_json_output_is_valid_json_even_for_sqls_infinities(cli, tmp_path):
    # SQLite's 1e999 is a REAL infinity: `--json` once printed `Infinity`, which no JSON parser takes
    db = str(tmp_path / "net.db")
    netrun.Net(chain("A", "B"), db=db).close()
    result = cli("sql", db, "SELECT 1e999 AS big, -1e999 AS small, 1.5 AS x", "--json")
    assert result.code == 0
    assert json.loads(result.out, parse_constant=lambda name: pytest.fail(f"not JSON: {name}")) == [
        {"big": None, "small": None, "x": 1.5}]


@pytest.mark.parametrize("argv", [["sql", "SELECT text FROM node_logs"], ["sql", "SELECT text FROM node_logs", "--json"],
                                  ["logs"], ["export", "--table", "node_logs"]], ids=" ".join)
def test_text_that_is_not_utf8_is_an_error_naming_the_file_not_a_traceback(cli, tmp_path, argv):
    # a row written by another program (a sqlite3 shell's CAST(x'ff' AS TEXT)): apsw's UnicodeDecodeError
    # (and the stdlib's OperationalError in export) once escaped as a raw traceback
    import sqlite3
    from contextlib import closing

    db = str(tmp_path / "net.db")
    netrun.Net(chain("A", "B"), db=db).close()
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("INSERT INTO node_logs (node_name, timestamp, text) "
                     "VALUES ('A', '2026-01-01T00:00:00+00:00', CAST(x'66ff6f' AS TEXT))")
        conn.commit()
    result = cli(argv[0], db, *argv[1:])
    assert result.code == 1 and "Traceback" not in result.err
    message = json.loads(result.err)["message"] if "--json" in argv else result.err
    assert (result.err.startswith("{") if "--json" in argv else result.err.startswith("netrun: error: "))
    assert db in message and "UTF-8" in message
