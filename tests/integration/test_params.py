"""Node parameters: `ctx.params` in every function of a node, wherever it runs; stored, resumed, and
written back to TOML; read-only all the way down; only JSON/TOML data accepted."""

from __future__ import annotations

import datetime
import os
import textwrap

import pytest

import netrun
from netrun.graphs import chain
from tests.integration import param_nodes as pn

from .helpers import collect


def params(tmp_path, factor: int = 3) -> dict:
    return {"factor": factor, "log": str(tmp_path / "calls.log"), "tags": ["a", "b"], "nested": {"k": 1}}


def work_net(tmp_path, kind: str, **options) -> netrun.Net:
    pools = {"thread": {"thread_pools": {"p": {"size": 1}}}, "process": {"process_pools": {"p": {"size": 1}}}}
    return netrun.Net(chain("Source", "Work", "Sink"), db=tmp_path / "run.db", on_error="continue",
                      **pools.get(kind, {}), **options)


@pytest.mark.parametrize("kind", ["main", "thread", "process"])
def test_params_reach_the_exec_failure_start_and_stop_functions(tmp_path, kind):
    got: list = []
    with work_net(tmp_path, kind) as net:
        net.set_node_exec("Work", pn.scaled, start_node_func=pn.start, stop_node_func=pn.stop,
                          exec_failed_node_func=pn.failed)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", params=params(tmp_path), **({} if kind == "main" else {"pool": "p"}))
        for value in (1, 2):
            net.inject_packet("Work", "in", value)
        net.start()
    [(result, frozen, pid)] = got
    assert (result, frozen) == (3, True)
    assert (pid != os.getpid()) == (kind == "process")
    log = pn.read_log(tmp_path / "calls.log")
    assert sorted(line for line, _pid in log) == [
        "exec Work 3", "exec Work 3", "failed Work 3", "start Work 3", "stop Work 3"]
    assert {p for _line, p in log} == {pid}  # every function ran where the epoch ran


def test_an_async_exec_function_sees_the_params(tmp_path):
    got: list = []
    with work_net(tmp_path, "main") as net:
        net.set_node_exec("Work", pn.async_scaled)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", params={"factor": 5})
        net.inject_packet("Work", "in", 2)
        net.start()
    assert [value for value, _frozen, _pid in got] == [10]


def test_changed_params_reach_a_running_process_pool(tmp_path):
    got: list = []
    with work_net(tmp_path, "process") as net:
        net.set_node_exec("Work", pn.scaled)
        net.set_node_exec("Sink", collect(got))
        net.set_node_config("Work", pool="p", params=params(tmp_path, factor=3))
        net.inject_packet("Work", "in", 1)
        net.start()
        net.set_node_config("Work", params=params(tmp_path, factor=7))  # replaces them (the pool restarts)
        net.inject_packet("Work", "in", 1)
        net.start()
    assert [value for value, _frozen, _pid in got] == [3, 7]


def test_params_are_stored_and_come_back_on_resume(tmp_path):
    with work_net(tmp_path, "main") as net:
        net.set_node_config("Work", params=params(tmp_path, factor=4), timeout=9.0)
        stored = net.query("SELECT config FROM node_settings WHERE node_name = 'Work'")[0]["config"]
    assert '"params": {"factor": 4' in stored
    got: list = []
    with netrun.Net.resume(tmp_path / "run.db") as net:
        config = net.get_node_config("Work")
        assert (config["params"], config["timeout"]) == (params(tmp_path, factor=4), 9.0)
        net.set_node_exec("Work", pn.scaled)
        net.set_node_exec("Sink", collect(got))
        net.inject_packet("Work", "in", 1)
        net.start()
    assert [(value, frozen) for value, frozen, _pid in got] == [(4, True)]


def test_get_node_config_gives_a_plain_copy_that_cannot_change_the_params(tmp_path):
    with work_net(tmp_path, "main") as net:
        given = params(tmp_path)
        net.set_node_config("Work", params=given)
        given["factor"] = 100  # the caller's dict is copied when set
        copy = net.get_node_config("Work")["params"]
        assert copy == params(tmp_path) and isinstance(copy["tags"], list)
        copy["factor"] = 200
        copy["tags"].append("c")
        assert net.get_node_config("Work")["params"] == params(tmp_path)


# -- what params may hold ------------------------------------------------------------------------

@pytest.mark.parametrize("value, place", [
    (None, "params['bad'] = None"),
    (datetime.date(2024, 1, 2), "params['bad'] = datetime.date(2024, 1, 2)"),
    (b"bytes", "params['bad'] = b'bytes'"),
    (float("nan"), "params['bad'] = nan"),
    ({"deep": [1, {2, 3}]}, "params['bad']['deep'][1] = {2, 3}"),
    ({"deep": {1: "x"}}, "params['bad']['deep'] has a non-string key 1"),
    (print, "params['bad'] = <built-in function print> cannot be stored (pass its import path"),
])
def test_a_value_json_and_toml_cannot_hold_is_refused_naming_node_and_key(tmp_path, value, place):
    with work_net(tmp_path, "main") as net:
        net.set_node_config("Work", params={"good": 1})
        with pytest.raises(netrun.ConfigError) as raised:
            net.set_node_config("Work", params={"good": 2, "bad": value})
        assert f"node 'Work' {place}" in str(raised.value)
        assert (raised.value.node, raised.value.option, raised.value.key) == ("Work", "params", "bad")
        assert net.get_node_config("Work")["params"] == {"good": 1}  # unchanged


@pytest.mark.parametrize("value", [None, [("a", 1)], "a=1"])
def test_params_that_are_not_a_table_are_refused(tmp_path, value):
    with work_net(tmp_path, "main") as net:
        with pytest.raises(netrun.ConfigError, match="node 'Work' option 'params' must be a table"):
            net.set_node_config("Work", params=value)


def test_a_non_string_key_is_refused(tmp_path):
    with work_net(tmp_path, "main") as net:
        with pytest.raises(netrun.ConfigError, match=r"node 'Work' params has a non-string key 1"):
            net.set_node_config("Work", params={1: "x"})


# -- TOML ---------------------------------------------------------------------------------------

DEFINITION = textwrap.dedent("""\
    [nodes.Source]
    out_ports = ["out"]

    [nodes.Work]
    in_ports = ["in"]
    out_ports = ["out"]
    exec_node_func = "tests.integration.param_nodes.scaled"

    [nodes.Work.params]
    factor = 6
    log = "LOG"
    tags = ["a", "b"]
    servers = [{ host = "a", port = 1 }, { host = "b", port = 2 }]

    [nodes.Work.params.nested]
    k = 1

    [nodes.Sink]
    in_ports = ["in"]

    [[edges]]
    from = "Source.out"
    to = "Work.in"

    [[edges]]
    from = "Work.out"
    to = "Sink.in"
    """)


def test_params_from_toml_reach_the_node_and_are_written_back(tmp_path, db):
    text = DEFINITION.replace("LOG", str(tmp_path / "calls.log"))
    got: list = []
    with netrun.Net.load_definition(text, db=db) as net:
        assert net.get_node_config("Work")["params"]["servers"] == [{"host": "a", "port": 1}, {"host": "b", "port": 2}]
        saved = net.dumps_definition()
        net.set_node_exec("Sink", collect(got))  # (a closure: not in the definition)
        net.inject_packet("Work", "in", 1)
        net.start()
    assert [(value, frozen) for value, frozen, _pid in got] == [(6, True)]
    assert "[nodes.Work.params]\nfactor = 6\n" in saved and "[nodes.Work.params.nested]\nk = 1\n" in saved
    assert "[nodes.Work.options]" not in saved
    with netrun.Net.load_definition(saved) as again:
        assert again.dumps_definition() == saved  # load -> save -> load -> save: the same text
    with netrun.Net.resume(db) as resumed:  # the database alone has them too
        assert resumed.get_node_config("Work")["params"]["nested"] == {"k": 1}
        [stored] = resumed.query("SELECT value FROM net_meta WHERE key = 'definition'")
        assert "[nodes.Work.params]\nfactor = 6\n" in stored["value"]


@pytest.mark.parametrize("table, message, line", [
    ("[nodes.Work.params]\nwhen = 2024-01-02\n", "node 'Work' params['when'] = datetime.date(2024, 1, 2) "
                                                  "cannot be stored", 10),
    ("[nodes.Work.params]\nok = 1\n[nodes.Work.params.deep]\nat = 10:30:00\n",
     "node 'Work' params['deep']['at'] = datetime.time(10, 30) cannot be stored", 12),
    ("[nodes.Work.options]\nparams = { a = 1 }\n", "node 'Work' options: params go in a table of their own", 10),
    ("[nodes.Work]\nparams = 3\n", None, None),
])
def test_bad_params_in_toml_are_refused_with_their_line(table, message, line):
    base = DEFINITION.split("[nodes.Work.params]")[0]
    rest = "[nodes.Sink]" + DEFINITION.split("[nodes.Sink]")[1]
    if table.startswith("[nodes.Work]\n"):  # `params` as a plain key of the node
        text = base.replace('exec_node_func = "tests.integration.param_nodes.scaled"\n',
                            'exec_node_func = "tests.integration.param_nodes.scaled"\nparams = 3\n') + rest
        message, line = "node 'Work' params: must be a table, got 3", 8
    else:
        text = base + table + "\n" + rest
    with pytest.raises(netrun.DefinitionError) as raised:
        netrun.read_definition(text)
    assert message in str(raised.value)
    assert raised.value.line == line, str(raised.value)
