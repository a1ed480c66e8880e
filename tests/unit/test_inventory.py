"""An S3 Inventory manifest as the objects phase's item source (mediacanon.backfill.inventory): parsing, checks, items.

AWS's documents this follows:

- Step Functions developer guide, "ItemReader (Map)", S3 inventory: "A Distributed Map state can accept an Amazon S3
  inventory manifest file that's stored in an Amazon S3 bucket as a dataset." "Important: Step Functions doesn't
  support a user-defined Amazon S3 inventory report as a dataset. The output format of your Amazon S3 inventory report
  must be CSV." Its manifest example has "fileFormat" : "CSV", "fileSchema" : "Bucket, Key, Size, LastModifiedDate",
  "creationTimestamp" : "1668560400000", and the input to a child workflow execution is
  {"LastModifiedDate": "2022-11-16T00:29:32.000Z", "Bucket": "amzn-s3-demo-source-bucket", "Size": "3399671",
  "Key": "csvDataset/titles.csv"} (Size a string). Of CSV: "Fields are treated as strings." "If the number of fields in
  a row is less than the number of fields in the header, Step Functions provides empty strings for the missing
  values." "If the number of fields in a row is more than the number of fields in the header, Step Functions skips
  the additional fields." Limits: "Step Functions supports 10 GB as the maximum size of an individual file in an
  Amazon S3 inventory report after decompression."
- S3 User Guide, "Amazon S3 Inventory": "The inventory lists are stored in the destination bucket as a CSV file
  compressed with GZIP, as an Apache optimized row columnar (ORC) file compressed with ZLIB, or as an Apache Parquet
  file compressed with Snappy." "Key name - ... When using the CSV file format, the key name is URL-encoded and must
  be decoded before you can use it." Optional fields include Size and ETag; "Version ID ... IsLatest ... (This field is
  not included if the list is only for the current version of objects.)"; "Inventory lists are a rolling snapshot of
  bucket items, which are eventually consistent (that is, the list might not include recently added or deleted
  objects)."
- S3 User Guide, "Locating your inventory list", manifest.json: "Creation timestamp in the epoch date format that
  consists of the start time and the date when the inventory report generation begins scanning the bucket"; its CSV
  example {"sourceBucket": "example-source-bucket", "destinationBucket": "arn:aws:s3:::example-inventory-destination-
  bucket", "version": "2016-11-30", "creationTimestamp" : "1514944800000", "fileFormat": "CSV", "fileSchema": "Bucket,
  Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, ...", "files": [{"key": ..., "size":
  2147483647, "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc"}]}.
- Space as '+': S3 Inventory's key "is URL-encoded with space encoded as plus" (cloud-custodian issue #1997, fixed by
  unquote_plus in #1998); AWS's pages do not spell the encoding out.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote_plus

import pytest

from mediacanon.backfill import inventory as inv
from mediacanon.backfill.listing import Listed, listed_items
from mediacanon.core.errors import PermanentError

# the S3 User Guide's CSV manifest example, as published
USER_GUIDE_MANIFEST: dict[str, Any] = {
    "sourceBucket": "example-source-bucket",
    "destinationBucket": "arn:aws:s3:::example-inventory-destination-bucket",
    "version": "2016-11-30",
    "creationTimestamp": "1514944800000",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, "
    "IsMultipartUploaded, ReplicationStatus, EncryptionStatus, ObjectLockRetainUntilDate, ObjectLockMode, "
    "ObjectLockLegalHoldStatus, IntelligentTieringAccessTier, BucketKeyStatus, ChecksumAlgorithm",
    "files": [
        {
            "key": "Inventory/example-source-bucket/2016-11-06T21-32Z/files/939c6d46-85a9-4ba8-87bd-9db705a579ce.csv.gz",
            "size": 2147483647,
            "MD5checksum": "f11166069f1990abeb9c97ace9cdfabc",
        }
    ],
}
# the Step Functions guide's example (no ETag among its fields)
SFN_GUIDE_MANIFEST: dict[str, Any] = {
    "sourceBucket": "amzn-s3-demo-source-bucket",
    "destinationBucket": "arn:aws:s3:::amzn-s3-demo-inventory",
    "version": "2016-11-30",
    "creationTimestamp": "1668560400000",
    "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, Size, LastModifiedDate",
    "files": [{"key": "amzn-s3-demo-bucket/destination-prefix/data/20e55de8.csv.gz", "size": 7300, "MD5checksum": "a7"}],
}
CREATED = datetime(2018, 1, 3, 2, 0, tzinfo=UTC)
HOSTILE = [
    "icons/my file.png",
    "icons/a+b.png",
    "icons/100%.png",
    "icons/%41.png",  # decodes to A only if decoded twice
    "icons/été 🎉.jpg",
    "icons/x,y\"z'.gif",
    "icons/~!@#$&*()=;:?.png",
]


def manifest(data: dict[str, Any], **changes: Any) -> inv.Inventory:
    return inv.parse_manifest(json.dumps({**data, **changes}).encode(), "inventory-dest", "p/m/manifest.json")


def check(inventory: inv.Inventory, now: datetime = CREATED + timedelta(hours=5), **kw: Any) -> None:
    kw.setdefault("primary_bucket", "example-source-bucket")
    kw.setdefault("max_age", inv.DEFAULT_MAX_AGE)
    inv.check_inventory(inventory, now=now, **kw)


def test_the_user_guides_manifest_parses() -> None:
    got = manifest(USER_GUIDE_MANIFEST)
    assert got.source_bucket == "example-source-bucket"
    assert got.destination_bucket == "example-inventory-destination-bucket"  # the ARN's bucket
    assert got.file_format == "CSV"
    assert got.fields[:8] == ["Bucket", "Key", "VersionId", "IsLatest", "IsDeleteMarker", "Size", "LastModifiedDate", "ETag"]
    assert len(got.fields) == 18
    assert got.created == CREATED  # 1514944800000 ms
    assert got.files == [
        inv.InventoryFile(USER_GUIDE_MANIFEST["files"][0]["key"], 2147483647, "f11166069f1990abeb9c97ace9cdfabc")
    ]
    assert got.uri == "s3://inventory-dest/p/m/manifest.json"
    check(got)  # CSV, of the primary bucket, with Size and ETag, 5 h old: accepted


def test_orc_and_parquet_are_refused_with_the_fix() -> None:
    for fmt in ("ORC", "Parquet"):
        with pytest.raises(PermanentError) as err:
            check(manifest(USER_GUIDE_MANIFEST, fileFormat=fmt))
        text = str(err.value)
        assert "s3://inventory-dest/p/m/manifest.json" in text and fmt in text
        assert "CSV" in text and "fix:" in text


def test_another_buckets_inventory_is_refused() -> None:
    with pytest.raises(PermanentError, match=r"not of the media map's primary bucket 'media-primary'.*fix:"):
        check(manifest(USER_GUIDE_MANIFEST), primary_bucket="media-primary")


def test_an_inventory_without_etag_says_to_add_the_optional_field() -> None:
    got = manifest(SFN_GUIDE_MANIFEST)
    with pytest.raises(PermanentError) as err:
        check(got, primary_bucket="amzn-s3-demo-source-bucket", now=got.created)
    text = str(err.value)
    assert "lacks ETag" in text and "optional fields" in text and "Size" not in text.split("lacks")[1].split("(")[0]
    with pytest.raises(PermanentError, match=r"lacks Size, ETag.*add Size and ETag to the inventory configuration"):
        check(
            manifest(SFN_GUIDE_MANIFEST, fileSchema="Bucket, Key"), primary_bucket="amzn-s3-demo-source-bucket", now=got.created
        )


def test_a_stale_inventory_is_refused_with_its_age() -> None:
    got = manifest(USER_GUIDE_MANIFEST)
    check(got, now=CREATED + timedelta(days=6, hours=23))  # within the default 7 days
    with pytest.raises(PermanentError) as err:
        check(got, now=CREATED + timedelta(days=8, hours=3))
    text = str(err.value)
    assert "2018-01-03 02:00 UTC" in text and "8 d 3 h old" in text and "7 d 0 h allowed" in text
    with pytest.raises(PermanentError, match="older than the 1 d 0 h allowed"):
        check(got, now=CREATED + timedelta(days=2), max_age=timedelta(days=1))


def test_malformed_manifests_are_permanent_errors() -> None:
    with pytest.raises(PermanentError, match="not JSON"):
        inv.parse_manifest(b"\x1f\x8b not json", "b", "manifest.json")
    with pytest.raises(PermanentError, match="no fileSchema"):
        manifest({k: v for k, v in USER_GUIDE_MANIFEST.items() if k != "fileSchema"})
    with pytest.raises(PermanentError, match="creationTimestamp"):
        manifest(USER_GUIDE_MANIFEST, creationTimestamp="yesterday")


def test_split_s3_uri() -> None:
    assert inv.split_s3_uri("s3://dest/inv/src/cfg/2026-12-01T00-00Z/manifest.json") == (
        "dest",
        "inv/src/cfg/2026-12-01T00-00Z/manifest.json",
    )
    for bad in ("dest/manifest.json", "s3://dest", "s3:///manifest.json", "s3://dest/data/x.csv.gz"):
        with pytest.raises(PermanentError, match="fix:"):
            inv.split_s3_uri(bad)


def test_staleness_and_the_plans_line() -> None:
    got = manifest(USER_GUIDE_MANIFEST, creationTimestamp=str(int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)))
    now = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
    assert inv.staleness(got, now) == timedelta(days=1, hours=11)
    assert inv.staleness(got, got.created - timedelta(hours=1)) == timedelta(0)
    assert inv.describe(got, now) == (
        "S3 Inventory s3://inventory-dest/p/m/manifest.json of 2026-12-01 00:00 UTC, 1 d 11 h old: objects written "
        "since are not in it; the live path handles them"
    )
    entry = inv.plan_entry(got, now)
    assert entry["source"] == "inventory"
    assert entry["inventory"] == {
        "bucket": "inventory-dest",
        "key": "p/m/manifest.json",
        "created": "2026-12-01T00:00:00+00:00",
        "ageSeconds": 35 * 3600,
    }
    assert entry["sourceLine"] == inv.describe(got, now)
    assert inv.plan_entry(None, now, primary="media")["source"] == "listing"
    assert "25 min" in inv.describe(got, got.created + timedelta(minutes=25))


def item(key: str, etag: str = "d41d8cd98f00b204e9800998ecf8427e", size: str = "12", **more: str) -> dict[str, str]:
    return {"Bucket": "media", "Key": key, "Size": size, "LastModifiedDate": "2026-11-30T10:00:00.000Z", "ETag": etag, **more}


def test_items_become_listed_keys_decoded() -> None:
    got = inv.inventory_items(
        [
            item("icons/my+file%2B1.png", etag='"0cc175b9c0f1b6a831c399e269772661"', size="3399671"),
            item("icons/%C3%A9t%C3%A9.jpg"),
            item("icons/100%25.png", size="0"),
        ]
    )
    assert got == [
        Listed("icons/my file+1.png", "0cc175b9c0f1b6a831c399e269772661", 3399671),
        Listed("icons/été.jpg", "d41d8cd98f00b204e9800998ecf8427e", 12),
        Listed("icons/100%.png", "d41d8cd98f00b204e9800998ecf8427e", 0),
    ]
    # the listing's reader does not take them for its own (Etag there, ETag here)
    assert listed_items([item("icons/a.png")]) is None


def test_hostile_keys_survive_the_encoding() -> None:
    encoded = [item(quote_plus(k, safe="/")) for k in HOSTILE]
    got = inv.inventory_items(encoded)
    assert got is not None
    assert [x.key for x in got] == HOSTILE
    assert inv.inventory_keys(encoded) == HOSTILE
    assert "icons/A.png" not in HOSTILE and [x.key for x in got][3] == "icons/%41.png"  # decoded once, not twice


def test_an_item_without_size_or_etag_gives_none() -> None:
    assert inv.inventory_items([item("a.png"), {"Bucket": "media", "Key": "b.png", "Size": "3"}]) is None
    assert inv.inventory_items([item("a.png", etag="")]) is None
    assert inv.inventory_items([{"Bucket": "media", "Key": "a.png", "ETag": "e"}]) is None


def test_versions_and_delete_markers_are_not_objects() -> None:
    rows = [
        item("icons/a.png", etag="new", VersionId="v2", IsLatest="true", IsDeleteMarker="false"),
        item("icons/a.png", etag="old", VersionId="v1", IsLatest="false", IsDeleteMarker="false"),
        item("icons/gone.png", etag="", size="", VersionId="v3", IsLatest="true", IsDeleteMarker="true"),
    ]
    assert inv.inventory_items(rows) == [Listed("icons/a.png", "new", 12)]
    assert inv.inventory_keys(rows) == ["icons/a.png"]


def test_prefixes_keep_the_keys_to_scan() -> None:
    rows = [item("icons/a.png"), item("mediacanon-reports/x.json"), item("mastheads/b.jpg"), item("other/c")]
    got = inv.inventory_items(rows, prefixes=["icons/", "mastheads/"])
    assert got is not None and [x.key for x in got] == ["icons/a.png", "mastheads/b.jpg"]
    assert inv.inventory_keys(rows, prefixes=["mastheads/"]) == ["mastheads/b.jpg"]


def test_a_key_that_is_not_utf8_is_a_permanent_error() -> None:
    with pytest.raises(PermanentError, match="not URL-encoded UTF-8"):
        inv.inventory_items([item("icons/%FF.png")])


def gzip_csv(rows: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)
    return gzip.compress(text.getvalue().encode())


def test_a_data_file_reads_as_the_item_reader_gives_it() -> None:
    fields = ["Bucket", "Key", "Size", "LastModifiedDate", "ETag"]
    body = gzip_csv(
        [
            ["media", "icons/a%2Cb.png", "5", "2026-11-30T10:00:00.000Z", "e1"],
            ["media", 'icons/quoted"name.png', "6", "2026-11-30T10:00:00.000Z", "e2"],
            ["media", "icons/short.png", "7"],  # fewer fields: empty strings
            ["media", "icons/long.png", "8", "t", "e4", "extra"],  # more: dropped
        ]
    )
    got = list(inv.items_of_data_file(body, fields))
    assert got[0] == {
        "Bucket": "media",
        "Key": "icons/a%2Cb.png",
        "Size": "5",
        "LastModifiedDate": "2026-11-30T10:00:00.000Z",
        "ETag": "e1",
    }
    assert got[1]["Key"] == 'icons/quoted"name.png'
    assert got[2] == {"Bucket": "media", "Key": "icons/short.png", "Size": "7", "LastModifiedDate": "", "ETag": ""}
    assert got[3] == {"Bucket": "media", "Key": "icons/long.png", "Size": "8", "LastModifiedDate": "t", "ETag": "e4"}
    assert inv.inventory_items(got) is None  # the short row has no ETag
    assert inv.inventory_items(got[:2]) == [Listed("icons/a,b.png", "e1", 5), Listed('icons/quoted"name.png', "e2", 6)]
    # an uncompressed file reads the same
    assert list(inv.items_of_data_file(gzip.decompress(body), fields)) == got
