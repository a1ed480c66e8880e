"""The listed-batch objects phase (`process_listed`): a batch of objects as the ItemReader listed them, moved with
the listing's ETags and sizes standing in for HEADs; what the listing cannot settle goes to the per-object steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.cdn import CdnInvalidations
from mediacanon.adapters.s3 import NOT_FOUND_CODES, PRECONDITION_CODES, UNKNOWN_ENCRYPTION, DeleteError, DeleteResult, ObjectHead
from mediacanon.backfill.listing import COPY_THREADS, Listed, present
from mediacanon.backfill.objects import _process_each, process_objects
from mediacanon.backfill.results import BatchResult
from mediacanon.copies import PRIMARY_ETAG, compare_heads
from mediacanon.core import naming
from mediacanon.core.errors import (
    MediacanonError,
    NotFoundError,
    PermanentError,
    PreconditionFailed,
    UnmappedKeyError,
    UnsafeKeyError,
    UnsupportedByStore,
)
from mediacanon.owners import Owner, find_owners, renaming
from mediacanon.steps import Steps, link_detail, moved_off, retires, without_condition

if TYPE_CHECKING:
    from mediacanon.adapters.ledger import Link
    from mediacanon.core.mediamap import FieldMapping

# -- the batch worker on listed objects: what the listing says is not asked again ----------------------------------
#
# The ItemReader's listing gives every object's key, ETag and size. For the common object (a row references it and
# its canonical key is canonical by name) that is enough: the canonical key's and the CDN key's state come from
# listing pages that start at those keys (a batch is a run of neighbouring keys, so a page answers hundreds), the
# copies are single CopyObjects that keep headers and metadata as S3 holds them (no HEAD to re-send them), the
# rows are compare-and-swapped from the source's value, and the sources are retired in one DeleteObjects. Anything
# the listing cannot settle (other bytes under the canonical key, a row found by slug only, a refused name, an
# object over CopyObject's 5 GiB) goes through the per-object steps (mediacanon.backfill.objects), which read what they need.

# The copies this worker makes keep the source's metadata and tags as they are (MetadataDirective COPY cannot add
# user metadata). Where they came from is recorded in the ledger (claims: canonical key, source key, source ETag;
# ledger: the link), not as object tags: S3 bills stored tags monthly ($0.01 per 10,000), so two tags on each of
# 10 M copies would cost $20 a month for a record no step reads.
COPY_OBJECT_LIMIT = 5 * 1024**3


@dataclass
class _Move:
    listed: Listed
    res: naming.Resolution
    owner: Owner | None  # None: a source linked before, its retire all that is left (`linked`)
    canonical: str
    canonical_etag: str = ""
    linked: bool = False  # its rows moved already (an unretired ledger link): nothing to claim or copy
    copied: bool = False
    mirrored: bool = False
    rows_changed: int = 0
    retired: bool = False
    retire_note: str = ""  # how the source was retired, or why it was kept, when not the usual way

    @property
    def renamed(self) -> bool:
        return self.canonical != self.listed.key


def process_listed(steps: Steps, items: Sequence[Listed], *, dry_run: bool, cdn: CdnInvalidations | None = None) -> BatchResult:
    """Normalize, replicate and link a batch of listed objects: the listing's ETags and sizes stand in for HEADs.
    The CDN keys replaced go to `cdn`."""
    if dry_run:
        return process_objects(steps, [item.key for item in items], dry_run=True)
    result = BatchResult(cdn=cdn)
    per_object: list[str] = []  # what the listing cannot settle: the per-object steps, which read what they need
    moves = _moves(steps, items, result, per_object)
    moves = _normalize_listed(steps, moves, result, per_object)
    moves = _mirror_listed(steps, moves, result, per_object)
    _link_and_retire(steps, moves, result)
    for move in moves:
        _count_move(result, move)
    _process_each(steps, per_object, result)
    return result


def _moves(steps: Steps, items: Sequence[Listed], result: BatchResult, per_object: list[str]) -> list[_Move]:
    resolved: list[tuple[Listed, naming.Resolution]] = []
    for item in items:
        if item.key.startswith(steps.map.reports_prefix):
            continue  # mediacanon's own reports: not media, not counted
        try:
            resolved.append((item, naming.resolve(steps.map, item.key)))
        except (UnsafeKeyError, UnmappedKeyError):
            per_object.append(item.key)  # refused names may still be placed by a referencing row; unmapped are skipped
    owners = find_owners(steps.db, [(item.key, res) for item, res in resolved])
    unreferenced = [(item, res) for item, res in resolved if (o := owners.get(item.key)) is None or o.matched_by != "reference"]
    linked = _linked_unretired(steps, unreferenced)
    moves = []
    for item, res in resolved:
        owner = owners.get(item.key)
        if item.key in linked:
            moves.append(linked[item.key])
            continue
        if owner is None and not res.is_canonical:
            result.add("orphan", item.key, ORPHAN_KEPT)
            continue
        if owner is None or owner.matched_by != "reference" or item.size > COPY_OBJECT_LIMIT:
            per_object.append(item.key)
            continue
        # canonical by its name is not enough: the referencing row names it (as normalize does), so another slug's
        # generic name ('icons/favicon.ico' referenced by row 'bbc') is renamed below like any messy one. A row whose
        # slug gives no usable key leaves the name standing.
        if res.is_canonical and renaming(res.field, owner, item.key) is None:
            moves.append(_Move(item, res, owner, item.key, canonical_etag=item.etag))
            continue
        try:
            canonical = naming.canonical_key_for_row(res.field, owner.slug, item.key, owner.tenant)
            by_name = naming.resolve(steps.map, canonical).is_canonical
        except (UnsafeKeyError, UnmappedKeyError):
            by_name = False
        # a canonical key the name alone does not make canonical is marked by the source key in its metadata (the
        # live path and verify read it there): the per-object steps write that
        if not by_name or canonical == item.key:
            per_object.append(item.key)
            continue
        moves.append(_Move(item, res, owner, canonical))
    return moves


ORPHAN_KEPT = (
    "no row references it or has its slug; kept: `mediacanon orphans --execution NAME` deletes the orphans of this "
    "report on request"
)


def _linked_unretired(steps: Steps, candidates: list[tuple[Listed, naming.Resolution]]) -> dict[str, _Move]:
    """Sources no row references any more whose link was committed but never retired: a worker that died between
    its commit and its DeleteObjects leaves them. A batch's copies carry no source key in their metadata (the ledger
    records it), so neither the live link step nor the per-object steps can find them; the ledger can. Each is
    retired as the batch would have retired it, while its canonical key still holds the bytes its rows were moved to
    and those are this source's bytes as listed (the same single-part ETag, or the claim naming this source at this
    ETag). One ledger query when a batch holds unreferenced objects, one listing of the canonical keys when some
    have such a link."""
    if not candidates:
        return {}
    unretired = steps.ledger.unretired_links([item.key for item, _ in candidates])
    if not unretired:
        return {}
    held = present(steps.s3, steps.map.buckets.primary, [link.canonical_key for link in unretired.values()])
    out: dict[str, _Move] = {}
    for item, res in candidates:
        link = unretired.get(item.key)
        if link is None or link.field != res.field.name or item.size > COPY_OBJECT_LIMIT:
            continue
        there = held.get(link.canonical_key)
        if there is None or there.etag != link.etag:
            continue  # the canonical key no longer holds what the rows were moved to: the source stays (I5)
        if there.etag != item.etag and (link.claimed_by, link.claimed_etag) != (item.key, item.etag):
            continue  # nothing shows the canonical key holds these bytes (the source changed since): it stays
        out[item.key] = _Move(item, res, None, link.canonical_key, canonical_etag=there.etag, linked=True)
    return out


def _concurrently(make_copy: Callable[[_Move], str], moves: list[_Move]) -> list[tuple[_Move, str | MediacanonError]]:
    """Run a batch's copies side by side (S3 latency, not CPU, bounds them); the project's errors come back per move
    for the caller to sort out one by one, in order. The database is only ever used from the calling thread."""
    if not moves:
        return []

    def attempt(move: _Move) -> str | MediacanonError:
        try:
            return make_copy(move)
        except (PreconditionFailed, NotFoundError, PermanentError) as exc:
            return exc

    with ThreadPoolExecutor(min(COPY_THREADS, len(moves))) as pool:
        return list(zip(moves, pool.map(attempt, moves), strict=True))


def _normalize_listed(steps: Steps, moves: list[_Move], result: BatchResult, per_object: list[str]) -> list[_Move]:
    primary = steps.map.buckets.primary
    renames = [m for m in moves if m.renamed and not m.linked]
    targets = present(steps.s3, primary, [m.canonical for m in renames])
    unclaimed = _claim_listed(steps, renames, result)
    kept: list[_Move] = []
    to_copy: list[_Move] = []
    to_compare: list[_Move] = []
    for move in moves:
        if not move.renamed or move.linked:  # linked: checked in _linked_unretired, its rows are there already
            kept.append(move)
            continue
        key, etag = move.listed.key, move.listed.etag
        if key in unclaimed:
            continue  # counted as failed
        target = targets[move.canonical]
        if target is None:
            to_copy.append(move)
        elif target.etag == etag:
            move.canonical_etag = etag  # the canonical key already holds these bytes
            kept.append(move)
        elif target.size == move.listed.size:
            to_compare.append(move)  # an SSE-KMS or multipart ETag proves nothing: the checksums below
        else:
            per_object.append(key)  # other bytes: the steps read both
    kept.extend(_same_as_target(steps, to_compare, targets, per_object))
    kept.extend(_copied_to_canonical(steps, to_copy, result, per_object))
    return kept


def _same_as_target(steps: Steps, moves: list[_Move], targets: Mapping[str, Listed | None], per_object: list[str]) -> list[_Move]:
    """Of the moves whose canonical key holds another ETag for as many bytes, those S3's checksums show to hold the
    same bytes (two HEADs, only for these); the others go to the per-object steps, which read both."""
    primary = steps.map.buckets.primary
    same_moves = []
    for move, (same, _, there) in _side_by_side(
        lambda m: compare_heads(
            steps.s3,
            primary,
            _listed_head(m.listed),
            primary,
            _listed_head(targets[m.canonical]),  # type: ignore[arg-type]  # present: compared for that
        ),
        moves,
    ):
        if same:
            move.canonical_etag = there.etag
            same_moves.append(move)
        else:
            per_object.append(move.listed.key)  # other bytes, or nothing shows they are the same: the steps read both
    return same_moves


def _copied_to_canonical(steps: Steps, moves: list[_Move], result: BatchResult, per_object: list[str]) -> list[_Move]:
    """The sources copied to their canonical keys, side by side; a source overwritten since it was listed is copied
    once more, as it is now, and one that changed again or went goes to the per-object steps."""
    primary = steps.map.buckets.primary
    copied_moves = []
    for move, copied in _concurrently(lambda m: _copy_source(steps, m), moves):
        key = move.listed.key
        try:
            if isinstance(copied, PreconditionFailed):  # overwritten since it was listed: once more, as it is now
                head = steps.s3.head(primary, key)
                if head is None:
                    per_object.append(key)
                    continue
                move.listed = Listed(key, head.etag, head.size)
                steps.ledger.claim(move.canonical, key, head.etag, take_over=True)
                copied = _copy_source(steps, move)
            elif isinstance(copied, MediacanonError):
                raise copied
        except (PreconditionFailed, NotFoundError):
            per_object.append(key)  # changed again, or gone since it was listed: the steps read it afresh
            continue
        except PermanentError as exc:
            result.add("failed", key, str(exc))
            continue
        move.canonical_etag, move.copied = copied, True
        copied_moves.append(move)
    return copied_moves


def _claim_listed(steps: Steps, moves: list[_Move], result: BatchResult) -> set[str]:
    """Claim each move's canonical key for its source (a row references the source: its bytes win), the batch's
    claims in one statement. Should that fail for good, one by one, so only the object at fault fails; returns the
    source keys whose claim failed (counted as failed)."""
    claims = [(m.canonical, m.listed.key, m.listed.etag) for m in moves]
    try:
        steps.ledger.claim_many(claims, take_over=True)
        return set()
    except PermanentError:
        pass
    failed = set()
    for canonical, key, etag in claims:
        try:
            steps.ledger.claim(canonical, key, etag, take_over=True)
        except PermanentError as exc:
            result.add("failed", key, str(exc))
            failed.add(key)
    return failed


def _copy_source(steps: Steps, move: _Move) -> str:
    primary, key = steps.map.buckets.primary, move.listed.key
    return steps.s3.copy_as_is(primary, key, primary, move.canonical, source_etag=move.listed.etag)


def _mirror(steps: Steps, move: _Move) -> str:
    primary, cdn = steps.map.buckets.primary, steps.map.buckets.cdn
    return steps.s3.copy_as_is(primary, move.canonical, cdn, move.canonical, source_etag=move.canonical_etag)


def _mirror_listed(steps: Steps, moves: list[_Move], result: BatchResult, per_object: list[str]) -> list[_Move]:
    primary, cdn = steps.map.buckets.primary, steps.map.buckets.cdn
    mirrored = present(steps.s3, cdn, [m.canonical for m in moves])
    # absent, or other bytes (I3: the mirror follows the primary). Another ETag for as many bytes proves nothing under
    # SSE-KMS or SSE-C (a fresh ETag on every copy) or for a multipart object: S3's checksums decide, read (two HEADs at
    # most) for those only; an SSE-S3 batch's mirror matches by ETag and costs no request
    to_copy, to_compare, kept = [], [], []
    for move in moves:
        there = mirrored[move.canonical]
        if there is None or (there.etag != move.canonical_etag and there.size != move.listed.size):
            to_copy.append(move)
        elif there.etag != move.canonical_etag:
            to_compare.append(move)
        else:
            kept.append(move)
    recorded: list[tuple[_Move, ObjectHead]] = []  # copied with the primary's ETag recorded on the copy
    for move, (same, source, there) in _side_by_side(
        lambda m: compare_heads(
            steps.s3,
            primary,
            _listed_head(Listed(m.canonical, m.canonical_etag, m.listed.size)),
            cdn,
            _listed_head(mirrored[m.canonical]),  # type: ignore[arg-type]  # present: compared for that
        ),
        to_compare,
    ):
        if same:
            kept.append(move)  # mirrored already
        elif source.etag != move.canonical_etag:
            per_object.append(move.listed.key)  # the canonical copy changed since: the steps read it afresh
        elif _algorithm(source.checksum) is None or _algorithm(source.checksum) != _algorithm(there.checksum):
            # no checksum can tell these two apart: the copy records the primary's ETag, as the steps' mirror does, so
            # that the next run reads the match from the CDN object's head instead of copying once more
            recorded.append((move, source))
        else:
            to_copy.append(move)  # other bytes
    sources = {id(m): head for m, head in recorded}
    for move, copied in [
        *_concurrently(lambda m: _mirror(steps, m), to_copy),
        *_concurrently(lambda m: _mirror_recorded(steps, m, sources[id(m)]), [m for m, _ in recorded]),
    ]:
        if isinstance(copied, (PreconditionFailed, NotFoundError)):
            per_object.append(move.listed.key)  # the canonical copy changed or went: the steps read it afresh
        elif isinstance(copied, MediacanonError):
            result.add("failed", move.listed.key, str(copied))
        else:
            move.mirrored = True
            if mirrored[move.canonical] is not None:
                result.cdn_changed(move.canonical)  # another object was there: a cached copy of it may be served
            kept.append(move)
    return kept


def _algorithm(checksum: str | None) -> str | None:
    return checksum.split(":", 1)[0] if checksum else None


def _mirror_recorded(steps: Steps, move: _Move, source: ObjectHead) -> str:
    """The steps' mirror copy (headers re-sent, the primary's ETag recorded on the copy: `Steps.mirror`)."""
    primary, cdn = steps.map.buckets.primary, steps.map.buckets.cdn
    return steps.s3.copy(primary, move.canonical, cdn, move.canonical, metadata={PRIMARY_ETAG: source.etag}, source_head=source)


def _listed_head(listed: Listed) -> ObjectHead:
    """What a listing says of an object, as a head: its key, size and ETag, not how it is encrypted."""
    return ObjectHead(listed.key, listed.size, listed.etag, encryption=UNKNOWN_ENCRYPTION)


def _side_by_side(check: Callable[[_Move], Any], moves: list[_Move]) -> list[tuple[_Move, Any]]:
    """A batch's HEADs side by side (as its copies); errors raise, as a HEAD's would in the steps."""
    if not moves:
        return []
    with ThreadPoolExecutor(min(COPY_THREADS, len(moves))) as pool:
        return list(zip(moves, pool.map(check, moves), strict=True))


def _link_and_retire(steps: Steps, moves: list[_Move], result: BatchResult) -> None:
    """Rows from each source to its canonical key (I1: both buckets hold it with these bytes, checked above): a
    field's rows in one compare-and-swap, in one transaction with one ledger entry per source (rollback reverses
    each); then the sources no row references any more, in one DeleteObjects, each only while it still holds the
    bytes that were copied (I2, I5); then their ledger entries marked retired, in one UPDATE."""
    from mediacanon.adapters.ledger import Link

    renames = [m for m in moves if m.renamed]
    by_field: dict[str, list[_Move]] = {}
    for move in renames:
        by_field.setdefault(move.res.field.name, []).append(move)
    retiring: list[tuple[_Move, str]] = []
    for group in by_field.values():
        mapping = group[0].res.field
        values = {m.listed.key: naming.column_value(mapping, m.listed.key, m.res.tenant) for m in group}
        referencing = steps.db.rows_referencing(mapping, list(values.values()))
        links = []
        for move in group:
            source_value = values[move.listed.key]
            new_value = naming.column_value(mapping, move.canonical, move.res.tenant)
            swaps = moved_off(referencing.get(source_value, []), move.res.tenant, source_value, new_value)
            links.append(Link(swaps, move.listed.key, move.canonical, move.canonical_etag))
        linked = _record_links(steps, mapping, group, links, result)
        for move in group:
            if move not in linked:
                moves.remove(move)
        if not retires(mapping) or not linked:
            continue
        still = steps.db.rows_referencing(mapping, [values[m.listed.key] for m in linked])
        retiring.extend((m, values[m.listed.key]) for m in linked if not still.get(values[m.listed.key]))
    if not retiring:
        return
    primary = steps.map.buckets.primary
    # the sources as they are now: only one still holding the copied bytes is deleted (S3 checks the ETag again)
    current = present(steps.s3, primary, [m.listed.key for m, _ in retiring])
    unchanged = {m.listed.key: m for m, _ in retiring if (now := current.get(m.listed.key)) and now.etag == m.listed.etag}
    if not unchanged:
        return
    # the primary bucket is versioned (template.yaml), so this leaves delete markers, not a loss
    deleted = _delete_unchanged(steps, primary, unchanged)
    # changed since (PreconditionFailed): kept; gone since (NoSuchKey: S3 evaluates the ETag against the object, and
    # a worker beside this one, or the live link step, retired it first): nothing left to delete, not this batch's
    # retire to mark. Neither fails the batch.
    changed = {e.key for e in deleted.errors if e.code in PRECONDITION_CODES or e.code in NOT_FOUND_CODES}
    DeleteResult(0, tuple(e for e in deleted.errors if e.key not in changed)).raise_for_errors(primary)
    retired = [move for key, move in unchanged.items() if key not in changed]
    steps.ledger.mark_retired_many([(move.listed.key, move.canonical) for move in retired])
    for move in retired:
        move.retired = True


def _delete_unchanged(steps: Steps, primary: str, unchanged: dict[str, _Move]) -> DeleteResult:
    """One DeleteObjects, each key only while it has its listed ETag. On a store without conditional deletes (501,
    learnt once per bucket) the keys just compared by listing are deleted without the condition, except those whose
    field requires it (policies.retire: delete-if-match), which are kept; each move says which way it went."""
    etags = {k: m.listed.etag for k, m in unchanged.items()}
    if primary not in steps.s3.unconditional_buckets:
        try:
            return steps.s3.delete_if_unchanged(primary, etags)
        except UnsupportedByStore:
            steps.s3.unconditional_buckets.add(primary)
    kept = set()
    for key, move in unchanged.items():
        anyway, move.retire_note = without_condition(move.res.field, primary, "conditional delete")
        if not anyway:
            kept.add(key)
    result = steps.s3.delete_many(primary, [k for k in etags if k not in kept])
    # the kept ones are reported as not deleted, as a changed source is: no error, nothing to mark
    return DeleteResult(result.deleted, result.errors + tuple(DeleteError(k, "PreconditionFailed", "kept") for k in kept))


def _record_links(steps: Steps, mapping: FieldMapping, group: list[_Move], links: list[Link], result: BatchResult) -> list[_Move]:
    """A field's links in one transaction (Ledger.record_links); should that fail for good, one by one, so only the
    object at fault fails (counted as failed). Returns the moves linked, each with its rows changed."""
    try:
        changed = steps.ledger.record_links(mapping, links)
    except PermanentError:
        pass
    else:
        for move, rows_changed in zip(group, changed, strict=True):
            move.rows_changed = rows_changed
        return list(group)
    linked = []
    for move, link in zip(group, links, strict=True):
        try:
            move.rows_changed = steps.ledger.link(
                mapping,
                link.swaps,
                source_key=link.source_key,
                canonical_key=link.canonical_key,
                etag=link.etag,
                sequencer=link.sequencer,
            ).rows_changed
        except PermanentError as exc:
            result.add("failed", move.listed.key, str(exc), move.canonical)
            continue
        linked.append(move)
    return linked


def _count_move(result: BatchResult, move: _Move) -> None:
    key, canonical = move.listed.key, move.canonical
    detail = link_detail(move.rows_changed, move.retired, move.retire_note)
    if move.renamed and (move.copied or move.rows_changed or move.retired):
        result.add("migrated", key, detail, canonical)
    elif move.mirrored:
        result.add("mirrored", key, "copied to the CDN bucket", canonical)
    elif move.renamed:
        result.add("orphan", key, f"duplicate of {canonical!r}: {detail}", canonical)
    else:
        result.add("skipped", key, "already canonical, mirrored and linked", canonical)
