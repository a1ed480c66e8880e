"""`mediacanon verify` on a QA stack serving a production dump's files (issue 18 part 4, docs/qa.md), on a real moto
server and PostgreSQL: with `buckets.fallbacks_served: true` (the distribution fails over to the read-only
production bucket: tests/unit/test_cdn_failover.py), a row whose key only that bucket holds resolves, so it is
`served_from_fallback`, neither missing, repairable nor I1 broken; without it, the same rows read as before."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from click.testing import CliRunner

from mediacanon.adapters.db import Database, Swap
from mediacanon.adapters.ledger import Ledger
from mediacanon.cli import main
from mediacanon.core import mediamap
from mediacanon.core.errors import ConfigError, ConfigErrors
from mediacanon.local.cdn import LocalCdn
from mediacanon.local.topology import expand

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"

DUMP_ROWS = {  # slug -> the key the production dump's row names
    "nytimes": "icons/nytimes.png",  # production's file: only the fallback holds it
    "moved": "icons/moved.png",  # production's file, and production's ledger says mediacanon moved the row there
    "bbc": "icons/bbc.ico",  # uploaded in QA: both QA buckets hold it
    "gone": "icons/gone.png",  # a 404 in production too: no bucket holds it
}


@pytest.fixture
def qa(
    s3_client: Any,
    bucket: Any,
    archive_db: str,
    archive_map: Any,
    moto_endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    primary, cdn, production = bucket("qa-media"), bucket("qa-cdn"), bucket("prod-media")
    data = archive_map(primary, cdn, [production])
    served = tmp_path / "qa.yaml"
    served.write_text(yaml.safe_dump({**data, "buckets": {**data["buckets"], "fallbacks_served": True}}))
    copied = tmp_path / "copied.yaml"
    copied.write_text(yaml.safe_dump(data))
    with psycopg.connect(archive_db, autocommit=True) as conn:
        for slug, key in DUMP_ROWS.items():
            named = "icons/Moved_FINAL.png" if slug == "moved" else key  # until production's link (below)
            conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, named))
    for key in ("icons/nytimes.png", "icons/moved.png"):
        s3_client.put_object(Bucket=production, Key=key, Body=key.encode())
    for qa_bucket in (primary, cdn):
        s3_client.put_object(Bucket=qa_bucket, Key="icons/bbc.ico", Body=b"bbc")
    # the dump carries production's ledger: mediacanon moved the row 'moved' there, in production
    media_map = mediamap.load(served)
    mapping = media_map.field("archive.PublicationSource.icon")
    with Database(archive_db) as db:
        (row,) = [r for r in db.iter_rows(mapping) if r.slug == "moved"]
        assert (
            Ledger(db, media_map.schema)
            .link(
                mapping,
                [Swap(row.id, "icons/Moved_FINAL.png", "icons/moved.png")],
                source_key="icons/Moved_FINAL.png",
                canonical_key="icons/moved.png",
                etag=None,
                sequencer=None,
            )
            .rows_changed
        )
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("DATABASE_URL", archive_db)
    return {"served": served, "copied": copied, "production": production, "primary": primary, "cdn": cdn}


def _verify(config: Path, *flags: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["verify", "--config", str(config), *flags])
    return result.exit_code, result.output


def _versions(s3_client: Any, bucket: str) -> list[tuple[str, str]]:
    listing = s3_client.list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])])


def test_rows_only_the_served_fallback_holds_are_served_not_missing_nor_broken(qa: dict[str, Any], s3_client: Any) -> None:
    before = _versions(s3_client, qa["production"])
    code, output = _verify(qa["served"], "--json")
    data = json.loads(output)
    assert code == 0, output
    assert data["fallbacks_served"] is True
    served = {m["key"]: m for m in data["report"]["served_from_fallback"]}
    assert set(served) == {"icons/nytimes.png", "icons/moved.png"}
    assert {m["fallback"] for m in served.values()} == {qa["production"]}
    assert all((m["in_primary"], m["in_cdn"]) == (False, False) for m in served.values())
    assert data["i1_never_a_404"]["broken"] == [], "the CDN serves production's file: no 404"
    assert [m["key"] for m in data["report"]["missing"]] == ["icons/gone.png"]
    assert data["report"]["repairable"] == []
    assert (data["reported"]["served_from_fallback"], data["reported"]["missing"], data["reported"]["repairable"]) == (2, 1, 0)
    assert _versions(s3_client, qa["production"]) == before, "verify only reads the fallback"


def test_without_fallbacks_served_the_same_rows_are_repairable_and_broken(qa: dict[str, Any]) -> None:
    """The copy-based reading (the backfill's repair): a fallback's file is brought back by copying, so a row
    pointing at it is repairable, and one the ledger says mediacanon moved is an I1 404."""
    code, output = _verify(qa["copied"], "--json")
    data = json.loads(output)
    assert code == 1, output
    assert data["fallbacks_served"] is False
    assert "served_from_fallback" not in data["report"] and "served_from_fallback" not in data["reported"]
    assert [b["key"] for b in data["i1_never_a_404"]["broken"]] == ["icons/moved.png"]
    assert [m["key"] for m in data["report"]["repairable"]] == ["icons/nytimes.png"]
    assert [m["key"] for m in data["report"]["missing"]] == ["icons/gone.png"]


def test_the_text_output_and_the_verify_line_say_it(qa: dict[str, Any]) -> None:
    code, output = _verify(qa["served"])
    assert code == 0, output
    (line,) = [x for x in output.splitlines() if x.startswith("VERIFY |")]
    assert line.startswith("VERIFY | ok | ")
    assert re.search(r" missing=1 repairable=0 served_from_fallback=2 orphan=0 ", line), line
    assert re.search(r"^served from fallback: 2 ", output, re.M), output
    assert f"only {qa['production']} holds resolve" in output
    _, plain = _verify(qa["copied"])
    (plain_line,) = [x for x in plain.splitlines() if x.startswith("VERIFY |")]
    assert "served_from_fallback" not in plain_line and " missing=1 repairable=1 orphan=0 " in plain_line


def test_what_verify_counts_as_served_the_qa_distribution_serves_from_the_fallback(qa: dict[str, Any], s3_client: Any) -> None:
    """verify's words and the CDN's routing agree: the QA distribution of the expanded template (its origin group read
    by mediacanon.local.cdn) answers 200 from the fallback for each served_from_fallback row, from QA's primary for
    QA's own files, and 404 for the missing rows; the reports prefix is never failed over."""
    parameters = {
        "PrimaryBucketName": qa["primary"],
        "CdnBucketName": qa["cdn"],
        "DatabaseSecretArn": SECRET,
        "CreateDistribution": "true",
        "ReadOnlyFallbackBucket": qa["production"],
    }
    cdn = LocalCdn.from_template(expand(TEMPLATE, parameters, artifact_bucket="mediacanon-artifacts"), parameters, s3_client)
    assert cdn.default.origins == ("primary-bucket", "read-only-fallback")
    assert cdn.buckets["read-only-fallback"] == qa["production"]
    data = json.loads(_verify(qa["served"], "--json")[1])
    served = [m["key"] for m in data["report"]["served_from_fallback"]]
    missing = [m["key"] for m in data["report"]["missing"]]
    assert served and missing
    assert {cdn.serve(key) for key in served} == {(200, "read-only-fallback")}
    assert {cdn.serve(key) for key in missing} == {(404, "read-only-fallback")}
    assert cdn.serve("icons/bbc.ico") == (200, "primary-bucket")
    s3_client.put_object(Bucket=qa["production"], Key="mediacanon-reports/run-1/report.json", Body=b"{}")
    assert cdn.serve("mediacanon-reports/run-1/report.json") == (404, "cdn-bucket")


# -- the media map's buckets.fallbacks_served --------------------------------------------------------------------


def _map(**buckets: Any) -> dict[str, Any]:
    return {
        "buckets": {"primary": "qa-media", "cdn": "qa-cdn", **buckets},
        "fields": [
            {"name": "icon", "table": "t", "column": "icon", "slug_column": "slug", "upload_to": "icons/", "canonical": "icons/{slug}{ext}"}
        ],
    }  # fmt: skip


def test_fallbacks_served_defaults_to_false_and_is_read_when_given() -> None:
    assert mediamap.parse(_map(fallbacks=["archive-media"])).buckets.fallbacks_served is False
    served = mediamap.parse(_map(fallbacks=["archive-media"], fallbacks_served=True)).buckets
    assert (served.fallbacks, served.fallbacks_served) == (("archive-media",), True)
    assert mediamap.parse(_map(fallbacks=[], fallbacks_served=False)).buckets.fallbacks_served is False


@pytest.mark.parametrize(
    ("buckets", "problem"),
    [
        ({"fallbacks_served": True}, "with 0 fallbacks"),
        ({"fallbacks": ["archive-media", "archive-legacy"], "fallbacks_served": True}, "with 2 fallbacks"),
        ({"fallbacks": ["archive-media"], "fallbacks_served": "yes"}, "must be true or false"),
    ],
)
def test_fallbacks_served_is_refused_unless_one_fallback_is_what_the_cdn_fails_over_to(
    buckets: dict[str, Any], problem: str
) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as raised:
        mediamap.parse(_map(**buckets), source="qa.yaml")
    assert "buckets.fallbacks_served" in str(raised.value) and problem in str(raised.value)


def test_check_config_accepts_the_qa_map(qa: dict[str, Any]) -> None:
    result = CliRunner().invoke(main, ["check-config", "--config", os.fspath(qa["served"])])
    assert result.exit_code == 0, result.output
