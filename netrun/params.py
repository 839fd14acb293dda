"""Node parameters (`ctx.params`) and the data rule they share with factory arguments.

A node's params are data a definition can hold: strings, booleans, integers, finite floats,
arrays and tables with string keys, nested (what both JSON and TOML write; `None`, dates,
bytes and objects are refused). The net stores them with the node's options (the
`node_settings.config` JSON) and writes them back as `[nodes.NAME.params]`.

Node code sees them frozen: a `Params` is a read-only mapping whose tables are `Params` and
whose arrays are tuples, so nothing reached through `ctx.params` can change the stored
settings, or what another epoch sees. It pickles (process-pool workers get it) and compares
equal to a dict of the same data whose arrays are tuples (`thaw` gives the plain JSON form).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

from .errors import ConfigError


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return value if isinstance(value, Params) else Params(value)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item) for item in value)
    return value


def thaw(value: Any) -> Any:
    """The plain JSON/TOML form of frozen data: tables as dicts, arrays as lists (a fresh copy)."""
    if isinstance(value, Mapping):
        return {key: thaw(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(item) for item in value]
    return value


class Params(Mapping[str, Any]):
    """A read-only, deep-frozen mapping of a node's parameters (see the module docstring)."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_data", {key: _freeze(value) for key, value in (data or {}).items()})

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Params({self._data!r})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("node params are read-only; change them with set_node_config(node, params=...)")

    def __hash__(self) -> int:
        return hash(frozenset(self._data.items()))

    def __reduce__(self) -> tuple:
        return Params, (thaw(self),)

    def __copy__(self) -> Params:
        return self

    def __deepcopy__(self, memo: dict) -> Params:
        return self


def _is_text(value: Any) -> bool:
    """A string that has a UTF-8 form (a lone surrogate has none: no TOML or JSON file can hold it)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


TOML_INTEGERS = "TOML integers are 64-bit: from -2**63 to 2**63-1"


def is_int64(value: int) -> bool:
    """Whether an integer fits in 64 bits, as TOML's and SQLite's integers do."""
    return -2 ** 63 <= value < 2 ** 63


def find_non_data(value: Any, keys: tuple = ()) -> tuple[tuple, Any, bool] | None:
    """The first place in `value` that is not JSON/TOML data, or None: (its keys and indexes from the top,
    what is there, whether that is a table's key rather than a value)."""
    if _is_text(value) or isinstance(value, bool) or (isinstance(value, float) and math.isfinite(value)):
        return None
    if isinstance(value, int):  # TOML's integers are 64-bit (a longer one is written, but no reader takes it)
        return None if is_int64(value) else (keys, value, False)
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = find_non_data(item, (*keys, i))
            if found:
                return found
        return None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = (keys, key, True) if not _is_text(key) else find_non_data(item, (*keys, key))
            if found:
                return found
        return None
    return keys, value, False


def subscripts(keys: tuple) -> str:
    """`['a'][0]` for the keys ('a', 0)."""
    return "".join(f"[{key!r}]" for key in keys)


def check_params(node: str, params: Any) -> Params:
    """`params` checked and frozen.

    Raises:
        ConfigError: not a table, or a value that is not JSON/TOML data, naming the node and
            the key (`key`: the top-level one), and saying what to pass instead.
    """
    if not isinstance(params, Mapping):
        raise ConfigError(f"node {node!r} option 'params' must be a table (a dict of name -> value), got {params!r}",
                          option="params", node=node)
    found = find_non_data(params)
    if found:
        keys, bad, is_key = found
        place = f"params{subscripts(keys)}"
        what = f"{place} has a non-string key {bad!r}, which" if is_key else f"{place} = {bad!r}"
        hint = " (pass its import path or name as a string)" if callable(bad) else (
            f" ({TOML_INTEGERS}; pass a larger one as a string)" if type(bad) is int else "")
        raise ConfigError(f"node {node!r} {what} cannot be stored{hint}: params must be strings, numbers, booleans, "
                          "arrays or tables with string keys (data both JSON and TOML hold)",
                          option="params", node=node, key=keys[0] if keys else None, keys=keys)
    return params if isinstance(params, Params) else Params(params)
