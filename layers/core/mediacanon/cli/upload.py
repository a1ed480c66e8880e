"""The upload command: a local staging tree or MEDIA_ROOT into the primary bucket."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import click

from mediacanon.cli.errors import describe_error
from mediacanon.cli.options import _check_database_url, _check_fields, _load_map, config_option, database_option, use_endpoints
from mediacanon.cli.output import EXIT_FAILED, EXIT_USAGE, _fail, _say, console
from mediacanon.core.errors import MediacanonError

UPLOAD_LISTED = ("invalid", "conflict", "missing", "failed", "unmapped")  # outcomes printed one line each


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # `kill` is cancelled like Ctrl-C: in-flight multipart uploads are aborted


@click.command("upload")
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
