"""Fixtures for every test folder: a throw-away PostgreSQL server, and the database of a net on
either store.

The server (tools/pg_server.py: Debian's packaged PostgreSQL, installed when missing) starts once
per test session, when the first test asks for it, and is stopped at the end. Each test gets a
net of its own in it (`?net=NAME`: one schema per net). A server that cannot start fails the tests
that need it, with the reason: they never skip.
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
BACKENDS = ["sqlite", "postgres"]


def pg_server_module() -> ModuleType:
    """tools/pg_server.py (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("netrun_tools_pg_server", TOOLS / "pg_server.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """The session's PostgreSQL server (`.url`: its `postgres` database)."""
    module = pg_server_module()
    try:
        server = module.start()
    except module.ServerError as exc:
        pytest.fail(f"the PostgreSQL tests need a server, and it could not be started: {exc}", pytrace=False)
    yield server
    server.stop()


def new_net_url(server: Any) -> str:
    return f"{server.url}?net=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """The URL of a net of this test's own (a new schema) on the session's server."""
    return new_net_url(pg_server)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's net lives, once per store: a file in `tmp_path`, or a new PostgreSQL schema."""
    if backend == "postgres":
        return new_net_url(request.getfixturevalue("pg_server"))
    return str(tmp_path / "net.db")
