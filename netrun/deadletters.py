"""The dead-letter queue: packets destroyed by failed or cancelled epochs, with their values.

Every entry is a row of the `dead_letters` table, written in the transaction that
destroyed the packet. The net's `dead_letter_queue` option adds a second home:
`"memory"` (the table only; `get_all()` reads it), `"file"` (also one pickle file per entry
in `dead_letter_path`), `"callback"` with `dead_letter_callback`, or a callable (called with
each `DeadLetter` once its transaction is committed).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import netrun_sim as ns

from .config import NetConfig
from .errors import ConfigError, NotFoundError
from .graphio import get_node
from .inbox import Inbox
from .journal import Journal
from .owner import Owner
from .reentry import reentrant_point
from .tracebacks import error_text
from .values import FUNC, Stored, _write_atomic, decode

_COLUMNS = ("seq, packet_id, node_name, port_name, epoch_id, reason, error, value_kind, value, created_at, status, "
            "replayed_as, traceback, value_preview")


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered packet. `value` gives the stored value (a value function is called; a
    pickled value is unpickled: code from the file runs); `value_preview` is the text made when it
    was stored; `traceback` is the formatted traceback of the failure that sent it here (None for a
    cancel). `value_kind`: json, pickle or func; `data`: JSON text or bytes."""

    seq: int
    packet_id: str
    node_name: str | None
    port_name: str | None
    epoch_id: str | None
    reason: str
    error: str | None
    value_kind: str | None
    data: str | bytes | None
    created_at: str
    status: str = "pending"
    replayed_as: str | None = None
    traceback: str | None = None
    value_preview: str | None = None

    @property
    def value(self) -> Any:
        if self.data is None:
            return None
        value = decode(self.packet_id, self.value_kind, self.data)
        return value() if self.value_kind == FUNC else value


class DeadLetterQueue:
    """`net.dead_letter_queue`: read, replay and discard dead letters.

    Its collaborators: the net's config (where entries go besides the table), the owner's journal,
    the owner itself (reads and replays from other threads are handed to it), the inbox (a replay
    is an injection) and the graph's nodes.
    """

    def __init__(self, config: NetConfig, journal: Journal, owner: Owner, inbox: Inbox,
                 graph_nodes: dict[str, ns.Node]) -> None:
        self.journal = journal
        self.owner = owner
        self.inbox = inbox
        self.graph_nodes = graph_nodes
        mode = config.dead_letter_queue
        self._callback: Callable[[DeadLetter], Any] | None = None
        if callable(mode):
            self._callback = mode
        elif mode == "callback":
            self._callback = config.dead_letter_callback
        self._path = config.dead_letter_path if mode == "file" else None  # made by config.make_folders
        self._seq = journal.conn.execute("SELECT coalesce(max(seq), 0) FROM dead_letters").fetchone()[0]

    def record(self, *, packet_id: str, node_name: str, port_name: str | None, epoch_id: str, reason: str,
               error: str | None, stored: Stored | None, traceback: str | None = None) -> None:
        """Add an entry (buffered: written with the transaction that destroys the packet)."""
        journal = self.journal
        self._seq += 1
        kind, data, preview = stored if stored else (None, None, None)
        entry = DeadLetter(self._seq, packet_id, node_name, port_name, epoch_id, reason, error, kind, data,
                           journal.now(), traceback=traceback, value_preview=preview)
        journal.add(
            "INSERT INTO dead_letters (seq, packet_id, node_name, port_name, epoch_id, reason, error, value_kind, "
            "value, created_at, traceback, value_preview) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.seq, packet_id, node_name, port_name, epoch_id, reason, error, kind, data, entry.created_at,
             traceback, preview))
        if self._path:
            path = os.path.join(self._path, f"{entry.seq:08d}-{packet_id}.pkl")
            journal.after_commit(lambda: _write_atomic(path, pickle.dumps(entry)))
        if self._callback is not None:
            journal.after_commit(lambda: self._notify(entry))

    @reentrant_point
    def _notify(self, entry: DeadLetter) -> None:
        """Call the dead-letter callback; an error is written to the node log, never lost or fatal."""
        try:
            self._callback(entry)
        except Exception as exc:  # noqa: BLE001 - recorded in node_logs
            journal = self.journal
            journal.add("INSERT INTO node_logs (epoch_id, node_name, timestamp, text) VALUES (?, ?, ?, ?)",
                        (entry.epoch_id, entry.node_name or "", journal.now(),
                         f"dead_letter_callback raised {error_text(exc)} (dead letter #{entry.seq}, "
                         f"packet {entry.packet_id})"))

    def _select(self, where: str, params: tuple) -> list[DeadLetter]:
        def read() -> list:
            self.journal.commit()
            return self.journal.conn.execute(f"SELECT {_COLUMNS} FROM dead_letters WHERE {where} ORDER BY seq",
                                             params).fetchall()

        rows = self.owner.call(read)
        return [DeadLetter(*r) for r in rows]

    def get_all(self, *, include_resolved: bool = False) -> list[DeadLetter]:
        """Pending entries, oldest first (with `include_resolved`, replayed and discarded ones too)."""
        return self._select("1 = 1" if include_resolved else "status = 'pending'", ())

    def get_by_node(self, node_name: str, *, include_resolved: bool = False) -> list[DeadLetter]:
        get_node(self.graph_nodes, node_name)
        where = "node_name = ?" + ("" if include_resolved else " AND status = 'pending'")
        return self._select(where, (node_name,))

    def _pending(self, entry: DeadLetter | int) -> DeadLetter:
        seq = entry if isinstance(entry, int) else entry.seq
        found = self._select("seq = ?", (seq,))
        if not found:
            raise NotFoundError(f"no dead letter #{seq}", seq=seq)
        if found[0].status != "pending":
            raise ConfigError(f"dead letter #{seq} (packet {found[0].packet_id}) was already {found[0].status}")
        return found[0]

    def replay(self, entry: DeadLetter | int) -> str:
        """Put the entry's value back as a new packet at the input port it came from.

        Recorded in history (`CreatePacket` + `TransportPacketToLocation` with `replay_of`).
        Returns the new packet's ID. Raises ConfigError for a packet that never was at an
        input port (one created inside the failed epoch) or an entry already resolved.
        """
        return self.replay_many([entry])[0]

    def replay_many(self, entries: list[DeadLetter | int]) -> list[str]:
        """Replay several entries atomically: every one is checked first (as `replay`), then all
        are replayed in one transaction. Returns the new packet IDs, in order."""
        def replay() -> list[str]:
            found = [self._replayable(self._pending(entry)) for entry in entries]
            self._check_distinct(found)
            new_ids = []
            for entry in found:
                new_id = self.inbox.inject_serialized(entry.node_name, entry.port_name,
                                                      Stored(entry.value_kind, entry.data, entry.value_preview),
                                                      replay_of=entry.packet_id, commit=False)
                self._resolve(entry, "replayed", new_id)
                new_ids.append(new_id)
            self.journal.commit()
            return new_ids

        return self.owner.call(replay)

    def discard(self, entry: DeadLetter | int) -> None:
        """Mark the entry discarded: it leaves the queue (its row stays, for the record)."""
        self.discard_many([entry])

    def discard_many(self, entries: list[DeadLetter | int]) -> None:
        """Discard several entries atomically (all checked first, then one transaction)."""
        def discard() -> None:
            found = [self._pending(entry) for entry in entries]
            self._check_distinct(found)
            for entry in found:
                self._resolve(entry, "discarded", None)
            self.journal.commit()

        self.owner.call(discard)

    @staticmethod
    def _replayable(entry: DeadLetter) -> DeadLetter:
        if entry.port_name is None or entry.data is None:
            raise ConfigError(f"dead letter #{entry.seq}: packet {entry.packet_id} was created inside epoch "
                              f"{entry.epoch_id} of node {entry.node_name!r}; it has no input port to return to")
        return entry

    @staticmethod
    def _check_distinct(entries: list[DeadLetter]) -> None:
        seqs = [e.seq for e in entries]
        twice = sorted({s for s in seqs if seqs.count(s) > 1})
        if twice:
            raise ConfigError(f"dead letter #{twice[0]} is named more than once")

    def _resolve(self, entry: DeadLetter, status: str, replayed_as: str | None) -> None:
        """Buffer the entry's new status; the caller commits."""
        journal = self.journal
        journal.add("UPDATE dead_letters SET status = ?, resolved_at = ?, replayed_as = ? WHERE seq = ?",
                    (status, journal.now(), replayed_as, entry.seq))
