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
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mediacanon import naming
from mediacanon.errors import PermanentError, RetryableError, UnmappedKeyError, UnsafeKeyError
from mediacanon.plan import Action, build_plan_for_keys
from mediacanon.s3 import copied_metadata
from mediacanon.steps import SOURCE_ETAG, ObjectEvent, Outcome, StepResult, Steps

if TYPE_CHECKING:
    from mediacanon.db import Database
    from mediacanon.mediamap import FieldMapping, MediaMap
    from mediacanon.s3 import DeleteResult, ObjectHead, S3Adapter

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
)


@dataclass
class BatchResult:
    counts: Counter[str] = field(default_factory=Counter)
    items: list[dict[str, Any]] = field(default_factory=list)

    def add(self, count: str, key: str, detail: str = "", canonical_key: str | None = None, phase: str = "objects") -> None:
        self.counts[count] += 1
        self.items.append({"phase": phase, "key": key, "outcome": count, "canonical_key": canonical_key, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "items": self.items}


def _event(bucket: str, key: str) -> ObjectEvent:
    return ObjectEvent(bucket=bucket, key=key, created=True)


def process_objects(steps: Steps, keys: Sequence[str], *, dry_run: bool) -> BatchResult:
    """Normalize, replicate and link each object of a batch of primary keys."""
    result = BatchResult()
    if dry_run:
        media = [key for key in keys if not key.startswith(steps.map.reports_prefix)]
        for item in build_plan_for_keys(steps.map, steps.s3, steps.db, media):
            count = _DRY_RUN_COUNTS[item.action]
            result.add(count, item.key, f"would: {item.action.value}; {item.reason}", item.canonical_key)
        return result
    for key in keys:
        try:
            _process_object(steps, key, result)
        except PermanentError as exc:
            result.add("failed", key, str(exc))
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

    def head(self, bucket: str, key: str) -> ObjectHead | None:
        written = self._written.get((bucket, key))
        return written if written is not None else self._s3.head(bucket, key)

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
            self._written[(dst_bucket, dst_key)] = replace(head, key=dst_key, etag=etag, metadata=merged, version_id=None)
        return etag

    def delete_many(self, bucket: str, keys: Iterable[str]) -> DeleteResult:
        keys = list(keys)
        for key in keys:
            self._written.pop((bucket, key), None)
        return self._s3.delete_many(bucket, keys)


def _process_object(steps: Steps, key: str, result: BatchResult) -> None:
    if key.startswith(steps.map.reports_prefix):
        return  # mediacanon's own reports: not media, not counted
    steps = copy.copy(steps)
    steps.s3 = _WrittenHeads(steps.s3)  # type: ignore[assignment]  # the same interface, one object's memory
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
    _count(result, key, canonical, normalized, mirrored, linked)


def _count(
    result: BatchResult, key: str, canonical: str, normalized: StepResult, mirrored: StepResult, linked: StepResult
) -> None:
    renamed = key != canonical
    if renamed and (normalized.copied or linked.rows_changed or linked.retired):
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


def process_rows(steps: Steps, mapping: FieldMapping, start_id: Any = None, end_id: Any = None, *, dry_run: bool) -> BatchResult:
    """Rows pointing at keys missing from the primary bucket: point them at their canonical key when it exists,
    else copy the file in from a read-only fallback bucket, else report them missing."""
    result = BatchResult()
    s3, primary = steps.s3, steps.map.buckets.primary
    for row in steps.db.iter_rows(mapping, start_id=start_id, end_id=end_id):
        if not row.value or (mapping.tenant_scoped and not row.tenant):
            continue
        key = naming.key_for_value(mapping, row.value, row.tenant)
        try:
            canonical = naming.canonical_key_for_row(mapping, row.slug, key, row.tenant)
        except UnsafeKeyError as exc:
            result.add("refused", key, exc.reason, phase="rows")
            continue
        if s3.head(primary, key) is not None:
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


def prune_mirror(steps: Steps, *, dry_run: bool, max_deletes: int) -> BatchResult:
    """CDN keys that are not canonical primary keys: pruned per policy (I3), guarded against mass deletion."""
    result = BatchResult()
    s3, media_map = steps.s3, steps.map
    primary_keys = {o.key for o in s3.iter_objects(media_map.buckets.primary)}
    if not primary_keys:
        raise PermanentError(
            "the primary bucket listed empty: refusing to prune the CDN bucket (check the bucket name and permissions)"
        )
    extra: list[tuple[str, str]] = []
    for obj in s3.iter_objects(media_map.buckets.cdn):
        canonical, policy = _mirror_view(media_map, obj.key)
        if obj.key not in primary_keys:
            extra.append((obj.key, policy))
        elif not canonical:
            head = s3.head(media_map.buckets.primary, obj.key)
            if head is None or (SOURCE_ETAG not in head.metadata and FALLBACK_SOURCE not in head.metadata):
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
        s3.delete_many(media_map.buckets.cdn, to_delete).raise_for_errors(media_map.buckets.cdn)
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
    items: list[dict[str, Any]]
    dry_run: bool

    @property
    def line(self) -> str:
        shown = ("migrated", "linked", "missing", "skipped", "failed")
        extra = [k for k in REPORT_COUNTS if k not in shown and self.counts.get(k)]
        head = "DRY RUN" if self.dry_run else "DONE"
        return f"{head} | " + " ".join(f"{k}={self.counts.get(k, 0)}" for k in (*shown, *extra))

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "dry_run": self.dry_run, "counts": self.counts, "items": self.items}

    def to_csv(self) -> str:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=["phase", "key", "outcome", "canonical_key", "detail"])
        writer.writeheader()
        writer.writerows(self.items)
        return out.getvalue()


def merge(results: Iterable[BatchResult | dict[str, Any]], *, dry_run: bool) -> Report:
    counts: Counter[str] = Counter()
    items: list[dict[str, Any]] = []
    for r in results:
        data = r.to_json() if isinstance(r, BatchResult) else r
        counts.update(data.get("counts", {}))
        items.extend(data.get("items", []))
    return Report({k: counts.get(k, 0) for k in REPORT_COUNTS}, items, dry_run)


def write_report(steps: Steps, report: Report, execution: str) -> tuple[str, str]:
    """JSON and CSV under the reports prefix of the primary bucket; returns both keys."""
    base = f"{steps.map.reports_prefix}{execution}/report"
    steps.s3.put_bytes(
        steps.map.buckets.primary, base + ".json", json.dumps(report.to_json(), default=str).encode(), "application/json"
    )
    steps.s3.put_bytes(steps.map.buckets.primary, base + ".csv", report.to_csv().encode(), "text/csv")
    return base + ".json", base + ".csv"


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


def write_part(steps: Steps, execution: str, name: str, result: BatchResult) -> str:
    """One worker's outcomes as a JSON part of the execution's report. Named by what the worker was given, so
    a retried batch overwrites its own part instead of being counted twice."""
    key = f"{parts_prefix(steps.map, execution)}{name}.json"
    steps.s3.put_bytes(steps.map.buckets.primary, key, json.dumps(result.to_json(), default=str).encode(), "application/json")
    return key


def read_parts(steps: Steps, execution: str) -> Iterator[dict[str, Any]]:
    for obj in steps.s3.iter_objects(steps.map.buckets.primary, parts_prefix(steps.map, execution)):
        data: dict[str, Any] = json.loads(steps.s3.get_bytes(steps.map.buckets.primary, obj.key))
        yield data


def _batch_name(kind: str, *parts: Any) -> str:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def prepare(steps: Steps, execution: str, given: dict[str, Any]) -> dict[str, Any]:
    """Validate the execution's input against the media map and the database; plan the phases."""
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
    wanted = [m for m in media_map.fields if fields is None or m.name in fields]
    for mapping in wanted:
        steps.db.check_field(mapping)  # a schema mismatch fails the execution here, before any batch runs
    steps.ledger.ensure()
    prefixes = list(given["prefixes"]) if given.get("prefixes") is not None else prefixes_to_scan(media_map, fields)
    ranges = [r for m in wanted for r in row_ranges(steps.db, m)] if "rows" in phases else []
    return {
        "execution": execution,
        "dryRun": bool(given.get("dryRun", False)),
        "maxDeletes": max_deletes,
        "run": {phase: phase in phases for phase in PHASES},
        "prefixes": prefixes,
        "prefixCount": len(prefixes),
        "prefixIndex": 0,
        "rowRanges": ranges,
    }


def run_task(event: dict[str, Any], make_steps: Callable[[str], Steps]) -> dict[str, Any]:
    """One task of the backfill state machine, chosen by the event's "action"; `make_steps(execution)` gives the
    Steps whose ledger records that execution. Returns counts only: outcomes go to the parts in S3.

    A RetryableError (whatever its subclass) leaves as a plain RetryableError, the one name the ASL retries on."""
    action, execution = event.get("action"), str(event["execution"])
    steps = make_steps(execution)
    dry_run = bool(event.get("dryRun", False))
    try:
        if action == "prepare":
            return prepare(steps, execution, event.get("input") or {})
        if action == "objects":
            keys = [item["Key"] for item in event["items"]]
            result = process_objects(steps, keys, dry_run=dry_run)
            write_part(steps, execution, _batch_name("objects", keys), result)
        elif action == "rows":
            span = event["range"]
            mapping = steps.map.field(span["field"])
            result = process_rows(steps, mapping, span.get("start"), span.get("end"), dry_run=dry_run)
            write_part(steps, execution, _batch_name("rows", span["field"], span.get("start")), result)
        elif action == "mirror":
            result = prune_mirror(steps, dry_run=dry_run, max_deletes=int(event.get("maxDeletes", DEFAULT_MAX_DELETES)))
            write_part(steps, execution, "mirror", result)
        elif action == "report":
            report = merge(read_parts(steps, execution), dry_run=dry_run)
            written = write_report(steps, report, execution)
            return {"line": report.line, "counts": report.counts, "keys": list(written)}
        else:
            raise PermanentError(f"unknown backfill action {action!r}")
    except RetryableError as exc:
        if type(exc) is RetryableError:
            raise
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
    return {"counts": dict(result.counts)}
