"""Thread and process pools, seen from the owner: dispatch, results, leases, worker health.

The owner dispatches a pool epoch as a `queued` job (`epoch_jobs.pool`), commits, and
releases the pool's "work available" semaphore once for each job, but no more often than
workers wait (the others look at the queue before they wait). Workers (`worker.py`) claim jobs with a
lease, renew it, and report by compare-and-set; each report is announced on the owner's
arrival channel, and the owner applies the results it finds in `epoch_results` (the table,
not the notices, is the truth). Process workers are spawned (never forked: an open SQLite
connection must not cross a fork) and reopen the database by path.

`maintain()`, called by the owner loop, sweeps what went wrong, each case taken back by a
compare-and-set so that a report racing it wins or loses exactly once:
- a dead process worker, or a job whose lease expired (a frozen process, a hung thread):
  the crash semantics of DESIGN.md apply to each job it started (deferred: runs again, the
  attempt counted, and it fails once it died more than `retries + 1` times; otherwise
  cancelled, its packets dead-lettered as 'interrupted'), a job it held and never started is
  queued again; a process worker is killed and replaced, a hung thread is retired and
  replaced (its late report is refused);
- a job past its node's `timeout`: EpochTimeout into the failure flow.
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import tempfile
import multiprocessing
import multiprocessing.connection
import threading
import time
from collections import Counter
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import cloudpickle

from . import jobs
from .epoch import apply_remote, end_cancelled, end_failed
from .errors import EpochTimeout, NodeExecutionFailed, WorkerLost
from .jobs import FINISH_JOB, INSERT_JOB, Claim, NewJob, job_params
from .worker import BATCH, START_FAILED, Desk, IdleCount, WorkerSpec, process_main, read_marks, read_outcome, thread_main
from .wakeups import WAKE_REMOTE as _WAKE_REMOTE, listen_for_results
from .host import RunHost

INTERRUPTED = "interrupted: the worker running the epoch died"
SELECTIONS = ("least_busy", "round_robin")
AHEAD = 4  # queued jobs per worker kept ahead of a pool (bounded work in flight)
REMOTE_SIZE = 8  # a remote pool's default size: epochs its workers may run at once, all together
_SPAWN = multiprocessing.get_context("spawn")


class Pool:
    """A named set of workers of one kind."""

    def __init__(self, rt: RunHost, name: str, size: int, kind: str, notify: Any,
                 channels: _Channels | None = None) -> None:
        self.rt = rt
        self.name = name
        self.size = size
        self.kind = kind  # "thread", "process", or "remote" (`netrun worker` processes: none started here)
        self.notify = notify
        self.channels = channels
        self.outstanding = 0  # jobs dispatched and not yet applied
        self.broken: BaseException | None = None  # set when a worker's start function raised
        self.workers: dict[str, Any] = {}
        self.retired: dict[str, threading.Event] = {}  # thread worker -> its "stop after this job" flag
        self._ids = itertools.count(1)
        self._token = secrets.token_hex(4)  # process worker IDs are unique across owners
        self.marks_dir: str | None = None  # see WorkerSpec.batch (process pools whose epochs may batch)
        if kind == "thread":
            self.wake: Any = threading.Semaphore(0)
            self.stop_event: Any = threading.Event()
            self.idle: Any = IdleCount()
            self.desk: Desk | None = None  # made with the workers' spec (one per start)
        elif kind == "remote":
            self.wake = self.stop_event = threading.Event()  # unused: its workers are not this process's
            # Who waits is not known here: every job is announced, and buffered jobs are committed at once.
            self.idle = SimpleNamespace(value=size)
        else:
            self.wake = _SPAWN.Semaphore(0)
            self.stop_event = _SPAWN.Event()
            self.idle = _SPAWN.Value("i", 0)

    def _spec(self) -> WorkerSpec:
        rt = self.rt
        nodes = [n for n, c in rt.configs.items() if self.name in _pool_names(c.pool)]
        per_worker = {n for n in nodes if rt.configs[n].pool_init_mode == "per_worker" or self.kind == "process"}
        functions = {n: rt.functions[n] for n in nodes}
        keep = rt.config.consumed_packet_storage or bool(rt.config.consumed_packet_storage_path)
        # Claiming several jobs at once: process workers only, and only where no node has a timeout
        # (a job's time runs from its claim).
        batch = BATCH if self.kind == "process" and all(rt.configs[n].timeout is None for n in nodes) else 1
        if batch > 1 and self.marks_dir is None:
            self.marks_dir = tempfile.mkdtemp(prefix="netrun-marks-")
        return WorkerSpec(db_path=rt.net.db_url, pool=self.name, nodes={n: rt.configs[n] for n in nodes},
                          functions=cloudpickle.dumps(functions) if self.kind == "process" else functions,
                          keep_received=keep, init_per_worker=per_worker, durability=rt.config.durability,
                          lease_seconds=rt.config.lease_seconds, batch=batch,
                          marks_dir=self.marks_dir if batch > 1 else None)

    def start(self) -> None:
        if self.kind == "remote":
            return
        spec = self._spec()
        if self.kind == "thread":
            self.desk = Desk(spec, self.notify)
        for _ in range(self.size):
            self._start_worker(spec)

    def _start_worker(self, spec: WorkerSpec) -> None:
        worker_id = f"{self.kind}:{self.name}:{next(self._ids)}"
        if self.kind == "process":  # a job re-queued after a resume is never mistaken for one an orphan held
            worker_id += f"@{self._token}"
        if self.kind == "thread":
            retire = threading.Event()
            self.retired[worker_id] = retire
            worker = threading.Thread(target=thread_main, name=f"netrun-{worker_id}", daemon=True,
                                      args=(spec, worker_id, self.wake, self.stop_event, retire, self.notify,
                                            self.rt.clock, self.rt.net, self.idle, self.desk))
        else:
            # A pipe of its own per process worker: one killed while writing breaks only its own pipe
            # (a shared multiprocessing.Queue's write lock would stay held, and every writer hang).
            reader, writer = _SPAWN.Pipe(duplex=False)
            worker = _SPAWN.Process(target=process_main, name=f"netrun-{worker_id}", daemon=True,
                                    args=(spec, worker_id, self.wake, self.stop_event, writer, self.idle))
        worker.start()
        if self.kind == "process":
            writer.close()
            self.channels.add(reader)
        self.workers[worker_id] = worker

    def signal(self, jobs_: int) -> None:
        if self.kind == "remote":  # `netrun worker` processes listen (PostgreSQL), or look every IDLE_WAIT
            self.rt.journal.conn.execute(_WAKE_REMOTE, (self.name,))
            return
        for _ in range(jobs_):
            self.wake.release()

    def wake_idle(self, jobs_: int) -> None:
        """New jobs are committed: wake a waiting worker for each, no more than wait (the others
        look at the queue before they wait; see worker._wait_for_work)."""
        self.signal(min(jobs_, self.idle.value))

    def dead_workers(self) -> list[str]:
        return [wid for wid, w in self.workers.items() if not w.is_alive()]

    def replace(self, worker_id: str) -> None:
        """A worker is gone (dead, killed, or a hung thread retired): start another in its place."""
        if self.kind == "remote":
            return  # its own process decides (one that stopped renewing is refused its late report)
        self.workers.pop(worker_id, None)
        retire = self.retired.pop(worker_id, None)
        if retire is not None:
            retire.set()  # a hung thread that wakes up again reports nothing and exits
        if not self.stop_event.is_set() and self.broken is None:
            self._start_worker(self._spec())

    def kill(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is not None and self.kind == "process":
            worker.kill()
            worker.join(5)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the workers after their current job and join them, answering their calls to the net
        meanwhile (a thread worker's stop function may query it); a process worker still alive
        after `timeout` seconds is killed."""
        self.stop_event.set()
        self.signal(len(self.workers))
        deadline = time.monotonic() + timeout
        for worker in self.workers.values():
            while worker.is_alive() and time.monotonic() < deadline:
                worker.join(0.02)
                self.rt.owner.serve()
            if worker.is_alive() and self.kind == "process":
                worker.kill()
                worker.join(5)
        self.workers.clear()

    def close(self) -> None:
        self.stop()
        if self.marks_dir is not None:
            shutil.rmtree(self.marks_dir, ignore_errors=True)
            self.marks_dir = None


def _pool_names(pool: str | list[str] | None) -> list[str]:
    if pool is None:
        return []
    return [pool] if isinstance(pool, str) else list(pool)


class PoolManager:
    """All pools of a net, from the owner's side."""

    def __init__(self, rt: RunHost) -> None:
        self.rt = rt
        self.pools: dict[str, Pool] = {}
        self.started = False
        self._round_robin = itertools.count()
        self.dispatched: dict[str, str] = {}  # epoch ID -> pool, until its result is applied
        self.dispatched_node: dict[str, str] = {}  # epoch ID -> node
        self.per_node: Counter[str] = Counter()  # node -> epochs dispatched to pools
        self.to_signal: Counter[str] = Counter()  # pool -> jobs written since the last signal
        self.deaths: Counter[str] = Counter()  # epoch ID -> workers that died (or froze) running it
        self._channels: _Channels | None = None
        self._results: Any = None  # remote pools: the listener for their workers' reports
        self._next_sweep = 0.0

    @property
    def configured(self) -> bool:
        config = self.rt.config
        return bool(config.thread_pools or config.process_pools or config.remote_pools)

    @property
    def sweep_every(self) -> float:
        timed = any(c.timeout is not None and c.pool is not None for c in self.rt.configs.values())
        return min(0.02 if timed else 0.25, self.rt.config.lease_seconds / 4)

    def ensure_started(self) -> None:
        if self.started or not self.configured:
            return
        self.started = True
        config = self.rt.config
        notify = self.rt.owner.notify
        if config.process_pools:
            self._channels = _Channels(notify)
        for name, spec in config.thread_pools.items():
            self.pools[name] = Pool(self.rt, name, spec.get("size", 1), "thread", notify)
        for name, spec in config.process_pools.items():
            self.pools[name] = Pool(self.rt, name, spec.get("size", 1), "process", None, self._channels)
        for name, spec in config.remote_pools.items():
            self.pools[name] = Pool(self.rt, name, spec.get("size", REMOTE_SIZE), "remote", None)
        if config.remote_pools:
            self._results = listen_for_results(self.rt.journal.conn, notify)
        for pool in self.pools.values():
            pool.start()

    def refresh(self, node: str) -> None:
        """A pool node's functions or options changed after the pools started: restart its pools'
        workers once nothing of the old ones is in flight, so they run the new ones."""
        if not self.started:
            return
        for name in _pool_names(self.rt.configs[node].pool):
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
        names = _pool_names(self.rt.configs[node].pool)
        if len(names) == 1:
            return names[0]
        if self.rt.config.pool_selection == "round_robin":
            return names[next(self._round_robin) % len(names)]
        return max(names, key=lambda n: (self.pools[n].size - self.pools[n].outstanding, -names.index(n)))

    def room(self, pool: str) -> int:
        """How many more jobs the pool may have in flight (bounded: a few queued per worker)."""
        p = self.pools[pool]
        return p.size * (1 + AHEAD) - p.outstanding

    def wants_work(self) -> bool:
        return any(p.outstanding < p.size for p in self.pools.values())

    def dispatch(self, epoch_id: str, node: str, pool: str, job: NewJob) -> None:
        """Queue a pool job (buffered: the owner's next commit writes it, then `signal()` wakes a worker)."""
        self.rt.journal.add(INSERT_JOB, job_params(job))
        self.dispatched[epoch_id] = pool
        self.dispatched_node[epoch_id] = node
        self.per_node[node] += 1
        self.pools[pool].outstanding += 1
        self.to_signal[pool] += 1

    def signal(self) -> None:
        """After a commit: wake a waiting worker for each job written."""
        if self.to_signal:
            for pool, count in self.to_signal.items():
                self.pools[pool].wake_idle(count)
            self.to_signal.clear()

    def starving(self) -> bool:
        """Whether jobs wait for the owner's commit while a worker of their pool waits for work."""
        return any(count and self.pools[pool].idle.value for pool, count in self.to_signal.items())

    def dispatched_epochs(self, node: str | None) -> list[str]:
        return [e for e, n in self.dispatched_node.items() if node is None or n == node]

    def applied(self, epoch_id: str) -> None:
        pool = self.dispatched.pop(epoch_id, None)
        node = self.dispatched_node.pop(epoch_id, None)
        if pool is not None:
            self.pools[pool].outstanding -= 1
            self.per_node[node] -= 1

    def withdraw_queued(self) -> list[tuple[str, str]]:
        """On pause: pool jobs no worker has claimed yet are deleted (a claim is a compare-and-set on
        `queued`, so each job is either claimed or withdrawn). Returns (epoch, node) of each."""
        if not self.dispatched:
            return []
        rows = self.rt.journal.commit(then=lambda conn: conn.execute(
            "DELETE FROM epoch_jobs WHERE state = 'queued' AND pool IS NOT NULL RETURNING epoch_id, node_name"
        ).fetchall())
        out = []
        for epoch_id, node in rows or []:
            if epoch_id in self.dispatched:
                self.applied(epoch_id)
                out.append((epoch_id, node))
        return out

    # -- results ----------------------------------------------------------------------------------
    def apply_arrived(self, notices: list) -> int:
        """Apply the results announced by `notices` (the owner's arrivals). Returns how many."""
        if not notices:
            return 0
        reported = False
        for notice in notices:
            if isinstance(notice, str):
                if notice.startswith(START_FAILED):
                    self._start_failed(notice)
                else:
                    reported = True
        return self.apply_results() if reported and self.dispatched else 0

    def apply_results(self) -> int:
        """Apply every result written so far (buffered; the owner's next commit writes it all)."""
        rt = self.rt
        rows = rt.journal.conn.execute("SELECT epoch_id, payload FROM epoch_results").fetchall()
        count = 0
        for epoch_id, payload in rows:
            if epoch_id in self.dispatched:
                self.applied(epoch_id)
                apply_result(rt, epoch_id, payload)
                count += 1
        self._raise_if_broken()
        return count

    def drain(self) -> int:
        """From the owner: apply results until no pool epoch is in flight (serving calls meanwhile)."""
        applied = 0
        while self.dispatched:
            applied += self.apply_arrived(self.rt.owner.wait(self.sweep_every) or ["check"])
            self.rt.owner.serve()
            self.maintain()
            self.rt.commit()
        return applied

    # -- health: dead workers, leases, timeouts -------------------------------------------------------
    def next_check(self) -> float:
        return max(0.0, self._next_sweep - self.rt.clock.monotonic())

    def maintain(self) -> None:
        """Every `sweep_every` seconds while pool epochs are in flight: results no notice announced,
        dead workers, expired leases, timeouts."""
        if not self.dispatched:
            return
        now = self.rt.clock.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.sweep_every
        self.apply_results()  # a worker that died between its report and its notice sent none
        if self.dispatched:
            self._sweep()

    def _sweep(self) -> None:
        rt = self.rt
        rt.commit()
        conn = rt.journal.conn
        now = rt.clock.now()
        dead = {wid: pool for pool in self.pools.values() for wid in pool.dead_workers()}
        timed = {n for n, c in rt.configs.items() if c.timeout is not None and c.pool is not None}
        lost: dict[str, list[tuple[Claim, str | None, str]]] = {}  # worker -> the jobs it held, and why lost
        for claim, worker_id, claimed_at in jobs.claimed_in_pool(conn):
            if claim.epoch_id not in self.dispatched:
                continue
            if worker_id in dead:
                lost.setdefault(worker_id, []).append((claim, claimed_at, "died"))
            elif claim.node_name in timed and claimed_at is not None and \
                    (now - datetime.fromisoformat(claimed_at)).total_seconds() > rt.configs[claim.node_name].timeout:
                self._take_back(self.pools[self.dispatched[claim.epoch_id]], claim, worker_id, claimed_at, "timeout")
        for claim, worker_id, claimed_at in jobs.expired(conn, rt.now_iso()):
            if claim.epoch_id in self.dispatched and worker_id not in dead:
                lost.setdefault(worker_id, []).append((claim, claimed_at, "lease"))
        for worker_id, held in lost.items():
            self._lose_worker(self.pools[self.dispatched[held[0][0].epoch_id]], worker_id, held)
        for worker_id, pool in dead.items():
            if worker_id in pool.workers:
                pool.replace(worker_id)
        rt.commit()

    def _lose_worker(self, pool: Pool, worker_id: str, held: list[tuple[Claim, str | None, str]]) -> None:
        """Take back the jobs of a worker that died or stopped renewing its lease. A frozen process is
        killed first: it starts nothing more, and its marks then tell which of its jobs never started
        (those simply run again: nothing of them ran)."""
        frozen = held[0][2] == "lease"
        if frozen and pool.kind == "process":
            pool.kill(worker_id)
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
            if not jobs.take_back(conn, claim, worker_id, requeue=True, now=self.rt.now_iso()):
                return False
            conn.execute("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (claim.epoch_id,))
            return True

        if self.rt.journal.commit(then=give):
            self.to_signal[pool.name] += 1

    def _take_back(self, pool: Pool, claim: Claim, worker_id: str, claimed_at: str | None, why: str) -> bool:
        """Take a claimed job back from its worker (compare-and-set), then apply the semantics of `why`.
        False: the worker reported first."""
        rt = self.rt
        node, epoch_id = claim.node_name, claim.epoch_id
        cfg = rt.configs[node]
        attempt, died = rt.journal.conn.execute(
            "SELECT coalesce(max(attempt) + 1, 0), count(*) FILTER (WHERE error_type = 'WorkerLost') "
            "FROM epoch_attempts WHERE epoch_id = ?", (epoch_id,)).fetchone()
        if why == "timeout":
            requeue = cfg.defer_net_actions and attempt < cfg.retries
        else:  # deaths count across resumes (the attempts table), wherever the epoch ran
            self.deaths[epoch_id] = died + 1
            requeue = cfg.defer_net_actions and self.deaths[epoch_id] <= cfg.retries + 1
        error = self._error(node, epoch_id, worker_id, why, pool.kind)
        counted = why == "timeout" or cfg.defer_net_actions

        def take(conn: Any) -> bool:
            if not jobs.take_back(conn, claim, worker_id, requeue=requeue, now=rt.now_iso(),
                                  outcome="failed" if counted else "cancelled"):
                return False
            if counted:  # the attempt is counted in the take-back's own transaction: a new claim sees it
                conn.execute("INSERT INTO epoch_attempts (epoch_id, attempt, node_name, started_at, finished_at, "
                             "outcome, error, error_type) VALUES (?, ?, ?, ?, ?, 'failed', ?, ?)",
                             (epoch_id, attempt, node, claimed_at or rt.now_iso(), rt.now_iso(), str(error),
                              type(error).__name__))
            if requeue:
                conn.execute("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (epoch_id,))
            return True

        if not rt.journal.commit(then=take):
            return False  # the worker reported first: its result is applied as usual
        if why == "timeout":
            if pool.kind == "process":
                pool.kill(worker_id)
            pool.replace(worker_id)  # the pool keeps its size; a hung thread's late report is refused
        if requeue:
            if why != "timeout":
                rt.journal.record("RecoverEpoch", [], epoch_id=epoch_id, node_name=node,
                                  data={"reason": f"{error}: the deferred epoch runs again"})
            self.to_signal[self.dispatched[epoch_id]] += 1
            return True
        self.applied(epoch_id)
        _condition, salvo = rt.sim.epoch_salvo(epoch_id)
        ports = {packet: port for port, packet in salvo}
        if why == "timeout" or cfg.defer_net_actions:
            end_failed(rt, node, epoch_id, ports, error)
        else:
            text = f"{INTERRUPTED} (worker {worker_id}{', lease expired' if why == 'lease' else ''})"
            end_cancelled(rt, node, epoch_id, ports, reason="interrupted", error=text)
            rt.journal.set_epoch_error(epoch_id, "cancelled", text, "Interrupted")
        return True

    def _error(self, node: str, epoch_id: str, worker_id: str, why: str, kind: str) -> BaseException:
        rt = self.rt
        if why == "timeout":
            return EpochTimeout(f"node {node!r} epoch {epoch_id} ran over its timeout of {rt.configs[node].timeout}s "
                                f"in worker {worker_id}" + ("; the worker was killed" if kind == "process" else
                                                            "; its late result will be discarded"),
                                node_name=node, epoch_id=epoch_id)
        what = "died" if why == "died" else f"stopped renewing its lease ({rt.config.lease_seconds}s)"
        return WorkerLost(f"the worker {worker_id} running epoch {epoch_id} of node {node!r} {what} "
                          f"({self.deaths[epoch_id]} time(s))", node_name=node, epoch_id=epoch_id)

    def _start_failed(self, notice: str) -> None:
        """A start_node_func raised in a worker: stop that pool (no endless respawning)."""
        node, text = notice[len(START_FAILED):].split("\x00", 1)
        for name in _pool_names(self.rt.configs[node].pool):
            pool = self.pools.get(name)
            if pool is not None and pool.broken is None:
                pool.broken = NodeExecutionFailed(f"start_node_func of node {node!r} raised in a worker of pool "
                                                  f"{name!r}: {text}; the pool is stopped", node_name=node)
                pool.stop()
        self._raise_if_broken()

    def _raise_if_broken(self) -> None:
        for pool in self.pools.values():
            if pool.broken is not None and pool.outstanding:
                raise pool.broken

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
        if self._channels is not None:
            self._channels.close()
            self._channels = None
        if self._results is not None:
            self._results.close()
            self._results = None
        self.started = False


class _Channels:
    """The process workers' pipes, read by one relay thread that hands each notice to the owner's
    arrival channel (so the owner waits in one place)."""

    def __init__(self, notify: Any) -> None:
        self._notify = notify
        self._readers: list[Any] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="netrun-relay")
        self._thread.start()

    def add(self, reader: Any) -> None:
        self._readers = [*self._readers, reader]

    def _run(self) -> None:
        while not self._stop.is_set():
            readers = self._readers
            if not readers:
                self._stop.wait(0.05)
                continue
            for reader in multiprocessing.connection.wait(readers, timeout=0.05):
                try:
                    item = reader.recv()
                except (EOFError, OSError):  # its worker is gone
                    self._readers = [r for r in self._readers if r is not reader]
                    reader.close()
                    continue
                self._notify(item)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for reader in self._readers:
            reader.close()
        self._readers = []


def apply_result(rt: RunHost, epoch_id: str, payload: bytes) -> str:
    """Apply one worker result to the net (buffered with the deletion of its row)."""
    outcome, salvo, queue, kept = read_outcome(payload)
    node = rt.sim.node_of_epoch(epoch_id)
    kind = apply_remote(rt, node, epoch_id, [tuple(p) for p in salvo], outcome, queue, kept)
    rt.journal.add(FINISH_JOB, (rt.journal.now(), kind, epoch_id))
    rt.journal.add("DELETE FROM epoch_results WHERE epoch_id = ?", (epoch_id,))
    return kind
