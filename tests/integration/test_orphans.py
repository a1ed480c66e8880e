"""Deleting the orphans a backfill reported (mediacanon.orphans), on the session's moto server and PostgreSQL: a real
backfill run (the state machine run locally, mediacanon.local.sfnlocal) writes the report the delete reads."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from botocore.awsrequest import AWSResponse

from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.core import mediamap
from mediacanon.core.errors import NotFoundError
from mediacanon.core.mediamap import RetirePolicy
from mediacanon.local.sfnlocal import run_backfill
from mediacanon.orphans import TooManyOrphans, delete_orphans

pytestmark = pytest.mark.integration

NOW = timedelta(0)  # no age threshold
ORPHANS = {
    "icons/nobody_icon.png": b"nobody's icon",  # a messy name no row owns
    "icons/ghost.png": b"a ghost",  # canonical by its name, no row has its slug
    "mastheads/zed.jpg": b"zed masthead",
    "icons/late.png": b"late",
}
OWNED = {"icons/nytimes.png": b"nyt icon", "icons/bbc.ico": b"bbc icon"}


@dataclass
class Site:
    media_map: mediamap.MediaMap
    client: Any
    conninfo: str
    endpoint: str
    primary: str
    cdn: str
    legacy: str
    execution: str = ""

    def backfill(self) -> str:
        result = run_backfill(self.media_map, endpoint_url=self.endpoint, database_url=self.conninfo, timeout=120, progress=False)
        assert (result.status, result.error) == ("SUCCEEDED", None)
        self.execution = result.execution_arn.rsplit(":", 1)[1]
        return self.execution

    def delete(self, **kwargs: Any) -> Any:
        kwargs.setdefault("execution", self.execution)
        kwargs.setdefault("min_age", NOW)
        kwargs.setdefault("max_deletes", 100)
        kwargs.setdefault("dry_run", False)
        with Database(self.conninfo) as db:
            return delete_orphans(self.media_map, S3Adapter(self.client), db, Ledger(db, self.media_map.schema), **kwargs)

    def objects(self, bucket: str) -> dict[str, str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return {
            o["Key"]: o["ETag"]
            for page in pages
            for o in page.get("Contents", [])
            if not o["Key"].startswith(self.media_map.reports_prefix)
        }

    def state(self) -> tuple[dict[str, str], ...]:
        return (self.objects(self.primary), self.objects(self.cdn), self.objects(self.legacy))

    def sql(self, statement: str, *args: Any) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            conn.execute(statement, args)

    def report(self) -> dict[str, Any]:
        key = f"{self.media_map.reports_prefix}{self.execution}/report.json"
        data: dict[str, Any] = json.loads(self.client.get_object(Bucket=self.primary, Key=key)["Body"].read())
        return data


@pytest.fixture
def site(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, moto_endpoint: str) -> Iterator[Site]:
    primary, cdn, legacy = bucket("primary"), bucket("cdn"), bucket("legacy")
    for slug, icon in (("nytimes", "icons/nytimes.png"), ("bbc", "icons/bbc.ico")):
        with psycopg.connect(archive_db, autocommit=True) as conn:
            conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, icon))
    for key, body in {**OWNED, **ORPHANS}.items():
        s3_client.put_object(Bucket=primary, Key=key, Body=body, ContentType="image/png")
    s3_client.put_object(Bucket=legacy, Key="icons/nobody_icon.png", Body=b"legacy copy")  # read-only: never touched
    site = Site(mediamap.parse(archive_map(primary, cdn, [legacy])), s3_client, archive_db, moto_endpoint, primary, cdn, legacy)
    site.backfill()
    yield site


def reported(site: Site) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in site.report()["items"] if item["outcome"] == "orphan"}


def test_the_backfill_reports_each_orphan_with_its_etag_and_how_to_delete_it(site: Site) -> None:
    orphans = reported(site)

    assert set(orphans) == set(ORPHANS)
    now = site.objects(site.primary)
    assert {key: item["etag"] for key, item in orphans.items()} == {key: now[key].strip('"') for key in ORPHANS}
    assert "`mediacanon orphans --execution NAME` deletes" in orphans["icons/nobody_icon.png"]["detail"]


def test_a_dry_run_deletes_nothing(site: Site) -> None:
    before = site.state()

    result = site.delete(dry_run=True)

    assert site.state() == before
    assert {o.key: o.outcome for o in result.outcomes} == dict.fromkeys(ORPHANS, "would delete")
    assert result.line == "ORPHANS DRY RUN | would_delete=4 kept=0 too_young=0 changed=0 now_referenced=0 gone=0"


def test_the_reported_orphans_are_deleted_from_the_primary_bucket_only(site: Site) -> None:
    primary, cdn, legacy = site.state()

    result = site.delete()

    assert result.line == "ORPHANS | deleted=4 kept=0 too_young=0 changed=0 now_referenced=0 gone=0"
    assert {o.key: o.outcome for o in result.outcomes} == dict.fromkeys(ORPHANS, "deleted")
    after = site.state()
    assert after[0] == {k: v for k, v in primary.items() if k not in ORPHANS}
    assert set(OWNED) <= set(after[0])
    assert after[1:] == (cdn, legacy)  # the CDN and the read-only fallback bucket untouched
    assert result.to_json()["counts"]["deleted"] == 4

    # again: nothing left to delete, the same outcome otherwise (I4)
    again = site.delete()
    assert again.line == "ORPHANS | deleted=0 kept=4 too_young=0 changed=0 now_referenced=0 gone=4"
    assert site.state() == after


def test_orphans_younger_than_min_age_are_kept(site: Site) -> None:
    before = site.state()

    young = site.delete(min_age=timedelta(hours=1))

    assert site.state() == before
    assert {(o.outcome, o.reason) for o in young.outcomes} == {("kept", "too young")}
    assert young.line == "ORPHANS | deleted=0 kept=4 too_young=4 changed=0 now_referenced=0 gone=0"

    # the same orphans two hours later are old enough
    later = site.delete(min_age=timedelta(hours=1), now=datetime.now(UTC) + timedelta(hours=2))
    assert later.line == "ORPHANS | deleted=4 kept=0 too_young=0 changed=0 now_referenced=0 gone=0"


def test_more_than_max_deletes_refuses_and_changes_nothing(site: Site) -> None:
    before = site.state()

    with pytest.raises(TooManyOrphans) as refused:
        site.delete(max_deletes=3)

    assert "4 orphans" in str(refused.value) and "--max-deletes=3" in str(refused.value)
    assert "nothing deleted" in str(refused.value)
    assert site.state() == before
    # the limit counts what would go: with one of them referenced again, three fit
    site.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('casper', 'icons/ghost.png')")
    assert site.delete(max_deletes=3).counts["deleted"] == 3


def test_an_orphan_referenced_overwritten_or_gone_since_the_report_is_kept(site: Site) -> None:
    site.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('casper', 'icons/ghost.png')")  # referenced
    site.sql("INSERT INTO archive_publicationsource (slug) VALUES ('zed')")  # its slug's row, with no file of its own
    site.client.put_object(Bucket=site.primary, Key="icons/nobody_icon.png", Body=b"uploaded again")  # other bytes
    site.client.delete_object(Bucket=site.primary, Key="icons/late.png")
    before = site.state()

    result = site.delete()

    kept = {o.key: o.reason for o in result.outcomes}
    assert kept == {
        "icons/nobody_icon.png": "changed",
        "icons/ghost.png": "now referenced",
        "mastheads/zed.jpg": "now referenced",
        "icons/late.png": "gone",
    }
    assert {o.outcome for o in result.outcomes} == {"kept"}
    assert site.state() == before
    assert result.line == "ORPHANS | deleted=0 kept=4 too_young=0 changed=1 now_referenced=2 gone=1"


def test_without_an_execution_the_latest_report_is_read(site: Site) -> None:
    first = site.execution
    second = site.backfill()  # reports the same orphans again
    assert second != first

    result = site.delete(execution=None, dry_run=True)

    assert result.execution == second
    assert result.report_key == f"{site.media_map.reports_prefix}{second}/report.json"
    assert result.counts["would_delete"] == 4


def test_an_unknown_execution_is_not_found(site: Site) -> None:
    with pytest.raises(NotFoundError, match="no report for 'backfill-nope'"):
        site.delete(execution="arn:aws:states:us-east-1:123456789012:execution:backfill:backfill-nope")


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.data


def refuse_conditional_deletes(client: Any) -> list[str]:
    """Answer DeleteObjects whose objects carry an ETag with 501 NotImplemented, as LocalStack and other S3-compatible
    stores do (moto takes the condition); returns the refused requests' URLs."""
    refused: list[str] = []

    def answer(request: Any, **_: Any) -> AWSResponse | None:
        if b"<ETag>" not in (request.body or b""):
            return None
        refused.append(request.url)
        body = b"<Error><Code>NotImplemented</Code><Message>not implemented</Message></Error>"
        return AWSResponse(request.url, 501, {"Content-Type": "application/xml"}, _Body(body))  # type: ignore[arg-type]  # AWSResponse takes any mapping of headers (its stubs say HTTPHeaders)

    client.meta.events.register("before-send.s3.DeleteObjects", answer)
    return refused


@pytest.mark.parametrize("retire", ["delete", "delete-if-match"])
def test_a_store_without_conditional_deletes_compares_then_deletes_unless_the_field_requires_the_condition(
    site: Site, retire: RetirePolicy
) -> None:
    """A store answering DeleteObjects' per-object ETag by 501 (S3 takes it: "Conditional deletes", S3 user guide,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html) gets compare-then-delete, except
    for a field whose policies.retire is delete-if-match: those orphans are kept, and say why."""
    data = site.media_map
    fields = [replace(m, policies=replace(m.policies, retire=retire)) for m in data.fields]
    site.media_map = replace(data, fields=tuple(fields))
    refused = refuse_conditional_deletes(site.client)

    result = site.delete()

    assert len(refused) == 1  # learnt once: no conditional delete is tried again
    if retire == "delete":
        assert result.line == "ORPHANS | deleted=4 kept=0 too_young=0 changed=0 now_referenced=0 gone=0"
        assert not set(ORPHANS) & set(site.objects(site.primary))
    else:
        assert {o.reason for o in result.outcomes} == {"no conditional delete"}
        assert "no_conditional_delete=4" in result.line
        assert set(ORPHANS) <= set(site.objects(site.primary))
