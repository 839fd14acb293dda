"""What a durable chain epoch costs at the least, here: the floor under netrun's chain figures.

The chain Source -> A -> B -> Sink (tools/bench_runtime.py's chain) driven three ways (and netrun
stripped, below), each in its own subprocess, side by side in one run:

  sim       netrun-sim alone: the same actions netrun applies for each epoch (start, consume,
            create, load, send, finish), `run_until_blocked` once per batch, the backlog
            bounded as netrun bounds it, and each event's kind and IDs read once.
  durable   the same, plus the least a durable engine writes: one history row per action
            (its events as JSON), an epoch row and a packet row inserted and updated, the
            value stored, one commit per batch (group commit under durability NORMAL), and
            a node function called with a context object.
  netrun    netrun's own chain, defer_net_actions=True, durability normal (the figure the
            issue's >= 12,000 epochs/s is about).

"durable" has none of netrun's features (no checks, no timestamps per event, no IDs of its
own, no deferred queue rows, no recovery): it is a floor, not a competitor. The gap between
it and "netrun" is what netrun's own Python costs per epoch.

And netrun's chain again with its durable work taken away, a layer per case (by replacing
netrun's internals in the case's own process: a measurement, never a mode of the product):

  no-queue    no rows for the applied deferred queues (`deferred_actions`) nor the finished
              attempts (`epoch_attempts`);
  no-history  nor history rows (the actions are recorded, the Encoder writes nothing);
  no-writes   nor any row at all while the run goes on (commits write nothing; the injected work
              was committed before the clock starts);
  no-journal  nor any recording: the journal's record() returns at once. What is left is
              netrun's in-memory engine: the sim, the loop, the contexts and their checks, the
              start log.

Each of these cases checks that every value reached the sink. The gap between "no-journal" and
"sim" is netrun's in-memory Python; between "netrun" and "no-journal", what its durability costs.

    python tools/bench_floor.py                 # N = 1,000, 10,000, 100,000 values x 4 epochs
    python tools/bench_floor.py --sizes 10000 --json
    python tools/bench_floor.py --sizes 10000 --cases netrun no-queue no-history no-writes no-journal --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BATCH = 64  # epochs run between two run_until_blocked calls and between two commits


def _chain():
    sys.path.insert(0, ROOT)
    from netrun.graphs import chain
    return chain("Source", "A", "B", "Sink")


class _Writer:
    """The least a durable engine writes: rows buffered per batch, one executemany each, one commit."""

    def __init__(self, path: str) -> None:
        import apsw
        self.conn = apsw.Connection(path)
        self.conn.execute("PRAGMA journal_mode=WAL").fetchall()
        self.conn.execute("PRAGMA synchronous=NORMAL;"
                          "CREATE TABLE history (seq INTEGER PRIMARY KEY, action TEXT, epoch TEXT, events TEXT);"
                          "CREATE TABLE epochs (id TEXT PRIMARY KEY, node TEXT, state TEXT) WITHOUT ROWID;"
                          "CREATE TABLE packets (id TEXT PRIMARY KEY, state TEXT, value TEXT) WITHOUT ROWID;")
        self.history: list[tuple] = []
        self.epochs_new: list[tuple] = []
        self.epochs_done: list[tuple] = []
        self.packets_new: list[tuple] = []
        self.packets_done: list[tuple] = []

    def action(self, name: str, epoch, events: list) -> None:
        self.history.append((name, epoch, json.dumps([(e.kind, e.epoch_id, e.packet_id) for e in events])))

    def commit(self) -> None:
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT INTO history (action, epoch, events) VALUES (?, ?, ?)", self.history)
        c.executemany("INSERT INTO epochs VALUES (?, ?, 'startable')", self.epochs_new)
        c.executemany("UPDATE epochs SET state = 'finished' WHERE id = ?", self.epochs_done)
        c.executemany("INSERT INTO packets VALUES (?, 'live', ?)", self.packets_new)
        c.executemany("UPDATE packets SET state = 'consumed' WHERE id = ?", self.packets_done)
        c.execute("COMMIT")
        for rows in (self.history, self.epochs_new, self.epochs_done, self.packets_new, self.packets_done):
            rows.clear()


class _Ctx:
    """A node's view of its epoch: each call is one sim action (and, when durable, one history row)."""

    def __init__(self, drive, epoch_id: str, salvo) -> None:
        self.drive, self.epoch_id, self.salvo = drive, epoch_id, salvo

    def consume_packet(self, packet_id):
        self.drive.do("ConsumePacket", self.epoch_id, self.drive.A.consume_packet(packet_id))
        if self.drive.writer:
            self.drive.writer.packets_done.append((packet_id,))
        return self.drive.values.pop(packet_id)

    def create_packet(self, value):
        response = self.drive.do("CreatePacket", self.epoch_id, self.drive.A.create_packet(self.epoch_id))
        packet_id = str(response.packet_id)
        self.drive.values[packet_id] = value
        if self.drive.writer:
            self.drive.writer.packets_new.append((packet_id, json.dumps(value)))
        return packet_id

    def load_output_port(self, port, packet_id):
        self.drive.do("LoadPacketIntoOutputPort", self.epoch_id,
                      self.drive.A.load_packet_into_output_port(packet_id, port))

    def send_output_salvo(self, name):
        self.drive.do("SendOutputSalvo", self.epoch_id, self.drive.A.send_output_salvo(self.epoch_id, name))


class _Drive:
    """Runs the chain on a bare NetSim, BATCH epochs per run_until_blocked (and per commit)."""

    def __init__(self, durable: bool, path: str) -> None:
        import netrun_sim as ns
        sys.path.insert(0, HERE)
        import bench_nodes as b  # netrun's benchmark nodes, called with a bare context
        self.funcs = {"Source": b.source, "A": b.forward, "B": b.forward, "Sink": b.sink}
        self.ns, self.A = ns, ns.NetAction
        self.net = ns.NetSim(_chain())
        self.writer = _Writer(path) if durable else None
        self.values: dict = {}

    def do(self, name: str, epoch, action):
        response, events = self.net.do_action(action)
        for ev in events:  # each event read once, as any journal must
            ev.kind, ev.epoch_id, ev.packet_id
        if self.writer:
            self.writer.action(name, epoch, events)
        return response

    def run(self, values: int) -> None:
        ns, writer = self.ns, self.writer
        ready: list[tuple] = []
        injected = 0
        while injected < values or ready:
            while injected < values and len(ready) < BATCH:  # downstream first, the backlog bounded
                response = self.do("CreateEpoch", None, self.A.create_epoch("Source", ns.Salvo("default", [])))
                ready.append((str(response.epoch.id), "Source", []))
                if writer:
                    writer.epochs_new.append((str(response.epoch.id), "Source"))
                injected += 1
            batch, ready = ready[:BATCH], ready[BATCH:]
            for epoch_id, node, salvo in batch:
                self.do("StartEpoch", epoch_id, self.A.start_epoch(epoch_id))
                packets: dict[str, list] = {}
                for port, packet in salvo:
                    packets.setdefault(port, []).append(str(packet))
                self.funcs[node](_Ctx(self, epoch_id, salvo), packets)
                self.do("FinishEpoch", epoch_id, self.A.finish_epoch(epoch_id))
                if writer:
                    writer.epochs_done.append((epoch_id,))
            created = []
            events = self.net.run_until_blocked()
            if writer:
                writer.action("RunNetUntilBlocked", None, events)
            for ev in events:
                if ev.kind == "EpochCreated":
                    epoch = ev.epoch or self.net.get_epoch(ev.epoch_id)
                    created.append((str(ev.epoch_id), epoch.node_name, epoch.in_salvo.packets))
                    if writer:
                        writer.epochs_new.append((str(ev.epoch_id), epoch.node_name))
            ready = created + ready
            if writer:
                writer.commit()


STRIPPED = ("no-queue", "no-history", "no-writes", "no-journal")  # each leaves out what the ones before it do, and more


def _strip(layers: int) -> None:
    """Take away netrun's durable work, `layers` of STRIPPED (in its order)."""
    from netrun import epoch, historyrows, journal
    if layers >= 1:
        epoch.AttemptLoop._keep_queue = lambda self, attempt, actions, status: None
        record = epoch.AttemptLoop._record_attempt
        epoch.AttemptLoop._record_attempt = lambda self, attempt, started_at, outcome, *rest: (
            None if outcome == "finished" else record(self, attempt, started_at, outcome, *rest))
    if layers >= 2:
        historyrows.Encoder.write = lambda self, actions: None
    if layers >= 3:
        journal.Journal._write = lambda self, taken: None
    if layers >= 4:
        journal.Journal.record = lambda self, action, events, **fields: None


def _netrun(values: int, path: str, layers: int = 0) -> None:
    sys.path.insert(0, ROOT)
    sys.path.insert(0, HERE)
    import bench_nodes as b
    import netrun
    from netrun.graphs import chain
    net = netrun.Net(chain("Source", "A", "B", "Sink"), db=path, durability="normal", history_max_size=0)
    sink = b.timed_sink if layers else b.sink  # counts what arrives: a stripped netrun must still deliver
    for name, func in {"Source": b.source, "A": b.forward, "B": b.forward, "Sink": sink}.items():
        net.set_node_exec(name, func)
        net.set_node_config(name, capture_stdout=False, defer_net_actions=True)
    for _ in range(values):
        net.inject_source_epoch("Source")
    _strip(layers)
    _timed(net.start, values)
    if layers and len(b.SINK_TIMES) != values:
        raise SystemExit(f"{STRIPPED[layers - 1]}: {len(b.SINK_TIMES)} of {values} values reached the sink")
    net.close()


def _timed(run, values: int) -> None:
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    print(json.dumps({"epochs": 4 * values, "seconds": wall, "cpu_us_per_epoch": cpu / (4 * values) * 1e6,
                      "epochs_per_s": 4 * values / wall}))


def _child(case: str, values: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "floor.db")
        if case == "netrun" or case in STRIPPED:
            _netrun(values, path, STRIPPED.index(case) + 1 if case in STRIPPED else 0)
        else:
            drive = _Drive(case == "durable", path)
            _timed(lambda: drive.run(values), values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000], help="values per run")
    parser.add_argument("--cases", nargs="+", default=["sim", "durable", "netrun"],
                        choices=["sim", "durable", "netrun", *STRIPPED])
    parser.add_argument("--rounds", type=int, default=1,
                        help="alternating rounds of the cases (medians reported with every round's figure)")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "VALUES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child[0], int(args.child[1]))
        return 0
    for values in args.sizes:
        runs: dict[str, list[dict]] = {case: [] for case in args.cases}
        for _ in range(args.rounds):
            for case in args.cases:
                done = subprocess.run([sys.executable, __file__, "--child", case, str(values)], capture_output=True,
                                      text=True)
                if done.returncode:
                    raise SystemExit(f"case {case} (N={values}) failed:\n{done.stderr.strip()}")
                runs[case].append(json.loads(done.stdout.strip().splitlines()[-1]))
        for case, results in runs.items():
            result = {"case": case, "values": values,
                      **{key: statistics.median(r[key] for r in results) for key in results[0]}}
            if args.rounds > 1:
                result["rounds"] = [round(r["epochs_per_s"]) for r in results]
            if args.json:
                print(json.dumps(result), flush=True)
            else:
                rounds = f"  (rounds: {', '.join(f'{n:,}' for n in result['rounds'])})" if args.rounds > 1 else ""
                print(f"{case:10s} N={values:>7,}  {result['epochs_per_s']:>8,.0f} epochs/s  "
                      f"{result['cpu_us_per_epoch']:6.1f} us CPU per epoch{rounds}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
