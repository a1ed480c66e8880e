"""The rows phase: rows pointing at keys missing from the primary bucket, a range of ids at a time (`row_ranges`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mediacanon.adapters.cdn import CdnInvalidations
from mediacanon.backfill.listing import present
from mediacanon.backfill.objects import _event, _watched
from mediacanon.backfill.results import FALLBACK_SOURCE, ROWS_PER_RANGE, BatchResult
from mediacanon.core import naming
from mediacanon.core.errors import UnsafeKeyError
from mediacanon.steps import Steps

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row
    from mediacanon.core.mediamap import FieldMapping, MediaMap


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


def rows_manifest_key(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/rows-manifest.json"
