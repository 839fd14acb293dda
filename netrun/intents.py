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

A deferred main-thread epoch's start and end are written too (kind `deferred`, then `end`), under
either durability: its start is committed only with its end, so without them a process that
dies in the epoch's code (`os._exit`, a crash of the interpreter) would leave no trace, and the
epoch would run again on every resume. A deferred start without its end is a death: the
restorer counts it (an `epoch_attempts` row, error type WorkerLost), and `retries + 1` deaths
fail the epoch.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .errors import StorageError


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

    def __init__(self, db_path: str) -> None:
        self.path = intents_path(db_path)
        self._fd: int | None = None
        self.written = False  # whether lines were appended since the file was last emptied

    def write(self, epoch_id: str, node_name: str, packets: list[tuple[str, str]], started_at: str, *,
              kind: str = "start") -> None:
        """Append one intent; on return it survives the process being killed (not a power loss)."""
        self._append([epoch_id, node_name, packets, started_at, kind])

    def ended(self, epoch_id: str) -> None:
        """A deferred epoch's code returned (its end waits in the buffer for the next commit)."""
        self._append([epoch_id, None, [], None, "end"])

    def _append(self, record: list) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.write(self._fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())
        self.written = True

    def committed(self) -> None:
        """The database now holds every start listed: empty the file."""
        if self.written and self._fd is not None:
            os.ftruncate(self._fd, 0)
            self.written = False

    def close(self) -> None:
        """After the last commit: the file goes away (an empty one is left only by a crash)."""
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


def read_intents(db_path: str) -> list[Intent]:
    """The starts a crashed (or running) owner logged and the database does not know ended: every
    non-deferred start, and the deferred ones without their end. None if the file is absent."""
    path = intents_path(db_path)
    try:
        with open(path, "rb") as handle:
            lines = handle.read().split(b"\n")
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"{path}: cannot read the start intents of {db_path} ({exc})", path=path) from exc
    out: dict[str, Intent] = {}
    for line in lines:
        if not line:
            continue
        try:
            epoch_id, node, packets, started_at, kind = json.loads(line)
        except ValueError:
            continue  # torn by a kill mid-write: that epoch's code never started
        if kind == "end":
            out.pop(epoch_id, None)
        else:
            out[epoch_id] = Intent(epoch_id, node, [(port, packet) for port, packet in packets], started_at, kind)
    return list(out.values())


def remove_intents(db_path: str) -> None:
    try:
        os.unlink(intents_path(db_path))
    except FileNotFoundError:
        pass
