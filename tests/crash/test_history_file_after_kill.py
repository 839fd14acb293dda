"""The history file after a kill: resume catches it up from the table, and the records resume itself
writes (the crash semantics: an interrupted epoch cancelled, its packets dead-lettered) go in once."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import netrun
import netrun.graphs

CHILD = textwrap.dedent("""
    import os, signal, sys
    import netrun
    from netrun.graphs import chain

    def forward(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        if value == 7:
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-epoch: resume cancels this epoch
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])

    net = netrun.Net(chain("A", "B", "Sink"), db=sys.argv[1], history_file=sys.argv[2], history_chunk_size=3)
    net.set_node_exec("B", forward)
    net.set_node_exec("Sink", sink)
    for value in range(10):
        net.inject_packet("B", "in", value)
    net.start()
""")


def test_history_file_after_a_kill_and_resume_equals_the_table(tmp_path):
    db, history = str(tmp_path / "k.db"), tmp_path / "history.jsonl"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.run([sys.executable, str(script), db, str(history)], capture_output=True, timeout=60)
    assert child.returncode == -9, child.stderr
    with netrun.Net.resume(db, history_file=str(history)) as net:
        cancelled = net.query("SELECT count(*) AS n FROM history WHERE name = 'CancelInterruptedEpoch'")
        table = net.query("SELECT seq, name FROM history ORDER BY seq")
    assert cancelled[0]["n"] >= 1  # resume wrote records of its own
    lines = [json.loads(line) for line in history.read_text().splitlines()]
    assert [(r["seq"], r.get("action") or r.get("event")) for r in lines] == [(r["seq"], r["name"]) for r in table]


def test_a_history_file_ahead_of_the_database_is_refused_not_mixed(tmp_path):
    """The database lost commits the history file has (a killed run's -wal deleted, an older copy put
    back): resuming it refuses, naming the file, rather than appending records whose seqs the file
    already holds."""
    db, history = str(tmp_path / "k.db"), tmp_path / "history.jsonl"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    with netrun.Net(netrun.graphs.chain("A", "B", "Sink"), db=db, history_file=str(history)) as net:
        net.inject_packet("B", "in", 0)
    older = (tmp_path / "k.db").read_bytes()
    (tmp_path / "k.db").unlink()
    history.unlink()
    child = subprocess.run([sys.executable, str(script), db, str(history)], capture_output=True, timeout=60)
    assert child.returncode == -9, child.stderr
    with netrun.Net.resume(db, history_file=str(history)) as net:
        pass
    (tmp_path / "k.db").write_bytes(older)  # an older copy of the net put back: the file is far ahead of it
    written = history.read_text()
    with pytest.raises(netrun.StorageError, match="not this net's history"):
        netrun.Net.resume(db, history_file=str(history))
    assert history.read_text() == written
