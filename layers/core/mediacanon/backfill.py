"""The backfill's batch workers: the same steps as the live path, run synchronously over what already exists.

Each phase function takes a batch, returns counts and per-object outcomes, and is idempotent: a second run
of a finished backfill counts everything as skipped, and a run killed midway and started again converges.
A retryable error fails the whole batch (Step Functions retries it); a permanent one is counted as failed
for that object and the batch goes on.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mediacanon.adapters.cdn import CdnInvalidations, invalidations_from_env
from mediacanon.adapters.s3 import (
    NOT_FOUND_CODES,
    PRECONDITION_CODES,
    UNKNOWN_ENCRYPTION,
    DeleteError,
    DeleteResult,
    ObjectHead,
    copied_metadata,
)
from mediacanon.core import naming
from mediacanon.core.errors import (
    MediacanonError,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    RetryableError,
    UnmappedKeyError,
    UnsafeKeyError,
    UnsupportedByStore,
)
from mediacanon.plan import Action, HeadedEtags, Owner, build_plan_for_keys, find_owners, orphan_reason
from mediacanon.steps import PRIMARY_ETAG, RESTORED_BY, SOURCE_ETAG, ObjectEvent, Outcome, StepResult, Steps, compare_heads

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row
    from mediacanon.adapters.ledger import Link
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.core.mediamap import FieldMapping, MediaMap

# where an object came from when a row's missing file is copied in from a read-only fallback bucket
FALLBACK_SOURCE = "mediacanon-fallback-source"

REPORT_COUNTS = (
    "migrated",
    "linked",
    "repaired",
    "mirrored",
    "pruned",
    "missing",
    "orphan",
    "refused",
    "collision",
    "skipped",
    "failed",
    "invalidated",  # CDN paths the tasks invalidated (replaced or pruned CDN keys: mediacanon.adapters.cdn)
    "uninvalidated",  # CDN paths whose invalidation failed: one report item each, to invalidate by hand
)

# etag: what an orphan held when it was reported (`mediacanon.orphans` deletes it only while it holds that)
CSV_FIELDS = ["phase", "key", "outcome", "canonical_key", "detail", "etag"]
log = logging.getLogger(__name__)


@dataclass
class BatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    items: list[dict[str, Any]] = field(default_factory=list)
    # the task's CloudFront invalidations (None: the stack has no distribution): the CDN keys it replaced or removed
    cdn: CdnInvalidations | None = field(default=None, repr=False, compare=False)

    def cdn_changed(self, key: str) -> None:
        """A CDN-bucket key whose object this batch replaced or removed: its path is invalidated at the task's end."""
        if self.cdn is not None:
            self.cdn.add_key(key)

    def add(self, count: str, key: str, detail: str = "", canonical_key: str | None = None, phase: str = "objects") -> None:
        self.counts[count] += 1
        self.items.append({"phase": phase, "key": key, "outcome": count, "canonical_key": canonical_key, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "items": self.items}


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


_DRY_RUN_COUNTS = {
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


# -- the batch worker on listed objects: what the listing says is not asked again ----------------------------------
#
# The ItemReader's listing gives every object's key, ETag and size. For the common object (a row references it and
# its canonical key is canonical by name) that is enough: the canonical key's and the CDN key's state come from
# listing pages that start at those keys (a batch is a run of neighbouring keys, so a page answers hundreds), the
# copies are single CopyObjects that keep headers and metadata as S3 holds them (no HEAD to re-send them), the
# rows are compare-and-swapped from the source's value, and the sources are retired in one DeleteObjects. Anything
# the listing cannot settle (other bytes under the canonical key, a row found by slug only, a refused name, an
# object over CopyObject's 5 GiB) goes through the per-object steps above, which read what they need.

# The copies this worker makes keep the source's metadata and tags as they are (MetadataDirective COPY cannot add
# user metadata). Where they came from is recorded in the ledger (claims: canonical key, source key, source ETag;
# ledger: the link), not as object tags: S3 bills stored tags monthly ($0.01 per 10,000), so two tags on each of
# 10 M copies would cost $20 a month for a record no step reads.
COPY_OBJECT_LIMIT = 5 * 1024**3
LIST_PAGE = 1000
COPY_THREADS = 10  # a batch's copies at once: boto3's default connection pool holds 10
# A LIST is billed as 12.5 HEADs (S3 Standard: $0.005 vs $0.0004 per 1,000): a page that placed fewer keys than this
# did not pay for itself, so the next keys are HEADed one by one, then listing is tried again.
LIST_PAYS_OFF = 12


@dataclass(frozen=True)
class Listed:
    key: str
    etag: str  # without quotes
    size: int


def listed_items(items: Sequence[dict[str, Any]]) -> list[Listed] | None:
    """A batch's items as the ItemReader listed them (Key, Etag, Size); None when some item lacks them."""
    out = []
    for item in items:
        if "Etag" not in item or "Size" not in item:
            return None
        out.append(Listed(str(item["Key"]), str(item["Etag"]).strip('"'), int(item["Size"])))
    return out


def _start_after(key: str) -> str:
    """The greatest string below `key` that S3 can take as StartAfter: the listing then starts at `key` itself."""
    last = ord(key[-1]) - 1
    if last < 0 or 0xD800 <= last <= 0xDFFF:
        return key[:-1]
    return key[:-1] + chr(last) + "\U0010ffff"


def present(s3: S3Adapter, bucket: str, keys: Iterable[str]) -> dict[str, Listed | None]:
    """Which of `keys` the bucket holds, with ETag and size, from listing pages that start at the keys themselves;
    where the keys lie too far apart for a page to pay, from HEADs (side by side, in runs that double while pages
    keep not paying)."""
    wanted = sorted(set(keys))
    out: dict[str, Listed | None] = {}
    i, head_next, head_run = 0, 0, LIST_PAYS_OFF
    while i < len(wanted):
        key = wanted[i]
        if head_next:
            run = wanted[i : i + head_next]
            with ThreadPoolExecutor(min(COPY_THREADS, len(run))) as pool:
                heads = list(pool.map(lambda k: s3.head(bucket, k), run))
            for k, head in zip(run, heads, strict=True):
                out[k] = None if head is None else Listed(k, head.etag, head.size)
            i, head_next = i + len(run), 0
            continue
        prefix = os.path.commonprefix([key, wanted[-1]])  # noqa: RUF071 - a key prefix, not a path
        page = next(s3.iter_pages(bucket, prefix, start_after=_start_after(key), page_size=LIST_PAGE))
        listed = {o.key: Listed(o.key, o.etag, o.size) for o in page}
        upto = page[-1].key if len(page) == LIST_PAGE else None  # None: the page ends the listing
        j = i
        while j < len(wanted) and (upto is None or wanted[j] <= upto):
            out[wanted[j]] = listed.get(wanted[j])
            j += 1
        if j == i:  # cannot happen (the page starts at the key); never loop on it
            head_next = 1
            continue
        if j - i < LIST_PAYS_OFF and j < len(wanted):
            head_next, head_run = head_run, min(head_run * 2, LIST_PAGE)
        else:
            head_run = LIST_PAYS_OFF
        i = j
    return out


@dataclass
class _Move:
    listed: Listed
    res: naming.Resolution
    owner: Owner | None  # None: a source linked before, its retire all that is left (`linked`)
    canonical: str
    canonical_etag: str = ""
    linked: bool = False  # its rows moved already (an unretired ledger link): nothing to claim or copy
    copied: bool = False
    mirrored: bool = False
    rows_changed: int = 0
    retired: bool = False
    retire_note: str = ""  # how the source was retired, or why it was kept, when not the usual way

    @property
    def renamed(self) -> bool:
        return self.canonical != self.listed.key


def process_listed(steps: Steps, items: Sequence[Listed], *, dry_run: bool, cdn: CdnInvalidations | None = None) -> BatchResult:
    """Normalize, replicate and link a batch of listed objects: the listing's ETags and sizes stand in for HEADs.
    The CDN keys replaced go to `cdn`."""
    if dry_run:
        return process_objects(steps, [item.key for item in items], dry_run=True)
    result = BatchResult(cdn=cdn)
    per_object: list[str] = []  # what the listing cannot settle: the per-object steps, which read what they need
    moves = _moves(steps, items, result, per_object)
    moves = _normalize_listed(steps, moves, result, per_object)
    moves = _mirror_listed(steps, moves, result, per_object)
    _link_and_retire(steps, moves, result)
    for move in moves:
        _count_move(result, move)
    _process_each(steps, per_object, result)
    return result


def _moves(steps: Steps, items: Sequence[Listed], result: BatchResult, per_object: list[str]) -> list[_Move]:
    from mediacanon.plan import row_canonical

    resolved: list[tuple[Listed, naming.Resolution]] = []
    for item in items:
        if item.key.startswith(steps.map.reports_prefix):
            continue  # mediacanon's own reports: not media, not counted
        try:
            resolved.append((item, naming.resolve(steps.map, item.key)))
        except (UnsafeKeyError, UnmappedKeyError):
            per_object.append(item.key)  # refused names may still be placed by a referencing row; unmapped are skipped
    owners = find_owners(steps.db, [(item.key, res) for item, res in resolved])
    unreferenced = [(item, res) for item, res in resolved if (o := owners.get(item.key)) is None or o.matched_by != "reference"]
    linked = _linked_unretired(steps, unreferenced)
    moves = []
    for item, res in resolved:
        owner = owners.get(item.key)
        if item.key in linked:
            moves.append(linked[item.key])
            continue
        if owner is None and not res.is_canonical:
            result.add("orphan", item.key, ORPHAN_KEPT)
            continue
        if owner is None or owner.matched_by != "reference" or item.size > COPY_OBJECT_LIMIT:
            per_object.append(item.key)
            continue
        # canonical by its name is not enough: the referencing row names it (as normalize does), so another slug's
        # generic name ('icons/favicon.ico' referenced by row 'bbc') is renamed below like any messy one. A row whose
        # slug gives no usable key leaves the name standing.
        if res.is_canonical and row_canonical(res.field, owner.slug, item.key, owner.tenant) in (None, item.key):
            moves.append(_Move(item, res, owner, item.key, canonical_etag=item.etag))
            continue
        try:
            canonical = naming.canonical_key_for_row(res.field, owner.slug, item.key, owner.tenant)
            by_name = naming.resolve(steps.map, canonical).is_canonical
        except (UnsafeKeyError, UnmappedKeyError):
            by_name = False
        # a canonical key the name alone does not make canonical is marked by the source key in its metadata (the
        # live path and verify read it there): the per-object steps write that
        if not by_name or canonical == item.key:
            per_object.append(item.key)
            continue
        moves.append(_Move(item, res, owner, canonical))
    return moves


ORPHAN_KEPT = (
    "no row references it or has its slug; kept: `mediacanon orphans --execution NAME` deletes the orphans of this "
    "report on request"
)


def _linked_unretired(steps: Steps, candidates: list[tuple[Listed, naming.Resolution]]) -> dict[str, _Move]:
    """Sources no row references any more whose link was committed but never retired: a worker that died between
    its commit and its DeleteObjects leaves them. A batch's copies carry no source key in their metadata (the ledger
    records it), so neither the live link step nor the per-object steps can find them; the ledger can. Each is
    retired as the batch would have retired it, while its canonical key still holds the bytes its rows were moved to
    and those are this source's bytes as listed (the same single-part ETag, or the claim naming this source at this
    ETag). One ledger query when a batch holds unreferenced objects, one listing of the canonical keys when some
    have such a link."""
    if not candidates:
        return {}
    unretired = steps.ledger.unretired_links([item.key for item, _ in candidates])
    if not unretired:
        return {}
    held = present(steps.s3, steps.map.buckets.primary, [link.canonical_key for link in unretired.values()])
    out: dict[str, _Move] = {}
    for item, res in candidates:
        link = unretired.get(item.key)
        if link is None or link.field != res.field.name or item.size > COPY_OBJECT_LIMIT:
            continue
        there = held.get(link.canonical_key)
        if there is None or there.etag != link.etag:
            continue  # the canonical key no longer holds what the rows were moved to: the source stays (I5)
        if there.etag != item.etag and (link.claimed_by, link.claimed_etag) != (item.key, item.etag):
            continue  # nothing shows the canonical key holds these bytes (the source changed since): it stays
        out[item.key] = _Move(item, res, None, link.canonical_key, canonical_etag=there.etag, linked=True)
    return out


def _concurrently(make_copy: Callable[[_Move], str], moves: list[_Move]) -> list[tuple[_Move, str | MediacanonError]]:
    """Run a batch's copies side by side (S3 latency, not CPU, bounds them); the project's errors come back per move
    for the caller to sort out one by one, in order. The database is only ever used from the calling thread."""
    if not moves:
        return []

    def attempt(move: _Move) -> str | MediacanonError:
        try:
            return make_copy(move)
        except (PreconditionFailed, NotFoundError, PermanentError) as exc:
            return exc

    with ThreadPoolExecutor(min(COPY_THREADS, len(moves))) as pool:
        return list(zip(moves, pool.map(attempt, moves), strict=True))


def _normalize_listed(steps: Steps, moves: list[_Move], result: BatchResult, per_object: list[str]) -> list[_Move]:
    primary = steps.map.buckets.primary
    renames = [m for m in moves if m.renamed and not m.linked]
    targets = present(steps.s3, primary, [m.canonical for m in renames])
    unclaimed = _claim_listed(steps, renames, result)
    kept: list[_Move] = []
    to_copy: list[_Move] = []
    to_compare: list[_Move] = []
    for move in moves:
        if not move.renamed or move.linked:  # linked: checked in _linked_unretired, its rows are there already
            kept.append(move)
            continue
        key, etag = move.listed.key, move.listed.etag
        if key in unclaimed:
            continue  # counted as failed
        target = targets[move.canonical]
        if target is None:
            to_copy.append(move)
        elif target.etag == etag:
            move.canonical_etag = etag  # the canonical key already holds these bytes
            kept.append(move)
        elif target.size == move.listed.size:
            to_compare.append(move)  # an SSE-KMS or multipart ETag proves nothing: the checksums below
        else:
            per_object.append(key)  # other bytes: the steps read both
    # another ETag for as many bytes: the same bytes when S3's checksums say so (two HEADs, only for these)
    for move, (same, _, there) in _side_by_side(
        lambda m: compare_heads(
            steps.s3,
            primary,
            _listed_head(m.listed),
            primary,
            _listed_head(targets[m.canonical]),  # type: ignore[arg-type]
        ),
        to_compare,
    ):
        if same:
            move.canonical_etag = there.etag
            kept.append(move)
        else:
            per_object.append(move.listed.key)  # other bytes, or nothing shows they are the same: the steps read both
    for move, copied in _concurrently(lambda m: _copy_source(steps, m), to_copy):
        key = move.listed.key
        try:
            if isinstance(copied, PreconditionFailed):  # overwritten since it was listed: once more, as it is now
                head = steps.s3.head(primary, key)
                if head is None:
                    per_object.append(key)
                    continue
                move.listed = Listed(key, head.etag, head.size)
                steps.ledger.claim(move.canonical, key, head.etag, take_over=True)
                copied = _copy_source(steps, move)
            elif isinstance(copied, MediacanonError):
                raise copied
        except (PreconditionFailed, NotFoundError):
            per_object.append(key)  # changed again, or gone since it was listed: the steps read it afresh
            continue
        except PermanentError as exc:
            result.add("failed", key, str(exc))
            continue
        move.canonical_etag, move.copied = copied, True
        kept.append(move)
    return kept


def _claim_listed(steps: Steps, moves: list[_Move], result: BatchResult) -> set[str]:
    """Claim each move's canonical key for its source (a row references the source: its bytes win), the batch's
    claims in one statement. Should that fail for good, one by one, so only the object at fault fails; returns the
    source keys whose claim failed (counted as failed)."""
    claims = [(m.canonical, m.listed.key, m.listed.etag) for m in moves]
    try:
        steps.ledger.claim_many(claims, take_over=True)
        return set()
    except PermanentError:
        pass
    failed = set()
    for canonical, key, etag in claims:
        try:
            steps.ledger.claim(canonical, key, etag, take_over=True)
        except PermanentError as exc:
            result.add("failed", key, str(exc))
            failed.add(key)
    return failed


def _copy_source(steps: Steps, move: _Move) -> str:
    primary, key = steps.map.buckets.primary, move.listed.key
    return steps.s3.copy_as_is(primary, key, primary, move.canonical, source_etag=move.listed.etag)


def _mirror(steps: Steps, move: _Move) -> str:
    primary, cdn = steps.map.buckets.primary, steps.map.buckets.cdn
    return steps.s3.copy_as_is(primary, move.canonical, cdn, move.canonical, source_etag=move.canonical_etag)


def _mirror_listed(steps: Steps, moves: list[_Move], result: BatchResult, per_object: list[str]) -> list[_Move]:
    primary, cdn = steps.map.buckets.primary, steps.map.buckets.cdn
    mirrored = present(steps.s3, cdn, [m.canonical for m in moves])
    # absent, or other bytes (I3: the mirror follows the primary). Another ETag for as many bytes proves nothing under
    # SSE-KMS or SSE-C (a fresh ETag on every copy) or for a multipart object: S3's checksums decide, read (two HEADs at
    # most) for those only; an SSE-S3 batch's mirror matches by ETag and costs no request
    to_copy, to_compare, kept = [], [], []
    for move in moves:
        there = mirrored[move.canonical]
        if there is None or (there.etag != move.canonical_etag and there.size != move.listed.size):
            to_copy.append(move)
        elif there.etag != move.canonical_etag:
            to_compare.append(move)
        else:
            kept.append(move)
    recorded: list[tuple[_Move, ObjectHead]] = []  # copied with the primary's ETag recorded on the copy
    for move, (same, source, there) in _side_by_side(
        lambda m: compare_heads(
            steps.s3,
            primary,
            _listed_head(Listed(m.canonical, m.canonical_etag, m.listed.size)),
            cdn,
            _listed_head(mirrored[m.canonical]),  # type: ignore[arg-type]  # present: compared for that
        ),
        to_compare,
    ):
        if same:
            kept.append(move)  # mirrored already
        elif source.etag != move.canonical_etag:
            per_object.append(move.listed.key)  # the canonical copy changed since: the steps read it afresh
        elif _algorithm(source.checksum) is None or _algorithm(source.checksum) != _algorithm(there.checksum):
            # no checksum can tell these two apart: the copy records the primary's ETag, as the steps' mirror does, so
            # that the next run reads the match from the CDN object's head instead of copying once more
            recorded.append((move, source))
        else:
            to_copy.append(move)  # other bytes
    sources = {id(m): head for m, head in recorded}
    for move, copied in [
        *_concurrently(lambda m: _mirror(steps, m), to_copy),
        *_concurrently(lambda m: _mirror_recorded(steps, m, sources[id(m)]), [m for m, _ in recorded]),
    ]:
        if isinstance(copied, (PreconditionFailed, NotFoundError)):
            per_object.append(move.listed.key)  # the canonical copy changed or went: the steps read it afresh
        elif isinstance(copied, MediacanonError):
            result.add("failed", move.listed.key, str(copied))
        else:
            move.mirrored = True
            if mirrored[move.canonical] is not None:
                result.cdn_changed(move.canonical)  # another object was there: a cached copy of it may be served
            kept.append(move)
    return kept


def _algorithm(checksum: str | None) -> str | None:
    return checksum.split(":", 1)[0] if checksum else None


def _mirror_recorded(steps: Steps, move: _Move, source: ObjectHead) -> str:
    """The steps' mirror copy (headers re-sent, the primary's ETag recorded on the copy: `Steps.mirror`)."""
    primary, cdn = steps.map.buckets.primary, steps.map.buckets.cdn
    return steps.s3.copy(primary, move.canonical, cdn, move.canonical, metadata={PRIMARY_ETAG: source.etag}, source_head=source)


def _listed_head(listed: Listed) -> ObjectHead:
    """What a listing says of an object, as a head: its key, size and ETag, not how it is encrypted."""
    return ObjectHead(listed.key, listed.size, listed.etag, encryption=UNKNOWN_ENCRYPTION)


def _side_by_side(check: Callable[[_Move], Any], moves: list[_Move]) -> list[tuple[_Move, Any]]:
    """A batch's HEADs side by side (as its copies); errors raise, as a HEAD's would in the steps."""
    if not moves:
        return []
    with ThreadPoolExecutor(min(COPY_THREADS, len(moves))) as pool:
        return list(zip(moves, pool.map(check, moves), strict=True))


def _link_and_retire(steps: Steps, moves: list[_Move], result: BatchResult) -> None:
    """Rows from each source to its canonical key (I1: both buckets hold it with these bytes, checked above): a
    field's rows in one compare-and-swap, in one transaction with one ledger entry per source (rollback reverses
    each); then the sources no row references any more, in one DeleteObjects, each only while it still holds the
    bytes that were copied (I2, I5); then their ledger entries marked retired, in one UPDATE."""
    from mediacanon.adapters.db import Swap
    from mediacanon.adapters.ledger import Link

    renames = [m for m in moves if m.renamed]
    by_field: dict[str, list[_Move]] = {}
    for move in renames:
        by_field.setdefault(move.res.field.name, []).append(move)
    retiring: list[tuple[_Move, str]] = []
    for group in by_field.values():
        mapping = group[0].res.field
        values = {m.listed.key: naming.column_value(mapping, m.listed.key, m.res.tenant) for m in group}
        referencing = steps.db.rows_referencing(mapping, list(values.values()))
        links = []
        for move in group:
            source_value = values[move.listed.key]
            new_value = naming.column_value(mapping, move.canonical, move.res.tenant)
            rows = [r for r in referencing.get(source_value, []) if move.res.tenant is None or r.tenant == move.res.tenant]
            swaps = [Swap(row.id, source_value, new_value) for row in rows]
            links.append(Link(swaps, move.listed.key, move.canonical, move.canonical_etag))
        linked = _record_links(steps, mapping, group, links, result)
        for move in group:
            if move not in linked:
                moves.remove(move)
        if mapping.policies.retire not in ("delete", "delete-if-match") or not linked:
            continue
        still = steps.db.rows_referencing(mapping, [values[m.listed.key] for m in linked])
        retiring.extend((m, values[m.listed.key]) for m in linked if not still.get(values[m.listed.key]))
    if not retiring:
        return
    primary = steps.map.buckets.primary
    # the sources as they are now: only one still holding the copied bytes is deleted (S3 checks the ETag again)
    current = present(steps.s3, primary, [m.listed.key for m, _ in retiring])
    unchanged = {m.listed.key: m for m, _ in retiring if (now := current.get(m.listed.key)) and now.etag == m.listed.etag}
    if not unchanged:
        return
    # the primary bucket is versioned (template.yaml), so this leaves delete markers, not a loss
    deleted = _delete_unchanged(steps, primary, unchanged)
    # changed since (PreconditionFailed): kept; gone since (NoSuchKey: S3 evaluates the ETag against the object, and
    # a worker beside this one, or the live link step, retired it first): nothing left to delete, not this batch's
    # retire to mark. Neither fails the batch.
    changed = {e.key for e in deleted.errors if e.code in PRECONDITION_CODES or e.code in NOT_FOUND_CODES}
    DeleteResult(0, tuple(e for e in deleted.errors if e.key not in changed)).raise_for_errors(primary)
    retired = [move for key, move in unchanged.items() if key not in changed]
    steps.ledger.mark_retired_many([(move.listed.key, move.canonical) for move in retired])
    for move in retired:
        move.retired = True


def _delete_unchanged(steps: Steps, primary: str, unchanged: dict[str, _Move]) -> DeleteResult:
    """One DeleteObjects, each key only while it has its listed ETag. On a store without conditional deletes (501,
    learnt once per bucket) the keys just compared by listing are deleted without the condition, except those whose
    field requires it (policies.retire: delete-if-match), which are kept; each move says which way it went."""
    etags = {k: m.listed.etag for k, m in unchanged.items()}
    if primary not in steps.s3.unconditional_buckets:
        try:
            return steps.s3.delete_if_unchanged(primary, etags)
        except UnsupportedByStore:
            steps.s3.unconditional_buckets.add(primary)
    kept = {k for k, m in unchanged.items() if m.res.field.policies.retire == "delete-if-match"}
    for key, move in unchanged.items():
        move.retire_note = (
            f"; source kept: {primary} takes no conditional delete (policies.retire: delete-if-match)"
            if key in kept
            else " by compare-then-delete (the store takes no conditional delete)"
        )
    result = steps.s3.delete_many(primary, [k for k in etags if k not in kept])
    # the kept ones are reported as not deleted, as a changed source is: no error, nothing to mark
    return DeleteResult(result.deleted, result.errors + tuple(DeleteError(k, "PreconditionFailed", "kept") for k in kept))


def _record_links(steps: Steps, mapping: FieldMapping, group: list[_Move], links: list[Link], result: BatchResult) -> list[_Move]:
    """A field's links in one transaction (Ledger.record_links); should that fail for good, one by one, so only the
    object at fault fails (counted as failed). Returns the moves linked, each with its rows changed."""
    try:
        changed = steps.ledger.record_links(mapping, links)
    except PermanentError:
        pass
    else:
        for move, rows_changed in zip(group, changed, strict=True):
            move.rows_changed = rows_changed
        return list(group)
    linked = []
    for move, link in zip(group, links, strict=True):
        try:
            move.rows_changed = steps.ledger.record_link(
                mapping,
                link.swaps,
                source_key=link.source_key,
                canonical_key=link.canonical_key,
                etag=link.etag,
                sequencer=link.sequencer,
            )
        except PermanentError as exc:
            result.add("failed", move.listed.key, str(exc), move.canonical)
            continue
        linked.append(move)
    return linked


def _count_move(result: BatchResult, move: _Move) -> None:
    key, canonical = move.listed.key, move.canonical
    detail = f"{move.rows_changed} row(s) now point at it" + ("; source retired" if move.retired else "") + move.retire_note
    if move.renamed and (move.copied or move.rows_changed or move.retired):
        result.add("migrated", key, detail, canonical)
    elif move.mirrored:
        result.add("mirrored", key, "copied to the CDN bucket", canonical)
    elif move.renamed:
        result.add("orphan", key, f"duplicate of {canonical!r}: {detail}", canonical)
    else:
        result.add("skipped", key, "already canonical, mirrored and linked", canonical)


def process_rows(
    steps: Steps,
    mapping: FieldMapping,
    start_id: Any = None,
    end_id: Any = None,
    *,
    dry_run: bool,
    cdn: CdnInvalidations | None = None,
) -> BatchResult:
    """Rows pointing at keys missing from the primary bucket: point them at their canonical key when it exists,
    else copy the file in from a read-only fallback bucket, else report them missing. The CDN keys replaced go to
    `cdn`."""
    result = BatchResult(cdn=cdn)
    steps = _watched(steps, result)
    s3, primary = steps.s3, steps.map.buckets.primary
    placed: list[tuple[Row, str, str]] = []
    for row in steps.db.iter_rows(mapping, start_id=start_id, end_id=end_id):
        if not row.value or (mapping.tenant_scoped and not row.tenant):
            continue
        key = naming.key_for_value(mapping, row.value, row.tenant)
        try:
            placed.append((row, key, naming.canonical_key_for_row(mapping, row.slug, key, row.tenant)))
        except UnsafeKeyError as exc:
            result.add("refused", key, exc.reason, phase="rows")
    # a range's rows at once (ROWS_PER_RANGE, small tuples): their keys sorted, a listing page answers many of them
    exists = present(s3, primary, [key for _, key, _ in placed])
    for row, key, canonical in placed:
        if exists[key] is not None:
            continue  # the objects phase owns it
        if s3.head(primary, canonical) is None:
            fallback = next((b for b in steps.map.buckets.fallbacks if s3.head(b, key) is not None), None)
            if fallback is None:
                result.add("missing", key, f"row {row.id}: no bucket holds it", canonical, phase="rows")
                continue
            if dry_run:
                result.add("repaired", key, f"would copy from read-only {fallback!r}", canonical, phase="rows")
                continue
            # read-only source: only ever read from (I2)
            s3.copy(fallback, key, primary, canonical, metadata={FALLBACK_SOURCE: f"s3://{fallback}/{quote(key, safe='/')}"})
        elif dry_run:
            result.add("repaired", key, "would point the row at its existing canonical key", canonical, phase="rows")
            continue
        steps.replicate(_event(primary, canonical))
        linked = steps.link(_event(steps.map.buckets.cdn, canonical))
        if linked.rows_changed:
            result.add("repaired", key, f"row {row.id} -> {canonical}", canonical, phase="rows")
        elif key == canonical and s3.head(primary, key) is not None and s3.head(steps.map.buckets.cdn, key) is not None:
            result.add("repaired", key, f"row {row.id}: its file is back in both buckets", canonical, phase="rows")
        else:
            result.add("missing", key, f"row {row.id}: {linked.detail}", canonical, phase="rows")
    return result


def prune_mirror(steps: Steps, *, dry_run: bool, max_deletes: int, cdn: CdnInvalidations | None = None) -> BatchResult:
    """CDN keys that are not canonical primary keys: pruned per policy (I3), guarded against mass deletion. The keys
    pruned go to `cdn` (a distribution may still serve them from its cache)."""
    result = BatchResult(cdn=cdn)
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
        deleted = s3.delete_many(media_map.buckets.cdn, to_delete)
        failed = {error.key for error in deleted.errors}
        for key in to_delete:
            if key not in failed:
                result.cdn_changed(key)  # invalidated even when another key's failure fails the task
        deleted.raise_for_errors(media_map.buckets.cdn)
    for key in to_delete:
        result.add("pruned", key, "would prune" if dry_run else "pruned: not a canonical primary key", phase="mirror")
    return result


def _mirror_view(media_map: MediaMap, key: str) -> tuple[bool, str]:
    """(is the CDN key canonical by its name, its field's mirror_deletes policy)."""
    try:
        res = naming.resolve(media_map, key)
    except (UnsafeKeyError, UnmappedKeyError):
        return False, "delete"  # nothing outside the media map belongs in the CDN bucket
    return res.is_canonical, res.field.policies.mirror_deletes


@dataclass(frozen=True)
class Report:
    counts: dict[str, int]
    dry_run: bool

    @property
    def line(self) -> str:
        shown = ("migrated", "linked", "missing", "skipped", "failed")
        extra = [k for k in REPORT_COUNTS if k not in shown and self.counts.get(k)]
        head = "DRY RUN" if self.dry_run else "DONE"
        return f"{head} | " + " ".join(f"{k}={self.counts.get(k, 0)}" for k in (*shown, *extra))


def write_streamed_report(steps: Steps, execution: str, *, dry_run: bool) -> tuple[Report, tuple[str, str]]:
    """Merge the parts into report.json and report.csv a part at a time: the items go through temporary files, so
    memory holds one part, not every outcome of the backfill. Returns the report (counts only) and both keys."""
    primary = steps.map.buckets.primary
    base = f"{steps.map.reports_prefix}{execution}/report"
    counts: Counter[str] = Counter()
    with tempfile.TemporaryFile() as items, tempfile.TemporaryFile() as table, tempfile.TemporaryFile() as document:
        text = io.TextIOWrapper(table, encoding="utf-8", newline="")
        writer = csv.DictWriter(text, fieldnames=CSV_FIELDS)
        writer.writeheader()
        separator = b""
        for part in (*read_parts(steps, execution), *failed_children(steps, execution)):
            counts.update(part.get("counts", {}))
            for item in part.get("items", []):
                items.write(separator + json.dumps(item, default=str).encode())
                separator = b", "
                writer.writerow(item)
        text.flush()
        text.detach()  # the CSV stays open for the upload below
        report = Report({k: counts.get(k, 0) for k in REPORT_COUNTS}, dry_run)
        # one JSON document {line, dry_run, counts, items}, written in pieces
        head = json.dumps({"line": report.line, "dry_run": dry_run, "counts": report.counts})
        document.write(head[:-1].encode() + b', "items": [')
        items.seek(0)
        shutil.copyfileobj(items, document)
        document.write(b"]}")
        document.seek(0)
        steps.s3.put_file(primary, base + ".json", document, "application/json")
        table.seek(0)
        steps.s3.put_file(primary, base + ".csv", table, "text/csv")
    return report, (base + ".json", base + ".csv")


# -- the state machine's tasks (statemachines/backfill.asl.json) ---------------------------------------------------

PHASES = ("objects", "rows", "mirror", "report")
DEFAULT_MAX_DELETES = 1000
ROWS_PER_RANGE = 10_000
_GLOB_OR_TEMPLATE = re.compile(r"[{*?\[]")


def prefixes_to_scan(media_map: MediaMap, fields: Sequence[str] | None = None) -> list[str]:
    """The primary-bucket prefixes holding every key the mapped fields can own: each field's location + upload_to
    and its staging roots, up to the first placeholder or glob. Nested prefixes collapse into the outer one, so
    no object is listed (and counted) twice; upload_to prefixes come first, so the canonical copies a staging
    root's batches make land under prefixes already scanned."""
    wanted = [m for m in media_map.fields if fields is None or m.name in fields]
    roots = {_GLOB_OR_TEMPLATE.split(m.location + m.upload_to, 1)[0] for m in wanted}
    staging = {_GLOB_OR_TEMPLATE.split(m.location + s, 1)[0] for m in wanted for s in m.staging}
    kept: list[str] = []
    for prefix in sorted(roots | staging):  # a prefix sorts before every key it covers
        if not any(prefix.startswith(outer) for outer in kept):
            kept.append(prefix)
    return sorted(kept, key=lambda p: (p not in roots, p))


def row_ranges(db: Database, mapping: FieldMapping, rows_per_range: int = ROWS_PER_RANGE) -> list[dict[str, Any]]:
    """Id ranges of about `rows_per_range` rows ([start, end), the last open-ended) for the rows phase's workers.

    Walks the ids once in keyset pages; the ranges are JSON (ids as the database returns them: ints or strings)."""
    starts: list[Any] = []
    for i, row in enumerate(db.iter_rows(mapping, batch_size=min(rows_per_range, 5000))):
        if i % rows_per_range == 0:
            starts.append(row.id)
    if not starts:
        return []
    ends: list[Any] = [*starts[1:], None]
    return [{"field": mapping.name, "start": s, "end": e} for s, e in zip(starts, ends, strict=True)]


def parts_prefix(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/parts/"


def results_prefix(media_map: MediaMap, execution: str) -> str:
    """Where the map runs' ResultWriter puts each run's manifest.json and result files (one folder per map run)."""
    return f"{media_map.reports_prefix}{execution}/results"


def rows_manifest_key(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/rows-manifest.json"


def write_part(steps: Steps, execution: str, name: str, result: BatchResult) -> str:
    """One worker's outcomes as a JSON part of the execution's report. Named by what the worker was given, so
    a retried batch overwrites its own part instead of being counted twice."""
    key = f"{parts_prefix(steps.map, execution)}{name}.json"
    steps.s3.put_bytes(steps.map.buckets.primary, key, json.dumps(result.to_json(), default=str).encode(), "application/json")
    return key


PART_READERS = 16  # parts read side by side: at 10 M objects the report reads 40,000 of them within one Lambda


def read_parts(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    """The execution's parts in key order, read ahead a few at a time (memory holds those, not all of them)."""
    primary = steps.map.buckets.primary
    with ThreadPoolExecutor(PART_READERS) as pool:
        ahead: deque[Future[bytes]] = deque()
        for obj in steps.s3.iter_objects(primary, parts_prefix(steps.map, execution)):
            ahead.append(pool.submit(steps.s3.get_bytes, primary, obj.key))
            if len(ahead) >= 2 * PART_READERS:
                yield json.loads(ahead.popleft().result())
        while ahead:
            yield json.loads(ahead.popleft().result())


def failed_children(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    """The map runs' failed child executions, as parts: a batch that failed for good (within the map's tolerated
    failures, or before a redrive) wrote no part of its own, so without this its objects would be missing from the
    report. Read from each map run's ResultWriter manifest and its FAILED result files, in the shapes AWS documents
    (Step Functions developer guide, "ResultWriter (Map)": manifest.json lists ResultFiles by status; each result
    file is a JSON array of child executions with their Input, Error and Cause)."""
    primary = steps.map.buckets.primary
    for obj in steps.s3.iter_objects(primary, results_prefix(steps.map, execution) + "/"):
        if not obj.key.endswith("/manifest.json"):
            continue
        manifest = json.loads(steps.s3.get_bytes(primary, obj.key))
        for result_file in manifest.get("ResultFiles", {}).get("FAILED", []):
            for child in json.loads(steps.s3.get_bytes(primary, result_file["Key"])):
                yield _failed_child_part(child)


def _failed_child_part(child: dict[str, Any]) -> dict[str, Any]:
    """One failed child execution as a part: each object of its batch (or its row range) counted as failed, with
    the error as Lambda reported it (its type and message, not a JSON-escaped traceback)."""
    error = _child_error(child)
    given = json.loads(child.get("Input") or "{}")
    result = BatchResult()
    if "Items" in given:
        for item in given["Items"]:
            result.add("failed", str(item.get("Key", "")), f"batch failed: {error}")
    elif "range" in given:
        span = given["range"]
        where = f"{span.get('field')} ids from {span.get('start')!r} to {span.get('end')!r}"
        result.add("failed", "", f"rows {where} not checked: {error}", phase="rows")
    else:
        result.add("failed", "", f"{child.get('ExecutionArn', 'a child execution')} failed: {error}")
    return result.to_json()


def _child_error(child: dict[str, Any]) -> str:
    error, cause = str(child.get("Error") or "an error"), child.get("Cause") or ""
    try:
        lambda_error = json.loads(cause)  # a Lambda task's cause is its error as JSON: errorType, errorMessage, ...
    except (TypeError, ValueError):
        lambda_error = None
    if isinstance(lambda_error, dict) and "errorMessage" in lambda_error:
        return f"{lambda_error.get('errorType', error)}: {lambda_error['errorMessage']}"
    return f"{error}: {cause}" if cause else error


def _batch_name(kind: str, *parts: Any) -> str:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def prepare(steps: Steps, execution: str, given: dict[str, Any], given_reports_prefix: str | None = None) -> dict[str, Any]:
    """Validate the execution's input against the media map and the database; plan the phases. `given_reports_prefix`
    is the state machine's (the template's ReportsPrefix), checked against the media map's."""
    media_map = steps.map
    names = [m.name for m in media_map.fields]
    fields = given.get("fields")
    if fields is not None:
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise PermanentError(f"unknown field(s) {unknown}: the media map has {names}")
    phases = given.get("phases") or list(PHASES)
    unknown_phases = sorted(set(phases) - {*PHASES, "prepare"})
    if unknown_phases:
        raise PermanentError(f"unknown phase(s) {unknown_phases}: use some of {list(PHASES)}")
    max_deletes = given.get("maxDeletes", DEFAULT_MAX_DELETES)
    if not isinstance(max_deletes, int) or isinstance(max_deletes, bool) or max_deletes < 0:
        raise PermanentError(f"maxDeletes must be a non-negative integer, got {max_deletes!r}")
    _check_reports_prefix(media_map, given_reports_prefix)
    wanted = [m for m in media_map.fields if fields is None or m.name in fields]
    for mapping in wanted:
        steps.db.check_field(mapping)  # a schema mismatch fails the execution here, before any batch runs
    steps.ledger.ensure()
    prefixes = list(given["prefixes"]) if given.get("prefixes") is not None else prefixes_to_scan(media_map, fields)
    manifest = None
    if "rows" in phases:
        # the ranges go to S3, not into the state: the rows Map reads them there (ItemReader), so their number is
        # bounded by neither the 256 KiB payload nor the parent execution's history
        ranges = [r for m in wanted for r in row_ranges(steps.db, m)]
        manifest = rows_manifest_key(media_map, execution)
        body = json.dumps(ranges, default=str).encode()
        steps.s3.put_bytes(media_map.buckets.primary, manifest, body, "application/json")
    return {
        "execution": execution,
        "dryRun": bool(given.get("dryRun", False)),
        "maxDeletes": max_deletes,
        "run": {phase: phase in phases for phase in PHASES},
        "prefixes": prefixes,
        "prefixCount": len(prefixes),
        "prefixIndex": 0,
        "rowsManifest": manifest,
        "resultsPrefix": results_prefix(media_map, execution),
    }


def _check_reports_prefix(media_map: MediaMap, deployed: Any) -> None:
    """The state machine may write map results under the template's ReportsPrefix only (its IAM policy): the media
    map's reports_prefix must be that one, or every ResultWriter would be denied after the whole map ran."""
    if deployed is not None and deployed != media_map.reports_prefix:
        raise PermanentError(
            f"the media map's reports_prefix {media_map.reports_prefix!r} differs from the stack's ReportsPrefix "
            f"{deployed!r}: set reports_prefix: {deployed} in the media map, or deploy with ReportsPrefix="
            f"{media_map.reports_prefix}"
        )


def run_task(
    event: dict[str, Any],
    make_steps: Callable[[str], Steps],
    invalidations: Callable[[], CdnInvalidations | None] = invalidations_from_env,
) -> dict[str, Any]:
    """One task of the backfill state machine, chosen by the event's "action"; `make_steps(execution)` gives the
    Steps whose ledger records that execution. Returns counts only: outcomes go to the parts in S3.

    `invalidations()` gives the task its CloudFront invalidations (by default the stack's distribution,
    MEDIACANON_CDN_DISTRIBUTION_ID; None: no distribution): the CDN keys an objects, rows or mirror task replaced or
    removed are invalidated in one CreateInvalidation at its end (`_invalidate`), even when the task fails after
    changing some.

    A RetryableError (whatever its subclass) leaves as a plain RetryableError, the one name the ASL retries on."""
    action, execution = event.get("action"), str(event["execution"])
    task = TASKS.get(str(action))
    if task is None:
        raise PermanentError(f"unknown backfill action {action!r}: one of {', '.join(TASKS)}")
    steps = make_steps(execution)
    dry_run = bool(event.get("dryRun", False))
    cdn = invalidations() if action in BATCH_TASKS and not dry_run else None
    try:
        return task(steps, execution, event, dry_run, cdn)
    except RetryableError as exc:
        if type(exc) is RetryableError:
            raise
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if cdn is not None and cdn.pending:  # the task failed after changing CDN keys: invalidated all the same
            _invalidate(cdn, execution, BatchResult(), str(action))


Task = Callable[[Steps, str, dict[str, Any], bool, "CdnInvalidations | None"], dict[str, Any]]


def _prepare_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    return prepare(steps, execution, event.get("input") or {}, event.get("reportsPrefix"))


def _objects_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    keys = [item["Key"] for item in event["items"]]
    listed = listed_items(event["items"])
    if listed is None:  # keys alone (a hand-made event): the per-object steps read the rest
        result = process_objects(steps, keys, dry_run=dry_run, cdn=cdn)
    else:
        result = process_listed(steps, listed, dry_run=dry_run, cdn=cdn)
    _record_orphan_etags(steps, result, listed)
    return _finish(steps, execution, cdn, result, "objects", _batch_name("objects", keys))


def _rows_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    span = event["range"]
    mapping = steps.map.field(span["field"])
    result = process_rows(steps, mapping, span.get("start"), span.get("end"), dry_run=dry_run, cdn=cdn)
    return _finish(steps, execution, cdn, result, "rows", _batch_name("rows", span["field"], span.get("start")))


def _mirror_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    max_deletes = int(event.get("maxDeletes", DEFAULT_MAX_DELETES))
    result = prune_mirror(steps, dry_run=dry_run, max_deletes=max_deletes, cdn=cdn)
    return _finish(steps, execution, cdn, result, "mirror", "mirror")


def _report_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    report, written = write_streamed_report(steps, execution, dry_run=dry_run)
    return {"line": report.line, "counts": report.counts, "keys": list(written)}


def _finish(
    steps: Steps, execution: str, cdn: CdnInvalidations | None, result: BatchResult, phase: str, part: str
) -> dict[str, Any]:
    """A batch task's end: its CDN paths invalidated, its outcomes written as one part; counts only returned."""
    _invalidate(cdn, execution, result, phase)
    write_part(steps, execution, part, result)
    return {"counts": dict(result.counts)}


# the state machine's tasks, by the "action" its Task states pass
TASKS: dict[str, Task] = {
    "prepare": _prepare_task,
    "objects": _objects_task,
    "rows": _rows_task,
    "mirror": _mirror_task,
    "report": _report_task,
}
BATCH_TASKS = ("objects", "rows", "mirror")  # the tasks that change the CDN bucket: their keys are invalidated


def _invalidate(cdn: CdnInvalidations | None, execution: str, result: BatchResult, phase: str) -> None:
    """The task's CDN paths in one CreateInvalidation (mediacanon.adapters.cdn: within CloudFront's limits). The objects are in
    place whatever CloudFront answers (I3 holds); a failed invalidation only leaves a cached copy until it expires, so
    it fails nothing: it is logged and counted (`uninvalidated`, one report item per path to invalidate by hand)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if cdn is None or not cdn.pending:
        return
    pending = cdn.pending
    try:
        sent = cdn.flush(f"mediacanon-{execution[-64:]}-{uuid.uuid4().hex}")
    except (BotoCoreError, ClientError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("cdn invalidation failed: distribution %s, %d path(s): %s", cdn.distribution_id, len(pending), error)
        for path in pending:
            detail = f"CloudFront invalidation of {cdn.distribution_id} failed ({error}): cached copies stay until they expire"
            result.add("uninvalidated", path, detail, phase=phase)
        return
    log.info("cdn invalidated: distribution %s, %d path(s) as %d", cdn.distribution_id, len(pending), len(sent))
    result.counts["invalidated"] += len(pending)


def _record_orphan_etags(steps: Steps, result: BatchResult, listed: Sequence[Listed] | None) -> None:
    """Each orphan of the batch with the ETag it had (the listing's, else one HEAD): `mediacanon.orphans` deletes an
    orphan only while it still holds the bytes the report recorded."""
    known = {item.key: item.etag for item in listed or ()}
    orphans = [item for item in result.items if item["outcome"] == "orphan" and not item.get("etag")]
    heads = present(steps.s3, steps.map.buckets.primary, [i["key"] for i in orphans if i["key"] not in known])
    for item in orphans:
        there = heads.get(item["key"])
        etag = known.get(item["key"]) or (there.etag if there is not None else None)
        if etag:
            item["etag"] = etag
