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
import os
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import cloudpickle

from . import port_types as port_types_module
from .capture import install
from .clock import Clock, SystemClock
from .config import NodeConfig
from .context import NodeNet
from .db import open_connection, transaction
from .epoch import AttemptLoop, Outcome, check_deferred_complete
from .errors import NetrunError
from .graphio import graph_from_data
from .journal import Journal
from . import jobs
from .tracebacks import error_text, format_traceback
from .values import ValueStore

_here = threading.local()  # `active` in a thread worker's thread


def in_worker_thread() -> bool:
    """Whether the calling thread is a thread-pool worker (running node code of a pool)."""
    return getattr(_here, "active", False)


IDLE_WAIT = 0.05  # seconds a worker waits for a job signal before looking again
START_FAILED = "\x00start-failed\x00"  # notice prefix: a start_node_func raised in a worker


class RemoteError(NetrunError):
    """An exception from a pool worker that could not be pickled, carried as text: the message is
    the original's `Type: message`, `type_name` its class name, `traceback` the worker's text."""

    remote = True  # netrun.tracebacks reads the original's type and traceback from the fields


@dataclass
class WorkerSpec:
    """What a worker needs besides the database: its pool's nodes, their functions and options."""

    db_path: str
    pool: str
    nodes: dict[str, NodeConfig]
    functions: dict[str, Any]  # node -> NodeFunctions (cloudpickled for a process worker)
    keep_received: bool = False
    init_per_worker: set[str] = field(default_factory=set)  # nodes whose start/stop run in each worker
    durability: str = "normal"  # the net's: a claimed epoch's `running` mark is as durable as the owner's writes
    lease_seconds: float = 60.0


class WorkerNet:
    """What `start_node_func(net)` and `ctx._net` get in a process worker: read-only SQL."""

    def __init__(self, db_path: str) -> None:
        self._conn = open_connection(db_path, readonly=True)
        self.db_path = db_path

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[dict]:
        from .readonly import read_query

        return read_query(self._conn, sql, params)

    def close(self) -> None:
        self._conn.close()


class WorkerHost:
    """The host an `AttemptLoop` runs against in a worker (see netrun.epoch)."""

    def __init__(self, spec: WorkerSpec, worker_id: str, clock: Clock, net: Any | None) -> None:
        self.conn = open_connection(spec.db_path, durability=spec.durability)
        self.worker_id = worker_id
        self.clock = clock
        self.journal = Journal(self.conn, clock)
        # keep_consumed: a consumed value is serialized for keeping at the call (it may fail there)
        self.values = ValueStore(self.journal, keep_consumed=spec.keep_received)
        meta = dict(self.conn.execute("SELECT key, value FROM net_meta").fetchall())
        self.graph_nodes = graph_from_data(json.loads(meta["graph"])).nodes()
        self.port_types: dict[str, dict[str, dict]] = {}
        for node, types in self.conn.execute("SELECT node_name, port_types FROM node_settings"):
            data = json.loads(types)
            if any(data.values()):
                self.port_types[node] = {side: {p: port_types_module.from_data(t, where=f"node {node!r} port {p!r}")
                                                for p, t in data.get(side, {}).items()} for side in ("in", "out")}
        self._own_net = net is None
        self.net = net if net is not None else WorkerNet(spec.db_path)
        self.lease = timedelta(seconds=spec.lease_seconds)
        self.current: jobs.Claim | None = None  # the job this worker holds
        self._renew_at = 0.0

    def beat(self) -> None:
        """The running epoch made progress (a context call): renew the lease when a third of it is gone.

        A thread worker renews only here: a thread stuck in user code stops renewing, and the
        owner takes its job back when the lease runs out."""
        job = self.current
        if job is None or self.clock.monotonic() < self._renew_at:
            return
        self._renew_at = self.clock.monotonic() + self.lease.total_seconds() / 3
        with transaction(self.conn):
            jobs.renew(self.conn, job, self.worker_id, self.clock.now() + self.lease)

    def claimed(self, job: jobs.Claim | None) -> None:
        self.current = job
        self._renew_at = self.clock.monotonic() + self.lease.total_seconds() / 3

    def close(self) -> None:
        if self._own_net:
            self.net.close()
        self.conn.close()


def _portable_error(error: BaseException | None, traceback: str | None) -> BaseException | None:
    """The error as it crosses to the owner: itself when it survives a pickle round trip, else a
    `RemoteError` with its text, type name and traceback."""
    if error is None:
        return None
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - replaced by a text copy
        return RemoteError(error_text(error), type_name=type(error).__name__,
                           traceback=traceback or format_traceback(error))


@dataclass
class _Result:
    job: jobs.Claim
    blob: bytes


def finish_and_claim(host: WorkerHost, spec: WorkerSpec, worker_id: str, previous: _Result | None, *,
                     claim: bool = True) -> tuple[tuple | None, bool]:
    """One transaction: report the previous job (if it is still ours) and claim the next.

    Returns (claimed job as (claim, salvo, first attempt) or None, whether the previous result
    was written). The report is a compare-and-set on the job (state, worker, attempt): when the
    owner took the job back first (lease expired, timeout), the worker's rows are dropped and a
    log line says so.
    """
    def then(conn: Any) -> tuple | None:
        if previous is not None:
            if host.journal.wrote:
                conn.execute("INSERT INTO epoch_results (epoch_id, worker, payload, created_at) VALUES (?, ?, ?, ?)",
                             (previous.job.epoch_id, worker_id, previous.blob, host.journal.now()))
            else:
                conn.execute("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                             (previous.job.epoch_id, previous.job.node_name, host.journal.now(),
                              f"late result of worker {worker_id} discarded: the epoch was taken back "
                              f"(timed out, or its lease expired)"))
        job = jobs.claim(conn, worker_id, spec.pool, host.clock.now(), host.lease) if claim else None
        if job is None:
            return None
        salvo, first = conn.execute(
            "SELECT salvo, (SELECT coalesce(max(attempt) + 1, 0) FROM epoch_attempts WHERE epoch_id = ?) "
            "FROM epochs WHERE id = ?", (job.epoch_id, job.epoch_id)).fetchone()
        conn.execute("UPDATE epochs SET state = 'running', started_at = ? WHERE id = ?",
                     (host.journal.now(), job.epoch_id))
        return job, [tuple(p) for p in json.loads(salvo or "[]")], first

    if previous is None and claim and not host.journal.pending and \
            not jobs.any_due(host.conn, spec.pool, host.clock.now()):
        host.claimed(None)
        return None, False
    only_if = (lambda conn: jobs.report(conn, previous.job, worker_id)) if previous is not None else None
    claimed = host.journal.commit(then=then, only_if=only_if)
    host.claimed(claimed[0] if claimed else None)
    return claimed, previous is not None and host.journal.wrote


def run_claimed(host: WorkerHost, spec: WorkerSpec, functions: dict[str, Any], job: tuple,
                loop: asyncio.AbstractEventLoop) -> _Result:
    """Run a claimed job's attempts; its rows stay buffered in the host's journal."""
    claim, salvo, first = job
    epoch_id, node = claim.epoch_id, claim.node_name
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
        "error": _portable_error(outcome.error, outcome.traceback),
        "traceback": outcome.traceback,  # a traceback does not survive a pickle: its text travels
        "salvo": salvo,
        "queue": actions.queue if actions is not None else [],
        "kept": dict(actions.kept) if actions is not None else {},  # consumed values, serialized at the call
    }
    return _Result(claim, pickle.dumps(payload))


def read_outcome(payload: bytes) -> tuple[Outcome, list, list, dict]:
    """(outcome, salvo, queue, kept consumed values) from a result row."""
    data = pickle.loads(payload)
    return (Outcome(data["kind"], None, data["error"], data.get("traceback")), data["salvo"], data["queue"],
            data.get("kept", {}))


def worker_loop(spec: WorkerSpec, worker_id: str, wake: Any, stop: Any, notify: Callable[[str], None],
                clock: Clock, net: Any | None, functions: dict[str, Any], alive: Callable[[], bool],
                *, heartbeat: bool) -> None:
    """The body of a worker: start functions, claim/run/report until stopped, stop functions.

    `heartbeat`: renew the lease from a thread of its own while a job runs (process workers:
    a frozen or dead process stops renewing); otherwise only context calls renew it."""
    host = WorkerHost(spec, worker_id, clock, net)
    loop = asyncio.new_event_loop()
    beating = _Heartbeat(spec, worker_id, host) if heartbeat else None

    def lifecycle(role: str) -> bool:
        for node in sorted(spec.init_per_worker):
            func = getattr(functions[node], role)
            if func is not None:
                try:
                    result = func(NodeNet(host.net, node, spec.nodes[node].params))
                    if asyncio.iscoroutine(result):
                        loop.run_until_complete(result)
                except Exception as exc:  # noqa: BLE001 - reported to the owner
                    if role == "start":  # the owner stops the pool and raises it to the caller
                        notify(f"{START_FAILED}{node}\x00{type(exc).__name__}: {exc}")
                        return False
                    raise
        return True

    try:
        if not lifecycle("start"):
            return
        previous: _Result | None = None
        while not stop.is_set() and alive():
            # The previous report and the next claim share one transaction.
            job, written = finish_and_claim(host, spec, worker_id, previous)
            if written:
                notify(previous.job.epoch_id)
            previous = None
            if job is None:
                wake.acquire(timeout=IDLE_WAIT)
                continue
            previous = run_claimed(host, spec, functions, job, loop)
        if previous is not None:  # stopped (or retired) after a job: report it, claim nothing
            _none, written = finish_and_claim(host, spec, worker_id, previous, claim=False)
            if written:
                notify(previous.job.epoch_id)
        lifecycle("stop")
    finally:
        if beating is not None:
            beating.stop()
        loop.close()
        host.close()


class _Heartbeat:
    """A process worker's lease renewals: every third of the lease, on a connection of its own."""

    def __init__(self, spec: WorkerSpec, worker_id: str, host: WorkerHost) -> None:
        self._spec, self._worker_id, self._host = spec, worker_id, host
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"netrun-heartbeat-{worker_id}")
        self._thread.start()

    def _run(self) -> None:
        conn = open_connection(self._spec.db_path, durability=self._spec.durability)
        try:
            while not self._stop.wait(self._host.lease.total_seconds() / 3):
                job = self._host.current
                if job is not None:
                    with transaction(conn):
                        jobs.renew(conn, job, self._worker_id, self._host.clock.now() + self._host.lease)
        finally:
            conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def process_main(spec: WorkerSpec, worker_id: str, wake: Any, stop: Any, notify: Any) -> None:
    """Entry point of a process worker (spawned: it shares nothing with its parent but these)."""
    import multiprocessing

    functions = cloudpickle.loads(spec.functions)
    for funcs in functions.values():  # print() in node code is captured here too (netrun.capture)
        for func in (funcs.exec, funcs.start, funcs.stop, funcs.failed):
            if func is not None:
                install(func)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="netrun-owner-watch").start()
    def send(item: str) -> None:
        try:
            notify.send(item)
        except OSError:  # the owner is gone (killed): the report is in the table, the loop ends next
            pass

    try:
        worker_loop(spec, worker_id, wake, stop, send, SystemClock(), None, functions,
                    lambda: parent is None or parent.is_alive(), heartbeat=True)
    finally:
        notify.close()


def _exit_with(parent: Any) -> None:
    """A process worker dies with its owner: once the owner process is gone (killed, crashed), the
    worker exits at once, whatever it runs. Its claimed job stays claimed in the table; the next
    owner takes it back before it runs anything (a result reported later would be refused)."""
    parent.join()
    os._exit(0)


def thread_main(spec: WorkerSpec, worker_id: str, wake: threading.Semaphore, stop: threading.Event,
                retire: threading.Event, notify: Callable[[str], None], clock: Clock, net: Any) -> None:
    _here.active = True
    worker_loop(spec, worker_id, wake, stop, notify, clock, net, spec.functions, lambda: not retire.is_set(),
                heartbeat=False)
