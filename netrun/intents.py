"""Start intents: the crash contract of non-deferred main-thread epochs, without a commit each.

The contract (DESIGN.md): a non-deferred epoch is durably `running` before its code runs, so
that a crash never runs its code twice. Committing its start costs a whole SQLite commit per
epoch. Under `durability="normal"` (commits are not fsynced either) the owner may instead append
one line to a side file, `<db>-starts`, before the code runs: the epoch, its node and its input
packets. The file is emptied after every commit (the database then knows those starts).

While the net runs, readers (`netrun status`) list the epochs of the file whose start the
database does not hold yet as running. After a crash, the restorer reads the file before the sim is rebuilt: an epoch listed there whose
start the database never got is cancelled, and each of its input packets that the database
still holds live is dead-lettered `interrupted`, as if its start had been committed. What the
epoch did after its start was never committed either (it was in the same buffer), so nothing of
it is left to undo.

The owner writes an intent only when no buffered row would make work run again with new IDs
(a deferred epoch's end, an applied pool result: `Journal.rerunnable`); otherwise it commits, as
before. A torn last line (a kill while writing) is ignored: its epoch's code had not started.

A deferred main-thread epoch's start is written too (kind `deferred`), under either durability:
its start is committed only with its end, so without it a process that dies in the epoch's code
(`os._exit`, a crash of the interpreter) would leave no trace, and the epoch would run again on
every resume. Main-thread sync epochs run one at a time, so only the last line of the file can
be an epoch that was running when the process died: if it is a deferred start, that is a death.
The restorer counts it (an `epoch_attempts` row, error type WorkerLost); an epoch that died more
than `retries + 1` times fails. The line of the deferred epoch running when the owner commits is
written again after the file is emptied. Lines damaged before the last one are refused
(CorruptDatabase): without them, node code could run twice.

The file is written through a shared memory map, not with write(2): a line is a copy into memory,
with no system call and no release of the GIL (with a thread pool at work, each release handed the
interpreter to a worker, and the owner waited for it back). A process that dies leaves the page
cache to the kernel, which writes it to the file like any write (a power loss is not covered under
"normal", as before). The mapping's room is reserved on disk beforehand (`posix_fallocate`), so a
full disk fails the reservation with an error rather than a write into the map. Lines end at the
zeros after them: the file is its lines, then zeros up to its reserved size. A line's newline is
stored after the rest of it, so a line cut short by a kill has none and is ignored; emptying the
file zeroes its first byte before the rest. A read is not atomic with those copies: a reader of a
running net's file may catch the owner mid-copy and see a damaged line, so it reads again, and
believes only damage that reads the same twice (the file at rest is always whole).
"""

from __future__ import annotations

import json
import mmap
import os
from dataclasses import dataclass
from typing import Any

from .errors import CorruptDatabase, StorageError


def intents_path(db_path: str) -> str:
    """`<db>-starts`, beside the real file when the database is reached through a symlink."""
    return os.path.realpath(db_path) + "-starts"


@dataclass(frozen=True)
class Intent:
    """A non-deferred epoch whose code was about to run: its node and input salvo."""

    epoch_id: str
    node_name: str
    packets: list[tuple[str, str]]  # (input port, packet ID)
    started_at: str | None = None
    kind: str = "start"  # "start" (non-deferred) or "deferred"


class StartLog:
    """The owner's side file of start intents (append-only between two commits)."""

    ROOM = 1 << 16  # bytes reserved at first; doubled whenever the lines need more

    def __init__(self, db_path: str) -> None:
        self.path = intents_path(db_path)
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._used = 0  # bytes of lines since the file was last emptied
        self.written = False  # whether lines were appended since the file was last emptied
        self._deferred: tuple[int, int] | None = None  # where the last line, a deferred start, lies
        self._names: dict[str, str] = {}  # node and port names as JSON strings

    def _name(self, name: str) -> str:
        text = self._names.get(name)
        if text is None:
            text = self._names[name] = json.dumps(name)
        return text

    def write(self, epoch_id: str, node_name: str, packets: list[tuple[str, str]], started_at: str) -> None:
        """Append a non-deferred start; on return it survives the process being killed (not a power loss).

        The line is JSON built by hand: names are escaped once (cached); IDs are ULIDs and the time is
        ISO text, neither of which JSON escapes."""
        name = self._name
        salvo = ",".join(f'[{name(port)},"{packet}"]' for port, packet in packets)
        self._append(f'["{epoch_id}",{name(node_name)},[{salvo}],"{started_at}","start"]')

    def write_deferred(self, epoch_id: str, node_name: str) -> None:
        """Append a deferred start (just the epoch and its node: a death needs no more)."""
        start = self._used
        self._append(f'["{epoch_id}",{self._name(node_name)},[],null,"deferred"]')
        self._deferred = (start, self._used)

    def ended_deferred(self) -> None:
        """The deferred epoch logged last has returned (its code no longer runs): its line is taken
        back, so that a kill before its end is committed charges it no death (it runs again, by the
        crash semantics, as any deferred epoch whose end was lost). Its newline is zeroed first: the
        line is then a torn last line, which a reader ignores; then the rest of it. Nothing to do if
        another line followed it (a deferred start followed by another one had ended)."""
        where, self._deferred = self._deferred, None
        if where is None or self._map is None or where[1] != self._used:
            return
        start, end = where
        room = self._map
        room[end - 1] = 0
        room[start:end - 1] = bytes(end - 1 - start)
        self._used = start
        self.written = start > 0  # (nothing left since the file was emptied: it is empty again)

    def _append(self, line: str) -> None:
        data = line.encode()
        start = self._used
        end = start + len(data)
        room = self._map
        if room is None or end + 1 > len(room):
            room = self._reserve(end + 1)
        room[start:end] = data
        room[end] = 10  # the newline last: a line without one was cut short
        self._used = end + 1
        self.written = True
        self._deferred = None  # (write_deferred sets it again for its own line)

    def _reserve(self, size: int) -> mmap.mmap:
        """Room for `size` bytes of lines, reserved on disk (OSError if it cannot be: a full disk, a
        folder or a symlink in the way), the file mapped over it."""
        if self._fd is None:
            # not through a symlink (ELOOP: starts are committed instead), which would empty another file
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            os.ftruncate(self._fd, 0)  # an old file of that name held nothing of this run
        length = max(self.ROOM, len(self._map) if self._map is not None else 0)
        while length < size:
            length *= 2
        reserve = getattr(os, "posix_fallocate", None)
        if reserve is not None:
            reserve(self._fd, 0, length)
        else:  # (macOS has none) zeros written allocate the room as well
            done = os.fstat(self._fd).st_size
            while done < length:  # a disk filling up writes short, then fails (ENOSPC)
                done += os.pwrite(self._fd, bytes(length - done), done)
        room = mmap.mmap(self._fd, length)
        if self._map is not None:
            self._map.close()  # (only now: the lines it holds stay usable if the new map cannot be made)
        self._map = room
        return room

    def committed(self) -> None:
        """The database now holds every start listed: empty the file (its first byte zeroed first,
        which alone empties it for a reader)."""
        if self.written and self._map is not None:
            room = self._map
            room[0] = 0
            room[1:self._used] = bytes(self._used - 1)
            self._used = 0
            self.written = False
        self._deferred = None

    def close(self) -> None:
        """After the last commit: the file goes away (an empty one is left only by a crash)."""
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self.written:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            except OSError:  # not a file of ours (a folder of that name): nothing was written to it
                pass


REREADS = 50  # reads of a live log that may each catch its owner mid-write before damage is believed


def read_intents(db_path: str) -> list[Intent]:
    """The starts a crashed (or running) owner logged since its last commit: every non-deferred
    start, and a deferred one if it is the last line (it was running). None if the file is absent.

    A read of the file is not atomic with the owner's copies into its map: reading a running net's
    file (`netrun status`), it may see the first bytes of a round of lines, then the zeros of emptying
    and the bytes of the next round, or a line whose newline is there before all of its bytes. At
    rest (a dead owner, or between two of its copies) the file is always whole, so a damaged line is
    read again: only a file that reads the same twice is damaged."""
    path = intents_path(db_path)
    data = _read(path, db_path)
    for _ in range(REREADS):
        try:
            return _parse(path, data)
        except CorruptDatabase:
            again = _read(path, db_path)
            if again == data:
                raise
            data = again
    return _parse(path, data)


def _read(path: str, db_path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the start intents of {db_path} ({exc})", path=path) from exc


def _parse(path: str, data: bytes) -> list[Intent]:
    if data[:1] == b"\0":
        return []  # emptied (its first byte is zeroed first; a kill may have left the rest)
    out: list[Intent] = []
    # The lines, then the zeros of the room reserved after them. After the last newline: nothing, or a line
    # torn by a kill mid-write (its code never ran).
    *whole, _torn = data.rstrip(b"\0").split(b"\n")
    for number, line in enumerate(whole, start=1):
        try:
            epoch_id, node, packets, started_at, kind = json.loads(line)
            intent = Intent(str(epoch_id), str(node), [(str(port), str(packet)) for port, packet in packets],
                            started_at, str(kind))
        except (ValueError, TypeError) as exc:
            raise CorruptDatabase(f"{path}: line {number} is damaged ({exc}); the epochs it lists ran without a "
                                  f"committed start, so resuming without it could run their code twice. Restore "
                                  f"a checkpoint, or delete the file to accept that", path=path) from exc
        out.append(intent)
    # a deferred start followed by another start had ended (one main-thread epoch runs at a time)
    return [intent for i, intent in enumerate(out) if intent.kind == "start" or i == len(out) - 1]


def remove_intents(db_path: str) -> None:
    try:
        os.unlink(intents_path(db_path))
    except FileNotFoundError:
        pass


class ServerStartLog:
    """A PostgreSQL net's equivalent of the side file, for deferred main-thread starts only (its
    non-deferred starts are committed): the running deferred epoch is written to `net_meta` (key
    `dying`) on a connection of its own before its code runs, so that a process that dies in that
    code leaves its trace on the server, and the next owner counts the death (`read_server_intents`).

    The statement is sent without waiting for its answer (the answer is read before the next one):
    once sent, it reaches the server even if the process is killed, and it costs the run no round
    trip. One row, overwritten: only the last deferred start can be the dying one."""

    def __init__(self, url: str, label: str) -> None:
        self._url = url
        self.path = label  # what messages name
        self._pg: Any = None
        self._waiting = False  # an answer not read yet
        self._last: str | None = None  # the epoch written last
        self.written = False

    def write(self, epoch_id: str, node_name: str, packets: list[tuple[str, str]], started_at: str) -> None:
        raise NotImplementedError("a PostgreSQL net commits its non-deferred starts")

    def write_deferred(self, epoch_id: str, node_name: str) -> None:
        if epoch_id == self._last:
            return  # (written again after a commit: the row still says so)
        self._send(json.dumps([epoch_id, node_name, [], None, "deferred"]).encode())
        self._last = epoch_id
        self.written = True

    def _send(self, value: bytes) -> None:
        import psycopg

        from .pgconn import open_pg, parse_url

        try:
            if self._pg is None:
                self._pg = open_pg(parse_url(self._url))
                self._pg.execute("SET synchronous_commit = off")  # a killed client loses nothing sent
            pgconn = self._pg.pgconn
            self._drain(pgconn)
            pgconn.send_query_params(_MARK_DYING, [value])
            pgconn.flush()
            self._waiting = True
        except (psycopg.Error, StorageError) as exc:
            self._drop()
            raise OSError(f"cannot write the start of a deferred epoch to {self.path}: {exc}") from exc

    def _drain(self, pgconn: Any) -> None:
        from psycopg.pq import ExecStatus

        while self._waiting:
            result = pgconn.get_result()
            if result is None:
                self._waiting = False
            elif result.status == ExecStatus.FATAL_ERROR:
                message = (result.error_message or b"").decode(errors="replace").strip()
                raise OSError(f"the server refused the start of a deferred epoch: {message}")

    def _drop(self) -> None:
        if self._pg is not None:
            try:
                self._pg.close()
            except Exception:  # noqa: BLE001 - already broken
                pass
        self._pg, self._waiting, self._last = None, False, None

    def ended_deferred(self) -> None:
        """Not taken back on PostgreSQL (it would cost a statement per epoch): there, a kill after the
        epoch returned and before its end is committed is still counted as a death of it."""

    def committed(self) -> None:
        """Nothing to empty: the row names an epoch whose state the database now holds."""

    def close(self) -> None:
        """After the last commit: the row goes (an epoch that ended leaves none behind)."""
        if self._pg is None:
            return
        try:
            self._drain(self._pg.pgconn)
            self._pg.execute(_CLEAR_DYING.decode())
        except Exception:  # noqa: BLE001 - a stale row names an ended epoch: the next resume ignores it
            pass
        self._drop()


_MARK_DYING = (b"INSERT INTO net_meta (key, value) VALUES ('dying', $1) "
               b"ON CONFLICT (key) DO UPDATE SET value = excluded.value")
_CLEAR_DYING = b"DELETE FROM net_meta WHERE key = 'dying'"


def read_server_intents(conn: Any) -> list[Intent]:
    """A PostgreSQL net's deferred start that may have died (see ServerStartLog), as `read_intents` gives it."""
    row = conn.execute("SELECT value FROM net_meta WHERE key = 'dying'").fetchone()
    if row is None:
        return []
    try:
        epoch_id, node, _packets, started_at, kind = json.loads(row[0])
    except (ValueError, TypeError):
        return []  # a row of no use: deaths are a courtesy of the crash semantics, not its guarantee
    return [Intent(str(epoch_id), str(node), [], started_at, str(kind))]
