"""The journal: every sim step becomes rows, committed together.

Each `record()` call turns one NetAction and the NetEvents it caused into `history`
rows and the `epochs`/`packets` state rows they imply. Rows are buffered and written by
`commit()` in one IMMEDIATE transaction, together with the packet values, queue updates
and log lines recorded since the last commit. The sim is memory; the file is the truth:
a crash between commits loses only steps that were never committed, and the rows on disk
always describe a state the sim really passed through.

State rows are coalesced in memory until the commit: a packet created, moved three
times and consumed between two commits is written once, in its final form.

Commits happen at the runtime's durable points (when an epoch is claimed and started,
at the end of a step, when work is injected) and whenever the buffer grows past
`max_pending` entries, so memory stays bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from time import time_ns
from typing import Any

import apsw

from . import faults
from .clock import Clock, SystemClock, Stamps
from .db import transaction
from .errors import StorageError
from .historyrows import Action, Encoder, next_seq
from .jsontext import compact as compact_json
from .sim import OUTSIDE, Event, Location

_INSERT_PACKET = (
    "INSERT INTO packets (id, state, location, node_name, port_name, epoch_id, from_node, from_port, "
    "created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_PACKET = (
    "UPDATE packets SET location = iif(?1, ?2, location), node_name = iif(?1, ?3, node_name), "
    "port_name = iif(?1, ?4, port_name), epoch_id = coalesce(?5, epoch_id), from_node = iif(?1, ?6, from_node), "
    "from_port = iif(?1, ?7, from_port), state = coalesce(?8, state), finished_at = coalesce(?9, finished_at) "
    "WHERE id = ?10"
)
_INSERT_EPOCH = (
    "INSERT INTO epochs (id, node_name, state, salvo_condition, created_at, started_at, finished_at, attempt, "
    "error, error_type, salvo) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_EPOCH = (
    "UPDATE epochs SET state = coalesce(?, state), salvo_condition = coalesce(?, salvo_condition), "
    "started_at = coalesce(?, started_at), finished_at = coalesce(?, finished_at), attempt = attempt + ?, "
    "error = coalesce(?, error), error_type = coalesce(?, error_type), salvo = coalesce(?, salvo) WHERE id = ?"
)

_UPSERT_VALUE = ("INSERT OR REPLACE INTO packet_values (packet_id, kind, data, preview, consumed_seq) "
                 "VALUES (?, ?, ?, ?, ?)")
_APPEND_PREFIXES = tuple(f"INSERT INTO {table} " for table in (
    "node_logs", "epoch_attempts", "deferred_actions", "dead_letters", "epoch_jobs", "inbox"))
_APPEND_ONLY: dict[str, bool] = {}
_STORAGE_ERRORS = (apsw.FullError, apsw.IOError, apsw.ReadOnlyError, apsw.CantOpenError, OSError)


# Pending packet row: [new, state, location, node, port, epoch, from_node, from_port, created_at, finished_at, moved]
_P_NEW, _P_STATE, _P_LOC, _P_NODE, _P_PORT, _P_EPOCH, _P_FNODE, _P_FPORT, _P_CREATED, _P_FINISHED, _P_MOVED = range(11)
# Pending epoch row: [new, node, state, salvo condition, created_at, started_at, finished_at, attempts, error,
#                     error_type, salvo packets JSON]
(_E_NEW, _E_NODE, _E_STATE, _E_SALVO, _E_CREATED, _E_STARTED, _E_FINISHED, _E_ATTEMPTS, _E_ERROR, _E_ERRTYPE,
 _E_PACKETS) = range(11)


class Journal:
    """Buffers the rows of sim steps and commits them atomically."""

    def __init__(self, conn: apsw.Connection, clock: Clock, *, max_pending: int = 20_000) -> None:
        self.conn = conn
        self.clock = clock
        self.max_pending = max_pending
        self._ops: list[tuple[str, Sequence[Any]]] = []
        self._history: list[Action] = []  # see netrun.historyrows
        self._packets: dict[str, list] = {}
        self._epochs: dict[str, list] = {}
        self._after_commit: list[Callable[[], None]] = []
        # Called after every commit with the committed history actions (netrun.historyrows.Action).
        self.commit_hooks: list[Callable[[list[Action]], None]] = []
        self._codes: Encoder | None = None  # made on the first commit (the schema is migrated by then)
        self._seq = 0  # the seq of the last history record (0: not read from the file yet)
        self.wrote = True  # whether the last commit wrote its buffer (see `only_if`)
        # Whether the buffer holds work that a crash would run again with new IDs (a deferred epoch's
        # end, an applied pool result): the owner then commits a non-deferred start (netrun.intents).
        self.rerunnable = False
        self._json_cache: dict[tuple, str] = {}
        # Inserts into append-only tables, per statement: their order relative to other statements
        # never matters (nothing else touches a row inserted in the same buffer before it exists).
        self._inserts: dict[str, list[Sequence[Any]]] = {}
        # Packet values, coalesced: packet ID -> ((kind, data, preview), consumed_seq), or None to delete.
        self.values: dict[str, tuple | None] = {}
        # A stamp is made cheaply (`Stamps`): the system clock's from `time_ns()`, reused for 0.2 ms (an
        # epoch takes a dozen); an injected clock is asked for `now()` every time.
        self._fast_clock = type(clock) is SystemClock
        self._stamps = Stamps()
        self._stamp, self._stamped_ns = ("", 0), -1
        # Set by `abandon()`: memory no longer matches the file, so nothing more is written.
        self.abandoned: BaseException | None = None

    # -- buffering ---------------------------------------------------------------------
    def now(self) -> str:
        return self.stamp()[0]

    def stamp(self) -> tuple[str, int]:
        """The time as ISO text and as microseconds since 1970 (history stores the number)."""
        if self._fast_clock:
            ns = time_ns()
            if 0 <= ns - self._stamped_ns < 200_000:
                return self._stamp
            self._stamped_ns = ns
            stamp = self._stamp = self._stamps.of_micros(ns // 1000)
            return stamp
        return self._stamps.of(self.clock.now())

    def add(self, sql: str, params: Sequence[Any]) -> None:
        """Queue one statement for the next commit (run after the state rows, in order; an insert into
        an append-only table runs with the others of its kind, before the rest)."""
        append = _APPEND_ONLY.get(sql)
        if append is None:
            append = _APPEND_ONLY[sql] = sql.startswith(_APPEND_PREFIXES)
        if append:
            self._inserts.setdefault(sql, []).append(params)
        else:
            self._ops.append((sql, params))

    def put_value(self, packet_id: str, stored: tuple, consumed_seq: int | None = None) -> None:
        """A packet's stored value, (kind, data, preview) (written once per commit, whatever happened to
        it in between)."""
        self.values[packet_id] = (stored, consumed_seq)

    def drop_value(self, packet_id: str) -> None:
        """The packet's value goes. A packet made since the last commit has no value row in the file
        yet: its buffered value is just forgotten (no DELETE of a row that was never written)."""
        row = self._packets.get(packet_id)
        if row is not None and row[_P_NEW]:
            self.values.pop(packet_id, None)
        else:
            self.values[packet_id] = None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the next commit is durable (never if it rolls back)."""
        self._after_commit.append(callback)

    @property
    def pending(self) -> int:
        return len(self._ops) + len(self._history) + len(self.values)

    def is_new_packet(self, packet_id: str) -> bool:
        """Whether the packet was created since the last commit (its row is not in the file yet)."""
        row = self._packets.get(packet_id)
        return row is not None and row[_P_NEW]

    def _packet(self, packet_id: str) -> list:
        row = self._packets.get(packet_id)
        if row is None:
            row = self._packets[packet_id] = [False, None, None, None, None, None, None, None, None, None, False]
        return row

    def _epoch(self, epoch_id: str) -> list:
        row = self._epochs.get(epoch_id)
        if row is None:
            row = self._epochs[epoch_id] = [False, None, None, None, None, None, None, 0, None, None, None]
        return row

    def set_epoch_error(self, epoch_id: str, state: str, error: str, error_type: str) -> None:
        """Mark an epoch failed (or another final state) with its error text and type."""
        row = self._epoch(epoch_id)
        row[_E_STATE], row[_E_ERROR], row[_E_ERRTYPE] = state, error, error_type

    def set_epoch_running(self, epoch_id: str, started_at: str) -> None:
        """A pool worker was handed the epoch: `running` in the file (its `EpochStarted` comes with its result)."""
        row = self._epoch(epoch_id)
        row[_E_STATE], row[_E_STARTED] = "running", started_at

    def set_epoch_salvo(self, epoch_id: str, salvo_condition: str, packets: list | None = None) -> None:
        """The epoch's salvo condition and (for resuming) its input packets [(port, packet_id)]."""
        row = self._epoch(epoch_id)
        row[_E_SALVO] = salvo_condition
        row[_E_PACKETS] = compact_json(packets) if packets else "[]"

    def _json(self, data: dict) -> str:
        """JSON text of a small dict of strings, cached (the same few recur constantly)."""
        key = tuple(data.items())
        try:
            text = self._json_cache.get(key)
        except TypeError:  # unhashable values
            return json.dumps(data)
        if text is None:
            text = json.dumps(data)
            if len(self._json_cache) < 10_000:
                self._json_cache[key] = text
        return text

    def record(self, action: str, events: list[Event], *, epoch_id: str | None = None,
               packet_id: str | None = None, node_name: str | None = None,
               data: dict | None = None, created_at: Location | None = None) -> None:
        """Journal one NetAction and its events.

        `created_at` is where a packet created by this action starts (the sim's
        PacketCreated event does not say).
        """
        now, us = self.stamp()
        if not self._seq:
            self._seq = next_seq(self.conn) - 1
        seq = self._seq + 1
        recorded: list[tuple] = []
        record = recorded.append
        packets, epochs = self._packets, self._epochs
        for kind, ev_epoch, ev_packet, ev_node, salvo, loc in events:
            extra = None
            if kind == "PacketMoved" or kind == "PacketOrphaned":
                row = packets.get(ev_packet) or self._packet(ev_packet)
                if kind == "PacketMoved":
                    loc_kind, node, port, loc_epoch, from_node, from_port = loc
                    extra = (loc_kind, node, port)
                else:
                    loc_kind, node, port, loc_epoch, from_node, from_port = OUTSIDE
                    extra = salvo
                row[_P_LOC], row[_P_NODE], row[_P_PORT] = loc_kind, node, port
                row[_P_FNODE], row[_P_FPORT], row[_P_MOVED] = from_node, from_port, True
                if loc_epoch is not None:
                    row[_P_EPOCH] = loc_epoch
            elif kind == "EpochStarted":
                row = epochs.get(ev_epoch) or self._epoch(ev_epoch)
                row[_E_STATE], row[_E_STARTED] = "running", now
                row[_E_ATTEMPTS] += 1
            elif kind == "EpochFinished" or kind == "EpochCancelled":
                row = epochs.get(ev_epoch) or self._epoch(ev_epoch)
                row[_E_STATE] = "finished" if kind == "EpochFinished" else "cancelled"
                row[_E_FINISHED] = now
            elif kind == "EpochCreated":
                row = epochs.get(ev_epoch) or self._epoch(ev_epoch)
                row[_E_NEW], row[_E_NODE], row[_E_STATE], row[_E_CREATED] = True, ev_node, "startable", now
            elif kind == "InputSalvoTriggered" or kind == "OutputSalvoTriggered":
                if kind == "InputSalvoTriggered":
                    (epochs.get(ev_epoch) or self._epoch(ev_epoch))[_E_SALVO] = salvo
                extra = salvo
            elif kind == "PacketCreated":
                where = created_at or OUTSIDE
                row = packets.get(ev_packet) or self._packet(ev_packet)
                row[_P_NEW], row[_P_STATE], row[_P_CREATED], row[_P_MOVED] = True, "live", now, True
                row[_P_LOC], row[_P_NODE], row[_P_PORT], row[_P_EPOCH] = \
                    where.kind, where.node_name, where.port_name, where.epoch_id
            elif kind == "PacketConsumed" or kind == "PacketDestroyed":
                row = packets.get(ev_packet) or self._packet(ev_packet)
                row[_P_STATE] = "consumed" if kind == "PacketConsumed" else "destroyed"
                row[_P_FINISHED] = now
            record((kind, ev_epoch, ev_packet, ev_node, extra))
        self._seq = seq + len(recorded)
        self._history.append((seq, action, epoch_id, packet_id, node_name, now, us,
                              self._json(data) if data else None, recorded))

    # -- committing -----------------------------------------------------------------------
    def _take(self) -> tuple:
        taken = (self._ops, self._history, self._packets, self._epochs, self._after_commit, self._inserts,
                 self.values)
        self._ops, self._history, self._packets, self._epochs, self._after_commit = [], [], {}, {}, []
        self._inserts, self.values = {}, {}
        return taken

    def _restore(self, taken: tuple) -> None:
        ops, history, packets, epochs, callbacks, inserts, values = taken
        # Rows recorded after `taken` was taken are newer: they win where both touch a row.
        self._ops, self._history = ops + self._ops, history + self._history
        for pid, newer in self._packets.items():
            packets[pid] = _merge_packet(packets[pid], newer) if pid in packets else newer
        for eid, newer in self._epochs.items():
            epochs[eid] = _merge_epoch(epochs[eid], newer) if eid in epochs else newer
        values.update(self.values)  # whole values (or a deletion): the newer one wins
        self._packets, self._epochs, self.values = packets, epochs, values
        for sql, rows in self._inserts.items():
            inserts.setdefault(sql, []).extend(rows)
        self._inserts = inserts
        self._after_commit = callbacks + self._after_commit

    def detach(self) -> tuple:
        """Take everything buffered out of the journal: a part that a later commit writes only if
        it still should (`reattach` inside its `then`), or drops (a pool worker's result, written
        with its report only if the job is still its own)."""
        return self._take()

    def reattach(self, part: tuple) -> None:
        """Put a detached part back into the buffer (inside a commit's `then`: that commit writes it)."""
        self._restore(part)

    def absorb(self, part: tuple) -> None:
        """Add a part detached from another journal (a pool worker's attempt and log rows) to the
        buffer, after what it holds (a worker's part has statements only: merging is for the rest)."""
        ops, history, packets, epochs, callbacks, inserts, values = part
        if packets or epochs or callbacks or values:
            self._restore(part)
            return
        self._ops += ops
        self._history += history
        for sql, rows in inserts.items():
            mine = self._inserts.get(sql)
            if mine is None:
                self._inserts[sql] = list(rows)
            else:
                mine += rows

    def abandon(self, error: BaseException) -> None:
        """Drop every row buffered since the last commit and write nothing more: the file stays as a
        crash at that commit would leave it (a resume rebuilds the net from it). For the case where
        the in-memory sim took a step that cannot be journaled whole."""
        self._take()
        self.abandoned = error

    def commit(self, then: Callable[[apsw.Connection], Any] | None = None, *,
               only_if: Callable[[apsw.Connection], bool] | None = None) -> Any:
        """Write everything buffered in one IMMEDIATE transaction.

        `then(conn)` runs inside the same transaction after the buffered rows (the
        runtime claims the next queue job this way); whatever it records is written in
        that transaction too. Its result is returned. With `only_if`, the buffer is written
        only if `only_if(conn)` holds inside the transaction; otherwise it is dropped (`then`
        still runs). `self.wrote` tells which happened. After `abandon()` nothing is written.
        """
        if self.abandoned is not None:
            self._take()
            return None
        if then is None and not (self._ops or self._history or self._packets or self._epochs or self._inserts
                                 or self.values):
            return None
        taken = [self._take()]
        result = None
        try:
            with transaction(self.conn):
                self.wrote = only_if is None or bool(only_if(self.conn))
                if self.wrote:
                    self._write(taken[0])
                else:
                    taken[0] = ([], [], {}, {}, [], {}, {})
                if then is not None:
                    result = then(self.conn)
                    taken.append(self._take())
                    self._write(taken[1])
        except BaseException as exc:
            if self._codes is not None:
                self._codes.rolled_back()
            for part in reversed(taken):
                self._restore(part)
            if isinstance(exc, _STORAGE_ERRORS):  # the buffer is kept: a later commit writes it
                remedy = "reach the server again" if getattr(self.conn, "dialect", None) == "postgres" else \
                    "make room (or fix the file's permissions)"
                raise StorageError(f"{self.conn.filename}: cannot write ({type(exc).__name__}: {exc}); nothing "
                                   f"committed before is lost: {remedy} and go on, or close and resume",
                                   path=self.conn.filename) from exc
            raise
        self.rerunnable = False
        if self._codes is not None:
            self._codes.committed()
        faults.hit("after_commit")
        # Everything below runs once the data is durable; one failing callback must not
        # skip the others or the history hooks. The first error is raised at the end.
        first: BaseException | None = None
        for part in taken:
            for callback in part[4]:
                try:
                    callback()
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    first = first or exc
        history = taken[0][1] + taken[1][1] if len(taken) > 1 else taken[0][1]
        for hook in self.commit_hooks:
            hook(history)
        if first is not None:
            raise first
        return result

    def _write(self, taken: tuple) -> None:
        ops, history, packets, epochs, _, inserts, values = taken
        conn = self.conn
        if history:
            if self._codes is None:
                self._codes = Encoder(conn)
            self._codes.write(history)
        if packets:
            new, old = [], []
            for pid, r in packets.items():
                if r[_P_NEW]:
                    new.append((pid, r[_P_STATE], r[_P_LOC], r[_P_NODE], r[_P_PORT], r[_P_EPOCH], r[_P_FNODE],
                                r[_P_FPORT], r[_P_CREATED], r[_P_FINISHED]))
                else:
                    old.append((r[_P_MOVED], r[_P_LOC], r[_P_NODE], r[_P_PORT], r[_P_EPOCH], r[_P_FNODE],
                                r[_P_FPORT], r[_P_STATE], r[_P_FINISHED], pid))
            if new:
                conn.executemany(_INSERT_PACKET, new)
            if old:
                conn.executemany(_UPDATE_PACKET, old)
        if epochs:
            new, old = [], []
            for eid, r in epochs.items():
                if r[_E_NEW]:
                    new.append((eid, r[_E_NODE], r[_E_STATE], r[_E_SALVO], r[_E_CREATED], r[_E_STARTED],
                                r[_E_FINISHED], r[_E_ATTEMPTS], r[_E_ERROR], r[_E_ERRTYPE], r[_E_PACKETS]))
                else:
                    old.append((r[_E_STATE], r[_E_SALVO], r[_E_STARTED], r[_E_FINISHED], r[_E_ATTEMPTS],
                                r[_E_ERROR], r[_E_ERRTYPE], r[_E_PACKETS], eid))
            if new:
                conn.executemany(_INSERT_EPOCH, new)
            if old:
                conn.executemany(_UPDATE_EPOCH, old)
        for sql, rows in inserts.items():
            conn.executemany(sql, rows)
        if values:
            kept = [(pid, *v[0], v[1]) for pid, v in values.items() if v is not None]
            if kept:
                conn.executemany(_UPSERT_VALUE, kept)
            dropped = [(pid,) for pid, v in values.items() if v is None]
            if dropped:
                conn.executemany("DELETE FROM packet_values WHERE packet_id = ?", dropped)
        _run_grouped(conn, ops)

    def commit_if_large(self) -> None:
        if self.pending >= self.max_pending:
            self.commit()


def _merge_packet(older: list, newer: list) -> list:
    """One pending packet row from two (a restore after a failed commit): the newer fields win where
    it set them, an insert stays an insert."""
    row = list(older)
    row[_P_NEW] = older[_P_NEW] or newer[_P_NEW]
    if newer[_P_MOVED]:
        for i in (_P_LOC, _P_NODE, _P_PORT, _P_FNODE, _P_FPORT):
            row[i] = newer[i]
        row[_P_MOVED] = True
    for i in (_P_STATE, _P_EPOCH, _P_CREATED, _P_FINISHED):
        if newer[i] is not None:
            row[i] = newer[i]
    return row


def _merge_epoch(older: list, newer: list) -> list:
    """As `_merge_packet`, for an epoch row (attempts started add up)."""
    row = [n if n is not None else o for o, n in zip(older, newer)]
    row[_E_NEW] = older[_E_NEW] or newer[_E_NEW]
    row[_E_ATTEMPTS] = older[_E_ATTEMPTS] + newer[_E_ATTEMPTS]
    return row


def _run_grouped(conn: apsw.Connection, ops: list[tuple[str, Sequence[Any]]]) -> None:
    """Execute statements in order, batching runs of the same SQL with executemany."""
    i, n = 0, len(ops)
    while i < n:
        sql = ops[i][0]
        j = i + 1
        while j < n and ops[j][0] is sql:
            j += 1
        if j - i == 1:
            conn.execute(sql, ops[i][1])
        else:
            conn.executemany(sql, [params for _, params in ops[i:j]])
        i = j
