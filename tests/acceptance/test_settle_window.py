"""No 404 while a file settles (issue 18): what a viewer of the row's URL gets between Django's PUT and the link.

Django stores a file under the name it chose, commits the row naming it and renders `custom_domain/<that key>` at
once; the live path then copies it to its canonical key (normalize), mirrors that to the CDN bucket (replicate) and
swaps the row (link). The CDN bucket never holds the key Django chose (only canonical keys are mirrored), so until
the link a CDN that reads the CDN bucket alone answers 404 for the row's URL. The distribution of template.yaml reads
an origin group, the CDN bucket then the primary (tests/unit/test_cdn_failover.py); `mediacanon.local.cdn` reads
that group from the expanded template and serves GETs from the emulator's buckets in its order.

The live path is stepped record by record, not raced: the runner's observer samples the row's URL after each record
a step handles (after the PUT, after normalize, after replicate's records, after link), so the "before" sees its
404s on every run; timings are recorded (stdout and the test's properties), only counts are asserted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import yaml

from mediacanon.core import mediamap
from mediacanon.local import localrun
from mediacanon.local.cdn import LocalCdn
from mediacanon.local.localrun import LocalStack
from mediacanon.local.topology import expand
from mediacanon.steps import StepResult

pytestmark = pytest.mark.acceptance

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mediacanon/db-AbCdEf"
UPLOADED, CANONICAL = "icons/nytimes_icon_v2_final.png", "icons/nytimes.png"


@dataclass
class Sample:
    at: float  # seconds since the PUT
    after: str  # what ran last: "PUT", or a step's name
    key: str  # the key the row names: what Django's URL asks the CDN for
    without_failover: tuple[int, str]  # (status, origin) from the CDN bucket alone
    with_failover: tuple[int, str]  # (status, origin) through the template's origin group


@dataclass
class Window:
    samples: list[Sample] = field(default_factory=list)

    def not_found(self, with_failover: bool) -> list[Sample]:
        return [s for s in self.samples if (s.with_failover if with_failover else s.without_failover)[0] != 200]

    def seconds(self, with_failover: bool) -> float:
        """From the PUT to the last sample that did not answer 200 (0 when every sample answered)."""
        missed = self.not_found(with_failover)
        return missed[-1].at if missed else 0.0


@dataclass
class Site:
    stack: LocalStack
    config: Path
    conninfo: str
    s3: Any
    primary: str
    cdn: str

    def icon(self, slug: str) -> str:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            row = conn.execute("SELECT icon FROM archive_publicationsource WHERE slug = %s", (slug,)).fetchone()
        assert row is not None
        return str(row[0])


@pytest.fixture
def site(moto_endpoint: str, archive_db: str, archive_map: Any, tmp_path: Path) -> Iterator[Site]:
    suffix = uuid.uuid4().hex[:8]
    data = archive_map(f"media-{suffix}", f"cdn-{suffix}")
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    media_map = mediamap.parse(data, source=str(config))
    stack = localrun.provision_media_map(media_map, TEMPLATE, endpoint_url=moto_endpoint, stack_name=f"mc-{suffix}")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    yield Site(stack, config, archive_db, s3, media_map.buckets.primary, media_map.buckets.cdn)
    localrun.shutdown()


def test_a_fresh_upload_404s_on_the_cdn_bucket_alone_and_never_through_the_origin_group(site: Site, record_property: Any) -> None:
    parameters = {
        "PrimaryBucketName": site.primary,
        "CdnBucketName": site.cdn,
        "DatabaseSecretArn": SECRET,
        "CreateDistribution": "true",
    }
    template = expand(TEMPLATE, parameters, artifact_bucket="mediacanon-artifacts")
    with_failover = LocalCdn.from_template(template, parameters, site.s3)
    without_failover = with_failover.without_failover()
    assert with_failover.default.origins == ("cdn-bucket", "primary-bucket")
    assert (with_failover.buckets["cdn-bucket"], with_failover.buckets["primary-bucket"]) == (site.cdn, site.primary)
    assert without_failover.default.origins == ("cdn-bucket",)

    window = Window()
    started = time.monotonic()

    def sample(after: str) -> None:
        key = site.icon("nytimes")
        window.samples.append(
            Sample(time.monotonic() - started, after, key, without_failover.serve(key), with_failover.serve(key))
        )

    def observe(step: str, result: StepResult) -> None:
        sample(step)

    # as Django saves a model with an ImageField: the file is stored, then the row naming it is committed
    site.s3.put_object(Bucket=site.primary, Key=UPLOADED, Body=b"\x89PNG nytimes", ContentType="image/png")
    with psycopg.connect(site.conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nytimes', %s)", (UPLOADED,))
    sample("PUT")
    report = localrun.run(site.stack, config=site.config, database_url=site.conninfo, progress=False, timeout=60, observe=observe)

    assert report.line == "DONE | normalized=1 mirrored=1 linked=1 retired=1 refused=0 failed=0", report
    assert site.icon("nytimes") == CANONICAL
    sample("settled")
    steps = [s.after for s in window.samples]
    assert steps[0] == "PUT" and "normalize" in steps and "link" in steps, steps
    linked = steps.index("link")
    before_link, after_link = window.samples[:linked], window.samples[linked:]
    assert all(s.key == UPLOADED for s in before_link) and all(s.key == CANONICAL for s in after_link)

    # before: the CDN bucket alone 404s the row's URL from the PUT until the link (normalize ran, replicate mirrored
    # only the canonical key), then serves the canonical key
    assert window.not_found(with_failover=False) == before_link
    assert {s.without_failover for s in before_link} == {(404, "cdn-bucket")}
    assert [s for s in before_link if s.after == "normalize"], "sampled after normalize, before the link"
    # after: the origin group serves every sample, from the primary until the link, from the CDN bucket after it
    assert window.not_found(with_failover=True) == []
    assert {s.with_failover for s in before_link} == {(200, "primary-bucket")}
    assert {s.with_failover for s in after_link} == {(200, "cdn-bucket")}

    measured = {
        "samples": len(window.samples),
        "before_404s": len(window.not_found(with_failover=False)),
        "before_seconds": round(window.seconds(with_failover=False), 3),
        "after_404s": len(window.not_found(with_failover=True)),
        "after_seconds": round(window.seconds(with_failover=True), 3),
    }
    for name, value in measured.items():
        record_property(name, value)
    print(
        "SETTLE WINDOW | CDN bucket alone: {before_404s} of {samples} samples 404, {before_seconds} s from the PUT | "
        "origin group: {after_404s} 404s, {after_seconds} s".format(**measured)
    )
    for s in window.samples:
        print(f"  +{s.at:.3f}s after {s.after}: {s.key}: alone {s.without_failover}, group {s.with_failover}")
