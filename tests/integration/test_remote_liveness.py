"""A remote worker's connections notice a database machine that falls silent (no reset: powered off, a
firewall that drops): TCP keepalives and a user timeout on every socket it opens, so a statement fails
after ~20 s instead of ~15 minutes, and the worker reconnects or gives up after --reconnect-for.

The sockets' options are read from the kernel. (Measured by hand with the worker in a network namespace
whose link was cut: it said "lost the database" 24.6 s after the cut and exited 12 s later with
--reconnect-for 10; cut for 45 s, it came back and the run ended with every value once. Before: still
silent 90 s after the cut. A test cannot drop packets without root.)"""

from __future__ import annotations

import socket

import pytest

import netrun
from netrun.db import open_connection
from netrun.graphs import chain
from netrun.remote import LIVENESS, RemoteWorker

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux


def tcp_options(conn) -> dict[str, int]:
    sock = socket.socket(fileno=conn.pg.pgconn.socket)
    try:
        return {"SO_KEEPALIVE": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "keepalives_idle": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                "keepalives_interval": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                "keepalives_count": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                "tcp_user_timeout": sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT)}
    finally:
        sock.detach()  # the descriptor stays libpq's


@pytest.fixture
def remote_url(pg_url) -> str:
    netrun.Net(chain("Src", "Work"), db=pg_url, remote_pools={"cpu": {}}).close()
    return pg_url


def test_every_connection_of_a_worker_gives_up_on_a_silent_server(remote_url):
    worker = RemoteWorker(remote_url, "cpu")
    job_conn = open_connection(worker.spec.db_path)  # as its claiming threads and lease renewals open theirs
    try:
        expected = {"SO_KEEPALIVE": 1, **{key: int(value) for key, value in LIVENESS.items()}}
        assert tcp_options(worker._conn) == expected
        assert tcp_options(job_conn) == expected
        assert expected["tcp_user_timeout"] <= 30_000  # ms: well inside --reconnect-for's default 60 s
    finally:
        job_conn.close()
        worker._conn.close()


def test_liveness_settings_in_the_url_win(remote_url):
    worker = RemoteWorker(f"{remote_url}&keepalives_idle=42&tcp_user_timeout=5000", "cpu")
    try:
        found = tcp_options(worker._conn)
        assert (found["keepalives_idle"], found["tcp_user_timeout"]) == (42, 5000)
        assert found["keepalives_count"] == int(LIVENESS["keepalives_count"])
    finally:
        worker._conn.close()
