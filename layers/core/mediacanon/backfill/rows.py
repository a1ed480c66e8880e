"""The rows phase: rows pointing at keys missing from the primary bucket, a range of the key space at a time
(`row_ranges`): the rows come sorted as S3 lists their keys, so one listing page answers about a thousand of them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from mediacanon.adapters.cdn import CdnInvalidations
from mediacanon.backfill.listing import present
from mediacanon.backfill.objects import _event, _watched
from mediacanon.backfill.results import FALLBACK_SOURCE, ROWS_PER_RANGE, BatchResult
from mediacanon.core import naming
from mediacanon.core.errors import UnsafeKeyError
from mediacanon.steps import Steps

log = logging.getLogger("mediacanon.backfill")

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row
    from mediacanon.core.mediamap import FieldMapping, MediaMap


def _range_rows(db: Database, mapping: FieldMapping, span: dict[str, Any] | None) -> list[Row] | Iterator[Row]:
    """The rows of a manifest range: in key order for `row_ranges`' ranges ("by": "key"); an id range for a
    manifest written before them (a redriven execution); every row without one."""
    span = span or {"by": "key"}
    if span.get("by") == "key":
        return db.rows_in_key_range(mapping, span.get("start"), span.get("end"))
    return db.iter_rows(mapping, start_id=span.get("start"), end_id=span.get("end"))


def process_rows(
    steps: Steps,
    mapping: FieldMapping,
    span: dict[str, Any] | None = None,
    *,
    dry_run: bool,
    cdn: CdnInvalidations | None = None,
) -> BatchResult:
    """Rows pointing at keys missing from the primary bucket, for one range of the manifest (`span`; None: all):
    point them at their canonical key when it exists, else copy the file in from a read-only fallback bucket, else
    report them missing. The CDN keys replaced go to `cdn`."""
    result = BatchResult(cdn=cdn)
    steps = _watched(steps, result)
    s3, primary = steps.s3, steps.map.buckets.primary
    placed: list[tuple[Row, str, str]] = []
    for row in _range_rows(steps.db, mapping, span):
        if not row.value or (mapping.tenant_scoped and not row.tenant):
            continue
        key = naming.key_for_value(mapping, row.value, row.tenant)
        try:
            placed.append((row, key, naming.canonical_key_for_row(mapping, row.slug, key, row.tenant)))
        except UnsafeKeyError as exc:
            result.add("refused", key, exc.reason, phase="rows")
    # a range's rows at once (ROWS_PER_RANGE, small tuples), a slice of the key space: a listing page answers many
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
    """Slices of the key space holding about `rows_per_range` rows each ([start, end) on (tenant, file, id) in the
    order S3 lists keys; the first and last open), for the rows phase's workers: one query (`Database.key_ranges`).
    JSON: the bounds as the database returns them (ids as ints or strings). Says so in the log when no index
    serves the order (`unindexed_notice`)."""
    if notice := unindexed_notice(db, mapping):
        log.warning(notice)
    return [
        {"field": mapping.name, "by": "key", "start": start, "end": end} for start, end in db.key_ranges(mapping, rows_per_range)
    ]


def unindexed_notice(db: Database, mapping: FieldMapping) -> str | None:
    """What the rows phase says of a field whose key-ordered reads have no index to use (each range then scans the
    table: it still works, slower), with the fix; None when an index serves them."""
    if db.key_order_index_in_use(mapping) is not None:
        return None
    return (
        f"rows phase, field {mapping.name}: no index serves {mapping.table}.{mapping.column} in key order, so each "
        "range's read scans the table (it works, slower on a big table); fix: apply `mediacanon db indexes` "
        "(CREATE INDEX CONCURRENTLY) as the table's owner"
    )


def rows_manifest_key(media_map: MediaMap, execution: str) -> str:
    return f"{media_map.reports_prefix}{execution}/rows-manifest.json"
