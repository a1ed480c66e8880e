"""The three steps of the live path (and of every backfill batch): normalize, replicate, link.

Events are triggers, not facts: every step re-reads the current state of the buckets and the database and
moves it one step toward the canonical state. That is what makes duplicated, reordered, delayed and
replayed events converge (I4): an old event can only ever redo work that the current state still needs.

    normalize  primary: messy key  -> copy to the canonical key (claimed in the ledger), source recorded on the copy
    replicate  primary: canonical  -> CDN copy (and, per policy, CDN delete when the canonical key is removed)
    link       CDN: canonical      -> rows compare-and-swapped to it, committed, then the source key retired (I1, I2)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from mediacanon.adapters.s3 import ObjectHead
from mediacanon.copies import (
    PRIMARY_ETAG,
    RESTORED_BY,
    SOURCE_ETAG,
    SOURCE_KEY,
    confirm_same_bytes,
    holds,
    made_by_steps,
)
from mediacanon.core import naming
from mediacanon.core.errors import (
    ConditionalDeleteUnsupported,
    PermanentError,
    PreconditionFailed,
    RetryableError,
    UnmappedKeyError,
    UnsafeKeyError,
)
from mediacanon.core.mediamap import FieldMapping, MediaMap
from mediacanon.owners import Owner, find_owners, renamed_by_row, resolve_by_reference, superseded_by

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database, Row, Swap
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter

# What S3 names as an "Object Created" event's `reason` when a client uploaded the bytes itself (Django's storage:
# PutObject, or a multipart upload for large files; a browser form: POST Object). Any other reason (CopyObject, or
# none S3 would send: moto names every write "ObjectCreated") may be a copy, and a copy into a name canonical by
# itself is made by mediacanon, named from its row (normalize, the backfill): see Steps.normalize.
UPLOAD_REASONS = frozenset({"PutObject", "CompleteMultipartUpload", "POST Object"})
# Of those, the ones only a client's upload sends: mediacanon's copies above the multipart threshold complete a
# multipart upload too (S3Adapter.copy), so CompleteMultipartUpload may be one of them.
SINGLE_REQUEST_UPLOADS = frozenset({"PutObject", "POST Object"})


class Outcome(StrEnum):
    NORMALIZED = "normalized"
    MIRRORED = "mirrored"
    UNMIRRORED = "unmirrored"  # removed from the CDN because the canonical key left the primary bucket
    LINKED = "linked"
    SKIPPED = "skipped"
    REFUSED = "refused"
    COLLISION = "collision"
    UNOWNED = "unowned"  # no row owns it after the wait: left for the backfill and reported, never lost


class OwnerNotReady(RetryableError):
    """No row owns the key yet: Django stores the file before it saves the row. Retry later."""


@dataclass(frozen=True)
class ObjectEvent:
    bucket: str
    key: str  # decoded
    created: bool  # "Object Created" (else "Object Deleted")
    etag: str | None = None
    sequencer: str | None = None
    version_id: str | None = None
    first_received: float | None = None  # epoch seconds the queue first handed the event out
    reason: str | None = None  # S3's detail.reason: PutObject, CopyObject, CompleteMultipartUpload, DeleteObject, ...
    raw_key: str | None = None  # the key as the event's text had it, before decoding (None: the same as `key`)


@dataclass(frozen=True)
class StepResult:
    outcome: Outcome
    key: str
    detail: str = ""
    canonical_key: str | None = None
    rows_changed: int = 0
    retired: bool = False
    copied: bool = False


class _Unread:
    """A HEAD not made yet (None is the answer of one made: no such key)."""


_UNREAD = _Unread()


def sequencer_newer(a: str | None, b: str | None) -> bool:
    """True when S3 sequencer `a` is strictly later than `b` for the same key (hex; compared as numbers)."""
    if not a or not b:
        return False
    return int(a, 16) > int(b, 16)


def _safe(key: str) -> bool:
    """True when the key itself passes naming's checks (its name may still give no slug)."""
    try:
        naming.check_key(key)
    except UnsafeKeyError:
        return False
    return True


def _not_canonical(result: StepResult) -> StepResult:
    """For replicate and link a refused key is simply not canonical: normalize is the one that reports it."""
    if result.outcome == Outcome.REFUSED:
        return StepResult(Outcome.SKIPPED, result.key, f"not canonical ({result.detail})")
    return result


class Steps:
    def __init__(
        self,
        media_map: MediaMap,
        s3: S3Adapter,
        db: Database,
        ledger: Ledger,
        *,
        owner_wait_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.map = media_map
        self.s3 = s3
        self.db = db
        self.ledger = ledger
        self.owner_wait_seconds = owner_wait_seconds
        self.clock = clock

    @property
    def primary(self) -> str:
        return self.map.buckets.primary

    @property
    def cdn(self) -> str:
        return self.map.buckets.cdn

    def _resolve(self, key: str) -> naming.Resolution | StepResult:
        if key.startswith(self.map.reports_prefix):
            return StepResult(Outcome.SKIPPED, key, "mediacanon's own report")
        try:
            return naming.resolve(self.map, key)
        except UnsafeKeyError as exc:
            return StepResult(Outcome.REFUSED, key, exc.reason)
        except UnmappedKeyError as exc:
            return StepResult(Outcome.SKIPPED, key, exc.reason)

    # -- normalize -------------------------------------------------------------------------------------------

    def normalize(self, event: ObjectEvent) -> StepResult:
        if not event.created:
            return StepResult(Outcome.SKIPPED, event.key, "deletions are replicate's business")
        event, head = self._as_sent(event)
        key = event.key
        res = self._resolve_named(key)
        if isinstance(res, StepResult):
            return res
        owner: Owner | None = None
        if res.is_canonical:
            settled = self._canonical_by_name(event, res)
            if isinstance(settled, StepResult):
                return settled
            owner = settled
        if isinstance(head, _Unread):
            head = self.s3.head(self.primary, key)
        if head is None:
            return StepResult(Outcome.SKIPPED, key, "no longer in the primary bucket (stale event)")
        if RESTORED_BY in head.metadata:
            # a rollback put these bytes back under this name: events queued before it must not rename them again
            # (a new file under the key carries no mark, and is normalized as any upload)
            return StepResult(Outcome.SKIPPED, key, f"restored by a rollback (ledger entry {head.metadata[RESTORED_BY]})")
        if owner is None:
            owner = find_owners(self.db, [(key, res)]).get(key)
        if owner is None:
            return self._unowned(event, "no row references it or has its slug")
        return self._normalize_for(event, head, owner, res)

    def _as_sent(self, event: ObjectEvent) -> tuple[ObjectEvent, ObjectHead | _Unread | None]:
        """The event with the key that names an object, and its head when that took one."""
        if event.raw_key is None or event.raw_key == event.key:
            return event, _UNREAD
        # no AWS document says whether S3's EventBridge events URL-encode keys (its notification docs say
        # direct notifications do; moto sends EventBridge keys as they are, LocalStack encoded): the key is
        # decoded once, and when that names nothing while the key as sent does, the key as sent is the key.
        # One HEAD more, for keys whose event text decodes to something else only ('+', '%')
        head = self.s3.head(self.primary, event.key) if _safe(event.key) else None
        if head is None and (as_sent := self.s3.head(self.primary, event.raw_key)) is not None:
            return replace(event, key=event.raw_key, raw_key=None), as_sent
        return event, head

    def _resolve_named(self, key: str) -> naming.Resolution | StepResult:
        """`_resolve`, and for a name that gives no slug, the resolution a row referencing the key gives."""
        res = self._resolve(key)
        if not isinstance(res, StepResult):
            return res
        # only a name without a slug can be named by its row: a key refused for itself (a control character,
        # '..', too long) stays refused, and is never sent to the database (PostgreSQL text cannot hold NUL)
        by_row = resolve_by_reference(self.map, self.db, key) if res.outcome == Outcome.REFUSED and _safe(key) else None
        return res if by_row is None else by_row  # the name gives no slug, but a row references the key: the row names it

    def _canonical_by_name(self, event: ObjectEvent, res: naming.Resolution) -> StepResult | Owner:
        """For a key canonical by its name: the row that names it otherwise (normalize renames it for that row), or
        the step's result when there is none."""
        key = event.key
        # a copy into a name canonical by itself is mediacanon's own (normalize's, a backfill's: both name it from
        # its row); once the CDN holds these bytes under it, it was judged canonical for its row when it was
        # mirrored (replicate asks the row, the backfill named it from the row): nothing for normalize, and no
        # database call. One HEAD; an upload (UPLOAD_REASONS) skips it, as the CDN cannot hold its new bytes yet
        if event.reason not in UPLOAD_REASONS and (mirrored := self._mirrored(key, event)) is not None:
            return StepResult(Outcome.SKIPPED, key, f"already canonical: {mirrored}", key)
        # canonical by its name, but the row is the authority on a name: 'icons/favicon.ico' (slug 'favicon')
        # referenced by row 'bbc' is renamed icons/bbc.ico like any messy name. Asked by reference only, the one
        # query a canonical key costs; the copy this makes is canonical for its row, so it stops there (no loop)
        renamed = renamed_by_row(self.db, key, res)
        if renamed is None:
            return StepResult(Outcome.SKIPPED, key, "already canonical", key)
        return renamed[0]

    def _normalize_for(self, event: ObjectEvent, head: ObjectHead, owner: Owner, res: naming.Resolution) -> StepResult:
        """The rename for the row that owns the key, unless that row names it so already or holds another file."""
        key = event.key
        try:
            canonical = naming.canonical_key_for_row(res.field, owner.slug, key, owner.tenant)
        except UnsafeKeyError as exc:
            return StepResult(Outcome.REFUSED, key, exc.reason)
        if canonical == key:
            return StepResult(Outcome.SKIPPED, key, f"canonical for row {owner.id}", key)
        # the row holds another file that exists (its canonical one included): this one is a duplicate, unless the
        # row is about to point at it (Django saves the file before the row), hence the wait
        other = superseded_by(res.field, key, owner, lambda k: self.s3.head(self.primary, k) is not None)
        if other is not None:
            return self._unowned(event, f"row {owner.id} references {other!r}, not this key")
        return self._copy_to_canonical(key, head, canonical, owner, res)

    def _mirrored(self, key: str, event: ObjectEvent) -> str | None:
        """Why the CDN bucket already mirrors the bytes this created-event wrote under `key`, or None (one HEAD)."""
        if not event.created or event.etag is None:
            return None
        mirrored = self.s3.head(self.cdn, key)
        return "the CDN bucket mirrors these bytes" if mirrored is not None and holds(mirrored, event.etag) else None

    def _unowned(self, event: ObjectEvent, why: str) -> StepResult:
        waited = self.clock() - event.first_received if event.first_received else 0.0
        if waited < self.owner_wait_seconds:
            raise OwnerNotReady(f"{event.key!r}: {why}; retrying (waited {waited:.0f}s of {self.owner_wait_seconds:.0f}s)")
        return StepResult(Outcome.UNOWNED, event.key, f"{why}; left for the backfill")

    def _copy_to_canonical(self, key: str, head: ObjectHead, canonical: str, owner: Owner, res: naming.Resolution) -> StepResult:
        authoritative = owner.references  # the row's current file: its bytes win
        holder = self.ledger.claim(canonical, key, head.etag, take_over=authoritative)
        target = self.s3.head(self.primary, canonical)
        if target is not None:
            if target.metadata.get(SOURCE_ETAG) == head.etag or confirm_same_bytes(
                self.s3, self.primary, head, self.primary, target
            ):
                return StepResult(Outcome.NORMALIZED, key, "canonical key already holds these bytes", canonical)
            if not authoritative and holder != key:
                policy = res.field.policies.collision
                if policy == "fail":
                    raise PermanentError(f"{canonical!r} holds other bytes than {key!r} (collision policy: fail)")
                if policy == "keep-both":
                    return StepResult(Outcome.COLLISION, key, f"{canonical!r} holds other bytes; kept both", canonical)
        elif holder != key and not authoritative:
            holder_head = self.s3.head(self.primary, holder)
            if holder_head is not None and not confirm_same_bytes(self.s3, self.primary, head, self.primary, holder_head):
                return StepResult(Outcome.COLLISION, key, f"{canonical!r} is claimed by {holder!r}; kept both", canonical)
            self.ledger.claim(canonical, key, head.etag, take_over=True)
        try:
            self.s3.copy(
                self.primary,
                key,
                self.primary,
                canonical,
                metadata={SOURCE_KEY: quote(key, safe="/"), SOURCE_ETAG: head.etag},
                source_head=head,
            )
        except PreconditionFailed as exc:  # overwritten since we read it: redo the step with the newer bytes
            raise RetryableError(f"{key!r} changed during the copy; retrying") from exc
        return StepResult(Outcome.NORMALIZED, key, f"copied for row {owner.id}", canonical, copied=True)

    # -- replicate -------------------------------------------------------------------------------------------

    def replicate(self, event: ObjectEvent) -> StepResult:
        key = event.key
        res = self._resolve(key)
        if isinstance(res, StepResult):
            return _not_canonical(res)
        if event.created and not res.is_canonical and event.reason in SINGLE_REQUEST_UPLOADS:
            # a client's upload under a messy name: only mediacanon's copies record a source (CopyObject, or
            # CompleteMultipartUpload for a large one: not skipped here), so this is never mirrored under this name;
            # normalize copies it to its canonical key, whose own event mirrors it. No request
            return StepResult(Outcome.SKIPPED, key, "an upload under a messy name: normalize copies it first")
        mirrored: ObjectHead | _Unread | None = _UNREAD
        if not event.created:
            # only a canonical name is unmirrored, and only while the CDN holds it: a retired source's event ends
            # here, with no request for a messy name and one HEAD for a canonical one. An object under the key again
            # sent its own Object Created event, which mirrors it (the full step below, as a stale deletion does)
            if not res.is_canonical:
                return StepResult(Outcome.SKIPPED, key, "not canonical: nothing mirrored to remove")
            mirrored = self.s3.head(self.cdn, key)
            if mirrored is None:
                return StepResult(Outcome.SKIPPED, key, "nothing mirrored under this key")
        elif event.etag is not None and res.is_canonical:
            # the CDN first: when it holds the bytes this event wrote, they are mirrored (a backfill's copy, an event
            # delivered again), whatever the primary holds now (newer bytes send their own event): one HEAD, no
            # database call. Otherwise the full step below reuses this HEAD, so it costs no request more than before
            mirrored = self.s3.head(self.cdn, key)
            if mirrored is not None and holds(mirrored, event.etag):
                return StepResult(Outcome.SKIPPED, key, "already mirrored (the CDN bucket holds these bytes)", key)
        head = self.s3.head(self.primary, key)
        if head is None:
            if event.created:
                return StepResult(Outcome.SKIPPED, key, "no longer in the primary bucket (stale event)")
            return self._unmirror(key, res)  # a deletion: the CDN holds the key (read above)
        # a stale "deleted" event for a key that exists again must not undo the newer object: mirror it
        if not (res.is_canonical or SOURCE_KEY in head.metadata):
            return StepResult(Outcome.SKIPPED, key, "not canonical: never mirrored")
        # a copy normalize made (its source recorded) was named from its row; a name canonical by itself may still
        # be another row's generic name ('icons/favicon.ico' referenced by row 'bbc'): normalize renames it, and the
        # CDN (I3) gets the new name only, so link never sees the old one
        if SOURCE_KEY not in head.metadata and (renamed := renamed_by_row(self.db, key, res)) is not None:
            owner, canonical = renamed
            return StepResult(Outcome.SKIPPED, key, f"row {owner.id} names it {canonical!r}: not mirrored under this name")
        return self.mirror(key, head, mirrored)

    def mirror(self, key: str, head: ObjectHead, mirrored: ObjectHead | _Unread | None = _UNREAD) -> StepResult:
        """Copy the primary object to the CDN bucket unless it holds these bytes; `mirrored` is the CDN key's HEAD
        when the caller has just read it (else it is read here)."""
        if isinstance(mirrored, _Unread):
            mirrored = self.s3.head(self.cdn, key)
        if mirrored is not None and confirm_same_bytes(self.s3, self.primary, head, self.cdn, mirrored):
            return StepResult(Outcome.SKIPPED, key, "already mirrored", key)
        self.s3.copy(self.primary, key, self.cdn, key, metadata={PRIMARY_ETAG: head.etag}, source_head=head)
        return StepResult(Outcome.MIRRORED, key, "copied to the CDN bucket", key, copied=True)

    def _unmirror(self, key: str, res: naming.Resolution) -> StepResult:
        """A canonical key gone from the primary bucket, which the CDN bucket still holds."""
        if res.field.policies.mirror_deletes != "delete":
            return StepResult(Outcome.SKIPPED, key, "removed from primary; CDN copy kept (mirror_deletes: report)")
        self.s3.delete_many(self.cdn, [key]).raise_for_errors(self.cdn)
        return StepResult(Outcome.UNMIRRORED, key, "removed from primary, so removed from the CDN bucket", key)

    # -- link ------------------------------------------------------------------------------------------------

    def link(self, event: ObjectEvent) -> StepResult:
        key = event.key
        if not event.created:
            return StepResult(Outcome.SKIPPED, key, "link acts on CDN creations only")
        res = self._resolve(key)
        if isinstance(res, StepResult):
            return _not_canonical(res)
        mirrored = self.s3.head(self.cdn, key)
        if mirrored is None:
            return StepResult(Outcome.SKIPPED, key, "no longer in the CDN bucket (stale event)")
        if not (res.is_canonical or SOURCE_KEY in mirrored.metadata):
            return StepResult(Outcome.SKIPPED, key, "not canonical")
        if holds(mirrored, event.etag) and not made_by_steps(mirrored):
            # this event announces a listed backfill batch's as-is copy (made_by_steps), still in place: that batch
            # moves its rows and retires its sources itself, in the same batch (a retry of it when it died first),
            # and its copy records no source to move rows from. One HEAD, no database call. A backfill calling link
            # itself passes no ETag, so its rows and per-object steps always take the full step below
            return StepResult(Outcome.SKIPPED, key, "a listed backfill batch's mirror: it links its own rows", key)
        primary = self.s3.head(self.primary, key)
        # I1: a row moves only to a key both buckets hold with the same bytes
        if primary is None:
            return StepResult(Outcome.SKIPPED, key, "not in the primary bucket: rows left alone (I1)")
        if not confirm_same_bytes(self.s3, self.primary, primary, self.cdn, mirrored):
            return StepResult(Outcome.SKIPPED, key, "CDN copy differs from primary: replicate will redo it")
        source_key = unquote(primary.metadata[SOURCE_KEY]) if SOURCE_KEY in primary.metadata else None
        return self.link_rows(key, res, source_key, primary, event.sequencer)

    def link_rows(
        self, key: str, res: naming.Resolution, source_key: str | None, primary: ObjectHead, sequencer: str | None
    ) -> StepResult:
        """Move the rows onto `key` (both buckets hold it: I1), then retire the source. Three database round trips:
        the ledger's guard with the rows on the source (one query), one statement that swaps them with its ledger
        entry (and counts what still references the source), then the retire mark. The source is deleted on the ETag
        its copy recorded (If-Match), so it is not read first."""
        from mediacanon.adapters.db import Swap

        mapping = res.field
        moving = source_key if source_key and source_key != key else None
        source_value = naming.column_value(mapping, moving, res.tenant) if moving else None
        guard = self.ledger.link_guard(key, moving, primary.etag if moving else None, mapping=mapping, source_value=source_value)
        if sequencer_newer(guard.latest_sequencer, sequencer):
            return StepResult(Outcome.SKIPPED, key, "stale event: the ledger holds a later one for this key", key)
        if moving and guard.rolled_back_entry is not None:
            # a rollback reversed this rename and put the rows back on the source: an event still queued from
            # before it (a backfill's, a redelivery) must not move them again
            return StepResult(
                Outcome.SKIPPED,
                key,
                f"restored by a rollback (ledger entry {guard.rolled_back_entry}): rows left on its source {moving!r}",
                key,
            )
        new_value = naming.column_value(mapping, key, res.tenant)
        swaps: list[Swap] = []
        if source_value is not None:  # a source to move off (set with `moving`)
            swaps = moved_off(guard.source_rows, res.tenant, source_value, new_value)
        if not swaps:
            by_slug = self.db.rows_by_slug(mapping, [res.slug], tenant=res.tenant).get(res.slug)
            if by_slug is not None and by_slug.value != new_value:
                if not by_slug.value:
                    swaps.append(Swap(by_slug.id, by_slug.value, new_value))
                elif self.s3.head(self.primary, naming.key_for_value(mapping, by_slug.value, by_slug.tenant)) is None:
                    swaps.append(Swap(by_slug.id, by_slug.value, new_value))  # its key is a 404: repair
        linked = self.ledger.link(
            mapping,
            swaps,
            source_key=source_key,
            canonical_key=key,
            etag=primary.etag,
            sequencer=sequencer,
            source_value=source_value if retires(mapping) and swaps else None,
        )
        # with no swap, the rows the guard read are the rows still on the source: no query more
        referenced = linked.source_referenced if swaps else bool(guard.source_rows)
        # a source this link retired already (an event delivered again) is not deleted again: no request
        retired, how = (False, "")
        if moving and not guard.retired:
            retired, how = self.retire(mapping, res.tenant, moving, primary, referenced=referenced)
        outcome = Outcome.LINKED if linked.rows_changed or retired else Outcome.SKIPPED
        return StepResult(
            outcome,
            key,
            link_detail(linked.rows_changed, retired, how),
            key,
            rows_changed=linked.rows_changed,
            retired=retired,
        )

    def retire(
        self,
        mapping: FieldMapping,
        tenant: str | None,
        source_key: str,
        canonical: ObjectHead,
        *,
        referenced: bool | None = None,
    ) -> tuple[bool, str]:
        """Delete the source key once no row references it (I2), and only if it still holds the copied bytes (I5):
        the delete is conditional on the ETag the canonical copy recorded of its source (If-Match), so bytes
        uploaded under the key since are kept, with no HEAD first. `referenced` is whether a row references the source
        when the caller has just counted them (else they are asked here). Returns whether it was deleted, and how
        when not as usual (for the step's detail: its log line, the report)."""
        if not retires(mapping):
            return False, ""
        if referenced is None:
            source_value = naming.column_value(mapping, source_key, tenant)
            referenced = bool(self.db.rows_referencing(mapping, [source_value]).get(source_value))
        if referenced:
            return False, ""
        copied = canonical.metadata.get(SOURCE_ETAG)
        if copied is None:
            return False, ""  # not a copy that recorded its source's bytes: nothing proves the source holds them
        # the primary bucket is versioned (template.yaml), so this leaves a delete marker, not a loss; and it is
        # conditional on the recorded ETag: bytes uploaded under the key since the copy are not deleted with it
        how = ""
        try:
            deleted = self.s3.delete_if_match(self.primary, source_key, copied)
        except ConditionalDeleteUnsupported as exc:
            # a store without conditional deletes (501, learnt once per bucket): retrying never helps, so never raise
            anyway, how = without_condition(mapping, exc.bucket, "If-Match on DeleteObject")
            if not anyway:
                return False, how
            deleted = self.s3.delete_compared(self.primary, source_key, copied)
        if not deleted:
            return False, ""
        self.ledger.mark_retired(source_key, key=canonical.key)
        return True, how


# -- the link and retire rules, which the listed backfill batches apply many at a time -------------------------------


def moved_off(rows: Iterable[Row], tenant: str | None, source_value: str, new_value: str) -> list[Swap]:
    """The compare-and-swaps that move the rows (of `tenant`) referencing a source onto its canonical key."""
    from mediacanon.adapters.db import Swap

    return [Swap(row.id, source_value, new_value) for row in rows if tenant is None or row.tenant == tenant]


def retires(mapping: FieldMapping) -> bool:
    """Whether the field's sources are deleted once no row references them (policies.retire: delete, delete-if-match)."""
    return mapping.policies.retire != "keep"


def without_condition(mapping: FieldMapping, bucket: str, refused: str) -> tuple[bool, str]:
    """On a store that takes no conditional delete (`refused` names the request it refused): whether a source is
    deleted all the same, by compare-then-delete, and how that reads in a step's detail. A field whose
    policies.retire is delete-if-match keeps its sources instead."""
    if mapping.policies.retire == "delete-if-match":
        return False, f"; source kept: {bucket} takes no conditional delete (policies.retire: delete-if-match)"
    return True, f" by compare-then-delete (the store takes no {refused})"


def link_detail(rows_changed: int, retired: bool, how: str = "") -> str:
    """A link's detail: the rows moved, whether the source was retired, and how when not the usual way."""
    return f"{rows_changed} row(s) now point at it" + ("; source retired" if retired else "") + how
