"""Thread, process and remote pools, seen from the owner: dispatch, results, leases, worker health.

Thread and process pools are the owner's own workers, and the owner hands them their jobs
directly (`worker.DirectJobs`): it claims a job for an idle worker in its own transaction
(the job row `claimed` by that worker, with a lease; the epoch `running`), commits, and only
then sends it the job (so a non-deferred epoch is durably `running` before its code runs). A
worker sends each result back at once (those of quick epochs together, within HOLD_SECONDS of
netrun.worker: one message, relay and wake-up for several); the owner checks that the job is still that worker's
at that attempt (compare-and-set, in memory: the owner alone writes these rows) and applies
it in its next group commit, with the worker's attempt and log rows. A worker renews its lease
by a notice; the owner writes the renewal. Process workers are spawned (never forked: an open
SQLite connection must not cross a fork), with a pipe each way, and read values by path.

Remote pools (`netrun worker` processes elsewhere) go through the queue table instead: the
owner commits a `queued` job and announces it; a worker claims it with a lease, renews it, and
reports by compare-and-set (netrun.jobs); the owner applies the results it finds in
`epoch_results` (the table, not the notices, is the truth).

`maintain()`, called by the owner loop, sweeps what went wrong, each case taken back by a
compare-and-set so that a report racing it wins or loses exactly once:
- a dead worker, or a job whose lease expired (a frozen process, a hung thread): the crash
  semantics of DESIGN.md apply to each job it started (deferred: runs again, the attempt
  counted, and it fails once it died more than `retries + 1` times; otherwise cancelled, its
  packets dead-lettered as 'interrupted'), a job it held and never started is queued again; a
  process worker is killed and replaced, a hung thread is retired and replaced (its late
  report is refused);
- a job past its node's `timeout`: EpochTimeout into the failure flow.
"""

from __future__ import annotations

import itertools
import pickle
import queue
import secrets
import shutil
import tempfile
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import cloudpickle

from . import jobs
from .context import NodeFailureContext, Packet
from .epoch import EpochEnds, call_failure_func, run_sync
from .errors import EpochTimeout, NodeExecutionFailed, WorkerLost
from .jobs import CLAIM_QUEUED, FINISH_HELD, START_HELD, FINISH_JOB, INSERT_CLAIMED, INSERT_JOB, Claim, NewJob, job_params
from .worker import (BATCH, LATE_LOG, START_FAILED, STOP, WorkerSpec, _portable_error, late_result, process_main,
                     read_marks, read_outcome, read_start_failed, thread_main)
from .wakeups import WAKE_REMOTE as _WAKE_REMOTE, listen_for_results, read_result_notice
from .clock import Clock, iso
from .config import NetConfig, NodeConfig
from .host import NodeFunctions
from .journal import Journal
from .sim import Sim
from .values import ValueStore

INTERRUPTED = "interrupted: the worker running the epoch died"
SELECTIONS = ("least_busy", "round_robin")
AHEAD = 4  # queued jobs per worker kept ahead of a pool (bounded work in flight)
PIPED_VALUE = 2048  # bytes: a stored value up to this size travels with a process job...
PIPE_BUDGET = 24 * 1024  # ...while the jobs a worker may hold carry this many bytes of values at most: the
# owner's write of a worker's jobs must never fill the pipe (64 KiB on Linux: it would wait for the worker)
SETTLE_SECONDS = 5.0  # how long a pool stopped by a failed start waits for its workers' last notices
SILENT_DEATHS = 3  # process workers dead in a row before they said anything: the pool is stopped
IN_HAND_SECONDS = 0.05  # a busy worker holds at most about this much work in hand (by its nodes' last epochs)
THREAD_BATCH = 2  # jobs a thread worker may hold at once (one running, one in hand), where no node has a timeout
REMOTE_SIZE = 8  # a remote pool's default size: epochs its workers may run at once, all together
_SPAWN = multiprocessing.get_context("spawn")


@dataclass(kw_only=True, eq=False)
class PoolHost:
    """What the pools use of the owner: its collaborators, and the run state they share with it (the
    attempts counted before a resume). Built by the owner; nothing else of the runtime is reached."""

    config: NetConfig
    configs: dict[str, NodeConfig]
    functions: dict[str, NodeFunctions]
    clock: Clock
    journal: Journal
    values: ValueStore
    sim: Sim
    owner: Any  # owner.Owner: notify, serve, wait
    net: Any  # the Net: thread workers hand it to node code; its db_url, for workers' connections
    attempt_base: Mapping[str, int]  # epoch -> attempts recorded before a resume (read only)
    forget_attempts: Callable[[str], None]  # the epoch's result was applied: its count goes
    commit: Callable[[], None]  # the owner's commit (then its workers are handed their jobs)


class Pool:
    """A named set of workers of one kind."""

    def __init__(self, host: PoolHost, name: str, size: int, kind: str, notify: Any,
                 channels: _Channels | None = None) -> None:
        self.host = host
        self.name = name
        self.size = size
        self.kind = kind  # "thread", "process", or "remote" (`netrun worker` processes: none started here)
        self.direct = kind != "remote"  # the owner hands this pool's workers their jobs (worker.DirectJobs)
        self.notify = notify
        self.channels = channels
        self.outstanding = 0  # jobs dispatched and not yet applied
        self.broken: BaseException | None = None  # set when a worker's start function raised
        self.workers: dict[str, Any] = {}
        self.retired: dict[str, threading.Event] = {}  # thread worker -> its "stop after this job" flag
        self._ids = itertools.count(1)
        self._token = secrets.token_hex(4)  # process worker IDs are unique across owners
        self.marks_dir: str | None = None  # see WorkerSpec.batch (process pools whose epochs may batch)
        self.thread_marks: dict[str, set[tuple[str, int]]] | None = None  # the same, for a thread pool
        # Direct pools: jobs not handed to a worker yet (queue order), the jobs each worker holds, what
        # the next commit hands over, and the workers whose last notice has arrived (gone for good).
        self.pending: deque[NewJob] = deque()
        self.written: set[str] = set()  # pending jobs whose `queued` row is written
        self.unwritten: dict[str, NewJob] = {}  # pending jobs whose `queued` row the next commit writes
        self.load: Counter[str] = Counter()
        self.outbox: dict[str, list[tuple]] = {}
        self.senders: dict[str, Any] = {}
        self.gone: set[str] = set()
        self.per_worker = 1  # jobs a worker may hold at once (WorkerSpec.batch)
        self.heard: set[str] = set()  # process workers that sent anything (they started)
        self.silent_deaths = 0  # process workers in a row that died before they sent anything
        self.stop_event: Any = threading.Event()
        # Remote pools: who waits is not known here: every job is announced, and buffered jobs are
        # committed at once.
        self.idle = SimpleNamespace(value=size)

    def _spec(self) -> WorkerSpec:
        host = self.host
        nodes = [n for n, c in host.configs.items() if self.name in _pool_names(c.pool)]
        per_worker = {n for n in nodes if host.configs[n].pool_init_mode == "per_worker" or self.kind == "process"}
        functions = {n: host.functions[n] for n in nodes}
        keep = host.config.consumed_packet_storage or bool(host.config.consumed_packet_storage_path)
        # Holding several jobs at once: only where no node has a timeout (a job's time runs from its
        # claim). A process worker marks the jobs it starts in a file, a thread worker in memory.
        untimed = all(host.configs[n].timeout is None for n in nodes)
        batch = (BATCH if self.kind == "process" else THREAD_BATCH) if untimed else 1
        if batch > 1 and self.kind == "process" and self.marks_dir is None:
            self.marks_dir = tempfile.mkdtemp(prefix="netrun-marks-")
        if batch > 1 and self.kind == "thread" and self.thread_marks is None:
            self.thread_marks = {}
        return WorkerSpec(db_path=host.net.db_url, pool=self.name, nodes={n: host.configs[n] for n in nodes},
                          functions=cloudpickle.dumps(functions) if self.kind == "process" else functions,
                          keep_received=keep, init_per_worker=per_worker, durability=host.config.durability,
                          lease_seconds=host.config.lease_seconds, batch=batch,
                          marks_dir=self.marks_dir if batch > 1 else None,
                          thread_marks=self.thread_marks if batch > 1 else None)

    def start(self) -> None:
        if self.kind == "remote":
            return
        spec = self._spec()
        self.per_worker = spec.batch
        for _ in range(self.size):
            self._start_worker(spec)

    def _start_worker(self, spec: WorkerSpec) -> None:
        worker_id = f"{self.kind}:{self.name}:{next(self._ids)}"
        if self.kind == "process":  # a job re-queued after a resume is never mistaken for one an orphan held
            worker_id += f"@{self._token}"
        if self.kind == "thread":
            retire = threading.Event()
            self.retired[worker_id] = retire
            inbox: queue.SimpleQueue = queue.SimpleQueue()
            worker = threading.Thread(target=thread_main, name=f"netrun-{worker_id}", daemon=True,
                                      args=(spec, worker_id, inbox, retire, self.notify, self.host.clock, self.host.net))
            self.senders[worker_id] = inbox.put
        else:
            # Pipes of its own per process worker: one killed while writing breaks only its own pipe
            # (a shared multiprocessing.Queue's write lock would stay held, and every writer hang).
            jobs_in, jobs_out = _SPAWN.Pipe(duplex=False)
            reader, writer = _SPAWN.Pipe(duplex=False)
            worker = _SPAWN.Process(target=process_main, name=f"netrun-{worker_id}", daemon=True,
                                    args=(spec, worker_id, jobs_in, writer))
            self.senders[worker_id] = _sender(jobs_out)
        worker.start()
        if self.kind == "process":
            jobs_in.close()
            writer.close()
            self.channels.add(reader, worker_id)
        self.workers[worker_id] = worker

    def signal(self, jobs_: int) -> None:
        """Remote pools: announce new jobs (`netrun worker` processes listen on PostgreSQL, or look
        every IDLE_WAIT)."""
        if self.kind == "remote":
            self.host.journal.conn.execute(_WAKE_REMOTE, (self.name,))

    # -- direct hand-over ---------------------------------------------------------------------------
    def free_worker(self) -> str | None:
        """The worker holding the fewest jobs, if it may hold one more. A worker that ended is known by
        its last notice (`gone`), not by asking (a process's `is_alive()` is a waitpid per job): a job
        handed to one that died meanwhile is given back by the sweep, as one it held when it died."""
        best, load = None, self.per_worker
        for worker_id in self.workers:
            held = self.load[worker_id]
            if held < load and worker_id not in self.gone:
                best, load = worker_id, held
                if not held:
                    break
        return best

    def send_outbox(self) -> None:
        """After a commit: hand each worker the jobs claimed for it."""
        outbox, self.outbox = self.outbox, {}
        for worker_id, jobs_ in outbox.items():
            send = self.senders.get(worker_id)
            if send is None:
                continue
            try:
                send(jobs_)
            except OSError:  # a process worker died meanwhile: the sweep takes its jobs back
                pass

    def dead_workers(self) -> list[str]:
        """Workers that ended and whose last notice has arrived (every result they sent is applied)."""
        return [wid for wid, w in self.workers.items() if not w.is_alive() and (wid in self.gone or not self.direct)]

    def replace(self, worker_id: str) -> None:
        """A worker is gone (dead, killed, or a hung thread retired): start another in its place."""
        if self.kind == "remote":
            return  # its own process decides (one that stopped renewing is refused its late report)
        self._count_silent_death(worker_id)
        self.workers.pop(worker_id, None)
        self.senders.pop(worker_id, None)
        self.outbox.pop(worker_id, None)
        self.load.pop(worker_id, None)
        retire = self.retired.pop(worker_id, None)
        if retire is not None:
            retire.set()  # a hung thread that wakes up again reports nothing and exits
        if not self.stop_event.is_set() and self.broken is None:
            self._start_worker(self._spec())

    def _count_silent_death(self, worker_id: str) -> None:
        """A process worker that dies before it says anything could not start (an unguarded script's
        workers import it and fail): after SILENT_DEATHS in a row the pool stops, with an error that
        says so, instead of starting workers forever."""
        worker = self.workers.get(worker_id)
        if self.kind != "process" or worker is None or worker.is_alive():
            return
        if worker_id in self.heard:
            self.silent_deaths = 0
            return
        self.silent_deaths += 1
        if self.silent_deaths >= SILENT_DEATHS and self.broken is None:
            self.broken = WorkerLost(
                f"the process workers of pool {self.name!r} died before running anything, {self.silent_deaths} "
                f"times in a row (the last with exit code {worker.exitcode}); the pool is stopped. Process workers "
                f"are spawned and import the main module: a script that uses process pools must start its net "
                f"under `if __name__ == \"__main__\":`, and its node functions must import cleanly")

    def kill(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and self.kind == "process":
            worker.kill()
            worker.join(5)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers after the jobs they hold and join them, answering their calls to the net
        meanwhile (a thread worker's stop function may query it); a process worker still alive
        after `timeout` seconds is killed."""
        self.stop_event.set()
        for send in self.senders.values():
            try:
                send(STOP)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            while worker.is_alive() and time.monotonic() < deadline:
                worker.join(0.02)
                self.host.owner.serve()
            if worker.is_alive() and self.kind == "process":
                worker.kill()
                worker.join(5)
        self.workers.clear()
        self.senders.clear()
        self.outbox.clear()
        self.load.clear()

    def close(self) -> None:
        self.stop()
        if self.marks_dir is not None:
            shutil.rmtree(self.marks_dir, ignore_errors=True)
            self.marks_dir = None


def _sender(pipe: Any) -> Callable[[Any], None]:
    """How a process worker is sent its jobs: pickled here, read back by `worker.process_main` (both
    ways, plain pickles of plain data: `Connection.send` makes a pickler with a copied dispatch table
    per message, twice the time)."""
    def send(message: Any) -> None:
        pipe.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    return send


def _pool_names(pool: str | list[str] | None) -> list[str]:
    if pool is None:
        return []
    return [pool] if isinstance(pool, str) else list(pool)


class PoolManager:
    """All pools of a net, from the owner's side."""

    def __init__(self, host: PoolHost, ends: EpochEnds) -> None:
        self.host = host
        self.ends = ends
        self.pools: dict[str, Pool] = {}
        self.started = False
        self._round_robin = itertools.count()
        self.dispatched: dict[str, str] = {}  # epoch ID -> pool, until its result is applied
        self.dispatched_node: dict[str, str] = {}  # epoch ID -> node
        self.per_node: Counter[str] = Counter()  # node -> epochs dispatched to pools
        self.to_signal: Counter[str] = Counter()  # pool -> jobs written since the last signal
        self.announced: set[str] = set()  # remote pools whose announcement is in the buffer already
        self.deaths: Counter[str] = Counter()  # epoch ID -> workers that died (or froze) running it
        self.held: dict[str, tuple[str, int]] = {}  # direct pools: epoch ID -> (worker, job attempt) holding it
        # Jobs in hand that started, their start not written yet: epoch ID -> (when, worker, job attempt).
        # Written by the next commit (`before_commit`), or with the job's end if its result comes first.
        self.starts: dict[str, tuple[str, str, int]] = {}
        self.first_attempt: dict[str, int] = {}  # epoch ID -> its next attempt's number, after a take-back
        self.took: dict[str, float] = {}  # node -> seconds its last pool epoch ran (see IN_HAND_SECONDS)
        # A direct worker that a BaseException from node code ends says so first (worker.last_words):
        # (epoch ID, worker) -> (error text, its type name, the node's traceback), kept with its death.
        self.last_words: dict[tuple[str, str], tuple[str, str, str]] = {}
        self._channels: _Channels | None = None
        self._results: Any = None  # remote pools: the listener for their workers' reports
        self._next_sweep = 0.0
        self._reported = self._failed = False  # see apply_arrived

    @property
    def configured(self) -> bool:
        config = self.host.config
        return bool(config.thread_pools or config.process_pools or config.remote_pools)

    @property
    def sweep_every(self) -> float:
        timed = any(c.timeout is not None and c.pool is not None for c in self.host.configs.values())
        return min(0.02 if timed else 0.25, self.host.config.lease_seconds / 4)

    def ensure_started(self) -> None:
        if self.started or not self.configured:
            return
        self.started = True
        config = self.host.config
        notify = self.host.owner.notify
        if config.process_pools:
            self._channels = _Channels(notify)
        for name, spec in config.thread_pools.items():
            self.pools[name] = Pool(self.host, name, spec.get("size", 1), "thread", notify)
        for name, spec in config.process_pools.items():
            self.pools[name] = Pool(self.host, name, spec.get("size", 1), "process", None, self._channels)
        for name, spec in config.remote_pools.items():
            self.pools[name] = Pool(self.host, name, spec.get("size", REMOTE_SIZE), "remote", None)
        if config.remote_pools:
            self._results = listen_for_results(self.host.journal.conn, notify)
        for pool in self.pools.values():
            pool.start()

    def refresh(self, node: str) -> None:
        """A pool node's functions or options changed after the pools started: restart its pools'
        workers once nothing of the old ones is in flight, so they run the new ones."""
        if not self.started:
            return
        for name in _pool_names(self.host.configs[node].pool):
            pool = self.pools.get(name)
            if pool is None:
                continue
            self.drain()
            pool.stop()
            pool.stop_event.clear()
            pool.start()

    # -- dispatching ------------------------------------------------------------------------
    def select(self, node: str) -> str:
        """The pool to run an epoch of `node` in (the net's `pool_selection` algorithm)."""
        names = _pool_names(self.host.configs[node].pool)
        if len(names) == 1:
            return names[0]
        if self.host.config.pool_selection == "round_robin":
            return names[next(self._round_robin) % len(names)]
        return max(names, key=lambda n: (self.pools[n].size - self.pools[n].outstanding, -names.index(n)))

    def room(self, pool: str, node: str) -> int:
        """How many more jobs of `node` the pool may have in flight (bounded: a few queued per worker, or
        as many as its workers may hold in hand where the node's epochs are quick)."""
        p = self.pools[pool]
        ahead = AHEAD
        if p.per_worker > 1 + AHEAD and self._may_hold(p.per_worker - 1, node):
            ahead = p.per_worker
        return p.size * (1 + ahead) - p.outstanding

    @property
    def most_in_flight(self) -> int:
        """The most pool jobs that may be in flight at once, every pool's `room` used up."""
        config = self.host.config
        return (sum(spec.get("size", 1) * (1 + AHEAD) for spec in config.thread_pools.values())
                + sum(spec.get("size", 1) * (1 + max(AHEAD, BATCH)) for spec in config.process_pools.values())
                + sum(spec.get("size", REMOTE_SIZE) * (1 + AHEAD) for spec in config.remote_pools.values()))

    def _may_hold(self, load: int, node: str) -> bool:
        """Whether a worker holding `load` jobs may be handed one of `node` (in hand: it waits for those)."""
        return not load or load * self.took.get(node, IN_HAND_SECONDS) < IN_HAND_SECONDS

    def wants_work(self) -> bool:
        return any(p.outstanding < p.size for p in self.pools.values())

    def dispatch(self, epoch_id: str, node: str, pool: str, job: NewJob) -> None:
        """Queue a pool job: a direct pool's waits for `assign()`; a remote pool's row is buffered (the
        owner's next commit writes it, then `signal()` announces it)."""
        target = self.pools[pool]
        if target.direct:
            target.pending.append(job)
            target.unwritten[epoch_id] = job
        else:
            self.host.journal.add(INSERT_JOB, job_params(job))
            if pool not in self.announced:  # the announcement rides in the commit that writes the job
                self.announced.add(pool)
                self.host.journal.add(_WAKE_REMOTE, (pool,))
            self.to_signal[pool] += 1
        self.dispatched[epoch_id] = pool
        self.dispatched_node[epoch_id] = node
        self.per_node[node] += 1
        target.outstanding += 1

    def assign(self) -> None:
        """Direct pools: claim due pending jobs for workers with room (buffered: the next commit writes
        the claims, then `signal()` hands the jobs over). A job still pending at the commit gets its
        `queued` row then (`before_commit`): one claimed before it is written once, claimed."""
        for pool in self.pools.values():
            if pool.direct and pool.pending:
                self._assign(pool)

    def _assign(self, pool: Pool) -> None:
        worker_id = pool.free_worker()
        if worker_id is None:
            return
        load = pool.load[worker_id]
        if load and not any(self._may_hold(load, job.node_name) for job in pool.pending):
            return  # every worker is busy, and no pending job may wait in a busy worker's hand (below)
        host = self.host
        journal = host.journal
        stamp = journal.now()
        lease_until = iso(host.clock.now() + timedelta(seconds=host.config.lease_seconds))
        left: list[NewJob] = []
        cached = host.values.cached
        # the largest value that goes with a job (a thread worker shares the owner's memory: any)
        piped = None if pool.kind == "thread" else min(PIPED_VALUE, PIPE_BUDGET // pool.per_worker)
        while pool.pending and worker_id is not None:
            job = pool.pending.popleft()
            if job.not_before is not None and job.not_before > stamp:
                left.append(job)
                continue
            epoch_id = job.epoch_id
            # Handed to a busy worker, the job is in its hand, not running: no claimed_at until it starts.
            in_hand = pool.load[worker_id] > 0
            if not self._may_hold(pool.load[worker_id], job.node_name):
                left.append(job)  # a node whose epochs take long (or unknown) waits for an idle worker
                continue
            # A worker still starting (nothing heard from it yet: its start functions may take long)
            # holds the job in hand too: its time (timeout, running) counts from when it starts.
            in_hand = in_hand or worker_id not in pool.heard
            claimed_at = None if in_hand else stamp
            if epoch_id in pool.written:
                pool.written.discard(epoch_id)
                journal.add(CLAIM_QUEUED, (worker_id, claimed_at, lease_until, epoch_id, job.attempt))
            else:
                pool.unwritten.pop(epoch_id, None)
                journal.add(INSERT_CLAIMED, (epoch_id, job.seq, job.node_name, job.priority, pool.name, worker_id,
                                              job.enqueued_at, claimed_at, lease_until, job.attempt))
            journal.set_epoch_running(epoch_id, stamp)
            first = self.first_attempt.get(epoch_id)
            if first is None:
                first = host.attempt_base.get(epoch_id, 0)
            salvo = host.sim.epoch_salvo(epoch_id)[1]
            at_hand = {}
            for _port, packet in salvo:
                stored = cached(packet)
                if stored is not None and (piped is None or len(stored.data) <= piped):
                    at_hand[packet] = stored
            pool.outbox.setdefault(worker_id, []).append((Claim(epoch_id, job.node_name, job.attempt), salvo, first,
                                                          in_hand, at_hand))
            pool.load[worker_id] += 1
            self.held[epoch_id] = (worker_id, job.attempt)
            worker_id = pool.free_worker()
        pool.pending.extendleft(reversed(left))  # in their order, before those not looked at

    def before_commit(self) -> None:
        """What the owner's next commit writes of the pools besides the claims (buffered): the `queued`
        rows of the jobs still pending, and the starts of jobs in hand whose result has not come."""
        journal = self.host.journal
        for pool in self.pools.values():
            if pool.unwritten:
                for epoch_id, job in pool.unwritten.items():
                    pool.written.add(epoch_id)
                    journal.add(INSERT_JOB, job_params(job))
                pool.unwritten.clear()
        if self.starts:
            for epoch_id, (stamp, worker_id, attempt) in self.starts.items():
                journal.add(START_HELD, (stamp, epoch_id, worker_id, attempt))
            self.starts.clear()

    def signal(self) -> None:
        """After a commit: hand direct pools' workers the jobs claimed for them; announce remote jobs."""
        for pool in self.pools.values():
            if pool.outbox:
                pool.send_outbox()
        if self.to_signal:
            for pool, count in self.to_signal.items():
                if pool not in self.announced:  # (jobs queued again by a take-back)
                    self.pools[pool].signal(count)
            self.to_signal.clear()
        self.announced.clear()

    def starving(self) -> bool:
        """Whether jobs wait for the owner's commit while a worker could run them: a direct pool's
        worker has nothing in hand but jobs not sent yet, or a remote pool's worker waits."""
        for pool in self.pools.values():
            for worker_id, unsent in pool.outbox.items():
                if pool.load[worker_id] <= len(unsent):
                    return True
        return any(count and self.pools[pool].idle.value for pool, count in self.to_signal.items())

    def next_due(self) -> float | None:
        """Seconds until the first pending job held back by its not-before time (rate limits) is due."""
        due = [job.not_before for pool in self.pools.values() if pool.direct for job in pool.pending
               if job.not_before is not None]
        if not due:
            return None
        return max(0.0, (datetime.fromisoformat(min(due)) - self.host.clock.now()).total_seconds())

    def dispatched_epochs(self, node: str | None) -> list[str]:
        return [e for e, n in self.dispatched_node.items() if node is None or n == node]

    def applied(self, epoch_id: str) -> None:
        self._release(epoch_id)
        self.first_attempt.pop(epoch_id, None)
        self.host.forget_attempts(epoch_id)
        pool = self.dispatched.pop(epoch_id, None)
        node = self.dispatched_node.pop(epoch_id, None)
        if pool is not None:
            self.pools[pool].outstanding -= 1
            self.per_node[node] -= 1

    def _release(self, epoch_id: str) -> None:
        """A direct pool's job is no longer its worker's (applied, or taken back)."""
        holder = self.held.pop(epoch_id, None)
        self.starts.pop(epoch_id, None)
        if holder is not None:
            load = self.pools[self.dispatched[epoch_id]].load
            if load.get(holder[0]):
                load[holder[0]] -= 1

    def withdraw_queued(self) -> list[tuple[str, str]]:
        """On pause: pool jobs no worker has yet are withdrawn (a remote claim is a compare-and-set on
        `queued`, so each job is either claimed or withdrawn). Returns (epoch, node) of each."""
        if not self.dispatched:
            return []
        out = []
        for pool in self.pools.values():
            if not pool.direct:
                continue
            for job in pool.pending:
                if job.epoch_id in pool.written:
                    self.host.journal.add("DELETE FROM epoch_jobs WHERE epoch_id = ? AND state = 'queued'", (job.epoch_id,))
                self.applied(job.epoch_id)
                out.append((job.epoch_id, job.node_name))
            pool.pending.clear()
            pool.written.clear()
            pool.unwritten.clear()
        if not any(not pool.direct for pool in self.pools.values()):
            return out
        rows = self.host.journal.commit(then=lambda conn: conn.execute(
            "DELETE FROM epoch_jobs WHERE state = 'queued' AND pool IS NOT NULL RETURNING epoch_id, node_name"
        ).fetchall())
        for epoch_id, node in rows or []:
            if epoch_id in self.dispatched:
                self.applied(epoch_id)
                out.append((epoch_id, node))
        return out

    # -- results ----------------------------------------------------------------------------------
    def apply_arrived(self, notices: list) -> int:
        """Apply the results `notices` carry or announce (the owner's arrivals). Returns how many."""
        if not notices:
            return 0
        self._reported = self._failed = False
        count = 0
        queue_ = deque(notices)
        while queue_:
            count += self._handle(queue_.popleft(), queue_)
        if count or self._failed:
            self.assign()
            self._raise_if_broken()
        if self._reported and self.dispatched:
            count += self.apply_results()
        return count

    def _handle(self, notice: Any, rest: deque) -> int:
        """One arrival (`rest`: those after it, which a failed start handles itself). Returns 1 for a
        result applied."""
        if isinstance(notice, tuple):
            kind = notice[0]
            if kind == "batch":  # a worker's results and starts sent together (worker.HOLD_SECONDS)
                return sum(self._handle(message, rest) for message in notice[1])
            if kind in ("ready", "result", "started", "beat", "interrupted"):
                self._heard(notice[1])
            if kind == "interrupted":
                _kind, worker_id, epoch_id, _attempt, text, type_name, traceback = notice
                self.last_words[(epoch_id, worker_id)] = (text, type_name, traceback)
            elif kind == "result":
                return self._apply_direct(*notice[1:])
            if kind == "started":
                self._started(*notice[1:])
            elif kind == "beat":
                self._renew(notice[1])
            elif kind == "gone":
                for pool in self.pools.values():
                    if notice[1] in pool.workers:
                        pool.gone.add(notice[1])
        elif isinstance(notice, str):
            if notice.startswith(START_FAILED):
                self._failed = True
                return self._start_failed(notice, rest)
            epoch_id, payload = read_result_notice(notice)
            if payload is None:
                self._reported = True  # read from its row
            elif epoch_id in self.dispatched and epoch_id not in self.held:
                self.applied(epoch_id)
                apply_result(self.ends, epoch_id, payload)
                return 1
        return 0

    def _apply_direct(self, worker_id: str, claim: Claim, payload: bytes, rows: tuple, seconds: float,
                      started: tuple[str, int] | None) -> int:
        """A direct pool worker's result: applied if the job is still that worker's at that attempt
        (compare-and-set); otherwise (taken back meanwhile: lease, timeout) logged and dropped. Then
        the start of the job in hand it carries, if any (see worker.DirectJobs)."""
        host = self.host
        epoch_id = claim.epoch_id
        self.took[claim.node_name] = seconds
        applied = 0
        if self.held.get(epoch_id) != (worker_id, claim.attempt):
            host.journal.add(LATE_LOG, (epoch_id, claim.node_name, host.journal.now(), late_result(worker_id)))
        else:
            start = self.starts.pop(epoch_id, None)  # its start in hand, not written yet
            host.journal.absorb(rows)
            self.applied(epoch_id)
            apply_result(self.ends, epoch_id, payload, held=(worker_id, claim.attempt),
                         started_at=start[0] if start is not None else None)
            applied = 1
        if started is not None:
            self._started(worker_id, *started)
        return applied

    def _heard(self, worker_id: str) -> None:
        for pool in self.pools.values():
            if worker_id in pool.workers:
                pool.heard.add(worker_id)
                pool.silent_deaths = 0

    def _started(self, worker_id: str, epoch_id: str, attempt: int) -> None:
        """A job a worker had in hand has started: `running` from now on (its claimed_at)."""
        if self.held.get(epoch_id) == (worker_id, attempt):
            self.starts[epoch_id] = (self.host.journal.now(), worker_id, attempt)

    def _renew(self, worker_id: str) -> None:
        """A direct pool worker is alive and at work: its jobs' leases run on (written with the next commit)."""
        until = iso(self.host.clock.now() + timedelta(seconds=self.host.config.lease_seconds))
        self.host.journal.add("UPDATE epoch_jobs SET lease_until = ? WHERE state = 'claimed' AND worker = ?",
                            (until, worker_id))

    def apply_results(self) -> int:
        """Apply every remote result written so far (buffered; the owner's next commit writes it all)."""
        host = self.host
        rows = host.journal.conn.execute("SELECT epoch_id, payload FROM epoch_results").fetchall()
        count = 0
        for epoch_id, payload in rows:
            if epoch_id in self.dispatched and epoch_id not in self.held:
                self.applied(epoch_id)
                apply_result(self.ends, epoch_id, payload)
                count += 1
        self._raise_if_broken()
        return count

    def drain(self) -> int:
        """From the owner: apply results until no pool epoch is in flight (serving calls meanwhile)."""
        applied = 0
        while self.dispatched:
            self.assign()
            self.host.commit()
            applied += self.apply_arrived(self.host.owner.wait(self.sweep_every) or ["check"])
            self.host.owner.serve()
            self.maintain()
            self.host.commit()
        return applied

    # -- health: dead workers, leases, timeouts -------------------------------------------------------
    def next_check(self) -> float:
        return max(0.0, self._next_sweep - self.host.clock.monotonic())

    def maintain(self) -> None:
        """Every `sweep_every` seconds while pool epochs are in flight: results no notice announced,
        dead workers, expired leases, timeouts."""
        if not self.dispatched:
            return
        now = self.host.clock.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_every
        if any(not pool.direct for pool in self.pools.values()):
            self.apply_results()  # a remote worker that died between its report and its notice sent none
        if self.dispatched:
            self._sweep()

    def _sweep(self) -> None:
        host = self.host
        host.commit()
        conn = host.journal.conn
        now = host.clock.now()
        dead = {wid: pool for pool in self.pools.values() for wid in pool.dead_workers()}
        timed = {n for n, c in host.configs.items() if c.timeout is not None and c.pool is not None}
        lost: dict[str, list[tuple[Claim, str | None, str]]] = {}  # worker -> the jobs it held, and why lost
        for claim, worker_id, claimed_at in jobs.claimed_in_pool(conn):
            if claim.epoch_id not in self.dispatched:
                continue
            if worker_id in dead:
                lost.setdefault(worker_id, []).append((claim, claimed_at, "died"))
            elif claim.node_name in timed and claimed_at is not None and \
                    (now - datetime.fromisoformat(claimed_at)).total_seconds() > host.configs[claim.node_name].timeout:
                self._take_back(self.pools[self.dispatched[claim.epoch_id]], claim, worker_id, claimed_at, "timeout")
        for claim, worker_id, claimed_at in jobs.expired(conn, iso(host.clock.now())):
            if claim.epoch_id in self.dispatched and worker_id not in dead:
                lost.setdefault(worker_id, []).append((claim, claimed_at, "lease"))
        for worker_id, held in lost.items():
            self._lose_worker(self.pools[self.dispatched[held[0][0].epoch_id]], worker_id, held)
        for worker_id, pool in dead.items():
            if worker_id in pool.workers:
                pool.replace(worker_id)
        for key in [key for key in self.last_words if key[1] in dead]:  # its job ended otherwise meanwhile
            del self.last_words[key]
        host.commit()
        self._raise_if_broken()

    def _lose_worker(self, pool: Pool, worker_id: str, held: list[tuple[Claim, str | None, str]]) -> None:
        """Take back the jobs of a worker that died or stopped renewing its lease. A frozen process is
        killed first: it starts nothing more, and its marks then tell which of its jobs never started
        (those simply run again: nothing of them ran)."""
        frozen = held[0][2] == "lease"
        if frozen and pool.kind == "process":
            pool.kill(worker_id)
        if pool.thread_marks is not None:
            marked = pool.thread_marks.get(worker_id)
            started = set(marked) if marked is not None else None
        elif pool.kind == "process" and worker_id not in pool.heard:
            started = set()  # it never said it was up: it started nothing
        else:
            started = read_marks(pool.marks_dir, worker_id)
        taken = False
        for claim, claimed_at, why in held:
            if started is not None and (claim.epoch_id, claim.attempt) not in started:
                self._give_back(pool, claim, worker_id)
            else:
                taken = self._take_back(pool, claim, worker_id, claimed_at, why) or taken
        if frozen and taken:
            pool.replace(worker_id)  # the pool keeps its size; a hung thread's late report is refused

    def _give_back(self, pool: Pool, claim: Claim, worker_id: str) -> None:
        """A job its lost worker never started: queued again as it was (no attempt, no death counted)."""
        def give(conn: Any) -> bool:
            if not jobs.take_back(conn, claim, worker_id, requeue=True, now=iso(self.host.clock.now())):
                return False
            conn.execute("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (claim.epoch_id,))
            return True

        if self.host.journal.commit(then=give):
            self._requeue(pool, claim)

    def _requeue(self, pool: Pool, claim: Claim) -> None:
        """A job taken back is `queued` again (attempt + 1): a direct pool hands it to a worker anew,
        first in line; a remote pool announces it."""
        if not pool.direct:
            self.to_signal[pool.name] += 1
            return
        self._release(claim.epoch_id)
        pool.pending.appendleft(NewJob(claim.epoch_id, 0, claim.node_name, 0, pool.name, "queued", None, "", None,
                                       claim.attempt + 1))
        pool.written.add(claim.epoch_id)

    def _take_back(self, pool: Pool, claim: Claim, worker_id: str, claimed_at: str | None, why: str) -> bool:
        """Take a claimed job back from its worker (compare-and-set), then apply the semantics of `why`.
        False: the worker reported first."""
        host = self.host
        node, epoch_id = claim.node_name, claim.epoch_id
        cfg = host.configs[node]
        attempt, died = host.journal.conn.execute(
            "SELECT coalesce(max(attempt) + 1, 0), count(*) FILTER (WHERE error_type = 'WorkerLost') "
            "FROM epoch_attempts WHERE epoch_id = ?", (epoch_id,)).fetchone()
        if why == "timeout":
            requeue = cfg.defer_net_actions and attempt < cfg.retries
        else:  # deaths count across resumes (the attempts table), wherever the epoch ran
            self.deaths[epoch_id] = died + 1
            requeue = cfg.defer_net_actions and self.deaths[epoch_id] <= cfg.retries + 1
        words = self.last_words.pop((epoch_id, worker_id), None) if why == "died" else None
        error = self._error(node, epoch_id, worker_id, why, pool.kind, cause=words[0] if words else None)
        traceback = words[2] if words else None
        counted = why == "timeout" or cfg.defer_net_actions
        # The attempt row (outcome, error, error type): a counted one fails; the interrupted attempt of a
        # non-deferred epoch is kept as in the main thread (cancelled); a plain death leaves none.
        if counted:
            attempt_row = ("failed", str(error), type(error).__name__)
        elif words:
            attempt_row = ("cancelled", f"{INTERRUPTED} (worker {worker_id}): {words[0]}", words[1])
        else:
            attempt_row = None

        def take(conn: Any) -> bool:
            now = iso(host.clock.now())
            if not jobs.take_back(conn, claim, worker_id, requeue=requeue, now=now,
                                  outcome="failed" if counted else "cancelled"):
                return False
            if attempt_row is not None:  # in the take-back's own transaction: a new claim sees it counted
                conn.execute("INSERT INTO epoch_attempts (epoch_id, attempt, node_name, started_at, finished_at, "
                             "outcome, error, error_type, traceback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (epoch_id, attempt, node, claimed_at or now, now, *attempt_row, traceback))
            if requeue:
                conn.execute("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (epoch_id,))
            return True

        if not host.journal.commit(then=take):
            return False  # the worker reported first: its result is applied as usual
        if why == "timeout":
            if pool.kind == "process":
                pool.kill(worker_id)
            pool.replace(worker_id)  # the pool keeps its size; a hung thread's late report is refused
            self._call_failure_func(node, epoch_id, attempt, error)
        if requeue:
            if why != "timeout":
                host.journal.record("RecoverEpoch", [], epoch_id=epoch_id, node_name=node,
                                  data={"reason": f"{error}: the deferred epoch runs again"})
            if counted:
                self.first_attempt[epoch_id] = attempt + 1
            self._requeue(pool, claim)
            return True
        self.applied(epoch_id)
        _condition, salvo = host.sim.epoch_salvo(epoch_id)
        ports = {packet: port for port, packet in salvo}
        if counted:
            self.ends.failed(node, epoch_id, ports, error, traceback=traceback)
        elif attempt_row is not None:
            _outcome, text, type_name = attempt_row
            self.ends.cancelled(node, epoch_id, ports, reason="interrupted", error=text, traceback=traceback)
            host.journal.set_epoch_error(epoch_id, "cancelled", text, type_name)
        else:
            text = f"{INTERRUPTED} (worker {worker_id}{', lease expired' if why == 'lease' else ''})"
            self.ends.cancelled(node, epoch_id, ports, reason="interrupted", error=text)
            host.journal.set_epoch_error(epoch_id, "cancelled", text, "Interrupted")
        return True

    def _call_failure_func(self, node: str, epoch_id: str, attempt: int, error: BaseException) -> None:
        """A timed-out attempt is a failed one: the node's `exec_failed_node_func` runs here, in the owner (the
        worker was killed, or its thread still runs the epoch). What the attempt consumed is not known
        here: `packet_values` is empty; `retry_exceptions` holds this attempt's error."""
        func = self.host.functions[node].failed
        if func is None:
            return
        cfg = self.host.configs[node]
        inputs: dict[str, list[Packet]] = {}
        for port, packet_id in self.host.sim.epoch_salvo(epoch_id)[1]:
            inputs.setdefault(port, []).append(Packet(packet_id))
        ctx = NodeFailureContext(epoch_id=epoch_id, node_name=node, retry_count=attempt,
                                 retry_timestamps=[], retry_exceptions=[error], input_salvo=inputs,
                                 _net=self.host.net, params=cfg.params)
        run_sync(call_failure_func(func, ctx, cfg, self.host.journal, error, asynchronous=False))

    def _error(self, node: str, epoch_id: str, worker_id: str, why: str, kind: str,
               cause: str | None = None) -> BaseException:
        host = self.host
        if why == "timeout":
            return EpochTimeout(f"node {node!r} epoch {epoch_id} ran over its timeout of {host.configs[node].timeout}s "
                                f"in worker {worker_id}" + ("; the worker was killed" if kind == "process" else
                                                            "; its late result will be discarded"),
                                node_name=node, epoch_id=epoch_id)
        what = "died" if why == "died" else f"stopped renewing its lease ({host.config.lease_seconds}s)"
        return WorkerLost(f"the worker {worker_id} running epoch {epoch_id} of node {node!r} {what} "
                          f"({self.deaths[epoch_id]} time(s))" + (f": {cause}" if cause else ""),
                          node_name=node, epoch_id=epoch_id)

    def _start_failed(self, notice: str, rest: deque) -> int:
        """A start_node_func raised in a worker: stop that pool (no endless respawning). The jobs handed
        to a worker whose start failed never ran: they are queued again (and withdrawn with the run);
        what the pool's other workers ran and sent while stopping is applied first (`rest` and what
        arrives until each has sent its last notice). The caller raises the pool's error. Returns the
        results applied meanwhile."""
        node, worker_id, text = read_start_failed(notice)
        self._never_started(worker_id)
        applied = 0
        for name in _pool_names(self.host.configs[node].pool):
            pool = self.pools.get(name)
            if pool is not None and pool.broken is None:
                pool.broken = NodeExecutionFailed(f"start_node_func of node {node!r} raised in a worker of pool "
                                                  f"{name!r}: {text}; the pool is stopped", node_name=node)
                stopped = set(pool.workers)
                pool.stop()
                deadline = time.monotonic() + SETTLE_SECONDS
                while stopped and time.monotonic() < deadline:
                    if not rest:
                        rest.extend(self.host.owner.wait(0.05))
                        continue
                    item = rest.popleft()
                    if isinstance(item, tuple) and item[0] == "gone":
                        stopped.discard(item[1])
                    applied += self._handle(item, rest)
        return applied

    def _never_started(self, worker_id: str) -> None:
        for epoch_id, (holder, attempt) in list(self.held.items()):
            if holder == worker_id:
                self._unclaim(self.pools[self.dispatched[epoch_id]], Claim(epoch_id, self.dispatched_node[epoch_id],
                                                                          attempt), worker_id)

    def _unclaim(self, pool: Pool, claim: Claim, worker_id: str) -> None:
        """A direct pool's job its worker never started: pending again as it was (the owner alone writes
        these rows: buffered)."""
        self.host.journal.add("UPDATE epoch_jobs SET state = 'queued', worker = NULL, claimed_at = NULL, "
                            "lease_until = NULL, attempt = attempt + 1 WHERE epoch_id = ? AND state = 'claimed' "
                            "AND worker = ? AND attempt = ?", (claim.epoch_id, worker_id, claim.attempt))
        self.host.journal.add("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (claim.epoch_id,))
        self._requeue(pool, claim)

    def _raise_if_broken(self) -> None:
        for pool in self.pools.values():
            if pool.broken is not None and pool.outstanding:
                raise pool.broken

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.close()
        if self._channels is not None:
            self._channels.close()
            self._channels = None
        if self.held:
            self._park([n for n in _unbatched(self.host.owner.wait(0)) if n[0] == "result"])
        self.pools.clear()
        if self._results is not None:
            self._results.close()
            self._results = None
        self.started = False

    def _park(self, results: list[tuple]) -> None:
        """The net closes with direct pool results not applied (its loop ended abnormally): write them as
        remote workers do (`reported`, and a row in epoch_results) for the next resume to apply."""
        journal = self.host.journal
        if journal.abandoned is not None:
            return
        parked = [(n[1], n[2], _stored_payload(n[3]), n[4]) for n in results
                  if self.held.get(n[2].epoch_id) == (n[1], n[2].attempt)]
        parked = [p for p in parked if p[2] is not None]
        if not parked:
            return

        def write(conn: Any) -> None:
            now = journal.now()
            for worker_id, claim, payload, rows in parked:
                if jobs.report(conn, claim, worker_id):
                    journal.reattach(rows)
                    journal.add("INSERT INTO epoch_results (epoch_id, worker, payload, created_at) VALUES (?, ?, ?, ?)",
                                (claim.epoch_id, worker_id, payload, now))

        journal.commit(then=write)


class _Channels:
    """The process workers' pipes, read by one relay thread that hands each message to the owner's
    arrival channel (so the owner waits in one place); a worker's pipe at its end brings its last
    notice, ("gone", worker)."""

    def __init__(self, notify: Any) -> None:
        self._notify = notify
        self._readers: dict[Any, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="netrun-relay")
        self._thread.start()

    def add(self, reader: Any, worker_id: str) -> None:
        self._readers = {**self._readers, reader: worker_id}

    def _run(self) -> None:
        while not self._stop.is_set():
            readers = self._readers
            if not readers:
                self._stop.wait(0.05)
                continue
            for reader in multiprocessing.connection.wait(list(readers), timeout=0.05):
                self._relay(reader)

    def _relay(self, reader: Any) -> bool:
        try:
            item = pickle.loads(reader.recv_bytes())
        except (EOFError, OSError):  # its worker is gone, and everything it sent was relayed
            worker_id = self._readers.get(reader)
            self._readers = {r: w for r, w in self._readers.items() if r is not reader}
            reader.close()
            self._notify(("gone", worker_id))
            return False
        self._notify(item)
        return True

    def close(self) -> None:
        """Stop relaying; what the (stopped) workers sent and was not relayed yet is relayed now."""
        self._stop.set()
        self._thread.join(5)
        for reader in list(self._readers):
            try:
                while reader.poll() and self._relay(reader):
                    pass
            except (EOFError, OSError):
                pass
            reader.close()
        self._readers = {}


def _stored_payload(payload: bytes | dict) -> bytes | None:
    """A result's payload as `epoch_results` stores it: a thread worker's result stays a dict in this
    process (`run_claimed(raw=True)`), with its error as raised; it is pickled as a process worker's is,
    the error made portable. None when it cannot be (the epoch then follows the crash semantics)."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return bytes(payload)
    try:
        return pickle.dumps({**payload, "error": _portable_error(payload.get("error"), payload.get("traceback"))})
    except Exception:  # noqa: BLE001 - not parked: a resume takes the epoch back as a lost worker's
        return None


def _unbatched(notices: list) -> list[tuple]:
    """The workers' messages among `notices`, those of a batch one by one."""
    out: list[tuple] = []
    for notice in notices:
        if isinstance(notice, tuple):
            out.extend(notice[1] if notice[0] == "batch" else [notice])
    return out


def apply_result(ends: EpochEnds, epoch_id: str, payload: bytes, *, held: tuple[str, int] | None = None,
                 started_at: str | None = None) -> str:
    """Apply one worker result to the net (buffered): a remote result with the deletion of its row; a
    direct one (`held`: the worker and job attempt it came from) ends its job by compare-and-set (and
    writes `started_at`, a start in hand not written yet)."""
    outcome, salvo, queue_, kept = read_outcome(payload)
    node = ends.sim.node_of_epoch(epoch_id)
    kind = ends.remote(node, epoch_id, [tuple(p) for p in salvo], outcome, queue_, kept)
    journal = ends.journal
    if held is not None:
        journal.add(FINISH_HELD, (journal.now(), kind, started_at, epoch_id, *held))
        return kind
    journal.add(FINISH_JOB, (journal.now(), kind, epoch_id))
    journal.add("DELETE FROM epoch_results WHERE epoch_id = ?", (epoch_id,))
    return kind
