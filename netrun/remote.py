"""Remote workers: `netrun worker --db URL --pool NAME` runs a net's remote-pool epochs, anywhere.

A net declares `remote_pools={"cpu": {}}` and gives nodes `pool="cpu"`; its owner queues their epochs
as jobs of that pool and runs none of them itself. A worker process, on any machine that reaches the
database, reads the pool's nodes from the stored settings, imports their functions by their stored
import paths (a lambda or a closure cannot travel: it is refused when the node is configured), and
runs the same loop as a process-pool worker (netrun.worker): claim a due job with a lease (`FOR UPDATE
SKIP LOCKED` on PostgreSQL), renew the lease from a heartbeat thread, run the epoch's attempts, and
report by compare-and-set. A report refused (the owner took the job back: the lease ran out while
the worker was frozen) is logged in `node_logs`, never applied.

Time comes from the database's clock: the worker measures how far its own clock is from the
server's when it starts (and again at every heartbeat), and stamps claims and leases with the
server's time, so a machine whose clock is an hour off behaves like any other.

The worker registers in `workers` (host, pid, pools, concurrency) and beats there every few seconds;
`netrun status` lists workers and their jobs.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import sys
import threading
import time
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw

from .clock import Clock, SystemClock, iso
from .config import NodeConfig
from .db import open_connection, transaction
from .dialect import is_url
from .errors import ConfigError, NetrunError, NodeExecutionFailed, NotANetrunDatabase, StorageError
from .factories import import_from_path
from .host import NodeFunctions
from .migrate import SAME_TABLES_SINCE
from .store import store_for
from .wakeups import RESULT_READY, listen_for_jobs
from .worker import IdleCount, NodeInterrupt, WorkerSpec, read_start_failed, worker_loop

BEAT_SECONDS = 2.0  # how often a worker writes its heartbeat (and measures the clock offset again)
RECONNECT_FOR = 60.0  # seconds a worker keeps trying to reach a database it lost before it gives up
BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)  # seconds between its tries, growing
_LOST = (apsw.IOError, StorageError)  # a connection that broke, or could not be made
# A database machine that falls silent (powered off, a cable pulled, a firewall that drops its packets)
# sends no reset: TCP would retry a worker's statement for ~15 minutes, and an idle connection would
# wait for ever. libpq's liveness parameters break such a connection after ~20 s instead, so the worker
# reconnects, or gives up after --reconnect-for. Parameters the URL sets win.
LIVENESS = {"keepalives_idle": "10", "keepalives_interval": "3", "keepalives_count": "3",
            "tcp_user_timeout": "20000"}


def url_with(url: str, params: dict[str, str], *, replace: bool = True) -> str:
    """`url` with these query parameters set (`replace=False`: only those it does not set already)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    given = {key for key, _ in query}
    if replace:
        query = [(k, v) for k, v in query if k not in params]
    query += [(k, v) for k, v in params.items() if replace or k not in given]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class DbClock:
    """The database server's clock, read through this machine's: `now()` is the local time plus the
    offset measured against the server (round trip halved). Monotonic time stays local."""

    def __init__(self, conn: Any, base: Clock | None = None) -> None:
        self.base = base or SystemClock()
        self.offset = timedelta(0)
        self.measure(conn)

    def measure(self, conn: Any) -> None:
        if getattr(conn, "dialect", None) != "postgres":
            return  # an SQLite net's workers share the machine, and its clock
        before = self.base.now()
        server = conn.pg.execute("SELECT clock_timestamp()").fetchone()[0]
        after = self.base.now()
        self.offset = server.astimezone(UTC) - (before + (after - before) / 2)

    def now(self) -> datetime:
        return self.base.now() + self.offset

    def monotonic(self) -> float:
        return self.base.monotonic()

    def sleep(self, seconds: float) -> None:
        self.base.sleep(seconds)


def _pools_of(option: Any) -> list[str]:
    if option is None:
        return []
    return [option] if isinstance(option, str) else list(option)


def load_pool(conn: Any, pool: str, label: str) -> tuple[dict[str, NodeConfig], dict[str, NodeFunctions], dict]:
    """The nodes of `pool` (their options and imported functions) and the net's options.

    Raises ConfigError: the net declares no such remote pool, or a node's function cannot be imported
    (its message names the node and the import path: add --path DIR)."""
    meta = dict(conn.execute("SELECT key, value FROM net_meta").fetchall())
    if "config" not in meta:
        raise NotANetrunDatabase(f"{label} holds no netrun net", path=label)
    options = json.loads(meta["config"])
    remote = options.get("remote_pools", {})
    if pool not in remote:
        raise ConfigError(f"{label}: the net has no remote pool {pool!r} (its remote pools: "
                          f"{', '.join(sorted(remote)) or 'none'}); declare it with Net(..., remote_pools="
                          f"{{{pool!r}: {{}}}})", option="pool")
    configs: dict[str, NodeConfig] = {}
    functions: dict[str, NodeFunctions] = {}
    for node, config, stored in conn.execute("SELECT node_name, config, functions FROM node_settings "
                                             "ORDER BY node_name").fetchall():
        settings = json.loads(config)
        if pool not in _pools_of(settings.get("pool")):
            continue
        funcs = NodeFunctions()
        for role, path in json.loads(stored).items():
            try:
                setattr(funcs, role, import_from_path(path))
            except ConfigError as exc:
                raise ConfigError(f"{label}: node {node!r} of remote pool {pool!r}: its {role} function {path} "
                                  f"cannot be imported here ({exc}); give its folder with --path DIR",
                                  node=node) from None
        if funcs.exec is None:
            raise ConfigError(f"{label}: node {node!r} of remote pool {pool!r} has no stored exec function; set a "
                              "module-level function with set_node_exec", node=node)
        configs[node] = NodeConfig(**settings)
        functions[node] = funcs
    return configs, functions, options


class RemoteWorker:
    """One `netrun worker` process: `concurrency` threads claiming the jobs of `pool`."""

    def __init__(self, url: str, pool: str, *, concurrency: int = 1, clock: Clock | None = None,
                 reconnect_for: float = RECONNECT_FOR) -> None:
        self.store = store_for(url)
        if not self.store.exists():
            raise NotANetrunDatabase(f"{self.store.label} holds no netrun net", path=self.store.label)
        if self.store.inspect().version < SAME_TABLES_SINCE:
            raise NotANetrunDatabase(f"{self.store.label} was written by an older netrun; resume it once (netrun "
                                     "resume) to upgrade it, then start workers", path=self.store.label)
        self.pool = pool
        self.concurrency = concurrency
        self.id = f"remote:{pool}:{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.url = url_with(self.store.url, LIVENESS, replace=False) if is_url(self.store.url) else self.store.url
        self._conn = open_connection(self.url)
        self._lock = threading.Lock()  # the notices and beats share this connection
        try:
            self.clock = DbClock(self._conn, clock)
            self.configs, self.functions, options = load_pool(self._conn, pool, self.store.label)
        except BaseException:
            self._conn.close()
            raise
        keep = bool(options.get("consumed_packet_storage") or options.get("consumed_packet_storage_path"))
        self.spec = WorkerSpec(db_path=self.url, pool=pool, nodes=self.configs, functions=self.functions,
                               keep_received=keep, init_per_worker=set(self.configs),
                               durability=options.get("durability", "normal"),
                               lease_seconds=float(options.get("lease_seconds", 60.0)))
        self.wake = threading.Semaphore(0)
        self.stop = threading.Event()
        self.reconnect_for = reconnect_for
        self.failure: NetrunError | None = None  # why the worker stopped (run() raises it): the database
        # stayed out of reach, a start function raised, node code raised SystemExit or the like
        self._listener: Any = None

    def _notify(self, notice: str) -> None:
        """Tell the owner (its sweep would find a result anyway). A start function that raised stops
        this worker too, with that error (the owner stops the pool when it hears of it)."""
        failed = read_start_failed(notice)
        if failed is not None:
            node, worker_id, text = failed
            self.failure = NodeExecutionFailed(f"netrun worker {worker_id}: start_node_func of node {node!r} raised "
                                               f"({text}); this worker stops", node_name=node)
            self.stop.set()
        try:
            with self._lock:
                self._conn.execute(RESULT_READY, (notice,))
        except _LOST:
            self._reopen()

    def _reopen(self) -> None:
        """The shared connection (notices, heartbeats) broke: open another, and listen again. A failure
        is left for the next use: the leases and the owner's sweep decide meanwhile."""
        with self._lock:
            try:
                fresh = open_connection(self.url)
            except _LOST:
                return
            try:
                self._conn.close()
            except apsw.Error:
                pass
            self._conn = fresh
            if self._listener is not None:
                self._listener.close()
            self._listener = listen_for_jobs(self._conn, self._woken)

    def _say(self, text: str) -> None:
        print(f"netrun worker {self.id}: {text}", file=sys.stderr, flush=True)

    def _woken(self, pool: str) -> None:
        if pool == self.pool:
            for _ in range(self.concurrency):
                self.wake.release()

    def _register(self) -> None:
        """Write this worker's row (the caller holds `_lock`)."""
        now = iso(self.clock.now())
        with transaction(self._conn):
            self._conn.execute("INSERT INTO workers (id, host, pid, pools, concurrency, started_at, heartbeat_at) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)", (self.id, socket.gethostname(), os.getpid(),
                                                                json.dumps([self.pool]), self.concurrency, now, now))

    def _beat(self) -> None:
        while not self.stop.wait(BEAT_SECONDS):
            try:
                with self._lock:
                    self.clock.measure(self._conn)
                    self._conn.execute("UPDATE workers SET heartbeat_at = ? WHERE id = ?",
                                       (iso(self.clock.now()), self.id))
                    if self._conn.changes() == 0:  # its row is gone (a server restored from a backup, a
                        self._say("its row in workers is gone; registering again")  # failover to a standby
                        self._register()
            except Exception:  # noqa: BLE001 - the database is away for a moment: the leases decide
                self._reopen()

    def _serve(self, index: int, idle: IdleCount) -> None:
        """One thread's claim/run/report loop, begun again on a new connection when the database is lost
        (the jobs it held are the owner's to take back when their lease ends), until it stays out of
        reach for `reconnect_for` seconds."""
        worker_id = f"{self.id}/{index}"
        lost_at: float | None = None
        tries = 0
        while not self.stop.is_set():
            try:
                worker_loop(self.spec, worker_id, self.wake, self.stop, self._notify, self.clock, None, self.functions,
                            lambda: True, heartbeat=True, idle=idle)
                return
            except NodeInterrupt as interrupt:  # node code raised SystemExit or the like: it ends this worker
                self._interrupted(worker_id, interrupt)  # as it would end its process in the main thread
                return
            except _LOST as exc:
                now = time.monotonic()
                # broke while connected (a statement failed; a failed connect has no apsw cause): a new loss
                if isinstance(exc, apsw.IOError) or isinstance(exc.__cause__, apsw.Error) or lost_at is None:
                    self._say(f"lost the database ({exc}); reconnecting")
                    lost_at, tries = now, 0
                elif now - lost_at > self.reconnect_for:  # no connection could be made since
                    self.failure = StorageError(
                        f"netrun worker {worker_id}: {self.store.label} stayed out of reach for {self.reconnect_for:g} "
                        f"s ({exc}); the jobs it held go back to the queue when their lease ends",
                        path=self.store.label)
                    self.stop.set()
                    return
                self.stop.wait(BACKOFF[min(tries, len(BACKOFF) - 1)])
                tries += 1

    def _interrupted(self, worker_id: str, interrupt: NodeInterrupt) -> None:
        """Stop the whole worker (its other threads finish their jobs) with an error naming the node and
        epoch, the node's traceback on stderr. The epoch is the owner's to take back when its lease ends,
        under the crash semantics (deferred: run again; not deferred: dead-lettered 'interrupted')."""
        claim = interrupt.claim
        self._say(f"{worker_id}: {interrupt.text}\n{interrupt.traceback}".rstrip())
        self.failure = NodeExecutionFailed(
            f"netrun worker {worker_id}: {interrupt.text} in node {claim.node_name!r} (epoch {claim.epoch_id}); "
            "this worker stops, and the epoch goes back to the owner when its lease ends", node_name=claim.node_name)
        self.stop.set()

    def run(self) -> None:
        """Claim, run and report until `stop` is set; the threads finish their jobs first."""
        with self._lock:
            self._register()
        self._listener = listen_for_jobs(self._conn, self._woken)
        beat = threading.Thread(target=self._beat, daemon=True, name="netrun-worker-beat")
        beat.start()
        idle = IdleCount()  # the threads waiting for work (the owner cannot see them: it announces every job)
        threads = [threading.Thread(target=self._serve, args=(i, idle), name=f"netrun-{self.id}/{i}", daemon=True)
                   for i in range(1, self.concurrency + 1)]
        for thread in threads:
            thread.start()
        try:
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(0.2)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join()
            if self._listener is not None:
                self._listener.close()
            beat.join(5)
            try:
                with self._lock:
                    self._conn.execute("UPDATE workers SET stopped_at = ? WHERE id = ?",
                                       (iso(self.clock.now()), self.id))
            except _LOST:
                pass  # the database is gone: its row keeps its last heartbeat
            self._conn.close()
        if self.failure is not None:
            raise self.failure

