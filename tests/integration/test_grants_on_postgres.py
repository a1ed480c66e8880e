"""`mediacanon db grants` applied to a real PostgreSQL: the functions' operations work under the role it grants,
and what they never do (write a slug, a name, another table) is refused."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from mediacanon.adapters.db import Database, Swap
from mediacanon.adapters.grants import grants_script
from mediacanon.adapters.ledger import Ledger
from mediacanon.core import mediamap
from mediacanon.core.errors import PermanentError

pytestmark = pytest.mark.integration


@pytest.fixture
def functions_role(archive_db: str) -> Iterator[tuple[str, str]]:
    """A login role with nothing granted yet: (role name, its conninfo to the archive database)."""
    role, password = f"mc_fn_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with psycopg.connect(archive_db, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))
    yield role, make_conninfo(archive_db, user=role, password=password)
    with psycopg.connect(archive_db, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(make_conninfo(archive_db, dbname="postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def media_map(archive_map: Callable[..., dict[str, Any]]) -> mediamap.MediaMap:
    return mediamap.parse(archive_map("archive-media", "archive-cdn"))


def _apply(admin_conninfo: str, script: str) -> None:
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        admin.execute(script.encode())  # psql -f would do the same: the script is its own transaction


def test_the_functions_work_under_the_granted_role_and_nothing_more(
    archive_db: str, functions_role: tuple[str, str], media_map: mediamap.MediaMap
) -> None:
    role, role_conninfo = functions_role
    with psycopg.connect(archive_db, autocommit=True) as admin:
        admin.execute("INSERT INTO archive_publicationsource (slug, name, icon) VALUES ('nytimes', 'NYT', 'icons/nyt_v2.png')")
    icon = media_map.field("archive.PublicationSource.icon")

    # before the grants the role sees no table at all
    with Database(role_conninfo) as db, pytest.raises(PermanentError, match="may not see it"):
        db.rows_referencing(icon, ["icons/nyt_v2.png"])

    _apply(archive_db, grants_script(media_map, role, database=str(conninfo_to_dict(archive_db)["dbname"])))

    with Database(role_conninfo) as db:
        ledger = Ledger(db, media_map.schema)
        assert db.check_field(icon) == 100
        (row,) = db.rows_referencing(icon, ["icons/nyt_v2.png"])["icons/nyt_v2.png"]
        assert db.rows_by_slug(icon, ["nytimes"])["nytimes"].id == row.id
        assert [r.slug for r in db.iter_rows(icon)] == ["nytimes"]
        assert ledger.claim("icons/nytimes.png", "icons/nyt_v2.png", "etag-1") == "icons/nyt_v2.png"
        assert ledger.claim("icons/nytimes.png", "icons/other.png", "etag-2", take_over=True) == "icons/other.png"
        changed = ledger.link(
            icon,
            [Swap(row.id, "icons/nyt_v2.png", "icons/nytimes.png")],
            source_key="icons/nyt_v2.png",
            canonical_key="icons/nytimes.png",
            etag="etag-1",
            sequencer="0A",
        ).rows_changed
        assert changed == 1
        ledger.mark_retired("icons/nyt_v2.png", key="icons/nytimes.png")
        assert ledger.link_guard("icons/nytimes.png", "icons/nyt_v2.png", "etag-1").latest_sequencer == "0A"
        (entry,) = ledger.entries()
        assert entry.retired_at is not None
        with db.connection() as conn, conn.transaction():
            ledger.mark_rolled_back(entry.id, conn=conn)

        # what the functions never do is refused: the slug, other columns, deleting rows, other tables
        for statement in (
            "UPDATE archive_publicationsource SET slug = 'x'",
            "UPDATE archive_publicationsource SET name = 'x'",
            "DELETE FROM archive_publicationsource",
            "INSERT INTO archive_publicationsource (slug) VALUES ('new')",
            "CREATE TABLE public.mediacanon_was_here (id int)",
        ):
            with db.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)

    with psycopg.connect(archive_db, autocommit=True) as admin:
        assert admin.execute("SELECT slug, name, icon FROM archive_publicationsource").fetchall() == [
            ("nytimes", "NYT", "icons/nytimes.png")
        ]


def test_the_script_also_grants_mediacanon_tables_created_by_someone_else(
    archive_db: str, functions_role: tuple[str, str], media_map: mediamap.MediaMap
) -> None:
    role, role_conninfo = functions_role
    with Database(archive_db) as owner_db:  # e.g. the CLI, run once as the database owner, created the ledger
        Ledger(owner_db, media_map.schema).ensure()
    _apply(archive_db, grants_script(media_map, role))
    with Database(role_conninfo) as db:
        ledger = Ledger(db, media_map.schema)
        assert ledger.claim("icons/bbc.png", "icons/bbc_logo.png", None) == "icons/bbc_logo.png"
        assert ledger.entries() == []


def test_the_script_runs_twice(archive_db: str, functions_role: tuple[str, str], media_map: mediamap.MediaMap) -> None:
    role, _ = functions_role
    script = grants_script(media_map, role)
    _apply(archive_db, script)
    _apply(archive_db, script)  # idempotent: a media map change is applied by running it again
