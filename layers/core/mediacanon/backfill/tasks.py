"""The state machine's tasks (statemachines/backfill.asl.json): `run_task` dispatches on the event's "action" through
`TASKS`; `prepare` validates the input and plans the phases."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from mediacanon.adapters.cdn import CdnInvalidations, invalidations_from_env
from mediacanon.backfill.inventory import (
    DEFAULT_MAX_AGE,
    inventory_items,
    inventory_keys,
    plan_entry,
    read_manifest,
    split_s3_uri,
)
from mediacanon.backfill.listed import process_listed
from mediacanon.backfill.listing import Listed, listed_items, present
from mediacanon.backfill.mirror import prune_mirror
from mediacanon.backfill.objects import process_objects
from mediacanon.backfill.report import results_prefix, write_part, write_streamed_report
from mediacanon.backfill.results import DEFAULT_MAX_DELETES, PHASES, BatchResult
from mediacanon.backfill.rows import process_rows, row_ranges, rows_manifest_key
from mediacanon.core.errors import PermanentError, RetryableError
from mediacanon.steps import Steps

if TYPE_CHECKING:
    from mediacanon.core.mediamap import MediaMap

log = logging.getLogger("mediacanon.backfill")  # the name it logged under as one module
_GLOB_OR_TEMPLATE = re.compile(r"[{*?\[]")


def prefixes_to_scan(media_map: MediaMap, fields: Sequence[str] | None = None) -> list[str]:
    """The primary-bucket prefixes holding every key the mapped fields can own: each field's location + upload_to
    and its staging roots, up to the first placeholder or glob. Nested prefixes collapse into the outer one, so
    no object is listed (and counted) twice; upload_to prefixes come first, so the canonical copies a staging
    root's batches make land under prefixes already scanned."""
    wanted = [m for m in media_map.fields if fields is None or m.name in fields]
    roots = {_GLOB_OR_TEMPLATE.split(m.location + m.upload_to, 1)[0] for m in wanted}
    staging = {_GLOB_OR_TEMPLATE.split(m.location + s, 1)[0] for m in wanted for s in m.staging}
    kept: list[str] = []
    for prefix in sorted(roots | staging):  # a prefix sorts before every key it covers
        if not any(prefix.startswith(outer) for outer in kept):
            kept.append(prefix)
    return sorted(kept, key=lambda p: (p not in roots, p))


def _batch_name(kind: str, *parts: Any) -> str:
    digest = hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]
    return f"{kind}-{digest}"


def prepare(steps: Steps, execution: str, given: dict[str, Any], given_reports_prefix: str | None = None) -> dict[str, Any]:
    """Validate the execution's input against the media map and the database; plan the phases. `given_reports_prefix`
    is the state machine's (the template's ReportsPrefix), checked against the media map's. Each prefix's objects map
    gets `objectsMaxConcurrency` workers (mediacanon.backfill.concurrency; the input's objectsPerWorkerSecond, else the
    measured figure)."""
    from mediacanon.backfill.concurrency import objects_concurrency

    media_map = steps.map
    names = [m.name for m in media_map.fields]
    fields = given.get("fields")
    if fields is not None:
        unknown = sorted(set(fields) - set(names))
        if unknown:
            raise PermanentError(f"unknown field(s) {unknown}: the media map has {names}")
    phases = given.get("phases") or list(PHASES)
    unknown_phases = sorted(set(phases) - {*PHASES, "prepare"})
    if unknown_phases:
        raise PermanentError(f"unknown phase(s) {unknown_phases}: use some of {list(PHASES)}")
    max_deletes = given.get("maxDeletes", DEFAULT_MAX_DELETES)
    if not isinstance(max_deletes, int) or isinstance(max_deletes, bool) or max_deletes < 0:
        raise PermanentError(f"maxDeletes must be a non-negative integer, got {max_deletes!r}")
    _check_reports_prefix(media_map, given_reports_prefix)
    source = objects_source(steps, given)  # a wrong or stale inventory fails here, before any batch runs
    wanted = [m for m in media_map.fields if fields is None or m.name in fields]
    for mapping in wanted:
        steps.db.check_field(mapping)  # a schema mismatch fails the execution here, before any batch runs
    steps.ledger.ensure()
    prefixes = list(given["prefixes"]) if given.get("prefixes") is not None else prefixes_to_scan(media_map, fields)
    manifest = None
    if "rows" in phases:
        # the ranges go to S3, not into the state: the rows Map reads them there (ItemReader), so their number is
        # bounded by neither the 256 KiB payload nor the parent execution's history
        ranges = [r for m in wanted for r in row_ranges(steps.db, m)]
        manifest = rows_manifest_key(media_map, execution)
        body = json.dumps(ranges, default=str).encode()
        steps.s3.put_bytes(media_map.buckets.primary, manifest, body, "application/json")
    return {
        "execution": execution,
        "dryRun": bool(given.get("dryRun", False)),
        "maxDeletes": max_deletes,
        "run": {phase: phase in phases for phase in PHASES},
        "prefixes": prefixes,
        # each prefix's objects map run: its workers (MaxConcurrencyPath), sized from S3's per-prefix write limit
        "objectsMaxConcurrency": objects_concurrency(
            given.get("objectsPerWorkerSecond"), len(prefixes), given.get("objectsMaxConcurrency")
        ),
        "rowsManifest": manifest,
        "resultsPrefix": results_prefix(media_map, execution),
        **source,  # source, inventory, sourceLine: what the objects phase reads its items from
    }


def objects_source(steps: Steps, given: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """Where the objects phase takes its items (backfill.inventory.plan_entry): the input's `inventory` manifest
    (s3://.../manifest.json), read and checked against the primary bucket and `inventoryMaxAgeDays` (default
    DEFAULT_MAX_AGE), else a listing of the primary bucket."""
    primary = steps.map.buckets.primary
    now = now or datetime.now(UTC)
    uri = given.get("inventory")
    if not uri:
        return plan_entry(None, now, primary=primary)
    days = given.get("inventoryMaxAgeDays")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int | float) or not days > 0):
        raise PermanentError(f"inventoryMaxAgeDays must be a positive number of days, got {days!r}")
    max_age = DEFAULT_MAX_AGE if days is None else timedelta(days=float(days))
    bucket, key = split_s3_uri(str(uri))
    return plan_entry(read_manifest(steps.s3, bucket, key, primary_bucket=primary, max_age=max_age, now=now), now)


def _check_reports_prefix(media_map: MediaMap, deployed: Any) -> None:
    """The state machine may write map results under the template's ReportsPrefix only (its IAM policy): the media
    map's reports_prefix must be that one, or every ResultWriter would be denied after the whole map ran."""
    if deployed is not None and deployed != media_map.reports_prefix:
        raise PermanentError(
            f"the media map's reports_prefix {media_map.reports_prefix!r} differs from the stack's ReportsPrefix "
            f"{deployed!r}: set reports_prefix: {deployed} in the media map, or deploy with ReportsPrefix="
            f"{media_map.reports_prefix}"
        )


def run_task(
    event: dict[str, Any],
    make_steps: Callable[[str], Steps],
    invalidations: Callable[[], CdnInvalidations | None] = invalidations_from_env,
) -> dict[str, Any]:
    """One task of the backfill state machine, chosen by the event's "action"; `make_steps(execution)` gives the
    Steps whose ledger records that execution. Returns counts only: outcomes go to the parts in S3.

    `invalidations()` gives the task its CloudFront invalidations (by default the stack's distribution,
    MEDIACANON_CDN_DISTRIBUTION_ID; None: no distribution): the CDN keys an objects, rows or mirror task replaced or
    removed are invalidated in one CreateInvalidation at its end (`_invalidate`), even when the task fails after
    changing some.

    A RetryableError (whatever its subclass) leaves as a plain RetryableError, the one name the ASL retries on."""
    action, execution = event.get("action"), str(event["execution"])
    task = TASKS.get(str(action))
    if task is None:
        raise PermanentError(f"unknown backfill action {action!r}: one of {', '.join(TASKS)}")
    steps = make_steps(execution)
    dry_run = bool(event.get("dryRun", False))
    cdn = invalidations() if action in BATCH_TASKS and not dry_run else None
    try:
        return task(steps, execution, event, dry_run, cdn)
    except RetryableError as exc:
        if type(exc) is RetryableError:
            raise
        raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
    finally:
        if cdn is not None and cdn.pending:  # the task failed after changing CDN keys: invalidated all the same
            _invalidate(cdn, execution, BatchResult(), str(action))


Task = Callable[[Steps, str, dict[str, Any], bool, "CdnInvalidations | None"], dict[str, Any]]


def _prepare_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    return prepare(steps, execution, event.get("input") or {}, event.get("reportsPrefix"))


def _objects_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    items = event["items"]
    if items and "ETag" in items[0]:  # an S3 Inventory's rows (a listing's field is Etag): keys URL-encoded
        prefixes = event.get("prefixes")  # the inventory lists the whole bucket: only the prefixes to scan
        keys = inventory_keys(items, prefixes)
        listed = inventory_items(items, prefixes)
        name_keys = keys or inventory_keys(items)  # a batch with no key to scan still gets a name of its own
    else:
        keys = name_keys = [item["Key"] for item in items]
        listed = listed_items(items)
    if listed is None:  # keys alone (a hand-made event): the per-object steps read the rest
        result = process_objects(steps, keys, dry_run=dry_run, cdn=cdn)
    else:
        result = process_listed(steps, listed, dry_run=dry_run, cdn=cdn)
    _record_orphan_etags(steps, result, listed)
    return _finish(steps, execution, cdn, result, "objects", _batch_name("objects", name_keys))


def _rows_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    span = event["range"]
    mapping = steps.map.field(span["field"])
    result = process_rows(steps, mapping, span, dry_run=dry_run, cdn=cdn)
    return _finish(steps, execution, cdn, result, "rows", _batch_name("rows", span["field"], span.get("start")))


def _mirror_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    max_deletes = int(event.get("maxDeletes", DEFAULT_MAX_DELETES))
    result = prune_mirror(steps, dry_run=dry_run, max_deletes=max_deletes, cdn=cdn)
    return _finish(steps, execution, cdn, result, "mirror", "mirror")


def _report_task(
    steps: Steps, execution: str, event: dict[str, Any], dry_run: bool, cdn: CdnInvalidations | None
) -> dict[str, Any]:
    report, written = write_streamed_report(steps, execution, dry_run=dry_run, source=event.get("sourceLine"))
    # the objects phase's source (Prepare's sourceLine: the listing, or the inventory and how stale it was)
    return {"line": report.line, "counts": report.counts, "keys": list(written), "source": event.get("sourceLine")}


def _finish(
    steps: Steps, execution: str, cdn: CdnInvalidations | None, result: BatchResult, phase: str, part: str
) -> dict[str, Any]:
    """A batch task's end: its CDN paths invalidated, its outcomes written as one part; counts only returned."""
    _invalidate(cdn, execution, result, phase)
    write_part(steps, execution, part, result)
    return {"counts": dict(result.counts)}


# the state machine's tasks, by the "action" its Task states pass
TASKS: dict[str, Task] = {
    "prepare": _prepare_task,
    "objects": _objects_task,
    "rows": _rows_task,
    "mirror": _mirror_task,
    "report": _report_task,
}
BATCH_TASKS = ("objects", "rows", "mirror")  # the tasks that change the CDN bucket: their keys are invalidated


def _invalidate(cdn: CdnInvalidations | None, execution: str, result: BatchResult, phase: str) -> None:
    """The task's CDN paths in one CreateInvalidation (mediacanon.adapters.cdn: within CloudFront's limits). The objects are in
    place whatever CloudFront answers (I3 holds); a failed invalidation only leaves a cached copy until it expires, so
    it fails nothing: it is logged and counted (`uninvalidated`, one report item per path to invalidate by hand)."""
    from botocore.exceptions import BotoCoreError, ClientError

    if cdn is None or not cdn.pending:
        return
    pending = cdn.pending
    try:
        sent = cdn.flush(f"mediacanon-{execution[-64:]}-{uuid.uuid4().hex}")
    except (BotoCoreError, ClientError) as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.warning("cdn invalidation failed: distribution %s, %d path(s): %s", cdn.distribution_id, len(pending), error)
        for path in pending:
            detail = f"CloudFront invalidation of {cdn.distribution_id} failed ({error}): cached copies stay until they expire"
            result.add("uninvalidated", path, detail, phase=phase)
        return
    log.info("cdn invalidated: distribution %s, %d path(s) as %d", cdn.distribution_id, len(pending), len(sent))
    result.counts["invalidated"] += len(pending)


def _record_orphan_etags(steps: Steps, result: BatchResult, listed: Sequence[Listed] | None) -> None:
    """Each orphan of the batch with the ETag it had (the listing's, else one HEAD): `mediacanon.orphans` deletes an
    orphan only while it still holds the bytes the report recorded."""
    known = {item.key: item.etag for item in listed or ()}
    orphans = [item for item in result.items if item["outcome"] == "orphan" and not item.get("etag")]
    heads = present(steps.s3, steps.map.buckets.primary, [i["key"] for i in orphans if i["key"] not in known])
    for item in orphans:
        there = heads.get(item["key"])
        etag = known.get(item["key"]) or (there.etag if there is not None else None)
        if etag:
            item["etag"] = etag
