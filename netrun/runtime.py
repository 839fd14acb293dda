"""The runner: run-until-blocked, queue ready epochs, run them, apply their results.

Main-thread execution. Every epoch goes through the epoch job queue table: `run_step`
enqueues the startable epochs (downstream nodes first, so backlogs drain), then the
main worker claims them one by one. Claiming a job, starting its epoch in the sim and
committing the previous epoch's results share one transaction, so an epoch costs one
commit and the `running` state is durable before user code runs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import apsw
import netrun_sim as ns

from .capture import Capture, capturing, install
from .clock import iso
from .config import NetConfig, NodeConfig
from .deadletters import DeadLetterQueue
from .epoch import EpochRun, run_sync, write_logs
from .errors import ConfigError, NodeExecutionFailed, NotFoundError
from .graphio import node_depths
from .history import HistoryLog
from .inbox import Inbox
from .journal import Journal
from .control import Controller
from .pools import PoolManager
from .queue import EpochQueue, Job
from .sim import Event, Sim
from .values import ValueStore, resolve_sync

if TYPE_CHECKING:
    from .net import Net

MAIN_WORKER = "main"
START_BATCH = 1_000  # start() runs at most this many epochs per step (bounded backlogs)
DRAIN_EVERY = 1_000  # move packets off edges after this many epochs within a step
CLAIM_BATCH = 64  # jobs claimed per transaction


@dataclass
class NodeFunctions:
    exec: Callable[..., Any] | None = None
    start: Callable[..., Any] | None = None
    stop: Callable[..., Any] | None = None
    failed: Callable[..., Any] | None = None


class Runtime:
    """Owns the sim, the journal and the queue of one open net."""

    def __init__(self, net: Net, graph: ns.Graph, conn: apsw.Connection, config: NetConfig) -> None:
        self.net = net
        self.config = config
        self.clock = config.clock
        self.graph = graph
        self.graph_nodes = graph.nodes()
        self.sim = Sim(graph)
        self.journal = Journal(conn, config.clock)
        self.values = ValueStore(self.journal, keep_consumed=config.consumed_packet_storage,
                                 keep_limit=config.consumed_packet_storage_limit,
                                 keep_path=config.consumed_packet_storage_path)
        self.queue = EpochQueue(self.journal, config.clock)
        self.history = HistoryLog(max_size=config.history_max_size, path=config.history_file,
                                  chunk_size=config.history_chunk_size)
        self.journal.commit_hooks.append(self.history)
        self.functions = {name: NodeFunctions() for name in self.graph_nodes}
        self.configs = {name: NodeConfig() for name in self.graph_nodes}
        # node -> {"in": {port: PortType}, "out": {...}}, only for nodes with typed ports
        self.port_types: dict[str, dict[str, dict]] = {}
        self.depth = node_depths(graph)
        # Startable epochs: not yet queued (per node, in creation order) and queued.
        # OrderedDict: popping the oldest is O(1) (a plain dict's first key is found by
        # scanning past deleted slots, quadratic over a large backlog).
        self.waiting: dict[str, OrderedDict[str, None]] = {name: OrderedDict() for name in self.graph_nodes}
        self.queued: dict[str, str] = {}
        self.paused = False
        self.started = False
        self.running: set[str] = set()  # epochs whose user code is running
        self.attempt_base: dict[str, int] = {}  # epoch -> attempts recorded before a resume
        self.inbox = Inbox(self)
        self.pools = PoolManager(self)
        self.control = Controller(self)
        self.queued_per_node: Counter[str] = Counter()
        self._to_signal: Counter[str] = Counter()
        self.dead_letters = DeadLetterQueue(self)
        self._to_raise: BaseException | None = None
        self._last_start: dict[str, float] = {}

    # -- lookups ----------------------------------------------------------------------
    def node(self, name: str) -> ns.Node:
        try:
            return self.graph_nodes[name]
        except KeyError:
            raise NotFoundError(f"the graph has no node {name!r} (nodes: {', '.join(sorted(self.graph_nodes))})",
                                node_name=name) from None

    def startable_epochs(self, node: str | None = None) -> list[str]:
        nodes = [node] if node is not None else list(self.graph_nodes)
        out: list[str] = []
        for name in nodes:
            out.extend(self.waiting[name])
        out.extend(e for e, n in self.queued.items() if node is None or n == node)
        out.extend(self.inbox.epochs(node))
        return out

    def startable_in_sim(self) -> int:
        return len(self.queued) + sum(len(w) for w in self.waiting.values())

    # -- tracking epochs from events ------------------------------------------------------
    def track(self, events: list[Event]) -> None:
        for ev in events:
            kind = ev.kind
            if kind == "EpochCreated":
                self.waiting[ev.node_name][ev.epoch_id] = None
            elif kind in ("EpochStarted", "EpochCancelled", "EpochFinished"):
                if kind != "EpochStarted":
                    self.control.counts[(ev.node_name, "finished" if kind == "EpochFinished" else "cancelled")] += 1
                node = self.queued.pop(ev.epoch_id, None)
                if node is not None:
                    self.queued_per_node[node] -= 1
                elif ev.node_name is not None:
                    self.waiting[ev.node_name].pop(ev.epoch_id, None)

    def do(self, action: str, events: list[Event], **fields: Any) -> None:
        self.journal.record(action, events, **fields)
        self.track(events)

    # -- injecting work ------------------------------------------------------------------
    # -- running ----------------------------------------------------------------------------
    def ensure_started(self) -> None:
        """Call every node's start function once, the first time the net runs."""
        if self.started:
            return
        self.started = True
        self.pools.ensure_started()
        for name, funcs in self.functions.items():
            if funcs.start is not None and not self._started_by_workers(name):
                self._call_lifecycle(name, "start_node_func", funcs.start)

    def _started_by_workers(self, node: str) -> bool:
        """Pool nodes' start/stop functions run in each worker, unless a thread pool node says "global"."""
        cfg = self.configs[node]
        if cfg.pool is None:
            return False
        names = [cfg.pool] if isinstance(cfg.pool, str) else cfg.pool
        in_process = any(n in self.config.process_pools for n in names)
        return in_process or cfg.pool_init_mode == "per_worker"

    def stop_nodes(self) -> None:
        """Call every node's stop function; all are called even if one raises (the first error is raised)."""
        if not self.started:
            return
        self.started = False
        first: BaseException | None = None
        for name, funcs in self.functions.items():
            if funcs.stop is not None and not self._started_by_workers(name):
                try:
                    self._call_lifecycle(name, "stop_node_func", funcs.stop)
                except NodeExecutionFailed as exc:
                    first = first or exc
        if first is not None:
            raise first

    def _call_lifecycle(self, node: str, role: str, func: Callable[..., Any]) -> None:
        cfg = self.configs[node]
        with capturing(cfg.capture_stdout, cfg.echo_stdout) as capture:
            try:
                resolve_sync(func(self.net))
            except Exception as exc:
                raise NodeExecutionFailed(f"{role} of node {node!r} raised {type(exc).__name__}: {exc}",
                                          node_name=node) from exc
            finally:
                self.write_logs(None, node, capture)
        self.journal.commit()

    def run_until_blocked(self) -> None:
        events = self.sim.run_until_blocked()
        self.do("RunNetUntilBlocked", events)
        for ev in events:
            if ev.kind == "EpochCreated":
                condition, packets = self.sim.epoch_salvo(ev.epoch_id)
                self.journal.set_epoch_salvo(ev.epoch_id, condition, packets)

    @property
    def has_async_nodes(self) -> bool:
        return any(inspect.iscoroutinefunction(f.exec) for f in self.functions.values() if f.exec is not None)

    def run_step(self, *, start_epochs: bool = True, limit: int | None = None) -> int:
        """One step: run until blocked, queue the ready epochs, run them. Returns epochs run.

        A net with async exec functions runs the step in an event loop of its own, so
        that its async epochs overlap.
        """
        if self.has_async_nodes:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self.async_run_step(start_epochs=start_epochs, limit=limit))
            raise ConfigError("this net has async node functions and an event loop is running: "
                              "use `await net.async_run_step()` / `await net.async_start()`")
        self._begin_step(start_epochs, limit)
        ran = run_sync(self._drain(asynchronous=False)) if start_epochs else 0
        self.journal.commit()
        self._raise_pending()
        return ran

    async def async_run_step(self, *, start_epochs: bool = True, limit: int | None = None) -> int:
        """`run_step` in the running event loop: async epochs of a batch run concurrently."""
        self._begin_step(start_epochs, limit)
        ran = await self._drain(asynchronous=True) if start_epochs else 0
        self.journal.commit()
        self._raise_pending()
        return ran

    def _begin_step(self, start_epochs: bool, limit: int | None) -> None:
        self.ensure_started()
        self.inbox.admit()
        self.run_until_blocked()
        if start_epochs:
            self._enqueue_ready(limit)

    def _claim_batch(self) -> list[Job]:
        """Commit what is buffered and claim the next main-thread jobs, in one transaction."""
        return self.journal.commit(then=lambda conn: self.queue.claim_in(conn, MAIN_WORKER, limit=CLAIM_BATCH))

    def _start_job(self, job: Job) -> None:
        self._wait_for_rate_limit(job.node_name)
        self.do("StartEpoch", self.sim.start_epoch(job.epoch_id), epoch_id=job.epoch_id, node_name=job.node_name)
        if not self.configs[job.node_name].defer_net_actions:
            self.journal.commit()  # durable before the node's code runs (never run twice)

    def _run_job(self, job: Job) -> None:
        run_sync(self._run_job_async(job, asynchronous=False))

    async def _run_job_async(self, job: Job, *, asynchronous: bool = True) -> None:
        self.running.add(job.epoch_id)
        try:
            outcome = await EpochRun(self, job).run_async(asynchronous=asynchronous)
        finally:
            self.running.discard(job.epoch_id)
        self.queue.complete(job.epoch_id, outcome)

    def run_until_done(self) -> int:
        """Steps until nothing can run (or the net pauses). Returns epochs run."""
        return run_sync(self._until_done(asynchronous=False))

    async def async_run_until_done(self) -> int:
        return await self._until_done(asynchronous=True)

    async def _until_done(self, *, asynchronous: bool) -> int:
        total = 0
        while True:
            ran = await self.async_run_step(limit=START_BATCH) if asynchronous else self.run_step(limit=START_BATCH)
            total += ran
            if ran == 0 or self.paused:
                break
            self.control.lock.hand_over()  # callers from other threads go between two steps
        if self.config.history_flush_on_pause:
            self.history.flush()
        return total

    def _enqueue_ready(self, limit: int | None) -> None:
        budget = limit if limit is not None else float("inf")
        for name in sorted(self.graph_nodes, key=lambda n: -self.depth[n]):
            if budget <= 0:
                break
            if self.functions[name].exec is None:
                continue  # no exec function: its epochs stay startable
            waiting = self.waiting[name]
            priority = self.depth[name]
            cfg = self.configs[name]
            room = budget if cfg.max_parallel_epochs is None else \
                min(budget, cfg.max_parallel_epochs - self.queued_per_node[name])
            while waiting and room > 0:
                epoch_id, _ = waiting.popitem(last=False)
                self.queued[epoch_id] = name
                self.queued_per_node[name] += 1
                pool = self.pools.select(name) if cfg.pool is not None else None
                if pool is not None and cfg.rate_limit_per_second:
                    self._wait_for_rate_limit(name)  # a pool epoch starts as soon as it is queued
                self.queue.enqueue(epoch_id, name, priority, pool)
                if pool is not None:
                    self.pools.dispatch(epoch_id, pool)
                    self._to_signal[pool] += 1
                budget -= 1
                room -= 1

    def _signal_pools(self) -> None:
        """Wake workers for the jobs enqueued since the last signal (after they are committed)."""
        if self._to_signal:
            self.journal.commit()
            self.pools.signal_all(self._to_signal)
            self._to_signal.clear()

    async def _drain(self, *, asynchronous: bool) -> int:
        """Claim jobs in batches and run them; returns how many epochs ran.

        A non-deferred epoch's start is committed before its function runs (killed
        mid-epoch, it is found `running`). A deferred epoch needs no such commit: killed,
        nothing of it was committed and it runs again. So runs of deferred epochs share
        one commit per batch. `asynchronous`: async epochs of a batch run as concurrent
        tasks of the running loop; otherwise nothing here suspends (see `run_sync`).
        """
        ran = 0
        self._signal_pools()
        while not self.paused:
            jobs = self._claim_batch()
            if not jobs:
                break
            started = 0
            tasks: list[asyncio.Future] = []
            try:
                for job in jobs:
                    if self.paused:
                        break
                    self._start_job(job)
                    started += 1
                    if asynchronous and inspect.iscoroutinefunction(self.functions[job.node_name].exec):
                        tasks.append(asyncio.ensure_future(self._run_job_async(job)))
                    else:
                        self._run_job(job)
                    ran += 1
                    if self.pools.dispatched:
                        ran += self.pools.collect(block=False)
                    if ran % DRAIN_EVERY == 0:
                        self.run_until_blocked()
                    self.journal.commit_if_large()
                    if not tasks:  # between two jobs the state is whole: callers from other threads go
                        self.control.lock.hand_over()
                if tasks:
                    await asyncio.gather(*tasks)
            finally:
                # Jobs claimed but never started go back to the queue, whatever happened.
                self.queue.release([j.epoch_id for j in jobs[started:]])
        # Pool epochs run on while paused: running epochs finish, and their results apply.
        if not asynchronous:
            return ran + self.pools.collect(block=True)
        while self.pools.dispatched:
            applied = self.pools.collect(block=False)
            ran += applied
            if not applied:
                await asyncio.sleep(0.002)
        return ran

    def _wait_for_rate_limit(self, node: str) -> None:
        rate = self.configs[node].rate_limit_per_second
        if rate:
            last = self._last_start.get(node)
            if last is not None:
                wait = last + 1.0 / rate - self.clock.monotonic()
                if wait > 0:
                    self.clock.sleep(wait)
            self._last_start[node] = self.clock.monotonic()

    def node_failed(self, failure: NodeExecutionFailed) -> None:
        """Apply the net's error policy to a failed epoch.

        An error_callback that raises is recorded in the node's log and chained onto
        the failure as a note; it never stops the failure flow.
        """
        if self.config.error_callback is not None:
            try:
                self.config.error_callback(failure)
            except Exception as exc:  # noqa: BLE001 - recorded below
                text = f"error_callback raised {type(exc).__name__}: {exc}"
                failure.add_note(text)
                self.journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                                 (getattr(failure, "epoch_id", None), failure.node_name, self.journal.now(), text))
        node = failure.node_name
        self.control.counts[(node, "failed")] += 1
        self.control.counts[(node, "cancelled")] -= 1  # the failed epoch was counted when cancelled
        policy = self.config.on_error
        if policy in ("pause", "raise"):
            self.pause()
        if policy == "raise" and self._to_raise is None:
            self._to_raise = failure

    def _raise_pending(self) -> None:
        if self._to_raise is not None:
            failure, self._to_raise = self._to_raise, None
            raise failure

    def pause(self) -> None:
        self.paused = True
        if self.config.history_flush_on_pause:
            self.journal.commit()
            self.history.flush()

    def write_logs(self, epoch_id: str | None, node: str, capture: Capture | None) -> None:
        write_logs(self.journal, epoch_id, node, capture)

    # -- registration ---------------------------------------------------------------------------
    def set_functions(self, node: str, funcs: NodeFunctions) -> None:
        self.node(node)
        for func in (funcs.exec, funcs.start, funcs.stop, funcs.failed):
            if func is not None:
                install(func)
        self.functions[node] = funcs

    def now_iso(self) -> str:
        return iso(self.clock.now())
