"""Rollback keeps I1: rows go back only to keys both buckets hold (restored there if need be, marked so that events
still queued leave them), an entry that cannot be reversed is skipped with its reason while the rest proceed, a dry
run never crashes, and a rerun finishes what an interrupted one left. verify holds the rows a rollback moved to I1."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.checks.invariants import check_invariants
from mediacanon.copies import RESTORED_BY
from mediacanon.core import mediamap
from mediacanon.rollback import rollback
from mediacanon.steps import ObjectEvent, Outcome, Steps

pytestmark = pytest.mark.integration

SLUGS = ("nytimes", "bbc", "lemonde")


@dataclass
class Site:
    steps: Steps
    s3: S3Adapter
    db: Database
    conninfo: str
    primary: str
    cdn: str
    started: datetime

    def rows(self) -> dict[str, str]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return dict(conn.execute("SELECT slug, icon FROM archive_publicationsource").fetchall())

    def keys(self, bucket: str) -> set[str]:
        return {o.key for o in self.s3.iter_objects(bucket)}

    def undo(self, *, dry_run: bool = False) -> Any:
        return rollback(
            self.steps.map, self.s3, self.db, Ledger(self.db, self.steps.map.schema), since=self.started, dry_run=dry_run
        )

    def verify(self) -> Any:
        return check_invariants(self.steps.map, self.s3, self.db, Ledger(self.db, self.steps.map.schema))


@pytest.fixture
def site(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any) -> Iterator[Site]:
    """Three uploads the live path settled: each row on its canonical key, each messy source retired."""
    primary, cdn = bucket("primary"), bucket("cdn")
    for name in (primary, cdn):
        s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    media_map = mediamap.parse(archive_map(primary, cdn))
    started = datetime.now(UTC) - timedelta(seconds=5)
    with Database(archive_db) as db:
        steps = Steps(media_map, S3Adapter(s3_client), db, Ledger(db, media_map.schema), owner_wait_seconds=0)
        steps.ledger.ensure()
        for slug in SLUGS:
            source = f"icons/{slug}_icon_v2_final.png"
            with psycopg.connect(archive_db, autocommit=True) as conn:
                conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, source))
            s3_client.put_object(Bucket=primary, Key=source, Body=slug.encode(), ContentType="image/png")
            assert steps.normalize(ObjectEvent(primary, source, created=True)).outcome == Outcome.NORMALIZED
            steps.replicate(ObjectEvent(primary, f"icons/{slug}.png", created=True))
            assert steps.link(ObjectEvent(cdn, f"icons/{slug}.png", created=True)).retired
        yield Site(steps, steps.s3, db, archive_db, primary, cdn, started)


def test_rows_go_back_only_to_keys_both_buckets_hold_and_queued_events_leave_them(site: Site) -> None:
    undone = site.undo()

    sources = {f"icons/{slug}_icon_v2_final.png" for slug in SLUGS}
    assert set(site.rows().values()) == sources
    assert sources <= site.keys(site.primary) and sources <= site.keys(site.cdn)  # I1: in both buckets
    assert (undone.entries, undone.rows_restored, undone.skipped) == (3, 3, [])
    head = site.s3.head(site.primary, "icons/bbc_icon_v2_final.png")
    assert head is not None and RESTORED_BY in head.metadata
    assert site.verify().ok, site.verify().summary()
    # the upload events still queued from before the rollback (and the restores' own) rename nothing
    for source in sorted(sources):
        again = site.steps.normalize(ObjectEvent(site.primary, source, created=True))
        assert (again.outcome, again.detail.startswith("restored by a rollback")) == (Outcome.SKIPPED, True), again
    assert set(site.rows().values()) == sources


def test_an_entry_whose_canonical_copy_is_gone_is_skipped_with_its_reason_and_the_rest_proceed(site: Site) -> None:
    # the canonical copy of bbc deleted since (by hand): its row cannot go back to a file anyone holds
    site.s3.client.delete_object(Bucket=site.primary, Key="icons/bbc.png")

    planned = site.undo(dry_run=True)  # never crashes
    assert [s["key"] for s in planned.skipped] == ["icons/bbc_icon_v2_final.png"]
    assert site.rows()["bbc"] == "icons/bbc.png"  # a dry run changes nothing

    undone = site.undo()

    assert [(s["key"], "is gone from" in s["reason"]) for s in undone.skipped] == [("icons/bbc_icon_v2_final.png", True)]
    rows = site.rows()
    assert (rows["nytimes"], rows["lemonde"], rows["bbc"]) == (
        "icons/nytimes_icon_v2_final.png",
        "icons/lemonde_icon_v2_final.png",
        "icons/bbc.png",  # left, not moved onto a key no bucket holds
    )
    assert "icons/bbc_icon_v2_final.png" not in site.keys(site.primary)


def test_a_rollback_interrupted_midway_is_finished_by_a_rerun(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    real = Ledger.mark_rolled_back
    calls = {"n": 0}

    def dies_after_one(self: Ledger, entry_id: int, *, conn: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("the rollback was killed")
        real(self, entry_id, conn=conn)

    monkeypatch.setattr(Ledger, "mark_rolled_back", dies_after_one)
    with pytest.raises(RuntimeError):
        site.undo()
    monkeypatch.setattr(Ledger, "mark_rolled_back", real)
    assert sum(v.endswith("_icon_v2_final.png") for v in site.rows().values()) == 1  # really midway

    finished = site.undo()

    assert (finished.entries, finished.skipped) == (2, [])
    assert all(v.endswith("_icon_v2_final.png") for v in site.rows().values())
    assert site.verify().ok, site.verify().summary()


def test_verify_holds_the_rows_a_rollback_moved_to_i1(site: Site) -> None:
    site.undo()
    site.s3.client.delete_object(Bucket=site.cdn, Key="icons/lemonde_icon_v2_final.png")  # the restored CDN copy lost

    checked = site.verify()

    assert [(v.invariant, v.key) for v in checked.violations] == [("I1", "icons/lemonde_icon_v2_final.png")]
