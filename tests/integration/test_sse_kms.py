"""SSE-KMS media: every copy of an object gets a fresh ETag that is no MD5 of its bytes, and mediacanon still keeps
the buckets and the rows in agreement, without copying anything twice.

Amazon S3 API Reference, Object, ETag: "Objects created by the PUT Object, POST Object, or Copy operation [...] and
are encrypted by SSE-C or SSE-KMS, have ETags that are not an MD5 digest of their object data." What still shows two
copies hold the same bytes: the ETag a steps' copy records of its source (SOURCE_ETAG, PRIMARY_ETAG), and S3's
checksums: "When you copy or batch copy your data, however, Amazon S3 calculates the checksum on the source object and
moves it to the destination object" (User Guide, "Checking object integrity"); CopyObject: "When you copy an object,
if the source object has a checksum, that checksum value will be copied to the new object by default"; HeadObject,
ChecksumMode: "To retrieve the checksum, this parameter must be enabled. General purpose buckets - If you enable
checksum mode and the object is uploaded with a checksum and encrypted with an Key Management Service (KMS) key, you
must have permission to use the kms:Decrypt action to retrieve the checksum." And a changed source is refused by S3
itself: CopySourceIfMatch answers 412 (tests/integration/test_emulators.py).

moto gives SSE-KMS objects MD5 ETags all the same, so these tests run on tests/support/sse_kms.py's client, which
answers as SSE-KMS does. Two layouts: both buckets SSE-KMS, and the usual CreateBuckets=cdn-only one (the Django
project's SSE-KMS primary bucket, the template's SSE-S3 CDN bucket).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from support.baseline import check_against_baseline, take_baseline
from support.sse_kms import SseKmsClient

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.backfill import Listed, process_listed, process_objects
from mediacanon.checks.verify import verify
from mediacanon.core import mediamap
from mediacanon.core.errors import PreconditionFailed
from mediacanon.rollback import rollback
from mediacanon.steps import ObjectEvent, Outcome, Steps

pytestmark = pytest.mark.integration

LAYOUTS = {"kms-both": ("primary", "cdn"), "cdn-only": ("primary",)}  # which buckets are SSE-KMS


@dataclass
class Site:
    kms: SseKmsClient
    media_map: mediamap.MediaMap
    conninfo: str
    primary: str
    cdn: str
    seq: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def client(self) -> Any:
        return self.kms.client

    def upload(self, key: str, body: bytes) -> str:
        """Django's upload (django-storages' PutObject); returns the ETag S3 answers."""
        etag = self.client.put_object(
            Bucket=self.primary, Key=key, Body=body, ContentType="image/png", Metadata={"uploaded-by": "django"}
        )["ETag"]
        return str(etag).strip('"')

    def etag(self, bucket: str, key: str) -> str:
        return str(self.client.head_object(Bucket=bucket, Key=key)["ETag"]).strip('"')

    def event(self, bucket: str, key: str, reason: str, *, created: bool = True) -> ObjectEvent:
        """S3's event of a write as it would send it: the ETag of what was written and the API that wrote it."""
        etag = self.etag(bucket, key) if created else None
        return ObjectEvent(bucket, key, created, etag=etag, sequencer=f"{next(self.seq):016X}", reason=reason)

    def sql(self, query: str, *params: Any) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(query, params)

    def rows(self) -> dict[str, str | None]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            return dict(conn.execute("SELECT slug, icon FROM archive_publicationsource").fetchall())  # type: ignore[arg-type]

    def keys(self, bucket: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", []) if not o["Key"].startswith("mediacanon-")}

    def body(self, bucket: str, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def listing(self, prefix: str) -> list[Listed]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.primary, Prefix=prefix)
        return [Listed(o["Key"], o["ETag"].strip('"'), o["Size"]) for page in pages for o in page.get("Contents", [])]

    def papers(self, n: int) -> dict[str, bytes]:
        """n messy icons each referenced by its row (as Django saved them); their canonical keys and bytes."""
        canonical = {}
        for i in range(n):
            self.upload(f"icons/paper-{i:03d}_icon_v2_final.png", f"paper {i}".encode())
            self.sql(
                "INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)",
                f"paper-{i:03d}",
                f"icons/paper-{i:03d}_icon_v2_final.png",
            )
            canonical[f"icons/paper-{i:03d}.png"] = f"paper {i}".encode()
        return canonical

    @contextmanager
    def steps(self) -> Iterator[Steps]:
        with Database(self.conninfo) as db:
            ledger = Ledger(db, self.media_map.schema, execution="by-hand")
            ledger.ensure()
            yield Steps(self.media_map, S3Adapter(self.client), db, ledger, owner_wait_seconds=0)

    def sent(self) -> dict[str, int]:
        """The requests sent since the last call, by operation (and the count starts again)."""
        counted = dict(self.kms.sent)
        self.kms.sent.clear()
        return counted


@pytest.fixture(params=list(LAYOUTS))
def site(request: pytest.FixtureRequest, aws_endpoint: str, bucket: Any, archive_db: str, archive_map: Any) -> Site:
    primary, cdn = bucket("primary"), bucket("cdn")
    names = {"primary": primary, "cdn": cdn}
    kms = SseKmsClient(aws_endpoint, {names[b] for b in LAYOUTS[request.param]})
    return Site(kms, mediamap.parse(archive_map(primary, cdn)), archive_db, primary, cdn)


def assert_converged(site: Site, canonical: dict[str, bytes]) -> None:
    """Every row on its canonical key, which both buckets hold with its bytes; no messy name left (I1, I3, I5)."""
    assert {k for k in site.keys(site.primary) if k.startswith("icons/")} == set(canonical)
    assert {k for k in site.keys(site.cdn) if k.startswith("icons/")} == set(canonical)
    for key, body in canonical.items():
        assert site.body(site.primary, key) == site.body(site.cdn, key) == body
    assert set(site.rows().values()) == set(canonical)


def assert_verified(site: Site, baseline: Any = None) -> None:
    with Database(site.conninfo) as db:
        ledger = Ledger(db, site.media_map.schema)
        checked = check_against_baseline(site.media_map, S3Adapter(site.client), db, ledger, baseline)
        assert checked.ok, checked.summary()
        assert verify(site.media_map, S3Adapter(site.client), db, ledger).ok


# -- the double itself ----------------------------------------------------------------------------------------------


def test_the_client_answers_as_sse_kms_does(site: Site) -> None:
    """Fresh, non-MD5 ETags on every write of the same bytes, reported alike by HEAD, GET and LIST; conditions taken on
    those ETags, as S3 takes them; the checksum moved from source to copy, returned with ChecksumMode only."""
    first = site.upload("icons/a.png", b"same bytes")
    again = site.upload("icons/a.png", b"same bytes")
    assert first != again and "d41d8cd98f00b204e9800998ecf8427e" not in (first, again)
    assert site.etag(site.primary, "icons/a.png") == again
    assert site.client.get_object(Bucket=site.primary, Key="icons/a.png")["ETag"].strip('"') == again
    assert [o.etag for o in site.listing("icons/a.png")] == [again]
    copied = site.client.copy_object(
        Bucket=site.primary, Key="icons/b.png", CopySource={"Bucket": site.primary, "Key": "icons/a.png"}, CopySourceIfMatch=again
    )
    assert copied["ServerSideEncryption"] == "aws:kms"
    assert copied["CopyObjectResult"]["ETag"].strip('"') not in (first, again)
    with pytest.raises(site.client.exceptions.ClientError, match="PreconditionFailed"):
        site.client.copy_object(
            Bucket=site.primary,
            Key="icons/c.png",
            CopySource={"Bucket": site.primary, "Key": "icons/a.png"},
            CopySourceIfMatch=first,
        )
    a, b = (site.client.head_object(Bucket=site.primary, Key=k, ChecksumMode="ENABLED") for k in ("icons/a.png", "icons/b.png"))
    assert a["ChecksumCRC32"] == b["ChecksumCRC32"] and a["ETag"] != b["ETag"]
    assert "ChecksumCRC32" not in site.client.head_object(Bucket=site.primary, Key="icons/a.png")
    answer = site.client.delete_objects(Bucket=site.primary, Delete={"Objects": [{"Key": "icons/a.png", "ETag": first}]})
    assert [e["Code"] for e in answer["Errors"]] == ["PreconditionFailed"] and "icons/a.png" in site.keys(site.primary)
    site.client.delete_object(Bucket=site.primary, Key="icons/a.png", IfMatch=again)
    assert "icons/a.png" not in site.keys(site.primary)


# -- the live path ----------------------------------------------------------------------------------------------------


def test_the_live_path_normalizes_replicates_links_and_retires(site: Site) -> None:
    site.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', 'icons/nytimes_icon_v2_final.png')")
    site.upload("icons/nytimes_icon_v2_final.png", b"nyt icon")
    site.sent()
    with site.steps() as steps:
        uploaded = site.event(site.primary, "icons/nytimes_icon_v2_final.png", "PutObject")
        normalized = steps.normalize(uploaded)
        copy = site.event(site.primary, "icons/nytimes.png", "CopyObject")
        replicated = steps.replicate(copy)
        mirror = site.event(site.cdn, "icons/nytimes.png", "CopyObject")
        linked = steps.link(mirror)
        retired = site.event(site.primary, "icons/nytimes_icon_v2_final.png", "DeleteObject", created=False)
        assert (normalized.outcome, normalized.copied) == (Outcome.NORMALIZED, True), normalized
        assert replicated.outcome == Outcome.MIRRORED, replicated
        assert (linked.outcome, linked.rows_changed, linked.retired) == (Outcome.LINKED, 1, True), linked
        assert site.sent()["CopyObject"] == 2
        # every event again, in reverse and twice (I4): nothing more is copied, deleted or moved
        for event in [retired, mirror, copy, uploaded] * 2:
            steps.normalize(event)
            steps.replicate(event)
            steps.link(event)
    sent = site.sent()
    assert "CopyObject" not in sent and "DeleteObject" not in sent and "DeleteObjects" not in sent, sent
    assert_converged(site, {"icons/nytimes.png": b"nyt icon"})
    assert_verified(site)


def test_the_live_path_takes_a_listed_batchs_copies_as_mirrored(site: Site) -> None:
    """The listed batch's as-is copies record nothing (MetadataDirective COPY): under SSE-KMS their ETags differ
    from the primary's, and only S3's checksums show the CDN holds the primary's bytes. Their events copy nothing."""
    canonical = site.papers(3)
    with site.steps() as steps:
        assert process_listed(steps, site.listing("icons/paper-"), dry_run=False).counts == {"migrated": 3}
        site.sent()
        for key in canonical:
            steps.normalize(site.event(site.primary, key, "CopyObject"))
            steps.replicate(site.event(site.primary, key, "CopyObject"))
            assert steps.link(site.event(site.cdn, key, "CopyObject")).outcome == Outcome.SKIPPED
            # the backfill's own calls (no ETag: the full steps)
            assert steps.replicate(ObjectEvent(site.primary, key, True)).detail == "already mirrored"
            assert steps.link(ObjectEvent(site.cdn, key, True)).outcome == Outcome.SKIPPED
    assert "CopyObject" not in site.sent()
    assert_converged(site, canonical)


# -- the backfill ---------------------------------------------------------------------------------------------------


def test_a_listed_backfill_copies_each_object_once_and_a_second_one_nothing(site: Site) -> None:
    canonical = site.papers(12)
    baseline = take_baseline(site.media_map, S3Adapter(site.client), with_checksums=True)
    site.sent()

    with site.steps() as steps:
        first = process_listed(steps, site.listing("icons/paper-"), dry_run=False)
        first_sent = site.sent()
        second = process_listed(steps, site.listing("icons/paper-"), dry_run=False)
        second_sent = site.sent()

    assert first.counts == {"migrated": 12}, first.items
    # as on SSE-S3: two copies each, the batch's state from listings, no HEAD (the CDN copy's source is the canonical
    # copy just made, whose ETag the adapter knows to be an SSE-KMS one), one DeleteObjects
    assert (first_sent.get("CopyObject"), first_sent.get("HeadObject", 0), first_sent.get("DeleteObjects")) == (24, 0, 1)
    assert second.counts == {"skipped": 12}, second.items
    # converged: no copy, no delete; the CDN copies' other ETags are settled by two HEADs each (the checksums)
    assert "CopyObject" not in second_sent and "DeleteObjects" not in second_sent, second_sent
    assert second_sent["HeadObject"] == 24, second_sent
    assert_converged(site, canonical)
    assert_verified(site, baseline)

    with Database(site.conninfo) as db:
        undone = rollback(site.media_map, S3Adapter(site.client), db, Ledger(db, site.media_map.schema), execution="by-hand")
    assert (undone.entries, undone.rows_restored, len(undone.restored_objects)) == (12, 12, 12)
    rows = site.rows()
    for i in range(12):
        source = f"icons/paper-{i:03d}_icon_v2_final.png"
        assert rows[f"paper-{i:03d}"] == source
        assert site.body(site.primary, source) == f"paper {i}".encode()


def test_a_per_object_backfill_converges(site: Site) -> None:
    canonical = site.papers(3)
    keys = [item.key for item in site.listing("icons/paper-")]
    with site.steps() as steps:
        assert process_objects(steps, keys, dry_run=False).counts == {"migrated": 3}
        site.sent()
        again = process_objects(steps, sorted(canonical), dry_run=False)
    assert again.counts == {"skipped": 3}, again.items
    assert "CopyObject" not in site.sent()
    assert_converged(site, canonical)
    assert_verified(site)


def test_objects_without_checksums_converge_by_the_third_backfill(site: Site) -> None:
    """Objects uploaded without a checksum (before S3 added CRC64NVME by default, or by a client that sends none)
    carry none to their copies: nothing S3 holds shows a listed batch's CDN copy is the primary's bytes. The second
    backfill copies once more, recording the primary's ETag on the copy (as the steps' mirror does); the third reads
    that record from the CDN object's head and copies nothing. verify reads the bytes where nothing else can tell."""
    site.kms = SseKmsClient(site.kms.client.meta.endpoint_url, site.kms.kms_buckets, checksums=False)
    canonical = site.papers(4)
    assert "ChecksumCRC32" not in site.client.head_object(
        Bucket=site.primary, Key="icons/paper-000_icon_v2_final.png", ChecksumMode="ENABLED"
    )
    with site.steps() as steps:
        assert process_listed(steps, site.listing("icons/paper-"), dry_run=False).counts == {"migrated": 4}
        assert_verified(site)
        site.sent()
        second = process_listed(steps, site.listing("icons/paper-"), dry_run=False)
        second_sent = site.sent()
        third = process_listed(steps, site.listing("icons/paper-"), dry_run=False)
        third_sent = site.sent()
    assert second.counts == {"mirrored": 4} and second_sent["CopyObject"] == 4, (second.items, second_sent)
    assert third.counts == {"skipped": 4} and "CopyObject" not in third_sent, (third.items, third_sent)
    assert third_sent["HeadObject"] == 4  # the CDN object's head alone: its recorded ETag is the primary's
    assert_converged(site, canonical)
    assert_verified(site)


# -- guards and verify still catch what they must ---------------------------------------------------------------------


def test_a_source_changed_since_it_was_read_is_still_refused(site: Site) -> None:
    adapter = S3Adapter(site.client)
    site.upload("icons/a.png", b"old")
    stale = adapter.head(site.primary, "icons/a.png")
    listed = site.listing("icons/a.png")[0]
    site.upload("icons/a.png", b"new")
    assert stale is not None
    with pytest.raises(PreconditionFailed):
        adapter.copy(site.primary, "icons/a.png", site.primary, "icons/b.png", source_head=stale)
    with pytest.raises(PreconditionFailed):
        adapter.copy_as_is(site.primary, "icons/a.png", site.cdn, "icons/a.png", source_etag=listed.etag)
    # the current bytes copy, into either bucket, though their ETags change (an SSE-KMS source's first MD5 ETag, in
    # the cdn-only layout, costs the one HEAD that tells it from a changed SSE-S3 source)
    now = site.listing("icons/a.png")[0]
    assert adapter.copy_as_is(site.primary, "icons/a.png", site.cdn, "icons/a.png", source_etag=now.etag) != now.etag
    assert site.body(site.cdn, "icons/a.png") == b"new"


def test_verify_still_finds_a_cdn_copy_with_other_bytes(site: Site) -> None:
    canonical = site.papers(2)
    with site.steps() as steps:
        process_listed(steps, site.listing("icons/paper-"), dry_run=False)
    site.client.put_object(Bucket=site.cdn, Key="icons/paper-001.png", Body=b"paper X")  # as many bytes, other ones
    with Database(site.conninfo) as db:
        checked = verify(site.media_map, S3Adapter(site.client), db, Ledger(db, site.media_map.schema))
    assert not checked.ok
    assert checked.broken_i3_differs == ["icons/paper-001.png"]
    assert set(canonical) == {"icons/paper-000.png", "icons/paper-001.png"}


def test_the_plan_does_not_call_an_sse_kms_mirror_different(site: Site) -> None:
    """The dry-run plan used to read "CDN copy differs" wherever the two ETags differed, which under SSE-KMS is every
    mirrored key; it now asks the heads and checksums for those keys, and still finds a copy with other bytes."""
    from mediacanon.plan import Action, build_plan

    site.papers(3)
    with site.steps() as steps:
        process_listed(steps, site.listing("icons/paper-"), dry_run=False)
    with Database(site.conninfo) as db:
        actions = {i.key: i.action for i in build_plan(site.media_map, S3Adapter(site.client), db).items}
    assert {k: a for k, a in actions.items() if k.startswith("icons/")} == dict.fromkeys(
        ["icons/paper-000.png", "icons/paper-001.png", "icons/paper-002.png"], Action.OK
    )
    site.client.put_object(Bucket=site.cdn, Key="icons/paper-001.png", Body=b"paper X")
    with Database(site.conninfo) as db:
        actions = {i.key: i.action for i in build_plan(site.media_map, S3Adapter(site.client), db).items}
    assert actions["icons/paper-001.png"] == Action.MIRROR and actions["icons/paper-000.png"] == Action.OK
