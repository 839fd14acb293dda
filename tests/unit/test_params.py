"""`Params`: a node's parameters, read-only all the way down, picklable, back to plain data by `thaw`."""

from __future__ import annotations

import copy
import json
import pickle

import pytest

from netrun.config import NodeConfig, update_node_config
from netrun.errors import ConfigError
from netrun.params import Params, check_params, thaw

DATA = {"url": "http://x", "tags": ["a", {"b": [1, 2]}], "nested": {"k": 1.5, "on": True}}


def test_tables_are_read_only_mappings_and_arrays_tuples_all_the_way_down():
    params = check_params("N", DATA)
    assert isinstance(params["nested"], Params) and params["tags"] == ("a", Params({"b": (1, 2)}))
    for change in (lambda: params.__setitem__("url", "y"), lambda: params.__delitem__("url"),
                   lambda: params["nested"].__setitem__("k", 0), lambda: params["tags"][1]["b"].append(3),
                   lambda: params.update({"x": 1}), lambda: params.clear()):
        with pytest.raises((TypeError, AttributeError)):
            change()
    with pytest.raises(AttributeError, match="read-only; change them with set_node_config"):
        params._data = {}
    assert thaw(params) == DATA


def test_the_given_data_is_copied():
    given = copy.deepcopy(DATA)
    params = check_params("N", given)
    given["nested"]["k"] = 99
    given["tags"].append("c")
    assert thaw(params) == DATA


def test_params_pickle_compare_and_hash():
    params = Params(DATA)
    back = pickle.loads(pickle.dumps(params))
    assert back == params and isinstance(back, Params) and isinstance(back["nested"], Params)
    assert copy.deepcopy(params) is params
    assert hash(back) == hash(params)
    assert Params({"a": 1}) == {"a": 1} and Params({"a": [1]}) == {"a": (1,)}
    assert repr(Params({"a": 1})) == "Params({'a': 1})"


def test_node_config_freezes_params_and_stores_them_as_json():
    config = update_node_config("N", NodeConfig(), {"params": DATA}, pools=set())
    assert isinstance(config.params, Params)
    stored = json.loads(json.dumps(config.to_json()))
    assert stored["params"] == DATA
    assert NodeConfig(**stored) == config  # as resume reads it back: frozen again
    assert isinstance(NodeConfig(**stored).params["nested"], Params)
    assert pickle.loads(pickle.dumps(config)) == config  # what a process worker gets
    assert NodeConfig().params == {} and NodeConfig().to_json()["params"] == {}


def test_params_are_replaced_as_a_whole():
    first = update_node_config("N", NodeConfig(), {"params": {"a": 1, "b": 2}}, pools=set())
    assert dict(update_node_config("N", first, {"params": {"c": 3}}, pools=set()).params) == {"c": 3}
    assert dict(update_node_config("N", first, {"timeout": 1}, pools=set()).params) == {"a": 1, "b": 2}


@pytest.mark.parametrize("params, message, keys", [
    ({"a": {"b": [1, None]}}, "node 'N' params['a']['b'][1] = None cannot be stored", ("a", "b", 1)),
    ({"a": float("inf")}, "node 'N' params['a'] = inf cannot be stored", ("a",)),
    ({"a": {("x",): 1}}, "node 'N' params['a'] has a non-string key ('x',), which cannot be stored", ("a",)),
    ({"f": len}, "node 'N' params['f'] = <built-in function len> cannot be stored (pass its import path", ("f",)),
    ({"a": ["x\ud800"]}, "node 'N' params['a'][0] = 'x\\ud800' cannot be stored", ("a", 0)),  # no UTF-8 form
    ({"a": {"\udc80": 1}}, "node 'N' params['a'] has a non-string key '\\udc80', which cannot be stored", ("a",)),
    # TOML integers are 64-bit: save_definition wrote one past them, which TOML readers refuse
    ({"a": [2 ** 63]}, "node 'N' params['a'][0] = 9223372036854775808 cannot be stored", ("a", 0)),
    ({"a": -2 ** 63 - 1}, "node 'N' params['a'] = -9223372036854775809 cannot be stored", ("a",)),
])
def test_what_json_or_toml_cannot_hold_is_refused_with_its_place(params, message, keys):
    with pytest.raises(ConfigError) as raised:
        check_params("N", params)
    assert str(raised.value).startswith(message)
    assert (raised.value.node, raised.value.option, raised.value.keys) == ("N", "params", keys)
    assert pickle.loads(pickle.dumps(raised.value)).keys == keys


def test_the_64_bit_integer_limits_themselves_are_params():
    assert dict(check_params("N", {"lo": -2 ** 63, "hi": 2 ** 63 - 1})) == {"lo": -2 ** 63, "hi": 2 ** 63 - 1}


def test_an_integer_toml_cannot_hold_is_named_as_such_in_params_and_factory_args():
    from netrun.factories import check_factory_args

    with pytest.raises(ConfigError, match=r"TOML integers are 64-bit"):
        check_params("N", {"big": 10 ** 20})
    with pytest.raises(ConfigError, match=r"factory argument 'n' = 100000000000000000000 .*TOML integers are 64-bit"):
        check_factory_args({"n": 10 ** 20}, "node 'N'")
