"""What only the tests use, kept out of the library (and so out of the Lambda layer): the adapters' and the naming
core's conveniences that no product code calls."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from mediacanon.adapters.db import Database, Row
from mediacanon.adapters.s3 import S3Adapter
from mediacanon.core import naming
from mediacanon.core.errors import PreconditionFailed
from mediacanon.core.mediamap import FieldMapping

if TYPE_CHECKING:
    from mypy_boto3_s3.literals import BucketLocationConstraintType


def put_if_absent(
    adapter: S3Adapter,
    bucket: str,
    key: str,
    body: bytes,
    metadata: dict[str, str] | None = None,
    content_type: str | None = None,
) -> bool:
    """Create the object only if the key is free (If-None-Match: *); False when it already exists."""
    from mediacanon.adapters.s3 import translate_error

    extra: dict[str, Any] = {"Metadata": metadata or {}}
    if content_type is not None:
        extra["ContentType"] = content_type
    try:
        adapter.client.put_object(Bucket=bucket, Key=key, Body=body, IfNoneMatch="*", **extra)
    except ClientError as exc:
        if isinstance(translate_error(exc, f"put-if-absent s3://{bucket}/{key}"), PreconditionFailed):
            return False
        raise
    return True


def ensure_bucket(adapter: S3Adapter, bucket: str) -> None:
    """Create the bucket unless it exists."""
    client = adapter.client
    try:
        client.head_bucket(Bucket=bucket)
        return
    except ClientError as exc:
        if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") != 404:
            raise
    region = client.meta.region_name
    if region in (None, "us-east-1"):
        client.create_bucket(Bucket=bucket)
    else:
        location = cast("BucketLocationConstraintType", region)
        client.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": location})


def find_owner(db: Database, mapping: FieldMapping, value: str, slug: str, tenant: str | None = None) -> Row | None:
    """The row referencing `value`, else the row with `slug`."""
    for row in db.rows_referencing(mapping, [value]).get(value, []):
        if tenant is None or row.tenant == tenant:
            return row
    return db.rows_by_slug(mapping, [slug], tenant=tenant).get(slug)


def canonical_for_slug(res: naming.Resolution, slug: str) -> str:
    """The canonical key the resolved key's field gives `slug` (with the resolved key's tenant and extension)."""
    return naming.location_for(res.field, res.tenant) + res.field.canonical.format(slug=slug, ext=res.ext)


def load_test_module(name: str, path: Path) -> Any:
    """A test module or helper by its path (tests/ is not a package), registered under `name` as dataclasses need;
    loaded once."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
