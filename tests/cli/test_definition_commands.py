"""`netrun graph` (of a TOML definition or of a database) and `netrun validate`."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

from .conftest import FAILING_TOML, HERE, WORDFREQ_TOML, Cli, file_state

FORMATS = ["mermaid", "dot", "json"]
NODES = ["Count", "Merge", "Read", "Split", "Tokenize"]


def definition_edges(toml: Path) -> set[tuple[str, str, str, str]]:
    """(from node, from port, to node, to port) of every edge the definition lists."""
    edges = set()
    for entry in tomllib.loads(toml.read_text())["edges"]:
        edges.add((*entry["from"].split("."), *entry["to"].split(".")))
    return edges


WORDFREQ_EDGES = definition_edges(WORDFREQ_TOML)


@pytest.fixture(params=["toml", "db"])
def source(request: pytest.FixtureRequest) -> Path:
    """wordfreq.toml, or the database of a run of it (which stores the definition)."""
    return WORDFREQ_TOML if request.param == "toml" else request.getfixturevalue("wordfreq_db")


def test_the_example_has_six_edges():
    assert len(WORDFREQ_EDGES) == 6  # what the graph tests below count on


# -- graph ----------------------------------------------------------------------------------
def test_graph_json_lists_exactly_the_edges_and_nodes_of_the_definition(cli: Cli, source: Path):
    result = cli("graph", source, "--format", "json")
    assert result.code == 0 and result.err == ""
    graph = json.loads(result.out)
    edges = [(*e["from"].split("."), *e["to"].split(".")) for e in graph["edges"]]
    assert len(edges) == 6 and set(edges) == WORDFREQ_EDGES
    assert [node["name"] for node in graph["nodes"]] == NODES
    nodes = {node["name"]: node for node in graph["nodes"]}
    assert sorted(nodes["Read"]["out_ports"]) == ["out", "seed"] and not nodes["Read"]["in_ports"]
    assert nodes["Merge"]["in_salvo_conditions"]["default"]["when"] == "nonempty(in) and nonempty(total)"


def test_graph_json_flag_is_the_json_format(cli: Cli, source: Path):
    as_flag = cli("graph", source, "--json")
    assert as_flag.code == 0
    assert as_flag.out == cli("graph", source, "--format", "json").out
    json.loads(as_flag.out)


def test_graph_mermaid_draws_every_node_and_edge(cli: Cli, source: Path):
    result = cli("graph", source)  # mermaid is the default
    assert result.code == 0
    assert result.out == cli("graph", source, "--format", "mermaid").out
    lines = result.out.splitlines()
    assert lines[0] == "flowchart LR"
    ids = dict(re.findall(r'^\s+(n\d+)\["([^<"]+)', result.out, re.MULTILINE))
    assert sorted(ids.values()) == NODES
    edges = {(ids[a], out_port, ids[b], in_port)
             for a, out_port, in_port, b in re.findall(r'^\s+(n\d+) -->\|"(\w+) → (\w+)"\| (n\d+)$', result.out,
                                                       re.MULTILINE)}
    assert edges == WORDFREQ_EDGES
    assert sum("-->" in line for line in lines) == 6


def test_graph_dot_draws_every_node_and_edge(cli: Cli, source: Path):
    result = cli("graph", source, "--format", "dot")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[:1] == ["digraph net {"] and lines[-1] == "}"
    assert sorted(re.findall(r'^\s+"(\w+)" \[label=', result.out, re.MULTILINE)) == NODES
    edges = set(re.findall(r'^\s+"(\w+)":out_(\w+) -> "(\w+)":in_(\w+);$', result.out, re.MULTILINE))
    assert edges == WORDFREQ_EDGES
    assert sum("->" in line for line in lines) == 6


@pytest.mark.parametrize("fmt", FORMATS)
def test_graph_of_the_database_equals_the_graph_of_its_definition(cli: Cli, wordfreq_db: Path, fmt: str):
    from_db = cli("graph", wordfreq_db, "--format", fmt)
    assert from_db.code == 0
    assert from_db.out == cli("graph", WORDFREQ_TOML, "--format", fmt).out


def test_graph_of_a_definition_whose_functions_need_a_path(cli: Cli):
    result = cli("graph", FAILING_TOML, "--path", HERE, "--json")
    assert result.code == 0
    assert {(e["from"], e["to"]) for e in json.loads(result.out)["edges"]} == {
        ("Source.out", "Check.in"), ("Check.out", "Sink.in")}


def test_graph_with_an_unknown_format_is_a_usage_error(cli: Cli):
    result = cli("graph", WORDFREQ_TOML, "--format", "svg")
    assert result.code == 2
    assert result.out == ""
    assert "invalid choice: 'svg'" in result.err


# -- validate -------------------------------------------------------------------------------
def test_validate_of_the_example_passes(cli: Cli):
    result = cli("validate", WORDFREQ_TOML)
    assert result.code == 0 and result.err == ""
    assert result.out.startswith(f"{WORDFREQ_TOML}: valid")
    report = cli("validate", WORDFREQ_TOML, "--json").json()
    assert report["valid"] is True
    assert report["nodes"] == NODES
    assert report["edges"] == 6
    assert report["functions"] == {name: ["exec_node_func"] for name in NODES}


def test_validate_imports_functions_from_path(cli: Cli):
    report = cli("validate", FAILING_TOML, "--path", HERE, "--json").json()
    assert (report["nodes"], report["edges"]) == (["Check", "Sink", "Source"], 2)


BROKEN = {
    "syntax.toml": ('[nodes.A\nout_ports = ["out"]\n', "invalid TOML"),
    "unknown_node.toml": ('edges = [{ from = "A.out", to = "Nope.in" }]\n\n[nodes.A]\nout_ports = ["out"]\n',
                          "'Nope'"),
    "expression.toml": ('[nodes.A]\nin_ports = ["in"]\n\n[nodes.A.in_salvo_conditions.default]\n'
                        'when = "nonempty(in) and and"\n', "nonempty(in) and and"),
    "module.toml": ('[nodes.A]\nout_ports = ["out"]\nexec_node_func = "no_such_module_for_cli_tests.run"\n',
                    "no_such_module_for_cli_tests"),
    "unknown_key.toml": ('[nodes.A]\nout_ports = ["out"]\ncolour = "red"\n', "'colour'"),
}


@pytest.mark.parametrize("name", BROKEN)
def test_validate_of_a_broken_definition_names_the_file_and_the_problem(cli: Cli, tmp_path: Path, name: str):
    text, says = BROKEN[name]
    path = tmp_path / name
    path.write_text(text)
    before = file_state(tmp_path)
    result = cli("validate", path)
    assert result.code == 1
    assert result.out == ""
    [line] = result.error_lines()
    assert line.startswith(f"netrun: error: {path}")
    assert says in line
    assert file_state(tmp_path) == before  # validating creates nothing
    checked = cli("validate", path, "--json")
    assert checked.code == 1
    report = checked.json()  # the report, with its errors, on stdout
    assert report["valid"] is False and [e["message"] for e in report["errors"]] == [line.split(": error: ", 1)[1]]
    assert cli("graph", path).code == 1  # graph reads the definition the same way


def test_validate_of_a_missing_file_names_it(cli: Cli, tmp_path: Path):
    path = tmp_path / "nowhere.toml"
    result = cli("validate", path)
    assert result.code == 1
    [line] = result.error_lines()
    assert line.startswith("netrun: error:") and str(path) in line
    assert list(tmp_path.iterdir()) == []


def test_validate_of_a_database_file_says_it_is_one(cli: Cli, wordfreq_db: Path):
    # it used to report a UTF-8 decoding error of the "TOML" (a database holds its definition already)
    result = cli("validate", wordfreq_db)
    assert result.code == 2
    [line] = result.error_lines()
    assert str(wordfreq_db) in line and "is a database file, not a TOML definition" in line
    assert f"netrun graph {wordfreq_db}" in line
