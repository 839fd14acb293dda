"""Pool workers: claim epoch jobs from the queue table, run them, write back their results.

A worker (a thread, or a process started with `spawn`) opens the net's database by path,
claims one job of its pool at a time (with a lease), runs the epoch's attempts with the same
`AttemptLoop` as the main thread, and writes a result row (`epoch_results`) together with
the attempts and log lines, in one transaction. It then notifies the main process, which
alone owns the sim: it applies the result to the net. Every operation in a worker is
queued (as with `defer_net_actions=True`) and reaches the net when the result is applied;
a non-deferred node's operations are applied even if the epoch then fails, as in the main
thread.
"""

from __future__ import annotations

import asyncio
import json
import pickle
import queue as queue_module
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from . import port_types as port_types_module
from .clock import Clock, SystemClock
from .config import NodeConfig
from .db import open_connection
from .epoch import AttemptLoop, Outcome, check_deferred_complete, error_text
from .errors import NetrunError
from .graphio import graph_from_data
from .journal import Journal
from .queue import EpochQueue
from .values import ValueStore

IDLE_WAIT = 0.05  # seconds a worker waits for a job signal before looking again
START_FAILED = "\x00start-failed\x00"  # notice prefix: a start_node_func raised in a worker


class RemoteError(NetrunError):
    """An exception from a pool worker that could not be pickled, carried as text."""


@dataclass
class WorkerSpec:
    """What a worker needs besides the database: its pool's nodes, their functions and options."""

    db_path: str
    pool: str
    nodes: dict[str, NodeConfig]
    functions: dict[str, Any]  # node -> NodeFunctions (cloudpickled for a process worker)
    keep_received: bool = False
    init_per_worker: set[str] = field(default_factory=set)  # nodes whose start/stop run in each worker


class WorkerNet:
    """What `start_node_func(net)` and `ctx._net` get in a process worker: read-only SQL."""

    def __init__(self, conn: Any, db_path: str) -> None:
        self._conn = conn
        self.db_path = db_path

    def query(self, sql: str, params: tuple | list = ()) -> list[dict]:
        from .db import rows_as_dicts

        return rows_as_dicts(self._conn.execute(sql, params))


class WorkerHost:
    """The host an `AttemptLoop` runs against in a worker (see netrun.epoch)."""

    def __init__(self, spec: WorkerSpec, clock: Clock, net: Any | None) -> None:
        self.conn = open_connection(spec.db_path)
        self.clock = clock
        self.journal = Journal(self.conn, clock)
        self.values = ValueStore(self.journal)
        meta = dict(self.conn.execute("SELECT key, value FROM net_meta").fetchall())
        self.graph_nodes = graph_from_data(json.loads(meta["graph"])).nodes()
        self.port_types: dict[str, dict[str, dict]] = {}
        for node, types in self.conn.execute("SELECT node_name, port_types FROM node_settings"):
            data = json.loads(types)
            if any(data.values()):
                self.port_types[node] = {side: {p: port_types_module.from_data(t, where=f"node {node!r} port {p!r}")
                                                for p, t in data.get(side, {}).items()} for side in ("in", "out")}
        self.net = net if net is not None else WorkerNet(self.conn, spec.db_path)
        self.queue = EpochQueue(self.journal, clock)


def _portable_error(error: BaseException | None) -> BaseException | None:
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - replaced by a text copy
        return RemoteError(error_text(error), type_name=type(error).__name__)


@dataclass
class _Result:
    epoch_id: str
    node: str
    blob: bytes


def finish_and_claim(host: WorkerHost, spec: WorkerSpec, worker_id: str, previous: _Result | None, *,
                     claim: bool = True) -> tuple[tuple | None, bool]:
    """One transaction: write the previous job's result (if the job is still ours) and claim the next.

    Returns (claimed job as (epoch_id, node, salvo, first attempt) or None, whether the previous
    result was written). A result is not written when the main process took the epoch back
    (its timeout passed): the worker's late rows are dropped and a log line says so.
    """
    def then(conn: Any) -> tuple | None:
        if previous is not None:
            if host.journal.wrote:
                conn.execute("INSERT INTO epoch_results (epoch_id, worker, payload, created_at) VALUES (?, ?, ?, ?)",
                             (previous.epoch_id, worker_id, previous.blob, host.journal.now()))
            else:
                conn.execute("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                             (previous.epoch_id, previous.node, host.journal.now(),
                              f"late result of worker {worker_id} discarded: the epoch had timed out"))
        jobs = host.queue.claim_in(conn, worker_id, pool=spec.pool) if claim else []
        if not jobs:
            return None
        epoch_id, node = jobs[0].epoch_id, jobs[0].node_name
        salvo, first = conn.execute(
            "SELECT salvo, (SELECT coalesce(max(attempt) + 1, 0) FROM epoch_attempts WHERE epoch_id = ?) "
            "FROM epochs WHERE id = ?", (epoch_id, epoch_id)).fetchone()
        conn.execute("UPDATE epochs SET state = 'running', started_at = ? WHERE id = ?",
                     (host.journal.now(), epoch_id))
        return epoch_id, node, [tuple(p) for p in json.loads(salvo or "[]")], first

    only_if = (lambda conn: _still_mine(conn, previous.epoch_id, worker_id)) if previous is not None else None
    job = host.journal.commit(then=then, only_if=only_if)
    return job, previous is not None and host.journal.wrote


def run_claimed(host: WorkerHost, spec: WorkerSpec, functions: dict[str, Any], job: tuple,
                loop: asyncio.AbstractEventLoop) -> _Result:
    """Run a claimed job's attempts; its rows stay buffered in the host's journal."""
    epoch_id, node, salvo, first = job
    attempts = AttemptLoop(host, node, epoch_id, salvo, spec.nodes[node], functions[node], deferred=True,
                           finisher=lambda actions: check_deferred_complete(node, epoch_id, actions),
                           first_attempt=first)
    if asyncio.iscoroutinefunction(functions[node].exec):
        outcome = loop.run_until_complete(attempts.run_async())
    else:
        outcome = attempts.run()
    actions = outcome.actions
    payload = {
        "kind": outcome.kind,
        "error": _portable_error(outcome.error),
        "salvo": salvo,
        "queue": actions.queue if actions is not None else [],
        "received": dict(actions.received) if actions is not None and spec.keep_received else {},
    }
    try:
        blob = pickle.dumps(payload)
    except Exception:  # noqa: BLE001 - a received value that cannot be pickled is not kept
        payload["received"] = {}
        blob = pickle.dumps(payload)
    return _Result(epoch_id, node, blob)


def _still_mine(conn: Any, epoch_id: str, worker_id: str) -> bool:
    row = conn.execute("SELECT worker, state FROM epoch_jobs WHERE epoch_id = ?", (epoch_id,)).fetchone()
    return row is not None and row[0] == worker_id and row[1] == "claimed"


def read_outcome(payload: bytes) -> tuple[Outcome, list, list, dict]:
    """(outcome, salvo, queue, received) from a result row."""
    data = pickle.loads(payload)
    return Outcome(data["kind"], None, data["error"]), data["salvo"], data["queue"], data["received"]


def worker_loop(spec: WorkerSpec, worker_id: str, wake: Any, stop: Any, notify: Callable[[str], None],
                clock: Clock, net: Any | None, functions: dict[str, Any], alive: Callable[[], bool]) -> None:
    """The body of a worker: start functions, claim/run/notify until stopped, stop functions."""
    host = WorkerHost(spec, clock, net)
    loop = asyncio.new_event_loop()

    def lifecycle(role: str) -> bool:
        for node in sorted(spec.init_per_worker):
            func = getattr(functions[node], role)
            if func is not None:
                try:
                    result = func(host.net)
                    if asyncio.iscoroutine(result):
                        loop.run_until_complete(result)
                except Exception as exc:  # noqa: BLE001 - reported to the main process
                    if role == "start":  # the main process stops the pool and raises it to the caller
                        notify(f"{START_FAILED}{node}\x00{type(exc).__name__}: {exc}")
                        return False
                    raise
        return True

    try:
        if not lifecycle("start"):
            return
        previous: _Result | None = None
        while not stop.is_set() and alive():
            # The previous result and the next claim share one transaction.
            job, written = finish_and_claim(host, spec, worker_id, previous)
            if written:
                notify(previous.epoch_id)
            previous = None
            if job is None:
                wake.acquire(timeout=IDLE_WAIT)
                continue
            previous = run_claimed(host, spec, functions, job, loop)
        if previous is not None:  # stopped after a job: write its result, claim nothing
            _none, written = finish_and_claim(host, spec, worker_id, previous, claim=False)
            if written:
                notify(previous.epoch_id)
        lifecycle("stop")
    finally:
        loop.close()
        host.conn.close()


def process_main(spec: WorkerSpec, worker_id: str, wake: Any, stop: Any, results: Any) -> None:
    """Entry point of a process worker (spawned: it shares nothing with its parent but these)."""
    import multiprocessing

    functions = cloudpickle.loads(spec.functions)
    parent = multiprocessing.parent_process()
    worker_loop(spec, worker_id, wake, stop, results.put, SystemClock(), None, functions,
                lambda: parent is None or parent.is_alive())


def thread_main(spec: WorkerSpec, worker_id: str, wake: threading.Semaphore, stop: threading.Event,
                results: queue_module.Queue, clock: Clock, net: Any) -> None:
    worker_loop(spec, worker_id, wake, stop, results.put, clock, net, spec.functions, lambda: True)
