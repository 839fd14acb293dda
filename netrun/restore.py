"""Resuming a net from its database file, without replaying history.

The tables hold the net's state; this module rebuilds a fresh netrun-sim from them:
packets on edges and at input ports, each startable epoch with exactly its salvo. The
sim issues new IDs; `Sim` maps them to the stable netrun IDs stored in the tables.

Epochs that were running when the process stopped follow DESIGN.md's crash semantics:
- a deferred node's epoch committed nothing of its work: it is startable again;
- any other epoch is cancelled, and every packet still inside it (inputs, created
  packets, loaded outputs) is dead-lettered with reason 'interrupted', value included; so
  is every value it had consumed (kept stored until its end).
Both are journaled as netrun actions (`RecoverEpoch`, `CancelInterruptedEpoch`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import netrun_sim as ns

import apsw

from . import port_types
from .config import NodeConfig
from .db import open_connection
from .deadletters import DeadLetterQueue
from .errors import ConfigError, CorruptDatabase, NotANetrunDatabase, StorageError
from .graphio import graph_from_data
from .factories import import_from_path
from .history import HistoryLog
from .journal import Journal
from .sim import Event, Sim
from .host import NodeFunctions
from .intents import read_intents, read_server_intents, remove_intents
from .values import ValueStore

INTERRUPTED = "interrupted: the process stopped while the epoch was running"


class RestoreOwner(Protocol):
    """The owner's operations a resume calls: only the owner changes its settings and run state."""

    def configure(self, node: str, config: NodeConfig | None, types: dict[str, dict] | None,
                  funcs: NodeFunctions | None) -> None: ...
    def track(self, events: list[Event]) -> None: ...
    def add_attempts(self, done: dict[str, int]) -> None: ...
    def apply_stored_result(self, epoch_id: str, payload: bytes) -> bool: ...


@dataclass(kw_only=True, eq=False)
class Restorer:
    """Rebuilds a fresh owner's sim and settings from the file at `path`. It reads the owner's
    `configs` and changes the rest through `owner` (`RestoreOwner`)."""

    path: str
    journal: Journal
    values: ValueStore
    sim: Sim
    graph_nodes: dict[str, ns.Node]
    configs: Mapping[str, NodeConfig]
    history: HistoryLog
    dead_letters: DeadLetterQueue
    owner: RestoreOwner
    unrestored: dict[str, list[str]] = field(default_factory=dict)  # node -> roles not imported

    @property
    def conn(self) -> apsw.Connection:
        return self.journal.conn

    def restore(self) -> dict[str, list[str]]:
        """Rebuild node settings and sim state. Returns node -> roles whose function could not be imported."""
        try:
            # first: the file catches up with the table before the records the crash semantics add
            # below are committed (the commit hook queues those for the file after the caught-up ones)
            self.history.catch_up(self.conn)
            self._settings()
            results = dict(self.conn.execute("SELECT epoch_id, payload FROM epoch_results").fetchall())
            self._recover_started()
            self._recover_running(set(results))
            self._rebuild_sim()
            self._apply_results(results)
            self.journal.commit()
        except apsw.CorruptError as exc:
            raise CorruptDatabase(f"{self.path} is damaged and cannot be resumed: {exc}", path=self.path) from exc
        return self.unrestored

    def _settings(self) -> None:
        rows = self.conn.execute("SELECT node_name, config, functions, port_types FROM node_settings").fetchall()
        for node, config, functions, types in rows:
            if node not in self.graph_nodes:
                continue
            options = json.loads(config)
            settings = NodeConfig(**options) if options else None
            stored_types = json.loads(types)
            typed = None
            if any(stored_types.values()):
                typed = {side: {port: port_types.from_data(data, where=f"{self.path}: node {node!r} port {port!r}")
                                for port, data in stored_types.get(side, {}).items()}
                         for side in ("in", "out")}
            funcs = NodeFunctions()
            for role, path in json.loads(functions).items():
                try:
                    setattr(funcs, role, import_from_path(path))
                except ConfigError:
                    self.unrestored.setdefault(node, []).append(role)
            found = any((funcs.exec, funcs.start, funcs.stop, funcs.failed))
            self.owner.configure(node, settings, typed, funcs if found else None)

    def _recover_running(self, with_results: set[str]) -> None:
        running = self.conn.execute(
            "SELECT id, node_name FROM epochs WHERE state = 'running' ORDER BY id").fetchall()
        for epoch_id, node in running:
            if epoch_id in with_results:
                # A pool worker finished it before the stop: rebuilt startable, then its result applies.
                self.journal.add("UPDATE epochs SET state = 'startable' WHERE id = ?", (epoch_id,))
                continue
            if node in self.configs and self.configs[node].defer_net_actions:
                # Not counted as a death: async and pool epochs run many at once, and a kill of the
                # whole process is none of theirs (a sync epoch's death is in <db>-starts).
                self.journal.record("RecoverEpoch", [], epoch_id=epoch_id, node_name=node,
                                    data={"reason": "deferred epoch interrupted: runs again"})
                self.journal.add("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (epoch_id,))
                continue
            self._cancel_interrupted(epoch_id, node)
        # Jobs whose epoch is startable again (claimed or queued when the process stopped) are
        # queued afresh by the runtime; jobs of interrupted epochs end 'cancelled'.
        self.journal.add("DELETE FROM epoch_jobs WHERE state != 'done' AND epoch_id IN "
                         "(SELECT id FROM epochs WHERE state = 'startable') "
                         "AND epoch_id NOT IN (SELECT epoch_id FROM epoch_results)", ())

    def _recover_started(self) -> None:
        """Epochs whose start only the intents file knows (see netrun.intents): cancelled, and their
        input packets the database still holds live dead-lettered 'interrupted'. A deferred sync epoch
        that was running when the process died (the file's last line) has its death counted."""
        server = getattr(self.conn, "dialect", None) == "postgres"
        intents = read_server_intents(self.conn) if server else read_intents(self.path)
        dying = intents[-1] if intents and intents[-1].kind == "deferred" else None
        if dying is not None:
            row = self.conn.execute("SELECT state FROM epochs WHERE id = ?", (dying.epoch_id,)).fetchone()
            if row is not None and row[0] in ("startable", "running"):  # (one never committed is made again)
                self._died(dying.epoch_id, dying.node_name, dying.started_at)
        seen: set[str] = set()
        lettered: set[str] = set()
        for intent in intents:
            if intent.epoch_id in seen:
                continue  # (a line written twice)
            seen.add(intent.epoch_id)
            row = self.conn.execute("SELECT state FROM epochs WHERE id = ?", (intent.epoch_id,)).fetchone()
            if row is not None and row[0] != "startable":
                continue  # its start was committed after all: the usual recovery applies
            if intent.kind == "deferred":
                continue  # its death, if it was running, is counted above
            ports = {packet: port for port, packet in intent.packets}
            live = [packet for packet in self._live(ports) if packet not in lettered]
            lettered.update(live)
            self._end_epoch(intent.epoch_id, intent.node_name, ports, live, action="CancelInterruptedEpoch",
                            reason="interrupted", error=INTERRUPTED, error_type="Interrupted",
                            known=row is not None)
        if server:
            self.journal.add("DELETE FROM net_meta WHERE key = 'dying'", ())
        self.journal.commit()
        if not server:
            remove_intents(self.path)

    def _died(self, epoch_id: str, node: str, started_at: str | None) -> None:
        """A deferred epoch whose process died while its code ran: the death is counted as a failed
        attempt (error type WorkerLost), wherever it ran and across resumes; it runs again until it
        died more than `retries + 1` times (as in a pool): then it fails, its input packets
        dead-lettered. (A single crash of the whole process must not fail a deferred epoch: it
        runs again, DESIGN.md's crash semantics.)"""
        retries = self.configs[node].retries if node in self.configs else 0
        attempt, deaths = self.conn.execute(
            "SELECT coalesce(max(attempt) + 1, 0), count(*) FILTER (WHERE error_type = 'WorkerLost') "
            "FROM epoch_attempts WHERE epoch_id = ?", (epoch_id,)).fetchone()
        deaths += 1
        error = (f"WorkerLost: the process died while epoch {epoch_id} of node {node!r} ran ({deaths} time(s); "
                 f"it fails once it died more than retries + 1 = {retries + 1} times)")
        now = self.journal.now()
        self.journal.add("INSERT INTO epoch_attempts (epoch_id, attempt, node_name, started_at, finished_at, outcome, "
                         "error, error_type) VALUES (?, ?, ?, ?, ?, 'failed', ?, 'WorkerLost')",
                         (epoch_id, attempt, node, started_at or now, now, error))
        if deaths <= retries + 1:
            self.journal.record("RecoverEpoch", [], epoch_id=epoch_id, node_name=node,
                                data={"reason": f"deferred epoch interrupted (death {deaths}): runs again"})
            self.journal.add("UPDATE epochs SET state = 'startable', started_at = NULL WHERE id = ?", (epoch_id,))
            return
        ports = self._salvo_ports(epoch_id)
        self._end_epoch(epoch_id, node, ports, self._live(ports), action="FailDeadEpoch", reason="failed",
                        error=error, error_type="WorkerLost", state="failed")

    def _cancel_interrupted(self, epoch_id: str, node: str) -> None:
        ports = self._salvo_ports(epoch_id)
        inside = [row[0] for row in self.conn.execute(
            "SELECT id FROM packets WHERE state = 'live' AND location IN ('node', 'output_port') AND epoch_id = ?",
            (epoch_id,))]
        # Values it consumed are stored until its end: a consumed packet of the epoch whose value row is
        # not a kept one (consumed_seq is set when kept) was held by it.
        held = [row[0] for row in self.conn.execute(
            "SELECT p.id FROM packet_values v CROSS JOIN packets p ON p.id = v.packet_id "  # values are fewer
            "WHERE v.consumed_seq IS NULL AND p.epoch_id = ? AND p.state = 'consumed' ORDER BY p.id", (epoch_id,))]
        self._end_epoch(epoch_id, node, ports, inside, action="CancelInterruptedEpoch", reason="interrupted",
                        error=INTERRUPTED, error_type="Interrupted", also_lettered=held)
        self.journal.add("UPDATE epoch_jobs SET state = 'done', done_at = ?, outcome = 'cancelled' "
                         "WHERE epoch_id = ? AND state != 'done'", (self.journal.now(), epoch_id))

    def _salvo_ports(self, epoch_id: str) -> dict[str, str]:
        """The epoch's input packets as stored: packet ID -> input port."""
        salvo = self.conn.execute("SELECT salvo FROM epochs WHERE id = ?", (epoch_id,)).fetchone()[0]
        return {packet: port for port, packet in json.loads(salvo or "[]")}

    def _live(self, packets: Iterable[str]) -> list[str]:
        return [p for p in packets
                if self.conn.execute("SELECT 1 FROM packets WHERE id = ? AND state = 'live'", (p,)).fetchone()]

    def _end_epoch(self, epoch_id: str, node: str, ports: dict[str, str], destroyed: list[str], *, action: str,
                   reason: str, error: str, error_type: str, state: str = "cancelled", known: bool = True,
                   also_lettered: list[str] = ()) -> None:
        """End an epoch in the file, before the sim is rebuilt: `destroyed` packets (and the values it held,
        `also_lettered`) go to the dead letters with `reason`; the epoch row (when the file `known`s it)
        gets `state` and the error; injected work of it still in the inbox is dropped."""
        events = [Event("PacketDestroyed", epoch_id, packet, node) for packet in destroyed]
        if known:
            events.append(Event("EpochCancelled", epoch_id, None, node))
        self.journal.record(action, events, epoch_id=epoch_id, node_name=node, data={"reason": reason})
        keep = self.configs[node].dead_letter_queue if node in self.configs else True
        for packet in [*also_lettered, *destroyed]:
            stored = self.values.discard(packet)
            if keep:
                self.dead_letters.record(packet_id=packet, node_name=node, port_name=ports.get(packet),
                                         epoch_id=epoch_id, reason=reason, error=error, stored=stored)
        for item in (*destroyed, epoch_id):
            self.journal.add("DELETE FROM inbox WHERE item_id = ?", (item,))
        if known:
            self.journal.set_epoch_error(epoch_id, state, error, error_type)

    def _apply_results(self, results: dict[str, bytes]) -> None:
        """Results written by pool workers but not yet applied when the process stopped."""
        for epoch_id, payload in sorted(results.items()):
            if not self.owner.apply_stored_result(epoch_id, payload):
                # The epoch ended otherwise (e.g. timed out): a late result has nothing to apply to.
                self.journal.add("DELETE FROM epoch_results WHERE epoch_id = ?", (epoch_id,))

    def _rebuild_sim(self) -> None:
        sim = self.sim
        self.journal.commit()  # the recovery above is on disk before the sim is rebuilt from disk
        # Attempts already recorded keep their numbers; the retry budget goes on from there (an epoch
        # recovered above, or one made startable again after an interrupt).
        self.owner.add_attempts(dict(self.conn.execute(
            "SELECT a.epoch_id, max(a.attempt) + 1 FROM epochs e JOIN epoch_attempts a ON a.epoch_id = e.id "
            "WHERE e.state = 'startable' GROUP BY a.epoch_id").fetchall()))
        admitted_inbox = "SELECT item_id FROM inbox"
        epochs = self.conn.execute(
            f"SELECT id, node_name, salvo_condition, salvo FROM epochs WHERE state = 'startable' "
            f"AND id NOT IN ({admitted_inbox}) ORDER BY id").fetchall()
        for epoch_id, node, condition, salvo in epochs:
            packets = [(port, packet) for port, packet in json.loads(salvo or "[]")]
            for port, packet in packets:
                sim.create_packet(None, netrun_id=packet)
                sim.move_to_input_port(packet, node, port)
            _, events = sim.create_epoch(node, condition or "inject", packets, netrun_id=epoch_id)
            self.owner.track(events)
        edges = {(e.source.node_name, e.source.port_name, e.target.node_name, e.target.port_name): e
                 for e in sim.graph.edges()}
        live = self.conn.execute(
            f"SELECT id, location, node_name, port_name, from_node, from_port FROM packets "
            f"WHERE state = 'live' AND location IN ('input_port', 'edge') AND id NOT IN ({admitted_inbox}) "
            f"ORDER BY id").fetchall()
        for packet, location, node, port, from_node, from_port in live:
            sim.create_packet(None, netrun_id=packet)
            if location == "input_port":
                sim.move_to_input_port(packet, node, port)
            else:
                sim.move_to_edge(packet, edges[(from_node, from_port, node, port)])


def read_meta(path: str) -> dict[str, str]:
    """The `net_meta` rows, read through a read-only connection."""
    conn = open_connection(path, readonly=True)
    try:
        return dict(conn.execute("SELECT key, value FROM net_meta").fetchall())
    except apsw.Error as exc:
        raise CorruptDatabase(f"{path}: cannot read the stored net: {exc}", path=path) from exc
    finally:
        conn.close()


def stored_graph(path: str, meta: dict[str, str]) -> ns.Graph:
    if "graph" not in meta or "config" not in meta:
        raise NotANetrunDatabase(f"{path} holds no netrun net (no stored graph)", path=path)
    try:
        graph = graph_from_data(json.loads(meta["graph"]))
    except (ValueError, KeyError, TypeError, IndexError, ns.NetrunError) as exc:
        raise StorageError(f"{path}: the stored graph cannot be read: {exc}", path=path) from exc
    problems = graph.validate()
    if problems:
        raise StorageError(f"{path}: the stored graph fails validation: " + "; ".join(p.message for p in problems),
                           path=path)
    return graph
