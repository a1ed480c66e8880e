"""A listed batch's copies run COPY_THREADS at once, and the S3 client built for them keeps as many connections."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mediacanon.adapters.s3 import CLIENT_CONFIG, S3Adapter
from mediacanon.backfill.listed import _concurrently
from mediacanon.backfill.listing import COPY_THREADS


def test_the_built_client_pools_a_connection_per_copy_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    built: Any = S3Adapter().client.meta.config
    given: Any = CLIENT_CONFIG
    assert COPY_THREADS > 10  # more than botocore's default pool
    assert given.max_pool_connections == COPY_THREADS
    assert built.max_pool_connections == COPY_THREADS
    assert built.retries["total_max_attempts"] == given.retries["total_max_attempts"]


def test_a_batch_has_copy_threads_copies_in_flight_at_once() -> None:
    # every copy waits until COPY_THREADS copies have started: fewer threads would break the barrier
    barrier = threading.Barrier(COPY_THREADS, timeout=30)
    moves = list(range(3 * COPY_THREADS))

    def copy(move: int) -> str:
        barrier.wait()
        return f"etag-{move}"

    done: Any = _concurrently(copy, moves)  # type: ignore[arg-type]  # any move will do here
    assert done == [(m, f"etag-{m}") for m in moves]
