"""The promise (I1-I5 in the README), checked over the primary bucket, the CDN bucket, the database and the ledger:
what the state can show (`check_invariants`, the core of `mediacanon verify`), what the buckets, the rows and the
ledger hold now, one function per invariant.

- I1: a row mediacanon changed (ledger, not rolled back) points at a key both buckets hold.
- I2: no row points at a key mediacanon retired that is now missing.
- I3: every CDN key is a canonical primary key with the primary's bytes.
- I4: not checkable from one state (it is about histories).
- I5: a retired source whose canonical copy is gone is reported, not broken: from the state alone it cannot be told
  apart from a file deleted on purpose after the rename.

Some promises are about what happened, not about what is: the test suites prove those with what held at the start
and facts recorded while the steps ran (tests/support/baseline.py: every original's bytes kept, the read-only
fallbacks unchanged; tests/support/history.py: deletes, writes and row swaps as they happened, and I4's snapshots).

With `buckets.fallbacks_served` (the CDN fails over to the read-only fallback), a row whose key the primary lacks and
the fallback holds is served (`served_from_fallback`): resolvable, so neither I1 broken, missing nor repairable.

Pending work (rows pointing at keys that were already missing, canonical keys not mirrored yet, renames due,
orphans, refused keys) is reported, not broken.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.s3 import etag_is_digest
from mediacanon.copies import RESTORED_BY, SOURCE_KEY, same_bytes
from mediacanon.core import naming
from mediacanon.core.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import MediaMap
from mediacanon.owners import row_canonical
from mediacanon.plan import Action, FallbackKeys, moved_rows, plan_objects, plan_row

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row
    from mediacanon.adapters.ledger import Ledger, LedgerEntry
    from mediacanon.adapters.s3 import ObjectHead, ObjectInfo, S3Adapter
    from mediacanon.core.mediamap import FieldMapping

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


@dataclass
class InvariantReport:
    violations: list[Violation] = field(default_factory=list)
    # reported, not broken
    # rows mediacanon never moved that point at a key the primary bucket lacks (404s from before mediacanon), split
    # as the plan splits them (plan.plan_row): nothing can bring the file back ("missing"), or the backfill can
    # (its canonical key exists, or a read-only fallback holds it: "repairable")
    missing: list[dict[str, Any]] = field(default_factory=list)
    repairable: list[dict[str, Any]] = field(default_factory=list)
    # with buckets.fallbacks_served (the CDN fails over to the read-only fallback: a QA stack on a production dump),
    # rows whose key the primary lacks and the fallback holds: served, so resolvable, neither missing nor repairable
    served_from_fallback: list[dict[str, Any]] = field(default_factory=list)
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


@dataclass
class _State:
    """What the check reads once: both buckets' listings, the fallbacks' keys (on first use), the ledger."""

    map: MediaMap
    s3: S3Adapter
    primary: dict[str, ObjectInfo]
    cdn: dict[str, ObjectInfo]
    primary_etags: dict[str, str]
    fallbacks: FallbackKeys
    entries: list[LedgerEntry]  # the entries not rolled back
    # a rollback changes rows too: its entries' rows are held to I1 as well (the plan's `broken` rows: plan.moved_rows)
    changed_rows: defaultdict[str, set[Any]]
    retired: set[str]  # the source keys mediacanon retired
    referenced: set[str] = field(default_factory=set)  # every key a row names
    broken: set[str] = field(default_factory=set)  # referenced keys an I1 violation already names
    rows: int = 0


def check_invariants(media_map: MediaMap, s3: S3Adapter, db: Database, ledger: Ledger) -> InvariantReport:
    """The invariants that the current state can show (see the module docstring for what needs a history)."""
    report = InvariantReport()
    state = _read_state(media_map, s3, ledger)
    for mapping in media_map.fields:
        _check_rows(state, db, mapping, report)  # I1, I2; missing, repairable, pending, unmirrored
    canonical_primary = _report_unplaced(state, db, report)  # orphans, refused
    _check_cdn(state, canonical_primary, report)  # I3
    _report_retired_copies(state, report)  # I5, as far as the state can tell
    report.counts = {
        "primary_objects": len(state.primary),
        "cdn_objects": len(state.cdn),
        "rows": state.rows,
        "referenced_keys": len(state.referenced),
    }
    return report


def _read_state(media_map: MediaMap, s3: S3Adapter, ledger: Ledger) -> _State:
    every_entry = ledger.entries()
    entries = [e for e in every_entry if e.rolled_back_at is None]
    primary = {o.key: o for o in s3.iter_objects(media_map.buckets.primary)}
    return _State(
        map=media_map,
        s3=s3,
        primary=primary,
        cdn={o.key: o for o in s3.iter_objects(media_map.buckets.cdn)},
        primary_etags={k: o.etag for k, o in primary.items()},
        fallbacks=FallbackKeys(media_map, s3),
        entries=entries,
        changed_rows=defaultdict(set, moved_rows(every_entry)),
        retired={e.source_key for e in entries if e.retired_at is not None and e.source_key},
    )


# -- I1, I2: the rows ------------------------------------------------------------------------------------------


def _check_rows(state: _State, db: Database, mapping: FieldMapping, report: InvariantReport) -> None:
    """One field's rows: I1 and I2 for each row whose key a bucket lacks, then what naming work is due."""
    db.check_field(mapping)
    # per referenced key in the primary bucket: (a referencing row names it, the canonical key the first
    # referencing row gives it): the rows, not the name, say whether a rename is due (see plan.naming_row)
    named: dict[str, tuple[bool, str | None]] = {}
    for row in db.iter_rows(mapping):
        state.rows += 1
        if not row.value or (mapping.tenant_scoped and not row.tenant):
            continue
        key = naming.key_for_value(mapping, row.value, row.tenant)
        state.referenced.add(key)
        if key in state.primary:
            by_row = row_canonical(mapping, row.slug, key, row.tenant)
            was_named, first = named.get(key, (False, by_row))
            named[key] = (was_named or by_row == key, first)
        if key not in state.primary or key not in state.cdn:
            _check_row_key(state, mapping, row, key, report)
    _report_naming(state, named, report)


def _check_row_key(state: _State, mapping: FieldMapping, row: Row, key: str, report: InvariantReport) -> None:
    """A row whose key a bucket lacks: I1 broken (mediacanon changed the row), I2 broken (mediacanon retired the
    key), or a 404 from before mediacanon, missing or repairable as the plan says."""
    in_primary, in_cdn = key in state.primary, key in state.cdn
    where = {"field": mapping.name, "row": row.id, "key": key, "in_primary": in_primary, "in_cdn": in_cdn}
    served_by = state.fallbacks.holding(key) if state.map.buckets.fallbacks_served and not in_primary else None
    if served_by is not None:
        # the CDN fails over to the fallback, so this row's URL answers: no 404 (I1 is about 404s). A restored dump
        # carries the ledger of the stack it came from, whose moves were made, and are kept, in the fallback's stack.
        report.served_from_fallback.append({**where, "fallback": served_by})
    elif row.id in state.changed_rows[mapping.name]:
        report.violations.append(
            Violation("I1", "row_points_at_missing_key", key, "a row mediacanon changed points at a 404", where)
        )
        state.broken.add(key)
    elif not in_primary and key in state.retired:
        report.violations.append(
            Violation("I2", "retired_while_referenced", key, "mediacanon retired this key, yet a row references it", where)
        )
    elif not in_primary:
        item = plan_row(mapping, row, state.primary_etags, state.fallbacks)
        if item is not None:
            where = {**where, "canonical_key": item.canonical_key, "reason": item.reason}
            (report.missing if item.action == Action.MISSING else report.repairable).append(where)


def _report_naming(state: _State, named: dict[str, tuple[bool, str | None]], report: InvariantReport) -> None:
    for key, (is_named, by_row) in named.items():
        if key in state.broken:
            continue
        # a slug that gives no usable key leaves the name to say it (plan.renamed_by_row)
        if not is_named and (by_row or _canonical(state.map, key)) != key:
            report.pending.append(key)  # a rename is due, mirrored under this name or not
        elif key not in state.cdn:
            report.unmirrored.append(key)


def _canonical(media_map: MediaMap, key: str) -> str | None:
    try:
        return naming.resolve(media_map, key).canonical_key
    except (UnsafeKeyError, UnmappedKeyError):
        return None


# -- orphans and refused keys ----------------------------------------------------------------------------------


def _report_unplaced(state: _State, db: Database, report: InvariantReport) -> set[str]:
    """The plan's orphans and refused keys, counted by the plan's own decision (plan.decide), not a second
    definition. Returns the primary keys canonical by their name (for I3)."""
    canonical_primary: set[str] = set()
    unplaced: list[str] = []  # what the plan decides for: unreferenced keys and names refused by themselves
    for key in state.primary:
        if key.startswith(state.map.reports_prefix):
            continue
        try:
            if naming.resolve(state.map, key).is_canonical:
                canonical_primary.add(key)
        except UnsafeKeyError:
            unplaced.append(key)
            continue
        except UnmappedKeyError:
            continue
        if key not in state.referenced:
            unplaced.append(key)
    cdn_etags = {k: o.etag for k, o in state.cdn.items()}
    for start in range(0, len(unplaced), PAGE):
        for item in plan_objects(state.map, db, unplaced[start : start + PAGE], state.primary_etags, cdn_etags):
            if item.action == Action.ORPHAN:
                report.orphans.append(item.key)
            elif item.action == Action.REFUSE:
                report.refused.append(item.key)
    return canonical_primary


# -- I3: the CDN -----------------------------------------------------------------------------------------------


def _check_cdn(state: _State, canonical_primary: set[str], report: InvariantReport) -> None:
    for key, obj in state.cdn.items():
        violation = _check_cdn_key(state, key, obj, canonical_primary)
        if violation is not None:
            report.violations.append(violation)


def _check_cdn_key(state: _State, key: str, obj: ObjectInfo, canonical_primary: set[str]) -> Violation | None:
    s3, primary_bucket, cdn_bucket = state.s3, state.map.buckets.primary, state.map.buckets.cdn
    if key not in state.primary:
        return Violation("I3", "cdn_key_not_in_primary", key, "the CDN holds a key the primary does not")
    if key not in canonical_primary:
        # a key canonical by its row (a name with no ASCII slug) carries its source on the copy
        head = s3.head(primary_bucket, key)
        # and one a rollback restored carries the ledger entry it reversed (rollback.RESTORED_BY)
        if head is None or (SOURCE_KEY not in head.metadata and RESTORED_BY not in head.metadata):
            return Violation("I3", "cdn_key_not_canonical", key, "the CDN holds a non-canonical key")
    if obj.etag != state.primary[key].etag:
        # the same byte-identity rule as the steps (steps.same_bytes): another ETag is other bytes only for two
        # single-part SSE-S3 objects; a copy's recorded ETag, or S3's full-object checksums, read with the heads
        # (ChecksumMode: the same two HEADs as without), show an SSE-KMS, SSE-C or multipart copy's bytes; where
        # none can tell (SSE-KMS objects older than S3's checksums), the bytes themselves, streamed
        p_head, c_head = s3.head(primary_bucket, key, checksum=True), s3.head(cdn_bucket, key, checksum=True)
        if p_head is None or c_head is None or not _same(s3, primary_bucket, p_head, cdn_bucket, c_head):
            return Violation("I3", "cdn_bytes_differ", key, "the CDN copy's bytes differ from the primary's")
    return None


def _same(s3: S3Adapter, a_bucket: str, a: ObjectHead, b_bucket: str, b: ObjectHead) -> bool:
    """steps.same_bytes on heads read with their checksums; where those cannot tell, the bytes' SHA-256, streamed."""
    if same_bytes(a, b):
        return True
    if a.size != b.size or (etag_is_digest(a) and etag_is_digest(b)):
        return False  # MD5 ETags that differ: other bytes
    if a.checksum and b.checksum and a.checksum.split(":", 1)[0] == b.checksum.split(":", 1)[0]:
        return False  # checksums of one algorithm that differ: other bytes
    return s3.digest(a_bucket, a.key) == s3.digest(b_bucket, b.key)


# -- I5: what the state alone can tell -------------------------------------------------------------------------


def _report_retired_copies(state: _State, report: InvariantReport) -> None:
    """A retired source whose canonical copy is gone from the primary bucket: reported, not broken (see I5 in the
    module docstring; the tests' baseline holds it to I5)."""
    for entry in state.entries:
        if entry.retired_at is not None and entry.canonical_key not in state.primary:
            gone = Violation(
                "I5",
                "retired_source_without_copy",
                entry.source_key or "",
                f"retired, but its canonical copy {entry.canonical_key!r} is gone from the primary bucket",
                {"canonical_key": entry.canonical_key},
            )
            report.retired_copy_gone.append(gone.to_json())
