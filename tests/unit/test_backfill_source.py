"""The backfill's objects source, wired: Prepare's `objects_source` (the input's inventory read and checked, else the
listing) and the objects worker's two item shapes (a listing's, an S3 Inventory's) -- mediacanon.backfill.tasks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from mediacanon.backfill import tasks
from mediacanon.backfill.listing import Listed
from mediacanon.backfill.results import BatchResult
from mediacanon.core.errors import NotFoundError, PermanentError

NOW = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
MANIFEST_KEY = "inventory/media/daily/2026-12-01T00-00Z/manifest.json"
URI = f"s3://inv/{MANIFEST_KEY}"


class _S3:
    def __init__(self, objects: dict[tuple[str, str], bytes]) -> None:
        self.objects = objects

    def get_bytes(self, bucket: str, key: str) -> bytes:
        try:
            return self.objects[(bucket, key)]
        except KeyError:
            raise NotFoundError(f"s3://{bucket}/{key}") from None


def _manifest(created: datetime, source: str = "media", schema: str = "Bucket, Key, Size, ETag") -> bytes:
    return json.dumps(
        {
            "sourceBucket": source,
            "destinationBucket": "arn:aws:s3:::inv",
            "version": "2016-11-30",
            "creationTimestamp": str(int(created.timestamp() * 1000)),
            "fileFormat": "CSV",
            "fileSchema": schema,
            "files": [{"key": "inventory/media/daily/data/a.csv.gz", "size": 10, "MD5checksum": "0" * 32}],
        }
    ).encode()


def _steps(manifest: bytes | None = None) -> Any:
    """Steps as objects_source reads them: the media map's primary bucket, the S3 holding the manifest."""
    held = {} if manifest is None else {("inv", MANIFEST_KEY): manifest}
    return SimpleNamespace(map=SimpleNamespace(buckets=SimpleNamespace(primary="media")), s3=_S3(held))


def test_without_an_inventory_the_source_is_the_listing() -> None:
    assert tasks.objects_source(_steps(), {}, NOW) == {
        "source": "listing",
        "inventory": None,
        "sourceLine": "listing s3://media/ (ListObjectsV2)",
    }


def test_an_inventory_is_read_checked_and_described() -> None:
    steps = _steps(_manifest(NOW - timedelta(days=1, hours=11)))
    source = tasks.objects_source(steps, {"inventory": URI}, NOW)
    assert source["source"] == "inventory"
    assert source["inventory"] == {
        "bucket": "inv",
        "key": MANIFEST_KEY,
        "created": "2026-12-01T00:00:00+00:00",
        "ageSeconds": 35 * 3600,
    }
    assert source["sourceLine"].startswith(f"S3 Inventory {URI} of 2026-12-01 00:00 UTC, 1 d 11 h old")


@pytest.mark.parametrize(
    ("given", "manifest", "message"),
    [
        ({"inventory": URI}, _manifest(NOW - timedelta(days=8)), r"8 d 0 h old, older than the 7 d 0 h allowed"),
        ({"inventory": URI, "inventoryMaxAgeDays": 0.5}, _manifest(NOW - timedelta(days=1)), r"older than the 12 h 0 min"),
        ({"inventory": URI, "inventoryMaxAgeDays": 0}, _manifest(NOW), r"inventoryMaxAgeDays must be a positive number"),
        ({"inventory": URI, "inventoryMaxAgeDays": "7"}, _manifest(NOW), r"inventoryMaxAgeDays must be a positive"),
        ({"inventory": URI}, _manifest(NOW, source="other"), r"an inventory of bucket 'other'"),
        ({"inventory": URI}, _manifest(NOW, schema="Bucket, Key, Size"), r"lacks ETag"),
        ({"inventory": "s3://inv/inventory/data/a.csv.gz"}, _manifest(NOW), r"is not an S3 Inventory manifest"),
        ({"inventory": "s3://inv/elsewhere/manifest.json"}, _manifest(NOW), r"no such manifest"),
    ],
)
def test_prepare_refuses_an_inventory_it_cannot_use_with_the_fix(given: dict[str, Any], manifest: bytes, message: str) -> None:
    with pytest.raises(PermanentError, match=message):
        tasks.objects_source(_steps(manifest), given, NOW)
    # the larger maximum age accepts what the default refuses
    if "8 d 0 h" in message:
        assert tasks.objects_source(_steps(manifest), {**given, "inventoryMaxAgeDays": 9}, NOW)["source"] == "inventory"


@pytest.fixture
def worker(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The objects task with its steps faked: what it handed process_listed / process_objects, and its part's name."""
    seen: dict[str, Any] = {}

    def listed(steps: Any, items: list[Listed], **kwargs: Any) -> BatchResult:
        seen["listed"] = items
        return BatchResult()

    def keys_only(steps: Any, keys: list[str], **kwargs: Any) -> BatchResult:
        seen["keys"] = keys
        return BatchResult()

    monkeypatch.setattr(tasks, "process_listed", listed)
    monkeypatch.setattr(tasks, "process_objects", keys_only)
    monkeypatch.setattr(tasks, "_record_orphan_etags", lambda steps, result, listed: None)
    monkeypatch.setattr(tasks, "write_part", lambda steps, execution, part, result: seen.setdefault("part", part))
    return seen


def _run(event: dict[str, Any]) -> None:
    tasks._objects_task(SimpleNamespace(), "x", event, False, None)  # type: ignore[arg-type]


def test_an_inventory_batch_is_decoded_and_kept_to_the_prefixes(worker: dict[str, Any]) -> None:
    items = [
        {"Bucket": "media", "Key": "icons/my+file+%281%29.png", "Size": "5", "ETag": "abc"},
        {"Bucket": "media", "Key": "icons/a%2Bb.png", "Size": "6", "ETag": '"def"'},
        {"Bucket": "media", "Key": "mediacanon-reports/x/report.json", "Size": "2", "ETag": "0"},
    ]
    _run({"items": items, "prefixes": ["icons/"]})
    assert worker["listed"] == [Listed("icons/my file (1).png", "abc", 5), Listed("icons/a+b.png", "def", 6)]
    # named by the decoded keys: the same batch listed or inventoried writes the same part
    assert worker["part"] == tasks._batch_name("objects", ["icons/my file (1).png", "icons/a+b.png"])


def test_an_inventory_batch_without_etags_falls_back_to_decoded_keys(worker: dict[str, Any]) -> None:
    items = [{"Bucket": "media", "Key": "icons/my+file.png", "Size": "", "ETag": ""}]
    _run({"items": items, "prefixes": ["icons/"]})
    assert worker["keys"] == ["icons/my file.png"] and "listed" not in worker


def test_a_listed_batch_is_taken_as_before(worker: dict[str, Any]) -> None:
    items = [{"Key": "icons/my+file.png", "Etag": '"abc"', "Size": 5, "LastModified": 1, "StorageClass": "STANDARD"}]
    _run({"items": items})
    assert worker["listed"] == [Listed("icons/my+file.png", "abc", 5)]  # a listing's key is the key: no decoding
    assert worker["part"] == tasks._batch_name("objects", ["icons/my+file.png"])
