"""Packet values: serialized into `packet_values`, read back at consumption.

A value that JSON carries exactly (None, bool, int, finite float, str, and lists / str-keyed
dicts of those) is stored as JSON text (kind 'json'): SQL, sqlite-utils and datasette read it.
Any other value is pickled (kind 'pickle'); a value function is cloudpickled (kind 'func', so
lambdas and closures survive a restart) and called lazily when the packet is consumed. Each
gets a short text preview when it is written: readers show it and never unpickle. Values
written since the last commit are served from memory until the journal commits them.

A consumed value stays stored until its epoch ends (a failed epoch dead-letters it); then it
is deleted unless `consumed_packet_storage` keeps them (the newest
`consumed_packet_storage_limit` of them); `consumed_packet_storage_path` also writes
each consumed value to `<path>/<PacketID>.pkl`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import json
import math
import os
import pickle
import reprlib
import tempfile
from collections.abc import Callable
from collections import OrderedDict
from typing import Any, NamedTuple

import apsw
import cloudpickle

from .errors import NotFoundError, StoredValueUnreadable, UnpicklableValue, ValueFunctionFailed
from . import jsontext
from .journal import Journal
from .reentry import reentrant_point
from .tracebacks import storable_text

RECENT_LIMIT = 4096  # values kept in memory for consumption without a read-back
PREVIEW_CHARS = 200  # the longest preview stored with a value
JSON, PICKLE, FUNC = "json", "pickle", "func"  # packet_values.kind
_MAX_DEPTH = 64  # deeper values are pickled (json's own recursion has limits too)


class Stored(NamedTuple):
    """A value as stored: its kind (json, pickle, func), data (str for json, else bytes), preview."""

    kind: str
    data: str | bytes
    preview: str | None = None


def json_exact(value: Any, depth: int = 0) -> bool:
    """Whether JSON gives `value` back exactly, types included (a tuple, an int-keyed dict, a
    float('nan'), a subclass of str or dict would not come back as they went in)."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return True
    if kind is float:
        return math.isfinite(value)
    if depth >= _MAX_DEPTH:
        return False
    if kind is list:
        return all(json_exact(item, depth + 1) for item in value)
    if kind is dict:
        return all(type(key) is str and json_exact(item, depth + 1) for key, item in value.items())
    return False


_reprs = reprlib.Repr()
_reprs.maxstring = _reprs.maxother = PREVIEW_CHARS
_reprs.maxlist = _reprs.maxtuple = _reprs.maxset = _reprs.maxfrozenset = _reprs.maxdeque = 20
_reprs.maxdict = 10


def shorten(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def preview_of(value: Any) -> str:
    """A short `repr` of a value, made when it is stored (a `__repr__` that raises is named instead)."""
    try:
        return storable_text(shorten(_reprs.repr(value)))  # a __repr__ may hold a lone surrogate
    except Exception as exc:  # noqa: BLE001 - user code in __repr__
        return f"<{type(value).__name__}: repr raised {type(exc).__name__}>"


_json_text = jsontext.encoder(ascii_only=False)  # a value's JSON keeps its non-ASCII text as it is


def encode(value: Any) -> Stored:
    """JSON text when JSON carries the value exactly, else a pickle. Raises what pickle raises."""
    if json_exact(value):
        try:
            text = _json_text(value)
            if not text.isascii():
                text.encode()  # a lone surrogate cannot be stored as UTF-8 text: pickled instead
        except (ValueError, RecursionError):  # an int past the str conversion limit, a lone surrogate
            pass
        else:
            return Stored(JSON, text, shorten(text))
    return Stored(PICKLE, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), preview_of(value))


def decode(packet_id: str, kind: str, data: str | bytes) -> Any:
    """A stored value (json or pickle) back as it went in. Unpickling runs code from the file.

    Raises StoredValueUnreadable naming the packet when the data cannot be read."""
    try:
        if kind == JSON:
            return json.loads(data)
        return pickle.loads(data) if kind == PICKLE else cloudpickle.loads(data)
    except Exception as exc:
        raise StoredValueUnreadable(f"the stored value of packet {packet_id} cannot be read ({kind}): "
                                    f"{type(exc).__name__}: {exc}", packet_id=packet_id) from exc



class ValueStore:
    def __init__(self, journal: Journal, *, keep_consumed: bool = False, keep_limit: int | None = None,
                 keep_path: str | None = None) -> None:
        self.journal = journal
        self.keep_consumed = keep_consumed
        self.keep_limit = keep_limit
        self.keep_path = keep_path  # made by config.make_folders before the net opens
        self._consumed_seq = 0
        # Values stored by this process and not yet consumed, newest last (bounded): a packet is
        # usually consumed soon after it was made, and its value is then never read back.
        self._recent: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        row = journal.conn.execute("SELECT max(consumed_seq) FROM packet_values").fetchone()
        self._consumed_seq = row[0] or 0
        self._max_bytes = journal.conn.limit(apsw.SQLITE_LIMIT_LENGTH, -1)  # the most one value may take

    def serialize(self, value: Any, *, where: str) -> Stored:
        """Encode a value before its packet exists (JSON, or a pickle).

        Raises UnpicklableValue naming `where`: it cannot be pickled, or it is larger than the
        database takes in one value (SQLite's length limit, 1e9 bytes by default)."""
        try:
            stored = encode(value)
        except Exception as exc:
            raise UnpicklableValue(f"{where}: a value of type {type(value).__name__} cannot be pickled into "
                                   f"the database: {exc}") from exc
        return self._fits(stored, where)

    def _fits(self, stored: Stored, where: str) -> Stored:
        size = len(stored.data)
        if isinstance(stored.data, str) and size * 4 > self._max_bytes:
            size = len(stored.data.encode())
        if size > self._max_bytes:
            raise UnpicklableValue(f"{where}: a value of {size:,} bytes ({stored.kind}) is larger than the database "
                                   f"takes in one value ({self._max_bytes:,} bytes): store it elsewhere (a file) "
                                   "and send its path")
        return stored

    def serialize_func(self, func: Callable[[], Any], *, where: str) -> Stored:
        """Cloudpickle a value function (lambdas and closures persist across restarts)."""
        if not callable(func):
            raise TypeError(f"{where}: create_packet_from_value_func needs a callable, got {func!r}")
        try:
            stored = Stored(FUNC, cloudpickle.dumps(func), storable_text(shorten(f"<value function {_func_name(func)}>")))
        except Exception as exc:
            raise UnpicklableValue(f"{where}: the value function {func!r} cannot be serialized, so it would "
                                   f"not survive a restart: {exc}") from exc
        return self._fits(stored, where)

    def store(self, packet_id: str, serialized: Stored) -> None:
        """Store a serialized value (from `serialize`/`serialize_func`) for `packet_id`."""
        self.journal.put_value(packet_id, serialized)
        self._recent[packet_id] = serialized
        if len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)

    def cached(self, packet_id: str) -> Stored | None:
        """The stored value if it is at hand (buffered or recent), without reading the table."""
        pending = self.journal.values
        if packet_id in pending:
            found = pending[packet_id]
            return None if found is None else found[0]
        return self._recent.get(packet_id)

    def prime(self, values: dict[str, Stored]) -> None:
        """Values handed over with a pool job (the owner had them at hand): read from memory."""
        for packet_id, stored in values.items():
            self._recent[packet_id] = stored
        while len(self._recent) > RECENT_LIMIT:
            self._recent.popitem(last=False)

    def _load(self, packet_id: str) -> Stored | None:
        """The value as stored: from the journal's buffer when written since the last commit (no
        read-back of a value just written), else from the table."""
        pending = self.journal.values
        if packet_id in pending:
            found = pending[packet_id]
            return None if found is None else found[0]
        found = self._recent.get(packet_id)
        if found is not None:
            return found
        row = self.journal.conn.execute(
            "SELECT kind, data, preview FROM packet_values WHERE packet_id = ?", (packet_id,)).fetchone()
        return Stored(*row) if row else None

    def peek(self, packet_id: str) -> Stored | None:
        """The stored value of a packet, or None."""
        return self._load(packet_id)

    def get(self, packet_id: str) -> Any:
        """The stored value (a value function is called). Raises NotFoundError."""
        found = self._load(packet_id)
        if found is None:
            raise NotFoundError(f"packet {packet_id} has no stored value (unknown, or consumed and not kept)",
                                packet_id=packet_id)
        return self.materialize(packet_id, found.kind, found.data)

    def has(self, packet_id: str) -> bool:
        return self._load(packet_id) is not None

    @reentrant_point  # (a value function)
    def materialize(self, packet_id: str, kind: str, data: str | bytes, *_preview: Any) -> Any:
        """Turn a stored (kind, data) pair into the value (calling a value function).

        Raises StoredValueUnreadable (data that cannot be read), ValueFunctionFailed."""
        if kind != FUNC:
            return decode(packet_id, kind, data)
        func = decode(packet_id, kind, data)
        try:
            result = func()
        except Exception as exc:
            raise _failed(packet_id, exc) from exc
        if inspect.isawaitable(result):
            return _awaiting(packet_id, result)
        return result

    def kept_data(self, packet_id: str, value: Any, *, where: str) -> Stored | None:
        """A consumed value encoded for keeping (`consumed_packet_storage`, `..._path`), or None
        when it is not kept. Called when the packet is consumed, so that a value that cannot be kept
        fails the consumption (and the attempt) before anything of the epoch's end is applied.

        Raises UnpicklableValue naming the packet and `where`.
        """
        if not (self.keep_consumed or self.keep_path):
            return None
        try:
            return self._fits(encode(value), where)
        except Exception as exc:
            raise UnpicklableValue(f"{where}: the value of packet {packet_id} (a {type(value).__name__}) cannot be "
                                   f"pickled, and consumed_packet_storage keeps consumed values: {exc}",
                                   packet_id=packet_id) from exc

    def forget(self, packet_id: str, *, kept: Stored | None = None) -> None:
        """Remove a consumed packet's value at its epoch's end, keeping `kept` (from `kept_data`) if
        configured. Until then the value stays stored: a failed epoch dead-letters it."""
        self._recent.pop(packet_id, None)
        if self.keep_consumed and kept is not None:
            self._consumed_seq += 1
            self.journal.put_value(packet_id, kept, self._consumed_seq)
            if self.keep_limit is not None:
                # runs after the buffered values are written (statements follow the state rows)
                self.journal.add("DELETE FROM packet_values WHERE consumed_seq IS NOT NULL AND consumed_seq <= ?",
                                 (self._consumed_seq - self.keep_limit,))
        else:
            self.journal.drop_value(packet_id)
        if self.keep_path and kept is not None:
            path = os.path.join(self.keep_path, f"{packet_id}.pkl")  # a pickle, whatever the stored format
            self.journal.after_commit(lambda: _write_atomic(path, _as_pickle(packet_id, kept)))

    def discard(self, packet_id: str) -> Stored | None:
        """Remove a destroyed packet's value; returns it as stored, for a dead letter."""
        found = self._load(packet_id)
        self._recent.pop(packet_id, None)
        self.journal.drop_value(packet_id)
        return found


def _as_pickle(packet_id: str, stored: Stored) -> bytes:
    if stored.kind == PICKLE:
        return stored.data
    return pickle.dumps(decode(packet_id, stored.kind, stored.data), protocol=pickle.HIGHEST_PROTOCOL)


def _func_name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__


def _failed(packet_id: str, exc: BaseException) -> ValueFunctionFailed:
    return ValueFunctionFailed(f"the value function of packet {packet_id} raised {type(exc).__name__}: {exc}",
                               packet_id=packet_id)


async def _awaiting(packet_id: str, awaitable: Any) -> Any:
    """An async value function's result, with its failure wrapped like a sync one's."""
    try:
        return await awaitable
    except Exception as exc:
        raise _failed(packet_id, exc) from exc


@reentrant_point
def resolve_sync(value: Any) -> Any:
    """The value of an async value function, from sync code (its own loop, or a helper thread)."""
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(value)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, value).result()


def _write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
