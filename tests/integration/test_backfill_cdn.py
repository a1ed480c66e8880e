"""The backfill invalidates the CDN paths it replaced or pruned, as the live path does: the state machine run locally
(mediacanon.local.sfnlocal) against the session's moto server and PostgreSQL, with a CloudFront distribution created on that
moto server, its invalidations read back from CloudFront."""

from __future__ import annotations

import json
import uuid
from typing import Any

import boto3
import psycopg
import pytest

from mediacanon.adapters.cdn import MAX_FILE_PATHS, MAX_WILDCARD_PATHS, CdnInvalidations, invalidation_paths
from mediacanon.core import mediamap
from mediacanon.local.sfnlocal import run_backfill
from mediacanon.sfnremote import BackfillResult

pytestmark = pytest.mark.integration

ROWS = [
    ("nytimes", "icons/nytimes.png"),  # canonical, its CDN copy stale (other bytes): replaced by the listed batch
    ("bbc", "icons/bbc.ico"),  # canonical, not mirrored yet: a new CDN key, nothing cached to invalidate
    ("guardian", "icons/guardian_old.png"),  # missing; the read-only legacy bucket holds it; its CDN copy stale
]


def _distribution(endpoint: str) -> tuple[Any, str]:
    cloudfront = boto3.client("cloudfront", endpoint_url=endpoint, region_name="us-east-1")
    origin = {"Id": "cdn", "DomainName": "cdn.s3.us-east-1.amazonaws.com", "S3OriginConfig": {"OriginAccessIdentity": ""}}
    config = {
        "CallerReference": f"test-{uuid.uuid4().hex}",
        "Comment": "",
        "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [origin]},
        "DefaultCacheBehavior": {"TargetOriginId": "cdn", "ViewerProtocolPolicy": "redirect-to-https", "MinTTL": 0},
    }
    return cloudfront, cloudfront.create_distribution(DistributionConfig=config)["Distribution"]["Id"]


def _invalidations(cloudfront: Any, distribution_id: str) -> list[list[str]]:
    listed = cloudfront.list_invalidations(DistributionId=distribution_id)["InvalidationList"].get("Items", [])
    batches = [
        cloudfront.get_invalidation(DistributionId=distribution_id, Id=i["Id"])["Invalidation"]["InvalidationBatch"]
        for i in listed
    ]
    return [batch["Paths"].get("Items", []) for batch in batches]


@pytest.fixture
def stale_cdn(s3_client: Any, bucket: Any, archive_db: str, archive_map: Any, moto_endpoint: str) -> dict[str, Any]:
    primary, cdn, legacy = bucket("primary"), bucket("cdn"), bucket("legacy")
    with psycopg.connect(archive_db, autocommit=True) as conn:
        for slug, icon in ROWS:
            conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", (slug, icon))
    s3_client.put_object(Bucket=primary, Key="icons/nytimes.png", Body=b"nyt icon, the current one", ContentType="image/png")
    s3_client.put_object(Bucket=primary, Key="icons/bbc.ico", Body=b"bbc icon", ContentType="image/x-icon")
    s3_client.put_object(Bucket=legacy, Key="icons/guardian_old.png", Body=b"guardian from legacy", ContentType="image/png")
    s3_client.put_object(Bucket=cdn, Key="icons/nytimes.png", Body=b"nyt icon, an old one")
    s3_client.put_object(Bucket=cdn, Key="icons/guardian.png", Body=b"guardian, an old one")
    s3_client.put_object(Bucket=cdn, Key="icons/stale_icon_v2.png", Body=b"not canonical")  # pruned
    return {
        "map": mediamap.parse(archive_map(primary, cdn, [legacy])),
        "conninfo": archive_db,
        "endpoint": moto_endpoint,
        "primary": primary,
        "cdn": cdn,
    }


def _run(site: dict[str, Any]) -> BackfillResult:
    return run_backfill(site["map"], endpoint_url=site["endpoint"], database_url=site["conninfo"], timeout=120, progress=False)


def _report(s3_client: Any, site: dict[str, Any], result: BackfillResult) -> dict[str, Any]:
    key = next(k for k in result.report_keys if k.endswith(".json"))
    report: dict[str, Any] = json.loads(s3_client.get_object(Bucket=site["primary"], Key=key)["Body"].read())
    return report


def test_the_backfill_invalidates_what_it_replaced_and_pruned_and_nothing_new(
    stale_cdn: dict[str, Any], s3_client: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every CDN key the backfill replaced (the objects phase's listed batch, the rows phase's per-object steps) or
    pruned (the mirror phase) is invalidated, a task's paths in one CreateInvalidation; a key new to the CDN bucket is
    not (nothing of it was cached)."""
    cloudfront, distribution_id = _distribution(moto_endpoint)
    monkeypatch.setenv("MEDIACANON_CDN_DISTRIBUTION_ID", distribution_id)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    result = _run(stale_cdn)

    assert (result.status, result.error) == ("SUCCEEDED", None)
    cdn = stale_cdn["cdn"]
    assert s3_client.get_object(Bucket=cdn, Key="icons/nytimes.png")["Body"].read() == b"nyt icon, the current one"
    assert s3_client.get_object(Bucket=cdn, Key="icons/guardian.png")["Body"].read() == b"guardian from legacy"
    assert "Contents" not in s3_client.list_objects_v2(Bucket=cdn, Prefix="icons/stale_icon_v2.png")
    batches = _invalidations(cloudfront, distribution_id)
    # one request per task at most: the objects batch (icons/), the rows range (icon field), the mirror prune
    assert sorted(path for batch in batches for path in batch) == [
        "/icons/guardian.png",
        "/icons/nytimes.png",
        "/icons/stale_icon_v2.png",
    ]
    assert len(batches) == 3
    assert all(len(batch) == 1 for batch in batches)
    report = _report(s3_client, stale_cdn, result)
    assert report["counts"].get("invalidated") == 3
    assert not [i for i in report["items"] if i["outcome"] == "uninvalidated"]

    # a second run replaces nothing: no invalidation
    again = _run(stale_cdn)
    assert again.status == "SUCCEEDED"
    assert len(_invalidations(cloudfront, distribution_id)) == 3


def test_a_failed_invalidation_fails_nothing_and_is_reported(
    stale_cdn: dict[str, Any], s3_client: Any, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIACANON_CDN_DISTRIBUTION_ID", "EDOESNOTEXIST")  # CloudFront answers NoSuchDistribution
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)

    result = _run(stale_cdn)

    assert (result.status, result.error, result.failed_items) == ("SUCCEEDED", None, 0)
    assert s3_client.get_object(Bucket=stale_cdn["cdn"], Key="icons/nytimes.png")["Body"].read() == b"nyt icon, the current one"
    report = _report(s3_client, stale_cdn, result)
    uninvalidated = sorted(i["key"] for i in report["items"] if i["outcome"] == "uninvalidated")
    assert uninvalidated == ["/icons/guardian.png", "/icons/nytimes.png", "/icons/stale_icon_v2.png"]
    assert all("NoSuchDistribution" in i["detail"] for i in report["items"] if i["outcome"] == "uninvalidated")
    assert report["counts"].get("uninvalidated") == 3 and not report["counts"].get("invalidated")


def test_without_a_distribution_the_backfill_sends_no_invalidation(
    stale_cdn: dict[str, Any], s3_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEDIACANON_CDN_DISTRIBUTION_ID", raising=False)
    sent: list[str] = []

    def flush(self: CdnInvalidations, reference: str) -> list[str]:
        sent.append(reference)
        return []

    monkeypatch.setattr(CdnInvalidations, "flush", flush)

    result = _run(stale_cdn)

    assert result.status == "SUCCEEDED"
    assert sent == []
    report = _report(s3_client, stale_cdn, result)
    assert report["counts"]["invalidated"] == report["counts"]["uninvalidated"] == 0


def test_more_paths_than_one_invalidation_may_name_become_wildcards(moto_endpoint: str) -> None:
    """CloudFront allows 3,000 file paths and 15 wildcard paths in progress per distribution
    (https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/cloudfront-limits.html#limits-invalidations,
    https://docs.aws.amazon.com/AmazonCloudFront/latest/DeveloperGuide/InvalidationLimits.html): more files than that
    go in one request of wildcards over their folders, never in a second request CloudFront would refuse."""
    small = [f"/icons/{i}.png" for i in range(MAX_FILE_PATHS)]
    assert invalidation_paths(small) == sorted(small)
    many = [f"/icons/{i}.png" for i in range(MAX_FILE_PATHS)] + ["/mastheads/a/b.jpg", "/mastheads/a/c/d.jpg"]
    assert invalidation_paths(many) == ["/icons/*", "/mastheads/a/*"]
    assert invalidation_paths([*many, "/top.png"]) == ["/*"]
    folders = [f"/f{n}/{i}.png" for n in range(MAX_WILDCARD_PATHS + 1) for i in range(200)]
    assert invalidation_paths(folders) == ["/*"]

    cloudfront, distribution_id = _distribution(moto_endpoint)
    invalidations = CdnInvalidations(distribution_id, cloudfront)
    for i in range(MAX_FILE_PATHS + 1):
        invalidations.add_key(f"icons/{i}.png")
    assert invalidations.flush("mediacanon-test") == ["/icons/*"]
    assert _invalidations(cloudfront, distribution_id) == [["/icons/*"]]
    assert invalidations.pending == []
