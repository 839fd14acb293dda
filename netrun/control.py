"""Running a net in the background, its status, pausing, stopping, and SIGINT.

`Controller` owns the thread that runs the net when `start(threaded=True)` or
`run_step(threaded=True)` is used, and the SIGINT handler of a foreground run. Whichever
thread runs the loop owns the run state (see `owner.py`); the others hand it their calls.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import apsw

from .errors import NetClosedError
from .jobs import pool_jobs_by_node
from .owner import Owner
from .pools import PoolManager
from .worker import in_worker_thread

STATES = ("running", "pausing", "paused", "blocked", "stopped")


@dataclass(frozen=True)
class NodeStatus:
    """A node's epochs, each counted once: `startable` (not handed to a worker yet, or waiting for the
    main thread), `queued` (in a pool's queue, no worker has it yet), `running` (its code runs, or ran
    and its result is not applied yet), `finished`, `failed`, `cancelled`. `netrun status` counts the
    same way from the database."""

    startable: int = 0
    running: int = 0
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    queued: int = 0


@dataclass(frozen=True)
class NetStatus:
    """What `Net.poll()` returns. `state` is one of running, pausing, paused, blocked, stopped."""

    state: str
    nodes: dict[str, NodeStatus] = field(default_factory=dict)
    error: BaseException | None = None  # what stopped a background run, if it raised

    @property
    def running(self) -> int:
        return sum(n.running for n in self.nodes.values())

    @property
    def startable(self) -> int:
        return sum(n.startable for n in self.nodes.values())


class Controller:
    """The background runner thread, pausing, SIGINT and `poll()`.

    `poll()` reads counters the owner keeps (plain reads, never a walk over run state), and with
    pool jobs out one indexed read of the database (which of them a worker claimed), so it answers
    at once from any thread. `pause()` from another thread only raises the flag and
    wakes the owner, then waits for the runner to stop.

    It changes no run state: it reads the owner's counters (`waiting`, `ready_count`, `running_count`,
    `outcomes`: (node, outcome) -> epochs, and the pools' dispatched jobs) and calls the owner's
    `paused`, `request_pause` and `pause` (the last from the owning thread, through `owner.call`).
    """

    def __init__(self, owner: Owner, pools: PoolManager, *, waiting: Mapping[str, Mapping[str, None]],
                 ready_count: Mapping[str, int], running_count: Mapping[str, int],
                 outcomes: Mapping[tuple[str, str], int], paused: Callable[[], bool],
                 request_pause: Callable[[], None], pause: Callable[[], None],
                 current_loop: Callable[[], int | None] = lambda: None) -> None:
        self.owner = owner
        self.pools = pools
        self.waiting = waiting
        self.ready_count = ready_count
        self.running_count = running_count
        self.outcomes = outcomes
        self._paused = paused
        self._request_pause = request_pause
        self._pause = pause
        self._current_loop = current_loop  # the number of the owner loop running now (None: none runs)
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.state = "blocked"
        # lends the calling thread's read-only connection (`with reader() as conn:`)
        self.reader: Callable[[], AbstractContextManager[apsw.Connection]] | None = None

    # -- status -----------------------------------------------------------------------------
    def poll(self) -> NetStatus:
        nodes = {}
        claimed = self._pool_running() if self.pools.dispatched else {}
        for name, waiting in self.waiting.items():
            dispatched = self.pools.per_node[name]
            pooled = min(dispatched, claimed.get(name, 0))  # the database may be a commit ahead
            nodes[name] = NodeStatus(startable=len(waiting) + self.ready_count[name], queued=dispatched - pooled,
                                     running=self.running_count[name] + pooled,
                                     finished=self.outcomes[(name, "finished")],
                                     failed=self.outcomes[(name, "failed")],
                                     cancelled=self.outcomes[(name, "cancelled")])
        return NetStatus(self.state, nodes, self.error)

    def _pool_running(self) -> dict[str, int]:
        """Pool epochs a worker has claimed, per node: only the database knows (workers claim there,
        process workers included), read through this thread's read-only connection, by index."""
        if self.reader is None:
            return {}
        try:
            with self.reader() as conn:
                return {node: c["running"] for node, c in pool_jobs_by_node(conn).items()}
        except (apsw.Error, NetClosedError):  # a status is a courtesy: never fail the caller over it
            return {}

    @property
    def in_background(self) -> bool:
        thread = self.thread
        return thread is not None and thread.is_alive()

    # -- background runs ---------------------------------------------------------------------------
    def run_in_background(self, body: Callable[[], object], *, unpause: Callable[[], None]) -> None:
        """Run `body` in a new thread. A run going on already (background or foreground) is refused
        before `unpause` clears an earlier pause: a pause() meant for that run is never lost."""
        if self.in_background:
            raise RuntimeError("the net is already running in the background")
        if self.state == "running":
            raise RuntimeError("the net is already running (a start() or run_step() of another thread); "
                               "wait for it to end, or pause() it first")
        unpause()
        self.error = None
        self.state = "running"

        def target() -> None:
            try:
                body()
            except BaseException as exc:  # noqa: BLE001 - kept for poll() and wait_until_blocked()
                self.error = exc
            finally:
                self.state = "paused" if self._paused() else "blocked"

        self.thread = threading.Thread(target=target, name="netrun-runner", daemon=True)
        self.thread.start()

    def wait(self, timeout: float | None = None) -> NetStatus:
        """Block until the background run ends (blocked or paused); re-raise what stopped it."""
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the net is still running after {timeout} s")
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.poll()

    def request_pause(self) -> None:
        """Start nothing new: safe from any thread and from a signal handler (a flag and a wake-up)."""
        self._request_pause()

    def pause(self) -> None:
        """Ask the run to start nothing new; from another thread, wait for running epochs to end."""
        self.request_pause()
        if self.owner.is_mine or in_worker_thread():
            # node code (main thread or a pool's thread) inside the run: the loop ends the run once
            # the running epochs, this one included, are done; waiting here would wait for itself
            self.state = "pausing"
            return
        thread = self.thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self.state = "pausing"
            thread.join()
        else:
            loop = self._current_loop()
            if loop is not None:  # a foreground start()/run_step() of another thread: its loop ends once
                self.state = "pausing"  # its running epochs (pool epochs too) are done; not a later run's
                while self._current_loop() == loop:
                    time.sleep(0.005)
        self.owner.call(self._pause)  # commit, and flush history if configured
        self.state = "paused"

    # -- foreground runs ------------------------------------------------------------------------------
    @contextmanager
    def foreground(self) -> Iterator[None]:
        """Run in this thread; a first SIGINT pauses gracefully, then KeyboardInterrupt is raised."""
        interrupted = []
        previous = None
        install = threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler

        def on_sigint(signum: int, frame: object) -> None:
            interrupted.append(signum)
            self.request_pause()  # only a flag: the loop may be anywhere in this very thread
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

        if install:
            previous = signal.signal(signal.SIGINT, on_sigint)
        self.state = "running"
        try:
            yield
        finally:
            if install:
                signal.signal(signal.SIGINT, previous)
            self.state = "paused" if self._paused() else "blocked"
        if interrupted:
            raise KeyboardInterrupt("SIGINT: the net paused after its running epochs finished")
