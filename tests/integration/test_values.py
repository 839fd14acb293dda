"""Values readable outside Python: JSON when JSON carries the value exactly, a pickle otherwise,
each with a preview; every value comes back as it went in, type included."""

from __future__ import annotations

import collections
import sqlite3
from contextlib import closing
from fractions import Fraction

import pytest

import netrun
from netrun.graphs import chain
from netrun.values import PREVIEW_CHARS, encode

from .helpers import collect, rows


class Point:
    def __init__(self, x: int) -> None:
        self.x = x

    def __eq__(self, other: object) -> bool:
        return type(other) is Point and other.x == self.x


class LoudRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


class Text(str):
    pass


class Mapping(dict):
    pass


# (value, the kind it is stored as)
CASES = [
    (None, "json"), (True, "json"), (False, "json"), (0, "json"), (-7, "json"), (2**80, "json"),
    (1.0, "json"), (-0.0, "json"), (0.1, "json"), (1e308, "json"), ("", "json"), ("héllo ✓ 日本", "json"),
    ([], "json"), ({}, "json"), ([1, [2, [3, {"a": None}]]], "json"), ({"city": "Lyon", "n": [1, 2.5]}, "json"),
    ({"b": 1, "a": 2}, "json"),  # key order kept
    ((1, 2), "pickle"), ([1, (2, 3)], "pickle"), ({1: "a"}, "pickle"), ({"a": {2: 3}}, "pickle"),
    (b"bytes", "pickle"), (float("inf"), "pickle"), (float("nan"), "pickle"), ({"x": float("-inf")}, "pickle"),
    (Text("sub"), "pickle"), (Mapping(a=1), "pickle"), (collections.OrderedDict(a=1), "pickle"),
    ({1, 2}, "pickle"), (Fraction(1, 3), "pickle"), (Point(3), "pickle"), (10**5000, "pickle"),
    ("\ud800", "pickle"),  # a lone surrogate cannot be stored as UTF-8 text
]


def same(a, b) -> bool:
    """Equal and of the same types, all the way down (nan equals nan)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:
        return b != b
    if isinstance(a, float):
        return a == b and str(a) == str(b)  # -0.0 is not 0.0
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


def test_every_value_comes_back_exactly_from_the_file_and_json_ones_are_stored_as_json(tmp_path):
    db = str(tmp_path / "v.db")
    ids = []
    with netrun.Net(chain("Src", "Sink"), db=db) as net:
        for value, _kind in CASES:
            ids.append(net.inject_packet("Sink", "in", value))
    stored = {r["packet_id"]: r for r in rows(db, "SELECT packet_id, kind, preview FROM packet_values")}
    for packet_id, (value, kind) in zip(ids, CASES):
        assert stored[packet_id]["kind"] == kind, value
        assert stored[packet_id]["preview"] is not None and len(stored[packet_id]["preview"]) <= PREVIEW_CHARS
    with netrun.Net.resume(db) as net:  # read back from the file, not from memory
        for packet_id, (value, _kind) in zip(ids, CASES):
            assert same(net.get_packet_value(packet_id), value), value
        got: list = []
        net.set_node_exec("Sink", collect(got))
        net.start()
    assert len(got) == len(CASES) and all(any(same(g, v) for g in got) for v, _ in CASES)


def test_json_values_are_readable_with_plain_sql(tmp_path):
    db = str(tmp_path / "v.db")
    with netrun.Net(chain("Src", "Sink"), db=db) as net:
        packet = net.inject_packet("Sink", "in", {"city": "Lyon", "tags": ["a", "b"]})
    with closing(sqlite3.connect(db)) as conn:  # another SQLite build, no netrun
        assert conn.execute("SELECT json_extract(data, '$.city'), json_extract(data, '$.tags[1]'), typeof(data) "
                            "FROM packet_values WHERE packet_id = ?", (packet,)).fetchall() == [("Lyon", "b", "text")]


def test_previews_are_short_and_a_repr_that_raises_is_named():
    long = encode("x" * 10_000)
    assert long.kind == "json" and len(long.data) == 10_002 and len(long.preview) == PREVIEW_CHARS
    assert long.preview.endswith("...")
    assert encode(LoudRepr()).preview.startswith("<LoudRepr instance at ")  # reprlib names it
    assert encode(list(range(1000))).preview.startswith("[0,1,2,")
    assert len(encode(tuple(range(100_000))).preview) <= PREVIEW_CHARS  # reprlib: bounded work


def test_dead_letters_keep_the_format_and_preview_of_the_value(tmp_path):
    db = str(tmp_path / "v.db")

    def boom(ctx, packets):
        ctx.consume_packet(packets["in"][0])
        raise KeyError("missing")

    with netrun.Net(chain("Src", "Sink"), db=db, on_error="continue") as net:
        net.set_node_exec("Sink", boom)
        net.inject_packet("Sink", "in", {"city": "Oslo"})
        net.inject_packet("Sink", "in", ("a", "tuple"))
        net.start()
        letters = net.dead_letter_queue.get_all()
        assert sorted((d.value_kind, d.value_preview) for d in letters) == [
            ("json", '{"city":"Oslo"}'), ("pickle", "('a', 'tuple')")]
        assert sorted(map(repr, (d.value for d in letters))) == sorted(map(repr, [{"city": "Oslo"}, ("a", "tuple")]))
    assert rows(db, "SELECT json_extract(value, '$.city') AS city FROM dead_letters WHERE value_kind = 'json'") == [
        {"city": "Oslo"}]


def test_a_tampered_stored_value_fails_only_the_epoch_that_consumes_it(tmp_path):
    db = str(tmp_path / "v.db")
    with netrun.Net(chain("Src", "Sink"), db=db) as net:
        bad = net.inject_packet("Sink", "in", (1, 2))
        good = [net.inject_packet("Sink", "in", (n, n)) for n in range(3)]
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE packet_values SET data = x'80059500' WHERE packet_id = ?", (bad,))  # a broken pickle
        conn.commit()
    got: list = []
    with netrun.Net.resume(db, on_error="continue") as net:
        net.set_node_exec("Sink", collect(got))
        with pytest.raises(netrun.StoredValueUnreadable, match=bad):
            net.get_packet_value(bad)
        net.start()
        [letter] = net.dead_letter_queue.get_all()
    assert sorted(got) == [(n, n) for n in range(3)] and len(good) == 3
    assert letter.packet_id == bad and "StoredValueUnreadable" in letter.error and bad in letter.error


def test_a_100_mb_value_goes_through_and_its_preview_stays_short(tmp_path):
    db = str(tmp_path / "big.db")
    big = b"x" * 100_000_000
    got: list = []
    with netrun.Net(chain("Src", "Work", "Sink"), db=db) as net:
        net.set_node_exec("Work", lambda ctx, packets: (
            ctx.load_output_port("out", ctx.create_packet(len(ctx.consume_packet(packets["in"][0])))),
            ctx.send_output_salvo("send_out")))
        net.set_node_exec("Sink", collect(got))
        packet = net.inject_packet("Work", "in", big)
        [row] = rows(db, "SELECT kind, length(data) AS n, length(preview) AS p FROM packet_values WHERE packet_id = ?",
                     (packet,))
        assert row["kind"] == "pickle" and row["n"] > 100_000_000 and row["p"] <= PREVIEW_CHARS
        net.start()
    assert got == [100_000_000]


def test_a_value_larger_than_the_database_takes_is_refused_naming_the_call(tmp_path):
    import apsw

    db = str(tmp_path / "limit.db")
    with netrun.Net(chain("Src", "Sink"), db=db) as net:
        kept = net.inject_packet("Sink", "in", "small")
        net._rt.journal.conn.limit(apsw.SQLITE_LIMIT_LENGTH, 1_000_000)  # SQLite's cap on one value, lowered
        net._rt.values._max_bytes = 1_000_000
        with pytest.raises(netrun.UnpicklableValue, match=r"inject_packet\('Sink', 'in'\): a value of 2,000,0\d\d bytes"):
            net.inject_packet("Sink", "in", b"y" * 2_000_000)
        assert net.get_packet_value(kept) == "small"  # what was stored is untouched
    assert rows(db, "SELECT count(*) AS n FROM packet_values") == [{"n": 1}]


def test_json_values_are_stored_as_json_dumps_writes_them():
    """The JSON text of a value is made by json's C encoder, made once: the same text as
    json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")), and the same
    values fall back to a pickle (NaN, an int past the str limit, a lone surrogate)."""
    import json as json_module

    from netrun.values import PICKLE, encode

    for value in ["é\u2028\"x\\", {"a": [1, 2.5, None, True, {"b": []}]}, 1e308, -0.0, 2**64, "", [[[[]]]]]:
        stored = encode(value)
        assert stored.kind == "json"
        assert stored.data == json_module.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        assert json_module.loads(stored.data) == value
    for value in [float("nan"), [float("inf")], 10**5000, "\ud800", (1, 2), {1: "a"}]:
        assert encode(value).kind == PICKLE
