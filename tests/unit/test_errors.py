"""netrun's errors: one root, branched by whose fault it is, and every error survives pickling."""

from __future__ import annotations

import pickle

import pytest

import netrun
import netrun.errors


def _exported_classes() -> dict[str, type[BaseException]]:
    return {name: obj for name in netrun.__all__
            if isinstance(obj := getattr(netrun, name), type) and issubclass(obj, BaseException)}


OWN_ERRORS = sorted(n for n, c in _exported_classes().items() if issubclass(c, netrun.NetrunError))
SIM_ERRORS = sorted(n for n, c in _exported_classes().items() if issubclass(c, netrun.NetActionError))


def test_every_error_class_defined_in_netrun_errors_is_exported():
    defined = {name for name, obj in vars(netrun.errors).items()
               if isinstance(obj, type) and issubclass(obj, BaseException) and obj.__module__ == "netrun.errors"}
    assert defined == set(OWN_ERRORS)


def test_the_sim_errors_named_in_the_docs_are_exported_under_their_own_names():
    assert {"PacketNotFoundError", "GraphValidationError", "NodeNotFoundError"} <= set(SIM_ERRORS)


def test_every_exported_error_is_either_netruns_own_or_a_sim_error():
    assert set(OWN_ERRORS) | set(SIM_ERRORS) == set(_exported_classes())
    assert not set(OWN_ERRORS) & set(SIM_ERRORS)


@pytest.mark.parametrize("name", OWN_ERRORS)
def test_own_error_survives_pickle_with_type_message_and_fields(name):
    cls = getattr(netrun, name)
    error = cls("node 'A' failed in epoch E", node_name="A", epoch_id="E", path="/tmp/x.db", version=7)

    restored = pickle.loads(pickle.dumps(error))

    assert type(restored) is cls
    assert str(restored) == "node 'A' failed in epoch E"
    assert restored.message == "node 'A' failed in epoch E"
    assert restored.args == error.args
    assert (restored.node_name, restored.epoch_id, restored.path, restored.version) == ("A", "E", "/tmp/x.db", 7)


@pytest.mark.parametrize("name", OWN_ERRORS)
def test_own_error_without_fields_survives_pickle(name):
    cls = getattr(netrun, name)
    restored = pickle.loads(pickle.dumps(cls("just a message")))
    assert type(restored) is cls
    assert str(restored) == "just a message"


def test_node_execution_failed_keeps_node_and_epoch_through_pickle():
    error = netrun.NodeExecutionFailed("msg", node_name="A", epoch_id="E")
    restored = pickle.loads(pickle.dumps(error))
    assert isinstance(restored, netrun.NodeExecutionFailed)
    assert (str(restored), restored.node_name, restored.epoch_id) == ("msg", "A", "E")


def test_config_error_built_by_option_parsing_survives_pickle():
    with pytest.raises(netrun.ConfigError) as caught:
        netrun.config.parse_net_config({"durability": "fast"})
    restored = pickle.loads(pickle.dumps(caught.value))
    assert str(restored) == str(caught.value)
    assert restored.option == "durability"


@pytest.mark.parametrize("name", SIM_ERRORS)
def test_sim_error_survives_pickle_with_type_and_message(name):
    cls = getattr(netrun, name)
    restored = pickle.loads(pickle.dumps(cls("packet P is gone")))
    assert type(restored) is cls
    assert str(restored) == "packet P is gone"


@pytest.mark.parametrize("name", OWN_ERRORS)
def test_own_errors_derive_from_netrun_error_and_not_from_the_sim_base(name):
    cls = getattr(netrun, name)
    assert issubclass(cls, netrun.NetrunError)
    assert not issubclass(cls, netrun.NetActionError)


@pytest.mark.parametrize("name", SIM_ERRORS)
def test_sim_errors_derive_from_net_action_error_and_not_from_netrun_error(name):
    cls = getattr(netrun, name)
    assert issubclass(cls, netrun.NetActionError)
    assert not issubclass(cls, netrun.NetrunError)


def test_the_two_roots_are_unrelated():
    assert not issubclass(netrun.NetActionError, netrun.NetrunError)
    assert not issubclass(netrun.NetrunError, netrun.NetActionError)


def test_except_netrun_error_does_not_catch_a_sim_error():
    with pytest.raises(netrun.PacketNotFoundError):
        try:
            raise netrun.PacketNotFoundError("no such packet")
        except netrun.NetrunError:  # must not match
            pytest.fail("except netrun.NetrunError caught a netrun-sim error")


@pytest.mark.parametrize(("name", "base"), [
    ("NotANetrunDatabase", "StorageError"),
    ("DatabaseVersionError", "StorageError"),
    ("CorruptDatabase", "StorageError"),
    ("PacketNotInEpoch", "ContextUsageError"),
    ("PortNotFound", "ContextUsageError"),
    ("PortFull", "ContextUsageError"),
    ("SalvoConditionError", "ContextUsageError"),
    ("UnfinishedEpochError", "ContextUsageError"),
])
def test_error_branches(name, base):
    assert issubclass(getattr(netrun, name), getattr(netrun, base))


def test_error_fields_do_not_shadow_the_message():
    error = netrun.StorageError("the file is damaged", path="x.db")
    assert str(error) == "the file is damaged"
    assert error.args == ("the file is damaged",)
    assert error.path == "x.db"
