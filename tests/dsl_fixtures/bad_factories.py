"""Factories that break the contract, one way each (objects with the two functions count as factories)."""

from __future__ import annotations


class NoFuncs:
    @staticmethod
    def get_node_spec(**args):
        return {"name": "X", "in_ports": {}, "out_ports": {}, "in_salvo_conditions": {}, "out_salvo_conditions": {}}


class SpecNotADict:
    get_node_spec = staticmethod(lambda **args: ["in"])
    get_node_funcs = staticmethod(lambda **args: (None, None, None, None))


class SpecUnknownKey:
    get_node_spec = staticmethod(lambda **args: {"name": "X", "ports": {}})
    get_node_funcs = staticmethod(lambda **args: (None, None, None, None))


class ThreeFuncs:
    get_node_spec = staticmethod(lambda **args: {"name": "X"})
    get_node_funcs = staticmethod(lambda **args: (None, None, None))


class FuncNotCallable:
    get_node_spec = staticmethod(lambda **args: {"name": "X"})
    get_node_funcs = staticmethod(lambda **args: ("exec", None, None, None))


class Raises:
    @staticmethod
    def get_node_spec(**args):
        raise RuntimeError("the factory is broken")

    get_node_funcs = staticmethod(lambda **args: (None, None, None, None))
