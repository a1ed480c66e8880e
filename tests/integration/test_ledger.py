"""The ledger's batch methods (the backfill's objects phase) against a real PostgreSQL: each leaves what the
per-object method it batches would, one call after another."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors as pg_errors

from mediacanon.adapters.db import Database, Swap
from mediacanon.adapters.ledger import Ledger, Link
from mediacanon.core.errors import PermanentError
from mediacanon.core.mediamap import FieldMapping

pytestmark = pytest.mark.integration

ICON = FieldMapping(
    name="archive.PublicationSource.icon",
    table="archive_publicationsource",
    column="icon",
    slug_column="slug",
    upload_to="icons/",
    canonical="icons/{slug}{ext}",
)


def run(conninfo: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def add(conninfo: str, slug: str, icon: str | None) -> int:
    return int(run(conninfo, "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s) RETURNING id", slug, icon)[0][0])


def claims(conninfo: str) -> dict[str, tuple[str, str | None]]:
    return {k: (s, e) for k, s, e in run(conninfo, "SELECT canonical_key, source_key, source_etag FROM mediacanon.claims")}


def test_claim_many_takes_over_as_claim_does(archive_db: str) -> None:
    with Database(archive_db) as db:
        ledger = Ledger(db)
        ledger.claim("icons/a.png", "icons/a_old.png", "e0")

        held = ledger.claim_many(
            [
                ("icons/a.png", "icons/a_icon.png", "e1"),  # held by another source: taken over
                ("icons/b.png", "icons/b_icon.png", "e2"),  # new
                ("icons/c.png", "icons/c_first.png", "e3"),
                ("icons/c.png", "icons/c_last.png", "e4"),  # named twice: the last holds it, as claim after claim
            ],
            take_over=True,
        )

        assert held == {"icons/a.png": "icons/a_icon.png", "icons/b.png": "icons/b_icon.png", "icons/c.png": "icons/c_last.png"}
        assert claims(archive_db) == {
            "icons/a.png": ("icons/a_icon.png", "e1"),
            "icons/b.png": ("icons/b_icon.png", "e2"),
            "icons/c.png": ("icons/c_last.png", "e4"),
        }
        assert ledger.claim_many([]) == {}


def test_claim_many_without_take_over_leaves_existing_claims(archive_db: str) -> None:
    with Database(archive_db) as db:
        ledger = Ledger(db)
        ledger.claim("icons/a.png", "icons/a_old.png", "e0")

        held = ledger.claim_many(
            [
                ("icons/a.png", "icons/a_icon.png", "e1"),
                ("icons/b.png", "icons/b_first.png", "e2"),
                ("icons/b.png", "icons/b_last.png", "e3"),  # the first holds it
            ]
        )

        assert held == {"icons/a.png": "icons/a_old.png", "icons/b.png": "icons/b_first.png"}
        assert claims(archive_db) == {"icons/a.png": ("icons/a_old.png", "e0"), "icons/b.png": ("icons/b_first.png", "e2")}


def test_record_links_writes_one_entry_per_source_in_one_transaction(archive_db: str) -> None:
    a1, a2 = add(archive_db, "a1", "icons/a_icon.png"), add(archive_db, "a2", "icons/a_icon.png")  # two rows, one file
    b = add(archive_db, "b", "icons/b_icon.png")
    c = add(archive_db, "c", "icons/c_edited.png")  # edited in Django since it was read
    with Database(archive_db) as db:
        ledger = Ledger(db, execution="exec-1")
        changed = ledger.record_links(
            ICON,
            [
                Link(
                    [Swap(a1, "icons/a_icon.png", "icons/a.png"), Swap(a2, "icons/a_icon.png", "icons/a.png")],
                    "icons/a_icon.png",
                    "icons/a.png",
                    "ea",
                ),
                Link([], "icons/none_icon.png", "icons/none.png", "en"),  # no row: no entry, as link
                Link([Swap(c, "icons/c_icon.png", "icons/c.png")], "icons/c_icon.png", "icons/c.png", "ec"),  # no entry
                Link([Swap(b, "icons/b_icon.png", "icons/b.png")], "icons/b_icon.png", "icons/b.png", "eb", "seq-b"),
            ],
        )
        entries = ledger.entries(execution="exec-1")

    assert changed == [2, 0, 0, 1]
    assert [(e.source_key, e.canonical_key, e.etag, e.sequencer, e.rows_changed, e.field) for e in entries] == [
        ("icons/a_icon.png", "icons/a.png", "ea", None, 2, ICON.name),
        ("icons/b_icon.png", "icons/b.png", "eb", "seq-b", 1, ICON.name),
    ]
    assert entries[0].changes == [
        {"id": a1, "old": "icons/a_icon.png", "new": "icons/a.png"},
        {"id": a2, "old": "icons/a_icon.png", "new": "icons/a.png"},
    ]
    assert entries[1].changes == [{"id": b, "old": "icons/b_icon.png", "new": "icons/b.png"}]
    assert entries[0].id < entries[1].id  # in the links' order: rollback reverses them newest first
    rows = dict(run(archive_db, "SELECT slug, icon FROM archive_publicationsource"))
    assert rows == {"a1": "icons/a.png", "a2": "icons/a.png", "b": "icons/b.png", "c": "icons/c_edited.png"}


def test_record_links_is_all_or_nothing(archive_db: str) -> None:
    a, b = add(archive_db, "a", "icons/a_icon.png"), add(archive_db, "b", "icons/b_icon.png")
    run(archive_db, "ALTER TABLE archive_publicationsource ADD CONSTRAINT no_bad CHECK (icon <> 'icons/bad.png')")
    with Database(archive_db) as db:
        ledger = Ledger(db)
        with pytest.raises(PermanentError) as info:
            ledger.record_links(
                ICON,
                [
                    Link([Swap(a, "icons/a_icon.png", "icons/a.png")], "icons/a_icon.png", "icons/a.png", "ea"),
                    Link([Swap(b, "icons/b_icon.png", "icons/bad.png")], "icons/b_icon.png", "icons/bad.png", "eb"),
                ],
            )
        assert isinstance(info.value.__cause__, pg_errors.CheckViolation)
        assert ledger.entries() == []
    assert dict(run(archive_db, "SELECT slug, icon FROM archive_publicationsource")) == {
        "a": "icons/a_icon.png",
        "b": "icons/b_icon.png",
    }


def test_mark_retired_many_marks_only_the_named_links(archive_db: str) -> None:
    rows = {slug: add(archive_db, slug, f"icons/{slug}_icon.png") for slug in ("a", "b", "c")}
    with Database(archive_db) as db:
        ledger = Ledger(db)
        ledger.record_links(
            ICON,
            [
                Link([Swap(r, f"icons/{s}_icon.png", f"icons/{s}.png")], f"icons/{s}_icon.png", f"icons/{s}.png", None)
                for s, r in rows.items()
            ],
        )
        ledger.mark_retired("icons/c_icon.png", key="icons/c.png")
        before = {e.source_key: e.retired_at for e in ledger.entries()}

        ledger.mark_retired_many(
            [("icons/a_icon.png", "icons/a.png"), ("icons/a_icon.png", "icons/a.png"), ("icons/c_icon.png", "icons/c.png")]
        )
        ledger.mark_retired_many([])
        after = {e.source_key: e.retired_at for e in ledger.entries()}

    assert after["icons/a_icon.png"] is not None
    assert after["icons/b_icon.png"] is None
    assert after["icons/c_icon.png"] == before["icons/c_icon.png"]  # already retired: left as it was
