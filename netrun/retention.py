"""Retention: remove what ended epochs left behind once it is older than a limit.

`prune(conn, older_than)` deletes, in short transactions of at most `batch` objects each (a
running net's owner waits for one of them at most a few milliseconds):
- epochs that ended (finished, cancelled, failed) before the limit, with their attempts, job
  rows, deferred action queues, results and log lines;
- packets consumed or destroyed before the limit, with their kept values;
- dead letters replayed or discarded before the limit;
- history actions older than the limit, except those that mention something still stored (a
  live packet, an open epoch, a kept epoch);
- the ID numbers (history_ids) of epochs and packets made before the limit that are no longer
  stored, with their references (history_refs);
- net-level log lines and answered operator requests older than the limit.
Never touched: live packets, startable and running epochs, pending dead letters, and the epoch
that created a live packet (so a live packet's lineage still starts at its maker).
Objects are visited in ID order, which is creation order (ULIDs), so each pass stops at the
first object created after the limit. Freed pages are reused by later writes; a file created
with incremental auto-vacuum also gives them back to the file system.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw
from ulid import ULID

from .checkpoint import refuse_checkpoint_db
from .clock import iso
from .db import open_connection, transaction
from .durations import parse_duration
from .errors import DatabaseVersionError, NotANetrunDatabase
from .historyrows import iso_of, micros
from .migrate import latest_version
from .store import store_for

BATCH = 500
KEPT_FOR = 30.0  # seconds the kept history actions are reused across calls before a full recount
NUMBERS = 1000  # ID numbers looked at per transaction
VACUUM_PAGES = 2000  # pages given back to the file system per transaction (8 MB of 4 KiB pages)
_ENDED = ("finished", "cancelled", "failed")


@dataclass
class PruneReport:
    cutoff: str
    removed: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False

    def add(self, table: str, count: int) -> None:
        if count:
            self.removed[table] = self.removed.get(table, 0) + count


def id_bound(moment: datetime) -> str:
    """A string above every ULID made before `moment` (1 ms of slack) and below those made after."""
    try:
        prefix = str(ULID.from_datetime(moment + timedelta(milliseconds=1)))[:10]
    except (ValueError, OverflowError):  # before 1970 or past the calendar
        return "0" if moment.year < 1970 else "~"
    return prefix + "0" * 16


def _marks(items: list) -> str:
    return ", ".join("?" * len(items))


def gaps(lo: int, hi: int, holes: list[int]) -> list[tuple[int, int]]:
    """The ranges (first, last) that cover lo..hi but the sorted `holes`: a statement per range deletes
    a run of keys by its bounds, at a fraction of the cost of the same rows one by one, or of a range
    that tests each row against a list of exceptions."""
    out = []
    for hole in holes:
        if hole > hi:
            break
        if lo < hole:
            out.append((lo, hole - 1))
        lo = max(lo, hole + 1)
    if lo <= hi:
        out.append((lo, hi))
    return out


class _Pass:
    """Where a pruner's passes over the ID numbers and the history stand. A running owner's pruner keeps
    one across calls (each call goes on from there); a dry run or a recount starts a new one.

    Invariant: every ID number up to `swept` belongs to an epoch or packet made before a limit and
    still stored when it was swept (the others are deleted), and `kept` holds the seqs of the actions
    that mention them; every action below `history_from` is deleted but those in `kept`."""

    def __init__(self, now: float) -> None:
        self.swept = 0
        self.kept: set[int] = set()
        self.history_from = 0
        self.since = now


class Pruner:
    def __init__(self, conn: apsw.Connection, *, batch: int = BATCH, lag: timedelta = timedelta(0)) -> None:
        """`lag`: the ID numbers (and so the history) are pruned that much behind the limit. An object
        still stored when its number is swept keeps its history until the next recount (KEPT_FOR): a
        running net's pruner, called every second, sweeps once its short-lived objects are gone."""
        self.conn = conn
        self.batch = batch
        self.lag = lag
        self._doomed: set[str] = set()  # a dry run's epochs and packets that a real run would remove
        self._deadline = float("inf")
        self.out_of_time = False
        self._pass: _Pass | None = None  # the running pass (see _Pass), recounted every KEPT_FOR seconds

    def prune(self, older_than: timedelta, now: datetime, *, dry_run: bool = False,
              seconds: float | None = None, vacuum: bool = True) -> PruneReport:
        """Remove (or with `dry_run` count) what ended before `now - older_than`. With `seconds`, stop
        after about that long (the owner prunes a slice at a time; the next call goes on)."""
        try:
            cutoff = now - older_than
        except OverflowError:  # further back than datetime reaches: nothing is that old
            cutoff = datetime.min.replace(tzinfo=UTC)
        report = PruneReport(cutoff=iso(cutoff), dry_run=dry_run)
        self._bound = id_bound(cutoff)
        try:
            self._swept_bound = id_bound(cutoff - self.lag)
        except OverflowError:
            self._swept_bound = "0"
        self._doomed.clear()
        self._empty: dict[str, bool] = {}  # see _is_empty
        self.out_of_time = False  # set when a `seconds` limit cut this call short
        self._deadline = time.monotonic() + seconds if seconds is not None else float("inf")
        keep = self._kept_epochs(report.cutoff)
        self._epochs(report, keep, dry_run)
        self._packets(report, dry_run)
        # The numbers and the history go on only once every epoch and packet made before the limit was
        # visited: one left for the next call would count as still stored, and keep its history.
        if not self._out_of_time():
            if dry_run or self._pass is None or time.monotonic() - self._pass.since > KEPT_FOR:
                state = _Pass(time.monotonic())  # (a recount drops what was pruned since from `kept`)
                if not dry_run:
                    self._pass = state
            else:
                state = self._pass
            self._numbers(state, dry_run)
            self._history(report, state, micros(cutoff), dry_run)
        self._rest(report, dry_run)
        if vacuum and not dry_run and getattr(self.conn, "dialect", None) != "postgres" and \
                self.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:  # (PostgreSQL's autovacuum reuses the space)
            self._vacuum()
        return report

    def _vacuum(self) -> None:
        """Give the free pages back to the file system, VACUUM_PAGES per write transaction. (The pragma
        frees one page per step: a statement run without reading its rows would free one page.)"""
        free = self.conn.execute("PRAGMA freelist_count").fetchone()[0]
        while free and not self._out_of_time():
            self.conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
            free, before = self.conn.execute("PRAGMA freelist_count").fetchone()[0], free
            if free >= before:
                return

    def _out_of_time(self) -> bool:
        if time.monotonic() > self._deadline:
            self.out_of_time = True
        return self.out_of_time

    def _kept_epochs(self, cutoff: str) -> set[str]:
        """Epochs that made a live packet or hold a pending dead letter: kept whatever their age. Only a
        packet made before the limit can have a maker old enough to prune: its maker is found by key."""
        conn = self.conn
        keep = {row[0] for row in conn.execute(
            "SELECT DISTINCT epoch_id FROM dead_letters WHERE status = 'pending' AND epoch_id IS NOT NULL")}
        live = [row[0] for row in conn.execute("SELECT id FROM packets WHERE state = 'live' AND created_at < ?",
                                               (cutoff,))]
        code = conn.execute("SELECT code FROM history_words WHERE word = 'CreatePacket'").fetchone()
        for i in range(0, len(live), 500) if code is not None else ():
            chunk = live[i:i + 500]
            keep.update(row[0] for row in conn.execute(
                f"SELECT e.id FROM history_ids p JOIN history_refs r ON r.ref = p.n "
                f"JOIN history_actions a ON a.seq = r.seq JOIN history_ids e ON e.n = a.epoch "
                f"WHERE p.id IN ({_marks(chunk)}) AND a.name = ? AND a.packet = p.n", (*chunk, code[0])))
        return keep

    def _walk(self, table: str, columns: str, where: str):
        """Rows of `table` matching `where`, in ID order, a batch at a time until the deadline, among
        the IDs made before the limit: an ID is a ULID, whose first 10 characters are its creation
        time, so SQLite skips the rest by key, and skips rows that stay (open epochs, live packets)
        without handing them to Python."""
        after = ""
        while True:
            rows = self.conn.execute(f"SELECT id, {columns} FROM {table} WHERE id > ? AND id < ? AND {where} "
                                     f"ORDER BY id LIMIT ?", (after, self._bound, self.batch)).fetchall()
            if not rows:
                return
            yield rows
            if self._out_of_time():
                return
            after = rows[-1][0]

    def _epochs(self, report: PruneReport, keep: set[str], dry_run: bool) -> None:
        cutoff = report.cutoff
        for rows in self._walk("epochs", "state, created_at, finished_at",
                               "state IN ('finished', 'cancelled', 'failed')"):
            gone = [r[0] for r in rows if r[3] is not None and r[3] < cutoff and r[0] not in keep]
            if gone:
                self._doomed.update(gone)
                self._delete(report, dry_run, [
                    ("epochs", "id", gone), ("epoch_attempts", "epoch_id", gone), ("epoch_jobs", "epoch_id", gone),
                    ("epoch_results", "epoch_id", gone), ("deferred_actions", "epoch_id", gone),
                    ("node_logs", "epoch_id", gone)])

    def _packets(self, report: PruneReport, dry_run: bool) -> None:
        cutoff = report.cutoff
        pending = {row[0] for row in self.conn.execute("SELECT packet_id FROM dead_letters WHERE status = 'pending'")}
        for rows in self._walk("packets", "state, created_at, finished_at", "state != 'live'"):
            gone = [r[0] for r in rows if r[3] is not None and r[3] < cutoff and r[0] not in pending]
            if gone:
                self._doomed.update(gone)
                self._delete(report, dry_run, [("packets", "id", gone), ("packet_values", "packet_id", gone)])

    def _numbers(self, state: _Pass, dry_run: bool) -> None:
        """Delete the ID numbers (and their references) of epochs and packets made before the limit and
        no longer stored, and keep the actions that mention the others.

        IDs are numbered in the order the history first mentions them, so the numbers of the objects
        pruned by now are a range with a few holes (the objects still stored): each range goes in two
        statements, from the last number swept up to the first ID made after the limit (less the
        lag). The holes
        are what the history must keep, and the only references read: this costs what was pruned,
        not what is stored."""
        conn = self.conn
        while not self._out_of_time():
            rows = conn.execute("SELECT n, id FROM history_ids WHERE n > ? ORDER BY n LIMIT ?",
                                (state.swept, NUMBERS)).fetchall()
            young = next((i for i, row in enumerate(rows) if row[1] >= self._swept_bound), None)
            if young is not None:
                rows = rows[:young]  # made after the limit: this number and the next ones stay
            if not rows:
                return
            # what is still stored among these IDs: a range by key in each table, where little is left
            first, last = min(row[1] for row in rows), max(row[1] for row in rows)
            stored = {row[0] for table in ("epochs", "packets") for row in conn.execute(
                f"SELECT id FROM {table} WHERE id >= ? AND id <= ?", (first, last))}
            holes = [row[0] for row in rows if row[1] in stored and row[1] not in self._doomed]
            for i in range(0, len(holes), 500):
                chunk = holes[i:i + 500]
                state.kept.update(row[0] for row in conn.execute(
                    f"SELECT seq FROM history_refs WHERE ref IN ({_marks(chunk)})", chunk))
            if not dry_run and len(holes) < len(rows):
                ranges = gaps(rows[0][0], rows[-1][0], holes)
                with transaction(conn):
                    conn.executemany("DELETE FROM history_refs WHERE ref >= ? AND ref <= ?", ranges)
                    conn.executemany("DELETE FROM history_ids WHERE n >= ? AND n <= ?", ranges)
            state.swept = rows[-1][0]
            if young is not None or len(rows) < NUMBERS:
                return

    def _history(self, report: PruneReport, state: _Pass, cutoff_us: int, dry_run: bool) -> None:
        """Actions before the first one at or after the limit go, except those that mention something
        still stored that was made before the limit (a live packet, an open or kept epoch): those are
        `state.kept` (see _numbers), the rest is deleted by seq ranges. An action that mentions a
        number not swept yet stays too: none comes before the first action that mentions the first
        such number. The last action always stays (the next record's seq is counted from it)."""
        conn = self.conn
        end = self._first_seq_at(cutoff_us)
        if end is None:
            return
        following = conn.execute("SELECT n FROM history_ids WHERE n > ? ORDER BY n LIMIT 1", (state.swept,)).fetchone()
        if following is not None:
            first = conn.execute("SELECT min(seq) FROM history_refs WHERE ref = ?", following).fetchone()[0]
            if first is not None:
                end = min(end, first)
        kept = sorted(seq for seq in state.kept if seq < end)
        # Below the cursor everything not kept is gone already (a running owner's earlier calls): go on
        # from there.
        lo = max(state.history_from, conn.execute("SELECT min(seq) FROM history_actions").fetchone()[0] or end)
        while lo < end and not self._out_of_time():
            step = conn.execute("SELECT seq FROM history_actions WHERE seq >= ? ORDER BY seq LIMIT 1 OFFSET ?",
                                (lo, 4 * self.batch)).fetchone()  # windows of 2,000 actions
            hi = min(end, step[0]) if step is not None else end
            ranges = gaps(lo, hi - 1, kept[bisect_left(kept, lo):bisect_left(kept, hi)])
            if dry_run:
                report.add("history_actions", sum(conn.execute(
                    "SELECT count(*) FROM history_actions WHERE seq >= ? AND seq <= ?", r).fetchone()[0] for r in ranges))
            else:
                with transaction(conn):
                    for r in ranges:
                        conn.execute("DELETE FROM history_actions WHERE seq >= ? AND seq <= ?", r)
                        report.add("history_actions", conn.changes())
            state.history_from = lo = hi
        if len(state.kept) > 2 * len(kept) + 1000:  # the seqs passed for good are no longer needed
            state.kept = {seq for seq in state.kept if seq >= state.history_from}
        condition = ("seq < (SELECT max(seq) FROM history_legacy) AND timestamp < ? AND (epoch_id IS NULL OR epoch_id "
                     "NOT IN (SELECT id FROM epochs)) AND (packet_id IS NULL OR packet_id NOT IN (SELECT id FROM packets))")
        self._chunked(report, dry_run, "history_legacy", "seq", condition, (iso_of(cutoff_us),))

    def _first_seq_at(self, cutoff_us: int) -> int | None:
        """The seq of the first action at or after the limit (actions are in time order), or of the last
        action when all are older; None for no history. A binary search by key."""
        conn = self.conn
        # two queries: SQLite finds a lone min() or max() by key, but scans for both at once
        bounds = (conn.execute("SELECT min(seq) FROM history_actions").fetchone()[0],
                  conn.execute("SELECT max(seq) FROM history_actions").fetchone()[0])
        if bounds[0] is None:
            return None
        lo, hi = bounds
        while lo < hi:
            mid = (lo + hi) // 2
            seq, ts = conn.execute("SELECT seq, ts FROM history_actions WHERE seq >= ? ORDER BY seq LIMIT 1",
                                   (mid,)).fetchone()
            if ts < cutoff_us:
                lo = seq + 1
            else:
                hi = mid
        first = conn.execute("SELECT seq FROM history_actions WHERE seq >= ? ORDER BY seq LIMIT 1", (lo,)).fetchone()
        return first[0] if first is not None else bounds[1]

    def _rest(self, report: PruneReport, dry_run: bool) -> None:
        self._chunked(report, dry_run, "dead_letters", "seq", "status != 'pending' AND created_at < ?",
                      (report.cutoff,))
        self._chunked(report, dry_run, "node_logs", "seq", "epoch_id IS NULL AND timestamp < ?", (report.cutoff,))
        self._chunked(report, dry_run, "operator_requests", "id",
                      "state IN ('done', 'rejected', 'withdrawn') AND answered_at < ?", (report.cutoff,))

    def _chunked(self, report: PruneReport, dry_run: bool, table: str, key: str, condition: str,
                 params: tuple) -> None:
        """Delete the rows of `table` matching `condition`, a batch per transaction."""
        conn = self.conn
        if dry_run:
            report.add(table, conn.execute(f"SELECT count(*) FROM {table} WHERE {condition}", params).fetchone()[0])
            return
        while not self._out_of_time():
            with transaction(conn):
                conn.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {condition} "
                             f"LIMIT ?)", (*params, self.batch))
                count = conn.changes()
            report.add(table, count)
            if count < self.batch:
                return

    def _is_empty(self, table: str) -> bool:
        """Whether `table` has no row at all (asked once per prune call: a net without pools, deferred
        nodes or logs leaves those tables empty, and probing them by key per object costs more)."""
        empty = self._empty.get(table)
        if empty is None:
            empty = self._empty[table] = self.conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchone() is None
        return empty

    def _delete(self, report: PruneReport, dry_run: bool, parts: list[tuple[str, str, list[str]]]) -> None:
        """Delete rows by key, every part in one transaction."""
        conn = self.conn
        if dry_run:
            for table, column, keys in parts:
                report.add(table, conn.execute(f"SELECT count(*) FROM {table} WHERE {column} IN ({_marks(keys)})",
                                               keys).fetchone()[0])
            return
        with transaction(conn):
            for table, column, keys in parts:
                if not self._is_empty(table):
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({_marks(keys)})", keys)
                    report.add(table, conn.changes())


def describe(report: PruneReport) -> str:
    verb = "would remove" if report.dry_run else "removed"
    parts = ", ".join(f"{count} {table}" for table, count in sorted(report.removed.items())) or "nothing"
    return f"{verb} {parts} (ended before {report.cutoff})"


def prune_file(db: str, older_than: str, *, dry_run: bool = False, now: datetime | None = None) -> PruneReport:
    """Prune a net's database file (the `netrun prune` command), whether or not a process runs the net:
    each batch is its own short transaction, so a running owner only waits for one at a time.

    Raises ConfigError for a bad duration; CheckpointError for a checkpoint's database; NotANetrunDatabase, DatabaseVersionError (an older file:
    resume it once to upgrade it), CorruptDatabase for a file that cannot be pruned."""
    age = parse_duration(older_than, what="--older-than")
    refuse_checkpoint_db(db, "pruning it")
    state = store_for(db).inspect()
    if not state.exists:
        raise NotANetrunDatabase(f"{db} holds no netrun net to prune", path=db)
    if state.version < latest_version():
        raise DatabaseVersionError(f"{db} was written by an older netrun (schema version {state.version}); resume "
                                   "it once (netrun resume, or Net.resume) to upgrade it, then prune it",
                                   path=db, version=state.version)
    conn = open_connection(db)
    try:
        return Pruner(conn).prune(age, now or datetime.now(UTC), dry_run=dry_run)
    finally:
        conn.close()


class RetentionPolicy:
    """A running net's `retention` option: the owner prunes a slice of at most SLICE seconds every
    EVERY seconds, or every SOON seconds while a slice ran out of time (a backlog to catch up on), so
    a long run keeps its file bounded without ever stalling for more than a slice. Pruning costs
    ~20-30 us per epoch in a running soak (tools/soak.py; ~17 us alone), against ~200 us to run a
    trivial one."""

    EVERY = 1.0
    SOON = 0.2
    SLICE = 0.05
    LAG = 5.0  # seconds the ID numbers and history are pruned behind the limit (see Pruner)

    def __init__(self, conn: apsw.Connection, retention: str, clock: Any) -> None:
        self.age = parse_duration(retention, what="retention")
        self.pruner = Pruner(conn, lag=min(self.age, timedelta(seconds=self.LAG)))
        self.clock = clock
        self._next = clock.monotonic() + self.EVERY

    def tick(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next:
            # no vacuum: a running net reuses the pages it frees (giving them back to the file system
            # only to grow the file again costs the run); `netrun prune` gives them back
            self.pruner.prune(self.age, self.clock.now(), seconds=self.SLICE, vacuum=False)
            self._next = self.clock.monotonic() + (self.SOON if self.pruner.out_of_time else self.EVERY)
