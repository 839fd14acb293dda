"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from netrun.db import open_connection
from netrun.migrate import migrate


@pytest.fixture
def job_db(tmp_path):
    """(path, connection) of a migrated empty database, for tests of the job protocol (netrun.jobs)."""
    path = str(tmp_path / "jobs.db")
    conn = open_connection(path)
    migrate(conn, path)
    yield path, conn
    conn.close()
