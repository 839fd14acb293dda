"""The public API is exactly `netrun.__all__`, sorted, and never exposes `NetSim`."""

from __future__ import annotations

import __future__
import types

import netrun


def test_all_is_sorted():
    assert netrun.__all__ == sorted(netrun.__all__)


def test_all_has_no_duplicates():
    assert len(netrun.__all__) == len(set(netrun.__all__))


def test_every_name_in_all_resolves():
    missing = [name for name in netrun.__all__ if not hasattr(netrun, name)]
    assert missing == []


def test_netsim_is_not_exported():
    assert "NetSim" not in netrun.__all__
    assert not hasattr(netrun, "NetSim")


def test_public_module_names_are_exactly_all():
    # Submodules (netrun.errors, ...) and `from __future__ import annotations` (which binds the
    # name `annotations` in the module) are not API.
    public = {name for name in dir(netrun)
              if not name.startswith("_")
              and not isinstance(getattr(netrun, name), (types.ModuleType, __future__._Feature))}
    assert public == set(netrun.__all__) - {"__version__"}


def test_star_import_gives_exactly_all():
    namespace: dict = {}
    exec("from netrun import *", namespace)
    namespace.pop("__builtins__")
    assert set(namespace) == set(netrun.__all__)


def test_version_is_a_string():
    assert isinstance(netrun.__version__, str) and netrun.__version__


def test_graph_types_are_netrun_sims():
    import netrun_sim

    for name in ("Graph", "Node", "Edge", "Port", "PortRef", "PortType", "PortSlotSpec", "SalvoCondition",
                 "SalvoConditionTerm", "PortState", "PacketCount", "MaxSalvos"):
        assert getattr(netrun, name) is getattr(netrun_sim, name), name
    assert netrun.NetActionError is netrun_sim.NetrunError


def _sim_errors() -> dict[str, type]:
    """Every error class netrun_sim defines below its base (found by walking the module, so a new one counts)."""
    import netrun_sim

    base = netrun_sim.NetrunError
    return {name: value for name, value in vars(netrun_sim).items()
            if isinstance(value, type) and issubclass(value, base) and value is not base}


def test_every_netrun_sim_error_is_reexported_under_its_own_name():
    errors = _sim_errors()
    assert "RequestCycleDetectedError" in errors and "UndoError" in errors  # netrun-sim 0.2.0's, at least
    missing = sorted(name for name, cls in errors.items() if getattr(netrun, name, None) is not cls)
    assert missing == []
    assert sorted(set(errors) - set(netrun.__all__)) == []


def test_sim_errors_are_not_netrun_errors():
    for name, cls in _sim_errors().items():
        assert issubclass(cls, netrun.NetActionError) and not issubclass(cls, netrun.NetrunError), name
