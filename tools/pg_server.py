"""A throw-away PostgreSQL server for tests and benchmarks: started in under a second, gone when stopped.

    python tools/pg_server.py start --dir /tmp/pg        # prints the URL to give Net(db=...) or --db
    python tools/pg_server.py stop --dir /tmp/pg         # immediate stop; the folder is removed
    python tools/pg_server.py install                    # only install the server (CI does it first)

The server is Debian's packaged PostgreSQL (`/usr/lib/postgresql/NN/bin`, 15 preferred), installed
with apt-get when missing. `initdb` and `postgres` refuse to run as root: as root the cluster
belongs to the `postgres` system user and its commands run through `/usr/sbin/runuser`. It
listens on 127.0.0.1 only, on a free port, trusts every local login, and runs with fsync,
synchronous commit and full-page writes off: fast, and as durable as a test needs (a killed
client loses nothing the server acknowledged; a power cut may lose the server's data).

Tests use `start()`/`PgServer.stop()` from a session fixture (tests/conftest.py); netrun itself
never imports this file.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

RUNUSER = "/usr/sbin/runuser"
SERVER_USER = "postgres"
PREFERRED = "15"
TEST_SETTINGS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


class ServerError(RuntimeError):
    """The server could not be installed, initialized or started; the message says what failed."""


def find_bin() -> Path | None:
    """The packaged server's bin folder (version 15 if present, else the newest), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        return None
    preferred = [p for p in found if Path(p).parent.parent.name == PREFERRED]
    return Path((preferred or found)[-1]).parent


def install() -> Path:
    """Install Debian's `postgresql` package when no server is present; returns its bin folder.

    Raises ServerError when it cannot (not root and no passwordless sudo, no network)."""
    bin_dir = find_bin()
    if bin_dir is not None:
        return bin_dir
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "postgresql"]):
        done = subprocess.run(prefix + command, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise ServerError(f"PostgreSQL is not installed and `{' '.join(command)}` failed "
                              f"(exit {done.returncode}): {done.stderr.strip()[-500:]}")
    bin_dir = find_bin()
    if bin_dir is None:
        raise ServerError("apt-get installed postgresql, but no /usr/lib/postgresql/*/bin/pg_ctl was found")
    return bin_dir


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_server_user(command: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return command
    return [RUNUSER, "-u", SERVER_USER, "--", *command]


def _server_user() -> str:
    if os.geteuid() != 0:
        import getpass

        return getpass.getuser()
    return SERVER_USER


def _run(command: list[str], what: str) -> None:
    done = subprocess.run(_as_server_user(command), capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ServerError(f"{what} failed (exit {done.returncode}): {(done.stderr or done.stdout).strip()[-1500:]}")


@dataclass
class PgServer:
    """A running throw-away server: its folder, port and the URL of its `postgres` database."""

    directory: Path
    port: int
    bin_dir: Path

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{_server_user()}@127.0.0.1:{self.port}/postgres"

    def stop(self, *, remove: bool = True) -> None:
        """Stop at once (`pg_ctl -m immediate`: no shutdown checkpoint), and remove the folder."""
        subprocess.run(_as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                                        "-w", "stop"]), capture_output=True, stdin=subprocess.DEVNULL)
        if remove:
            shutil.rmtree(self.directory, ignore_errors=True)


def start(directory: str | os.PathLike | None = None, *, port: int | None = None, durable: bool = False) -> PgServer:
    """Initialize a cluster in `directory` (a new temporary folder when None) and start it. As root, the
    `postgres` user must be able to enter every folder above `directory`. `durable`: keep the server's
    default fsync settings (for benchmarks of durable commits).

    Raises ServerError naming the step that failed (install, initdb, start)."""
    bin_dir = install()
    if directory is None:
        directory = tempfile.mkdtemp(prefix="netrun-pg-")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(folder, SERVER_USER, SERVER_USER)
        os.chmod(folder, 0o700)
    server = PgServer(folder, port or free_port(), bin_dir)
    if not (server.data / "PG_VERSION").exists():
        _run([str(bin_dir / "initdb"), "-D", str(server.data), "--no-sync", "--auth=trust", "-E", "UTF8",
              "--locale=C.UTF-8", "-U", _server_user()], "initdb")
    options = f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.data}" + ("" if durable else f" {TEST_SETTINGS}")
    try:
        _run([str(bin_dir / "pg_ctl"), "-D", str(server.data), "-l", str(folder / "server.log"), "-w", "-t", "30",
              "-o", options, "start"], "pg_ctl start")
    except ServerError as exc:
        log = folder / "server.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise ServerError(f"{exc}\nserver log:\n{tail}") from None
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pg_server.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("start", help="initialize and start a server; prints its URL")
    up.add_argument("--dir", required=True, help="the server's folder (created; reused if it holds a cluster)")
    up.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    sub.add_parser("install", help="install Debian's postgresql package unless a server is present")
    down = sub.add_parser("stop", help="stop the server of --dir at once and remove the folder")
    down.add_argument("--dir", required=True)
    down.add_argument("--keep", action="store_true", help="keep the folder (its data and server.log)")
    args = parser.parse_args(argv)
    if args.command == "install":
        try:
            print(install())
        except ServerError as exc:
            print(f"pg_server.py: {exc}", file=sys.stderr)
            return 1
        return 0
    if args.command == "start":
        try:
            server = start(args.dir, port=args.port)
        except ServerError as exc:
            print(f"pg_server.py: {exc}", file=sys.stderr)
            return 1
        (server.directory / "url").write_text(server.url + "\n")
        print(server.url)
        return 0
    bin_dir = find_bin()
    if bin_dir is None:
        print("pg_server.py: PostgreSQL is not installed", file=sys.stderr)
        return 1
    PgServer(Path(args.dir), 0, bin_dir).stop(remove=not args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
