"""The TOML DSL, construct by construct: what each one builds, and the error each mistake raises."""

from __future__ import annotations

import pickle
import re
import textwrap

import pytest

import netrun
from netrun.dsl import dumps_definition
from netrun.errors import DefinitionError, ExpressionError
from netrun.graphio import graph_to_data
from tests.dsl_fixtures import nodes as fx


@pytest.fixture
def load():
    """netrun.Net.load_definition(dedented text) on a temporary database, closed after the test."""
    opened: list[netrun.Net] = []

    def _load(text: str, **kwargs) -> netrun.Net:
        net = netrun.Net.load_definition(textwrap.dedent(text), **kwargs)
        opened.append(net)
        return net

    yield _load
    for net in opened:
        net.close()


def node_data(net: netrun.Net, name: str) -> dict:
    return next(n for n in graph_to_data(net._rt.sim.graph)["nodes"] if n["name"] == name)


def error_of(text: str) -> DefinitionError:
    with pytest.raises(DefinitionError) as info:
        netrun.Net.load_definition(textwrap.dedent(text)).close()
    assert re.match(r"<string>(:\d+){0,2}: ", str(info.value))  # the line (and column), when known
    return info.value


# -- ports ----------------------------------------------------------------------------------------
def test_ports_as_a_list_have_infinite_slots(load):
    net = load("""
        [nodes.N]
        in_ports = ["in1", "in2"]
        out_ports = ["out"]
    """)
    data = node_data(net, "N")
    assert data["in_ports"] == {"in1": None, "in2": None}
    assert data["out_ports"] == {"out": None}


def test_port_tables_give_slots_and_types(load):
    net = load("""
        [nodes.N.in_ports.in1]
        slots = 5
        type = "DataFrame"
        [nodes.N.in_ports.in2]
        [nodes.N.out_ports.out]
        type = { class = "tests.dsl_fixtures.nodes:Point", isinstance = false }
    """)
    assert node_data(net, "N")["in_ports"] == {"in1": 5, "in2": None}
    assert net.get_port_types("N") == {"in": {"in1": "DataFrame"},
                                       "out": {"out": {"class": "tests.dsl_fixtures.nodes:Point", "isinstance": False}}}


@pytest.mark.parametrize(("written", "stored"), [
    ('"DataFrame"', "DataFrame"),
    ('"tests.dsl_fixtures.nodes.Point"', {"class": "tests.dsl_fixtures.nodes:Point"}),
    ('{ class = "tests.dsl_fixtures.nodes:Point", isinstance = true }', {"class": "tests.dsl_fixtures.nodes:Point"}),
    ('{ class = "tests.dsl_fixtures.nodes:Point", isinstance = false }',
     {"class": "tests.dsl_fixtures.nodes:Point", "isinstance": False}),
    ('{ class = "tests.dsl_fixtures.nodes:Point", subclass = true }',
     {"class": "tests.dsl_fixtures.nodes:Point", "subclass": True}),
])
def test_every_port_type_form_is_settable_from_the_dsl(load, written, stored):
    net = load(f"""
        [nodes.N.in_ports.in]
        type = {written}
    """)
    assert net.get_port_types("N")["in"] == {"in": stored}


@pytest.mark.parametrize(("ports", "message"), [
    ('in_ports = "in"', "node 'N' in_ports: must be a list of port names or a table of ports"),
    ('in_ports = ["a", "a"]', "node 'N' in_ports: lists port 'a' twice"),
    ("in_ports = [1]", "node 'N' in_ports item: must be a string, got 1"),
    ("in_ports = { a = { slots = -1 } }", "node 'N' in_ports.a slots: must be a whole number from 0"),
    ('in_ports = { a = { slots = "5" } }', "node 'N' in_ports.a slots: must be a whole number"),
    ("in_ports = { a = { size = 5 } }", "node 'N' in_ports.a: unknown key 'size'; allowed keys: slots, type"),
    ("in_ports = { a = 5 }", "node 'N' in_ports.a: must be a table, got 5"),
    ('in_ports = { a = { type = "no.such_module:Cls" } }', "cannot import port type class 'no.such_module:Cls'"),
    ('in_ports = { a = { type = "a..b" } }', "'a..b' is neither a class name nor an import path"),
    ('in_ports = { a = { type = "not a name" } }', "is not a class name or import path"),
    ("in_ports = { a = { type = 3 } }", "unsupported port type 3"),
    ('in_ports = { a = { type = { class = "Point" } } }', "must be an import path ('module:Class') in a table"),
])
def test_bad_ports_are_refused_naming_node_and_port(ports, message):
    error = error_of(f"""
        [nodes.N]
        {ports}
    """)
    assert message in str(error)


# -- salvo conditions --------------------------------------------------------------------------------
def test_conditions_take_when_ports_and_max_salvos(load):
    net = load("""
        [nodes.N]
        in_ports = ["in1", "in2", "in3"]
        out_ports = ["out", "err"]
        [nodes.N.in_salvo_conditions.default]
        when = "nonempty(in1) and nonempty(in2)"
        ports = ["in1", "in2"]
        [nodes.N.in_salvo_conditions.counted]
        when = "count(in3) >= 2"
        ports = { in3 = 2, in1 = "all" }
        [nodes.N.out_salvo_conditions.send]
        when = "nonempty(out)"
        max_salvos = "infinite"
        [nodes.N.out_salvo_conditions.once]
        when = "not empty(err) or full(out)"
        max_salvos = 1
    """)
    data = node_data(net, "N")
    assert data["in_salvo_conditions"] == {
        "default": {"max_salvos": 1, "ports": {"in1": "all", "in2": "all"},
                    "term": ["and", [["port", "in1", "nonempty"], ["port", "in2", "nonempty"]]]},
        "counted": {"max_salvos": 1, "ports": {"in3": 2, "in1": "all"}, "term": ["port", "in3", ["ge", 2]]},
    }
    assert data["out_salvo_conditions"] == {
        "send": {"max_salvos": "infinite", "ports": {"out": "all", "err": "all"}, "term": ["port", "out", "nonempty"]},
        "once": {"max_salvos": 1, "ports": {"out": "all", "err": "all"},
                 "term": ["or", [["not", ["port", "err", "empty"]], ["port", "out", "full"]]]},
    }


def test_max_salvos_defaults_to_one_for_input_and_infinite_for_output(load):
    net = load("""
        [nodes.N]
        in_ports = ["in"]
        out_ports = ["out"]
        in_salvo_conditions.go = { when = "nonempty(in)" }
        out_salvo_conditions.send = { when = "nonempty(out)" }
    """)
    data = node_data(net, "N")
    assert data["in_salvo_conditions"]["go"]["max_salvos"] == 1
    assert data["out_salvo_conditions"]["send"]["max_salvos"] == "infinite"


def test_omitted_conditions_get_the_defaults(load):
    net = load("""
        [nodes.N]
        in_ports = ["a", "b"]
        out_ports = ["x", "y"]
    """)
    data = node_data(net, "N")
    assert data["in_salvo_conditions"] == {"default": {
        "max_salvos": 1, "ports": {"a": "all", "b": "all"},
        "term": ["and", [["port", "a", "nonempty"], ["port", "b", "nonempty"]]]}}
    assert data["out_salvo_conditions"] == {
        "send_x": {"max_salvos": "infinite", "ports": {"x": "all"}, "term": ["port", "x", "nonempty"]},
        "send_y": {"max_salvos": "infinite", "ports": {"y": "all"}, "term": ["port", "y", "nonempty"]},
    }


def test_an_explicit_empty_conditions_table_means_no_conditions(load):
    net = load("""
        [nodes.N]
        in_ports = ["a"]
        in_salvo_conditions = {}
    """)
    assert node_data(net, "N")["in_salvo_conditions"] == {}


@pytest.mark.parametrize(("condition", "message"), [
    ('{ ports = ["a"] }', "in_salvo_conditions.go: needs 'when'"),
    ('{ when = "nonempty(a)", max = 1 }', "in_salvo_conditions.go: unknown key 'max'"),
    ('{ when = "nonempty(a)", max_salvos = 0.5 }', "in_salvo_conditions.go max_salvos (or \"infinite\"): must be"),
    ('{ when = "nonempty(a)", max_salvos = "many" }', "max_salvos (or \"infinite\"): must be a whole number"),
    ('{ when = "nonempty(a)", ports = ["zz"] }', "names port 'zz', which is not an input port of the node "
                                                 "(input ports: a)"),
    ('{ when = "nonempty(a)", ports = { a = -2 } }', "in_salvo_conditions.go ports.a (or \"all\"): must be"),
    ('{ when = "nonempty(a)", ports = "a" }', "in_salvo_conditions.go ports: must be a table"),
    ('{ when = 3 }', "must be a string, got 3"),
    ('"nonempty(a)"', "node 'N' in_salvo_conditions.go: must be a table"),
])
def test_bad_conditions_are_refused_naming_node_and_condition(condition, message):
    error = error_of(f"""
        [nodes.N]
        in_ports = ["a"]
        in_salvo_conditions.go = {condition}
    """)
    assert message in str(error)


def test_an_expression_error_names_file_node_condition_column_and_expectation():
    error = error_of("""
        [nodes.N]
        in_ports = ["a", "b"]
        in_salvo_conditions.go = { when = "nonempty(a) and (empty(b)" }
    """)
    assert str(error) == ("<string>:4:61: node 'N' in_salvo_conditions.go when: at column 26 in "
                          "'nonempty(a) and (empty(b)': expected ')' to close the '(' at column 17, "
                          "found the end of the expression")
    assert isinstance(error.__cause__, ExpressionError)


def test_an_unknown_port_in_an_expression_is_named():
    error = error_of("""
        [nodes.N]
        out_ports = ["out"]
        out_salvo_conditions.send = { when = "nonempty(output)" }
    """)
    assert "unknown port 'output'" in str(error)
    assert "(ports: out)" in str(error)


# -- options, functions, meta ---------------------------------------------------------------------
def test_options_become_node_config(load):
    net = load("""
        [nodes.N.options]
        retries = 3
        defer_net_actions = true
        timeout = 30.0
        capture_stdout = false
    """)
    config = net.get_node_config("N")
    assert (config["retries"], config["defer_net_actions"], config["timeout"], config["capture_stdout"]) == (
        3, True, 30.0, False)


@pytest.mark.parametrize(("options", "message"), [
    ("retries = 3", "retries=3 needs defer_net_actions=True"),
    ("colour = 'red'", "unknown node 'N' option 'colour'"),
    ("timeout = -1", "option 'timeout' must be a positive number"),
    ("pool = 'io'", "names pool 'io', which the net does not define"),
])
def test_bad_options_are_refused_naming_node(options, message):
    error = error_of(f"""
        [nodes.N.options]
        {options}
    """)
    assert "<string>:3: node 'N' options: " in str(error)
    assert message in str(error)
    assert error.node == "N"


def test_a_pool_the_net_defines_is_accepted(load):
    net = load("""
        [net.thread_pools.io]
        size = 2
        [nodes.N.options]
        pool = "io"
    """)
    assert net.get_node_config("N")["pool"] == "io"


def test_functions_by_import_path_are_registered(load):
    net = load("""
        [nodes.N]
        exec_node_func = "tests.dsl_fixtures.nodes.my_exec_func"
        start_node_func = "tests.dsl_fixtures.nodes:my_start_func"
        stop_node_func = "tests.dsl_fixtures.nodes.my_stop_func"
        exec_failed_node_func = "tests.dsl_fixtures.nodes.my_failed_func"
    """)
    funcs = net._rt.functions["N"]
    assert (funcs.exec, funcs.start, funcs.stop, funcs.failed) == (
        fx.my_exec_func, fx.my_start_func, fx.my_stop_func, fx.my_failed_func)


@pytest.mark.parametrize(("line", "message"), [
    ('exec_node_func = "tests.dsl_fixtures.nodes.nope"', "node 'N' exec_node_func: cannot import "
                                                         "'tests.dsl_fixtures.nodes.nope'"),
    ('exec_node_func = "tests.dsl_fixtures.nodes.NOT_A_FUNCTION"', "is not a function (got int)"),
    ("start_node_func = 3", "node 'N' start_node_func: must be a string"),
    ('stop_node_func = "not a path"', "is not an import path"),
])
def test_bad_functions_are_refused_naming_node_and_role(line, message):
    assert message in str(error_of(f"""
        [nodes.N]
        {line}
    """))


def test_node_and_net_meta_are_kept_in_the_definition(load):
    net = load("""
        [net.meta]
        author = "someone"
        version = "1.0"
        [nodes.N.meta]
        description = "Processes data"
    """)
    text = dumps_definition(net)
    assert '[net.meta]\nauthor = "someone"\nversion = "1.0"' in text
    assert '[nodes.N.meta]\ndescription = "Processes data"' in text


# -- factories ----------------------------------------------------------------------------------------
def test_a_factory_node_takes_ports_conditions_and_functions_from_the_factory(load):
    net = load("""
        [nodes.Adder]
        factory = "tests.dsl_fixtures.my_factory"
        factory_args = { num_inputs = 3, timeout = 30 }
        [nodes.Adder.options]
        timeout = 5.0
    """)
    assert sorted(node_data(net, "Adder")["in_ports"]) == ["in0", "in1", "in2"]
    assert net._rt.functions["Adder"].exec.__qualname__ == "get_node_funcs.<locals>.add"
    assert net.get_node_config("Adder")["timeout"] == 5.0


def test_a_factory_argument_that_is_an_import_path_resolves(load):
    net = load("""
        [nodes.Add]
        factory = "tests.dsl_fixtures.func_to_node"
        factory_args = { func = "tests.dsl_fixtures.nodes.my_processor", timeout = 30 }
    """)
    assert sorted(node_data(net, "Add")["in_ports"]) == ["x", "y"]


@pytest.mark.parametrize(("lines", "message"), [
    ('factory = "tests.dsl_fixtures.my_factory"\nin_ports = ["a"]', "has a factory and in_ports"),
    ('factory = "tests.dsl_fixtures.my_factory"\nexec_node_func = "tests.dsl_fixtures.nodes.sink"',
     "has a factory and exec_node_func"),
    ("factory_args = { n = 1 }", "has factory_args but no factory"),
    ('factory = "tests.dsl_fixtures.my_factory"\nfactory_args = { when = 2024-01-02 }',
     "factory argument 'when' = datetime.date(2024, 1, 2) cannot be saved"),
    ('factory = "tests.dsl_fixtures.my_factory"\nfactory_args = { bogus = 1 }', "raised TypeError"),
    ('factory = "tests.dsl_fixtures.my_factory"\nfactory_args = [1]', "factory_args: must be a table"),
    ('factory = "tests.dsl_fixtures.bad_factories:NoFuncs"', "has no function get_node_funcs"),
    ("factory = 7", "node 'N' factory: must be a string"),
])
def test_bad_factory_nodes_are_refused_naming_the_node(lines, message):
    error = error_of("[nodes.N]\n" + lines)
    assert message in str(error)


# -- edges ----------------------------------------------------------------------------------------------
TWO_NODES = """
    [nodes.A]
    out_ports = ["out"]
    [nodes.B]
    in_ports = ["in"]
"""


def test_edges_as_an_inline_list_and_as_tables_with_meta(load):
    inline = load('edges = [{ from = "A.out", to = "B.in" }]\n' + TWO_NODES)
    tables = load(TWO_NODES + '[[edges]]\nfrom = "A.out"\nto = "B.in"\n[edges.meta]\nlabel = "main flow"\n')
    for net in (inline, tables):
        assert graph_to_data(net._rt.sim.graph)["edges"] == [["A", "out", "B", "in"]]
    assert 'meta = { label = "main flow" }' in dumps_definition(tables)


def test_node_names_with_dots_are_resolved(load):
    net = load("""
        [nodes."stage.one"]
        out_ports = ["out"]
        [nodes.B]
        in_ports = ["in.x"]
        [[edges]]
        from = "stage.one.out"
        to = "B.in.x"
    """)
    assert graph_to_data(net._rt.sim.graph)["edges"] == [["stage.one", "out", "B", "in.x"]]


@pytest.mark.parametrize(("edges", "message"), [
    ('edges = [{ from = "A.out", to = "C.in" }]', "edge 1 ('A.out' -> 'C.in'): names node 'C', which the definition "
                                                  "does not have (nodes: A, B)"),
    ('edges = [{ from = "A.nope", to = "B.in" }]', "node 'A' has no output port 'nope' (output ports: out)"),
    ('edges = [{ from = "B.in", to = "A.out" }]', "node 'B' has no output port 'in' (output ports: none)"),
    ('edges = [{ from = "A.out", to = "B.in" }, { from = "A.out", to = "B.in" }]', "edge 2 ('A.out' -> 'B.in'): "
                                                                                    "is listed twice"),
    ('edges = [{ from = "Aout", to = "B.in" }]', "'Aout' must be \"Node.port\""),
    ('edges = [{ from = "A.out" }]', "edge 1: needs 'to'"),
    ('edges = [{ from = "A.out", to = "B.in", label = "x" }]', "edge 1: unknown key 'label'"),
    ('edges = [{ from = 1, to = "B.in" }]', "edge 1 from: must be a string"),
    ('edges = ["A.out -> B.in"]', "edge 1: must be a table"),
    ('edges = { from = "A.out", to = "B.in" }', "edges: must be a list"),
    ('edges = [{ from = "A.out", to = "B.in", meta = 3 }]', "meta: must be a table"),
])
def test_bad_edges_are_refused_naming_the_edge(edges, message):
    assert message in str(error_of(edges + "\n" + TWO_NODES))


# -- the net ----------------------------------------------------------------------------------------------
def test_net_options_and_pools_become_the_net_config(load):
    net = load("""
        [net]
        on_error = "continue"
        history_max_size = 50
        [net.thread_pools.io]
        size = 10
        [net.process_pools.heavy]
        size = 4
    """)
    config = net._config
    assert (config.on_error, config.history_max_size) == ("continue", 50)
    assert (config.thread_pools, config.process_pools) == ({"io": {"size": 10}}, {"heavy": {"size": 4}})


def test_overrides_win_over_the_file(load):
    net = load('[net]\non_error = "continue"\n', on_error="raise")
    assert net._config.on_error == "raise"


@pytest.mark.parametrize(("text", "message"), [
    ("[net]\ncolour = 1", "<string>:2: [net]: unknown net option 'colour'"),
    ('[net]\non_error = "explode"', "option 'on_error' must be 'continue', 'pause' or 'raise'"),
    ("[net.thread_pools.io]\nsize = 0", "must be a positive int"),
    ("net = 3", "[net]: must be a table"),
    ("[net]\nmeta = 3", "[net.meta]: must be a table"),
    ("nodes = 3", "[nodes]: must be a table"),
    ("[nodes]\nN = 3", "node 'N': must be a table"),
    ("[nodes.N]\ncolour = 1", "node 'N': unknown key 'colour'; allowed keys: factory, factory_args"),
    ("version = 2", "<string>:1: unknown key 'version'; allowed keys: net, nodes, edges"),
    ("[nodes.N]\nmeta = 1", "node 'N' meta: must be a table"),
])
def test_every_mistake_names_file_and_key(text, message):
    assert message in str(error_of(text))


def test_an_invalid_graph_is_reported():
    error = error_of("""
        [nodes.N]
        in_ports = ["a"]
        [nodes.N.in_salvo_conditions.go]
        when = "true"
        ports = []
        max_salvos = 2
    """)
    assert "the graph is invalid" in str(error)


def test_a_toml_syntax_error_is_wrapped_with_line_and_column():
    error = error_of('[nodes.N]\nin_ports = ["a"]\nout_ports = ["b" "c"]\n')
    assert "<string>:3:18: invalid TOML: " in str(error)
    assert "line 3, column 18" in str(error)


def test_a_file_is_named_in_errors_and_a_missing_file_is_reported(tmp_path):
    path = tmp_path / "net.toml"
    path.write_text("[nodes.N]\ncolour = 1\n")
    for given in (path, str(path)):
        with pytest.raises(DefinitionError, match=f"^{path}:2: node 'N': unknown key 'colour'") as info:
            netrun.Net.load_definition(given)
        assert info.value.path == str(path)
    with pytest.raises(DefinitionError, match="cannot read the definition"):
        netrun.Net.load_definition(tmp_path / "missing.toml")
    (tmp_path / "latin1.toml").write_bytes(b"# \xe9\n")
    with pytest.raises(DefinitionError, match="cannot read the definition"):
        netrun.Net.load_definition(tmp_path / "latin1.toml")


def test_definition_error_is_a_config_error_and_survives_pickle():
    error = error_of("[nodes.N]\ncolour = 1")
    assert isinstance(error, netrun.ConfigError) and isinstance(error, netrun.NetrunError)
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is DefinitionError
    assert (str(restored), restored.path, restored.key) == (str(error), "<string>", "colour")
