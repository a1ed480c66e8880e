"""Reverse the renames of an execution (or since a time) from the ledger, newest first.

For each ledger entry: copy the canonical object back to its source key if the bucket lacks it, then
compare-and-swap the rows back from the canonical key to their old values, then mark the entry rolled back.
Rows that changed since (someone saved a new file) are left alone and reported: the compare-and-swap only
moves rows that still hold what mediacanon wrote. Canonical objects stay where they are (I2: nothing is
deleted that a row may reference); they show up as orphans in the next report.

On a deployed stack, pause the live path's queues first: it would otherwise normalize the restored names again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mediacanon.steps import SOURCE_ETAG, SOURCE_KEY

if TYPE_CHECKING:
    from mediacanon.db import Database
    from mediacanon.ledger import Ledger
    from mediacanon.mediamap import MediaMap
    from mediacanon.s3 import S3Adapter


@dataclass
class RollbackResult:
    entries: int = 0
    restored_objects: list[str] = field(default_factory=list)
    rows_restored: int = 0
    rows_changed_since: list[dict[str, Any]] = field(default_factory=list)
    dry_run: bool = False

    @property
    def line(self) -> str:
        head = "ROLLBACK (dry run)" if self.dry_run else "ROLLBACK"
        return (
            f"{head} | entries={self.entries} objects_restored={len(self.restored_objects)} "
            f"rows_restored={self.rows_restored} rows_changed_since={len(self.rows_changed_since)}"
        )


def rollback(
    media_map: MediaMap,
    s3: S3Adapter,
    db: Database,
    ledger: Ledger,
    *,
    execution: str | None = None,
    since: datetime | None = None,
    dry_run: bool = False,
) -> RollbackResult:
    from mediacanon.db import Swap

    if execution is None and since is None:
        raise ValueError("name an execution or a time: rollback never reverses the whole ledger by accident")
    result = RollbackResult(dry_run=dry_run)
    primary = media_map.buckets.primary
    entries = [e for e in ledger.entries(execution=execution, since=since) if e.rolled_back_at is None]
    for entry in reversed(entries):
        result.entries += 1
        mapping = media_map.field(entry.field)
        swaps = [Swap(c["id"], c["new"], c["old"]) for c in entry.changes]
        # not only when `entry.retired_at` says so: a worker that died between the delete and the retire mark left
        # the source gone with the entry unmarked, and the rows must not go back to a 404. A key that rows return
        # to, or that mediacanon retired, is copied back whenever the bucket lacks it.
        if entry.source_key and (swaps or entry.retired_at is not None) and s3.head(primary, entry.source_key) is None:
            canonical = s3.head(primary, entry.canonical_key)
            if canonical is None:
                raise FileNotFoundError(
                    f"cannot restore {entry.source_key!r}: its canonical copy {entry.canonical_key!r} is gone"
                )
            if not dry_run:
                metadata = {k: v for k, v in canonical.metadata.items() if k not in (SOURCE_KEY, SOURCE_ETAG)}
                s3.copy(
                    primary,
                    entry.canonical_key,
                    primary,
                    entry.source_key,
                    metadata=metadata,
                    source_head=canonical,
                    drop_metadata=(SOURCE_KEY, SOURCE_ETAG),
                )
            result.restored_objects.append(entry.source_key)
        if dry_run:
            result.rows_restored += len(swaps)
            continue
        with db.connection() as conn, conn.transaction():
            changed = set(db.swap(mapping, swaps, conn=conn)) if swaps else set()
            ledger.mark_rolled_back(entry.id, conn=conn)
        result.rows_restored += len(changed)
        result.rows_changed_since.extend(
            {"field": entry.field, "row": s.row_id, "expected": s.old} for s in swaps if s.row_id not in changed
        )
    return result
