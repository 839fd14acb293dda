"""One owner: the thread that holds a net's run state, and the calls handed to it.

netrun-sim, the run state and the write connection belong to one thread at a time: the
thread running the net's loop (a foreground `start()`, or the background runner), or,
while nothing runs, whichever caller got the ownership for its call. Every public method
goes through `Owner.call(fn)`:

- from the owning thread itself (node code in the main thread, the loop) it runs at once;
- from any other thread it is handed to the owner, which answers it between two waits
  (the loop serves requests whenever it wakes, and a request wakes it); if no loop runs,
  the caller takes the ownership for the call and serves every waiting request itself.

So nothing but the owner reads or writes run state, and no caller waits for a lock that
user code holds: a thread-pool worker's start function calling `net.query()` is answered
by the loop while the loop waits for that very worker.

The same channel (`arrivals`) carries the workers' "result written" notices, so the loop
waits in exactly one place for whatever comes first.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from .errors import ContextUsageError
from .reentry import interrupted_step, reentrant_point

_RETRY = 0.02  # seconds a caller waits for an answer before trying to serve itself


class _Request:
    __slots__ = ("fn", "done", "result", "error")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the calling thread
            self.error = exc
        self.done.set()

    def answer(self) -> Any:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.result


class Owner:
    """Who owns the run state now, and the inbox of what other threads hand to it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ident: int | None = None
        self.arrivals: queue.SimpleQueue[Any] = queue.SimpleQueue()  # requests and worker notices
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._closed: Callable[[], BaseException] | None = None  # set by close(): the error every call gets

    @property
    def is_mine(self) -> bool:
        return self._ident == threading.get_ident()

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Own the run state in this thread until the block ends (the loop's whole run).

        Re-entrant for the thread that already owns it."""
        if self.is_mine:
            yield
            return
        self._lock.acquire()
        self._ident = threading.get_ident()
        try:
            yield
        finally:
            self.serve()
            self._ident = None
            self._lock.release()
        self._serve_leftovers()

    def close(self, error: Callable[[], BaseException]) -> None:
        """The run state is gone (the net closed its database): every call from now on, and every one
        still waiting, raises `error()` instead of touching it. Waits for a call being served."""
        with self._lock:
            self._closed = error
            self.serve()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` as the owner and return its result (or raise its error) in this thread."""
        if self._closed is not None:
            raise self._closed()
        if self.is_mine:
            interrupted = interrupted_step(1)
            if interrupted is not None:
                method, where = interrupted
                raise ContextUsageError(
                    f"net.{method}() was called in the thread that runs the net while netrun's own code ran there "
                    f"(in {where}): from a signal handler, say. It would change the run's state half-way through a "
                    f"step, so it is refused. From a signal handler call net.pause() (it only sets a flag), then the "
                    f"other methods once the run returns; or call them from another thread")
            return fn()
        request = _Request(fn)
        self._requests.put(request)
        self.arrivals.put(None)  # wakes the loop
        while not request.done.wait(0 if self._try_serve() else _RETRY):
            pass
        return request.answer()

    def _try_serve(self) -> bool:
        """If no one owns the state, own it long enough to serve every waiting request."""
        if not self._lock.acquire(blocking=False):
            return False
        self._ident = threading.get_ident()
        try:
            self.serve()
        finally:
            self._ident = None
            self._lock.release()
        return True

    def _serve_leftovers(self) -> None:
        """A request that arrived while the owner was letting go is served by someone."""
        if not self._requests.empty():
            self._try_serve()

    def serve(self) -> int:
        """From the owner: answer the requests waiting now (not those queued meanwhile: callers that
        ask again at once cannot keep the owner from its run). Returns how many."""
        served = 0
        for _ in range(self._requests.qsize()):
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                break
            if self._closed is not None:
                request.error = self._closed()
                request.done.set()
            else:
                request.run()
            served += 1
        return served

    @reentrant_point  # (a signal handler's call while the owner waits finds the run state at rest)
    def wait(self, timeout: float | None) -> list[Any]:
        """From the owner: wait up to `timeout` seconds for arrivals; return them all (may be empty)."""
        items = []
        try:
            items.append(self.arrivals.get(timeout=timeout) if timeout is None or timeout > 0
                         else self.arrivals.get_nowait())
        except queue.Empty:
            return items
        while True:
            try:
                items.append(self.arrivals.get_nowait())
            except queue.Empty:
                return items

    def notify(self, item: Any) -> None:
        """From any thread: something arrived for the owner (a worker's notice)."""
        self.arrivals.put(item)
