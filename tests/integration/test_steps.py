"""The live path's steps on a real moto server and a real PostgreSQL: convergence under duplicated,
reordered and replayed events, no loops, crash-and-retry, the owner wait, collisions and overwrites."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.checks.verify import verify
from mediacanon.copies import SOURCE_KEY
from mediacanon.core import mediamap
from mediacanon.core.errors import RetryableError
from mediacanon.steps import ObjectEvent, Outcome, OwnerNotReady, Steps

pytestmark = pytest.mark.integration


@dataclass
class Clock:
    now: float = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    steps: Steps
    s3: S3Adapter
    client: Any
    conninfo: str
    primary: str
    cdn: str
    clock: Clock
    copies: list[tuple[str, str]] = field(default_factory=list)
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def put(self, key: str, body: bytes, content_type: str = "image/png") -> str:
        self.client.put_object(
            Bucket=self.primary,
            Key=key,
            Body=body,
            ContentType=content_type,
            CacheControl="max-age=60",
            Metadata={"uploaded-by": "django"},
        )
        return hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of a single-part upload

    def event(self, bucket: str, key: str, created: bool = True) -> ObjectEvent:
        return ObjectEvent(
            bucket=bucket, key=key, created=created, sequencer=f"{next(self.seq):016X}", first_received=self.clock.now
        )

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def row(self, slug: str) -> tuple[Any, ...]:
        return self.sql("SELECT icon, masthead FROM archive_publicationsource WHERE slug = %s", slug)[0]

    def keys(self, bucket: str) -> set[str]:
        return {o.key for o in self.s3.iter_objects(bucket)}

    def run_all(self, key: str) -> list[Outcome]:
        """The live path for one upload, in order: normalize, then replicate and link the canonical key."""
        outcomes = [self.steps.normalize(self.event(self.primary, key)).outcome]
        for canonical in self.keys(self.primary) - {key}:
            outcomes.append(self.steps.replicate(self.event(self.primary, canonical)).outcome)
        for mirrored in self.keys(self.cdn):
            outcomes.append(self.steps.link(self.event(self.cdn, mirrored)).outcome)
        return outcomes


@pytest.fixture
def world(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any) -> Iterator[World]:
    db_conninfo = archive_db
    primary, cdn = bucket("primary"), bucket("cdn")
    media_map = mediamap.parse(archive_map(primary, cdn))
    s3 = S3Adapter(s3_client)
    clock = Clock()
    with Database(db_conninfo) as db:
        w = World(
            Steps(media_map, s3, db, Ledger(db, media_map.schema), owner_wait_seconds=60, clock=clock),
            s3,
            s3_client,
            db_conninfo,
            primary,
            cdn,
            clock,
        )
        real_copy = s3.copy

        def counting_copy(src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **kw: Any) -> str:
            w.copies.append((src_key, f"{dst_bucket}/{dst_key}"))
            return real_copy(src_bucket, src_key, dst_bucket, dst_key, **kw)

        s3.copy = counting_copy  # type: ignore[method-assign]
        yield w


def test_messy_upload_ends_canonical_in_both_buckets_and_the_row(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    world.put("icons/nytimes_icon_v2_final.png", b"nyt-bytes")

    outcomes = world.run_all("icons/nytimes_icon_v2_final.png")

    assert outcomes == [Outcome.NORMALIZED, Outcome.MIRRORED, Outcome.LINKED]
    assert world.row("nytimes")[0] == "icons/nytimes.png"
    assert world.keys(world.primary) == {"icons/nytimes.png"}  # source retired after the commit (I2)
    assert world.keys(world.cdn) == {"icons/nytimes.png"}
    head = world.s3.head(world.primary, "icons/nytimes.png")
    assert head is not None
    assert (head.content_type, head.cache_control, head.metadata["uploaded-by"]) == ("image/png", "max-age=60", "django")
    assert head.metadata[SOURCE_KEY] == "icons/nytimes_icon_v2_final.png"
    assert world.s3.get_bytes(world.cdn, "icons/nytimes.png") == b"nyt-bytes"
    with Database(world.conninfo) as db:
        assert verify(world.steps.map, world.s3, db, Ledger(db)).ok


def test_duplicated_and_replayed_events_converge_without_extra_copies(world: World) -> None:
    world.sql(
        "INSERT INTO archive_publicationsource (slug, masthead) VALUES ('nytimes', 'mastheads/NYTimes_Masthead_FINAL (1).JPG')"
    )
    world.put("mastheads/NYTimes_Masthead_FINAL (1).JPG", b"masthead", "image/jpeg")
    created = world.event(world.primary, "mastheads/NYTimes_Masthead_FINAL (1).JPG")
    canonical = world.event(world.primary, "mastheads/nytimes.jpg")
    mirrored = world.event(world.cdn, "mastheads/nytimes.jpg")

    for _ in range(2):  # every event delivered twice
        world.steps.normalize(created)
        world.steps.normalize(created)
        world.steps.replicate(canonical)
        world.steps.replicate(canonical)
        world.steps.link(mirrored)
        world.steps.link(mirrored)
    state = (world.row("nytimes"), world.keys(world.primary), world.keys(world.cdn))

    assert state == ((None, "mastheads/nytimes.jpg"), {"mastheads/nytimes.jpg"}, {"mastheads/nytimes.jpg"})
    assert len(world.copies) == 2, world.copies  # one normalize copy, one CDN copy
    assert world.sql("SELECT sum(rows_changed) FROM mediacanon.ledger")[0][0] == 1


def test_reordered_events_converge(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('lemonde', 'icons/lemonde_icon_a1B2c3D.png')")
    world.put("icons/lemonde_icon_a1B2c3D.png", b"lemonde")
    # link and replicate arrive before the object they are about exists: nothing happens, nothing breaks
    assert world.steps.link(world.event(world.cdn, "icons/lemonde.png")).outcome == Outcome.SKIPPED
    assert world.steps.replicate(world.event(world.primary, "icons/lemonde.png")).outcome == Outcome.SKIPPED
    assert world.row("lemonde")[0] == "icons/lemonde_icon_a1B2c3D.png"
    # then the real order; a late duplicate of the original upload event arrives last
    world.run_all("icons/lemonde_icon_a1B2c3D.png")
    late = world.steps.normalize(world.event(world.primary, "icons/lemonde_icon_a1B2c3D.png"))

    assert late.outcome == Outcome.SKIPPED  # the source is retired: a stale event
    assert world.row("lemonde")[0] == "icons/lemonde.png"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/lemonde.png"}


def test_copies_do_not_loop(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/bbc-favicon.ico')")
    world.put("icons/bbc-favicon.ico", b"bbc")
    world.steps.normalize(world.event(world.primary, "icons/bbc-favicon.ico"))
    # the copy's own events: normalize ignores canonical keys; replicate and link ignore messy ones
    assert world.steps.normalize(world.event(world.primary, "icons/bbc.ico")).outcome == Outcome.SKIPPED
    assert world.steps.replicate(world.event(world.primary, "icons/bbc-favicon.ico")).outcome == Outcome.SKIPPED
    assert world.steps.replicate(world.event(world.primary, "icons/bbc.ico")).outcome == Outcome.MIRRORED
    assert world.steps.link(world.event(world.cdn, "icons/bbc-favicon.ico")).outcome == Outcome.SKIPPED
    assert world.keys(world.cdn) == {"icons/bbc.ico"}
    assert len(world.copies) == 2


def test_crash_after_copy_before_commit_loses_nothing(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('el-pais', 'icons/El País_logo.png')")
    world.put("icons/El País_logo.png", b"elpais")
    world.steps.normalize(world.event(world.primary, "icons/El País_logo.png"))
    world.steps.replicate(world.event(world.primary, "icons/el-pais.png"))
    real_swap = world.steps.db.swap_statements  # the link's compare-and-swap, one statement with its ledger entry

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RetryableError("connection lost mid-transaction")

    monkeypatch.setattr(world.steps.db, "swap_statements", crash)
    with pytest.raises(RetryableError):
        world.steps.link(world.event(world.cdn, "icons/el-pais.png"))
    # nothing committed: the row still points at its source, which still exists (no 404), nothing retired
    assert world.row("el-pais")[0] == "icons/El País_logo.png"
    assert "icons/El País_logo.png" in world.keys(world.primary)

    monkeypatch.setattr(world.steps.db, "swap_statements", real_swap)
    assert world.steps.link(world.event(world.cdn, "icons/el-pais.png")).outcome == Outcome.LINKED
    assert world.row("el-pais")[0] == "icons/el-pais.png"
    assert world.keys(world.primary) == {"icons/el-pais.png"}
    assert world.s3.get_bytes(world.primary, "icons/el-pais.png") == b"elpais"


def test_upload_before_its_row_is_retried_then_left_for_the_backfill(world: World) -> None:
    world.put("icons/dagens-nyheter_icon.png", b"dn")
    event = world.event(world.primary, "icons/dagens-nyheter_icon.png")
    with pytest.raises(OwnerNotReady):
        world.steps.normalize(event)
    world.clock.now += 61  # past the owner wait
    result = world.steps.normalize(event)
    assert result.outcome == Outcome.UNOWNED
    assert world.keys(world.primary) == {"icons/dagens-nyheter_icon.png"}  # never lost

    # the row is committed within the wait: the retry proceeds
    world.put("icons/aftenposten_icon.png", b"ap")
    late_row = world.event(world.primary, "icons/aftenposten_icon.png")
    with pytest.raises(OwnerNotReady):
        world.steps.normalize(late_row)
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('aftenposten', 'icons/aftenposten_icon.png')")
    assert world.steps.normalize(late_row).outcome == Outcome.NORMALIZED


def test_staged_file_fills_an_empty_column_by_slug(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug) VALUES ('el-pais')")
    world.put("downloads/el-pais/google_favicon/google_icon.png", b"staged")
    world.run_all("downloads/el-pais/google_favicon/google_icon.png")
    assert world.row("el-pais")[0] == "icons/el-pais.png"
    assert "icons/el-pais.png" in world.keys(world.cdn)


def test_collision_keeps_both_and_changes_nothing(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug) VALUES ('guardian')")
    world.put("icons/guardian_icon.png", b"first")
    world.put("icons/guardian_logo.png", b"second, other bytes")
    world.put("icons/guardian_final.png", b"first")
    assert world.steps.normalize(world.event(world.primary, "icons/guardian_icon.png")).outcome == Outcome.NORMALIZED
    clash = world.steps.normalize(world.event(world.primary, "icons/guardian_logo.png"))
    same = world.steps.normalize(world.event(world.primary, "icons/guardian_final.png"))
    assert clash.outcome == Outcome.COLLISION
    assert same.outcome == Outcome.NORMALIZED and not same.copied
    assert world.s3.get_bytes(world.primary, "icons/guardian.png") == b"first"
    assert {"icons/guardian_icon.png", "icons/guardian_logo.png", "icons/guardian_final.png"} <= world.keys(world.primary)


def test_newer_upload_of_the_owning_row_replaces_the_canonical_object_everywhere(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('spiegel', 'icons/spiegel_icon.png')")
    world.put("icons/spiegel_icon.png", b"old")
    world.run_all("icons/spiegel_icon.png")
    # Django saves a new file for the row (AWS_S3_FILE_OVERWRITE=False: a new name), then the row
    world.put("icons/spiegel_icon_Xy12AbC.png", b"new bytes")
    world.sql("UPDATE archive_publicationsource SET icon = 'icons/spiegel_icon_Xy12AbC.png' WHERE slug = 'spiegel'")
    world.run_all("icons/spiegel_icon_Xy12AbC.png")
    assert world.row("spiegel")[0] == "icons/spiegel.png"
    assert world.s3.get_bytes(world.primary, "icons/spiegel.png") == b"new bytes"
    assert world.s3.get_bytes(world.cdn, "icons/spiegel.png") == b"new bytes"
    assert world.keys(world.primary) == {"icons/spiegel.png"}


def test_canonical_removed_from_primary_is_removed_from_the_cdn_but_a_stale_delete_is_not(world: World) -> None:
    world.put("icons/reuters.png", b"r")
    world.steps.replicate(world.event(world.primary, "icons/reuters.png"))
    stale_delete = world.event(world.primary, "icons/reuters.png", created=False)
    assert world.steps.replicate(stale_delete).outcome != Outcome.UNMIRRORED  # the object is still there
    assert world.keys(world.cdn) == {"icons/reuters.png"}
    world.client.delete_object(Bucket=world.primary, Key="icons/reuters.png")
    assert world.steps.replicate(world.event(world.primary, "icons/reuters.png", created=False)).outcome == Outcome.UNMIRRORED
    assert world.keys(world.cdn) == set()


def test_rollback_restores_names_and_rows_and_has_a_dry_run(world: World) -> None:
    from datetime import UTC, datetime, timedelta

    from mediacanon.rollback import rollback

    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    world.put("icons/nytimes_icon_v2_final.png", b"nyt-bytes")
    since = datetime.now(UTC) - timedelta(minutes=5)
    world.run_all("icons/nytimes_icon_v2_final.png")
    assert world.row("nytimes")[0] == "icons/nytimes.png"
    steps = world.steps

    dry = rollback(steps.map, world.s3, steps.db, steps.ledger, since=since, dry_run=True)
    assert (dry.entries, dry.restored_objects, dry.rows_restored) == (1, ["icons/nytimes_icon_v2_final.png"], 1)
    assert world.row("nytimes")[0] == "icons/nytimes.png"  # the dry run changed nothing
    assert "icons/nytimes_icon_v2_final.png" not in world.keys(world.primary)

    done = rollback(steps.map, world.s3, steps.db, steps.ledger, since=since)
    assert done.rows_restored == 1 and not done.rows_changed_since
    assert world.row("nytimes")[0] == "icons/nytimes_icon_v2_final.png"
    assert world.s3.get_bytes(world.primary, "icons/nytimes_icon_v2_final.png") == b"nyt-bytes"
    restored = world.s3.head(world.primary, "icons/nytimes_icon_v2_final.png")
    assert restored is not None and SOURCE_KEY not in restored.metadata
    assert restored.metadata["uploaded-by"] == "django"
    # a second rollback finds nothing left to reverse
    assert rollback(steps.map, world.s3, steps.db, steps.ledger, since=since).entries == 0


def test_rollback_restores_a_source_retired_by_a_worker_that_died_before_marking_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The retire deletes the source, then marks the ledger entry: a crash between the two leaves the entry unmarked.
    Rollback must still copy the source back before pointing the row at it, or the row would point at a 404."""
    from datetime import UTC, datetime, timedelta

    from mediacanon.rollback import rollback

    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    world.put("icons/nytimes_icon_v2_final.png", b"nyt-bytes")
    since = datetime.now(UTC) - timedelta(minutes=5)

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the worker died after the delete")

    monkeypatch.setattr(world.steps.ledger, "mark_retired", crash)
    with pytest.raises(RuntimeError):
        world.run_all("icons/nytimes_icon_v2_final.png")
    monkeypatch.undo()
    assert world.row("nytimes")[0] == "icons/nytimes.png"
    assert "icons/nytimes_icon_v2_final.png" not in world.keys(world.primary)  # deleted, and the entry unmarked
    assert all(e.retired_at is None for e in world.steps.ledger.entries(since=since))

    done = rollback(world.steps.map, world.s3, world.steps.db, world.steps.ledger, since=since)

    assert done.restored_objects == ["icons/nytimes_icon_v2_final.png"]
    assert world.row("nytimes")[0] == "icons/nytimes_icon_v2_final.png"
    assert world.s3.get_bytes(world.primary, "icons/nytimes_icon_v2_final.png") == b"nyt-bytes"


def test_a_name_with_no_ascii_slug_is_named_by_the_row_that_references_it(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('kathimerini', 'icons/Η_Καθημερινή.ico')")
    world.put("icons/Η_Καθημερινή.ico", b"k")
    world.put("icons/Ελληνική_Εφημερίδα.ico", b"unreferenced")  # no row: the name alone cannot place it
    assert world.run_all("icons/Η_Καθημερινή.ico")[0] == Outcome.NORMALIZED
    assert world.row("kathimerini")[0] == "icons/kathimerini.ico"
    assert "icons/kathimerini.ico" in world.keys(world.cdn)
    refused = world.steps.normalize(world.event(world.primary, "icons/Ελληνική_Εφημερίδα.ico"))
    assert refused.outcome == Outcome.REFUSED
    assert "icons/Ελληνική_Εφημερίδα.ico" in world.keys(world.primary)


@pytest.mark.parametrize("backfill_first", [False, True], ids=["live-then-backfill", "backfill-then-live"])
def test_backfill_and_live_path_never_fight(world: World, backfill_first: bool) -> None:
    from mediacanon.backfill import process_objects

    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    world.put("icons/nytimes_icon_v2_final.png", b"nyt-bytes")
    backfill = Steps(world.steps.map, world.s3, world.steps.db, world.steps.ledger, owner_wait_seconds=0)
    live_events = [
        (world.steps.normalize, world.event(world.primary, "icons/nytimes_icon_v2_final.png")),
        (world.steps.replicate, world.event(world.primary, "icons/nytimes.png")),
        (world.steps.link, world.event(world.cdn, "icons/nytimes.png")),
    ]
    if backfill_first:
        assert process_objects(backfill, ["icons/nytimes_icon_v2_final.png"], dry_run=False).counts == {"migrated": 1}
        for step, event in live_events:  # the upload's events arrive late
            step(event)
    else:
        live_events[0][0](live_events[0][1])  # the live path has copied; replicate and link are still queued
        assert process_objects(backfill, ["icons/nytimes_icon_v2_final.png"], dry_run=False).counts == {"migrated": 1}
        for step, event in live_events[1:]:
            step(event)

    assert world.row("nytimes")[0] == "icons/nytimes.png"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/nytimes.png"}
    assert len(world.copies) == 2, world.copies  # one canonical copy, one CDN copy: nobody copies twice
    assert world.sql("SELECT sum(rows_changed) FROM mediacanon.ledger")[0][0] == 1


def test_an_older_sequencer_than_the_ledger_holds_is_a_stale_event(world: World) -> None:
    from mediacanon.steps import sequencer_newer

    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/bbc_icon.png')")
    world.put("icons/bbc_icon.png", b"bbc")
    world.steps.normalize(world.event(world.primary, "icons/bbc_icon.png"))
    world.steps.replicate(world.event(world.primary, "icons/bbc.png"))
    newer = ObjectEvent(bucket=world.cdn, key="icons/bbc.png", created=True, sequencer="0067334A1B2C3D4E5F")
    older = ObjectEvent(bucket=world.cdn, key="icons/bbc.png", created=True, sequencer="0067334A1B2C3D4E00")
    assert world.steps.link(newer).outcome == Outcome.LINKED
    stale = world.steps.link(older)
    assert stale.outcome == Outcome.SKIPPED and "stale" in stale.detail
    assert sequencer_newer("0067334A1B2C3D4E5F", "0067334A1B2C3D4E00")
    assert not sequencer_newer("0067334A1B2C3D4E00", "0067334A1B2C3D4E00")  # a duplicate is not stale: it is redone


def test_a_backfilled_object_costs_six_s3_requests(world: World) -> None:
    from mediacanon.backfill import process_objects

    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    world.put("icons/nytimes_icon_v2_final.png", b"nyt-bytes")
    sent: list[str] = []
    world.client.meta.events.register("before-call.s3.*", lambda model, **_: sent.append(model.name))
    backfill = Steps(world.steps.map, world.s3, world.steps.db, world.steps.ledger, owner_wait_seconds=0)

    assert process_objects(backfill, ["icons/nytimes_icon_v2_final.png"], dry_run=False).counts == {"migrated": 1}

    # HEAD the source and the free canonical key, copy; HEAD the CDN key, copy; delete the source only if it still
    # holds the bytes the canonical copy recorded (If-Match: I5, with no HEAD first). What replicate and link would
    # re-read is what this worker just wrote.
    assert sorted(sent) == sorted(["HeadObject", "HeadObject", "CopyObject", "HeadObject", "CopyObject", "DeleteObject"])
    assert world.row("nytimes")[0] == "icons/nytimes.png"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/nytimes.png"}


def test_a_key_refused_for_itself_is_refused_without_asking_the_database(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: a key with a NUL byte made normalize look for a referencing row, and PostgreSQL's refusal of NUL
    in text surfaced as a PermanentError (the record dead-lettered) instead of a refusal naming the key."""
    world.put("icons/a\x00b.png", b"nul")
    asked: list[Any] = []
    real = world.steps.db.rows_referencing

    def rows_referencing(*a: Any, **k: Any) -> Any:
        asked.append(a)
        return real(*a, **k)

    monkeypatch.setattr(world.steps.db, "rows_referencing", rows_referencing)

    result = world.steps.normalize(world.event(world.primary, "icons/a\x00b.png"))

    assert (result.outcome, result.detail) == (Outcome.REFUSED, "contains control characters")
    assert asked == []
    assert world.keys(world.primary) == {"icons/a\x00b.png"}


def test_a_generic_name_is_renamed_from_the_row_that_references_it(world: World) -> None:
    """Regression: a name canonical for another slug ('icons/favicon.ico' is slug 'favicon') was skipped as already
    canonical before anyone asked which row references it; the row kept the generic name and the CDN served it."""
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/favicon.ico')")
    world.put("icons/favicon.ico", b"bbc")
    # replicate's event for the upload: the CDN gets the row's name only, never the generic one (I3)
    skipped = world.steps.replicate(world.event(world.primary, "icons/favicon.ico"))
    assert skipped.outcome == Outcome.SKIPPED and "names it 'icons/bbc.ico'" in skipped.detail
    assert world.keys(world.cdn) == set()

    outcomes = world.run_all("icons/favicon.ico")

    assert outcomes == [Outcome.NORMALIZED, Outcome.MIRRORED, Outcome.LINKED]
    assert world.row("bbc")[0] == "icons/bbc.ico"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/bbc.ico"}  # the generic name retired (I2)
    assert world.s3.get_bytes(world.cdn, "icons/bbc.ico") == b"bbc"
    with Database(world.conninfo) as db:
        checked = verify(world.steps.map, world.s3, db, Ledger(db))
    assert checked.ok and checked.invariants.pending == []


def test_a_generic_name_is_reported_pending_until_it_is_renamed(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/favicon.ico')")
    world.put("icons/favicon.ico", b"bbc")
    world.client.copy_object(
        Bucket=world.cdn, Key="icons/favicon.ico", CopySource={"Bucket": world.primary, "Key": "icons/favicon.ico"}
    )

    with Database(world.conninfo) as db:
        checked = verify(world.steps.map, world.s3, db, Ledger(db))

    # in both buckets (mirrored before the row was saved, say), but the row names it otherwise: a rename is due
    assert (checked.invariants.pending, checked.invariants.unmirrored) == (["icons/favicon.ico"], [])


def test_a_name_canonical_for_its_own_row_is_left_alone(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('favicon', 'icons/favicon.ico')")
    # a row with a slug of its own sharing that file: the key is the favicon row's name, so it stays (and nobody
    # renames it back and forth between the two rows)
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/favicon.ico')")
    world.put("icons/favicon.ico", b"favicon")

    normalized = world.steps.normalize(world.event(world.primary, "icons/favicon.ico"))
    outcomes = world.run_all("icons/favicon.ico")

    assert (normalized.outcome, normalized.detail) == (Outcome.SKIPPED, "already canonical")
    assert outcomes == [Outcome.SKIPPED]
    assert world.steps.replicate(world.event(world.primary, "icons/favicon.ico")).outcome == Outcome.MIRRORED
    assert world.row("favicon")[0] == world.row("bbc")[0] == "icons/favicon.ico"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/favicon.ico"}
    assert world.copies == [("icons/favicon.ico", f"{world.cdn}/icons/favicon.ico")]


def test_a_generic_name_shared_by_two_rows_is_renamed_once_and_never_loops(world: World) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/favicon.ico')")
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('cnn', 'icons/favicon.ico')")
    world.put("icons/favicon.ico", b"shared")

    world.run_all("icons/favicon.ico")
    copies = list(world.copies)
    # every event each step's writes caused, and the original upload's, delivered again: nothing more happens
    for key in ("icons/favicon.ico", "icons/bbc.ico", "icons/cnn.ico"):
        assert world.steps.normalize(world.event(world.primary, key)).outcome == Outcome.SKIPPED
        assert world.steps.replicate(world.event(world.primary, key)).outcome == Outcome.SKIPPED
    assert world.steps.link(world.event(world.cdn, "icons/bbc.ico")).outcome == Outcome.SKIPPED

    # the lowest id names the shared file, the other row follows it (link moves every row off the source); the
    # source is retired only once no row references it (I2), and its bytes live on under the new name (I5)
    assert world.row("bbc")[0] == world.row("cnn")[0] == "icons/bbc.ico"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/bbc.ico"}
    assert world.s3.get_bytes(world.primary, "icons/bbc.ico") == b"shared"
    assert (
        world.copies
        == copies
        == [
            ("icons/favicon.ico", f"{world.primary}/icons/bbc.ico"),
            ("icons/bbc.ico", f"{world.cdn}/icons/bbc.ico"),
        ]
    )


def test_the_backfill_renames_a_generic_name_from_its_row(world: World) -> None:
    from mediacanon.backfill import process_objects

    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/favicon.ico')")
    world.put("icons/favicon.ico", b"bbc")
    backfill = Steps(world.steps.map, world.s3, world.steps.db, world.steps.ledger, owner_wait_seconds=0)

    planned = process_objects(backfill, ["icons/favicon.ico"], dry_run=True)
    done = process_objects(backfill, ["icons/favicon.ico"], dry_run=False)
    again = process_objects(backfill, ["icons/bbc.ico"], dry_run=False)

    assert [(i["outcome"], i["canonical_key"]) for i in planned.items] == [("migrated", "icons/bbc.ico")]
    assert done.counts == {"migrated": 1}
    assert again.counts == {"skipped": 1}
    assert world.row("bbc")[0] == "icons/bbc.ico"
    assert world.keys(world.primary) == world.keys(world.cdn) == {"icons/bbc.ico"}


# -- the backfill's own events: recognised with at most one HEAD and no database call ------------------------------


class NoDatabase:
    """Stands in for the database and the ledger: any use of either fails the test."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a database call ({name}) where none is allowed")


def s3_event(world: World, bucket: str, key: str, etag: str | None, reason: str | None, created: bool = True) -> ObjectEvent:
    """An event as S3 sends it: the ETag of what was written and the API that wrote it."""
    return ObjectEvent(bucket=bucket, key=key, created=created, etag=etag, reason=reason, sequencer=f"{next(world.seq):016X}")


def requests(world: World, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every S3 call the steps make from now on: (operation, bucket, key)."""
    made: list[tuple[str, str, str]] = []
    for name in ("head", "copy", "copy_as_is", "delete_many", "delete_if_match", "get_bytes", "iter_pages"):
        real = getattr(world.s3, name)

        def recorded(bucket: str, key: Any = "", *args: Any, _name: str = name, _real: Any = real, **kw: Any) -> Any:
            made.append((_name, bucket, key if isinstance(key, str) else "..."))
            return _real(bucket, key, *args, **kw)

        monkeypatch.setattr(world.s3, name, recorded)
    return made


def no_database(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(world.steps, "db", NoDatabase())
    monkeypatch.setattr(world.steps, "ledger", NoDatabase())


def as_is_copies(world: World, source: str, canonical: str) -> str:
    """What a listed backfill batch does to one object: CopyObject with MetadataDirective COPY into the canonical key
    and from there into the CDN bucket (no mediacanon metadata), then the row moved; returns the copy's ETag."""
    etag = world.s3.copy_as_is(world.primary, source, world.primary, canonical, source_etag=world.put(source, b"listed"))
    world.s3.copy_as_is(world.primary, canonical, world.cdn, canonical, source_etag=etag)
    world.sql("UPDATE archive_publicationsource SET icon = %s WHERE icon = %s", canonical, source)
    return etag


def test_a_listed_batchs_copies_cost_the_live_path_one_head_each_and_no_query(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    etag = as_is_copies(world, "icons/nytimes_icon_v2_final.png", "icons/nytimes.png")
    made = requests(world, monkeypatch)
    no_database(world, monkeypatch)

    for reason in ("CopyObject", None, "ObjectCreated"):  # S3's reason, none, moto's: each the same
        made.clear()
        normalized = world.steps.normalize(s3_event(world, world.primary, "icons/nytimes.png", etag, reason))
        assert (normalized.outcome, made) == (Outcome.SKIPPED, [("head", world.cdn, "icons/nytimes.png")]), normalized
        made.clear()
        replicated = world.steps.replicate(s3_event(world, world.primary, "icons/nytimes.png", etag, reason))
        assert (replicated.outcome, made) == (Outcome.SKIPPED, [("head", world.cdn, "icons/nytimes.png")]), replicated
        made.clear()
        linked = world.steps.link(s3_event(world, world.cdn, "icons/nytimes.png", etag, reason))
        assert (linked.outcome, made) == (Outcome.SKIPPED, [("head", world.cdn, "icons/nytimes.png")]), linked
    made.clear()
    retired = s3_event(world, world.primary, "icons/nytimes_icon_v2_final.png", None, "DeleteObject", created=False)
    assert (world.steps.replicate(retired).outcome, made) == (Outcome.SKIPPED, [])  # a messy name: no request at all
    assert world.copies == []


def test_replicate_skips_a_messy_upload_without_a_request(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's PutObject under a messy name records no source (only mediacanon's copies do), so replicate never
    mirrors it under that name: no HEAD, no query. A CompleteMultipartUpload may be mediacanon's own large copy
    (S3Adapter.copy), so it still takes the full step."""
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    etag = world.put("icons/nytimes_icon_v2_final.png", b"nyt")
    made = requests(world, monkeypatch)

    for reason in ("PutObject", "POST Object"):
        result = world.steps.replicate(s3_event(world, world.primary, "icons/nytimes_icon_v2_final.png", etag, reason))
        assert (result.outcome, made) == (Outcome.SKIPPED, []), result
    multipart = world.steps.replicate(
        s3_event(world, world.primary, "icons/nytimes_icon_v2_final.png", etag, "CompleteMultipartUpload")
    )
    assert (multipart.outcome, made) == (Outcome.SKIPPED, [("head", world.primary, "icons/nytimes_icon_v2_final.png")])
    assert world.copies == []


def test_the_shortcuts_never_skip_work_an_event_still_needs(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each shortcut only where the CDN already holds the event's bytes (and link only for a batch's as-is copy): an
    upload, new bytes, a copy the CDN does not hold yet, and the backfill's own calls (no ETag) take the full step."""
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('bbc', 'icons/favicon.ico')")
    world.sql("INSERT INTO archive_publicationsource (slug) VALUES ('reuters')")
    etag = world.put("icons/favicon.ico", b"bbc")
    # the generic name is in the CDN bucket already (mirrored before the row was saved): an upload is still renamed
    world.client.copy_object(
        Bucket=world.cdn, Key="icons/favicon.ico", CopySource={"Bucket": world.primary, "Key": "icons/favicon.ico"}
    )
    upload = world.steps.normalize(s3_event(world, world.primary, "icons/favicon.ico", etag, "PutObject"))
    assert (upload.outcome, upload.canonical_key) == (Outcome.NORMALIZED, "icons/bbc.ico"), upload
    # a copy the CDN does not hold: normalize asks the row, replicate mirrors reusing its HEAD of the CDN key
    made = requests(world, monkeypatch)
    copied = world.s3.head(world.primary, "icons/bbc.ico")
    assert copied is not None
    assert world.steps.normalize(s3_event(world, world.primary, "icons/bbc.ico", copied.etag, "CopyObject")).detail == (
        "already canonical"
    )
    made.clear()
    mirrored = world.steps.replicate(s3_event(world, world.primary, "icons/bbc.ico", copied.etag, "CopyObject"))
    assert mirrored.outcome == Outcome.MIRRORED
    assert [m[:2] for m in made] == [("head", world.cdn), ("head", world.primary), ("copy", world.primary)]
    # a steps-made mirror's event: link takes the full step and moves the row
    mirror = world.s3.head(world.cdn, "icons/bbc.ico")
    assert mirror is not None
    linked = world.steps.link(s3_event(world, world.cdn, "icons/bbc.ico", mirror.etag, "CopyObject"))
    assert linked.outcome == Outcome.LINKED and world.row("bbc")[0] == "icons/bbc.ico"
    # new bytes under a mirrored key: the event's ETag is not what the CDN holds, so it is mirrored again
    new = world.put("icons/bbc.ico", b"bbc v2")
    assert world.steps.replicate(s3_event(world, world.primary, "icons/bbc.ico", new, "PutObject")).outcome == Outcome.MIRRORED
    assert world.s3.get_bytes(world.cdn, "icons/bbc.ico") == b"bbc v2"
    # an as-is CDN copy (a listed batch's) met by the backfill's own link call (no ETag): the full step, by slug
    world.put("icons/reuters.png", b"reuters")
    world.s3.copy_as_is(
        world.primary, "icons/reuters.png", world.cdn, "icons/reuters.png", source_etag=world.put("icons/reuters.png", b"reuters")
    )
    assert world.steps.link(ObjectEvent(world.cdn, "icons/reuters.png", True)).outcome == Outcome.LINKED
    assert world.row("reuters")[0] == "icons/reuters.png"
    # a deleted canonical key the CDN holds is still unmirrored (policy: delete)
    world.client.delete_object(Bucket=world.primary, Key="icons/reuters.png")
    gone = world.steps.replicate(s3_event(world, world.primary, "icons/reuters.png", None, "DeleteObject", created=False))
    assert gone.outcome == Outcome.UNMIRRORED and "icons/reuters.png" not in world.keys(world.cdn)


def test_an_upload_costs_six_database_statements(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each statement on the autocommit connection is one round trip, and none of these opens a transaction block
    (conn.transaction() would add BEGIN and COMMIT, and bench/live.py counts those at the wire):
    normalize the owner's query and the claim; its copy's event, the query whether a row names the key otherwise; link
    the ledger's guard with the rows on the source, the swap with its ledger entry, the retire mark."""
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    etag = world.put("icons/nytimes_icon_v2_final.png", b"nyt-bytes")
    world.steps.ledger.ensure()
    world.steps.db.check_field(world.steps.map.fields[0])  # once per process: the schema check and the DDL
    sent: list[str] = []
    real = psycopg.Connection.execute

    def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(query if isinstance(query, str) else query.as_string(self))
        return real(self, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", execute)
    upload = s3_event(world, world.primary, "icons/nytimes_icon_v2_final.png", etag, "PutObject")
    normalized = world.steps.normalize(upload)
    by_step = {"normalize": len(sent)}
    copied = world.s3.head(world.primary, "icons/nytimes.png")
    assert copied is not None
    world.steps.normalize(s3_event(world, world.primary, "icons/nytimes.png", copied.etag, "CopyObject"))
    by_step["normalize, its copy"] = len(sent) - by_step["normalize"]
    before = len(sent)
    world.steps.replicate(s3_event(world, world.primary, "icons/nytimes.png", copied.etag, "CopyObject"))
    by_step["replicate"] = len(sent) - before
    before = len(sent)
    linked = world.steps.link(s3_event(world, world.cdn, "icons/nytimes.png", copied.etag, "CopyObject"))
    by_step["link"] = len(sent) - before

    assert (normalized.outcome, linked.outcome, linked.retired) == (Outcome.NORMALIZED, Outcome.LINKED, True)
    assert by_step == {"normalize": 2, "normalize, its copy": 1, "replicate": 0, "link": 3}, sent
