"""`netrun export`: a net's tables as CSV, TSV, JSON or JSON lines files (read-only, with sqlite-utils)."""

from __future__ import annotations

import argparse

from ..inspector import NetInspector
from ..tabular import FORMATS
from .output import Output, UsageError


def export(args: argparse.Namespace, out: Output) -> int:
    from ..export import export_folder, export_table  # sqlite-utils takes ~80 ms to import: only export pays it

    fmt = "json" if out.json_mode else args.format
    with NetInspector(args.file):  # the same checks as every read: a foreign, newer or damaged file is refused
        pass
    if args.table is None:
        if args.output is None:
            raise UsageError("export: without --table, every table is written into a folder: give -o FOLDER")
        counts = export_folder(args.file, args.output, fmt)
        out.note(f"exported {len(counts)} tables ({sum(counts.values())} rows) into {args.output}/", style="dim")
        return 0
    written = export_table(args.file, args.table, fmt, output=args.output)
    if args.output is not None:
        out.note(f"exported {written} rows of {args.table} to {args.output}", style="dim")
    return 0


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = commands.add_parser("export", parents=[common], help="tables as CSV, TSV, JSON or JSON lines files",
                            description="Export a net's tables (read-only): one table to a file or stdout, or every "
                            "table into a folder. Pickled values are exported as their preview, never unpickled.")
    p.add_argument("file", help="the net's database file")
    p.add_argument("--table", metavar="TABLE", help="the table to export (history, epochs, packets, dead_letters, "
                   "node_logs...); without it, every table, into the folder -o names")
    p.add_argument("--format", choices=FORMATS, default="csv", help="csv (default), tsv, json (one array) or jsonl "
                   "(one object per line); --json is --format json")
    p.add_argument("-o", "--output", metavar="OUT", help="the file to write (with --table; default: stdout) or the new "
                   "folder (without --table: one TABLE.FORMAT file per table)")
    p.set_defaults(func=export)
