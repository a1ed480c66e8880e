"""Which row owns a key: the one owner lookup the plan, the steps, the backfill, orphans and inspect share.

A row owns a key when its column references it; for a key no row references, the row whose slug the key's name
gives. The row is the authority on a name: a key canonical by its name alone ('icons/favicon.ico') that a row
'bbc' references is renamed for that row (icons/bbc.ico), and a key its referencing row names stays as it is.
Lookups go by page: one query per field for the references, one per field and tenant for the slugs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from mediacanon.core import naming
from mediacanon.core.errors import UnmappedKeyError, UnsafeKeyError
from mediacanon.core.mediamap import FieldMapping, MediaMap

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row

MatchedBy = Literal["reference", "slug"]


@dataclass(frozen=True)
class Owner:
    id: Any
    slug: str
    value: str | None
    tenant: str | None
    matched_by: MatchedBy

    @property
    def references(self) -> bool:
        """The row's column names the key: its current file, whose bytes win over any other."""
        return self.matched_by == "reference"


def owner_of(row: Row, matched_by: MatchedBy) -> Owner:
    return Owner(id=row.id, slug=row.slug, value=row.value or None, tenant=row.tenant, matched_by=matched_by)


def row_canonical(mapping: FieldMapping, slug: str, key: str, tenant: str | None) -> str | None:
    """The canonical key a row (its slug and tenant) gives `key`; None when the slug gives no usable key."""
    try:
        return naming.canonical_key_for_row(mapping, slug, key, tenant)
    except (UnsafeKeyError, UnmappedKeyError):
        return None


def renaming(mapping: FieldMapping, owner: Owner, key: str) -> str | None:
    """The other key `owner` names `key`, or None when its name stands: the row names it so already, or the row's
    slug gives no usable key."""
    canonical = row_canonical(mapping, owner.slug, key, owner.tenant)
    return None if canonical is None or canonical == key else canonical


def superseded_by(mapping: FieldMapping, key: str, owner: Owner, exists: Callable[[str], bool]) -> str | None:
    """For an owner found by slug only: the other key its row references when the bucket holds it (`exists`), which
    makes this key a superseded upload, not the row's file. None when the row may still point here."""
    if owner.matched_by != "slug" or not owner.value:
        return None
    owner_key = naming.key_for_value(mapping, owner.value, owner.tenant)
    return owner_key if owner_key != key and exists(owner_key) else None


def naming_row(mapping: FieldMapping, key: str, rows: Sequence[Row], tenant: str | None) -> Row | None:
    """Of the rows (of `tenant`) referencing `key`, the one that names it: a row whose canonical key it is, else the
    lowest id. Rows sharing a file follow that row (link moves every row off a renamed source), and a key that is
    some referencing row's own name stays as it is: so a shared file is renamed once, never back and forth."""
    same = [row for row in rows if tenant is None or row.tenant == tenant]
    for row in same:
        if row_canonical(mapping, row.slug, key, row.tenant) == key:
            return row
    return same[0] if same else None


def resolve_by_reference(media_map: MediaMap, db: Database, key: str) -> naming.Resolution | None:
    """For a key whose name gives no slug: the resolution its referencing row gives, if a row references it."""
    try:
        hit = naming.mapping_for(media_map, key)
        if hit is None:
            return None
        mapping, tenant = hit
        value = naming.column_value(mapping, key, tenant)
        row = naming_row(mapping, key, db.rows_referencing(mapping, [value]).get(value, []), tenant)
        return None if row is None else naming.resolve_for_row(media_map, key, row.slug, row.tenant, mapping=mapping)
    except (UnsafeKeyError, UnmappedKeyError):
        return None


def referencing_owners(db: Database, resolved: Iterable[tuple[str, naming.Resolution]]) -> dict[str, Owner]:
    """The row referencing each key (see `naming_row`), for the keys some row references: one query per field."""
    owners: dict[str, Owner] = {}
    for group in _by_field(resolved):
        mapping = group[0][1].field
        by_key = dict(group)
        values = {naming.column_value(mapping, key, res.tenant): key for key, res in group}
        for value, rows in db.rows_referencing(mapping, list(values)).items():
            key = values[value]
            row = naming_row(mapping, key, rows, by_key[key].tenant)
            if row is not None:
                owners[key] = owner_of(row, "reference")
    return owners


def renamed_by_row(db: Database, key: str, res: naming.Resolution) -> tuple[Owner, str] | None:
    """For a key canonical by its name: the row referencing it and the other key that row names it
    ('icons/favicon.ico' referenced by row 'bbc': icons/bbc.ico). The row is the authority on a name; the name alone
    is read only for keys no row references. None when no row references it, a referencing row is named by it (a
    row with slug 'favicon'), or the row's slug gives no usable key (the name stands). One query, by reference."""
    owner = referencing_owners(db, [(key, res)]).get(key)
    if owner is None:
        return None
    canonical = renaming(res.field, owner, key)
    return None if canonical is None else (owner, canonical)


def find_owners(db: Database, resolved: Iterable[tuple[str, naming.Resolution]]) -> dict[str, Owner]:
    """The owning row of each key: the row referencing it (see `naming_row`), else the row whose slug the name gives."""
    resolved = list(resolved)
    owners = referencing_owners(db, resolved)
    for group in _by_field(resolved):
        mapping = group[0][1].field
        for tenant in {res.tenant for _, res in group}:
            pending = [(key, res) for key, res in group if key not in owners and res.tenant == tenant]
            if not pending:
                continue
            wanted = sorted({slug for _, res in pending for slug in (res.slug, *res.alt_slugs)})
            slugs = db.rows_by_slug(mapping, wanted, tenant=tenant)
            for key, res in pending:
                found = next((slugs[s] for s in (res.slug, *res.alt_slugs) if s in slugs), None)
                if found is not None:
                    owners[key] = owner_of(found, "slug")
    return owners


def _by_field(resolved: Iterable[tuple[str, naming.Resolution]]) -> list[list[tuple[str, naming.Resolution]]]:
    by_field: dict[str, list[tuple[str, naming.Resolution]]] = {}
    for key, res in resolved:
        by_field.setdefault(res.field.name, []).append((key, res))
    return list(by_field.values())
