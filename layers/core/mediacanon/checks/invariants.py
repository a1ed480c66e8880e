"""The promise (I1-I5 in the README), checked over the primary bucket, the CDN bucket, the database and the ledger.

Two kinds of evidence, kept apart because some promises are about what happened, not about what is:

- **State** (`check_invariants`, the core of `mediacanon verify`): what the buckets, the rows and the ledger hold now.
  I1: a row mediacanon changed (ledger, not rolled back) points at a key both buckets hold.
  I2: no row points at a key mediacanon retired that is now missing; with a `Baseline`, every read-only
      fallback bucket is unchanged byte for byte (same keys, same ETags).
  I3: every CDN key is a canonical primary key with the primary's bytes.
  I4: not checkable from one state (it is about histories): see `History` and `snapshot`.
  I5: with a `Baseline`, every original object's bytes are still in the primary bucket (under a referenced key,
      or under a key the report lists), and every source mediacanon retired still has its canonical copy. Without
      one, a retired source whose copy is gone is reported, not broken: from the state alone it cannot be told
      apart from a file deleted on purpose after the rename.
- **History** (`History`): facts recorded while steps run (every delete and write an S3 adapter issued, with the
  rows that referenced the key at that moment; every row swap with what the buckets held at that moment).
  I1: a swap moved a row only to a key both buckets held then. I2: a primary key was deleted only while no row
  referenced it; nothing was written to or deleted from a fallback. I4 is checked by the caller comparing
  `snapshot`s: the state after faults equals the fault-free one, and replaying every event changes nothing.

Pending work (rows pointing at keys that were already missing, canonical keys not mirrored yet, renames due,
orphans, refused keys) is reported, not broken.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.s3 import etag_is_digest
from mediacanon.core import naming
from mediacanon.core.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import MediaMap
from mediacanon.plan import Action, FallbackKeys, moved_rows, plan_objects, plan_row, row_canonical
from mediacanon.steps import RESTORED_BY, SOURCE_ETAG, SOURCE_KEY, same_bytes

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import ObjectHead, S3Adapter

INVARIANTS = ("I1", "I2", "I3", "I4", "I5")
PAGE = 1000  # keys per database round of the plan's decision


@dataclass(frozen=True)
class Violation:
    invariant: str  # "I1" .. "I5"
    kind: str  # what broke, e.g. "row_points_at_missing_key"
    key: str
    detail: str
    data: dict[str, Any] = field(default_factory=dict)  # field, row, in_primary, ... (JSON-able)

    def to_json(self) -> dict[str, Any]:
        return {"invariant": self.invariant, "kind": self.kind, "key": self.key, "detail": self.detail, **self.data}


@dataclass(frozen=True)
class Baseline:
    """What held at the start (of a schedule, a backfill): the original primary objects and the fallbacks' contents."""

    originals: Mapping[str, str]  # primary key -> ETag
    fallbacks: Mapping[str, Mapping[str, str]]  # fallback bucket -> key -> ETag
    # primary key -> its full-object checksum ("<algorithm>:<value>"), when taken `with_checksums`: how an original's
    # bytes are found under a copy's fresh SSE-KMS ETag that records nothing (a listed batch's as-is copy)
    checksums: Mapping[str, str] = field(default_factory=dict)


def take_baseline(media_map: MediaMap, s3: S3Adapter, *, with_checksums: bool = False) -> Baseline:
    primary = {
        o.key: o.etag for o in s3.iter_objects(media_map.buckets.primary) if not o.key.startswith(media_map.reports_prefix)
    }
    fallbacks = {b: {o.key: o.etag for o in s3.iter_objects(b)} for b in media_map.buckets.fallbacks}
    checksums: dict[str, str] = {}
    if with_checksums:
        for key in primary:
            head = s3.head(media_map.buckets.primary, key, checksum=True)
            if head is not None and head.checksum is not None:
                checksums[key] = head.checksum
    return Baseline(primary, fallbacks, checksums)


@dataclass
class InvariantReport:
    violations: list[Violation] = field(default_factory=list)
    # reported, not broken
    # rows mediacanon never moved that point at a key the primary bucket lacks (404s from before mediacanon), split
    # as the plan splits them (plan.plan_row): nothing can bring the file back ("missing"), or the backfill can
    # (its canonical key exists, or a read-only fallback holds it: "repairable")
    missing: list[dict[str, Any]] = field(default_factory=list)
    repairable: list[dict[str, Any]] = field(default_factory=list)
    unmirrored: list[str] = field(default_factory=list)  # canonical referenced keys not yet in the CDN
    pending: list[str] = field(default_factory=list)  # referenced but not canonical: a rename is due
    orphans: list[str] = field(default_factory=list)  # no row owns them (plan.orphan_reason): the plan's orphans
    refused: list[str] = field(default_factory=list)  # the plan's refused keys (unsafe names, collisions)
    retired_copy_gone: list[dict[str, Any]] = field(default_factory=list)  # see I5 in the module docstring
    counts: dict[str, int] = field(default_factory=dict)

    def broken(self, invariant: str) -> list[Violation]:
        return [v for v in self.violations if v.invariant == invariant]

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        """One line per violation, for assertion messages."""
        return "\n".join(f"{v.invariant} {v.kind}: {v.key!r}: {v.detail}" for v in self.violations) or "ok"


def check_invariants(
    media_map: MediaMap, s3: S3Adapter, db: Database, ledger: Ledger, *, baseline: Baseline | None = None
) -> InvariantReport:
    """The invariants that the current state can show (see the module docstring for what needs a history)."""
    report = InvariantReport()
    primary_bucket, cdn_bucket = media_map.buckets.primary, media_map.buckets.cdn
    primary = {o.key: o for o in s3.iter_objects(primary_bucket)}
    cdn = {o.key: o for o in s3.iter_objects(cdn_bucket)}
    primary_etags = {k: o.etag for k, o in primary.items()}
    fallbacks = FallbackKeys(media_map, s3)
    every_entry = ledger.entries()
    entries = [e for e in every_entry if e.rolled_back_at is None]
    # a rollback changes rows too: its entries' rows are held to I1 as well (the plan's `broken` rows: plan.moved_rows)
    changed_rows: dict[str, set[Any]] = defaultdict(set, moved_rows(every_entry))
    retired = {e.source_key for e in entries if e.retired_at is not None and e.source_key}

    referenced: set[str] = set()
    broken: set[str] = set()  # referenced keys an I1 violation already names
    rows = 0
    for mapping in media_map.fields:
        db.check_field(mapping)
        # per referenced key in the primary bucket: (a referencing row names it, the canonical key the first
        # referencing row gives it): the rows, not the name, say whether a rename is due (see plan.naming_row)
        named: dict[str, tuple[bool, str | None]] = {}
        for row in db.iter_rows(mapping):
            rows += 1
            if not row.value or (mapping.tenant_scoped and not row.tenant):
                continue
            key = naming.key_for_value(mapping, row.value, row.tenant)
            referenced.add(key)
            in_primary, in_cdn = key in primary, key in cdn
            if in_primary:
                by_row = row_canonical(mapping, row.slug, key, row.tenant)
                was_named, first = named.get(key, (False, by_row))
                named[key] = (was_named or by_row == key, first)
            if in_primary and in_cdn:
                continue
            where = {"field": mapping.name, "row": row.id, "key": key, "in_primary": in_primary, "in_cdn": in_cdn}
            if row.id in changed_rows[mapping.name]:
                report.violations.append(
                    Violation("I1", "row_points_at_missing_key", key, "a row mediacanon changed points at a 404", where)
                )
                broken.add(key)
            elif not in_primary and key in retired:
                report.violations.append(
                    Violation(
                        "I2", "retired_while_referenced", key, "mediacanon retired this key, yet a row references it", where
                    )
                )
            elif not in_primary:
                item = plan_row(mapping, row, primary_etags, fallbacks)
                if item is not None:
                    where = {**where, "canonical_key": item.canonical_key, "reason": item.reason}
                    (report.missing if item.action == Action.MISSING else report.repairable).append(where)
        for key, (is_named, by_row) in named.items():
            if key in broken:
                continue
            # a slug that gives no usable key leaves the name to say it (plan.renamed_by_row)
            if not is_named and (by_row or _canonical(media_map, key)) != key:
                report.pending.append(key)  # a rename is due, mirrored under this name or not
            elif key not in cdn:
                report.unmirrored.append(key)

    canonical_primary: set[str] = set()
    unplaced: list[str] = []  # what the plan decides for: unreferenced keys and names refused by themselves
    for key in primary:
        if key.startswith(media_map.reports_prefix):
            continue
        try:
            if naming.resolve(media_map, key).is_canonical:
                canonical_primary.add(key)
        except UnsafeKeyError:
            unplaced.append(key)
            continue
        except UnmappedKeyError:
            continue
        if key not in referenced:
            unplaced.append(key)
    # orphans and refused keys counted by the plan's own decision (plan.decide), not a second definition
    cdn_etags = {k: o.etag for k, o in cdn.items()}
    for start in range(0, len(unplaced), PAGE):
        for item in plan_objects(media_map, db, unplaced[start : start + PAGE], primary_etags, cdn_etags):
            if item.action == Action.ORPHAN:
                report.orphans.append(item.key)
            elif item.action == Action.REFUSE:
                report.refused.append(item.key)

    for key, obj in cdn.items():
        if key not in primary:
            report.violations.append(Violation("I3", "cdn_key_not_in_primary", key, "the CDN holds a key the primary does not"))
            continue
        if key not in canonical_primary:
            # a key canonical by its row (a name with no ASCII slug) carries its source on the copy
            head = s3.head(primary_bucket, key)
            # and one a rollback restored carries the ledger entry it reversed (rollback.RESTORED_BY)
            if head is None or (SOURCE_KEY not in head.metadata and RESTORED_BY not in head.metadata):
                report.violations.append(Violation("I3", "cdn_key_not_canonical", key, "the CDN holds a non-canonical key"))
                continue
        if obj.etag != primary[key].etag:
            # the same byte-identity rule as the steps (steps.same_bytes): another ETag is other bytes only for two
            # single-part SSE-S3 objects; a copy's recorded ETag, or S3's full-object checksums, read with the heads
            # (ChecksumMode: the same two HEADs as without), show an SSE-KMS, SSE-C or multipart copy's bytes; where
            # none can tell (SSE-KMS objects older than S3's checksums), the bytes themselves, streamed
            p_head, c_head = s3.head(primary_bucket, key, checksum=True), s3.head(cdn_bucket, key, checksum=True)
            if p_head is None or c_head is None or not _same(s3, primary_bucket, p_head, cdn_bucket, c_head):
                report.violations.append(
                    Violation("I3", "cdn_bytes_differ", key, "the CDN copy's bytes differ from the primary's")
                )

    for entry in entries:
        if entry.retired_at is not None and entry.canonical_key not in primary:
            gone = Violation(
                "I5",
                "retired_source_without_copy",
                entry.source_key or "",
                f"retired, but its canonical copy {entry.canonical_key!r} is gone from the primary bucket",
                {"canonical_key": entry.canonical_key},
            )
            if baseline is None:
                report.retired_copy_gone.append(gone.to_json())
            else:
                report.violations.append(gone)

    if baseline is not None:
        report.violations.extend(_check_baseline(media_map, s3, baseline, primary))

    report.counts = {"primary_objects": len(primary), "cdn_objects": len(cdn), "rows": rows, "referenced_keys": len(referenced)}
    return report


def _same(s3: S3Adapter, a_bucket: str, a: ObjectHead, b_bucket: str, b: ObjectHead) -> bool:
    """steps.same_bytes on heads read with their checksums; where those cannot tell, the bytes' SHA-256, streamed."""
    if same_bytes(a, b):
        return True
    if a.size != b.size or (etag_is_digest(a) and etag_is_digest(b)):
        return False  # MD5 ETags that differ: other bytes
    if a.checksum and b.checksum and a.checksum.split(":", 1)[0] == b.checksum.split(":", 1)[0]:
        return False  # checksums of one algorithm that differ: other bytes
    return s3.digest(a_bucket, a.key) == s3.digest(b_bucket, b.key)


def _check_baseline(media_map: MediaMap, s3: S3Adapter, baseline: Baseline, primary: Mapping[str, Any]) -> list[Violation]:
    out: list[Violation] = []
    for bucket, before in baseline.fallbacks.items():
        now = {o.key: o.etag for o in s3.iter_objects(bucket)}
        for key in sorted(set(before) | set(now)):
            if before.get(key) != now.get(key):
                what = "deleted" if key not in now else "written" if key not in before else "overwritten"
                out.append(
                    Violation("I2", "read_only_source_changed", key, f"{what} in read-only s3://{bucket}", {"bucket": bucket})
                )
    etags = {obj.etag for obj in primary.values()}
    # a multipart copy, and any copy of an SSE-KMS or SSE-C object, has a new ETag for the same bytes: a steps' copy
    # records the source's ETag in its metadata, and S3 moves the source's checksum to every copy. Without checksums
    # in the baseline only multipart copies are read (an SSE-S3 copy keeps its MD5 ETag); with them, every object
    recorded: set[str] | None = None
    for key, etag in baseline.originals.items():
        if etag in etags:
            continue
        if recorded is None:
            recorded = set()
            for k, obj in primary.items():
                if baseline.checksums or "-" in obj.etag:
                    head = s3.head(media_map.buckets.primary, k, checksum=bool(baseline.checksums))
                    if head is not None and SOURCE_ETAG in head.metadata:
                        recorded.add(head.metadata[SOURCE_ETAG])
                    if head is not None and head.checksum is not None:
                        recorded.add(head.checksum)
        if etag not in recorded and baseline.checksums.get(key) not in recorded:
            out.append(Violation("I5", "original_bytes_lost", key, f"no primary object holds its bytes (ETag {etag}) any more"))
    return out


def _canonical(media_map: MediaMap, key: str) -> str | None:
    try:
        return naming.resolve(media_map, key).canonical_key
    except (UnsafeKeyError, UnmappedKeyError):
        return None


# -- history ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fact:
    """One thing mediacanon did, as recorded at the moment it did it."""

    action: str  # "delete", "write" (copy or put), "swap"
    bucket: str
    key: str
    at: float  # time.monotonic()
    referenced_by: tuple[Any, ...] = ()  # delete: ids of rows referencing the key just before the request
    in_primary: bool = True  # swap: the new key was in the primary bucket just before the commit
    in_cdn: bool = True  # swap: ... and in the CDN bucket


class History:
    """Facts recorded while steps run (thread-safe), and the I1/I2 violations they show."""

    def __init__(self, media_map: MediaMap) -> None:
        self.map = media_map
        self.facts: list[Fact] = []
        self._lock = threading.Lock()

    def record(self, fact: Fact) -> None:
        with self._lock:
            self.facts.append(fact)

    def delete(self, bucket: str, key: str, referenced_by: Iterable[Any]) -> None:
        self.record(Fact("delete", bucket, key, time.monotonic(), tuple(referenced_by)))

    def write(self, bucket: str, key: str) -> None:
        self.record(Fact("write", bucket, key, time.monotonic()))

    def swap(self, key: str, *, in_primary: bool, in_cdn: bool) -> None:
        self.record(Fact("swap", self.map.buckets.primary, key, time.monotonic(), in_primary=in_primary, in_cdn=in_cdn))

    def violations(self) -> list[Violation]:
        out: list[Violation] = []
        fallbacks = set(self.map.buckets.fallbacks)
        with self._lock:
            facts = list(self.facts)
        for f in facts:
            if f.bucket in fallbacks and f.action in ("delete", "write"):
                out.append(Violation("I2", "read_only_source_written", f.key, f"{f.action} issued to read-only s3://{f.bucket}"))
            elif f.action == "delete" and f.bucket == self.map.buckets.primary and f.referenced_by:
                out.append(
                    Violation(
                        "I2", "deleted_while_referenced", f.key, f"deleted while rows {list(f.referenced_by)} referenced it"
                    )
                )
            elif f.action == "swap" and not (f.in_primary and f.in_cdn):
                out.append(
                    Violation(
                        "I1",
                        "row_moved_to_missing_key",
                        f.key,
                        f"a row was moved to it while in_primary={f.in_primary} in_cdn={f.in_cdn}",
                    )
                )
        return out


@dataclass(frozen=True)
class Snapshot:
    """A comparable picture of the state (for I4: equal snapshots after faults and after a replay)."""

    primary: Mapping[str, str]  # key -> ETag, reports excluded
    cdn: Mapping[str, str]
    rows: Mapping[str, tuple[tuple[Any, str | None], ...]]  # field -> (id, value) in id order


def snapshot(media_map: MediaMap, s3: S3Adapter, db: Database) -> Snapshot:
    primary = {
        o.key: o.etag for o in s3.iter_objects(media_map.buckets.primary) if not o.key.startswith(media_map.reports_prefix)
    }
    cdn = {o.key: o.etag for o in s3.iter_objects(media_map.buckets.cdn)}
    rows = {m.name: tuple((r.id, r.value or None) for r in db.iter_rows(m)) for m in media_map.fields}
    return Snapshot(primary, cdn, rows)
