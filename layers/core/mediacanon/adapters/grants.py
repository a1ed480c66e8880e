"""The least privilege the functions need in the Django database, as a SQL script (`mediacanon db grants`).

From the media map alone, no connection: SELECT on each mapped table (rows are found by file column, slug,
id and tenant), UPDATE on the mapped file columns only (a slug, a name, anything else stays read-only), and
mediacanon's own schema (claims, ledger; see mediacanon.adapters.ledger) to create and write in. Identifiers are
composed with psycopg.sql, so odd table or role names are quoted, never pasted.

The script neither creates the role nor sets its password: the password belongs in the Secrets Manager
secret the functions read, not in a script printed to a terminal.
"""

from __future__ import annotations

from psycopg import sql

from mediacanon.core.mediamap import MediaMap

LEDGER_TABLES = ("claims", "ledger")  # mediacanon.adapters.ledger's tables (their sequences follow them)


def grants(media_map: MediaMap, role: str, *, database: str | None = None, django_schema: str = "public") -> list[sql.Composed]:
    """The statements, in order; `database` adds CONNECT on it (for clusters that revoke it from PUBLIC)."""
    who = sql.Identifier(role)
    statements: list[sql.Composed] = []
    if database:
        statements.append(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), who))

    # the Django tables: read every column (the schema check reads information_schema), update the file columns
    statements.append(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(django_schema), who))
    file_columns: dict[str, list[str]] = {}
    for mapping in media_map.fields:
        columns = file_columns.setdefault(mapping.table, [])
        if mapping.column not in columns:
            columns.append(mapping.column)
    read_only = {(m.table, c) for m in media_map.fields for c in (m.slug_column, m.id_column, m.tenant_column) if c}
    for table, columns in file_columns.items():
        clash = sorted(c for c in columns if (table, c) in read_only)
        if clash:  # mediacanon never writes a slug or an id: a map that says otherwise is wrong, not a grant to give
            raise ValueError(f"{table}: {', '.join(clash)} is both a file column and a slug/id/tenant column")
        qualified = sql.Identifier(django_schema, table)
        statements.append(sql.SQL("GRANT SELECT ON {} TO {}").format(qualified, who))
        statements.append(
            sql.SQL("GRANT UPDATE ({}) ON {} TO {}").format(sql.SQL(", ").join(map(sql.Identifier, columns)), qualified, who)
        )

    # mediacanon's own schema: created here by the administrator, so the role needs no CREATE on the database.
    # The ledger's tables are the role's own: it creates them on first use, or takes over those someone else
    # created first (Ledger.ensure's CREATE INDEX IF NOT EXISTS needs the table's owner)
    own = sql.Identifier(media_map.schema)
    statements += [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(own),
        sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(own, who),
        *(
            sql.SQL("ALTER TABLE IF EXISTS {} OWNER TO {}").format(sql.Identifier(media_map.schema, t), who)
            for t in LEDGER_TABLES
        ),
    ]
    return statements


def grants_script(media_map: MediaMap, role: str, *, database: str | None = None, django_schema: str = "public") -> str:
    """The statements as a psql-ready script, one transaction, with a header saying what it is for."""
    body = "\n".join(s.as_string(None) + ";" for s in grants(media_map, role, database=database, django_schema=django_schema))
    return (
        f"-- mediacanon: the least privilege of the functions' database role, for the media map {media_map.source}\n"
        f"-- Run as the database owner (psql -f), who must be able to SET ROLE to it (PostgreSQL 16: GRANT it to yourself).\n"
        f"-- Create the role first, with the password of the functions' secret:\n"
        f"--   CREATE ROLE {sql.Identifier(role).as_string(None)} LOGIN PASSWORD '...';\n"
        f"BEGIN;\n{body}\nCOMMIT;\n"
    )
