"""The 10 M-object model: a backfill's time and cost from the request counts the scale benchmark measured
(`bench/scale.py`), AWS's published limits and prices, and a few latencies that are assumptions, named as such.

Nothing here is typed in as a result: every figure is computed from `Measured` (what one local run counted) and the
constants below, each with the document it comes from. `model()` returns the figures and the steps that led to them,
so docs/scale.md can show its working.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# the report task's own model: its GETs, its CPU per item and part, its upload, overlapping
from mediacanon.backfill.report import modeled_merge_seconds

# -- AWS's published limits (us-east-1) ----------------------------------------------------------------------------
# "Best practices design patterns: optimizing Amazon S3 performance" (Amazon S3 User Guide): "your application can
# achieve at least 3,500 PUT/COPY/POST/DELETE or 5,500 GET/HEAD requests per second per partitioned Amazon S3 prefix"
S3_WRITES_PER_PREFIX_S = 3500
S3_READS_PER_PREFIX_S = 5500
LIST_PAGE = 1000  # ListObjectsV2 MaxKeys: "returns some or all (up to 1,000) of the objects" (S3 API Reference)
LAMBDA_TIMEOUT_S = 900  # Lambda quotas: "Function timeout: 900 seconds (15 minutes)"

# -- AWS's published prices (us-east-1) -----------------------------------------------------------------------------
S3_TIER1_USD = 0.005 / 1000  # Amazon S3 pricing, S3 Standard: PUT, COPY, POST, LIST requests per 1,000
S3_TIER2_USD = 0.0004 / 1000  # GET, SELECT and all other requests per 1,000 (HEAD); DELETE and CANCEL are free
S3_TIER1 = frozenset(
    {
        "PutObject",
        "CopyObject",
        "ListObjectsV2",
        "ListObjects",
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "PutObjectTagging",
        "ListObjectVersions",
    }
)
S3_FREE = frozenset({"DeleteObject", "DeleteObjects", "AbortMultipartUpload"})
LAMBDA_GB_S_USD = 0.0000133334  # AWS Lambda pricing, Arm: per GB-second
LAMBDA_REQUEST_USD = 0.20 / 1_000_000  # per request
SFN_TRANSITION_USD = 0.025 / 1000  # AWS Step Functions pricing, Standard workflows: per 1,000 state transitions
SQS_REQUEST_USD = 0.40 / 1_000_000  # Amazon SQS pricing, standard queue: per million requests (64 KB chunks)
SQS_BATCH = 10  # ReceiveMessage / DeleteMessageBatch carry up to 10 messages (SQS Developer Guide, quotas)

# -- assumptions: not published by AWS, named so a reader can change them ------------------------------------------
ASSUMED = {
    "copy_s": 0.060,  # one CopyObject of a small object within a region
    "list_s": 0.060,  # one ListObjectsV2 page of 1,000 keys
    "get_s": 0.020,  # one GetObject / PutObject of a small report part
    "db_round_trip_s": 0.002,  # Lambda to RDS in the same region
    "db_rows_per_s": 1_000_000,  # PostgreSQL numbering rows in key order (Prepare's one query), with the index
    "lambda_gb": 1.0,  # BackfillFunction MemorySize 1,024 MB
    "live_handler_s": 0.030,  # a live-path message that is a backfill's own event: at most one HEAD, no database
    "live_handler_gb": 0.5,  # the live functions' MemorySize (template.yaml Globals: 512 MB)
    "transitions_per_child": 3,  # a child workflow: its start, the Task state, its end
}


@dataclass(frozen=True)
class Measured:
    """What one local run counted (bench/scale.py): totals for `objects` objects and `rows` file references."""

    objects: int
    rows: int
    prefixes: int  # the objects phase's prefixes, run side by side
    operations: Mapping[str, int]  # S3 requests of the whole backfill (every phase), by operation
    migrated: int  # canonical copies made into the primary bucket (the report's count)
    retired: int  # sources deleted from the primary bucket (each key of a DeleteObjects request)
    batches: int  # the objects map's child executions
    ranges: int  # the rows map's child executions
    fields: int  # the file columns whose rows are checked (a key range never spans two)
    rows_per_range: int  # backfill.ROWS_PER_RANGE: the run's ranges are fewer than 10 M rows' would be per row
    mirror_walkers: int  # backfill.mirror.MIRROR_WALKERS: slices of the key space listed side by side
    db_round_trips: int  # the whole backfill's
    rows_operations: Mapping[str, int]  # S3 requests of a rows phase run alone, over `rows` references
    copy_threads: int  # a batch's copies at once
    rows_concurrency: int  # the rows map's MaxConcurrency
    part_readers: int  # the report's parts read side by side
    report_bytes_per_object: float
    live_messages_per_object: float  # the live path's messages a backfilled object causes (bench/live_cost.py)
    live_operations_per_object: Mapping[str, float] = field(default_factory=dict)


def s3_usd(operations: Mapping[str, float]) -> float:
    return sum(n * (0 if op in S3_FREE else S3_TIER1_USD if op in S3_TIER1 else S3_TIER2_USD) for op, n in operations.items())


def model(m: Measured, objects: int = 10_000_000) -> dict[str, Any]:
    """Time (hours, by phase, one after another as the state machine runs them) and cost (USD per million objects,
    by item) of a backfill of `objects` objects laid out as the measured run's: the same prefixes, requests per
    object and per row, batch and range sizes."""
    scale = objects / m.objects
    rows = m.rows * scale
    batches = m.batches * scale
    ranges = m.fields * math.ceil(rows / m.fields / m.rows_per_range)
    per_object = {op: n / m.objects for op, n in m.operations.items()}

    # objects phase: bound by S3's writes per partitioned prefix in the primary bucket (a canonical copy in, a source
    # deleted; the report parts too) and in the CDN bucket (its copy); workers beyond what reaches it only meet SlowDown
    primary_writes = (m.migrated + m.retired + m.operations.get("PutObject", 0)) / m.objects
    cdn_writes = max(per_object.get("CopyObject", 0) - m.migrated / m.objects, 0.0)
    limit_objects_s = m.prefixes * S3_WRITES_PER_PREFIX_S / max(primary_writes, cdn_writes, 1e-9)
    objects_per_batch = m.objects / max(m.batches, 1)
    lists_per_batch = (m.operations.get("ListObjectsV2", 0) - m.rows_operations.get("ListObjectsV2", 0)) / max(m.batches, 1)
    batch_s = (
        objects_per_batch * per_object.get("CopyObject", 0) * ASSUMED["copy_s"] / m.copy_threads
        + lists_per_batch * ASSUMED["list_s"]
        + m.db_round_trips / max(m.batches, 1) * ASSUMED["db_round_trip_s"]
        + ASSUMED["get_s"]  # its report part
    )
    worker_objects_s = objects_per_batch / batch_s
    workers = math.ceil(limit_objects_s / worker_objects_s)
    objects_s = objects / limit_objects_s

    # rows phase: key ranges listed a page per ~1,000 rows, read from the database by index range
    rows_requests_per_row = sum(m.rows_operations.values()) / m.rows
    range_s = (rows / ranges) * rows_requests_per_row * ASSUMED["list_s"] + (rows / ranges) / ASSUMED["db_rows_per_s"]
    rows_s = ranges * range_s / m.rows_concurrency
    prepare_s = rows / ASSUMED["db_rows_per_s"]
    # mirror prune: both buckets listed once, a page per 1,000 keys, slices walked side by side (keys spread over
    # the slices as slugs spread over their first characters; one walk lists its slice of both buckets in turn)
    mirror_s = 2 * objects / LIST_PAGE * ASSUMED["list_s"] / m.mirror_walkers
    # report: every part read (PART_READERS at once), the merged documents uploaded
    parts = batches + ranges
    report_s = modeled_merge_seconds(parts, m.part_readers, ASSUMED["get_s"], items=objects)
    phases_s = {"prepare": prepare_s, "objects": objects_s, "rows": rows_s, "mirror": mirror_s, "report": report_s}

    # cost
    million = objects / 1_000_000
    copies = {op: n * scale for op, n in m.operations.items() if op == "CopyObject"}
    other = {op: n * scale for op, n in m.operations.items() if op != "CopyObject"}
    gb_s = (batches * batch_s + ranges * range_s + report_s + mirror_s + prepare_s) * ASSUMED["lambda_gb"]
    invocations = batches + ranges + 3
    transitions = (batches + ranges) * ASSUMED["transitions_per_child"] + 50
    live_messages = m.live_messages_per_object * objects
    live_invocations = live_messages / SQS_BATCH
    usd = {
        "S3 COPY (the two copies)": s3_usd(copies),
        "S3 other requests (LIST, PUT, GET, HEAD)": s3_usd(other),
        "Lambda GB-seconds": gb_s * LAMBDA_GB_S_USD,
        "Lambda requests": invocations * LAMBDA_REQUEST_USD,
        "Step Functions transitions": transitions * SFN_TRANSITION_USD,
        "live path: SQS (send, receive, delete)": live_messages * (1 + 2 / SQS_BATCH) * SQS_REQUEST_USD,
        "live path: S3 requests": s3_usd({op: n * objects for op, n in m.live_operations_per_object.items()}),
        "live path: Lambda": live_invocations
        * (LAMBDA_REQUEST_USD + SQS_BATCH * ASSUMED["live_handler_s"] * ASSUMED["live_handler_gb"] * LAMBDA_GB_S_USD),
    }
    per_million = {k: v / million for k, v in usd.items()}
    return {
        "objects": objects,
        "hours": sum(phases_s.values()) / 3600,
        "phase_hours": {k: v / 3600 for k, v in phases_s.items()},
        "usd_per_million": sum(per_million.values()),
        "usd_per_million_by_item": per_million,
        "usd_per_million_backfill_only": sum(v for k, v in per_million.items() if not k.startswith("live path")),
        "working": {
            "primary_writes_per_object": primary_writes,
            "cdn_writes_per_object": cdn_writes,
            "prefixes": m.prefixes,
            "objects_per_s_at_the_prefix_limit": limit_objects_s,
            "batch_s": batch_s,
            "objects_per_worker_s": worker_objects_s,
            "workers_to_reach_the_limit": workers,
            "batches": batches,
            "ranges": ranges,
            "range_s": range_s,
            "report_parts": parts,
            "batch_s_vs_lambda_timeout": batch_s / LAMBDA_TIMEOUT_S,
            "report_s_vs_lambda_timeout": report_s / LAMBDA_TIMEOUT_S,
        },
        "assumed": dict(ASSUMED),
    }
