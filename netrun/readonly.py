"""Read-only SQL over a net's database (`Net.query`).

Two guards: the connection is opened read-only, and an exec tracer refuses any statement
that is not a query (or a pragma that only reads) before SQLite runs it, with a clear
`ReadOnlyQueryError` instead of SQLite's own error.
"""

from __future__ import annotations

from typing import Any

import apsw

from .db import rows_as_dicts
from .errors import QueryError, ReadOnlyQueryError

# Pragmas that only read. Those in _LOOKUP_PRAGMAS take an argument (a table, an index);
# for every other pragma an argument, `name(value)` or `name = value`, sets something.
_LOOKUP_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "table_list", "index_list", "index_info", "index_xinfo", "foreign_key_list",
    "integrity_check", "quick_check",
})
_READ_PRAGMAS = _LOOKUP_PRAGMAS | {
    "user_version", "application_id", "page_count", "page_size", "freelist_count", "schema_version",
    "compile_options", "database_list", "function_list", "pragma_list", "collation_list", "module_list",
    "encoding", "journal_mode", "data_version",
}


def _refuse_writes(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
    """Exec tracer: let only read-only statements run (the connection is read-only too)."""
    text = sql.strip()
    words = text.split(None, 1)
    statement = words[0].upper() if words else ""
    allowed = statement in ("SELECT", "WITH", "EXPLAIN", "VALUES")
    if statement == "PRAGMA" and len(words) > 1 and "=" not in words[1]:
        name = words[1].split("(", 1)[0].strip().rstrip(";").split(".")[-1].lower()
        has_argument = "(" in words[1]
        allowed = name in (_LOOKUP_PRAGMAS if has_argument else _READ_PRAGMAS)
    if not allowed:
        raise ReadOnlyQueryError(f"Net.query is read-only; refused statement: {text[:200]}", sql=sql)
    return True



def read_query(reader: apsw.Connection, sql: str, params: tuple | list | dict = ()) -> list[dict]:
    """Run `sql` on the read-only connection; rows as dicts. Raises ReadOnlyQueryError for a write."""
    try:
        cursor = reader.cursor()
        cursor.exectrace = _refuse_writes
        return rows_as_dicts(cursor.execute(sql, params))
    except (apsw.ReadOnlyError, apsw.AuthError) as exc:
        raise ReadOnlyQueryError(f"Net.query is read-only; this statement would write: {sql.strip()[:200]}",
                                 sql=sql) from exc
    except (apsw.SQLError, apsw.BindingsError, apsw.ExecutionCompleteError, apsw.MismatchError,
            apsw.RangeError, apsw.TooBigError, apsw.ConstraintError, TypeError) as exc:
        raise QueryError(f"the query failed: {exc}; statement: {sql.strip()[:200]}", sql=sql) from exc
