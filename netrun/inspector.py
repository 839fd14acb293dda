"""Reading a net's database file without running it: status, history, logs, dead letters.

`NetInspector` opens the file read-only (the same checks as `Net.resume`: a foreign,
newer or corrupt file is refused and left unchanged) and never writes to it, so it can
look at a net that another process is running right now, or at one that crashed, without
applying the crash semantics a resume would. Every method returns plain dicts and lists
(JSON-ready); the `netrun` command prints them as tables or as `--json`.
"""

from __future__ import annotations

import json
import os
import pickle
import tomllib
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Any

import netrun_sim as ns

from . import lineage
from .clock import iso
from .db import open_connection, rows_as_dicts
from .definition import split_port_ref
from .errors import ConfigError, DatabaseVersionError, NotANetrunDatabase, NotFoundError, StoredValueUnreadable
from .durations import find_duration
from .historyrows import Decoder
from .intents import read_intents
from .jobs import pool_jobs_by_node
from .migrate import SAME_TABLES_SINCE
from .ownership import Owner
from .store import store_for
from .readonly import guarded_query, read_query
from .restore import stored_graph
from .shortids import resolve_id
from .values import FUNC, JSON, PICKLE, decode, shorten

COUNTS = ("startable", "queued", "running", "finished", "failed", "cancelled")  # node_counts(), poll()
PREVIEW_CHARS = 120


NOT_SHOWN = "<pickled value: not shown without --unpickle>"


def preview(kind: str | None, data: str | bytes | None, stored: str | None = None, limit: int = PREVIEW_CHARS, *,
            unpickle: bool = False) -> str | None:
    """A short text of a stored value, made without running code from the file: JSON text as it is,
    the preview stored with a pickled value or value function. `unpickle=True`: a pickled value's
    `repr` (unpickling runs code from the file); one that cannot be unpickled here says so."""
    if data is None:
        return None
    if kind == JSON:
        return shorten(data, limit) if isinstance(data, str) else "<damaged: a JSON value stored as bytes>"
    if kind == PICKLE and unpickle:
        try:
            return shorten(repr(pickle.loads(data)), limit)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure is shown, not raised
            return f"<cannot load here: {type(exc).__name__}: {exc}>"
    if stored is not None:
        return shorten(stored, limit)
    return "<value function>" if kind == FUNC else NOT_SHOWN


def parse_since(text: str, now: datetime | None = None) -> str:
    """`--since` as a stored timestamp: an ISO date/time (UTC unless it says otherwise) or an
    age such as `30s`, `10m`, `2h`, `1d`. Raises ConfigError for anything else."""
    age = find_duration(text)
    if age is not None:
        try:
            return iso((now or datetime.now(UTC)) - age)
        except OverflowError:  # further back than datetime reaches: every record is newer
            return iso(datetime.min.replace(tzinfo=UTC))
    try:
        return iso(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither an ISO date/time (2026-11-28T09:30) nor an age "
                          "(30s, 10m, 2h, 1d)") from None


class NetInspector:
    """A read-only view of the net stored in a database file.

    Raises (at construction):
        NotANetrunDatabase: the file does not exist, is not netrun's, or holds no net.
        DatabaseVersionError: written by a newer netrun, or by an older one (resume it once to upgrade).
        CorruptDatabase: the file is damaged.
    """

    def __init__(self, path: str | os.PathLike, *, unpickle: bool = False) -> None:
        self._store = store_for(path)
        self.path = self._store.label  # a PostgreSQL net's URL, without its password
        self.unpickle = unpickle  # show pickled values by unpickling them (runs code from the file)
        if not self._store.exists():
            raise NotANetrunDatabase(f"{self.path} does not exist", path=self.path)
        state = self._store.inspect()
        if not state.exists:
            raise NotANetrunDatabase(f"{self.path} holds no netrun net", path=self.path)
        if state.version < SAME_TABLES_SINCE:
            raise DatabaseVersionError(
                f"{self.path} was written by an older netrun (schema version {state.version}); resume it once "
                "(netrun resume, or Net.resume) to upgrade it, then inspect it", path=self.path, version=state.version)
        self._conn = open_connection(self._store.url, readonly=True)
        self.meta: dict[str, str] = dict(self._conn.execute("SELECT key, value FROM net_meta").fetchall())
        self.graph: ns.Graph = stored_graph(self.path, self.meta)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> NetInspector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside the block sees the file at one moment (one read transaction), even
        while another process commits. Nested blocks share the outer one."""
        if not self._conn.getautocommit():  # inside a transaction already (apsw and the PostgreSQL connection)
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    def _rows(self, sql: str, params: tuple | list = ()) -> list[dict]:
        return rows_as_dicts(self._conn.execute(sql, params))

    def _value(self, sql: str, params: tuple = ()) -> Any:
        row = self._conn.execute(sql, params).fetchone()
        return row[0] if row else None

    # -- the whole net ---------------------------------------------------------------------
    def owner(self) -> Owner | None:
        """The live process running this net, if any."""
        return self._store.find_owner()

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.meta["config"])

    def definition(self) -> str | None:
        """The TOML definition stored when the net was loaded from one."""
        return self.meta.get("definition")

    def definition_meta(self) -> tuple[dict[str, dict], dict[tuple[str, str, str, str], dict]]:
        """Node and edge `meta` tables of the stored definition (empty when there is none)."""
        text = self.definition()
        if text is None:
            return {}, {}
        doc = tomllib.loads(text)
        nodes = self.graph.nodes()
        node_meta = {name: spec["meta"] for name, spec in doc.get("nodes", {}).items() if spec.get("meta")}
        edge_meta = {}
        for entry in doc.get("edges", []):
            if entry.get("meta"):
                sources = split_port_ref(entry["from"], "out", nodes)
                targets = split_port_ref(entry["to"], "in", nodes)
                if sources and targets:
                    edge_meta[(*sources[0], *targets[0])] = entry["meta"]
        return node_meta, edge_meta

    def node_counts(self) -> dict[str, dict[str, int]]:
        """Epochs per node and state (every node of the graph, zeros included), as `Net.poll()` counts
        them: of the `startable` ones, those in a pool's queue are `queued` instead."""
        counts = {name: dict.fromkeys(COUNTS, 0) for name in sorted(self.graph.nodes())}
        # open epochs through the epochs_open index, ended ones from node_counts (kept by triggers)
        for node, state, n in self._conn.execute(
                "SELECT node_name, state, count(*) FROM epochs WHERE state IN ('startable', 'running') GROUP BY 1, 2 "
                "UNION ALL SELECT node_name, state, n FROM node_counts"):
            counts.setdefault(node, dict.fromkeys(COUNTS, 0))[state] = n
        for node, jobs in pool_jobs_by_node(self._conn).items():
            if node in counts:
                queued = min(jobs["queued"], counts[node]["startable"])
                in_hand = min(jobs["in_hand"], counts[node]["running"])  # `running` in the file, not started
                counts[node]["queued"] = queued + in_hand
                counts[node]["startable"] -= queued
                counts[node]["running"] -= in_hand
        return counts

    def waiting(self) -> dict[str, list[dict]]:
        """Live packets by place: on edges, at input ports, inside epochs, not yet admitted."""
        edges = self._rows(
            "SELECT from_node || '.' || from_port AS \"from\", node_name || '.' || port_name AS \"to\", count(*) AS packets "
            "FROM packets WHERE state = 'live' AND location = 'edge' GROUP BY from_node, from_port, node_name, "
            "port_name ORDER BY 1, 2")
        ports = self._rows(
            "SELECT node_name AS node, port_name AS port, count(*) AS packets FROM packets "
            "WHERE state = 'live' AND location = 'input_port' GROUP BY 1, 2 ORDER BY 1, 2")
        inside = self._rows(
            "SELECT node_name AS node, count(*) AS packets FROM packets "
            "WHERE state = 'live' AND location IN ('node', 'output_port') GROUP BY 1 ORDER BY 1")
        inbox = self._rows("SELECT kind, node_name AS node, port_name AS port, count(*) AS items FROM inbox "
                           "GROUP BY 1, 2, 3 ORDER BY 2, 3")
        return {"edges": edges, "input_ports": ports, "inside_epochs": inside, "inbox": inbox}

    def running_epochs(self, *, known: int | None = None) -> list[dict]:
        """Epochs in state `running`: the live run's, or, with no owner, those its process died in;
        with those whose start is only in the intents file so far (see netrun.intents). `known`: how
        many the table holds (from `node_counts()` in the same read transaction): the search stops
        once it has found them, instead of visiting every startable epoch."""
        # the IN term lets SQLite use the partial index epochs_open (`state = 'running'` alone scans the table)
        rows = self._rows("SELECT * FROM (SELECT id AS epoch, node_name AS node, attempt, started_at FROM epochs "
                          "WHERE state = 'running' AND state IN ('startable', 'running') LIMIT ?) AS running "
                          "ORDER BY started_at, epoch", (2**62 if known is None else known,))
        for intent in read_intents(self.path):
            state = self._rows("SELECT state, attempt FROM epochs WHERE id = ?", (intent.epoch_id,))
            if not state or state[0]["state"] == "startable":
                rows.append({"epoch": intent.epoch_id, "node": intent.node_name,
                             "attempt": state[0]["attempt"] if state else 0, "started_at": intent.started_at})
        return sorted(rows, key=lambda r: (r["started_at"] or "", r["epoch"]))

    def status(self, *, recent: int = 5) -> dict[str, Any]:
        """The run's state and what it holds.

        `state`: "running" (a live process owns the net), "interrupted" (epochs were running
        when its process died: a resume applies the crash semantics), "stopped" (work is
        left: a resume continues it), or "finished" (nothing can run).
        """
        owner = self.owner()
        with self.snapshot():  # the running epochs searched for are those counted
            counts = self.node_counts()
            waiting = self.waiting()
            running = self.running_epochs(known=sum(c["running"] for c in counts.values()))
        work_left = any(c["startable"] for c in counts.values()) or bool(waiting["inbox"])
        if owner is not None:
            state = "running"
        elif running:
            state = "interrupted"
        elif work_left:
            state = "stopped"
        else:
            state = "finished"
        failures = self._rows(
            "SELECT epoch_id AS epoch, node_name AS node, attempt, finished_at, error_type, error, traceback "
            "FROM epoch_attempts "
            "WHERE outcome = 'failed' ORDER BY finished_at DESC, epoch_id DESC LIMIT ?", (recent,))
        last_seq, last_at = Decoder(self._conn).last()
        return {
            "path": self.path,
            "state": state,
            "owner": None if owner is None else {"pid": owner.pid, "host": owner.host, "since": owner.since},
            "created_at": self.meta.get("created_at"),
            "netrun_version": self.meta.get("netrun_version"),
            "last_activity": last_at,
            "history_rows": last_seq,
            "nodes": counts,
            "running_epochs": running,
            "waiting": waiting,
            "live_packets": self._value("SELECT count(*) FROM packets WHERE state = 'live'"),
            "dead_letters_pending": self._value("SELECT count(*) FROM dead_letters WHERE status = 'pending'"),
            "recent_failures": failures,
            "workers": self.workers(),
        }

    def workers(self) -> list[dict[str, Any]]:
        """`netrun worker` processes that registered (newest first; a stopped one has `stopped_at`), each
        with the jobs its threads hold now (`jobs`: epoch IDs, claimed and not yet reported)."""
        found = self._rows("SELECT id, host, pid, pools, concurrency, started_at, heartbeat_at, stopped_at "
                           "FROM workers ORDER BY started_at DESC, id LIMIT 100")
        if not found:
            return []
        held: dict[str, list[str]] = {}
        for epoch_id, worker in self._conn.execute("SELECT epoch_id, worker FROM epoch_jobs WHERE state = 'claimed' "
                                                   "AND worker LIKE 'remote:%' ORDER BY seq"):
            held.setdefault(worker.rsplit("/", 1)[0], []).append(epoch_id)
        for row in found:
            row["pools"] = json.loads(row["pools"])
            row["jobs"] = held.get(row["id"], [])
        return found

    def value_preview(self, packet_id: str, *, limit: int = PREVIEW_CHARS) -> str | None:
        """A preview of the packet's stored value: a live one, or a consumed one the net keeps
        (`consumed_packet_storage`); None when no value is stored."""
        rows = self._rows("SELECT kind, data, preview FROM packet_values WHERE packet_id = ?", (packet_id,))
        if not rows:
            return None
        return preview(rows[0]["kind"], rows[0]["data"], rows[0]["preview"], limit, unpickle=self.unpickle)

    def value(self, packet_id: str) -> dict:
        """A packet's whole stored value: a live one, one the net keeps after consumption, or the
        value of its dead letter. `{"packet", "kind", "where", "value", "preview"}`: `value` is the
        value itself for JSON (and, with `unpickle=True`, for a pickle: code from the file runs);
        else None, with the stored preview. Value functions are never called.

        Raises NotFoundError: no stored value for this packet (unknown, or consumed and not kept)."""
        rows = self._rows("SELECT kind, data, preview, 'packet_values' AS place FROM packet_values "
                          "WHERE packet_id = ?", (packet_id,))
        if not rows:
            rows = self._rows("SELECT value_kind AS kind, value AS data, value_preview AS preview, "
                              "'dead_letters' AS place FROM dead_letters WHERE packet_id = ? AND value IS NOT NULL "
                              "ORDER BY seq DESC LIMIT 1", (packet_id,))
        if not rows:
            raise NotFoundError(f"{self.path}: packet {packet_id} has no stored value (unknown, or consumed "
                                "and not kept: consumed_packet_storage keeps consumed values)", packet_id=packet_id)
        row = rows[0]
        out = {"packet": packet_id, "kind": row["kind"], "where": row["place"], "value": None,
               "preview": preview(row["kind"], row["data"], row["preview"], unpickle=self.unpickle)}
        if row["kind"] == JSON or (row["kind"] == PICKLE and self.unpickle):
            try:
                out["value"] = decode(packet_id, row["kind"], row["data"])  # StoredValueUnreadable names the packet
            except RecursionError as exc:
                raise StoredValueUnreadable(f"{self.path}: the value of packet {packet_id} is nested too deeply to "
                                            "read here", packet_id=packet_id) from exc
        return out

    def packets_left(self, *, limit: int = 20) -> list[dict]:
        """Live packets with a preview of their values (what a finished run left in the net)."""
        rows = self._rows(
            "SELECT p.id AS packet, p.location, p.node_name AS node, p.port_name AS port, p.from_node, p.from_port, "
            "v.kind, v.data, v.preview FROM packets p LEFT JOIN packet_values v ON v.packet_id = p.id "
            "WHERE p.state = 'live' ORDER BY p.created_at, p.id LIMIT ?", (limit,))
        for row in rows:
            row["value"] = preview(row.pop("kind"), row.pop("data"), row.pop("preview"), unpickle=self.unpickle)
        return rows

    # -- history, logs, SQL ------------------------------------------------------------------
    def history(self, *, node: str | None = None, epoch: str | None = None, packet: str | None = None,
                kind: str | None = None, since: str | None = None, after_seq: int = 0,
                limit: int | None = None) -> list[dict]:
        """History records, oldest first, filtered. `kind` is "action", "event" or a record name
        (e.g. `PacketMoved`, case-insensitive); `since` a timestamp or age (see `parse_since`).

        Raises NotFoundError for a node the graph does not have, ConfigError for a bad `since`.
        """
        if node is not None:
            self.check_node(node)
        since_text = parse_since(since) if since is not None else None
        if epoch is None and packet is None:
            return self._history_scan(node, kind, since_text, after_seq, limit)
        # an epoch's or a packet's records: key lookups (history_refs), the other filters here
        wanted = kind.lower() if kind is not None else None
        rows = []
        for rec in Decoder(self._conn).mentioning([i for i in (epoch, packet) if i is not None]):
            kind_, name, action_id, epoch_id, packet_id, node_name, timestamp, data, seq = rec
            if (seq <= after_seq or (epoch is not None and epoch_id != epoch)
                    or (packet is not None and packet_id != packet) or (node is not None and node_name != node)
                    or (wanted is not None and wanted not in (kind_, name.lower()))
                    or (since_text is not None and timestamp < since_text)):
                continue
            rows.append({"seq": seq, "type": kind_, "name": name, "action_id": action_id, "epoch_id": epoch_id,
                         "packet_id": packet_id, "node_name": node_name, "timestamp": timestamp,
                         "data": json.loads(data) if data else None})
        return rows[len(rows) - limit:] if limit is not None else rows

    def history_mentioning(self, ids: list[str]) -> list[tuple]:
        """The records of every action that mentions one of `ids` (see historyrows.Decoder)."""
        return Decoder(self._conn).mentioning(ids)

    def _history_scan(self, node: str | None, kind: str | None, since: str | None, after_seq: int,
                      limit: int | None) -> list[dict]:
        where, params = ["seq > ?"], [after_seq]
        if node is not None:
            where.append("node_name = ?")
            params.append(node)
        if kind is not None:
            if kind.lower() in ("action", "event"):
                where.append("type = ?")
                params.append(kind.lower())
            else:
                where.append("lower(name) = lower(?)")
                params.append(kind)
        if since is not None:
            where.append("timestamp >= ?")
            params.append(since)
        sql = f"SELECT * FROM history WHERE {' AND '.join(where)} ORDER BY seq"
        if limit is not None:
            # the newest `limit` records, still printed oldest first
            sql = f"SELECT * FROM ({sql[:-len('ORDER BY seq')]} ORDER BY seq DESC LIMIT ?) AS latest ORDER BY seq"
            params.append(limit)
        rows = self._rows(sql, params)
        for row in rows:
            row["data"] = json.loads(row["data"]) if row["data"] else None
        return rows

    def logs(self, *, node: str | None = None, epoch: str | None = None, after_seq: int = 0,
             limit: int | None = None) -> list[dict]:
        """Captured output lines of node functions, oldest first (the newest `limit` of them)."""
        where, params = ["seq > ?"], [after_seq]
        if node is not None:
            self.check_node(node)
            where.append("node_name = ?")
            params.append(node)
        if epoch is not None:
            where.append("epoch_id = ?")
            params.append(epoch)
        sql = (f"SELECT seq, timestamp, node_name AS node, epoch_id AS epoch, text FROM node_logs "
               f"WHERE {' AND '.join(where)} ORDER BY seq DESC")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return list(reversed(self._rows(sql, params)))

    def search(self, text: str, *, node: str | None = None, epoch: str | None = None,
               limit: int | None = None) -> tuple[list[dict], dict[str, Any]]:
        """Log lines, failed attempts and dead letters holding every word of `text`, oldest first (the
        newest `limit`): (matches, what refreshing the index cost). See `netrun.search`: the index is a
        side file, `<db>-search`; the database is never written."""
        from .search import search_logs  # sqlite-utils takes ~80 ms to import: only a search pays it

        return search_logs(self._rows, self.path, self.meta.get("created_at") or "", text, node=node, epoch=epoch,
                           limit=limit)

    def query(self, sql: str, params: tuple | list | dict = ()) -> list[dict]:
        """Read-only SQL; a statement that would write raises ReadOnlyQueryError."""
        return read_query(self._conn, sql, params)

    def query_rows(self, sql: str, params: tuple | list | dict = ()) -> AbstractContextManager[
            tuple[list[str], Iterator[tuple]]]:
        """`with inspector.query_rows(sql) as (columns, rows):` the rows of `query` as tuples, read as
        they are iterated (on PostgreSQL through a server-side cursor, a batch at a time): a huge result
        never sits whole in memory. The statement is checked before it runs, as by `query`.

        Raises ReadOnlyQueryError (a statement that would write), QueryError (the database refused it)."""
        return guarded_query(self._conn, sql, params)

    def resolve_id(self, text: str, kind: str = "packet") -> str:
        """The full ID of the packet (or `kind="epoch"`) that `text` names: the ID, a prefix or the short
        form tables show (see `netrun.shortids`). Raises NotFoundError: unknown, or ambiguous."""
        return resolve_id(self._rows, kind, text, path=self.path)

    def check_node(self, node: str) -> None:
        if node not in self.graph.nodes():
            raise NotFoundError(f"{self.path}: the net has no node {node!r}; its nodes: "
                                f"{', '.join(sorted(self.graph.nodes()))}", node=node)

    def trace(self, packet_id: str, *, depth: int = 10, limit: int = 200) -> dict:
        """Where a packet came from and where it went (see `netrun.lineage`). Raises NotFoundError."""
        return lineage.trace(self, packet_id, depth=depth, limit=limit)

    # -- dead letters ---------------------------------------------------------------------------
    def dead_letters(self, *, node: str | None = None, include_resolved: bool = False, after_seq: int = 0,
                     limit: int | None = None) -> list[dict]:
        """Dead letters, oldest first, with a value preview (the first `limit` after `after_seq`)."""
        where, params = ["seq > ?"], [after_seq]
        if not include_resolved:
            where.append("status = 'pending'")
        if node is not None:
            self.check_node(node)
            where.append("node_name = ?")
            params.append(node)
        rows = self._rows(
            "SELECT seq, packet_id AS packet, node_name AS node, port_name AS port, epoch_id AS epoch, reason, "
            "status, created_at, resolved_at, replayed_as, value_kind, value, value_preview, error, traceback "
            f"FROM dead_letters WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?",
            (*params, -1 if limit is None else limit))
        for row in rows:
            row["value"] = preview(row.pop("value_kind"), row["value"], row.pop("value_preview"),
                                   unpickle=self.unpickle)
        return rows

    def dead_letter(self, seq: int) -> dict:
        """One dead letter with its full error text and traceback, and a longer value preview.
        Raises NotFoundError."""
        rows = self._rows("SELECT seq, packet_id AS packet, node_name AS node, port_name AS port, epoch_id AS epoch, "
                          "reason, status, created_at, resolved_at, replayed_as, value_kind, value, value_preview, "
                          "error, traceback FROM dead_letters WHERE seq = ?", (seq,))
        if not rows:
            raise NotFoundError(f"{self.path}: no dead letter #{seq}", seq=seq)
        row = rows[0]
        row["value"] = preview(row.pop("value_kind"), row["value"], row.pop("value_preview"), limit=2000,
                               unpickle=self.unpickle)
        return row
