"""`Net`: the public facade. It validates input, then delegates to the runtime."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import netrun_sim as ns

from . import dsl, factories, port_types
from .version import __version__
from .clock import iso
from .config import NetConfig, make_folders, parse_net_config, update_node_config
from .control import NetStatus
from .deadletters import DeadLetterQueue
from .db import open_connection, transaction
from .checkpoint import (
    DB_NAME,
    copy_checkpoint,
    refuse_own_folder,
    write_checkpoint,
)
from .errors import (
    CheckpointError,
    ConfigError,
    ContextUsageError,
    NetClosedError,
    NotANetrunDatabase,
    PortNotFound,
    StorageError,
)
from .graphio import graph_to_data
from .history import to_json_record
from .store import is_url, require_net, restore_into, store_for
from .readonly import Readers, read_query
from .restore import read_meta, stored_graph
from .host import NodeFunctions
from .runtime import Runtime
from .worker import in_worker_thread


def _import_path(func: Callable[..., Any] | None) -> str | None:
    """`module:qualname` for a module-level function, else None (lambdas, closures)."""
    if func is None:
        return None
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or "<" in qualname:
        return None
    return f"{module}:{qualname}"


class Net:
    """A flow-based net whose every step is written to an SQLite database.

    Args:
        graph: a `netrun.Graph` (netrun-sim's graph type).
        db: path of the database file; `None` gives a temporary database that is
            deleted by `close()`.
        **config: net options (see the README); unknown options raise ConfigError.

    Raises:
        ConfigError: a bad option, or a graph that fails validation.
        StorageError: the file cannot be used (foreign, newer, corrupt, or already a net);
            NetInUse (a StorageError) when another live process runs the net in it.
    """

    def __init__(self, graph: ns.Graph, *, db: str | os.PathLike | None = None, **config: Any) -> None:
        self._config: NetConfig = parse_net_config(config)
        if not isinstance(graph, ns.Graph):
            raise ConfigError(f"Net needs a netrun.Graph, got {type(graph).__name__}")
        problems = graph.validate()
        if problems:
            raise ConfigError("the graph is invalid: " + "; ".join(p.message for p in problems))
        make_folders(self._config)
        self._tmpdir: str | None = None
        if db is None:
            self._tmpdir = tempfile.mkdtemp(prefix="netrun-")
            db = os.path.join(self._tmpdir, "net.db")
        self._store = store_for(db)
        self.db_path = self._store.label
        self.db_url = self._store.url
        self._closed = True
        state = self._store.inspect()
        self._owner = self._store.lock(iso(self._config.clock.now()))
        try:
            self._conn = open_connection(self.db_url, durability=self._config.durability)
            try:
                # refused before anything is written (a migration, a PostgreSQL owner record); the owner lock
                # keeps every other writer out meanwhile
                if state.version and self._conn.execute("SELECT 1 FROM net_meta WHERE key = 'graph'").fetchone():
                    other = "file (or delete this one to start over" if self._store.local_files else \
                        "net name, ?net=NAME (or drop this one's schema to start over"
                    raise StorageError(f"{self.db_path} already holds a net; choose another {other}, or resume it)",
                                       path=self.db_path)
                self._store.migrate(self._conn)
                self._store.claim(self._owner, self._conn)
                self._write_meta(graph, existed=state.exists)
                self._store.forget_side_files()
                self._attach(graph)
            except BaseException:
                self._conn.close()
                self._closed = True
                raise
        except BaseException:
            self._owner.release()
            self._cleanup_tmp()
            raise

    def _attach(self, graph: ns.Graph) -> None:
        self._readers = Readers(self.db_url, label=self.db_path)
        self._closing = threading.Lock()
        self._closer: int | None = None  # the thread in close() (its stop functions may call close() again)
        self._rt = Runtime(self, graph, self._conn, self._config)
        self._rt.control.reader = self._readers.using  # poll() counts claimed pool jobs through it
        self.unrestored_functions: dict[str, list[str]] = {}
        self.definition_problems: dict[str, str] = {}
        self._closed = False

    @classmethod
    def resume(cls, db: str | os.PathLike, *, wait: float | None = None, **config: Any) -> Net:
        """Reopen the net stored in `db` after a stop or a crash, without replaying history.

        The graph, the options and the node settings come from the file; node functions
        are re-imported from their import paths where possible (`net.unrestored_functions`
        lists the node roles that need `set_node_exec` again). Options given here override
        the stored ones (callables such as `error_callback` are never stored). Epochs that
        were running follow the crash semantics: deferred ones run again, others are
        cancelled with their packets dead-lettered as 'interrupted'.

        `wait` (PostgreSQL nets): seconds to wait, as a standby, for the running owner to die or
        stop before taking the net over (default: refuse at once with NetInUse).

        Raises:
            NotANetrunDatabase, DatabaseVersionError, CorruptDatabase: the file cannot be
                resumed (it is left unchanged).
            CheckpointError: the file is a checkpoint's database (restore it into a new file).
            StorageError: the stored graph fails validation.
        """
        store = store_for(db)
        path = store.label
        if not store.exists():
            raise NotANetrunDatabase(f"{path} does not exist; nothing to resume", path=path)
        whole_check = store.before_resume()
        require_net(store)
        stored = read_meta(store.url)
        graph = stored_graph(path, stored)
        options = json.loads(stored["config"])
        options.update(config)  # a stored "callback" dead-letter mode needs dead_letter_callback= here
        net = cls.__new__(cls)
        net._config = parse_net_config(options)
        make_folders(net._config)
        net._tmpdir = None
        net._store = store
        net.db_path = path
        net.db_url = store.url
        net._closed = True
        net._owner = store.lock(iso(net._config.clock.now()), wait=wait)
        try:
            net._conn = open_connection(store.url, durability=net._config.durability)
            try:
                store.check(net._conn, whole=whole_check)  # never half-read a damaged file
                store.migrate(net._conn)
                store.claim(net._owner, net._conn)
                net._attach(graph)
                with store.restoring(net._conn):
                    net.unrestored_functions = net._rt.restore(path)
                net.definition_problems = dsl.restore_definition(net)  # factory-made functions
            except BaseException:
                net._conn.close()
                net._closed = True
                raise
        except BaseException:
            net._owner.release()
            raise
        return net

    def save_checkpoint(self, directory: str | os.PathLike) -> None:
        """Write a consistent snapshot of the net's database into `directory`; atomic (the previous or this one).

        Only while the net is paused, stopped (closed: its file is checkpointed as `checkpoint_file`
        does) or has not run since it was opened (SPEC "Checkpointing").

        Raises:
            CheckpointError: the net ran and is not paused (call `pause()` first), or an epoch runs.
            NetClosedError: a stopped net whose temporary database is gone.
        """
        if self._closed and self._tmpdir is None and (is_url(self.db_url) or os.path.exists(self.db_path)):
            self._store.checkpoint(os.fspath(directory))
            return
        rt = self._live()
        refuse_own_folder(os.fspath(directory), self.db_path)

        def snapshot() -> None:
            state = rt.control.state
            if rt.started and state != "paused":
                raise CheckpointError(f"cannot checkpoint the net on {self.db_path} while it is {state}: a checkpoint "
                                      "is taken while the net is paused, stopped, or before it first runs; call "
                                      "pause() first", path=os.fspath(directory))
            running = sorted(rt.running) or sorted(rt.pools.dispatched)
            if running:
                raise CheckpointError(f"cannot checkpoint while epoch {running[0]} is running; call pause() "
                                      "and checkpoint after run_step()/start() returns", path=os.fspath(directory))
            rt.journal.commit()
            rt.history.flush()
            write_checkpoint(self._conn, os.fspath(directory), history_file=self._config.history_file,
                             manifest={"netrun_version": __version__, "database": DB_NAME,
                                       "created_at": iso(self._config.clock.now()), "source": self.db_path},
                             snapshot=self._store.snapshot())

        rt.owner.call(snapshot)

    @classmethod
    def load_checkpoint(cls, directory: str | os.PathLike, db: str | os.PathLike | None = None,
                        **config: Any) -> Net:
        """Continue from a checkpoint: copy its database to `db` (a new file) and resume it.

        `db=None` copies to a temporary database deleted by `close()`. A `postgresql://` URL loads it
        into that new net (the checkpoint of either store is an SQLite file). The checkpoint is
        never modified.
        """
        if is_url(db):
            return cls._load_checkpoint_into(os.fspath(directory), str(db), **config)
        tmpdir = None
        if db is None:
            tmpdir = tempfile.mkdtemp(prefix="netrun-")
            db = os.path.join(tmpdir, "net.db")
        path = os.fspath(db)
        try:
            copy_checkpoint(os.fspath(directory), path, own_history=True)  # its options name its own history copy
            net = cls.resume(path, **config)
        except BaseException:
            if tmpdir is not None:  # the temporary copy is ours alone
                shutil.rmtree(tmpdir, ignore_errors=True)
            raise
        net._tmpdir = tmpdir
        return net

    @classmethod
    def _load_checkpoint_into(cls, directory: str, url: str, **config: Any) -> Net:
        """`load_checkpoint` into a new PostgreSQL net: the checkpoint's database is copied to a temporary
        file, migrated to this netrun's version, and its rows copied into the net's new schema."""
        restore_into(directory, url)
        return cls.resume(url, **config)

    @staticmethod
    def load_definition(path_or_text: str | os.PathLike, *, db: str | os.PathLike | None = None,
                        **config: Any) -> Net:
        """A new net from a TOML definition (a path, or the TOML text itself); see README "Definitions".

        The definition is stored in the database, so `Net.resume(db)` needs nothing else.
        Raises DefinitionError / ExpressionError naming the file and the node, edge or key.
        """
        return dsl.load_definition(path_or_text, net_class=Net, db=db, **config)

    def save_definition(self, path: str | os.PathLike) -> None:
        """Write the net's definition (graph, options, functions, port types, meta) as TOML."""
        self._live()
        dsl.save_definition(self, path)

    def dumps_definition(self) -> str:
        """The net's definition as TOML text (what `save_definition` writes)."""
        self._live()
        return dsl.dumps_definition(self)

    from_factory = staticmethod(factories.from_factory)

    def _write_meta(self, graph: ns.Graph, *, existed: bool) -> None:
        meta = {
            "graph": json.dumps(graph_to_data(graph)),
            "config": json.dumps(self._config.to_json()),
            "netrun_version": __version__,
            "created_at": iso(self._config.clock.now()),
        }
        with transaction(self._conn):
            self._conn.executemany("INSERT INTO net_meta (key, value) VALUES (?, ?)", list(meta.items()))
            self._conn.executemany("INSERT INTO node_settings (node_name, config) VALUES (?, '{}')",
                                   [(name,) for name in graph.nodes()])

    # -- lifecycle ------------------------------------------------------------------------
    def _live(self) -> Runtime:
        if self._closed:
            raise NetClosedError(f"the net on {self.db_path} is closed")
        return self._rt

    def close(self) -> None:
        """Stop the net: end a background run as `pause()` would, join every thread it started, call
        stop functions, commit, flush history, close the database; only then release the owner lock.

        Idempotent. A temporary database (`db=None`) is deleted.
        """
        rt = self._rt
        if rt.looping and rt.owner.is_mine:
            raise ContextUsageError(f"close() of the net on {self.db_path} was called from node code while the net "
                                    "runs; call net.pause() there, and close() once start() returns")
        if in_worker_thread(self):  # close() joins the pool's workers, this thread among them
            raise ContextUsageError(f"close() of the net on {self.db_path} was called from node code in one of its "
                                    "thread pool's workers; call net.pause() there, and close() once start() returns")
        if self._closer == threading.get_ident():
            return  # a stop function of this very close(): the close under way finishes
        with self._closing:  # one closer at a time; the others find it closed
            if self._closed:
                return
            self._closer = threading.get_ident()
            self._rt.closing = True  # a start()/run_step() that has not begun its run refuses from now on
            try:
                self._stop_run()
                self._shut_down()
            finally:
                self._closer = None

    def _stop_run(self) -> None:
        """End a run going on in another thread as `pause()` would, and wait for its loop to end."""
        rt = self._rt
        control = rt.control
        if control.in_background and control.thread is not threading.current_thread():
            control.request_pause()
            control.thread.join()
        while rt.looping:  # a foreground start() in another thread: its running epochs finish first
            control.request_pause()
            time.sleep(0.005)

    def _shut_down(self) -> None:
        rt = self._rt

        def shut_down() -> bool:
            if rt.looping:  # served by the loop of a run that began before close() (the loop serves calls)
                return False
            try:
                rt.pools.stop()  # workers are joined before the store closes
                rt.stop_nodes()
            finally:
                rt.journal.commit()
                rt.history.flush()
                if rt.starts is not None:
                    rt.starts.close()  # only after the last commit: a failed one leaves the intents
            return True

        try:
            while not rt.owner.call(shut_down):  # a run that began meanwhile ends first, as pause() would
                self._stop_run()
        finally:
            self._closed = True
            rt.owner.close(lambda: NetClosedError(f"the net on {self.db_path} is closed"))
            try:
                self._readers.close()  # waits for the reads going on in other threads
            finally:
                self._conn.close()
                self._owner.release()
                self._cleanup_tmp()

    def _cleanup_tmp(self) -> None:
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> Net:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- configuration ------------------------------------------------------------------------
    def set_node_exec(self, node_name: str, exec_node_func: Callable[..., Any] | None = None,
                      start_node_func: Callable[..., Any] | None = None,
                      stop_node_func: Callable[..., Any] | None = None,
                      exec_failed_node_func: Callable[..., Any] | None = None, *,
                      start_func: Callable[..., Any] | None = None, stop_func: Callable[..., Any] | None = None,
                      failed_func: Callable[..., Any] | None = None) -> None:
        """Register a node's functions, sync or async (the short `*_func` names are accepted too).

        Module-level functions are stored by import path, so `Net.resume` restores them.

        Raises:
            NotFoundError: no such node. ConfigError: a function is not callable.
        """
        rt = self._live()
        rt.node(node_name)
        funcs = NodeFunctions(exec=exec_node_func, start=start_node_func or start_func,
                              stop=stop_node_func or stop_func, failed=exec_failed_node_func or failed_func)
        for role, func in (("exec_node_func", funcs.exec), ("start_node_func", funcs.start),
                           ("stop_node_func", funcs.stop), ("exec_failed_node_func", funcs.failed)):
            if func is None:
                continue
            if not callable(func):
                raise ConfigError(f"node {node_name!r}: {role} must be callable, got {func!r}", node=node_name)
            problem = factories.generator_problem(func)
            if problem is not None:
                raise ConfigError(f"node {node_name!r}: {role} {problem}", node=node_name)
        paths = {role: _import_path(f) for role, f in (("exec", funcs.exec), ("start", funcs.start),
                                                        ("stop", funcs.stop), ("failed", funcs.failed)) if f}
        self._check_remote(node_name, rt.configs[node_name].pool, paths)
        rt.owner.call(lambda: rt.install_functions(node_name, funcs, paths))

    def _check_remote(self, node_name: str, pool: Any, paths: dict[str, str | None]) -> None:
        """A node of a remote pool runs in `netrun worker` processes, which import its functions by their
        stored paths: a lambda or a closure cannot get there. Raises ConfigError naming the node."""
        names = [pool] if isinstance(pool, str) else list(pool or [])
        remote = [p for p in names if p in self._config.remote_pools]
        lost = sorted(role for role, path in paths.items() if path is None)
        if remote and lost:
            raise ConfigError(f"node {node_name!r} is in remote pool {remote[0]!r}, whose workers import its functions "
                              f"by their import paths, but its {', '.join(lost)} function is a lambda or a closure; "
                              "use a module-level function", option="pool", node=node_name)

    def set_node_config(self, node_name: str, **options: Any) -> None:
        """Set node options (see the README's table).

        Raises:
            NotFoundError: no such node. ConfigError: an unknown option, a wrong type, an unknown
            pool, or `retries > 0` without `defer_net_actions=True`.
        """
        rt = self._live()
        rt.node(node_name)
        pools = set(self._config.thread_pools) | set(self._config.process_pools) | set(self._config.remote_pools)

        def apply() -> None:
            updated = update_node_config(node_name, rt.configs[node_name], options, pools=pools)
            stored = rt.journal.conn.execute("SELECT functions FROM node_settings WHERE node_name = ?",
                                             (node_name,)).fetchone()
            self._check_remote(node_name, updated.pool, json.loads(stored[0]) if stored else {})
            rt.replace_config(node_name, updated)

        rt.owner.call(apply)

    def set_input_port_type(self, node_name: str, port_name: str, port_type: Any) -> None:
        """Type an input port; checked when one of its packets is consumed (see README "Port types").

        `port_type=None` removes the type. Raises NotFoundError / PortNotFound / ConfigError.
        """
        self._set_port_type(node_name, "in", port_name, port_type)

    def set_output_port_type(self, node_name: str, port_name: str, port_type: Any) -> None:
        """Type an output port; checked when a packet is loaded into it."""
        self._set_port_type(node_name, "out", port_name, port_type)

    def _set_port_type(self, node_name: str, side: str, port_name: str, port_type: Any) -> None:
        rt = self._live()
        node = rt.node(node_name)
        ports = node.in_ports if side == "in" else node.out_ports
        label = "input" if side == "in" else "output"
        if port_name not in ports:
            raise PortNotFound(f"node {node_name!r} has no {label} port {port_name!r} "
                               f"({label} ports: {', '.join(sorted(ports)) or 'none'})",
                               node_name=node_name, port_name=port_name)
        parsed = None if port_type is None else port_types.parse(
            port_type, where=f"node {node_name!r} {label} port {port_name!r}")
        rt.owner.call(lambda: rt.set_port_type(node_name, side, port_name, parsed))

    def get_port_types(self, node_name: str) -> dict[str, dict[str, Any]]:
        """The node's port types as data: {"in": {port: type}, "out": {port: type}}."""
        rt = self._live()
        rt.node(node_name)
        types = rt.owner.call(lambda: rt.port_types.get(node_name, {"in": {}, "out": {}}))
        return {s: {p: t.to_data() for p, t in types[s].items()} for s in ("in", "out")}

    def get_node_config(self, node_name: str) -> dict[str, Any]:
        rt = self._live()
        rt.node(node_name)
        return rt.configs[node_name].to_json()

    # -- work in ------------------------------------------------------------------------------
    def inject_source_epoch(self, node_name: str) -> str:
        """Create a startable epoch with an empty salvo on `node_name`; it starts on the next step.

        Durable when this returns. Returns the epoch ID.
        """
        rt = self._live()
        return rt.owner.call(lambda: rt.inbox.inject_epoch(node_name))

    def inject_packet(self, node_name: str, port_name: str, value: Any) -> str:
        """Put a packet holding `value` at an input port. Durable when this returns; returns the packet ID.

        Raises:
            NotFoundError / PortNotFound: no such node or input port. PortFull: the port is at capacity.
            UnpicklableValue: the value cannot be stored.
        """
        rt = self._live()
        return rt.owner.call(lambda: rt.inbox.inject_packet(node_name, port_name, value))

    # -- running ----------------------------------------------------------------------------
    def run_step(self, start_epochs: bool = True, *, threaded: bool = False) -> None:
        """Run until blocked, start the ready epochs, and run them to completion.

        With `threaded=True` the step runs in a background thread and this returns at once
        (see `wait_until_blocked`, `poll`). A SIGINT during a foreground run pauses the net
        once its running epochs finish, then raises KeyboardInterrupt.

        Raises:
            NodeExecutionFailed: with `on_error="raise"`, after pausing; the original is `__cause__`.
        """
        rt = self._live()
        # An earlier pause() is cleared by each call, never between steps (see Runtime.unpause)
        if threaded:
            rt.control.run_in_background(lambda: rt.run_step(start_epochs=start_epochs), unpause=rt.unpause)
            return
        with rt.control.foreground():
            rt.run_step(start_epochs=start_epochs, unpause=True)

    def start(self, *, threaded: bool = False) -> None:
        """Run steps until nothing more can run (or the net pauses). `threaded=True`: in the background."""
        rt = self._live()
        if threaded:
            rt.control.run_in_background(rt.run_until_done, unpause=rt.unpause)
            return
        with rt.control.foreground():
            rt.run_until_done(unpause=True)

    def wait_until_blocked(self, timeout: float | None = None) -> NetStatus:
        """Wait for a background run to end (blocked, or paused); returns the status.

        Raises what stopped the run (e.g. NodeExecutionFailed with on_error="raise"), or
        TimeoutError after `timeout` seconds.
        """
        rt = self._live()
        if in_worker_thread(self) or self._in_own_run():  # it would wait for itself
            raise ContextUsageError(f"wait_until_blocked() of the net on {self.db_path} was called from node code "
                                    "while the net runs that code: the run ends only after this epoch; call "
                                    "net.pause() there, or wait outside node code")
        return rt.control.wait(timeout)

    async def async_wait_until_blocked(self, timeout: float | None = None) -> NetStatus:
        if self._in_node_code():
            return self.wait_until_blocked(timeout)  # raises: node code would wait for itself
        return await asyncio.to_thread(self.wait_until_blocked, timeout)

    def _in_own_run(self) -> bool:
        """Whether the caller is node code of this net's loop (its thread): a call that waits for the run
        must be checked here, before it is handed to another thread, which cannot tell."""
        rt = self._rt
        return not self._closed and rt.looping and rt.owner.is_mine

    def _in_node_code(self) -> bool:
        """Whether the caller is node code this net runs: in its loop's thread, or in one of its thread
        pool's workers (an async node there runs in the worker's own event loop). The async twins
        check it before they hand the call to another thread (`asyncio.to_thread`), which cannot tell
        and would wait for the run that waits for this very epoch."""
        return self._in_own_run() or in_worker_thread(self)

    def poll(self) -> NetStatus:
        """The net's state (running, pausing, paused, blocked, stopped) and per-node epoch counts."""
        if self._closed:
            return NetStatus("stopped")
        return self._rt.control.poll()

    def stop(self) -> None:
        """Pause (running epochs finish), join every worker and the runner, and close the net."""
        if not self._closed:
            try:
                self._rt.control.pause()
            except NetClosedError:  # another thread closed it meanwhile
                pass
        self.close()

    async def async_pause(self) -> None:
        if self._in_node_code():
            self.pause()  # returns at once: the run pauses once the running epochs, this one included, end
            return
        await asyncio.to_thread(self.pause)

    async def async_stop(self) -> None:
        if self._in_node_code():
            self.stop()  # pauses, then raises ContextUsageError: as stop() from sync node code
        await asyncio.to_thread(self.stop)

    async def async_run_step(self, start_epochs: bool = True) -> None:
        """`run_step()` for async code: async epochs of a step run concurrently in the running loop."""
        await self._live().async_run_step(start_epochs=start_epochs, unpause=True)

    async def async_start(self) -> None:
        """`start()` for async code."""
        await self._live().async_run_until_done(unpause=True)

    def pause(self) -> None:
        """Start no new epoch; returns once the running ones finished (from another thread).
        `start()` continues."""
        self._live().control.pause()

    def get_startable_epochs(self) -> list[str]:
        """IDs of every startable epoch (including those of nodes without an exec function)."""
        rt = self._live()
        return rt.owner.call(rt.startable_epochs)

    def get_startable_epochs_by_node(self, node_name: str) -> list[str]:
        rt = self._live()
        rt.node(node_name)
        return rt.owner.call(lambda: rt.startable_epochs(node_name))

    @property
    def graph(self) -> ns.Graph:
        """The net's graph (netrun-sim's `Graph`)."""
        return self._rt.graph

    # -- reading back ---------------------------------------------------------------------------
    def query(self, sql: str, params: tuple | list | dict = ()) -> list[dict]:
        """Run a read-only SQL statement over the net's tables; rows as dicts.

        Everything done so far is committed first. Raises ReadOnlyQueryError for a
        statement that would write.
        """
        rt = self._live()
        rt.owner.call(rt.journal.commit)
        with self._readers.using() as reader:  # close() waits for this read
            return read_query(reader, sql, params)

    def get_node_log(self, node_name: str) -> list[str]:
        """Lines printed by the node's functions, oldest first."""
        rt = self._live()
        rt.node(node_name)
        return [r["text"] for r in self.query("SELECT text FROM node_logs WHERE node_name = ? ORDER BY seq",
                                              (node_name,))]

    def get_epoch_log(self, epoch_id: str) -> list[str]:
        """Lines printed during one epoch, oldest first."""
        return [r["text"] for r in self.query("SELECT text FROM node_logs WHERE epoch_id = ? ORDER BY seq",
                                              (epoch_id,))]

    def get_packet_value(self, packet_id: str) -> Any:
        """A live packet's value (a value function is called), or a consumed one that is kept.

        Raises NotFoundError when no value is stored.
        """
        rt = self._live()

        def read() -> Any:
            rt.journal.commit()
            return rt.values.get(packet_id)

        return rt.owner.call(read)

    @property
    def dead_letter_queue(self) -> DeadLetterQueue:
        """Dead letters: `get_all()`, `get_by_node(node)`, `replay(entry)`, `discard(entry)`."""
        return self._live().dead_letters

    @property
    def history(self) -> list[dict]:
        """The most recent `history_max_size` history records (all are in the `history` table)."""
        rt = self._live()

        def read() -> list[tuple]:
            rt.journal.commit()
            return rt.history.recent()

        return [to_json_record(r) for r in rt.owner.call(read)]  # converted in the caller's thread

    def flush_history(self) -> None:
        """Append every pending history record to `history_file` now."""
        rt = self._live()

        def flush() -> None:
            rt.journal.commit()
            rt.history.flush()

        rt.owner.call(flush)
