"""`netrun ui`: watch, question and repair a net in the browser.

    server   binds the socket, runs uvicorn, opens a browser     (imports starlette, uvicorn)
    app      the routes, the safety checks, the write token      (starlette)
    queries  what each page reads: bounded, read-only, never unpickling
    layout   where the graph's nodes, ports and edges are drawn
    static/  the page, its script and its style: written here, served by the app, no CDN

The web stack is the optional extra `ui` (`pip install "netrun[ui]"`): nothing else in netrun
imports this package, and this module imports none of it, so `netrun ui` can say what is missing.
"""

from __future__ import annotations

import importlib

EXTRA = 'pip install "netrun[ui]"'
STACK = ("starlette", "uvicorn")


def missing_stack() -> list[str]:
    """The packages of the `ui` extra that cannot be imported here."""
    missing = []
    for name in STACK:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing
