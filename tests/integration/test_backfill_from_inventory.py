"""A backfill whose objects come from an S3 Inventory (`--inventory s3://.../manifest.json`) instead of a listing: the
test_backfill site, an inventory of its primary bucket written in the real shape (test_inventory_on_s3's builder:
gzip CSV data files, keys URL-encoded, a manifest.json), run locally (mediacanon.local.sfnlocal feeds the inventory's
rows to the map where AWS's MANIFEST reader would) to the same end state as the listing's."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support.helpers import load_test_module

from mediacanon.cli import main

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = "static/admin/css/base file.css"  # under no prefix to scan (the media map's fields own icons/, mastheads/)
LISTING_LINE = "DONE | migrated=3 linked=1 missing=1 skipped=0 failed=0 repaired=1 mirrored=1 pruned=1 orphan=1"


_backfill = load_test_module("backfill_integration_site", ROOT / "tests" / "integration" / "test_backfill.py")
_inventory = load_test_module("inventory_on_s3_builder", ROOT / "tests" / "integration" / "test_inventory_on_s3.py")
site = _backfill.site  # messy names under icons/ and mastheads/ (one with a space: '+' in the inventory), a staged download


def _inventory_of(site: Any, bucket: Any, age: timedelta) -> str:
    """An inventory of the site's primary bucket, `age` old, in a destination bucket of its own: its manifest's URI."""
    dest = bucket("inventory")
    key = _inventory.write_inventory(site.client, site.primary, dest, created=datetime.now(UTC) - age, per_file=3)
    return f"s3://{dest}/{key}"


def test_a_backfill_from_an_inventory_ends_as_one_from_the_listing(site: Any, bucket: Any) -> None:
    # a key outside every prefix to scan: the inventory lists it (it lists the whole bucket), the worker leaves it
    site.client.put_object(Bucket=site.primary, Key=OUTSIDE, Body=b"body { }")
    uri = _inventory_of(site, bucket, timedelta(hours=3))
    legacy_before = site.objects(site.legacy)

    result = site.run(inventory=uri)

    assert (result.status, result.error, result.failed_items) == ("SUCCEEDED", None, 0)
    assert result.report_line == LISTING_LINE  # the listing run's outcomes, nothing more (OUTSIDE not an orphan)
    # one map over the whole inventory (not one per prefix), and the rows map
    labels = sorted(arn.rsplit("/", 1)[1].split(":")[0] for arn in result.map_run_counts)
    assert labels == ["inventory", "rows"]
    inventory_run = next(c for arn, c in result.map_run_counts.items() if "/inventory:" in arn)
    assert inventory_run["total"] == 1  # 7 rows, one batch of at most 1,000
    assert site.body(site.primary, OUTSIDE) == b"body { }"
    site.client.delete_object(Bucket=site.primary, Key=OUTSIDE)
    _backfill.assert_final_state(site)
    assert site.objects(site.legacy) == legacy_before
    # the output says where the objects came from and how stale that was
    assert result.source_line is not None
    assert re.fullmatch(
        rf"S3 Inventory {re.escape(uri)} of \d{{4}}-\d\d-\d\d \d\d:\d\d UTC, 3 h [0-2] min old: objects written since are "
        "not in it; the live path handles them",
        result.source_line,
    ), result.source_line
    # and a second run from the same (now out-of-date) inventory changes nothing: its copies are conditional
    before = site.state()
    again = site.run(inventory=uri)
    assert again.status == "SUCCEEDED" and again.failed_items == 0
    assert site.state() == before
    report = next(k for k in result.report_keys if k.endswith(".csv"))
    assert OUTSIDE not in site.body(site.primary, report).decode()
    document = json.loads(site.body(site.primary, next(k for k in result.report_keys if k.endswith(".json"))))
    assert document["source"] == result.source_line and document["line"] == LISTING_LINE


def test_a_listing_run_says_it_listed(site: Any) -> None:
    result = site.run(phases=["mirror", "report"])
    assert result.source_line == f"listing s3://{site.primary}/ (ListObjectsV2)"
    document = json.loads(site.body(site.primary, next(k for k in result.report_keys if k.endswith(".json"))))
    assert document["source"] == result.source_line


def test_a_stale_inventory_is_refused_before_anything_is_copied(site: Any, bucket: Any) -> None:
    uri = _inventory_of(site, bucket, timedelta(days=9))
    before = site.state()

    result = site.run(inventory=uri)

    assert result.status == "FAILED" and result.map_run_counts == {}
    assert result.error is not None and "PermanentError" in result.error
    assert "9 d 0 h old, older than the 7 d 0 h allowed" in result.error and "fix:" in result.error
    assert site.state() == before  # nothing copied, deleted or relinked
    # a larger maximum age accepts it
    accepted = site.run(inventory=uri, inventory_max_age_days=10)
    assert accepted.status == "SUCCEEDED" and accepted.report_line == LISTING_LINE


def test_the_cli_prints_the_source_and_refuses_a_stale_inventory_before_it_starts(
    site: Any, bucket: Any, tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "mediamap.yaml"
    config.write_text(yaml.safe_dump(site.map_data))
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("DATABASE_URL", site.conninfo)
    stale = _inventory_of(site, bucket, timedelta(days=9))
    before = site.state()

    refused = CliRunner().invoke(main, ["backfill", "--config", str(config), "--inventory", stale])

    assert refused.exit_code != 0
    assert "--inventory: " in refused.output and "9 d 0 h old" in refused.output and "fix:" in refused.output
    assert "execution:" not in refused.output  # no execution started
    assert site.state() == before
    wrong = CliRunner().invoke(main, ["backfill", "--config", str(config), "--inventory", "s3://nowhere/data.csv.gz"])
    assert wrong.exit_code != 0 and "is not an S3 Inventory manifest" in wrong.output

    ran = CliRunner().invoke(
        main, ["backfill", "--config", str(config), "--inventory", stale, "--inventory-max-age", "10", "--timeout", "120"]
    )

    assert ran.exit_code == 0, ran.output
    assert f"source: S3 Inventory {stale} of " in ran.output and "9 d 0 h old" in ran.output
    assert f"objects from: S3 Inventory {stale} of " in ran.output  # and the execution's own word on it, at the end
    assert ran.output.index("source: ") < ran.output.index("execution: ") < ran.output.index("objects from: ")
    assert LISTING_LINE in ran.output
    _backfill.assert_final_state(site)
    name = re.search(r"execution: \S+:(\S+)  status", ran.output)
    assert name is not None, ran.output
    shown = CliRunner().invoke(main, ["report", "--config", str(config), name.group(1)])
    assert shown.exit_code == 0 and f"objects from: S3 Inventory {stale} of " in shown.output, shown.output
