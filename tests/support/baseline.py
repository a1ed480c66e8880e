"""What held at the start (of a schedule, a backfill), and the invariants held against it: what the state alone
cannot show (mediacanon.checks.invariants reports a retired source whose copy is gone; it cannot tell it apart from
a file deleted on purpose since).

`check_against_baseline` is `check_invariants` and, with the baseline:
- I2: every read-only fallback bucket is unchanged byte for byte (same keys, same ETags);
- I5: every original object's bytes are still in the primary bucket (under a referenced key, or under a key the
  report lists), and every source mediacanon retired still has its canonical copy (broken, not reported).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediacanon.checks.invariants import InvariantReport, Violation, check_invariants
from mediacanon.copies import SOURCE_ETAG

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import ObjectInfo, S3Adapter
    from mediacanon.core.mediamap import MediaMap

_VIOLATION_KEYS = ("invariant", "kind", "key", "detail")


@dataclass(frozen=True)
class Baseline:
    """What held at the start (of a schedule, a backfill): the original primary objects and the fallbacks' contents."""

    originals: Mapping[str, str]  # primary key -> ETag
    fallbacks: Mapping[str, Mapping[str, str]]  # fallback bucket -> key -> ETag
    # primary key -> its full-object checksum ("<algorithm>:<value>"), when taken `with_checksums`: how an original's
    # bytes are found under a copy's fresh SSE-KMS ETag that records nothing (a listed batch's as-is copy)
    checksums: Mapping[str, str] = field(default_factory=dict)


def take_baseline(media_map: MediaMap, s3: S3Adapter, *, with_checksums: bool = False) -> Baseline:
    primary = {
        o.key: o.etag for o in s3.iter_objects(media_map.buckets.primary) if not o.key.startswith(media_map.reports_prefix)
    }
    fallbacks = {b: {o.key: o.etag for o in s3.iter_objects(b)} for b in media_map.buckets.fallbacks}
    checksums: dict[str, str] = {}
    if with_checksums:
        for key in primary:
            head = s3.head(media_map.buckets.primary, key, checksum=True)
            if head is not None and head.checksum is not None:
                checksums[key] = head.checksum
    return Baseline(primary, fallbacks, checksums)


def check_against_baseline(
    media_map: MediaMap, s3: S3Adapter, db: Database, ledger: Ledger, baseline: Baseline | None
) -> InvariantReport:
    """`check_invariants`, then (with a baseline) the retired sources whose copy is gone broken, not reported (I5),
    and the fallbacks and the originals held against the baseline (I2, I5)."""
    report = check_invariants(media_map, s3, db, ledger)
    if baseline is None:
        return report
    report.violations.extend(_broken(gone) for gone in report.retired_copy_gone)
    report.retired_copy_gone = []
    primary = {o.key: o for o in s3.iter_objects(media_map.buckets.primary)}
    report.violations.extend(_check_fallbacks(s3, baseline))
    report.violations.extend(_check_originals(media_map, s3, baseline, primary))
    return report


def _broken(reported: Mapping[str, Any]) -> Violation:
    """A reported violation (its `to_json`) as a broken one."""
    data = {k: v for k, v in reported.items() if k not in _VIOLATION_KEYS}
    return Violation(reported["invariant"], reported["kind"], reported["key"], reported["detail"], data)


def _check_fallbacks(s3: S3Adapter, baseline: Baseline) -> list[Violation]:
    """I2: every read-only fallback bucket unchanged byte for byte."""
    out: list[Violation] = []
    for bucket, before in baseline.fallbacks.items():
        now = {o.key: o.etag for o in s3.iter_objects(bucket)}
        for key in sorted(set(before) | set(now)):
            if before.get(key) != now.get(key):
                what = "deleted" if key not in now else "written" if key not in before else "overwritten"
                out.append(
                    Violation("I2", "read_only_source_changed", key, f"{what} in read-only s3://{bucket}", {"bucket": bucket})
                )
    return out


def _check_originals(
    media_map: MediaMap, s3: S3Adapter, baseline: Baseline, primary: Mapping[str, ObjectInfo]
) -> list[Violation]:
    """I5: every original's bytes still held by some primary object."""
    out: list[Violation] = []
    etags = {obj.etag for obj in primary.values()}
    recorded: set[str] | None = None
    for key, etag in baseline.originals.items():
        if etag in etags:
            continue
        if recorded is None:
            recorded = _recorded_sources(media_map, s3, baseline, primary)
        if etag not in recorded and baseline.checksums.get(key) not in recorded:
            out.append(Violation("I5", "original_bytes_lost", key, f"no primary object holds its bytes (ETag {etag}) any more"))
    return out


def _recorded_sources(media_map: MediaMap, s3: S3Adapter, baseline: Baseline, primary: Mapping[str, ObjectInfo]) -> set[str]:
    """The ETags and checksums of the bytes primary objects were copied from.

    A multipart copy, and any copy of an SSE-KMS or SSE-C object, has a new ETag for the same bytes: a steps' copy
    records the source's ETag in its metadata, and S3 moves the source's checksum to every copy. Without checksums
    in the baseline only multipart copies are read (an SSE-S3 copy keeps its MD5 ETag); with them, every object."""
    recorded: set[str] = set()
    for k, obj in primary.items():
        if baseline.checksums or "-" in obj.etag:
            head = s3.head(media_map.buckets.primary, k, checksum=bool(baseline.checksums))
            if head is not None and SOURCE_ETAG in head.metadata:
                recorded.add(head.metadata[SOURCE_ETAG])
            if head is not None and head.checksum is not None:
                recorded.add(head.checksum)
    return recorded
