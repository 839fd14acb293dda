"""Short packet and epoch IDs for people: shown in tables, accepted wherever an ID is asked for.

A netrun ID is a 26-character ULID: 10 characters of time (milliseconds), 16 random. Tables
show `01J9ZK3M~WXYZ` (the first 8 and the last 4 characters; `~` is not a ULID character and a
double click selects the whole word), so an ID never wraps at 80 columns and can be copied into
`trace`, `value`, `history --packet`... `--json` always prints full IDs.

An ID given on the command line may be the full ID, a prefix of at least `MIN_PREFIX`
characters, or a shown short form (`PREFIX~SUFFIX`; `..` or `…` also separate the two): it
must match exactly one stored ID. Lookups are range scans of the primary key, never a scan of
the table.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import NotFoundError

ULID_LENGTH = 26
MIN_PREFIX = 4
SEPARATOR = "~"
_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")
_SPLIT = re.compile(r"~|\.\.|…")
_SHOWN_CANDIDATES = 5
TABLES = {"packet": "packets", "epoch": "epochs"}  # kind -> the table whose `id` it names

Rows = Callable[[str, tuple], list[dict]]


def short_id(value: str) -> str:
    """`value` shortened for a table when it is a ULID, else as it is."""
    if isinstance(value, str) and _ULID.fullmatch(value):
        return f"{value[:8]}{SEPARATOR}{value[-4:]}"
    return value


def resolve_id(rows: Rows, kind: str, text: str, *, path: str = "") -> str:
    """The full ID of the `kind` ("packet" or "epoch") that `text` names (full, prefix or short form).

    Raises NotFoundError naming `text`: no such ID, or it matches several (listed, with a hint).
    """
    table = TABLES[kind]
    where = f"{path}: " if path else ""
    prefix, *rest = _SPLIT.split(text.strip(), maxsplit=1)
    prefix, suffix = prefix.upper(), (rest[0].upper() if rest else "")
    if not rest and len(prefix) >= ULID_LENGTH:
        if rows(f"SELECT id FROM {table} WHERE id = ?", (prefix,)):
            return prefix
        raise NotFoundError(f"{where}no {kind} {text!r} in this net", **{f"{kind}_id": text})
    if len(prefix) < MIN_PREFIX or len(prefix) + len(suffix) > ULID_LENGTH:
        raise NotFoundError(f"{where}{kind} ID {text!r} is too short to look up: give at least its first "
                            f"{MIN_PREFIX} characters, or the short form a table shows (such as 01J9ZK3M~WXYZ)",
                            **{f"{kind}_id": text})
    found = [r["id"] for r in rows(
        f"SELECT id FROM {table} WHERE id >= ? AND id < ? AND substr(id, ?) = ? ORDER BY id LIMIT ?",
        (prefix, prefix + "\x7f", ULID_LENGTH - len(suffix) + 1, suffix, _SHOWN_CANDIDATES + 1))]
    if len(found) == 1:
        return found[0]
    if not found:
        raise NotFoundError(f"{where}no {kind} {text!r} in this net (no {kind} ID starts with {prefix}"
                            + (f" and ends with {suffix})" if suffix else ")"), **{f"{kind}_id": text})
    listed = ", ".join(found[:_SHOWN_CANDIDATES]) + (", ..." if len(found) > _SHOWN_CANDIDATES else "")
    raise NotFoundError(f"{where}{kind} ID {text!r} is ambiguous: it matches {listed}; give more characters "
                        "(or the full ID: --json prints full IDs)", **{f"{kind}_id": text})
