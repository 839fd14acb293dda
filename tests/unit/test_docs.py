"""The README documents every public feature, and its examples work."""

from __future__ import annotations

import inspect
import re
import shlex
from pathlib import Path

import netrun

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_public_net_method_is_in_the_readme():
    public = [name for name, _ in inspect.getmembers(netrun.Net) if not name.startswith("_")]
    missing = [name for name in public if f"{name}" not in README]
    assert missing == []


def test_every_net_and_node_option_is_in_the_readme():
    import dataclasses

    from netrun.config import NetConfig, NodeConfig

    names = [f.name for f in dataclasses.fields(NetConfig)] + [f.name for f in dataclasses.fields(NodeConfig)]
    assert [n for n in names if f"`{n}`" not in README] == []


FIRST_COMMAND = "pip install -e . && netrun run netrun/examples/wordfreq.toml --db wordfreq.db --overwrite"


def test_the_readme_gives_the_two_commands():
    assert FIRST_COMMAND in README
    assert 'pip install -e ".[test]" && python -m pytest' in README
    ci = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert "python -m pytest" in ci


def test_the_first_readme_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = re.findall(r"```python\n(.*?)```", README, re.S)[0]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    out = capsys.readouterr().out
    assert "[0, 2, 4]" in out
    assert "['doubling 0', 'doubling 1', 'doubling 2']" in out


def test_the_readme_first_command_runs_the_example_with_the_cli(tmp_path, monkeypatch, capsys):
    from netrun.cli import main

    root = Path(__file__).resolve().parents[2]
    argv = shlex.split(FIRST_COMMAND.split("&&", 1)[1])[1:]  # after `netrun`
    argv[1] = str(root / argv[1])  # the definition, relative to the checkout
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # --overwrite: the command can be run again
        assert main(argv) == 0
    out = capsys.readouterr().out
    assert "wordfreq.db: finished" in out
    assert re.search(r'│ Merge\s+│ total\s+│ \{"about":3,"all":3,"before":3', out)  # the result, top words first
