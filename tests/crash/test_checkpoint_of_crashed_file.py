"""A checkpoint of a crashed net's file (`netrun checkpoint`, `checkpoint_file`) keeps its start intents
(`<db>-starts`): the restored net applies the crash semantics to the epochs that started without a
committed start, as resuming the file would: they are cancelled and their values dead-lettered
'interrupted', never run a second time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import netrun
from netrun.checkpoint import checkpoint_file, restore_checkpoint
from tests.integration.helpers import rows

NODES = textwrap.dedent("""
    import os, signal

    def forward(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        with open(os.environ["EFFECTS"], "a") as handle:
            handle.write(f"{value}\\n")  # what the node did (a side effect outside the net)
        if value == 40 and os.environ.get("DIE"):
            os.kill(os.getpid(), signal.SIGKILL)  # dies mid-epoch: its start is only in <db>-starts
        ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")

    def sink(ctx, packets):
        ctx.consume_packet(packets["in"][0])
""")

CHILD = textwrap.dedent("""
    import sys
    sys.path[:0] = sys.argv[2:3]
    import netrun
    from netrun.graphs import chain
    import ckpt_nodes
    net = netrun.Net(chain("A", "B", "Sink"), db=sys.argv[1])
    net.set_node_exec("B", ckpt_nodes.forward)
    net.set_node_exec("Sink", ckpt_nodes.sink)
    for value in range(50):
        net.inject_packet("B", "in", value)
    net.start()
""")


def test_a_checkpoint_of_a_crashed_file_keeps_its_start_intents(tmp_path, monkeypatch):
    (tmp_path / "ckpt_nodes.py").write_text(NODES)
    effects = tmp_path / "effects"
    db = str(tmp_path / "k.db")
    env = {**os.environ, "EFFECTS": str(effects), "DIE": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, db, str(tmp_path)], env=env, capture_output=True,
                           timeout=60)
    assert child.returncode == -9, child.stderr
    assert os.path.exists(db + "-starts")
    assert rows(db, "SELECT count(*) AS n FROM epochs WHERE state = 'running'") == [{"n": 0}], \
        "value 40's start was committed: the intents file is not what this test exercises"
    checkpoint_file(db, str(tmp_path / "ckpt"))
    restore_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "restored.db"))
    monkeypatch.setenv("EFFECTS", str(effects))
    monkeypatch.syspath_prepend(str(tmp_path))
    with netrun.Net.resume(str(tmp_path / "restored.db"), on_error="continue") as net:
        net.start()
        lettered = [(d.value, d.reason) for d in net.dead_letter_queue.get_all()]
    assert (40, "interrupted") in lettered
    assert effects.read_text().split().count("40") == 1  # the node never ran on 40 again
