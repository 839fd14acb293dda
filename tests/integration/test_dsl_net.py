"""Nets from TOML definitions: the spec's examples load as written, definitions round-trip byte for
byte, a loaded net runs, and a net created from a definition resumes from its database file alone."""

from __future__ import annotations

import json
import textwrap
import typing

import pytest

import netrun
from netrun import dsl
from netrun.errors import DefinitionError
from netrun.graphio import graph_from_data
from netrun.graphs import chain
from tests.dsl_fixtures import my_factory
from tests.dsl_fixtures import nodes as fx
from tests.dsl_fixtures.compare import describe
from tests.dsl_fixtures.definitions import (
    PIPELINE,
    SPEC_EDGES_INLINE,
    SPEC_EDGES_TABLES,
    SPEC_EXAMPLES,
    SPEC_EXEC_FUNCS,
    SPEC_FACTORY,
    SPEC_FACTORY_CALLABLE_ARG,
    SPEC_NET,
    SPEC_NODE_PORT_LIST,
    TYPED_PORTS,
)

@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the spec's history_file is relative
    fx.RESULTS.clear()
    fx.CALLS.clear()


def round_trip(text: str, tmp_path, name: str = "net") -> str:
    """load -> save -> load -> save; checks equal nets and byte-identical files; returns the saved text."""
    first = netrun.Net.load_definition(text)
    try:
        saved = tmp_path / f"{name}.toml"
        dsl.save_definition(first, saved)
        second = netrun.Net.load_definition(saved)
        try:
            again = tmp_path / f"{name}-again.toml"
            dsl.save_definition(second, again)
            assert again.read_bytes() == saved.read_bytes()
            assert describe(second) == describe(first)
        finally:
            second.close()
    finally:
        first.close()
    return saved.read_text()


def test_the_net_section_loads_as_written():
    with netrun.Net.load_definition(SPEC_NET) as net:
        assert net._config.on_error == "continue"
        assert net._config.history_file == "./history.jsonl"
        assert net._config.thread_pools == {"io": {"size": 10}}
        assert net._config.process_pools == {"heavy": {"size": 4}}
        assert 'author = "..."' in dsl.dumps_definition(net)


@pytest.mark.parametrize("name", ["node_port_list", "node_port_tables"])
def test_the_node_definition_loads_as_written(name):
    with netrun.Net.load_definition(SPEC_EXAMPLES[name]) as net:
        config = net.get_node_config("MyNode")
        assert (config["pool"], config["retries"], config["defer_net_actions"], config["timeout"]) == (
            "io", 3, True, 30.0)
        if name == "node_port_tables":
            assert net.get_port_types("MyNode")["in"] == {"in1": "DataFrame"}
        assert 'description = "Processes data"' in dsl.dumps_definition(net)


def test_the_exec_functions_load_as_written_and_run():
    with netrun.Net.load_definition(SPEC_EXEC_FUNCS) as net:
        funcs = net._rt.functions["MyNode"]
        assert (funcs.exec, funcs.start, funcs.stop, funcs.failed) == (
            fx.my_exec_func, fx.my_start_func, fx.my_stop_func, fx.my_failed_func)
        net.inject_source_epoch("MyNode")
        net.start()
    assert fx.CALLS == ["start", "stop"]


@pytest.mark.parametrize("name", ["factory", "factory_callable_arg"])
def test_the_factory_examples_load_as_written(name):
    with netrun.Net.load_definition(SPEC_EXAMPLES[name]) as net:
        ports = sorted(net._rt.graph_nodes["MyNode"].in_ports)
        assert ports == (["in0", "in1", "in2"] if name == "factory" else ["x", "y"])


def test_the_spec_edge_list_fans_out_of_one_port_which_netrun_sim_refuses():
    with pytest.raises(DefinitionError, match=r"the graph is invalid: output port B\.out.* has 2 outgoing edges"):
        netrun.Net.load_definition(SPEC_EDGES_INLINE)


@pytest.mark.parametrize("name", ["edges_inline", "edges_tables"])
def test_the_edge_examples_load(name):
    with netrun.Net.load_definition(SPEC_EXAMPLES[name]) as net:
        assert len(net._rt.sim.graph.edges()) == (3 if name == "edges_inline" else 1)


@pytest.mark.parametrize("name", sorted(SPEC_EXAMPLES))
def test_every_spec_example_round_trips_byte_for_byte(name, tmp_path):
    round_trip(SPEC_EXAMPLES[name], tmp_path, name)


def test_every_port_type_form_round_trips(tmp_path):
    text = round_trip(TYPED_PORTS, tmp_path)
    assert 'type = "Point"' in text
    with netrun.Net.load_definition(text) as net:
        assert net.get_port_types("Out")["in"] == {
            "exact": {"class": "tests.dsl_fixtures.nodes:Point", "isinstance": False},
            "classes": {"class": "tests.dsl_fixtures.nodes:Point", "subclass": True},
            "named": "Point"}


def test_meta_and_factories_survive_the_round_trip(tmp_path):
    text = round_trip(SPEC_NET + SPEC_NODE_PORT_LIST, tmp_path)
    assert '[nodes.MyNode.meta]\ndescription = "Processes data"' in text
    text = round_trip(SPEC_EDGES_TABLES, tmp_path)
    assert 'meta = { label = "main flow" }' in text
    text = round_trip(SPEC_FACTORY_CALLABLE_ARG, tmp_path)
    assert 'factory = "tests.dsl_fixtures.func_to_node"' in text
    assert "in_ports" not in text  # a factory node's ports come from its factory


# -- nets built in Python -----------------------------------------------------------------------------------
RICH_GRAPH = {
    "nodes": [
        {"name": "Join", "in_ports": {"a": 3, "b": None, "c": 1}, "out_ports": {"out": 2, "err": None},
         "in_salvo_conditions": {
             "both": {"max_salvos": 1, "ports": {"a": 2, "b": "all"},
                      "term": ["and", [["port", "a", "full"], ["or", [["port", "b", ["ge", 2]],
                                                                      ["not", ["port", "c", "empty"]]]]]]},
             "always": {"max_salvos": 1, "ports": {"c": 1}, "term": True},
             "nested": {"max_salvos": 1, "ports": {},
                        "term": ["and", [["and", [["port", "a", ["lt", 1]], ["port", "b", ["eq", 0]]]],
                                         ["port", "c", ["le", 4]]]]}},
         "out_salvo_conditions": {
             "never": {"max_salvos": "infinite", "ports": {"out": "all"}, "term": False},
             "send": {"max_salvos": 3, "ports": {"out": "all", "err": 1},
                      "term": ["or", [["port", "out", ["gt", 0]], ["port", "err", "nonfull"]]]}}},
        {"name": "Sink", "in_ports": {"in": None}, "out_ports": {},
         "in_salvo_conditions": {"d": {"max_salvos": 1, "ports": {"in": 1}, "term": ["port", "in", "nonempty"]}},
         "out_salvo_conditions": {}},
        {"name": "Src", "in_ports": {}, "out_ports": {"x": None, "y": 4}, "in_salvo_conditions": {},
         "out_salvo_conditions": {}},
        {"name": "odd name.with dots", "in_ports": {"in put": None}, "out_ports": {},
         "in_salvo_conditions": {}, "out_salvo_conditions": {}},
    ],
    "edges": [["Join", "out", "Sink", "in"], ["Src", "x", "Join", "a"], ["Src", "y", "odd name.with dots", "in put"]],
}


def test_a_net_built_in_python_round_trips(tmp_path):
    with netrun.Net(graph_from_data(RICH_GRAPH), on_error="raise", history_chunk_size=7) as net:
        net.set_node_exec("Src", fx.source, start_node_func=fx.my_start_func)
        net.set_node_exec("Sink", fx.sink, exec_failed_node_func=fx.my_failed_func)
        net.set_node_config("Join", defer_net_actions=True, retries=2, timeout=1.5)
        net.set_input_port_type("Join", "a", fx.Point)
        net.set_input_port_type("Join", "b", {"class": fx.Point, "isinstance": False})
        net.set_input_port_type("Join", "c", {"class": fx.Point, "subclass": True})
        net.set_output_port_type("Join", "out", "DataFrame")
        text = dsl.dumps_definition(net)
        with netrun.Net.load_definition(text) as loaded:
            assert describe(loaded) == describe(net)
            assert dsl.dumps_definition(loaded) == text
    assert 'when = "full(a) and (count(b) >= 2 or not empty(c))"' in text
    assert 'when = "(count(a) < 1 and count(b) == 0) and count(c) <= 4"' in text
    assert "[nodes.\"odd name.with dots\".in_ports]" not in text  # no slots, no type: a list


def test_saving_twice_gives_the_same_text_and_the_same_file(tmp_path):
    with netrun.Net(chain("A", "B", "C")) as net:
        dsl.save_definition(net, tmp_path / "one.toml")
        dsl.save_definition(net, tmp_path / "two.toml")
        assert (tmp_path / "one.toml").read_bytes() == (tmp_path / "two.toml").read_bytes()
        assert dsl.dumps_definition(net) == (tmp_path / "one.toml").read_text()


def test_a_lambda_or_closure_is_refused_at_save_time():
    def closure(ctx, packets):
        pass

    for func in (lambda ctx, packets: None, closure):
        with netrun.Net(chain("A", "B")) as net:
            net.set_node_exec("B", func)
            with pytest.raises(DefinitionError, match="node 'B': its exec_node_func .* cannot be saved") as info:
                dsl.dumps_definition(net)
            assert "use a module-level function, or a factory" in str(info.value)


def test_an_option_toml_cannot_write_is_refused_at_save_time():
    with netrun.Net(chain("A", "B"), history_max_size=None) as net:
        with pytest.raises(DefinitionError, match="option 'history_max_size' is None"):
            dsl.dumps_definition(net)


def test_an_override_toml_cannot_write_does_not_stop_a_load():
    with netrun.Net.load_definition(SPEC_EXEC_FUNCS, history_max_size=None) as net:
        assert net._config.history_max_size is None


def test_port_types_set_on_a_factory_node_cannot_be_written():
    with netrun.Net.load_definition(SPEC_FACTORY) as net:
        net.set_input_port_type("MyNode", "in0", int)
        with pytest.raises(DefinitionError, match="comes from a factory, so its port types cannot be written"):
            dsl.dumps_definition(net)


def test_factory_arguments_that_are_not_json_are_refused_at_save_time(tmp_path):
    with netrun.Net.load_definition(SPEC_FACTORY, db=tmp_path / "run.db") as net:
        stored = net.query("SELECT value FROM net_meta WHERE key = 'definition'")[0]["value"]
        assert "timeout = 30" in stored
        # TOML can hold a date, JSON cannot: a definition stored by an older or other writer may have one.
        dated = stored.replace("timeout = 30", "timeout = 2024-01-02")
        net._rt.journal.add("UPDATE net_meta SET value = ? WHERE key = 'definition'", (dated,))
        net._rt.journal.commit()
        with pytest.raises(DefinitionError, match=r"factory argument 'timeout' = datetime\.date\(2024, 1, 2\) cannot "
                                                  r"be saved in a definition"):
            dsl.dumps_definition(net)


def test_save_into_a_missing_folder_is_reported(tmp_path):
    with netrun.Net(chain("A", "B")) as net:
        with pytest.raises(DefinitionError, match="cannot write the definition"):
            dsl.save_definition(net, tmp_path / "no" / "such" / "dir.toml")


# -- running and resuming ------------------------------------------------------------------------------------


def test_a_net_from_toml_runs_end_to_end():
    with netrun.Net.load_definition(PIPELINE) as net:
        net.inject_source_epoch("Source")
        net.start()
        assert sorted(fx.RESULTS) == [0, 2, 4]
        states = net.query("SELECT node_name, state FROM epochs GROUP BY 1, 2 ORDER BY 1")
        assert states == [{"node_name": n, "state": "finished"} for n in ("Double", "Sink", "Source", "Sum")]


def test_a_port_type_from_toml_is_checked():
    text = PIPELINE.replace('[nodes.Sink]\nin_ports = ["in"]', '[nodes.Sink.in_ports.in]\ntype = "str"\n[nodes.Sink]')
    with netrun.Net.load_definition(text) as net:
        net.inject_source_epoch("Source")
        with pytest.raises(netrun.NodeExecutionFailed) as info:
            net.start()
        assert isinstance(info.value.__cause__, netrun.PacketTypeMismatch)
        assert "'Sink'" in str(info.value.__cause__) and "int" in str(info.value.__cause__)


class NotRuntimeCheckable(typing.Protocol):
    def area(self) -> float: ...


@pytest.mark.parametrize("spec", [typing.Any, "typing.Any", NotRuntimeCheckable, {"class": NotRuntimeCheckable}],
                         ids=["Any", "typing.Any", "Protocol", "table"])
def test_a_port_type_isinstance_cannot_check_is_refused_when_set(spec):
    # once accepted, then every packet failed its epoch with a bare TypeError from isinstance()
    with netrun.Net(chain("A", "B"), db=None) as net:
        with pytest.raises(netrun.ConfigError, match="node 'B' input port 'in'.*cannot be checked"):
            net.set_input_port_type("B", "in", spec)
        assert net.get_port_types("B")["in"] == {}


def test_a_port_type_isinstance_cannot_check_is_a_definition_error():
    text = PIPELINE.replace('[nodes.Sink]\nin_ports = ["in"]', '[nodes.Sink.in_ports.in]\ntype = "typing.Any"\n[nodes.Sink]')
    with pytest.raises(DefinitionError, match="node 'Sink'.*cannot be checked"):
        netrun.Net.load_definition(text)


def test_the_definition_is_stored_in_the_database(tmp_path):
    db = tmp_path / "run.db"
    with netrun.Net.load_definition(PIPELINE, db=db) as net:
        stored = net.query("SELECT value FROM net_meta WHERE key = 'definition'")[0]["value"]
        assert stored == dsl.dumps_definition(net)
        assert 'purpose = "doubling"' in stored and 'label = "numbers"' in stored


def test_resume_needs_nothing_but_the_database_file(tmp_path):
    definition, db = tmp_path / "pipeline.toml", tmp_path / "run.db"
    definition.write_text(PIPELINE)
    with netrun.Net.load_definition(definition, db=db) as net:
        saved = dsl.dumps_definition(net)
        net.inject_source_epoch("Source")
        net.run_step()  # Source ran; its packets wait on the edge
    definition.unlink()

    net = netrun.Net.resume(db)
    try:
        # Import paths come back from node_settings; the factory's closures from the stored
        # definition (Net.resume calls dsl.restore_definition).
        assert net.unrestored_functions == {}
        assert net.definition_problems == {}
        assert net._rt.functions["Double"].exec is fx.double
        assert net._rt.functions["Sum"].exec.__qualname__ == "get_node_funcs.<locals>.add"
        net.start()
        assert sorted(fx.RESULTS) == [0, 2, 4]
        assert dsl.dumps_definition(net) == saved  # meta, edge meta and the factory are still known
    finally:
        net.close()


def test_restore_definition_leaves_a_net_without_a_definition_alone(tmp_path):
    with netrun.Net(chain("A", "B"), db=tmp_path / "run.db") as net:
        net.set_node_exec("B", fx.sink)
    net = netrun.Net.resume(tmp_path / "run.db")
    try:
        dsl.restore_definition(net)
        assert net._rt.functions["B"].exec is fx.sink
    finally:
        net.close()


def test_restore_definition_reports_a_factory_that_now_makes_another_node(tmp_path, monkeypatch):
    with netrun.Net.load_definition(PIPELINE, db=tmp_path / "run.db"):
        pass
    original = my_factory.get_node_spec
    monkeypatch.setattr(my_factory, "get_node_spec", lambda **args: original(num_inputs=2))
    net = netrun.Net.resume(tmp_path / "run.db")
    try:
        failed = net.definition_problems
        assert list(failed) == ["Sum"]
        assert "node 'Sum': factory 'tests.dsl_fixtures.my_factory' now makes a node other than the stored one" in (
            failed["Sum"])
        assert net._rt.functions["Sum"].exec is None  # its epochs stay startable
        assert "Sum" in net.unrestored_functions
    finally:
        net.close()


def test_restore_definition_reports_a_factory_that_cannot_be_imported(tmp_path):
    with netrun.Net.load_definition(PIPELINE, db=tmp_path / "run.db") as net:
        stored = net.query("SELECT value FROM net_meta WHERE key = 'definition'")[0]["value"]
        moved = stored.replace("tests.dsl_fixtures.my_factory", "tests.dsl_fixtures.moved_factory")
        net._rt.journal.add("UPDATE net_meta SET value = ? WHERE key = 'definition'", (moved,))
    net = netrun.Net.resume(tmp_path / "run.db")
    try:
        failed = dsl.restore_definition(net)
        assert "cannot import 'tests.dsl_fixtures.moved_factory'" in failed["Sum"]
        assert net.unrestored_functions == {"Sum": ["exec", "failed"]}
    finally:
        net.close()


def test_a_failed_load_leaves_no_database_file(tmp_path, monkeypatch):
    def refuse(self, node_name, **options):
        raise netrun.ConfigError(f"node {node_name!r}: refused for the test")

    monkeypatch.setattr(netrun.Net, "set_node_config", refuse)
    db = tmp_path / "run.db"
    with pytest.raises(DefinitionError, match="node 'MyNode': node 'MyNode': refused for the test"):
        netrun.Net.load_definition(SPEC_NET + SPEC_NODE_PORT_LIST, db=db)
    assert list(tmp_path.iterdir()) == []


def test_a_load_refuses_a_database_that_already_holds_a_net(tmp_path):
    db = tmp_path / "run.db"
    with netrun.Net.load_definition(PIPELINE, db=db):
        pass
    with pytest.raises(netrun.StorageError, match="already holds a net"):
        netrun.Net.load_definition(PIPELINE, db=db)
    assert db.exists()  # someone else's net: never removed


def test_the_stored_definition_matches_the_node_settings(tmp_path):
    with netrun.Net.load_definition(PIPELINE, db=tmp_path / "run.db") as net:
        functions = {r["node_name"]: json.loads(r["functions"])
                     for r in net.query("SELECT node_name, functions FROM node_settings")}
    assert functions["Double"] == {"exec": "tests.dsl_fixtures.nodes:double"}
    assert functions["Sum"] == {"exec": None, "failed": None}


def test_dedented_text_with_a_path_like_first_line_is_still_text():
    with netrun.Net.load_definition(textwrap.dedent("""
        [nodes.N]
        in_ports = ["a"]
    """)) as net:
        assert list(net._rt.graph_nodes) == ["N"]
