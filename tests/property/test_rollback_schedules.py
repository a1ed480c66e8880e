"""Generated rollbacks over settled sites, checked against I1, I2 and I5.

A site (tests/property/test_schedules.py's `sites`: rows with messy keys, staged files, mastheads, maybe an orphan,
maybe a row whose file only the read-only legacy bucket holds) is settled by the real `Steps` against the session's
moto server and PostgreSQL: by the live path alone, by a backfill over a site older than mediacanon's events, or by
both interleaved. Some of the events the settling emits are held back (still queued when the rollback runs). Then
the world changes under it, as drawn: a canonical copy deleted on purpose (its delete event queued), a row changed
by its user since (a new file, or cleared), a source re-uploaded; the events these emit are delivered before the
rollback or left queued. Then `rollback` (by execution or by --since), maybe a dry run first, maybe interrupted at
the Nth S3 copy or database swap it makes (before or after the call) and run again. Then every queued event is
delivered through the steps.

Checked after all of it:
- History: no row (rollback's swaps included) moved to a key a bucket lacked at that moment; no primary key deleted
  while a row referenced it; nothing written to or deleted from the read-only bucket (I1, I2).
- State: `check_against_baseline` with the baseline taken before the site was settled (I1, I2, I3, I5); the only
  violations allowed are the ones the deliberate deletion itself made (a row left on the key deleted, its bytes).
- Every row's key is in both buckets, unless the row was broken before mediacanon came (the baseline's 404s) or the
  user deleted its file on purpose.
- Every ledger entry in the rollback's scope is rolled back, or named in the rollback's `skipped` with a reason.
- A dry run changes nothing and never raises; a rerun after a finished rollback changes nothing.
- Rows the rollback put back on a key it restored (marked RESTORED_BY) are left there by the events still queued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.baseline import check_against_baseline
from support.history import Snapshot, snapshot

# the schedule suite's building blocks (pytest's rootdir-less "prepend" import puts tests/property on sys.path; mypy
# knows the module by its place under tests/, its mypy_path)
if TYPE_CHECKING:
    from property.test_schedules import (
        EXECUTION,
        AuditedS3,
        Delivery,
        Faults,
        Item,
        S3Semantics,
        Schedule,
        World,
        attempt,
        drain,
        note,
        sites,
    )
else:
    from test_schedules import (
        EXECUTION,
        AuditedS3,
        Delivery,
        Faults,
        Item,
        S3Semantics,
        Schedule,
        World,
        attempt,
        drain,
        note,
        sites,
    )

from mediacanon.adapters.db import Database, Swap
from mediacanon.adapters.ledger import Ledger, LedgerEntry
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.copies import RESTORED_BY
from mediacanon.core import naming
from mediacanon.rollback import RollbackResult, rollback
from mediacanon.steps import Steps

pytestmark = pytest.mark.integration

# the settling's events that may be held back past the rollback: a held `link` event of a canonical copy finds its
# source restored (RESTORED_BY) and leaves the rolled-back rows on it
HELD_STEPS = ("normalize", "replicate", "link")


class Interrupt(Exception):
    """The rollback's process dying midway (the operator's laptop, a Lambda timeout): raised at an adapter call."""


@dataclass
class RollbackFaults:
    """Interrupt the rollback at the `nth` call (1-based) of `call` ("copy": an S3 copy; "swap": a database swap),
    `when` "before" it is made or "after" it returned (an S3 copy made, or a swap run inside its uncommitted
    transaction). Fires at most once; None: no fault."""

    call: str | None = None
    nth: int = 1
    when: str = "before"
    seen: int = 0
    fired: bool = False

    def at(self, call: str, when: str) -> None:
        if self.call != call or self.fired:
            return
        if when == "before":
            self.seen += 1
        if self.seen == self.nth and when == self.when:
            self.fired = True
            raise Interrupt(f"{when} {call} #{self.nth}")


class RollbackS3:
    """The rollback's S3 adapter: the schedule's audited one (writes recorded, S3's events emitted into the queue,
    as the restored copies' events would reach the live path), interrupted where the faults say."""

    def __init__(self, inner: AuditedS3, faults: RollbackFaults) -> None:
        self.inner = inner
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def copy(self, *args: Any, **kwargs: Any) -> str:
        self.faults.at("copy", "before")
        etag = self.inner.copy(*args, **kwargs)
        self.faults.at("copy", "after")
        return etag


class RollbackDb:
    """The rollback's database: I1 checked at the moment of each swap it makes (both buckets hold the key a row is
    moved back to), interrupted where the faults say."""

    def __init__(self, inner: Database, schedule: Schedule, faults: RollbackFaults) -> None:
        self.inner = inner
        self.schedule = schedule
        self.faults = faults

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def swap(self, mapping: Any, changes: Any, *, conn: Any = None) -> list[Any]:
        s = self.schedule
        self.faults.at("swap", "before")
        for change in changes:
            assert isinstance(change, Swap)
            if change.new:
                key = naming.key_for_value(mapping, change.new)
                s.history.swap(key, in_primary=s.s3.head(s.primary, key) is not None, in_cdn=s.s3.head(s.cdn, key) is not None)
        changed = self.inner.swap(mapping, changes, conn=conn)
        self.faults.at("swap", "after")
        return changed


# -- the world --------------------------------------------------------------------------------------------------


class RollbackWorld(World):
    def reset_tables(self) -> None:
        # test_schedules.World.reset_tables asks to_regclass('mediacanon.adapters.ledger') since the package's
        # reorganisation (a rename too many: the table is mediacanon.ledger), so it never empties the ledger
        self.sql("TRUNCATE archive_publicationsource RESTART IDENTITY")
        self.sql("CREATE SCHEMA IF NOT EXISTS mediacanon")
        if self.sql("SELECT to_regclass('mediacanon.ledger')")[0][0] is not None:
            self.sql("TRUNCATE mediacanon.ledger, mediacanon.claims")


@pytest.fixture
def rworld(s3_client: Any, archive_db: str, archive_map: Any) -> Iterator[RollbackWorld]:
    dbs = [Database(archive_db) for _ in range(4)]  # live worker, backfill worker, rollback, checks
    yield RollbackWorld(s3_client, archive_db, archive_map, dbs)
    for db in dbs:
        db.close()


# -- what is drawn ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One change to the settled site before the rollback, on the `target`-th row item (modulo)."""

    kind: str  # delete_canonical | user_new_file | user_cleared | reupload (CHANGES)
    target: int


@dataclass(frozen=True)
class Plan:
    path: str  # live | backfill | both: what settles the site
    held: frozenset[int]  # positions (in delivery order) of the settling's live-path events held back, still queued
    changes: tuple[Change, ...]
    deliver_changes_first: bool  # the changes' events delivered before the rollback (else still queued)
    scope: str  # execution | since
    dry_run_first: bool
    fault: RollbackFaults = field(default_factory=RollbackFaults)


# "reupload": new bytes under a retired source's name; rollback leaves that entry's rows on the canonical key
CHANGES = ("delete_canonical", "user_new_file", "user_cleared", "reupload")
changes = st.lists(
    st.builds(Change, st.sampled_from(CHANGES), st.integers(0, 5)),
    max_size=3,
)
faults = st.one_of(
    st.just(None),
    st.builds(
        lambda call, nth, when: (call, nth, when),
        st.sampled_from(("copy", "swap")),
        st.integers(1, 3),
        st.sampled_from(("before", "after")),
    ),
)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    fault = draw(faults)
    path = draw(st.sampled_from(("live", "backfill", "both")))
    return Plan(
        path=path,
        held=draw(st.frozensets(st.integers(0, 40), max_size=6)),
        changes=tuple(draw(changes)),
        deliver_changes_first=draw(st.booleans()),
        # the live path's entries have no execution: a live-only site is rolled back --since
        scope="since" if path == "live" else draw(st.sampled_from(("execution", "since"))),
        dry_run_first=draw(st.booleans()),
        fault=RollbackFaults() if fault is None else RollbackFaults(*fault),
    )


# -- running one ------------------------------------------------------------------------------------------------


@dataclass
class Run:
    schedule: Schedule
    steps: Steps
    backfill: Steps
    db: Database  # the rollback's and the checks' connection
    started: datetime
    initial_rows: dict[tuple[str, int], str | None] = field(default_factory=dict)  # (field, row id) -> value at setup
    deleted: set[str] = field(default_factory=set)  # canonical keys deleted on purpose
    deleted_sources: set[str] = field(default_factory=set)  # the sources whose only copy those were
    replaced: set[str] = field(default_factory=set)  # sources whose row its user gave a new file since

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.db, self.schedule.map.schema)

    def rows(self) -> dict[tuple[str, int], str | None]:
        return {(m.name, r.id): (r.value or None) for m in self.schedule.map.fields for r in self.db.iter_rows(m)}

    def snap(self) -> Snapshot:
        return snapshot(self.schedule.map, self.schedule.s3, self.db)

    def writes(self) -> int:
        return sum(1 for f in self.schedule.history.facts if f.action in ("write", "delete"))

    def undo(self, plan: Plan, *, dry_run: bool = False, fault: RollbackFaults | None = None) -> RollbackResult:
        fault = fault or RollbackFaults()
        s = self.schedule
        s3 = RollbackS3(AuditedS3(s, S3Adapter(S3Semantics(s.world.client))), fault)  # type: ignore[arg-type]  # as S3 answers
        scope: dict[str, Any] = {"execution": EXECUTION} if plan.scope == "execution" else {"since": self.started}
        return rollback(s.map, s3, RollbackDb(self.db, s, fault), self.ledger, dry_run=dry_run, **scope)  # type: ignore[arg-type]

    def in_scope(self, plan: Plan) -> list[LedgerEntry]:
        if plan.scope == "execution":
            return self.ledger.entries(execution=EXECUTION)
        return self.ledger.entries(since=self.started)

    def deliver(self, delivery: Delivery) -> bool:
        return attempt(self.schedule, self.backfill if delivery.step.startswith("backfill") else self.steps, delivery)


def set_up(world: RollbackWorld, items: list[Item], plan: Plan) -> Run:
    schedule = Schedule(world, items, Faults(), per_object=True, events=plan.path != "backfill")
    if plan.path == "live":
        schedule.queue = [d for d in schedule.queue if not d.step.startswith("backfill")]
    started = world.sql("SELECT now()")[0][0]  # the ledger's clock
    run = Run(schedule, schedule.steps(world.dbs[0]), schedule.steps(world.dbs[1], backfill=True), world.dbs[2], started)
    run.initial_rows = run.rows()
    return run


def settle(run: Run, plan: Plan) -> list[Delivery]:
    """Deliver the queue in order (failed deliveries return to its end); the normalize and replicate events at the
    `held` positions are set aside instead: still queued when the rollback runs. Returns them."""
    s = run.schedule
    held: list[Delivery] = []
    for position in range(400):
        if not s.queue:
            return held
        delivery = s.queue.pop(0)
        if position in plan.held and delivery.step in HELD_STEPS:
            held.append(delivery)
            continue
        s.delivered.append(delivery)
        if not run.deliver(delivery):
            s.queue.append(delivery)
    raise AssertionError(f"not settled; still queued: {s.queue[:10]}")


def row_items(run: Run) -> list[Item]:
    return [item for item in run.schedule.items if item.kind != "orphan"]


def change_world(run: Run, change: Change) -> None:
    s, client = run.schedule, run.schedule.world.client
    targets = row_items(run)
    item = targets[change.target % len(targets)]
    column = "masthead" if item.kind == "masthead" else "icon"
    if change.kind == "delete_canonical":
        # the user (or an operator) deletes the file on purpose: Django's storage deletes the primary key, and its
        # delete event makes replicate delete the CDN copy
        key = item.canonical_key
        if s.s3.head(s.primary, key) is None:
            return
        note("a canonical copy deleted on purpose")
        client.delete_object(Bucket=s.primary, Key=key)
        s.emit_deleted(s.primary, key)
        run.deleted.add(key)
        run.deleted_sources.add(item.source_key)
    elif change.kind == "user_new_file":
        note("a row changed by its user since: a new file")
        key = f"{column}s/{item.slug} new upload (2).png"
        body = f"new upload of {item.slug}".encode()
        client.put_object(Bucket=s.primary, Key=key, Body=body, ContentType="image/png")
        assert isinstance(s.baseline.originals, dict)
        s.baseline.originals[f"{key} (user)"] = hashlib.md5(body).hexdigest()  # noqa: S324 - a single-part ETag
        s.world.sql(f"UPDATE archive_publicationsource SET {column} = %s WHERE slug = %s", key, item.slug)  # noqa: S608
        s.emit_created(s.primary, key)
        run.replaced.add(item.source_key)
    elif change.kind == "user_cleared":
        note("a row changed by its user since: cleared")
        s.world.sql(f"UPDATE archive_publicationsource SET {column} = NULL WHERE slug = %s", item.slug)  # noqa: S608
    else:
        if item.kind == "legacy":
            return  # its source lives in the read-only bucket: nobody uploads there
        note("a source re-uploaded")
        s.overwrite(item.source_key)  # new bytes under the source key, its events queued (Schedule.overwrite)
        # a new file for the row's slug, by its name: the live path may copy it over the canonical key (the old
        # bytes then live on in the bucket's versions), as for a user's new file
        run.replaced.add(item.source_key)


def allowed(run: Run, violations: list[Any]) -> list[Any]:
    """The violations not made by the world itself: the deliberate deletion's (a row left on the key deleted, the
    retired source whose only copy it was, that source's original bytes), and a file its user replaced (the new
    file's canonical copy takes the canonical name, over the old bytes: the live path's doing, not the rollback's)."""
    return [
        v
        for v in violations
        if v.key not in run.deleted
        and v.key not in run.deleted_sources
        and not (v.kind == "original_bytes_lost" and v.key in run.replaced)
    ]


def on_restored_keys(run: Run) -> dict[tuple[str, int], str]:
    """The rows on a key a rollback restored (marked RESTORED_BY): (field, row id) -> value."""
    s = run.schedule
    fields = {m.name: m for m in s.map.fields}
    out: dict[tuple[str, int], str] = {}
    for (name, row_id), value in run.rows().items():
        if value:
            head = s.s3.head(s.primary, naming.key_for_value(fields[name], value))
            if head is not None and RESTORED_BY in head.metadata:
                out[(name, row_id)] = value
    return out


def check_rows_i1(run: Run) -> None:
    """Every row's key is in both buckets, unless it was broken before mediacanon came (the same value as at set-up,
    a key the primary lacked then) or its file was deleted on purpose."""
    s = run.schedule
    primary = {o.key for o in s.s3.iter_objects(s.primary)}
    cdn = {o.key for o in s.s3.iter_objects(s.cdn)}
    fields = {m.name: m for m in s.map.fields}
    for (name, row_id), value in run.rows().items():
        if not value:
            continue
        key = naming.key_for_value(fields[name], value)
        if (key in primary and key in cdn) or key in run.deleted:
            continue
        assert run.initial_rows.get((name, row_id)) == value and key not in s.baseline.originals, (name, row_id, value)


def check_ledger(run: Run, plan: Plan, scoped: list[LedgerEntry], rerun: RollbackResult) -> None:
    """Every entry of the rollback's scope is rolled back, or skipped (as a whole, by the last run) with a reason."""
    skipped = {(s["field"], s["key"]) for s in rerun.skipped if "row" not in s and s.get("reason")}
    now = {e.id: e for e in run.ledger.entries()}
    for entry in scoped:
        if now[entry.id].rolled_back_at is None:
            assert (entry.field, entry.source_key) in skipped, (entry, rerun.skipped)
            note("an entry left, reported skipped")


def run_rollback_schedule(world: RollbackWorld, items: list[Item], plan: Plan) -> None:
    run = set_up(world, items, plan)
    s = run.schedule
    held = settle(run, plan)
    if held:
        note("events of the settling still queued at the rollback")
    for change in plan.changes:
        change_world(run, change)
    if plan.deliver_changes_first:
        drain(s, run.steps, run.backfill)
    queued, s.queue = s.queue, []
    # the scope as it stands when the rollback starts (the drain afterwards may link new entries: not its business)
    scoped = [e for e in run.in_scope(plan) if e.rolled_back_at is None]
    if scoped:
        note(f"rollback of {len(scoped)} entries")

    if plan.dry_run_first:
        before, writes, ledger_before = run.snap(), run.writes(), run.ledger.entries()
        planned = run.undo(plan, dry_run=True)  # never raises
        assert (run.snap(), run.writes(), run.ledger.entries()) == (before, writes, ledger_before)
        assert s.queue == [], "a dry run wrote nothing: no events"
        assert planned.entries == len(scoped)

    if plan.fault.call is not None:
        try:
            run.undo(plan, fault=plan.fault)
        except Interrupt:
            note(f"rollback interrupted {plan.fault.when} {plan.fault.call} #{plan.fault.nth}")
    result = run.undo(plan)  # the rerun after an interruption (else the first run)
    assert result.entries <= len(scoped)
    after, writes = run.snap(), run.writes()
    restored_rows = on_restored_keys(run)

    again = run.undo(plan)  # idempotent: a finished rollback run again changes nothing
    assert (run.snap(), run.writes()) == (after, writes)
    assert (again.rows_restored, again.restored_objects, again.rows_changed_since) == (0, [], [])
    check_ledger(run, plan, scoped, again)
    if result.rows_changed_since:
        note("rows changed since, left alone")

    # every event still queued: the settling's held back ones, the changes', the restores' own
    s.queue = held + queued + s.queue
    drain(s, run.steps, run.backfill)

    violations = s.history.violations()
    assert not violations, [v.to_json() for v in violations]
    report = check_against_baseline(s.map, s.s3, run.db, run.ledger, s.baseline)
    assert allowed(run, report.violations) == [], report.summary()
    check_rows_i1(run)
    # the rows the rollback put back on a key it restored stay there: the events still queued leave them
    rows_now = run.rows()
    for row, value in restored_rows.items():
        assert rows_now[row] == value, (row, value, rows_now[row])


# -- tests ------------------------------------------------------------------------------------------------------


@settings(max_examples=60)
@given(items=sites(legacy=True), plan=plans())
def test_rollback_after_a_changed_world_keeps_i1_i2_i5(rworld: RollbackWorld, items: list[Item], plan: Plan) -> None:
    """A settled site (live path, backfill, or both), changed under it (a canonical copy deleted on purpose, rows
    changed by their users, sources re-uploaded; their events delivered first or still queued, with some of the
    settling's own), rolled back by execution or --since, maybe after a dry run, maybe interrupted at an S3 copy or
    a database swap and run again; then every queued event delivered. I1 holds for every row (at each swap and at
    the end), I2 and I5 hold against the baseline (but for what the deliberate deletion itself broke), every entry
    is rolled back or reported skipped, the dry run changed nothing, and a rerun changes nothing."""
    run_rollback_schedule(rworld, items, plan)


def test_a_link_event_still_queued_from_the_backfill_leaves_the_rolled_back_rows(rworld: RollbackWorld) -> None:
    """A backfill over a site older than the events settles one messy upload; the link event its CDN copy emitted is
    still queued when the rollback (of that execution) runs, and is delivered after it. The rolled-back row must
    stay on its restored source (RESTORED_BY), and the invariants hold."""
    plan = Plan("backfill", frozenset(), (), False, "execution", False)
    item = Item("messy", "bbc")
    run = set_up(rworld, [item], plan)
    s = run.schedule
    held: list[Delivery] = []
    while s.queue:  # the settling, the link event of the canonical copy held back
        delivery = s.queue.pop(0)
        if delivery.step == "link" and delivery.key == item.canonical_key:
            held.append(delivery)
            continue
        assert run.deliver(delivery), delivery
    assert held and run.rows()[("archive.PublicationSource.icon", 1)] == item.canonical_key
    undone = run.undo(plan)
    assert (undone.rows_restored, undone.skipped) == (1, [])
    assert run.rows()[("archive.PublicationSource.icon", 1)] == item.source_key

    s.queue = held + s.queue
    drain(s, run.steps, run.backfill)

    assert run.rows()[("archive.PublicationSource.icon", 1)] == item.source_key
    report = check_against_baseline(s.map, s.s3, run.db, run.ledger, s.baseline)
    assert report.ok, report.summary()


@pytest.mark.parametrize("events", ["delivered first", "still queued"])
def test_a_source_re_uploaded_before_the_rollback(rworld: RollbackWorld, events: str) -> None:
    """The live path settles one messy upload; the same name is uploaded again with new bytes, its events delivered
    before the rollback (--since) or still queued (delivered after it). The rollback leaves that entry's row on the
    canonical key (the source holds other bytes now) and says why; the invariants hold: the original bytes stay in
    the primary bucket (I5), the CDN holds only canonical primary keys (I3)."""
    plan = Plan("live", frozenset(), (), False, "since", False)
    item = Item("messy", "nytimes")
    run = set_up(rworld, [item], plan)
    s = run.schedule
    drain(s, run.steps, run.backfill)
    assert run.rows()[("archive.PublicationSource.icon", 1)] == item.canonical_key
    s.overwrite(item.source_key)  # new bytes under the retired source's name, its events queued
    if events == "delivered first":
        drain(s, run.steps, run.backfill)  # an orphan: no row references it
    queued, s.queue = s.queue, []
    undone = run.undo(plan)
    assert undone.rows_restored == 0
    assert [e["key"] for e in undone.skipped] == [item.source_key]
    assert "was uploaded again since the rename" in undone.skipped[0]["reason"]
    assert run.rows()[("archive.PublicationSource.icon", 1)] == item.canonical_key

    s.queue = queued + s.queue
    drain(s, run.steps, run.backfill)

    report = check_against_baseline(s.map, s.s3, run.db, run.ledger, s.baseline)
    assert report.ok, report.summary()


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("call", ["copy", "swap"])
@pytest.mark.parametrize("nth", [1, 2])
def test_a_rollback_interrupted_at_each_copy_and_swap_is_finished_by_a_rerun(
    rworld: RollbackWorld, call: str, nth: int, when: str
) -> None:
    """A site settled by the live path and the backfill (a messy row, a staged file, a masthead, a repair from the
    legacy bucket, an orphan), a row cleared by its user since, rolled back --since after a dry run, interrupted
    before or after its first or second S3 copy or database swap, then run again: the same checks as the generated
    rollbacks, and the interruption really happened."""
    items = [Item("messy", "nytimes"), Item("staged", "el-pais"), Item("masthead", "bbc"), Item("legacy", "guardian")]
    items.append(Item("orphan", "reuters"))
    fault = RollbackFaults(call, nth, when)
    plan = Plan("both", frozenset(), (Change("user_cleared", 0),), False, "since", True, fault)
    run_rollback_schedule(rworld, items, plan)
    assert fault.fired, fault
