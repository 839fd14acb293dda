"""Asking a net's owner from another process: `netrun stop` and `netrun inject`.

The owner (the process holding `<db>-lock`) alone writes run state. An asker writes one row
into `operator_requests`, a mailbox that is no part of run state, in its own short IMMEDIATE
transaction, and polls that row for the owner's answer (`request_desk.py` is the owner's
side). An injection is written the same way whether a process runs the net or not: a running
owner applies it within about 0.1 s; otherwise the next run of the net (`netrun resume`)
applies it when it starts. Nothing here ever touches run state, so there are never two
writers of it.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .clock import SystemClock, iso
from .checkpoint import refuse_checkpoint_db
from .db import open_connection, transaction
from .errors import NetInUse, NotANetrunDatabase, StorageError
from .dialect import is_url
from .migrate import SAME_TABLES_SINCE
from .ownership import Owner
from .store import store_for
from .request_desk import check_target
from .restore import read_meta, stored_graph
from .values import encode, preview_of

POLL = 0.05  # seconds between two reads of the request's row


@dataclass(frozen=True)
class Outcome:
    """What became of a request.

    `state`: for a stop, `paused` (the owner's loop ended), `not running` (no process ran the
    net: nothing was asked), `exited` (the owner went away before answering: the net is not
    running), `pausing` (the owner took it, its running epochs had not finished in time) or
    `unanswered` (the owner never took it in time: withdrawn). For an injection, `injected`
    (`items` holds the new IDs) or `queued` (no process took it yet: the next run does).
    """

    state: str
    request_id: int | None = None
    owner: Owner | None = None
    items: list[dict[str, Any]] = field(default_factory=list)


def request_stop(path: str, *, timeout: float) -> Outcome:
    """Ask the process running the net in `path` to pause, and wait up to `timeout` s until it has.

    Raises:
        NotANetrunDatabase, DatabaseVersionError, CorruptDatabase: not a net's file.
        StorageError: the owner runs an older netrun that takes no requests.
    """
    _check_file(path)
    owner = store_for(path).find_owner()
    if owner is None:
        return Outcome("not running")
    with _Mailbox(path, owner) as box:
        request_id = box.submit("stop", [])
        state, _answer = box.wait_or_withdraw(request_id, ("done",), timeout, "stop")
        if state == "done":
            return Outcome("paused", request_id, owner)
        if state == "gone":
            return Outcome("exited", request_id, owner)
        if state == "pending" and box.withdraw(request_id, f"not taken within {timeout:g} s"):
            return Outcome("unanswered", request_id, owner)
        state, _answer = box.wait(request_id, ("done",), 0)  # taken meanwhile: it pauses
        return Outcome({"done": "paused", "gone": "exited"}.get(state, "pausing"), request_id, owner)


def request_injection(path: str, items: list[dict[str, Any]], *, timeout: float) -> Outcome:
    """Inject packets (`{"node", "port", "value"}`, a JSON value) and source epochs (`{"node"}`) into
    the net in `path`, all or nothing: applied by its running owner (waiting up to `timeout` s for
    the new IDs), or by the next run when no process runs it.

    Raises:
        NotFoundError / PortNotFound: an unknown node or input port (nothing is written).
        the owner's error (PortFull...): it refused the request (nothing was injected).
        NotANetrunDatabase, CheckpointError...: the file cannot take requests.
    """
    _check_file(path)
    if not is_url(path):
        refuse_checkpoint_db(path, "injecting into it")
    nodes = stored_graph(store_for(path).label, read_meta(path)).nodes()
    for item in items:
        check_target(nodes, item["node"], item.get("port"))
        if "value" in item:
            _check_storable(item)
    owner = store_for(path).find_owner()
    with _Mailbox(path, owner) as box:
        request_id = box.submit("inject", items)
        if owner is None:
            return Outcome("queued", request_id)
        state, answer = box.wait_or_withdraw(request_id, ("done", "rejected"), timeout, "injection")
        if state == "gone":
            state, answer = box.wait(request_id, ("done", "rejected"), 0)
    if state == "rejected":
        refused = json.loads(answer)
        error = getattr(errors, refused.get("error", ""), None)
        error = error if isinstance(error, type) and issubclass(error, errors.NetrunError) else errors.ConfigError
        raise error(f"the process running {path} refused the injection, nothing was injected: {refused['message']}",
                    path=path)
    if state == "done":
        return Outcome("injected", request_id, owner, json.loads(answer))
    return Outcome("queued", request_id, owner)


MAX_DEPTH = 200  # JSON nested deeper than this is refused (storing it recurses in the running process)


def _depth(value: Any) -> int:
    deepest, todo = 0, [(value, 1)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _json_exact(value: Any) -> bool:
    """Whether JSON carries `value` exactly (netrun.values.json_exact, at any depth: _depth bounds it)."""
    todo = [value]
    while todo:
        item = todo.pop()
        kind = type(item)
        if kind is float and not math.isfinite(item):
            return False
        if kind is list:
            todo.extend(item)
        elif kind is dict:
            if any(type(key) is not str for key in item):
                return False
            todo.extend(item.values())
        elif not (kind in (str, int, bool, float) or item is None):
            return False
    return True


def _check_storable(item: dict[str, Any]) -> None:
    """A value the net could not store is refused here, not dropped later by the run that applies it."""
    where = f"{item['node']}.{item.get('port')}"
    if _depth(item["value"]) > MAX_DEPTH:
        raise errors.UnpicklableValue(f"the value for {where} is nested more than {MAX_DEPTH} levels deep; "
                                      "nothing was injected")
    if not _json_exact(item["value"]):  # the request carries it as JSON: it would arrive changed, or not at all
        raise errors.ConfigError(f"the value for {where} is not a JSON value ({preview_of(item['value'])}): a "
                                 "tuple, a dict with keys other than text, NaN or an infinity would not arrive as "
                                 "it is; nothing was injected")
    try:
        encode(item["value"])
    except (RecursionError, ValueError, TypeError, pickle.PicklingError) as exc:
        raise errors.UnpicklableValue(f"the value for {where} cannot be stored "
                                      f"({type(exc).__name__}: {exc}); nothing was injected") from None


def _check_file(path: str) -> None:
    store = store_for(path)
    if not store.exists():
        raise NotANetrunDatabase(f"{store.label} does not exist", path=store.label)
    if not store.inspect().exists:
        raise NotANetrunDatabase(f"{store.label} holds no netrun net", path=store.label)


class _Mailbox:
    """A short write connection to the requests table of one net, and its owner as found at first."""

    def __init__(self, path: str, owner: Owner | None) -> None:
        self.store = store_for(path)
        self.path = self.store.label
        self.owner = owner
        version = self.store.inspect().version
        self.conn = open_connection(self.store.url)
        try:
            if version < SAME_TABLES_SINCE:
                self._migrate()
        except BaseException:
            self.conn.close()
            raise

    def _migrate(self) -> None:
        """A file of an older netrun gets the requests table, unless an older netrun runs it now."""
        try:
            lock = self.store.lock(iso(SystemClock().now()))
        except NetInUse as exc:
            raise StorageError(f"{self.path} is run by {exc.pid and f'pid {exc.pid}' or 'a process'} with an older "
                               "netrun, which takes no requests from other processes; stop it there (Ctrl-C)",
                               path=self.path) from None
        try:
            self.store.migrate(self.conn)
        finally:
            lock.release()

    def __enter__(self) -> _Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.conn.close()

    def submit(self, kind: str, payload: list) -> int:
        asker = f"pid {os.getpid()} on {socket.gethostname()}"
        with transaction(self.conn):
            return self.conn.execute("INSERT INTO operator_requests (kind, payload, requested_at, requested_by) "
                                     "VALUES (?, ?, ?, ?) RETURNING id",
                                     (kind, json.dumps(payload), iso(SystemClock().now()), asker)).fetchone()[0]

    def read(self, request_id: int) -> tuple[str, str | None]:
        row = self.conn.execute("SELECT state, answer FROM operator_requests WHERE id = ?", (request_id,)).fetchone()
        return (row[0], row[1]) if row else ("withdrawn", None)

    def wait(self, request_id: int, final: tuple[str, ...], timeout: float) -> tuple[str, str | None]:
        """Poll the request until its state is one of `final`, `timeout` passes (its state then), or
        the owner is gone ("gone", after a last read: it may have answered before it left)."""
        deadline = time.monotonic() + timeout
        while True:
            state, answer = self.read(request_id)
            if state in final:
                return state, answer
            if self.store.find_owner() != self.owner:
                state, answer = self.read(request_id)
                return (state, answer) if state in final else ("gone", answer)
            if time.monotonic() >= deadline:
                return state, answer
            time.sleep(POLL)

    def wait_or_withdraw(self, request_id: int, final: tuple[str, ...], timeout: float, what: str
                         ) -> tuple[str, str | None]:
        """`wait`; interrupted (Ctrl-C), the request is withdrawn first if the owner has not taken it
        yet, and the interrupt carries a note saying which it was."""
        try:
            return self.wait(request_id, final, timeout)
        except KeyboardInterrupt as exc:
            if self.withdraw(request_id, "the asking process was interrupted"):
                exc.add_note(f"the {what} request was withdrawn before the running process took it: nothing was done")
            else:
                exc.add_note(f"the running process had already taken the {what} request: it goes on "
                             f"(netrun status {self.path} shows the net)")
            raise

    def withdraw(self, request_id: int, why: str) -> bool:
        """Withdraw the request if the owner has not taken it yet; whether it was withdrawn."""
        with transaction(self.conn):
            self.conn.execute("UPDATE operator_requests SET state = 'withdrawn', answered_at = ?, answer = ? "
                              "WHERE id = ? AND state = 'pending'", (iso(SystemClock().now()), why, request_id))
            return self.conn.changes() > 0


__all__ = ["Outcome", "request_injection", "request_stop"]
