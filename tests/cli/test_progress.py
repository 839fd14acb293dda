"""The progress display: the live table's content, and a real terminal (a pty) gets it."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

import netrun
from netrun.cli.progress import LiveProgress

NETS = Path(__file__).parent / "nets"

HOLDING = """
edges = [{ from = "Emit.out", to = "Hold.in" }]

[nodes.Emit]
out_ports = ["out"]
exec_node_func = "run_nodes.emit"

[nodes.Hold]   # never starts: `never` gets no packet, so every value waits at Hold.in
in_ports = ["in", "never"]
exec_node_func = "run_nodes.sink"
[nodes.Hold.in_salvo_conditions.default]
when = "nonempty(in) and nonempty(never)"
"""


def test_the_live_table_shows_counts_per_node_and_packets_waiting(tmp_path, monkeypatch):
    monkeypatch.setenv("NETRUN_TEST_VALUES", "7")
    monkeypatch.syspath_prepend(str(NETS))
    db = tmp_path / "hold.db"
    with netrun.Net.load_definition(HOLDING, db=db) as net:
        net.inject_source_epoch("Emit")
        with netrun.NetInspector(db) as inspector:
            screen = Console(file=io.StringIO(), force_terminal=True, width=100, record=True)
            display = LiveProgress(net, inspector, screen, inspector.node_counts(), interval=0.25)
            net.start()
            screen.print(display.render())
    text = screen.export_text()
    assert re.search(r"1 epochs ended \(\d+/s\)\s+running 0\s+queued 0\s+startable 0\s+failed 0", text)
    # columns: startable, queued, running, finished, failed, cancelled
    assert re.search(r"│ Emit\s+│\s+0 │\s+0 │\s+0 │\s+1 │\s+0 │\s+0 │", text)
    assert re.search(r"│ Hold\s+│\s+0 │\s+0 │\s+0 │\s+0 │\s+0 │\s+0 │", text)
    assert "packets waiting" in text
    assert re.search(r"│ \(at port\)\s+│ Hold\.in\s+│\s+7 │", text)


def test_a_terminal_gets_the_live_display_and_a_pipe_does_not(tmp_path):
    env = {**os.environ, "NETRUN_TEST_VALUES": "40", "NETRUN_TEST_DELAY": "0.01", "COLUMNS": "120"}
    argv = [sys.executable, "-m", "netrun", "run", str(NETS / "slow.toml")]
    main_fd, child_fd = pty.openpty()
    try:
        child = subprocess.Popen([*argv, "--db", str(tmp_path / "tty.db")], stdin=subprocess.DEVNULL,
                                 stdout=child_fd, stderr=child_fd, env=env)
        os.close(child_fd)
        chunks = []
        while True:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert child.wait(timeout=60) == 0
    finally:
        os.close(main_fd)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "\x1b[" in screen  # cursor movement and styles of the live table
    assert re.search(r"epochs ended \(\d+/s\)", screen)  # the live headline was drawn at least once
    assert "finished — 81 epochs" in screen
    piped = subprocess.run([*argv, "--db", str(tmp_path / "pipe.db")], capture_output=True, text=True, env=env,
                           timeout=60)
    assert piped.returncode == 0
    assert "\x1b[" not in piped.stdout + piped.stderr
    assert "finished — 81 epochs" in piped.stdout


def test_status_says_when_it_shows_only_some_of_the_live_packets(tmp_path, monkeypatch, capsys):
    from netrun.cli import main

    monkeypatch.setenv("NETRUN_TEST_VALUES", "30")
    monkeypatch.syspath_prepend(str(NETS))
    db = tmp_path / "hold.db"
    with netrun.Net.load_definition(HOLDING, db=db) as net:
        net.inject_source_epoch("Emit")
        net.start()
    assert main(["status", str(db)]) == 0
    out = capsys.readouterr().out
    assert "(the oldest 10 of 30 live packets; all of them: netrun sql" in out
    assert len(re.findall(r"│ \S+\s+│ input_port │ Hold\s+│ in\s+│ \d+\s+│", out)) == 10
