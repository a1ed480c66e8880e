"""The mirror phase: CDN keys that are not canonical primary keys, pruned per policy (I3)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from typing import TYPE_CHECKING

from mediacanon.adapters.cdn import CdnInvalidations
from mediacanon.backfill.listing import _start_after
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


# A mirror prune lists both buckets whole: at 10 M keys that is 20,000 pages, ~20 min one after another. The key
# space is cut into slices walked side by side: each mapped prefix at a few characters (keys after a prefix begin
# with slugs), the gaps between them whole. Correctness does not depend on where the cuts fall, only the speed.
MIRROR_WALKERS = 16
_CUTS = "0369cfilorux"


def _after(prefix: str) -> str:
    """The least string above every key that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _slices(media_map: MediaMap) -> list[tuple[str, str | None]]:
    """Contiguous [lo, hi) slices covering every key (hi None: no end), cut at the media map's prefixes."""
    roots = {re.split(r"[{*?\[]", m.location + m.upload_to, maxsplit=1)[0] for m in media_map.fields}
    bounds = {"", media_map.reports_prefix, _after(media_map.reports_prefix)}  # reports: one slice, uncut
    for root in filter(None, roots):
        bounds |= {root, _after(root), *(root + cut for cut in _CUTS)}
    ordered: list[str | None] = [*sorted(bounds), None]
    return [(lo, hi) for lo, hi in pairwise(ordered) if lo is not None]


def _keys(steps: Steps, bucket: str, lo: str, hi: str | None) -> Iterator[str]:
    """The bucket's keys in [lo, hi), in key order, a page at a time."""
    prefix = os.path.commonprefix([lo, hi]) if hi is not None else ""  # noqa: RUF071 - a key prefix, not a path
    for page in steps.s3.iter_pages(bucket, prefix, start_after=_start_after(lo) if lo else ""):
        for obj in page:
            if hi is not None and obj.key >= hi:
                return
            yield obj.key


def _extra_keys(steps: Steps) -> list[tuple[str, str]]:
    """The CDN keys that are not canonical primary keys, each with its field's mirror_deletes policy, in key order;
    the slices of the key space (`_slices`) walked side by side."""
    if next(iter(steps.s3.iter_pages(steps.map.buckets.primary, page_size=1)), []) == []:
        raise PermanentError(
            "the primary bucket listed empty: refusing to prune the CDN bucket (check the bucket name and permissions)"
        )
    slices = _slices(steps.map)
    with ThreadPoolExecutor(min(MIRROR_WALKERS, len(slices))) as pool:
        found = pool.map(lambda bounds: _extra_in(steps, *bounds), slices)
        return [extra for in_slice in found for extra in in_slice]


def _extra_in(steps: Steps, lo: str, hi: str | None) -> list[tuple[str, str]]:
    """One slice's extra CDN keys: both listings come in key order, walked side by side, so memory holds the extra
    keys, not the buckets."""
    s3, media_map = steps.s3, steps.map
    primary_keys = _keys(steps, media_map.buckets.primary, lo, hi)
    current = next(primary_keys, None)
    extra: list[tuple[str, str]] = []
    for key in _keys(steps, media_map.buckets.cdn, lo, hi):
        while current is not None and current < key:
            current = next(primary_keys, None)
        canonical, policy = _mirror_view(media_map, key)
        if key != current:
            extra.append((key, policy))
        elif not canonical:
            head = s3.head(media_map.buckets.primary, key)
            if head is None or not ({SOURCE_ETAG, FALLBACK_SOURCE, RESTORED_BY} & set(head.metadata)):
                extra.append((key, policy))
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
