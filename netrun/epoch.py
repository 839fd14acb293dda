"""Running one epoch: attempts (the user's code, retries, failure callbacks), then its end.

`AttemptLoop` runs the attempts. It needs only a *host* with `journal` (`add`, `now`),
`values`, `graph_nodes`, `node_shapes`, `port_types`, `clock` and `net`, so it runs the same way in the
main thread (host: the runtime) and in a pool worker (host: `worker.WorkerHost`, whose
journal collects rows for the worker's result transaction).

`EpochRun` (main process only) runs a main-thread epoch's attempts; `EpochEnds`, built by the
owner from the collaborators it needs (sim, journal, values, dead letters), ends every epoch, the
pools' too, in exactly one of three ways, each journaled with the epoch's other rows:
- finished: (deferred actions applied, then) `FinishEpoch`;
- cancelled: `ctx.cancel_epoch()`; its packets are destroyed (and dead-lettered);
- failed: after the last attempt; its packets are destroyed and dead-lettered with the
  error, the epoch row keeps the error text and type, and the net's `on_error` applies.

The values an epoch consumed stay stored until it ends (`EpochOps.held`): finished, they are
dropped (or kept, with `consumed_packet_storage`); failed or cancelled, they are dead-lettered
with the packets still inside. A BaseException escaping node code (KeyboardInterrupt,
SystemExit) ends the epoch by the crash semantics before it propagates: a non-deferred epoch
is cancelled and everything it held dead-lettered as 'interrupted'; a deferred one applied
nothing and is startable again (the next start() or a resume runs it).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import netrun_sim as ns

from .actions import EpochOps, ImmediateActions
from .capture import Capture, capturing
from .config import NodeConfig
from .context import AsyncNodeExecutionContext, NodeExecutionContext, NodeFailureContext, Packet
from .deferred import DeferredActions, apply_queue
from .errors import ContextUsageError, EpochCancelled, EpochTimeout, NodeExecutionFailed, UnfinishedEpochError
from .jobs import Claim
from .reentry import reentrant_point
from .tracebacks import error_text, error_type, format_traceback, skip_first_frame
from .host import NodeFunctions
from .journal import Journal
from .sim import Sim
from .values import ValueStore, resolve_sync


@dataclass
class Outcome:
    kind: str  # "finished", "cancelled" or "failed"
    actions: EpochOps | None = None  # the last attempt's operations
    error: BaseException | None = None
    traceback: str | None = None  # the failed last attempt's formatted traceback


def run_sync(coro: Any) -> Any:
    """Run a coroutine that never suspends (one implementation serves sync and async callers)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise RuntimeError("netrun: a sync code path suspended; this is a bug in netrun")


def write_logs(journal: Any, epoch_id: str | None, node: str, capture: Capture | None) -> None:
    """Queue the lines a capture collected as node_logs rows."""
    if capture is None or not capture.lines:
        return
    now = journal.now()
    for line in capture.lines:
        journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                    (epoch_id, node, now, line))


def _task_cancelled() -> bool:
    """Whether the running task is being cancelled from outside (not a CancelledError raised by user code)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    return task is not None and task.cancelling() > 0


def salvo_packets(in_ports: tuple[str, ...], salvo: list[tuple[str, str]]) -> tuple[dict[str, list[Packet]], dict]:
    """The `packets` argument of an exec function (a list per input port), and packet ID -> input port."""
    packets: dict[str, list[Packet]] = {port: [] for port in in_ports}
    ports: dict[str, str] = {}
    for port, packet_id in salvo:
        packets.setdefault(port, []).append(Packet(packet_id))
        ports[packet_id] = port
    return packets, ports


class AttemptLoop:
    """The attempts of one epoch, until success, cancellation or the last failure."""

    def __init__(self, host: Any, node: str, epoch_id: str, salvo: list[tuple[str, str]], config: NodeConfig,
                 funcs: NodeFunctions, *, deferred: bool, finisher: Callable[[EpochOps], BaseException | None],
                 first_attempt: int = 0) -> None:
        self.host = host
        self.node = node
        self.epoch_id = epoch_id
        self.config = config
        self.funcs = funcs
        self.deferred = deferred
        self.finisher = finisher
        self.first_attempt = first_attempt
        self.graph_node = host.graph_nodes[node]
        self.shape = host.node_shapes[node]
        self.types = host.port_types.get(node)
        self.packets, self.ports = salvo_packets(self.shape.in_ports, salvo)
        self.actions: EpochOps | None = None  # the current attempt's operations
        self.interrupt_traceback: str | None = None  # of a BaseException that escaped the node's code
        self.interrupted_attempt = first_attempt  # the attempt it escaped (not counted: it runs again)

    def run(self) -> Outcome:
        """Run a sync epoch (nothing in it suspends)."""
        return run_sync(self.run_async(asynchronous=False))

    async def run_async(self, *, asynchronous: bool = True) -> Outcome:
        host, cfg = self.host, self.config
        timestamps: list = []
        exceptions: list[BaseException] = []
        attempt = self.first_attempt
        while True:
            started_at = host.journal.now()
            if self.deferred:
                actions = self.actions = DeferredActions(self.epoch_id, self.node, self.ports, values=host.values,
                                                         node=self.graph_node, shape=self.shape, types=self.types,
                                                         beat=host.beat)
            else:  # in the owner (a pool worker's epochs are all deferred): its sim and journal
                actions = self.actions = ImmediateActions(self.epoch_id, self.node, self.ports, values=host.values,
                                                          node=self.graph_node, types=self.types, beat=host.beat,
                                                          sim=host.sim, journal=host.journal)
            began = host.clock.monotonic()
            ctx = (AsyncNodeExecutionContext if asynchronous else NodeExecutionContext)(
                epoch_id=self.epoch_id, node_name=self.node, net=host.net, actions=actions, retry_count=attempt,
                retry_timestamps=timestamps, retry_exceptions=exceptions, params=cfg.params,
                check_deadline=None if asynchronous else self._deadline(began))  # async: cancelled at the deadline
            try:
                error, cancelled = await self._call_exec(ctx, began)
            except BaseException as exc:  # an interrupt (KeyboardInterrupt, SystemExit): EpochRun ends the epoch
                self.interrupt_traceback = format_traceback(exc)
                self.interrupted_attempt = attempt
                if not cfg.defer_net_actions:  # cancelled; a deferred attempt is not counted: it runs again
                    self._record_attempt(attempt, started_at, "cancelled", exc, self.interrupt_traceback)
                raise
            if cancelled:
                self._record_attempt(attempt, started_at, "cancelled", None)
                return Outcome("cancelled", actions)
            if error is None:
                error = self.finisher(actions)
                if error is None:
                    self._record_attempt(attempt, started_at, "finished", None)
                    if isinstance(actions, DeferredActions) and cfg.defer_net_actions:
                        self._keep_queue(attempt, actions, "applied")
                    return Outcome("finished", actions)
            if isinstance(actions, DeferredActions) and cfg.defer_net_actions:
                self._keep_queue(attempt, actions, "discarded")
            await self._call_failed(attempt, timestamps, exceptions, actions, error, asynchronous)
            text = format_traceback(error)  # after the failure callback: its note is part of it
            self._record_attempt(attempt, started_at, "failed", error, text)
            if attempt >= cfg.retries:
                return Outcome("failed", actions, error, text)
            exceptions.append(error)
            timestamps.append(host.clock.now())
            attempt += 1
            host.journal.add("UPDATE epochs SET attempt = attempt + 1 WHERE id = ?", (self.epoch_id,))
            if asynchronous and cfg.retry_wait:
                await asyncio.to_thread(host.clock.sleep, cfg.retry_wait)  # the loop keeps running
            else:
                host.clock.sleep(cfg.retry_wait)

    def _record_attempt(self, attempt: int, started_at: str, outcome: str, error: BaseException | None,
                        traceback: str | None = None) -> None:
        journal = self.host.journal
        journal.add("INSERT INTO epoch_attempts (epoch_id, attempt, node_name, started_at, finished_at, outcome, error, "
                    "error_type, traceback) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.epoch_id, attempt, self.node, started_at, journal.now(), outcome,
                     error_text(error) if error is not None else None,
                     error_type(error) if error is not None else None, traceback))

    def _keep_queue(self, attempt: int, actions: DeferredActions, status: str) -> None:
        """Keep an attempt's deferred queue in `deferred_actions`: applied, or discarded (failed)."""
        for seq, op in enumerate(actions.queue):
            kind = op[0]
            if kind == "consume" or kind == "create":
                row = (self.epoch_id, attempt, seq, kind, op[1], None, None, status)
            elif kind == "load":
                row = (self.epoch_id, attempt, seq, "load", op[2], op[1], None, status)
            else:
                row = (self.epoch_id, attempt, seq, "send", None, None, op[1], status)
            self.host.journal.add("INSERT INTO deferred_actions (epoch_id, attempt, seq, action, packet, port_name, "
                                  "salvo_condition, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)

    def _deadline(self, began: float) -> Callable[[], None] | None:
        """What a sync context calls before each operation: past the timeout it raises EpochTimeout, so
        an output made after the deadline is never sent (a sync function cannot be interrupted)."""
        timeout, clock = self.config.timeout, self.host.clock
        if timeout is None:
            return None

        def check() -> None:
            elapsed = clock.monotonic() - began
            if elapsed > timeout:
                raise self.timeout_error(elapsed)

        return check

    @reentrant_point
    async def _call_exec(self, ctx: NodeExecutionContext, began: float) -> tuple[BaseException | None, bool]:
        host, cfg = self.host, self.config
        error: BaseException | None = None
        with capturing(cfg.capture_stdout, cfg.echo_stdout) as capture:
            try:
                result = self.funcs.exec(ctx, self.packets)
                if inspect.isgenerator(result) or inspect.isasyncgen(result):  # set_node_exec refuses such functions
                    raise ContextUsageError(f"node {self.node!r} epoch {self.epoch_id}: the exec function returned a "
                                            f"generator, which netrun never iterates (none of its code ran): use "
                                            f"return instead of yield")
                if result is not None and inspect.isawaitable(result):
                    if cfg.timeout is not None:
                        try:
                            await asyncio.wait_for(result, cfg.timeout)
                        except TimeoutError:
                            raise self.timeout_error(cancelled=True) from None
                    else:
                        await result
                if isinstance(ctx, AsyncNodeExecutionContext):
                    ctx.check_all_awaited()
            except EpochCancelled:
                write_logs(host.journal, self.epoch_id, self.node, capture)
                return None, True
            except (Exception, asyncio.CancelledError) as exc:  # noqa: BLE001 - user code: every failure is recorded
                # A CancelledError raised by the node's own code fails its epoch like any error
                # (netrun's timeout turns into EpochTimeout above); only interpreter exits
                # (KeyboardInterrupt, SystemExit) escape, once the epoch has ended (EpochRun), and so
                # does the cancellation of the epoch's task itself (an interrupt in a neighbour).
                if isinstance(exc, asyncio.CancelledError) and _task_cancelled():
                    write_logs(host.journal, self.epoch_id, self.node, capture)
                    raise
                error = skip_first_frame(exc)  # its traceback starts in the node's code
            except BaseException:
                write_logs(host.journal, self.epoch_id, self.node, capture)
                raise
        write_logs(host.journal, self.epoch_id, self.node, capture)
        elapsed = host.clock.monotonic() - began
        if error is None and cfg.timeout is not None and elapsed > cfg.timeout:
            error = self.timeout_error(elapsed)
        return error, False

    def timeout_error(self, elapsed: float | None = None, *, cancelled: bool = False) -> EpochTimeout:
        cfg = self.config
        what = "was stopped at" if cancelled or elapsed is None else f"ran {elapsed:.3f}s, over"
        return EpochTimeout(
            f"node {self.node!r} epoch {self.epoch_id} {what} its timeout of {cfg.timeout}s"
            + ("; its deferred actions are discarded" if cfg.defer_net_actions else
               "; packets still inside are destroyed (output already sent stays sent: "
               "use defer_net_actions=True to discard all of it)"), node_name=self.node, epoch_id=self.epoch_id)

    async def _call_failed(self, attempt: int, timestamps: list, exceptions: list, actions: EpochOps,
                           error: BaseException, asynchronous: bool) -> None:
        func = self.funcs.failed
        if func is None:
            return
        host, cfg = self.host, self.config
        ctx = NodeFailureContext(epoch_id=self.epoch_id, node_name=self.node, retry_count=attempt,
                                 retry_timestamps=list(timestamps), retry_exceptions=[*exceptions, error],
                                 input_salvo=self.packets, packet_values=dict(actions.received), _net=host.net,
                                 params=cfg.params)
        await call_failure_func(func, ctx, cfg, host.journal, error, asynchronous=asynchronous)


@reentrant_point
async def call_failure_func(func: Callable[..., Any], ctx: NodeFailureContext, cfg: NodeConfig, journal: Any,
                            error: BaseException, *, asynchronous: bool) -> None:
    """Call a node's `exec_failed_node_func(ctx)`; what it prints goes to the node's log, and an error it
    raises is noted on `error` (and logged): the failure flow goes on either way."""
    epoch_id, node = ctx.epoch_id, ctx.node_name
    with capturing(cfg.capture_stdout, cfg.echo_stdout) as capture:
        try:
            result = func(ctx)
            if inspect.isawaitable(result):
                if asynchronous:
                    await result
                else:
                    resolve_sync(result)
        except Exception as exc:  # noqa: BLE001 - recorded in the node log and the epoch's error
            text = f"exec_failed_node_func raised {error_text(exc)}"
            if capture is not None:
                capture.lines.append(text)
            else:
                journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                            (epoch_id, node, journal.now(), text))
            error.add_note(text)
    write_logs(journal, epoch_id, node, capture)


def unfinished_error(node: str, epoch_id: str, inside: set[str], unsent: bool,
                     cause: BaseException | None = None) -> UnfinishedEpochError:
    error = UnfinishedEpochError(
        f"node {node!r} epoch {epoch_id}: the exec function returned with packets still inside the "
        f"epoch ({', '.join(sorted(inside)) or 'none'})" + (" and output loaded but not sent" if unsent else "")
        + "; consume or send every packet, or cancel the epoch", node_name=node, epoch_id=epoch_id)
    error.__cause__ = cause
    return error


def check_deferred_complete(node: str, epoch_id: str, actions: EpochOps) -> BaseException | None:
    """A deferred epoch may end only with nothing left inside and nothing loaded but unsent."""
    unsent = any(actions._loaded.values())
    if actions.inside or unsent:
        return unfinished_error(node, epoch_id, actions.inside, unsent)
    return None


@dataclass(kw_only=True, eq=False)
class EpochEnds:
    """How epochs end in the owner: the sim's steps journaled, the values an epoch consumed dropped or
    kept, the packets it lost dead-lettered, a failure handed to the net's error policy. The owner
    builds one from the collaborators it needs; `EpochRun` and the pools end their epochs through it."""

    sim: Sim
    journal: Journal
    values: ValueStore
    dead_letters: Any  # deadletters.DeadLetterQueue
    configs: dict[str, NodeConfig]
    do: Callable[..., None]  # journal an action and track the epochs its events create or end
    abandon: Callable[[str, str, BaseException], BaseException]
    node_failed: Callable[[NodeExecutionFailed], None]
    restart: Callable[[str, str, int], None]

    def finish(self, node: str, epoch_id: str, actions: EpochOps) -> BaseException | None:
        """End a successful attempt: its deferred queue applied and the epoch finished, or the error
        that fails the attempt. A deferred queue was checked and serialized at each call, so applying
        it cannot fail but by a bug; if it does, the net stops without writing anything of it."""
        if isinstance(actions, DeferredActions):
            error = check_deferred_complete(node, epoch_id, actions)
            if error is not None:
                return error
            try:
                actions.apply(self.sim, self.journal)
                self.do("FinishEpoch", self.sim.finish_epoch(epoch_id), epoch_id=epoch_id, node_name=node)
            except BaseException as exc:
                raise self.abandon(node, epoch_id, exc) from exc
        else:
            try:
                events = self.sim.finish_epoch(epoch_id)
            except (ns.CannotFinishNonEmptyEpochError, ns.UnsentOutputSalvoError) as exc:
                return unfinished_error(node, epoch_id, actions.inside, isinstance(exc, ns.UnsentOutputSalvoError), exc)
            self.do("FinishEpoch", events, epoch_id=epoch_id, node_name=node)
        self.release(actions.held)
        return None

    def release(self, held: list[tuple[str, bytes | None]]) -> None:
        """The epoch finished: the values it consumed are dropped (or kept, per the net's options)."""
        for packet_id, kept in held:
            self.values.forget(packet_id, kept=kept)

    def cancelled(self, node: str, epoch_id: str, ports: dict[str, str], *, reason: str, error: str | None,
                  held: list[tuple[str, bytes | None]] = (), traceback: str | None = None) -> None:
        """Cancel the epoch in the sim; the values it consumed (`held`) and the packets still inside it
        are destroyed and dead-lettered with their values."""
        events = self.sim.cancel_epoch(epoch_id)
        self.do("CancelEpoch", events, epoch_id=epoch_id, node_name=node)
        keep = self.configs[node].dead_letter_queue
        lost = [packet_id for packet_id, _kept in held]
        lost += [ev.packet_id for ev in events if ev.kind == "PacketDestroyed"]
        for packet_id in lost:
            stored = self.values.discard(packet_id)
            if keep:
                self.dead_letters.record(packet_id=packet_id, node_name=node, port_name=ports.get(packet_id),
                                         epoch_id=epoch_id, reason=reason, error=error, stored=stored,
                                         traceback=traceback)

    def failed(self, node: str, epoch_id: str, ports: dict[str, str], error: BaseException, *,
               held: list[tuple[str, bytes | None]] = (), traceback: str | None = None) -> None:
        """The last attempt failed: cancel, dead-letter, record the error, apply the net's policy."""
        text = error_text(error)
        traceback = traceback or format_traceback(error)
        self.cancelled(node, epoch_id, ports, reason="failed", error=text, held=held, traceback=traceback)
        self.journal.set_epoch_error(epoch_id, "failed", text, error_type(error))
        failure = NodeExecutionFailed(f"node {node!r} epoch {epoch_id} failed: {text}", node_name=node,
                                      epoch_id=epoch_id, traceback=traceback)
        failure.__cause__ = error
        self.node_failed(failure)

    def interrupted(self, node: str, epoch_id: str, loop: AttemptLoop, exc: BaseException) -> None:
        """A BaseException escaped the attempts: end the epoch by the crash semantics before it goes on.

        Deferred: nothing of the epoch reached the net; it is startable again (a later start() or a
        resume runs it again). Otherwise: cancelled, and every packet it held (consumed values
        included) dead-lettered as 'interrupted'."""
        if getattr(self.journal, "abandoned", None) is not None:
            return
        if self.configs[node].defer_net_actions:
            try:
                self.restart(node, epoch_id, loop.interrupted_attempt)
            except Exception as problem:  # noqa: BLE001 - it stays `running`: a resume runs it again
                exc.add_note(f"epoch {epoch_id} of node {node!r} runs again on resume ({problem})")
            return
        actions = loop.actions
        text = f"interrupted: {error_text(exc)} escaped the node's code"
        try:
            self.cancelled(node, epoch_id, loop.ports, reason="interrupted", error=text,
                           held=actions.held if actions is not None else [],
                           traceback=loop.interrupt_traceback or format_traceback(exc))
            self.journal.set_epoch_error(epoch_id, "cancelled", text, type(exc).__name__)
        except Exception as problem:  # noqa: BLE001 - the interrupt goes on; a resume applies the crash semantics
            exc.add_note(f"netrun could not end epoch {epoch_id} of node {node!r}: {problem}")

    def remote(self, node: str, epoch_id: str, salvo: list[tuple[str, str]], outcome: Outcome,
               queue: list[tuple], kept: dict[str, bytes]) -> str:
        """End an epoch that ran in a pool worker: start it in the sim, apply its actions, end it.

        A non-deferred node's actions up to a failure or cancellation are applied too, as they
        would have been in the main thread; a deferred node's failed queue is dropped.
        """
        self.journal.rerunnable = True  # lost in a crash, the result is applied again (new packet IDs)
        self.do("StartEpoch", self.sim.start_epoch(epoch_id), epoch_id=epoch_id, node_name=node)
        ports = {packet: port for port, packet in salvo}
        deferred = self.configs[node].defer_net_actions
        held: list[tuple[str, bytes | None]] = []
        try:
            if outcome.kind == "finished" or not deferred:
                apply_queue(self.sim, self.journal, self.values, epoch_id, node, queue, kept, held)
            if outcome.kind == "finished":
                self.do("FinishEpoch", self.sim.finish_epoch(epoch_id), epoch_id=epoch_id, node_name=node)
        except BaseException as exc:  # checked in the worker: only a bug gets here
            raise self.abandon(node, epoch_id, exc) from exc
        if outcome.kind == "finished":
            self.release(held)
        elif outcome.kind == "cancelled":
            self.cancelled(node, epoch_id, ports, reason="cancelled", error=None, held=held)
        else:
            self.failed(node, epoch_id, ports, outcome.error, held=held, traceback=outcome.traceback)
        return outcome.kind


class EpochRun:
    """One claimed job in the main process: its attempts (against `host`, the owner), then its end."""

    def __init__(self, ends: EpochEnds, host: Any, job: Claim, salvo: list[tuple[str, str]], config: NodeConfig,
                 funcs: NodeFunctions, first_attempt: int, returned: Callable[[bool], None] | None = None) -> None:
        self.ends = ends
        self.node = job.node_name
        self.epoch_id = job.epoch_id
        self.returned = returned
        self.loop = AttemptLoop(host, self.node, self.epoch_id, salvo, config, funcs,
                                deferred=config.defer_net_actions, finisher=self._finish,
                                first_attempt=first_attempt)

    def _finish(self, actions: EpochOps) -> BaseException | None:
        """End an attempt whose code returned. `returned(True)` first (a deferred sync epoch's start intent
        is taken back: what follows is netrun's, and a kill there is no death of the epoch's code), and
        `returned(False)` if the end fails the attempt (the failure function and a retry run code again)."""
        if self.returned is not None:
            self.returned(True)
        error = self.ends.finish(self.node, self.epoch_id, actions)
        if error is not None and self.returned is not None:
            self.returned(False)
        return error

    async def run_async(self, *, asynchronous: bool = True) -> str:
        """The attempts, then the end; with `asynchronous=False` nothing suspends (see run_sync)."""
        try:
            outcome = await self.loop.run_async(asynchronous=asynchronous)
        except BaseException as exc:
            self.ends.interrupted(self.node, self.epoch_id, self.loop, exc)
            raise
        held = outcome.actions.held if outcome.actions is not None else []
        if outcome.kind == "cancelled":
            self.ends.cancelled(self.node, self.epoch_id, self.loop.ports, reason="cancelled", error=None, held=held)
        elif outcome.kind == "failed":
            self.ends.failed(self.node, self.epoch_id, self.loop.ports, outcome.error, held=held,
                             traceback=outcome.traceback)
        return outcome.kind
