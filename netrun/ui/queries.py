"""What the web page asks of a net's database: read-only, never unpickling, bounded in cost.

Every function takes a `NetInspector` (the file opened read-only) and returns JSON-ready dicts.
Each answer must come within ~200 ms on a run of millions of history records, so:
- key lookups where the schema has keys (an epoch, a packet, its lineage: `history_refs`),
  `node_counts` for the counts;
- lists are pages, newest first, read backwards from a cursor in windows of the primary key
  (IDs are ULIDs, so ID order is creation order), for at most `BUDGET` seconds: a filter that
  matches rarely returns a short page and the cursor to go on from, never a scan of the run;
- values are shown as JSON or as the preview stored with them; a huge one is cut.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from ..errors import ConfigError, NotFoundError
from ..graphio import graph_to_data, node_depths
from ..historyrows import Decoder, expand
from ..inspector import NetInspector, parse_since
from ..readonly import guarded_query
from ..retention import id_bound
from ..values import JSON, PICKLE
from .layout import layout

EPOCH_STATES = ("startable", "running", "finished", "failed", "cancelled")
EPOCH_WINDOW = 20_000  # epochs read per step of a filtered page
HISTORY_WINDOW = 2_000  # history actions (each with its events) read per step of a filtered page
BUDGET = 0.12  # seconds a page may spend looking for matches before it returns what it found
VALUE_CHARS = 100_000  # the most of one value's JSON text a packet page shows
LOG_CHARS = 10_000  # the most of one log line a page shows
SQL_ROWS = 1_000  # rows of a SQL result shown in the page (the CSV download has them all)
SQL_SECONDS = 10.0  # a SQL box query is stopped after this long
PAGE_LIMIT = 500  # the largest page a client may ask for


def _limit(value: int | None, default: int) -> int:
    if value is None:
        return default
    if value < 1 or value > PAGE_LIMIT:
        raise ConfigError(f"limit must be between 1 and {PAGE_LIMIT}, not {value}")
    return value


def _first_line(text: str | None) -> str | None:
    return None if text is None else (text.strip().split("\n")[0] if text.strip() else "")


# -- the net and its live state ---------------------------------------------------------------
def overview(net: NetInspector) -> dict[str, Any]:
    """The graph with its layout and what never changes while the page is open."""
    data = graph_to_data(net.graph)
    return {"path": net.path, "created_at": net.meta.get("created_at"),
            "netrun_version": net.meta.get("netrun_version"), "graph": data,
            "layout": layout(data, node_depths(net.graph)), "has_definition": net.definition() is not None}


def live(net: NetInspector) -> dict[str, Any]:
    """The counts the graph page shows, read in one snapshot (polled about once a second)."""
    with net.snapshot():
        status = net.status(recent=5)
        left = net.packets_left(limit=50) if status["state"] != "running" else []
    waiting = status["waiting"]
    return {
        "state": status["state"], "owner": status["owner"], "last_activity": status["last_activity"],
        "history_rows": status["history_rows"], "live_packets": status["live_packets"],
        "dead_letters_pending": status["dead_letters_pending"], "nodes": status["nodes"],
        "edges": {f"{e['from']}>{e['to']}": e["packets"] for e in waiting["edges"]},
        "ports": {f"{p['node']}.{p['port']}": p["packets"] for p in waiting["input_ports"]},
        "inside": {p["node"]: p["packets"] for p in waiting["inside_epochs"]},
        "inbox": waiting["inbox"],
        "running_epochs": status["running_epochs"][:20], "running_count": len(status["running_epochs"]),
        "recent_failures": [{**{k: f[k] for k in ("epoch", "node", "attempt", "finished_at", "error_type")},
                             "error": _first_line(f["error"])} for f in status["recent_failures"]],
        "packets_left": left,
    }


# -- epochs -------------------------------------------------------------------------------
_EPOCH_COLUMNS = ("id, node_name AS node, state, attempt, salvo_condition, created_at, started_at, finished_at, "
                  "error_type, error")


def epochs_page(net: NetInspector, *, node: str | None = None, state: str | None = None, since: str | None = None,
                until: str | None = None, before: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """Epochs, newest first, filtered by node, state and creation time (`since`/`until`: ISO or an age
    such as 10m). `next` is the cursor for the following page (None: nothing older)."""
    limit = _limit(limit, 50)
    if node is not None:
        net.check_node(node)
    if state is not None and state not in EPOCH_STATES:
        raise ConfigError(f"unknown epoch state {state!r}; states: {', '.join(EPOCH_STATES)}")
    lower = id_bound(datetime.fromisoformat(parse_since(since))) if since else ""
    cursor = before or "~"  # "~" sorts after every ULID
    if until:
        cursor = min(cursor, id_bound(datetime.fromisoformat(parse_since(until))))
    where, params = [], []
    for column, value in (("node_name", node), ("state", state)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows: list[dict] = []
    began = time.monotonic()
    next_cursor: str | None = cursor
    while True:
        edge = net._rows("SELECT id FROM epochs WHERE id < ? AND id >= ? ORDER BY id DESC LIMIT 1 OFFSET ?",
                         (next_cursor, lower, EPOCH_WINDOW - 1))
        floor = edge[0]["id"] if edge else lower
        wanted = limit - len(rows)
        found = net._rows(f"SELECT {_EPOCH_COLUMNS} FROM epochs WHERE id < ? AND id >= ? "
                          f"{''.join(' AND ' + w for w in where)} ORDER BY id DESC LIMIT ?",
                          (next_cursor, floor, *params, wanted))
        rows += found
        if len(found) == wanted:
            next_cursor = found[-1]["id"]
            break
        next_cursor = floor if edge else None
        if next_cursor is None or time.monotonic() - began > BUDGET:
            break
    for row in rows:
        row["error"] = _first_line(row["error"])
    return {"epochs": rows, "next": next_cursor}


def epoch_detail(net: NetInspector, epoch_id: str) -> dict[str, Any]:
    """One epoch: its row, attempts with tracebacks, log lines, input and output packets, history."""
    rows = net._rows(f"SELECT {_EPOCH_COLUMNS}, salvo FROM epochs WHERE id = ?", (epoch_id,))
    if not rows:
        raise NotFoundError(f"{net.path}: no epoch {epoch_id}", epoch=epoch_id)
    epoch = rows[0]
    inputs = [{"port": port, "packet": packet} for port, packet in json.loads(epoch.pop("salvo") or "[]")]
    attempts = net._rows("SELECT attempt, started_at, finished_at, outcome, error_type, error, traceback "
                         "FROM epoch_attempts WHERE epoch_id = ? ORDER BY attempt", (epoch_id,))
    job = net._rows("SELECT pool, worker, state, attempt, enqueued_at, claimed_at, done_at FROM epoch_jobs "
                    "WHERE epoch_id = ?", (epoch_id,))
    history = net.history(epoch=epoch_id)
    outputs = [r["packet_id"] for r in history
               if r["type"] == "action" and r["name"] == "CreatePacket" and r["epoch_id"] == epoch_id]
    return {"epoch": epoch, "inputs": inputs, "outputs": outputs, "attempts": attempts,
            "job": job[0] if job else None, "logs": logs_page(net, epoch=epoch_id, limit=PAGE_LIMIT)["lines"][::-1],
            "history": history[-300:], "history_total": len(history)}


# -- packets and their lineage ------------------------------------------------------------------
def packet_value(net: NetInspector, packet_id: str) -> dict[str, Any]:
    """The packet's stored value as the page shows it: JSON (cut past `VALUE_CHARS`), else the preview
    stored with it (a pickle is never loaded here). `stored` is False when none is kept."""
    for sql in ("SELECT kind, substr(data, 1, ?) AS head, length(data) AS size, preview, 'packet' AS place "
                "FROM packet_values WHERE packet_id = ?",
                "SELECT value_kind AS kind, substr(value, 1, ?) AS head, length(value) AS size, "
                "value_preview AS preview, 'dead letter' AS place FROM dead_letters "
                "WHERE packet_id = ? AND value IS NOT NULL ORDER BY seq DESC LIMIT 1"):
        rows = net._rows(sql, (VALUE_CHARS, packet_id))
        if rows:
            break
    else:
        return {"stored": False}
    row = rows[0]
    out = {"stored": True, "kind": row["kind"], "where": row["place"], "size": row["size"], "preview": row["preview"],
           "text": None, "cut": False}
    if row["kind"] == JSON and isinstance(row["head"], str):
        if row["size"] > VALUE_CHARS:
            out.update(text=row["head"], cut=True)
        else:
            try:
                out["text"] = json.dumps(json.loads(row["head"]), indent=2, ensure_ascii=False)
            except (ValueError, RecursionError):  # damaged or very deep: its text as stored
                out["text"] = row["head"]
    elif row["kind"] == PICKLE:
        out["note"] = "a pickled value: shown by the preview stored with it (this page never unpickles)"
    else:
        out["note"] = "a value function: never called to be shown"
    return out


def packet_detail(net: NetInspector, packet_id: str, *, depth: int = 10) -> dict[str, Any]:
    """A packet: its value, where it came from and went, its path, and its lineage as a graph."""
    if depth < 0 or depth > 50:
        raise ConfigError(f"depth must be between 0 and 50, not {depth}")
    lineage = net.trace(packet_id, depth=depth)
    lineage.pop("value")
    return {**lineage, "value": packet_value(net, packet_id), "graph": lineage_graph(lineage)}


def lineage_graph(lineage: dict[str, Any]) -> dict[str, Any]:
    """The lineage as nodes (packets, with their depth: ancestors below 0) and edges parent -> child."""
    root = lineage["packet"]
    nodes = [{"packet": root, "depth": 0, "origin": lineage["origin"], "end": lineage["end"]}]
    nodes += [{k: e[k] for k in ("packet", "depth", "origin", "end")} for e in lineage["ancestors"]]
    nodes += [{k: e[k] for k in ("packet", "depth", "origin", "end")} for e in lineage["descendants"]]
    ends = {n["packet"]: n["end"] or {} for n in nodes}
    edges = [[a["packet"], a["child"]] for a in lineage["ancestors"]]
    for d in lineage["descendants"]:
        child = d["packet"]
        if d["parent_epoch"] is not None:  # made by an epoch: its parents are what that epoch consumed
            edges += [[p, child] for p, end in ends.items()
                      if end.get("epoch") == d["parent_epoch"] and end.get("state") != "live" and p != child]
        else:  # a replay of a dead letter
            edges += [[p, child] for p, end in ends.items()
                      if (end.get("dead_letter") or {}).get("replayed_as") == child]
    return {"nodes": nodes, "edges": edges}


# -- history and logs ---------------------------------------------------------------------------
def _record(rec: tuple) -> dict[str, Any]:
    kind, name, action_id, epoch_id, packet_id, node_name, timestamp, data, seq = rec
    return {"seq": seq, "type": kind, "name": name, "action_id": action_id, "epoch_id": epoch_id,
            "packet_id": packet_id, "node_name": node_name, "timestamp": timestamp,
            "data": json.loads(data) if data else None}


def history_page(net: NetInspector, *, node: str | None = None, epoch: str | None = None, packet: str | None = None,
                 kind: str | None = None, since: str | None = None, before: int | None = None,
                 limit: int | None = None) -> dict[str, Any]:
    """History records, newest first, filtered as `netrun history`; `next` is the seq to go on from."""
    limit = _limit(limit, 100)
    if node is not None:
        net.check_node(node)
    since_text = parse_since(since) if since is not None else None
    if epoch is not None or packet is not None:  # key lookups: every record of the epoch or packet
        found = [r for r in reversed(net.history(node=node, epoch=epoch, packet=packet, kind=kind, since=since))
                 if before is None or r["seq"] < before]
        return {"records": found[:limit], "next": found[limit - 1]["seq"] if len(found) > limit else None}
    wanted = kind.lower() if kind is not None else None
    decoder = Decoder(net._conn)
    last, _ = decoder.last()
    first_row = net._rows("SELECT min(seq) AS seq FROM history_actions")[0]["seq"]
    legacy = bool(net._rows("SELECT 1 FROM history_legacy LIMIT 1"))
    top = min(before, last + 1) if before is not None else last + 1
    out: list[dict] = []
    began = time.monotonic()
    while top is not None and len(out) < limit:
        if first_row is None or top <= first_row:  # history written before the compact rows (version 10)
            out += _legacy_page(net, node, wanted, since_text, top, limit - len(out))
            top = out[-1]["seq"] if len(out) == limit else None
            break
        # the window's lowest action starts the window: no action is cut in two between windows
        edge = net._rows("SELECT seq FROM history_actions WHERE seq < ? ORDER BY seq DESC LIMIT 1 OFFSET ?",
                         (top, HISTORY_WINDOW - 1))
        bottom = edge[0]["seq"] if edge else 0
        actions = decoder.actions("seq < ? AND seq >= ?", (top, bottom))
        records = [rec for action in actions for rec in expand(action) if rec[8] < top]
        older = False
        for rec in reversed(records):
            if since_text is not None and rec[6] < since_text:
                older = True
                break
            if (node is None or rec[5] == node) and (wanted is None or wanted in (rec[0], rec[1].lower())):
                out.append(_record(rec))
                if len(out) == limit:
                    break
        if older:
            top = None
        elif len(out) == limit:
            top = out[-1]["seq"]
        else:
            top = bottom if edge else (first_row if legacy else None)  # below the compact rows: the legacy ones
            if top is not None and time.monotonic() - began > BUDGET:
                break
    return {"records": out, "next": top}


def _legacy_page(net: NetInspector, node: str | None, kind: str | None, since: str | None, top: int,
                 limit: int) -> list[dict]:
    where, params = ["seq < ?"], [top]
    if node is not None:
        where.append("node_name = ?")
        params.append(node)
    if kind in ("action", "event"):
        where.append("type = ?")
        params.append(kind)
    elif kind is not None:
        where.append("lower(name) = ?")
        params.append(kind)
    if since is not None:
        where.append("timestamp >= ?")
        params.append(since)
    rows = net._rows(f"SELECT type, name, action_id, epoch_id, packet_id, node_name, timestamp, data, seq "
                     f"FROM history_legacy WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", (*params, limit))
    return [_record(tuple(row.values())) for row in rows]


def logs_page(net: NetInspector, *, node: str | None = None, epoch: str | None = None, before: int | None = None,
              limit: int | None = None) -> dict[str, Any]:
    """Log lines of node functions, newest first (index lookups by node or epoch)."""
    limit = _limit(limit, 200)
    if node is not None:
        net.check_node(node)
    where, params = ["seq < ?"], [before if before is not None else 2 ** 62]
    for column, value in (("node_name", node), ("epoch_id", epoch)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    rows = net._rows(f"SELECT seq, timestamp, node_name AS node, epoch_id AS epoch, "
                     f"substr(text, 1, {LOG_CHARS}) AS text FROM node_logs "
                     f"WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?", (*params, limit + 1))
    return {"lines": rows[:limit], "next": rows[limit - 1]["seq"] if len(rows) > limit else None}


# -- dead letters ---------------------------------------------------------------------------
def dead_letters_page(net: NetInspector, *, node: str | None = None, include_resolved: bool = False,
                      after: int | None = None, limit: int | None = None) -> dict[str, Any]:
    """Dead letters, oldest first, with the first line of each error and a value preview."""
    limit = _limit(limit, 200)
    rows = net.dead_letters(node=node, include_resolved=include_resolved, after_seq=after or 0, limit=limit + 1)
    for row in rows:
        row["error"] = _first_line(row["error"])
        row["replayable"] = row["port"] is not None and row["value"] is not None
        del row["traceback"]
    return {"dead_letters": rows[:limit], "next": rows[limit - 1]["seq"] if len(rows) > limit else None}


def dead_letter_detail(net: NetInspector, seq: int) -> dict[str, Any]:
    """One dead letter with its whole error and traceback (its value: as the packet page shows it)."""
    row = net.dead_letter(seq)
    row["value"] = packet_value(net, row["packet"]) if row["packet"] else {"stored": False}
    return row


# -- SQL and IDs -----------------------------------------------------------------------------
def _cell(value: Any) -> Any:
    if isinstance(value, bytes):
        return f"<BLOB, {len(value):,} bytes>"
    if isinstance(value, str) and len(value) > 10_000:
        return value[:10_000] + f"... ({len(value):,} characters)"
    return value


def sql_rows(net: NetInspector, statement: str, *, limit: int | None = None) -> dict[str, Any]:
    """One read-only statement (the guards of `netrun sql`): its columns and first `limit` rows
    (`SQL_ROWS`); it is stopped after `SQL_SECONDS`."""
    limit = SQL_ROWS if limit is None else limit
    with guarded_query(net._conn, statement, seconds=SQL_SECONDS) as (columns, rows):
        shown = []
        for row in rows:
            if len(shown) == limit:
                return {"columns": columns, "rows": shown, "truncated": True}
            shown.append([_cell(v) for v in row])
    return {"columns": columns, "rows": shown, "truncated": False}


def find(net: NetInspector, text: str, kind: str | None = None) -> dict[str, str]:
    """The packet or epoch (or only `kind`) that `text` names (a full ID, a prefix, or the short form
    tables show). Raises NotFoundError naming `text`."""
    if kind not in (None, "packet", "epoch"):
        raise ConfigError(f"kind must be packet or epoch, not {kind!r}")
    errors = []
    for kind in [kind] if kind else ["packet", "epoch"]:
        try:
            return {"kind": kind, "id": net.resolve_id(text, kind)}
        except NotFoundError as exc:
            errors.append(str(exc))
    raise NotFoundError(" / ".join(errors), text=text)
