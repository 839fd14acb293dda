"""Node factories (SPEC "Node Factories") and import paths.

A factory is a module (or any object) with two functions taking the same arguments:
`get_node_spec(**args)`, the keyword arguments of `netrun_sim.Node`, and
`get_node_funcs(**args)`, `(exec, start, stop, failed)` with any of them `None`.
Arguments that a definition stores must be JSON data; a callable is passed by its
import path (a string), which the factory resolves with `import_from_path`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import netrun_sim as ns

from .errors import ConfigError
from .params import TOML_INTEGERS, find_non_data, subscripts

SPEC_KEYS = ("name", "in_ports", "out_ports", "in_salvo_conditions", "out_salvo_conditions")
FUNC_ROLES = ("exec_node_func", "start_node_func", "stop_node_func", "exec_failed_node_func")


def is_import_path(path: str) -> bool:
    """Whether `path` has the shape of an import path (dotted identifiers, optionally `module:qualname`)."""
    module, sep, qualname = path.partition(":")
    parts = module.split(".") + (qualname.split(".") if sep else [])
    return all(part.isidentifier() for part in parts)


def import_from_path(path: str) -> Any:
    """The object at `path`: `"pkg.mod:qual.name"` or `"pkg.mod.attr"` (the longest importable module wins).

    Raises:
        ConfigError: not a path, no such module or attribute, or the module failed to
            import (the original error is the `__cause__`).
    """
    if not isinstance(path, str) or not is_import_path(path):
        raise ConfigError(f"{path!r} is not an import path ('package.module.name' or 'package.module:name')",
                          path=str(path))
    module_part, colon, qualname = path.partition(":")
    parts = module_part.split(".")
    # Import the shortest prefix first, so a failure is reported against the module that failed.
    # With a colon every part before it is a module; without, the longest importable prefix is.
    target: Any = None
    imported = 0
    for i in range(1, len(parts) + 1):
        module_name = ".".join(parts[:i])
        try:
            target = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise ConfigError(f"cannot import {path!r}: importing module {module_name!r} failed: {exc}",
                                  path=path) from exc
            if colon or i == 1:
                raise ConfigError(f"cannot import {path!r}: no module named {module_name!r}", path=path) from None
            break
        except (Exception, SystemExit) as exc:  # the module's own code failed (or called sys.exit() at
            # import, which would end `netrun validate` without a word): report it, with the original as cause
            raise ConfigError(f"cannot import {path!r}: importing module {module_name!r} raised "
                              f"{type(exc).__name__}: {exc}", path=path) from exc
        imported = i
    attributes = parts[imported:] + (qualname.split(".") if colon else [])
    for i, attribute in enumerate(attributes):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            owner = ".".join(parts[:imported] + attributes[:i])
            raise ConfigError(f"cannot import {path!r}: {owner!r} has no attribute {attribute!r}", path=path) from None
    return target


def generator_problem(func: Any) -> str | None:
    """Why `func` cannot be a node function, when it is a generator function: calling it runs none of
    its code (netrun calls node functions once and never iterates them). None for any other."""
    if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
        return (f"{getattr(func, '__qualname__', func)!r} is a generator function (it has `yield`): calling it "
                "runs none of its code; netrun calls node functions once and never iterates them: use return "
                "instead of yield")
    return None


def dotted_path(path: str, target: Any) -> str:
    """`path` in the spec's dotted form ("pkg.mod:qual.name" -> "pkg.mod.qual.name") when that form imports
    `target` too; else `path` as it is (a name that a submodule of the same name would shadow)."""
    dotted = path.replace(":", ".")
    if dotted == path:
        return path
    try:
        return dotted if import_from_path(dotted) == target else path
    except ConfigError:
        return path


def check_factory_args(args: Any, where: str) -> None:
    """Refuse factory arguments that a definition cannot store.

    Allowed: strings (import paths are strings), booleans, integers, finite floats, and
    lists and tables (string keys) of those.

    Raises:
        ConfigError: naming `where` and the offending argument, saying what to pass instead.
    """
    if not isinstance(args, dict):
        raise ConfigError(f"{where}: factory_args must be a table of argument name -> value, got {args!r}")
    for name, value in args.items():
        found = find_non_data(value)
        if found:
            keys, bad, is_key = found
            label = repr(name) + subscripts(keys)
            if is_key:
                raise ConfigError(f"{where}: factory argument {label} has a non-string key {bad!r}")
            hint = " pass its import path as a string instead;" if callable(bad) else (
                f" {TOML_INTEGERS};" if type(bad) is int else "")
            raise ConfigError(f"{where}: factory argument {label} = {bad!r} cannot be saved in a definition;{hint} "
                              "factory arguments must be strings, numbers, booleans, lists or tables")


def node_from_spec(spec: dict, name: str, *, where: str) -> ns.Node:
    """A `netrun_sim.Node` named `name` from a factory's spec (its own 'name' is replaced).

    Raises:
        ConfigError: the spec is not a dict of `netrun_sim.Node` keyword arguments.
    """
    if not isinstance(spec, dict) or not set(spec) <= set(SPEC_KEYS):
        got = sorted(map(str, spec)) if isinstance(spec, dict) else type(spec).__name__
        raise ConfigError(f"{where}: get_node_spec must return a dict with keys among {', '.join(SPEC_KEYS)}; "
                          f"got {got}")
    kwargs = {key: spec.get(key, {}) for key in SPEC_KEYS[1:]}
    try:
        return ns.Node(name=name, **kwargs)
    except (TypeError, ValueError, OverflowError, ns.NetrunError) as exc:
        raise ConfigError(f"{where}: get_node_spec returned a spec that netrun_sim.Node refuses: {exc}") from exc


def _call(factory_path: str, func: Callable[..., Any], args: dict[str, Any]) -> Any:
    try:
        return func(**args)
    except (Exception, SystemExit) as exc:  # user code with user arguments: a bad definition, original as cause
        raise ConfigError(f"factory {factory_path!r}: {func.__name__}(**{args!r}) raised {type(exc).__name__}: "
                          f"{exc}", path=factory_path) from exc


def from_factory(path: str, **args: Any) -> tuple[dict, Any, Any, Any, Any]:
    """Run the factory at `path`: `(node_spec, exec, start, stop, failed)`.

    `node_spec` is the dict from `get_node_spec(**args)` (keyword arguments of
    `netrun_sim.Node`); the functions come from `get_node_funcs(**args)`.

    Raises:
        ConfigError: the factory cannot be imported, lacks either function, raises, or
            returns the wrong shape.
    """
    factory = import_from_path(path)
    getters = []
    for attribute in ("get_node_spec", "get_node_funcs"):
        getter = getattr(factory, attribute, None)
        if not callable(getter):
            raise ConfigError(f"factory {path!r} has no function {attribute}(**args); a factory module defines "
                              "get_node_spec and get_node_funcs", path=path)
        getters.append(getter)
    spec = _call(path, getters[0], args)
    node_from_spec(spec, spec.get("name", path) if isinstance(spec, dict) else path, where=f"factory {path!r}")
    funcs = _call(path, getters[1], args)
    if not isinstance(funcs, (tuple, list)) or len(funcs) != 4:
        raise ConfigError(f"factory {path!r}: get_node_funcs must return (exec_node_func, start_node_func, "
                          f"stop_node_func, exec_failed_node_func), got {funcs!r}", path=path)
    for role, func in zip(FUNC_ROLES, funcs):
        if func is not None and not callable(func):
            raise ConfigError(f"factory {path!r}: get_node_funcs returned a {role} that is not callable: {func!r}",
                              path=path)
    return (spec, *funcs)
