"""The db group: what mediacanon needs in the Django database."""

from __future__ import annotations

import click

from mediacanon.cli.options import _load_map, config_option
from mediacanon.cli.output import _fail


@click.group()
def db() -> None:
    """The Django database: what mediacanon needs there."""


@db.command("grants")
@config_option
@click.option("--role", default="mediacanon", show_default=True, help="the functions' database role (the secret's username)")
@click.option("--database", default=None, help="also GRANT CONNECT on this database (where PUBLIC has lost it)")
@click.option("--django-schema", default="public", show_default=True, help="the schema holding Django's tables")
def db_grants(config: str, role: str, database: str | None, django_schema: str) -> None:
    """Print the least-privilege SQL for the functions' role: SELECT on the mapped tables, UPDATE on the mapped
    file columns only, mediacanon's own schema. Pipe it to psql as the database owner."""
    from mediacanon.adapters.grants import grants_script

    media_map = _load_map(config)
    try:
        script = grants_script(media_map, role, database=database, django_schema=django_schema)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(script, nl=False)


@db.command("indexes")
@config_option
@click.option("--django-schema", default="public", show_default=True, help="the schema holding Django's tables")
def db_indexes(config: str, django_schema: str) -> None:
    """Print the indexes the backfill's rows phase reads through: one per mapped file column, in the order S3
    lists keys (COLLATE "C"). CREATE INDEX CONCURRENTLY builds without locking writes; run it as the table's owner,
    outside a transaction (psql runs each statement on its own). Without them the rows phase works, slower: each
    range scans its table."""
    from mediacanon.adapters.db import key_order_index

    media_map = _load_map(config)
    for mapping in media_map.fields:
        click.echo(f"-- {mapping.name}")
        click.echo(key_order_index(mapping, django_schema).as_string(None))
