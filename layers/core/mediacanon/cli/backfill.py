"""Commands on what already exists: backfill, report, rollback, orphans."""

from __future__ import annotations

import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn

import click
from rich.text import Text

from mediacanon.cli.errors import LOCAL_UP, _endpoint_gone, _endpoint_where, task_error
from mediacanon.cli.options import (
    PHASES,
    _age,
    _check_fields,
    _iso_time,
    _load_map,
    _need_database,
    _PhasesCommand,
    config_option,
    database_option,
    use_endpoints,
)
from mediacanon.cli.output import EXIT_FAILED, _fail, _say
from mediacanon.core import mediamap
from mediacanon.core.errors import BucketNotFound

if TYPE_CHECKING:
    from mediacanon.sfnremote import BackfillResult


@click.command("backfill", cls=_PhasesCommand)
@click.option("--dry-run", is_flag=True, help="plan only: nothing is written anywhere but the report")
@click.option(
    "--phase",
    "phases",
    multiple=True,
    type=click.Choice(PHASES),
    help="run only these phases: `--phase objects report` or `--phase objects --phase report`",
)
@click.option("--field", "fields", multiple=True, help="only these field mappings (by name)")
@click.option(
    "--max-deletes",
    type=click.IntRange(0),
    default=1000,
    show_default=True,
    help="abort the mirror prune above this many deletions",
)
@click.option("--state-machine-arn", default=None, help="run on AWS: start this deployed state machine instead of the local one")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    default=3600,
    show_default=True,
    help="seconds to wait for the execution",
)
@click.option(
    "--inventory",
    default=None,
    metavar="S3_URI",
    help="read the objects from this S3 Inventory (s3://bucket/.../manifest.json, CSV with Size and ETag) "
    "instead of listing the primary bucket",
)
@click.option(
    "--inventory-max-age",
    "inventory_max_age",
    type=click.FloatRange(0, min_open=True),
    default=None,
    metavar="DAYS",
    help="refuse an inventory older than this many days  [default: 7]",
)
@config_option
@database_option
def backfill_command(
    dry_run: bool,
    phases: tuple[str, ...],
    fields: tuple[str, ...],
    max_deletes: int,
    state_machine_arn: str | None,
    timeout: float,
    inventory: str | None,
    inventory_max_age: float | None,
    config: str,
    database_url: str | None,
) -> None:
    """Start a backfill of everything that already exists, show its progress, print its report line."""
    media_map = _load_map(config)
    _check_fields(media_map, fields)
    if not state_machine_arn:
        use_endpoints(database_url)  # the local stack's S3, for the inventory's manifest too
    _say(f"source: {_source_line(media_map, inventory, inventory_max_age)}")
    if state_machine_arn:
        from mediacanon.sfnremote import run_remote

        result = run_remote(
            state_machine_arn,
            dry_run=dry_run,
            phases=list(phases) or None,
            fields=list(fields) or None,
            max_deletes=max_deletes,
            timeout=timeout,
            inventory=inventory,
            inventory_max_age_days=inventory_max_age,
        )
    else:
        from mediacanon.local.sfnlocal import run_backfill

        url = _need_database(database_url)
        _preflight(media_map, url, fields, config)
        result = run_backfill(
            media_map,
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL"),
            database_url=url,
            dry_run=dry_run,
            phases=list(phases) or None,
            fields=list(fields) or None,
            max_deletes=max_deletes,
            progress=True,
            timeout=timeout,
            inventory=inventory,
            inventory_max_age_days=inventory_max_age,
        )
    _print_result(media_map, result)
    _exit_for(media_map, result)


def _source_line(media_map: mediamap.MediaMap, inventory: str | None, max_age_days: float | None) -> str:
    """The objects phase's source as Prepare will find it (backfill.tasks.objects_source), found out before the
    execution starts: a manifest that is not one, of another bucket, without Size or ETag, or too old fails here,
    with the fix."""
    from datetime import UTC, timedelta

    from mediacanon.backfill.inventory import DEFAULT_MAX_AGE, plan_entry, read_manifest, split_s3_uri
    from mediacanon.core.errors import PermanentError

    now = datetime.now(UTC)
    if not inventory:
        return str(plan_entry(None, now, primary=media_map.buckets.primary)["sourceLine"])
    from mediacanon.adapters.s3 import S3Adapter

    max_age = DEFAULT_MAX_AGE if max_age_days is None else timedelta(days=max_age_days)
    try:
        bucket, key = split_s3_uri(inventory)
        found = read_manifest(S3Adapter(), bucket, key, primary_bucket=media_map.buckets.primary, max_age=max_age, now=now)
    except PermanentError as exc:
        _fail(f"--inventory: {exc}")
    return str(plan_entry(found, now)["sourceLine"])


def _preflight(media_map: mediamap.MediaMap, url: str, fields: tuple[str, ...], config: str) -> None:
    """What the execution's first task would find out, found out before it starts: the database answers, the
    fields' tables and columns exist, both buckets are there."""
    from mediacanon.backfill.rows import unindexed_notice
    from mediacanon.wiring import connect

    with connect(media_map, url) as stores:
        for mapping in media_map.fields:
            if not fields or mapping.name in fields:
                stores.db.check_field(mapping)
                if notice := unindexed_notice(stores.db, mapping):
                    _say(Text(notice, "yellow"))
        for role, name in (("primary", media_map.buckets.primary), ("cdn", media_map.buckets.cdn)):
            try:
                next(iter(stores.s3.iter_objects(name, page_size=1)), None)
            except BucketNotFound:
                _fail(
                    f"the {role} bucket {name!r} is not there (fix: create it, or correct buckets.{role} in {config}; "
                    "`sam deploy` creates both)"
                )


def _print_result(media_map: mediamap.MediaMap, result: BackfillResult) -> None:
    _say(f"execution: {result.execution_arn}  status: {result.status}")
    if result.source_line:
        _say(f"objects from: {result.source_line}")
    if result.failed_items:
        _say(Text.assemble((f"{result.failed_items} item(s) failed in map runs", "red"), " (not in the report; see the map run)"))
    for key in result.report_keys:
        _say(f"report: s3://{media_map.buckets.primary}/{key}")
    if result.report_line:
        _say(result.report_line)


def _exit_for(media_map: mediamap.MediaMap, result: BackfillResult) -> NoReturn:
    """Exit 0 for a backfill that succeeded with nothing failed; otherwise say what failed and how to go on."""
    if result.error:
        name = result.execution_arn.rsplit(":", 1)[-1]
        if _endpoint_gone(result.error):
            _fail(
                f"cannot reach {_endpoint_where()}: it stopped answering during backfill {name} "
                f"({task_error(result.error)}) (fix: start it again ({LOCAL_UP}) or correct AWS_ENDPOINT_URL, then run "
                "the backfill again: every phase is idempotent)"
            )
        _fail(
            f"backfill {name} {result.status.lower()}: {task_error(result.error)} (fix: correct that, then run the backfill "
            f"again: every phase is idempotent; `mediacanon report {name}` shows what was done)"
        )
    failed = int(result.counts.get("failed", 0))
    if failed:
        name = result.execution_arn.rsplit(":", 1)[-1]
        for item in _failed_items(media_map, result.report_keys):
            _say(f"failed: {item.get('key') or '-'}: {item.get('detail')}")
        _fail(
            f"backfill {name}: {failed} item(s) failed (fix: correct what their lines say, then run the backfill again: "
            f"every phase is idempotent; `mediacanon report {name} --csv` lists them all)"
        )
    sys.exit(0 if result.status == "SUCCEEDED" else EXIT_FAILED)


def _failed_items(media_map: mediamap.MediaMap, report_keys: Sequence[str], limit: int = 10) -> list[dict[str, Any]]:
    """The first `limit` failed items of a backfill's report, for the lines printed with its failure: read from its
    CSV as a stream, up to the last one needed (the report of a large bucket is never loaded whole)."""
    import csv
    from itertools import islice

    from mediacanon.adapters.s3 import S3Adapter

    key = next((k for k in report_keys if k.endswith(".csv")), None)
    if key is None:
        return []
    rows = csv.DictReader(S3Adapter().iter_lines(media_map.buckets.primary, key))
    return list(islice((row for row in rows if row.get("outcome") == "failed"), limit))


@click.command("rollback")
@click.argument("execution", required=False)
@click.option(
    "--since",
    "since",
    default=None,
    callback=_iso_time,
    help="reverse every rename since this ISO time (e.g. 2026-11-21T10:00:00+00:00)",
)
@click.option("--dry-run", is_flag=True, help="list what would be restored; change nothing")
@config_option
@database_option
def rollback_command(execution: str | None, since: datetime | None, dry_run: bool, config: str, database_url: str | None) -> None:
    """Reverse the renames of EXECUTION (its name or ARN; or --since TIME) from the ledger: copy back retired
    sources, swap rows back."""
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.rollback import rollback

    if (execution is None) == (since is None):
        raise click.UsageError("name an EXECUTION or pass --since TIME (exactly one)")
    name = execution.rsplit(":", 1)[-1] if execution else None  # the ledger records the execution's name
    media_map = _load_map(config)
    url = _need_database(database_url)
    with Database(url) as db:
        ledger = Ledger(db, media_map.schema)
        recorded = ledger.exists()  # read, never create: a wrong argument changes nothing
        if name is not None and not (recorded and ledger.entries(execution=name)):
            raise click.BadParameter(
                f"no rename of execution {name!r} is in the ledger (fix: pass the name or ARN `mediacanon backfill` "
                "printed, or --since TIME for the live path's renames)",
                param_hint="'EXECUTION'",
            )
        if not recorded:
            _say(f"no rename is in the ledger ({media_map.schema}.ledger does not exist yet): nothing to roll back")
            return
        result = rollback(media_map, S3Adapter(), db, ledger, execution=name, since=since, dry_run=dry_run)
    for key in result.restored_objects:
        _say(f"{'would restore' if dry_run else 'restored'} {key}")
    for row in result.rows_changed_since:
        _say(f"left alone (changed since): {row}")
    for entry in result.skipped:
        where = entry.get("key") or f"row {entry.get('row')}"
        _say(f"not reversed: {entry.get('field')}: {where}: {entry.get('reason')}")
    _say(result.line)


@click.command("orphans")
@click.option("--execution", default=None, help="the backfill (name or ARN) whose report lists the orphans (default: the latest)")
@click.option("--dry-run", is_flag=True, help="list what would be deleted; delete nothing")
@click.option("--min-age", "min_age", default="7d", show_default=True, callback=_age,
              help="keep orphans modified more recently than this (7d, 36h, 90m, 0)")  # fmt: skip
@click.option("--max-deletes", type=click.IntRange(0), default=100, show_default=True,
              help="refuse, deleting nothing, when more than this many would go")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@config_option
@database_option
def orphans_command(
    execution: str | None, dry_run: bool, min_age: Any, max_deletes: int, as_json: bool, config: str, database_url: str | None
) -> None:
    """Delete, on request, the orphans a backfill reported: objects in the primary bucket no row references or claims.
    Each is checked again first (still there with the reported ETag, old enough, still unowned) and deleted only if it
    still holds the reported bytes; never in the CDN or a fallback bucket. Run with --dry-run first."""
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.orphans import delete_orphans

    media_map = _load_map(config)
    url = _need_database(database_url)
    with Database(url) as db:
        ledger = Ledger(db, media_map.schema)
        result = delete_orphans(
            media_map,
            S3Adapter(),
            db,
            ledger if ledger.exists() else None,
            execution=execution,
            min_age=min_age,
            max_deletes=max_deletes,
            dry_run=dry_run,
        )
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, default=str))
    else:
        for item in result.outcomes:
            why = f" ({item.reason}: {item.detail})" if item.reason else (f" ({item.detail})" if item.detail else "")
            _say(f"{item.outcome.lower().replace('_', ' ')}: {item.key}{why}")
        _say(result.line)
    sys.exit(EXIT_FAILED if result.counts.get("failed") else 0)


@click.command("report")
@click.argument("execution")
@click.option("--csv", "as_csv", is_flag=True, help="print the CSV instead of the summary")
@config_option
def report_command(execution: str, as_csv: bool, config: str) -> None:
    """Print the report of a backfill EXECUTION (its name or ARN) from the reports prefix."""
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.core.errors import NotFoundError

    media_map = _load_map(config)
    use_endpoints()
    name = execution.rsplit(":", 1)[-1]
    base = f"{media_map.reports_prefix}{name}/report"
    s3 = S3Adapter()
    where = f"s3://{media_map.buckets.primary}/{base}.{'csv' if as_csv else 'json'}"
    try:
        if as_csv:
            click.echo(s3.get_bytes(media_map.buckets.primary, base + ".csv").decode(), nl=False)
            return
        data = json.loads(s3.get_bytes(media_map.buckets.primary, base + ".json"))
    except NotFoundError:
        _fail(
            f"no report for {name!r} at {where} (fix: pass the execution name or ARN `mediacanon backfill` printed; "
            "a run still going or one that failed before its report phase has none yet)"
        )
    counts = Counter(item["outcome"] for item in data.get("items", []))
    for outcome, n in sorted(counts.items()):
        _say(f"{outcome}: {n}")
    if data.get("source"):  # the objects' source: the listing, or the S3 Inventory and how stale it was
        _say(f"objects from: {data['source']}")
    _say(data["line"])
