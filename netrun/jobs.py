"""Epoch jobs: the `epoch_jobs` table, the one hand-off between the owner and workers.

A job moves `queued -> claimed -> reported -> done`; a main-thread job, run by the owner
itself, is written once, `done`, when its epoch ends. Every transition is a compare-and-set on
the job's (state, worker, attempt): the statement names the state it expects and says
whether it won (a row came back, or a row count of one). So the protocol stays correct on
a database whose writers are not serialized: when a worker reports while the owner takes
the job back (its lease expired), exactly one of them wins, whichever commits first.

- claim (worker): the next due `queued` job of its pool, or a few at once (a process worker
  whose epochs are quick), each with a lease (`lease_until`);
- renew (worker): push its lease forward, only while the job is still its own;
- report (worker): `claimed -> reported`, then its result row is written (same transaction);
- take_back (owner): `claimed -> queued` (attempt + 1) or `-> done`, when the lease expired;
- finish (owner): `reported`/`claimed -> done` with the outcome, once the result is applied.

`attempt` counts the times a job was queued: a report names the attempt it ran, so a job
that was taken back and claimed again by the same worker still refuses the old report.
Jobs are never deleted on read. Timestamps are ISO text of the injected clock, compared
as text (one fixed format, UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from . import dialect
from .clock import iso

# PostgreSQL: workers claim concurrently; each skips the rows another one is claiming. The picked rows
# are a materialized CTE: an `IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED)` may be run again per row
# and claim more than n (seen: a worker of one thread held 8 jobs).
_CLAIM = dialect.register("""
UPDATE epoch_jobs SET state = 'claimed', worker = ?1, claimed_at = ?2, lease_until = ?3
WHERE epoch_id IN (SELECT epoch_id FROM epoch_jobs WHERE state = 'queued' AND pool = ?4
                   AND (not_before IS NULL OR not_before <= ?2) ORDER BY priority DESC, seq LIMIT ?5)
  AND state = 'queued'
RETURNING epoch_id, node_name, attempt, priority, seq, (SELECT salvo FROM epochs WHERE id = epoch_jobs.epoch_id),
          (SELECT coalesce(max(attempt) + 1, 0) FROM epoch_attempts WHERE epoch_attempts.epoch_id = epoch_jobs.epoch_id)
""", """
WITH picked AS MATERIALIZED (
    SELECT epoch_id FROM epoch_jobs WHERE state = 'queued' AND pool = ?4
    AND (not_before IS NULL OR not_before <= ?2) ORDER BY priority DESC, seq LIMIT ?5 FOR UPDATE SKIP LOCKED)
UPDATE epoch_jobs SET state = 'claimed', worker = ?1, claimed_at = ?2, lease_until = ?3
FROM picked WHERE epoch_jobs.epoch_id = picked.epoch_id AND epoch_jobs.state = 'queued'
RETURNING epoch_jobs.epoch_id, epoch_jobs.node_name, epoch_jobs.attempt, epoch_jobs.priority, epoch_jobs.seq,
          (SELECT salvo FROM epochs WHERE id = epoch_jobs.epoch_id),
          (SELECT coalesce(max(attempt) + 1, 0) FROM epoch_attempts WHERE epoch_attempts.epoch_id = epoch_jobs.epoch_id)
""")


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: which epoch, of which node, at which attempt."""

    epoch_id: str
    node_name: str
    attempt: int

    def __reduce__(self) -> tuple:  # pickled by its fields: a process job's and result's messages carry one
        return Claim, (self.epoch_id, self.node_name, self.attempt)


class NewJob(NamedTuple):
    """A job row to insert (buffered by the owner until its next commit; one is made per pool epoch)."""

    epoch_id: str
    seq: int
    node_name: str
    priority: int
    pool: str | None
    state: str
    worker: str | None
    enqueued_at: str
    not_before: str | None
    attempt: int = 0


INSERT_JOB = ("INSERT INTO epoch_jobs (epoch_id, seq, node_name, priority, pool, state, worker, enqueued_at, "
              "claimed_at, not_before, attempt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, "
              "iif(?6 = 'claimed', ?8, NULL), ?9, ?10)")


def job_params(job: NewJob) -> tuple:
    return (job.epoch_id, job.seq, job.node_name, job.priority, job.pool, job.state, job.worker,
            job.enqueued_at, job.not_before, job.attempt)


_ANY_DUE = ("SELECT 1 FROM epoch_jobs WHERE state = 'queued' AND pool = ?1 AND (not_before IS NULL OR not_before <= ?2) "
            "LIMIT 1")


def any_due(conn: Any, pool: str, now: datetime) -> bool:
    """Whether `pool` has a due queued job: a read, outside any write transaction (a worker that
    woke up asks before it takes the write lock: most wake-ups find the job claimed already)."""
    return conn.execute(_ANY_DUE, (pool, iso(now))).fetchone() is not None


def claim(conn: Any, worker: str, pool: str, now: datetime, lease: timedelta) -> Claim | None:
    """Claim the next due queued job of `pool` (inside the caller's transaction), or None."""
    claimed = claim_many(conn, worker, pool, now, lease, 1)
    return claimed[0] if claimed else None


def claim_many(conn: Any, worker: str, pool: str, now: datetime, lease: timedelta, limit: int) -> list[Claim]:
    """Claim up to `limit` due queued jobs of `pool` in one statement (inside the caller's
    transaction), in queue order: each row is its own compare-and-set on `queued`, all with
    the same lease."""
    return [job for job, _, _ in claimed(send_claim(conn, worker, pool, now, lease, limit))]


def send_claim(conn: Any, worker: str, pool: str, now: datetime, lease: timedelta, limit: int) -> Any:
    """`claim_many`'s statement, its rows not read yet (`claimed` reads them). On PostgreSQL, inside a
    transaction, nothing waits for the server until then: a statement sent meanwhile (a report)
    shares the round trip."""
    return conn.execute(_CLAIM, (worker, iso(now), iso(now + lease), pool, limit))


def claimed(rows: Any) -> list[tuple[Claim, str | None, int]]:
    """The jobs a `send_claim` won, in queue order: (job, its epoch's salvo as JSON, its next attempt)."""
    found = sorted(rows, key=lambda r: (-r[3], r[4]))
    return [(Claim(r[0], r[1], r[2]), r[5], r[6]) for r in found]


def renew(conn: Any, job: Claim, worker: str, until: datetime) -> bool:
    """Extend the lease of a job the worker still holds. False: the job is no longer its own."""
    row = conn.execute("UPDATE epoch_jobs SET lease_until = ? WHERE epoch_id = ? AND state = 'claimed' "
                       "AND worker = ? AND attempt = ? RETURNING 1",
                       (iso(until), job.epoch_id, worker, job.attempt)).fetchone()
    return row is not None


def report(conn: Any, job: Claim, worker: str) -> bool:
    """`claimed -> reported` if the job is still the worker's at this attempt (the caller then
    writes its result in the same transaction). False: the owner took it back first."""
    row = conn.execute("UPDATE epoch_jobs SET state = 'reported', lease_until = NULL WHERE epoch_id = ? "
                       "AND state = 'claimed' AND worker = ? AND attempt = ? RETURNING 1",
                       (job.epoch_id, worker, job.attempt)).fetchone()
    return row is not None


def report_many(conn: Any, reports: list[tuple[Claim, str]]) -> set[str]:
    """`report` for several (job, worker) in one statement, each row its own compare-and-set.
    Returns the epochs whose report won."""
    return {row[0] for row in send_report(conn, reports)}


# What follows a claim, in its transaction, for the jobs a worker claimed at `claimed_at`: found by the
# database itself, so that these statements need not wait for the claim's rows (on PostgreSQL a claim
# without a report then costs one round trip: every statement goes with the COMMIT).
MARK_RUNNING = ("UPDATE epochs SET state = 'running', started_at = ?1 WHERE id IN (SELECT epoch_id FROM epoch_jobs "
                "WHERE worker = ?2 AND state = 'claimed' AND claimed_at = ?3)")
CLAIMED_VALUES = dialect.register(
    "SELECT v.packet_id, v.kind, v.data, v.preview FROM epoch_jobs j JOIN epochs e ON e.id = j.epoch_id, "
    "json_each(e.salvo) p JOIN packet_values v ON v.packet_id = json_extract(p.value, '$[1]') "
    "WHERE j.worker = ?1 AND j.state = 'claimed' AND j.claimed_at = ?2",
    "SELECT v.packet_id, v.kind, v.data, v.preview FROM epoch_jobs j JOIN epochs e ON e.id = j.epoch_id, "
    "json_array_elements(e.salvo::json) p JOIN packet_values v ON v.packet_id = p->>1 "
    "WHERE j.worker = ?1 AND j.state = 'claimed' AND j.claimed_at = ?2")
# PostgreSQL only: the transaction does not wait for the disk unless it claimed a job of a node in ?3
# (see netrun.worker: a non-deferred epoch is durably `running` before its code runs).
NO_WAIT = "SET LOCAL synchronous_commit = off"
NO_WAIT_UNLESS = ("SELECT set_config('synchronous_commit', 'off', true) WHERE NOT EXISTS (SELECT 1 FROM epoch_jobs "
                  "WHERE worker = ANY(?1) AND state = 'claimed' AND claimed_at = ?2 AND node_name = ANY(?3))")


def send_report(conn: Any, reports: list[tuple[Claim, str]]) -> Any:
    """`report_many`'s statement, its rows (the epochs whose report won) not read yet: see `send_claim`."""
    if not reports:
        return ()
    values = ", ".join(["(?, ?, ?)"] * len(reports))
    params = [x for job, worker in reports for x in (job.epoch_id, worker, job.attempt)]
    return conn.execute(f"UPDATE epoch_jobs SET state = 'reported', lease_until = NULL WHERE state = 'claimed' "
                        f"AND (epoch_id, worker, attempt) IN (VALUES {values}) RETURNING epoch_id", params)


def take_back(conn: Any, job: Claim, worker: str, *, requeue: bool, now: str, outcome: str | None = None) -> bool:
    """The owner takes a claimed job back (lease expired, timeout, dead worker): queued again
    with attempt + 1, or done with `outcome`. False: the worker reported first."""
    if requeue:
        sql = ("UPDATE epoch_jobs SET state = 'queued', worker = NULL, claimed_at = NULL, lease_until = NULL, "
               "attempt = attempt + 1, not_before = NULL WHERE epoch_id = ? AND state = 'claimed' AND worker = ? "
               "AND attempt = ? RETURNING 1")
        params: tuple = (job.epoch_id, worker, job.attempt)
    else:
        sql = ("UPDATE epoch_jobs SET state = 'done', done_at = ?, outcome = ?, lease_until = NULL "
               "WHERE epoch_id = ? AND state = 'claimed' AND worker = ? AND attempt = ? RETURNING 1")
        params = (now, outcome, job.epoch_id, worker, job.attempt)
    return conn.execute(sql, params).fetchone() is not None


# Thread and process pools: the owner claims a job for one of its workers itself, in its own
# transaction (netrun.pools), and ends it by compare-and-set when the result comes back.
INSERT_CLAIMED = ("INSERT INTO epoch_jobs (epoch_id, seq, node_name, priority, pool, state, worker, enqueued_at, "
                  "claimed_at, lease_until, attempt) VALUES (?, ?, ?, ?, ?, 'claimed', ?, ?, ?, ?, ?)")
CLAIM_QUEUED = ("UPDATE epoch_jobs SET state = 'claimed', worker = ?, claimed_at = ?, lease_until = ? "
                "WHERE epoch_id = ? AND state = 'queued' AND attempt = ?")
START_HELD = ("UPDATE epoch_jobs SET claimed_at = ? WHERE epoch_id = ? AND state = 'claimed' AND worker = ? "
              "AND attempt = ? AND claimed_at IS NULL")
# (a job in hand whose start was not written yet gets its claimed_at here)
FINISH_HELD = ("UPDATE epoch_jobs SET state = 'done', done_at = ?, outcome = ?, lease_until = NULL, "
               "claimed_at = coalesce(claimed_at, ?) WHERE epoch_id = ? AND state = 'claimed' AND worker = ? "
               "AND attempt = ?")

FINISH_JOB = ("UPDATE epoch_jobs SET state = 'done', done_at = ?, outcome = ?, lease_until = NULL "
              "WHERE epoch_id = ? AND state IN ('claimed', 'reported')")


# PostgreSQL: leases are compared on the database's clock (workers stamp them with it: netrun.remote).
_EXPIRED = dialect.register(
    "SELECT epoch_id, node_name, attempt, worker, claimed_at FROM epoch_jobs "
    "WHERE state = 'claimed' AND lease_until < ? AND pool IS NOT NULL",
    "SELECT epoch_id, node_name, attempt, worker, claimed_at FROM epoch_jobs WHERE state = 'claimed' "
    "AND lease_until < to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"') "
    "AND pool IS NOT NULL AND ?::text IS NOT NULL")


def expired(conn: Any, now: str) -> list[tuple[Claim, str, str | None]]:
    """Claimed pool jobs whose lease ran out: (claim, worker, claimed_at)."""
    rows = conn.execute(_EXPIRED, (now,)).fetchall()
    return [(Claim(r[0], r[1], r[2]), r[3], r[4]) for r in rows]


def claimed_in_pool(conn: Any) -> list[tuple[Claim, str, str | None]]:
    """Every claimed pool job: (claim, worker, claimed_at)."""
    rows = conn.execute("SELECT epoch_id, node_name, attempt, worker, claimed_at FROM epoch_jobs "
                        "WHERE state = 'claimed' AND pool IS NOT NULL").fetchall()
    return [(Claim(r[0], r[1], r[2]), r[3], r[4]) for r in rows]


def next_seq(conn: Any) -> int:
    return conn.execute("SELECT coalesce(max(seq), 0) FROM epoch_jobs").fetchone()[0]


# Pool jobs by node: `queued` (no worker has it), `in_hand` (handed to a busy worker, not started: claimed
# with no claimed_at; its epoch is `running` in the file already, so that a crash never runs it twice)
# and `running` (started, or reported and not yet applied: the epoch is `running` in the epochs table
# until the owner applies its result). Each part reads a partial index (or the
# small epoch_results table, first: CROSS JOIN keeps that order), never a scan of the whole queue.
_POOL_JOBS = """
SELECT node_name, 'queued', count(*) FROM epoch_jobs WHERE state = 'queued' AND pool IS NOT NULL GROUP BY 1
UNION ALL
SELECT node_name, iif(claimed_at IS NULL, 'in_hand', 'running'), count(*) FROM epoch_jobs
WHERE state = 'claimed' AND pool IS NOT NULL GROUP BY 1, 2
UNION ALL
SELECT j.node_name, 'running', count(*) FROM epoch_results r CROSS JOIN epoch_jobs j ON j.epoch_id = r.epoch_id
WHERE j.state = 'reported' GROUP BY 1
"""


def pool_jobs_by_node(conn: Any) -> dict[str, dict[str, int]]:
    """{node: {"queued": n, "in_hand": n, "running": n}} for the nodes with pool jobs not done (one
    meaning of "running" everywhere: an epoch whose code a worker runs, or ran and whose result waits;
    readers show jobs in hand as queued)."""
    counts: dict[str, dict[str, int]] = {}
    for node, kind, n in conn.execute(_POOL_JOBS):
        entry = counts.setdefault(node, {"queued": 0, "in_hand": 0, "running": 0})
        entry[kind] += n
    return counts
