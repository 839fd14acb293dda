"""Import paths in definitions: `save_definition` writes the spec's dotted form ("module.func"), and both
the dotted and the colon form ("module:func") load, nested qualnames ("module.Class.method") included."""

from __future__ import annotations

import pytest

import netrun
from netrun.factories import dotted_path
from netrun.graphs import chain
from tests.dsl_fixtures import nodes as fx

NODES = "tests.dsl_fixtures.nodes"


@pytest.fixture(autouse=True)
def clear_results():
    fx.RESULTS.clear()


def definition(source: str, double: str) -> str:
    return f"""
[nodes.Source]
out_ports = ["out"]
exec_node_func = "{source}"

[nodes.Double]
in_ports = ["in"]
out_ports = ["out"]
exec_node_func = "{double}"

[nodes.Sink]
in_ports = ["in"]
exec_node_func = "{NODES}.sink"

[[edges]]
from = "Source.out"
to = "Double.in"

[[edges]]
from = "Double.out"
to = "Sink.in"
"""


@pytest.mark.parametrize("source, double, expected", [
    (f"{NODES}.source", f"{NODES}.double", [0, 2, 4]),
    (f"{NODES}:source", f"{NODES}:double", [0, 2, 4]),
    (f"{NODES}.source", f"{NODES}.Stages.triple", [0, 3, 6]),
    (f"{NODES}:source", f"{NODES}:Stages.triple", [0, 3, 6]),
])
def test_dotted_and_colon_paths_load_and_run(source, double, expected):
    with netrun.Net.load_definition(definition(source, double)) as net:
        net.inject_source_epoch("Source")
        net.start()
    assert sorted(fx.RESULTS) == expected


@pytest.mark.parametrize("double", [f"{NODES}:double", f"{NODES}.double"])
def test_save_writes_the_specs_dotted_paths_whichever_form_was_loaded(double):
    with netrun.Net.load_definition(definition(f"{NODES}:source", double)) as net:
        text = net.dumps_definition()
    assert f'exec_node_func = "{NODES}.double"' in text
    assert f'exec_node_func = "{NODES}.source"' in text
    assert ":" not in "".join(line for line in text.splitlines() if "func" in line)


def test_a_function_registered_in_python_is_saved_dotted_and_loads_back(tmp_path):
    with netrun.Net(chain("Source", "Triple", "Sink")) as net:
        net.set_node_exec("Source", fx.source)
        net.set_node_exec("Triple", fx.Stages.triple)
        net.set_node_exec("Sink", fx.sink)
        net.set_output_port_type("Triple", "out", fx.Point)
        net.save_definition(tmp_path / "net.toml")
    text = (tmp_path / "net.toml").read_text()
    assert f'exec_node_func = "{NODES}.Stages.triple"' in text
    assert f'class = "{NODES}.Point"' in text  # port types too
    with netrun.Net.load_definition(tmp_path / "net.toml") as net:
        assert net.get_port_types("Triple")["out"]["out"] == {"class": f"{NODES}:Point"}
        net.set_output_port_type("Triple", "out", None)
        net.inject_source_epoch("Source")
        net.start()
    assert sorted(fx.RESULTS) == [0, 3, 6]


def test_a_dotted_path_that_would_import_something_else_stays_in_colon_form():
    assert dotted_path(f"{NODES}:double", fx.double) == f"{NODES}.double"
    assert dotted_path(f"{NODES}:Stages.triple", fx.Stages.triple) == f"{NODES}.Stages.triple"
    # "tests.dsl_fixtures:nodes" names the attribute; its dotted form would import a module that shadows it
    assert dotted_path("tests.dsl_fixtures:nodes", object()) == "tests.dsl_fixtures:nodes"
    assert dotted_path(f"{NODES}.double", fx.double) == f"{NODES}.double"
