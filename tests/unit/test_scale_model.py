"""The 10 M-object model (bench/scale_model.py) and the document generated from it (docs/scale.md): figures come
from the measured counts and AWS's published limits and prices, and the document is what the renderer makes of
bench/RESULTS.json, never a hand edit."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import scale_doc  # noqa: E402
import scale_model  # noqa: E402


def _measured(**changes: object) -> scale_model.Measured:
    n = 100_000
    base = scale_model.Measured(
        objects=n,
        rows=n,
        prefixes=2,
        operations={"CopyObject": 2 * n, "DeleteObjects": 100, "PutObject": 110, "ListObjectsV2": 400, "GetObject": 110},
        migrated=n,
        retired=n,
        batches=100,
        ranges=10,
        fields=2,
        rows_per_range=10_000,
        mirror_walkers=16,
        db_round_trips=2000,
        rows_operations={"ListObjectsV2": 100, "PutObject": 10},
        copy_threads=32,
        rows_concurrency=4,
        part_readers=16,
        report_bytes_per_object=300.0,
        live_messages_per_object=4.0,
        live_operations_per_object={"HeadObject": 3.0},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_the_two_copies_cost_what_s3_charges_for_two_copies() -> None:
    """Amazon S3 pricing, S3 Standard: PUT, COPY, POST, LIST requests $0.005 per 1,000: two COPYs per object are
    $10.00 per million objects, the floor of any rename-and-mirror."""
    modeled = scale_model.model(_measured())
    assert modeled["usd_per_million_by_item"]["S3 COPY (the two copies)"] == pytest.approx(10.0)
    assert modeled["usd_per_million"] > 10.0


def test_the_objects_phase_is_bound_by_s3_s_writes_per_prefix() -> None:
    """S3 performance guidelines: at least 3,500 PUT/COPY/POST/DELETE per second per partitioned prefix. Two writes
    per object in the primary bucket (its canonical copy, its source deleted) under two prefixes: 3,500 objects/s."""
    two = scale_model.model(_measured())
    one = scale_model.model(_measured(prefixes=1))
    assert two["working"]["objects_per_s_at_the_prefix_limit"] == pytest.approx(2 * 3500 / 2.0011, rel=1e-3)
    assert one["phase_hours"]["objects"] == pytest.approx(2 * two["phase_hours"]["objects"])
    assert two["phase_hours"]["objects"] == pytest.approx(10_000_000 / two["working"]["objects_per_s_at_the_prefix_limit"] / 3600)


def test_more_requests_measured_means_more_cost_and_time() -> None:
    base = scale_model.model(_measured())
    heads = scale_model.model(_measured(rows_operations={"ListObjectsV2": 100, "PutObject": 10, "HeadObject": 100_000}))
    assert heads["usd_per_million"] > base["usd_per_million"]
    assert heads["phase_hours"]["rows"] > base["phase_hours"]["rows"]
    quiet = scale_model.model(_measured(live_messages_per_object=0.0, live_operations_per_object={}))
    assert quiet["usd_per_million"] == pytest.approx(base["usd_per_million_backfill_only"], rel=0.01)


def test_docs_scale_md_is_what_the_renderer_makes_of_the_results() -> None:
    """docs/scale.md is generated (`python bench/scale.py --render`): a hand edit, or results rendered by an older
    renderer, fails here."""
    results = json.loads((ROOT / "bench" / "RESULTS.json").read_text())
    assert "scale" in results, "bench/RESULTS.json has no scale section: run bench/scale.py"
    scale = results["scale"]
    assert (ROOT / "docs" / "scale.md").read_text() == scale_doc.render(scale)
    # and its model figures are the model's, from the measured counts it recorded
    again = scale_model.model(scale_model.Measured(**scale["measured"]))
    assert scale["model_10m_hours"] == pytest.approx(again["hours"])
    assert scale["model_10m_usd_per_million"] == pytest.approx(again["usd_per_million"])
