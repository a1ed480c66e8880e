"""The live path's own guard against the S3 -> EventBridge -> SQS loop, as a property: a canonical copy never causes a
further copy. Lambda's recursive-loop detection does not follow S3 -> EventBridge -> SQS, so nothing but the steps
themselves stops a copy's event from causing another copy.

Every write the steps make emits the event S3 would (an "Object Created" with the new ETag and the API's reason, an
"Object Deleted" for a delete), and those events are fed back into the steps, reordered and duplicated as drawn, until
none is left. For any key (the hostile-key catalogue, tests/data/hostile_keys.py, and the sample's kinds of names),
any row state and any reason S3 (or moto) gives, only the first chain may copy: the upload's normalize copy into the
canonical key, and replicate's mirror of that copy (or of the upload, when its name is canonical already). No event
of a CDN copy, of a listed backfill batch's copies, or of a copy normalize made causes a copy in normalize; the queue
empties; replaying every event delivered then copies and deletes nothing. Events of a listed batch over a site older
than the live path's events (its as-is copies and its DeleteObjects) also cost each handler at most one S3 request
and no database call.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import DeleteResult, S3Adapter
from mediacanon.backfill import run_task
from mediacanon.core import mediamap, naming
from mediacanon.core.errors import RetryableError, UnmappedKeyError, UnsafeKeyError
from mediacanon.steps import ObjectEvent, Steps

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("hostile_keys", ROOT / "tests" / "data" / "hostile_keys.py")
assert _spec is not None and _spec.loader is not None
hostile_keys = importlib.util.module_from_spec(_spec)
sys.modules["hostile_keys"] = hostile_keys  # its dataclasses look their module up while being built
_spec.loader.exec_module(hostile_keys)

# the sample's kinds of names (sample/archive_site/archive/mess.py KINDS), one of each that reaches the steps
SAMPLE_NAMES = (
    "icons/NYTimes_icon_v2_final.png",  # messy-upload
    "icons/BBC_logo_a1B2c3D.png",  # collision-suffix
    "icons/Le.Monde_logo_a1B2c3D.png",  # dotted-collision-suffix
    "mastheads/NYTimes_Masthead_FINAL_1.JPG",  # django-copy-number
    "mastheads/Η Καθημερινή.jpg",  # non-latin-name
    "icons/logo.png",  # generic-name: canonical by itself for slug 'logo'
    "icons/favicon.ico",  # a generic name another row references
    "downloads/el-pais/google_favicon/google_icon.png",  # staging
    "icons/reuters.png",  # canonical
)
KEYS = tuple(k.key for k in hostile_keys.HOSTILE_KEYS if k.expect != "not_exercisable" and k.row_can_reference) + SAMPLE_NAMES
# each of these, referenced by row 'row-slug' (the staged one: found by its folder's slug), is renamed and mirrored
RENAMED = {k.key for k in hostile_keys.HOSTILE_KEYS if k.expect == "renamed"} | set(SAMPLE_NAMES)
# the reason of a copy's "Object Created" event: S3's, none at all, and moto's (it names every write ObjectCreated)
COPY_REASONS = ("CopyObject", None, "ObjectCreated")
# referenced: a row of its own references the key; by-slug: the row the name's slug gives, its column empty;
# unreferenced: no row; canonical-there: referenced, and its canonical key already holds these bytes (an earlier run)
STATES = ("referenced", "by-slug", "unreferenced", "canonical-there")
LIMIT = 200  # deliveries: a loop would run into it


@dataclass(frozen=True)
class Event:
    step: str  # normalize | replicate | link
    bucket: str
    key: str
    created: bool
    etag: str | None
    reason: str | None
    writer: str  # what wrote it: upload | normalize | replicate | link | listed (a listed batch) | backfill (its steps)


@dataclass
class Copy:
    writer: str
    cause: Event | None  # the event whose delivery made it (None: the backfill's batch itself)
    bucket: str
    key: str


@dataclass
class Site:
    """Buckets, a media map and the steps, whose S3 adapter emits the events S3 would for every write."""

    client: Any
    steps: Steps
    primary: str
    cdn: str
    copy_reason: str | None
    queue: list[Event] = field(default_factory=list)
    copies: list[Copy] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    current: Event | None = None  # the event being delivered (None: a backfill batch is running)
    writer: str = "backfill"
    s3_calls: int = 0
    db_calls: int = 0

    def emit(self, bucket: str, key: str, *, created: bool, etag: str | None, reason: str | None, writer: str) -> None:
        steps = ("normalize", "replicate") if bucket == self.primary else ("link",)
        for step in steps:
            if created or step == "replicate":  # the rules: normalize and link get creations only
                self.queue.append(Event(step, bucket, key, created, etag, reason, writer))


class Emitting:
    """The S3 adapter the steps use: every write is recorded and emits its event; every call is counted."""

    def __init__(self, site: Site, inner: S3Adapter) -> None:
        self.site, self.inner = site, inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.site.s3_calls += 1
            return attr(*args, **kwargs)

        return counted

    def _writer(self) -> str:
        return self.site.current.step if self.site.current is not None else self.site.writer

    def _copied(self, dst_bucket: str, dst_key: str, etag: str, writer: str) -> None:
        s = self.site
        s.copies.append(Copy(writer, s.current, dst_bucket, dst_key))
        s.emit(dst_bucket, dst_key, created=True, etag=etag, reason=s.copy_reason, writer=writer)

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **kwargs: Any) -> str:
        self.site.s3_calls += 1
        etag = self.inner.copy(src_bucket, src_key, dst_bucket, dst_key, **kwargs)
        self._copied(dst_bucket, dst_key, etag, self._writer())
        return etag

    def copy_as_is(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, *, source_etag: str) -> str:
        self.site.s3_calls += 1
        etag = self.inner.copy_as_is(src_bucket, src_key, dst_bucket, dst_key, source_etag=source_etag)
        self._copied(dst_bucket, dst_key, etag, "listed")
        return etag

    def _deleted(self, bucket: str, keys: list[str], writer: str) -> None:
        for key in keys:
            self.site.deletes.append((bucket, key))
            self.site.emit(bucket, key, created=False, etag=None, reason="DeleteObject", writer=writer)

    def delete_many(self, bucket: str, keys: Any) -> DeleteResult:
        self.site.s3_calls += 1
        keys = list(keys)
        result = self.inner.delete_many(bucket, keys)
        self._deleted(bucket, keys, self._writer())
        return result

    def delete_if_match(self, bucket: str, key: str, etag: str) -> bool:
        self.site.s3_calls += 1
        deleted = self.inner.delete_if_match(bucket, key, etag)
        if deleted:
            self._deleted(bucket, [key], self._writer())
        return deleted

    def delete_if_unchanged(self, bucket: str, etags: dict[str, str]) -> DeleteResult:
        self.site.s3_calls += 1
        result = self.inner.delete_if_unchanged(bucket, etags)
        kept = {e.key for e in result.errors}
        self._deleted(bucket, [k for k in etags if k not in kept], "listed")
        return result

    def put_bytes(self, bucket: str, key: str, body: bytes, *args: Any, **kwargs: Any) -> str:
        self.site.s3_calls += 1
        etag = self.inner.put_bytes(bucket, key, body, *args, **kwargs)  # a report part
        self.site.emit(bucket, key, created=True, etag=etag, reason="PutObject", writer="report")
        return etag


class Counted:
    """The database (and through it the ledger) as the steps see it: every call counted."""

    def __init__(self, site: Site, inner: Database) -> None:
        self.site, self.inner = site, inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.site.db_calls += 1
            return attr(*args, **kwargs)

        return counted


@dataclass
class World:
    client: Any
    conninfo: str
    archive_map: Any
    db: Database

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]  # literals only
            return cur.fetchall() if cur.description else []


@pytest.fixture
def world(s3_client: Any, archive_db: str, archive_map: Any) -> Iterator[World]:
    with psycopg.connect(archive_db, autocommit=True) as conn:  # the catalogue's longest names need 1,024 characters
        conn.execute("ALTER TABLE archive_publicationsource ALTER icon TYPE varchar(1024)")
    with Database(archive_db) as db:
        yield World(s3_client, archive_db, archive_map, db)


def column_of(key: str) -> str:
    return "masthead" if key.startswith("mastheads/") else "icon"


def set_up(world: World, key: str, state: str, copy_reason: str | None, *, events: bool) -> Site:
    """A fresh pair of buckets with the key uploaded under `state`; `events`: the upload's own events are queued
    (False: the site predates mediacanon's events)."""
    suffix = uuid.uuid4().hex[:8]
    primary, cdn = f"loop-{suffix}", f"loop-cdn-{suffix}"
    for bucket in (primary, cdn):
        world.client.create_bucket(Bucket=bucket)
    world.client.put_bucket_versioning(Bucket=primary, VersioningConfiguration={"Status": "Enabled"})
    data = world.archive_map(primary, cdn)
    data["fields"][0]["max_length"] = 1024
    media_map = mediamap.parse(data)
    world.sql("TRUNCATE archive_publicationsource RESTART IDENTITY")
    world.sql("CREATE SCHEMA IF NOT EXISTS mediacanon")
    if world.sql("SELECT to_regclass('mediacanon.ledger')")[0][0] is not None:
        world.sql("TRUNCATE mediacanon.ledger, mediacanon.claims")
    site = Site(world.client, None, primary, cdn, copy_reason)  # type: ignore[arg-type]
    db = Counted(site, world.db)
    site.steps = Steps(media_map, Emitting(site, S3Adapter(world.client)), db, Ledger(db, media_map.schema), owner_wait_seconds=0)  # type: ignore[arg-type]
    body = f"bytes of {key!r}".encode()
    world.client.put_object(Bucket=primary, Key=key, Body=body, ContentType="image/png")
    etag = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of a single-part upload
    column = column_of(key)
    staged = key.startswith("downloads/")
    if state in ("referenced", "canonical-there") and not staged:
        world.sql(f"INSERT INTO archive_publicationsource (slug, {column}) VALUES ('row-slug', %s)", key)  # noqa: S608
        if state == "canonical-there":
            try:
                canonical: str | None = naming.canonical_key_for_row(naming.resolve(media_map, key).field, "row-slug", key)
            except (UnsafeKeyError, UnmappedKeyError):
                canonical = None
            if canonical is not None and canonical != key:
                world.client.copy_object(Bucket=primary, Key=canonical, CopySource={"Bucket": primary, "Key": key})
    elif state == "by-slug" or staged:
        try:
            slug = naming.resolve(media_map, key).slug
        except (UnsafeKeyError, UnmappedKeyError):
            slug = "row-slug"
        world.sql("INSERT INTO archive_publicationsource (slug) VALUES (%s)", slug[:50])
    if events:
        site.emit(primary, key, created=True, etag=etag, reason="PutObject", writer="upload")
    return site


def deliver(site: Site, event: Event) -> bool:
    """One delivery; False when it failed retryably (SQS hands it out again)."""
    site.current = event
    try:
        getattr(site.steps, event.step)(
            ObjectEvent(event.bucket, event.key, event.created, etag=event.etag, reason=event.reason, sequencer=None)
        )
    except RetryableError:
        return False
    finally:
        site.current = None
    return True


def backfill(site: Site) -> None:
    """The objects phase as the state machine runs it: the primary bucket listed, one listed batch (`run_task`)."""
    pages = site.client.get_paginator("list_objects_v2").paginate(Bucket=site.primary)
    items = [
        {"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"], "LastModified": 0, "StorageClass": "STANDARD"}
        for page in pages
        for o in page.get("Contents", [])
    ]
    site.writer = "backfill"
    run_task({"action": "objects", "execution": "loop", "dryRun": False, "items": items}, lambda _: site.steps)


def drain(site: Site, picks: list[int], duplicates: list[bool]) -> list[Event]:
    """Deliver until no event is left: the drawn picks (with duplicates) first, then in order; returns every delivery."""
    delivered: list[Event] = []
    for i in range(LIMIT):
        if not site.queue:
            return delivered
        drawn = i < len(picks)
        event = site.queue.pop(picks[i] % len(site.queue) if drawn else 0)
        if drawn and duplicates[i]:
            site.queue.append(event)  # delivered again later
        delivered.append(event)
        if not deliver(site, event):
            site.queue.append(event)
    raise AssertionError(f"no quiescence after {LIMIT} deliveries: a copy loop? still queued: {site.queue[:6]}")


def check_no_further_copy(site: Site, delivered: list[Event]) -> None:
    for copy in site.copies:
        cause = copy.cause
        if cause is None:  # made by the backfill's batch itself, not by an event
            continue
        chain = (cause.writer, copy.writer)
        # the first chain only: the upload's normalize copy and replicate's mirror of the upload or of that copy
        assert chain in {("upload", "normalize"), ("upload", "replicate"), ("normalize", "replicate")}, (copy, site.copies)
    by_target = Counter((c.bucket, c.key) for c in site.copies if c.cause is not None)
    assert all(n == 1 for n in by_target.values()), by_target  # duplicates and reorders never copy twice
    # quiescence: every event delivered once more copies and deletes nothing
    copies, deletes = len(site.copies), len(site.deletes)
    for event in delivered:
        assert deliver(site, event), event
    assert (len(site.copies), len(site.deletes)) == (copies, deletes), site.copies[copies:]
    assert site.queue == []


@given(
    key=st.sampled_from(KEYS),
    state=st.sampled_from(STATES),
    copy_reason=st.sampled_from(COPY_REASONS),
    backfill_first=st.booleans(),
    picks=st.lists(st.integers(0, 1000), max_size=30),
    duplicates=st.lists(st.booleans(), min_size=30, max_size=30),
)
def test_a_canonical_copy_never_causes_a_further_copy(
    world: World, key: str, state: str, copy_reason: str | None, backfill_first: bool, picks: list[int], duplicates: list[bool]
) -> None:
    """Any key, row state and event reason; the live path alone or after a listed backfill batch; any order."""
    site = set_up(world, key, state, copy_reason, events=not backfill_first)
    if backfill_first:  # a site older than the live path's events: the backfill's own events are all there is
        backfill(site)
        for event in list(site.queue):
            if event.writer in ("listed", "report"):
                site.s3_calls = site.db_calls = 0
                assert deliver(site, event)
                assert (site.s3_calls, site.db_calls) <= (1, 0) and site.db_calls == 0, (event, site.s3_calls, site.db_calls)
    delivered = drain(site, picks, duplicates)
    check_no_further_copy(site, delivered)


@pytest.mark.parametrize("key", KEYS, ids=range(len(KEYS)))
def test_every_catalogued_key_copies_once_and_its_copies_cause_nothing(world: World, key: str) -> None:
    """The whole catalogue and the sample's names, referenced by a row, every event delivered twice in order."""
    site = set_up(world, key, "referenced", "CopyObject", events=True)
    delivered: list[Event] = []
    while site.queue:
        assert len(delivered) < LIMIT, f"no quiescence: {site.queue[:6]}"
        event = site.queue.pop(0)
        for _ in range(2):
            delivered.append(event)
            assert deliver(site, event), event
    check_no_further_copy(site, delivered)
    writers = Counter(c.writer for c in site.copies)
    # the first chain, and nothing else: one copy into the canonical key, one into the CDN (none for a refused name)
    assert writers == (Counter(normalize=1, replicate=1) if key in RENAMED else Counter()), site.copies
