"""The upload command: a local staging tree or MEDIA_ROOT into the primary bucket."""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mediacanon.cli.errors import describe_error
from mediacanon.cli.options import _check_database_url, _check_fields, _load_map, config_option, database_option, use_endpoints
from mediacanon.cli.output import EXIT_FAILED, EXIT_USAGE, _fail, _say, console
from mediacanon.core.errors import MediacanonError

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter
    from mediacanon.core.mediamap import MediaMap, StagingManifest
    from mediacanon.upload import Item, Summary
    from mediacanon.upload.uploader import Decision

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
    import boto3
    from botocore.config import Config

    from mediacanon.adapters.s3 import S3Adapter

    _check_inputs(directory, manifest, media_root)
    media_map = _load_map(config)
    _check_fields(media_map, fields)
    url = use_endpoints(database_url)
    # one connection per worker for the HEADs and as many for the transfer manager's parts
    s3 = S3Adapter(boto3.client("s3", config=Config(max_pool_connections=2 * workers + 2)))
    try:
        if directory is not None:
            settings = _manifest_settings(media_map, slug_column, audit_column, accepted)
            planned = _staging(media_map, s3, directory, manifest, settings, key_prefix)
        else:
            assert media_root is not None
            planned = _media_root(media_map, s3, media_root, url, fields)
    except MediacanonError as exc:
        _fail(describe_error(exc) or str(exc))
    listing = _Listing(verbose, show, report_path)
    summary = _run(s3, media_map, planned, listing, workers=workers, dry_run=dry_run)
    listing.print_more()
    _say(summary.line)
    if directory is not None and planned.nothing_named:
        _fail(
            f"nothing to upload: no file under {_display(directory)} is named by a staging pattern "
            f"({', '.join(p for f in media_map.fields for p in f.staging) or 'the media map has none'}; key prefix "
            f"{planned.prefix!r}) (fix: pass the folder holding the staging tree, or --key-prefix)"
        )
    sys.exit(0 if summary.ok else EXIT_FAILED)


def _display(path: Path) -> str:
    from mediacanon import upload

    return upload.display_path(path)


def _check_inputs(directory: Path | None, manifest: Path | None, media_root: Path | None) -> None:
    """The command's usage mistakes (exit 2), before anything is read."""
    if (directory is None) == (media_root is None):
        _fail("pass a staging DIRECTORY or --from-media-root PATH (exactly one)", EXIT_USAGE)
    if media_root is not None and manifest is not None:
        _fail("--manifest applies to a staging DIRECTORY, not to --from-media-root", EXIT_USAGE)
    if directory is not None and not directory.is_dir():
        raise click.BadParameter(
            f"{_display(directory)} is {'not a folder' if directory.exists() else 'not there'} "
            "(fix: pass the folder holding the staging tree, e.g. the one holding downloads/)",
            param_hint="'DIRECTORY'",
        )
    if manifest is not None and not manifest.is_file():
        raise click.BadParameter(
            f"{_display(manifest)} is {'not a file' if manifest.exists() else 'not there'} (fix: pass the path of the audit CSV)",
            param_hint="'--manifest'",
        )
    if media_root is not None and not media_root.is_dir():
        raise click.BadParameter(
            f"MEDIA_ROOT {_display(media_root)} is {'not a folder' if media_root.exists() else 'not there'} "
            "(fix: pass Django's settings.MEDIA_ROOT)",
            param_hint="'--from-media-root'",
        )


def _manifest_settings(
    media_map: MediaMap, slug_column: str | None, audit_column: str | None, accepted: tuple[str, ...]
) -> StagingManifest:
    """The media map's staging_manifest, with what the options override."""
    settings = media_map.staging_manifest
    return dataclasses.replace(
        settings,
        slug_column=slug_column or settings.slug_column,
        audit_column=audit_column or settings.audit_column,
        accepted=tuple(accepted) or settings.accepted,
    )


@dataclass
class _Planned:
    """What an upload will do: the items decided before any transfer (`early`), the transfers, and what it says."""

    early: list[Item]
    tasks: list[Callable[[], list[Decision]]]
    what: str
    prefix: str = ""
    nothing_named: bool = False


def _staging(
    media_map: MediaMap, s3: S3Adapter, directory: Path, manifest: Path | None, settings: StagingManifest, key_prefix: str | None
) -> _Planned:
    from mediacanon import upload

    parsed = None
    if manifest is not None:
        parsed = upload.read_manifest(manifest, settings)
        if not parsed.usable:  # no slug could pass: nothing would be uploaded
            raise click.BadParameter("; ".join(f"{p.source}: {p.reason}" for p in parsed.problems), param_hint="'--manifest'")
    early, tasks, prefix = upload.staging_tasks(media_map, s3, directory, manifest=parsed, key_prefix=key_prefix)
    # a staging tree none of whose files a staging pattern names: wrong folder, wrong --key-prefix, or empty
    nothing_named = not tasks and not any(i.outcome == upload.Outcome.NOT_AUDITED for i in early)
    return _Planned(early, tasks, f"{directory} -> s3://{media_map.buckets.primary}/{prefix}", prefix, nothing_named)


def _media_root(media_map: MediaMap, s3: S3Adapter, media_root: Path, url: str | None, fields: tuple[str, ...]) -> _Planned:
    from mediacanon import upload
    from mediacanon.adapters.db import Database

    if not url:
        _fail("--from-media-root reads the rows: set DATABASE_URL, pass --database-url, or run `mediacanon local up`", EXIT_USAGE)
    with Database(_check_database_url(url)) as db:
        early, tasks = upload.media_root_tasks(media_map, s3, db, media_root, fields=fields)
    return _Planned(early, tasks, f"{media_root} (MEDIA_ROOT) -> s3://{media_map.buckets.primary}")


class _Listing:
    """The per-file lines: every outcome with --verbose, else the problems, `show` per outcome; all in --report."""

    def __init__(self, verbose: bool, show: int, report_path: Path | None) -> None:
        from mediacanon import upload

        self.verbose, self.show, self.report_path = verbose, show, report_path
        self.report = upload.CsvReport(report_path) if report_path else None
        self.shown: Counter[str] = Counter()

    def item(self, item: Item, progress: Any) -> None:
        if self.report:
            self.report.write(item)
        if self.verbose or item.outcome.value in UPLOAD_LISTED:
            self.shown[item.outcome.value] += 1
            if self.verbose or self.shown[item.outcome.value] <= self.show:
                line = f"{item.outcome.value}: {item.source}: {item.reason}"
                progress.console.print(line, highlight=False, markup=False, emoji=False, soft_wrap=True)

    def close(self) -> None:
        if self.report:
            self.report.close()

    def print_more(self) -> None:
        for outcome, n in sorted(self.shown.items()):
            if not self.verbose and n > self.show:
                more = f"see {self.report_path}" if self.report_path else "pass --report FILE or --show N to see them"
                _say(f"... {n - self.show} more {outcome} ({more})")
        if self.report_path:
            _say(f"report: {self.report_path}")


def _run(s3: S3Adapter, media_map: MediaMap, planned: _Planned, listing: _Listing, *, workers: int, dry_run: bool) -> Summary:
    """The transfers under a progress bar; Ctrl-C or `kill` stops them, and what landed stays."""
    import signal

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from mediacanon import upload

    progress = Progress(
        TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[sent]}"),
        TimeElapsedColumn(), console=console, disable=not console.is_terminal,
    )  # fmt: skip
    bar = progress.add_task(("dry run " if dry_run else "uploading ") + planned.what, total=len(planned.tasks), sent="")
    sent = 0

    def on_bytes(n: int) -> None:
        nonlocal sent
        sent += n
        progress.update(bar, sent=f"{sent / 1e6:.1f} MB")

    uploader = upload.Uploader(
        s3,
        media_map.buckets.primary,
        workers=workers,
        dry_run=dry_run,
        on_item=lambda item: listing.item(item, progress),
        on_bytes=on_bytes,
        on_task_done=lambda: progress.advance(bar),
    )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        with progress:
            for item in planned.early:
                uploader.emit(item)
            return uploader.run(planned.tasks)
    except KeyboardInterrupt:
        _say(uploader.summary.line)
        _fail("interrupted: what landed stays; run the same command again to resume", code=130)
    except MediacanonError as exc:
        _fail(describe_error(exc) or str(exc))
    finally:
        signal.signal(signal.SIGTERM, previous)
        listing.close()
