"""Start intents (netrun.intents): a non-deferred epoch's start, logged instead of committed.

A child runs Source -> A -> B -> Sink on one value (after a warm-up value) and kills itself (SIGKILL, the
`between_actions` fault point) inside B's code, after B's side effect. Then `Net.resume` in
another process runs the net to the end. The promise checked: no node's code runs twice for
the value (its side effect, a line in a file, is never repeated), the value is never lost (it
reaches the Sink or is dead-lettered 'interrupted'), and the intents file is gone afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from contextlib import closing
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    import netrun
    from netrun import faults
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    net = netrun.Net(chain("Source", "A", "B", "Sink"), db={db!r}, durability={durability!r},
                     consumed_packet_storage=True)
    for node, func in (("A", rn.effect_identity), ("B", rn.effect_identity), ("Sink", rn.effect_swallow)):
        net.set_node_exec(node, func)
        net.set_node_config(node, defer_net_actions={deferred!r}[node], capture_stdout=False)
    net.inject_packet("A", "in", 1)  # a warm-up: nodes whose last epoch was quick share commits
    net.start()
    net.inject_packet("A", "in", 7)
    faults.arm("between_actions", {kill_at})
    net.start()
    net.close()
""")

RESUME = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {root!r})
    import netrun
    net = netrun.Net.resume({db!r})
    net.start()
    letters = [(d.node_name, d.reason, d.value) for d in net.dead_letter_queue.get_all()]
    net.close()
    print(json.dumps(letters))
""")


def _lines(starts: Path) -> list[str]:
    """The lines of a start log (the zeros of the room reserved after them dropped)."""
    return starts.read_bytes().rstrip(b"\0").decode().splitlines()


def run(tmp_path: Path, *, deferred: dict, kill_at: int, durability: str = "normal",
        tamper=None) -> tuple[Path, dict]:
    db = tmp_path / "net.db"
    env = {**os.environ, "NETRUN_TEST_EFFECTS": str(tmp_path / "effects")}
    script = tmp_path / "run.py"
    script.write_text(RUN.format(root=str(REPO), db=str(db), durability=durability, deferred=deferred,
                                 kill_at=kill_at))
    child = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    with closing(sqlite3.connect(db)) as conn:
        killed = {"running": conn.execute("SELECT node_name FROM epochs WHERE state = 'running'").fetchall(),
                  "finished": conn.execute("SELECT node_name FROM epochs WHERE state = 'finished'").fetchall(),
                  "starts": (_lines(Path(str(db) + "-starts")) if Path(str(db) + "-starts").exists() else None)}
    from netrun import NetInspector

    if tamper is not None:
        tamper(Path(str(db) + "-starts"))

    with NetInspector(str(db)) as inspector:  # reading changes nothing, the intents included
        killed["status"] = inspector.status()["state"]
    script = tmp_path / "resume.py"
    script.write_text(RESUME.format(root=str(REPO), db=str(db)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    killed["letters"] = [tuple(x) for x in json.loads(done.stdout)]
    effects = Counter((tmp_path / "effects").read_text().splitlines())
    assert {line: n for line, n in effects.items() if line.endswith(" 1")} == {"A 1": 1, "B 1": 1, "Sink 1": 1}
    killed["effects"] = {line: n for line, n in effects.items() if not line.endswith(" 1")}
    return db, killed


def test_non_deferred_starts_are_logged_and_a_kill_dead_letters_the_value_once(tmp_path):
    # A: consume (hit 1), create (2); B: consume (3), its side effect, create (4): killed there
    db, out = run(tmp_path, deferred={"A": False, "B": False, "Sink": False}, kill_at=4)
    assert out["running"] == []  # neither start was committed...
    assert [json.loads(line)[1] for line in out["starts"]] == ["A", "B"]  # ...both were logged
    assert out["status"] == "interrupted"
    assert out["effects"] == {"A 7": 1, "B 7": 1}  # each node's code ran once
    assert out["letters"] == [("A", "interrupted", 7)]  # the value A consumed, back in the dead letters
    assert not Path(str(db) + "-starts").exists()


def test_a_non_deferred_start_after_a_buffered_deferred_end_is_logged_only_once_that_end_is_committed(tmp_path):
    # A deferred (its end waits in the buffer, and B's input with it): B's start waits for the commit
    # of A's end, then is logged. Logged before it, a kill would lose A's end: A would run again and B
    # with it, on the same value.
    # A: consume (hit 1); B: consume (2), its side effect, create (3): killed there
    db, out = run(tmp_path, deferred={"A": True, "B": False, "Sink": False}, kill_at=3)
    assert out["running"] == []
    assert [json.loads(line)[1] for line in out["starts"]] == ["B"]
    assert out["finished"].count(("A",)) == 2  # at the kill, A's end for the value was on disk
    assert out["effects"] == {"A 7": 1, "B 7": 1}
    assert out["letters"] == [("B", "interrupted", 7)]


def test_full_durability_commits_every_start_and_writes_no_intents(tmp_path):
    db, out = run(tmp_path, deferred={"A": False, "B": False, "Sink": False}, kill_at=4, durability="full")
    assert out["starts"] is None
    assert out["running"] == [("B",)]
    assert out["effects"] == {"A 7": 1, "B 7": 1}
    assert out["letters"] == [("B", "interrupted", 7)]


@pytest.mark.parametrize("durability", ["normal", "full"])
def test_a_closed_net_leaves_no_intents_file(tmp_path, durability):
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    db = tmp_path / "net.db"
    stale = Path(str(db) + "-starts")
    stale.write_text('["01STALE","A",[["in","01NOPE"]]]\n')  # left by an earlier file of that name
    net = netrun.Net(chain("Source", "A", "Sink"), db=str(db), durability=durability)
    assert not stale.exists()
    net.set_node_exec("A", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    for value in range(50):
        net.inject_packet("A", "in", value)
    net.start()
    net.close()
    assert not stale.exists()
    resumed = netrun.Net.resume(str(db))
    assert resumed.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [{"n": 100}]
    assert resumed.dead_letter_queue.get_all() == []
    resumed.close()


def test_an_intents_file_that_cannot_be_written_makes_every_start_a_commit(tmp_path):
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    db = tmp_path / "net.db"
    net = netrun.Net(chain("Source", "A", "Sink"), db=str(db))
    blocker = Path(str(db) + "-starts")
    blocker.mkdir()  # os.open of a folder fails: no intents can be written
    net.set_node_exec("A", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    for value in range(50):
        net.inject_packet("A", "in", value)
    net.start()
    assert net.query("SELECT count(*) AS n FROM epochs WHERE state = 'finished'") == [{"n": 100}]
    [log] = net.query("SELECT text FROM node_logs WHERE text LIKE 'netrun: cannot write%'")
    assert str(blocker) in log["text"] and "starts are committed instead" in log["text"]
    with pytest.raises(netrun.StorageError, match="cannot read the start intents"):
        from netrun.intents import read_intents
        read_intents(str(db))
    net.close()
    blocker.rmdir()
    with netrun.Net.resume(str(db)) as resumed:
        assert resumed.dead_letter_queue.get_all() == []



def test_intents_damaged_in_the_middle_are_refused_a_torn_last_line_is_not(tmp_path):
    import netrun
    from netrun.intents import read_intents

    db = str(tmp_path / "x.db")
    good = '["e1","A",[["in","p1"]],null,"start"]\n'
    Path(db + "-starts").write_text(good + "\x00garbage\n" + good)
    with pytest.raises(netrun.CorruptDatabase, match="line 2 is damaged"):
        read_intents(db)
    Path(db + "-starts").write_text(good + good + '["e2","A",[["in"')  # torn by a kill: ignored
    assert [i.epoch_id for i in read_intents(db)] == ["e1", "e1"]


def test_a_line_written_twice_dead_letters_its_packet_once(tmp_path):
    def repeat(starts: Path) -> None:
        lines = [line + "\n" for line in _lines(starts)]
        starts.write_text("".join(lines + lines))

    db, out = run(tmp_path, deferred={"A": False, "B": False, "Sink": False}, kill_at=4, tamper=repeat)
    assert out["letters"] == [("A", "interrupted", 7)]


def test_start_lines_read_back_whatever_the_node_and_port_names(tmp_path):
    """The lines are JSON built by hand: names with quotes, backslashes and non-ASCII survive the trip."""
    from netrun.intents import StartLog, read_intents

    log = StartLog(str(tmp_path / "n.db"))
    node, port = 'Say "hi"\\é', "in\n2"
    log.write("01JEPOCH0000000000000000000", node, [(port, "01JPACKET000000000000000000"), ("in", "01JPACKET1")],
              "2026-01-02T03:04:05.678901+00:00")
    log.write_deferred("01JEPOCH0000000000000000001", node)
    lines = _lines(Path(log.path))
    assert [json.loads(line)[1] for line in lines] == [node, node]
    first, second = read_intents(str(tmp_path / "n.db"))
    assert (first.epoch_id, first.node_name, first.kind) == ("01JEPOCH0000000000000000000", node, "start")
    assert first.packets == [(port, "01JPACKET000000000000000000"), ("in", "01JPACKET1")]
    assert first.started_at == "2026-01-02T03:04:05.678901+00:00"
    assert (second.node_name, second.kind, second.packets) == (node, "deferred", [])
    log.close()


def test_the_log_is_lines_then_zeros_emptied_from_its_first_byte_and_grows_past_its_room(tmp_path):
    """The file is written through a memory map over reserved room: lines, then zeros. Emptying it
    zeroes its first byte first (a reader then sees no line, whatever a kill left after it), and lines
    past the room reserved make it grow, none lost."""
    from netrun.intents import StartLog, read_intents

    db = str(tmp_path / "n.db")
    log = StartLog(db)
    log.write("01JE0", "A", [("in", "01JP0")], "2026-01-02T03:04:05.678901+00:00")
    data = Path(log.path).read_bytes()
    assert len(data) == StartLog.ROOM and data.rstrip(b"\0").endswith(b'"start"]\n')
    assert [i.epoch_id for i in read_intents(db)] == ["01JE0"]

    log.committed()
    assert Path(log.path).read_bytes() == bytes(StartLog.ROOM)
    assert read_intents(db) == []
    # a kill in the middle of emptying: the first byte is zeroed, old lines still follow it
    Path(log.path).write_bytes(b"\0" + b'"e1","A",[],null,"start"]\n["e2","A",[],null,"start"]\n')
    assert read_intents(db) == []

    log = StartLog(db)
    many = StartLog.ROOM // 40 * 3  # ~three times the room
    for n in range(many):
        log.write(f"01JE{n:05d}", "A", [("in", f"01JP{n:05d}")], "2026-01-02T03:04:05.678901+00:00")
    assert len(Path(log.path).read_bytes()) > StartLog.ROOM
    assert [i.epoch_id for i in read_intents(db)] == [f"01JE{n:05d}" for n in range(many)]
    log.committed()
    log.write("01JEAFTER", "A", [("in", "01JPAFTER")], "2026-01-02T03:04:05.678901+00:00")
    assert [i.epoch_id for i in read_intents(db)] == ["01JEAFTER"]
    log.close()
    assert Path(log.path).exists()  # it holds a start the database does not


def test_a_line_cut_short_with_holes_is_torn_not_damage(tmp_path):
    """A kill in the middle of copying a line into the map may leave any of its bytes unwritten (zero),
    but never its newline, stored last: such a line is torn (its code never ran), not damage."""
    from netrun.intents import read_intents

    db = str(tmp_path / "x.db")
    good = b'["e1","A",[["in","p1"]],null,"start"]\n'
    Path(db + "-starts").write_bytes(good + b'["e2","A",\0\0\0"p2"]],null,"st' + bytes(4000))
    assert [i.epoch_id for i in read_intents(db)] == ["e1"]


def test_a_log_that_cannot_reserve_its_room_fails_with_an_os_error(tmp_path, monkeypatch):
    """A full disk fails the reservation (the runtime then commits its starts instead): nothing is ever
    written into a map over room the disk does not have."""
    import errno

    from netrun.intents import StartLog

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    log = StartLog(str(tmp_path / "n.db"))
    with pytest.raises(OSError, match="No space left"):
        log.write_deferred("01JE0", "A")
    assert log._map is None and not log.written
    log.close()
    assert not Path(log.path).exists()


def test_without_posix_fallocate_the_room_is_reserved_by_writing_zeros(tmp_path, monkeypatch):
    """(macOS has no posix_fallocate) The room is then written as zeros: the log works the same."""
    from netrun.intents import StartLog, read_intents

    monkeypatch.delattr(os, "posix_fallocate")
    db = str(tmp_path / "n.db")
    log = StartLog(db)
    for n in range(StartLog.ROOM // 40 * 2):
        log.write_deferred(f"01JE{n:05d}", "A")
    assert len(Path(log.path).read_bytes()) > StartLog.ROOM
    assert [i.epoch_id for i in read_intents(db)] == [f"01JE{StartLog.ROOM // 40 * 2 - 1:05d}"]  # the last, running
    log.close()


_LIVE_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from netrun.intents import StartLog

    log = StartLog({db!r})
    port = "p" * 1500  # long lines: a read spans pages the owner rewrites after emptying the file
    n = 0
    end = time.monotonic() + {seconds!r}
    while time.monotonic() < end:
        for _ in range(64):
            log.write(f"01JE{{n:022d}}", "Node", [(port, f"01JP{{n:022d}}")], "2026-01-02T03:04:05.678901+00:00")
            n += 1
        log.committed()
    log.close()
""")


def test_a_reader_of_a_live_log_never_sees_damage(tmp_path):
    """`netrun status` reads the file while the owner writes it through its memory map: a read is not
    atomic, so one may see the first lines of a round, then the zeros of emptying and the lines of the
    next round (or a line whose bytes are not all there yet, but its newline is). That is a moment of
    the writer, not damage: the reader reads again; only a file that reads the same twice is damaged."""
    from netrun.errors import CorruptDatabase
    from netrun.intents import read_intents

    db = str(tmp_path / "n.db")
    script = tmp_path / "writer.py"
    script.write_text(_LIVE_WRITER.format(root=str(REPO), db=db, seconds=4.0))
    writer = subprocess.Popen([sys.executable, str(script)])
    try:
        damaged = reads = 0
        while writer.poll() is None:
            try:
                read_intents(db)
            except CorruptDatabase:
                damaged += 1
            reads += 1
    finally:
        writer.kill()
        writer.wait()
    assert reads > 100 and damaged == 0


def test_a_read_that_catches_the_owner_mid_write_reads_again(tmp_path, monkeypatch):
    """A read that sees a line spliced from two rounds (old bytes, the zeros of emptying, new bytes) is
    read again; the same damage twice is refused."""
    import netrun
    from netrun import intents

    db = str(tmp_path / "x.db")
    good = b'["e1","A",[["in","p1"]],null,"start"]\n'
    Path(db + "-starts").write_bytes(good + bytes(100))
    spliced = b'["e0","A",[["in"' + bytes(20) + b'p1"]],null,"start"]\n' + bytes(100)
    reads = []
    real = intents._read

    def racing(path, db_path):
        reads.append(path)
        return spliced if len(reads) == 1 else real(path, db_path)

    monkeypatch.setattr(intents, "_read", racing)
    assert [i.epoch_id for i in intents.read_intents(db)] == ["e1"]
    assert len(reads) == 2
    Path(db + "-starts").write_bytes(spliced)  # at rest: damage
    with pytest.raises(netrun.CorruptDatabase, match="line 1 is damaged"):
        intents.read_intents(db)


def test_a_symlink_in_place_of_the_log_is_not_followed(tmp_path):
    """The log is truncated and mapped when first written: a symlink at its name (made after the net
    removed what an earlier file of that name left) must not make it empty and zero another file. It
    cannot be written: starts are committed instead."""
    import netrun
    from netrun.graphs import chain
    from tests.integration import resume_nodes as rn

    db = tmp_path / "net.db"
    precious = tmp_path / "precious.txt"
    precious.write_text("not the net's\n")
    net = netrun.Net(chain("Source", "A", "Sink"), db=str(db))
    Path(str(db) + "-starts").symlink_to(precious)
    net.set_node_exec("A", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    for value in range(20):
        net.inject_packet("A", "in", value)
    net.start()
    [log] = net.query("SELECT text FROM node_logs WHERE text LIKE 'netrun: cannot write%'")
    assert "starts are committed instead" in log["text"]
    net.close()
    assert precious.read_text() == "not the net's\n"


def test_without_posix_fallocate_a_full_disk_fails_with_an_os_error(tmp_path, monkeypatch):
    """(macOS) Writing the room's zeros on a filling disk first writes short, then fails: the log raises
    an OSError (the runtime then commits its starts), never maps past the end of its file, and the lines
    it holds stay readable, its map usable."""
    import errno

    from netrun.intents import StartLog, read_intents

    monkeypatch.delattr(os, "posix_fallocate")
    db = str(tmp_path / "n.db")
    log = StartLog(db)
    log.write_deferred("01JE0", "A")
    real = os.pwrite
    calls = []

    def filling(fd, data, offset):
        calls.append(len(data))
        if len(calls) == 1:
            return real(fd, data[:4096], offset)  # a short write: the disk is full after it
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "pwrite", filling)
    with pytest.raises(OSError, match="No space left"):
        for n in range(1, StartLog.ROOM // 20):
            log.write_deferred(f"01JE{n:05d}", "A")
    assert len(calls) == 2
    assert read_intents(db)[-1].kind == "deferred"
    log.committed()
    assert read_intents(db) == []
    log.close()
