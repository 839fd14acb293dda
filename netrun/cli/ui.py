"""`netrun ui`: the web page over a net's database file (the optional extra `ui`)."""

from __future__ import annotations

import argparse
import sys

from .numbers import count
from .output import Output, UsageError


def ui(args: argparse.Namespace, out: Output) -> int:
    from ..ui import EXTRA, missing_stack  # the extra's own imports wait until it is known to be there

    missing = missing_stack()
    if missing:
        print(f"netrun ui: the web page needs the optional extra 'ui' ({', '.join(missing)} missing here); "
              f"install it with: {EXTRA}", file=sys.stderr)
        return 1
    if args.port > 65535:
        raise UsageError(f"ui: --port must be between 0 and 65535, not {args.port}")
    from ..ui.server import serve

    return serve(args.file, host=args.host, port=args.port, open_browser=args.open, allow_writes=args.allow_writes,
                 say=lambda text: print(text, flush=True))


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("ui", help="a web page to watch, question and repair a net (the extra netrun[ui])",
                            description="Serve a web page over the net's database file: the graph with live counts, "
                            "epochs, packets and their lineage, history, logs, dead letters and a read-only SQL box. "
                            "Read-only unless --allow-writes. Needs the optional extra: pip install \"netrun[ui]\".")
    p.add_argument("file", help="the net's database file (running in another process, stopped or finished)")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (127.0.0.1: this machine only; "
                   "any other address is warned about)")
    p.add_argument("--port", type=count, default=8700, help="the port (8700; 0 picks a free one)")
    p.add_argument("--open", action="store_true", help="open the page in a browser")
    p.add_argument("--allow-writes", action="store_true", help="let the page replay and discard dead letters (with "
                   "a token made for this start); without it the page has no write path at all")
    p.set_defaults(func=ui)
