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

import threading
import time
from bisect import bisect_left
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import apsw
from ulid import ULID

from .checkpoint import refuse_checkpoint_db
from .clock import iso
from .db import open_connection, transaction
from .durations import parse_duration
from .errors import DatabaseVersionError, NotANetrunDatabase
from .historyrows import iso_of, micros
from .migrate import SAME_TABLES_SINCE
from .store import store_for

BATCH = 500
KEPT_FOR = 30.0  # seconds a pass over the ID numbers is gone on from across calls before a recount
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
    still stored when it was swept (the others are deleted); `holes` lists them. Every action below
    `history_from` is deleted but those that mention a hole, read by the call that deletes the others
    (see _history): an action that mentions a hole again later (an old packet that moves, an old epoch
    that ends) is found too, however late it was committed. A recount (KEPT_FOR) drops the holes
    pruned since, and their numbers."""

    def __init__(self, now: float) -> None:
        self.swept = 0
        self.holes: list[int] = []
        self.history_from = 0
        self.since = now


class Pruner:
    """Reads come back as one row each (a list aggregated by SQLite): a pruning thread takes the GIL
    back once per statement, not once per row, so an owner busy in Python cannot starve it."""

    def __init__(self, conn: apsw.Connection | None, *, batch: int = BATCH, lag: timedelta = timedelta(0),
                 stop: threading.Event | None = None) -> None:
        """`conn`: None for a pruner that is given a connection before each call (a thread's own).
        `lag`: the ID numbers (and so the history) are pruned that much behind the limit: a running
        net's pruner, called every second, sweeps once its short-lived objects are gone. `stop`: once
        set, a call stops after the transaction it is in (as if out of time)."""
        self.conn = conn
        self.batch = batch
        self.lag = lag
        self._stop = stop
        self._doomed: set[str] = set()  # a dry run's epochs and packets that a real run would remove
        self._pass: _Pass | None = None  # the running pass (see _Pass), recounted every KEPT_FOR seconds

    def prune(self, older_than: timedelta, now: datetime, *, dry_run: bool = False,
              vacuum: bool = True) -> PruneReport:
        """Remove (or with `dry_run` count) what ended before `now - older_than`. Once `stop` is set it
        returns after the transaction it is in; the next call goes on from there."""
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
        keep = self._kept_epochs(report.cutoff)
        self._epochs(report, keep, dry_run)
        self._packets(report, dry_run)
        # The numbers and the history go on only once every epoch and packet made before the limit was
        # visited: one left for the next call would count as still stored, and keep its history.
        if not self._stopped():
            if dry_run or self._pass is None or time.monotonic() - self._pass.since > KEPT_FOR:
                state = _Pass(time.monotonic())  # (a recount drops the holes pruned since)
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
        while free and not self._stopped():
            self.conn.execute(f"PRAGMA incremental_vacuum({VACUUM_PAGES})").fetchall()
            free, before = self.conn.execute("PRAGMA freelist_count").fetchone()[0], free
            if free >= before:
                return

    def _stopped(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    def _list(self, expression: str, query: str, params: tuple) -> list[str]:
        """The values of `expression` over the rows of `query`, in its order, read as one row."""
        text = self.conn.execute(f"SELECT string_agg(CAST({expression} AS TEXT), ',' ORDER BY k) FROM ({query}) AS t",
                                 params).fetchone()[0]
        return text.split(",") if text else []

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

    def _sweep(self, report: PruneReport, dry_run: bool, table: str, where: str, keep: set[str],
               parts: list[tuple[str, str]]) -> None:
        """Delete the rows of `table` that ended before the cutoff and match `where`, but those in `keep`,
        with their rows in `parts` ((table, column) keyed by the ID), a batch per transaction, among the
        IDs made before the limit: an ID is a ULID, whose first 10 characters are its creation time, so
        SQLite skips the rest by key, and skips rows that stay (open epochs, live packets) without
        handing them to Python. Each batch is read in the transaction that deletes it: `where` sees
        what a running net committed up to then, and nothing can be committed in between."""
        after = ""
        while True:
            with nullcontext() if dry_run else transaction(self.conn):
                ids = self._list("k", f"SELECT id AS k FROM {table} WHERE id > ? AND id < ? AND {where} AND "
                                      f"finished_at < ? ORDER BY id LIMIT ?",
                                 (after, self._bound, report.cutoff, self.batch))
                gone = [id_ for id_ in ids if id_ not in keep]
                if gone:
                    self._doomed.update(gone)
                    self._delete(report, dry_run, [(part, column, gone) for part, column in parts])
            if len(ids) < self.batch or self._stopped():
                return
            after = ids[-1]

    def _epochs(self, report: PruneReport, keep: set[str], dry_run: bool) -> None:
        self._sweep(report, dry_run, "epochs", "state IN ('finished', 'cancelled', 'failed')", keep, [
            ("epochs", "id"), ("epoch_attempts", "epoch_id"), ("epoch_jobs", "epoch_id"), ("epoch_results", "epoch_id"),
            ("deferred_actions", "epoch_id"), ("node_logs", "epoch_id")])

    def _packets(self, report: PruneReport, dry_run: bool) -> None:
        """Consumed and destroyed packets, but those of a pending dead letter, and those consumed by an
        epoch still open (it may yet fail and put them in the dead letters)."""
        self._sweep(report, dry_run, "packets",
                    "state != 'live' AND id NOT IN (SELECT packet_id FROM dead_letters WHERE status = 'pending') "
                    "AND NOT EXISTS (SELECT 1 FROM epochs e WHERE e.id = packets.epoch_id "
                    "AND e.state IN ('startable', 'running'))", set(),
                    [("packets", "id"), ("packet_values", "packet_id")])

    def _numbers(self, state: _Pass, dry_run: bool) -> None:
        """Delete the ID numbers (and their references) of epochs and packets made before the limit and
        no longer stored, and list the others as holes (whose actions stay: see _history).

        IDs are numbered in the order the history first mentions them, so the numbers of the objects
        pruned by now are a range with a few holes (the objects still stored): each range goes in two
        statements, from the last number swept up to the first ID made after the limit (less the
        lag). This costs what was pruned, not what is stored."""
        conn = self.conn
        while not self._stopped():
            rows = [(int(n), id_) for n, id_ in (item.split(" ") for item in self._list(
                "v", "SELECT n AS k, n || ' ' || id AS v FROM history_ids WHERE n > ? ORDER BY n LIMIT ?",
                (state.swept, NUMBERS)))]
            young = next((i for i, row in enumerate(rows) if row[1] >= self._swept_bound), None)
            if young is not None:
                rows = rows[:young]  # made after the limit: this number and the next ones stay
            if not rows:
                return
            # what is still stored among these IDs: a range by key in each table, where little is left
            first, last = min(row[1] for row in rows), max(row[1] for row in rows)
            stored = set(self._list("k", "SELECT id AS k FROM epochs WHERE id >= ? AND id <= ? UNION ALL "
                                         "SELECT id FROM packets WHERE id >= ? AND id <= ?", (first, last) * 2))
            holes = [row[0] for row in rows if row[1] in stored and row[1] not in self._doomed]
            state.holes += holes
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
        still stored that was made before the limit (a live packet, an open or kept epoch: the holes,
        see _numbers), the rest is deleted by seq ranges. An action that mentions a number not swept
        yet stays too: none comes before the first action that mentions the first such number. The
        last action always stays (the next record's seq is counted from it).

        The actions that mention a hole are read at each call, after `end`: one committed since the hole
        was swept (a running net moves an old live packet, ends an old epoch) is read too. None below
        `end` can be committed later: the owner alone writes history, an action with its references,
        in seq order, so every action below one already read was committed before it."""
        conn = self.conn
        end = self._first_seq_at(cutoff_us)
        if end is None:
            return
        following = conn.execute("SELECT n FROM history_ids WHERE n > ? ORDER BY n LIMIT 1", (state.swept,)).fetchone()
        if following is not None:
            first = conn.execute("SELECT min(seq) FROM history_refs WHERE ref = ?", following).fetchone()[0]
            if first is not None:
                end = min(end, first)
        # Below the cursor everything not kept is gone already (a running owner's earlier calls): go on
        # from there.
        lo = max(state.history_from, conn.execute("SELECT min(seq) FROM history_actions").fetchone()[0] or end)
        kept = self._mentioning(state.holes, lo, end) if lo < end else []
        while lo < end and not self._stopped():
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
        condition = ("seq < (SELECT max(seq) FROM history_legacy) AND timestamp < ? AND (epoch_id IS NULL OR epoch_id "
                     "NOT IN (SELECT id FROM epochs)) AND (packet_id IS NULL OR packet_id NOT IN (SELECT id FROM packets))")
        self._chunked(report, dry_run, "history_legacy", "seq", condition, (iso_of(cutoff_us),))

    def _mentioning(self, numbers: list[int], lo: int, hi: int) -> list[int]:
        """The sorted seqs from `lo` to below `hi` of the actions that mention one of `numbers`: a range
        by key per number."""
        seqs: set[int] = set()
        for i in range(0, len(numbers), 500):
            chunk = numbers[i:i + 500]
            seqs.update(int(seq) for seq in self._list(
                "k", f"SELECT seq AS k FROM history_refs WHERE ref IN ({_marks(chunk)}) AND seq >= ? AND seq < ?",
                (*chunk, lo, hi)))
        return sorted(seqs)

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
        while not self._stopped():
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
        """Delete rows by key (in the caller's transaction)."""
        conn = self.conn
        if dry_run:
            for table, column, keys in parts:
                report.add(table, conn.execute(f"SELECT count(*) FROM {table} WHERE {column} IN ({_marks(keys)})",
                                               keys).fetchone()[0])
            return
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
    if state.version < SAME_TABLES_SINCE:
        raise DatabaseVersionError(f"{db} was written by an older netrun (schema version {state.version}); resume "
                                   "it once (netrun resume, or Net.resume) to upgrade it, then prune it",
                                   path=db, version=state.version)
    conn = open_connection(db)
    try:
        return Pruner(conn).prune(age, now or datetime.now(UTC), dry_run=dry_run)
    finally:
        conn.close()
