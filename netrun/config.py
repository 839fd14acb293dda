"""Net and node options: parsed, type-checked and frozen.

An unknown option or a value of the wrong type raises `ConfigError` naming the option.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .clock import Clock, SystemClock
from .durations import find_duration
from .errors import ConfigError
from .params import Params, check_params, thaw

_ON_ERROR = ("continue", "pause", "raise")
_DURABILITY = ("normal", "full")
_DLQ_MODES = ("memory", "file", "callback")
_POOL_INIT = ("per_worker", "global")
MAX_LEASE_SECONDS = 365 * 24 * 3600  # a lease's end must be a date: longer ones are refused
MAX_RETRY_WAIT = MAX_LEASE_SECONDS  # a wait longer than a year is a mistake (and past ~292 years sleep() overflows)
MAX_INT64 = 2**63 - 1  # the largest count SQLite (and PostgreSQL's bigint) can hold


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(owner: str, name: str, ok: bool, expected: str, value: Any) -> None:
    if not ok:
        raise ConfigError(f"{owner} option {name!r} must be {expected}, got {value!r}", option=name)


def _check_pools(owner: str, name: str, pools: Any) -> None:
    _check(owner, name, isinstance(pools, dict), "a dict of pool name -> {'size': N}", pools)
    for pool_name, spec in pools.items():
        _check(owner, f"{name}[{pool_name!r}]", isinstance(spec, dict) and set(spec) <= {"size"}, "{'size': N}", spec)
        size = spec.get("size", 1)
        _check(owner, f"{name}[{pool_name!r}].size", _is_int(size) and size > 0, "a positive int", size)


@dataclass(frozen=True)
class NetConfig:
    """Net-level options (SPEC "The Net Class", DESIGN "Public contract")."""

    durability: str = "normal"
    on_error: str = "pause"
    error_callback: Callable[..., Any] | None = None
    consumed_packet_storage: bool = False
    consumed_packet_storage_limit: int | None = None
    consumed_packet_storage_path: str | None = None
    history_max_size: int | None = 10_000
    history_file: str | None = None
    history_chunk_size: int = 100
    history_flush_on_pause: bool = True
    thread_pools: dict = field(default_factory=dict)
    process_pools: dict = field(default_factory=dict)
    # Pools whose workers are `netrun worker` processes, on this machine or others (PostgreSQL nets);
    # `size`: how many of its epochs a worker may run at once, summed over its workers (default 8).
    remote_pools: dict = field(default_factory=dict)
    dead_letter_queue: Any = "memory"
    dead_letter_path: str | None = None
    dead_letter_callback: Callable[..., Any] | None = None
    pool_selection: str = "least_busy"
    # Seconds a pool worker's claim on an epoch lasts unless renewed (see README "Leases").
    lease_seconds: float = 60.0
    # Remove what ended epochs left behind once older than this ("7d", "12h"...; see netrun.retention).
    retention: str | None = None
    clock: Clock = field(default_factory=SystemClock)

    def to_json(self) -> dict:
        """The options that can be stored (callables and the clock are not)."""
        skip = {"error_callback", "dead_letter_callback", "clock"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        if callable(out["dead_letter_queue"]):
            out["dead_letter_queue"] = "callback"
        return out


def parse_net_config(options: dict[str, Any]) -> NetConfig:
    """Validate net options. Raises: ConfigError naming the first bad option."""
    known = {f.name for f in dataclasses.fields(NetConfig)}
    for name in options:
        if name not in known:
            raise ConfigError(f"unknown net option {name!r}; known options: {', '.join(sorted(known))}", option=name)
    o = options
    owner = "net"
    if "durability" in o:
        _check(owner, "durability", o["durability"] in _DURABILITY, "'normal' or 'full'", o["durability"])
    if "on_error" in o:
        _check(owner, "on_error", o["on_error"] in _ON_ERROR, "'continue', 'pause' or 'raise'", o["on_error"])
    for name in ("error_callback", "dead_letter_callback"):
        if o.get(name) is not None:
            _check(owner, name, callable(o[name]), "callable", o[name])
    for name in ("consumed_packet_storage", "history_flush_on_pause"):
        if name in o:
            _check(owner, name, isinstance(o[name], bool), "a bool", o[name])
    for name in ("consumed_packet_storage_limit", "history_max_size"):
        if o.get(name) is not None:
            _check(owner, name, _is_int(o[name]) and 0 <= o[name] <= MAX_INT64,
                   f"a non-negative int (at most {MAX_INT64}) or None", o[name])
    if "history_chunk_size" in o:
        value = o["history_chunk_size"]
        _check(owner, "history_chunk_size", _is_int(value) and value > 0, "a positive int", value)
    for name in ("consumed_packet_storage_path", "history_file", "dead_letter_path"):
        if o.get(name) is not None:
            _check(owner, name, isinstance(o[name], str) and o[name] != "", "a path string", o[name])
    if o.get("retention") is not None:
        _check(owner, "retention", find_duration(o["retention"]) is not None,
               "a duration such as '30s', '10m', '12h' or '7d'", o["retention"])
    for name in ("thread_pools", "process_pools", "remote_pools"):
        if name in o:
            _check_pools(owner, name, o[name])
    if "dead_letter_queue" in o:
        dlq = o["dead_letter_queue"]
        _check(owner, "dead_letter_queue", callable(dlq) or dlq in _DLQ_MODES,
               "'memory', 'file', 'callback' or a callable", dlq)
        if dlq == "file" and not o.get("dead_letter_path"):
            raise ConfigError("net option 'dead_letter_queue'='file' needs 'dead_letter_path'", option="dead_letter_path")
        if dlq == "callback" and not o.get("dead_letter_callback"):
            raise ConfigError("net option 'dead_letter_queue'='callback' needs 'dead_letter_callback'",
                              option="dead_letter_callback")
    if "pool_selection" in o:
        _check(owner, "pool_selection", o["pool_selection"] in ("least_busy", "round_robin"),
               "'least_busy' or 'round_robin'", o["pool_selection"])
    if "lease_seconds" in o:
        value = o["lease_seconds"]
        _check(owner, "lease_seconds", _is_number(value) and 0 < value <= MAX_LEASE_SECONDS,
               f"a positive number of seconds, at most {MAX_LEASE_SECONDS:,} (a year)", value)
    if "clock" in o:
        _check(owner, "clock", all(hasattr(o["clock"], m) for m in ("now", "monotonic", "sleep")),
               "an object with now(), monotonic() and sleep()", o["clock"])
    return NetConfig(**options)


def make_folders(config: NetConfig) -> None:
    """Create the folders the options name (`dead_letter_path` in file mode,
    `consumed_packet_storage_path`), and check that `history_file` is not a folder, before the
    net touches its database: a path that cannot serve is a ConfigError naming the option and the
    path, never an OSError from a half-opened net."""
    folders = {"consumed_packet_storage_path": config.consumed_packet_storage_path}
    if config.dead_letter_queue == "file":
        folders["dead_letter_path"] = config.dead_letter_path
    for name, path in folders.items():
        if path is None:
            continue
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"net option {name!r}: cannot use {path!r} as a folder: "
                              f"{exc.strerror or exc}", option=name, path=path) from None
    if config.history_file is not None and os.path.isdir(config.history_file):
        raise ConfigError(f"net option 'history_file': {config.history_file!r} is a folder, not a file",
                          option="history_file", path=config.history_file)


@dataclass(frozen=True)
class NodeConfig:
    """Per-node options (SPEC "Node Configuration")."""

    pool: str | list[str] | None = None
    max_parallel_epochs: int | None = None
    rate_limit_per_second: float | None = None
    defer_net_actions: bool = False
    retries: int = 0
    retry_wait: float = 0
    timeout: float | None = None
    dead_letter_queue: bool = True
    capture_stdout: bool = True
    echo_stdout: bool = False
    pool_init_mode: str = "per_worker"
    # `ctx.params`: JSON/TOML data, frozen (a table read back from the database is frozen here)
    params: Params = field(default_factory=Params)

    def __post_init__(self) -> None:
        if not isinstance(self.params, Params):
            object.__setattr__(self, "params", Params(self.params))

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["params"] = thaw(self.params)
        return out


def update_node_config(node: str, current: NodeConfig, options: dict[str, Any], *,
                       pools: set[str]) -> NodeConfig:
    """Return `current` with `options` applied.

    Raises:
        ConfigError: an unknown option, a wrong type, an unknown pool, or
            `retries > 0` without `defer_net_actions=True`.
    """
    known = {f.name for f in dataclasses.fields(NodeConfig)}
    owner = f"node {node!r}"
    for name in options:
        if name not in known:
            raise ConfigError(f"unknown {owner} option {name!r}; known options: {', '.join(sorted(known))}",
                              option=name, node=node)
    o = options
    if o.get("pool") is not None:
        pool = o["pool"]
        names = [pool] if isinstance(pool, str) else pool
        _check(owner, "pool", isinstance(names, list) and names and all(isinstance(p, str) for p in names),
               "a pool name or a non-empty list of pool names", pool)
        for name in names:
            if name not in pools:
                raise ConfigError(f"{owner} option 'pool' names pool {name!r}, which the net does not define "
                                  f"(defined: {', '.join(sorted(pools)) or 'none'})", option="pool", node=node)
    if o.get("max_parallel_epochs") is not None:
        value = o["max_parallel_epochs"]
        _check(owner, "max_parallel_epochs", _is_int(value) and value > 0, "a positive int or None", value)
    for name in ("rate_limit_per_second", "timeout"):
        if o.get(name) is not None:
            _check(owner, name, _is_number(o[name]) and o[name] > 0, "a positive number or None", o[name])
    for name in ("defer_net_actions", "dead_letter_queue", "capture_stdout", "echo_stdout"):
        if name in o:
            _check(owner, name, isinstance(o[name], bool), "a bool", o[name])
    if "retries" in o:
        _check(owner, "retries", _is_int(o["retries"]) and o["retries"] >= 0, "a non-negative int", o["retries"])
    if "retry_wait" in o:
        _check(owner, "retry_wait", _is_number(o["retry_wait"]) and 0 <= o["retry_wait"] <= MAX_RETRY_WAIT,
               f"a non-negative number of seconds, at most {MAX_RETRY_WAIT:,} (a year)", o["retry_wait"])
    if "params" in o:
        o = {**o, "params": check_params(node, o["params"])}
    if "pool_init_mode" in o:
        _check(owner, "pool_init_mode", o["pool_init_mode"] in _POOL_INIT, "'per_worker' or 'global'",
               o["pool_init_mode"])
    updated = dataclasses.replace(current, **o)
    if updated.retries > 0 and not updated.defer_net_actions:
        raise ConfigError(f"{owner}: retries={updated.retries} needs defer_net_actions=True "
                          "(set both in the same set_node_config call)", option="retries", node=node)
    return updated
