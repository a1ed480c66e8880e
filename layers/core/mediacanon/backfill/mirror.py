"""The mirror phase: CDN keys that are not canonical primary keys, pruned per policy (I3)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mediacanon.adapters.cdn import CdnInvalidations
from mediacanon.backfill.results import FALLBACK_SOURCE, BatchResult
from mediacanon.copies import RESTORED_BY, SOURCE_ETAG
from mediacanon.core import naming
from mediacanon.core.errors import PermanentError, UnmappedKeyError, UnsafeKeyError
from mediacanon.steps import Steps

if TYPE_CHECKING:
    from mediacanon.core.mediamap import MediaMap


def prune_mirror(steps: Steps, *, dry_run: bool, max_deletes: int, cdn: CdnInvalidations | None = None) -> BatchResult:
    """CDN keys that are not canonical primary keys: pruned per policy (I3), guarded against mass deletion. The keys
    pruned go to `cdn` (a distribution may still serve them from its cache)."""
    result = BatchResult(cdn=cdn)
    extra = _extra_keys(steps)
    to_delete = [key for key, policy in extra if policy == "delete"]
    for key, policy in extra:
        if policy != "delete":
            result.add("skipped", key, "not a canonical primary key; kept (mirror_deletes: report)", phase="mirror")
    if len(to_delete) > max_deletes:
        raise PermanentError(
            f"{len(to_delete)} CDN objects to prune exceeds maxDeletes={max_deletes}: nothing deleted; "
            "raise maxDeletes after checking the dry-run report"
        )
    if not dry_run and to_delete:
        _delete(steps, to_delete, result)
    for key in to_delete:
        result.add("pruned", key, "would prune" if dry_run else "pruned: not a canonical primary key", phase="mirror")
    return result


def _extra_keys(steps: Steps) -> list[tuple[str, str]]:
    """The CDN keys that are not canonical primary keys, each with its field's mirror_deletes policy."""
    s3, media_map = steps.s3, steps.map
    # both listings come in key order: walked side by side, so memory holds the extra keys, not the buckets
    primary_keys = (o.key for o in s3.iter_objects(media_map.buckets.primary))
    current = next(primary_keys, None)
    if current is None:
        raise PermanentError(
            "the primary bucket listed empty: refusing to prune the CDN bucket (check the bucket name and permissions)"
        )
    extra: list[tuple[str, str]] = []
    for obj in s3.iter_objects(media_map.buckets.cdn):
        while current is not None and current < obj.key:
            current = next(primary_keys, None)
        canonical, policy = _mirror_view(media_map, obj.key)
        if obj.key != current:
            extra.append((obj.key, policy))
        elif not canonical:
            head = s3.head(media_map.buckets.primary, obj.key)
            if head is None or not ({SOURCE_ETAG, FALLBACK_SOURCE, RESTORED_BY} & set(head.metadata)):
                extra.append((obj.key, policy))
    return extra


def _delete(steps: Steps, to_delete: list[str], result: BatchResult) -> None:
    cdn_bucket = steps.map.buckets.cdn
    deleted = steps.s3.delete_many(cdn_bucket, to_delete)
    failed = {error.key for error in deleted.errors}
    for key in to_delete:
        if key not in failed:
            result.cdn_changed(key)  # invalidated even when another key's failure fails the task
    deleted.raise_for_errors(cdn_bucket)


def _mirror_view(media_map: MediaMap, key: str) -> tuple[bool, str]:
    """(is the CDN key canonical by its name, its field's mirror_deletes policy)."""
    try:
        res = naming.resolve(media_map, key)
    except (UnsafeKeyError, UnmappedKeyError):
        return False, "delete"  # nothing outside the media map belongs in the CDN bucket
    return res.is_canonical, res.field.policies.mirror_deletes
