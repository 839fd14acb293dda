"""Serving the app: the socket bound first (a port in use is a clear error), a warning for an
address other machines can reach, uvicorn without its access log, and `--open`."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable

import uvicorn

from ..dialect import is_url
from ..errors import ConfigError
from ..inspector import NetInspector
from ..pgconn import redact
from .app import create_app


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one). Raises ConfigError when it cannot be had."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}: {exc.strerror}; give --host an address such as 127.0.0.1",
                          host=host) from None
    family, kind, proto, _name, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart right after a stop reuses the port
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port "
                          "(0 picks a free one)", host=host, port=port) from None
    sock.set_inheritable(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def serve(path: str, *, host: str = "127.0.0.1", port: int = 8700, open_browser: bool = False,
          allow_writes: bool = False, say: Callable[[str], None] = print) -> int:
    """Serve the net in `path` until Ctrl-C (or SIGTERM). Returns the exit code (0).

    Raises (before serving anything): NotANetrunDatabase, DatabaseVersionError, CorruptDatabase
    for a file that cannot be read as a net; ConfigError for an address or port that cannot be had.
    """
    path = path if is_url(path) else os.path.abspath(path)
    NetInspector(path).close()  # a missing, foreign, newer or damaged file is refused here, not per request
    sock = bind(host, port)
    url = url_of(sock)
    if not is_loopback(host):
        print(f"netrun ui: warning: listening on {host}, not on a loopback address: every machine that reaches "
              f"this one can read this net's data{' and replay or discard its dead letters' if allow_writes else ''}",
              file=sys.stderr, flush=True)
    config = uvicorn.Config(create_app(path, allow_writes=allow_writes, served_host=host), log_level="warning",
                            access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    say(f"netrun ui: {redact(path) if is_url(path) else path} at {url} ({'dead letters can be replayed and discarded' if allow_writes else 'read-only'}"
        "; Ctrl-C stops)")
    if open_browser:
        def opener() -> None:
            deadline = time.monotonic() + 10
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            webbrowser.open(url)

        threading.Thread(target=opener, daemon=True).start()
    # uvicorn handles Ctrl-C and SIGTERM itself (a graceful stop), then raises the signal again for
    # the handler it found: a quiet one here, so that a stop is an ordinary exit (0), not a traceback.
    quiet = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)} \
        if threading.current_thread() is threading.main_thread() else {}
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in quiet.items():
            signal.signal(sig, handler)
    return 0
