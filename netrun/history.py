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

from .journal import HistoryRecord


def to_json_record(rec: HistoryRecord) -> dict:
    kind, name, action_id, epoch_id, packet_id, node_name, timestamp, data = rec[:8]
    if kind == "action":
        out = {"type": "action", "action": name, "timestamp": timestamp, "id": action_id}
    else:
        out = {"type": "event", "event": name, "action_id": action_id, "timestamp": timestamp}
    if epoch_id:
        out["epoch_id"] = epoch_id
    if packet_id:
        out["packet_id"] = packet_id
    if node_name:
        out["node_name"] = node_name
    if data:
        out.update(json.loads(data))
    return out


class HistoryLog:
    """Receives committed history records (a journal commit hook).

    Records are kept as the journal built them and turned into dicts only when read
    (`recent()`) or written to the file: most runs never read the in-memory window."""

    def __init__(self, *, max_size: int | None, path: str | None, chunk_size: int) -> None:
        self._recent: deque[HistoryRecord] = deque(maxlen=max_size)
        self.path = path
        self.chunk_size = chunk_size
        self._pending: list[HistoryRecord] = []
        self.keep_memory = max_size is None or max_size > 0
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def recent(self) -> list[HistoryRecord]:
        """The in-memory window, oldest first, as the journal built them (see `to_json_record`)."""
        return list(self._recent)

    def __call__(self, records: list[HistoryRecord]) -> None:
        if self.keep_memory:
            self._recent.extend(records)
        if self.path:
            self._pending.extend(records)
            if len(self._pending) >= self.chunk_size:
                self.flush(whole_chunks_only=True)

    def catch_up(self, conn: Any) -> None:
        """After a crash: append the committed records the file never got (it holds a prefix)."""
        if not self.path or not os.path.exists(self.path):
            return
        with open(self.path, "rb") as handle:
            written = sum(1 for _ in handle)
        rows = conn.execute("SELECT type, name, action_id, epoch_id, packet_id, node_name, timestamp, data "
                            "FROM history WHERE seq > ? ORDER BY seq", (written,)).fetchall()
        if rows:
            self._pending[:0] = [tuple(r) for r in rows]
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
