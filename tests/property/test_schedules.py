"""Generated schedules over the live path and the backfill, checked against the five invariants.

A schedule is a small site (rows, their messy uploads, staged files, orphans, a file only the read-only legacy
bucket holds) and a run of deliveries drawn by hypothesis: which pending event goes next (reordered, delayed),
whether it is delivered again (duplicated), whether two workers take it at once (concurrent, threads on one key),
and where workers crash (after the claim, after the copy, after the mirror, after the commit, before and after the
retire), each crash followed by the redelivery SQS (or Step Functions' retry) would make. Events come from what S3
would emit: every copy the steps make emits its own event, even when the worker dies right after it.

The backfill's objects phase comes in two shapes: per object (`process_objects`, keys only) and, as the state
machine runs it, listed batches (`run_task` -> `process_listed`): runs of neighbouring keys with the ETags and sizes
ListObjectsV2 gave when the batch was listed. Some batches are listed when the site is set up, others when a scan
delivery runs mid-schedule; either way a batch may reach its worker long after its listing (stale ETags, keys gone
or renamed since). A listed batch may race another delivery (a live event, or another batch) on a second worker.

The real `Steps` run against the session's moto server and PostgreSQL; crashes are injected at adapter calls, so
the library code runs unchanged. Two conditions moto ignores are done as S3 does them (see `S3Semantics`). At the
end every pending event is drained without faults and:
- History (I1, I2): no row moved to a key a bucket lacked at that moment; no primary key deleted while a row
  referenced it; nothing written to or deleted from the read-only bucket.
- State (I1, I2, I3, I5): `check_against_baseline` (support.baseline) with the baseline taken before the schedule.
- I4: the final state equals the fault-free outcome, and replaying every delivery changes nothing.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError
from hypothesis import event as hypothesis_event
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from psycopg import sql
from support.baseline import Baseline, check_against_baseline, take_baseline
from support.history import History, snapshot

from mediacanon.adapters.db import Database, Swap
from mediacanon.adapters.ledger import Ledger, Link, Linked
from mediacanon.adapters.s3 import DeleteResult, S3Adapter
from mediacanon.backfill import prefixes_to_scan, process_objects, process_rows, run_task
from mediacanon.checks.verify import verify
from mediacanon.core import mediamap, naming
from mediacanon.core.errors import RetryableError
from mediacanon.core.mediamap import FieldMapping
from mediacanon.steps import ObjectEvent, Steps

pytestmark = pytest.mark.integration

BOUNDARIES = ("after_claim", "after_copy", "after_mirror", "after_commit", "before_retire", "after_retire")
# the listed batch's own calls to each boundary (the per-object steps reach them through claim, copy, link,
# delete_if_match): claim_many, copy_as_is (to the primary: after_copy; to the CDN: after_mirror), record_links,
# delete_if_unchanged (before_retire; after_retire: the sources deleted, mark_retired_many not run yet)
BATCH_CALLS = frozenset({"claim_many", "copy_as_is", "record_links", "delete_if_unchanged"})
# not a crash: Django saves new bytes under the source key (AWS_S3_FILE_OVERWRITE) just before the retire deletes it
OVERWRITE = "overwrite_before_retire"
SLUGS = ("nytimes", "bbc", "reuters", "el-pais", "guardian", "lemonde")
MAX_DELIVERIES = 80  # the drawn part of a schedule; the fault-free drain after it is bounded by DRAIN_LIMIT
DRAIN_LIMIT = 400
EXECUTION = "backfill"  # the backfill's ledger execution and its report parts' prefix


class Crash(Exception):
    """A worker dying at a step boundary (Lambda timeout, out of memory): the record fails, SQS redelivers it."""


# -- the site a schedule runs on ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One piece of the site: `kind` says how it is set up and where its bytes must end."""

    kind: str  # messy | canonical | generic | staged | masthead | orphan | legacy
    slug: str

    @property
    def body(self) -> bytes:
        return f"{self.kind}:{self.slug}".encode()

    @property
    def source_key(self) -> str:
        return {
            "messy": f"icons/{self.slug}_icon_v2_FINAL (1).png",
            "canonical": f"icons/{self.slug}.png",
            "generic": f"icons/generic-{self.slug}.png",  # canonical by its name, for slug 'generic-<slug>'
            "staged": f"downloads/{self.slug}/google_favicon/google_icon.png",
            "masthead": f"mastheads/{self.slug.title()}_Masthead.JPG",
            "orphan": f"icons/nobody-{self.slug}_logo.png",
            "legacy": f"icons/{self.slug}_old.png",
        }[self.kind]

    @property
    def canonical_key(self) -> str:
        return f"mastheads/{self.slug}.jpg" if self.kind == "masthead" else f"icons/{self.slug}.png"


@st.composite
def sites(draw: st.DrawFn, *, legacy: bool) -> list[Item]:
    """Up to four rows with distinct slugs (so no two items race for one canonical key) and maybe an orphan."""
    kinds = ["messy", "canonical", "generic", "staged", "masthead", *(["legacy"] if legacy else [])]
    slugs = draw(st.lists(st.sampled_from(SLUGS), min_size=1, max_size=4, unique=True))
    items = [Item(draw(st.sampled_from(kinds)), slug) for slug in slugs]
    if draw(st.booleans()):
        items.append(Item("orphan", draw(st.sampled_from(SLUGS))))
    return items


def expected_state(
    items: list[Item], overwritten: dict[str, str]
) -> tuple[dict[str, str], dict[str, str], dict[str, dict[str, str | None]]]:
    """The fault-free outcome: (primary key -> ETag, CDN key -> ETag, field -> slug -> column). A source overwritten
    after its row moved stays, with the new bytes, as an orphan no row references (reported, never deleted). One
    whose name is canonical by itself (a generic item's 'icons/generic-<slug>.png', slug 'generic-<slug>') is then
    mirrored too: no row renames it any more, and a canonical name is replicate's business whether or not a row
    has its slug yet (Django saves the file before the row; the CDN copy is what triggers the link)."""
    primary: dict[str, str] = dict(overwritten)
    named_by_itself = {item.source_key for item in items if item.kind == "generic"}
    cdn: dict[str, str] = {key: etag for key, etag in overwritten.items() if key in named_by_itself}
    rows: dict[str, dict[str, str | None]] = {"archive.PublicationSource.icon": {}, "archive.PublicationSource.masthead": {}}
    for item in items:
        md5 = hashlib.md5(item.body).hexdigest()  # noqa: S324 - S3's ETag of a single-part object
        if item.kind == "orphan":
            primary[item.source_key] = md5  # kept, reported (I5)
            continue
        primary[item.canonical_key] = cdn[item.canonical_key] = md5
        if item.kind == "masthead":
            rows["archive.PublicationSource.icon"][item.slug] = None
            rows["archive.PublicationSource.masthead"][item.slug] = item.canonical_key  # location "": value = key
        else:
            rows["archive.PublicationSource.icon"][item.slug] = item.canonical_key
            rows["archive.PublicationSource.masthead"][item.slug] = None
    return primary, cdn, rows


# -- deliveries, faults and the audited adapters -----------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    step: str  # normalize | replicate | link | backfill-objects | backfill-listed | backfill-scan | backfill-rows
    bucket: str
    key: str  # backfill-listed and backfill-scan: the prefix listed
    created: bool = True
    sequencer: str | None = None
    listed: tuple[tuple[str, str, int], ...] = ()  # backfill-listed: (Key, ETag, Size) as ListObjectsV2 gave them


@dataclass
class Faults:
    """Crash at the Nth time a named boundary is reached (1-based), as planned; counted across threads."""

    plan: dict[str, frozenset[int]] = field(default_factory=dict)
    reached: Counter[str] = field(default_factory=Counter)
    fired: list[str] = field(default_factory=list)
    fired_in: list[str] = field(default_factory=list)  # the adapter or ledger call each one happened in
    enabled: bool = True
    lock: threading.Lock = field(default_factory=threading.Lock)

    def due(self, action: str, call: str) -> bool:
        """True when the planned action (not a crash) is due at this occurrence."""
        with self.lock:
            self.reached[action] += 1
            due = self.enabled and self.reached[action] in self.plan.get(action, frozenset())
            if due:
                self.fired.append(action)
                self.fired_in.append(call)
        return due

    def at(self, boundary: str, call: str) -> None:
        with self.lock:
            self.reached[boundary] += 1
            crash = self.enabled and self.reached[boundary] in self.plan.get(boundary, frozenset())
            if crash:
                self.fired.append(boundary)
                self.fired_in.append(call)
        if crash:
            raise Crash(f"{boundary} in {call}")


class S3Semantics:
    """The S3 client the schedule's adapters use: moto's, with two conditions moto 5.2 ignores done as S3 does them,
    so that a stale listing meets what it would meet on AWS rather than moto's leniency:

    - CopyObject's CopySourceIfMatch: S3 copies nothing and answers 412 when the source changed (404 when it is
      gone); moto copies whatever the source holds now.
    - DeleteObjects' per-object ETag: S3 deletes an object only while it has that ETag and reports the others as
      per-key errors (PreconditionFailed; NoSuchKey when the key is gone); moto deletes them all. Done here as one
      DeleteObject with If-Match per key, which moto does check, its errors reported per key as DeleteObjects does.

    The copy's check is a HEAD just before the copy, not atomic with it: a race with an overwrite inside that
    window would still copy the newer bytes (as moto alone always does)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def copy_object(self, **params: Any) -> Any:
        expected = params.get("CopySourceIfMatch")
        if expected is not None:
            source = params["CopySource"]
            try:
                etag = self._client.head_object(Bucket=source["Bucket"], Key=source["Key"])["ETag"]
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    raise _client_error("NoSuchKey", 404, "The specified key does not exist.", "CopyObject") from exc
                raise
            if etag.strip('"') != expected.strip('"'):
                raise _client_error(
                    "PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold", "CopyObject"
                )
        return self._client.copy_object(**params)

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any], **params: Any) -> Any:
        objects = Delete["Objects"]
        if not any("ETag" in o for o in objects):
            return self._client.delete_objects(Bucket=Bucket, Delete=Delete, **params)
        deleted, errors = [], []
        for o in objects:
            condition = {"IfMatch": o["ETag"]} if "ETag" in o else {}
            try:
                self._client.delete_object(Bucket=Bucket, Key=o["Key"], **condition)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                errors.append({"Key": o["Key"], "Code": error.get("Code", ""), "Message": error.get("Message", "")})
            else:
                deleted.append({"Key": o["Key"]})
        return {"Errors": errors} if Delete.get("Quiet") else {"Deleted": deleted, "Errors": errors}


def _client_error(code: str, status: int, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)  # type: ignore[typeddict-item]


class Schedule:
    """One schedule's buckets, queue, faults and history.

    `batch_size`: the listed batches' MaxItemsPerBatch. `per_object`: whether the backfill's per-object deliveries
    (one key each, `process_objects`) are queued beside the listed batches. `events`: whether the site's objects
    were uploaded with mediacanon's events wired (False: they predate it, the backfill's own business; the copies
    the backfill makes still emit theirs)."""

    def __init__(
        self,
        world: World,
        items: list[Item],
        faults: Faults,
        *,
        batch_size: int = 3,
        per_object: bool = True,
        events: bool = True,
    ) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.world = world
        self.items = items
        self.primary, self.cdn, self.legacy = f"primary-{suffix}", f"cdn-{suffix}", f"legacy-{suffix}"
        client = world.client
        for name in (self.primary, self.cdn, self.legacy):
            client.create_bucket(Bucket=name)
        # as template.yaml: the primary bucket is versioned, so a retire leaves a delete marker
        client.put_bucket_versioning(Bucket=self.primary, VersioningConfiguration={"Status": "Enabled"})
        self.map = mediamap.parse(world.archive_map(self.primary, self.cdn, [self.legacy]))
        self.faults = faults
        self.history = History(self.map)
        self.queue: list[Delivery] = []
        self.delivered: list[Delivery] = []
        self.overwritten: dict[str, str] = {}  # source key -> ETag of the bytes Django saved over it
        self.lock = threading.Lock()
        self.seq = itertools.count(1)
        self.s3 = S3Adapter(client)
        self.batch_size = batch_size
        self.per_object = per_object
        self.events = events
        world.reset_tables()
        for item in items:
            self._set_up(item)
        # the objects phase as the state machine runs it: each mapped prefix listed now (its batches may reach their
        # worker much later) and listed again whenever a scan is delivered
        for prefix in prefixes_to_scan(self.map):
            self.queue.extend(self.list_batches(prefix))
            self.queue.append(Delivery("backfill-scan", self.primary, prefix))
        self.baseline: Baseline = take_baseline(self.map, self.s3)

    def _set_up(self, item: Item) -> None:
        client = self.world.client
        bucket = self.legacy if item.kind == "legacy" else self.primary
        client.put_object(Bucket=bucket, Key=item.source_key, Body=item.body, ContentType="image/png")
        if item.kind == "orphan":
            pass
        elif item.kind == "masthead":
            self.world.sql("INSERT INTO archive_publicationsource (slug, masthead) VALUES (%s, %s)", item.slug, item.source_key)
        elif item.kind == "staged":
            self.world.sql("INSERT INTO archive_publicationsource (slug) VALUES (%s)", item.slug)
        else:
            self.world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES (%s, %s)", item.slug, item.source_key)
        if bucket == self.primary and self.events:
            self.emit_created(self.primary, item.source_key)
        if item.kind == "legacy":  # no event covers it: only the backfill's rows phase can bring it back
            self.queue.append(Delivery("backfill-rows", self.primary, "archive.PublicationSource.icon"))
        elif self.per_object:
            self.queue.append(Delivery("backfill-objects", self.primary, item.source_key))

    def listing(self, prefix: str) -> tuple[tuple[str, str, int], ...]:
        pages = self.world.client.get_paginator("list_objects_v2").paginate(Bucket=self.primary, Prefix=prefix)
        return tuple((o["Key"], o["ETag"], o["Size"]) for page in pages for o in page.get("Contents", []))

    def list_batches(self, prefix: str) -> list[Delivery]:
        """The ItemReader (ListObjectsV2 over the prefix) and the ItemBatcher: runs of `batch_size` neighbouring
        keys, each with the ETag (quoted, as S3 gives it) and size the listing gives now."""
        listed, n = self.listing(prefix), self.batch_size
        return [Delivery("backfill-listed", self.primary, prefix, listed=listed[i : i + n]) for i in range(0, len(listed), n)]

    def stale(self, delivery: Delivery) -> bool:
        """True when the batch's listing no longer says what the bucket holds (a key changed or gone since)."""
        now = {key: etag for key, etag, _ in self.listing(delivery.key)}
        return any(now.get(key) != etag for key, etag, _ in delivery.listed)

    # what S3 -> EventBridge would deliver for a write: normalize and replicate for the primary, link for the CDN
    def emit_created(self, bucket: str, key: str) -> None:
        seq = f"{next(self.seq):016X}"
        with self.lock:
            if bucket == self.primary:
                self.queue.append(Delivery("normalize", bucket, key, True, seq))
                self.queue.append(Delivery("replicate", bucket, key, True, seq))
            elif bucket == self.cdn:
                self.queue.append(Delivery("link", bucket, key, True, seq))

    def overwrite(self, key: str) -> None:
        """A new upload under the key (the user re-saved the file): its bytes must never be lost (I5)."""
        body = f"overwritten {key}".encode()
        self.world.client.put_object(Bucket=self.primary, Key=key, Body=body, ContentType="image/png")
        etag = hashlib.md5(body).hexdigest()  # noqa: S324 - S3's ETag of a single-part object
        self.overwritten[key] = etag
        assert isinstance(self.baseline.originals, dict)
        self.baseline.originals[f"{key} (overwritten)"] = etag
        self.emit_created(self.primary, key)

    def emit_deleted(self, bucket: str, key: str) -> None:
        if bucket == self.primary:
            with self.lock:
                self.queue.append(Delivery("replicate", bucket, key, False, f"{next(self.seq):016X}"))

    def referencing_rows(self, key: str) -> list[Any]:
        ids: list[Any] = []
        for mapping in self.map.fields:
            if key.startswith(mapping.location + mapping.upload_to):
                query = sql.SQL("SELECT id FROM archive_publicationsource WHERE {} = %s").format(sql.Identifier(mapping.column))
                ids += [row[0] for row in self.world.sql(query, naming.column_value(mapping, key))]
        return ids

    def steps(self, db: Database, *, backfill: bool = False) -> Steps:
        ledger = AuditedLedger(self, db, self.map.schema, execution=EXECUTION if backfill else None)
        s3 = AuditedS3(self, S3Adapter(S3Semantics(self.world.client)))  # type: ignore[arg-type]  # a client as S3 answers
        return Steps(self.map, s3, db, ledger, owner_wait_seconds=0)  # type: ignore[arg-type]


class AuditedS3:
    """The S3 adapter as the steps see it: records every write and delete (with the rows referencing the key at that
    moment), emits the events S3 would, and crashes where the schedule says."""

    def __init__(self, schedule: Schedule, inner: S3Adapter) -> None:
        self.schedule = schedule
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def copy(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, **kwargs: Any) -> str:
        s = self.schedule
        s.history.write(dst_bucket, dst_key)
        etag = self.inner.copy(src_bucket, src_key, dst_bucket, dst_key, **kwargs)
        s.emit_created(dst_bucket, dst_key)  # S3 emits the event whether or not the worker survives the next line
        s.faults.at("after_copy" if dst_bucket == s.primary else "after_mirror", "copy")
        return etag

    def copy_as_is(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str, *, source_etag: str) -> str:
        """The listed batch's copies (run side by side on its copy threads: a crash in one fails the batch)."""
        s = self.schedule
        s.history.write(dst_bucket, dst_key)
        etag = self.inner.copy_as_is(src_bucket, src_key, dst_bucket, dst_key, source_etag=source_etag)
        s.emit_created(dst_bucket, dst_key)
        s.faults.at("after_copy" if dst_bucket == s.primary else "after_mirror", "copy_as_is")
        return etag

    def put_bytes(self, bucket: str, key: str, body: bytes, *args: Any, **kwargs: Any) -> str:
        self.schedule.history.write(bucket, key)
        return self.inner.put_bytes(bucket, key, body, *args, **kwargs)

    def delete_many(self, bucket: str, keys: Any) -> Any:
        s = self.schedule
        keys = list(keys)
        if bucket == s.primary:
            s.faults.at("before_retire", "delete_many")
            if s.faults.due(OVERWRITE, "delete_many"):
                s.overwrite(keys[0])
        for key in keys:
            s.history.delete(bucket, key, s.referencing_rows(key) if bucket == s.primary else ())
        result = self.inner.delete_many(bucket, keys)
        for key in keys:
            s.emit_deleted(bucket, key)
        return result

    def delete_if_match(self, bucket: str, key: str, etag: str) -> bool:
        s = self.schedule
        if bucket == s.primary:
            s.faults.at("before_retire", "delete_if_match")
            if s.faults.due(OVERWRITE, "delete_if_match"):
                s.overwrite(key)
        # recorded only when it deleted: a refused condition (412: other bytes; 404: gone) changes nothing, and the
        # retire sends it without reading the source first (a replay may send one; the snapshot check covers it)
        referencing = s.referencing_rows(key) if bucket == s.primary else ()
        deleted = self.inner.delete_if_match(bucket, key, etag)
        if deleted:
            s.history.delete(bucket, key, referencing)
            s.emit_deleted(bucket, key)
        if bucket == s.primary:
            s.faults.at("after_retire", "delete_if_match")  # deleted, its ledger entry not marked retired yet
        return deleted

    def delete_if_unchanged(self, bucket: str, etags: dict[str, str]) -> DeleteResult:
        """The listed batch's retire: one DeleteObjects, each key only while it still has its ETag."""
        s = self.schedule
        etags = dict(etags)
        if bucket == s.primary:
            s.faults.at("before_retire", "delete_if_unchanged")
            if etags and s.faults.due(OVERWRITE, "delete_if_unchanged"):
                s.overwrite(next(iter(etags)))
        for key in etags:
            s.history.delete(bucket, key, s.referencing_rows(key) if bucket == s.primary else ())
        result = self.inner.delete_if_unchanged(bucket, etags)
        kept = {e.key for e in result.errors}
        for key in etags:
            if key not in kept:
                s.emit_deleted(bucket, key)
        if bucket == s.primary:
            s.faults.at("after_retire", "delete_if_unchanged")  # deleted, mark_retired_many not run yet
        return result


class AuditedLedger(Ledger):
    """The ledger, with a crash after the claim and after the commit, and I1's check at the moment of each swap."""

    def __init__(self, schedule: Schedule, db: Database, schema: str, execution: str | None) -> None:
        super().__init__(db, schema, execution)
        self.schedule = schedule

    def claim(self, canonical_key: str, source_key: str, source_etag: str | None, *, take_over: bool = False) -> str:
        holder = super().claim(canonical_key, source_key, source_etag, take_over=take_over)
        self.schedule.faults.at("after_claim", "claim")
        return holder

    def claim_many(self, claims: Any, *, take_over: bool = False) -> dict[str, str]:
        held = super().claim_many(claims, take_over=take_over)
        self.schedule.faults.at("after_claim", "claim_many")
        return held

    def _swapping(self, mapping: FieldMapping, swaps: Any) -> None:
        """I1's check at the moment of the swap: both buckets hold each key a row is about to move to."""
        s = self.schedule
        for swap in swaps:
            assert isinstance(swap, Swap)
            if swap.new:
                key = naming.key_for_value(mapping, swap.new)
                s.history.swap(key, in_primary=s.s3.head(s.primary, key) is not None, in_cdn=s.s3.head(s.cdn, key) is not None)

    def link(self, mapping: FieldMapping, swaps: Any, **kwargs: Any) -> Linked:
        """Ledger.link, which the backfill and the live link both go through."""
        self._swapping(mapping, swaps)
        linked = super().link(mapping, swaps, **kwargs)
        self.schedule.faults.at("after_commit", "record_link")
        return linked

    def record_links(self, mapping: FieldMapping, links: Any) -> list[int]:
        for link in links:
            assert isinstance(link, Link)
            self._swapping(mapping, link.swaps)
        changed = super().record_links(mapping, links)
        self.schedule.faults.at("after_commit", "record_links")
        return changed


# -- running a schedule ------------------------------------------------------------------------------------------


def note(what: str) -> None:
    """Counted in --hypothesis-show-statistics (the parametrized tests run outside hypothesis: nothing to count)."""
    if currently_in_test_context():
        hypothesis_event(what)


def run_delivery(schedule: Schedule, steps: Steps, delivery: Delivery) -> None:
    if delivery.step == "backfill-objects":
        process_objects(steps, [delivery.key], dry_run=False)
    elif delivery.step == "backfill-listed":
        # the batch as the ItemBatcher hands it to the Lambda task (ItemReader's item shape), through the task itself:
        # listed_items, then process_listed, then the batch's part of the report
        items = [
            {"Etag": etag, "Key": key, "LastModified": 0, "Size": size, "StorageClass": "STANDARD"}
            for key, etag, size in delivery.listed
        ]
        counts = run_task({"action": "objects", "execution": EXECUTION, "dryRun": False, "items": items}, lambda _: steps)
        if counts["counts"].get("failed"):
            note("a listed batch counted an object as failed")
    elif delivery.step == "backfill-scan":  # Step Functions' ItemReader and ItemBatcher: no worker, no fault
        batches = schedule.list_batches(delivery.key)
        with schedule.lock:
            schedule.queue.extend(batches)
    elif delivery.step == "backfill-rows":
        process_rows(steps, steps.map.field(delivery.key), dry_run=False)
    else:
        event = ObjectEvent(delivery.bucket, delivery.key, delivery.created, sequencer=delivery.sequencer)
        getattr(steps, delivery.step)(event)


def attempt(schedule: Schedule, steps: Steps, delivery: Delivery) -> bool:
    """One delivery to one worker; False when the worker failed it (crashed or a retryable error): SQS redelivers
    (a listed batch: Step Functions retries the task). Any other error is a finding, not a retry."""
    try:
        run_delivery(schedule, steps, delivery)
    except (Crash, RetryableError):
        return False
    return True


def race(schedule: Schedule, jobs: list[tuple[Steps, Delivery]]) -> list[bool]:
    """Deliveries taken by workers at once, each on its own worker (its own database connection)."""
    barrier = threading.Barrier(len(jobs))
    results: list[bool | BaseException] = [False] * len(jobs)

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = attempt(schedule, *jobs[i])
        except BaseException as exc:  # surfaced below: an unexpected error is a finding, not a retry
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return [bool(r) for r in results]


def concurrently(schedule: Schedule, workers: list[Steps], delivery: Delivery) -> list[bool]:
    """The same delivery taken by two workers at once (SQS at-least-once, or two events for one key)."""
    return race(schedule, [(worker, delivery) for worker in workers])


@dataclass(frozen=True)
class Move:
    """One drawn delivery: which pending event (`pick` modulo the queue's length), duplicate it, race two workers
    (a listed batch races the delivery `pick` then names in what is left of the queue: a live event, or a batch of
    another backfill execution, on a worker of its own).

    Drawn up front, independent of the queue, so hypothesis replays and shrinks a schedule by its moves (threads
    make the queue's exact contents after a race nondeterministic; the moves stay the same)."""

    pick: int = 0
    duplicate: bool = False
    concurrent: bool = False


moves = st.lists(
    st.builds(Move, st.integers(0, 10_000), st.integers(0, 4).map(lambda n: n == 4), st.integers(0, 3).map(lambda n: n == 3)),
    min_size=5,
    max_size=MAX_DELIVERIES,
)


def play(schedule: Schedule, workers: list[Steps], backfills: list[Steps], plan: list[Move]) -> None:
    """The drawn part: the next delivery, maybe duplicated, maybe raced by two workers; failed ones return to the queue."""
    for move in plan:
        if not schedule.queue:
            return
        other: Delivery | None = None
        with schedule.lock:
            delivery = schedule.queue.pop(move.pick % len(schedule.queue))
            if move.duplicate:  # delivered again later
                schedule.queue.append(delivery)
            if move.concurrent and delivery.step == "backfill-listed" and schedule.queue:
                other = schedule.queue.pop(move.pick % len(schedule.queue))
        schedule.delivered.append(delivery)
        if delivery.step == "backfill-listed":
            note("a listed batch")
            if schedule.stale(delivery):
                note("a listed batch whose listing is stale")
        if other is not None:
            schedule.delivered.append(other)
            note(f"a listed batch raced with {other.step}")
            jobs = [(backfills[0], delivery), (backfills[1] if other.step.startswith("backfill") else workers[0], other)]
        elif delivery.step.startswith("backfill"):
            jobs = [(backfills[0], delivery)]
        elif move.concurrent:
            note("two workers on one delivery")
            jobs = [(worker, delivery) for worker in workers]
        else:
            jobs = [(workers[0], delivery)]
        ok = race(schedule, jobs) if len(jobs) > 1 else [attempt(schedule, *jobs[0])]
        with schedule.lock:
            if other is None:
                if not any(ok):
                    schedule.queue.append(delivery)
            else:
                schedule.queue.extend(job for (_, job), done in zip(jobs, ok, strict=True) if not done)


def drain(schedule: Schedule, steps: Steps, backfill: Steps) -> None:
    """Every pending delivery, in order, no faults: what SQS and Step Functions redrive until the queues are empty."""
    schedule.faults.enabled = False
    for _ in range(DRAIN_LIMIT):
        if not schedule.queue:
            return
        with schedule.lock:
            delivery = schedule.queue.pop(0)
        schedule.delivered.append(delivery)
        if not attempt(schedule, backfill if delivery.step.startswith("backfill") else steps, delivery):
            schedule.queue.append(delivery)
    raise AssertionError(f"not settled after {DRAIN_LIMIT} deliveries; still queued: {schedule.queue[:10]}")


def check(schedule: Schedule, steps: Steps, backfill: Steps) -> None:
    db = steps.db
    for fired in sorted(set(zip(schedule.faults.fired, schedule.faults.fired_in, strict=True))):
        note("{} in {}".format(*fired) if fired[0] == OVERWRITE else "crashed {} in {}".format(*fired))
    violations = schedule.history.violations()
    assert not violations, [v.to_json() for v in violations]
    report = check_against_baseline(schedule.map, schedule.s3, db, Ledger(db, schedule.map.schema), schedule.baseline)
    assert report.ok, report.summary()
    # I4: the state every fault-free order reaches
    primary, cdn, rows = expected_state(schedule.items, schedule.overwritten)
    settled = snapshot(schedule.map, schedule.s3, db)
    assert dict(settled.primary) == primary
    assert dict(settled.cdn) == cdn
    slug_of = {r[0]: r[1] for r in schedule.world.sql("SELECT id, slug FROM archive_publicationsource")}
    assert {f: {slug_of[i]: v for i, v in values} for f, values in settled.rows.items()} == rows
    # I4: a replay of every delivery (in the order they were made; listed batches with their listings, stale by now)
    # writes nothing and changes nothing
    writes = sum(1 for f in schedule.history.facts if f.action in ("write", "delete"))
    for delivery in list(schedule.delivered):
        assert attempt(schedule, backfill if delivery.step.startswith("backfill") else steps, delivery), delivery
    assert snapshot(schedule.map, schedule.s3, db) == settled
    new = [f for f in schedule.history.facts if f.action in ("write", "delete")][writes:]
    assert [f for f in new if f.bucket != schedule.primary or not f.key.startswith("mediacanon-reports/")] == []


# -- fixtures and tests ------------------------------------------------------------------------------------------


@dataclass
class World:
    client: Any
    conninfo: str
    archive_map: Callable[..., dict[str, Any]]
    dbs: list[Database]

    def sql(self, query: str | sql.Composed, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True) as conn:
            cur = conn.execute(query, params)  # type: ignore[arg-type]  # literals and sql.Composed only
            return cur.fetchall() if cur.description else []

    def reset_tables(self) -> None:
        self.sql("TRUNCATE archive_publicationsource RESTART IDENTITY")
        self.sql("CREATE SCHEMA IF NOT EXISTS mediacanon")
        if self.sql("SELECT to_regclass('mediacanon.ledger')")[0][0] is not None:
            self.sql("TRUNCATE mediacanon.ledger, mediacanon.claims")


@pytest.fixture
def world(s3_client: Any, archive_db: str, archive_map: Any) -> Iterator[World]:
    dbs = [Database(archive_db) for _ in range(4)]  # two live workers and two backfill workers: a connection each
    yield World(s3_client, archive_db, archive_map, dbs)
    for db in dbs:
        db.close()


def run_schedule(
    world: World,
    items: list[Item],
    faults: Faults,
    plan: list[Move],
    *,
    live_only: bool = False,
    batch_size: int = 3,
    per_object: bool = True,
    events: bool = True,
    listed_first: bool = False,
) -> Schedule:
    schedule = Schedule(world, items, faults, batch_size=batch_size, per_object=per_object, events=events)
    if live_only:
        schedule.queue = [d for d in schedule.queue if not d.step.startswith("backfill")]
    if listed_first:  # the listed batches before everything else (a stable sort keeps the rest in order)
        schedule.queue.sort(key=lambda d: d.step != "backfill-listed")
    workers = [schedule.steps(world.dbs[0]), schedule.steps(world.dbs[1])]
    backfills = [schedule.steps(world.dbs[2], backfill=True), schedule.steps(world.dbs[3], backfill=True)]
    play(schedule, workers, backfills, plan)
    drain(schedule, workers[0], backfills[0])
    check(schedule, workers[0], backfills[0])
    return schedule


crash_plans = st.dictionaries(
    st.sampled_from((*BOUNDARIES, OVERWRITE)), st.frozensets(st.integers(1, 4), min_size=1, max_size=2), max_size=len(BOUNDARIES)
)


@given(items=sites(legacy=False), plan=crash_plans, schedule=moves)
def test_live_path_schedules_keep_every_invariant(
    world: World, items: list[Item], plan: dict[str, frozenset[int]], schedule: list[Move]
) -> None:
    """The live path alone (the backfill's deliveries dropped): duplicates, reorders, concurrency and crashes."""
    run_schedule(world, items, Faults(plan), schedule, live_only=True)


@given(
    items=sites(legacy=True),
    plan=crash_plans,
    schedule=moves,
    batch_size=st.integers(1, 4),
    per_object=st.booleans(),
    events=st.booleans(),
)
def test_live_path_and_backfill_schedules_keep_every_invariant(
    world: World,
    items: list[Item],
    plan: dict[str, frozenset[int]],
    schedule: list[Move],
    batch_size: int,
    per_object: bool,
    events: bool,
) -> None:
    """The backfill's batches (listed batches, per-object keys when `per_object`, rows) interleaved with the live
    path's events (for the site's own uploads when `events`; for the copies the steps make always), crashes in all."""
    if not events:
        note("a site older than mediacanon's events")
    run_schedule(world, items, Faults(plan), schedule, batch_size=batch_size, per_object=per_object, events=events)


@pytest.mark.parametrize("path", ["steps", "listed"])
@pytest.mark.parametrize("boundary", BOUNDARIES)
@pytest.mark.parametrize("nth", [1, 2])
def test_a_crash_at_each_step_boundary_then_retries_converge(world: World, boundary: str, nth: int, path: str) -> None:
    """Every boundary, crashed at its first and second occurrence, in the plain delivery order, then retried: in the
    per-object steps (the queue as set up: the live path's events first), and in the listed batch (its batches
    first, so the crash lands in claim_many, copy_as_is, record_links or delete_if_unchanged)."""
    items = [
        Item("messy", "nytimes"),
        Item("staged", "el-pais"),
        Item("masthead", "bbc"),
        Item("legacy", "guardian"),
        Item("generic", "reuters"),
    ]
    faults = Faults({boundary: frozenset({nth})})
    # always the first pending delivery, no duplicate
    run_schedule(world, items, faults, [Move()] * MAX_DELIVERIES, listed_first=path == "listed")
    assert faults.fired == [boundary], faults  # the crash really happened where it was planned
    assert (faults.fired_in[0] in BATCH_CALLS) == (path == "listed"), faults  # ... on the path meant


@pytest.mark.parametrize("path", ["steps", "listed"])
def test_an_upload_over_the_source_just_before_its_retire_is_kept(world: World, path: str) -> None:
    """Regression: retire read the source's ETag, then deleted the key unconditionally; bytes Django saved under
    that key in between were deleted with it (I5). The delete is now conditional on the ETag it checked (the listed
    batch's DeleteObjects too: each key with its ETag)."""
    items = [Item("messy", "nytimes"), Item("staged", "el-pais")]
    faults = Faults({OVERWRITE: frozenset({1, 2})})
    schedule = run_schedule(world, items, faults, [Move()] * MAX_DELIVERIES, listed_first=path == "listed")
    assert faults.fired.count(OVERWRITE) == 2
    assert ("delete_if_unchanged" in faults.fired_in) == (path == "listed"), faults  # the batch's DeleteObjects
    assert set(schedule.overwritten) == {Item("messy", "nytimes").source_key, Item("staged", "el-pais").source_key}


# -- the checker itself: each kind of broken promise is caught ----------------------------------------------------


def settled_site(world: World) -> tuple[Schedule, Steps, Steps]:
    items = [Item("messy", "nytimes"), Item("legacy", "guardian")]
    schedule = Schedule(world, items, Faults())
    steps, backfill = schedule.steps(world.dbs[0]), schedule.steps(world.dbs[2], backfill=True)
    drain(schedule, steps, backfill)
    return schedule, steps, backfill


def state_violations(schedule: Schedule, steps: Steps) -> set[tuple[str, str, str]]:
    report = check_against_baseline(schedule.map, schedule.s3, steps.db, Ledger(steps.db, schedule.map.schema), schedule.baseline)
    return {(v.invariant, v.kind, v.key) for v in report.violations}


def test_the_checker_passes_a_settled_site_and_names_each_broken_promise(world: World) -> None:
    schedule, steps, _ = settled_site(world)
    client, cdn = world.client, schedule.cdn
    assert state_violations(schedule, steps) == set()

    client.put_object(Bucket=cdn, Key="icons/stray_icon.png", Body=b"x")  # I3: not a canonical primary key
    client.put_object(Bucket=cdn, Key="icons/guardian.png", Body=b"other bytes")  # I3: differs from primary
    client.put_object(Bucket=schedule.legacy, Key="icons/new.png", Body=b"x")  # I2: a read-only source written
    client.delete_object(Bucket=cdn, Key="icons/nytimes.png")  # I1: a row mediacanon moved now points at a 404
    assert state_violations(schedule, steps) == {
        ("I3", "cdn_key_not_in_primary", "icons/stray_icon.png"),
        ("I3", "cdn_bytes_differ", "icons/guardian.png"),
        ("I2", "read_only_source_changed", "icons/new.png"),
        ("I1", "row_points_at_missing_key", "icons/nytimes.png"),
    }


def test_the_checker_names_a_lost_original_and_a_row_left_on_a_retired_key(world: World) -> None:
    schedule, steps, _ = settled_site(world)
    source = Item("messy", "nytimes").source_key
    # a row mediacanon never touched points at the key it retired (a 404 of mediacanon's making) ...
    world.sql("INSERT INTO archive_publicationsource (slug, icon) VALUES ('nyt-archive', %s)", source)
    # ... and the canonical copy of that retired source is deleted from both buckets (the bytes are gone)
    world.client.delete_object(Bucket=schedule.primary, Key="icons/nytimes.png")
    world.client.delete_object(Bucket=schedule.cdn, Key="icons/nytimes.png")

    assert state_violations(schedule, steps) == {
        ("I2", "retired_while_referenced", source),
        ("I1", "row_points_at_missing_key", "icons/nytimes.png"),  # the row mediacanon moved there
        ("I5", "retired_source_without_copy", source),
        ("I5", "original_bytes_lost", source),
    }
    # `mediacanon verify` (no baseline): I1 and I2 broken, exit 1; the gone copy reported, not broken (it may have
    # been deleted on purpose: only a baseline or a history can tell)
    result = verify(schedule.map, schedule.s3, steps.db, Ledger(steps.db, schedule.map.schema))
    data = result.to_json()
    assert not result.ok
    assert [b["key"] for b in data["i2_delete_last"]["broken"]] == [source]
    assert [b["key"] for b in data["i1_never_a_404"]["broken"]] == ["icons/nytimes.png"]
    assert data["i5_nothing_lost"] == {"ok": True, "broken": []}
    assert [r["key"] for r in data["report"]["retired_copy_gone"]] == [source]


class RetiresBeforeTheCommit(Steps):
    """A deliberately broken link: the source is deleted before the rows move (what I2 forbids)."""

    def link_rows(self, key: str, res: Any, source_key: str | None, primary: Any, sequencer: str | None) -> Any:
        if source_key and source_key != key:
            self.s3.delete_many(self.primary_bucket, [source_key])
        return super().link_rows(key, res, source_key, primary, sequencer)

    @property
    def primary_bucket(self) -> str:
        return self.map.buckets.primary


def test_the_history_catches_a_delete_that_the_final_state_cannot_show(world: World) -> None:
    schedule = Schedule(world, [Item("messy", "nytimes")], Faults())
    good = schedule.steps(world.dbs[0])
    broken = RetiresBeforeTheCommit(schedule.map, good.s3, good.db, good.ledger, owner_wait_seconds=0)
    schedule.queue = [d for d in schedule.queue if not d.step.startswith("backfill")]
    drain(schedule, broken, broken)

    # the end state is the right one: rows moved, source gone, mirror exact; only the history shows the order
    assert state_violations(schedule, broken) == set()
    assert {(v.invariant, v.kind, v.key) for v in schedule.history.violations()} == {
        ("I2", "deleted_while_referenced", Item("messy", "nytimes").source_key)
    }
