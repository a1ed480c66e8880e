"""Reverse the renames of an execution (or since a time) from the ledger, newest first.

For each ledger entry: copy the canonical object back to its source key if the bucket lacks it, then
compare-and-swap the rows back from the canonical key to their old values, then mark the entry rolled back.
Rows that changed since (someone saved a new file) are left alone and reported: the compare-and-swap only
moves rows that still hold what mediacanon wrote. Canonical objects stay where they are (I2: nothing is
deleted that a row may reference); they show up as orphans in the next report. Restored objects are copied to the
CDN bucket too (I1: rows only ever point at keys both buckets hold), marked RESTORED_BY, which the live path leaves
alone: events still queued do not rename them again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mediacanon.copies import PRIMARY_ETAG, RESTORED_BY, SOURCE_ETAG, SOURCE_KEY, compare_heads
from mediacanon.core import naming

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import ObjectHead, S3Adapter
    from mediacanon.core.mediamap import MediaMap


@dataclass
class RollbackResult:
    entries: int = 0
    restored_objects: list[str] = field(default_factory=list)
    rows_restored: int = 0
    rows_changed_since: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)  # entries or rows not reversed, each with its reason
    dry_run: bool = False

    @property
    def line(self) -> str:
        head = "ROLLBACK (dry run)" if self.dry_run else "ROLLBACK"
        return (
            f"{head} | entries={self.entries} objects_restored={len(self.restored_objects)} "
            f"rows_restored={self.rows_restored} rows_changed_since={len(self.rows_changed_since)} "
            f"not_reversed={len(self.skipped)}"
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
    """Reverse the entries, newest first. A row goes back only to a key both buckets hold, or one this rollback has just
    restored to both (I1); an entry that cannot be reversed (its canonical copy is gone) is skipped with its reason and
    the rest proceed; a row that had a 404 before mediacanon repaired it stays on its repair. Each entry is marked
    rolled back with its rows, in one transaction, so a rerun after a crash finishes what is left."""
    from mediacanon.adapters.db import Swap

    if execution is None and since is None:
        raise ValueError("name an execution or a time: rollback never reverses the whole ledger by accident")
    result = RollbackResult(dry_run=dry_run)
    primary, cdn = media_map.buckets.primary, media_map.buckets.cdn
    entries = [e for e in ledger.entries(execution=execution, since=since) if e.rolled_back_at is None]
    for entry in reversed(entries):
        result.entries += 1
        mapping = media_map.field(entry.field)
        hit = naming.mapping_for(media_map, entry.canonical_key)
        tenant = hit[1] if hit is not None else None
        source_value = naming.column_value(mapping, entry.source_key, tenant) if entry.source_key else None
        swaps: list[Swap] = []
        restore = False
        for change in entry.changes:
            if change["old"] and change["old"] == source_value:
                restore = True
                swaps.append(Swap(change["id"], change["new"], change["old"]))
                continue
            if not change["old"]:  # it had no file (linked by slug): empty again, which names no key
                swaps.append(Swap(change["id"], change["new"], change["old"]))
                continue
            old_key = naming.key_for_value(mapping, change["old"], tenant)
            if s3.head(primary, old_key) is not None and s3.head(cdn, old_key) is not None:
                swaps.append(Swap(change["id"], change["new"], change["old"]))
            else:  # a repair: never back onto the 404 it mended
                result.skipped.append(
                    {
                        "field": entry.field,
                        "row": change["id"],
                        "key": entry.canonical_key,
                        "reason": f"left on its key: its file {old_key!r} was in no bucket before (a repair)",
                    }
                )
        # a worker that died between the delete and the retire mark left the source gone with the entry unmarked:
        # the source is restored whenever rows return to it or mediacanon retired it, and the bucket lacks it
        restore = restore or (entry.retired_at is not None and bool(entry.source_key))
        if restore and entry.source_key:
            reason = _restore(s3, media_map, entry.id, entry.source_key, entry.canonical_key, dry_run=dry_run, result=result)
            if reason is not None:
                result.skipped.append({"field": entry.field, "key": entry.source_key, "reason": reason})
                continue  # not marked: nothing of it was reversed
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


def same_bytes_as_copied(s3: S3Adapter, bucket: str, source: ObjectHead, canonical: ObjectHead) -> bool:
    """Whether the source still holds the bytes its canonical copy was made from: the copy records the source's ETag
    (SOURCE_ETAG) when the steps made it; else the two objects are compared (ETags, then checksums)."""
    recorded = canonical.metadata.get(SOURCE_ETAG)
    if recorded is not None:
        return source.etag == recorded
    return compare_heads(s3, bucket, source, bucket, canonical)[0]


def _restore(
    s3: S3Adapter,
    media_map: MediaMap,
    entry_id: int,
    source_key: str,
    canonical_key: str,
    *,
    dry_run: bool,
    result: RollbackResult,
) -> str | None:
    """Put the source back in both buckets (copies marked RESTORED_BY) where either lacks it; None when done, else why
    it cannot be (the rows then stay where they are)."""
    primary, cdn = media_map.buckets.primary, media_map.buckets.cdn
    source = s3.head(primary, source_key)
    if source is not None and RESTORED_BY not in source.metadata:
        # the source is there: rows go back to it only if it still holds the bytes they moved away from (a key
        # uploaded again since holds other bytes, which the live path is canonicalizing on its own)
        canonical = s3.head(primary, canonical_key)
        if canonical is None or not same_bytes_as_copied(s3, primary, source, canonical):
            return (
                f"not reversed: {source_key!r} was uploaded again since the rename (other bytes than "
                f"{canonical_key!r}): the rows stay on {canonical_key!r}"
            )
    if source is None:
        canonical = s3.head(primary, canonical_key)
        if canonical is None:
            return (
                f"not reversed: its canonical copy {canonical_key!r} is gone from {primary}, so {source_key!r} cannot be restored"
            )
        if not dry_run:
            s3.copy(
                primary,
                canonical_key,
                primary,
                source_key,
                metadata={RESTORED_BY: str(entry_id)},
                source_head=canonical,
                drop_metadata=(SOURCE_KEY, SOURCE_ETAG),
            )
            source = s3.head(primary, source_key)
        result.restored_objects.append(source_key)
    if s3.head(cdn, source_key) is None and not dry_run and source is not None:
        s3.copy(
            primary,
            source_key,
            cdn,
            source_key,
            metadata={PRIMARY_ETAG: source.etag, RESTORED_BY: str(entry_id)},
            source_head=source,
        )
    return None
