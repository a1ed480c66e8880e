"""A store without conditional deletes (LocalStack, MinIO and other S3-compatible stores answer DeleteObject with
If-Match by 501 NotImplemented; S3 general purpose buckets take it since 2025-09, "Conditional deletes" in the S3 user
guide). A 501 is permanent: the live path and the backfill learn it once per bucket, then retire by compare-then-delete
(policies.retire: delete) or keep the source and say why (policies.retire: delete-if-match), and never raise for it,
so no record retries into the dead-letter queue. moto takes the condition, so the 501 is injected here exactly as such
a store answers (botocore's before-send: the client parses it as it would the store's)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from botocore.awsrequest import AWSResponse

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.backfill import Listed, process_listed
from mediacanon.core import mediamap
from mediacanon.steps import ObjectEvent, Outcome, Steps

pytestmark = pytest.mark.integration


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


class NoConditionalDeletes:
    """Answers DeleteObject with If-Match, and DeleteObjects whose objects carry an ETag, as LocalStack does: 501."""

    def __init__(self, client: Any) -> None:
        self.refused = 0
        client.meta.events.register("before-send.s3.DeleteObject", self.answer)
        client.meta.events.register("before-send.s3.DeleteObjects", self.answer_batch)

    def _not_implemented(self, request: Any) -> AWSResponse:
        self.refused += 1
        body = (
            b"<Error><Code>NotImplemented</Code><Message>A header you provided implies functionality that is not "
            b"implemented</Message></Error>"
        )
        return AWSResponse(request.url, 501, {"Content-Type": "application/xml"}, _Body(body))  # type: ignore[arg-type]  # AWSResponse takes any mapping of headers (its stubs say HTTPHeaders)

    def answer(self, request: Any, **_: Any) -> AWSResponse | None:
        return self._not_implemented(request) if request.headers.get("If-Match") else None

    def answer_batch(self, request: Any, **_: Any) -> AWSResponse | None:
        return self._not_implemented(request) if b"<ETag>" in (request.body or b"") else None


@dataclass
class Site:
    steps: Steps
    client: Any
    conninfo: str
    primary: str
    cdn: str
    store: NoConditionalDeletes

    def keys(self, bucket: str) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {o["Key"] for page in pages for o in page.get("Contents", [])}

    def icon(self, slug: str) -> str:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT icon FROM archive_publicationsource WHERE slug = %s", (slug,)).fetchone()
        assert row is not None
        return str(row[0])

    def upload(self, slug: str, key: str, body: bytes) -> str:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, key))
        self.client.put_object(Bucket=self.primary, Key=key, Body=body, ContentType="image/png")
        return hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of a single-part upload

    def live_path(self, key: str) -> list[str]:
        """normalize, replicate and link for one upload; returns the link step's detail."""
        normalized = self.steps.normalize(ObjectEvent(self.primary, key, created=True))
        assert normalized.outcome == Outcome.NORMALIZED, normalized
        canonical = normalized.canonical_key
        assert canonical is not None
        self.steps.replicate(ObjectEvent(self.primary, canonical, created=True))
        linked = self.steps.link(ObjectEvent(self.cdn, canonical, created=True))
        return [linked.outcome.value, linked.detail]


def _site(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, retire: str) -> Iterator[Site]:
    primary, cdn = bucket("primary"), bucket("cdn")
    data = archive_map(primary, cdn)
    data["defaults"] = {"policies": {"retire": retire}}
    media_map = mediamap.parse(data)
    with Database(archive_db) as db:
        ledger = Ledger(db, media_map.schema, execution="by-hand")
        ledger.ensure()
        steps = Steps(media_map, S3Adapter(s3_client), db, ledger, owner_wait_seconds=0)
        yield Site(steps, s3_client, archive_db, primary, cdn, NoConditionalDeletes(s3_client))


@pytest.fixture
def site(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any) -> Iterator[Site]:
    yield from _site(s3_client, bucket, archive_db, archive_map, "delete")


@pytest.fixture
def strict_site(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any) -> Iterator[Site]:
    yield from _site(s3_client, bucket, archive_db, archive_map, "delete-if-match")


def test_the_live_path_retires_by_compare_then_delete_and_asks_the_store_once(site: Site) -> None:
    site.upload("nytimes", "icons/nytimes_icon_v2_final.png", b"nyt")
    site.upload("bbc", "icons/bbc_favicon.png", b"bbc")

    first = site.live_path("icons/nytimes_icon_v2_final.png")
    second = site.live_path("icons/bbc_favicon.png")

    how = "1 row(s) now point at it; source retired by compare-then-delete (the store takes no If-Match on DeleteObject)"
    assert first == second == ["linked", how]
    assert site.keys(site.primary) == site.keys(site.cdn) == {"icons/nytimes.png", "icons/bbc.png"}
    assert (site.icon("nytimes"), site.icon("bbc")) == ("icons/nytimes.png", "icons/bbc.png")
    assert site.store.refused == 1  # learnt from the first retire: the second asked no conditional delete


def test_the_live_path_keeps_the_source_where_the_media_map_requires_conditional_deletes(strict_site: Site) -> None:
    site = strict_site
    site.upload("nytimes", "icons/nytimes_icon_v2_final.png", b"nyt")

    linked = site.live_path("icons/nytimes_icon_v2_final.png")

    assert linked == [
        "linked",
        f"1 row(s) now point at it; source kept: {site.primary} takes no conditional delete (policies.retire: delete-if-match)",
    ]
    assert site.icon("nytimes") == "icons/nytimes.png"  # I1: the row moved; the source stays, referenced by nothing
    assert site.keys(site.primary) == {"icons/nytimes.png", "icons/nytimes_icon_v2_final.png"}


@pytest.mark.parametrize("retire", ["delete", "delete-if-match"])
def test_a_listed_batch_learns_it_from_deleteobjects_and_says_which_way_it_went(
    site: Site, strict_site: Site, retire: str
) -> None:
    world = site if retire == "delete" else strict_site
    etags = {slug: world.upload(slug, f"icons/{slug}_icon_v2.png", slug.encode()) for slug in ("nytimes", "bbc", "lemonde")}
    items = [Listed(f"icons/{slug}_icon_v2.png", etag, len(slug)) for slug, etag in sorted(etags.items())]

    result = process_listed(world.steps, items, dry_run=False)

    assert dict(result.counts) == {"migrated": 3}
    assert world.store.refused == 1  # one DeleteObjects refused, then the batch went on without the condition
    details = {i["key"]: i["detail"] for i in result.items}
    canonical = {f"icons/{slug}.png" for slug in etags}
    if retire == "delete":
        assert set(details.values()) == {
            "1 row(s) now point at it; source retired by compare-then-delete (the store takes no conditional delete)"
        }
        assert world.keys(world.primary) == canonical
    else:
        kept = f"1 row(s) now point at it; source kept: {world.primary} takes no conditional delete (policies.retire: delete-if-match)"
        assert set(details.values()) == {kept}
        assert world.keys(world.primary) == canonical | {i.key for i in items}
    assert world.keys(world.cdn) == canonical
    assert {world.icon(slug) for slug in etags} == canonical
