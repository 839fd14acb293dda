"""Repairing a stored net without running it: dead letters replayed or discarded.

`netrun dlq replay|discard` and the web page's buttons (`netrun ui --allow-writes`) both call
`resolve_dead_letters`: the net is opened as `Net.resume` opens it, so its owner lock is held
meanwhile (refused with NetInUse while another process runs the net), and the chosen entries are
checked first and then resolved in one transaction (none or every one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .inspector import NetInspector
from .net import Net


@dataclass(frozen=True)
class Resolution:
    """What `resolve_dead_letters` did: `done` holds `{"seq", "replayed_as"}` (replay) or
    `{"seq", "discarded": True}` per entry; `interrupted` counts the epochs that were running when
    the net's process died (opening the net applied the crash semantics to them first)."""

    done: list[dict]
    interrupted: int


def pending_seqs(inspector: NetInspector, node: str | None = None) -> list[int]:
    """The numbers of the pending dead letters (of `node`), oldest first."""
    return [row["seq"] for row in inspector.dead_letters(node=node)]


def resolve_dead_letters(path: str | os.PathLike, seqs: list[int] | None, *, replay: bool,
                         node: str | None = None) -> Resolution:
    """Replay (`replay=True`: back at the input port each came from) or discard the dead letters
    numbered `seqs`, or, with `seqs=None`, every pending one (of `node`). Atomic: all or none.

    The pending ones are read before the net is opened, because opening a crashed net dead-letters
    the packets of its interrupted epochs, which nobody has seen yet.

    Raises:
        NetInUse: a live process runs the net.
        NotFoundError: no dead letter with one of the numbers (or no node `node`).
        ConfigError: an entry already resolved, named twice, or (replay) with no input port to return to.
        NotANetrunDatabase, DatabaseVersionError, CorruptDatabase: the file cannot be opened.
    """
    with NetInspector(path) as inspector:
        chosen = list(seqs) if seqs is not None else pending_seqs(inspector, node)
        interrupted = len(inspector.running_epochs()) if inspector.owner() is None else 0
    with Net.resume(path) as net:  # owns the file meanwhile: refused while a run is going on
        queue = net.dead_letter_queue
        if replay:
            done = [{"seq": seq, "replayed_as": new} for seq, new in zip(chosen, queue.replay_many(chosen))]
        else:
            queue.discard_many(chosen)
            done = [{"seq": seq, "discarded": True} for seq in chosen]
    return Resolution(done, interrupted)
