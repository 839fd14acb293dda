"""The owner loop: the one place that changes a net's run state.

One thread owns netrun-sim, the run state and the write connection while the net runs
(see `owner.py`). Its loop, repeated until nothing can run (or the net pauses):

1. answer the calls other threads handed over (`Owner.serve`), and the stops and injections
   other processes asked for (`RequestDesk.poll`: a clock read, a look every 0.1 s);
2. apply what arrived: pool results, ended async epochs; sweep expired leases;
3. let the sim advance (admit injected work, run until blocked) and dispatch what became
   startable at once, downstream nodes first and with bounded work in flight: pool epochs
   become `queued` jobs (a not-before time carries the node's rate limit), main-thread
   epochs go to `ready`;
4. start the next due main-thread epoch and run it, or commit once and wait for the next
   arrival.

No step barrier: a pool result is applied as soon as it arrives, and the epochs it makes
startable are dispatched while the rest still run. Everything written between two waits
is one transaction; the one forced commit is the crash contract's: a non-deferred epoch
is durably `running` before its code runs. `run_step()` keeps its spec meaning: one round
(the epochs startable at its start run to completion; nothing else starts).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw
import netrun_sim as ns

from .capture import Capture, capturing, install
from .clock import SystemClock, iso
from .config import NetConfig, NodeConfig
from .context import NodeNet
from .deadletters import DeadLetterQueue
from .epoch import EpochEnds, EpochRun, run_sync, write_logs
from .tracebacks import error_text
from .errors import ConfigError, ContextUsageError, NetClosedError, NodeExecutionFailed, StorageError
from .graphio import get_node, node_depths, node_shape
from .history import HistoryLog
from .host import NetHandle, NodeFunctions
from .inbox import Inbox
from .dialect import is_url
from .intents import ServerStartLog, StartLog
from .jobs import Claim, NewJob, next_seq
from .journal import Journal
from .control import Controller
from .owner import Owner
from .pools import PoolHost, PoolManager, apply_result
from .reentry import reentrant_point
from .request_desk import RequestDesk
from .restore import Restorer
from .retention_policy import RetentionPolicy
from .sim import Event, Sim
from .values import ValueStore, resolve_sync
from .worker import in_worker_thread

READY_AHEAD = 16  # main-thread epochs of one node dispatched ahead of the one running
LOW_WATER = 8  # below this many ready main-thread epochs, the sim is advanced again...
ADVANCE_EVERY = 8  # ...and after this many main-thread epochs (downstream work shows up early)
GROUP_LIMIT = 256  # deferred main-thread epochs that may share one commit...
GROUP_SECONDS = 0.05  # ...and for at most this long (readers see progress; a crash re-runs little)
INTENT_LIMIT = 64  # non-deferred epochs whose starts are logged, not committed: a crash dead-letters their inputs
HAND_OVER = 0.0002  # seconds the loop pauses after answering calls from other threads
LINGER = 0.001  # seconds the loop waits for more pool results before it commits (while FRESH_WAIT allows)
FRESH_WAIT = 0.005  # seconds a non-deferred epoch whose inputs are not committed yet may wait for a commit
QUICK_EPOCH = 0.002  # a node whose last sync epoch ran shorter may share commits; a slower one commits first


@dataclass
class Ready:
    """A main-thread epoch dispatched and not yet started: due at `due` (monotonic seconds)."""

    epoch_id: str
    node_name: str
    due: float
    depth: int = 0


class Runtime:
    """The run state of one open net, and the owner loop that changes it."""

    def __init__(self, net: NetHandle, graph: ns.Graph, conn: apsw.Connection, config: NetConfig) -> None:
        self.net = net
        self.config = config
        self.clock = config.clock
        self.graph = graph
        self.graph_nodes = graph.nodes()
        self.node_shapes = {name: node_shape(node) for name, node in self.graph_nodes.items()}
        self.sim = Sim(graph)
        self.owner = Owner()
        self.journal = Journal(conn, config.clock)
        self.values = ValueStore(self.journal, keep_consumed=config.consumed_packet_storage,
                                 keep_limit=config.consumed_packet_storage_limit,
                                 keep_path=config.consumed_packet_storage_path)
        self.history = HistoryLog(max_size=config.history_max_size, path=config.history_file,
                                  chunk_size=config.history_chunk_size)
        self.journal.commit_hooks.append(self.history)
        self.retention = RetentionPolicy(conn, net.db_url, config.retention, config.clock) if config.retention else None
        # Start intents of non-deferred epochs (netrun.intents); "full" durability commits each start.
        # PostgreSQL keeps no side file: non-deferred starts are committed, and the running deferred sync
        # epoch is marked on the server (its death is counted).
        self.starts: StartLog | ServerStartLog | None = None
        if net.db_path:
            self.starts = ServerStartLog(net.db_url, net.db_path) if is_url(net.db_path) else StartLog(net.db_path)
        # Non-deferred starts are logged instead of committed under "normal" only (a file's); deferred
        # starts under both (deaths are counted). False once the side file could not be written.
        self._log_starts = isinstance(self.starts, StartLog) and config.durability == "normal"
        self._log_deferred = self.starts is not None
        if self.starts is not None:
            self.journal.commit_hooks.append(lambda _actions: self._intents_committed())
        self.functions = {name: NodeFunctions() for name in self.graph_nodes}
        self.configs = {name: NodeConfig() for name in self.graph_nodes}
        # node -> {"in": {port: PortType}, "out": {...}}, only for nodes with typed ports
        self.port_types: dict[str, dict[str, dict]] = {}
        self.depth = node_depths(graph)
        self._by_depth = sorted(self.graph_nodes, key=lambda n: -self.depth[n])
        # Startable epochs not yet dispatched, per node in creation order. OrderedDict: popping
        # the oldest is O(1) (a plain dict's first key is found by scanning past deleted slots).
        self.waiting: dict[str, OrderedDict[str, None]] = {name: OrderedDict() for name in self.graph_nodes}
        self.ready: deque[Ready] = deque()  # main-thread epochs dispatched, not yet started
        self.ready_count: Counter[str] = Counter()
        self.inflight: Counter[str] = Counter()  # node -> epochs dispatched and not ended (max_parallel)
        self.running: set[str] = set()  # main-thread epochs whose user code is running
        self.running_count: Counter[str] = Counter()
        self.next_start: dict[str, float] = {}  # node -> monotonic time its next epoch may start
        self.outcomes: Counter[tuple[str, str]] = Counter()  # (node, finished|failed|cancelled) -> epochs
        self.paused = False
        self.started = False
        self.looping = False  # the owner loop is running (in the owning thread)
        self.closing = False  # close() began: no run may begin (checked as the owner)
        self.loop_number = 0  # counts the owner loops begun (pause() from another thread waits for one)
        self._since_advance = 0  # main-thread epochs run since the sim last advanced
        self.attempt_base: dict[str, int] = {}  # epoch -> attempts recorded before a resume
        self.job_seq = next_seq(conn)
        # The parts receive the collaborators they use; run state changes only here (the owner's
        # operations they may call are passed as callables).
        self.inbox = Inbox(self.journal, self.values, self.sim, self.graph_nodes, track=self.track,
                           startable_in_sim=self.startable_in_sim,
                           most_in_flight=lambda: self.pools.most_in_flight)
        self.dead_letters = DeadLetterQueue(config, self.journal, self.owner, self.inbox, self.graph_nodes)
        self.ends = EpochEnds(sim=self.sim, journal=self.journal, values=self.values, dead_letters=self.dead_letters,
                              configs=self.configs, do=self.do, abandon=self.abandon,
                              node_failed=self.node_failed, restart=self.restart)
        self.pools = PoolManager(PoolHost(config=config, configs=self.configs, functions=self.functions, clock=self.clock,
                                          journal=self.journal, values=self.values, sim=self.sim, owner=self.owner,
                                          net=net, attempt_base=self.attempt_base,
                                          forget_attempts=lambda epoch: self.attempt_base.pop(epoch, None),
                                          commit=self.commit), self.ends)
        self.control = Controller(self.owner, self.pools, waiting=self.waiting, ready_count=self.ready_count,
                                  running_count=self.running_count, outcomes=self.outcomes,
                                  paused=lambda: self.paused, request_pause=self.request_pause, pause=self.pause,
                                  current_loop=lambda: self.loop_number if self.looping else None)
        # stops and injections other processes ask for
        self.requests = RequestDesk(self.journal, self.values, self.sim, self.graph_nodes, self.inbox,
                                    request_pause=self.request_pause, commit=self.commit)
        self._to_raise: BaseException | None = None
        self._grouped = 0  # deferred main-thread epochs since the last commit
        self._logged = 0  # non-deferred starts logged as intents since the last commit
        self._committed_at = 0.0
        self._tasks: set[asyncio.Future] = set()
        self._started_at: dict[str, str] = {}  # main-thread epoch -> when it started
        self._quick: dict[str, bool] = {}  # node -> whether its last sync main-thread epoch was quick
        self._running_deferred: Claim | None = None  # the deferred sync epoch whose code runs now
        # Main-thread epochs started whose start could not be committed (a storage error stopped the run):
        # when the run goes on, a commit makes their starts durable, then they run first.
        self._unrun: list[Claim] = []
        self._broken: BaseException | None = None  # set by abandon(): the net must be resumed

    # -- lookups ----------------------------------------------------------------------
    def node(self, name: str) -> ns.Node:
        return get_node(self.graph_nodes, name)

    def startable_epochs(self, node: str | None = None) -> list[str]:
        """Every startable epoch, dispatched or not (a pool epoch stays startable in the sim until
        its result is applied); from the owner."""
        nodes = [node] if node is not None else list(self.graph_nodes)
        out: list[str] = []
        for name in nodes:
            out.extend(self.waiting[name])
        out.extend(r.epoch_id for r in self.ready if node is None or r.node_name == node)
        out.extend(self.pools.dispatched_epochs(node))
        out.extend(self.inbox.epochs(node))
        return out

    def startable_in_sim(self) -> int:
        """Startable epochs the sim holds that will run (those of a node without an exec function stay
        startable until it gets one: counting them would stop admission for every other node)."""
        waiting = sum(len(w) for name, w in self.waiting.items() if self.functions[name].exec is not None)
        return len(self.ready) + waiting + len(self.pools.dispatched)

    def beat(self) -> None:
        """A running epoch made progress (pool workers renew their lease here; the owner needs nothing)."""

    # -- tracking epochs from events ------------------------------------------------------
    def track(self, events: list[Event]) -> None:
        for ev in events:
            kind = ev.kind
            if kind == "EpochCreated":
                self.waiting[ev.node_name][ev.epoch_id] = None
            elif kind == "EpochCancelled" or kind == "EpochFinished":
                self.outcomes[(ev.node_name, "finished" if kind == "EpochFinished" else "cancelled")] += 1
                if ev.epoch_id in self.running:  # a main-thread epoch: no longer running once counted ended
                    self.running.discard(ev.epoch_id)
                    self.running_count[ev.node_name] -= 1
                if ev.node_name is not None and self.waiting[ev.node_name].pop(ev.epoch_id, 0) is None:
                    continue  # never dispatched
                self.inflight[ev.node_name] -= 1

    def do(self, action: str, events: list[Event], **fields: Any) -> None:
        self.journal.record(action, events, **fields)
        self.track(events)

    # -- starting and stopping nodes ------------------------------------------------------------
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
        in_process = any(n in self.config.process_pools or n in self.config.remote_pools for n in names)
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

    @reentrant_point
    def _call_lifecycle(self, node: str, role: str, func: Callable[..., Any]) -> None:
        cfg = self.configs[node]
        with capturing(cfg.capture_stdout, cfg.echo_stdout) as capture:
            try:
                resolve_sync(func(NodeNet(self.net, node, cfg.params)))
            except Exception as exc:
                raise NodeExecutionFailed(f"{role} of node {node!r} raised {type(exc).__name__}: {exc}",
                                          node_name=node) from exc
            finally:
                self.write_logs(None, node, capture)
        self.journal.commit()

    # -- the sim advancing -------------------------------------------------------------------
    def run_until_blocked(self) -> None:
        events = self.sim.run_until_blocked()
        self.do("RunNetUntilBlocked", events)
        for ev in events:
            if ev.kind == "EpochCreated":
                condition, packets = self.sim.epoch_salvo(ev.epoch_id)
                self.journal.set_epoch_salvo(ev.epoch_id, condition, packets)

    def advance(self) -> None:
        """Admit injected work and let the sim run until blocked (if anything changed)."""
        self._since_advance = 0
        self.inbox.admit()
        if self.sim.changed:
            self.run_until_blocked()

    @property
    def has_async_nodes(self) -> bool:
        return any(inspect.iscoroutinefunction(f.exec) for f in self.functions.values() if f.exec is not None)

    # -- dispatching ---------------------------------------------------------------------------
    def dispatch(self, *, limit: float | None = None, bounded: bool = True) -> None:
        """Hand startable epochs to the main thread (`ready`) or a pool (a queued job), downstream
        nodes first. `bounded`: keep only a little work ahead of the workers (continuous flow)."""
        budget = limit if limit is not None else float("inf")
        now = self.clock.monotonic()
        for name in self._by_depth:
            if budget <= 0:
                break
            waiting = self.waiting[name]
            if not waiting or self.functions[name].exec is None:
                continue  # no exec function: its epochs stay startable
            cfg = self.configs[name]
            room = budget
            if cfg.max_parallel_epochs is not None:
                room = min(room, cfg.max_parallel_epochs - self.inflight[name])
            if cfg.pool is None and bounded:
                room = min(room, READY_AHEAD - self.ready_count[name])
            while waiting and room > 0:
                pool = None
                if cfg.pool is not None:
                    pool = self.pools.select(name)  # per epoch: round robin alternates
                    if bounded and self.pools.room(pool, name) <= 0:
                        break
                epoch_id, _ = waiting.popitem(last=False)
                due = self._due(name, cfg, now)
                self.inflight[name] += 1
                if pool is None:
                    self.ready.append(Ready(epoch_id, name, due, self.depth[name]))
                    self.ready_count[name] += 1
                else:
                    self.pools.dispatch(epoch_id, name, pool, self._job(epoch_id, name, pool, due, now))
                budget -= 1
                room -= 1
        self.pools.assign()

    def _due(self, node: str, cfg: NodeConfig, now: float) -> float:
        """When an epoch of `node` dispatched now may start: its rate limit, as data."""
        rate = cfg.rate_limit_per_second
        if not rate:
            return now
        due = max(now, self.next_start.get(node, now))
        self.next_start[node] = due + 1.0 / rate
        return due

    def _job(self, epoch_id: str, node: str, pool: str, due: float, now: float) -> NewJob:
        self.job_seq += 1
        stamp = self.journal.now()
        not_before = None
        if due > now:
            from datetime import timedelta

            not_before = iso(self.clock.now() + timedelta(seconds=due - now))
        return NewJob(epoch_id, self.job_seq, node, self.depth[node], pool, "queued", None, stamp, not_before)

    def withdraw(self) -> None:
        """On pause: dispatched epochs that have not started go back to waiting, first in line."""
        withdrawn: Counter[str] = Counter()
        while self.ready:
            item = self.ready.pop()
            self.ready_count[item.node_name] -= 1
            self._undispatch(item.epoch_id, item.node_name)
            withdrawn[item.node_name] += 1
        for epoch_id, node in self.pools.withdraw_queued():
            self._undispatch(epoch_id, node)
            withdrawn[node] += 1
        # A rate-limited node's epochs were each given the next start slot when dispatched; the slots
        # of those withdrawn (the latest ones: the others started in slot order) are free again, else
        # the next run would wait for starts that never happened (k / rate seconds)
        for node, count in withdrawn.items():
            rate = self.configs[node].rate_limit_per_second
            if rate and node in self.next_start:
                self.next_start[node] -= count / rate

    def _undispatch(self, epoch_id: str, node: str) -> None:
        self.inflight[node] -= 1
        self.waiting[node][epoch_id] = None
        self.waiting[node].move_to_end(epoch_id, last=False)

    # -- running main-thread epochs ----------------------------------------------------------------
    def _next_ready(self, now: float) -> Ready | float:
        """The due ready epoch of the deepest node, oldest first (removed from `ready`), or the time
        the earliest one is due. Downstream first: a backlog upstream never holds back its results."""
        best = -1
        earliest = float("inf")
        ready = self.ready
        for i, item in enumerate(ready):
            if item.due <= now:
                if best < 0 or item.depth > ready[best].depth:
                    best = i
            elif item.due < earliest:
                earliest = item.due
        if best < 0:
            return earliest
        item = ready[best]
        del ready[best]
        return item

    def _start(self, item: Ready) -> Claim:
        """Start a ready epoch in the sim. It stays counted as startable (`ready_count`) until its code
        runs (`_run_job`): poll() counts every epoch once, while its start is committed too."""
        job = Claim(item.epoch_id, item.node_name, 0)
        self.do("StartEpoch", self.sim.start_epoch(job.epoch_id), epoch_id=job.epoch_id, node_name=job.node_name)
        self._started_at[job.epoch_id] = self.journal.now()
        return job

    def _start_one(self, item: Ready) -> Claim:
        """Start a sync main-thread epoch. The crash contract: a non-deferred epoch is durably `running`
        before its code runs. Under durability "normal" its start intent is appended to a side file
        (netrun.intents) unless the buffer holds work that a crash would run again with new IDs;
        otherwise its start is committed with everything before it. A deferred one's start shares
        the commit of its end (killed, nothing of it was committed: it runs again).

        Starts share a commit only while their node's last epoch was quick: before an epoch that may
        take long, what the buffer holds is committed, so readers see it meanwhile. The group is
        committed when due (new pool jobs wait for it; `GROUP_*` bound it)."""
        node = item.node_name
        deferred = self.configs[node].defer_net_actions
        quick = self._quick.get(node, False)
        # With rerunnable work buffered, a start may still be logged when its inputs are on disk: a crash
        # then dead-letters them, whatever else the lost buffer held (its inputs never were its outputs).
        logged = not deferred and quick and self._log_starts and \
            (not self.journal.rerunnable or not self._fresh_inputs(item.epoch_id))
        if (deferred or logged) and (not quick or self.pools.starving() or self._grouped >= GROUP_LIMIT
                                     or (logged and self._logged >= INTENT_LIMIT)
                                     or self.clock.monotonic() - self._committed_at > GROUP_SECONDS):
            try:
                self.commit()
            except BaseException:
                self.ready.insert(0, item)  # not started: back in line (`withdraw` returns it to waiting)
                raise
        job = self._start(item)
        if deferred:
            self.journal.rerunnable = True  # its end, if lost, runs it again
            if self._log_deferred:
                self._log_start(job, deferred=True)
                self._running_deferred = job
        elif logged and self._log_start(job):
            self._logged += 1
        else:
            try:
                self.commit()
            except BaseException:
                self._unrun.append(job)  # started, not durably: it runs once a commit makes it so
                raise
            return job
        self._grouped += 1
        self.journal.commit_if_large()
        return job

    def _linger(self) -> list:
        """Pool results are on their way and no worker waits for the jobs the buffer holds: wait a moment
        for them (they share the next commit) while the buffer is young. Returns what arrived."""
        if not self.pools.dispatched or self.pools.starving() or \
                self.clock.monotonic() - self._committed_at > FRESH_WAIT or not isinstance(self.clock, SystemClock):
            return self.owner.wait(0)
        return self.owner.wait(LINGER)

    def _waits_for_commit(self, item: Ready) -> bool:
        """Whether a non-deferred epoch would have to commit to start (an input made by work a crash would
        run again, still in the buffer), while the buffer is young: it then waits for the next commit."""
        node = item.node_name
        if self.configs[node].defer_net_actions or not self.journal.rerunnable or not self._log_starts \
                or not self._quick.get(node, False) or self.clock.monotonic() - self._committed_at > FRESH_WAIT:
            return False
        return self._fresh_inputs(item.epoch_id)

    def _fresh_inputs(self, epoch_id: str) -> bool:
        """Whether an input packet of the epoch was made since the last commit."""
        fresh = self.journal.is_new_packet
        return any(fresh(packet) for _port, packet in self.sim.epoch_salvo(epoch_id)[1])

    def _intents_committed(self) -> None:
        """The database holds every start logged: empty the file, but for the deferred sync epoch running
        now (a commit in its middle, a query from its code say, must not erase the trace of its death)."""
        self.starts.committed()
        if self._running_deferred is not None and self._log_deferred:
            self._log_start(self._running_deferred, deferred=True)

    def _deferred_returned(self, job: Claim, returned: bool) -> None:
        """The running deferred sync epoch's code returned (True): its start intent is taken back, so a kill
        before its end is committed is no death of it (it runs again); or its end failed the attempt
        (False): the failure function and a retry run its code again, so the intent is written again."""
        if returned:
            self._running_deferred = None  # (a commit meanwhile must not write it again)
            self.starts.ended_deferred()
        else:
            self._running_deferred = job
            self._log_start(job, deferred=True)

    def _log_start(self, job: Claim, *, deferred: bool = False) -> bool:
        """Append the start intent; False (and no more intents) if the side file cannot be written."""
        try:
            if deferred:
                self.starts.write_deferred(job.epoch_id, job.node_name)
            else:
                self.starts.write(job.epoch_id, job.node_name, self.sim.epoch_salvo(job.epoch_id)[1],
                                  self._started_at[job.epoch_id])
        except OSError as exc:
            self._no_intents(job, exc)
            return False
        return True

    def _no_intents(self, job: Claim, exc: OSError) -> None:
        """The side file cannot be written (full disk, a read-only folder): non-deferred starts are
        committed instead, and deaths of deferred epochs are no longer counted."""
        self.journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                         (job.epoch_id, job.node_name, self.journal.now(),
                          f"netrun: cannot write {self.starts.path} ({exc}); starts are committed instead"))
        self._log_starts = self._log_deferred = False

    async def _run_job(self, job: Claim, *, asynchronous: bool) -> None:
        self.running.add(job.epoch_id)
        self.ready_count[job.node_name] -= 1
        self.running_count[job.node_name] += 1
        try:
            logged = self._running_deferred is not None and self._running_deferred.epoch_id == job.epoch_id
            run = EpochRun(self.ends, self, job, self.sim.epoch_salvo(job.epoch_id)[1], self.configs[job.node_name],
                           self.functions[job.node_name], self.attempt_base.pop(job.epoch_id, 0),
                           returned=functools.partial(self._deferred_returned, job) if logged and self._log_deferred
                           else None)
            await run.run_async(asynchronous=asynchronous)
        finally:
            if job.epoch_id in self.running:  # not counted as ended yet (see `track`)
                self.running.discard(job.epoch_id)
                self.running_count[job.node_name] -= 1
            # A main-thread epoch has no job row: its attempt row (epoch_attempts) is its record.
            self._started_at.pop(job.epoch_id, None)

    def commit(self) -> None:
        """Commit what the owner wrote since its last commit, then wake the workers for new jobs."""
        self._grouped = self._logged = 0
        self._committed_at = self.clock.monotonic()
        self.pools.before_commit()
        self.journal.commit()
        self.pools.signal()

    # -- the loop --------------------------------------------------------------------------------------
    def run_step(self, *, start_epochs: bool = True, limit: int | None = None, unpause: bool = False) -> int:
        """One round: run until blocked, start the ready epochs, run them to completion. Returns epochs run.
        `unpause`: a pause asked before this run is cleared once the run owns the net (see `unpause`)."""
        return self._run_sync(round_=True, start_epochs=start_epochs, limit=limit, unpause=unpause)

    def run_until_done(self, *, unpause: bool = False) -> int:
        """Run until nothing can run (or the net pauses). Returns epochs run."""
        return self._run_sync(round_=False, unpause=unpause)

    async def async_run_step(self, *, start_epochs: bool = True, limit: int | None = None,
                             unpause: bool = False) -> int:
        return await self._run(asynchronous=True, round_=True, start_epochs=start_epochs, limit=limit,
                               unpause=unpause)

    async def async_run_until_done(self, *, unpause: bool = False) -> int:
        return await self._run(asynchronous=True, round_=False, unpause=unpause)

    def unpause(self) -> None:
        """A run was asked for (start, run_step): a pause asked before it was meant for the run before.
        Called only when no run is going on (a foreground run, once it owns the net; a background one
        before its thread starts), so that a pause() meant for a running loop is never lost."""
        self.paused = False

    @reentrant_point  # (its event loop runs async node code: between two task steps netrun is at rest)
    def _run_sync(self, **options: Any) -> int:
        """A net with async exec functions runs in an event loop of its own, so its async epochs overlap."""
        if self.has_async_nodes:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return asyncio.run(self._run(asynchronous=True, **options))
            raise ConfigError("this net has async node functions and an event loop is running: "
                              "use `await net.async_run_step()` / `await net.async_start()`")
        return run_sync(self._run(asynchronous=False, **options))

    async def _run(self, *, asynchronous: bool, round_: bool, start_epochs: bool = True,
                   limit: int | None = None, unpause: bool = False) -> int:
        """The owner loop (see the module docstring). With `asynchronous=False` nothing in it suspends."""
        if in_worker_thread(self.net):  # the run waits for this thread's epoch; this thread would wait for the run
            raise ContextUsageError("the net was started or stepped from node code in one of its thread pool's "
                                    "workers, while it runs that code: node code cannot start or step the net that "
                                    "runs it (call net.pause() instead)")
        with self.owner.holding():
            if self.closing:
                raise NetClosedError(f"the net on {self.net.db_path} is closing: close() was called, so no run "
                                     "begins")
            if self._broken is not None:
                raise self._broken
            if self.looping:
                raise ContextUsageError("the net is already running in this thread: node code cannot start or step "
                                        "it again (call net.pause() instead)")
            if unpause:
                self.unpause()
            self.loop_number += 1
            self.looping = True
            try:
                return await self._loop(asynchronous=asynchronous, round_=round_, start_epochs=start_epochs,
                                        limit=limit)
            except apsw.IOError as exc:  # a read of the owner's met a lost server (a commit's says so itself)
                raise StorageError(f"{self.journal.conn.filename}: cannot read ({exc}); nothing committed is lost: "
                                   "start the run again once the database is back, or close and resume",
                                   path=self.journal.conn.filename) from exc
            finally:
                self.looping = False

    async def _loop(self, *, asynchronous: bool, round_: bool, start_epochs: bool, limit: int | None) -> int:
        self.ensure_started()
        ran = 0
        try:
            while self._unrun:  # the run stopped on a storage error with these started: they go first
                self.commit()
                job = self._unrun.pop(0)
                if asynchronous and inspect.iscoroutinefunction(self.functions[job.node_name].exec):
                    self._launch([job])  # counted when it ends (`_reap`)
                    continue
                await self._run_job(job, asynchronous=False)
                ran += 1
            if round_:
                self.advance()
                if start_epochs:
                    self.dispatch(limit=limit, bounded=False)
            notices: list = []
            while True:
                notices += self.owner.wait(0)
                if self.owner.serve():
                    # Let the callers just answered take the GIL: with no commit per epoch the loop
                    # may not release it for a while, and each would wait a switch interval (5 ms).
                    time.sleep(HAND_OVER)
                self.requests.poll()
                ran += self.pools.apply_arrived(notices)
                notices.clear()
                ran += self._reap()
                self.pools.maintain()
                if self.retention is not None:
                    self.retention.tick()
                if self.paused:
                    self.withdraw()
                elif not round_:
                    if (self.sim.changed or self.inbox.pending) and \
                            (len(self.ready) < LOW_WATER or self.pools.wants_work()
                             or self._since_advance >= ADVANCE_EVERY):
                        self.advance()
                    self.dispatch()
                wait = None
                if self.ready and not self.paused:
                    now = self.clock.monotonic()
                    found = self._next_ready(now)
                    if isinstance(found, Ready) and self._waits_for_commit(found):
                        # Its inputs are a moment old: results still arriving are applied first, then
                        # one commit lets it (and the others like it) start without one each.
                        self.ready.insert(0, found)
                        notices = self._linger()
                        if not notices:
                            self.commit()
                        continue
                    if isinstance(found, Ready):
                        if asynchronous and inspect.iscoroutinefunction(self.functions[found.node_name].exec):
                            self._launch(self._start_batch(found, now))
                        else:
                            job = self._start_one(found)
                            self._since_advance += 1
                            began = time.perf_counter()
                            try:
                                await self._run_job(job, asynchronous=False)
                            finally:
                                if self._running_deferred is not None and self._log_deferred:
                                    self.starts.ended_deferred()  # its code returned: a kill now is no death of it
                                self._running_deferred = None
                            self._quick[found.node_name] = time.perf_counter() - began < QUICK_EPOCH
                            ran += 1
                        continue
                    wait = found - now
                self.pools.assign()
                if self.pools.dispatched and (wait is None or wait > 0):
                    notices = self._linger()
                    if notices:
                        continue
                self.commit()
                if not self.ready and not self._tasks and not self.pools.dispatched:
                    if self.paused or round_:
                        break
                    self.advance()
                    self.dispatch()
                    if not self.ready and not self.pools.dispatched:
                        break
                    continue
                notices = await self._wait(wait, asynchronous=asynchronous)
        finally:
            if self.retention is not None:
                self.retention.stop()
            self.withdraw()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
                self._tasks.clear()
            self.requests.loop_ended()
            self.commit()
        if self.config.history_flush_on_pause and (self.paused or not round_):
            self.history.flush()
        self._raise_pending()
        return ran

    def _start_batch(self, first: Ready, now: float) -> list[Claim]:
        """Start every due async epoch at once: their starts are one commit."""
        jobs = [self._start(first)]
        for item in list(self.ready):
            if item.due <= now and inspect.iscoroutinefunction(self.functions[item.node_name].exec):
                self.ready.remove(item)
                jobs.append(self._start(item))
        try:
            self.commit()
        except BaseException:
            self._unrun += jobs  # started, not durably: they run once a commit makes it so
            raise
        return jobs

    def _launch(self, jobs: list[Claim]) -> None:
        for job in jobs:
            task = asyncio.ensure_future(self._run_job(job, asynchronous=True))
            task.add_done_callback(lambda _t: self.owner.notify(None))
            self._tasks.add(task)

    def _reap(self) -> int:
        """Ended async epochs: count them, and raise what escaped one (an interpreter exit)."""
        done = [t for t in self._tasks if t.done()]
        for task in done:
            self._tasks.discard(task)
            task.result()
        return len(done)

    async def _wait(self, timeout: float | None, *, asynchronous: bool) -> list:
        """Wait for the next arrival (a call, a report, an ended async epoch), at most until the next
        ready epoch is due or the next lease sweep; returns the arrivals."""
        if self.pools.dispatched:
            check = self.pools.next_check()
            due = self.pools.next_due()
            if due is not None:
                check = min(check, due)
            timeout = check if timeout is None else min(timeout, check)
        if timeout is not None and timeout > 0 and not isinstance(self.clock, SystemClock):
            # An injected clock's time passes only through its sleep() (tests drive time so).
            self.clock.sleep(timeout)
            return self.owner.wait(0)
        if not (asynchronous and self._tasks):
            return self.owner.wait(self.requests.wait_bound(timeout))
        # the event loop runs the async epochs meanwhile; their ends post a wake-up
        bounded = 0.05 if timeout is None else min(timeout, 0.05)
        return await asyncio.get_running_loop().run_in_executor(None, self.owner.wait, bounded)

    # -- failures and pausing -------------------------------------------------------------------------
    @reentrant_point
    def node_failed(self, failure: NodeExecutionFailed) -> None:
        """Apply the net's error policy to a failed epoch.

        An error_callback that raises is recorded in the node's log and chained onto
        the failure as a note; it never stops the failure flow.
        """
        if self.config.error_callback is not None:
            try:
                self.config.error_callback(failure)
            except Exception as exc:  # noqa: BLE001 - recorded below
                text = f"error_callback raised {error_text(exc)}"
                failure.add_note(text)
                self.journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                                 (getattr(failure, "epoch_id", None), failure.node_name, self.journal.now(), text))
        node = failure.node_name
        self.outcomes[(node, "failed")] += 1
        self.outcomes[(node, "cancelled")] -= 1  # the failed epoch was counted when cancelled
        policy = self.config.on_error
        if policy in ("pause", "raise"):
            self.paused = True
        if policy == "raise" and self._to_raise is None:
            self._to_raise = failure

    def _raise_pending(self) -> None:
        if self._to_raise is not None:
            failure, self._to_raise = self._to_raise, None
            raise failure

    def request_pause(self) -> None:
        """Start nothing new: safe from any thread and from a signal handler (a flag and a wake-up)."""
        self.paused = True
        self.owner.notify(None)

    def pause(self) -> None:
        """From the owner: start nothing new; commit, and flush history if configured."""
        self.paused = True
        self.journal.commit()
        if self.config.history_flush_on_pause:
            self.history.flush()

    def restart(self, node: str, epoch_id: str, attempt: int) -> None:
        """A running deferred main-thread epoch that applied nothing becomes startable again (after an
        interrupt): first in line, and `startable` in the file, as a resume would make it; its next
        run is `attempt` again (the interrupted one is not counted)."""
        events = self.sim.restart_epoch(epoch_id)
        if attempt:
            self.attempt_base[epoch_id] = attempt
        self.inflight[node] -= 1  # no longer dispatched; tracking its creation puts it back to waiting
        self.track(events)
        self.waiting[node].move_to_end(epoch_id, last=False)
        self.journal.record("RecoverEpoch", [], epoch_id=epoch_id, node_name=node,
                            data={"reason": "deferred epoch interrupted: runs again"})
        self.journal.add("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (epoch_id,))

    def abandon(self, node: str, epoch_id: str, error: BaseException) -> BaseException:
        """Applying an epoch's end failed half-way (a bug: everything that can fail is checked before):
        the sim took steps the file must never see. Nothing since the last commit is written, and
        the net refuses to run again; a resume rebuilds it from the file. Returns the error to raise."""
        self.journal.abandon(error)
        self.paused = True
        self._broken = RuntimeError(
            f"netrun: applying the end of epoch {epoch_id} of node {node!r} failed ({error_text(error)}); this is a "
            f"bug in netrun. Nothing of it was written: the database is as a crash at the last commit left it. "
            f"Close the net and resume it (Net.resume, or netrun resume) to go on")
        return self._broken

    def write_logs(self, epoch_id: str | None, node: str, capture: Capture | None) -> None:
        write_logs(self.journal, epoch_id, node, capture)

    # -- registration ---------------------------------------------------------------------------
    def set_functions(self, node: str, funcs: NodeFunctions) -> None:
        self.node(node)
        for func in (funcs.exec, funcs.start, funcs.stop, funcs.failed):
            if func is not None:
                install(func)
        self.functions[node] = funcs

    def install_functions(self, node: str, funcs: NodeFunctions, paths: dict[str, str | None]) -> None:
        """`set_node_exec`, from the owner: the functions, and their import paths in node_settings."""
        self.set_functions(node, funcs)
        self.pools.refresh(node)
        self.journal.add("UPDATE node_settings SET functions = ? WHERE node_name = ?", (json.dumps(paths), node))
        self.journal.commit()

    def replace_config(self, node: str, config: NodeConfig) -> None:
        """`set_node_config`, from the owner (the options checked already). Raises ConfigError for a
        change of pool once the pools run."""
        if self.pools.started and config.pool != self.configs[node].pool:
            raise ConfigError(f"node {node!r}: its pool cannot change once the pools run", option="pool", node=node)
        self.configs[node] = config
        self.pools.refresh(node)
        self.journal.add("UPDATE node_settings SET config = ? WHERE node_name = ?",
                         (json.dumps(config.to_json()), node))
        self.journal.commit()

    def set_port_type(self, node: str, side: str, port: str, port_type: Any) -> None:
        """A port's type (None: untyped), from the owner; stored in node_settings."""
        types = self.port_types.setdefault(node, {"in": {}, "out": {}})
        if port_type is None:
            types[side].pop(port, None)
        else:
            types[side][port] = port_type
        data = {s: {p: t.to_data() for p, t in types[s].items()} for s in ("in", "out")}
        self.journal.add("UPDATE node_settings SET port_types = ? WHERE node_name = ?", (json.dumps(data), node))
        self.journal.commit()

    def configure(self, node: str, config: NodeConfig | None, types: dict[str, dict] | None,
                  funcs: NodeFunctions | None) -> None:
        """Settings read back on resume (each None: keep the default)."""
        if config is not None:
            self.configs[node] = config
        if types is not None:
            self.port_types[node] = types
        if funcs is not None:
            self.set_functions(node, funcs)

    # -- resuming -------------------------------------------------------------------------------
    def restore(self, path: str) -> dict[str, list[str]]:
        """Rebuild settings and sim state from the file (see netrun.restore). Returns node -> roles
        whose function could not be imported."""
        return Restorer(path=path, journal=self.journal, values=self.values, sim=self.sim,
                        graph_nodes=self.graph_nodes, configs=self.configs, history=self.history,
                        dead_letters=self.dead_letters, owner=self).restore()

    def add_attempts(self, done: dict[str, int]) -> None:
        """On resume: epochs made startable again go on counting from the attempts already recorded."""
        self.attempt_base.update(done)

    def apply_stored_result(self, epoch_id: str, payload: bytes) -> bool:
        """On resume: a pool result written before the stop is applied to its epoch, rebuilt startable
        (as if dispatched: applying it ends it). False if the epoch ended otherwise (timed out, say)."""
        node = next((n for n, w in self.waiting.items() if epoch_id in w), None)
        if node is None:
            return False
        del self.waiting[node][epoch_id]
        self.inflight[node] += 1
        apply_result(self.ends, epoch_id, payload)
        return True
