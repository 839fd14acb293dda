"""Fixtures for the `netrun ui` tests: finished runs to look at (`failing_db` is the CLI tests' one), a real `netrun ui` server in a
child process on a free port, and headless Chromium (Debian's `chromium`, driven by Playwright).

Chromium missing is a failure that says how to install it, never a skip: CI installs it (.ci/run).
Screenshots go to the test's tmp_path (printed), never into the repository.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.cli.conftest import _prepared, copy_db, failing_db, run_quietly  # noqa: F401 - fixtures

HERE = Path(__file__).resolve().parent  # holds ui_nodes.py: passed with --path
ROOT = HERE.parents[1]
STEPS_TOML = HERE / "nets" / "steps.toml"
WAIT = 20.0  # seconds: the longest a child process or the page is waited for


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout first on its path."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


@dataclass
class Server:
    """A `netrun ui` child process and the address it serves."""

    process: subprocess.Popen
    url: str
    log: Path
    first_line: str = ""

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=WAIT)
        self.process.stdout.close()
        return self.process.returncode


@dataclass
class Servers:
    folder: Path
    started: list[Server] = field(default_factory=list)

    def __call__(self, db: Path, *flags: str) -> Server:
        log = self.folder / f"ui-{len(self.started)}.stderr"
        with open(log, "w") as errors:
            process = subprocess.Popen([sys.executable, "-m", "netrun", "ui", str(db), "--port", "0", *flags],
                                       stdout=subprocess.PIPE, stderr=errors, text=True, env=child_env())
        line = process.stdout.readline()
        found = re.search(r"http://\S+/", line)
        if not found:
            process.kill()
            process.wait()
            pytest.fail(f"netrun ui did not start: {line!r}; stderr: {log.read_text()}")
        server = Server(process, found.group(0), log, line)
        self.started.append(server)
        return server


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Servers]:
    """`serve(db, "--allow-writes")`: a running `netrun ui` server; stopped after the test."""
    servers = Servers(tmp_path)
    yield servers
    for server in servers.started:
        server.stop()


@pytest.fixture(scope="session")
def _ui_prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    steps = tmp_path_factory.mktemp("ui-prepared") / "steps.db"
    run_quietly(["run", str(STEPS_TOML), "--db", str(steps), "--path", str(HERE), "--no-progress"])
    return steps


@pytest.fixture
def steps_db(_ui_prepared: Path, tmp_path: Path) -> Path:
    """A finished run of nets/steps.toml: 12 values through Emit -> Step -> Sink."""
    return copy_db(_ui_prepared, tmp_path / "steps.db")


# -- the app in this process, over HTTP ---------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class Client:
    """The app served by uvicorn in a thread of this process (so a test sees what the app does in
    it), asked with the stdlib's http.client: any method, any Host or Origin header."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        from netrun.ui.server import bind

        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the app did not start"
            time.sleep(0.01)

    def request(self, method: str, path: str, *, params: dict | None = None, body: bytes | str | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        if params:
            path += "?" + urlencode(params)
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            conn.request(method, path, body=body, headers={"Host": f"127.0.0.1:{self.port}", **(headers or {})})
            response = conn.getresponse()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()},
                          response.read().decode())
        finally:
            conn.close()

    def get(self, path: str, **options: Any) -> Answer:
        return self.request("GET", path, **options)

    def post(self, path: str, **options: Any) -> Answer:
        return self.request("POST", path, **options)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=WAIT)
        self.sock.close()


@pytest.fixture
def app_client() -> Iterator[Callable[..., Client]]:
    """`app_client(db, allow_writes=True, token=...)`: the app over `db`, stopped after the test."""
    made: list[Client] = []

    def make(db: Path, **options: Any) -> Client:
        from netrun.ui.app import create_app

        made.append(Client(create_app(str(db), **options)))
        return made[-1]

    yield make
    for client in made:
        client.close()


# -- the browser -------------------------------------------------------------------------------
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("the browser tests need Debian's chromium: apt-get install -y chromium (.ci/run installs it)")
    return path


@pytest.fixture(scope="package")
def browser() -> Iterator:
    """Playwright's sync API runs an event loop in the main thread while it is open: it ends with this
    package's tests, so a later test's `net.start()` of async nodes finds no loop running."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh page; a script error on it fails the test."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(WAIT * 1000)
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def open_page(page, server: Server, route: str = "") -> None:
    """Load the page at `#/route` and wait until it has drawn it."""
    page.goto(server.url + "#/" + route)
    page.wait_for_selector("main[data-ready]")


def follow(link) -> None:
    """Click a `#/route` link and wait until the page has drawn that route (not the page it left)."""
    route = link.get_attribute("href").removeprefix("#/").split("?")[0]
    link.click()
    link.page.wait_for_selector(f'main[data-route="{route}"][data-ready]')

