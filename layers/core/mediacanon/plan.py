"""The plan: what mediacanon would do to each object and row, computed without writing anything.

`decide` is pure (the naming core plus what the bucket and database hold); `build_plan` feeds it from the
S3 and PostgreSQL adapters, a page of keys at a time so the database sees one query per page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from itertools import islice
from typing import TYPE_CHECKING, Any

from mediacanon.copies import confirm_same_bytes
from mediacanon.core import naming
from mediacanon.core.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import FieldMapping, MediaMap
from mediacanon.owners import Owner, find_owners, owner_of, resolve_by_reference, superseded_by

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row
    from mediacanon.adapters.ledger import LedgerEntry
    from mediacanon.adapters.s3 import S3Adapter


class Action(StrEnum):
    OK = "ok"  # canonical, referenced, mirrored: nothing to do
    RENAME = "rename"  # copy to the canonical key, point the row at it, retire the old key
    LINK = "link"  # already canonical; only the row must point at it
    MIRROR = "mirror"  # canonical and referenced; the CDN copy is missing or differs
    ORPHAN = "orphan"  # no row owns it: reported, deleted only on explicit request (I5)
    REFUSE = "refuse"  # unsafe or unusable key: never touched
    SKIP = "skip"  # outside every field mapping
    MISSING = "missing"  # (rows) the row points at a key no bucket holds (a 404 from before mediacanon)
    BROKEN = "broken"  # (rows) a row mediacanon moved points at a key the primary bucket lacks: I1, its fault
    REPAIR = "repair"  # (rows) the row's key is missing, but its file can be brought back


@dataclass(frozen=True)
class PlanItem:
    key: str
    action: Action
    reason: str
    field: str | None = None
    canonical_key: str | None = None
    owner: Owner | None = None


@dataclass
class Plan:
    items: list[PlanItem] = field(default_factory=list)

    @property
    def totals(self) -> Counter[str]:
        return Counter(item.action.value for item in self.items)

    def to_json(self) -> dict[str, Any]:
        return {"totals": dict(sorted(self.totals.items())), "items": [_item_json(i) for i in self.items]}


def _item_json(item: PlanItem) -> dict[str, Any]:
    out = asdict(item)
    out["action"] = item.action.value
    return out


def decide(
    key: str,
    resolution: naming.Resolution,
    owner: Owner | None,
    primary: Mapping[str, str],
    cdn: Mapping[str, str],
    owner_canonical: str | None,
    mirrors: Callable[[str], bool] | None = None,
) -> PlanItem:
    """The action for one object of the primary bucket.

    `primary` and `cdn` map keys to ETags; `owner_canonical` is the canonical key computed from the owner's row
    (the row is the authority over the name when there is one). `mirrors(key)` settles a key whose two ETags differ
    (an SSE-KMS copy's ETag is not its source's: `copies.confirm_same_bytes`); without it, other ETags mean other bytes.
    """
    mapping = resolution.field
    why = orphan_reason(mapping, key, owner, primary)
    if owner is None or why is not None:
        canonical_key = resolution.canonical_key if owner is None else owner_canonical or resolution.canonical_key
        return PlanItem(key, Action.ORPHAN, why or "", mapping.name, canonical_key, owner)
    canonical = owner_canonical or resolution.canonical_key
    owner_key = naming.key_for_value(mapping, owner.value, owner.tenant) if owner.value else None
    if key != canonical:
        if canonical in primary and primary[canonical] != primary[key]:
            return PlanItem(
                key,
                Action.REFUSE,
                f"{canonical!r} exists with other bytes (collision policy: {mapping.policies.collision})",
                mapping.name,
                canonical,
                owner,
            )
        return PlanItem(
            key,
            Action.RENAME,
            "; ".join(s for s in resolution.steps[1:] if not s.startswith("canonical key")) or "row slug",
            mapping.name,
            canonical,
            owner,
        )
    if owner_key != key:
        how = "fill the empty column by slug" if not owner.value else f"row points at missing {owner_key!r}"
        return PlanItem(key, Action.LINK, how, mapping.name, canonical, owner)
    if cdn.get(key) is None:
        return PlanItem(key, Action.MIRROR, "missing from the CDN bucket", mapping.name, canonical, owner)
    if cdn[key] != primary[key] and not (mirrors is not None and mirrors(key)):
        return PlanItem(key, Action.MIRROR, "CDN copy differs", mapping.name, canonical, owner)
    return PlanItem(key, Action.OK, "canonical, referenced and mirrored", mapping.name, canonical, owner)


def orphan_reason(mapping: FieldMapping, key: str, owner: Owner | None, primary: Mapping[str, str]) -> str | None:
    """Why an object of the primary bucket is an orphan, or None when a row owns it: the one definition the plan,
    the backfill's report and `verify` share. An orphan is a mapped object (outside the reports prefix, not refused)
    that no row references, and that no row claims by its slug either: no row has the slug its name gives, or the
    row that has it already references another key the primary bucket holds (this one is a superseded upload). A
    key canonical by its name is no exception: with no row, nothing will ever point at it (I5: reported, kept)."""
    if owner is None:
        return ORPHAN_NO_ROW
    other = superseded_by(mapping, key, owner, primary.__contains__)
    return None if other is None else f"row {owner.id} already references {other!r}"


ORPHAN_NO_ROW = "no row references it and no row has its slug"


def build_plan(media_map: MediaMap, s3: S3Adapter, db: Database, page_size: int = 1000) -> Plan:
    """A dry run over the real bucket and database: one PlanItem per object, then per broken row."""
    for mapping in media_map.fields:
        db.check_field(mapping)
    primary = {obj.key: obj.etag for obj in s3.iter_objects(media_map.buckets.primary)}
    cdn = {obj.key: obj.etag for obj in s3.iter_objects(media_map.buckets.cdn)}
    plan = Plan()
    keys = iter(sorted(primary))
    while page := list(islice(keys, page_size)):
        plan.items.extend(_plan_page(media_map, db, page, primary, cdn, _mirrors(media_map, s3)))
    plan.items.extend(_plan_rows(media_map, s3, db, primary, moved_rows_of(media_map, db)))
    return plan


def moved_rows_of(media_map: MediaMap, db: Database) -> dict[str, set[Any]]:
    """The rows mediacanon moved, by field: every ledger entry's rows (a rollback's included). Read only: no ledger
    yet (nothing ran) is no row moved."""
    from mediacanon.adapters.ledger import Ledger

    ledger = Ledger(db, media_map.schema)
    return moved_rows(ledger.entries()) if ledger.exists() else {}


def moved_rows(entries: Iterable[LedgerEntry]) -> dict[str, set[Any]]:
    """Field -> ids of the rows these ledger entries changed: the rows I1 holds mediacanon to."""
    moved: dict[str, set[Any]] = {}
    for entry in entries:
        moved.setdefault(entry.field, set()).update(change["id"] for change in entry.changes)
    return moved


class HeadedEtags(Mapping[str, str]):
    """Key -> ETag of one bucket, read by HEAD on first use: a batch's plan without listing the bucket."""

    def __init__(self, s3: S3Adapter, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.cache: dict[str, str | None] = {}

    def _etag(self, key: str) -> str | None:
        if key not in self.cache:
            head = self.s3.head(self.bucket, key)
            self.cache[key] = head.etag if head else None
        return self.cache[key]

    def __getitem__(self, key: str) -> str:
        etag = self._etag(key)
        if etag is None:
            raise KeyError(key)
        return etag

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._etag(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([k for k, v in self.cache.items() if v is not None])

    def __len__(self) -> int:
        return sum(1 for v in self.cache.values() if v is not None)


def build_plan_for_keys(media_map: MediaMap, s3: S3Adapter, db: Database, keys: Sequence[str]) -> list[PlanItem]:
    """The plan of one batch of primary keys (the backfill's dry run), with HEADs instead of listings."""
    primary = HeadedEtags(s3, media_map.buckets.primary)
    cdn = HeadedEtags(s3, media_map.buckets.cdn)
    return list(_plan_page(media_map, db, list(keys), primary, cdn, _mirrors(media_map, s3)))


def _mirrors(media_map: MediaMap, s3: S3Adapter) -> Callable[[str], bool]:
    """Whether the CDN bucket holds the primary object's bytes under `key`, for a key whose two ETags differ: the heads
    (a copy's recorded ETag), then the checksums S3 holds. Two to four HEADs, asked only when the ETags differ."""
    primary, cdn = media_map.buckets.primary, media_map.buckets.cdn

    def mirrors(key: str) -> bool:
        source, copy = s3.head(primary, key), s3.head(cdn, key)
        return source is not None and copy is not None and confirm_same_bytes(s3, primary, source, cdn, copy)

    return mirrors


def plan_objects(
    media_map: MediaMap, db: Database, keys: Sequence[str], primary: Mapping[str, str], cdn: Mapping[str, str]
) -> list[PlanItem]:
    """The plan's decision for these primary keys (a page of them), given what the buckets hold: how `verify` counts
    orphans and refused keys exactly as the plan does. A key whose two ETags differ counts as unmirrored here."""
    return list(_plan_page(media_map, db, list(keys), primary, cdn))


def _plan_page(
    media_map: MediaMap,
    db: Database,
    page: list[str],
    primary: Mapping[str, str],
    cdn: Mapping[str, str],
    mirrors: Callable[[str], bool] | None = None,
) -> Iterator[PlanItem]:
    resolved: list[tuple[str, naming.Resolution]] = []
    for key in page:
        if key.startswith(media_map.reports_prefix):
            yield PlanItem(key, Action.SKIP, "mediacanon's own report")
            continue
        try:
            resolved.append((key, naming.resolve(media_map, key)))
        except UnsafeKeyError as exc:
            by_row = resolve_by_reference(media_map, db, key)
            if by_row is None:
                yield PlanItem(key, Action.REFUSE, exc.reason)
            else:
                resolved.append((key, by_row))
        except UnmappedKeyError as exc:
            yield PlanItem(key, Action.SKIP, exc.reason)
    owners = find_owners(db, [(key, res) for key, res in resolved])
    for key, res in resolved:
        owner = owners.get(key)
        owner_canonical = None
        if owner is not None:
            try:
                owner_canonical = naming.canonical_key_for_row(res.field, owner.slug, key, owner.tenant)
            except UnsafeKeyError as exc:
                yield PlanItem(key, Action.REFUSE, exc.reason, res.field.name, None, owner)
                continue
        yield decide(key, res, owner, primary, cdn, owner_canonical, mirrors)


def _plan_rows(
    media_map: MediaMap, s3: S3Adapter, db: Database, primary: Mapping[str, str], moved: Mapping[str, set[Any]]
) -> Iterator[PlanItem]:
    """Rows whose column names a key the primary bucket does not hold."""
    fallbacks = FallbackKeys(media_map, s3)
    for mapping in media_map.fields:
        moved_here = moved.get(mapping.name, set())
        for row in db.iter_rows(mapping):
            item = plan_row(mapping, row, primary, fallbacks)
            if item is not None and row.id in moved_here:
                why = "mediacanon moved this row here and the primary bucket lacks the key: I1 broken (mediacanon verify)"
                item = PlanItem(item.key, Action.BROKEN, why, item.field, item.canonical_key, item.owner)
            if item is not None:
                yield item


class FallbackKeys:
    """The keys of the read-only fallback buckets, each listed once on first use."""

    def __init__(self, media_map: MediaMap, s3: S3Adapter) -> None:
        self.map = media_map
        self.s3 = s3
        self.cache: dict[str, set[str]] = {}

    def holding(self, key: str) -> str | None:
        """The first fallback bucket holding `key`, or None."""
        return _fallback_holding(self.map, self.s3, self.cache, key)


def plan_row(mapping: FieldMapping, row: Row, primary: Mapping[str, str], fallbacks: FallbackKeys) -> PlanItem | None:
    """For a row whose column names a key the primary bucket does not hold: REPAIR when its file can be brought back
    (its canonical key exists, or a read-only fallback holds the key), else MISSING. None for a row whose key is
    there, or that names no key. The one definition of "missing" the plan, the backfill's rows phase and `verify`
    share: a row pointing at a key no bucket holds and nothing can bring back (a 404 that was there before
    mediacanon; `verify` holds a row mediacanon moved to a 404 to I1 instead)."""
    if not row.value or (mapping.tenant_scoped and not row.tenant):
        return None
    key = naming.key_for_value(mapping, row.value, row.tenant)
    if key in primary:
        return None
    owner = owner_of(row, "reference")
    try:
        canonical = naming.canonical_key_for_row(mapping, row.slug, key, row.tenant)
    except UnsafeKeyError as exc:
        return PlanItem(key, Action.MISSING, f"missing, and {exc.reason}", mapping.name, None, owner)
    if canonical in primary:
        return PlanItem(
            key, Action.REPAIR, f"missing; canonical {canonical!r} exists: point the row at it", mapping.name, canonical, owner
        )
    source = fallbacks.holding(key)
    if source:
        return PlanItem(
            key, Action.REPAIR, f"missing; read-only fallback {source!r} has it: copy in", mapping.name, canonical, owner
        )
    return PlanItem(key, Action.MISSING, MISSING_REASON, mapping.name, canonical, owner)


MISSING_REASON = "the row points at a key no bucket holds"


def _fallback_holding(media_map: MediaMap, s3: S3Adapter, cache: dict[str, set[str]], key: str) -> str | None:
    for bucket in media_map.buckets.fallbacks:
        if bucket not in cache:
            cache[bucket] = {obj.key for obj in s3.iter_objects(bucket)}
        if key in cache[bucket]:
            return bucket
    return None
