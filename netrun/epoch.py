"""Running one epoch: the user's exec function, retries, and the epoch's ending.

An epoch ends in exactly one of three ways, each journaled with the epoch's other rows:
- finished: (deferred actions applied, then) `FinishEpoch`;
- cancelled: `ctx.cancel_epoch()`; its packets are destroyed (and dead-lettered);
- failed: after the last attempt; its packets are destroyed and dead-lettered with the
  error, the epoch row keeps the error text and type, and the net's `on_error` applies.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import TYPE_CHECKING, Any

import netrun_sim as ns

from .actions import ImmediateActions
from .capture import capturing
from .context import AsyncNodeExecutionContext, NodeExecutionContext, NodeFailureContext, Packet
from .deferred import DeferredActions
from .errors import EpochCancelled, EpochTimeout, NodeExecutionFailed, UnfinishedEpochError
from .queue import Job
from .values import resolve_sync

if TYPE_CHECKING:
    from .runtime import Runtime


class EpochRun:
    """One claimed job, run to its end."""

    def __init__(self, rt: Runtime, job: Job) -> None:
        self.rt = rt
        self.node = job.node_name
        self.epoch_id = job.epoch_id
        self.config = rt.configs[self.node]
        self.funcs = rt.functions[self.node]
        _condition, salvo = rt.sim.epoch_salvo(self.epoch_id)
        self.packets: dict[str, list[Packet]] = {port: [] for port in rt.graph_nodes[self.node].in_ports}
        self.ports: dict[str, str] = {}
        for port, packet_id in salvo:
            self.packets.setdefault(port, []).append(Packet(packet_id))
            self.ports[packet_id] = port

    def run(self) -> str:
        """Run a sync epoch to its end (nothing in it suspends); returns the outcome."""
        coro = self._run(asynchronous=False)
        try:
            coro.send(None)
        except StopIteration as stop:
            return stop.value
        coro.close()
        raise RuntimeError(f"netrun: the sync run of epoch {self.epoch_id} suspended")

    async def run_async(self) -> str:
        """Run an epoch of an async exec function in the current event loop."""
        return await self._run(asynchronous=True)

    async def _run(self, *, asynchronous: bool) -> str:
        """Run attempts until success, cancellation or the last failure; returns the outcome."""
        rt, cfg = self.rt, self.config
        timestamps: list = []
        exceptions: list[BaseException] = []
        attempt = rt.attempt_base.pop(self.epoch_id, 0)
        while True:
            started_at = rt.journal.now()
            actions = (DeferredActions if cfg.defer_net_actions else ImmediateActions)(
                rt, self.epoch_id, self.node, self.ports)
            ctx = (AsyncNodeExecutionContext if asynchronous else NodeExecutionContext)(
                epoch_id=self.epoch_id, node_name=self.node, net=rt.net, actions=actions, retry_count=attempt,
                retry_timestamps=timestamps, retry_exceptions=exceptions)
            error, cancelled = await self._call_exec(ctx)
            if cancelled:
                self._record_attempt(attempt, started_at, "cancelled", None)
                self._cancel(reason="cancelled", error=None)
                return "cancelled"
            if error is None:
                error = self._finish(actions)
                if error is None:
                    self._record_attempt(attempt, started_at, "finished", None)
                    return "finished"
            if isinstance(actions, DeferredActions):
                self._keep_discarded(attempt, actions)
            await self._call_failed(attempt, timestamps, exceptions, actions, error, asynchronous)
            self._record_attempt(attempt, started_at, "failed", error)
            if attempt >= cfg.retries:
                self._fail(error)
                return "failed"
            exceptions.append(error)
            timestamps.append(rt.clock.now())
            attempt += 1
            rt.journal.add("UPDATE epochs SET attempt = attempt + 1 WHERE id = ?", (self.epoch_id,))
            if asynchronous and cfg.retry_wait:
                await asyncio.to_thread(rt.clock.sleep, cfg.retry_wait)  # the loop keeps running
            else:
                rt.clock.sleep(cfg.retry_wait)

    def _record_attempt(self, attempt: int, started_at: str, outcome: str, error: BaseException | None) -> None:
        journal = self.rt.journal
        journal.add("INSERT INTO epoch_attempts (epoch_id, attempt, node_name, started_at, finished_at, outcome, error, "
                    "error_type) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.epoch_id, attempt, self.node, started_at, journal.now(), outcome,
                     _error_text(error) if error is not None else None,
                     type(error).__name__ if error is not None else None))

    def _keep_discarded(self, attempt: int, actions: DeferredActions) -> None:
        """A failed attempt's deferred queue never reaches the net; its rows are kept for inspection."""
        rows = []
        for seq, op in enumerate(actions.queue):
            kind = op[0]
            if kind == "consume":
                rows.append((self.epoch_id, attempt, seq, "consume", op[1], None, None))
            elif kind == "create":
                rows.append((self.epoch_id, attempt, seq, "create", op[1]._key, None, None))
            elif kind == "load":
                rows.append((self.epoch_id, attempt, seq, "load", op[2], op[1], None))
            else:
                rows.append((self.epoch_id, attempt, seq, "send", None, None, op[1]))
        for row in rows:
            self.rt.journal.add("INSERT INTO deferred_actions (epoch_id, attempt, seq, action, packet, port_name, "
                                "salvo_condition) VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    async def _call_exec(self, ctx: NodeExecutionContext) -> tuple[BaseException | None, bool]:
        rt, cfg = self.rt, self.config
        began = rt.clock.monotonic()
        error: BaseException | None = None
        with capturing(cfg.capture_stdout, cfg.echo_stdout) as capture:
            try:
                result = self.funcs.exec(ctx, self.packets)
                if inspect.isawaitable(result):
                    if cfg.timeout is not None:
                        try:
                            await asyncio.wait_for(result, cfg.timeout)
                        except TimeoutError:
                            raise self._timeout(cfg.timeout, cancelled=True) from None
                    else:
                        await result
                if isinstance(ctx, AsyncNodeExecutionContext):
                    ctx.check_all_awaited()
            except EpochCancelled:
                rt.write_logs(self.epoch_id, self.node, capture)
                return None, True
            except Exception as exc:  # noqa: BLE001 - user code: every failure is recorded
                error = exc
        rt.write_logs(self.epoch_id, self.node, capture)
        elapsed = rt.clock.monotonic() - began
        if error is None and cfg.timeout is not None and elapsed > cfg.timeout:
            error = self._timeout(elapsed)
        return error, False

    def _timeout(self, elapsed: float, *, cancelled: bool = False) -> EpochTimeout:
        cfg = self.config
        what = "was cancelled at" if cancelled else f"ran {elapsed:.3f}s, over"
        return EpochTimeout(
            f"node {self.node!r} epoch {self.epoch_id} {what} its timeout of {cfg.timeout}s"
            + ("; its deferred actions are discarded" if cfg.defer_net_actions else
               "; packets still inside are destroyed (output already sent stays sent: "
               "use defer_net_actions=True to discard all of it)"), node_name=self.node, epoch_id=self.epoch_id)

    def _unfinished(self, inside: set[str], unsent: bool, cause: BaseException | None = None) -> UnfinishedEpochError:
        error = UnfinishedEpochError(
            f"node {self.node!r} epoch {self.epoch_id}: the exec function returned with packets still inside the "
            f"epoch ({', '.join(sorted(inside)) or 'none'})" + (" and output loaded but not sent" if unsent else "")
            + "; consume or send every packet, or cancel the epoch", node_name=self.node, epoch_id=self.epoch_id)
        error.__cause__ = cause
        return error

    def _finish(self, actions: ImmediateActions | DeferredActions) -> BaseException | None:
        rt = self.rt
        if isinstance(actions, DeferredActions):
            unsent = any(actions._loaded.values())
            if actions.inside or unsent:
                return self._unfinished(actions.inside, unsent)
            actions.apply()
        try:
            events = rt.sim.finish_epoch(self.epoch_id)
        except (ns.CannotFinishNonEmptyEpochError, ns.UnsentOutputSalvoError) as exc:
            return self._unfinished(actions.inside, isinstance(exc, ns.UnsentOutputSalvoError), exc)
        rt.do("FinishEpoch", events, epoch_id=self.epoch_id, node_name=self.node)
        return None

    async def _call_failed(self, attempt: int, timestamps: list, exceptions: list, actions: Any,
                           error: BaseException, asynchronous: bool) -> None:
        func = self.funcs.failed
        if func is None:
            return
        rt, cfg = self.rt, self.config
        ctx = NodeFailureContext(epoch_id=self.epoch_id, node_name=self.node, retry_count=attempt,
                                 retry_timestamps=list(timestamps), retry_exceptions=[*exceptions, error],
                                 input_salvo=self.packets, packet_values=dict(actions.received), _net=rt.net)
        with capturing(cfg.capture_stdout, cfg.echo_stdout) as capture:
            try:
                result = func(ctx)
                if inspect.isawaitable(result):
                    if asynchronous:
                        await result
                    else:
                        resolve_sync(result)
            except Exception as exc:  # noqa: BLE001 - recorded in the node log and the epoch's error
                text = f"exec_failed_node_func raised {type(exc).__name__}: {exc}"
                capture_lines = capture.lines if capture is not None else None
                if capture_lines is not None:
                    capture_lines.append(text)
                else:
                    rt.journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                                   (self.epoch_id, self.node, rt.journal.now(), text))
                error.add_note(text)
        rt.write_logs(self.epoch_id, self.node, capture)

    def _cancel(self, *, reason: str, error: str | None) -> None:
        rt = self.rt
        events = rt.sim.cancel_epoch(self.epoch_id)
        rt.do("CancelEpoch", events, epoch_id=self.epoch_id, node_name=self.node)
        keep = self.config.dead_letter_queue
        for ev in events:
            if ev.kind != "PacketDestroyed":
                continue
            stored = rt.values.discard(ev.packet_id)
            if keep:
                rt.dead_letters.record(packet_id=ev.packet_id, node_name=self.node,
                                       port_name=self.ports.get(ev.packet_id), epoch_id=self.epoch_id,
                                       reason=reason, error=error, stored=stored)

    def _fail(self, error: BaseException) -> None:
        rt = self.rt
        text = _error_text(error)
        self._cancel(reason="failed", error=text)
        rt.journal.set_epoch_error(self.epoch_id, "failed", text, type(error).__name__)
        failure = NodeExecutionFailed(f"node {self.node!r} epoch {self.epoch_id} failed: {text}",
                                      node_name=self.node, epoch_id=self.epoch_id)
        failure.__cause__ = error
        rt.node_failed(failure)


def _error_text(error: BaseException) -> str:
    """`Type: message`, with any notes (e.g. a failure callback that raised) appended."""
    text = f"{type(error).__name__}: {error}"
    notes = getattr(error, "__notes__", None)
    if notes:
        text += " [" + "; ".join(notes) + "]"
    return text
