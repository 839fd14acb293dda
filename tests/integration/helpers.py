"""Shared helpers for the integration tests: node functions, fake clocks, stdlib SQLite reads.

Reads go through the stdlib `sqlite3` module on purpose: a second connection, from another
SQLite build, sees only what netrun really committed to the file.

Never open a file with stdlib `sqlite3` *in this process* while a `Net` (apsw, which links
its own SQLite) still has it open: two SQLite libraries in one process do not share their
POSIX locks, so closing the stdlib connection drops apsw's locks and may checkpoint and
delete the WAL under it (sqlite.org/howtocorrupt.html, 2.2.1). `rows`/`scalar` are for
closed nets; `rows_in_other_process` reads an open net's file from a child process.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def stored_value(data: str | bytes | None) -> Any:
    """A value as stored in `packet_values.data` or `dead_letters.value`: JSON text, or a pickle."""
    if data is None:
        return None
    if isinstance(data, str):
        return json.loads(data)
    import pickle

    return pickle.loads(data)


def _pg_rows(url: str, sql: str, params: Iterable[Any]) -> list[dict]:
    """`rows` of a PostgreSQL net: through a read-only connection of netrun's (its SQL translated)."""
    from netrun.db import rows_as_dicts
    from netrun.pgconn import PgConnection, parse_url

    conn = PgConnection(parse_url(url), readonly=True)
    try:
        return rows_as_dicts(conn.execute(sql, tuple(params)))
    finally:
        conn.close()


def rows(db: str | Path, sql: str, params: Iterable[Any] = ()) -> list[dict]:
    """All rows of `sql` on a (closed) database file, as dicts, via a fresh stdlib connection (or on a
    PostgreSQL net, given its URL)."""
    if str(db).startswith("postgresql://"):
        return _pg_rows(str(db), sql, params)
    with closing(sqlite3.connect(str(db))) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, tuple(params)).fetchall()]


def scalar(db: str | Path, sql: str, params: Iterable[Any] = ()) -> Any:
    """The first column of the first row of `sql`."""
    if str(db).startswith("postgresql://"):
        found = _pg_rows(str(db), sql, params)
        return next(iter(found[0].values())) if found else None
    with closing(sqlite3.connect(str(db))) as conn:
        return conn.execute(sql, tuple(params)).fetchone()[0]


_READER = """
import json, sqlite3, sys
path, sql, params = json.loads(sys.stdin.read())
conn = sqlite3.connect(path)
conn.row_factory = sqlite3.Row
print(json.dumps([dict(r) for r in conn.execute(sql, params).fetchall()]))
conn.close()
"""


def rows_in_other_process(db: str | Path, sql: str, params: Iterable[Any] = ()) -> list[dict]:
    """`rows`, read by a separate Python process (safe while a Net has the file open); a PostgreSQL net
    is read by a connection of this process (the concern is SQLite's file locks only)."""
    if str(db).startswith("postgresql://"):
        return _pg_rows(str(db), sql, params)
    done = subprocess.run([sys.executable, "-c", _READER], input=json.dumps([str(db), sql, list(params)]),
                          capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


def emit(*values: Any) -> Callable:
    """A source exec function: one packet per value on `out`, sent in one salvo."""
    def source(ctx, packets):
        for value in values:
            ctx.load_output_port("out", ctx.create_packet(value))
        ctx.send_output_salvo("send_out")
    return source


def forward(transform: Callable[[Any], Any] = lambda v: v) -> Callable:
    """An exec function: consume `in`, send `transform(value)` on `out`."""
    def node(ctx, packets):
        value = ctx.consume_packet(packets["in"][0])
        ctx.load_output_port("out", ctx.create_packet(transform(value)))
        ctx.send_output_salvo("send_out")
    return node


def collect(into: list) -> Callable:
    """A sink exec function: consume `in` and append the value to `into`."""
    def sink(ctx, packets):
        into.append(ctx.consume_packet(packets["in"][0]))
    return sink


class FakeClock:
    """An injected clock: `now()` follows `monotonic()`, and `sleep()` only advances it."""

    def __init__(self, start: datetime = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)) -> None:
        self.start = start
        self.elapsed = 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds > 0:
            self.elapsed += seconds


class FrozenClock:
    """A clock stuck at one moment (sleep does nothing)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def monotonic(self) -> float:
        return 0.0

    def sleep(self, seconds: float) -> None:
        pass


def pool_net_to_kill(tmp_path: Path, got: list, func: Callable, *, deferred: bool, size: int,
                     values: Iterable[Any]) -> tuple[Any, dict]:
    """Source -> Work (process pool "p" of `size`, running `func`) -> Sink (collects into `got`),
    with `values` injected at Work and the net started in the background. Returns (net, {value:
    packet ID}); the caller closes the net."""
    import netrun
    from netrun.graphs import chain

    net = netrun.Net(chain("Source", "Work", "Sink"), db=str(tmp_path / "net.db"), on_error="continue",
                     process_pools={"p": {"size": size}})
    net.set_node_exec("Work", func)
    net.set_node_exec("Sink", collect(got))
    net.set_node_config("Work", pool="p", defer_net_actions=deferred)
    ids = {value: net.inject_packet("Work", "in", value) for value in values}
    net.start(threaded=True)
    return net, ids


def net_with_history_and_checkpoint(tmp_path: Path) -> Path:
    """Src -> A -> Sink on tmp_path/run.db with a history file: 5 values, one step, a checkpoint in
    tmp_path/ckpt taken while paused, then run to the end and closed. Returns the history file."""
    import netrun
    from netrun.graphs import chain

    from . import resume_nodes as rn

    history = tmp_path / "history.jsonl"
    net = netrun.Net(chain("Src", "A", "Sink"), db=tmp_path / "run.db", history_file=str(history))
    net.set_node_exec("A", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    for i in range(5):
        net.inject_packet("A", "in", i)
    net.run_step()
    net.pause()  # a checkpoint is taken while the net is paused
    net.save_checkpoint(tmp_path / "ckpt")
    net.start()
    net.close()
    return history


def run_more(net: Any) -> None:
    """One more value through a net made by `net_with_history_and_checkpoint` (resumed), then close it."""
    from . import resume_nodes as rn

    net.set_node_exec("A", rn.identity)
    net.set_node_exec("Sink", rn.swallow)
    net.inject_packet("A", "in", 99)
    net.start()
    net.close()
