"""The `mediacanon` command.

Every command reads `--config` (or MEDIACANON_CONFIG), `AWS_ENDPOINT_URL` and `DATABASE_URL`; when those two are
unset and `mediacanon local up` has started the embedded default, its endpoints are used.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mediacanon.core import mediamap, naming
from mediacanon.core.errors import BucketNotFound, ConfigError, MediacanonError, RetryableError, UnmappedKeyError, UnsafeKeyError

# User data (keys, paths, error texts) is printed verbatim: no markup (`[draft]` is not a tag), no emoji codes
# (`:smile:` stays as typed), no highlighting. Styles come from Text objects only.
# Not a terminal (CI logs, pipes): wide enough that keys are not folded mid-name.
console = Console(width=None if sys.stdout.isatty() else 200, markup=False, emoji=False, highlight=False)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200, markup=False, emoji=False, highlight=False)

# Exit codes: 0 done; 1 the run failed or found what it checks for broken; 2 the command line is wrong (an option's
# value, an unknown name, a missing folder or manifest: nothing was started) or explain refused the key;
# 130 interrupted.
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_USAGE = 2

PHASES = ("objects", "rows", "mirror", "report")  # mediacanon.backfill.PHASES (not imported: it pulls in the steps)
PLAN_ACTIONS = ("rename", "link", "mirror", "orphan", "refuse", "missing", "broken", "repair", "ok", "skip")  # plan.Action
LOCAL_UP = "`mediacanon local up`"


def _say(text: str | Text, *, err: bool = False) -> None:
    """One line of output, verbatim: never read as markup or emoji codes, never folded."""
    (err_console if err else console).print(text, soft_wrap=True)


def _fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    _say(Text.assemble(("error:", "red"), " ", message), err=True)
    sys.exit(code)


# -- expected failures: one line, never a traceback ------------------------------------------------------------------


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


_database_in_use: list[str] = []  # the conninfo the command uses (from --database-url, DATABASE_URL or local up)


def _database_where() -> str:
    """Where the database settings come from, for a message: the variable or option, and its host/port/dbname."""
    url = _database_in_use[-1] if _database_in_use else os.environ.get("DATABASE_URL")
    where = "DATABASE_URL (or --database-url)"
    if not url:
        return where
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception:  # a malformed URL is reported by _check_database_url
        return where
    target = f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', parts.get('user', ''))}"
    return f"{where} {target}"


def _endpoint_where() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return f"AWS_ENDPOINT_URL {endpoint}" if endpoint else "AWS (no AWS_ENDPOINT_URL set)"


def describe_error(exc: BaseException) -> str | None:
    """The one-line message (what failed: detail (fix: ...)) for an expected failure; None for a bug."""
    import psycopg
    from botocore.exceptions import (
        ClientError,
        ConnectionClosedError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        ReadTimeoutError,
    )

    chain = list(_chain(exc))
    ours = next((e for e in chain if isinstance(e, MediacanonError)), None)
    context = f" ({_one_line(str(ours))})" if ours is not None and ours is not exc else ""
    for cause in chain:
        if isinstance(cause, EndpointConnectionError | ConnectTimeoutError | ConnectionClosedError | ReadTimeoutError):
            fix = (
                f"the emulator has stopped or never ran: start it ({LOCAL_UP}) or correct AWS_ENDPOINT_URL, then run the "
                "same command again"
                if os.environ.get("AWS_ENDPOINT_URL")
                else "check the network and AWS_DEFAULT_REGION, then run the same command again"
            )
            return f"cannot reach {_endpoint_where()}: {_one_line(str(cause))}{context} (fix: {fix})"
        if isinstance(cause, NoCredentialsError | NoRegionError):
            return (
                f"AWS is not configured: {_one_line(str(cause))} (fix: set AWS_PROFILE or AWS credentials and AWS_DEFAULT_REGION)"
            )
        if isinstance(cause, psycopg.OperationalError):
            return (
                f"the database refuses the connection ({_database_where()}): {_one_line(str(cause))}{context} "
                f"(fix: start PostgreSQL or correct DATABASE_URL: host, port, user, password, database name; {LOCAL_UP} "
                "runs one)"
            )
        if isinstance(cause, psycopg.ProgrammingError) and ("connection info" in str(cause) or "percent-encoded" in str(cause)):
            return _bad_database_url(_one_line(str(cause)))
        if isinstance(cause, ClientError) and ours is None:
            error = cause.response.get("Error", {})
            return (
                f"AWS refused {cause.operation_name}: {error.get('Code', '?')}: {_one_line(error.get('Message', ''))} "
                "(fix: check the ARN or name given, the region and your credentials' permissions)"
            )
    if isinstance(exc, ConfigError):
        return str(exc)  # file: place: problem (fix: ...)
    if ours is not None:
        message = _one_line(str(ours))
        if "(fix:" in message or "fix:" in message:
            return message
        if isinstance(ours, RetryableError):
            return f"{message} (fix: this may pass on its own: run the same command again)"
        return message
    return None


def _bad_database_url(detail: str) -> str:
    return (
        f"DATABASE_URL (or --database-url) is not a PostgreSQL URL or conninfo: {detail} "
        "(fix: use postgresql://USER:PASSWORD@HOST:5432/DBNAME, percent-encoding special characters)"
    )


class _Main(click.Group):
    """The command group: maps the failures a user can cause or meet (a bad media map, a database or an endpoint
    that is down, a failed AWS call) to `error: ...` on stderr and exit 1. Anything else is a bug: its traceback shows."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            message = describe_error(exc)
            if message is None:
                raise
            _fail(message)


class _PhasesCommand(click.Command):
    """Takes `--phase objects report` (the phases after one --phase, up to the next option) as well as
    `--phase objects --phase report`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_phases(args))


def spread_phases(args: Sequence[str]) -> list[str]:
    """`--phase a b` -> `--phase a --phase b`: bare words after a --phase value (this command has no arguments)."""
    out: list[str] = []
    after_phase = False
    it = iter(args)
    for arg in it:
        if arg == "--":
            out.append(arg)
            out.extend(it)
            break
        if arg == "--phase":
            out.append(arg)
            value = next(it, None)
            if value is not None:
                out.append(value)
            after_phase = value is not None
            continue
        if arg.startswith("-"):
            after_phase = arg.startswith("--phase=")
            out.append(arg)
            continue
        out.extend(["--phase", arg] if after_phase else [arg])
    return out


def _iso_time(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time (fix: e.g. 2026-11-21T10:00:00+00:00, or `date -u -Iseconds`)"
        ) from None


def _check_database_url(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    try:
        parts = conninfo_to_dict(url)
    except Exception as exc:  # psycopg.ProgrammingError: the text itself cannot be parsed
        _fail(_bad_database_url(_one_line(str(exc))))
    port = str(parts.get("port", "5432"))
    if not all(p.strip().isdigit() for p in port.split(",")):
        _fail(_bad_database_url(f"port {port!r} is not a number"))
    _database_in_use.append(url)
    return url


def _need_database(database_url: str | None, why: str = "") -> str:
    url = use_endpoints(database_url)
    if not url:
        _fail(f"no database{why}: set DATABASE_URL, pass --database-url, or run {LOCAL_UP}")
    return _check_database_url(url)


def _state_dir() -> Path:
    return Path(os.environ.get("MEDIACANON_STATE_DIR", ".local"))


def _local_endpoints() -> dict[str, str]:
    state = _state_dir() / "state.json"
    if not state.exists():
        return {}
    data: dict[str, Any] = json.loads(state.read_text())
    return {k: v for k, v in data.items() if k in ("endpoint_url", "database_url") and v}


def use_endpoints(database_url: str | None = None) -> str | None:
    """Point boto3 and the database at the explicit endpoints, else at the running local stack."""
    local = _local_endpoints()
    if not os.environ.get("AWS_ENDPOINT_URL") and "endpoint_url" in local:
        os.environ["AWS_ENDPOINT_URL"] = local["endpoint_url"]
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    return database_url or os.environ.get("DATABASE_URL") or local.get("database_url")


def _load_map(config: str) -> mediamap.MediaMap:
    try:
        return mediamap.load(config)
    except ConfigError as exc:
        _fail(str(exc))


def _check_fields(media_map: mediamap.MediaMap, fields: Sequence[str], option: str = "--field") -> None:
    names = [f.name for f in media_map.fields]
    unknown = [f for f in fields if f not in names]
    if unknown:
        raise click.BadParameter(
            f"unknown field {', '.join(map(repr, unknown))}: the media map has {', '.join(names)} "
            "(fix: pass one of those names; `mediacanon check-config` lists them)",
            param_hint=f"'{option}'",
        )


config_option = click.option(
    "--config",
    "config",
    envvar="MEDIACANON_CONFIG",
    default="mediamap.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="the media map (env MEDIACANON_CONFIG)",
)
database_option = click.option(
    "--database-url", envvar="DATABASE_URL", default=None, help="PostgreSQL conninfo (env DATABASE_URL)"
)


@click.group(cls=_Main)
@click.version_option(package_name="mediacanon")
def main() -> None:
    """mediacanon: canonical media keys for Django in S3, its CDN mirror and the database, kept in agreement."""


@main.command("check-config")
@config_option
@click.option(
    "--database-url", default=None, help="also check each field's table and columns there (env DATABASE_URL is not read)"
)
def check_config(config: str, database_url: str | None) -> None:
    """Validate the media map; print its fields. With --database-url, also check that every field's table and
    columns exist and that its max_length agrees with the column's."""
    media_map = _load_map(config)
    if database_url:
        problems = _schema_problems(media_map, _check_database_url(database_url))
        if problems:
            for problem in problems:
                _say(f"  {problem}", err=True)
            _fail(f"{config}: {len(problems)} problem(s) against the database (each names its field and fix)")
    _say(Text(f"{config}: valid" + (" (tables and columns checked against the database)" if database_url else ""), style="green"))
    for f in media_map.fields:
        p = f.policies
        _say(Text.assemble((f.name, "bold"), f"  {f.table}.{f.column} (slug: {f.slug_column}, max_length {f.max_length})"))
        _say(f"  {f.location + f.upload_to} -> {f.location + f.canonical}")
        for pattern in f.staging:
            _say(f"  staging {f.location + pattern}")
        _say(f"  policies: collision={p.collision} mirror_deletes={p.mirror_deletes} retire={p.retire}")
    b = media_map.buckets
    _say(f"buckets: primary={b.primary} cdn={b.cdn} fallbacks (read-only)={', '.join(b.fallbacks) or '-'}")


def _schema_problems(media_map: mediamap.MediaMap, url: str) -> list[str]:
    """Every field's problems against the database at once: a missing table or column, a column not of text, a
    max_length the column disagrees with."""
    from mediacanon.adapters.db import Database, SchemaMismatchError

    problems: list[str] = []
    with Database(url) as db:
        for mapping in media_map.fields:
            try:
                length = db.column_length(mapping)
            except SchemaMismatchError as exc:
                problems.append(str(exc))
                continue
            if length is not None and length != mapping.max_length:
                problems.append(
                    f"field {mapping.name}: {mapping.table}.{mapping.column}: max_length {mapping.max_length} in the "
                    f"media map, varchar({length}) in the database (fix: set max_length: {length}, the model field's "
                    "max_length, or migrate the column)"
                )
    return problems


@main.command()
@click.argument("key")
@click.option("--tenant", default=None, help="tenant for per-tenant locations ('{tenant}/')")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--raw-event-key", is_flag=True, help="KEY is URL-encoded as in an S3 event: decode it once")
@click.option("--offline", is_flag=True, help="from the name alone, even when a database is configured")
@config_option
@database_option
def explain(
    key: str, tenant: str | None, as_json: bool, raw_event_key: bool, offline: bool, config: str, database_url: str | None
) -> None:
    """Show the canonical key of KEY, its field, its owner row, and the rule that matched and why."""
    media_map = _load_map(config)
    if raw_event_key:
        key = naming.decode_event_key(key)
    try:
        res = naming.resolve(media_map, key, tenant)
    except (UnsafeKeyError, UnmappedKeyError) as exc:
        kind = "refused" if isinstance(exc, UnsafeKeyError) else "unmapped"
        if as_json:
            click.echo(json.dumps({"key": key, "error": exc.reason, "kind": kind}))
        else:
            _say(Text.assemble((f"{kind}:", "red"), f" {key!r}: {exc.reason}"), err=True)
        sys.exit(EXIT_REFUSED)
    out: dict[str, Any] = {
        "key": key,
        "canonical_key": res.canonical_key,
        "is_canonical": res.is_canonical,
        "field": res.field.name,
        "tenant": res.tenant,
        "slug": res.slug,
        "rule": res.rule,
        "why": list(res.steps),
        "owner": None,
    }
    url = None if offline else use_endpoints(database_url)
    if url:
        out.update(_explain_owner(_check_database_url(url), key, res))
    if as_json:
        click.echo(json.dumps(out, ensure_ascii=False))
        return
    _say(Text.assemble((key, "bold"), " -> ", (str(out["canonical_key"]), "green")))
    _say(f"  field: {res.field.name} ({res.field.table}.{res.field.column})   rule: {res.rule}")
    for step in out["why"]:
        _say(f"  - {step}")
    _say(f"  owner: {out['owner'] or ('no row owns it' if url else 'no database given (name alone)')}")


def _explain_owner(database_url: str, key: str, res: naming.Resolution) -> dict[str, Any]:
    from mediacanon.adapters.db import Database
    from mediacanon.plan import find_owners

    try:
        with Database(database_url) as db:
            db.check_field(res.field)
            owner = find_owners(db, [(key, res)]).get(key)
    except MediacanonError as exc:
        _fail(f"database lookup failed: {describe_error(exc) or exc}")
    if owner is None:
        return {"owner": None}
    canonical = naming.canonical_key_for_row(res.field, owner.slug, key, owner.tenant)
    why = [f"owner row {owner.id} (slug {owner.slug!r}) found by {owner.matched_by}"]
    if canonical != res.canonical_key:
        why.append(f"the row is the authority: canonical key {canonical!r}")
    return {
        "owner": {"id": owner.id, "slug": owner.slug, "value": owner.value, "matched_by": owner.matched_by},
        "canonical_key": canonical,
        "is_canonical": canonical == key,
        "why": [*res.steps, *why],
    }


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--only", "only", multiple=True, type=click.Choice(PLAN_ACTIONS), help="show only these actions (repeatable)")
@click.option("--limit", type=click.IntRange(0), default=None, help="show at most N rows of the table (totals always count all)")
@config_option
@database_option
def plan(as_json: bool, only: tuple[str, ...], limit: int | None, config: str, database_url: str | None) -> None:
    """Dry run: each object's current key, canonical key, owning row and action, with totals. Writes nothing."""
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.plan import build_plan

    media_map = _load_map(config)
    url = _need_database(database_url)
    with Database(url) as db, console.status("listing buckets and rows ..."):
        result = build_plan(media_map, S3Adapter(), db)
    items = [i for i in result.items if not only or i.action.value in only]
    if as_json:
        data = result.to_json()
        data["items"] = [d for d in data["items"] if not only or d["action"] in only]
        click.echo(json.dumps(data, ensure_ascii=False, default=str))
        return
    table = Table(title=Text(f"plan for s3://{media_map.buckets.primary} (dry run: nothing written)"), title_justify="left")
    for column in ("key", "canonical key", "owner row", "action", "why"):
        table.add_column(column, overflow="fold")
    for item in items[:limit]:
        owner = f"{item.owner.id} ({item.owner.slug}, by {item.owner.matched_by})" if item.owner else "-"
        table.add_row(*(Text(str(v)) for v in (item.key, item.canonical_key or "-", owner, item.action.value, item.reason)))
    console.print(table)
    if limit is not None and len(items) > limit:
        _say(f"... {len(items) - limit} more (use --limit or --json)")
    totals = result.totals
    shown = ("rename", "link", "mirror", "repair", "ok", "orphan", "missing", "refuse", "skip")
    # rows mediacanon moved that point at a 404 (I1 broken: `mediacanon verify` exits 1): never called "missing"
    broken = ("broken",) if totals.get("broken") else ()
    _say("PLAN | " + " ".join(f"{name}={totals.get(name, 0)}" for name in (*shown, *broken)))


@main.command("verify")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@config_option
@database_option
def verify_command(as_json: bool, config: str, database_url: str | None) -> None:
    """Three-way check, primary x CDN x database. Exit 1 when I1 (never a 404) or I3 (exact mirror) is broken."""
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.ledger import Ledger
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.checks.verify import verify

    media_map = _load_map(config)
    url = _need_database(database_url)
    with Database(url) as db:
        result = verify(media_map, S3Adapter(), db, Ledger(db, media_map.schema))
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, default=str))
    else:
        data = result.to_json()
        sections = (
            ("I1 never a 404 (rows mediacanon moved)", data["i1_never_a_404"]),
            ("I2 delete last", data["i2_delete_last"]),
            ("I3 exact mirror", data["i3_exact_mirror"]),
            ("I5 nothing lost", data["i5_nothing_lost"]),
        )
        for name, section in sections:
            _say(Text.assemble(f"{name}: ", ("ok", "green") if section["ok"] else ("BROKEN", "red")))
            for what, items in section.items():
                if what != "ok" and items:
                    _say(f"  {what}: {len(items)}")
                    for item in items[:20]:
                        _say(f"    {item}")
        _say("reported, not broken (the plan's words: missing and repairable rows pointed at a 404 before mediacanon):")
        for what, items in data["report"].items():
            _say(f"{what.replace('_', ' ')}: {len(items)}" + (f"  e.g. {items[0]}" if items else ""))
        _say(
            "VERIFY | "
            + ("ok" if result.ok else "BROKEN")
            + " | "
            + " ".join(f"{k}={v}" for k, v in {**result.counts, **result.reported}.items())
        )
    sys.exit(0 if result.ok else 1)


@main.command("backfill", cls=_PhasesCommand)
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
@config_option
@database_option
def backfill_command(
    dry_run: bool,
    phases: tuple[str, ...],
    fields: tuple[str, ...],
    max_deletes: int,
    state_machine_arn: str | None,
    timeout: float,
    config: str,
    database_url: str | None,
) -> None:
    """Start a backfill of everything that already exists, show its progress, print its report line."""
    media_map = _load_map(config)
    _check_fields(media_map, fields)
    if state_machine_arn:
        from mediacanon.sfnremote import run_remote

        result = run_remote(
            state_machine_arn,
            dry_run=dry_run,
            phases=list(phases) or None,
            fields=list(fields) or None,
            max_deletes=max_deletes,
            timeout=timeout,
        )
    else:
        from mediacanon.adapters.db import Database
        from mediacanon.adapters.s3 import S3Adapter
        from mediacanon.local.sfnlocal import run_backfill

        url = _need_database(database_url)
        # what the execution's first task would find out, found out before it starts: the database answers, the
        # fields' tables and columns exist, the primary bucket is there
        with Database(url) as db:
            for mapping in media_map.fields:
                if not fields or mapping.name in fields:
                    db.check_field(mapping)
        s3 = S3Adapter()
        for role, name in (("primary", media_map.buckets.primary), ("cdn", media_map.buckets.cdn)):
            try:
                next(iter(s3.iter_objects(name, page_size=1)), None)
            except BucketNotFound:
                _fail(
                    f"the {role} bucket {name!r} is not there (fix: create it, or correct buckets.{role} in {config}; "
                    "`sam deploy` creates both)"
                )
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
        )
    _say(f"execution: {result.execution_arn}  status: {result.status}")
    if result.failed_items:
        _say(Text.assemble((f"{result.failed_items} item(s) failed in map runs", "red"), " (not in the report; see the map run)"))
    for key in result.report_keys:
        _say(f"report: s3://{media_map.buckets.primary}/{key}")
    if result.report_line:
        _say(result.report_line)
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
    """The first `limit` failed items of a backfill's report (its JSON), for the lines printed with its failure."""
    from mediacanon.adapters.s3 import S3Adapter

    key = next((k for k in report_keys if k.endswith(".json")), None)
    if key is None:
        return []
    items = json.loads(S3Adapter().get_bytes(media_map.buckets.primary, key)).get("items", [])
    return [item for item in items if item.get("outcome") == "failed"][:limit]


_FIELD = r'"{}"\s*:\s*("(?:[^"\\]|\\.)*")'


_UNREACHABLE = ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "Could not connect to the endpoint")


def _endpoint_gone(error: str) -> bool:
    """Whether a failed execution failed because its endpoint went away: the task's error says it could not connect,
    and the endpoint (a local emulator) does not answer now either."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not any(text in error for text in _UNREACHABLE):
        return False
    if not endpoint:
        return True
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(endpoint, timeout=2).close()  # noqa: S310 (the configured endpoint, http or https)
    except urllib.error.HTTPError:
        return False  # it answers, if only with an error
    except OSError:
        return True
    return False


def task_error(error: str) -> str:
    """A failed execution's error, one line: `ErrorType: message` of the Lambda error a task failed with, not the
    JSON (its stack trace escaped) that Step Functions carries as the cause; the cause itself for other errors.
    Takes `error: cause` as mediacanon.local.sfnlocal gives it, which may be cut short."""
    from mediacanon.backfill import _child_error

    name, _, cause = error.partition(": ")
    text = _child_error({"Error": name, "Cause": cause})
    if cause.lstrip().startswith("{") and text == f"{name}: {cause}":  # JSON cut short: read the leading fields
        found = {}
        for field in ("errorType", "errorMessage"):
            match = re.search(_FIELD.format(field), cause)
            if match:
                found[field] = json.loads(match.group(1))
        if "errorMessage" in found:
            text = f"{found.get('errorType', name)}: {found['errorMessage']}"
    return _one_line(text)


@main.command("rollback")
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


def _age(ctx: click.Context, param: click.Parameter, value: str) -> Any:
    """`7d`, `36h`, `90m`, `0` -> a timedelta."""
    from datetime import timedelta

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhms]?)\s*", value)
    if not match:
        raise click.BadParameter(f"{value!r} is not an age (fix: e.g. 7d, 36h, 90m or 0)")
    unit = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds", "": "days"}[match.group(2)]
    return timedelta(**{unit: float(match.group(1))})


@main.command("orphans")
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


@main.command("report")
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
    _say(data["line"])


UPLOAD_LISTED = ("invalid", "conflict", "missing", "failed", "unmapped")  # outcomes printed one line each


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # `kill` is cancelled like Ctrl-C: in-flight multipart uploads are aborted


@main.command("upload")
@click.argument("directory", required=False, type=click.Path(path_type=Path))
@click.option(
    "--manifest", type=click.Path(dir_okay=False, path_type=Path), default=None, help="audit CSV: only its passed slugs go in"
)
@click.option("--from-media-root", "media_root", type=click.Path(path_type=Path), default=None,
              help="upload the files rows name that S3 lacks, from this MEDIA_ROOT")  # fmt: skip
@click.option("--dry-run", is_flag=True, help="decide and report, upload nothing")
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="write per-file outcomes to this CSV",
)
@click.option("--workers", type=click.IntRange(1, 64), default=8, show_default=True, help="parallel reads and uploads")
@click.option("--key-prefix", default=None, help="key prefix of the tree's files (default: found from the staging patterns)")
@click.option("--slug-column", default=None, help="manifest column holding the slug (default: the media map's staging_manifest)")
@click.option("--audit-column", default=None, help="manifest column holding the audit verdict")
@click.option("--accept", "accepted", multiple=True, help="an audit value that lets a slug in (repeatable)")
@click.option("--field", "fields", multiple=True, help="--from-media-root: only these field mappings (by name)")
@click.option("--verbose", "-v", is_flag=True, help="print every file's outcome, not only the problems")
@click.option(
    "--show", type=click.IntRange(0), default=10, show_default=True, help="problem lines printed per outcome (all in --report)"
)
@config_option
@database_option
def upload_command(
    directory: Path | None,
    manifest: Path | None,
    media_root: Path | None,
    dry_run: bool,
    report_path: Path | None,
    workers: int,
    key_prefix: str | None,
    slug_column: str | None,
    audit_column: str | None,
    accepted: tuple[str, ...],
    fields: tuple[str, ...],
    verbose: bool,
    show: int,
    config: str,
    database_url: str | None,
) -> None:
    """Upload a local staging tree (DIRECTORY, with --manifest) or MEDIA_ROOT files rows name (--from-media-root)
    into the primary bucket; the live path then canonicalizes, mirrors and links them. Never overwrites or deletes."""
    import dataclasses
    import signal

    import boto3
    from botocore.config import Config
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mediacanon import upload
    from mediacanon.adapters.s3 import S3Adapter

    if (directory is None) == (media_root is None):
        _fail("pass a staging DIRECTORY or --from-media-root PATH (exactly one)", EXIT_USAGE)
    if media_root is not None and manifest is not None:
        _fail("--manifest applies to a staging DIRECTORY, not to --from-media-root", EXIT_USAGE)
    if directory is not None and not directory.is_dir():
        raise click.BadParameter(
            f"{upload.display_path(directory)} is {'not a folder' if directory.exists() else 'not there'} "
            "(fix: pass the folder holding the staging tree, e.g. the one holding downloads/)",
            param_hint="'DIRECTORY'",
        )
    if manifest is not None and not manifest.is_file():
        raise click.BadParameter(
            f"{upload.display_path(manifest)} is {'not a file' if manifest.exists() else 'not there'} "
            "(fix: pass the path of the audit CSV)",
            param_hint="'--manifest'",
        )
    if media_root is not None and not media_root.is_dir():
        raise click.BadParameter(
            f"MEDIA_ROOT {upload.display_path(media_root)} is {'not a folder' if media_root.exists() else 'not there'} "
            "(fix: pass Django's settings.MEDIA_ROOT)",
            param_hint="'--from-media-root'",
        )
    media_map = _load_map(config)
    _check_fields(media_map, fields)
    url = use_endpoints(database_url)
    # one connection per worker for the HEADs and as many for the transfer manager's parts
    s3 = S3Adapter(boto3.client("s3", config=Config(max_pool_connections=2 * workers + 2)))
    early: list[upload.Item]
    try:
        if directory is not None:
            parsed = None
            if manifest is not None:
                settings = media_map.staging_manifest
                settings = dataclasses.replace(
                    settings,
                    slug_column=slug_column or settings.slug_column,
                    audit_column=audit_column or settings.audit_column,
                    accepted=tuple(accepted) or settings.accepted,
                )
                parsed = upload.read_manifest(manifest, settings)
                if not parsed.usable:  # no slug could pass: nothing would be uploaded
                    raise click.BadParameter(
                        "; ".join(f"{p.source}: {p.reason}" for p in parsed.problems), param_hint="'--manifest'"
                    )
            early, tasks, prefix = upload.staging_tasks(media_map, s3, directory, manifest=parsed, key_prefix=key_prefix)
            what = f"{directory} -> s3://{media_map.buckets.primary}/{prefix}"
        else:
            assert media_root is not None
            if not url:
                _fail(
                    "--from-media-root reads the rows: set DATABASE_URL, pass --database-url, or run `mediacanon local up`",
                    EXIT_USAGE,
                )
            from mediacanon.adapters.db import Database

            with Database(_check_database_url(url)) as db:
                early, tasks = upload.media_root_tasks(media_map, s3, db, media_root, fields=fields)
            what = f"{media_root} (MEDIA_ROOT) -> s3://{media_map.buckets.primary}"
    except MediacanonError as exc:
        _fail(describe_error(exc) or str(exc))
    # a staging tree none of whose files a staging pattern names: wrong folder, wrong --key-prefix, or empty
    nothing_named = directory is not None and not tasks and not any(i.outcome == upload.Outcome.NOT_AUDITED for i in early)

    report = upload.CsvReport(report_path) if report_path else None
    progress = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[sent]}"),
        TimeElapsedColumn(), console=console, disable=not console.is_terminal,
    )  # fmt: skip
    bar = progress.add_task(("dry run " if dry_run else "uploading ") + what, total=len(tasks), sent="")
    sent = 0
    shown: Counter[str] = Counter()

    def on_item(item: upload.Item) -> None:
        if report:
            report.write(item)
        if verbose or item.outcome.value in UPLOAD_LISTED:
            shown[item.outcome.value] += 1
            if verbose or shown[item.outcome.value] <= show:
                line = f"{item.outcome.value}: {item.source}: {item.reason}"
                progress.console.print(line, highlight=False, markup=False, emoji=False, soft_wrap=True)

    def on_bytes(n: int) -> None:
        nonlocal sent
        sent += n
        progress.update(bar, sent=f"{sent / 1e6:.1f} MB")

    uploader = upload.Uploader(
        s3,
        media_map.buckets.primary,
        workers=workers,
        dry_run=dry_run,
        on_item=on_item,
        on_bytes=on_bytes,
        on_task_done=lambda: progress.advance(bar),
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with progress:
            for item in early:
                uploader.emit(item)
            summary = uploader.run(tasks)
    except KeyboardInterrupt:
        _say(uploader.summary.line)
        _fail("interrupted: what landed stays; run the same command again to resume", code=130)
    except MediacanonError as exc:
        _fail(describe_error(exc) or str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
        if report:
            report.close()
    for outcome, n in sorted(shown.items()):
        if not verbose and n > show:
            more = f"see {report_path}" if report_path else "pass --report FILE or --show N to see them"
            _say(f"... {n - show} more {outcome} ({more})")
    if report_path:
        _say(f"report: {report_path}")
    _say(summary.line)
    if nothing_named:
        assert directory is not None
        _fail(
            f"nothing to upload: no file under {upload.display_path(directory)} is named by a staging pattern "
            f"({', '.join(p for f in media_map.fields for p in f.staging) or 'the media map has none'}; key prefix "
            f"{prefix!r}) (fix: pass the folder holding the staging tree, or --key-prefix)"
        )
    sys.exit(0 if summary.ok else EXIT_FAILED)


@main.group()
def db() -> None:
    """The Django database: what mediacanon needs there."""


@db.command("grants")
@config_option
@click.option("--role", default="mediacanon", show_default=True, help="the functions' database role (the secret's username)")
@click.option("--database", default=None, help="also GRANT CONNECT on this database (where PUBLIC has lost it)")
@click.option("--django-schema", default="public", show_default=True, help="the schema holding Django's tables")
def db_grants(config: str, role: str, database: str | None, django_schema: str) -> None:
    """Print the least-privilege SQL for the functions' role: SELECT on the mapped tables, UPDATE on the mapped
    file columns only, mediacanon's own schema. Pipe it to psql as the database owner."""
    from mediacanon.adapters.grants import grants_script

    media_map = _load_map(config)
    try:
        script = grants_script(media_map, role, database=database, django_schema=django_schema)
    except ValueError as exc:
        _fail(str(exc))
    click.echo(script, nl=False)


@main.group()
def local() -> None:
    """The embedded default: a moto server and an embedded PostgreSQL on this machine."""


@local.command("up")
@click.option("--fresh", is_flag=True, help="stop and wipe the previous local stack first (its buckets and database)")
@click.option("--template", default="template.yaml", show_default=True, type=click.Path(dir_okay=False))
@config_option
def local_up(fresh: bool, template: str, config: str) -> None:
    """Start (or reuse) the moto server and PostgreSQL; create template.yaml's buckets, rules and queues on it."""
    import shutil

    from mediacanon.local import embedded, localrun

    if fresh and _state_dir().exists():
        embedded.down(_state_dir())
        shutil.rmtree(_state_dir())
    watched = None
    if Path(config).exists():  # where the database names objects: the media map's file columns and the ledger
        media_map = _load_map(config)
        watched = embedded.Watched(tuple((m.table, m.column) for m in media_map.fields), (media_map.schema,))
    try:
        endpoints = embedded.up(_state_dir(), watched=watched)
    except embedded.StackLostError as exc:
        _fail(str(exc))
    console.print(f"AWS_ENDPOINT_URL={endpoints.endpoint_url}\nDATABASE_URL={endpoints.database_url}", highlight=False)
    if Path(config).exists():
        use_endpoints()
        stack = localrun.provision_media_map(_load_map(config), template, endpoint_url=endpoints.endpoint_url)
        console.print(
            f"provisioned from {template}: buckets {', '.join(stack.buckets)}; queues {', '.join(stack.queue_urls)}",
            highlight=False,
        )
    else:
        console.print(f"no media map at {config}: buckets and queues not provisioned (pass --config)", highlight=False)


@local.command("run")
@click.option("--until-idle/--follow", default=True, help="stop when the queues are empty, or keep polling")
@click.option("--timeout", type=float, default=None, help="seconds (default 600 with --until-idle, none with --follow)")
@click.option("--owner-wait", type=float, default=3.0, show_default=True, help="seconds an upload waits for its row")
@click.option("--retry-delay", type=int, default=1, show_default=True, help="seconds before a failed record returns")
@click.option("--template", default="template.yaml", show_default=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--progress-every",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="seconds between two progress lines on stderr when it is not a terminal (a terminal gets a live status line)",
)
@config_option
@database_option
def local_run(
    until_idle: bool,
    timeout: float | None,
    owner_wait: float,
    retry_delay: int,
    template: str,
    progress_every: float,
    config: str,
    database_url: str | None,
) -> None:
    """Feed the live path's queues to the three handlers, in this process, as Lambda's SQS event sources would."""
    from mediacanon.local import localrun

    url = use_endpoints(database_url)
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not url or not endpoint:  # never provision or poll a real account from here
        _fail("the local stack is not up: run `mediacanon local up`")
    stack = localrun.provision_media_map(_load_map(config), template, endpoint_url=endpoint)  # idempotent
    # the handlers' structured logs, EMF metrics and warnings go where CloudWatch would keep them: a file, not the
    # terminal (localrun routes them there, Powertools' logger handlers included); progress goes to stderr
    _state_dir().mkdir(parents=True, exist_ok=True)
    log_path = _state_dir() / "lambda-logs.jsonl"
    try:
        with log_path.open("a", encoding="utf-8") as log:
            report = localrun.run(
                stack,
                config=config,
                database_url=url,
                owner_wait=owner_wait,
                until_idle=until_idle,
                timeout=timeout if timeout is not None else (600.0 if until_idle else None),
                retry_delay=retry_delay,
                log=log,
                progress_every=progress_every,
            )
    except localrun.IdleTimeout as exc:
        console.print(exc.report.line, highlight=False)
        _fail(str(exc))
    except ValueError as exc:
        _fail(str(exc))
    finally:
        localrun.shutdown()
    console.print(f"handler logs and metrics: {log_path}", highlight=False)
    rows = report.table()
    width = max(len(name) for name, _, _ in rows)
    for name, n, meaning in rows:
        console.print(f"  {name:<{width}} {n:>6}  {meaning}", highlight=False)
    console.print(report.line, highlight=False)
    sys.exit(1 if report.failed else 0)


@local.command("down")
def local_down() -> None:
    """Stop what `local up` started."""
    from mediacanon.local import embedded

    embedded.down(_state_dir())
    console.print("stopped")


@local.command("status")
def local_status() -> None:
    """Show what runs and where."""
    from mediacanon.local import embedded

    console.print_json(data=embedded.status(_state_dir()))


@local.command("env")
def local_env() -> None:
    """Print `export` lines for the running local stack (eval "$(mediacanon local env)")."""
    local_state = _local_endpoints()
    if not local_state:
        _fail("the local stack is not up: run `mediacanon local up`")
    click.echo(f"export AWS_ENDPOINT_URL={local_state['endpoint_url']}")
    click.echo(f"export DATABASE_URL='{local_state['database_url']}'")
    click.echo("export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1")
