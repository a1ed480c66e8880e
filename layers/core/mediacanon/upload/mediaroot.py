"""MEDIA_ROOT: the files rows name that the primary bucket lacks, uploaded from Django's local MEDIA_ROOT under
the very key the row names. A row whose file is nowhere is reported, never cleared."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig

from mediacanon.core import naming
from mediacanon.core.errors import UnsafeKeyError
from mediacanon.core.mediamap import FieldMapping, MediaMap
from mediacanon.upload.fingerprints import fingerprint
from mediacanon.upload.outcomes import BadInput, Item, Outcome
from mediacanon.upload.uploader import Decision, checked, decide_upload

if TYPE_CHECKING:
    from mediacanon.adapters.db import Database
    from mediacanon.adapters.s3 import S3Adapter


def media_root_path(mapping: FieldMapping, value: str, tenant: str | None) -> str:
    """Where Django's FileSystemStorage keeps a column value under MEDIA_ROOT: the value itself, behind the
    tenant's folder for a per-tenant location (the storage's S3 `location` prefix is MEDIA_ROOT's stand-in)."""
    return (naming.location_for(mapping, tenant) if mapping.tenant_scoped else "") + value


def media_root_tasks(
    media_map: MediaMap,
    s3: S3Adapter,
    db: Database,
    media_root: Path,
    *,
    fields: Sequence[str] = (),
    transfer_config: TransferConfig | None = None,
) -> tuple[list[Item], list[Callable[[], list[Decision]]]]:
    """One task per key some row names (several rows may name one key): upload it from MEDIA_ROOT if S3 lacks it."""
    config = transfer_config or TransferConfig()
    bucket = media_map.buckets.primary
    early: list[Item] = []
    tasks: list[Callable[[], list[Decision]]] = []
    seen: set[str] = set()
    for mapping in media_map.fields:
        if fields and mapping.name not in fields:
            continue
        db.check_field(mapping)
        for row in db.iter_rows(mapping):
            if not row.value:
                continue
            where = f"{mapping.table}.{mapping.column} row {row.id}"
            key = naming.key_for_value(mapping, row.value, row.tenant)
            rel = media_root_path(mapping, row.value, row.tenant)
            local = str(media_root / rel)
            try:
                naming.check_key(key)
                naming.check_key(rel)  # no '..' out of MEDIA_ROOT
            except UnsafeKeyError as exc:
                reason = f"{exc.reason} (fix: correct the row in Django)"
                early.append(Item(f"{where}: {row.value!r}", Outcome.INVALID, reason, key=key, field=mapping.name, slug=row.slug))
                continue
            if key in seen:
                continue
            seen.add(key)
            base = Item(local, Outcome.UPLOADED, f"named by {where}", key=key, field=mapping.name, slug=row.slug)
            tasks.append(_media_root_task(s3, bucket, local, key, base, config, media_map.buckets.fallbacks))
    return early, tasks


def _media_root_task(
    s3: S3Adapter, bucket: str, local: str, key: str, base: Item, config: TransferConfig, fallbacks: Sequence[str] = ()
) -> Callable[[], list[Decision]]:
    def check() -> list[Decision]:
        return [checked(decide, base)]

    def decide() -> Decision:
        head = s3.head(bucket, key)
        if head is not None:
            return replace(base, outcome=Outcome.PRESENT, reason=f"already in the primary bucket ({base.reason})", size=head.size)
        try:
            st = os.stat(local)
        except FileNotFoundError:
            # a read-only fallback bucket holding the key is where the backfill's rows phase copies it in from
            fallback = next((b for b in fallbacks if s3.head(b, key) is not None), None)
            if fallback is not None:
                reason = (
                    f"{base.reason}: not in MEDIA_ROOT, but the read-only fallback s3://{fallback} holds it; the row is "
                    "left as it is (fix: run `mediacanon backfill`: it copies the file in from there)"
                )
            else:
                reason = f"{base.reason}: neither S3 nor MEDIA_ROOT holds it; the row is left as it is (fix: restore the file, or clear the row in Django)"
            return replace(base, outcome=Outcome.MISSING, reason=reason)
        except OSError as exc:
            reason = "symlink loop" if exc.errno == errno.ELOOP else f"cannot be read: {exc.strerror}"
            return replace(base, outcome=Outcome.INVALID, reason=f"{reason} ({base.reason})")
        if stat.S_ISDIR(st.st_mode):
            return replace(base, outcome=Outcome.INVALID, reason=f"is a folder, not a file ({base.reason}; fix: correct the row)")
        try:
            fp = fingerprint(local, config)
        except BadInput as exc:
            return replace(base, outcome=Outcome.INVALID, reason=f"{exc} ({base.reason})")
        # the row already names this key, so nothing canonical is looked for: the live path renames it next
        return decide_upload(s3, bucket, local, key, fp, None, base)

    return check
