"""Full-text search over what a run wrote in words: node log lines, failed attempts' errors and
tracebacks, dead letters' errors (`netrun logs FILE --search TEXT`).

The index is built on demand, never by the run: a running net pays nothing for it. It lives in
a side file, `<db>-search` (a SQLite FTS5 index made with sqlite-utils, on the stdlib `sqlite3`
module), so the net's database is never written; each search first adds what is new since the
last one (log lines and dead letters after the last `seq` indexed; failed attempts not indexed
yet), so only the first search of a long run pays for the whole of it. The file is a cache:
deleting it is safe, and one that belongs to another net (the database was replaced) is rebuilt.
Where it cannot be written (a read-only folder), the index is built in memory for the one search.

Every match is checked against the database before it is shown (a row that `prune` removed is
dropped from the index), and its fields are read from there.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from typing import Any

import sqlite_utils

from .dialect import is_url

SUFFIX = "-search"
SCHEMA_VERSION = 1  # of the side file; another version is rebuilt
BATCH = 5000
TOKENIZER = "porter unicode61"  # words match their other forms: "fail" finds "failed"

Rows = Callable[[str, tuple], list[dict]]

_SOURCES = {
    # source -> the query that reads the rows after a mark (`?` the last seq indexed)
    "log": ("SELECT seq AS ref, node_name AS node, epoch_id AS epoch, timestamp, text FROM node_logs "
            "WHERE seq > ? ORDER BY seq LIMIT ?"),
    "dead_letter": ("SELECT seq AS ref, node_name AS node, epoch_id AS epoch, created_at AS timestamp, "
                    "coalesce(error, reason) || coalesce('\n' || traceback, '') AS text FROM dead_letters "
                    "WHERE seq > ? ORDER BY seq LIMIT ?"),
}
# Attempts have no seq, and a deferred epoch's failed attempts are committed with its end, after later
# ones: no mark is safe, so every refresh lists the failed ones (few) and adds those not indexed yet.
_FAILED_ATTEMPTS = "SELECT epoch_id, attempt FROM epoch_attempts WHERE outcome = 'failed'"
_ATTEMPT = ("SELECT epoch_id || ':' || attempt AS ref, node_name AS node, epoch_id AS epoch, finished_at AS timestamp, "
            "coalesce(error, error_type, '') || coalesce('\n' || traceback, '') AS text "
            "FROM epoch_attempts WHERE epoch_id = ? AND attempt = ?")
_RANK = "CASE e.source WHEN 'dead_letter' THEN 2 WHEN 'attempt' THEN 1 ELSE 0 END"  # at one instant: the
# log line, then the failed attempt, then the dead letter it made
_CHECK = {  # source -> the row a match stands for, read from the database (none: it was removed)
    "log": "SELECT seq, node_name AS node, epoch_id AS epoch, timestamp, text FROM node_logs WHERE seq = ?",
    "dead_letter": ("SELECT seq, node_name AS node, epoch_id AS epoch, created_at AS timestamp, reason, error, "
                    "traceback FROM dead_letters WHERE seq = ?"),
    "attempt": ("SELECT epoch_id AS epoch, attempt, node_name AS node, finished_at AS timestamp, error_type, error, "
                "traceback FROM epoch_attempts WHERE epoch_id = ? AND attempt = ?"),
}


def index_path(db_path: str) -> str:
    """The index file beside the net's database file; a PostgreSQL net's (it has no file) in this user's
    cache folder (`$XDG_CACHE_HOME/netrun/search`, else `~/.cache/netrun/search`), named by a hash of
    the URL without its password (the net's name included)."""
    if is_url(db_path):
        from .pgconn import redact

        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        name = hashlib.sha256(redact(db_path).encode()).hexdigest()[:24]
        return os.path.join(cache, "netrun", "search", name + SUFFIX)
    return os.fspath(db_path) + SUFFIX


class SearchIndex:
    """The side-file index of one net. `identity` tells this net from another one stored at the same path
    (its `created_at`): an index made for another is rebuilt."""

    def __init__(self, db_path: str, identity: str) -> None:
        self.path = index_path(db_path)
        self.in_memory = False
        try:
            if is_url(db_path):  # the cache folder (a net's file has its folder)
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode = DELETE")  # one file beside the net, no -wal of its own
        except (sqlite3.Error, OSError):  # the folder cannot be written: an index for this one search
            conn = sqlite3.connect(":memory:", isolation_level=None)
            self.in_memory = True
        self.db = sqlite_utils.Database(conn)
        self.identity = identity

    def close(self) -> None:
        self.db.conn.close()

    def __enter__(self) -> SearchIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- keeping it current ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        if "state" not in self.db.table_names():
            return {}
        return {r["key"]: r["value"] for r in self.db["state"].rows}

    def _create(self) -> None:
        for name in ("entries_fts", "entries", "state"):
            self.db.execute(f"DROP TABLE IF EXISTS [{name}]")
        self.db["entries"].create({"id": int, "source": str, "ref": str, "node": str, "epoch": str,
                                   "timestamp": str, "text": str}, pk="id")
        self.db["entries"].create_index(["source", "ref"], unique=True)
        self.db["entries"].enable_fts(["text"], fts_version="FTS5", create_triggers=True, tokenize=TOKENIZER)
        self.db["state"].create({"key": str, "value": str}, pk="key")
        self.db["state"].insert_all([{"key": "schema", "value": str(SCHEMA_VERSION)},
                                     {"key": "identity", "value": self.identity}])

    def refresh(self, rows: Rows) -> dict[str, Any]:
        """Add what the database holds and the index does not, in one transaction of the side file (a
        search running meanwhile waits for it; sqlite-utils nests its own as savepoints): one commit,
        not one per chunk of rows. Returns {"added": rows indexed now, "seconds": time taken,
        "rebuilt": bool}."""
        began = time.perf_counter()
        self.db.execute("BEGIN IMMEDIATE")  # taken up front: a deferred one that reads, then writes, fails at once
        try:
            figures = self._refresh(rows)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return {**figures, "seconds": time.perf_counter() - began}

    def _refresh(self, rows: Rows) -> dict[str, Any]:
        added = 0
        state = self._state()
        rebuilt = state.get("schema") != str(SCHEMA_VERSION) or state.get("identity") != self.identity
        if rebuilt:
            self._create()
            state = {}
        for source, sql in _SOURCES.items():
            mark = int(state.get(f"{source}_seq", 0))
            while batch := rows(sql, (mark, BATCH)):
                added += self._add(source, batch)
                mark = int(batch[-1]["ref"])
                self.db["state"].upsert({"key": f"{source}_seq", "value": str(mark)}, pk="key")
        known = {r[0] for r in self.db.execute("SELECT ref FROM entries WHERE source = 'attempt'")}
        new = [r for r in rows(_FAILED_ATTEMPTS, ()) if f"{r['epoch_id']}:{r['attempt']}" not in known]
        for start in range(0, len(new), BATCH):
            added += self._add("attempt", [rows(_ATTEMPT, (r["epoch_id"], r["attempt"]))[0]
                                           for r in new[start:start + BATCH]])
        return {"added": added, "rebuilt": rebuilt}

    def _add(self, source: str, batch: list[dict]) -> int:
        self.db["entries"].insert_all(({"source": source, **r, "ref": str(r["ref"])} for r in batch),
                                      batch_size=BATCH, ignore=True)
        return len(batch)

    # -- searching -----------------------------------------------------------------------------------
    def search(self, rows: Rows, text: str, *, node: str | None = None, epoch: str | None = None,
               limit: int | None = None) -> list[dict]:
        """The entries matching every word of `text` (stemmed; FTS operators are taken as words),
        oldest first (the newest `limit` of them), each as the database has it now."""
        query = self.db.quote_fts(text)
        if not query:
            return []
        where, params = ["entries_fts MATCH ?"], [query]
        for column, value in (("node", node), ("epoch", epoch)):
            if value is not None:
                where.append(f"e.{column} = ?")
                params.append(value)
        found: list[dict] = []
        stale: list[int] = []
        for entry in self._matches(" AND ".join(where), params):
            row = self._current(rows, entry)
            if row is None:
                stale.append(entry["id"])
                continue
            found.append(row)
            if limit is not None and len(found) >= limit:
                break
        if stale and not self.in_memory:
            self._forget(stale)
        found.reverse()
        return found

    def _matches(self, where: str, params: list) -> Iterator[dict]:
        cursor = self.db.execute(
            "SELECT e.id, e.source, e.ref FROM entries e JOIN entries_fts ON entries_fts.rowid = e.id "
            f"WHERE {where} ORDER BY e.timestamp DESC, {_RANK} DESC, e.id DESC", params)
        names = [d[0] for d in cursor.description]
        for values in cursor:
            yield dict(zip(names, values))

    @staticmethod
    def _current(rows: Rows, entry: dict) -> dict | None:
        source, ref = entry["source"], entry["ref"]
        keys = tuple(ref.rsplit(":", 1)) if source == "attempt" else (int(ref),)
        found = rows(_CHECK[source], (keys[0], int(keys[1])) if source == "attempt" else keys)
        if not found:
            return None
        row = found[0]
        if source != "log":  # the error's text (it names its type); the traceback stays in --json
            row["text"] = row.pop("error") or row.get("error_type") or row.get("reason") or ""
        return {"source": source, **row}

    def _forget(self, ids: list[int]) -> None:
        with self.db.conn:
            self.db.conn.executemany("DELETE FROM entries WHERE id = ?", [(i,) for i in ids])


def search_logs(rows: Rows, db_path: str, identity: str, text: str, *, node: str | None = None,
                epoch: str | None = None, limit: int | None = None) -> tuple[list[dict], dict[str, Any]]:
    """Refresh the index of the net at `db_path`, then search it: (matches, refresh figures)."""
    with SearchIndex(db_path, identity) as index:
        figures = index.refresh(rows)
        figures["in_memory"] = index.in_memory
        return index.search(rows, text, node=node, epoch=epoch, limit=limit), figures
