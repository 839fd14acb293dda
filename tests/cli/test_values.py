"""Reads never run stored code: a pickle planted in a database file is shown as its preview by
every read command, and runs only when the user asks with --unpickle. `netrun value` prints one
whole value."""

from __future__ import annotations

import pathlib
import pickle
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import netrun
from netrun.graphs import chain

from .conftest import Cli, rows


class Planted:
    """Unpickled, it creates the file `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _boom(ctx, packets):
    ctx.consume_packet(packets["in"][0])
    raise KeyError("missing")


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A finished net with a live JSON value, a live pickled value and a dead letter, whose stored
    pickles are then replaced by one that creates `marker` when unpickled."""
    db, marker = tmp_path / "evil.db", tmp_path / "marker"
    with netrun.Net(chain("Src", "Work", "Sink"), db=str(db), on_error="continue") as net:
        ids = {"json": net.inject_packet("Sink", "in", {"city": "Lyon"}),
               "pickle": net.inject_packet("Sink", "in", ("a", "tuple")),
               "lettered": net.inject_packet("Work", "in", ("x", 1))}
        net.set_node_exec("Work", _boom)
        net.run_step()
    evil = pickle.dumps(Planted(marker))
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE packet_values SET data = ? WHERE kind = 'pickle'", (evil,))
        conn.execute("UPDATE dead_letters SET value = ?", (evil,))
        conn.commit()
    return db, marker, ids


READS = [["status"], ["status", "--json"], ["dlq", "{db}", "list"], ["dlq", "{db}", "list", "--json"],
         ["dlq", "{db}", "show", "1"], ["trace", "{packet}"], ["trace", "{packet}", "--json"], ["history"],
         ["logs"], ["sql", "SELECT * FROM packet_values"], ["sql", "SELECT * FROM dead_letters"], ["graph"],
         ["value", "{packet}"], ["value", "{lettered}"]]


@pytest.mark.parametrize("argv", READS, ids=" ".join)
def test_no_read_command_unpickles_a_planted_value(cli: Cli, planted, argv):
    db, marker, ids = planted
    args = [a.format(db=db, packet=ids["pickle"], lettered=ids["lettered"]) for a in argv]
    if args[0] != "dlq":
        args.insert(1, str(db))
    result = cli(*args)
    assert result.code in (0, 1), result.err
    assert not marker.exists(), f"netrun {' '.join(argv)} ran the planted pickle"


def test_the_inspector_never_unpickles_unless_asked(planted):
    db, marker, ids = planted
    with netrun.NetInspector(db) as inspector:
        assert inspector.value_preview(ids["pickle"]) == "('a', 'tuple')"  # the preview stored with it
        assert [row["value"] for row in inspector.dead_letters()] == ["('x', 1)"]
        assert inspector.packets_left()
        assert inspector.value(ids["pickle"])["value"] is None
    assert not marker.exists()
    with netrun.NetInspector(db, unpickle=True) as inspector:
        inspector.value_preview(ids["pickle"])
    assert marker.exists()  # asked for: the planted code ran (so the checks above could see it)


@pytest.mark.parametrize("argv", [["value", "{packet}", "--unpickle"], ["status", "--unpickle"],
                                  ["dlq", "{db}", "list", "--unpickle"], ["trace", "{packet}", "--unpickle"]],
                         ids=" ".join)
def test_unpickle_is_the_explicit_way_to_see_a_pickled_value(cli: Cli, planted, argv):
    db, marker, ids = planted
    args = [a.format(db=db, packet=ids["pickle"]) for a in argv]
    if args[0] != "dlq":
        args.insert(1, str(db))
    cli(*args)
    assert marker.exists()


def test_value_prints_a_json_value_whole_and_refuses_a_pickle_without_unpickle(cli: Cli, planted):
    db, marker, ids = planted
    result = cli("value", db, ids["json"])
    assert result.code == 0 and result.json() == {"city": "Lyon"}
    result = cli("value", db, ids["pickle"])
    assert result.code == 1 and result.out == ""
    assert "pickled value" in result.err and "('a', 'tuple')" in result.err and "--unpickle" in result.err
    result = cli("value", db, "01NOSUCHPACKET")
    assert result.code != 0 and "01NOSUCHPACKET" in result.err
    assert not marker.exists()


def test_value_of_a_packet_kept_only_in_its_dead_letter(cli: Cli, tmp_path):
    db = tmp_path / "dl.db"
    with netrun.Net(chain("Src", "Work", "Sink"), db=str(db), on_error="continue") as net:
        packet = net.inject_packet("Work", "in", [1, {"deep": True}])
        net.set_node_exec("Work", _boom)
        net.run_step()
    result = cli("value", db, packet)
    assert result.code == 0 and result.json() == [1, {"deep": True}]


@pytest.mark.parametrize("data", ["{not json", b"\xff\xfe", "[" * 100_000])
def test_a_damaged_json_value_is_one_error_line_never_a_traceback(cli: Cli, tmp_path, data):
    db = tmp_path / "d.db"
    with netrun.Net(chain("Src", "Sink"), db=str(db)) as net:
        packet = net.inject_packet("Sink", "in", {"ok": 1})
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("UPDATE packet_values SET data = ? WHERE packet_id = ?", (data, packet))
        conn.commit()
    result = cli("value", db, packet)
    assert result.code == 1 and packet in result.err and "Traceback" not in result.err
    for argv in (["trace", db, packet], ["status", db]):
        assert cli(*argv).code == 0


def test_values_that_json_cannot_print_come_out_as_their_repr(cli: Cli, tmp_path):
    db = tmp_path / "r.db"
    with netrun.Net(chain("Src", "Sink"), db=str(db)) as net:
        ids = [net.inject_packet("Sink", "in", value) for value in (10**5000 // 10**4990, ("a", 1), "\udcff")]
    outs = [cli("value", db, packet, "--unpickle") for packet in ids]
    assert [o.code for o in outs] == [0, 0, 0]
    assert outs[1].out.strip() == "('a', 1)"
    assert outs[2].out.strip() == '"\\udcff"'  # valid UTF-8 JSON: the lone surrogate escaped


class ReprRaises:
    def __repr__(self):
        raise RuntimeError("repr refused")


class ReprSurrogate:
    def __repr__(self):
        return "<name-\udc80>"


def test_a_value_whose_repr_fails_is_an_error_naming_the_packet_not_a_traceback(cli: Cli, tmp_path):
    # `value --unpickle` once let any exception of a stored class's __repr__ (but ValueError and
    # RecursionError) escape as a raw traceback; and a value whose repr held a lone surrogate could not
    # even be stored (its preview failed the commit with UnicodeEncodeError).
    db = tmp_path / "r.db"
    with netrun.Net(chain("Src", "Sink"), db=str(db)) as net:
        raising, surrogate = (net.inject_packet("Sink", "in", value) for value in (ReprRaises(), ReprSurrogate()))
    result = cli("value", db, raising, "--unpickle")
    assert result.code == 1 and result.out == ""
    assert raising in result.err and "RuntimeError: repr refused" in result.err and "Traceback" not in result.err
    [preview] = [r["preview"] for r in rows(db, "SELECT preview FROM packet_values WHERE packet_id = ?", [surrogate])]
    assert preview == "<name-\\udc80>"
    result = cli("value", db, surrogate, "--unpickle")
    assert result.code == 0 and result.out.strip() == "<name-\\udc80>"
