"""The three-way check: primary bucket x CDN bucket x database.

Broken promises (non-zero exit):
- I1: a row mediacanon changed (it is in the ledger) points at a key missing from the primary or the CDN bucket;
- I3: a CDN key that is not a canonical primary key, or a CDN object whose bytes differ from its primary object.
Reported, not broken: rows that pointed at a missing key before mediacanon touched them, objects waiting for a
rename, and orphans (I5: reported, deleted only on explicit request).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediacanon import naming
from mediacanon.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.mediamap import MediaMap
from mediacanon.steps import SOURCE_KEY, same_bytes

if TYPE_CHECKING:
    from mediacanon.db import Database
    from mediacanon.ledger import Ledger
    from mediacanon.s3 import S3Adapter


@dataclass
class Verification:
    broken_i1: list[dict[str, Any]] = field(default_factory=list)  # changed rows pointing at a 404
    broken_i3_extra: list[str] = field(default_factory=list)  # CDN keys that are not canonical primary keys
    broken_i3_differs: list[str] = field(default_factory=list)  # CDN bytes differ from primary
    missing: list[dict[str, Any]] = field(default_factory=list)  # rows pointing at keys no bucket holds
    unmirrored: list[str] = field(default_factory=list)  # canonical referenced keys not yet in the CDN
    pending: list[str] = field(default_factory=list)  # referenced but not canonical: a rename is due
    orphans: list[str] = field(default_factory=list)  # mapped objects no row references
    refused: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.broken_i1 or self.broken_i3_extra or self.broken_i3_differs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "i1_never_a_404": {"ok": not self.broken_i1, "broken": self.broken_i1},
            "i3_exact_mirror": {
                "ok": not (self.broken_i3_extra or self.broken_i3_differs),
                "not_canonical_primary_keys": self.broken_i3_extra,
                "bytes_differ": self.broken_i3_differs,
            },
            "report": {
                "missing": self.missing,
                "unmirrored": self.unmirrored,
                "pending_rename": self.pending,
                "orphans": self.orphans,
                "refused": self.refused,
            },
            "counts": self.counts,
        }


def verify(media_map: MediaMap, s3: S3Adapter, db: Database, ledger: Ledger) -> Verification:
    result = Verification()
    primary = {o.key: o for o in s3.iter_objects(media_map.buckets.primary)}
    cdn = {o.key: o for o in s3.iter_objects(media_map.buckets.cdn)}
    changed_rows: dict[str, set[Any]] = defaultdict(set)
    for entry in ledger.entries():
        if entry.rolled_back_at is None:
            changed_rows[entry.field].update(c["id"] for c in entry.changes)

    referenced: set[str] = set()
    rows = 0
    for mapping in media_map.fields:
        db.check_field(mapping)
        for row in db.iter_rows(mapping):
            rows += 1
            if not row.value or (mapping.tenant_scoped and not row.tenant):
                continue
            key = naming.key_for_value(mapping, row.value, row.tenant)
            referenced.add(key)
            in_primary, in_cdn = key in primary, key in cdn
            if in_primary and in_cdn:
                continue
            where = {"field": mapping.name, "row": row.id, "key": key, "in_primary": in_primary, "in_cdn": in_cdn}
            if row.id in changed_rows[mapping.name]:
                result.broken_i1.append(where)
            elif not in_primary:
                result.missing.append(where)
            else:
                canonical = _canonical(media_map, key)
                (result.unmirrored if canonical == key else result.pending).append(key)

    canonical_primary: set[str] = set()
    for key in primary:
        if key.startswith(media_map.reports_prefix):
            continue
        try:
            res = naming.resolve(media_map, key)
        except UnsafeKeyError:
            result.refused.append(key)
            continue
        except UnmappedKeyError:
            continue
        if res.is_canonical:
            canonical_primary.add(key)
        if key not in referenced:
            result.orphans.append(key)

    for key, obj in cdn.items():
        if key not in primary:
            result.broken_i3_extra.append(key)
            continue
        if key not in canonical_primary:
            head = s3.head(media_map.buckets.primary, key)
            if head is None or SOURCE_KEY not in head.metadata:
                result.broken_i3_extra.append(key)
                continue
        if obj.etag != primary[key].etag:
            p_head, c_head = s3.head(media_map.buckets.primary, key), s3.head(media_map.buckets.cdn, key)
            if p_head is None or c_head is None or not same_bytes(p_head, c_head):
                result.broken_i3_differs.append(key)
    result.counts = {"primary_objects": len(primary), "cdn_objects": len(cdn), "rows": rows, "referenced_keys": len(referenced)}
    return result


def _canonical(media_map: MediaMap, key: str) -> str | None:
    try:
        return naming.resolve(media_map, key).canonical_key
    except (UnsafeKeyError, UnmappedKeyError):
        return None
