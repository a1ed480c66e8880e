"""Each prefix's objects workers (mediacanon.backfill.concurrency) from S3's documented write limit.

Amazon S3 User Guide, "Best practices design patterns: optimizing Amazon S3 performance": "your application can
achieve at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per partitioned Amazon S3 prefix".
S3 API Reference, DeleteObjects: "The request contains a list of up to 1000 keys that you want to delete ... For each
key, Amazon S3 performs a delete operation and returns the result of that delete" -- counted here as one DELETE per
key (AWS does not say a DeleteObjects request counts once against the rate)."""

from __future__ import annotations

from typing import Any

import pytest

from mediacanon.backfill import concurrency
from mediacanon.core.errors import PermanentError


def test_the_documented_figures() -> None:
    assert concurrency.S3_WRITES_PER_SECOND_PER_PREFIX == 3_500
    # a CopyObject to the canonical key, and the source's key in the batch's DeleteObjects
    assert concurrency.PRIMARY_WRITES_PER_OBJECT == 2.0


def test_workers_keep_a_prefix_under_its_write_limit() -> None:
    workers = concurrency.workers_per_prefix()
    assert workers == 43  # floor(3,500 / (2 x 40))
    writes = workers * concurrency.OBJECTS_PER_WORKER_SECOND * concurrency.PRIMARY_WRITES_PER_OBJECT
    assert writes <= 3_500 < (workers + 1) * concurrency.OBJECTS_PER_WORKER_SECOND * concurrency.PRIMARY_WRITES_PER_OBJECT


@pytest.mark.parametrize(("rate", "expected"), [(10.0, 175), (40.0, 43), (50.0, 35), (2_000.0, 1), (0.1, 1_000)])
def test_faster_workers_mean_fewer_of_them(rate: float, expected: int) -> None:
    assert concurrency.workers_per_prefix(rate) == expected


def test_prefixes_side_by_side_share_the_account_s_lambda_concurrency() -> None:
    assert concurrency.workers_per_prefix(prefixes=3) == 43  # 3 x 43 = 129: the rate binds
    assert concurrency.workers_per_prefix(prefixes=100) == 10  # 1,000 / 100: the Lambda share binds
    assert concurrency.workers_per_prefix(prefixes=5_000) == 1  # never none
    assert concurrency.workers_per_prefix(0.01, lambda_concurrency=10**9) == concurrency.DISTRIBUTED_MAP_MAX_CONCURRENCY


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "40", True])
def test_a_bad_objects_rate_is_refused(bad: Any) -> None:
    with pytest.raises(PermanentError, match="objectsPerWorkerSecond must be a positive number"):
        concurrency.objects_concurrency(bad, 3)


def test_the_input_caps_the_workers_never_raises_them() -> None:
    """objectsMaxConcurrency: a team's cap for its database (or the local runner's for its cores)."""
    uncapped = concurrency.objects_concurrency(None, 2)
    assert concurrency.objects_concurrency(None, 2, 4) == 4 < uncapped
    assert concurrency.objects_concurrency(None, 2, 10_000) == uncapped
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(PermanentError, match="objectsMaxConcurrency must be a positive integer"):
            concurrency.objects_concurrency(None, 2, bad)
