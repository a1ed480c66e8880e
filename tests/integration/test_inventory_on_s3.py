"""An S3 Inventory of a real bucket on the session's emulator, written as S3 Inventory writes one, read back with
mediacanon.backfill.inventory: the Listed items equal what a listing of the bucket says (keys, ETags, sizes).

The shape written follows AWS's documents. S3 User Guide, "Locating your inventory list": the manifest is published at
"destination-prefix/source-bucket/config-ID/YYYY-MM-DDTHH-MMZ/manifest.json" and the data files at
"destination-prefix/source-bucket/config-ID/example-file-name.csv.gz"; manifest.json holds sourceBucket,
destinationBucket (an ARN), version "2016-11-30", creationTimestamp (ms since the epoch), fileFormat, fileSchema and
files [{key, size, MD5checksum}]. "Amazon S3 Inventory": "The inventory lists are stored in the destination bucket as
a CSV file compressed with GZIP"; "Objects are sorted in ascending order based on the key names"; "When using the CSV
file format, the key name is URL-encoded and must be decoded before you can use it." Step Functions developer guide,
"ItemReader (Map)": the inventory example's data rows are fully quoted and headerless
("amzn-s3-demo-source-bucket","csvDataset/titles.csv","3399671","2022-11-16T00:29:32.000Z"), and "The output format
of your Amazon S3 inventory report must be CSV." How S3 encodes a space in the Key column ('+') is from
cloud-custodian issue #1997 ("URL-encoded with space encoded as plus"), not from AWS's pages.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest

from mediacanon.adapters.s3 import S3Adapter
from mediacanon.backfill.inventory import inventory_items, iter_inventory_items, read_manifest
from mediacanon.backfill.listing import Listed
from mediacanon.core.errors import PermanentError

pytestmark = pytest.mark.integration

FIELDS = ["Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass"]
OBJECTS = {
    "icons/nytimes_icon_v2_final.png": b"nyt icon",
    "icons/my file (1).png": b"spaces",
    "icons/a+b.png": b"a plus",
    "icons/100%.png": b"a percent",
    "icons/%41.png": b"looks encoded",
    "icons/été 🎉.jpg": b"unicode",
    'icons/comma,quote".gif': b"csv specials",
    "mastheads/NYTimes_Masthead_FINAL (1).JPG": b"nyt masthead",
    "mastheads/empty.jpg": b"",
    "mediacanon-reports/old/report.json": b"{}",
}


def listing(client: Any, bucket: str) -> list[Listed]:
    out = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            out.append(Listed(o["Key"], o["ETag"].strip('"'), o["Size"]))
    return out


def data_file(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode())


def write_inventory(
    client: Any, source: str, dest: str, *, created: datetime, fields: list[str] = FIELDS, fmt: str = "CSV", per_file: int = 4
) -> str:
    """An inventory of `source` under `dest` as S3 Inventory lays one out; returns the manifest's key."""
    listed = sorted(listing(client, source), key=lambda x: x.key)
    values: dict[str, Callable[[Listed], str]] = {
        "Bucket": lambda x: source,
        "Key": lambda x: quote_plus(x.key, safe="/"),
        "Size": lambda x: str(x.size),
        "LastModifiedDate": lambda x: "2026-11-30T10:00:00.000Z",
        "ETag": lambda x: x.etag,
        "StorageClass": lambda x: "STANDARD",
    }
    rows = [[values[f](x) for f in fields] for x in listed]
    stamp = created.strftime("%Y-%m-%dT%H-%MZ")
    files = []
    for n, start in enumerate(range(0, len(rows), per_file)):
        body = data_file(rows[start : start + per_file])
        key = f"inventory/{source}/daily/data/file-{n}.csv.gz"
        client.put_object(Bucket=dest, Key=key, Body=body)
        files.append({"key": key, "size": len(body), "MD5checksum": hashlib.md5(body, usedforsecurity=False).hexdigest()})
    manifest = {
        "sourceBucket": source,
        "destinationBucket": f"arn:aws:s3:::{dest}",
        "version": "2016-11-30",
        "creationTimestamp": str(int(created.timestamp() * 1000)),
        "fileFormat": fmt,
        "fileSchema": ", ".join(fields),
        "files": files,
    }
    key = f"inventory/{source}/daily/{stamp}/manifest.json"
    client.put_object(Bucket=dest, Key=key, Body=json.dumps(manifest).encode())
    return key


@pytest.fixture
def buckets(s3_client: Any, bucket: Callable[[str], str]) -> tuple[str, str]:
    primary, dest = bucket("primary"), bucket("inventory")
    for key, body in OBJECTS.items():
        s3_client.put_object(Bucket=primary, Key=key, Body=body)
    return primary, dest


def test_an_inventory_reads_back_as_the_listing(s3_client: Any, buckets: tuple[str, str]) -> None:
    primary, dest = buckets
    created = datetime.now(UTC) - timedelta(hours=2)
    key = write_inventory(s3_client, primary, dest, created=created)
    s3 = S3Adapter(s3_client)
    inventory = read_manifest(s3, dest, key, primary_bucket=primary)
    assert inventory.source_bucket == primary and inventory.destination_bucket == dest
    assert len(inventory.files) == 3  # 10 objects, 4 a file
    assert abs(inventory.created - created) < timedelta(seconds=1)
    items = list(iter_inventory_items(s3, inventory))
    assert len(items) == len(OBJECTS)
    assert items[0]["Bucket"] == primary and set(items[0]) == set(FIELDS)
    assert any("+" in i["Key"] or "%" in i["Key"] for i in items)  # the keys arrive encoded
    listed = inventory_items(items)
    assert listed is not None
    real = listing(s3_client, primary)
    assert sorted(listed, key=lambda x: x.key) == sorted(real, key=lambda x: x.key)
    assert {x.key for x in listed} == set(OBJECTS)
    # only the prefixes to scan
    scanned = inventory_items(items, prefixes=["icons/", "mastheads/"])
    assert scanned is not None
    assert {x.key for x in scanned} == {k for k in OBJECTS if not k.startswith("mediacanon-reports/")}


def test_the_checks_on_a_real_manifest(s3_client: Any, buckets: tuple[str, str], bucket: Callable[[str], str]) -> None:
    primary, dest = buckets
    s3 = S3Adapter(s3_client)
    old = write_inventory(s3_client, primary, dest, created=datetime.now(UTC) - timedelta(days=9))
    with pytest.raises(PermanentError, match=r"9 d 0 h old"):
        read_manifest(s3, dest, old, primary_bucket=primary)
    assert read_manifest(s3, dest, old, primary_bucket=primary, max_age=timedelta(days=10)).source_bucket == primary
    with pytest.raises(PermanentError, match="not of the media map's primary bucket"):
        read_manifest(s3, dest, old, primary_bucket=bucket("other"), max_age=timedelta(days=10))
    no_etag = write_inventory(s3_client, primary, dest, created=datetime.now(UTC), fields=["Bucket", "Key", "Size"])
    with pytest.raises(PermanentError, match="add ETag to the inventory configuration's optional fields"):
        read_manifest(s3, dest, no_etag, primary_bucket=primary)
    orc = write_inventory(s3_client, primary, dest, created=datetime.now(UTC) + timedelta(minutes=1), fmt="ORC")
    with pytest.raises(PermanentError, match="CSV inventories only"):
        read_manifest(s3, dest, orc, primary_bucket=primary)
    with pytest.raises(PermanentError, match="no such manifest"):
        read_manifest(s3, dest, "inventory/nothing/manifest.json", primary_bucket=primary)


def test_a_damaged_or_expired_data_file_is_a_permanent_error(s3_client: Any, buckets: tuple[str, str]) -> None:
    primary, dest = buckets
    s3 = S3Adapter(s3_client)
    key = write_inventory(s3_client, primary, dest, created=datetime.now(UTC))
    inventory = read_manifest(s3, dest, key, primary_bucket=primary)
    s3_client.put_object(Bucket=dest, Key=inventory.files[1].key, Body=data_file([[primary, "x", "1", "t", "e", "S"]]))
    with pytest.raises(PermanentError, match="has MD5"):
        list(iter_inventory_items(s3, inventory))
    s3_client.delete_object(Bucket=dest, Key=inventory.files[0].key)
    with pytest.raises(PermanentError, match="is gone"):
        list(iter_inventory_items(s3, inventory))
