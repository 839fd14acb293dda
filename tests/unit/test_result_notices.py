"""The notification a remote worker sends with a result (netrun.wakeups): a small result rides in it,
a big one is announced by its epoch only (PostgreSQL refuses a payload of 8,000 bytes)."""

from __future__ import annotations

import pickle

from netrun.wakeups import RESULT_IN_NOTICE, read_result_notice, result_notice

EPOCH = "01J9ZK3M7T0000000000000000"


def test_a_small_result_rides_in_its_notice():
    blob = pickle.dumps({"kind": "finished", "salvo": [("in", "p1")], "queue": []})
    notice = result_notice(EPOCH, blob)
    assert read_result_notice(notice) == (EPOCH, blob)


def test_a_big_result_is_announced_by_its_epoch_only():
    blob = b"\x80" + b"x" * RESULT_IN_NOTICE
    notice = result_notice(EPOCH, blob)
    assert notice == EPOCH and read_result_notice(notice) == (EPOCH, None)


def test_every_notice_fits_postgresqls_payload_limit():
    blob = b"\x80" + b"y" * (RESULT_IN_NOTICE - 1)
    assert len(result_notice(EPOCH, blob).encode()) < 8000


def test_a_damaged_notice_sends_the_owner_to_the_table():
    assert read_result_notice(f"{EPOCH} not*base64!") == (EPOCH, None)
