"""The hostile-key catalogue (tests/data/hostile_keys.py), each key run through event -> copy -> database.

Each key is put into the moto server, referenced by a row of its own, and delivered as a real EventBridge-shaped
S3 event in an SQS record (the key URL-encoded as S3 encodes it, a space as '+'), parsed by the handlers' own
`live.event_from_record`, then normalize, replicate and link run on the real steps against PostgreSQL. Every
delete the steps issue is recorded with the rows that referenced the key at that moment.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import psycopg
import pytest
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import ClientError
from psycopg import sql
from psycopg.conninfo import make_conninfo

from mediacanon import live
from mediacanon.adapters.db import Database
from mediacanon.adapters.ledger import Ledger
from mediacanon.adapters.s3 import DeleteResult, S3Adapter
from mediacanon.copies import SOURCE_KEY
from mediacanon.core import mediamap, naming
from mediacanon.core.errors import UnsafeKeyError
from mediacanon.steps import ObjectEvent, Outcome, Steps

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("hostile_keys", ROOT / "tests" / "data" / "hostile_keys.py")
assert _spec is not None and _spec.loader is not None
hostile_keys = importlib.util.module_from_spec(_spec)
sys.modules["hostile_keys"] = hostile_keys  # its dataclasses look their module up while being built
_spec.loader.exec_module(hostile_keys)
HOSTILE_KEYS = hostile_keys.HOSTILE_KEYS
RECORD = json.loads((ROOT / "events" / "normalize_object_created.json").read_text())["Records"][0]


class RecordingS3(S3Adapter):
    """Records each delete with the ids of the rows that referenced the key just before the request."""

    def __init__(self, client: Any, conninfo: str) -> None:
        super().__init__(client)
        self.conninfo = conninfo
        self.deletes: list[tuple[str, str, list[int]]] = []

    def _record(self, bucket: str, keys: list[str]) -> None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            for key in keys:
                rows = [r[0] for r in conn.execute("SELECT id FROM archive_publicationsource WHERE icon = %s", (key,))]
                self.deletes.append((bucket, key, rows))

    def delete_many(self, bucket: str, keys: Any) -> DeleteResult:
        keys = list(keys)
        self._record(bucket, keys)
        return super().delete_many(bucket, keys)

    def delete_if_match(self, bucket: str, key: str, etag: str) -> bool:
        self._record(bucket, [key])
        return super().delete_if_match(bucket, key, etag)


@dataclass
class Site:
    steps: Steps
    s3: RecordingS3
    client: Any
    conninfo: str
    primary: str
    cdn: str
    seq: Iterator[int] = field(default_factory=lambda: iter(range(1, 1_000_000)))

    encoding: str = "encoded"

    def record(self, bucket: str, key: str, reason: str = "PutObject") -> SQSRecord:
        """An SQS record holding the S3 -> EventBridge event for `key`, its key encoded as S3 encodes notification
        keys ("encoded": URL-encoded, a space as '+'), or as it is ("as-sent"): no AWS document says which S3's
        EventBridge events do; moto sends keys as they are, LocalStack encoded (tests/integration/test_emulators.py)."""
        body = json.loads(RECORD["body"])
        body["resources"] = [f"arn:aws:s3:::{bucket}"]
        body["detail"]["bucket"]["name"] = bucket
        body["detail"]["object"]["key"] = quote_plus(key, safe="/") if self.encoding == "encoded" else key
        body["detail"]["object"]["sequencer"] = f"{next(self.seq):018X}"
        body["detail"]["reason"] = reason  # an upload's PutObject, or the CopyObject of mediacanon's own copies
        return SQSRecord({**RECORD, "messageId": str(uuid.uuid4()), "body": json.dumps(body)})

    def event(self, bucket: str, key: str, reason: str = "PutObject") -> ObjectEvent:
        return live.event_from_record(self.record(bucket, key, reason))

    def icon(self, slug: str) -> str | None:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT icon FROM archive_publicationsource WHERE slug = %s", (slug,)).fetchone()
        assert row is not None
        return row[0] if row[0] is None else str(row[0])


@pytest.fixture(scope="module")
def site(database_url: str, moto_endpoint: str, aws_env: None) -> Iterator[Site]:
    """One database and one pair of buckets for the whole catalogue: every key has its own row and canonical key."""
    import boto3

    name = f"test_hostile_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    conninfo = make_conninfo(database_url, dbname=name)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        # the catalogue's longest names need the 1,024 bytes S3 allows (Django's FileField(max_length=1024))
        conn.execute(
            "CREATE TABLE archive_publicationsource (id serial PRIMARY KEY, slug varchar(50) UNIQUE NOT NULL, "
            "icon varchar(1024), masthead varchar(100))"
        )
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    suffix = uuid.uuid4().hex[:8]
    primary, cdn = f"hostile-{suffix}", f"hostile-cdn-{suffix}"
    for bucket in (primary, cdn):
        client.create_bucket(Bucket=bucket)
    client.put_bucket_versioning(Bucket=primary, VersioningConfiguration={"Status": "Enabled"})
    common = {"table": "archive_publicationsource", "slug_column": "slug"}
    icon: dict[str, Any] = {**common, "name": "archive.PublicationSource.icon", "column": "icon", "upload_to": "icons/"}
    masthead = {**common, "name": "archive.PublicationSource.masthead", "column": "masthead", "upload_to": "mastheads/"}
    icon.update(canonical="icons/{slug}{ext}", max_length=1024)
    masthead.update(canonical="mastheads/{slug}{ext}")
    media_map = mediamap.parse({"buckets": {"primary": primary, "cdn": cdn}, "fields": [icon, masthead]})
    s3 = RecordingS3(client, conninfo)
    with Database(conninfo) as db:
        yield Site(
            Steps(media_map, s3, db, Ledger(db, media_map.schema), owner_wait_seconds=0), s3, client, conninfo, primary, cdn
        )
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_catalogue_holds_at_least_60_distinct_keys() -> None:
    assert len(HOSTILE_KEYS) >= 60
    assert len({k.key for k in HOSTILE_KEYS}) == len({k.name for k in HOSTILE_KEYS}) == len(HOSTILE_KEYS)
    assert {k.expect for k in HOSTILE_KEYS} == {"renamed", "refused", "skipped", "not_exercisable"}


ENCODINGS = ("encoded", "as-sent")


def slug_for(case: Any, encoding: str) -> str:
    return (f"hk-{case.name}" if encoding == "encoded" else f"hr-{case.name}")[:50]


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("case", HOSTILE_KEYS, ids=[k.name for k in HOSTILE_KEYS])
def test_a_hostile_key_keeps_its_meaning_or_is_refused_and_nothing_is_lost(site: Site, case: Any, encoding: str) -> None:
    """Either encoding of the event's key reaches the same object: decoded once, and where that names nothing while
    the key as sent does (a key holding '+' or '%', sent as it is), the key as sent (Steps.normalize)."""
    site.encoding = encoding
    slug = slug_for(case, encoding)
    body = f"bytes of {case.name}".encode()
    if case.expect == "not_exercisable":
        with pytest.raises((ClientError, UnicodeEncodeError)):  # the limit the catalogue names is real
            site.client.put_object(Bucket=site.primary, Key=case.key, Body=body)
        with pytest.raises((UnsafeKeyError, UnicodeEncodeError)):
            naming.resolve(site.steps.map, case.key)  # and mediacanon would not act on the name either
        return
    site.client.put_object(Bucket=site.primary, Key=case.key, Body=body, ContentType="image/png", CacheControl="max-age=60")
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        reference = case.key if case.row_can_reference else None  # else the row exists with an empty column
        conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, reference))
    deletes_before = len(site.s3.deletes)

    upload = site.event(site.primary, case.key)
    if encoding == "encoded":
        assert upload.key == case.key  # decoded exactly once from the S3 encoding
    normalized = site.steps.normalize(upload)
    site.steps.replicate(site.event(site.primary, case.key))  # the upload's event on the replicate queue too

    if case.expect == "renamed":
        canonical = f"icons/{slug}{case.ext}"
        assert (normalized.outcome, normalized.canonical_key) == (Outcome.NORMALIZED, canonical), normalized
        assert site.steps.replicate(site.event(site.primary, canonical, "CopyObject")).outcome == Outcome.MIRRORED
        linked = site.steps.link(site.event(site.cdn, canonical, "CopyObject"))
        assert (linked.outcome, linked.rows_changed, linked.retired) == (Outcome.LINKED, 1, True), linked
        assert site.icon(slug) == canonical
        assert site.s3.get_bytes(site.primary, canonical) == site.s3.get_bytes(site.cdn, canonical) == body
        head = site.s3.head(site.primary, canonical)
        assert head is not None and (head.content_type, head.cache_control) == ("image/png", "max-age=60")
        assert head.metadata[SOURCE_KEY] == quote(case.key, safe="/")  # ASCII metadata that names the source exactly
        assert site.s3.head(site.primary, case.key) is None
        # the source, and only it, was deleted, and only once no row referenced it (I2)
        assert site.s3.deletes[deletes_before:] == [(site.primary, case.key, [])]
    else:
        if case.expect == "refused":
            assert normalized.outcome == Outcome.REFUSED and normalized.detail, normalized
            with pytest.raises(UnsafeKeyError) as refused:
                naming.check_key(case.key)
            assert repr(case.key) in str(refused.value)  # the error names the key, then the reason
        else:
            assert normalized.outcome == Outcome.SKIPPED, normalized
        assert site.icon(slug) == (case.key if case.row_can_reference else None)  # the row is left as it was
        assert site.s3.get_bytes(site.primary, case.key) == body  # kept, byte for byte
        assert site.s3.deletes[deletes_before:] == []
    # a late duplicate of the upload event changes nothing
    late = site.steps.normalize(site.event(site.primary, case.key))
    assert late.outcome in (Outcome.SKIPPED, Outcome.REFUSED), late
    assert site.s3.deletes[deletes_before:] in ([], [(site.primary, case.key, [])])


def test_no_hostile_key_touched_another_or_the_table(site: Site) -> None:
    """Runs after the catalogue (file order): the SQL-laden names dropped no table, and the CDN holds nothing but
    the canonical keys of renamed entries (no key leaked into the mirror under a hostile name)."""
    canonical = {f"icons/{slug_for(k, e)}{k.ext}" for k in HOSTILE_KEYS for e in ENCODINGS if k.expect == "renamed"}
    assert {o.key for o in site.s3.iter_objects(site.cdn)} <= canonical
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        slugs = {r[0] for r in conn.execute("SELECT slug FROM archive_publicationsource")}
    assert slugs <= {slug_for(k, e) for k in HOSTILE_KEYS for e in ENCODINGS}


THROUGH_THE_LOCAL_STACK = (
    "plus", "space", "percent-2B", "percent-46", "nfd", "emoji-only", "single-quote", "sql-injection",
    "fullwidth", "tab", "dotdot-inside", "directory-marker",
)  # fmt: skip


def test_hostile_keys_through_moto_eventbridge_sqs_and_the_real_handlers(
    moto_endpoint: str, archive_db: str, archive_map: Any, tmp_path: Path
) -> None:
    """A selection of the catalogue on the whole live path: real S3 -> EventBridge -> SQS deliveries from the moto
    server (re-encoded into S3's shape by the local runner), the three real handlers in process."""
    import boto3
    import yaml

    from mediacanon.local import localrun

    cases = [k for k in HOSTILE_KEYS if k.name in THROUGH_THE_LOCAL_STACK]
    assert len(cases) == len(THROUGH_THE_LOCAL_STACK)
    suffix = uuid.uuid4().hex[:8]
    data = archive_map(f"media-{suffix}", f"cdn-{suffix}")
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    media_map = mediamap.parse(data, source=str(config))
    stack = localrun.provision_media_map(media_map, ROOT / "template.yaml", endpoint_url=moto_endpoint, stack_name=f"hk-{suffix}")
    client = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    try:
        with psycopg.connect(archive_db, autocommit=True) as conn:
            for case in cases:
                conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (f"hk-{case.name}", case.key))
        for case in cases:  # as Django does it: the file first (the row above stands for one committed right after)
            client.put_object(Bucket=media_map.buckets.primary, Key=case.key, Body=case.name.encode(), ContentType="image/png")

        report = localrun.run(stack, config=config, database_url=archive_db, progress=False, timeout=90)
    finally:
        localrun.shutdown()

    renamed = [c for c in cases if c.expect == "renamed"]
    refused = [c for c in cases if c.expect == "refused"]
    assert report.refused_keys == {c.key for c in refused}, report
    assert (
        report.line
        == f"DONE | normalized={len(renamed)} mirrored={len(renamed)} linked={len(renamed)} retired={len(renamed)} refused={len(refused)} failed=0"
    )
    s3 = S3Adapter(client)
    primary = {o.key for o in s3.iter_objects(media_map.buckets.primary)}
    assert primary == {f"icons/hk-{c.name}.png" for c in renamed} | {c.key for c in refused}
    assert {o.key for o in s3.iter_objects(media_map.buckets.cdn)} == {f"icons/hk-{c.name}.png" for c in renamed}
    with psycopg.connect(archive_db, autocommit=True) as conn:
        rows: dict[str, str | None] = dict(conn.execute("SELECT slug, icon FROM archive_publicationsource").fetchall())
    assert rows == {f"hk-{c.name}": (f"icons/hk-{c.name}.png" if c.expect == "renamed" else c.key) for c in cases}
    for c in renamed:
        assert s3.get_bytes(media_map.buckets.cdn, f"icons/hk-{c.name}.png") == c.name.encode()
