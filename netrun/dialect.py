"""SQL that the two stores cannot share: the PostgreSQL text of a few SQLite statements.

Netrun's statements are written once, in SQLite's dialect, where both dialects accept them; the
PostgreSQL connection (netrun.pgconn) translates the small differences mechanically (`?`
placeholders, `iif`, `INSERT OR REPLACE`, `CROSS JOIN ... ON`). A statement that needs more than
that (a JSON table function, a pragma) registers its PostgreSQL text here, beside its SQLite text
in the module that owns it: `POSTGRES[sqlite_text] = postgres_text`. The SQLite path never reads
this map.
"""

from __future__ import annotations

POSTGRES: dict[str, str] = {}
URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(db: object) -> bool:
    """Whether `db` names a PostgreSQL database (a `postgresql://` URL) rather than a file."""
    return isinstance(db, str) and db.startswith(URL_SCHEMES)


def register(sqlite: str, postgres: str) -> str:
    """Give the SQLite statement `sqlite` its PostgreSQL text; returns `sqlite` (for assignment)."""
    POSTGRES[sqlite] = postgres
    return sqlite
