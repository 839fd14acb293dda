"""`netrun ui URL`: the page over a net kept in PostgreSQL (the session's throw-away server), in a
real browser: the graph, the read-only SQL box, a dead letter replayed with --allow-writes, and a
URL's password never shown."""

from __future__ import annotations

import pytest

from tests.cli.conftest import FAILING_TOML, HERE as CLI_HERE, run_quietly
from tests.ui.conftest import open_page


@pytest.fixture
def failing_url(pg_server) -> str:
    """nets/failing.toml run on PostgreSQL: Check refused 1, 3 and 5 (dead letters #1-#3). The URL
    carries a password (the test server trusts any), which the page and the command must hide."""
    import uuid

    host = pg_server.url.removeprefix("postgresql://postgres@")
    url = f"postgresql://postgres:s3cret-pw@{host}?net=t_{uuid.uuid4().hex[:12]}"
    run_quietly(["run", str(FAILING_TOML), "--db", url, "--path", str(CLI_HERE), "--no-progress"])
    return url


def test_the_page_over_a_postgres_net_shows_the_graph_and_replays_a_dead_letter(failing_url, serve, page):
    read_only = serve(failing_url)
    assert "s3cret-pw" not in read_only.first_line and "postgresql://postgres:***@" in read_only.first_line
    open_page(page, read_only)
    page.wait_for_selector("#graph .gnode")
    assert sorted(page.locator("#graph .gnode .title").all_text_contents()) == ["Check", "Sink", "Source"]
    assert "s3cret-pw" not in page.content()
    open_page(page, read_only, "sql")
    page.fill("#sql", "SELECT node_name, count(*) AS n FROM epochs GROUP BY 1 ORDER BY 1")
    page.click("#run")
    page.wait_for_selector("#sql-result table")
    assert page.locator("#sql-result tbody tr").all_inner_texts() == ["Check\t6", "Sink\t3", "Source\t1"]
    page.fill("#sql", "DELETE FROM dead_letters")
    page.click("#run")
    page.wait_for_selector("#sql-result .error")
    assert "read-only" in page.inner_text("#sql-result")
    read_only.stop()

    writable = serve(failing_url, "--allow-writes")
    open_page(page, writable, "dlq")
    page.check("input[data-seq='1']")
    page.click("#replay")
    page.click("#confirm-yes")
    page.wait_for_selector("#dlq-message .notice")
    assert "dead letter #1: replayed as packet" in page.inner_text("#dlq-message")
    page.wait_for_function("() => document.querySelectorAll('input[data-seq]').length === 2")
    answer = page.request.get(writable.url + "api/sql", params={"q": "SELECT seq, status FROM dead_letters ORDER BY seq"})
    assert answer.json()["rows"] == [[1, "replayed"], [2, "pending"], [3, "pending"]]


def test_a_query_that_runs_too_long_on_postgres_is_stopped(failing_url, app_client, monkeypatch):
    from netrun.ui import queries

    monkeypatch.setattr(queries, "SQL_SECONDS", 0.5)  # the server's statement_timeout, not a progress handler
    client = app_client(failing_url)
    answer = client.get("/api/sql", params={"q": "SELECT count(*) FROM generate_series(1, 10000000000)"})
    assert answer.status == 400
    assert "stopped after" in answer.json()["message"]


@pytest.mark.parametrize("sql", ["SELECT pg_terminate_backend(pid) FROM pg_stat_activity",
                                 "select PG_READ_FILE('/etc/hostname')", 'SELECT "pg_advisory_lock"(1)',
                                 "SELECT set_config('statement_timeout', '0', false)", "SELECT lo_import('/etc/hostname')"])
def test_server_functions_that_act_beyond_a_read_are_refused_on_postgres(failing_url, app_client, sql):
    """A read-only transaction still lets these end the owner's session, take its lock or read the
    server's files: the SQL box and Net.query refuse them by name."""
    answer = app_client(failing_url).get("/api/sql", params={"q": sql})
    assert answer.status == 400
    assert answer.json()["error"] == "ReadOnlyQueryError" and "server function" in answer.json()["message"]
