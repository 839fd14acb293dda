"""History beyond the table: the in-memory window and the JSONL export.

The `history` table holds everything, always. This module keeps the last
`history_max_size` records in memory and, when `history_file` is set, appends the
committed records to it as JSONL in chunks of `history_chunk_size` (SPEC "Event
History" format: `type`, `action`/`event`, `timestamp`, `id`/`action_id`).
"""

from __future__ import annotations

import json
import os
from collections import deque
from typing import Any

from .errors import StorageError
from .historyrows import Action, Decoder, Record, expand, size


def to_json_record(rec: Record) -> dict:
    kind, name, action_id, epoch_id, packet_id, node_name, timestamp, data, seq = rec
    if kind == "action":
        out = {"type": "action", "action": name, "timestamp": timestamp, "id": action_id}
    else:
        out = {"type": "event", "event": name, "action_id": action_id, "timestamp": timestamp}
    out["seq"] = seq  # the history table's row: the file's catch-up after a crash goes by it
    if epoch_id:
        out["epoch_id"] = epoch_id
    if packet_id:
        out["packet_id"] = packet_id
    if node_name:
        out["node_name"] = node_name
    if data:
        out.update(json.loads(data))
    return out


def records(actions: list[Action], limit: int | None = None) -> list[Record]:
    """The records of `actions` (netrun.historyrows), the last `limit` of them."""
    out = [rec for action in actions for rec in expand(action)]
    return out if limit is None else out[len(out) - limit:] if limit else []


class HistoryLog:
    """Receives committed history actions (a journal commit hook).

    Actions are kept as the journal built them and turned into records only when read
    (`recent()`) or written to the file: most runs never read the in-memory window."""

    def __init__(self, *, max_size: int | None, path: str | None, chunk_size: int) -> None:
        self.max_size = max_size
        self._recent: deque[Action] = deque()
        self._recent_size = 0  # records in `_recent`
        self.path = path
        self.chunk_size = chunk_size
        self._pending: list[Record] = []  # not yet in the file
        self.keep_memory = max_size is None or max_size > 0
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def recent(self) -> list[Record]:
        """The in-memory window, oldest first (`history_max_size` records at most)."""
        return records(list(self._recent), self.max_size)

    def __call__(self, actions: list[Action]) -> None:
        if self.keep_memory:
            recent = self._recent
            recent.extend(actions)
            self._recent_size += sum(1 + len(a[8]) for a in actions)
            if self.max_size is not None:
                while recent and self._recent_size - size(recent[0]) >= self.max_size:
                    self._recent_size -= size(recent.popleft())
        if self.path:
            self._pending.extend(records(actions))
            if len(self._pending) >= self.chunk_size:
                self.flush(whole_chunks_only=True)

    def catch_up(self, conn: Any) -> None:
        """After a crash: append the committed records the file never got. The file holds a prefix of
        the table, each line with its `seq`; a last line torn by a kill mid-write is cut off first."""
        if not self.path or not os.path.exists(self.path):
            return
        last = _last_seq(self.path)
        held = Decoder(conn).last()[0]
        if last > held:
            raise StorageError(
                f"{self.path} is not this net's history: its last record is seq {last}, but the database holds "
                f"records up to seq {held} only. Either the database lost commits (its -wal deleted after a crash, "
                "an older copy of it put back) or the file belongs to another net; appending would mix two "
                "histories. Move the file aside (or give history_file= another path) and resume again",
                path=self.path)
        legacy = conn.execute("SELECT seq, type, name, action_id, epoch_id, packet_id, node_name, timestamp, data "
                              "FROM history_legacy WHERE seq > ? ORDER BY seq", (last,)).fetchall()
        missed = [(*r[1:], r[0]) for r in legacy]
        first = conn.execute("SELECT max(seq) FROM history_actions WHERE seq <= ?", (last,)).fetchone()[0]
        missed += [rec for rec in records(Decoder(conn).actions("seq >= ?", (first or 0,))) if rec[8] > last]
        if missed:
            self._pending[:0] = missed
            self.flush()

    def flush(self, *, whole_chunks_only: bool = False) -> None:
        """Append pending records to the file (all of them, or only whole chunks)."""
        if not self.path or not self._pending:
            return
        count = len(self._pending)
        if whole_chunks_only:
            count -= count % self.chunk_size
        if count == 0:
            return
        chunk, self._pending = self._pending[:count], self._pending[count:]
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write("".join(json.dumps(to_json_record(r)) + "\n" for r in chunk))
            handle.flush()


def _last_seq(path: str) -> int:
    """The `seq` of the file's last whole line (0 when empty); a torn last line is truncated away.
    Lines written before lines carried `seq` are counted instead (the file then starts at seq 1)."""
    with open(path, "rb+") as handle:
        data = handle.read()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):
            handle.truncate(whole)
    lines = data[:whole].splitlines()
    if not lines:
        return 0
    try:
        return int(json.loads(lines[-1])["seq"])
    except (ValueError, KeyError, TypeError):
        return len(lines)
