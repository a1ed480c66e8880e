"""`manage.py generate_archive --count 300 --seed 42 [--json manifest.json] [--reset]`

Creates the media mess mediacanon has to clean, the way a real archive accumulates it: files saved through
the model fields (django-storages, collision suffixes included), staging folders and legacy copies put with
boto3, rows pointing at missing keys, orphans, per-tenant prefixes and keys that must be refused.
Deterministic for a seed on an empty stack; the manifest lists every object with its kind of mess.
"""

from __future__ import annotations

import hashlib
import json
import mimetypes
import sys
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from rich.console import Console
from rich.table import Table
from storages.backends.s3 import S3Storage

from archive_site.archive import mess
from archive_site.archive.models import PublicationSource
from archive_site.tenants.models import TenantPublication


class Command(BaseCommand):
    help = "Generate the sample archive's messy media (S3) and rows (database), deterministically for a seed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--count", type=int, default=300, help="number of publications (default 300)")
        parser.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
        parser.add_argument("--json", dest="json_path", default=None, help="write the manifest (every object and its kind) here")
        parser.add_argument("--reset", action="store_true", help="first delete the sample's rows and empty its three buckets")

    def handle(self, *args: Any, count: int, seed: int, json_path: str | None, reset: bool, **options: Any) -> None:
        if count < 1:
            raise CommandError("--count must be at least 1")
        self.s3 = boto3.client("s3", endpoint_url=settings.AWS_S3_ENDPOINT_URL, region_name=settings.AWS_S3_REGION_NAME)
        self.buckets = {mess.PRIMARY: settings.PRIMARY_BUCKET, mess.LEGACY: settings.LEGACY_BUCKET, "cdn": settings.CDN_BUCKET}
        plan = mess.build(seed, count)
        for bucket in self.buckets.values():
            self._ensure_bucket(bucket)
        if reset:
            self._reset()
        elif self._already_there(plan):
            return
        with transaction.atomic(), mock.patch("django.core.files.storage.base.get_random_string", mess.suffix_source(seed)):
            manifest = self._apply(plan)
        self._print_summary(manifest)
        if json_path:
            Path(json_path).write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            self.stdout.write(f"manifest: {json_path}")

    # ------------------------------------------------------------------------------------------ state

    def _ensure_bucket(self, bucket: str) -> None:
        try:
            self.s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
            region = settings.AWS_S3_REGION_NAME
            extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            self.s3.create_bucket(Bucket=bucket, **extra)

    def _keys(self, bucket: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def _already_there(self, plan: mess.Plan) -> bool:
        """True when this plan's archive is already generated; an error when the stack holds something else."""
        rows = {(None, s) for s in PublicationSource.objects.values_list("slug", flat=True)}
        rows |= set(TenantPublication.objects.values_list("tenant", "slug"))
        in_buckets = {
            role: bool(self.s3.list_objects_v2(Bucket=self.buckets[role], MaxKeys=1).get("KeyCount"))
            for role in (mess.PRIMARY, mess.LEGACY)
        }
        if not rows and not any(in_buckets.values()):
            return False
        wanted = {(r.tenant, r.slug) for r in plan.rows}
        if rows == wanted and in_buckets[mess.PRIMARY]:
            self.stdout.write(
                f"the archive of seed {plan.seed}, count {plan.count} is already generated: nothing to do "
                "(--reset regenerates it from scratch)"
            )
            return True
        where = ", ".join(
            [f"{len(rows)} rows"] * bool(rows) + [f"objects in {self.buckets[r]}" for r, v in in_buckets.items() if v]
        )
        raise CommandError(
            f"the stack is not empty and holds another archive ({where}); "
            "pass --reset to delete the sample's rows and empty its buckets first"
        )

    def _reset(self) -> None:
        PublicationSource.objects.all().delete()
        TenantPublication.objects.all().delete()
        for bucket in self.buckets.values():
            keys = self._keys(bucket)
            for i in range(0, len(keys), 1000):
                self.s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True})

    # ------------------------------------------------------------------------------------------ apply

    def _apply(self, plan: mess.Plan) -> dict[str, Any]:
        pubs = {r.slug: PublicationSource.objects.create(slug=r.slug, name=r.name) for r in plan.rows if r.model == "publication"}
        tenants = {
            (r.tenant, r.slug): TenantPublication.objects.create(tenant=r.tenant, slug=r.slug)
            for r in plan.rows
            if r.model == "tenant"
        }
        tenant_storages: dict[str, S3Storage] = {}
        objects = []
        for obj in plan.objects:
            body = obj.raw if obj.raw is not None else mess.render(obj.image) if obj.image else None
            column = _column(obj.field)
            if obj.how == "django":  # exactly what a form or admin upload does
                instance = pubs[obj.slug]
                getattr(instance, column).save(obj.name, ContentFile(body), save=True)
                obj.key = getattr(instance, column).name
            elif obj.how == "storage":  # a tenant's upload: its django-storages location is "<tenant>/"
                instance = tenants[(obj.tenant, obj.slug)]
                storage = tenant_storages.setdefault(obj.tenant, S3Storage(location=obj.tenant))
                fieldfile = instance.icon
                fieldfile.storage = storage
                fieldfile.save(obj.name, ContentFile(body), save=True)
                obj.key = f"{obj.tenant}/{fieldfile.name}"
            elif obj.how == "boto3":  # scripts, scrapers, the old site: straight into the bucket
                content_type = mimetypes.guess_type(obj.name)[0] or "application/octet-stream"
                self.s3.put_object(Bucket=self.buckets[obj.bucket], Key=obj.name, Body=body, ContentType=content_type)
                obj.key = obj.name
            else:  # "none": the row points at a key that was never there
                obj.key = f"{obj.tenant}/{obj.name}" if obj.tenant else obj.name
            if obj.referenced and obj.how in ("boto3", "none"):
                # the column value is the key without the tenant location; set on the instance, which later
                # FieldFile.save(save=True) calls save in full
                instance = tenants[(obj.tenant, obj.slug)] if obj.tenant else pubs[obj.slug]
                setattr(instance, column, obj.name)
                instance.save(update_fields=[column])
            objects.append(_describe(obj, body))
        for row in plan.rows:
            # rows left without a file: NULL or "" (both happen: Django's own saves write "", SQL imports NULL);
            # last, as no instance is saved after this
            if row.empty:
                PublicationSource.objects.filter(slug=row.slug).update(**row.empty)
        return self._manifest(plan, objects)

    def _manifest(self, plan: mess.Plan, objects: list[dict[str, Any]]) -> dict[str, Any]:
        rows: list[dict[str, Any]] = [
            {
                "table": "archive_publicationsource",
                "tenant": None,
                "slug": p.slug,
                "name": p.name,
                "icon": p.icon.name,
                "masthead": p.masthead.name,
            }
            for p in PublicationSource.objects.order_by("id")
        ]
        rows += [
            {
                "table": "tenants_tenantpublication",
                "tenant": t.tenant,
                "slug": t.slug,
                "name": t.slug,
                "icon": t.icon.name,
                "masthead": None,
            }
            for t in TenantPublication.objects.order_by("id")
        ]
        counts = Counter(o["kind"] for o in objects)
        return {
            "seed": plan.seed,
            "count": plan.count,
            "buckets": dict(self.buckets),
            "kinds": {
                kind: {"objects": counts.get(kind, 0), "resolvable": ok, "what": what} for kind, (what, ok) in mess.KINDS.items()
            },
            "rows": rows,
            "objects": objects,
        }

    # ------------------------------------------------------------------------------------------ report

    def _print_summary(self, manifest: dict[str, Any]) -> None:
        console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 160, highlight=False)
        table = Table(title=f"Global Publication Archive: the mess (seed {manifest['seed']}, count {manifest['count']})")
        table.add_column("kind")
        table.add_column("objects", justify="right")
        table.add_column("rows point at it", justify="right")
        table.add_column("name resolves", justify="center")
        table.add_column("what")
        referenced = Counter(o["kind"] for o in manifest["objects"] if o["referenced"])
        for kind, info in manifest["kinds"].items():
            table.add_row(
                kind, str(info["objects"]), str(referenced.get(kind, 0)), "yes" if info["resolvable"] else "-", info["what"]
            )
        total = len(manifest["objects"])
        table.add_row("total", str(total), str(sum(referenced.values())), "", "", style="bold")
        console.print(table)
        rows = manifest["rows"]
        empty = sum(1 for r in rows for c in ("icon", "masthead") if r["table"].startswith("archive") and not r[c])
        console.print(
            f"rows: {sum(r['table'] == 'archive_publicationsource' for r in rows)} archive_publicationsource, "
            f"{sum(r['table'] == 'tenants_tenantpublication' for r in rows)} tenants_tenantpublication; "
            f"{empty} empty icon/masthead columns",
            soft_wrap=True,
        )
        console.print("buckets: " + ", ".join(f"{k}={v}" for k, v in manifest["buckets"].items()), soft_wrap=True)


def _column(field_name: str | None) -> str:
    return field_name.rsplit(".", 1)[-1] if field_name else ""


def _describe(obj: mess.ObjectPlan, body: bytes | None) -> dict[str, Any]:
    return {
        "key": obj.key,
        "bucket": obj.bucket,  # "primary", "legacy" or None (no bucket holds it); names under "buckets"
        "kind": obj.kind,
        "field": obj.field,
        "slug": obj.slug,
        "tenant": obj.tenant,
        "referenced": obj.referenced,
        "size": len(body) if body is not None and obj.bucket else None,
        "md5": hashlib.md5(body).hexdigest() if body is not None and obj.bucket else None,  # noqa: S324 - S3's ETag
    }
