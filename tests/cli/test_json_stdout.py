"""`run --json` and `resume --json` print exactly one JSON document on stdout, whatever the nodes
print: captured and echoed `print`, uncaptured `print`, `sys.stdout` writes, writes to file
descriptor 1, from the main thread, a thread pool and a process pool. The rest goes to stderr."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import HERE, rows

CHATTY_TOML = """
edges = [
    {{ from = "Echoed.out", to = "Raw.in" }},
    {{ from = "Raw.out", to = "Pooled.in" }},
]

[net]
{pools}

[nodes.Echoed]
in_ports = ["in"]
out_ports = ["out"]
exec_node_func = "cli_nodes.chatty"
options = {{ echo_stdout = true }}

[nodes.Raw]
in_ports = ["in"]
out_ports = ["out"]
exec_node_func = "cli_nodes.chatty"
options = {{ capture_stdout = false }}

[nodes.Pooled]
in_ports = ["in"]
exec_node_func = "cli_nodes.chatty_end"
options = {{ pool = "{pool}" }}
"""

POOLS = {"thread": 'thread_pools = { workers = { size = 2 } }',
         "process": 'process_pools = { workers = { size = 1 } }'}


def _netrun(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netrun", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("pool", ["thread", "process"])
def test_run_json_is_one_document_whatever_the_nodes_print(tmp_path: Path, pool: str):
    toml, db = tmp_path / "chatty.toml", tmp_path / "chatty.db"
    toml.write_text(CHATTY_TOML.format(pools=POOLS[pool], pool="workers"))
    done = _netrun("run", str(toml), "--db", str(db), "--path", str(HERE), "--packet", "Echoed.in=1",
                   "--packet", "Echoed.in=2", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # nothing else on stdout
    assert report["nodes"]["Echoed"]["finished"] >= 1
    for what in ("print", "sys.stdout", "fd 1"):
        for value in (1, 2):
            assert f"{what} {value}" in done.stderr  # nothing lost either: it went to stderr
    logged = {r["text"] for r in rows(db, "SELECT text FROM node_logs WHERE node_name = 'Pooled'")}
    assert logged == {"print 1", "print 2"}  # captured as ever


def test_resume_json_is_one_document_whatever_the_nodes_print(tmp_path: Path):
    toml, db = tmp_path / "chatty.toml", tmp_path / "chatty.db"
    toml.write_text(CHATTY_TOML.format(pools=POOLS["thread"], pool="workers"))
    first = _netrun("run", str(toml), "--db", str(db), "--path", str(HERE), "--packet", "Echoed.in=1",
                    "--no-progress", cwd=tmp_path)
    assert first.returncode == 0 and "fd 1 1" in first.stdout  # without --json, output stays on stdout
    import netrun

    with netrun.Net.resume(db) as net:  # more work for the resume; the functions are restored from the file
        net.inject_packet("Echoed", "in", 7)
    done = _netrun("resume", str(db), "--path", str(HERE), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run"]["epochs_ended"] == 3  # one epoch per node
    assert "fd 1 7" in done.stderr and "print 7" in done.stderr


NOISY_MODULE = """
import os
print("imported noisy")
os.write(1, b"noisy wrote to fd 1\\n")

def emit(ctx, packets):
    pass
"""

NOISY_TOML = """
[nodes.Emit]
out_ports = ["out"]
exec_node_func = "noisy_at_import.emit"
"""


@pytest.mark.parametrize("argv", [["validate", "{toml}", "--json"], ["graph", "{toml}", "--json"],
                                  ["graph", "{toml}", "--format", "dot"]])
def test_validate_and_graph_print_only_their_document_whatever_the_node_modules_print(tmp_path: Path, argv):
    # their import's output came first on stdout: `netrun validate x.toml --json | jq` and `| dot` failed
    (tmp_path / "noisy_at_import.py").write_text(NOISY_MODULE)
    toml = tmp_path / "noisy.toml"
    toml.write_text(NOISY_TOML)
    done = _netrun(*(arg.format(toml=toml) for arg in argv), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "imported noisy" in done.stderr and "noisy wrote to fd 1" in done.stderr
    assert "imported noisy" not in done.stdout and "fd 1" not in done.stdout
    if "--json" in argv:
        json.loads(done.stdout)
    else:
        assert done.stdout.startswith("digraph")
