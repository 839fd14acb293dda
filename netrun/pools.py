"""Thread and process pools: workers that pull epoch jobs from the queue table.

The main process enqueues an epoch for a pool (`epoch_jobs.pool`), releases the pool's
"work available" semaphore, and later applies the results its workers write back
(`epoch_results`). Workers of both kinds run `worker.worker_loop`, so the two pass one
contract. Process workers are spawned (never forked: an open SQLite connection must not
cross a fork) and reopen the database by path.

A process worker that dies (killed, crashed) is noticed by its exit; its claimed jobs follow
the crash semantics of DESIGN.md (deferred: queued again; otherwise cancelled with its
packets dead-lettered as 'interrupted') and a replacement worker starts.
"""

from __future__ import annotations

import itertools
from collections import Counter
import time
from datetime import datetime
import multiprocessing
import queue as queue_module
import threading
from typing import TYPE_CHECKING, Any

import cloudpickle

from .epoch import apply_remote, end_cancelled, end_failed
from .errors import EpochTimeout, NodeExecutionFailed
from .worker import START_FAILED, WorkerSpec, process_main, read_outcome, thread_main

INTERRUPTED = "interrupted: the worker running the epoch died"

if TYPE_CHECKING:
    from .runtime import Runtime

SELECTIONS = ("least_busy", "round_robin")
GATHER = 0.002  # seconds the main process waits for more results before applying a batch
_SPAWN = multiprocessing.get_context("spawn")


class Pool:
    """A named set of workers of one kind."""

    def __init__(self, rt: Runtime, name: str, size: int, kind: str, results: Any) -> None:
        self.rt = rt
        self.name = name
        self.size = size
        self.kind = kind  # "thread" or "process"
        self.results = results
        self.outstanding = 0  # jobs dispatched and not yet applied
        self.broken: BaseException | None = None  # set when a worker's start function raised
        self.workers: dict[str, Any] = {}
        self._ids = itertools.count(1)
        if kind == "thread":
            self.wake: Any = threading.Semaphore(0)
            self.stop_event: Any = threading.Event()
        else:
            self.wake = _SPAWN.Semaphore(0)
            self.stop_event = _SPAWN.Event()

    def _spec(self) -> WorkerSpec:
        rt = self.rt
        nodes = [n for n, c in rt.configs.items() if self.name in _pool_names(c.pool)]
        per_worker = {n for n in nodes if rt.configs[n].pool_init_mode == "per_worker" or self.kind == "process"}
        functions = {n: rt.functions[n] for n in nodes}
        keep = rt.config.consumed_packet_storage or bool(rt.config.consumed_packet_storage_path)
        return WorkerSpec(db_path=rt.net.db_path, pool=self.name, nodes={n: rt.configs[n] for n in nodes},
                          functions=cloudpickle.dumps(functions) if self.kind == "process" else functions,
                          keep_received=keep, init_per_worker=per_worker)

    def start(self) -> None:
        spec = self._spec()
        for _ in range(self.size):
            self._start_worker(spec)

    def _start_worker(self, spec: WorkerSpec) -> None:
        worker_id = f"{self.kind}:{self.name}:{next(self._ids)}"
        if self.kind == "thread":
            worker = threading.Thread(target=thread_main, name=f"netrun-{worker_id}", daemon=True,
                                      args=(spec, worker_id, self.wake, self.stop_event, self.results,
                                            self.rt.clock, self.rt.net))
        else:
            worker = _SPAWN.Process(target=process_main, name=f"netrun-{worker_id}", daemon=True,
                                    args=(spec, worker_id, self.wake, self.stop_event, self.results))
        worker.start()
        self.workers[worker_id] = worker

    def signal(self, jobs: int) -> None:
        for _ in range(jobs):
            self.wake.release()

    def dead_workers(self) -> list[str]:
        return [wid for wid, w in self.workers.items() if not w.is_alive()]

    def replace(self, worker_id: str) -> None:
        self.workers.pop(worker_id, None)
        self._start_worker(self._spec())

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        self.signal(len(self.workers))
        for worker in self.workers.values():
            worker.join(timeout)
            if worker.is_alive() and self.kind == "process":
                worker.kill()
                worker.join(5)
        self.workers.clear()


def _pool_names(pool: str | list[str] | None) -> list[str]:
    if pool is None:
        return []
    return [pool] if isinstance(pool, str) else list(pool)


class PoolManager:
    """All pools of a net: selection, dispatch signals, results, worker health."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        # One channel for every worker's "result written" notices: a multiprocessing queue
        # when a process pool exists (threads can put on it too), else a plain queue.
        self.results: Any = None
        self.pools: dict[str, Pool] = {}
        self.started = False
        self._round_robin = itertools.count()
        self.dispatched: dict[str, str] = {}  # epoch ID -> pool, until its result is applied
        self.deaths: Counter[str] = Counter()  # epoch ID -> workers that died running it

    @property
    def configured(self) -> bool:
        return bool(self.rt.config.thread_pools or self.rt.config.process_pools)

    def ensure_started(self) -> None:
        if self.started or not self.configured:
            return
        self.started = True
        config = self.rt.config
        self.results = _SPAWN.Queue() if config.process_pools else queue_module.Queue()
        for name, spec in config.thread_pools.items():
            self.pools[name] = Pool(self.rt, name, spec.get("size", 1), "thread", self.results)
        for name, spec in config.process_pools.items():
            self.pools[name] = Pool(self.rt, name, spec.get("size", 1), "process", self.results)
        for pool in self.pools.values():
            pool.start()

    def refresh(self, node: str) -> None:
        """A pool node's functions or options changed after the pools started: restart its pools'
        workers (each finishes its current job first), so they run the new ones."""
        if not self.started:
            return
        for name in _pool_names(self.rt.configs[node].pool):
            pool = self.pools.get(name)
            if pool is None:
                continue
            self.collect(block=True)  # nothing of the old workers may be in flight
            pool.stop()
            pool.stop_event.clear()
            pool.start()

    def select(self, node: str) -> str:
        """The pool to run an epoch of `node` in (the net's `pool_selection` algorithm)."""
        names = _pool_names(self.rt.configs[node].pool)
        if len(names) == 1:
            return names[0]
        if self.rt.config.pool_selection == "round_robin":
            return names[next(self._round_robin) % len(names)]
        return max(names, key=lambda n: (self.pools[n].size - self.pools[n].outstanding, -names.index(n)))

    def dispatch(self, epoch_id: str, pool: str) -> None:
        self.dispatched[epoch_id] = pool
        self.pools[pool].outstanding += 1

    def signal_all(self, counts: dict[str, int]) -> None:
        for pool, jobs in counts.items():
            self.pools[pool].signal(jobs)

    def next_result(self, timeout: float) -> str | None:
        """Wait up to `timeout` seconds for a worker's notification; None if none came."""
        try:
            return self.results.get(timeout=timeout) if timeout > 0 else self.results.get_nowait()
        except queue_module.Empty:
            return None

    def collect(self, *, block: bool) -> int:
        """Apply finished pool epochs; with `block`, until none is outstanding. Returns how many."""
        applied = 0
        timed = {n for n, c in self.rt.configs.items() if c.timeout is not None and c.pool is not None}
        withdrawn = False
        while self.dispatched:
            self._raise_if_broken()
            if self.rt.paused and not withdrawn:
                self.withdraw_queued()
                withdrawn = True
                continue
            epoch_id = self.next_result((0.02 if timed else 0.2) if block else 0.0)
            if epoch_id is not None and epoch_id.startswith(START_FAILED):
                self._start_failed(epoch_id)
                continue
            if epoch_id is None:
                self.check_workers()
                if timed:
                    applied += self.check_deadlines(timed)
                if not block:
                    break
                # A worker that died between writing its result and its notice sends none:
                # the table, not the notices, is the truth.
                applied += self.apply_results()
                continue
            if block and len(self.dispatched) > 1:
                time.sleep(GATHER)  # let results that finish together share one transaction
            applied += self.apply_results()
        return applied

    def withdraw_queued(self) -> None:
        """On pause: pool jobs no worker has claimed yet go back to startable; running ones finish."""
        rt = self.rt
        rows = rt.journal.commit(then=lambda conn: conn.execute(
            "DELETE FROM epoch_jobs WHERE state = 'queued' AND pool IS NOT NULL RETURNING epoch_id, node_name"
        ).fetchall())
        for epoch_id, node in rows or []:
            self.applied(epoch_id)
            if rt.queued.pop(epoch_id, None) is not None:
                rt.queued_per_node[node] -= 1
            rt.waiting[node][epoch_id] = None
            rt.waiting[node].move_to_end(epoch_id, last=False)  # first in line when the net goes on

    def _start_failed(self, notice: str) -> None:
        """A start_node_func raised in a worker: stop that pool (no endless respawning)."""
        node, text = notice[len(START_FAILED):].split("\x00", 1)
        for name in _pool_names(self.rt.configs[node].pool):
            pool = self.pools.get(name)
            if pool is not None and pool.broken is None:
                pool.broken = NodeExecutionFailed(f"start_node_func of node {node!r} raised in a worker of pool "
                                                  f"{name!r}: {text}; the pool is stopped", node_name=node)
                pool.stop()

    def _raise_if_broken(self) -> None:
        for pool in self.pools.values():
            if pool.broken is not None and pool.outstanding:
                raise pool.broken

    def check_deadlines(self, timed: set[str]) -> int:
        """Take back pool epochs running past their node's timeout: EpochTimeout into the failure flow.

        A thread cannot be interrupted: its late result is discarded by the worker (and
        recorded in the node log). A process worker is killed and replaced.
        """
        rt = self.rt
        rt.journal.commit()
        now = rt.clock.now()
        rows = rt.journal.conn.execute(
            "SELECT epoch_id, node_name, worker, claimed_at FROM epoch_jobs WHERE state = 'claimed' "
            "AND pool IS NOT NULL AND epoch_id NOT IN (SELECT epoch_id FROM epoch_results)").fetchall()
        ended = 0
        for epoch_id, node, worker_id, claimed_at in rows:
            cfg = rt.configs.get(node)
            if node not in timed or epoch_id not in self.dispatched or claimed_at is None:
                continue
            elapsed = (now - datetime.fromisoformat(claimed_at)).total_seconds()
            if elapsed <= cfg.timeout:
                continue
            pool = self.pools[self.dispatched[epoch_id]]
            # Take the job back in a transaction of its own, only if the worker has not written
            # its result meanwhile: exactly one side wins the race.
            taken = rt.journal.commit(then=lambda conn: conn.execute(
                "UPDATE epoch_jobs SET worker = ? WHERE epoch_id = ? AND worker = ? AND state = 'claimed' "
                "AND epoch_id NOT IN (SELECT epoch_id FROM epoch_results) RETURNING epoch_id",
                (f"timed-out:{worker_id}", epoch_id, worker_id)).fetchall())
            if not taken:
                continue  # the result came first: it is applied as usual
            if pool.kind == "process" and worker_id in pool.workers:
                pool.workers[worker_id].kill()
                pool.workers[worker_id].join(5)
                pool.replace(worker_id)  # the pool keeps its size
            error = EpochTimeout(f"node {node!r} epoch {epoch_id} ran over its timeout of {cfg.timeout}s in worker "
                                 f"{worker_id}" + ("; the worker was killed" if pool.kind == "process" else
                                                   "; its late result will be discarded"),
                                 node_name=node, epoch_id=epoch_id)
            attempt = rt.journal.conn.execute("SELECT coalesce(max(attempt) + 1, 0) FROM epoch_attempts "
                                              "WHERE epoch_id = ?", (epoch_id,)).fetchone()[0]
            rt.journal.add("INSERT INTO epoch_attempts (epoch_id, attempt, node_name, started_at, finished_at, "
                           "outcome, error, error_type) VALUES (?, ?, ?, ?, ?, 'failed', ?, 'EpochTimeout')",
                           (epoch_id, attempt, node, claimed_at, rt.journal.now(), str(error)))
            if cfg.defer_net_actions and attempt < cfg.retries:
                rt.journal.add("UPDATE epoch_jobs SET state = 'queued', worker = NULL, claimed_at = NULL, "
                               "lease_until = NULL WHERE epoch_id = ?", (epoch_id,))
                rt.journal.commit()
                pool.signal(1)
                continue
            _condition, salvo = rt.sim.epoch_salvo(epoch_id)
            end_failed(rt, node, epoch_id, {packet: port for port, packet in salvo}, error)
            rt.queue.complete(epoch_id, "failed")
            self.applied(epoch_id)
            ended += 1
        rt.journal.commit()
        return ended

    def apply_results(self) -> int:
        """Apply every result written so far, reading and applying in one transaction."""
        while True:  # drain the notices: the rows below cover them all
            try:
                self.results.get_nowait()
            except queue_module.Empty:
                break

        # Read, then apply outside any transaction: applying may call user callbacks
        # (error_callback) and pause the net; the rows are committed together after.
        rt = self.rt
        rows = rt.journal.conn.execute("SELECT epoch_id, payload FROM epoch_results").fetchall()
        count = 0
        for epoch_id, payload in rows:
            if epoch_id in self.dispatched:
                apply_result(rt, epoch_id, payload)
                self.applied(epoch_id)
                count += 1
        rt.journal.commit()
        return count

    def check_workers(self) -> None:
        """Recover the jobs of dead process workers (DESIGN crash semantics) and replace them."""
        rt = self.rt
        for pool in self.pools.values():
            for worker_id in pool.dead_workers():
                rt.journal.commit()
                jobs = rt.journal.conn.execute(
                    "SELECT epoch_id, node_name FROM epoch_jobs WHERE state = 'claimed' AND worker = ? "
                    "AND epoch_id NOT IN (SELECT epoch_id FROM epoch_results)", (worker_id,)).fetchall()
                for epoch_id, node in jobs:
                    self._recover(pool, epoch_id, node, worker_id)
                rt.journal.commit()
                if not pool.stop_event.is_set() and pool.broken is None:
                    pool.replace(worker_id)

    def _recover(self, pool: Pool, epoch_id: str, node: str, worker_id: str) -> None:
        rt = self.rt
        cfg = rt.configs[node]
        self.deaths[epoch_id] += 1
        if cfg.defer_net_actions and self.deaths[epoch_id] > cfg.retries + 1:
            # The epoch kills every worker that runs it: a failure, not a reason to run it forever.
            _condition, salvo = rt.sim.epoch_salvo(epoch_id)
            error = RuntimeError(f"the worker running epoch {epoch_id} of node {node!r} died "
                                 f"{self.deaths.pop(epoch_id)} times (last: {worker_id})")
            end_failed(rt, node, epoch_id, {packet: port for port, packet in salvo}, error)
            rt.queue.complete(epoch_id, "failed")
            self.applied(epoch_id)
            return
        if cfg.defer_net_actions:
            rt.journal.record("RecoverEpoch", [], epoch_id=epoch_id, node_name=node,
                              data={"reason": f"worker {worker_id} died: the deferred epoch runs again"})
            rt.journal.add("UPDATE epoch_jobs SET state = 'queued', worker = NULL, claimed_at = NULL, "
                           "lease_until = NULL WHERE epoch_id = ?", (epoch_id,))
            rt.journal.add("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (epoch_id,))
            rt.journal.commit()
            pool.signal(1)
            return
        _condition, salvo = rt.sim.epoch_salvo(epoch_id)
        ports = {packet: port for port, packet in salvo}
        end_cancelled(rt, node, epoch_id, ports, reason="interrupted", error=f"{INTERRUPTED} (worker {worker_id})")
        rt.journal.set_epoch_error(epoch_id, "cancelled", f"{INTERRUPTED} (worker {worker_id})", "Interrupted")
        rt.queue.complete(epoch_id, "cancelled")
        self.applied(epoch_id)

    def applied(self, epoch_id: str) -> None:
        pool = self.dispatched.pop(epoch_id, None)
        if pool is not None:
            self.pools[pool].outstanding -= 1

    def stop(self) -> None:
        for pool in self.pools.values():
            pool.stop()
        self.pools.clear()
        self.started = False


def apply_result(rt: Runtime, epoch_id: str, payload: bytes) -> str:
    """Apply one worker result to the net (buffered with the deletion of its row)."""
    outcome, salvo, queue, received = read_outcome(payload)
    node = rt.sim.node_of_epoch(epoch_id)
    kind = apply_remote(rt, node, epoch_id, [tuple(p) for p in salvo], outcome, queue, received)
    rt.queue.complete(epoch_id, kind)
    rt.journal.add("DELETE FROM epoch_results WHERE epoch_id = ?", (epoch_id,))
    return kind
