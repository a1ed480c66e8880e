"""How many objects workers a prefix's map run may have: S3's write limit per partitioned prefix over what a worker
writes there. A pure function; Prepare returns its value and the objects map reads it (MaxConcurrencyPath).

The figures, and where they come from:
- S3 User Guide, "Best practices design patterns: optimizing Amazon S3 performance": "your application can achieve at
  least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per partitioned Amazon S3 prefix"; above it
  S3 answers 503 SlowDown while it scales ("gradually increase the request rate and retry failed requests using an
  exponential backoff algorithm", AWS Knowledge Center, s3-503-within-request-rate-prefix).
- writes per object into the primary bucket: the canonical CopyObject (1) and the source's share of a DeleteObjects
  request. S3 API Reference, DeleteObjects: "For each key, Amazon S3 performs a delete operation and returns the
  result of that delete" -- AWS does not document the request as one write against the rate, so each key is counted
  as the DELETE it performs (1). The CDN copy lands in the other bucket (its own prefixes, 1 write per object: it
  binds later). The report part is one PutObject per batch, under the reports prefix, not the media prefix.
- objects per worker-second: measured, not documented (docs/scale.md, bench/RESULTS.md: ~35-50 objects/s for a
  worker on 10 copy threads): OBJECTS_PER_WORKER_SECOND, which an execution's input may override
  (objectsPerWorkerSecond) once a deployment has measured its own.
"""

from __future__ import annotations

import math
from typing import Any

from mediacanon.core.errors import PermanentError

S3_WRITES_PER_SECOND_PER_PREFIX = 3_500  # PUT/COPY/POST/DELETE per partitioned prefix (S3 performance guidelines)
PRIMARY_WRITES_PER_OBJECT = 2.0  # CopyObject to the canonical key + the source's key in DeleteObjects
OBJECTS_PER_WORKER_SECOND = 40.0  # a listed batch's worker (docs/scale.md); the input's objectsPerWorkerSecond
DISTRIBUTED_MAP_MAX_CONCURRENCY = 10_000  # Step Functions' bound on a Distributed Map's MaxConcurrency
LAMBDA_ACCOUNT_CONCURRENCY = 1_000  # the account's default concurrent executions, shared by every prefix's map run


def workers_per_prefix(
    objects_per_worker_second: float = OBJECTS_PER_WORKER_SECOND,
    *,
    writes_per_second: float = S3_WRITES_PER_SECOND_PER_PREFIX,
    writes_per_object: float = PRIMARY_WRITES_PER_OBJECT,
    prefixes: int = 1,
    lambda_concurrency: int = LAMBDA_ACCOUNT_CONCURRENCY,
) -> int:
    """The MaxConcurrency of one prefix's objects map: the most workers whose writes stay under the prefix's limit
    (floor(writes_per_second / (writes_per_object * objects_per_worker_second))), and no more than an equal share
    of `lambda_concurrency` among the `prefixes` running side by side; at least 1, at most Step Functions' 10,000."""
    if objects_per_worker_second <= 0 or writes_per_object <= 0 or writes_per_second <= 0:
        raise ValueError("the write limit, writes per object and objects per worker-second must be positive")
    by_rate = math.floor(writes_per_second / (writes_per_object * objects_per_worker_second))
    share = lambda_concurrency // max(prefixes, 1)
    return max(1, min(by_rate, share, DISTRIBUTED_MAP_MAX_CONCURRENCY))


def objects_concurrency(objects_per_worker_second: Any, prefixes: int, at_most: Any = None) -> int:
    """Prepare's `objectsMaxConcurrency` for `prefixes` prefixes run side by side: `workers_per_prefix` at the
    execution input's objectsPerWorkerSecond (a positive number), else at OBJECTS_PER_WORKER_SECOND; never more than
    the input's `objectsMaxConcurrency` (a cap a team sets for its database, or the local runner for its 2 cores)."""
    if at_most is not None and (isinstance(at_most, bool) or not isinstance(at_most, int) or at_most < 1):
        raise PermanentError(f"objectsMaxConcurrency must be a positive integer, got {at_most!r}")
    workers = _workers(objects_per_worker_second, prefixes)
    return workers if at_most is None else min(workers, at_most)


def _workers(objects_per_worker_second: Any, prefixes: int) -> int:
    rate = OBJECTS_PER_WORKER_SECOND if objects_per_worker_second is None else objects_per_worker_second
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0:
        raise PermanentError(f"objectsPerWorkerSecond must be a positive number, got {objects_per_worker_second!r}")
    return workers_per_prefix(float(rate), prefixes=max(prefixes, 1))
