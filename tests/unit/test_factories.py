"""Node factories and import paths: `from_factory`, `import_from_path`, `check_factory_args`."""

from __future__ import annotations

import datetime
import os.path

import pytest

import netrun
from netrun.errors import ConfigError
from netrun.factories import check_factory_args, from_factory, import_from_path, node_from_spec
from tests.dsl_fixtures import nodes


@pytest.mark.parametrize("path", ["tests.dsl_fixtures.nodes.double", "tests.dsl_fixtures.nodes:double"])
def test_import_from_path_accepts_dotted_and_colon_forms(path):
    assert import_from_path(path) is nodes.double


def test_import_from_path_reaches_nested_attributes_and_modules():
    assert import_from_path("tests.dsl_fixtures.nodes:Point.__init__") is nodes.Point.__init__
    assert import_from_path("tests.dsl_fixtures.nodes.Point.__init__") is nodes.Point.__init__
    assert import_from_path("os.path") is os.path
    assert import_from_path("os.path.join") is os.path.join


@pytest.mark.parametrize(("path", "message"), [
    ("tests.dsl_fixtures.nodes.nope", "'tests.dsl_fixtures.nodes' has no attribute 'nope'"),
    ("tests.dsl_fixtures.nodes:nope", "has no attribute 'nope'"),
    ("no_such_module_xyz.f", "no module named 'no_such_module_xyz'"),
    ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
    ("", "is not an import path"),
    ("a..b", "is not an import path"),
    (".relative", "is not an import path"),
    ("a:b:c", "is not an import path"),
    ("has space.f", "is not an import path"),
    (3, "is not an import path"),
])
def test_import_from_path_raises_config_error_naming_the_path(path, message):
    with pytest.raises(ConfigError, match="import") as info:
        import_from_path(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_a_module_that_fails_to_import_is_reported_with_its_cause(tmp_path, monkeypatch):
    (tmp_path / "broken_mod_for_netrun.py").write_text("import missing_dependency_xyz\n")
    (tmp_path / "raising_mod_for_netrun.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing module 'broken_mod_for_netrun' failed") as info:
        import_from_path("broken_mod_for_netrun.f")
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    with pytest.raises(ConfigError, match="raised RuntimeError: boom at import"):
        import_from_path("raising_mod_for_netrun:f")


def test_a_module_that_exits_at_import_is_reported_not_obeyed(tmp_path, monkeypatch):
    # sys.exit() in a node module's top level once ended `netrun validate`/`run` with only its message,
    # naming neither the node nor the module
    (tmp_path / "exiting_mod_for_netrun.py").write_text("import sys\nsys.exit('bye from import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="importing module 'exiting_mod_for_netrun' raised SystemExit: bye from import"):
        import_from_path("exiting_mod_for_netrun.f")
    (tmp_path / "exiting_factory_for_netrun.py").write_text(
        "import sys\ndef get_node_spec(**args):\n    sys.exit(3)\ndef get_node_funcs(**args):\n    return (None,) * 4\n")
    with pytest.raises(ConfigError, match="factory 'exiting_factory_for_netrun': get_node_spec.* raised SystemExit: 3"):
        from_factory("exiting_factory_for_netrun")


def test_from_factory_returns_the_spec_and_the_four_functions():
    spec, exec_func, start, stop, failed = from_factory("tests.dsl_fixtures.my_factory", num_inputs=3, timeout=30)
    assert sorted(spec["in_ports"]) == ["in0", "in1", "in2"]
    node = netrun.Node(**spec)  # the spec is keyword arguments of netrun_sim.Node
    assert node.name == "Sum"
    assert callable(exec_func) and callable(failed)
    assert start is None and stop is None


def test_a_factory_argument_given_as_an_import_path_resolves():
    spec, run, *_ = from_factory("tests.dsl_fixtures.func_to_node", func="tests.dsl_fixtures.nodes.my_processor")
    assert sorted(spec["in_ports"]) == ["x", "y"]
    assert spec["name"] == "my_processor"


@pytest.mark.parametrize(("factory", "message"), [
    ("tests.dsl_fixtures.bad_factories:NoFuncs", "has no function get_node_funcs"),
    ("tests.dsl_fixtures.nodes", "has no function get_node_spec"),
    ("tests.dsl_fixtures.bad_factories:SpecNotADict", "get_node_spec must return a dict"),
    ("tests.dsl_fixtures.bad_factories:SpecUnknownKey", "get_node_spec must return a dict with keys among"),
    ("tests.dsl_fixtures.bad_factories:ThreeFuncs", "get_node_funcs must return (exec_node_func"),
    ("tests.dsl_fixtures.bad_factories:FuncNotCallable", "exec_node_func that is not callable"),
    ("tests.dsl_fixtures.bad_factories:Raises", "raised RuntimeError: the factory is broken"),
    ("tests.dsl_fixtures.no_such_factory", "cannot import"),
])
def test_a_broken_factory_raises_config_error(factory, message):
    with pytest.raises(ConfigError) as info:
        from_factory(factory)
    assert message in str(info.value)


def test_wrong_factory_arguments_raise_config_error_with_the_cause():
    with pytest.raises(ConfigError, match="raised TypeError") as info:
        from_factory("tests.dsl_fixtures.my_factory", no_such_argument=1)
    assert isinstance(info.value.__cause__, TypeError)


def test_node_from_spec_names_the_node_and_refuses_bad_values():
    spec, *_ = from_factory("tests.dsl_fixtures.my_factory", num_inputs=1)
    assert node_from_spec(spec, "Adder", where="here").name == "Adder"
    with pytest.raises(ConfigError, match="here: get_node_spec returned a spec that netrun_sim.Node refuses"):
        node_from_spec({"in_ports": ["a"]}, "X", where="here")


@pytest.mark.parametrize("args", [
    {}, {"n": 3, "timeout": 30.5, "name": "x", "flag": True, "func": "pkg.mod.f"},
    {"nested": {"list": [1, "two", [3.0]], "table": {"a": False}}},
])
def test_json_factory_arguments_are_accepted(args):
    check_factory_args(args, "node 'N'")


@pytest.mark.parametrize(("args", "message"), [
    ({"func": print}, "factory argument 'func' = <built-in function print> cannot be saved in a definition; pass its "
                      "import path as a string instead"),
    ({"when": datetime.date(2024, 1, 2)}, "factory argument 'when' = datetime.date(2024, 1, 2) cannot be saved"),
    ({"deep": {"x": [1, {1, 2}]}}, "factory argument 'deep'['x'][1] = {1, 2} cannot be saved"),
    ({"nan": float("nan")}, "factory argument 'nan' = nan cannot be saved"),
    ({"none": None}, "factory argument 'none' = None cannot be saved"),
    ({"keys": {1: "a"}}, "non-string key 1"),
    (["not", "a", "table"], "factory_args must be a table"),
])
def test_arguments_a_definition_cannot_store_are_refused_naming_them(args, message):
    with pytest.raises(ConfigError) as info:
        check_factory_args(args, "node 'N'")
    assert str(info.value).startswith("node 'N': ")
    assert message in str(info.value)
