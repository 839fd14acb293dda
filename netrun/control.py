"""Running a net in the background, its status, pausing, stopping, and SIGINT.

`Controller` owns the thread that runs the net when `start(threaded=True)` or
`run_step(threaded=True)` is used, and the SIGINT handler of a foreground run. The runtime
is driven by one thread at a time: the runner thread holds `lock` while it runs and hands it
over between steps, and the net's other public methods take it too, so a call from another
thread waits for the current step to end. `poll()` and `pause()` never wait for the lock.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .runtime import Runtime

STATES = ("running", "pausing", "paused", "blocked", "stopped")


@dataclass(frozen=True)
class NodeStatus:
    startable: int = 0
    running: int = 0
    finished: int = 0
    failed: int = 0
    cancelled: int = 0


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


class StepLock:
    """The runtime's lock: the runner holds it while it runs, and hands it over between steps.

    An `RLock` alone would keep a caller from another thread (`net.query()`, `inject_packet`...)
    waiting until the whole background run ends; `hand_over()`, called by the runner between
    steps, lets the threads waiting for the lock have it first.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._waiting = 0
        self._count = threading.Lock()

    def __enter__(self) -> StepLock:
        with self._count:
            self._waiting += 1
        try:
            self._lock.acquire()
        finally:
            with self._count:
                self._waiting -= 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def hand_over(self, *, patience: float = 0.05) -> None:
        """From the holder: if other threads wait for the lock, let them have it, then take it back.

        Waits at most `patience` seconds for the waiters to get in, so a stream of callers
        cannot stall the run; each of them still gets its turn within a step or two.
        """
        if not self._waiting:
            return
        self._lock.release()
        try:
            deadline = time.monotonic() + patience
            while self._waiting and time.monotonic() < deadline:
                time.sleep(0.0002)
        finally:
            self._lock.acquire()


class Controller:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.lock = StepLock()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.state = "blocked"
        self.counts: Counter[tuple[str, str]] = Counter()  # (node, outcome) -> epochs

    # -- status -----------------------------------------------------------------------------
    def poll(self) -> NetStatus:
        rt = self.rt
        startable = Counter(rt.queued.values())
        running = Counter(rt.sim.node_of_epoch(e) for e in list(rt.running) if e in rt.sim._epoch_node)
        for epoch_id in list(rt.pools.dispatched):
            node = rt.sim._epoch_node.get(epoch_id)
            if node is not None:
                running[node] += 1
                startable[node] -= 1
        nodes = {}
        for name, waiting in rt.waiting.items():
            nodes[name] = NodeStatus(startable=len(waiting) + startable[name], running=running[name],
                                     finished=self.counts[(name, "finished")], failed=self.counts[(name, "failed")],
                                     cancelled=self.counts[(name, "cancelled")])
        return NetStatus(self.state, nodes, self.error)

    # -- background runs ---------------------------------------------------------------------------
    def run_in_background(self, body: Callable[[], object]) -> None:
        if self.thread is not None and self.thread.is_alive():
            raise RuntimeError("the net is already running in the background")
        self.error = None
        self.state = "running"

        def target() -> None:
            try:
                with self.lock:
                    body()
            except BaseException as exc:  # noqa: BLE001 - kept for poll() and wait_until_blocked()
                self.error = exc
            finally:
                self.state = "paused" if self.rt.paused else "blocked"

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

    def pause(self) -> None:
        """Ask the run to start nothing new; from another thread, wait for running epochs to end."""
        thread = self.thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            # Only the flag from here: the runner thread owns the journal until it stops.
            self.rt.paused = True
            self.state = "pausing"
            thread.join()
            with self.lock:
                self.rt.pause()  # the runner has stopped: commit and flush history from here
        else:
            self.rt.pause()
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
            self.rt.pause()
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

        if install:
            previous = signal.signal(signal.SIGINT, on_sigint)
        self.state = "running"
        try:
            with self.lock:
                yield
        finally:
            if install:
                signal.signal(signal.SIGINT, previous)
            self.state = "paused" if self.rt.paused else "blocked"
        if interrupted:
            raise KeyboardInterrupt("SIGINT: the net paused after its running epochs finished")
