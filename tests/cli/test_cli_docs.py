"""Every `netrun` command is documented in the README with an example, and has --help."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from netrun.cli import build_parser, main

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


COMMANDS = _subparsers(build_parser())
DLQ_ACTIONS = _subparsers(COMMANDS["dlq"])


def test_the_command_set_is_the_one_the_issue_asks_for():
    assert set(COMMANDS) == {"run", "resume", "status", "history", "sql", "trace", "logs", "dlq", "checkpoint",
                             "graph", "validate", "value", "prune", "stop", "inject", "restore", "export", "ui",
                             "worker"}
    assert set(DLQ_ACTIONS) == {"list", "show", "replay", "discard"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_a_readme_section_with_an_example(command):
    assert f"### `netrun {command}`" in README, f"README has no section for netrun {command}"
    section = README.split(f"### `netrun {command}`", 1)[1].split("\n### ", 1)[0]
    examples = re.findall(rf"^netrun {command}\b.*$", section, re.MULTILINE)
    assert examples, f"the README section of netrun {command} shows no example command line"


@pytest.mark.parametrize("action", sorted(DLQ_ACTIONS))
def test_every_dlq_action_has_a_readme_example(action):
    section = README.split("### `netrun dlq`", 1)[1].split("\n### ", 1)[0]
    assert re.search(rf"^netrun dlq \S+ {action}\b", section, re.MULTILINE)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: netrun {command}")
    assert COMMANDS[command].description and COMMANDS[command].description.split(".")[0][:40] in " ".join(out.split())


@pytest.mark.parametrize("action", sorted(DLQ_ACTIONS))
def test_every_dlq_action_has_help(action, capsys):
    assert main(["dlq", "run.db", action, "--help"]) == 0
    assert capsys.readouterr().out.startswith(f"usage: netrun dlq file {action}")


@pytest.mark.parametrize("command", sorted(set(COMMANDS) - {"run", "resume", "checkpoint", "ui"}))  # ui: a server
def test_every_read_command_takes_json(command):
    options = {o for action in COMMANDS[command]._actions for o in action.option_strings}
    subcommands = _subparsers(COMMANDS[command])
    if subcommands:
        options = {o for sub in subcommands.values() for action in sub._actions for o in action.option_strings}
    assert "--json" in options


def test_the_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert re.search(rf"^\s+{command}\b", out, re.MULTILINE), command


@pytest.mark.parametrize("argv", [[], ["nonsense"], ["status"], ["history", "x.db", "--limit", "many"],
                                  ["graph", "x.toml", "--format", "svg"], ["dlq", "x.db"],
                                  # numbers SQLite cannot bind, and intervals that would print without pause
                                  ["history", "x.db", "--limit", "99999999999999999999"],
                                  ["logs", "x.db", "--limit", "-1"], ["status", "x.db", "--recent", "1e30"],
                                  ["trace", "x.db", "P", "--depth", "-2"],
                                  ["dlq", "x.db", "show", "99999999999999999999"],
                                  ["run", "x.toml", "--db", "x.db", "--interval", "0"],
                                  ["resume", "x.db", "--interval", "nan"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage: netrun" in capsys.readouterr().err


def test_python_dash_m_netrun_is_the_same_command():
    done = subprocess.run([sys.executable, "-m", "netrun", "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert re.fullmatch(r"netrun \d+\.\d+\.\d+\n", done.stdout)
