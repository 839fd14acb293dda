"""On PostgreSQL, read-only queries (`Net.query`, `netrun sql`, the UI's SQL box) read their rows through a
server-side cursor, a batch at a time: a huge result never sits whole in the reading process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import netrun
from netrun.db import open_connection
from netrun.graphs import chain
from netrun.readonly import guarded_query

REPO = Path(__file__).resolve().parents[2]

READ_ALL = textwrap.dedent("""
    import resource, sys
    sys.path.insert(0, {root!r})
    from netrun.db import open_connection
    from netrun.readonly import guarded_query
    conn = open_connection({url!r}, readonly=True)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    count = 0
    with guarded_query(conn, "SELECT g, g * 2 AS twice, 'a line of text' AS words FROM generate_series(1, 2000000) g") \\
            as (columns, rows):
        for _ in rows:
            count += 1
    grew = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024
    print(count, grew)
""")


@pytest.fixture
def pg_net(pg_url) -> str:
    netrun.Net(chain("A", "B"), db=pg_url).close()
    return pg_url


def test_two_million_rows_are_read_in_bounded_memory(pg_net):
    done = subprocess.run([sys.executable, "-c", READ_ALL.format(root=str(REPO), url=pg_net)],
                          capture_output=True, text=True, timeout=120, check=True)
    count, grew_mb = map(int, done.stdout.split())
    assert count == 2_000_000
    assert grew_mb < 40, f"reading the rows grew the process by {grew_mb} MB (read whole: ~170 MB)"


def test_a_stream_left_half_read_or_failing_leaves_the_connection_usable(pg_net):
    conn = open_connection(pg_net, readonly=True)
    try:
        with guarded_query(conn, "SELECT g FROM generate_series(1, 100000) g") as (columns, rows):
            assert columns == ["g"] and next(iter(rows)) == (1,)
        assert conn.getautocommit()  # its transaction ended with the cursor
        with pytest.raises(netrun.QueryError, match="division by zero"):
            with guarded_query(conn, "SELECT 1 / (g - 5000) FROM generate_series(1, 10000) g") as (_, rows):
                for _ in rows:
                    pass
        assert conn.getautocommit()
        assert conn.execute("SELECT 2").fetchall() == [(2,)]
    finally:
        conn.close()


def test_a_streamed_read_stops_at_its_time_limit_even_when_each_batch_is_quick(pg_net):
    conn = open_connection(pg_net, readonly=True)
    try:
        with pytest.raises(netrun.QueryError, match="stopped after 0.5 s"):
            with guarded_query(conn, "SELECT g FROM generate_series(1, 100000000) g",
                               seconds=0.5) as (_, rows):
                for _ in rows:
                    pass
        assert conn.execute("SELECT 3").fetchall() == [(3,)]
    finally:
        conn.close()
