"""Rows as data files: CSV, TSV, JSON (one array) or JSON lines, for `netrun sql` and `netrun export`.

Text stays text; None is an empty CSV/TSV cell and `null` in JSON; bytes (a BLOB a query
selected) are base64 text in CSV/TSV and `{"$base64": true, "encoded": ...}` in JSON, as
sqlite-utils writes them. `Json` marks a value that already is JSON text (a packet value, a
history record's data): JSON formats embed it as JSON, CSV/TSV keep its text.
"""

from __future__ import annotations

import base64
import csv
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

FORMATS = ("csv", "tsv", "json", "jsonl")
EXTENSIONS = {"csv": "csv", "tsv": "tsv", "json": "json", "jsonl": "jsonl"}


class Json(str):
    """A cell holding JSON text, embedded as JSON by the JSON formats."""


def _text_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _json_cell(value: Any) -> Any:
    if isinstance(value, Json):
        try:
            # NaN and Infinity are no JSON (damaged or foreign text): null, as JSON.stringify writes them
            return json.loads(value, parse_constant=lambda _name: None)
        except ValueError:  # damaged JSON text: kept as the text it is
            return str(value)
    if isinstance(value, bytes):
        return {"$base64": True, "encoded": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):  # a REAL cell of SQL's inf (1e999): JSON has none
        return None
    return value


def write_rows(stream: TextIO, columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> int:
    """Write `rows` (sequences in `columns` order) to `stream` in `fmt`; returns how many were written.

    CSV and TSV start with a header line; JSON is one array of objects (`[]` for no rows), JSON
    lines one object per line. Rows are streamed: a large table is never held in memory.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    count = 0
    if fmt in ("csv", "tsv"):
        writer = csv.writer(stream, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_text_cell(v) for v in row])
            count += 1
        return count
    if fmt == "json":
        stream.write("[")
    for row in rows:
        document = json.dumps({c: _json_cell(v) for c, v in zip(columns, row)}, ensure_ascii=False, default=str)
        if fmt == "json":
            stream.write(("," if count else "") + "\n  " + document)
        else:
            stream.write(document + "\n")
        count += 1
    if fmt == "json":
        stream.write("\n]\n" if count else "]\n")
    return count
