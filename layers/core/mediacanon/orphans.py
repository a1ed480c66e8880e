"""Deleting the orphans a backfill reported, on request only.

The backfill reports orphans (objects of the primary bucket no row references or claims by its slug) and keeps them
(I5). `delete_orphans` deletes them when asked: it reads the orphans of one backfill report, checks each again as it
is now (still there, still the bytes the report recorded, older than `min_age`, still owned by no row: the plan's own
owner lookup and orphan definition), and deletes those, each only while it holds the reported ETag (DeleteObjects'
per-object condition; on a store without conditional deletes, compare-then-delete, except for a field whose
policies.retire requires the condition). Only the primary bucket is ever written: the read-only fallback buckets and
the CDN bucket are never touched (I2, I3: an orphan is not canonical for any row, so the prune removes its CDN copy).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.s3 import NOT_FOUND_CODES, PRECONDITION_CODES, ObjectHead
from mediacanon.core import naming
from mediacanon.core.errors import NotFoundError, PermanentError, UnmappedKeyError, UnsafeKeyError, UnsupportedByStore
from mediacanon.core.mediamap import RetirePolicy
from mediacanon.owners import find_owners, resolve_by_reference
from mediacanon.plan import orphan_reason

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.core.mediamap import MediaMap

DELETED = "deleted"
WOULD_DELETE = "would delete"
KEPT = "kept"
FAILED = "failed"

# why an orphan of the report is kept
TOO_YOUNG = "too young"  # modified more recently than min_age
CHANGED = "changed"  # other bytes under the key than the report recorded (overwritten since)
NOW_REFERENCED = "now referenced"  # a row references it, or claims it by its slug, now
GONE = "gone"  # no longer in the primary bucket
UNVERIFIED = "unverified"  # the report recorded no ETag for it: nothing shows these are the bytes it reported
UNMAPPED = "unmapped"  # the media map no longer maps its name (edited since the report)
NO_CONDITION = "no conditional delete"  # the store takes no conditional delete and its field requires one
KEPT_REASONS = (TOO_YOUNG, CHANGED, NOW_REFERENCED, GONE, UNVERIFIED, UNMAPPED, NO_CONDITION)

HEAD_THREADS = 10  # the orphans' HEADs side by side (boto3's default connection pool holds 10)


class TooManyOrphans(PermanentError):
    """More orphans would be deleted than the caller allowed: nothing was deleted."""

    def __init__(self, count: int, max_deletes: int, execution: str) -> None:
        self.count = count
        self.max_deletes = max_deletes
        super().__init__(
            f"{count} orphans of {execution!r} would be deleted, more than --max-deletes={max_deletes}: nothing deleted "
            f"(fix: check them with a dry run, then pass --max-deletes {count} or more)"
        )


@dataclass(frozen=True)
class OrphanOutcome:
    key: str
    outcome: str  # DELETED, WOULD_DELETE, KEPT or FAILED
    reason: str = ""  # for KEPT: one of KEPT_REASONS
    detail: str = ""
    etag: str | None = None  # the ETag the report recorded


@dataclass
class OrphanResult:
    execution: str  # the backfill execution whose report was read
    report_key: str  # its report.json in the primary bucket
    dry_run: bool
    max_deletes: int
    outcomes: list[OrphanOutcome] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        """deleted / would_delete / kept / failed, and each kept reason (too_young, changed, now_referenced, ...)."""
        counts: Counter[str] = Counter()
        for item in self.outcomes:
            counts[_name(item.outcome)] += 1
            if item.outcome == KEPT:
                counts[_name(item.reason)] += 1
        return counts

    @property
    def line(self) -> str:
        """ORPHANS | deleted=.. kept=.. too_young=.. changed=.. now_referenced=.. gone=.. (DRY RUN: would_delete=..)"""
        counts = self.counts
        shown = ["would_delete" if self.dry_run else "deleted", "kept", *(_name(r) for r in KEPT_REASONS[:4])]
        extra = [_name(r) for r in KEPT_REASONS[4:]] + [FAILED]
        head = "ORPHANS DRY RUN" if self.dry_run else "ORPHANS"
        return f"{head} | " + " ".join(f"{k}={counts.get(k, 0)}" for k in shown + [k for k in extra if counts.get(k)])

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "execution": self.execution,
            "report": self.report_key,
            "dry_run": self.dry_run,
            "max_deletes": self.max_deletes,
            "counts": dict(self.counts),
            "items": [asdict(item) for item in self.outcomes],
        }


def _name(outcome: str) -> str:
    return outcome.replace(" ", "_")


def report_key(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/report.json"


def latest_execution(media_map: MediaMap, s3: S3Adapter) -> str:
    """The execution whose report.json was written last (the most recent backfill's report)."""
    latest: tuple[datetime, str] | None = None
    prefix = media_map.reports_prefix
    for obj in s3.iter_objects(media_map.buckets.primary, prefix):
        name, _, rest = obj.key[len(prefix) :].partition("/")
        if rest == "report.json" and (latest is None or obj.last_modified > latest[0]):
            latest = (obj.last_modified, name)
    if latest is None:
        raise NotFoundError(
            f"no backfill report under s3://{media_map.buckets.primary}/{prefix} (fix: run `mediacanon backfill` first; "
            "its report lists the orphans)"
        )
    return latest[1]


def reported_orphans(media_map: MediaMap, s3: S3Adapter, execution: str) -> list[dict[str, Any]]:
    """The orphan items of the execution's report (one per key, in report order)."""
    key = report_key(media_map, execution)
    try:
        report = json.loads(s3.get_bytes(media_map.buckets.primary, key))
    except NotFoundError as exc:
        raise NotFoundError(
            f"no report for {execution!r} at s3://{media_map.buckets.primary}/{key} (fix: pass the execution name or ARN "
            "`mediacanon backfill` printed; a run still going or one that failed before its report phase has none yet)"
        ) from exc
    seen: dict[str, dict[str, Any]] = {}
    for item in report.get("items", []):
        name = str(item.get("key") or "")
        if item.get("outcome") != "orphan" or not name or name.startswith(media_map.reports_prefix):
            continue
        seen.setdefault(name, item)
    return list(seen.values())


def delete_orphans(
    media_map: MediaMap,
    s3: S3Adapter,
    db: Database,
    ledger: Ledger | None = None,
    *,
    execution: str | None = None,
    min_age: timedelta,
    max_deletes: int,
    dry_run: bool,
    now: datetime | None = None,
) -> OrphanResult:
    """Delete the orphans the report of backfill `execution` (its name or ARN; None: the latest report) lists, each
    only if it is still there with the reported ETag, was last modified at least `min_age` ago and no row references
    or claims it now. Raises TooManyOrphans, deleting nothing, when more than `max_deletes` would go (a dry run reports
    them as `would delete` instead, whatever their number). With a ledger, the deleted keys' unretired links (rows
    moved off them, the source never retired) are marked retired: the delete was their retirement."""
    if max_deletes < 0:
        raise PermanentError(f"--max-deletes must be a non-negative integer, got {max_deletes}")
    name = execution.rsplit(":", 1)[-1] if execution else latest_execution(media_map, s3)
    result = OrphanResult(name, report_key(media_map, name), dry_run, max_deletes)
    items = reported_orphans(media_map, s3, name)
    primary = media_map.buckets.primary
    heads = _heads(s3, primary, [str(item["key"]) for item in items])
    moment = now if now is not None else datetime.now(UTC)
    checked: list[tuple[dict[str, Any], ObjectHead]] = []
    for item in items:
        key, etag, head = str(item["key"]), item.get("etag") or None, heads[str(item["key"])]
        if head is None:
            result.outcomes.append(OrphanOutcome(key, KEPT, GONE, "no longer in the primary bucket", etag))
        elif etag is None:
            result.outcomes.append(OrphanOutcome(key, KEPT, UNVERIFIED, "the report recorded no ETag for it", etag))
        elif head.etag != etag:
            result.outcomes.append(OrphanOutcome(key, KEPT, CHANGED, f"ETag {etag} when reported, {head.etag} now", etag))
        elif head.last_modified is None or moment - head.last_modified < min_age:
            when = head.last_modified.isoformat() if head.last_modified else "unknown"
            result.outcomes.append(OrphanOutcome(key, KEPT, TOO_YOUNG, f"last modified {when}, under {min_age}", etag))
        else:
            checked.append((item, head))
    candidates = _unowned(media_map, s3, db, checked, result)
    if len(candidates) > max_deletes and not dry_run:
        raise TooManyOrphans(len(candidates), max_deletes, name)
    if dry_run:
        result.outcomes.extend(OrphanOutcome(key, WOULD_DELETE, "", "no row references it", etag) for key, etag, _ in candidates)
    else:
        deleted = _delete(s3, primary, candidates, result)
        if ledger is not None and deleted:
            links = ledger.unretired_links(deleted)
            ledger.mark_retired_many([(key, link.canonical_key) for key, link in links.items()])
    order = {str(item["key"]): i for i, item in enumerate(items)}
    result.outcomes.sort(key=lambda o: order[o.key])
    return result


def _heads(s3: S3Adapter, bucket: str, keys: Sequence[str]) -> dict[str, ObjectHead | None]:
    if not keys:
        return {}
    with ThreadPoolExecutor(min(HEAD_THREADS, len(keys))) as pool:
        return dict(zip(keys, pool.map(lambda k: s3.head(bucket, k), keys), strict=True))


def _unowned(
    media_map: MediaMap, s3: S3Adapter, db: Database, checked: list[tuple[dict[str, Any], ObjectHead]], result: OrphanResult
) -> list[tuple[str, str, RetirePolicy]]:
    """Of the checked orphans, those no row owns now (plan.find_owners, plan.orphan_reason), as (key, ETag, the
    retire policy of its field); the others are kept as now referenced (or unmapped)."""
    resolved: list[tuple[str, naming.Resolution]] = []
    etags: dict[str, str] = {}
    for item, head in checked:
        key = head.key
        etags[key] = head.etag
        try:
            resolved.append((key, naming.resolve(media_map, key)))
        except UnsafeKeyError:
            by_row = resolve_by_reference(media_map, db, key)  # a refused name a row references is that row's
            if by_row is None:
                result.outcomes.append(OrphanOutcome(key, KEPT, UNMAPPED, "the media map refuses its name", item.get("etag")))
            else:
                result.outcomes.append(OrphanOutcome(key, KEPT, NOW_REFERENCED, "a row references it", item.get("etag")))
        except UnmappedKeyError as exc:
            result.outcomes.append(OrphanOutcome(key, KEPT, UNMAPPED, exc.reason, item.get("etag")))
    owners = find_owners(db, resolved)
    # orphan_reason asks whether the key a slug's row references is held by the primary bucket
    primary = media_map.buckets.primary
    owner_keys = {
        naming.key_for_value(res.field, owner.value, owner.tenant)
        for key, res in resolved
        if (owner := owners.get(key)) is not None and owner.value
    }
    held = {k: h.etag for k, h in _heads(s3, primary, sorted(owner_keys)).items() if h is not None}
    out = []
    for key, res in resolved:
        owner = owners.get(key)
        if orphan_reason(res.field, key, owner, held) is None and owner is not None:
            how = "references it" if owner.matched_by == "reference" else "has its slug and no file of its own"
            result.outcomes.append(OrphanOutcome(key, KEPT, NOW_REFERENCED, f"row {owner.id} {how}", etags[key]))
            continue
        out.append((key, etags[key], res.field.policies.retire))
    return out


def _delete(s3: S3Adapter, bucket: str, candidates: list[tuple[str, str, RetirePolicy]], result: OrphanResult) -> list[str]:
    """DeleteObjects, each key only while it holds its ETag (changed: PreconditionFailed, gone: NoSuchKey, both kept).
    On a store without conditional deletes (501, learnt once per bucket): compare-then-delete, one key at a time,
    except for a field whose policies.retire is delete-if-match (kept). Returns the keys deleted."""
    deleted: list[str] = []
    if not candidates:
        return deleted
    etags = {key: etag for key, etag, _ in candidates}
    if bucket not in s3.unconditional_buckets:
        try:
            answer = s3.delete_if_unchanged(bucket, etags)
        except UnsupportedByStore:
            s3.unconditional_buckets.add(bucket)
        else:
            errors = {e.key: e for e in answer.errors}
            for key, etag in etags.items():
                error = errors.get(key)
                if error is None:
                    result.outcomes.append(OrphanOutcome(key, DELETED, "", "no row references it", etag))
                    deleted.append(key)
                elif error.code in PRECONDITION_CODES:
                    result.outcomes.append(OrphanOutcome(key, KEPT, CHANGED, "overwritten since it was checked", etag))
                elif error.code in NOT_FOUND_CODES:
                    result.outcomes.append(OrphanOutcome(key, KEPT, GONE, "deleted since it was checked", etag))
                else:
                    result.outcomes.append(OrphanOutcome(key, FAILED, "", f"{error.code}: {error.message}", etag))
            return deleted
    for key, etag, retire in candidates:
        if retire == "delete-if-match":
            detail = f"{bucket} takes no conditional delete and its field requires one (policies.retire: delete-if-match)"
            result.outcomes.append(OrphanOutcome(key, KEPT, NO_CONDITION, detail, etag))
        elif s3.delete_compared(bucket, key, etag):
            detail = "no row references it; by compare-then-delete (the store takes no conditional delete)"
            result.outcomes.append(OrphanOutcome(key, DELETED, "", detail, etag))
            deleted.append(key)
        else:
            result.outcomes.append(OrphanOutcome(key, KEPT, CHANGED, "overwritten or deleted since it was checked", etag))
    return deleted
