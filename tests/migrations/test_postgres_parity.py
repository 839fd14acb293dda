"""The PostgreSQL schema mirrors SQLite's: migrations with aligned versions, and after them the same
tables, views, columns (same order, matching types, same NOT NULL and keys) and indexes."""

from __future__ import annotations

import re

import apsw
import pytest

from netrun.migrate import latest_version, list_migrations, migrate
from netrun.pgconn import PgConnection, parse_url
from netrun.pgstore import migrate as migrate_postgres
from netrun.pgstore import schema_version

# SQLite's declared type -> PostgreSQL's (STRICT tables: every column has one of these).
TYPES = {"TEXT": "text", "INTEGER": "bigint", "BLOB": "bytea", "ANY": "bytea"}
# Where PostgreSQL's type differs for a reason: json here lets json_array_length() and ->> read it.
DIFFERENT = {("history_actions", "events"): "json"}


def sqlite_schema() -> dict:
    conn = apsw.Connection(":memory:")
    try:
        migrate(conn, ":memory:")
        tables = {}
        for name, type_ in conn.execute("SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') "
                                        "AND name NOT LIKE 'sqlite_%'"):
            columns = []
            for _cid, column, decl, notnull, _default, pk in conn.execute(f"PRAGMA table_info({name})"):
                columns.append((column, TYPES.get(decl, decl) if type_ == "table" else None,
                                bool(notnull or pk), bool(pk)))
            tables[name] = (type_, columns)
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index' "
                                               "AND sql IS NOT NULL")}
        return {"tables": tables, "indexes": indexes}
    finally:
        conn.close()


def postgres_schema(url: str) -> dict:
    conn = PgConnection(parse_url(url))
    try:
        migrate_postgres(conn)
        schema = conn.target.schema
        pg = conn.pg
        tables = {}
        for name, kind in pg.execute("SELECT table_name, table_type FROM information_schema.tables "
                                     "WHERE table_schema = $1", (schema,)):
            keys = {r[0] for r in pg.execute(
                "SELECT k.column_name FROM information_schema.table_constraints c "
                "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
                "WHERE c.table_schema = $1 AND c.table_name = $2 AND c.constraint_type = 'PRIMARY KEY'",
                (schema, name))}
            columns = []
            for column, data_type, nullable in pg.execute(
                    "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                    "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position", (schema, name)):
                view = kind == "VIEW"
                columns.append((column, None if view else data_type, not view and (nullable == "NO"),
                                not view and column in keys))
            tables[name] = ("view" if kind == "VIEW" else "table", columns)
        indexes = {r[0] for r in pg.execute("SELECT indexname FROM pg_indexes WHERE schemaname = $1", (schema,))
                   if not r[0].endswith(("_pkey", "_key"))}
        return {"tables": tables, "indexes": indexes, "version": schema_version(pg, schema)}
    finally:
        conn.close()


def test_migrations_are_aligned_version_for_version():
    sqlite, postgres = list_migrations(), list_migrations("postgres")
    assert [m.version for m in postgres] == [m.version for m in sqlite]
    # the same name after the number, so that a reader finds each one's twin
    assert [m.name for m in postgres] == [m.name for m in sqlite]
    for migration in postgres:
        assert re.search(rf"mirrors \.\./{re.escape(migration.name)}", migration.sql), migration.name


def test_the_postgres_schema_matches_sqlites_column_by_column(pg_url):
    lite, pg = sqlite_schema(), postgres_schema(pg_url)
    assert pg["version"] == latest_version()
    assert sorted(pg["tables"]) == sorted(lite["tables"])
    for table, (kind, columns) in lite["tables"].items():
        pg_kind, pg_columns = pg["tables"][table]
        assert pg_kind == kind, table
        expected = [(c, DIFFERENT.get((table, c), t), notnull, pk) for c, t, notnull, pk in columns]
        assert pg_columns == expected, table
    assert pg["indexes"] == lite["indexes"]


def test_migrating_twice_changes_nothing(pg_url):
    postgres_schema(pg_url)
    conn = PgConnection(parse_url(pg_url))
    try:
        assert migrate_postgres(conn) == latest_version()
    finally:
        conn.close()


@pytest.mark.parametrize("bad", ["Upper", "1net", "a-b", "x" * 64])
def test_a_net_name_must_be_an_identifier(bad):
    with pytest.raises(Exception, match="lowercase identifier"):
        parse_url(f"postgresql://u@h/db?net={bad}")
