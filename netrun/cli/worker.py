"""`netrun worker`: run a net's remote-pool epochs in this process (netrun.remote)."""

from __future__ import annotations

import argparse
import signal

from ..remote import RemoteWorker, url_with
from .files import add_import_paths
from .numbers import count
from .output import Output, UsageError


def _with_net(url: str, net: str | None) -> str:
    """The URL with `?net=NAME` set (replacing one it has)."""
    return url if net is None else url_with(url, {"net": net})


def worker(args: argparse.Namespace, out: Output) -> int:
    if args.concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    add_import_paths(args.path)
    if args.reconnect_for < 0:
        raise UsageError("--reconnect-for must be 0 or more seconds")
    remote = RemoteWorker(_with_net(args.db, args.net), args.pool, concurrency=args.concurrency,
                          reconnect_for=args.reconnect_for)

    def stop(_signum: int, _frame: object) -> None:  # finish the jobs under way, report them, exit
        remote.stop.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if not out.json_mode:
            out.line(f"netrun: worker {remote.id} runs pool {args.pool!r} of {remote.store.label} "
                     f"(nodes: {', '.join(sorted(remote.configs)) or 'none'}); Ctrl-C or SIGTERM stops it")
        remote.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("worker", parents=[common], help="run a net's remote-pool epochs in this process",
                            description="Claim and run the epochs of a remote pool of the net in the database at "
                            "--db (a postgresql:// URL; this machine needs only to reach it). Node functions are "
                            "imported by their stored import paths (--path DIR adds a folder). Runs until Ctrl-C or "
                            "SIGTERM, which let the epochs under way finish and report.")
    p.add_argument("--db", required=True, metavar="URL", help="the net's database: postgresql://user@host:port/db")
    p.add_argument("--net", default=None, metavar="NAME", help="the net's name in that database (?net=NAME)")
    p.add_argument("--pool", required=True, metavar="NAME", help="the remote pool whose jobs to run")
    p.add_argument("--concurrency", type=count, default=1, metavar="N",
                   help="epochs run at once, one thread each (1)")
    p.add_argument("--path", action="append", metavar="DIR", help="a folder to import node functions from "
                   "(repeatable)")
    p.add_argument("--reconnect-for", type=float, default=60.0, metavar="SECONDS",
                   help="how long to keep trying to reach a database whose connection broke before giving up "
                   "with an error (60)")
    p.set_defaults(func=worker)
