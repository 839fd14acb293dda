"""Read commands change nothing: not the database's bytes, and no -wal/-shm left beside it."""

from __future__ import annotations

import os

import pytest

import netrun


def files_of(db) -> dict[str, bytes]:
    folder = db.parent
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.mark.parametrize("argv", [
    ["status"], ["status", "--json"], ["history", "--limit", "0"], ["history", "--node", "Merge", "--json"],
    ["sql", "SELECT count(*) FROM history"], ["logs"], ["logs", "--follow"], ["dlq", "{db}", "list"],
    ["graph", "--format", "dot"],
])
def test_a_read_command_leaves_the_folder_as_it_found_it(cli, wordfreq_db, argv):
    with netrun.Net.resume(wordfreq_db):  # a clean close: the WAL is folded into the file and removed
        pass
    before = files_of(wordfreq_db)
    assert not any(name.endswith(("-wal", "-shm")) for name in before)
    argv = [a.replace("{db}", str(wordfreq_db)) for a in argv]
    if argv[0] != "dlq":
        argv.insert(1, str(wordfreq_db))
    result = cli(*argv)
    assert result.code == 0, result.err
    assert files_of(wordfreq_db) == before


def test_trace_leaves_the_folder_as_it_found_it(cli, wordfreq_db):
    with netrun.Net.resume(wordfreq_db) as net:
        packet = net.query("SELECT packet_id FROM history WHERE name = 'CreatePacket' AND node_name = 'Count' "
                           "LIMIT 1")[0]["packet_id"]
    before = files_of(wordfreq_db)
    assert cli("trace", wordfreq_db, packet).code == 0
    assert files_of(wordfreq_db) == before
