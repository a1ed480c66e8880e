"""bench/live.py's pure computations, from recorded samples: percentiles, the per-hop split, the keep-up ratio and the
targets (no timing is measured here)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.helpers import load_test_module

LIVE = Path(__file__).resolve().parents[2] / "bench" / "live.py"


@pytest.fixture(scope="module")
def live() -> ModuleType:
    return load_test_module("bench_live", LIVE)  # type: ignore[no-any-return]


def test_percentile_interpolates_between_ranks(live: Any) -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert live.percentile(values, 50) == pytest.approx(50.5)
    assert live.percentile(values, 99) == pytest.approx(99.01)
    assert live.percentile(values, 100) == 100.0
    assert live.percentile([3.0], 99) == 3.0
    assert live.percentile([], 50) is None
    assert live.percentile([5.0, 1.0, 3.0], 50) == 3.0  # unsorted input


def test_latency_is_put_to_link(live: Any) -> None:
    s = live.Sample("icons/a_v2.png", "icons/a.png", put_at=100.0, hops={"normalize": 100.2, "replicate": 100.5, "link": 101.0})
    assert s.latency == pytest.approx(1.0)
    assert live.Sample("k", "c", put_at=100.0, hops={"normalize": 100.2}).latency is None
    assert live.Sample("k", "c", hops={"link": 1.0}).latency is None


def test_hop_split_measures_each_hop_from_the_previous(live: Any) -> None:
    samples = [
        live.Sample("a", "A", put_at=0.0, hops={"normalize": 0.1, "replicate": 0.3, "link": 0.6}),
        live.Sample("b", "B", put_at=10.0, hops={"normalize": 10.3, "replicate": 10.4, "link": 11.0}),
        live.Sample("c", "C", put_at=20.0, hops={"normalize": 20.2}),  # not replicated yet: only its first hop counts
    ]
    split = live.hop_split(samples)
    assert split["normalize"]["p50"] == pytest.approx(0.2)
    assert split["normalize"]["max"] == pytest.approx(0.3)
    assert split["replicate"]["p50"] == pytest.approx(0.15)
    assert split["link"]["max"] == pytest.approx(0.6)
    figures = live.phase_figures(samples)
    assert figures["uploads"] == 3 and figures["linked"] == 2
    assert figures["latency_s"]["p50"] == pytest.approx(0.8)


def test_keep_up_ratio(live: Any) -> None:
    assert live.keep_up_ratio(3.0, 2.0) == pytest.approx(1.5)
    assert live.keep_up_ratio(None, 2.0) is None
    assert live.keep_up_ratio(1.0, 0.0) is None


def _live_figures(**over: Any) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "keep_up_ratio": 1.2, "s3_writes_per_upload": 3.0, "s3_reads_per_upload": 2.0, "db_round_trips_per_upload": 4.0,
        "burst_failed": 0, "burst_dlq": 0, "max_db_connections": 3, "db_connection_bound": 15,
    }  # fmt: skip
    figures.update(over)
    return figures


def test_targets_met_at_the_limits_and_missed_above(live: Any) -> None:
    assert all(t["met"] for t in live.targets(_live_figures()))
    missed = {
        t["target"]
        for t in live.targets(
            _live_figures(keep_up_ratio=1.6, s3_reads_per_upload=2.5, db_round_trips_per_upload=4.1, burst_dlq=1)
        )
        if not t["met"]
    }
    assert missed == {
        "p99 at 20/s <= 1.5 x p99 at 1/s", "S3 reads per upload <= 2", "DB round trips per upload <= 4", "burst: DLQ = 0",
    }  # fmt: skip
    assert next(t["met"] for t in live.targets(_live_figures(keep_up_ratio=None))) is None


def test_maximum_concurrency_reads_the_template_default(live: Any) -> None:
    text = "Parameters:\n  MaximumConcurrency:\n    Type: Number\n    Default: 7\n    MinValue: 2\n"
    assert live.maximum_concurrency(text) == 7
    assert live.maximum_concurrency((LIVE.parents[1] / "template.yaml").read_text()) >= 2


def test_a_rewrite_of_live_keeps_the_model_and_the_cold_start(live: Any) -> None:
    previous = {"model": {"chosen": 1}, "cold_start_ratio": 1.5, "cold_start": {"x": 1}, "p99_s_at_1": 9.0}
    out = live.merged(previous, {"p99_s_at_1": 0.5})
    assert out == {"model": {"chosen": 1}, "cold_start_ratio": 1.5, "cold_start": {"x": 1}, "p99_s_at_1": 0.5}
