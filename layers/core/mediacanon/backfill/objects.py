"""The per-object objects phase: each key through the live path's steps (normalize, replicate, link), which read
what they need; a dry run plans instead."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.cdn import CdnInvalidations
from mediacanon.adapters.s3 import UNKNOWN_ENCRYPTION, DeleteResult, ObjectHead, copied_metadata
from mediacanon.backfill.results import BatchResult, Count
from mediacanon.core import naming
from mediacanon.core.errors import PermanentError, UnmappedKeyError, UnsafeKeyError
from mediacanon.owners import find_owners
from mediacanon.plan import Action, HeadedEtags, build_plan_for_keys, orphan_reason
from mediacanon.steps import ObjectEvent, Outcome, StepResult, Steps

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter


def _event(bucket: str, key: str) -> ObjectEvent:
    return ObjectEvent(bucket=bucket, key=key, created=True)


def process_objects(steps: Steps, keys: Sequence[str], *, dry_run: bool, cdn: CdnInvalidations | None = None) -> BatchResult:
    """Normalize, replicate and link each object of a batch of primary keys (the CDN keys replaced go to `cdn`)."""
    result = BatchResult(cdn=cdn)
    if dry_run:
        media = [key for key in keys if not key.startswith(steps.map.reports_prefix)]
        for item in build_plan_for_keys(steps.map, steps.s3, steps.db, media):
            count = _DRY_RUN_COUNTS[item.action]
            result.add(count, item.key, f"would: {item.action.value}; {item.reason}", item.canonical_key)
        return result
    _process_each(steps, keys, result)
    return result


_DRY_RUN_COUNTS: dict[Action, Count] = {
    Action.RENAME: "migrated",
    Action.LINK: "linked",
    Action.MIRROR: "mirrored",
    Action.OK: "skipped",
    Action.SKIP: "skipped",
    Action.ORPHAN: "orphan",
    Action.REFUSE: "refused",
    Action.MISSING: "missing",
    Action.REPAIR: "repaired",
}


class _WrittenHeads:
    """The S3 adapter for the steps of one object: a HEAD of a key these steps have just copied is answered from
    what the copy sent (its source's headers and size, the merged metadata, the ETag S3 returned), so replicate
    and link do not re-read what normalize and replicate wrote a moment ago. Everything else goes to S3,
    the retire step's check of the source included."""

    def __init__(self, s3: S3Adapter) -> None:
        self._s3 = s3
        self._written: dict[tuple[str, str], ObjectHead] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def head(self, bucket: str, key: str, *, checksum: bool = False) -> ObjectHead | None:
        written = None if checksum else self._written.get((bucket, key))  # a checksum is S3's to say
        if written is not None:
            return written
        return self._s3.head(bucket, key, checksum=True) if checksum else self._s3.head(bucket, key)

    def copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        metadata: dict[str, str] | None = None,
        source_head: ObjectHead | None = None,
        drop_metadata: Iterable[str] = (),
    ) -> str:
        head = source_head if source_head is not None else self.head(src_bucket, src_key)
        drop = tuple(drop_metadata)
        etag = self._s3.copy(src_bucket, src_key, dst_bucket, dst_key, metadata=metadata, source_head=head, drop_metadata=drop)
        if head is not None:
            merged = copied_metadata(head, metadata, drop)
            # the copy keeps its source's checksum (S3 moves it); its encryption is the destination bucket's, which the
            # ETag shows only when it is the source's MD5 again: otherwise it is not known here
            encryption = head.encryption if etag == head.etag else UNKNOWN_ENCRYPTION
            self._written[(dst_bucket, dst_key)] = replace(
                head, key=dst_key, etag=etag, metadata=merged, version_id=None, encryption=encryption
            )
        return etag

    def delete_many(self, bucket: str, keys: Iterable[str]) -> DeleteResult:
        keys = list(keys)
        for key in keys:
            self._written.pop((bucket, key), None)
        return self._s3.delete_many(bucket, keys)


class _CdnWatch:
    """The S3 adapter for the per-object steps of a task with a distribution: each copy into the CDN bucket over an
    object there (its last HEAD found one, or none was made), and each CDN key deleted, goes to the task's
    invalidations. The steps HEAD the CDN key before they mirror it, so a new key's path is not invalidated."""

    def __init__(self, s3: S3Adapter, cdn: str, result: BatchResult) -> None:
        self._s3 = s3
        self._cdn = cdn
        self._result = result
        self._held: dict[str, bool] = {}  # CDN key -> whether its last HEAD found an object

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def head(self, bucket: str, key: str, *, checksum: bool = False) -> ObjectHead | None:
        head = self._s3.head(bucket, key, checksum=True) if checksum else self._s3.head(bucket, key)
        if bucket == self._cdn:
            self._held[key] = head is not None
        return head

    def _written(self, bucket: str, key: str) -> None:
        if bucket == self._cdn and self._held.pop(key, True):
            self._result.cdn_changed(key)

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **kwargs: Any) -> str:
        etag = self._s3.copy(src_bucket, src_key, dst_bucket, dst_key, **kwargs)
        self._written(dst_bucket, dst_key)
        return etag

    def copy_as_is(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, *, source_etag: str) -> str:
        etag = self._s3.copy_as_is(src_bucket, src_key, dst_bucket, dst_key, source_etag=source_etag)
        self._written(dst_bucket, dst_key)
        return etag

    def delete_many(self, bucket: str, keys: Iterable[str]) -> DeleteResult:
        keys = list(keys)
        deleted = self._s3.delete_many(bucket, keys)
        if bucket == self._cdn:
            failed = {error.key for error in deleted.errors}
            for key in keys:
                if key not in failed:
                    self._held.pop(key, None)
                    self._result.cdn_changed(key)
        return deleted


def _watched(steps: Steps, result: BatchResult) -> Steps:
    """`steps` whose S3 adapter reports the CDN keys it replaces or removes to the result's invalidations (as they
    are when the task has none)."""
    if result.cdn is None:
        return steps
    steps = copy.copy(steps)
    steps.s3 = _CdnWatch(steps.s3, steps.map.buckets.cdn, result)  # type: ignore[assignment]  # the same interface
    return steps


def _process_each(steps: Steps, keys: Iterable[str], result: BatchResult) -> None:
    """The per-object steps for each key; a permanent failure fails that key only (a retryable one, the batch)."""
    for key in keys:
        try:
            _process_object(steps, key, result)
        except PermanentError as exc:
            result.add("failed", key, str(exc))


def _process_object(steps: Steps, key: str, result: BatchResult) -> None:
    if key.startswith(steps.map.reports_prefix):
        return  # mediacanon's own reports: not media, not counted
    steps = copy.copy(steps)
    steps.s3 = _WrittenHeads(_watched(steps, result).s3)  # type: ignore[assignment]  # the same interface, one object's memory
    primary = steps.map.buckets.primary
    normalized = steps.normalize(_event(primary, key))
    if normalized.outcome == Outcome.REFUSED:
        result.add("refused", key, normalized.detail)
        return
    if normalized.outcome == Outcome.COLLISION:
        result.add("collision", key, normalized.detail, normalized.canonical_key)
        return
    if normalized.outcome == Outcome.UNOWNED:
        result.add("orphan", key, normalized.detail)
        return
    canonical = normalized.canonical_key
    if canonical is None:  # unmapped, a report, or gone
        result.add("skipped", key, normalized.detail)
        return
    mirrored = steps.replicate(_event(primary, canonical))
    linked = steps.link(_event(steps.map.buckets.cdn, canonical))
    unowned = _orphan_reason(steps, key) if key == canonical and not linked.rows_changed else None
    _count(result, key, canonical, normalized, mirrored, linked, unowned)


def _orphan_reason(steps: Steps, key: str) -> str | None:
    """Why a key the steps left where it is counts as an orphan (plan.orphan_reason: the plan's and verify's
    definition), or None when a row owns it. A key canonical by its name with no row is one: normalize leaves it
    alone ('already canonical'), but nothing will ever point at it. One query by reference, one by slug."""
    try:
        res = naming.resolve(steps.map, key)
    except (UnsafeKeyError, UnmappedKeyError):
        return None  # named by the row that references it (normalize resolved it by reference): owned
    owner = find_owners(steps.db, [(key, res)]).get(key)
    return orphan_reason(res.field, key, owner, HeadedEtags(steps.s3, steps.map.buckets.primary))


def _count(
    result: BatchResult,
    key: str,
    canonical: str,
    normalized: StepResult,
    mirrored: StepResult,
    linked: StepResult,
    unowned: str | None = None,
) -> None:
    renamed = key != canonical
    if unowned is not None:
        done = "; mirrored" if mirrored.outcome == Outcome.MIRRORED else ""
        result.add("orphan", key, unowned + done, canonical)
    elif renamed and (normalized.copied or linked.rows_changed or linked.retired):
        result.add("migrated", key, linked.detail, canonical)
    elif linked.rows_changed:
        result.add("linked", key, linked.detail, canonical)
    elif mirrored.outcome == Outcome.MIRRORED:
        result.add("mirrored", key, mirrored.detail, canonical)
    elif renamed and not linked.rows_changed:
        # canonical already existed with these bytes but the rows point elsewhere: this copy is a duplicate
        result.add("orphan", key, f"duplicate of {canonical!r}: {linked.detail}", canonical)
    else:
        result.add("skipped", key, "already canonical, mirrored and linked", canonical)
