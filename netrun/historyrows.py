"""History rows: one per action, its events inside, strings and IDs as integer codes.

The journal records an action as an `Action` tuple (IDs and names as text). At commit the
`Encoder` turns the batch into three JSON documents that SQLite unpacks itself (three statements
per commit however many actions): the action rows, the new ID numbers and the references that
make `history --packet/--epoch` and `trace` key lookups. New words (node, port and record names)
are rare and inserted one by one. `expand` turns an `Action` back into the contract's records;
`Decoder` reads stored rows back as `Action`s. The layout is described in
migrations/0010_compact_history.sql, whose `history` view reads the same rows in SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import apsw

from . import dialect
from .jsontext import compact as compact_json

# Action = (seq, name, epoch_id, packet_id, node_name, timestamp, ts_us, data_json, events)
# event  = (kind, epoch_id, packet_id, node_name, extra): extra is None, a salvo condition (str),
#          or where a PacketMoved event went: (location kind, node, port).
Action = tuple
# Record = (type, name, action_id, epoch_id, packet_id, node_name, timestamp, data_json, seq)
Record = tuple

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ID_CACHE = 100_000  # ID numbers kept in memory; older ones are looked up again when needed

_INSERT_ACTIONS = "INSERT INTO history_actions (seq, name, epoch, packet, node, ts, data, events) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
# New IDs are numbered consecutively: one JSON array of them, numbered from the first.
_INSERT_IDS = dialect.register(
    "INSERT INTO history_ids (n, id) SELECT ?1 + key, value FROM json_each(?2)",
    "INSERT INTO history_ids (n, id) SELECT ?1 + e.ord - 1, e.value "
    "FROM json_array_elements_text(?2::json) WITH ORDINALITY AS e(value, ord)")
# A reference (n, seq) travels as one integer, (seq - first seq of the batch) << 40 | n, unpacked by
# SQLite (a batch spans far fewer than 2**23 records; IDs are numbered below 2**40).
_INSERT_REFS = dialect.register(
    "INSERT INTO history_refs (ref, seq) SELECT value & 1099511627775, ?1 + (value >> 40) FROM json_each(?2)",
    "INSERT INTO history_refs (ref, seq) SELECT e.value::bigint & 1099511627775, ?1 + (e.value::bigint >> 40) "
    "FROM json_array_elements_text(?2::json) AS e(value)")
_MOVED_JSON: dict[tuple, str] = {}
_SALVO_JSON: dict[str, str] = {}


def micros(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def iso_of(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat(timespec="microseconds")


def next_seq(conn: apsw.Connection) -> int:
    """The seq the next record takes (records are numbered from 1, across both layouts)."""
    last = conn.execute("SELECT seq + coalesce(json_array_length(events), 0) FROM history_actions "
                        "ORDER BY seq DESC LIMIT 1").fetchone()
    if last is not None:
        return last[0] + 1
    legacy = conn.execute("SELECT max(seq) FROM history_legacy").fetchone()[0]
    return (legacy or 0) + 1


def _event_data(kind: str, extra: Any) -> str | None:
    if extra is None:
        return None
    if kind == "PacketMoved":
        text = _MOVED_JSON.get(extra)
        if text is None:
            text = _MOVED_JSON[extra] = json.dumps({"to": extra[0], "node": extra[1], "port": extra[2]})
        return text
    text = _SALVO_JSON.get(extra)
    if text is None:
        text = _SALVO_JSON[extra] = json.dumps({"salvo_condition": extra})
    return text


def _created(events: list[tuple]) -> set[str]:
    """The epochs and packets an action's events create."""
    return {epoch if kind == "EpochCreated" else packet for kind, epoch, packet, _node, _extra in events
            if kind == "EpochCreated" or kind == "PacketCreated"}


def expand(action: Action) -> list[Record]:
    """The action's record and its events' records, as the `history` view shows them."""
    seq, name, epoch_id, packet_id, node_name, timestamp, _us, data, events = action
    action_id = str(seq)
    out = [("action", name, action_id, epoch_id, packet_id, node_name, timestamp, data, seq)]
    for i, (kind, ev_epoch, ev_packet, ev_node, extra) in enumerate(events):
        out.append(("event", kind, action_id, ev_epoch, ev_packet, ev_node or node_name, timestamp,
                    _event_data(kind, extra), seq + 1 + i))
    return out


def size(action: Action) -> int:
    """How many records the action is."""
    return 1 + len(action[8])


class Encoder:
    """Word codes and ID numbers of one database, for the owner's writes."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.words: dict[str, int] = dict(conn.execute("SELECT word, code FROM history_words"))
        self.ids: dict[str, int] = {}
        self.next_n = (conn.execute("SELECT max(n) FROM history_ids").fetchone()[0] or 0) + 1
        self._new_words: list[str] = []
        self._new_ids: list[str] = []
        self._shapes: dict[tuple, tuple] = {}

    def _word(self, word: str | None) -> int | None:
        if word is None:
            return None
        code = self.words.get(word)
        if code is None:
            code = self.words[word] = len(self.words) + 1
            self._new_words.append(word)
            self.conn.execute("INSERT INTO history_words (code, word) VALUES (?, ?)", (code, word))
        return code

    def _number(self, id_: str, new_ids: list) -> int:
        n = self.ids.get(id_)
        if n is None:
            row = self.conn.execute("SELECT n FROM history_ids WHERE id = ?", (id_,)).fetchone()
            if row is not None:
                n = self.ids[id_] = row[0]
            else:
                n = self._create(id_, new_ids)
        return n

    def _first_seen(self, id_: str, creating: bool, events: list, created: list, new_ids: list) -> int:
        """The number of an ID this write meets for the first time: what the action creates (`creating`: this
        event does; else one of its events, collected once per action in `created[0]`) is new, numbered
        without a lookup."""
        if not creating:
            if created[0] is None:
                created[0] = _created(events)
            creating = id_ in created[0]
        return self._create(id_, new_ids) if creating else self._number(id_, new_ids)

    def _create(self, id_: str, new_ids: list) -> int:
        n = self.ids[id_] = self.next_n
        self.next_n += 1
        self._new_ids.append(id_)
        new_ids.append((n, id_))
        return n

    def _shape(self, kind: str, node: str | None, extra: Any) -> tuple:
        """An event's word codes (kind, node, where it went or its salvo condition), cached: the same
        few shapes recur constantly."""
        key = (kind, node, extra)
        shape = self._shapes.get(key)
        if shape is None:
            word = self._word
            if extra is None:
                tail: tuple = ()
            elif kind == "PacketMoved":
                tail = (word(extra[0]), word(extra[1]), word(extra[2]))
            else:
                tail = (word(extra),)
            shape = (word(kind), word(node), tail)
            if not self._new_words:  # a shape made of words not yet committed is not kept
                self._shapes[key] = shape
        return shape

    def write(self, actions: Iterable[Action]) -> None:
        """Insert the actions (inside the caller's transaction): three statements however many."""
        rows: list[tuple] = []
        new_ids: list[tuple[int, str]] = []
        refs: list[int] = []
        ids, shapes, words = self.ids, self._shapes, self.words
        shape_of, word, number, first_seen = self._shape, self._word, self._number, self._first_seen
        as_json = compact_json
        base = -1
        for seq, name, epoch_id, packet_id, node_name, _ts, us, data, events in actions:
            if base < 0:
                base = seq
            mentioned: set[int] = set()
            encoded = []
            created: list = [None]  # what the action creates (see _first_seen), read once when needed
            for kind, ev_epoch, ev_packet, ev_node, extra in events:
                shape = shapes.get((kind, ev_node, extra)) or shape_of(kind, ev_node, extra)
                e_n = p_n = None
                if ev_epoch is not None:
                    e_n = ids.get(ev_epoch)
                    if e_n is None:
                        e_n = first_seen(ev_epoch, kind == "EpochCreated", events, created, new_ids)
                    mentioned.add(e_n)
                if ev_packet is not None:
                    p_n = ids.get(ev_packet)
                    if p_n is None:
                        p_n = first_seen(ev_packet, kind == "PacketCreated", events, created, new_ids)
                    mentioned.add(p_n)
                kcode, ncode, tail = shape
                if tail:
                    encoded.append([kcode, e_n, p_n, ncode, *tail])
                elif ncode is not None:
                    encoded.append([kcode, e_n, p_n, ncode])
                elif p_n is not None:
                    encoded.append([kcode, e_n, p_n])
                elif e_n is not None:
                    encoded.append([kcode, e_n])
                else:
                    encoded.append([kcode])
            epoch_n = packet_n = None
            if epoch_id is not None:
                epoch_n = ids.get(epoch_id) or number(epoch_id, new_ids)
                mentioned.add(epoch_n)
            if packet_id is not None:
                packet_n = ids.get(packet_id) or number(packet_id, new_ids)
                mentioned.add(packet_n)
            offset = (seq - base) << 40
            refs.extend([offset | n for n in mentioned])
            rows.append((seq, words.get(name) or word(name), epoch_n, packet_n,
                         None if node_name is None else words.get(node_name) or word(node_name), us, data,
                         as_json(encoded) if encoded else None))
        conn = self.conn
        if new_ids:
            conn.execute(_INSERT_IDS, (new_ids[0][0], as_json([id_ for _, id_ in new_ids])))
        if rows:
            conn.executemany(_INSERT_ACTIONS, rows)
        if refs:
            conn.execute(_INSERT_REFS, (base, as_json(refs)))

    def committed(self) -> None:
        """The last `write` is durable: its new words and IDs are known for good."""
        self._new_words.clear()
        self._new_ids.clear()
        if len(self.ids) > ID_CACHE:
            for id_ in list(self.ids)[:len(self.ids) - ID_CACHE // 2]:
                del self.ids[id_]

    def rolled_back(self) -> None:
        """The last `write` was rolled back: forget what it numbered (it will be numbered again)."""
        for word in self._new_words:
            del self.words[word]
        for id_ in self._new_ids:
            self.ids.pop(id_, None)
        self.next_n -= len(self._new_ids)
        self._new_words.clear()
        self._new_ids.clear()


class Decoder:
    """Reads stored actions back (for readers: the inspector, the JSONL catch-up)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.words: dict[int, str] = dict(conn.execute("SELECT code, word FROM history_words").fetchall())

    def _ids(self, numbers: set[int]) -> dict[int, str]:
        found: dict[int, str] = {}
        todo = sorted(n for n in numbers if n is not None)
        for i in range(0, len(todo), 500):
            chunk = todo[i:i + 500]
            found.update(self.conn.execute(
                f"SELECT n, id FROM history_ids WHERE n IN ({', '.join('?' * len(chunk))})", chunk).fetchall())
        return found

    def actions(self, where: str, params: Iterable[Any] = (), *, limit: int = -1) -> list[Action]:
        """Stored actions matching `where` (SQL over history_actions), in seq order, `limit` at most."""
        rows = self.conn.execute(f"SELECT seq, name, epoch, packet, node, ts, data, events FROM history_actions "
                                 f"WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)).fetchall()
        parsed = [(row, json.loads(row[7]) if row[7] else []) for row in rows]
        numbers: set[int] = set()
        for row, events in parsed:
            numbers.update((row[2], row[3]))
            for ev in events:
                numbers.update(ev[1:3])
        ids = self._ids(numbers)
        words = self.words
        if any(code not in words for row, events in parsed for code in (row[1], row[4]) if code is not None):
            self.words = words = dict(self.conn.execute("SELECT code, word FROM history_words").fetchall())
        out = []
        for (seq, name, epoch, packet, node, us, data, _), events in parsed:
            decoded = []
            for ev in events:
                ev = ev + [None] * (7 - len(ev))
                kind = words.get(ev[0])
                if kind == "PacketMoved":
                    extra: Any = (words.get(ev[4]), words.get(ev[5]), words.get(ev[6]))
                else:
                    extra = words.get(ev[4])
                decoded.append((kind, ids.get(ev[1]), ids.get(ev[2]), words.get(ev[3]), extra))
            out.append((seq, words.get(name), ids.get(epoch), ids.get(packet), words.get(node), iso_of(us), us,
                        data, decoded))
        return out

    def number(self, id_: str) -> int | None:
        row = self.conn.execute("SELECT n FROM history_ids WHERE id = ?", (id_,)).fetchone()
        return None if row is None else row[0]

    def mentioning(self, ids: list[str]) -> list[Record]:
        """Every record of the actions that mention one of `ids` (epochs or packets) anywhere, in seq
        order: key lookups through history_refs (plus a scan of rows from before version 10)."""
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        seqs = [row[0] for row in self.conn.execute(
            f"SELECT DISTINCT r.seq FROM history_ids i JOIN history_refs r ON r.ref = i.n WHERE i.id IN ({marks})",
            ids).fetchall()]
        found = []
        for i in range(0, len(seqs), 500):
            chunk = seqs[i:i + 500]
            found += self.actions(f"seq IN ({', '.join('?' * len(chunk))})", chunk)
        found.sort(key=lambda action: action[0])
        out = [rec for action in found for rec in expand(action)]
        if self.conn.execute("SELECT 1 FROM history_legacy LIMIT 1").fetchone():
            legacy = self.conn.execute(
                f"SELECT type, name, action_id, epoch_id, packet_id, node_name, timestamp, data, seq FROM history_legacy "
                f"WHERE epoch_id IN ({marks}) OR packet_id IN ({marks}) ORDER BY seq", [*ids, *ids]).fetchall()
            out = [tuple(row) for row in legacy] + out
        return out

    def last(self) -> tuple[int, str | None]:
        """The seq and timestamp of the last record (0, None for none)."""
        row = self.conn.execute("SELECT seq + coalesce(json_array_length(events), 0), ts FROM history_actions "
                                "ORDER BY seq DESC LIMIT 1").fetchone()
        if row is not None:
            return row[0], iso_of(row[1])
        row = self.conn.execute("SELECT seq, timestamp FROM history_legacy ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, None)
