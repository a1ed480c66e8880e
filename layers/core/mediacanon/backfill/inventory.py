"""An S3 Inventory as the objects phase's item source, for buckets where listing is slower than the inventory's lag.

How the state machine and the CLI use it (the wiring; this module changes neither):

- CLI: ``mediacanon backfill --inventory s3://inventory-bucket/prefix/primary/config/2026-12-01T00-00Z/manifest.json``
  puts ``{"inventory": "s3://..."}`` (``--inventory-max-age`` days: ``"inventoryMaxAgeDays"``) into the execution
  input; without the option the objects phase lists the bucket, as before.

- Prepare: when the input has ``inventory``, ``bucket, key = split_s3_uri(given["inventory"])``, then
  ``inv = read_manifest(steps.s3, bucket, key, primary_bucket=media_map.buckets.primary, max_age=...)`` fails the
  execution before any batch runs if the manifest is not one Step Functions can read for this bucket (not CSV, of
  another bucket, without Size or ETag, too old), and ``plan_entry(inv, now)`` goes into Prepare's output:
  ``{"source": "inventory", "inventory": {"bucket", "key", "created", "ageSeconds"}, "sourceLine": "S3 Inventory
  s3://... of 2026-12-01 00:00 UTC, 1 d 11 h old: objects written since are not in it; the live path handles them"}``.
  Without it Prepare returns ``{"source": "listing", "inventory": null, "sourceLine": "listing s3://primary/..."}``
  (``plan_entry(None, now, primary=...)``). The plan and the report print ``sourceLine``.

- The state machine: a Choice before the objects phase, on ``$.plan.source``; ``"inventory"`` goes to one Distributed
  Map over the whole inventory (a manifest lists the bucket, not a prefix), with the listing Map's ItemBatcher,
  ItemProcessor, ResultWriter and MaxConcurrencyPath, and this ItemReader (Step Functions developer guide, "ItemReader
  (Map)", S3 inventory example)::

      "ItemReader": {
        "ReaderConfig": {"InputType": "MANIFEST"},
        "Resource": "arn:${Partition}:states:::s3:getObject",
        "Parameters": {"Bucket.$": "$.plan.inventory.bucket", "Key.$": "$.plan.inventory.key"}
      }

  ``"ReaderConfig": {"ManifestType": "S3_INVENTORY"}`` (without InputType) is the documented newer spelling of the same
  reader. The batch's BatchInput adds ``"prefixes.$": "$.plan.prefixes"``: the inventory holds every key of the bucket
  (reports, staging, others' files), and the worker keeps those under the prefixes to scan. The state machine's role
  needs ``s3:GetObject`` on the manifest and the data files (``arn:aws:s3:::<inventory-bucket>/<prefix>/*``); the
  inventory bucket must be in the state machine's account and Region (the guide's "Requirements for account and
  region").

- The worker (``backfill.tasks._objects_task``): ``listed = inventory_items(items, prefixes=event.get("prefixes"))``
  when the items carry ``ETag`` (an inventory's field name; a listing's is ``Etag``), else ``listed_items`` as now;
  the keys for the batch name and for the keys-only fallback are ``inventory_keys(items)`` (decoded), never the raw
  ``item["Key"]``.

- The local runner (``local.sfnlocal``), whose executor has no MANIFEST reader: ``iter_inventory_items(s3, inv)``
  gives the items AWS's reader would give, to batch as its listing reader does.

What the items are: S3 Inventory writes gzip CSV data files without a header, their columns the manifest's
fileSchema; Step Functions gives each row as an object keyed by those names, every value a string ("Fields are
treated as strings"), e.g. ``{"Bucket": "b", "Key": "csvDataset/titles.csv", "Size": "3399671", "LastModifiedDate":
"2022-11-16T00:29:32.000Z"}``. In CSV inventories "the key name is URL-encoded and must be decoded before you can use
it" (S3 User Guide): ``inventory_items`` decodes it (``+`` is a space, as S3 Inventory encodes one). An inventory is
"eventually consistent": objects written after its creationTimestamp are missing (the live path handles them), and
one deleted or overwritten since is listed as it was: the worker's copies are conditional on the listed ETag
(backfill.listed), so S3 refuses such a copy and the worker takes the object again as it is now (a HEAD) or hands it to
the per-object steps; nothing is copied stale, but an old inventory costs those extra requests.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

from mediacanon.backfill.listing import Listed
from mediacanon.core.errors import NotFoundError, PermanentError

if TYPE_CHECKING:
    from mediacanon.adapters.s3 import S3Adapter

# Step Functions: "The output format of your Amazon S3 inventory report must be CSV."
READABLE_FORMAT = "CSV"
# what the worker needs to act on an object without a HEAD; Bucket and Key are in every inventory
NEEDED_FIELDS = ("Bucket", "Key", "Size", "ETag")
OPTIONAL_NEEDED = ("Size", "ETag")  # S3 Inventory's OptionalFields that mediacanon needs
DEFAULT_MAX_AGE = timedelta(days=7)  # a weekly inventory's period; a daily one is at most a day or two old
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class InventoryFile:
    """One data file the manifest lists (``files[]``): its key in the destination bucket, size and MD5."""

    key: str
    size: int
    md5: str


@dataclass(frozen=True)
class Inventory:
    """An S3 Inventory manifest.json: where it is, the bucket it lists, its format and columns, files and date."""

    bucket: str  # the manifest's bucket (the inventory's destination)
    key: str  # the manifest's key
    source_bucket: str
    destination_bucket: str  # the data files' bucket (destinationBucket, an ARN in the manifest)
    file_format: str
    fields: list[str]  # fileSchema, in column order
    files: list[InventoryFile]
    created: datetime  # creationTimestamp: when the inventory began scanning the bucket (UTC)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/path/manifest.json`` -> (bucket, key); a PermanentError naming the fix otherwise."""
    rest = uri.removeprefix("s3://") if uri.startswith("s3://") else None
    bucket, _, key = (rest or "").partition("/")
    if not bucket or not key or not key.endswith("manifest.json"):
        raise PermanentError(
            f"{uri!r} is not an S3 Inventory manifest (fix: give s3://<destination-bucket>/<destination-prefix>/"
            "<source-bucket>/<config-ID>/<YYYY-MM-DDTHH-MMZ>/manifest.json)"
        )
    return bucket, key


def _bucket_name(value: Any) -> str:
    """destinationBucket is an ARN (arn:aws:s3:::name); sourceBucket a name."""
    text = str(value)
    return text.split(":::", 1)[1] if text.startswith("arn:") and ":::" in text else text


def _created(value: Any, uri: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):
        raise PermanentError(
            f"{uri}: creationTimestamp {value!r} is not milliseconds since the epoch (fix: pass the manifest.json "
            "S3 Inventory wrote, unchanged)"
        ) from None


def _files(value: Any, uri: str) -> list[InventoryFile]:
    if not isinstance(value, list):
        raise PermanentError(f"{uri}: files is not a list (fix: pass the manifest.json S3 Inventory wrote, unchanged)")
    out = []
    for entry in value:
        if not isinstance(entry, Mapping) or not entry.get("key"):
            raise PermanentError(f"{uri}: a files entry has no key: {entry!r} (fix: pass the manifest S3 Inventory wrote)")
        out.append(InventoryFile(str(entry["key"]), int(entry.get("size", 0)), str(entry.get("MD5checksum", ""))))
    return out


def parse_manifest(body: bytes, bucket: str, key: str) -> Inventory:
    """A manifest.json's content as an Inventory; a PermanentError naming the manifest when it is not one."""
    uri = f"s3://{bucket}/{key}"
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise PermanentError(f"{uri}: not JSON ({exc}) (fix: pass the manifest.json, not a data file)") from None
    if not isinstance(data, dict):
        raise PermanentError(f"{uri}: not a JSON object (fix: pass the manifest.json S3 Inventory wrote)")
    missing = [f for f in ("sourceBucket", "destinationBucket", "fileFormat", "fileSchema", "files") if f not in data]
    if missing:
        raise PermanentError(f"{uri}: no {', '.join(missing)} (fix: pass an S3 Inventory manifest.json)")
    return Inventory(
        bucket=bucket,
        key=key,
        source_bucket=str(data["sourceBucket"]),
        destination_bucket=_bucket_name(data["destinationBucket"]),
        file_format=str(data["fileFormat"]),
        fields=[f.strip() for f in str(data["fileSchema"]).split(",") if f.strip()],
        files=_files(data["files"], uri),
        created=_created(data.get("creationTimestamp"), uri),
    )


def check_inventory(inventory: Inventory, *, primary_bucket: str, max_age: timedelta, now: datetime) -> None:
    """What Step Functions and mediacanon need of the inventory; each failure a PermanentError naming the fix."""
    uri = inventory.uri
    if inventory.file_format.upper() != READABLE_FORMAT:
        raise PermanentError(
            f"{uri}: the inventory is {inventory.file_format}; Step Functions reads S3 Inventory manifests of CSV "
            "inventories only (fix: set the inventory configuration's output format to CSV, then pass the "
            "manifest.json of its next report, or run the backfill without --inventory to list the bucket)"
        )
    if inventory.source_bucket != primary_bucket:
        raise PermanentError(
            f"{uri}: an inventory of bucket {inventory.source_bucket!r}, not of the media map's primary bucket "
            f"{primary_bucket!r} (fix: pass the manifest of an inventory of {primary_bucket}: its key has "
            f"/{primary_bucket}/<config-ID>/ in it)"
        )
    missing = [f for f in NEEDED_FIELDS if f not in inventory.fields]
    if missing:
        fix = (
            f"add {' and '.join(missing)} to the inventory configuration's optional fields (OptionalFields), then pass "
            "the manifest.json of its next report"
            if set(missing) <= set(OPTIONAL_NEEDED)
            else "pass an S3 Inventory manifest.json"
        )
        raise PermanentError(
            f"{uri}: its fileSchema ({', '.join(inventory.fields)}) lacks {', '.join(missing)}, which the backfill "
            f"needs to act on each object without a HEAD (fix: {fix})"
        )
    age = staleness(inventory, now)
    if age > max_age:
        raise PermanentError(
            f"{uri}: created {_when(inventory.created)}, {_age(age)} old, older than the {_age(max_age)} allowed: "
            "every object written since would be missed by the backfill (fix: pass the manifest.json of the newest "
            "report, or allow an older one with a larger maximum age)"
        )


def read_manifest(
    s3: S3Adapter,
    bucket: str,
    key: str,
    *,
    primary_bucket: str,
    max_age: timedelta = DEFAULT_MAX_AGE,
    now: datetime | None = None,
) -> Inventory:
    """The manifest at s3://bucket/key, read and checked (check_inventory) against the media map's primary bucket
    and the oldest inventory the caller accepts."""
    try:
        body = s3.get_bytes(bucket, key)
    except NotFoundError:
        raise PermanentError(
            f"s3://{bucket}/{key}: no such manifest (fix: pass the key of a manifest.json the inventory wrote: "
            "aws s3 ls s3://<destination-bucket>/<destination-prefix>/<source-bucket>/<config-ID>/ lists its reports)"
        ) from None
    inventory = parse_manifest(body, bucket, key)
    check_inventory(inventory, primary_bucket=primary_bucket, max_age=max_age, now=now or datetime.now(UTC))
    return inventory


def staleness(inventory: Inventory, now: datetime) -> timedelta:
    """How long before `now` the inventory began scanning the bucket (never negative)."""
    return max(now - inventory.created, timedelta(0))


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(age: timedelta) -> str:
    minutes = int(age.total_seconds()) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def describe(inventory: Inventory, now: datetime) -> str:
    """The plan's line for the objects phase's source."""
    return (
        f"S3 Inventory {inventory.uri} of {_when(inventory.created)}, {_age(staleness(inventory, now))} old: "
        "objects written since are not in it; the live path handles them"
    )


def plan_entry(inventory: Inventory | None, now: datetime, *, primary: str = "") -> dict[str, Any]:
    """What Prepare returns about the objects phase's source: the inventory the ItemReader reads, or the listing."""
    if inventory is None:
        return {"source": "listing", "inventory": None, "sourceLine": f"listing s3://{primary}/ (ListObjectsV2)"}
    return {
        "source": "inventory",
        "inventory": {
            "bucket": inventory.bucket,
            "key": inventory.key,
            "created": inventory.created.isoformat(),
            "ageSeconds": int(staleness(inventory, now).total_seconds()),
        },
        "sourceLine": describe(inventory, now),
    }


# -- a batch's items, as the ItemReader gives them from the inventory -------------------------------------------------


def _current(item: Mapping[str, Any]) -> bool:
    """False for the rows of an all-versions inventory that are no object to act on: older versions, delete markers."""
    if str(item.get("IsLatest", "true")).lower() != "true":
        return False
    return str(item.get("IsDeleteMarker", "false")).lower() != "true"


def decode_key(raw: str) -> str:
    """A CSV inventory's key as S3 holds it: URL-decoded, '+' a space (S3 Inventory's encoding), UTF-8."""
    try:
        return unquote_plus(raw, errors="strict")
    except UnicodeDecodeError:
        raise PermanentError(f"inventory key {raw!r} is not URL-encoded UTF-8 (fix: list the bucket instead)") from None


def _wanted(key: str, prefixes: Sequence[str] | None) -> bool:
    return prefixes is None or any(key.startswith(p) for p in prefixes)


def inventory_items(items: Sequence[Mapping[str, Any]], prefixes: Sequence[str] | None = None) -> list[Listed] | None:
    """A batch's items as the ItemReader read them from a CSV inventory (Key URL-encoded, ETag, Size as strings),
    as Listed (key decoded, ETag without quotes, size an int): the worker needs no HEAD. Rows that are not a current
    object (older versions, delete markers) and keys under none of `prefixes` (when given) are left out. None when
    an item lacks Key, Size or ETag (an inventory without those optional fields)."""
    out = []
    for item in items:
        if any(item.get(f) in (None, "") for f in ("Key", "Size", "ETag")) and _current(item):
            return None
        if not _current(item):
            continue
        key = decode_key(str(item["Key"]))
        if _wanted(key, prefixes):
            out.append(Listed(key, str(item["ETag"]).strip('"'), int(item["Size"])))
    return out


def inventory_keys(items: Iterable[Mapping[str, Any]], prefixes: Sequence[str] | None = None) -> list[str]:
    """The batch's keys, decoded, of current objects under `prefixes` (when given): the batch's name and the
    keys-only fallback, never the raw (URL-encoded) item["Key"]."""
    keys = (decode_key(str(item["Key"])) for item in items if _current(item))
    return [k for k in keys if _wanted(k, prefixes)]


# -- the items themselves, for the local runner (whose executor has no MANIFEST reader) ------------------------------


def items_of_data_file(body: bytes, fields: Sequence[str]) -> Iterator[dict[str, str]]:
    """One data file's rows (gzip CSV, no header, the columns `fields`) as Step Functions gives them: keyed by the
    field names, values strings; a short row's missing values empty strings, a long row's extra values dropped."""
    if body[:2] == GZIP_MAGIC:
        body = gzip.decompress(body)
    for row in csv.reader(io.StringIO(body.decode("utf-8"), newline="")):
        if not row:
            continue
        padded = row + [""] * (len(fields) - len(row))
        yield dict(zip(fields, padded, strict=False))


def iter_inventory_items(s3: S3Adapter, inventory: Inventory) -> Iterator[dict[str, str]]:
    """What the ItemReader gives for the inventory, item by item: each data file the manifest lists, read from the
    destination bucket, its MD5 checked against the manifest's. Each file is held in memory while read (the local
    runner's inventories are small; AWS's reader takes files up to 10 GB decompressed)."""
    for entry in inventory.files:
        try:
            body = s3.get_bytes(inventory.destination_bucket, entry.key)
        except NotFoundError:
            raise PermanentError(
                f"{inventory.uri}: its data file s3://{inventory.destination_bucket}/{entry.key} is gone (fix: pass a "
                "newer manifest.json; a lifecycle rule may have expired this report's files)"
            ) from None
        digest = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if entry.md5 and digest != entry.md5:
            raise PermanentError(
                f"{inventory.uri}: data file {entry.key} has MD5 {digest}, the manifest says {entry.md5} (fix: pass "
                "the manifest.json of a complete report)"
            )
        yield from items_of_data_file(body, inventory.fields)
