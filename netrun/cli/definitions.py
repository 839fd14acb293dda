"""Commands over a net's definition: `graph` (as text) and `validate` (a TOML file)."""

from __future__ import annotations

import argparse
import os

from ..dialect import is_url
from ..checks import check_definition
from ..definition import read_definition
from ..graphtext import FORMATS, render_graph
from ..inspector import NetInspector
from .output import Output, UsageError, stdout_to_stderr
from .files import add_import_paths, existing_file

_SQLITE_HEADER = b"SQLite format 3\x00"


def _is_database(path: str) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(_SQLITE_HEADER)) == _SQLITE_HEADER


def graph(args: argparse.Namespace, out: Output) -> int:
    fmt = "json" if out.json_mode else args.format
    if is_url(args.source) or _is_database(existing_file(args.source, "a TOML definition or a database file")):
        with NetInspector(args.source) as net:
            node_meta, edge_meta = net.definition_meta()
            text = render_graph(net.graph, fmt, node_meta=node_meta, edge_meta=edge_meta)
    else:
        add_import_paths(args.path, os.path.dirname(os.path.abspath(args.source)))
        with stdout_to_stderr(out):  # what the node modules print as they are imported is no part of the graph
            definition = read_definition(args.source)
        text = render_graph(definition.graph, fmt, node_meta=definition.notes.node_meta,
                            edge_meta=definition.notes.edge_meta)
    out.console.file.write(text)
    return 0


def validate(args: argparse.Namespace, out: Output) -> int:
    if not is_url(args.net) and _is_database(existing_file(args.net, "a TOML definition")):
        raise UsageError(f"{args.net} is a database file, not a TOML definition: a net's database holds its "
                         f"definition already (`netrun graph {args.net}` shows it)")
    add_import_paths(args.path, os.path.dirname(os.path.abspath(args.net)))
    with stdout_to_stderr(out):  # what the node modules print as they are imported is no part of the report
        checked = check_definition(existing_file(args.net, "a TOML definition"))
    definition = checked.definition
    report = {"file": args.net, "valid": definition is not None,
              "errors": [{"line": e.line, "column": e.column, "message": str(e)} for e in checked.errors],
              "warnings": [{"line": w.line, "message": w.message} for w in checked.warnings]}
    if definition is not None:
        report |= {"nodes": sorted(definition.nodes), "edges": len(definition.graph.edges()),
                   "functions": {name: sorted(node.functions) for name, node in sorted(definition.nodes.items())
                                 if node.functions}}
    if out.json_mode:
        out.json(report)
        return 0 if definition is not None else 1
    for error in checked.errors:
        out.note(f"error: {error}", style="red")
    for warning in checked.warnings:
        out.note(str(warning))
    if definition is None:
        return 1
    nodes, edges = len(report["nodes"]), report["edges"]
    if not nodes:
        out.note(f"{args.net} defines no nodes: there is nothing to run")
    names = f" ({', '.join(report['nodes'])})" if nodes else ""
    warned = len(checked.warnings)
    out.line(f"{args.net}: valid — {nodes} node{'s' * (nodes != 1)}{names}, "
             f"{edges} edge{'s' * (edges != 1)}; every function imported"
             + (f"; {warned} warning{'s' * (warned != 1)}" if warned else ""))
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    paths = argparse.ArgumentParser(add_help=False)
    paths.add_argument("--path", action="append", metavar="DIR", help="a folder to import node functions from "
                       "(repeatable; the definition's folder and the current one are always searched)")
    p = commands.add_parser("graph", parents=[common, paths], help="the graph as Mermaid, DOT or JSON text",
                            description="Print a net's graph, from a TOML definition or a database file, as "
                            "Mermaid (paste into Markdown), DOT (pipe to `dot -Tsvg`) or JSON.")
    p.add_argument("source", help="NET.toml or a database file")
    p.add_argument("--format", choices=FORMATS, default="mermaid", help="mermaid (default), dot or json")
    p.set_defaults(func=graph)

    p = commands.add_parser("validate", parents=[common, paths], help="check a TOML definition",
                            description="Check a TOML definition without running it: syntax, options, ports, "
                            "salvo expressions, functions (imported), factories and edges. Every error is listed "
                            "with its file and line, then warnings (unconnected ports, nodes without an exec "
                            "function, nodes no source node reaches). Exit code 1 for errors only.")
    p.add_argument("net", help="the net's TOML definition")
    p.set_defaults(func=validate)
