"""Pool workers: take epoch jobs, run them, send back their results.

A worker (a thread, a process started with `spawn`, or a `netrun worker` thread elsewhere) runs
each epoch's attempts with the same `AttemptLoop` as the main thread. Every operation in a
worker is queued (as with `defer_net_actions=True`) and reaches the net when the owner, which
alone owns the sim, applies the result; a non-deferred node's operations are applied even if
the epoch then fails, as in the main thread. How jobs come and results go:

- `DirectJobs` (thread and process pools): the owner hands the worker its jobs (claimed in the
  owner's own commit) and gets each result back at once, with the attempt and log rows; the
  worker writes nothing. It reads values by path (or gets them with the job).
- `TableJobs` (remote workers): the worker claims due jobs of its pool from the queue table with
  a lease, and writes its results (`epoch_results`) with the attempts and log lines by
  compare-and-set, in the transaction of its next claim (the threads of one `netrun worker`
  share it: `Desk`).

A worker that holds several jobs marks each one before its code runs (a file, or memory for a
thread): if the worker dies, the owner takes back the jobs it started (crash semantics) and
queues the others again as they were.
"""
from __future__ import annotations

import asyncio
import json
import os
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import apsw
import cloudpickle

from . import port_types as port_types_module
from .capture import install
from .clock import Clock, SystemClock, iso
from .config import NodeConfig
from .context import NodeNet
from .db import open_connection, transaction
from .epoch import AttemptLoop, Outcome, check_deferred_complete
from .errors import NetrunError, StorageError
from .graphio import graph_from_data, node_shape
from .journal import Journal
from . import jobs
from .tracebacks import error_text, error_type, format_traceback
from .values import Stored, ValueStore
from .wakeups import RESULT_READY, result_notice

_here = threading.local()  # `active` in a thread worker's thread; `net`: the net whose worker it is


def in_worker_thread(net: Any = None) -> bool:
    """Whether the calling thread is a thread-pool worker (running node code of a pool); given `net`,
    a worker of that net's pools."""
    return getattr(_here, "active", False) and (net is None or getattr(_here, "net", None) is net)


IDLE_WAIT = 0.05  # seconds a worker waits for a job signal before looking again
# Jobs a process-pool worker may hold at once where no node has a timeout, within ~IN_HAND_SECONDS of work
# (netrun.pools): quick epochs (~0.1 ms) are handed over many at a time, so that the owner, the bottleneck
# then, seldom commits for a worker that ran all it had (every ~6 values with 4, ~17 with 16, ~33 with 64,
# for a pool of 2; ~10 % more pool epochs/s with 64 than with 16).
BATCH = 64
# A direct worker's results and starts wait this long at most to go to the owner together (one pipe write,
# relay and wake-up of the owner for several quick epochs); a slower epoch's result goes when it ends.
HOLD_SECONDS = 0.0005
QUICK = 0.002  # a remote worker claims `WorkerSpec.batch` jobs at once while its epochs are shorter
START_FAILED = "\x1fstart-failed\x1f"  # notice prefix: a start_node_func raised in a worker
_SEP = "\x1f"  # between the notice's fields (a PostgreSQL notification cannot carry a NUL)


def start_failed_notice(node: str, worker_id: str, exc: BaseException) -> str:
    """The notice a worker sends when a start_node_func raised (the owner stops the pool). Its text
    fits a PostgreSQL notification: no NUL, at most 2,000 characters of the error."""
    text = f"{type(exc).__name__}: {exc}".replace("\x00", "\\x00").replace(_SEP, " ")[:2000]
    return f"{START_FAILED}{node}{_SEP}{worker_id}{_SEP}{text}"


def read_start_failed(notice: str) -> tuple[str, str, str] | None:
    """(node, worker, error) from a `start_failed_notice`, or None for another notice."""
    if not notice.startswith(START_FAILED):
        return None
    node, worker_id, text = notice[len(START_FAILED):].split(_SEP, 2)
    return node, worker_id, text


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
    # Jobs claimed at once while epochs are quick (1: one at a time). A worker that holds several
    # appends each epoch it starts to its marks file (`marks_path`) first, so that the owner, taking
    # back the jobs of a worker that died, knows which of them never ran (they simply run again).
    batch: int = 1
    marks_dir: str | None = None
    # A thread pool's workers that may hold several jobs mark them here instead: worker -> its marks.
    thread_marks: dict[str, set[tuple[str, int]]] | None = None


def marks_path(marks_dir: str, worker_id: str) -> str:
    """The file in which a worker marks the epochs it starts ("<epoch> <attempt>" lines)."""
    return os.path.join(marks_dir, worker_id.replace(":", "_").replace("@", "_"))


def read_marks(marks_dir: str | None, worker_id: str) -> set[tuple[str, int]] | None:
    """The (epoch, attempt) a worker marked as started since its last report; None if unknown (then
    every job it holds counts as started)."""
    if marks_dir is None:
        return None
    try:
        with open(marks_path(marks_dir, worker_id)) as handle:
            text = handle.read()
    except OSError:
        return None
    marks = set()
    for line in text.splitlines():
        epoch_id, _, attempt = line.partition(" ")
        if attempt.isdigit():
            marks.add((epoch_id, int(attempt)))
    return marks


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
        self.node_shapes = {name: node_shape(node) for name, node in self.graph_nodes.items()}
        self.asynchronous: dict[str, bool] = {}  # node -> whether its exec function is a coroutine function
        self.port_types: dict[str, dict[str, dict]] = {}
        for node, types in self.conn.execute("SELECT node_name, port_types FROM node_settings"):
            data = json.loads(types)
            if any(data.values()):
                self.port_types[node] = {side: {p: port_types_module.from_data(t, where=f"node {node!r} port {p!r}")
                                                for p, t in data.get(side, {}).items()} for side in ("in", "out")}
        self._own_net = net is None
        self.net = net if net is not None else WorkerNet(spec.db_path)
        self.lease = timedelta(seconds=spec.lease_seconds)
        # The jobs this worker holds: claimed and not yet reported (replaced whole, never changed in
        # place: the heartbeat thread reads it).
        self.held: list[jobs.Claim] = []
        self.renew: Callable[[], None] | None = None  # a direct link's renewal (a notice to the owner)
        self._renew_at = 0.0
        self._marks = None if spec.marks_dir is None else \
            os.open(marks_path(spec.marks_dir, worker_id), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o600)
        self._marked = None if spec.thread_marks is None else spec.thread_marks.setdefault(worker_id, set())

    def beat(self) -> None:
        """The running epoch made progress (a context call): renew the lease when a third of it is gone.

        A thread worker renews only here: a thread stuck in user code stops renewing, and the
        owner takes its job back when the lease runs out."""
        if not self.held or self.clock.monotonic() < self._renew_at:
            return
        self._renew_at = self.clock.monotonic() + self.lease.total_seconds() / 3
        if self.renew is not None:
            self.renew()
            return
        with transaction(self.conn):
            renew_all(self.conn, self.held, self.worker_id, self.clock.now() + self.lease)

    def claimed(self, held: list[jobs.Claim]) -> None:
        """The jobs reported are no longer held (their marks go), the ones just claimed are."""
        self.held = held
        self._renew_at = self.clock.monotonic() + self.lease.total_seconds() / 3
        if self._marks is not None:
            os.ftruncate(self._marks, 0)
        if self._marked is not None:
            self._marked.clear()

    def starting(self, job: jobs.Claim) -> None:
        """Before a held job's code runs: mark it started (see `WorkerSpec.batch`)."""
        if self._marks is not None:
            os.write(self._marks, f"{job.epoch_id} {job.attempt}\n".encode())
        if self._marked is not None:
            self._marked.add((job.epoch_id, job.attempt))

    def close(self) -> None:
        if self._marks is not None:
            os.close(self._marks)
        if self._own_net:
            self.net.close()
        self.conn.close()


def renew_all(conn: Any, held: list[jobs.Claim], worker_id: str, until: Any) -> None:
    for job in held:
        jobs.renew(conn, job, worker_id, until)


class NodeInterrupt(BaseException):
    """A BaseException (SystemExit, KeyboardInterrupt) escaped a job's node code: the worker ends,
    as its process would in the main thread, after telling the owner what escaped and where (its
    "last words": the owner keeps them with the crash semantics it applies to the job).

    A BaseException, so nothing between the node's code and the worker's entry point catches it."""

    def __init__(self, text: str, type_name: str, traceback: str) -> None:
        super().__init__(text, type_name, traceback)
        self.text, self.type_name, self.traceback = text, type_name, traceback
        self.claim: jobs.Claim | None = None  # the job whose node code it escaped (set by worker_loop)


def last_words(worker_id: str, claim: jobs.Claim, interrupt: NodeInterrupt) -> tuple:
    """The notice a dying direct worker sends before it ends (see pools.PoolManager._take_back)."""
    return ("interrupted", worker_id, claim.epoch_id, claim.attempt, interrupt.text, interrupt.type_name,
            interrupt.traceback)


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
    rows: tuple  # its attempt and log rows, detached from the worker's journal (netrun.journal)


@dataclass(eq=False)
class _Turn:
    """One worker's share of a report-and-claim transaction: the jobs it ran, how many it would
    claim; then what it claimed ((claim, salvo, first attempt) each) and which results were written."""

    worker_id: str
    done: list[_Result]
    claim: int
    claimed: list[tuple] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    answered: bool = False
    error: BaseException | None = None


class Desk:
    """Where the threads of a remote worker report and claim (group commit): a thread that finds the
    desk free writes the turns of every thread waiting at it in one transaction, on its own
    connection, which also announces the results (`write_turns`)."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._spec = spec
        self._guard = threading.Lock()
        self._writer = threading.Lock()
        self._waiting: list[_Turn] = []

    def exchange(self, host: WorkerHost, turn: _Turn) -> None:
        """Have `turn` written (by this worker, or by another one meanwhile)."""
        with self._guard:
            self._waiting.append(turn)
        with self._writer:
            if not turn.answered:
                with self._guard:
                    turns, self._waiting = self._waiting, []
                try:
                    write_turns(host, self._spec, turns)
                except BaseException as exc:
                    for other in turns:
                        other.error = exc
                finally:
                    for other in turns:
                        other.answered = True
        if turn.error is not None:
            raise turn.error


LATE_LOG = "INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)"


def late_result(worker_id: str) -> str:
    return f"late result of worker {worker_id} discarded: the epoch was taken back (timed out, or its lease expired)"


def write_turns(host: WorkerHost, spec: WorkerSpec, turns: list[_Turn]) -> None:
    """One transaction: report the jobs run (each that is still its worker's) and claim more.

    Each report is a compare-and-set on the job (state, worker, attempt): when the owner took
    the job back first (lease expired, timeout), the worker's rows for it are dropped and a log
    line says so.
    """
    postgres = getattr(host.conn, "dialect", None) == "postgres"
    reports = [(result.job, turn.worker_id) for turn in turns for result in turn.done]
    # A report waits for the server (which reports won decides what is written): the claims sent with
    # it are in by then. A claim alone waits for nothing before the COMMIT: what follows it is found
    # by the database itself, and its rows are read after the COMMIT (SQLite's at once).
    read_now = bool(reports) or not postgres
    claims: dict[_Turn, Any] = {}
    values: list = []

    def then(conn: Any) -> None:
        now, at = host.journal.now(), host.clock.now()
        sent = jobs.send_report(conn, reports)
        for turn in turns:
            if turn.claim:  # sent with the report: one wait for both
                claims[turn] = jobs.send_claim(conn, turn.worker_id, spec.pool, at, host.lease, turn.claim)
        won = {row[0] for row in sent}
        for turn in turns:
            for result in turn.done:
                job = result.job
                if job.epoch_id in won:
                    host.journal.reattach(result.rows)
                    host.journal.add("INSERT INTO epoch_results (epoch_id, worker, payload, created_at) "
                                     "VALUES (?, ?, ?, ?)", (job.epoch_id, turn.worker_id, result.blob, now))
                    turn.written.append(job.epoch_id)
                    # the owner is told at the commit (PostgreSQL: NOTIFY; elsewhere a no-op)
                    conn.execute(RESULT_READY, (result_notice(job.epoch_id, result.blob),))
                else:
                    host.journal.add(LATE_LOG, (job.epoch_id, job.node_name, now, late_result(turn.worker_id)))
        for turn in list(claims):
            if read_now:
                claims[turn] = list(claims[turn])
                if not claims[turn]:
                    continue
            conn.execute(jobs.MARK_RUNNING, (now, turn.worker_id, iso(at)))
            found = conn.execute(jobs.CLAIMED_VALUES, (turn.worker_id, iso(at)))
            values.append(list(found) if not postgres else found)
        if postgres:
            # A transaction that starts no non-deferred epoch does not wait for the disk. Its report is
            # flushed by the owner's commit that applies it (the WAL is flushed in order): a crash of the
            # server's machine before that loses a report nobody acted on, and the epoch is taken back
            # as if the worker died before reporting; a deferred epoch's claim lost so is queued again,
            # and the report of the run it started is refused. A non-deferred epoch's claim waits: it is
            # durably `running` before its code runs.
            waits = [node for node, config in spec.nodes.items() if not config.defer_net_actions]
            if not read_now:
                conn.execute(jobs.NO_WAIT_UNLESS, ([turn.worker_id for turn in turns], iso(at), waits))
            elif not any(row[1] in waits for rows in claims.values() for row in rows):
                conn.execute(jobs.NO_WAIT)

    host.journal.commit(then=then)
    if not claims:
        return
    stored = {row[0]: Stored(*row[1:]) for rows in values for row in rows}
    for turn, rows in claims.items():
        turn.claimed = [(job, [tuple(p) for p in json.loads(salvo or "[]")], first, False, stored)
                        for job, salvo, first in jobs.claimed(rows)]


def finish_and_claim(host: WorkerHost, spec: WorkerSpec, desk: Desk, worker_id: str, done: list[_Result], *,
                     claim: int = 1, look: bool = True) -> list[tuple]:
    """Report the jobs run and claim up to `claim` more (at the desk: one transaction, perhaps shared
    with other workers'). Returns the jobs claimed, as (claim, salvo, first attempt).

    `look`: with nothing to report, first look (a read) whether a job is due, before the write
    transaction; not after a wake-up signal, which says one was just queued."""
    if not done and claim and look and not jobs.any_due(host.conn, spec.pool, host.clock.now()):
        host.claimed([])
        return []
    turn = _Turn(worker_id, done, claim)
    desk.exchange(host, turn)
    host.claimed([job[0] for job in turn.claimed])
    return turn.claimed


def run_claimed(host: WorkerHost, spec: WorkerSpec, functions: dict[str, Any], job: tuple,
                loop: asyncio.AbstractEventLoop, *, raw: bool = False) -> _Result:
    """Run a claimed job's attempts; its rows are detached from the host's journal into the result.

    `raw`: the result stays in this process (a thread worker's): its payload is not pickled."""
    claim, salvo, first = job[:3]
    if len(job) > 4:  # values the owner had at hand: no read of them
        host.values.prime(job[4])
    host.starting(claim)
    epoch_id, node = claim.epoch_id, claim.node_name
    attempts = AttemptLoop(host, node, epoch_id, salvo, spec.nodes[node], functions[node], deferred=True,
                           finisher=lambda actions: check_deferred_complete(node, epoch_id, actions),
                           first_attempt=first)
    asynchronous = host.asynchronous.get(node)
    if asynchronous is None:
        asynchronous = host.asynchronous[node] = asyncio.iscoroutinefunction(functions[node].exec)
    try:
        outcome = loop.run_until_complete(attempts.run_async()) if asynchronous else attempts.run()
    except BaseException as exc:  # escaped the node's code (AttemptLoop catches every Exception)
        raise NodeInterrupt(f"{error_text(exc)} escaped the node's code", error_type(exc),
                            attempts.interrupt_traceback or format_traceback(exc)) from exc
    actions = outcome.actions
    payload = {
        "kind": outcome.kind,
        "error": outcome.error if raw else _portable_error(outcome.error, outcome.traceback),
        "traceback": outcome.traceback,  # a traceback does not survive a pickle: its text travels
        "salvo": salvo,
        "queue": actions.queue if actions is not None else [],
        "kept": dict(actions.kept) if actions is not None else {},  # consumed values, serialized at the call
    }
    return _Result(claim, payload if raw else pickle.dumps(payload), host.journal.detach())


def read_outcome(payload: bytes | dict) -> tuple[Outcome, list, list, dict]:
    """(outcome, salvo, queue, kept consumed values) from a result row (or a thread worker's result)."""
    data = payload if isinstance(payload, dict) else pickle.loads(payload)
    return (Outcome(data["kind"], None, data["error"], data.get("traceback")), data["salvo"], data["queue"],
            data.get("kept", {}))


class TableJobs:
    """Jobs through the queue table (remote workers): a worker claims due jobs with a lease and
    reports the ones it ran together with its next claim, by compare-and-set (`finish_and_claim`)."""

    def __init__(self, host: WorkerHost, spec: WorkerSpec, worker_id: str, desk: Desk, wake: Any, idle: Any,
                 stop: Any) -> None:
        self._host, self._spec, self._worker_id = host, spec, worker_id
        self._desk, self._wake, self._idle, self._stop = desk, wake, idle, stop
        self._woken = False  # by a signal: a job was queued, the claim need not look first
        # PostgreSQL: a job queued after this worker's last look notifies it (LISTEN), so it waits
        # without looking again; elsewhere it looks once more before it waits (polling only)
        self._listening = getattr(host.conn, "dialect", None) == "postgres"

    def ended(self) -> bool:
        return self._stop.is_set()

    def next(self, done: list[_Result], quick: bool) -> list[tuple]:
        """Report `done` and claim more (waiting a moment for work when there is none)."""
        held = finish_and_claim(self._host, self._spec, self._desk, self._worker_id, done,
                                claim=self._spec.batch if quick else 1, look=not self._woken)
        done.clear()
        self._woken = False
        if not held:
            self._woken = _wait_for_work(self._host, self._spec, self._wake, self._idle, look=not self._listening)
        return held

    def starting(self, job: tuple) -> None:
        pass

    def ran(self, result: _Result, done: list[_Result], seconds: float) -> None:
        done.append(result)  # reported with the next claim

    def ready(self) -> None:
        pass

    def close(self, done: list[_Result]) -> None:
        if done:  # stopped (or retired) after its jobs: report them, claim nothing
            finish_and_claim(self._host, self._spec, self._desk, self._worker_id, done, claim=0)


STOP = "stop"  # on a direct link: run what came before, then end


def _start_of(job: tuple) -> tuple[str, int] | None:
    """(epoch, attempt) of a job handed over in hand (its start is announced), else None."""
    return (job[0].epoch_id, job[0].attempt) if job[3] else None


class DirectJobs:
    """Jobs handed over by the owner itself (thread and process pools): the owner claimed them in its
    own transaction, sends each worker its jobs (`take`: wait up to a timeout for the next message)
    and applies the results it is sent back at once (`send`); a lease renewal is a notice too.

    A job is (claim, salvo, first attempt, in hand, values): "in hand" when it was handed over while
    the worker was busy, its start is announced (until then it counts as queued, not running);
    `values` are the stored input values the owner had at hand ({packet: stored}), not read again.

    Messages to the owner: ("ready", worker) once its start functions ran, ("started", worker, epoch,
    attempt), ("result", worker, claim, result blob, detached journal rows, seconds it ran, started),
    ("beat", worker), and the pool's START_FAILED notice. A result waits for what the worker does
    next: when that is the start of a job in hand, the result carries it (`started`: (epoch,
    attempt), else None), one message instead of two (a pipe write, a relay, a wake-up of the
    owner fewer per epoch); before the worker waits for jobs, the result is sent alone. The results
    and starts of quick epochs go together, in one ("batch", [message, ...]), while the first of
    them is younger than HOLD_SECONDS (a worker killed meanwhile loses as little: its marks tell
    the owner which jobs started); the rest (ready, beat) goes at once."""

    def __init__(self, host: WorkerHost, worker_id: str, take: Callable[[float], Any],
                 send: Callable[[Any], None], alive: Callable[[], bool]) -> None:
        self._host, self._worker_id, self._take, self._send, self._alive = host, worker_id, take, send, alive
        self._ended = False
        self._result: tuple | None = None  # ("result", ...) not sent yet: see `starting`
        self._announced: tuple | None = None  # the job whose start went with the last result
        self._held: list[tuple] = []  # results and starts not sent yet (see `_post`)
        self._held_since = 0.0
        self._quick = False  # whether the last epoch ran shorter than HOLD_SECONDS
        host.renew = self.renew

    def ended(self) -> bool:
        return self._ended

    def next(self, done: list[_Result], quick: bool) -> list[tuple]:
        """The jobs sent so far (waiting a moment for the first; the last result is sent before)."""
        got: list[tuple] = []
        message = self._take(0)
        if message is None:
            self._flush()
            self._deliver()
            message = self._take(IDLE_WAIT)
        while message is not None:
            if message == STOP:
                self._ended = True
                break
            got.extend(message)
            message = self._take(0)
        if self._result is not None:
            self._flush(_start_of(got[0]) if got else None)
            self._announced = got[0] if got else None
        # Every result held is sent before the marks of the jobs it ran go (`claimed`): a worker that dies
        # later must not look as if it never started them (they would run again).
        self._deliver()
        self._host.claimed([job[0] for job in got])
        return got

    def starting(self, job: tuple) -> None:
        """A job handed over while the worker was busy is `running` from now on: the owner is told,
        with the result before it if that waits."""
        if job is self._announced:  # told with the last result already
            self._announced = None
        elif self._result is not None:
            self._flush(_start_of(job))
        elif job[3]:
            self._post(("started", self._worker_id, *_start_of(job)))
        # What is held goes now unless this job is likely quick too (an epoch as long as the last): a
        # slow epoch never holds back the results before it.
        if self._held and (not self._quick or time.perf_counter() - self._held_since >= HOLD_SECONDS):
            self._deliver()

    def ran(self, result: _Result, done: list[_Result], seconds: float) -> None:
        self._result = ("result", self._worker_id, result.job, result.blob, result.rows, seconds)
        self._quick = seconds < HOLD_SECONDS

    def _flush(self, started: tuple[str, int] | None = None) -> None:
        """Send the result that waits (with the start of the next job in hand, if any)."""
        message, self._result = self._result, None
        if message is None:
            if started is not None:
                self._post(("started", self._worker_id, *started))
            return
        if self._alive():
            self._post((*message, started))
            return
        # Retired (a hung thread the owner took the job back from, which woke up again): the result
        # is refused; the log says so, whether or not the net still runs.
        job = message[2]
        with transaction(self._host.conn):
            self._host.conn.execute(LATE_LOG, (job.epoch_id, job.node_name, self._host.journal.now(),
                                               late_result(self._worker_id)))

    def _post(self, message: tuple) -> None:
        """Hold a result or a start for the next `_deliver`."""
        if not self._held:
            self._held_since = time.perf_counter()
        self._held.append(message)

    def _deliver(self) -> None:
        """Send what is held: one message alone, several as one batch."""
        held, self._held = self._held, []
        if len(held) == 1:
            self._send(held[0])
        elif held:
            self._send(("batch", held))

    def last_words(self, message: tuple) -> None:
        """The worker ends (node code raised SystemExit or the like): what is held goes first, the
        results of the epochs it ran before included, then `message`."""
        self._post(message)
        self._deliver()

    def renew(self) -> None:
        self._send(("beat", self._worker_id))

    def ready(self) -> None:
        """Its start functions ran: the worker is up (one that dies before this could not start)."""
        self._send(("ready", self._worker_id))

    def close(self, done: list[_Result]) -> None:
        self._flush()
        self._deliver()


def worker_loop(spec: WorkerSpec, worker_id: str, wake: Any, stop: Any, notify: Callable[[str], None],
                clock: Clock, net: Any | None, functions: dict[str, Any], alive: Callable[[], bool],
                *, heartbeat: bool, idle: Any, desk: Desk | None = None,
                direct: tuple[Callable[[float], Any], Callable[[Any], None]] | None = None, raw: bool = False) -> None:
    """The body of a worker: start functions, take/run/report jobs until stopped, stop functions.

    `direct`: (take, send) of a link to the owner (`DirectJobs`); otherwise jobs go through the
    queue table (`TableJobs`). `heartbeat`: renew the lease from a thread of its own while a job
    runs (process workers: a frozen or dead process stops renewing); otherwise only context calls
    renew it. `raw`: results stay in this process (a thread worker's: not pickled)."""
    host = WorkerHost(spec, worker_id, clock, net)
    link: TableJobs | DirectJobs
    if direct is not None:
        link = DirectJobs(host, worker_id, *direct, alive)
    else:
        link = TableJobs(host, spec, worker_id, desk if desk is not None else Desk(spec), wake, idle, stop)
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
                        notify(start_failed_notice(node, worker_id, exc))
                        return False
                    raise
        return True

    try:
        if not lifecycle("start"):
            return
        link.ready()
        held: list[tuple] = []  # jobs taken and not yet run, in queue order
        done: list[_Result] = []  # jobs run, not yet reported
        quick = False
        # A held job is run even once stopping: it is `running` in the file (no claim is left behind).
        while (held or not link.ended()) and alive():
            if not held:
                held = link.next(done, quick)
                if not held:
                    continue
                held.reverse()  # popped from the end: queue order
            began = time.perf_counter()
            job = held.pop()
            link.starting(job)
            try:
                result = run_claimed(host, spec, functions, job, loop, raw=raw)
            except NodeInterrupt as interrupt:
                interrupt.claim = job[0]
                if isinstance(link, DirectJobs):  # a remote worker's job is taken back when its lease ends
                    link.last_words(last_words(worker_id, job[0], interrupt))
                raise
            took = time.perf_counter() - began
            link.ran(result, done, took)
            quick = took < QUICK
        link.close(done)
        lifecycle("stop")
    finally:
        if beating is not None:
            beating.stop()
        loop.close()
        host.close()


class IdleCount:
    """How many workers of a thread pool wait for work (a process pool shares a
    `multiprocessing.Value` instead): the owner wakes no more workers than wait."""

    def __init__(self) -> None:
        self.value = 0
        self._lock = threading.Lock()

    def get_lock(self) -> threading.Lock:
        return self._lock


def _wait_for_work(host: WorkerHost, spec: WorkerSpec, wake: Any, idle: Any, *, look: bool = True) -> bool:
    """Count itself idle, look once more for a due job (unless not to `look`), and wait for a signal
    if there is none. The owner commits its jobs, then reads the count: a worker counted idle after
    that read finds the jobs in its look; one counted before it is woken. Returns whether a signal
    woke it."""
    with idle.get_lock():
        idle.value += 1
    try:
        if not (look and jobs.any_due(host.conn, spec.pool, host.clock.now())):
            return wake.acquire(timeout=IDLE_WAIT)
        return False
    finally:
        with idle.get_lock():
            idle.value -= 1


class _Heartbeat:
    """A process worker's lease renewals, every third of the lease: on a connection of its own, or
    as a notice to the owner on a direct link (`host.renew`)."""

    def __init__(self, spec: WorkerSpec, worker_id: str, host: WorkerHost) -> None:
        self._spec, self._worker_id, self._host = spec, worker_id, host
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"netrun-heartbeat-{worker_id}")
        self._thread.start()

    def _run(self) -> None:
        every = self._host.lease.total_seconds() / 3
        if self._host.renew is not None:
            while not self._stop.wait(every):
                if self._host.held:
                    self._host.renew()
            return
        conn = None
        try:
            while not self._stop.wait(every):
                held = self._host.held
                if not held:
                    continue
                try:
                    if conn is None:
                        conn = open_connection(self._spec.db_path, durability=self._spec.durability)
                    with transaction(conn):
                        renew_all(conn, held, self._worker_id, self._host.clock.now() + self._host.lease)
                except (apsw.IOError, StorageError):  # the database is away: renew on a new connection next time
                    if conn is not None:
                        conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def process_main(spec: WorkerSpec, worker_id: str, jobs_in: Any, notify: Any) -> None:
    """Entry point of a process worker (spawned: it shares nothing with its parent but these): jobs
    come from the owner on `jobs_in`, results and notices go back on `notify` (its own pipes)."""
    import multiprocessing

    functions = cloudpickle.loads(spec.functions)
    for funcs in functions.values():  # print() in node code is captured here too (netrun.capture)
        for func in (funcs.exec, funcs.start, funcs.stop, funcs.failed):
            if func is not None:
                install(func)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=_exit_with, args=(parent,), daemon=True, name="netrun-owner-watch").start()
    sending = threading.Lock()  # the heartbeat thread sends too

    def send(item: Any) -> None:
        try:
            data = pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL)
            with sending:
                notify.send_bytes(data)
        except OSError:  # the owner is gone (killed): the loop ends next
            pass

    def take(timeout: float) -> Any:
        try:
            return pickle.loads(jobs_in.recv_bytes()) if jobs_in.poll(timeout) else None
        except (EOFError, OSError):  # the owner is gone
            return STOP

    try:
        # Always alive while it runs: the owner's death ends this process (`_exit_with`), and closes its
        # pipe (`take` says STOP); asking the parent per job would cost a poll of its sentinel each.
        worker_loop(spec, worker_id, None, None, send, SystemClock(), None, functions,
                    lambda: True, heartbeat=True, idle=None, direct=(take, send))
    except NodeInterrupt:  # the process ends; the owner has its last words (and replaces it)
        pass
    finally:
        notify.close()


def _exit_with(parent: Any) -> None:
    """A process worker dies with its owner: once the owner process is gone (killed, crashed), the
    worker exits at once, whatever it runs. Its claimed job stays claimed in the table; the next
    owner takes it back before it runs anything (a result reported later would be refused)."""
    parent.join()
    os._exit(0)


def thread_main(spec: WorkerSpec, worker_id: str, inbox: queue.SimpleQueue, retire: threading.Event,
                notify: Callable[[Any], None], clock: Clock, net: Any) -> None:
    """Entry point of a thread worker: jobs come from the owner on `inbox`, results go to `notify`."""
    _here.active = True
    _here.net = net

    def take(timeout: float) -> Any:
        try:
            return inbox.get(timeout=timeout) if timeout > 0 else inbox.get_nowait()
        except queue.Empty:
            return None

    try:
        worker_loop(spec, worker_id, None, None, notify, clock, net, spec.functions, lambda: not retire.is_set(),
                    heartbeat=False, idle=None, direct=(take, notify), raw=True)
    except NodeInterrupt:  # the thread ends; the owner has its last words (and replaces it)
        pass
    finally:
        notify(("gone", worker_id))
