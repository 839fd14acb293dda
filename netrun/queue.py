"""The epoch job queue table.

Every started epoch becomes a job. A worker claims the next queued job with a lease
(highest priority first, then oldest), runs it, and marks it done with its outcome.
Jobs are never deleted on read: a job whose worker died stays `claimed` with an expired
lease, visible and recoverable. In the main thread the claim of the next job shares a
transaction with the results of the previous epoch, so an epoch costs one commit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import apsw

from .clock import Clock, iso
from .journal import Journal

DEFAULT_LEASE = timedelta(minutes=5)

_CLAIM = """
UPDATE epoch_jobs SET state = 'claimed', worker = ?, claimed_at = ?, lease_until = ?
WHERE epoch_id IN (SELECT epoch_id FROM epoch_jobs WHERE state = 'queued' {node_filter}
                   ORDER BY priority DESC, seq LIMIT ?)
RETURNING epoch_id, node_name, priority, seq
"""


@dataclass(frozen=True)
class Job:
    epoch_id: str
    node_name: str
    priority: int = 0
    seq: int = 0


class EpochQueue:
    def __init__(self, journal: Journal, clock: Clock, *, lease: timedelta = DEFAULT_LEASE) -> None:
        self.journal = journal
        self.clock = clock
        self.lease = lease
        self._seq = journal.conn.execute("SELECT coalesce(max(seq), 0) FROM epoch_jobs").fetchone()[0]

    def enqueue(self, epoch_id: str, node_name: str, priority: int = 0, pool: str | None = None) -> None:
        """Queue an epoch for the main thread or a pool (buffered: durable with the next commit)."""
        self._seq += 1
        self.journal.add(
            "INSERT INTO epoch_jobs (epoch_id, seq, node_name, priority, state, enqueued_at, pool) "
            "VALUES (?, ?, ?, ?, 'queued', ?, ?)",
            (epoch_id, self._seq, node_name, priority, self.journal.now(), pool))

    def claim_in(self, conn: apsw.Connection, worker: str, *, limit: int = 1,
                 pool: str | None = None) -> list[Job]:
        """Claim up to `limit` jobs of `pool` (None: the main thread), in queue order, inside
        the caller's transaction."""
        now = self.clock.now()
        params: list = [worker, iso(now), iso(now + self.lease)]
        if pool is None:
            node_filter = "AND pool IS NULL"
        else:
            node_filter = "AND pool = ?"
            params.append(pool)
        params.append(limit)
        rows = conn.execute(_CLAIM.format(node_filter=node_filter), params).fetchall()
        jobs = [Job(row[0], row[1], row[2], row[3]) for row in rows]
        jobs.sort(key=lambda j: (-j.priority, j.seq))  # RETURNING order is unspecified
        return jobs

    def release(self, epoch_ids: list[str]) -> None:
        """Put claimed jobs that were never started back in the queue (buffered)."""
        for epoch_id in epoch_ids:
            self.journal.add("UPDATE epoch_jobs SET state = 'queued', worker = NULL, claimed_at = NULL, "
                             "lease_until = NULL WHERE epoch_id = ? AND state = 'claimed'", (epoch_id,))

    def complete(self, epoch_id: str, outcome: str) -> None:
        """Mark a job done (buffered; idempotent per epoch)."""
        self.journal.add("UPDATE epoch_jobs SET state = 'done', done_at = ?, outcome = ? WHERE epoch_id = ?",
                         (self.journal.now(), outcome, epoch_id))

    def count_queued(self) -> int:
        return self.journal.conn.execute("SELECT count(*) FROM epoch_jobs WHERE state = 'queued'").fetchone()[0]
