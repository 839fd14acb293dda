"""`netrun validate` lists every error with its file:line, then warnings; it fails on errors only."""

from __future__ import annotations

from pathlib import Path

from netrun.checks import check_definition

from .conftest import Cli

MANY_ERRORS = """\
edges = [
    { from = "A.out", to = "C.in" },
    { from = "A.out", to = "C.nope" },
    { from = "Broken.out", to = "C.in" },
]

[nodes.A]
out_ports = ["out"]
exec_node_func = "no_such_module_for_cli_tests.run"

[nodes.B]
in_ports = ["in"]
options = { retries = "many" }

[nodes.Broken]
in_ports = ["in"]
out_ports = ["out"]
in_salvo_conditions = { go = { when = "nonempty(zzz)" } }

[nodes.C]
in_ports = ["in"]
exec_node_func = "os.path.join"

[nodes.D]
colour = "red"
"""

WARNINGS = """\
edges = [
    { from = "A.out", to = "B.in" },
]

[nodes.A]
out_ports = ["out", "spare"]
exec_node_func = "os.path.join"

[nodes.B]
in_ports = ["in"]

[nodes.Island]
in_ports = ["in"]
exec_node_func = "os.path.join"
"""


def test_every_error_is_listed_with_its_line(cli: Cli, tmp_path: Path):
    path = tmp_path / "many.toml"
    path.write_text(MANY_ERRORS)
    result = cli("validate", path)
    assert result.code == 1 and result.out == ""
    lines = result.error_lines()
    expected = [(3, "edge 2 ('A.out' -> 'C.nope')"), (9, "no_such_module_for_cli_tests"), (13, "'retries'"),
                (18, "'zzz'"), (25, "'colour'")]
    assert len(lines) == len(expected), lines
    for line, (number, says) in zip(lines, expected):
        assert line.startswith(f"netrun: error: {path}:{number}:") and says in line, line
    report = cli("validate", path, "--json")
    assert report.code == 1
    assert [e["line"] for e in report.json()["errors"]] == [n for n, _ in expected]
    assert report.json()["warnings"] == []  # not computed over a graph with parts left out


def test_warnings_name_unconnected_ports_nodes_without_exec_and_unreachable_nodes(cli: Cli, tmp_path: Path):
    path = tmp_path / "warn.toml"
    path.write_text(WARNINGS)
    result = cli("validate", path)
    assert result.code == 0  # warnings only
    assert result.out.startswith(f"{path}: valid") and "4 warnings" in result.out
    lines = result.error_lines()
    assert lines == [
        f"netrun: {path}:6: warning: node 'A' output port 'spare' has no edge out of it",
        f"netrun: {path}:9: warning: node 'B' has no exec function (exec_node_func): its epochs stay startable "
        "until one is set (Net.set_node_exec)",
        f"netrun: {path}:13: warning: node 'Island' input port 'in' has no edge into it: only packets injected "
        "there reach it",
        f"netrun: {path}:12: warning: node 'Island' is not reachable from any source node (A): only packets "
        "injected into it start it"]
    report = cli("validate", path, "--json").json()
    assert report["valid"] is True and [w["line"] for w in report["warnings"]] == [6, 9, 13, 12]


def test_a_net_without_source_nodes_gets_one_warning_for_it(tmp_path: Path):
    checked = check_definition('[nodes.Echo]\nin_ports = ["in"]\nexec_node_func = "os.path.join"\n')
    assert checked.errors == []
    assert [w.message for w in checked.warnings] == [
        "node 'Echo' input port 'in' has no edge into it: only packets injected there reach it",
        "no source node (a node without input ports): work enters only as injected packets"]


def test_the_example_has_no_warning(cli: Cli):
    from .conftest import WORDFREQ_TOML

    result = cli("validate", WORDFREQ_TOML)
    assert result.code == 0 and result.err == ""
