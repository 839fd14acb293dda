"""One owner per PostgreSQL net: an advisory lock held by a connection of its own, and a fenced owner
record that every write transaction of the owner checks, so that an owner that was replaced can no
longer commit."""

from __future__ import annotations

import psycopg
import pytest

import netrun
from netrun.graphs import chain


def owner_backend_pid(net: netrun.Net) -> int:
    return net._owner._pg.info.backend_pid


def terminate(url_base: str, pid: int) -> None:
    with psycopg.connect(url_base, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]


def test_an_owner_whose_lock_was_lost_and_taken_over_can_no_longer_commit(pg_server, pg_url):
    first = netrun.Net(chain("A", "B"), db=pg_url)
    try:
        first.inject_packet("B", "in", 1)
        terminate(pg_server.url, owner_backend_pid(first))  # its lock is gone with that connection
        with netrun.Net.resume(pg_url) as second:  # a new owner takes the net
            second.inject_packet("B", "in", 2)
            with pytest.raises(netrun.NetInUse) as caught:
                first.inject_packet("B", "in", 3)
            assert "no longer owns the net" in str(caught.value)
            values = sorted(second.get_packet_value(r["id"]) for r in second.query(
                "SELECT id FROM packets WHERE state = 'live'"))
            assert values == [1, 2]  # nothing of the replaced owner's was written after the takeover
    finally:
        with pytest.raises(netrun.NetInUse):
            first.close()  # its last commit is refused too; it closes all the same
    assert first.poll().state == "stopped"


def test_a_standby_waits_for_the_owner_and_takes_over_when_it_closes(pg_url):
    import threading

    owner = netrun.Net(chain("A", "B"), db=pg_url)
    owner.inject_packet("B", "in", 1)
    taken: list[netrun.Net] = []
    standby = threading.Thread(target=lambda: taken.append(netrun.Net.resume(pg_url, wait=30)))
    standby.start()
    standby.join(0.5)
    assert standby.is_alive()  # waiting for the lock
    owner.close()
    standby.join(30)
    assert taken
    with taken[0] as net:
        assert net.query("SELECT count(*) AS n FROM packets WHERE state = 'live'") == [{"n": 1}]
